#!/bin/sh
# demo.sh [VHDTOOL]: the main job on a generated demo image.
# Builds a small Generation-1 style disk (MBR, one ext4 partition from 1 MiB to the last sector,
# as Azure Linux images are laid out) as a fixed VHD, then shows `vhdtool info`, `validate`,
# `convert -o` (room by growing the disk) and `info` on the result. The root file system holds
# what a Debian 12 root holds for the conversion: /etc/os-release, /boot/grub/grub.cfg and, when
# the host has them (shim-signed, grub-efi-amd64-signed), the signed shim and grub, so that
# `convert` takes the ESP's boot files from the image itself; without them it converts with
# --no-boot-files and says so.
# Needs: sfdisk (fdisk), mke2fs (e2fsprogs), qemu-img (qemu-utils). Leaves its files in
# ${DEMO_DIR:-/tmp/vhdtool-demo}.
set -eu
VHDTOOL=${1:-vhdtool}
DIR=${DEMO_DIR:-/tmp/vhdtool-demo}
PATH="$PATH:/usr/sbin:/sbin"
for t in sfdisk mke2fs qemu-img; do
  command -v "$t" >/dev/null || { echo "demo.sh: missing $t (apt-get install fdisk e2fsprogs qemu-utils)" >&2; exit 2; }
done
mkdir -p "$DIR"
rm -f "$DIR/gen1.raw" "$DIR/gen1.vhd" "$DIR/gen2.vhd"
truncate -s 64M "$DIR/gen1.raw"
printf 'label: dos\nlabel-id: 0x56484454\nstart=2048, type=83, bootable\n' | sfdisk -q "$DIR/gen1.raw"
ROOTFS="$DIR/rootfs"
rm -rf "$ROOTFS"
mkdir -p "$ROOTFS/etc" "$ROOTFS/boot/grub" "$ROOTFS/usr/lib/shim" "$ROOTFS/usr/lib/grub/x86_64-efi-signed"
cat > "$ROOTFS/etc/os-release" <<'OS'
PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
ID=debian
OS
printf 'set timeout=1\nmenuentry "demo" { linux /vmlinuz root=UUID=5648445a-0000-4000-8000-00000000a001 }\n' \
  > "$ROOTFS/boot/grub/grub.cfg"
BOOT_FILES=--no-boot-files
if [ -f /usr/lib/shim/shimx64.efi.signed ] && [ -f /usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed ]; then
  cp /usr/lib/shim/shimx64.efi.signed /usr/lib/shim/mmx64.efi.signed /usr/lib/shim/BOOTX64.CSV \
    "$ROOTFS/usr/lib/shim/" 2>/dev/null || cp /usr/lib/shim/shimx64.efi.signed "$ROOTFS/usr/lib/shim/"
  cp /usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed "$ROOTFS/usr/lib/grub/x86_64-efi-signed/"
  BOOT_FILES=
else
  echo "demo.sh: the host has no shim-signed / grub-efi-amd64-signed: converting with an empty ESP (--no-boot-files)" >&2
fi
E2FSPROGS_FAKE_TIME=1700000000 mke2fs -q -F -t ext4 -L root -U 5648445a-0000-4000-8000-00000000a001 \
  -d "$ROOTFS" -E offset=1048576 "$DIR/gen1.raw" 63M
rm -rf "$ROOTFS"
qemu-img convert -f raw -O vpc -o subformat=fixed,force_size=on "$DIR/gen1.raw" "$DIR/gen1.vhd"
rm -f "$DIR/gen1.raw"
set -x
"$VHDTOOL" info "$DIR/gen1.vhd" || true
"$VHDTOOL" validate "$DIR/gen1.vhd" $BOOT_FILES || true
"$VHDTOOL" convert "$DIR/gen1.vhd" -o "$DIR/gen2.vhd" $BOOT_FILES
"$VHDTOOL" info "$DIR/gen2.vhd" || true
