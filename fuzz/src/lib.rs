//! Fuzz targets: one `run(&[u8])` per parser of untrusted bytes.
//!
//! The cargo-fuzz targets in `fuzz/fuzz_targets/` call these functions, and so does the stable
//! test `tests/fuzz_smoke.rs` (on a few thousand generated inputs), so every target is exercised
//! by a plain `cargo test` too. Each target panics only when a property fails (a parser must
//! never panic on its own).
//!
//! Most targets read their input as a disk through [`disk_from_input`]: either the bytes as they
//! are, or a sparse description ("SPRS" header) of a disk of any size with a few patches, so
//! that a fuzzer reaches the backup GPT of a 2 TiB disk or a VHD footer at its end without
//! multi-gigabyte inputs. `fuzz/seed.sh` writes the generated test images in that form.
//!
//! Not part of the vhdtool library: this file is the library of the fuzz crate
//! (`vhdtool_fuzz`, built by cargo-fuzz) and is compiled into the stable tests with
//! `#[path = "../fuzz/src/lib.rs"] mod fuzz;`. It uses vhdtool's public API only, and the
//! structure-aware `convert` target runs the real `apply` on an in-memory sparse disk.

// Harnesses of the newer parsers, one file each (the stable tests include them with #[path] too).
pub mod bcd;
pub mod image_map;
pub mod mounted;
pub mod ntfsfile;
pub mod qcow2;
pub mod regf_read;
pub mod regf_roundtrip;
pub mod vhd_dynamic;
pub mod vhdx;

use std::collections::BTreeMap;

use vhdtool::disk::{check_range, Disk, MemDisk, Window};
use vhdtool::error::Result;

/// Magic of a sparse disk description (see [`disk_from_input`]).
pub const SPARSE_MAGIC: &[u8; 4] = b"SPRS";
/// Largest disk a sparse description can claim (4 TiB): larger than MBR can address, small
/// enough that every length stays far from overflow in the code under test.
pub const MAX_SPARSE_BYTES: u64 = 1 << 42;
/// Page size of [`SparseDisk`].
const PAGE: u64 = 4096;
/// Flag bit of a patch offset: counted back from the end of the disk.
const FROM_END: u64 = 1 << 63;

// ---------------------------------------------------------------------------------------------
// Sparse disks
// ---------------------------------------------------------------------------------------------

/// A disk of any length that stores only the 4 KiB pages written to it (the rest reads as
/// zero): how fuzz inputs and the structure-aware target describe large disks cheaply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SparseDisk {
    len: u64,
    pages: BTreeMap<u64, Box<[u8]>>,
}

impl SparseDisk {
    /// An all-zero disk of `len` bytes.
    pub fn new(len: u64) -> Self {
        SparseDisk {
            len,
            pages: BTreeMap::new(),
        }
    }

    /// Change the length: pages past the end are dropped, the tail of the last page is zeroed
    /// (as `File::set_len` does).
    pub fn resize(&mut self, len: u64) {
        self.pages.retain(|&p, _| p * PAGE < len);
        if !len.is_multiple_of(PAGE) {
            if let Some(page) = self.pages.get_mut(&(len / PAGE)) {
                page[(len % PAGE) as usize..].fill(0);
            }
        }
        self.len = len;
    }

    /// The pages stored (offset, bytes), in order.
    pub fn pages(&self) -> impl Iterator<Item = (u64, &[u8])> {
        self.pages.iter().map(|(p, b)| (p * PAGE, &b[..]))
    }

    /// Bytes held in memory.
    pub fn stored_bytes(&self) -> u64 {
        self.pages.len() as u64 * PAGE
    }

    /// The disk as one flat vector (for small disks only).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = vec![0u8; usize::try_from(self.len).expect("small disk")];
        self.read_at(0, &mut v).expect("in range");
        v
    }
}

impl Disk for SparseDisk {
    fn len(&self) -> u64 {
        self.len
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        check_range(self.len, offset, buf.len() as u64)?;
        buf.fill(0);
        let end = offset + buf.len() as u64;
        for (&p, page) in self.pages.range(offset / PAGE..end.div_ceil(PAGE)) {
            let ps = p * PAGE;
            let s = ps.max(offset);
            let e = (ps + PAGE).min(end);
            buf[(s - offset) as usize..(e - offset) as usize]
                .copy_from_slice(&page[(s - ps) as usize..(e - ps) as usize]);
        }
        Ok(())
    }
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        check_range(self.len, offset, data.len() as u64)?;
        let end = offset + data.len() as u64;
        let mut pos = offset;
        while pos < end {
            let p = pos / PAGE;
            let ps = p * PAGE;
            let e = (ps + PAGE).min(end);
            let page = self
                .pages
                .entry(p)
                .or_insert_with(|| vec![0u8; PAGE as usize].into_boxed_slice());
            page[(pos - ps) as usize..(e - ps) as usize]
                .copy_from_slice(&data[(pos - offset) as usize..(e - offset) as usize]);
            pos = e;
        }
        Ok(())
    }
    fn set_len(&mut self, len: u64) -> Result<()> {
        self.resize(len);
        Ok(())
    }
    /// The stored pages are the data; the rest is a hole.
    fn data_extents(&self, from: u64, len: u64) -> Result<Vec<(u64, u64)>> {
        check_range(self.len, from, len)?;
        let end = from + len;
        let mut out: Vec<(u64, u64)> = Vec::new();
        for (&p, _) in self.pages.range(from / PAGE..end.div_ceil(PAGE)) {
            let s = (p * PAGE).max(from);
            let e = ((p + 1) * PAGE).min(end);
            match out.last_mut() {
                Some((ls, ll)) if *ls + *ll == s => *ll += e - s,
                _ => out.push((s, e - s)),
            }
        }
        Ok(out)
    }
}

/// A disk built from fuzz input: flat or sparse.
pub enum FuzzDisk {
    Flat(MemDisk),
    Sparse(SparseDisk),
}

impl Disk for FuzzDisk {
    fn len(&self) -> u64 {
        match self {
            FuzzDisk::Flat(d) => d.len(),
            FuzzDisk::Sparse(d) => d.len(),
        }
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        match self {
            FuzzDisk::Flat(d) => d.read_at(offset, buf),
            FuzzDisk::Sparse(d) => d.read_at(offset, buf),
        }
    }
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        match self {
            FuzzDisk::Flat(d) => d.write_at(offset, data),
            FuzzDisk::Sparse(d) => d.write_at(offset, data),
        }
    }
    fn as_slice(&self) -> Option<&[u8]> {
        match self {
            FuzzDisk::Flat(d) => d.as_slice(),
            FuzzDisk::Sparse(_) => None,
        }
    }
}

/// The disk an input describes.
///
/// - Input starting with `"SPRS"`: `u64` LE disk length (taken modulo [`MAX_SPARSE_BYTES`] + 1),
///   then patches until the input ends: `u64` LE offset (bit 63 set: counted back from the end
///   of the disk; the offset is reduced modulo the disk length), `u16` LE length, the bytes
///   (cut at the end of the input and of the disk). Later patches win.
/// - Anything else: the input is the disk.
pub fn disk_from_input(data: &[u8]) -> FuzzDisk {
    let Some(rest) = data.strip_prefix(SPARSE_MAGIC) else {
        return FuzzDisk::Flat(MemDisk::new(data.to_vec()));
    };
    let mut c = Cursor::new(rest);
    let len = c.u64() % (MAX_SPARSE_BYTES + 1);
    let mut disk = SparseDisk::new(len);
    while !c.is_empty() && len > 0 {
        let raw = c.u64();
        let off = raw & !FROM_END;
        let off = if raw & FROM_END != 0 {
            len - 1 - off % len
        } else {
            off % len
        };
        let n = usize::from(c.u16());
        let bytes = c.bytes(n);
        let n = (bytes.len() as u64).min(len - off) as usize;
        disk.write_at(off, &bytes[..n]).expect("clamped patch");
    }
    FuzzDisk::Sparse(disk)
}

/// The sparse description of the non-zero 4 KiB pages of `disk` inside `ranges` (byte ranges,
/// clamped to the disk): what `fuzz/seed.sh` and the tests use to turn real images into inputs.
pub fn sparse_input(disk: &dyn Disk, ranges: &[(u64, u64)]) -> Result<Vec<u8>> {
    let mut out = SPARSE_MAGIC.to_vec();
    out.extend_from_slice(&disk.len().to_le_bytes());
    let mut done = std::collections::BTreeSet::new();
    let mut buf = vec![0u8; PAGE as usize];
    for &(start, len) in ranges {
        let end = start.saturating_add(len).min(disk.len());
        let mut p = start / PAGE;
        while p * PAGE < end {
            let at = p * PAGE;
            let n = PAGE.min(disk.len() - at) as usize;
            if done.insert(p) {
                disk.read_at(at, &mut buf[..n])?;
                if buf[..n].iter().any(|&b| b != 0) {
                    out.extend_from_slice(&at.to_le_bytes());
                    out.extend_from_slice(&(n as u16).to_le_bytes());
                    out.extend_from_slice(&buf[..n]);
                }
            }
            p += 1;
        }
    }
    Ok(out)
}

/// Reads values from fuzz input; past the end it gives zeros (so every input means something).
pub struct Cursor<'a> {
    data: &'a [u8],
}

impl<'a> Cursor<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Cursor { data }
    }
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
    /// Up to `n` bytes (fewer at the end of the input).
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (a, b) = self.data.split_at(n.min(self.data.len()));
        self.data = b;
        a
    }
    fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        let b = self.bytes(N);
        out[..b.len()].copy_from_slice(b);
        out
    }
    pub fn u8(&mut self) -> u8 {
        self.array::<1>()[0]
    }
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.array())
    }
    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.array())
    }
    pub fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.array())
    }
    /// A value in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        let span = hi - lo;
        if span == 0 {
            return lo;
        }
        lo + self.u64() % (span + 1)
    }
    pub fn bool(&mut self) -> bool {
        self.u8() & 1 == 1
    }
    /// One of `items` (which must not be empty).
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.range(0, items.len() as u64 - 1) as usize]
    }
}

// ---------------------------------------------------------------------------------------------
// Targets
// ---------------------------------------------------------------------------------------------

/// The names of the targets, as `fuzz/fuzz_targets/NAME.rs` and [`run`] know them.
pub const TARGETS: &[&str] = &[
    "vhd",
    "mbr",
    "gpt",
    "fs_probe",
    "fat",
    "journal",
    "info",
    "convert",
    "bootfiles",
    "shrink",
    "grub",
];

/// Run the target called `name` on `data`. Panics on an unknown name.
pub fn run(name: &str, data: &[u8]) {
    match name {
        "vhd" => vhd(data),
        "mbr" => mbr(data),
        "gpt" => gpt(data),
        "fs_probe" => fs_probe(data),
        "fat" => fat(data),
        "journal" => journal(data),
        "info" => info(data),
        "convert" => convert(data),
        "bootfiles" => bootfiles(data),
        "shrink" => shrink(data),
        "grub" => grub(data),
        _ => panic!("unknown fuzz target {name:?}"),
    }
}

/// VHD footer, dynamic header and BAT (`vhd::probe`), and the footer codec: `encode` of the
/// decoded fields gives the same 512 bytes except the checksum, which is the computed one.
pub fn vhd(data: &[u8]) {
    use vhdtool::vhd::footer::{self, FooterFields, FOOTER_SIZE};
    let disk = disk_from_input(data);
    let image = vhdtool::vhd::probe(&disk);
    assert!(
        image.data_bytes <= disk.len(),
        "data area larger than the file"
    );
    if let Some(f) = &image.footer {
        // the typed fields are the stored bytes: encoding them again reproduces the footer
        let bytes = footer::encode(&f.fields);
        let again = FooterFields::from_bytes(&bytes);
        let mut stored = f.fields.clone();
        stored.checksum = f.computed_checksum;
        assert_eq!(again, stored, "footer fields do not survive encode/decode");
    }
    // the codec on the first and the last 512 bytes, whatever they hold
    for at in [0, disk.len().saturating_sub(FOOTER_SIZE as u64)] {
        let mut raw = [0u8; FOOTER_SIZE];
        if disk.read_at(at, &mut raw).is_err() {
            continue;
        }
        let fields = FooterFields::from_bytes(&raw);
        let enc = footer::encode(&fields);
        let sum = footer::checksum(&raw);
        let mut expect = raw;
        expect[0x40..0x44].copy_from_slice(&sum.to_be_bytes());
        assert_eq!(
            enc, expect,
            "footer encode(decode(x)) differs beyond the checksum"
        );
        if fields.checksum == sum {
            assert_eq!(
                enc, raw,
                "a footer with a valid checksum must encode to itself"
            );
        }
        let _ = footer::decode(&raw, at, false);
        let _ = footer::resize_footer(&raw, u64::from(fields.timestamp) * 512);
    }
}

/// MBR with EBR chains (`mbr::read`, 512 and 4096-byte sectors), the boot code probe, and
/// `RawMbr::from_bytes`/`to_bytes` (every byte kept).
pub fn mbr(data: &[u8]) {
    use vhdtool::mbr::raw::RawMbr;
    let disk = disk_from_input(data);
    for sb in [512, 4096] {
        if let Ok(Some(m)) = vhdtool::mbr::read(&disk, sb) {
            assert!(m.primaries.len() <= 4, "more than four primaries");
            for p in m.primaries.iter().chain(&m.logicals) {
                assert!(p.index >= 1);
            }
            let first = m
                .data_partitions()
                .map(|p| p.start_lba)
                .min()
                .unwrap_or(2048);
            let _ = vhdtool::mbr::gap_loader(&disk, sb, first);
        }
    }
    let mut sector = [0u8; 512];
    if disk.read_at(0, &mut sector).is_ok() {
        let raw = RawMbr::from_bytes(&sector).expect("512 bytes decode");
        assert_eq!(
            raw.to_bytes(),
            sector,
            "RawMbr to_bytes(from_bytes(x)) != x"
        );
    }
}

/// GPT, both copies, at 512 and 4096-byte sectors. Property: when both copies are valid, the
/// table is in the standard layout (what `gpt::encode` writes) and has no error finding, then
/// `gpt::encode` of what was read reproduces both copies byte for byte, after canonicalising
/// what a reader does not keep (header padding past 92 bytes, bytes of unused entries, name
/// units after the first NUL).
pub fn gpt(data: &[u8]) {
    let disk = disk_from_input(data);
    for sb in [512u32, 4096] {
        let Ok(Some(g)) = vhdtool::gpt::read(&disk, sb) else {
            continue;
        };
        if g.primary_ok && g.backup_ok {
            gpt_reencode(&disk, &g);
        }
    }
}

/// The re-encoding property of [`gpt`] on one table; `true` when the table qualified and the
/// bytes were compared (tests use it to make sure the property is reached).
pub fn gpt_reencode(disk: &dyn Disk, g: &vhdtool::gpt::Gpt) -> bool {
    use vhdtool::finding::Severity;
    let sb = u64::from(g.sector_bytes);
    let disk_sectors = disk.len() / sb;
    let h = &g.header;
    let Ok((first, last)) =
        vhdtool::gpt::usable_lbas(h.num_partition_entries, g.sector_bytes, disk_sectors)
    else {
        return false;
    };
    let standard = h.revision == 0x0001_0000
        && h.header_size == 92
        && h.my_lba == 1
        && h.alternate_lba == disk_sectors - 1
        && h.partition_entry_lba == 2
        && h.size_of_partition_entry == 128
        && h.first_usable_lba == first
        && h.last_usable_lba == last
        && !g.findings.iter().any(|f| f.severity == Severity::Error)
        && g.partitions.iter().all(|p| !p.name.contains('\u{FFFD}'));
    if !standard {
        return false;
    }
    let image = match vhdtool::gpt::encode(
        h.disk_guid,
        &g.partitions,
        h.num_partition_entries,
        g.sector_bytes,
        disk_sectors,
    ) {
        Ok(i) => i,
        // the reader accepts what the encoder refuses to write (overlaps, ranges outside the
        // usable LBAs are findings, and errors were excluded above): nothing to compare
        Err(e) => panic!("a sound standard GPT does not re-encode: {e}\n{g:#?}"),
    };
    let s = sb as usize;
    let n = h.num_partition_entries as usize;
    let primary = disk
        .read_vec(sb, image.primary.len() as u64)
        .expect("primary in range");
    let backup = disk
        .read_vec(image.backup_entries_lba * sb, image.backup.len() as u64)
        .expect("backup in range");
    let backup_header_at = image.backup.len() - s;
    // only canonical tables are compared: what the reader does not keep must be zero
    if !canonical_header(&primary[..s])
        || !canonical_array(&primary[s..], n)
        || !canonical_header(&backup[backup_header_at..])
        || !canonical_array(&backup[..backup_header_at], n)
    {
        return false;
    }
    assert!(
        primary == image.primary,
        "primary GPT re-encodes differently\n{g:#?}"
    );
    assert!(
        backup == image.backup,
        "backup GPT re-encodes differently\n{g:#?}"
    );
    true
}

/// A header sector whose reserved field (0x14) and bytes past the 92-byte header are zero.
fn canonical_header(sector: &[u8]) -> bool {
    sector[0x14..0x18].iter().all(|&b| b == 0) && sector[92..].iter().all(|&b| b == 0)
}

/// An entry array (padded to whole sectors) whose unused entries, name units after the first
/// NUL, and padding are zero.
fn canonical_array(array: &[u8], entries: usize) -> bool {
    let (used, padding) = array.split_at(entries * 128);
    padding.iter().all(|&b| b == 0)
        && used.chunks(128).all(|e| {
            if e[..16].iter().all(|&b| b == 0) {
                return e.iter().all(|&b| b == 0);
            }
            let name = &e[56..];
            match name.chunks(2).position(|u| u == [0, 0]) {
                Some(nul) => name[nul * 2..].iter().all(|&b| b == 0),
                None => true,
            }
        })
}

/// Filesystem probes on a partition (`fs::probe`).
pub fn fs_probe(data: &[u8]) {
    let disk = disk_from_input(data);
    if let Some(info) = vhdtool::fs::probe(&disk) {
        let _ = serde_json::to_string(&info).expect("serialisable");
    }
}

/// Most directory entries the FAT target visits (a crafted volume can hold many).
const FAT_VISIT_LIMIT: usize = 256;

/// The read-only FAT reader: open, label, a bounded walk of the tree reading every file, and
/// the look-ups the ESP checks make. Property: a listed file is found by `exists` and `stat`,
/// and `read_file` gives exactly its size (or an error for a broken chain).
pub fn fat(data: &[u8]) {
    let disk = disk_from_input(data);
    let Ok(fat) = vhdtool::fs::fat::Fat::open(&disk) else {
        return;
    };
    let _ = fat.volume_label();
    let _ = fat.boot_label();
    let _ = fat.volume_id();
    for p in [
        "EFI/BOOT/BOOTX64.EFI",
        "\\EFI\\Microsoft\\Boot\\bootmgfw.efi",
        "",
        "/",
        "a//b",
    ] {
        let _ = fat.exists(p);
        let _ = fat.stat(p);
    }
    let mut queue = vec![String::new()];
    let mut visited = 0usize;
    while let Some(dir) = queue.pop() {
        let Ok(entries) = fat.list_dir(&dir) else {
            continue;
        };
        for e in entries {
            visited += 1;
            if visited > FAT_VISIT_LIMIT {
                return;
            }
            // names no path can address: ".", "..", separators, and the empty name a crafted
            // entry can decode to (testdata/regress/fat-empty-name.bin: "dir/" is the
            // directory itself)
            if e.name.is_empty() || e.name == "." || e.name == ".." || e.name.contains(['/', '\\'])
            {
                continue;
            }
            let path = if dir.is_empty() {
                e.name.clone()
            } else {
                format!("{dir}/{}", e.name)
            };
            if let Ok(Some(st)) = fat.stat(&path) {
                // two entries may share a name in a crafted directory: the first one wins
                assert_eq!(st.name.to_lowercase(), e.name.to_lowercase());
            }
            if e.is_dir {
                if path.matches('/').count() < 6 {
                    queue.push(path);
                }
            } else if let Ok(Some(content)) = fat.read_file(&path) {
                let st = fat
                    .stat(&path)
                    .ok()
                    .flatten()
                    .expect("read file has a stat");
                assert_eq!(content.len() as u64, u64::from(st.size), "{path}: size");
            }
        }
    }
}

/// The undo journal decoder. The input is decoded as it is, and again with its CRC32 and
/// trailer made right (so the fuzzer gets past the checksum). Property: a decoded journal
/// encodes back to the same bytes.
pub fn journal(data: &[u8]) {
    use vhdtool::convert::journal::Journal;
    if let Ok(j) = Journal::decode(data) {
        assert_eq!(j.encode(), data, "journal encode(decode(x)) != x");
    }
    let body = match data.len().checked_sub(12) {
        Some(n) if data.ends_with(b"VHDTEND1") => &data[..n],
        _ => data,
    };
    let mut fixed = body.to_vec();
    if !fixed.starts_with(b"VHDTJRN1") {
        let mut v = b"VHDTJRN1".to_vec();
        v.extend_from_slice(&fixed);
        fixed = v;
    }
    let crc = crc32fast::hash(&fixed);
    fixed.extend_from_slice(&crc.to_le_bytes());
    fixed.extend_from_slice(b"VHDTEND1");
    if let Ok(j) = Journal::decode(&fixed) {
        assert_eq!(j.encode(), fixed, "journal encode(decode(x)) != x");
    }
}

/// The whole `info` inspection of an image, and both renderings of its report.
pub fn info(data: &[u8]) {
    let disk = disk_from_input(data);
    let report = vhdtool::info::inspect(&disk, "fuzz.img");
    check_report(&report, disk.len());
}

/// Name of the thread `boot::linux::ext4::with_ext4` runs the `ext4-view` crate on. A panic on
/// it is caught there (the last guard); the cargo-fuzz target tolerates panics on this thread
/// only, and counts them.
pub const EXT4_THREAD: &str = vhdtool::boot::linux::ext4::WORKER_THREAD;

/// The ext2/3/4 access path of the boot-file discovery (`bootfiles`), on the input as one
/// Linux partition: our superblock bounds, `with_ext4` with directory listings and bounded file
/// reads, and the whole `find_boot_files`. Properties: an accepted superblock fits in the
/// partition; listings and reads stay within the limits asked for; on an in-memory disk
/// (whose reads cannot fail) `find_boot_files` never returns `Err` and never says "not Linux"
/// for a partition of type 0x83; every file it takes is within its size limit.
pub fn bootfiles(data: &[u8]) {
    use vhdtool::boot::linux::{ext4, find_boot_files, Discovery, PartitionRef};
    const MAX_LIST: usize = 64;
    const MAX_READ: u64 = 64 << 10;
    let disk = disk_from_input(data);
    if let Ok(sb) = ext4::check_superblock(&disk) {
        let bytes = sb.blocks.checked_mul(sb.block_bytes);
        assert!(
            bytes.is_some_and(|b| b <= disk.len()),
            "accepted a file system larger than its partition: {sb:?}"
        );
        assert!(sb.block_groups <= ext4::MAX_BLOCK_GROUPS);
    }
    let _ = ext4::with_ext4(&disk, "fuzz", |fs| {
        for dir in ["/", "/boot", "/etc", "/boot/efi/EFI", "/lost+found"] {
            let names = ext4::list_dir(fs, dir, MAX_LIST)?;
            assert!(names.len() <= MAX_LIST, "{dir}: {} names", names.len());
        }
        for file in [
            "/etc/os-release",
            "/boot/grub/grub.cfg",
            "/vmlinuz",
            "/a/b/c",
        ] {
            if let Some(b) = ext4::read_file(fs, file, MAX_READ)? {
                assert!(b.len() as u64 <= MAX_READ, "{file}: {} bytes", b.len());
            }
        }
        Ok(())
    });
    let part = PartitionRef {
        index: 1,
        offset: 0,
        length: disk.len(),
        type_id: 0x83,
    };
    match find_boot_files(&disk, &[part]) {
        Ok(Discovery::NotLinux) => panic!("a type 0x83 partition reported as not Linux"),
        Ok(Discovery::Found(boot)) => {
            assert!(!boot.used.is_empty(), "boot files found, none used");
            for u in &boot.used {
                assert!(u.bytes <= 32 << 20, "{}: {} bytes", u.source, u.bytes);
            }
        }
        Ok(Discovery::Missing(_)) => {}
        Err(e) => panic!("find_boot_files failed on an in-memory disk: {e}"),
    }
}

/// Invariants of any report: sizes inside the file, partitions and gaps ordered, renderers
/// that do not fail.
pub fn check_report(report: &vhdtool::info::InfoReport, file_bytes: u64) {
    assert_eq!(report.file_bytes, file_bytes);
    assert!(report.data_bytes <= file_bytes, "data area past the file");
    for u in &report.unallocated {
        assert!(u.start_lba <= u.end_lba, "reversed unallocated range");
    }
    let json = serde_json::to_string(report).expect("report serialises");
    assert!(json.starts_with('{'));
    let _ = vhdtool::cli::output::render_info(report);
}

// ---------------------------------------------------------------------------------------------
// Structure-aware target: a random valid MBR layout, planned and converted in memory
// ---------------------------------------------------------------------------------------------

/// MBR types the built-in map converts, and some it refuses.
const MBR_TYPES: &[u8] = &[
    0x07, 0x07, 0x83, 0x83, 0x82, 0x0c, 0x0b, 0x27, 0x8e, 0xfd, 0x06, 0xef, 0xa5, 0x12,
];

/// A partition of a generated layout (absolute LBAs).
#[derive(Debug, Clone, Copy)]
struct GenPart {
    start: u64,
    sectors: u64,
    type_id: u8,
    logical: bool,
}

/// A generated disk: the layout and the disk with its MBR, EBRs, partition markers and (for a
/// VHD) footer written.
struct Generated {
    parts: Vec<GenPart>,
    disk: SparseDisk,
    vhd: bool,
    sector_bytes: u32,
    opts: vhdtool::convert::Options,
}

fn mbr_entry(e: &mut [u8], status: u8, type_id: u8, start: u64, sectors: u64) {
    use vhdtool::mbr::ChsAddr;
    e[0] = status;
    e[1..4].copy_from_slice(&ChsAddr::from_lba(start).to_bytes());
    e[4] = type_id;
    e[5..8].copy_from_slice(&ChsAddr::from_lba(start + sectors.saturating_sub(1)).to_bytes());
    e[8..12].copy_from_slice(&(start as u32).to_le_bytes());
    e[12..16].copy_from_slice(&(sectors as u32).to_le_bytes());
}

/// A marker sector for partition `i`: distinct per partition and position.
fn marker(i: usize, end: bool, sb: usize) -> Vec<u8> {
    (0..sb)
        .map(|k| (k as u8).wrapping_mul(31) ^ (i as u8).wrapping_mul(97) ^ u8::from(end))
        .collect()
}

fn generate(data: &[u8]) -> Generated {
    use vhdtool::convert::{Options, RoomChoice};
    const MIB: u64 = 1 << 20;
    let mut c = Cursor::new(data);
    let four_k = c.u8().is_multiple_of(8);
    let vhd = !four_k && c.bool();
    let sector_bytes: u32 = if four_k { 4096 } else { 512 };
    let sb = u64::from(sector_bytes);
    let per_mib = MIB / sb;
    let primaries = c.range(1, 4) as usize;
    // an extended container in the last primary slot, with 1..=4 logicals
    let logicals = if primaries < 4 && c.u8().is_multiple_of(3) {
        c.range(1, 4) as usize
    } else {
        0
    };
    let mut parts = Vec::new();
    let mut lba = if c.u8().is_multiple_of(8) {
        63
    } else {
        per_mib
    };
    let size_of = |c: &mut Cursor| -> u64 {
        // mostly whole MiB, sometimes an odd number of sectors
        let mib = c.range(1, 48);
        if c.u8().is_multiple_of(4) {
            mib * per_mib + c.range(1, per_mib - 1)
        } else {
            mib * per_mib
        }
    };
    for _ in 0..primaries {
        let sectors = size_of(&mut c);
        parts.push(GenPart {
            start: lba,
            sectors,
            type_id: c.pick(MBR_TYPES),
            logical: false,
        });
        lba += sectors + c.range(0, 3) * per_mib;
    }
    let mut ext = None;
    if logicals > 0 {
        let ext_start = lba;
        let mut at = ext_start;
        for _ in 0..logicals {
            // each logical: its EBR, then a gap to the data
            let gap = if c.bool() { per_mib } else { c.range(1, 63) };
            let sectors = size_of(&mut c);
            parts.push(GenPart {
                start: at + gap,
                sectors,
                type_id: c.pick(MBR_TYPES),
                logical: true,
            });
            at += gap + sectors + c.range(0, 1) * per_mib;
        }
        ext = Some((ext_start, at - ext_start));
        lba = at;
    }
    // slack after the last partition: none, a little, or room for an ESP
    let slack = match c.u8() % 4 {
        0 => 0,
        1 => c.range(1, 2048),
        2 => c.range(33, 300) * per_mib,
        _ => c.range(0, 40) * per_mib,
    };
    let disk_sectors = lba + slack;
    let disk_bytes = disk_sectors * sb;
    let mut disk = SparseDisk::new(disk_bytes + if vhd { 512 } else { 0 });

    // MBR: boot code, signature, primaries (and the extended container)
    let mut mbr = [0u8; 512];
    mbr[..440].copy_from_slice(&marker(99, false, 440)[..]);
    mbr[0x1b8..0x1bc].copy_from_slice(&c.u32().to_le_bytes());
    let boot = c.range(0, primaries as u64) as usize;
    for (i, p) in parts.iter().filter(|p| !p.logical).enumerate() {
        let status = if i + 1 == boot { 0x80 } else { 0 };
        mbr_entry(
            &mut mbr[0x1be + 16 * i..0x1be + 16 * (i + 1)],
            status,
            p.type_id,
            p.start,
            p.sectors,
        );
    }
    if let Some((start, sectors)) = ext {
        let slot = primaries;
        mbr_entry(
            &mut mbr[0x1be + 16 * slot..0x1be + 16 * (slot + 1)],
            0,
            0x0f,
            start,
            sectors,
        );
        // EBR chain: each EBR sits at the start of its logical's "box"
        let logical: Vec<GenPart> = parts.iter().filter(|p| p.logical).copied().collect();
        let mut ebr_at = start;
        for (k, p) in logical.iter().enumerate() {
            let mut ebr = [0u8; 512];
            mbr_entry(
                &mut ebr[0x1be..0x1ce],
                0,
                p.type_id,
                p.start - ebr_at,
                p.sectors,
            );
            if let Some(next) = logical.get(k + 1) {
                let next_ebr = p.start + p.sectors;
                // the next box: from its EBR to the end of its logical
                let next_ebr = next_ebr.min(next.start - 1);
                mbr_entry(
                    &mut ebr[0x1ce..0x1de],
                    0,
                    0x05,
                    next_ebr - start,
                    next.start + next.sectors - next_ebr,
                );
                ebr[510] = 0x55;
                ebr[511] = 0xaa;
                disk.write_at(ebr_at * sb, &ebr).expect("EBR in range");
                ebr_at = next_ebr;
            } else {
                ebr[510] = 0x55;
                ebr[511] = 0xaa;
                disk.write_at(ebr_at * sb, &ebr).expect("EBR in range");
            }
        }
    }
    mbr[510] = 0x55;
    mbr[511] = 0xaa;
    disk.write_at(0, &mbr).expect("MBR in range");
    // markers at both ends of each partition
    for (i, p) in parts.iter().enumerate() {
        let s = sector_bytes as usize;
        disk.write_at(p.start * sb, &marker(i, false, s))
            .expect("marker in range");
        disk.write_at((p.start + p.sectors - 1) * sb, &marker(i, true, s))
            .expect("marker in range");
    }
    if vhd {
        let footer = vhdtool::vhd::footer::fixed_footer(
            disk_bytes,
            *b"fuzz-unique-id!!",
            0x3000_0000,
            c.pick(&[*b"win ", *b"qem2", *b"vpc ", *b"qemu"]),
            0x000a_0000,
            *b"Wi2k",
            disk_bytes,
        );
        disk.write_at(disk_bytes, &footer).expect("footer in range");
    }
    let esp_mib = [None, Some(33), Some(100), Some(260), Some(34)];
    let opts = Options {
        room: c.pick(&[RoomChoice::Auto, RoomChoice::Free, RoomChoice::Grow]),
        esp_bytes: c.pick(&esp_mib).map(|m| m * MIB),
        sector_bytes: if four_k { Some(4096) } else { None },
        ..Options::default()
    };
    Generated {
        parts,
        disk,
        vhd,
        sector_bytes,
        opts,
    }
}

/// Carry out a plan on a sparse disk with the real `apply` (no journal): the ESP is the real
/// FAT32 image, empty of files.
fn apply_plan(disk: &mut SparseDisk, plan: &vhdtool::convert::Plan) {
    use vhdtool::convert::apply::{apply, Contents, SparseImage};
    use vhdtool::convert::faults::Faults;
    let esp = vhdtool::convert::run::build_esp(plan, &vhdtool::esp::EspTree::new())
        .expect("an empty ESP of the planned size builds");
    apply(
        disk,
        plan,
        &Contents {
            esp: SparseImage::of(&esp),
        },
        None,
        &mut Faults::none(),
    )
    .expect("the plan applies to the disk it was made for");
}

/// Structure-aware: a random valid MBR layout (primaries, an extended partition with logicals,
/// odd sizes, a VHD footer or not, 512 or 4096-byte sectors) -> `convert::plan::validate` ->
/// the plan's metadata written to the in-memory disk. Properties when the plan exists: every
/// region lies inside the new file and off every original partition; every original partition's
/// bytes are unchanged; our GPT reader accepts the result with both copies valid and no error
/// finding, with the planned partitions; partitions do not overlap; the ESP lies inside the
/// usable LBAs; a VHD footer is valid and gives the new size.
pub fn convert(data: &[u8]) {
    let _ = convert_sample(data);
}

/// The structure-aware target's work: the generated disk and, when its plan exists, the disk
/// after the plan's metadata writes (the checks of [`convert`] passed). Tests use the pair as
/// realistic inputs for the other targets.
pub fn convert_sample(data: &[u8]) -> (SparseDisk, Option<SparseDisk>) {
    use vhdtool::finding::Severity;
    let g = generate(data);
    let before = g.disk.clone();
    let v = vhdtool::convert::validate(&g.disk, &g.opts);
    if !v.passed() {
        return (before, None);
    }
    let Some(plan) = v.plan else {
        return (before, None);
    };
    let sb = u64::from(g.sector_bytes);
    assert_eq!(plan.sector_bytes, g.sector_bytes);
    assert_eq!(plan.old_file_bytes, g.disk.len());
    assert!(
        plan.new_file_bytes >= plan.old_file_bytes,
        "the file shrinks"
    );
    let part_ranges: Vec<(u64, u64)> = g
        .parts
        .iter()
        .map(|p| (p.start * sb, (p.start + p.sectors) * sb))
        .collect();
    for r in &plan.steps {
        let end = r.offset.checked_add(r.length).expect("region end");
        assert!(
            end <= plan.new_file_bytes,
            "region {} past the new file",
            r.what
        );
        for (i, &(s, e)) in part_ranges.iter().enumerate() {
            assert!(
                end <= s || r.offset >= e,
                "region {} overlaps partition {i} ({s:#x}..{e:#x})",
                r.what
            );
        }
    }
    let mut disk = g.disk.clone();
    apply_plan(&mut disk, &plan);
    // every original partition's bytes unchanged
    for (i, &(s, e)) in part_ranges.iter().enumerate() {
        for (at, page) in before.pages() {
            if at + PAGE <= s || at >= e {
                continue;
            }
            let lo = s.max(at);
            let hi = e.min(at + PAGE);
            let mut now = vec![0u8; (hi - lo) as usize];
            disk.read_at(lo, &mut now).expect("in range");
            assert!(
                now[..] == page[(lo - at) as usize..(hi - at) as usize],
                "partition {i} changed at {lo:#x}"
            );
        }
    }
    // the GPT reads back, both copies valid, no error finding
    let data_disk = Window::new(&disk, 0, plan.new_disk_bytes).expect("data area in file");
    let gpt = vhdtool::gpt::read(&data_disk, g.sector_bytes)
        .expect("GPT readable")
        .expect("GPT present");
    assert!(gpt.primary_ok && gpt.backup_ok, "{:#?}", gpt.findings);
    let errors: Vec<_> = gpt
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .collect();
    assert!(errors.is_empty(), "GPT findings: {errors:#?}");
    assert_eq!(gpt.partitions.len(), plan.partitions.len());
    for (got, want) in gpt.partitions.iter().zip(&plan.partitions) {
        assert_eq!(
            (got.first_lba, got.last_lba, got.type_guid),
            (
                want.entry.first_lba,
                want.entry.last_lba,
                want.entry.type_guid
            )
        );
    }
    let mut ranges: Vec<(u64, u64)> = gpt
        .partitions
        .iter()
        .map(|p| (p.first_lba, p.last_lba))
        .collect();
    ranges.sort_unstable();
    for w in ranges.windows(2) {
        assert!(w[0].1 < w[1].0, "GPT partitions overlap: {w:?}");
    }
    // every original data partition became a GPT entry with the same LBAs
    for p in &g.parts {
        assert!(
            ranges.contains(&(p.start, p.start + p.sectors - 1)),
            "MBR partition {p:?} is not in the GPT"
        );
    }
    let esp = plan.esp.as_ref().expect("a generated plan has an ESP");
    assert!(
        esp.first_lba >= gpt.header.first_usable_lba && esp.last_lba <= gpt.header.last_usable_lba,
        "ESP outside the usable LBAs"
    );
    assert!((esp.last_lba + 1) * sb <= plan.new_disk_bytes);
    assert_eq!((esp.last_lba + 1 - esp.first_lba) * sb, esp.size_bytes);
    assert!(
        ranges.contains(&(esp.first_lba, esp.last_lba)),
        "ESP not in the GPT"
    );
    // the container
    let image = vhdtool::vhd::probe(&disk);
    if g.vhd {
        let f = image.footer.expect("footer kept");
        assert_eq!(f.checksum, f.computed_checksum, "footer checksum");
        assert_eq!(f.current_size, plan.new_disk_bytes);
        assert_eq!(image.data_bytes, plan.new_disk_bytes);
    } else {
        assert!(image.footer.is_none(), "a raw disk gained a footer");
        assert_eq!(plan.new_file_bytes, plan.new_disk_bytes);
    }
    // the protective MBR covers the disk
    let tables = vhdtool::info::read_tables(&data_disk, g.sector_bytes != 512);
    assert!(
        tables.mbr.is_some_and(|m| m.protective),
        "no protective MBR"
    );
    (before, Some(disk))
}

/// The shrink planners of `--room shrink` (NTFS: boot sectors, `$Bitmap`, `$BadClus`; swap: a
/// new header), read from the input as a partition, at several target sizes. Property: every
/// planned write lies inside the shrunk partition.
pub fn shrink(data: &[u8]) {
    let disk = disk_from_input(data);
    let len = disk.len();
    for new_bytes in [
        len / 2,
        len / 4 * 3,
        len.saturating_sub(1 << 20),
        len.saturating_sub(512),
    ] {
        let new_bytes = new_bytes / 512 * 512;
        let planned = [
            vhdtool::shrink::ntfs::plan_shrink(&disk, new_bytes),
            vhdtool::shrink::swap::plan_swap_shrink(&disk, new_bytes),
        ];
        for w in planned.into_iter().flatten() {
            for (off, bytes) in &w.writes {
                let end = off.checked_add(bytes.len() as u64);
                assert!(
                    end.is_some_and(|e| e <= new_bytes),
                    "a shrink to {new_bytes} bytes writes {} bytes at {off}",
                    bytes.len()
                );
            }
        }
    }
}

/// GRUB's i386-pc core.img (`convert --hybrid`): the input is core.img from its second sector.
/// Property: a core.img that decodes re-encodes, and the re-encoded one decodes to the same
/// kernel and objects (with `part_gpt` added and `msdosN` renamed, as `--hybrid` does).
pub fn grub(data: &[u8]) {
    use vhdtool::boot::linux::grubcore::{Core, EncodeError};
    let Ok(mut core) = Core::decode(data) else {
        return;
    };
    let _ = core.module_names();
    core.add_module(b"\x7fELF\x01 part_gpt stand-in");
    let Ok(_) = core.remap(&|n| n.checked_add(1)) else {
        return;
    };
    let body = match core.encode() {
        Ok(b) => b,
        // the one refusal a valid core.img may meet: too large once the module is added
        Err(EncodeError::TooLarge { .. }) => return,
        Err(e) => panic!("a decoded core.img must re-encode: {e}"),
    };
    let again = Core::decode(&body).expect("a re-encoded core.img must decode");
    assert_eq!(
        (&again.kernel, &again.objects),
        (&core.kernel, &core.objects)
    );
}
