#!/bin/sh
# demo.sh [VHDTOOL]: the main job on a generated demo image.
# Builds a small Generation-1 style disk (MBR, one ext4 partition from 1 MiB to the last sector,
# as Azure Linux images are laid out) as a fixed VHD, then shows `vhdtool info`, `validate`,
# `convert -o` (room by growing the disk) and `info` on the result.
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
E2FSPROGS_FAKE_TIME=1700000000 mke2fs -q -F -t ext4 -L root -U 5648445a-0000-4000-8000-00000000a001 \
  -E offset=1048576 "$DIR/gen1.raw" 63M
qemu-img convert -f raw -O vpc -o subformat=fixed,force_size=on "$DIR/gen1.raw" "$DIR/gen1.vhd"
rm -f "$DIR/gen1.raw"
set -x
"$VHDTOOL" info "$DIR/gen1.vhd" || true
"$VHDTOOL" validate "$DIR/gen1.vhd" || true
"$VHDTOOL" convert "$DIR/gen1.vhd" -o "$DIR/gen2.vhd"
"$VHDTOOL" info "$DIR/gen2.vhd" || true
