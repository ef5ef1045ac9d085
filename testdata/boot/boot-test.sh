#!/bin/bash
# shellcheck disable=SC2054  # commas inside qemu option strings are intended
# boot-test.sh IMAGE FORMAT MODE
#   FORMAT: raw | vpc        (vpc = VHD; a fixed VHD is detected by its footer)
#   MODE:   bios | uefi | uefi-secureboot
#
# Boots IMAGE in qemu-system-x86_64 (TCG by default: no KVM needed) with the
# serial port captured to a log file and a hard timeout, and exits 0 only if
# the serial log contains the marker line printed by the test initramfs
# (see make-gen1-image.sh):
#     VHDTOOL-BOOT-OK firmware=<bios|uefi> secureboot=<0|1>
# with the values MODE expects:
#     bios            -> firmware=bios secureboot=0   (SeaBIOS, machine "pc")
#     uefi            -> firmware=uefi secureboot=0   (OVMF_CODE_4M.fd + OVMF_VARS_4M.fd, q35)
#     uefi-secureboot -> firmware=uefi secureboot=1   (OVMF_CODE_4M.secboot.fd +
#                        OVMF_VARS_4M.ms.fd = Microsoft KEK/db enrolled, SB enforced; q35 + SMM)
# The image is never modified (the drive is opened with snapshot=on); the
# OVMF VARS template is copied to a temp file for each run.
#
# Exit: 0 = expected marker seen; 1 = boot failed / wrong marker / timeout;
#       2 = usage or environment error.
#
# Environment knobs:
#   TIMEOUT   hard limit in seconds for the qemu run (default 240 bios, 420 uefi*)
#   ACCEL     tcg (default) | kvm (kvm does NOT work on this workplace's machines:
#             /dev/kvm exists but SMM is unsupported and guests die with
#             "KVM internal error. Suberror: 1 ... emulation failure")
#   MEM       guest RAM in MiB (default 512)
#   SMP       vCPUs (default 1)
#   DISK_IF   virtio (default, virtio-blk) | scsi (virtio-scsi) | nvme |
#             ide (IDE on "pc", AHCI/SATA on q35; the Debian cloud kernel has no
#             AHCI driver, so with ide in the uefi modes use CHECK_ROOT=0)
#   CHECK_ROOT 1 (default): also require "VHDTOOL-ROOT-OK": the kernel found the
#             root fs by UUID, mounted it read-only and all file checksums
#             matched; 0: firmware/bootloader marker only
#   EXPECT_PTABLE gpt|dos: also require this partition table type (seen by the kernel)
#   EXPECT_SEPARATE_BOOT 1: also require that a separate /boot fs (named in the
#             root's /etc/fstab) was found, mounted and checksummed
#             (images built with make-gen1-image.sh --separate-boot)
#   LOG       serial log path (default: <IMAGE>.<MODE>.serial.log)
#   OVMF_CODE / OVMF_VARS   override the firmware files
#   VPC_SIZE_CALC current_size (default) | chs: how QEMU sizes a VHD (see below)
#   SERCON    1 (default, bios mode): SeaBIOS mirrors its text console to the serial log
#   STALL_TIMEOUT  give up when the serial log has not grown for this many
#             seconds (default 60; 0 = off)
#   FAST_FAIL 1 (default): stop early on an unrecoverable console message
#             (grub rescue, kernel panic, Secure Boot "Access Denied"/"Security Violation")
#
# Needs: qemu-system-x86 (qemu-system-x86_64 + seabios), ovmf (UEFI modes),
#        qemu-utils is NOT needed here; coreutils (timeout).
set -uo pipefail

usage() { echo "usage: $0 IMAGE raw|vpc bios|uefi|uefi-secureboot" >&2; exit 2; }
[ $# -eq 3 ] || usage
IMAGE=$1 FORMAT=$2 MODE=$3
[ -f "$IMAGE" ] || { echo "no such image: $IMAGE" >&2; exit 2; }
case "$FORMAT" in raw|vpc) ;; *) usage ;; esac
command -v qemu-system-x86_64 >/dev/null || { echo "missing qemu-system-x86_64 (apt-get install qemu-system-x86)" >&2; exit 2; }

ACCEL=${ACCEL:-tcg}
MEM=${MEM:-512}
SMP=${SMP:-1}
DISK_IF=${DISK_IF:-virtio}
CHECK_ROOT=${CHECK_ROOT:-1}
EXPECT_PTABLE=${EXPECT_PTABLE:-}
EXPECT_SEPARATE_BOOT=${EXPECT_SEPARATE_BOOT:-0}
FAST_FAIL=${FAST_FAIL:-1}
LOG=${LOG:-$IMAGE.$MODE.serial.log}
TMPD=$(mktemp -d "${TMPDIR:-/tmp}/boot-test.XXXXXX")
trap 'rm -rf "$TMPD"' EXIT

# first existing file among the arguments
first() { for f in "$@"; do [ -f "$f" ] && { echo "$f"; return 0; }; done; return 1; }

FW_ARGS=()
case "$MODE" in
bios)
  EXPECT="firmware=bios secureboot=0"
  MACHINE="pc"
  : "${TIMEOUT:=240}"
  # SeaBIOS "sercon": mirror the BIOS text console (int 10h) onto the serial
  # port, so SeaBIOS/boot.img messages ("Booting from Hard Disk...", "GRUB ",
  # "No bootable device.") land in the log too. The value is the I/O port as
  # a little-endian integer (0x3f8 = COM1).
  if [ "${SERCON:-1}" = 1 ]; then
    printf '\370\003' > "$TMPD/sercon-port"
    FW_ARGS+=(-fw_cfg "name=etc/sercon-port,file=$TMPD/sercon-port")
  fi
  ;;
uefi)
  EXPECT="firmware=uefi secureboot=0"
  MACHINE="q35"
  : "${TIMEOUT:=420}"
  CODE=${OVMF_CODE:-$(first /usr/share/OVMF/OVMF_CODE_4M.fd /usr/share/OVMF/OVMF_CODE.fd)} || { echo "no OVMF CODE (apt-get install ovmf)" >&2; exit 2; }
  case "$CODE" in *_4M*) VT=/usr/share/OVMF/OVMF_VARS_4M.fd ;; *) VT=/usr/share/OVMF/OVMF_VARS.fd ;; esac
  VT=${OVMF_VARS:-$VT}
  ;;
uefi-secureboot)
  EXPECT="firmware=uefi secureboot=1"
  # Secure-Boot-capable OVMF needs SMM (so the varstore can't be written
  # behind the firmware's back) and a secure pflash.
  MACHINE="q35,smm=on"
  : "${TIMEOUT:=420}"
  CODE=${OVMF_CODE:-$(first /usr/share/OVMF/OVMF_CODE_4M.ms.fd /usr/share/OVMF/OVMF_CODE_4M.secboot.fd /usr/share/OVMF/OVMF_CODE.secboot.fd)} || { echo "no Secure Boot OVMF CODE (apt-get install ovmf)" >&2; exit 2; }
  case "$CODE" in *_4M*) VT=/usr/share/OVMF/OVMF_VARS_4M.ms.fd ;; *) VT=/usr/share/OVMF/OVMF_VARS.ms.fd ;; esac
  VT=${OVMF_VARS:-$VT}
  FW_ARGS+=(-global driver=cfi.pflash01,property=secure,value=on -global ICH9-LPC.disable_s3=1)
  ;;
*) usage ;;
esac
if [ "$MODE" != bios ]; then
  [ -f "$VT" ] || { echo "no OVMF VARS template $VT" >&2; exit 2; }
  cp "$VT" "$TMPD/vars.fd"
  FW_ARGS+=(-drive "if=pflash,format=raw,unit=0,readonly=on,file=$CODE"
            -drive "if=pflash,format=raw,unit=1,file=$TMPD/vars.fd")
fi

case "$ACCEL" in
tcg) ACCEL_ARGS=(-accel tcg) ;;
kvm) ACCEL_ARGS=(-accel kvm -cpu host) ;;
*) echo "ACCEL must be tcg or kvm" >&2; exit 2 ;;
esac

DRV="file=$IMAGE,format=$FORMAT,snapshot=on,cache=unsafe"
# VHD: size the disk from the footer's Current Size, like Hyper-V/Azure do.
# Without this, QEMU derives the size from the footer's CHS geometry for some
# creator apps ("vpc ", "qemu"; and in QEMU < 10.0 for every creator except
# "win ", "qem2", "d2v ", "CTXS", "tap\0"), which can cut the disk short of
# the backup GPT header. VPC_SIZE_CALC=chs reproduces that behaviour.
[ "$FORMAT" = vpc ] && DRV="$DRV,force_size_calc=${VPC_SIZE_CALC:-current_size}"
case "$DISK_IF" in
ide)    DISK_ARGS=(-drive "$DRV,if=ide,index=0,media=disk") ;;
virtio) DISK_ARGS=(-drive "$DRV,if=virtio") ;;
scsi)   DISK_ARGS=(-device virtio-scsi-pci,id=scsi0 -drive "$DRV,if=none,id=d0" -device scsi-hd,drive=d0,bus=scsi0.0,bootindex=0) ;;
nvme)   DISK_ARGS=(-drive "$DRV,if=none,id=d0" -device nvme,drive=d0,serial=vhdtool0,bootindex=0) ;;
*) echo "DISK_IF must be virtio, scsi, nvme or ide" >&2; exit 2 ;;
esac

: > "$LOG"
CMD=(qemu-system-x86_64 -machine "$MACHINE" "${ACCEL_ARGS[@]}" -m "$MEM" -smp "$SMP"
     -nodefaults -display none -vga none -no-reboot -monitor none
     -serial "file:$LOG" "${FW_ARGS[@]}" "${DISK_ARGS[@]}")
echo "[boot-test] $MODE $FORMAT $IMAGE (accel=$ACCEL, timeout=${TIMEOUT}s, log=$LOG)" >&2
echo "[boot-test] ${CMD[*]}" >&2
[ "$MODE" != bios ] && echo "[boot-test] firmware: CODE=$(readlink -f "$CODE") VARS=$VT" >&2

START=$(date +%s.%N)
timeout -k 5 "$TIMEOUT" "${CMD[@]}" 2> "$TMPD/qemu.err" &
QPID=$!
REASON=""
FATAL='grub rescue>|^grub> |[^a-z]grub> |Kernel panic|Access Denied|Security Violation|Verification failed|bad shim signature|No bootable device|Boot failed: not a bootable disk|UEFI Interactive Shell'
STALL=${STALL_TIMEOUT:-60}
LAST_SIZE=-1; LAST_CHANGE=$(date +%s)
while kill -0 "$QPID" 2>/dev/null; do
  SZ=$(stat -c %s "$LOG" 2>/dev/null || echo 0)
  if [ "$SZ" != "$LAST_SIZE" ]; then LAST_SIZE=$SZ; LAST_CHANGE=$(date +%s); fi
  if [ "$STALL" -gt 0 ] && [ $(( $(date +%s) - LAST_CHANGE )) -ge "$STALL" ]; then
    REASON="no serial output for ${STALL}s (hung)"
    kill "$QPID" 2>/dev/null; break
  fi
  if grep -aq 'VHDTOOL-BOOT-OK' "$LOG"; then
    # give the guest a moment to power off by itself, then stop it
    for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$QPID" 2>/dev/null || break; sleep 1; done
    kill "$QPID" 2>/dev/null; break
  fi
  if [ "$FAST_FAIL" = 1 ] && grep -aEq "$FATAL" "$LOG"; then
    sleep 3   # let the rest of the message reach the log
    REASON="fatal console message: $(grep -aEo "$FATAL" "$LOG" | head -n1)"
    kill "$QPID" 2>/dev/null; break
  fi
  sleep 0.5
done
wait "$QPID"; QRC=$?
END=$(date +%s.%N)
ELAPSED=$(awk -v a="$START" -v b="$END" 'BEGIN{printf "%.1f", b-a}')
# (drop qemu's harmless 'should be prefixed with "opt/"' warning about etc/sercon-port)
grep -v 'prefixed with "opt/"' "$TMPD/qemu.err" | sed 's/^/[qemu] /' >&2

GOT=$(tr -d '\r' < "$LOG" | grep -a -o 'VHDTOOL-BOOT-OK firmware=[a-z]* secureboot=[0-9]' | head -n1)
INFO=$(tr -d '\r' < "$LOG" | grep -a 'VHDTOOL-BOOT-INFO' | head -n1)
ROOT=$(tr -d '\r' < "$LOG" | grep -a -o 'VHDTOOL-ROOT-[A-Z]*.*' | head -n1)
[ -n "$INFO" ] && echo "[boot-test] $INFO" >&2
[ -n "$ROOT" ] && echo "[boot-test] $ROOT" >&2
ROOT_OK=1
if [ "$CHECK_ROOT" = 1 ]; then
  case "$ROOT" in VHDTOOL-ROOT-OK*) ;; *) ROOT_OK=0 ;; esac
fi
if [ -n "$EXPECT_PTABLE" ]; then
  case "$ROOT" in *" ptable=$EXPECT_PTABLE "*) ;; *) ROOT_OK=0 ;; esac
fi
if [ "$EXPECT_SEPARATE_BOOT" = 1 ]; then
  case "$ROOT" in *" boot=[/dev/"*) ;; *) ROOT_OK=0 ;; esac
fi
if [ "$GOT" = "VHDTOOL-BOOT-OK $EXPECT" ] && [ "$ROOT_OK" = 1 ]; then
  echo "[boot-test] PASS $MODE ($FORMAT): '$GOT' after ${ELAPSED}s" >&2
  exit 0
fi
[ "$QRC" = 124 ] && [ -z "$REASON" ] && REASON="timeout after ${TIMEOUT}s"
[ -n "$GOT" ] && REASON="wrong marker: got '$GOT', expected 'VHDTOOL-BOOT-OK $EXPECT'"
[ "$GOT" = "VHDTOOL-BOOT-OK $EXPECT" ] && [ "$ROOT_OK" = 0 ] && REASON="root check failed (CHECK_ROOT=$CHECK_ROOT EXPECT_PTABLE=$EXPECT_PTABLE EXPECT_SEPARATE_BOOT=$EXPECT_SEPARATE_BOOT): '${ROOT:-no VHDTOOL-ROOT line}'"
[ -z "$REASON" ] && REASON="qemu exited (rc=$QRC) without the marker"
echo "[boot-test] FAIL $MODE ($FORMAT): $REASON after ${ELAPSED}s; last serial lines:" >&2
tr -d '\r' < "$LOG" | sed 's/\x1b\[[0-9;?]*[A-Za-z]//g' | grep -av '^[[:space:]]*$' | tail -n 25 | sed 's/^/    | /' >&2
exit 1
