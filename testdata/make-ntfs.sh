#!/usr/bin/env bash
# Generate the NTFS partition images used by tests/shrink_ntfs.rs.
#
# usage: testdata/make-ntfs.sh OUTDIR
#
# No mounts: mkntfs (ntfs-3g) formats a partition-sized sparse file, ntfscp copies files into its
# root directory (ntfs-3g has no tool that makes directories without mounting, so every file is
# in the root; 2000 entries make the root index non-resident, $INDEX_ALLOCATION). The source
# files are kept in OUTDIR/src-NAME/ so that tests can compare what ntfscat reads back.
#
# Images (partition files, 512-byte sectors, hidden sectors 2048):
#   files.part      200 MiB, 4 KiB clusters: 2000 small files, a 24 MiB file, 20 medium files
#   bigclus.part    128 MiB, 16 KiB clusters ($MFTMirr then mirrors 16 records, $Bitmap's
#                   and $BadClus's among them): 50 files
#   tail.part       64 MiB, 4 KiB clusters: filler.bin (40 MiB) reaches past the first 32 MiB
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

# mk NAME MIB CLUSTER: format OUTDIR/NAME.part
mk() {
    local part="$out/$1.part"
    truncate -s "$2M" "$part"
    mkntfs -Q -F -q -s 512 -p 2048 -H 255 -S 63 -c "$3" -L "$1" "$part" 2>/dev/null
    printf '%s\t%s\t%s\n' "$1.part" $(($2 * 1024 * 1024)) "$3" >>"$out/manifest.tsv"
}

# fill NAME: copy every file of OUTDIR/src-NAME into the root of NAME.part
fill() {
    local f
    for f in "$out/src-$1"/*; do
        ntfscp -q "$out/$1.part" "$f" "$(basename "$f")"
    done
}

mk files 200 4096
gen "$out/src-files" 2000 0 3000 1
gen "$out/src-files" 20 20000 300000 2
gen "$out/src-files" 1 $((24 * 1024 * 1024)) $((24 * 1024 * 1024)) 3
fill files

mk bigclus 128 16384
gen "$out/src-bigclus" 50 0 200000 4
fill bigclus

mk tail 64 4096
mkdir -p "$out/src-tail"
python3 -c "import random,sys; sys.stdout.buffer.write(random.Random(5).randbytes(40*1024*1024))" >"$out/src-tail/filler.bin"
fill tail

cat "$out/manifest.tsv"
