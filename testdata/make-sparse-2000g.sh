#!/usr/bin/env bash
# Make a 2000 GiB fixed VHD that takes ~30 MiB on disk, for timing `vhdtool info` against
# `qemu-img info -f vpc` (the cost of both must not grow with the disk size).
#
# usage: testdata/make-sparse-2000g.sh OUTDIR [gpt|mbr]
#
# Layout (sparse file, no mounts):
#   gpt: ESP FAT32 100 MiB at 1 MiB + ext4 "Linux filesystem" to the last usable sector
#   mbr: FAT32 0x0c 100 MiB (active) at 1 MiB + ext4 0x83 to the last sector
# then a 512-byte fixed-disk footer (creator "win ", Hyper-V's) is appended, written here from
# the VHD specification (qemu-img cannot wrap a raw file in place and would copy 2000 GiB).
#
# Prints the path of the image. Exit 5 when a tool is missing (the message names the package).
set -euo pipefail

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    echo "usage: $0 OUTDIR [gpt|mbr]" >&2
    exit 2
fi
OUT=$1
SCHEME=${2:-gpt}
case $SCHEME in gpt | mbr) ;; *)
    echo "scheme must be gpt or mbr, not '$SCHEME'" >&2
    exit 2
    ;;
esac

export LC_ALL=C TZ=UTC SOURCE_DATE_EPOCH=1700000000 E2FSPROGS_FAKE_TIME=1700000000
PATH="$PATH:/usr/sbin:/sbin"
need() { # need TOOL APT_PACKAGE
    if ! command -v "$1" >/dev/null 2>&1; then
        echo "make-sparse-2000g.sh: missing tool '$1': install it with 'apt-get install $2'" >&2
        exit 5
    fi
}
need sfdisk fdisk
need sgdisk gdisk
need mke2fs e2fsprogs
need mkfs.fat dosfstools
need python3 python3

mkdir -p "$OUT"
img="$OUT/sparse-2000g-$SCHEME.vhd"
raw="$img.tmp"
rm -f -- "$img" "$raw"

SIZE=$((2000 * 1024 * 1024 * 1024))
SECTORS=$((SIZE / 512))
truncate -s "$SIZE" "$raw"

ESP_START=2048
ESP_SECTORS=204800
DATA_START=$((ESP_START + ESP_SECTORS))
if [ "$SCHEME" = gpt ]; then
    sgdisk -o -U 2000a000-0000-4000-8000-000000000000 \
        -n 1:$ESP_START:+100M -t 1:ef00 -c 1:"EFI system partition" \
        -u 1:2000a000-0001-4000-8000-000000000001 \
        -n 2:0:0 -t 2:8300 -c 2:"Linux filesystem" -u 2:2000a000-0002-4000-8000-000000000002 \
        "$raw" >/dev/null
    DATA_SECTORS=$((SECTORS - 34 - DATA_START))
    FAT_ID=2000a001
else
    sfdisk -q "$raw" <<EOF
label: dos
label-id: 0x2000a000
start=$ESP_START, size=$ESP_SECTORS, type=c, bootable
start=$DATA_START, type=83
EOF
    DATA_SECTORS=$((SECTORS - DATA_START))
    FAT_ID=2000b001
fi

# the ESP is made in its own file (mkfs.fat --offset would compare its size with the whole disk)
truncate -s $((ESP_SECTORS * 512)) "$raw.esp"
mkfs.fat -F 32 -s 1 -h $ESP_START -i $FAT_ID -n ESP "$raw.esp" >/dev/null
dd if="$raw.esp" of="$raw" bs=1M oflag=seek_bytes seek=$((ESP_START * 512)) conv=notrunc,sparse \
    status=none
rm -f -- "$raw.esp"
mke2fs -q -F -t ext4 \
    -E "offset=$((DATA_START * 512)),lazy_itable_init=1,lazy_journal_init=1,nodiscard" \
    -U 2000a000-1002-4000-8000-000000000002 -L bigroot "$raw" "$((DATA_SECTORS / 2))k"

# Append the footer (spec "Hard Disk Footer Format"; CHS from the spec's appendix).
python3 - "$raw" "$SIZE" <<'EOF'
import os, struct, sys
path, size = sys.argv[1], int(sys.argv[2])
assert os.path.getsize(path) == size

def chs(total_bytes):
    sectors = min(total_bytes // 512, 65535 * 16 * 255)
    if sectors >= 65535 * 16 * 63:
        spt, heads = 255, 16
        cth = sectors // spt
    else:
        spt = 17
        cth = sectors // spt
        heads = max((cth + 1023) // 1024, 4)
        if cth >= heads * 1024 or heads > 16:
            spt, heads = 31, 16
            cth = sectors // spt
        if cth >= heads * 1024:
            spt, heads = 63, 16
            cth = sectors // spt
    return cth // heads, heads, spt

c, h, s = chs(size)
f = bytearray(512)
f[0:8] = b"conectix"
struct.pack_into(">IIQI", f, 8, 2, 0x00010000, 0xFFFFFFFFFFFFFFFF, 1700000000 - 946684800)
f[28:32] = b"win "
struct.pack_into(">I", f, 32, 0x000A0000)
f[36:40] = b"Wi2k"
struct.pack_into(">QQHBBI", f, 40, size, size, c, h, s, 2)
f[68:84] = bytes.fromhex("2000a0002000a0002000a0002000a000")
struct.pack_into(">I", f, 64, (~sum(f)) & 0xFFFFFFFF)
with open(path, "r+b") as fh:
    fh.seek(size)
    fh.write(f)
EOF
mv -- "$raw" "$img"
echo "$img"
