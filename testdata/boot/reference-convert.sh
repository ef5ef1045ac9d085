#!/bin/bash
# reference-convert.sh IN OUT
#
# Reference Gen1 -> Gen2 conversion done ONLY with standard tools, to prove
# the boot harness (boot-test.sh, tests/boot.rs) and to serve as the oracle
# for `vhdtool convert`. IN is a raw disk image or a fixed VHD (detected by
# its footer); OUT has the same format (a fixed VHD in -> a fixed VHD out,
# written by to-vhd.sh next to this script). IN is never modified.
#   1. copy IN's disk data to a scratch raw file (sparse) and grow it by
#      ESP_MIB+1 MiB (truncate);
#   2. sgdisk -g: convert the MBR table to GPT in place (the partitions keep
#      their sectors; the primary GPT overwrites LBA 1..33, i.e. the start of
#      the embedded grub-pc core.img, so the result no longer boots under BIOS);
#   3. sgdisk -n: add a partition, type EF00 (EFI System), in the new space
#      after the last partition, 1 MiB aligned, ESP_MIB MiB long;
#   4. build a FAT32 file system in a separate file (mkfs.fat -F 32), fill it
#      with mtools, dd it into the ESP's sectors (conv=notrunc);
#   5. the ESP's content is the boot-files tree: $VHDTOOL_BOOT_FILES if set
#      (the same directory `vhdtool convert --boot-files DIR` gets), else made
#      by esp-files.sh from IN: shim (-> EFI/BOOT/BOOTX64.EFI), signed grub
#      (-> EFI/BOOT/grubx64.efi), MokManager (-> EFI/BOOT/mmx64.efi), all
#      pulled out of IN's root ext4 with debugfs (no mount), and a grub.cfg stub
#      (search.fs_uuid + set prefix + configfile) chaining to the system's own
#      grub.cfg (on the root fs, or on a separate /boot fs).
#
# Debian's signed grubx64.efi has a built-in prefix of "/EFI/debian" on the
# device it was loaded from and an embedded early config that sources
#   $prefix/grub.cfg           if /EFI/debian exists on the ESP, else
#   $cmdpath/grub.cfg          (= the directory grubx64.efi was loaded from)
# so the stub works in either EFI/debian/ or EFI/BOOT/.
#
# Environment knobs:
#   VHDTOOL_BOOT_FILES  directory copied to the root of the ESP (see 5.)
#   ESP_MIB     ESP size in MiB (default 260)
#   ESP_LAYOUT  removable (default): the boot-files tree as is
#               standalone: no shim / no signed grub: EFI/BOOT/BOOTX64.EFI is an
#                       unsigned grub-mkstandalone image with the boot files'
#                       EFI/BOOT/grub.cfg stub embedded (boots under plain UEFI
#                       only, NOT under Secure Boot: a negative control)
#
# Needs: gdisk (sgdisk), dosfstools (mkfs.fat), mtools (mmd, mcopy),
#        e2fsprogs (debugfs, dumpe2fs), fdisk (sfdisk, for reading the MBR),
#        qemu-utils (qemu-img, VHD output only), coreutils;
#        grub-efi-amd64-bin + grub-common for ESP_LAYOUT=standalone.
set -euo pipefail

[ $# -eq 2 ] || { echo "usage: $0 IN OUT" >&2; exit 2; }
IN=$1 OUT=$2
H=$(cd "$(dirname "$0")" && pwd)
ESP_MIB=${ESP_MIB:-260}
ESP_LAYOUT=${ESP_LAYOUT:-removable}
export MTOOLS_SKIP_CHECK=1
log() { echo "[ref-convert] $*" >&2; }
for t in sgdisk sfdisk mkfs.fat mmd mcopy mdir debugfs dumpe2fs truncate dd; do
  command -v "$t" >/dev/null || { echo "missing tool: $t" >&2; exit 2; }
done
[ -f "$IN" ] || { echo "no such image: $IN" >&2; exit 2; }
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ref-convert.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# ------------------------------------------------- input format (VHD?) ----
IN_SIZE=$(stat -c %s "$IN")
IS_VHD=0
if [ "$IN_SIZE" -gt 512 ] && [ "$(tail -c 512 "$IN" | head -c 8 | tr -d '\0')" = conectix ]; then
  [ "$(tail -c 512 "$IN" | od -An -tx1 -j 60 -N 4 | tr -d ' ')" = 00000002 ] \
    || { echo "$IN: only fixed VHDs are supported by the reference converter" >&2; exit 2; }
  IS_VHD=1
fi
RAW=$WORK/disk.raw
cp --sparse=always "$IN" "$RAW"
[ "$IS_VHD" = 1 ] && truncate -s -512 "$RAW"
log "source: $IN ($([ "$IS_VHD" = 1 ] && echo "fixed VHD" || echo raw), $(( $(stat -c %s "$RAW") / 1048576 )) MiB of disk data)"

# -------------------------------------------------------- boot files ----
BOOT_FILES=${VHDTOOL_BOOT_FILES:-}
if [ -z "$BOOT_FILES" ]; then
  BOOT_FILES=$WORK/boot-files
  "$H/esp-files.sh" "$RAW" "$BOOT_FILES"
fi
[ -f "$BOOT_FILES/EFI/BOOT/BOOTX64.EFI" ] || { echo "no EFI/BOOT/BOOTX64.EFI in $BOOT_FILES" >&2; exit 1; }

# the end of the last partition (sectors); partitions keep their place
LAST_END=$(sfdisk -d "$RAW" | sed -n 's/^[^ ]* *: *start= *\([0-9]*\), *size= *\([0-9]*\),.*/\1 \2/p' \
           | awk 'BEGIN{m=0} {e=$1+$2; if (e>m) m=e} END{print m}')
[ "$LAST_END" -gt 0 ] || { echo "cannot read the MBR partitions of $IN" >&2; exit 1; }

# ------------------------------------------------------------ the disk ----
truncate -s "+$((ESP_MIB + 1))M" "$RAW"
TOTAL=$(( $(stat -c %s "$RAW") / 512 ))
# MBR -> GPT in place. sgdisk -g refuses nothing here (the disk has been grown:
# on the image as built, whose last partition ends at the last sector, it
# aborts with "Secondary partition table overlaps the last partition by 33
# blocks!", exit 4); the old grub core.img
# in LBA 1.. is partly overwritten by the GPT header/entries (expected).
sgdisk -g "$RAW" >"$WORK/sgdisk-g.log" 2>&1 || { cat "$WORK/sgdisk-g.log" >&2; exit 1; }
# put the backup header at the (new) end, then add the ESP after the last partition
ESP_START=$(( ( (LAST_END + 2047) / 2048 ) * 2048 ))
ESP_NUM=$(( $(sfdisk -d "$RAW" | grep -c ': *start=') + 1 ))
ESP_END=$(( ESP_START + ESP_MIB * 2048 - 1 ))
[ "$ESP_END" -le $(( TOTAL - 34 )) ] || { echo "ESP does not fit" >&2; exit 1; }
sgdisk -e -n "$ESP_NUM:$ESP_START:$ESP_END" -t "$ESP_NUM:EF00" -c "$ESP_NUM:EFI System Partition" "$RAW" >"$WORK/sgdisk-n.log" 2>&1 || { cat "$WORK/sgdisk-n.log" >&2; exit 1; }
sgdisk -v "$RAW" | grep -q 'No problems found' || { sgdisk -v "$RAW" >&2; exit 1; }

# ------------------------------------------------------------- the ESP ----
ESP=$WORK/esp.img
truncate -s "${ESP_MIB}M" "$ESP"
mkfs.fat -F 32 -n ESP -i 5648445a "$ESP" >/dev/null
case "$ESP_LAYOUT" in
removable)
  (cd "$BOOT_FILES" && find . -mindepth 1 -type d | LC_ALL=C sort) | while IFS= read -r d; do
    mmd -i "$ESP" "::/${d#./}"
  done
  (cd "$BOOT_FILES" && find . -type f | LC_ALL=C sort) | while IFS= read -r f; do
    mcopy -i "$ESP" "$BOOT_FILES/${f#./}" "::/${f#./}"
  done
  ;;
standalone)
  command -v grub-mkstandalone >/dev/null || { echo "missing grub-mkstandalone" >&2; exit 2; }
  [ -d /usr/lib/grub/x86_64-efi ] || { echo "missing /usr/lib/grub/x86_64-efi (grub-efi-amd64-bin)" >&2; exit 2; }
  [ -f "$BOOT_FILES/EFI/BOOT/grub.cfg" ] || { echo "no EFI/BOOT/grub.cfg in $BOOT_FILES" >&2; exit 1; }
  grub-mkstandalone -O x86_64-efi -o "$WORK/BOOTX64.EFI" \
    --modules="part_gpt part_msdos ext2 fat search search_fs_uuid configfile linux echo serial terminal test normal" \
    --locales= --themes= --fonts= \
    "boot/grub/grub.cfg=$BOOT_FILES/EFI/BOOT/grub.cfg"
  mmd -i "$ESP" ::/EFI ::/EFI/BOOT
  mcopy -i "$ESP" "$WORK/BOOTX64.EFI" ::/EFI/BOOT/BOOTX64.EFI
  ;;
*) echo "unknown ESP_LAYOUT=$ESP_LAYOUT" >&2; exit 2 ;;
esac
dd if="$ESP" of="$RAW" bs=1M seek=$(( ESP_START / 2048 )) conv=notrunc,sparse status=none

sgdisk -p "$RAW" | sed -n '/^Number/,$p' >&2
mdir -/ -i "$RAW@@$((ESP_START * 512))" ::/EFI 2>/dev/null | grep -E '^(Directory| *[A-Za-z0-9].*[0-9]{4}-)' >&2 || true

# ------------------------------------------------------------ output ----
if [ "$IS_VHD" = 1 ]; then
  "$H/to-vhd.sh" "$RAW" "$OUT"
else
  mv "$RAW" "$OUT"
fi
log "done: $OUT ($((TOTAL / 2048)) MiB$([ "$IS_VHD" = 1 ] && echo ", fixed VHD")): GPT, partitions kept, p$ESP_NUM = ESP FAT32 (LBA $ESP_START..$ESP_END), layout=$ESP_LAYOUT"
