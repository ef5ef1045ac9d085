#!/usr/bin/env bash
# Build the committed seed corpora, fuzz/seeds/TARGET/, from the generated test images
# (testdata/make-images.sh) and a few generated inputs. Deterministic; the result is committed
# (about 300 KiB in all), so CI and a fresh checkout fuzz from the same seeds without generating
# images. Run it again after a change to the image generator or to a format.
#
# usage: fuzz/seed.sh [IMAGES_DIR]
#   IMAGES_DIR: output of testdata/make-images.sh (default target/tmp/images, the directory the
#   tests generate; made here when it holds no manifest).
#
# The images are up to gigabytes (sparse); a seed must stay small. Each disk seed is the sparse
# form `vhdtool::fuzz::disk_from_input` reads: "SPRS", the u64 LE disk length, then
# (u64 LE offset, u16 LE length, bytes) patches, here one per run of non-zero 512-byte sectors
# inside the metadata regions:
#   vhd:        the first and last 16 KiB of the file (footer copy, dynamic header, BAT;
#               footer), every VHD flavour of four layouts;
#   mbr, gpt:   the first and last 64 KiB of the raw images (MBR, primary GPT; backup GPT) and
#               the EBR sectors of logical partitions;
#   info:       the same plus the first 8 KiB of each partition (boot sectors, superblocks),
#               raw and VHD flavours of a few layouts;
#   fs_probe:   each kind of file system once, its first 8 KiB and 8 KiB at 64 KiB (btrfs
#               keeps its superblock there);
#   fat:        each FAT partition alone, its non-zero sectors up to 2 MiB (boot sector, FATs,
#               root directory, the first files), at most 48 KiB;
#   journal:    undo journals of real conversions (vhdtool convert on copies);
#   convert:    64-byte random (seeded, reproducible) layout descriptions;
#   shrink:     a 4 MiB NTFS (mkntfs -Q) and a 1 MiB swap area made here: their first and
#               last 64 KiB and 64 KiB around the middle (boot sectors, $MFT, $Bitmap), 48 KiB
#               at most;
#   grub:       a small core.img body (decompressor stand-in + LZMA1 stream of a kernel
#               stand-in, part_msdos stand-in and prefix) in GRUB's i386-pc format;
#   bootfiles:  a Debian-like ext4 file system made here with `mke2fs -d` (os-release, shim
#               and grub stand-ins, grub.cfg), and one ext4 partition of the test images.
# The regression inputs (testdata/regress/*.bin) are not copied: fuzz/ci.sh passes that
# directory to the disk-level targets as a second seed directory.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
IMAGES=${1:-$ROOT/target/tmp/images}
SEEDS=$ROOT/fuzz/seeds
TARGETS="vhd mbr gpt fs_probe fat journal info convert bootfiles shrink grub"

if [ ! -f "$IMAGES/manifest.tsv" ]; then
    echo "seed.sh: generating the test images into $IMAGES"
    bash testdata/make-images.sh "$IMAGES" >/dev/null
fi
cargo build --quiet --bin vhdtool
VHDTOOL=$ROOT/target/debug/vhdtool

rm -rf "$SEEDS"
for t in $TARGETS; do
    mkdir -p "$SEEDS/$t"
done
mkdir -p "$ROOT/target"
WORK=$(mktemp -d -p "$ROOT/target" seed.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

# info --json of every image (the partitions and their file systems)
cut -f1 "$IMAGES/manifest.tsv" | while read -r img; do
    "$VHDTOOL" info --json "$IMAGES/$img" >"$WORK/$img.json" || true
done

# undo journals: convert copies of three MBR images in place
for img in win-mbr.raw four-primary.force.vhd ext-logicals.raw; do
    [ -f "$IMAGES/$img" ] || continue
    cp --sparse=always "$IMAGES/$img" "$WORK/conv-$img"
    if "$VHDTOOL" convert "$WORK/conv-$img" --no-boot-files --journal "$WORK/$img.journal" \
        >/dev/null 2>&1; then
        cp "$WORK/$img.journal" "$SEEDS/journal/$img.journal"
    fi
    rm -f "$WORK/conv-$img" "$WORK/$img.journal"
done

# a Debian-like ext4 root for the boot-file discovery (fake EFI binaries, real layout)
R=$WORK/debian-root
mkdir -p "$R/etc" "$R/usr/lib/shim" "$R/usr/lib/grub/x86_64-efi-signed" "$R/boot/grub"
printf 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nID=debian\n' \
    >"$R/etc/os-release"
printf 'MZ shim stand-in\n' >"$R/usr/lib/shim/shimx64.efi.signed"
printf 'MZ mok stand-in\n' >"$R/usr/lib/shim/mmx64.efi.signed"
printf 'shimx64.efi,debian,,This is the boot entry for debian\n' >"$R/usr/lib/shim/BOOTX64.CSV"
printf 'MZ grub stand-in\n' >"$R/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed"
printf 'set timeout=1\n' >"$R/boot/grub/grub.cfg"
find "$R" -exec touch -h -d @1700000000 {} +
E2FSPROGS_FAKE_TIME=1700000000 mke2fs -q -F -t ext4 -b 1024 -N 64 -O ^has_journal -U 5eed0000-0000-4000-8000-000000000001 \
    -E root_owner=0:0,hash_seed=5eed0000-0000-4000-8000-000000000002 -d "$R" \
    "$WORK/debian.ext4" 2048k >/dev/null

truncate -s 4M "$WORK/ntfs.img"
mkntfs -F -Q -q -c 4096 -L seed -T "$WORK/ntfs.img" >/dev/null 2>&1
truncate -s 1M "$WORK/swap.img"
mkswap -q -L seed -U 5eed0000-0000-4000-8000-000000000002 "$WORK/swap.img" >/dev/null

python3 - "$IMAGES" "$WORK" "$SEEDS" <<'EOF'
import json, os, random, struct, sys

images, work, seeds = sys.argv[1:4]
SECTOR = 512
KIB = 1024

def sparse(path, disk_len, ranges, base=0, cap=64 * KIB):
    """SPRS form of the non-zero sectors of [base + start, base + start + len) of the file,
    offsets relative to base, runs of sectors merged into one patch; at most `cap` bytes."""
    sectors = set()
    for start, length in ranges:
        s = max(start, 0) // SECTOR
        while s * SECTOR < min(start + length, disk_len):
            sectors.add(s)
            s += 1
    out = bytearray(b"SPRS" + struct.pack("<Q", disk_len))
    used = 0
    run_at, run = None, bytearray()
    def flush():
        if run:
            out.extend(struct.pack("<QH", run_at, len(run)) + run)
    with open(path, "rb") as f:
        for s in sorted(sectors):
            if used >= cap:
                break
            f.seek(base + s * SECTOR)
            data = f.read(min(SECTOR, disk_len - s * SECTOR))
            if not data.strip(b"\0"):
                continue
            if run and run_at + len(run) == s * SECTOR and len(run) + len(data) < 65535:
                run.extend(data)
            else:
                flush()
                run_at, run = s * SECTOR, bytearray(data)
            used += len(data)
    flush()
    return bytes(out)

def write(target, name, data):
    if data.startswith(b"SPRS"):
        name += ".sprs"  # and not .raw/.vhd, which .gitignore leaves out
    with open(os.path.join(seeds, target, name), "wb") as f:
        f.write(data)

manifest = {}
for line in open(os.path.join(images, "manifest.tsv")):
    cols = line.rstrip("\n").split("\t")
    if len(cols) >= 6:
        manifest[cols[0]] = cols

def report(img):
    try:
        return json.load(open(os.path.join(work, img + ".json")))
    except (OSError, ValueError):
        return None

def layout_ranges(img, rep, part_bytes):
    size = os.path.getsize(os.path.join(images, img))
    ranges = [(0, 64 * KIB), (size - 64 * KIB, 64 * KIB)]
    sb = rep.get("sector_bytes") or 512
    for p in rep.get("partitions", []):
        start = p["start_lba"] * sb
        if part_bytes:
            ranges.append((start, part_bytes))
        if p.get("logical"):
            # the EBR sits before its logical partition (1 MiB or one track earlier)
            ranges.append((start - 1024 * KIB, SECTOR))
            ranges.append((start - 63 * SECTOR, SECTOR))
    return size, ranges

# vhd: every flavour of four layouts, the file's first and last 16 KiB
for base in ("blank", "win-mbr", "gpt-linux", "ext-logicals"):
    for flavour in ("raw", "force.vhd", "chs.vhd", "dyn.vhd", "diff.vhd"):
        img = "%s.%s" % (base, flavour)
        if img in manifest:
            size = os.path.getsize(os.path.join(images, img))
            write("vhd", img, sparse(os.path.join(images, img), size,
                                     [(0, 16 * KIB), (size - 16 * KIB, 16 * KIB)]))

# mbr, gpt, info
for img, cols in sorted(manifest.items()):
    rep = report(img)
    if rep is None:
        continue
    raw = cols[1] == "raw"
    path = os.path.join(images, img)
    if raw and cols[4] in ("mbr", "hybrid"):
        size, ranges = layout_ranges(img, rep, 0)
        write("mbr", img, sparse(path, size, ranges))
    if raw and cols[4] in ("gpt", "hybrid"):
        size, ranges = layout_ranges(img, rep, 0)
        write("gpt", img, sparse(path, size, ranges))
    if img.split(".")[0] in ("win-mbr", "linux-mbr", "ext-logicals", "gpt-win", "misc-mbr") \
            and cols[1] in ("raw", "vhd-fixed-force", "vhd-dynamic"):
        size, ranges = layout_ranges(img, rep, 8 * KIB)
        write("info", img, sparse(path, size, ranges, cap=48 * KIB))

# fs_probe, fat, bootfiles: partitions of the raw images
kinds = set()
for img, cols in sorted(manifest.items()):
    if cols[1] != "raw":
        continue
    rep = report(img)
    if rep is None:
        continue
    sb = rep.get("sector_bytes") or 512
    path = os.path.join(images, img)
    for p in rep.get("partitions", []):
        if p.get("extended"):
            continue
        start, nbytes = p["start_lba"] * sb, p["size_bytes"]
        name = "%s.p%d" % (img, p["index"])
        kind = str((p.get("filesystem") or {}).get("kind", "none"))
        if kind not in kinds:
            kinds.add(kind)
            write("fs_probe", name, sparse(path, nbytes, [(0, 8 * KIB), (64 * KIB, 8 * KIB)],
                                           base=start, cap=16 * KIB))
        if kind.startswith("fat") and len(os.listdir(os.path.join(seeds, "fat"))) < 4:
            write("fat", name, sparse(path, nbytes, [(0, 2048 * KIB)], base=start, cap=48 * KIB))
        if kind.startswith("ext") and len(os.listdir(os.path.join(seeds, "bootfiles"))) < 1:
            write("bootfiles", name, sparse(path, nbytes, [(0, 2048 * KIB)], base=start, cap=32 * KIB))

deb = os.path.join(work, "debian.ext4")
write("bootfiles", "debian.ext4", sparse(deb, os.path.getsize(deb), [(0, os.path.getsize(deb))]))

for name in ("ntfs.img", "swap.img"):
    img = os.path.join(work, name)
    n = os.path.getsize(img)
    write("shrink", name.replace(".img", ""),
          sparse(img, n, [(0, 64 * KIB), (n // 2 - 64 * KIB, 128 * KIB), (n - 64 * KIB, 64 * KIB)],
                 cap=48 * KIB))

import lzma
def grub_core():
    """A core.img body as grub-mkimage lays it out (see src/convert/grubcore.rs)."""
    def obj(t, body):
        body += b"\0" * (-len(body) % 4)
        return struct.pack("<II", t, 8 + len(body)) + body
    kernel = bytes((i * 7) % 251 for i in range(2048))
    objs = obj(0, b"\x7fELF\x01 part_msdos stand-in") + obj(3, b"(hd0,msdos1)/boot/grub\0")
    payload = kernel + struct.pack("<III", 0x676d696d, 12, 12 + len(objs)) + objs
    stream = lzma.compress(payload, format=lzma.FORMAT_RAW, filters=[
        {"id": lzma.FILTER_LZMA1, "lc": 3, "lp": 0, "pb": 2, "dict_size": 1 << 16}])
    dec = bytearray(b"\x90" * 0x300)
    struct.pack_into("<III", dec, 8, len(stream), len(payload), 0)
    body = bytes(dec) + stream
    return body + b"\0" * (-len(body) % 512)
write("grub", "core", grub_core())

rng = random.Random(20240601)
for i in range(8):
    write("convert", "gen-%02d" % i, bytes(rng.randrange(256) for _ in range(64)))
EOF

total=0
for t in $TARGETS; do
    n=$(find "$SEEDS/$t" -type f | wc -l)
    b=$(find "$SEEDS/$t" -type f -printf '%s\n' | awk '{s += $1} END {print s + 0}')
    total=$((total + b))
    printf '%-9s %3d seeds, %7d bytes\n' "$t" "$n" "$b"
done
echo "total $total bytes"
