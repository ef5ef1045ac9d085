#!/usr/bin/env bash
# Build the fuzz corpora (fuzz/corpus/TARGET/) from the generated test images and the committed
# regression inputs.
#
# usage: fuzz/seed.sh [IMAGES_DIR]
#   IMAGES_DIR: output of testdata/make-images.sh (default target/tmp/images, the directory the
#   tests generate; made here when it holds no manifest).
#
# The images are up to gigabytes (sparse); a fuzz input must stay small. Each seed is therefore
# the sparse form `vhdtool::fuzz::disk_from_input` reads: "SPRS", the u64 LE disk length, then
# (u64 LE offset, u16 LE length, bytes) patches, here the non-zero 4 KiB pages of the metadata
# regions only:
#   vhd, mbr, gpt, info:  the first and last 64 KiB of the file (MBR, EBRs, primary GPT, dynamic
#                         header and BAT; backup GPT, footer) and the first 64 KiB of each
#                         partition (file system superblocks), plus the EBR sector of each
#                         logical partition;
#   fs_probe:             each partition alone: its first 128 KiB (btrfs keeps its superblock at
#                         64 KiB, ISO 9660 at 32 KiB);
#   fat:                  each FAT partition alone, its non-zero pages up to 1 MiB (boot
#                         sector, FATs, root directory, the first files);
#   journal:              undo journals of real conversions (vhdtool convert on copies);
#   convert:              64-byte random (seeded, reproducible) layout descriptions.
# The regression inputs (testdata/regress/*.bin) go to every disk-level target as they are.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
IMAGES=${1:-$ROOT/target/tmp/images}
CORPUS=$ROOT/fuzz/corpus

if [ ! -f "$IMAGES/manifest.tsv" ]; then
    echo "seed.sh: generating the test images into $IMAGES"
    bash testdata/make-images.sh "$IMAGES" >/dev/null
    cp testdata/make-images.sh "$IMAGES/make-images.sh.used"
fi
cargo build --quiet --bin vhdtool
VHDTOOL=$ROOT/target/debug/vhdtool

mkdir -p "$CORPUS"
for t in vhd mbr gpt fs_probe fat journal info convert; do
    mkdir -p "$CORPUS/$t"
done

mkdir -p "$ROOT/target"
WORK=$(mktemp -d -p "$ROOT/target" seed.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

# info --json of every image (the partitions and their file systems)
cut -f1 "$IMAGES/manifest.tsv" | while read -r img; do
    "$VHDTOOL" info --json "$IMAGES/$img" >"$WORK/$img.json" || true
done

# undo journals: convert copies of the small MBR images in place
for img in $(awk -F'\t' '$5 == "mbr" && ($2 == "raw" || $2 == "vhd-fixed-force") {print $1}' "$IMAGES/manifest.tsv"); do
    cp --sparse=always "$IMAGES/$img" "$WORK/conv-$img"
    if "$VHDTOOL" convert "$WORK/conv-$img" --journal "$WORK/$img.journal" >/dev/null 2>&1; then
        cp "$WORK/$img.journal" "$CORPUS/journal/$img.journal"
    fi
    rm -f "$WORK/conv-$img" "$WORK/$img.journal"
done

python3 - "$IMAGES" "$WORK" "$CORPUS" "$ROOT/testdata/regress" <<'EOF'
import json, os, random, struct, sys

images, work, corpus, regress = sys.argv[1:5]
PAGE = 4096
KIB = 1024

def sparse(path, disk_len, ranges, base=0, cap=1 << 20):
    """SPRS form of the non-zero pages of [base + start, base + start + len) of the file, with
    offsets relative to base; at most `cap` bytes of page data."""
    out = bytearray(b"SPRS" + struct.pack("<Q", disk_len))
    done, used = set(), 0
    with open(path, "rb") as f:
        for start, length in ranges:
            end = min(start + length, disk_len)
            p = max(start, 0) // PAGE
            while p * PAGE < end and used < cap:
                if p not in done:
                    done.add(p)
                    f.seek(base + p * PAGE)
                    data = f.read(min(PAGE, disk_len - p * PAGE))
                    if data.strip(b"\0"):
                        out += struct.pack("<QH", p * PAGE, len(data)) + data
                        used += len(data)
                p += 1
    return bytes(out)

def write(target, name, data):
    with open(os.path.join(corpus, target, name), "wb") as f:
        f.write(data)

for line in open(os.path.join(images, "manifest.tsv")):
    cols = line.rstrip("\n").split("\t")
    if len(cols) < 6:
        continue
    img = cols[0]
    path = os.path.join(images, img)
    try:
        rep = json.load(open(os.path.join(work, img + ".json")))
    except (OSError, ValueError):
        continue
    size = os.path.getsize(path)
    sb = rep.get("sector_bytes") or 512
    flat = rep.get("format") in ("raw", "vhd-fixed")
    ranges = [(0, 64 * KIB), (size - 64 * KIB, 64 * KIB)]
    for p in rep.get("partitions", []) if flat else []:
        start = p["start_lba"] * sb
        ranges.append((start, 64 * KIB))
        if p.get("logical"):
            # the EBR sits before its logical partition (usually 1 MiB or 1 track earlier)
            ranges.append((start - 1024 * KIB, PAGE))
            ranges.append((start - 63 * 512, PAGE))
    whole = sparse(path, size, ranges)
    for t in ("vhd", "mbr", "gpt", "info"):
        write(t, img, whole)
    if not flat:
        continue
    for p in rep.get("partitions", []):
        if p.get("extended"):
            continue
        start, nbytes = p["start_lba"] * sb, p["size_bytes"]
        name = "%s.p%d" % (img, p["index"])
        write("fs_probe", name, sparse(path, nbytes, [(0, 128 * KIB)], base=start))
        fs = p.get("filesystem") or {}
        if str(fs.get("kind", "")).startswith("fat"):
            write("fat", name, sparse(path, nbytes, [(0, nbytes)], base=start))

for name in sorted(os.listdir(regress)):
    if name.endswith(".bin"):
        data = open(os.path.join(regress, name), "rb").read()
        for t in ("vhd", "mbr", "gpt", "info", "fs_probe"):
            write(t, "regress-" + name, data)

rng = random.Random(20240601)
for i in range(64):
    write("convert", "gen-%02d" % i, bytes(rng.randrange(256) for _ in range(64)))
EOF

for t in vhd mbr gpt fs_probe fat journal info convert; do
    printf '%-9s %4d seeds, %8d bytes\n' "$t" "$(find "$CORPUS/$t" -type f | wc -l)" \
        "$(find "$CORPUS/$t" -type f -printf '%s\n' | awk '{s += $1} END {print s + 0}')"
done
