#!/bin/bash
# make-gen1-image.sh [--separate-boot] OUT.raw [SIZE_MIB]
#
# Builds a small, sparse, raw "Azure Generation-1 style" disk image:
#   * MBR (DOS) partition table, start 1 MiB (LBA 2048), type 0x83, the last
#     partition ending at the LAST sector of the disk (like Azure images,
#     where the last partition fills the disk). Layouts:
#       default          one partition: ext4 root (active) holding /boot too;
#       --separate-boot  two primaries: p1 = ext4 /boot (active, BOOT_MIB MiB),
#                        p2 = ext4 root (rest of the disk); grub-pc's prefix is
#                        (hd0,msdos1)/grub, i.e. on the /boot partition, and the
#                        root fs's /etc/fstab mounts p1 on /boot by UUID;
#   * ext4 made without loop devices (mkfs.ext4 -E offset= -d DIR) holding a
#     Debian cloud kernel in /boot, an initramfs built from busybox-static,
#     /boot/grub/grub.cfg and the i386-pc GRUB modules;
#   * GRUB (grub-pc, i386-pc) in the MBR + the 1 MiB post-MBR gap, so the image
#     boots under a BIOS (SeaBIOS in QEMU);
#   * the UEFI boot files a real Debian system would carry in its root fs, so
#     that a converter (or esp-files.sh) can pull them out of the image:
#       /usr/lib/shim/shimx64.efi.signed            (shim-signed, Microsoft-signed)
#       /usr/lib/shim/{mmx64,fbx64}.efi.signed, BOOTX64.CSV
#       /usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed (grub-efi-amd64-signed)
#     (the unsigned x86_64-efi module tree, 19 MiB, is left out: nothing in the
#     signed boot path reads it).
#
# The initramfs /init prints, to the serial console (ttyS0),
#   VHDTOOL-BOOT-OK firmware=<bios|uefi> secureboot=<0|1>
# (firmware = uefi iff /sys/firmware/efi exists; secureboot from the SecureBoot
# EFI variable read through efivarfs) and then powers the VM off (poweroff -f).
# Before that it finds the root fs by the root=UUID= on its command line,
# mounts it read-only, runs md5sum -c on /etc/vhdtool-test.md5 (every file of
# the root fs); if the root's /etc/fstab names a separate /boot by UUID, it
# mounts that too and runs md5sum -c on /etc/vhdtool-test-boot.md5 (every file
# of the /boot fs). It prints VHDTOOL-ROOT-OK ... or VHDTOOL-ROOT-FAIL reason=...
# (boot-test.sh requires ROOT-OK unless CHECK_ROOT=0).
#
# Nothing is mounted on the host and no loop device is used; the only
# root-only step is mknod of /dev/console in the initramfs (skipped if it fails).
#
# BIOS loader: grub-pc (i386-pc) embedded by hand (grub-bios-setup refuses a
# plain image file, see below). syslinux/extlinux is not used: extlinux only
# installs onto a MOUNTED file system, and syslinux only onto FAT, while the
# root here (as on real images) is ext4.
#
# Environment knobs:
#   CACHE_DIR   where downloaded .debs are cached  (default /tmp/vhdtool-boot/cache)
#   KERNEL_DEB  use this linux-image-*.deb instead of downloading linux-image-cloud-amd64
#   DISK_ID     MBR disk identifier (default 0x56484454 = "VHDT")
#   ROOT_UUID   root ext4 UUID (default: fixed, see below)
#   BOOT_UUID   /boot ext4 UUID with --separate-boot (default: fixed)
#   BOOT_MIB    /boot partition size in MiB with --separate-boot (default 64)
#   FILLER_MIB  add this many MiB of random data to the root fs (default 0)
#   KEEP_WORK=1 keep the scratch directory
#
# Needs (Debian 12 packages): fdisk (sfdisk), e2fsprogs (>= 1.43 for -d),
#   grub-pc-bin, grub-common, busybox-static, cpio, gzip, shim-signed,
#   grub-efi-amd64-signed, apt (apt-get download), dpkg (dpkg -x),
#   coreutils (od, dd, truncate), findutils. See install-deps.sh.
set -euo pipefail

usage() { echo "usage: $0 [--separate-boot] OUT.raw [SIZE_MIB (default 256)]" >&2; exit 2; }
SEPARATE_BOOT=0
if [ "${1:-}" = --separate-boot ]; then SEPARATE_BOOT=1; shift; fi
[ $# -ge 1 ] && [ $# -le 2 ] || usage
OUT=$1
SIZE_MIB=${2:-256}
CACHE_DIR=${CACHE_DIR:-/tmp/vhdtool-boot/cache}
DISK_ID=${DISK_ID:-0x56484454}
ROOT_UUID=${ROOT_UUID:-5648445a-0000-4000-8000-00000000a001}
BOOT_UUID=${BOOT_UUID:-5648445a-0000-4000-8000-00000000b007}
BOOT_MIB=${BOOT_MIB:-64}
PART_START=2048          # sectors (1 MiB)
SECTOR=512

case "$SIZE_MIB" in ''|*[!0-9]*) usage ;; esac
[ "$SIZE_MIB" -ge 64 ] || { echo "SIZE_MIB must be >= 64" >&2; exit 2; }
if [ "$SEPARATE_BOOT" = 1 ]; then
  [ "$BOOT_MIB" -ge 32 ] || { echo "BOOT_MIB must be >= 32" >&2; exit 2; }
  [ "$SIZE_MIB" -ge $(( BOOT_MIB + 33 )) ] || { echo "SIZE_MIB must be >= BOOT_MIB + 33" >&2; exit 2; }
fi

need() { for t in "$@"; do command -v "$t" >/dev/null 2>&1 || { echo "missing tool: $t" >&2; exit 2; }; done; }
need sfdisk mkfs.ext4 grub-mkimage cpio gzip dpkg apt-get truncate dd od
[ -x /bin/busybox ] || { echo "missing /bin/busybox (apt-get install busybox-static)" >&2; exit 2; }
for f in /usr/lib/shim/shimx64.efi.signed /usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed \
         /usr/lib/grub/i386-pc/boot.img; do
  [ -f "$f" ] || { echo "missing $f (install shim-signed grub-efi-amd64-signed grub-pc-bin)" >&2; exit 2; }
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/make-gen1.XXXXXX")
cleanup() { [ "${KEEP_WORK:-0}" = 1 ] && echo "work dir kept: $WORK" >&2 || rm -rf "$WORK"; }
trap cleanup EXIT

log() { echo "[make-gen1] $*" >&2; }

# ---------------------------------------------------------------- kernel ----
# Fetch the Debian cloud kernel (Debian-signed vmlinuz) with apt-get download
# and unpack it with dpkg -x. linux-image-cloud-amd64 is a metapackage: resolve
# its dependency to the real linux-image-<abi>-cloud-amd64 package.
mkdir -p "$CACHE_DIR"
if [ -z "${KERNEL_DEB:-}" ]; then
  KPKG=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
  [ -n "$KPKG" ] || { echo "cannot resolve linux-image-cloud-amd64 (run apt-get update)" >&2; exit 2; }
  KERNEL_DEB=$(ls "$CACHE_DIR"/"${KPKG}"_*.deb 2>/dev/null | head -n1 || true)
  if [ -z "$KERNEL_DEB" ]; then
    log "downloading $KPKG"
    # apt-get download writes to the cwd; as root it warns about the _apt sandbox; harmless.
    (cd "$CACHE_DIR" && apt-get download -q "$KPKG" 2>&1 | grep -v 'unsandboxed' >&2 || true)
    KERNEL_DEB=$(ls "$CACHE_DIR"/"${KPKG}"_*.deb | head -n1)
  fi
fi
log "kernel package: $KERNEL_DEB"
dpkg -x "$KERNEL_DEB" "$WORK/kpkg"
VMLINUZ=$(ls "$WORK"/kpkg/boot/vmlinuz-* | head -n1)
KVER=${VMLINUZ##*/vmlinuz-}
log "kernel version: $KVER"

# ------------------------------------------------------------- initramfs ----
# busybox-static + a few of the kernel's own (Debian-signed) modules:
#   efivarfs                      to read the SecureBoot variable
#   virtio_pci/_blk/_scsi, sd_mod, ata_piix, ata_generic
#                                 to see the boot disk (the cloud kernel has NO
#                                 AHCI driver and builds NVMe in), so /init can
#                                 mount the root fs read-only and verify it
#   vfat, nls_cp437, nls_ascii    to look at the ESP
IR=$WORK/initrd
MODDIR=$WORK/kpkg/lib/modules/$KVER
mkdir -p "$IR"/bin "$IR"/dev "$IR"/proc "$IR"/sys "$IR"/run "$IR"/mnt "$IR"/bootfs "$IR"/esp "$IR/lib/modules/$KVER"
cp /bin/busybox "$IR"/bin/busybox
# copy a module and (recursively) the modules named in its .modinfo "depends="
add_mod() {
  local f dep
  f=$(find "$MODDIR" -name "$1.ko" -o -name "$1.ko.*" | head -n1)
  [ -n "$f" ] || { log "module $1 not found (built in?)"; return 0; }
  [ -e "$IR/lib/modules/$KVER/${f#"$MODDIR"/}" ] && return 0
  mkdir -p "$IR/lib/modules/$KVER/$(dirname "${f#"$MODDIR"/}")"
  cp "$f" "$IR/lib/modules/$KVER/${f#"$MODDIR"/}"
  for dep in $(tr '\0' '\n' < "$f" | sed -n 's/^depends=//p' | tr ',' ' '); do add_mod "$dep"; done
}
for m in efivarfs virtio_pci virtio_blk virtio_scsi sd_mod ata_piix ata_generic vfat nls_cp437 nls_ascii; do add_mod "$m"; done
cp "$MODDIR"/modules.builtin "$MODDIR"/modules.order "$IR/lib/modules/$KVER/" 2>/dev/null || true
/bin/busybox depmod -b "$IR" "$KVER"
# The kernel opens /dev/console for init before anything is mounted.
mknod -m 600 "$IR"/dev/console c 5 1 2>/dev/null || log "mknod /dev/console failed (init re-opens it after devtmpfs)"
cat > "$IR"/init <<'EOF'
#!/bin/busybox sh
# vhdtool boot-test initramfs /init.
# Prints to the console (= ttyS0, see console= on the kernel command line):
#   VHDTOOL-BOOT-INFO ...                       diagnostics
#   VHDTOOL-ROOT-OK dev=.. uuid=.. ptable=gpt|dos files=N boot=[..] esp=[..]
#     or VHDTOOL-ROOT-FAIL reason=..            the root fs named by root=UUID=
#                                               on the kernel command line was found,
#                                               mounted read-only, and every file
#                                               in /etc/vhdtool-test.md5 matched;
#                                               a separate /boot named by UUID in
#                                               its /etc/fstab was found, mounted
#                                               and /etc/vhdtool-test-boot.md5 matched
#   VHDTOOL-BOOT-OK firmware=<bios|uefi> secureboot=<0|1>
# and powers off.
/bin/busybox mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
for m in efivarfs virtio_pci virtio_blk virtio_scsi sd_mod ata_piix ata_generic vfat nls_cp437 nls_ascii; do
  modprobe "$m" 2>/dev/null
done

# ---- firmware + Secure Boot
fw=bios; sb=0; src=none
if [ -d /sys/firmware/efi ]; then
  fw=uefi
  mount -t efivarfs efivarfs /sys/firmware/efi/efivars
  # SecureBoot-<EFI_GLOBAL_VARIABLE GUID>: 4 bytes attributes, then 1 byte value.
  # (efivarfs files are not seekable: read the whole variable, don't od -j)
  v=/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c
  raw=$(cat "$v" 2>/dev/null | od -An -tu1 | tr -s ' \n' ' ')
  set -- $raw
  if [ $# -ge 5 ]; then
    src="efivar[$raw]"
    [ "$5" = 1 ] && sb=1
  elif dmesg | grep -q 'secureboot: Secure boot enabled'; then
    src=dmesg; sb=1
  fi
fi
mkdir -p /sys/kernel/security
mount -t securityfs securityfs /sys/kernel/security 2>/dev/null
lock=$(cat /sys/kernel/security/lockdown 2>/dev/null)

# ---- root file system check
uuid=$(sed -n 's/.*root=UUID=\([^ ]*\).*/\1/p' /proc/cmdline)
dev=""; i=0
while [ -n "$uuid" ] && [ $i -lt 50 ]; do
  dev=$(findfs "UUID=$uuid" 2>/dev/null) && break
  dev=""; i=$((i+1)); sleep 0.1
done
if [ -z "$uuid" ]; then
  rootline="VHDTOOL-ROOT-FAIL reason=no-root=UUID=-on-cmdline"
elif [ -z "$dev" ]; then
  rootline="VHDTOOL-ROOT-FAIL reason=uuid-not-found uuid=$uuid blockdevs=[$(ls /sys/class/block | tr '\n' ' ')]"
elif ! mount -t ext4 -o ro "$dev" /mnt; then
  rootline="VHDTOOL-ROOT-FAIL reason=mount-failed dev=$dev uuid=$uuid"
else
  part=${dev#/dev/}
  disk=$(basename "$(readlink -f "/sys/class/block/$part/..")")
  # GPT header signature at LBA 1
  [ "$(dd if=/dev/$disk bs=8 skip=64 count=1 2>/dev/null)" = "EFI PART" ] && pt=gpt || pt=dos
  n=$(wc -l < /mnt/etc/vhdtool-test.md5 2>/dev/null)
  if [ -z "$n" ] || [ "$n" = 0 ]; then
    rootline="VHDTOOL-ROOT-FAIL reason=no-/etc/vhdtool-test.md5 dev=$dev"
  else
    bad=$(cd /mnt && md5sum -c etc/vhdtool-test.md5 2>&1 | grep -v ': OK$')
    if [ -n "$bad" ]; then
      rootline="VHDTOOL-ROOT-FAIL reason=checksum-mismatch dev=$dev [$(echo "$bad" | head -n3 | tr '\n' ' ')]"
    else
      # a separate /boot (fstab line "UUID=... /boot ..."): find, mount, check
      boot=none
      buuid=$(awk '$2 == "/boot" && $1 ~ /^UUID=/ { sub(/^UUID=/, "", $1); print $1; exit }' /mnt/etc/fstab 2>/dev/null)
      if [ -n "$buuid" ]; then
        bdev=$(findfs "UUID=$buuid" 2>/dev/null)
        if [ -z "$bdev" ]; then
          boot=fail
          bad="boot-uuid-not-found uuid=$buuid"
        elif ! mount -t ext4 -o ro "$bdev" /bootfs; then
          boot=fail
          bad="boot-mount-failed dev=$bdev uuid=$buuid"
        else
          bn=$(wc -l < /mnt/etc/vhdtool-test-boot.md5 2>/dev/null)
          bbad=$(cd /bootfs && md5sum -c /mnt/etc/vhdtool-test-boot.md5 2>&1 | grep -v ': OK$')
          if [ -z "$bn" ] || [ "$bn" = 0 ]; then
            boot=fail; bad="no-/etc/vhdtool-test-boot.md5"
          elif [ -n "$bbad" ]; then
            boot=fail; bad="boot-checksum-mismatch dev=$bdev [$(echo "$bbad" | head -n3 | tr '\n' ' ')]"
          else
            boot="$bdev uuid=$buuid files=$bn"
          fi
          umount /bootfs
        fi
      fi
    fi
    if [ -n "$bad" ]; then
      rootline="VHDTOOL-ROOT-FAIL reason=$bad"
    else
      # look for an ESP: a vfat partition on the same disk holding EFI/BOOT/BOOTX64.EFI
      esp=none
      for p in /sys/class/block/"$disk"/"$disk"*; do
        p=${p##*/}
        if mount -t vfat -o ro "/dev/$p" /esp 2>/dev/null; then
          [ -e /esp/EFI/BOOT/BOOTX64.EFI ] && esp="/dev/$p:$(cd /esp && ls -d EFI/*/ | tr '\n' ' ' | sed 's/ $//')"
          umount /esp
        fi
      done
      rootline="VHDTOOL-ROOT-OK dev=$dev uuid=$uuid ptable=$pt files=$n boot=[$boot] esp=[$esp]"
    fi
  fi
  umount /mnt 2>/dev/null
fi

echo "VHDTOOL-BOOT-INFO kernel=$(uname -r) sbsource=$src lockdown=[$lock] cmdline=[$(cat /proc/cmdline)]"
echo "$rootline"
echo "VHDTOOL-BOOT-OK firmware=$fw secureboot=$sb"
sync
poweroff -f
sleep 5
echo o > /proc/sysrq-trigger
EOF
chmod 755 "$IR"/init
(cd "$IR" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) | gzip -9 > "$WORK/initrd.img"

# ------------------------------------------------------------ root tree ----
# R = the root fs tree; B = the tree holding the kernel and grub: R/boot in
# the default layout, the separate /boot fs otherwise (then paths inside
# grub.cfg and the core.img prefix are relative to the /boot fs: /grub, /vmlinuz-*).
R=$WORK/root
mkdir -p "$R"/boot "$R"/etc "$R"/usr/lib/shim "$R"/usr/lib/grub/x86_64-efi-signed "$R"/lib/modules
if [ "$SEPARATE_BOOT" = 1 ]; then
  B=$WORK/bootfs; BP=""                   # BP: /boot's path as GRUB sees it
  GRUB_UUID=$BOOT_UUID
else
  B=$R/boot; BP=/boot
  GRUB_UUID=$ROOT_UUID
fi
mkdir -p "$B"/grub/i386-pc
cp "$VMLINUZ" "$B/vmlinuz-$KVER"
cp "$WORK/initrd.img" "$B/initrd.img-$KVER"
cp "$WORK"/kpkg/boot/config-"$KVER" "$B"/ 2>/dev/null || true
ln -s "boot/vmlinuz-$KVER" "$R/vmlinuz"
ln -s "boot/initrd.img-$KVER" "$R/initrd.img"
cp -a /usr/lib/shim/. "$R"/usr/lib/shim/
cp -a /usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed "$R"/usr/lib/grub/x86_64-efi-signed/
# the i386-pc modules where grub-install would put them (core.img has all it
# needs built in; these make the layout realistic and are checksummed too)
cp /usr/lib/grub/i386-pc/*.mod /usr/lib/grub/i386-pc/*.lst "$B"/grub/i386-pc/
{
  echo "UUID=$ROOT_UUID / ext4 rw,discard,errors=remount-ro 0 1"
  if [ "$SEPARATE_BOOT" = 1 ]; then echo "UUID=$BOOT_UUID /boot ext4 rw,discard 0 2"; fi
} > "$R"/etc/fstab
cat > "$R"/etc/os-release <<'EOF'
PRETTY_NAME="vhdtool boot-test image (Debian 12 kernel + busybox initramfs)"
ID=debian
VERSION_ID="12"
EOF
# The one grub.cfg, used by BIOS grub-pc and (via a stub in the ESP) by UEFI grub.
# Kernel console on ttyS0 only, so /dev/console = serial.
cat > "$B"/grub/grub.cfg <<EOF
# vhdtool boot-test grub.cfg
set timeout=0
set default=0
serial --unit=0 --speed=115200
terminal_input serial console
terminal_output serial console
echo "vhdtool-test grub.cfg loaded from \$root (cmdpath=\$cmdpath)"
menuentry 'vhdtool boot-test ($KVER)' {
  search --no-floppy --fs-uuid --set=root $GRUB_UUID
  echo 'Loading linux $KVER ...'
  linux $BP/vmlinuz-$KVER root=UUID=$ROOT_UUID ro console=ttyS0,115200 panic=10
  echo 'Loading initrd ...'
  initrd $BP/initrd.img-$KVER
}
EOF

# Optional filler of random data (FILLER_MIB, default 0) so the checksum check
# below covers more of the partition (costs that much real disk space).
if [ "${FILLER_MIB:-0}" -gt 0 ]; then
  mkdir -p "$R"/var/lib/vhdtool-test
  head -c "$((FILLER_MIB * 1024 * 1024))" /dev/urandom > "$R"/var/lib/vhdtool-test/filler.bin
fi
# Checksums of every regular file; the test initramfs mounts the root fs
# read-only and runs md5sum -c on this, so a conversion that damages the root
# file system's data is caught (VHDTOOL-ROOT-FAIL reason=checksum-mismatch).
# With --separate-boot, /etc/vhdtool-test-boot.md5 (in the root fs) covers
# every file of the /boot fs the same way.
md5tree() { (cd "$1" && find . -type f ! -path ./etc/vhdtool-test.md5 | LC_ALL=C sort | while IFS= read -r f; do md5sum "$f"; done); }
if [ "$SEPARATE_BOOT" = 1 ]; then
  md5tree "$B" > "$WORK/md5-boot" && mv "$WORK/md5-boot" "$R"/etc/vhdtool-test-boot.md5
fi
md5tree "$R" > "$WORK/md5" && mv "$WORK/md5" "$R"/etc/vhdtool-test.md5

# ------------------------------------------------------------------ disk ----
rm -f "$OUT"
truncate -s "${SIZE_MIB}M" "$OUT"
TOTAL_SECTORS=$(( SIZE_MIB * 1024 * 1024 / SECTOR ))
if [ "$SEPARATE_BOOT" = 1 ]; then
  BOOT_START=$PART_START
  BOOT_SECTORS=$(( BOOT_MIB * 2048 ))
  ROOT_START=$(( BOOT_START + BOOT_SECTORS ))
  ROOT_SECTORS=$(( TOTAL_SECTORS - ROOT_START ))   # ends at the last sector
  sfdisk --quiet --no-reread --no-tell-kernel "$OUT" <<EOF
label: dos
label-id: $DISK_ID
unit: sectors

start=$BOOT_START, size=$BOOT_SECTORS, type=83, bootable
start=$ROOT_START, size=$ROOT_SECTORS, type=83
EOF
else
  ROOT_START=$PART_START
  ROOT_SECTORS=$(( TOTAL_SECTORS - ROOT_START ))   # ends at the last sector
  sfdisk --quiet --no-reread --no-tell-kernel "$OUT" <<EOF
label: dos
label-id: $DISK_ID
unit: sectors

start=$ROOT_START, size=$ROOT_SECTORS, type=83, bootable
EOF
fi

# ext4 written straight into the image at the partition offset.
# ^metadata_csum_seed,^orphan_file: keep GRUB 2.06 able to read it (harmless if
# the features are unknown to / already off in this mke2fs).
FEAT="^metadata_csum_seed"
mkext4() {  # mkext4 LABEL UUID START_SECTOR SECTORS TREE
  mkfs.ext4 -q -F -L "$1" -U "$2" -O "$FEAT" \
    -E offset=$(( $3 * SECTOR )),root_owner=0:0 \
    -d "$5" "$OUT" $(( $4 * SECTOR / 1024 ))k
}
if [ "$SEPARATE_BOOT" = 1 ]; then mkext4 boot "$BOOT_UUID" "$BOOT_START" "$BOOT_SECTORS" "$B"; fi
mkext4 root "$ROOT_UUID" "$ROOT_START" "$ROOT_SECTORS" "$R"

# -------------------------------------------------------- BIOS bootloader ----
# core.img: everything needed to read the MBR partition's ext4 is built in; the
# prefix points at the grub directory on partition 1 (/boot/grub on the root
# fs, or /grub on a separate /boot fs; the i386-pc modules and grub.cfg live
# there). normal.mod is built in too, so a missing module dir still boots.
G=$WORK/grub-i386
mkdir -p "$G"
cp /usr/lib/grub/i386-pc/boot.img "$G"/
grub-mkimage -O i386-pc -o "$G/core.img" -p "(hd0,msdos1)$BP/grub" \
  biosdisk part_msdos ext2 search search_fs_uuid normal configfile linux echo serial terminal test
CORE_SECTORS=$(( ($(stat -c %s "$G/core.img") + 511) / 512 ))
[ "$CORE_SECTORS" -lt $(( PART_START - 1 )) ] || { echo "core.img too large for the MBR gap" >&2; exit 1; }
# grub-bios-setup (/usr/lib/grub/i386-pc/grub-bios-setup, not on PATH) cannot
# be used on a plain image file here: it always
# "guesses the root device" of the -d directory (which lives on the host
# disk, e.g. /dev/vda, not visible in a container) and fails with
#   error: guessing the root device failed, because of `disk `hostdisk//dev/vda' not found'
# (-s and a device.map do not help). So embed by hand, exactly what
# grub-bios-setup does for an MBR-gap install without Reed-Solomon codes:
#   * boot.img bytes 0..439 -> MBR (keeps disk signature + partition table);
#     its KERNEL_SECTOR field (0x5c, u64) already defaults to 1 and its
#     BOOT_DRIVE (0x64) to 0xff ("use the drive the BIOS booted from");
#   * NOP the 2-byte drive-check jump at 0x66 (grub-bios-setup does this for
#     hard disks, for BIOSes that pass a bogus boot drive);
#   * core.img -> LBA 1..; grub-mkimage already set the diskboot blocklist
#     (start LBA 2, len = sectors-1, segment 0x820) for that placement.
[ "$(od -An -tu8 -j $((0x5c)) -N 8 "$G/boot.img" | tr -d ' ')" = 1 ] || { echo "unexpected boot.img kernel sector" >&2; exit 1; }
[ "$(od -An -tu8 -j $((0x1f4)) -N 8 "$G/core.img" | tr -d ' ')" = 2 ] || { echo "unexpected core.img blocklist start" >&2; exit 1; }
[ "$(od -An -tu2 -j $((0x1fc)) -N 2 "$G/core.img" | tr -d ' ')" = $((CORE_SECTORS - 1)) ] || { echo "unexpected core.img blocklist length" >&2; exit 1; }
dd if="$G/boot.img" of="$OUT" bs=440 count=1 conv=notrunc status=none
printf '\220\220' | dd of="$OUT" bs=1 seek=$((0x66)) conv=notrunc status=none
dd if="$G/core.img" of="$OUT" bs=512 seek=1 conv=notrunc status=none
log "grub i386-pc installed by hand: boot.img in MBR, core.img ($CORE_SECTORS sectors) at LBA 1"

if [ "$SEPARATE_BOOT" = 1 ]; then
  log "done: $OUT (${SIZE_MIB} MiB, p1 /boot = sectors $BOOT_START..$((BOOT_START+BOOT_SECTORS-1)) ext4 UUID $BOOT_UUID, p2 root = sectors $ROOT_START..$((TOTAL_SECTORS-1)) ext4 UUID $ROOT_UUID, kernel $KVER)"
else
  log "done: $OUT (${SIZE_MIB} MiB, partition 1 = sectors $ROOT_START..$((TOTAL_SECTORS-1)), ext4 UUID $ROOT_UUID, kernel $KVER)"
fi
sfdisk -l "$OUT" >&2 || true
