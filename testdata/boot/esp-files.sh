#!/bin/bash
# esp-files.sh IMAGE OUTDIR
#
# Pulls, out of a Gen1 image built by make-gen1-image.sh (raw, or a fixed VHD:
# the 512-byte footer at the end does not matter here), the files an EFI
# System Partition needs so that the converted disk boots under UEFI with
# Secure Boot, and lays them out in OUTDIR as the ESP's tree, ready for
#     vhdtool convert IMAGE -o OUT --boot-files OUTDIR
# (OUTDIR's content is copied to the root of the new ESP):
#
#   OUTDIR/EFI/BOOT/BOOTX64.EFI  = /usr/lib/shim/shimx64.efi.signed          (Microsoft-signed shim)
#   OUTDIR/EFI/BOOT/grubx64.efi  = /usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed (Debian-signed)
#   OUTDIR/EFI/BOOT/mmx64.efi    = /usr/lib/shim/mmx64.efi.signed            (MokManager; optional)
#   OUTDIR/EFI/BOOT/grub.cfg     = a stub, as grub-install writes it:
#         search.fs_uuid <UUID of the fs holding grub.cfg> root
#         set prefix=($root)'/boot/grub'      (or '/grub' on a separate /boot fs)
#         configfile $prefix/grub.cfg
#
# The files are read from the image's ext4 file systems with debugfs (no
# mount, no loop device); the UUID comes from dumpe2fs. Every MBR/GPT
# partition is looked at: the one holding /usr/lib/shim/shimx64.efi.signed is
# the root fs; the one holding /boot/grub/grub.cfg (root fs with /boot in it)
# or /grub/grub.cfg (a separate /boot fs) gives the stub's UUID and prefix.
#
# Where the stub must live (facts, Debian 12 signed grub 2.06-13): shim loads
# grubx64.efi from its own directory. grubx64.efi has the built-in prefix
# /EFI/debian on the partition it was loaded from and an embedded early config
# that sources $prefix/grub.cfg if /EFI/debian exists there, else (after a
# failed /.disk/info search: harmless "error: no such device" lines)
# $cmdpath/grub.cfg = EFI/BOOT/grub.cfg here. Both places boot with Secure
# Boot. ESP_DEBIAN=1 additionally writes the same stub to EFI/debian/grub.cfg
# (what a later `grub-install` on the converted system would read); it is off
# by default, so there is a single source of truth.
#
# Exit: 0 = done; 1 = the image lacks a needed file; 2 = usage/environment.
# Needs: e2fsprogs (debugfs, dumpe2fs), fdisk (sfdisk), coreutils.
set -euo pipefail

[ $# -eq 2 ] || { echo "usage: $0 IMAGE OUTDIR" >&2; exit 2; }
IMG=$1 OUT=$2
[ -f "$IMG" ] || { echo "no such image: $IMG" >&2; exit 2; }
for t in sfdisk debugfs dumpe2fs; do
  command -v "$t" >/dev/null || { echo "missing tool: $t (apt-get install fdisk e2fsprogs)" >&2; exit 2; }
done
if [ -e "$OUT" ] && [ -n "$(ls -A "$OUT")" ]; then
  echo "$OUT exists and is not empty" >&2; exit 2
fi
log() { echo "[esp-files] $*" >&2; }
WORK=$(mktemp -d "${TMPDIR:-/tmp}/esp-files.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# dump FS_SPEC PATH DEST: copy one file out of an ext4 (FS_SPEC = IMG?offset=N,
# e2fsprogs' unix io manager syntax); true iff it exists and is not empty
dump() { rm -f "$3"; debugfs -R "dump -p $2 $3" "$1" >/dev/null 2>&1 && [ -s "$3" ]; }

ROOT_FS="" GRUB_FS="" GRUB_UUID="" PREFIX=""
# "IMG1 : start=        2048, size=      131072, type=83, bootable"
while read -r start; do
  fs="$IMG?offset=$(( start * 512 ))"
  uuid=$(dumpe2fs -h "$fs" 2>/dev/null | sed -n 's/^Filesystem UUID: *//p')
  [ -n "$uuid" ] || continue
  if [ -z "$ROOT_FS" ] && dump "$fs" /usr/lib/shim/shimx64.efi.signed "$WORK/shim"; then
    ROOT_FS=$fs
    log "root fs: LBA $start, UUID $uuid"
  fi
  if [ -z "$GRUB_FS" ]; then
    for p in /boot/grub /grub; do
      if dump "$fs" "$p/grub.cfg" "$WORK/grub.cfg.orig"; then
        GRUB_FS=$fs GRUB_UUID=$uuid PREFIX=$p
        log "grub.cfg: $p/grub.cfg on LBA $start, UUID $uuid"
        break
      fi
    done
  fi
done < <(sfdisk -d "$IMG" 2>/dev/null | sed -n 's/^[^ ]* *: *start= *\([0-9]*\),.*/\1/p')
[ -n "$ROOT_FS" ] || { echo "no ext2/3/4 partition of $IMG holds /usr/lib/shim/shimx64.efi.signed" >&2; exit 1; }
[ -n "$GRUB_FS" ] || { echo "no ext2/3/4 partition of $IMG holds /boot/grub/grub.cfg or /grub/grub.cfg" >&2; exit 1; }

mkdir -p "$OUT/EFI/BOOT"
dump "$ROOT_FS" /usr/lib/shim/shimx64.efi.signed "$OUT/EFI/BOOT/BOOTX64.EFI" \
  || { echo "cannot read /usr/lib/shim/shimx64.efi.signed" >&2; exit 1; }
dump "$ROOT_FS" /usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed "$OUT/EFI/BOOT/grubx64.efi" \
  || { echo "no /usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed in the root fs" >&2; exit 1; }
dump "$ROOT_FS" /usr/lib/shim/mmx64.efi.signed "$OUT/EFI/BOOT/mmx64.efi" \
  || log "no /usr/lib/shim/mmx64.efi.signed in the root fs (MokManager omitted)"
# The stub, in the form grub-install (Debian) writes for an ESP install.
cat > "$OUT/EFI/BOOT/grub.cfg" <<EOF
search.fs_uuid $GRUB_UUID root
set prefix=(\$root)'$PREFIX'
configfile \$prefix/grub.cfg
EOF
if [ "${ESP_DEBIAN:-0}" = 1 ]; then
  mkdir -p "$OUT/EFI/debian"
  cp "$OUT/EFI/BOOT/grub.cfg" "$OUT/EFI/debian/grub.cfg"
fi
log "done: $OUT: $(cd "$OUT" && find . -type f | LC_ALL=C sort | sed 's|^\./||' | tr '\n' ' ')"
