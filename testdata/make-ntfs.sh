#!/usr/bin/env bash
# Generate the NTFS partition images used by tests/shrink_ntfs.rs.
#
# usage: testdata/make-ntfs.sh OUTDIR
#
# mkntfs (ntfs-3g) formats a partition-sized sparse file. The files go in through the ntfs-3g
# FUSE driver when /dev/fuse can be mounted (one `cp -r` of the whole tree: directories nested 8
# deep, the deepest holding 300 files, so their indexes are non-resident), else through ntfscp,
# which cannot make directories: then only the root's files are copied (2000 entries still make
# the root index non-resident). The source files are kept in OUTDIR/src-NAME/, and the ones
# copied are listed in OUTDIR/NAME.files (paths relative to the root, `/`-separated), so that
# tests compare what ntfscat reads back.
#
# Images (partition files, 512-byte sectors, hidden sectors 2048):
#   files.part      300 MiB (formatted at 180 MiB), 4 KiB clusters: 2000 small files and a 24 MiB file in the root,
#                   20 medium files, a directory chain 8 deep with 300 + 200 small files
#   bigclus.part    128 MiB (formatted at 64 MiB), 16 KiB clusters ($MFTMirr then mirrors 16 records, $Bitmap's
#                   and $BadClus's among them): 50 files
#   tail.part       300 MiB, 4 KiB clusters: filler.bin (240 MiB of zeros, allocated) reaches
#                   past the first 200 MiB
# and MBR disks (raw) holding each partition from sector 2048 to the last sector of the disk
# (type 0x07, active): NAME.img = 1 MiB + NAME.part.
#
# Output: OUTDIR/manifest.tsv, one line per image: file  partition_bytes  cluster_bytes
# Exit status: 0 ok; 5 when a required tool is missing (the message names the apt package).
set -euo pipefail

if [ $# -ne 1 ]; then
    echo "usage: $0 OUTDIR" >&2
    exit 2
fi
export LC_ALL=C TZ=UTC

need() { # need TOOL APT_PACKAGE
    if ! command -v "$1" >/dev/null 2>&1 && ! [ -x "/usr/sbin/$1" ] && ! [ -x "/sbin/$1" ]; then
        echo "make-ntfs.sh: missing tool '$1': install it with 'apt-get install $2'" >&2
        exit 5
    fi
}
need mkntfs ntfs-3g
need ntfscp ntfs-3g
need python3 python3
need sfdisk fdisk
need ntfsresize ntfs-3g
need ntfsfix ntfs-3g
export PATH="$PATH:/usr/sbin:/sbin"

out=$1
rm -rf "$out"
mkdir -p "$out"

# gen DIR COUNT MIN MAX SEED: COUNT files of MIN..MAX deterministic pseudo-random bytes
gen() {
    python3 - "$@" <<'PY'
import os, random, sys
d, count, lo, hi, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
os.makedirs(d, exist_ok=True)
r = random.Random(seed)
for i in range(count):
    n = r.randint(lo, hi)
    with open(os.path.join(d, "f%05d_%d.bin" % (seed * 100000 + i, n)), "wb") as f:
        f.write(r.randbytes(n))
PY
}

# mk NAME MIB CLUSTER PARTITION_MIB: format OUTDIR/NAME.part (MIB; enlarged to PARTITION_MIB
# once filled, by `fill`)
mk() {
    local part="$out/$1.part"
    truncate -s "$2M" "$part"
    mkntfs -Q -F -q -s 512 -p 2048 -H 255 -S 63 -c "$3" -L "$1" "$part" 2>/dev/null
    printf '%s\t%s\t%s\n' "$1.part" $(($4 * 1024 * 1024)) "$3" >>"$out/manifest.tsv"
}

mnt=$(mktemp -d)
trap 'umountntfs; rmdir "$mnt"' EXIT
umountntfs() { if mountpoint -q "$mnt"; then umount "$mnt"; fi; }

# fill NAME MIB: copy OUTDIR/src-NAME into NAME.part (FUSE: the whole tree; ntfscp: the root's
# files), list what was copied in OUTDIR/NAME.files, and make the MBR disk OUTDIR/NAME.img
fill() {
    local part="$out/$1.part" f
    if command -v ntfs-3g >/dev/null 2>&1 && ntfs-3g -o big_writes "$part" "$mnt" 2>/dev/null; then
        cp -r --sparse=never "$out/src-$1/." "$mnt/"
        umount "$mnt"
        (cd "$out/src-$1" && find . -type f | sed 's|^\./||' | sort) >"$out/$1.files"
    else
        for f in "$out/src-$1"/*; do
            [ -f "$f" ] && ntfscp -q "$part" "$f" "$(basename "$f")"
        done
        (cd "$out/src-$1" && find . -maxdepth 1 -type f | sed 's|^\./||' | sort) >"$out/$1.files"
    fi
    local bytes=$(($2 * 1024 * 1024))
    if [ "$(stat -c %s "$part")" -lt "$bytes" ]; then
        # formatted smaller: ntfs-3g spreads files over the whole volume, so the tail is made
        # free by enlarging the filled volume to the partition with ntfsresize, and the backup
        # boot sector put in the partition's last sector (ntfsresize leaves it after the volume);
        # ntfsresize marks the volume dirty (for chkdsk), `ntfsfix -d` clears the flag
        truncate -s "$bytes" "$part"
        ntfsresize -f -f --no-progress-bar -s "$bytes" "$part" >/dev/null
        dd if="$part" of="$part" bs=512 count=1 seek=$((bytes / 512 - 1)) conv=notrunc status=none
        ntfsfix -d "$part" >/dev/null
    fi
    truncate -s $((bytes + 1024 * 1024)) "$out/$1.img"
    dd if="$part" of="$out/$1.img" bs=1M seek=1 conv=sparse,notrunc status=none
    echo 'start=2048, type=7, bootable' | sfdisk -q --label dos "$out/$1.img" >/dev/null
}

mk files 180 4096 300
gen "$out/src-files" 2000 0 3000 1
gen "$out/src-files/medium" 20 20000 300000 2
gen "$out/src-files" 1 $((24 * 1024 * 1024)) $((24 * 1024 * 1024)) 3
deep="$out/src-files/d1/d2/d3/d4"
gen "$deep" 200 0 2000 6
gen "$deep/d5/d6/d7/d8" 300 0 2000 7
fill files 300

mk bigclus 64 16384 128
gen "$out/src-bigclus" 50 0 200000 4
fill bigclus 128

mk tail 300 4096 300
mkdir -p "$out/src-tail"
# 240 MiB of zeros (a sparse source: cp --sparse=never and ntfscp allocate every cluster)
truncate -s 240M "$out/src-tail/filler.bin"
fill tail 300

cat "$out/manifest.tsv"
