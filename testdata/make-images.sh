#!/usr/bin/env bash
# Generate the test disk images used by tests/info_oracle.rs (and later by the converter tests).
#
# usage: testdata/make-images.sh OUTDIR
#
# No mounts, no loop devices, no root tricks: partition tables come from sfdisk/sgdisk/fdisk on
# plain files, file systems from mkfs.* writing at an offset (mke2fs -E offset=, mkfs.fat
# --offset) or into a separate file that is then copied in with `dd conv=notrunc,sparse`. Every
# image is sparse; identifiers (disk ids, GUIDs, UUIDs, serials, labels) are fixed so that runs
# are reproducible. qemu-img wraps each raw image as:
#   NAME.force.vhd  fixed VHD, size kept (force_size=on, creator "qem2")
#   NAME.chs.vhd    fixed VHD, size rounded up to a CHS-representable size (creator "qemu")
#   NAME.dyn.vhd    dynamic VHD
# (gpt-4k, a disk with 4096-byte sectors, is raw only: VHD sectors are 512 bytes), and
# linux-mbr.diff.vhd is a differencing VHD (crafted: qemu-img cannot create one) whose parent is
# linux-mbr.dyn.vhd.
#
# Output: the images and OUTDIR/manifest.tsv, also printed on stdout. One line per image, columns
# separated by one TAB:
#   file  form  base  sector_bytes  scheme  description
# form:   raw | vhd-fixed-force | vhd-fixed-chs | vhd-dynamic | vhd-differencing
# base:   the raw image (file name) that holds the same disk contents; oracles run on it
# scheme: mbr | gpt | hybrid | none (what the partition table is)
#
# Exit status: 0 ok; 5 when a required tool is missing (the message names the apt package).
set -euo pipefail

if [ $# -ne 1 ]; then
    echo "usage: $0 OUTDIR" >&2
    exit 2
fi

export LC_ALL=C TZ=UTC
# Reproducible time stamps where the tools honour them.
export SOURCE_DATE_EPOCH=1700000000 E2FSPROGS_FAKE_TIME=1700000000

need() { # need TOOL APT_PACKAGE
    if ! command -v "$1" >/dev/null 2>&1 && ! [ -x "/usr/sbin/$1" ] && ! [ -x "/sbin/$1" ]; then
        echo "make-images.sh: missing tool '$1': install it with 'apt-get install $2'" >&2
        exit 5
    fi
}
PATH="$PATH:/usr/sbin:/sbin"
need sfdisk fdisk
need fdisk fdisk
need sgdisk gdisk
need mke2fs e2fsprogs
need mkfs.fat dosfstools
need mkntfs ntfs-3g
need ntfslabel ntfs-3g
need mkswap util-linux
need mkfs.xfs xfsprogs
need mkfs.btrfs btrfs-progs
need cryptsetup cryptsetup-bin
need qemu-img qemu-utils
need python3 python3
need mcopy mtools

OUT=$1
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
cd "$OUT"
rm -f -- *.raw *.vhd *.part manifest.tsv keyfile
MIB=1048576
MANIFEST="$OUT/manifest.tsv"
: >"$MANIFEST"

# A fixed, non-secret key for the LUKS test volumes.
printf '%s' 'vhdtool-test-key-not-a-secret!!!' >keyfile

manifest() { # manifest FILE FORM BASE SECTOR SCHEME DESCRIPTION
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$MANIFEST"
}

blank() { # blank FILE BYTES
    rm -f -- "$1"
    truncate -s "$2" "$1"
}

# put DISK PARTFILE BYTE_OFFSET: copy a file system made in a separate file into the disk.
put() {
    dd if="$2" of="$1" bs=1M oflag=seek_bytes seek="$3" conv=notrunc,sparse status=none
    rm -f -- "$2"
}

# fs_ext DISK START_LBA SECTORS SECTOR_BYTES TYPE LABEL UUID
fs_ext() {
    local off=$(($2 * $4)) kib=$(($3 * $4 / 1024)) bs=()
    [ "$4" = 4096 ] && bs=(-b 4096)
    mke2fs -q -F -t "$5" "${bs[@]}" -E "offset=$off,hash_seed=$7" -U "$7" -L "$6" "$1" "${kib}k"
}

# fs_fat DISK START_LBA SECTORS SECTOR_BYTES FATBITS LABEL VOLID
fs_fat() {
    local part="$1.part"
    blank "$part" $(($3 * $4))
    local extra=()
    [ "$5" = 32 ] && extra=(-s 1)
    mkfs.fat -F "$5" "${extra[@]}" -S "$4" -h "$2" -i "$7" -n "$6" "$part" >/dev/null
    put "$1" "$part" $(($2 * $4))
}

# fs_ntfs DISK START_LBA SECTORS LABEL SERIAL(16 hex digits)
fs_ntfs() {
    local part="$1.part"
    blank "$part" $(($3 * 512))
    mkntfs -Q -F -q -s 512 -p "$2" -H 255 -S 63 -L "$4" "$part" 2>/dev/null
    ntfslabel --new-serial="$5" "$part" >/dev/null 2>&1
    put "$1" "$part" $(($2 * 512))
}

# fs_swap DISK START_LBA SECTORS SECTOR_BYTES LABEL UUID
fs_swap() {
    local part="$1.part"
    blank "$part" $(($3 * $4))
    mkswap -q -L "$5" -U "$6" "$part" >/dev/null
    put "$1" "$part" $(($2 * $4))
}

# fs_xfs / fs_btrfs DISK START_LBA SECTORS LABEL UUID
fs_xfs() {
    local part="$1.part"
    blank "$part" $(($3 * 512))
    mkfs.xfs -q -f -m "uuid=$5" -L "$4" "$part"
    put "$1" "$part" $(($2 * 512))
}
fs_btrfs() {
    local part="$1.part"
    blank "$part" $(($3 * 512))
    mkfs.btrfs -q -f -U "$5" -L "$4" "$part" >/dev/null
    put "$1" "$part" $(($2 * 512))
}

# fs_luks DISK START_LBA SECTORS TYPE(luks1|luks2) LABEL UUID
fs_luks() {
    local part="$1.part" label=()
    blank "$part" $(($3 * 512))
    [ "$4" = luks2 ] && label=(--label "$5")
    cryptsetup luksFormat -q --batch-mode --type "$4" --pbkdf pbkdf2 --pbkdf-force-iterations 1000 \
        --hash sha256 --key-file keyfile --uuid "$6" "${label[@]}" "$part"
    put "$1" "$part" $(($2 * 512))
}

# fs_bitlocker DISK START_LBA SECTORS VOLUME_GUID DESCRIPTION
# BitLocker volumes cannot be created on Linux. This writes what identifies one (libbde's
# "BitLocker Drive Encryption (BDE) format"): a Windows 7+ volume header (jump EB 58 90, OEM id
# "-FVE-FS-", the BitLocker GUID at 0xa0, three FVE metadata offsets at 0xb0) and three FVE
# metadata blocks ("-FVE-FS-", version 2, header with the volume GUID and a description entry).
# The rest of the partition stays zero (the "encrypted" data).
fs_bitlocker() {
    python3 - "$1" $(($2 * 512)) $(($3 * 512)) "$4" "$5" <<'EOF'
import struct, sys, uuid
disk, off, size, guid, desc = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
meta = [0x100000, 0x200000, 0x300000]  # byte offsets inside the volume, 64-byte aligned
assert meta[-1] + 0x10000 <= size
hdr = bytearray(512)
hdr[0:3] = b"\xeb\x58\x90"
hdr[3:11] = b"-FVE-FS-"
struct.pack_into("<HBHBHHBHHHLL", hdr, 0x0B, 512, 8, 0, 0, 0, 0, 0xF8, 0, 63, 255, 0, 0)
hdr[0x47:0x52] = b"NO NAME    "
hdr[0x52:0x5A] = b"FAT32   "
# BitLocker identifier GUID 4967d63b-2e29-4ad8-8399-f6a339e3d001 (mixed endian on disk).
hdr[0xA0:0xB0] = uuid.UUID("4967d63b-2e29-4ad8-8399-f6a339e3d001").bytes_le
struct.pack_into("<QQQ", hdr, 0xB0, *meta)
hdr[510:512] = b"\x55\xaa"
text = desc.encode("utf-16-le") + b"\0\0"
entry = struct.pack("<HHHH", 8 + len(text), 0x0007, 0x0002, 1) + text
fve_size = 48 + len(entry)
block = bytearray(64)
block[0:8] = b"-FVE-FS-"
struct.pack_into("<HH", block, 8, 0, 2)  # size (unused here), version 2
struct.pack_into("<QQQ", block, 32, *meta)
header = struct.pack("<IIII", fve_size, 1, 48, fve_size) + uuid.UUID(guid).bytes_le + bytes(16)
with open(disk, "r+b") as f:
    f.seek(off)
    f.write(hdr)
    for m in meta:
        f.seek(off + m)
        f.write(bytes(block) + header + entry)
EOF
}

# geom DISK N SECTOR_BYTES: print "START_LBA SECTORS" of partition N, as the partitioning tool
# wrote it (sfdisk reads 512-byte-sector tables, fdisk -b 4096 the others).
geom() {
    if [ "$3" = 4096 ]; then
        fdisk -b 4096 -l -o Device,Start,Sectors "$1" | awk -v dev="$1$2" '$1 == dev { print $2, $3 }'
    else
        sfdisk -d "$1" | awk -v dev="$1$2" '$1 == dev { gsub(",", ""); print $4, $6 }'
    fi
}

# esp_loader DISK START_LBA SECTOR_BYTES DIR FILE: put a stand-in UEFI loader into a FAT partition
# with mtools (no mount), e.g. EFI/BOOT BOOTX64.EFI.
esp_loader() {
    local img="$1@@$(($2 * $3))" dir="" part
    export MTOOLS_SKIP_CHECK=1
    for part in ${4//\// }; do
        dir="$dir/$part"
        mmd -i "$img" "::$dir"
    done
    printf 'MZ stand-in UEFI loader for vhdtool tests\n' >"$1.loader"
    mcopy -i "$img" "$1.loader" "::$dir/$5"
    rm -f -- "$1.loader"
}

# fs_lvm2 DISK START_LBA SECTORS PV_UUID(32 characters)
# An LVM2 physical volume label as pvcreate writes it (LVM2 "label_header" + "pv_header" in
# sector 1), crafted because pvcreate needs a block device. LVM's CRC is CRC-32 (0xEDB88320)
# started at 0xf597a6cf without the final inversion, over bytes 0x14..0x200 of the label sector.
fs_lvm2() {
    python3 - "$1" $(($2 * 512)) $(($3 * 512)) "$4" <<'PY'
import struct, sys, zlib
disk, off, size, uuid = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4].encode()
assert len(uuid) == 32
label = bytearray(512)
label[0:8] = b"LABELONE"                      # 0x00 id
struct.pack_into("<Q", label, 8, 1)           # 0x08 sector_xl: this label's sector
struct.pack_into("<I", label, 20, 32)         # 0x14 offset_xl: pv_header at 0x20
label[24:32] = b"LVM2 001"                    # 0x18 type
label[32:64] = uuid                           # 0x20 pv_header.pv_uuid
struct.pack_into("<Q", label, 64, size)       # 0x40 device_size_xl
# disk areas: data area from 1 MiB to the end, then a terminator; metadata area at 4 KiB
struct.pack_into("<QQQQQQQQ", label, 72, 1 << 20, 0, 0, 0, 4096, (1 << 20) - 4096, 0, 0)
crc = zlib.crc32(bytes(label[20:512]), 0xf597a6cf ^ 0xFFFFFFFF) ^ 0xFFFFFFFF
struct.pack_into("<I", label, 16, crc)        # 0x10 crc_xl
with open(disk, "r+b") as f:
    f.seek(off + 512)
    f.write(label)
PY
}

# sgdisk on a plain file; fails loudly.
gpt() { # gpt DISK ARGS...
    local disk=$1
    shift
    sgdisk "$@" "$disk" >/dev/null
}

# wrap NAME SECTOR SCHEME DESCRIPTION: register NAME.raw and its three VHD forms.
wrap() {
    local n=$1
    manifest "$n.raw" raw "$n.raw" "$2" "$3" "$4"
    qemu-img convert -q -f raw -O vpc -o subformat=fixed,force_size=on "$n.raw" "$n.force.vhd"
    manifest "$n.force.vhd" vhd-fixed-force "$n.raw" "$2" "$3" "$4"
    qemu-img convert -q -f raw -O vpc -o subformat=fixed "$n.raw" "$n.chs.vhd"
    manifest "$n.chs.vhd" vhd-fixed-chs "$n.raw" "$2" "$3" "$4"
    qemu-img convert -q -f raw -O vpc "$n.raw" "$n.dyn.vhd"
    manifest "$n.dyn.vhd" vhd-dynamic "$n.raw" "$2" "$3" "$4"
}

# ---------------------------------------------------------------------------------------------
# MBR layouts
# ---------------------------------------------------------------------------------------------

# Windows-like: 500 MiB "System Reserved" NTFS (active) at 1 MiB, then NTFS up to the last sector.
d=win-mbr.raw
blank $d $((600 * MIB))
sfdisk -q $d <<'EOF'
label: dos
label-id: 0x1a2b3c4d
start=2048, size=1024000, type=7, bootable
start=1026048, type=7
EOF
fs_ntfs $d 2048 1024000 "System Reserved" 1A2B3C4D00000001
fs_ntfs $d 1026048 $((600 * 2048 - 1026048)) Windows 1A2B3C4D00000002
wrap win-mbr 512 mbr "windows-like MBR: System Reserved NTFS 0x07 active + NTFS 0x07 to the last sector"

# Linux-like: one ext4 from 1 MiB to the end.
d=linux-mbr.raw
blank $d $((64 * MIB))
sfdisk -q $d <<'EOF'
label: dos
label-id: 0x0badcafe
start=2048, type=83, bootable
EOF
fs_ext $d 2048 $((64 * 2048 - 2048)) 512 ext4 rootfs 6f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9
wrap linux-mbr 512 mbr "linux-like MBR: one ext4 0x83 active from 1 MiB to the last sector"

# Same, but the disk is not a whole number of MiB (64 MiB + 7 sectors).
d=linux-odd.raw
blank $d $((64 * MIB + 7 * 512))
sfdisk -q $d <<'EOF'
label: dos
label-id: 0x0dd0dd00
start=2048, type=83
EOF
fs_ext $d 2048 $((64 * 2048 + 7 - 2048)) 512 ext4 oddroot 0dd0dd00-1111-4222-8333-444455556666
wrap linux-odd 512 mbr "MBR on a 64 MiB + 7 sector disk: ext4 0x83 to the last sector"

# Four primaries: FAT16, FAT32, ext4, swap (to the last sector).
d=four-primary.raw
blank $d $((160 * MIB))
sfdisk -q $d <<'EOF'
label: dos
label-id: 0x44444444
start=2048, size=32768, type=6
start=34816, size=98304, type=c
start=133120, size=65536, type=83, bootable
start=198656, type=82
EOF
fs_fat $d 2048 32768 512 16 FAT16VOL 16161616
fs_fat $d 34816 98304 512 32 FAT32VOL 32323232
fs_ext $d 133120 65536 512 ext4 linuxroot 44444444-0003-4000-8000-000000000003
fs_swap $d 198656 $((160 * 2048 - 198656)) 512 swapspace 44444444-0004-4000-8000-000000000004
wrap four-primary 512 mbr "four primaries: FAT16 0x06, FAT32 0x0c, ext4 0x83 active, swap 0x82 to the last sector"

# Extended partition with three logicals; the last logical ends at the last sector.
d=ext-logicals.raw
blank $d $((128 * MIB))
sfdisk -q $d <<'EOF'
label: dos
label-id: 0x55555555
start=2048, size=32768, type=83, bootable
start=34816, type=5
start=36864, size=65536, type=83
start=104448, size=32768, type=82
start=139264, type=c
EOF
fs_ext $d 2048 32768 512 ext2 boot 55555555-0001-4000-8000-000000000001
fs_ext $d 36864 65536 512 ext4 logroot 55555555-0005-4000-8000-000000000005
fs_swap $d 104448 32768 512 logswap 55555555-0006-4000-8000-000000000006
fs_fat $d 139264 $((128 * 2048 - 139264)) 512 32 LOGDATA 55550007
wrap ext-logicals 512 mbr "primary ext2 + extended 0x05 with logicals ext4, swap, FAT32 (to the last sector)"

# Misc MBR: FAT12, ext3, LUKS2, BitLocker.
d=misc-mbr.raw
blank $d $((128 * MIB))
sfdisk -q $d <<'EOF'
label: dos
label-id: 0x66666666
start=2048, size=8192, type=1
start=10240, size=32768, type=83
start=43008, size=65536, type=83
start=108544, type=7
EOF
fs_fat $d 2048 8192 512 12 FAT12VOL 12121212
fs_ext $d 10240 32768 512 ext3 ext3vol 66666666-0002-4000-8000-000000000002
fs_luks $d 43008 65536 luks2 cryptroot 66666666-0003-4000-8000-000000000003
fs_bitlocker $d 108544 $((128 * 2048 - 108544)) 66666666-0004-4000-8000-000000000004 "TESTPC C: 2026-11-23"
wrap misc-mbr 512 mbr "MBR: FAT12 0x01, ext3, LUKS2, BitLocker (crafted) to the last sector"

# Tiny: under Azure's 20 MiB minimum.
d=tiny-fat12.raw
blank $d $((8 * MIB))
sfdisk -q $d <<'EOF'
label: dos
label-id: 0x77777777
start=2048, type=1, bootable
EOF
fs_fat $d 2048 $((8 * 2048 - 2048)) 512 12 TINY 77777777
wrap tiny-fat12 512 mbr "8 MiB MBR disk: FAT12 0x01 to the last sector (below the Azure minimum)"

# LVM2 physical volume (crafted label) in an MBR partition of type 0x8e.
d=lvm-mbr.raw
blank $d $((32 * MIB))
sfdisk -q $d <<'EOF'
label: dos
label-id: 0x8e8e8e8e
start=2048, type=8e
EOF
fs_lvm2 $d 2048 $((32 * 2048 - 2048)) Abc123DefGhiJklMnoPqrStuVwxYz456
wrap lvm-mbr 512 mbr "MBR: one LVM2 physical volume 0x8e (crafted label) to the last sector"

# ---------------------------------------------------------------------------------------------
# GPT layouts
# ---------------------------------------------------------------------------------------------

# Windows-like GPT: ESP, MSR, basic data NTFS, recovery NTFS (attributes 0x8000000000000001).
d=gpt-win.raw
blank $d $((300 * MIB))
gpt $d -o -U 8a1b2c3d-0000-4000-8000-000000000000 \
    -n 1:2048:+100M -t 1:ef00 -c 1:"EFI system partition" -u 1:8a1b2c3d-0001-4000-8000-000000000001 \
    -n 2:0:+16M -t 2:0c01 -c 2:"Microsoft reserved partition" -u 2:8a1b2c3d-0002-4000-8000-000000000002 \
    -n 3:0:+120M -t 3:0700 -c 3:"Basic data partition" -u 3:8a1b2c3d-0003-4000-8000-000000000003 \
    -n 4:0:0 -t 4:2700 -c 4:"Recovery" -u 4:8a1b2c3d-0004-4000-8000-000000000004 \
    -A 4:set:0 -A 4:set:63
fs_fat $d 2048 204800 512 32 SYSTEM 8a1b0001
esp_loader $d 2048 512 EFI/Microsoft/Boot bootmgfw.efi
fs_ntfs $d 239616 245760 Windows 8A1B2C3D00000003
fs_ntfs $d $(geom $d 4 512) Recovery 8A1B2C3D00000004
wrap gpt-win 512 gpt "windows-like GPT: ESP FAT32 with bootmgfw.efi, MSR, basic data NTFS, recovery NTFS with attributes"

# Linux-like GPT: BIOS boot, ESP, Linux file system to the last usable sector.
d=gpt-linux.raw
blank $d $((128 * MIB))
gpt $d -o -U 9b2c3d4e-0000-4000-8000-000000000000 \
    -n 1:2048:+1M -t 1:ef02 -c 1:"BIOS boot partition" -u 1:9b2c3d4e-0001-4000-8000-000000000001 \
    -n 2:0:+48M -t 2:ef00 -c 2:"EFI System" -u 2:9b2c3d4e-0002-4000-8000-000000000002 \
    -n 3:0:0 -t 3:8300 -c 3:"Linux filesystem" -u 3:9b2c3d4e-0003-4000-8000-000000000003
fs_fat $d 4096 98304 512 32 ESP 9b2c0002
esp_loader $d 4096 512 EFI/BOOT BOOTX64.EFI
fs_ext $d $(geom $d 3 512) 512 ext4 root 9b2c3d4e-1003-4000-8000-000000000003
wrap gpt-linux 512 gpt "linux-like GPT: BIOS boot, ESP FAT32 with BOOTX64.EFI, Linux ext4 to the last usable sector"

# Misc GPT: XFS, Btrfs, swap, LUKS1, LUKS2, BitLocker, FAT16 basic data.
d=gpt-misc.raw
blank $d $((600 * MIB))
gpt $d -o -U acacacac-0000-4000-8000-000000000000 \
    -n 1:2048:+300M -t 1:8300 -c 1:"xfs data" -u 1:acacacac-0001-4000-8000-000000000001 \
    -n 2:0:+128M -t 2:8300 -c 2:"btrfs data" -u 2:acacacac-0002-4000-8000-000000000002 \
    -n 3:0:+32M -t 3:8200 -c 3:"swap" -u 3:acacacac-0003-4000-8000-000000000003 \
    -n 4:0:+32M -t 4:8309 -c 4:"luks1" -u 4:acacacac-0004-4000-8000-000000000004 \
    -n 5:0:+32M -t 5:8309 -c 5:"luks2" -u 5:acacacac-0005-4000-8000-000000000005 \
    -n 6:0:+16M -t 6:0700 -c 6:"bitlocker" -u 6:acacacac-0006-4000-8000-000000000006 \
    -n 7:0:0 -t 7:0700 -c 7:"fat16 data" -u 7:acacacac-0007-4000-8000-000000000007
fs_xfs $d 2048 614400 xfsvol acacacac-1001-4000-8000-000000000001
fs_btrfs $d 616448 262144 btrvol acacacac-1002-4000-8000-000000000002
fs_swap $d 878592 65536 512 gptswap acacacac-1003-4000-8000-000000000003
fs_luks $d 944128 65536 luks1 "" acacacac-1004-4000-8000-000000000004
fs_luks $d 1009664 65536 luks2 gptluks2 acacacac-1005-4000-8000-000000000005
fs_bitlocker $d 1075200 32768 acacacac-1006-4000-8000-000000000006 "TESTPC D: 2026-11-23"
fs_fat $d $(geom $d 7 512) 512 16 FAT16DATA acac0007
wrap gpt-misc 512 gpt "GPT: XFS, Btrfs, swap, LUKS1, LUKS2, BitLocker (crafted), FAT16"

# Hybrid MBR (sgdisk -h): GPT plus an MBR that also maps partition 2.
d=gpt-hybrid.raw
blank $d $((64 * MIB))
gpt $d -o -U bdbdbdbd-0000-4000-8000-000000000000 \
    -n 1:2048:+16M -t 1:ef00 -c 1:"EFI System" -u 1:bdbdbdbd-0001-4000-8000-000000000001 \
    -n 2:0:0 -t 2:8300 -c 2:"Linux filesystem" -u 2:bdbdbdbd-0002-4000-8000-000000000002
gpt $d -h 2
fs_fat $d 2048 32768 512 16 HYBESP bdbd0001
fs_ext $d $(geom $d 2 512) 512 ext4 hybroot bdbdbdbd-1002-4000-8000-000000000002
wrap gpt-hybrid 512 hybrid "hybrid MBR (sgdisk -h 2): ESP FAT16 + Linux ext4"

# 4096-byte logical sectors (fdisk -b 4096: sfdisk/sgdisk follow the file's 512).
d=gpt-4k.raw
blank $d $((512 * MIB))
fdisk -b 4096 $d >/dev/null 2>&1 <<'EOF'
g
n
1
256
+260M
n
2


t
1
1
x
i
4C4C4C4C-0000-4000-8000-000000000000
u
1
4C4C4C4C-0001-4000-8000-000000000001
u
2
4C4C4C4C-0002-4000-8000-000000000002
n
1
EFI system partition
n
2
Linux filesystem
r
w
EOF
fs_fat $d $(geom $d 1 4096) 4096 32 ESP4K 4c4c0001
fs_ext $d $(geom $d 2 4096) 4096 ext4 root4k 4c4c4c4c-1002-4000-8000-000000000002
# Raw only: a VHD has 512-byte sectors by definition, so there is no VHD form of this disk.
manifest gpt-4k.raw raw gpt-4k.raw 4096 gpt "GPT on 4096-byte sectors (fdisk -b 4096): ESP FAT32 + Linux ext4"

# ---------------------------------------------------------------------------------------------
# No partition table
# ---------------------------------------------------------------------------------------------

d=superfloppy-ext4.raw
blank $d $((32 * MIB))
mke2fs -q -F -t ext4 -E hash_seed=5f5f5f5f-0000-4000-8000-000000000000 \
    -U 5f5f5f5f-0000-4000-8000-000000000000 -L wholedisk $d
wrap superfloppy-ext4 512 none "no partition table: ext4 on the whole disk"

d=blank.raw
blank $d $((32 * MIB))
wrap blank 512 none "all zero 32 MiB disk"

# ---------------------------------------------------------------------------------------------
# Differencing VHD (crafted: qemu-img's vpc driver cannot create one)
# ---------------------------------------------------------------------------------------------

# The child has no block allocated: every read falls through to the parent. Layout as Hyper-V
# writes it: footer copy, dynamic header ("cxsparse", parent unique id, parent time stamp,
# UTF-16BE parent name, W2ru and W2ku locators), BAT (all 0xFFFFFFFF), locator data, footer.
python3 - linux-mbr.dyn.vhd linux-mbr.diff.vhd <<'EOF'
import os, struct, sys
parent, child = sys.argv[1], sys.argv[2]

def checksum(buf, at):
    b = bytearray(buf)
    b[at:at + 4] = b"\0\0\0\0"
    return (~sum(b)) & 0xFFFFFFFF

with open(parent, "rb") as f:
    data = f.read()
pfoot = data[-512:]
assert pfoot[0:8] == b"conectix", "parent footer"
pdyn_off = struct.unpack_from(">Q", pfoot, 16)[0]
pdyn = data[pdyn_off:pdyn_off + 1024]
assert pdyn[0:8] == b"cxsparse", "parent dynamic header"
max_entries, block_size = struct.unpack_from(">II", pdyn, 28)

bat_off = 512 + 1024
bat_bytes = (max_entries * 4 + 511) // 512 * 512
name = os.path.basename(parent)
rel = (".\\" + name).encode("utf-16-le")
absolute = ("C:\\vhd\\" + name).encode("utf-16-le")
loc1_off = bat_off + bat_bytes
loc2_off = loc1_off + 512
end = loc2_off + 512

foot = bytearray(pfoot)
struct.pack_into(">I", foot, 24, struct.unpack_from(">I", pfoot, 24)[0] + 60)  # time stamp
struct.pack_into(">I", foot, 60, 4)  # disk type: differencing
foot[68:84] = bytes.fromhex("d1ffd1ffd1ff4d1f8d1fd1ffd1ffd1ff")  # unique id
foot[84] = 0
struct.pack_into(">Q", foot, 16, 512)
struct.pack_into(">I", foot, 64, checksum(foot, 64))

dyn = bytearray(1024)
dyn[0:8] = b"cxsparse"
struct.pack_into(">QQIII", dyn, 8, 0xFFFFFFFFFFFFFFFF, bat_off, 0x00010000, max_entries, block_size)
dyn[40:56] = pfoot[68:84]  # parent unique id
dyn[56:60] = pfoot[24:28]  # parent time stamp
pn = name.encode("utf-16-be")
dyn[64:64 + len(pn)] = pn
struct.pack_into(">4sIIIQ", dyn, 576, b"W2ru", 512, len(rel), 0, loc1_off)
struct.pack_into(">4sIIIQ", dyn, 600, b"W2ku", 512, len(absolute), 0, loc2_off)
struct.pack_into(">I", dyn, 36, checksum(dyn, 36))

out = bytearray(end + 512)
out[0:512] = foot
out[512:1536] = dyn
out[bat_off:bat_off + max_entries * 4] = b"\xff" * (max_entries * 4)
out[loc1_off:loc1_off + len(rel)] = rel
out[loc2_off:loc2_off + len(absolute)] = absolute
out[end:end + 512] = foot
with open(child, "wb") as f:
    f.write(out)
EOF
manifest linux-mbr.diff.vhd vhd-differencing linux-mbr.raw 512 mbr \
    "differencing VHD, no block allocated, parent linux-mbr.dyn.vhd (crafted)"

rm -f keyfile
cat "$MANIFEST"
