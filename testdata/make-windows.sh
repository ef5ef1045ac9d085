#!/usr/bin/env bash
# Generate Windows-like Generation-1 (MBR, BIOS) disk images, and NTFS volumes for the NTFS file
# reader's tests. Nothing here is Microsoft code: every boot binary is a STAND-IN ("MZ" + a line
# saying so + deterministic filler). The BCD store and the SYSTEM hive are real (see
# testdata/windows-boot/SOURCES.md and testdata/windows-registry/SOURCES.md).
#
# usage: testdata/make-windows.sh OUTDIR [VARIANT...]      (default: every variant)
#
# Windows-like disks (MBR, 512-byte sectors, disk signature 0x5cbea03e = the one the SYSTEM hive's
# MountedDevices names; partitions 1 MiB aligned; sizes scaled down, files sparse):
#   sysres      p1 "System Reserved" NTFS 32 MiB (active): \bootmgr, \Boot\BCD
#               p2 C: NTFS 48 MiB: the Windows tree (below), \Recovery\WindowsRE\Winre.wim
#   conly       p1 C: NTFS 48 MiB (active): \bootmgr, \Boot\BCD and the Windows tree
#   bootdevice  conly with \Boot\BCD the real windeploy-bios-bootdevice.BCD as it is: its default
#               entry's device and osdevice are the `boot` device (a deployment-made store), so
#               the Windows partition is found by its winload.exe
#   locate      conly with \Boot\BCD the real windeploy-uefi-locate.BCD as it is: its default
#               entry's device and osdevice are `locate` devices (a sysprepped store; it was made
#               for UEFI, but {bootmgr} -> default -> osdevice reads the same), so the Windows
#               partition is found by its winload.exe; its WinRE entry is on another (GPT) disk
#   winre       sysres, but WinRE in p3, type 0x27 (NTFS 16 MiB, \Recovery\WindowsRE\*), none on C:
#   compressed  conly with \Windows\Boot\EFI\bootmgfw.efi LZNT1-compressed (ntfs-3g `compression`
#               mount option, the compressed attribute on the directory, the file written anew)
#   hibernated  conly with \hiberfil.sys starting with "HIBR" (1 MiB)
#   dirty       conly with the $Volume dirty flag set (record 3 and its $MFTMirr copy)
#   dirtyhive   conly with a dirty SYSTEM hive and no logs (Windows 10 1709: sequence numbers
#               4317/4316; its C: value moved onto this disk, its other disks' values untouched)
#   hivelogs    conly with a dirty SYSTEM hive (1622/1621, MountedDevices already in the GPT
#               DMIO:ID: form) and its SYSTEM.LOG1 / SYSTEM.LOG2 beside it
#   reuse       sysres with a System Reserved of 100 MiB (MBR2GPT reuses it as the ESP)
#   bitlocker   sysres, but p2 is a BitLocker stand-in (a "-FVE-FS-" header and FVE metadata
#               block signature; no NTFS inside)
# The Windows tree on C: \Windows\Boot\EFI\{bootmgfw.efi,bootmgr.efi,memtest.efi,boot.stl,
#   en-US\bootmgfw.efi.mui,en-US\memtest.efi.mui,de-DE\bootmgfw.efi.mui,qps-ploc\bootmgr.efi.mui},
#   \Windows\Boot\Fonts\{wgl4_boot,segmono_boot,segoen_slboot}.ttf,
#   \Windows\Boot\Resources\{bootres.dll,en-US\bootres.dll.mui}, \Windows\Boot\PCAT\bootmgr,
#   \Windows\System32\{winload.exe,winload.efi,winresume.exe,winresume.efi},
#   \Windows\System32\config\SYSTEM (real, win7 unless said otherwise, MountedDevices' C: value
#   moved to C:'s offset), \Windows\System32\config\SOFTWARE (a real hive, the small BCD store
#   pybcd-minimal-uefi.BCD, with Microsoft\Windows NT\CurrentVersion merged in by hivexregedit:
#   Windows 10 Pro 22H2, build 19045.3803),
#   \Windows\System32\Recovery\ReAgent.xml, and \Recovery\WindowsRE\{Winre.wim,boot.sdi} unless
#   WinRE is in its own partition.
# \Boot\BCD is the real Windows 7 BIOS store pybcd-win7-bios-vm.BCD with its MBR devices (disk
#   signature 0x36234da4, offset 1 MiB) moved onto this disk: signature 0x5cbea03e, C:'s offset
#   (a same-length byte patch of the 88-byte device elements; the hive's checksum covers only
#   its base block, so it stays valid).
#
# NTFS volumes for the reader (single-partition MBR disks; not Windows-like):
#   special     4 KiB clusters: mixed-case and Unicode names, a DOS 8.3 alias, hard links, an empty and a resident
#               file, a sparse file, a file with uninitialized tail, a fragmented file (thousands
#               of runs: $DATA split over extension records by an $ATTRIBUTE_LIST), a file with
#               many named streams ($ATTRIBUTE_LIST), a directory of 3000 files (a B+ tree of
#               index blocks), nesting 10 deep, an Interix symlink (a plain file); refused:
#               LZNT1-compressed files, a WOF (reparse tag 0x80000017) file, a symbolic link
#               (reparse tag 0xA000000C), an "encrypted" file (its
#               attributes set by a byte patch: ntfs-3g cannot encrypt)
#   bigclus     64 KiB clusters (index blocks of 4 KiB are smaller than a cluster), 2000 files
#   smallclus   512-byte clusters (MFT records of 1 KiB span two clusters), 2000 files
#
# Output per VARIANT in OUTDIR: VARIANT.img (raw disk), VARIANT.vhd (fixed VHD: qemu-img
# convert -O vpc -o subformat=fixed,force_size=on), VARIANT.parts (one line per partition:
# number, start byte, size byte, MBR type, role: sysres | c | winre | bitlocker | data),
# VARIANT.refused (paths the reader must refuse, one per line; may be empty).
#
# Needs: mkntfs and ntfs-3g (Debian ntfs-3g), a working /dev/fuse (the files and directories go
# in through an ntfs-3g FUSE mount: ntfs-3g has no offline mkdir), sfdisk (fdisk), python3,
# qemu-img (qemu-utils), setfattr (attr). Exit status: 0 ok; 5 when a tool or FUSE is missing
# (the message says what to install). Takes 2-10 s per variant (special, with 7500 files through
# FUSE, is the slowest), about 40 s for all; needs root for the FUSE mount (or a user allowed
# to mount FUSE). Disk use: about 300 MiB for all variants (sparse files).
set -euo pipefail

if [ $# -lt 1 ]; then
    echo "usage: $0 OUTDIR [VARIANT...]" >&2
    exit 2
fi
export LC_ALL=C TZ=UTC
export PATH="$PATH:/usr/sbin:/sbin"
here=$(cd "$(dirname "$0")" && pwd)

need() { # need TOOL APT_PACKAGE
    if ! command -v "$1" >/dev/null 2>&1; then
        echo "make-windows.sh: missing tool '$1': install it with 'apt-get install $2'" >&2
        exit 5
    fi
}
need mkntfs ntfs-3g
need ntfs-3g ntfs-3g
need sfdisk fdisk
need python3 python3
need qemu-img qemu-utils
need setfattr attr
need hivexregedit libwin-hivex-perl
if ! [ -c /dev/fuse ]; then
    echo "make-windows.sh: /dev/fuse is missing: the images need an ntfs-3g FUSE mount (modprobe fuse; in a container: --device /dev/fuse --cap-add SYS_ADMIN)" >&2
    exit 5
fi

out=$1
shift
variants=("$@")
if [ ${#variants[@]} -eq 0 ]; then
    variants=(sysres conly bootdevice locate winre compressed hibernated dirty dirtyhive hivelogs bitlocker reuse special bigclus smallclus)
fi
mkdir -p "$out"
work=$(mktemp -d)
mnt="$work/mnt"
mkdir "$mnt"
cleanup() {
    if mountpoint -q "$mnt" 2>/dev/null; then umount "$mnt" || fusermount -u "$mnt" || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

# the SOFTWARE hive of every C: (the version `info` reports), made once
software="$work/SOFTWARE"
cp "$here/windows-boot/uefi/pybcd-minimal-uefi.BCD" "$software"
chmod u+w "$software"
cat >"$work/software.reg" <<'REG'
Windows Registry Editor Version 5.00

[HKEY_LOCAL_MACHINE\SOFTWARE\Microsoft]

[HKEY_LOCAL_MACHINE\SOFTWARE\Microsoft\Windows NT]

[HKEY_LOCAL_MACHINE\SOFTWARE\Microsoft\Windows NT\CurrentVersion]
"ProductName"="Windows 10 Pro"
"DisplayVersion"="22H2"
"CurrentBuild"="19045"
"UBR"=dword:00000edb
"EditionID"="Professional"
"InstallationType"="Client"
REG
hivexregedit --merge --prefix 'HKEY_LOCAL_MACHINE\SOFTWARE' "$software" "$work/software.reg"

DISK_SIG=0x5cbea03e
hive=win7 # the SYSTEM hive on C: (see windows_tree)
MIB=1048576

# py ARGS: run the python program on stdin (deterministic content, byte patches).
# the interpreter itself, resolved once (a version manager's shim costs ~0.5 s per start)
python=$(python3 -c 'import sys; print(sys.executable)')
py() { "$python" - "$@"; }
# standin PATH NAME BYTES queues a stand-in; flush_standins writes the queue in one python run
# (python starts are the slow part of this script).
standin() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$work/standins"; }
flush_standins() {
    [ -s "$work/standins" ] || return 0
    py "$work/standins" <<'PY'
import os, random, sys
for line in open(sys.argv[1], encoding="utf-8"):
    path, name, n = line.rstrip("\n").split("\t")
    n = int(n)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    head = b"MZ" + (b"\nvhdtool test stand-in for %s: not a Microsoft binary\n" % name.encode())
    r = random.Random(name)
    body = head + r.randbytes(max(0, n - len(head)))
    with open(path, "wb") as f:
        f.write(body[:max(n, len(head))])
PY
    : >"$work/standins"
}

# mount_vol PART [OPTIONS]
mount_vol() {
    if ! ntfs-3g -o "${2:-rw}" "$1" "$mnt" 2>"$work/mount.err"; then
        echo "make-windows.sh: ntfs-3g FUSE mount failed (is /dev/fuse usable here?): $(cat "$work/mount.err")" >&2
        exit 5
    fi
}
umount_vol() { umount "$mnt"; }

# mkvol FILE MIB CLUSTER START_SECTOR LABEL: format a partition file
mkvol() {
    truncate -s "$2M" "$1"
    mkntfs -Q -F -q -s 512 -p "$4" -H 255 -S 63 -c "$3" -L "$5" "$1" >/dev/null 2>&1
}

# The Windows tree into the mounted volume. windows_tree WITH_RECOVERY(0|1) C_OFFSET_BYTES
windows_tree() {
    local m=$mnt b="$mnt/Windows/Boot"
    for f in bootmgfw.efi bootmgr.efi memtest.efi; do standin "$b/EFI/$f" "$f" 40000; done
    standin "$b/EFI/boot.stl" boot.stl 3000
    standin "$b/EFI/en-US/bootmgfw.efi.mui" en-US/bootmgfw.efi.mui 9000
    standin "$b/EFI/en-US/memtest.efi.mui" en-US/memtest.efi.mui 500
    standin "$b/EFI/de-DE/bootmgfw.efi.mui" de-DE/bootmgfw.efi.mui 9500
    standin "$b/EFI/qps-ploc/bootmgr.efi.mui" qps-ploc/bootmgr.efi.mui 700
    for f in wgl4_boot.ttf segmono_boot.ttf segoen_slboot.ttf; do standin "$b/Fonts/$f" "$f" 30000; done
    standin "$b/Resources/bootres.dll" bootres.dll 60000
    standin "$b/Resources/en-US/bootres.dll.mui" en-US/bootres.dll.mui 4000
    standin "$b/PCAT/bootmgr" PCAT/bootmgr 50000
    for f in winload.exe winload.efi winresume.exe winresume.efi; do
        standin "$m/Windows/System32/$f" "$f" 45000
    done
    flush_standins
    mkdir -p "$m/Windows/System32/config" "$m/Windows/System32/Recovery"
    py "$here/windows-registry" "$m/Windows/System32/config" "$2" "$hive" <<'PY'
import lzma, os, struct, sys
src, dst, c_off, which = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
# which hive, and the 12-byte MountedDevices value (MBR signature + offset) that names C:, moved
# onto this disk (signature 0x5cbea03e) and C:'s offset; None: the hive's C: is in GPT form
name, c_value, logs = {
    "win7": ("SYSTEM-win7-mbr", (0x5CBEA03E, 0x100000), False),
    "dirty": ("SYSTEM-win10-1709-mbr-dirty", (0xDF4546AE, 0x1F500000), False),
    "logs": ("SYSTEM-gpt-dirty", None, True),
}[which]
hive = lzma.open(os.path.join(src, name + ".xz")).read()
if c_value:
    old = struct.pack("<IQ", *c_value)
    assert hive.count(old) >= 1, "no MountedDevices value for C:"
    hive = hive.replace(old, struct.pack("<IQ", 0x5CBEA03E, c_off))
open(os.path.join(dst, "SYSTEM"), "wb").write(hive)
if logs:
    for ext in ("LOG1", "LOG2"):
        data = lzma.open(os.path.join(src, "%s.%s.xz" % (name, ext))).read()
        open(os.path.join(dst, "SYSTEM." + ext), "wb").write(data)
PY
    cp "$software" "$m/Windows/System32/config/SOFTWARE"
    cat >"$m/Windows/System32/Recovery/ReAgent.xml" <<'XML'
<?xml version='1.0' encoding='utf-8'?>

<WindowsRE version="2.0">
  <WinreBCD id="{efd09c92-55fb-11e2-aa98-9d073f340da7}"/>
  <WinreLocation path="\Recovery\WindowsRE" id="0" offset="0" guid="{00000000-0000-0000-0000-000000000000}"/>
  <ImageLocation path="" id="0" offset="0" guid="{00000000-0000-0000-0000-000000000000}"/>
  <PBRImageLocation path="" id="0" offset="0" guid="{00000000-0000-0000-0000-000000000000}" index="0"/>
  <PBRCustomImageLocation path="" id="0" offset="0" guid="{00000000-0000-0000-0000-000000000000}" index="0"/>
  <InstallState state="1"/>
  <OsInstallAvailable state="0"/>
  <CustomImageAvailable state="0"/>
  <IsAutoRepairOn state="1"/>
  <WinREStaged state="0"/>
  <OperationParam path=""/>
  <OsBuildVersion path="7601.17514.amd64fre.win7sp1_rtm.101119-1850"/>
  <OemTool state="0"/>
  <IsServer state="0"/>
  <DownlevelWinreLocation path="" id="0" offset="0" guid="{00000000-0000-0000-0000-000000000000}"/>
  <IsWimBoot state="0"/>
  <ScheduledOperation state="4"/>
</WindowsRE>
XML
    if [ "$1" = 1 ]; then recovery_tree; fi
}

recovery_tree() {
    mkdir -p "$mnt/Recovery/WindowsRE"
    printf 'MSWIM\0\0\0vhdtool test stand-in for Winre.wim: not a Windows image\n' >"$mnt/Recovery/WindowsRE/Winre.wim"
    standin "$mnt/Recovery/WindowsRE/boot.sdi" boot.sdi 20000
    flush_standins
}

# bios_boot C_OFFSET_BYTES: \bootmgr and \Boot\BCD (the real store, devices moved onto this disk)
bios_boot() {
    standin "$mnt/bootmgr" bootmgr 50000
    flush_standins
    mkdir -p "$mnt/Boot"
    py "$here/windows-boot/bios/pybcd-win7-bios-vm.BCD" "$mnt/Boot/BCD" "$1" <<'PY'
import struct, sys
src, dst, c_off = sys.argv[1], sys.argv[2], int(sys.argv[3])
bcd = open(src, "rb").read()
# MBR partition descriptor (88-byte device element from 0x20): offset u64, 8 zero bytes, local
# type 0, style 1 (MBR), then the disk signature.
old = struct.pack("<Q8xII", 0x100000, 0, 1) + struct.pack("<I", 0x36234DA4)
new = struct.pack("<Q8xII", c_off, 0, 1) + struct.pack("<I", 0x5CBEA03E)
assert bcd.count(old) >= 1, "no MBR device in the store"
open(dst, "wb").write(bcd.replace(old, new))
PY
}

# set_dirty PART: set the $Volume dirty flag in MFT record 3 and its $MFTMirr copy
set_dirty() {
    py "$1" <<'PY'
import struct, sys
p = sys.argv[1]
f = open(p, "r+b")
bs = f.read(512)
bps = struct.unpack_from("<H", bs, 0x0B)[0]
spc = bs[0x0D]
cb = bps * spc
rec = bs[0x40]
rb = rec * cb if rec < 0x80 else 1 << (256 - rec)
for lcn in (struct.unpack_from("<Q", bs, 0x30)[0], struct.unpack_from("<Q", bs, 0x38)[0]):
    off = lcn * cb + 3 * rb
    f.seek(off)
    r = bytearray(f.read(rb))
    assert r[:4] == b"FILE"
    a = struct.unpack_from("<H", r, 0x14)[0]
    while True:
        t, l = struct.unpack_from("<II", r, a)
        assert t != 0xFFFFFFFF, "no $VOLUME_INFORMATION"
        if t == 0x70:
            v = a + struct.unpack_from("<H", r, a + 0x14)[0]
            assert v + 0x0C <= 510
            flags = struct.unpack_from("<H", r, v + 0x0A)[0] | 0x0001
            struct.pack_into("<H", r, v + 0x0A, flags)
            break
        a += l
    f.seek(off)
    f.write(r)
PY
}

# set_encrypted PART NAME: mark the (only) file called NAME as EFS-encrypted: the encrypted bit
# in $STANDARD_INFORMATION and on its $DATA attribute (ntfs-3g cannot make EFS files)
set_encrypted() {
    py "$1" "$2" <<'PY'
import struct, sys
p, name = sys.argv[1], sys.argv[2].encode("utf-16-le")
f = open(p, "r+b")
bs = f.read(512)
cb = struct.unpack_from("<H", bs, 0x0B)[0] * bs[0x0D]
rec = bs[0x40]
rb = rec * cb if rec < 0x80 else 1 << (256 - rec)
mft = struct.unpack_from("<Q", bs, 0x30)[0] * cb
hits = 0
for n in range(16, 512):  # the files the script makes are in the first records of a fresh MFT
    f.seek(mft + n * rb)
    r = bytearray(f.read(rb))
    if r[:4] != b"FILE" or not struct.unpack_from("<H", r, 0x16)[0] & 1:
        continue
    a = struct.unpack_from("<H", r, 0x14)[0]
    found, si, data = False, None, None
    while a + 8 <= rb:
        t, l = struct.unpack_from("<II", r, a)
        if t == 0xFFFFFFFF or l == 0:
            break
        v = a + struct.unpack_from("<H", r, a + 0x14)[0]
        if t == 0x10:
            si = v
        if t == 0x30 and r[v + 0x42 : v + 0x42 + 2 * r[v + 0x40]] == name:
            found = True
        if t == 0x80 and r[a + 9] == 0:
            data = a
        a += l
    if found:
        assert si is not None and data is not None and si + 0x24 <= 510 and data + 0x0E <= 510
        struct.pack_into("<I", r, si + 0x20, struct.unpack_from("<I", r, si + 0x20)[0] | 0x4000)
        struct.pack_into("<H", r, data + 0x0C, struct.unpack_from("<H", r, data + 0x0C)[0] | 0x4000)
        f.seek(mft + n * rb)
        f.write(r)
        hits += 1
assert hits == 1, f"found {hits} files called that"
PY
}

# bitlocker_part FILE MIB: a BitLocker stand-in (Windows 7+ header, FVE metadata block at 64 KiB)
bitlocker_part() {
    truncate -s "$2M" "$1"
    py "$1" <<'PY'
import struct, sys
f = open(sys.argv[1], "r+b")
s = bytearray(512)
s[0:3] = b"\xEB\x58\x90"
s[3:11] = b"-FVE-FS-"
s[0x0B:0x0D] = struct.pack("<H", 512)
s[0x0D] = 8
s[0xA0:0xB0] = bytes(range(16))  # BitLocker identifier
s[0xB0:0xC8] = struct.pack("<QQQ", 0x10000, 0x20000, 0x30000)
s[0x1FE:0x200] = b"\x55\xAA"
f.write(s)
for off in (0x10000, 0x20000, 0x30000):
    f.seek(off)
    f.write(b"-FVE-FS-" + struct.pack("<HH", 0x40, 2) + b"vhdtool test stand-in, no key material")
PY
}

# many_files DIR COUNT: small files with mixed-case names
many_files() {
    py "$1" "$2" <<'PY'
import os, sys
d, n = sys.argv[1], int(sys.argv[2])
os.makedirs(d, exist_ok=True)
for i in range(n):
    with open(os.path.join(d, "File_%05d.Dat" % i), "wb") as f:
        f.write(b"file %d\n" % i * (1 + i % 5))
PY
}

special_tree() {
    local m=$mnt
    # first, so that set_encrypted finds its record among the first ones
    printf 'secret\n' >"$m/efs.txt"
    mkdir -p "$m/Mixed Case/Sub.Dir" "$m/unicode"
    printf 'tiny resident\n' >"$m/Mixed Case/ReadMe.TXT"
    # a DOS 8.3 alias beside the long name (separate Win32 and DOS index entries, as Windows makes)
    printf 'long name\n' >"$m/Mixed Case/A Long File Name.text"
    setfattr -h -n system.ntfs_dos_name -v "ALONGF~1.TEX" "$m/Mixed Case/A Long File Name.text"
    : >"$m/Mixed Case/empty"
    standin "$m/Mixed Case/Sub.Dir/Big.BIN" big.bin 300000
    printf 'ünïcødé ✓\n' >"$m/unicode/Ünïcødé-名前.txt"
    # sparse: 8 MiB with data at 0 and at 6 MiB only; uninitialized tail: grown by truncate
    printf 'head' >"$m/sparse.bin"
    printf 'middle' | dd of="$m/sparse.bin" bs=1 seek=$((6 * MIB)) conv=notrunc status=none
    truncate -s $((8 * MIB)) "$m/sparse.bin"
    standin "$m/grown.bin" grown.bin 10000
    flush_standins
    ln "$m/Mixed Case/Sub.Dir/Big.BIN" "$m/unicode/hardlink-to-big.bin"
    truncate -s 200000 "$m/grown.bin"
    # fragmented: 3000 one-cluster files, the rest of the volume filled, every other file
    # deleted, then a file written into the holes (about 1400 runs: its runlist no longer fits
    # one record, so ntfs-3g splits it over extension records with an $ATTRIBUTE_LIST)
    py "$m/holes" "$m/filler" "$m/frag.bin" <<'PY'
import os, random, sys
d, filler, big = sys.argv[1:4]
os.makedirs(d)
for i in range(3000):
    open(os.path.join(d, "h%04d" % i), "wb").write(b"x" * 4096)
with open(filler, "wb") as f:
    try:
        while True:
            f.write(bytes(1 << 20))
            f.flush()
    except OSError:
        pass
for i in range(0, 3000, 2):
    os.remove(os.path.join(d, "h%04d" % i))
r = random.Random(7)
with open(big, "wb") as f:
    f.write(r.randbytes(1400 * 4096))
os.remove(filler)
PY
    # many named streams (user.* xattrs are named $DATA streams): an $ATTRIBUTE_LIST
    printf 'streams\n' >"$m/streams.txt"
    py "$m/streams.txt" <<'PY'
import os, sys
for i in range(1, 41):
    os.setxattr(sys.argv[1], "user.stream_with_a_long_name_%d" % i, b"value %d" % i)
PY
    many_files "$m/big dir" 3000
    local d="$m/deep"
    for i in 1 2 3 4 5 6 7 8 9 10; do d="$d/level$i"; done
    mkdir -p "$d"
    printf 'bottom\n' >"$d/bottom.txt"
    # refused: LZNT1-compressed (a compressed directory compresses what is written into it)
    mkdir "$m/compressed"
    setfattr -h -v 0x00000800 -n system.ntfs_attrib_be "$m/compressed"
    py "$m/compressed/text.txt" <<'PY'
import sys
open(sys.argv[1], "wb").write(b"compress me " * 20000)
PY
    cp "$m/Mixed Case/Sub.Dir/Big.BIN" "$m/compressed/big.bin"
    printf 'wof\n' >"$m/wof.dll"
    py "$m/wof.dll" <<'PY'
import os, struct, sys
# WOF_EXTERNAL_INFO (version 1, provider 2 = file) + FILE_PROVIDER_EXTERNAL_INFO_V1 (version 1,
# algorithm 1 = LZX, flags 0) under IO_REPARSE_TAG_WOF
data = struct.pack("<IIII", 1, 2, 1, 1)
os.setxattr(sys.argv[1], "system.ntfs_reparse_data", struct.pack("<IHH", 0x80000017, len(data), 0) + data)
PY
    ln -s "Mixed Case/ReadMe.TXT" "$m/symlink.txt" # ntfs-3g: an Interix symlink, a plain file
    printf 'link\n' >"$m/reparse-link.txt"
    py "$m/reparse-link.txt" <<'PY'
import os, struct, sys
# IO_REPARSE_TAG_SYMLINK: substitute and print names, flags 1 (relative)
name = "ReadMe.TXT".encode("utf-16-le")
data = struct.pack("<HHHHI", 0, len(name), len(name), len(name), 1) + name + name
os.setxattr(sys.argv[1], "system.ntfs_reparse_data", struct.pack("<IHH", 0xA000000C, len(data), 0) + data)
PY
}

mbr_layout() { # mbr_layout IMG TOTAL_MIB "start_mib size_mib type active"...
    local img=$1 total=$2
    shift 2
    truncate -s "${total}M" "$img"
    {
        echo "label: dos"
        echo "label-id: $DISK_SIG"
        echo "unit: sectors"
        for p in "$@"; do
            set -- $p
            printf 'start=%d, size=%d, type=%s%s\n' $(($1 * 2048)) $(($2 * 2048)) "$3" "$([ "$4" = 1 ] && echo ', bootable')"
        done
    } | sfdisk -q "$img" >/dev/null
}

place() { # place IMG PART START_MIB
    dd if="$2" of="$1" bs=1M seek="$3" conv=notrunc,sparse status=none
}

finish() { # finish NAME
    qemu-img convert -f raw -O vpc -o subformat=fixed,force_size=on "$out/$1.img" "$out/$1.vhd"
    touch "$out/$1.refused"
}

# windows VARIANT: the Windows-like disks
windows() {
    local v=$1 w=$work/$1
    mkdir -p "$w"
    local sys_mib=32 c_mib=48 re_mib=16 c_start=1
    : >"$out/$v.parts"
    case $v in
    conly | bootdevice | locate | compressed | hibernated | dirty | dirtyhive | hivelogs)
        case $v in dirtyhive) hive=dirty ;; hivelogs) hive=logs ;; *) hive=win7 ;; esac
        mkvol "$w/c.part" $c_mib 4096 2048 Windows
        mount_vol "$w/c.part" "$([ "$v" = compressed ] && echo rw,compression || echo rw)"
        bios_boot $((c_start * MIB))
        if [ "$v" = bootdevice ]; then
            cp "$here/windows-boot/bios/windeploy-bios-bootdevice.BCD" "$mnt/Boot/BCD"
        fi
        if [ "$v" = locate ]; then
            cp "$here/windows-boot/uefi/windeploy-uefi-locate.BCD" "$mnt/Boot/BCD"
        fi
        windows_tree 1 $((c_start * MIB))
        if [ "$v" = compressed ]; then
            # the compressed attribute on \Windows\Boot\EFI, then bootmgfw.efi written anew in it
            local efi="$mnt/Windows/Boot/EFI"
            setfattr -h -v 0x00000800 -n system.ntfs_attrib_be "$efi"
            cp "$efi/bootmgfw.efi" "$efi/bootmgfw.tmp"
            mv -f "$efi/bootmgfw.tmp" "$efi/bootmgfw.efi"
        fi
        if [ "$v" = hibernated ]; then
            py "$mnt/hiberfil.sys" <<'PY'
import sys
open(sys.argv[1], "wb").write(b"HIBR" + bytes(1024 * 1024 - 4))
PY
        fi
        umount_vol
        if [ "$v" = dirty ]; then set_dirty "$w/c.part"; fi
        mbr_layout "$out/$v.img" $((c_mib + 2)) "1 $c_mib 7 1"
        place "$out/$v.img" "$w/c.part" 1
        printf '1\t%d\t%d\t0x07\tc\n' $MIB $((c_mib * MIB)) >>"$out/$v.parts"
        if [ "$v" = compressed ]; then
            echo /Windows/Boot/EFI/bootmgfw.efi >>"$out/$v.refused"
        fi
        ;;
    sysres | winre | bitlocker | reuse)
        hive=win7
        if [ "$v" = reuse ]; then sys_mib=100; fi
        c_start=$((1 + sys_mib))
        mkvol "$w/sys.part" $sys_mib 4096 2048 "System Reserved"
        mount_vol "$w/sys.part"
        bios_boot $((c_start * MIB))
        umount_vol
        local total=$((1 + sys_mib + c_mib + 1)) layout=("1 $sys_mib 7 1" "$c_start $c_mib 7 0")
        if [ "$v" = bitlocker ]; then
            bitlocker_part "$w/c.part" $c_mib
        else
            mkvol "$w/c.part" $c_mib 4096 $((c_start * 2048)) Windows
            mount_vol "$w/c.part"
            windows_tree "$([ "$v" = winre ] && echo 0 || echo 1)" $((c_start * MIB))
            umount_vol
        fi
        if [ "$v" = winre ]; then
            total=$((total + re_mib))
            layout+=("$((c_start + c_mib)) $re_mib 27 0")
            mkvol "$w/re.part" $re_mib 4096 $(((c_start + c_mib) * 2048)) Recovery
            mount_vol "$w/re.part"
            recovery_tree
            umount_vol
        fi
        mbr_layout "$out/$v.img" "$total" "${layout[@]}"
        place "$out/$v.img" "$w/sys.part" 1
        place "$out/$v.img" "$w/c.part" $c_start
        printf '1\t%d\t%d\t0x07\tsysres\n' $MIB $((sys_mib * MIB)) >>"$out/$v.parts"
        printf '2\t%d\t%d\t0x07\t%s\n' $((c_start * MIB)) $((c_mib * MIB)) "$([ "$v" = bitlocker ] && echo bitlocker || echo c)" >>"$out/$v.parts"
        if [ "$v" = winre ]; then
            place "$out/$v.img" "$w/re.part" $((c_start + c_mib))
            printf '3\t%d\t%d\t0x27\twinre\n' $(((c_start + c_mib) * MIB)) $((re_mib * MIB)) >>"$out/$v.parts"
        fi
        ;;
    esac
}

# reader VARIANT: the NTFS volumes for the reader's own tests
reader() {
    local v=$1 w=$work/$1 mib cluster
    mkdir -p "$w"
    case $v in
    special) mib=96 cluster=4096 ;;
    bigclus) mib=64 cluster=65536 ;;
    smallclus) mib=24 cluster=512 ;;
    esac
    mkvol "$w/d.part" $mib $cluster 2048 "$v"
    mount_vol "$w/d.part" rw,compression
    if [ "$v" = special ]; then
        special_tree
    else
        many_files "$mnt/Many" 2000
        mkdir -p "$mnt/A/B/C"
        standin "$mnt/A/B/C/file.bin" file.bin 150000
        flush_standins
        printf 'small\n' >"$mnt/A/small.txt"
    fi
    umount_vol
    : >"$out/$v.refused"
    if [ "$v" = special ]; then
        set_encrypted "$w/d.part" efs.txt
        printf '%s\n' /compressed/text.txt /compressed/big.bin /wof.dll /reparse-link.txt /efs.txt >"$out/$v.refused"
    fi
    mbr_layout "$out/$v.img" $((mib + 2)) "1 $mib 7 1"
    place "$out/$v.img" "$w/d.part" 1
    printf '1\t%d\t%d\t0x07\tdata\n' $MIB $((mib * MIB)) >"$out/$v.parts"
}

for v in "${variants[@]}"; do
    rm -f "$out/$v.img" "$out/$v.vhd" "$out/$v.parts" "$out/$v.refused"
    case $v in
    sysres | conly | bootdevice | locate | winre | compressed | hibernated | dirty | dirtyhive | hivelogs | bitlocker | reuse) windows "$v" ;;
    special | bigclus | smallclus) reader "$v" ;;
    *)
        echo "make-windows.sh: unknown variant '$v'" >&2
        exit 2
        ;;
    esac
    finish "$v"
done
