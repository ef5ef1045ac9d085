//! Builders of hostile and edge-case images, byte by byte from the specifications (VHD "Hard Disk
//! Footer Format" and "Dynamic Disk Header Format"; UEFI 2.10 section 5 for MBR and GPT).
//!
//! Used by tests/hostile.rs; the small ones are also committed under testdata/regress/ so that
//! fuzzers can seed their corpora from them. Every builder is deterministic.

use super::Rng;

/// Logical sector size of every image here.
pub const SECTOR: usize = 512;

/// An image and what `info` must say about it.
pub struct Case {
    /// File name stem (testdata/regress/NAME.bin).
    pub name: &'static str,
    pub bytes: Vec<u8>,
    /// A finding id that must be present (prefix match), if any.
    pub expect_finding: Option<&'static str>,
    /// The `format` the report must give, if any.
    pub expect_format: Option<&'static str>,
}

// ---------------------------------------------------------------------------------------------
// Byte helpers
// ---------------------------------------------------------------------------------------------

fn put_be(buf: &mut [u8], at: usize, n: usize, v: u64) {
    for i in 0..n {
        buf[at + i] = (v >> (8 * (n - 1 - i))) as u8;
    }
}

fn put_le(buf: &mut [u8], at: usize, n: usize, v: u64) {
    for i in 0..n {
        buf[at + i] = (v >> (8 * i)) as u8;
    }
}

/// One's complement of the byte sum with the checksum field (4 bytes at `at`) taken as zero.
fn vhd_sum(buf: &[u8], at: usize) -> u32 {
    let mut sum = 0u32;
    for (i, &b) in buf.iter().enumerate() {
        if !(at..at + 4).contains(&i) {
            sum = sum.wrapping_add(u32::from(b));
        }
    }
    !sum
}

/// VHD disk types.
pub const FIXED: u32 = 2;
pub const DYNAMIC: u32 = 3;
pub const DIFFERENCING: u32 = 4;

/// A 512-byte VHD footer with a valid checksum.
pub fn vhd_footer(current_size: u64, disk_type: u32, data_offset: u64) -> [u8; 512] {
    let mut f = [0u8; 512];
    f[0..8].copy_from_slice(b"conectix"); // 0x00 cookie
    put_be(&mut f, 8, 4, 2); // 0x08 features: reserved bit
    put_be(&mut f, 12, 4, 0x0001_0000); // 0x0c file format version
    put_be(&mut f, 16, 8, data_offset); // 0x10 data offset
    put_be(&mut f, 24, 4, 0x3000_0000); // 0x18 time stamp (2025)
    f[28..32].copy_from_slice(b"vhdt"); // 0x1c creator application
    put_be(&mut f, 32, 4, 0x0001_0000); // 0x20 creator version
    f[36..40].copy_from_slice(b"Wi2k"); // 0x24 creator host OS
    put_be(&mut f, 40, 8, current_size); // 0x28 original size
    put_be(&mut f, 48, 8, current_size); // 0x30 current size
    put_be(&mut f, 56, 2, 1); // 0x38 cylinders
    f[58] = 4; // 0x3a heads
    f[59] = 17; // 0x3b sectors per track
    put_be(&mut f, 60, 4, u64::from(disk_type)); // 0x3c disk type
    f[68..84].copy_from_slice(&[0x5a; 16]); // 0x44 unique id
    let sum = vhd_sum(&f, 64);
    put_be(&mut f, 64, 4, u64::from(sum)); // 0x40 checksum
    f
}

/// A 1024-byte dynamic disk header ("cxsparse") with a valid checksum.
pub fn dynamic_header(table_offset: u64, max_entries: u32, block_size: u32) -> [u8; 1024] {
    let mut h = [0u8; 1024];
    h[0..8].copy_from_slice(b"cxsparse"); // 0x00 cookie
    put_be(&mut h, 8, 8, u64::MAX); // 0x08 data offset (unused)
    put_be(&mut h, 16, 8, table_offset); // 0x10 table offset
    put_be(&mut h, 24, 4, 0x0001_0000); // 0x18 header version
    put_be(&mut h, 28, 4, u64::from(max_entries)); // 0x1c max table entries
    put_be(&mut h, 32, 4, u64::from(block_size)); // 0x20 block size
    reseal_dynamic(&mut h);
    h
}

/// Recompute the checksum of a dynamic header (field at 0x24).
pub fn reseal_dynamic(h: &mut [u8]) {
    let sum = vhd_sum(h, 36);
    put_be(h, 36, 4, u64::from(sum));
}

/// Recompute the checksum of a footer (field at 0x40).
pub fn reseal_footer(f: &mut [u8]) {
    let sum = vhd_sum(f, 64);
    put_be(f, 64, 4, u64::from(sum));
}

/// MBR partition entry (UEFI 2.10 table 5-2): status, type, start LBA, size in sectors.
pub fn mbr_entry(sector0: &mut [u8], slot: usize, status: u8, ty: u8, start: u32, size: u32) {
    let e = 446 + 16 * slot;
    sector0[e] = status; // +0 boot indicator
    sector0[e + 1..e + 4].copy_from_slice(&[0xfe, 0xff, 0xff]); // +1 start CHS (LBA mode)
    sector0[e + 4] = ty; // +4 OS type
    sector0[e + 5..e + 8].copy_from_slice(&[0xfe, 0xff, 0xff]); // +5 end CHS
    put_le(sector0, e + 8, 4, u64::from(start)); // +8 starting LBA
    put_le(sector0, e + 12, 4, u64::from(size)); // +12 size in LBA
    sector0[510] = 0x55;
    sector0[511] = 0xaa;
}

/// GPT header fields that the hostile cases vary.
#[derive(Clone, Copy)]
pub struct GptSpec {
    pub total_sectors: u64,
    pub num_entries: u32,
    pub entry_size: u32,
    /// One partition: first and last LBA.
    pub partition: (u64, u64),
}

/// GPT partition entries array (one partition, a Linux filesystem named "hostile").
fn gpt_entries(spec: &GptSpec) -> Vec<u8> {
    let size = (spec.num_entries as usize).saturating_mul(spec.entry_size as usize);
    let mut a = vec![0u8; size.min(1 << 20)];
    if a.len() >= 128 {
        // 0x00 type GUID 0fc63daf-8483-4772-8e79-3d69d8477de4 (mixed endian)
        a[0..16].copy_from_slice(&[
            0xaf, 0x3d, 0xc6, 0x0f, 0x83, 0x84, 0x72, 0x47, 0x8e, 0x79, 0x3d, 0x69, 0xd8, 0x47,
            0x7d, 0xe4,
        ]);
        a[16..32].copy_from_slice(&[0x11; 16]); // 0x10 unique GUID
        put_le(&mut a, 32, 8, spec.partition.0); // 0x20 first LBA
        put_le(&mut a, 40, 8, spec.partition.1); // 0x28 last LBA
        for (i, c) in "hostile".encode_utf16().enumerate() {
            put_le(&mut a, 56 + 2 * i, 2, u64::from(c)); // 0x38 name, UTF-16LE
        }
    }
    a
}

/// A GPT header (92 bytes in a sector) with valid CRCs over `entries`.
fn gpt_header(
    spec: &GptSpec,
    my_lba: u64,
    alt_lba: u64,
    entries_lba: u64,
    entries: &[u8],
) -> [u8; 512] {
    let entry_sectors = entries.len().div_ceil(SECTOR) as u64;
    let mut h = [0u8; 512];
    h[0..8].copy_from_slice(b"EFI PART"); // 0x00 signature
    put_le(&mut h, 8, 4, 0x0001_0000); // 0x08 revision
    put_le(&mut h, 12, 4, 92); // 0x0c header size
    put_le(&mut h, 24, 8, my_lba); // 0x18 my LBA
    put_le(&mut h, 32, 8, alt_lba); // 0x20 alternate LBA
    put_le(&mut h, 40, 8, 2 + entry_sectors); // 0x28 first usable LBA
    put_le(&mut h, 48, 8, spec.total_sectors - 2 - entry_sectors); // 0x30 last usable LBA
    h[56..72].copy_from_slice(&[0x22; 16]); // 0x38 disk GUID
    put_le(&mut h, 72, 8, entries_lba); // 0x48 partition entry LBA
    put_le(&mut h, 80, 4, u64::from(spec.num_entries)); // 0x50 number of entries
    put_le(&mut h, 84, 4, u64::from(spec.entry_size)); // 0x54 entry size
    put_le(&mut h, 88, 4, u64::from(crc32fast::hash(entries))); // 0x58 entries CRC32
    let crc = crc32fast::hash(&h[0..92]);
    put_le(&mut h, 16, 4, u64::from(crc)); // 0x10 header CRC32
    h
}

/// A whole GPT disk: protective MBR, primary header + entries, backup entries + header.
pub fn gpt_disk(spec: &GptSpec) -> Vec<u8> {
    let total = spec.total_sectors;
    let mut d = vec![0u8; total as usize * SECTOR];
    let size = u32::try_from(total - 1).unwrap_or(u32::MAX);
    mbr_entry(&mut d[0..512], 0, 0, 0xee, 1, size);
    let entries = gpt_entries(spec);
    let n = entries.len().div_ceil(SECTOR) as u64;
    let primary = gpt_header(spec, 1, total - 1, 2, &entries);
    let backup = gpt_header(spec, total - 1, 1, total - 1 - n, &entries);
    let at = |lba: u64| lba as usize * SECTOR;
    d[at(1)..at(2)].copy_from_slice(&primary);
    let room = at(2 + n).min(at(total)).saturating_sub(at(2));
    d[at(2)..at(2) + room.min(entries.len())].copy_from_slice(&entries[..room.min(entries.len())]);
    if total > 2 + 2 * n {
        let b = at(total - 1 - n);
        d[b..b + entries.len()].copy_from_slice(&entries);
    }
    d[at(total - 1)..].copy_from_slice(&backup);
    d
}

/// The smallest sound GPT disk: 7 sectors, 4 entries (one sector), partition at LBA 3..4.
pub fn small_gpt_spec() -> GptSpec {
    GptSpec {
        total_sectors: 7,
        num_entries: 4,
        entry_size: 128,
        partition: (3, 4),
    }
}

/// Re-seal a GPT header's CRC after editing a field (header at byte `at`).
fn reseal_gpt(d: &mut [u8], at: usize) {
    d[at + 16..at + 20].copy_from_slice(&[0; 4]);
    let crc = crc32fast::hash(&d[at..at + 92]);
    put_le(d, at + 16, 4, u64::from(crc));
}

// ---------------------------------------------------------------------------------------------
// The cases
// ---------------------------------------------------------------------------------------------

/// A fixed VHD of `data` sectors of zeros (with a valid footer).
fn fixed_vhd(data_bytes: usize) -> Vec<u8> {
    let mut v = vec![0u8; data_bytes];
    v.extend_from_slice(&vhd_footer(data_bytes as u64, FIXED, u64::MAX));
    v
}

/// A dynamic (or differencing) VHD without allocated blocks: footer copy, header, BAT, footer.
fn sparse_vhd(disk_type: u32, parent: Option<&str>) -> Vec<u8> {
    let size: u64 = 4 << 20;
    let block: u32 = 2 << 20;
    let entries = 2u32;
    let foot = vhd_footer(size, disk_type, 512);
    let mut h = dynamic_header(1536, entries, block);
    let mut locator = Vec::new();
    if let Some(name) = parent {
        h[40..56].copy_from_slice(&[0x77; 16]); // 0x28 parent unique id
        put_be(&mut h, 56, 4, 0x2fff_0000); // 0x38 parent time stamp
        for (i, c) in name.encode_utf16().enumerate() {
            put_be(&mut h, 64 + 2 * i, 2, u64::from(c)); // 0x40 parent name, UTF-16BE
        }
        let rel: Vec<u8> = format!(".\\{name}")
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        h[576..580].copy_from_slice(b"W2ru"); // 0x240 locator: platform code
        put_be(&mut h, 580, 4, 512); // platform data space
        put_be(&mut h, 584, 4, rel.len() as u64); // platform data length
        put_be(&mut h, 592, 8, 2048); // platform data offset
        reseal_dynamic(&mut h);
        locator = rel;
    }
    let mut v = Vec::new();
    v.extend_from_slice(&foot);
    v.extend_from_slice(&h);
    v.extend_from_slice(&[0xff; 512]); // BAT at 1536: every block unallocated
    if parent.is_some() {
        let mut sector = [0u8; 512];
        sector[..locator.len()].copy_from_slice(&locator);
        v.extend_from_slice(&sector); // locator data at 2048
    }
    v.extend_from_slice(&foot);
    v
}

/// The hostile cases small enough to commit (each < 4 KiB).
pub fn small_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    let mut add = |name, bytes: Vec<u8>, finding, format| {
        cases.push(Case {
            name,
            bytes,
            expect_finding: finding,
            expect_format: format,
        })
    };
    add("empty", Vec::new(), None, Some("raw"));
    add("one-byte", vec![0x42], None, Some("raw"));
    add(
        "footer-only",
        vhd_footer(0, FIXED, u64::MAX).to_vec(),
        None,
        None,
    );

    let mut v = fixed_vhd(1024);
    v[1024 + 64] ^= 0x01;
    add("footer-bad-checksum", v, Some("vhd.footer.checksum"), None);

    let mut v = fixed_vhd(1024);
    let at = 1024;
    put_be(&mut v[at..], 48, 8, 1 << 40); // current size 1 TiB, file 1.5 KiB
    put_be(&mut v[at..], 40, 8, 1 << 40);
    reseal_footer(&mut v[at..at + 512]);
    add(
        "footer-size-exceeds-file",
        v,
        Some("vhd.footer.size-mismatch"),
        Some("vhd-fixed"),
    );

    let mut v = fixed_vhd(1024);
    put_be(&mut v[1024..], 60, 4, 7); // disk type 7
    reseal_footer(&mut v[1024..1536]);
    add(
        "footer-unknown-disk-type",
        v,
        Some("vhd.footer.disk-type"),
        None,
    );

    add(
        "dynamic-empty",
        sparse_vhd(DYNAMIC, None),
        None,
        Some("vhd-dynamic"),
    );
    add(
        "differencing-empty",
        sparse_vhd(DIFFERENCING, Some("parent.vhd")),
        None,
        Some("vhd-differencing"),
    );

    let mut v = sparse_vhd(DYNAMIC, None);
    put_be(&mut v[512..], 28, 4, u64::from(u32::MAX)); // max table entries 2^32-1
    reseal_dynamic(&mut v[512..1536]);
    add(
        "dynamic-bat-huge",
        v,
        Some("vhd.dynamic"),
        Some("vhd-dynamic"),
    );

    let mut v = sparse_vhd(DYNAMIC, None);
    put_be(&mut v[512..], 32, 4, 0); // block size 0
    reseal_dynamic(&mut v[512..1536]);
    add(
        "dynamic-block-size-zero",
        v,
        Some("vhd.dynamic"),
        Some("vhd-dynamic"),
    );

    let mut v = sparse_vhd(DYNAMIC, None);
    put_be(&mut v[512..], 16, 8, u64::MAX - 100); // BAT far outside the file
    reseal_dynamic(&mut v[512..1536]);
    add(
        "dynamic-bat-outside",
        v,
        Some("vhd.dynamic"),
        Some("vhd-dynamic"),
    );

    let mut v = sparse_vhd(DYNAMIC, None);
    v[1536..1540].copy_from_slice(&[0, 0, 0, 1]); // block 0 at sector 1 = inside the footer copy
    v[1540..1544].copy_from_slice(&[0xff, 0xff, 0xff, 0xfe]); // block 1 past the end
    add("dynamic-blocks-wild", v, None, Some("vhd-dynamic"));

    let d = gpt_disk(&small_gpt_spec());
    add("gpt-small-sound", d.clone(), None, None);

    let mut v = d.clone();
    v[512 + 16] ^= 0xff; // primary header CRC
    add("gpt-primary-bad-crc", v, Some("gpt.primary"), None);

    let mut v = d.clone();
    v[512..1024].fill(0); // primary header gone
    add("gpt-primary-zeroed", v, Some("gpt.primary"), None);

    let mut v = d.clone();
    put_le(&mut v, 512 + 80, 4, u64::from(u32::MAX)); // 2^32-1 entries
    reseal_gpt(&mut v, 512);
    let last = v.len() - 512;
    put_le(&mut v, last + 80, 4, u64::from(u32::MAX));
    reseal_gpt(&mut v, last);
    add("gpt-entries-2pow32", v, Some("gpt."), None);

    let mut v = d.clone();
    put_le(&mut v, 512 + 84, 4, 0); // entry size 0
    reseal_gpt(&mut v, 512);
    let last = v.len() - 512;
    put_le(&mut v, last + 84, 4, 0);
    reseal_gpt(&mut v, last);
    add("gpt-entry-size-zero", v, Some("gpt."), None);

    let mut v = d.clone();
    put_le(&mut v, 512 + 84, 4, 129); // entry size not a multiple of 128
    reseal_gpt(&mut v, 512);
    add("gpt-entry-size-129", v, Some("gpt."), None);

    let mut v = d.clone();
    put_le(&mut v, 512 + 12, 4, 0xffff_ffff); // header size 4 GiB
    add("gpt-header-size-huge", v, Some("gpt."), None);

    let mut v = d.clone();
    put_le(&mut v, 512 + 72, 8, u64::MAX); // entries LBA at the end of the 64-bit range
    reseal_gpt(&mut v, 512);
    add("gpt-entries-lba-max", v, Some("gpt."), None);

    let mut v = d;
    put_le(&mut v, 1024 + 32, 8, 1); // partition 3..1 (reversed)
    put_le(&mut v, 1024 + 40, 8, u64::MAX); // last LBA far past the disk
    add("gpt-partition-wild", v, Some("gpt."), None);

    let mut m = vec![0u8; 2048];
    mbr_entry(&mut m, 0, 0x80, 0x83, 1, 1_000_000_000);
    mbr_entry(&mut m, 1, 0x00, 0x07, u32::MAX, u32::MAX);
    add(
        "mbr-past-end",
        m,
        Some("mbr.partition.outside-disk"),
        Some("raw"),
    );

    let mut m = vec![0u8; 2048];
    mbr_entry(&mut m, 0, 0x80, 0x83, 1, 3);
    mbr_entry(&mut m, 1, 0x00, 0x83, 2, 2);
    mbr_entry(&mut m, 2, 0x80, 0x83, 0, 0);
    add("mbr-overlap-zero-size", m, Some("mbr."), Some("raw"));

    // extended partition at LBA 2; the second EBR (LBA 4) links to itself
    let mut m = vec![0u8; 7 * 512];
    mbr_entry(&mut m[0..512], 0, 0, 0x05, 2, 5);
    mbr_entry(&mut m[1024..1536], 0, 0, 0x83, 1, 1); // logical at LBA 3
    mbr_entry(&mut m[1024..1536], 1, 0, 0x05, 2, 2); // next EBR at extended + 2 = LBA 4
    mbr_entry(&mut m[2048..2560], 0, 0, 0x83, 1, 1); // logical at LBA 5
    mbr_entry(&mut m[2048..2560], 1, 0, 0x05, 2, 2); // next EBR: LBA 4 again
    add("mbr-ebr-loop", m, Some("mbr.ebr.loop"), Some("raw"));

    // two EBRs that point at each other
    let mut m = vec![0u8; 7 * 512];
    mbr_entry(&mut m[0..512], 0, 0, 0x0f, 2, 5);
    mbr_entry(&mut m[1024..1536], 0, 0, 0x83, 1, 1);
    mbr_entry(&mut m[1024..1536], 1, 0, 0x05, 2, 2); // -> LBA 4
    mbr_entry(&mut m[2048..2560], 0, 0, 0x83, 1, 1);
    mbr_entry(&mut m[2048..2560], 1, 0, 0x05, 0, 2); // -> LBA 2
    add("mbr-ebr-cycle2", m, Some("mbr.ebr.loop"), Some("raw"));

    // an EBR link outside the disk
    let mut m = vec![0u8; 4 * 512];
    mbr_entry(&mut m[0..512], 0, 0, 0x05, 2, u32::MAX);
    mbr_entry(&mut m[1024..1536], 0, 0, 0x83, 1, 1);
    mbr_entry(&mut m[1024..1536], 1, 0, 0x05, 0xffff_0000, 10);
    add("mbr-ebr-outside", m, Some("mbr."), Some("raw"));

    cases
}

/// Hostile cases too big to commit: built at test time.
pub fn large_cases() -> Vec<Case> {
    let mut cases = Vec::new();

    // GPT with 4096-byte entries (legal: 128 x 2^n) and one entry, sound CRCs.
    let spec = GptSpec {
        total_sectors: 64,
        num_entries: 1,
        entry_size: 4096,
        partition: (12, 40),
    };
    cases.push(Case {
        name: "gpt-entry-size-4096",
        bytes: gpt_disk(&spec),
        expect_finding: None,
        expect_format: Some("raw"),
    });

    // GPT whose array claims 2^32-1 entries of 4096 bytes (16 TiB of entries).
    let mut d = gpt_disk(&GptSpec {
        total_sectors: 64,
        num_entries: 4,
        entry_size: 128,
        partition: (10, 20),
    });
    for at in [512, d.len() - 512] {
        put_le(&mut d, at + 80, 4, u64::from(u32::MAX));
        put_le(&mut d, at + 84, 4, 4096);
        reseal_gpt(&mut d, at);
    }
    cases.push(Case {
        name: "gpt-array-16tib",
        bytes: d,
        expect_finding: Some("gpt."),
        expect_format: Some("raw"),
    });

    // a dynamic VHD with one allocated block of 2 MiB
    let size: u64 = 4 << 20;
    let block = 2u32 << 20;
    let foot = vhd_footer(size, DYNAMIC, 512);
    let mut v = Vec::new();
    v.extend_from_slice(&foot);
    v.extend_from_slice(&dynamic_header(1536, 2, block));
    let mut bat = [0xffu8; 512];
    bat[0..4].copy_from_slice(&(2048u32 / 512).to_be_bytes()); // block 0 at byte 2048
    v.extend_from_slice(&bat);
    v.extend_from_slice(&[0xff; 512]); // block bitmap: every sector present
    v.extend(std::iter::repeat_n(0xa5u8, block as usize)); // block data
    v.extend_from_slice(&foot);
    cases.push(Case {
        name: "dynamic-one-block",
        bytes: v,
        expect_finding: None,
        expect_format: Some("vhd-dynamic"),
    });

    cases
}

/// Random case `seed`: pure noise, noise with a sound footer or MBR signature, or a small
/// corpus case with a few bytes changed.
pub fn random_case(seed: u64, small: &[Case]) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    match seed % 4 {
        0 => {
            let mut v = vec![0u8; rng.below(70_000) as usize];
            rng.fill(&mut v);
            v
        }
        1 => {
            let mut v = vec![0u8; rng.below(8) as usize * 512];
            rng.fill(&mut v);
            let mut foot = vhd_footer(rng.below(1 << 30), 2 + rng.below(3) as u32, rng.next());
            rng.fill(&mut foot[40..64]);
            reseal_footer(&mut foot);
            v.extend_from_slice(&foot);
            v
        }
        2 => {
            let mut v = vec![0u8; (1 + rng.below(16) as usize) * 512];
            rng.fill(&mut v);
            v[510] = 0x55;
            v[511] = 0xaa;
            if rng.below(2) == 0 {
                v[446 + 4] = [0x05, 0x0f, 0x85, 0xee][rng.below(4) as usize];
            }
            v
        }
        _ => {
            let base = &small[rng.below(small.len() as u64) as usize].bytes;
            let mut v = base.clone();
            if v.is_empty() {
                return v;
            }
            for _ in 0..1 + rng.below(8) {
                let at = rng.below(v.len() as u64) as usize;
                v[at] = rng.next() as u8;
            }
            v
        }
    }
}
