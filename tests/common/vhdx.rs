//! A minimal VHDX writer for the tests, written from "[MS-VHDX] Virtual Hard Disk v2 (VHDX) File
//! Format" v2.0 and independent of vhdtool's reader (its own GUIDs, CRC-32C and layout): QEMU
//! cannot make a differencing VHDX, so the tests build the child (and, for 4096-byte sectors,
//! the parent) here.
//!
//! Layout: file identifier at 0, headers at 64 KiB (sequence 1) and 128 KiB (sequence 2, the
//! current one), region tables at 192 KiB and 256 KiB, an empty log at 1 MiB, the metadata
//! region at 2 MiB (table, then the items at +64 KiB), the BAT at 3 MiB, then each allocated
//! payload block and sector bitmap block at the next MiB.

pub const MIB: usize = 1 << 20;

/// The state of one payload block (2.5.1.1).
#[derive(Debug, Clone)]
pub enum Block {
    NotPresent,
    Undefined,
    Zero,
    Unmapped,
    /// FULLY_PRESENT: the block's bytes (`block_bytes` of them).
    Full(Vec<u8>),
    /// PARTIALLY_PRESENT: the block's bytes as stored, and for each logical sector whether its
    /// sector bitmap bit is set (the child's bytes) or clear (the parent's).
    Partial {
        data: Vec<u8>,
        present: Vec<bool>,
    },
}

/// What to write.
#[derive(Debug, Clone)]
pub struct Spec {
    pub virtual_bytes: u64,
    pub block_bytes: u32,
    pub logical_sector_bytes: u32,
    pub data_write_guid: [u8; 16],
    pub virtual_disk_id: [u8; 16],
    /// The parent locator item's bytes: `Some` makes a differencing disk (HasParent).
    pub parent_locator: Option<Vec<u8>>,
    /// (payload block index, state); the others are NOT_PRESENT.
    pub blocks: Vec<(u64, Block)>,
}

/// The on-disk bytes of a GUID written "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" (the first three
/// fields little-endian, the rest as written).
pub fn guid(s: &str) -> [u8; 16] {
    let hex: String = s.chars().filter(|c| c.is_ascii_hexdigit()).collect();
    assert_eq!(hex.len(), 32, "{s}");
    let b: Vec<u8> = (0..16)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let mut g = [0u8; 16];
    g[..4].copy_from_slice(&[b[3], b[2], b[1], b[0]]);
    g[4..6].copy_from_slice(&[b[5], b[4]]);
    g[6..8].copy_from_slice(&[b[7], b[6]]);
    g[8..].copy_from_slice(&b[8..]);
    g
}

/// The string form of on-disk GUID bytes, lowercase in braces, as a parent locator stores
/// `parent_linkage` (2.6.2.6.3).
pub fn guid_string(g: &[u8; 16]) -> String {
    format!(
        "{{{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{}}}",
        g[3],
        g[2],
        g[1],
        g[0],
        g[5],
        g[4],
        g[7],
        g[6],
        g[8],
        g[9],
        g[10..]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    )
}

pub const LOCATOR_TYPE_VHDX: &str = "B04AEFB7-D19E-4A81-B789-25B8E9445913";
const REGION_BAT: &str = "2DC27766-F623-4200-9D64-115E9BFD4A08";
const REGION_METADATA: &str = "8B7CA206-4790-4B9A-B8FE-575F050F886E";
const FILE_PARAMETERS: &str = "CAA16737-FA36-4D43-B3B6-33F0AA44E76B";
const VIRTUAL_DISK_SIZE: &str = "2FA54224-CD1B-4876-B211-5DBED83BF4B8";
const VIRTUAL_DISK_ID: &str = "BECA12AB-B2E6-4523-93EF-C309E000C746"; // "page 83 data"
const LOGICAL_SECTOR_SIZE: &str = "8141BF1D-A96F-4709-BA47-F233A8FAAB5F";
const PHYSICAL_SECTOR_SIZE: &str = "CDA348C7-445D-4471-9CC9-E9885251C556";
const PARENT_LOCATOR: &str = "A8D35F2D-B30B-454D-ABF7-D3D84834AB0C";

/// CRC-32C (Castagnoli), bit by bit.
pub fn crc32c(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0x82F6_3B78
            } else {
                c >> 1
            };
        }
    }
    !c
}

fn utf16le(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(|u| u.to_le_bytes()).collect()
}

/// A parent locator item (2.6.2.6): header (type, reserved, count), the 12-byte entries, then
/// each key and value in UTF-16 LE.
pub fn locator_item(locator_type: &str, pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut v = guid(locator_type).to_vec(); // 0x00 LocatorType
    v.extend_from_slice(&0u16.to_le_bytes()); // 0x10 Reserved
    v.extend_from_slice(&(pairs.len() as u16).to_le_bytes()); // 0x12 KeyValueCount
    let base = 20 + 12 * pairs.len();
    let mut text = Vec::new();
    for (k, val) in pairs {
        let (k, val) = (utf16le(k), utf16le(val));
        let ko = base + text.len();
        text.extend_from_slice(&k);
        let vo = base + text.len();
        text.extend_from_slice(&val);
        v.extend_from_slice(&(ko as u32).to_le_bytes()); // KeyOffset
        v.extend_from_slice(&(vo as u32).to_le_bytes()); // ValueOffset
        v.extend_from_slice(&(k.len() as u16).to_le_bytes()); // KeyLength
        v.extend_from_slice(&(val.len() as u16).to_le_bytes()); // ValueLength
    }
    v.extend_from_slice(&text);
    v
}

fn put(v: &mut Vec<u8>, at: usize, bytes: &[u8]) {
    if v.len() < at + bytes.len() {
        v.resize(at + bytes.len(), 0);
    }
    v[at..at + bytes.len()].copy_from_slice(bytes);
}

/// The chunk ratio (2.4): payload blocks per sector bitmap block.
pub fn chunk_ratio(block_bytes: u32, logical_sector_bytes: u32) -> u64 {
    ((1u64 << 23) * u64::from(logical_sector_bytes)) / u64::from(block_bytes)
}

/// Write the file.
pub fn build(spec: &Spec) -> Vec<u8> {
    let bs = spec.block_bytes as usize;
    let lss = spec.logical_sector_bytes as usize;
    let cr = chunk_ratio(spec.block_bytes, spec.logical_sector_bytes);
    let blocks = spec.virtual_bytes.div_ceil(bs as u64);
    let chunks = blocks.div_ceil(cr);
    let bat_entries = (chunks * (cr + 1)) as usize;
    let bat_region = (bat_entries * 8).div_ceil(MIB) * MIB;
    let (log_at, meta_at, bat_at) = (MIB, 2 * MIB, 3 * MIB);
    let mut v = vec![0u8; bat_at + bat_region];

    // 2.2.1 file type identifier
    put(&mut v, 0, b"vhdxfile");
    put(&mut v, 8, &utf16le("vhdtool tests"));

    // 2.2.2 headers: sequence 1 at 64 KiB, 2 at 128 KiB (current)
    for (i, at) in [64 << 10, 128 << 10].into_iter().enumerate() {
        let mut h = vec![0u8; 4096];
        h[0..4].copy_from_slice(b"head");
        h[8..16].copy_from_slice(&(i as u64 + 1).to_le_bytes()); // SequenceNumber
        h[0x10..0x20].copy_from_slice(&[0x46 + i as u8; 16]); // FileWriteGuid
        h[0x20..0x30].copy_from_slice(&spec.data_write_guid); // DataWriteGuid
                                                              // LogGuid zero: the log is empty; LogVersion 0
        h[0x42..0x44].copy_from_slice(&1u16.to_le_bytes()); // Version
        h[0x44..0x48].copy_from_slice(&(MIB as u32).to_le_bytes()); // LogLength
        h[0x48..0x50].copy_from_slice(&(log_at as u64).to_le_bytes()); // LogOffset
        let c = crc32c(&h);
        h[4..8].copy_from_slice(&c.to_le_bytes());
        put(&mut v, at, &h);
    }

    // 2.2.3 region tables: BAT and metadata, both required
    let mut rt = vec![0u8; 64 << 10];
    rt[0..4].copy_from_slice(b"regi");
    rt[8..12].copy_from_slice(&2u32.to_le_bytes()); // EntryCount
    for (i, (g, off, len)) in [
        (REGION_BAT, bat_at, bat_region),
        (REGION_METADATA, meta_at, MIB),
    ]
    .into_iter()
    .enumerate()
    {
        let e = 16 + 32 * i;
        rt[e..e + 16].copy_from_slice(&guid(g)); // Guid
        rt[e + 16..e + 24].copy_from_slice(&(off as u64).to_le_bytes()); // FileOffset
        rt[e + 24..e + 28].copy_from_slice(&(len as u32).to_le_bytes()); // Length
        rt[e + 28..e + 32].copy_from_slice(&1u32.to_le_bytes()); // Required
    }
    let c = crc32c(&rt);
    rt[4..8].copy_from_slice(&c.to_le_bytes());
    put(&mut v, 192 << 10, &rt);
    put(&mut v, 256 << 10, &rt);

    // 2.6 metadata: table, items from +64 KiB
    let has_parent = spec.parent_locator.is_some();
    let mut items: Vec<(&str, u32, Vec<u8>)> = vec![
        // (item, flags: 2 IsVirtualDisk | 4 IsRequired, bytes)
        (FILE_PARAMETERS, 4, {
            let mut b = spec.block_bytes.to_le_bytes().to_vec();
            b.extend_from_slice(&(if has_parent { 2u32 } else { 0 }).to_le_bytes());
            b
        }),
        (
            VIRTUAL_DISK_SIZE,
            6,
            spec.virtual_bytes.to_le_bytes().to_vec(),
        ),
        (VIRTUAL_DISK_ID, 6, spec.virtual_disk_id.to_vec()),
        (
            LOGICAL_SECTOR_SIZE,
            6,
            spec.logical_sector_bytes.to_le_bytes().to_vec(),
        ),
        (PHYSICAL_SECTOR_SIZE, 6, 4096u32.to_le_bytes().to_vec()),
    ];
    if let Some(loc) = &spec.parent_locator {
        items.push((PARENT_LOCATOR, 4, loc.clone()));
    }
    let mut table = vec![0u8; 32];
    table[0..8].copy_from_slice(b"metadata");
    table[10..12].copy_from_slice(&(items.len() as u16).to_le_bytes()); // EntryCount
    let mut off = 64 << 10;
    for (g, flags, bytes) in &items {
        let mut e = vec![0u8; 32];
        e[0..16].copy_from_slice(&guid(g)); // ItemID
        e[16..20].copy_from_slice(&(off as u32).to_le_bytes()); // Offset
        e[20..24].copy_from_slice(&(bytes.len() as u32).to_le_bytes()); // Length
        e[24..28].copy_from_slice(&flags.to_le_bytes()); // IsUser/IsVirtualDisk/IsRequired
        table.extend_from_slice(&e);
        put(&mut v, meta_at + off, bytes);
        off += bytes.len().div_ceil(8) * 8;
    }
    assert!(off <= MIB, "metadata items overflow the region");
    put(&mut v, meta_at, &table);

    // payload blocks, then the sector bitmap blocks of chunks with partial blocks
    let mut bat = vec![0u64; bat_entries];
    let mut bitmaps: std::collections::BTreeMap<u64, Vec<u8>> = Default::default();
    let sectors_per_block = bs / lss;
    for (block, state) in &spec.blocks {
        let index = (block + block / cr) as usize;
        let alloc = |v: &mut Vec<u8>, data: &[u8]| -> u64 {
            assert_eq!(data.len(), bs, "block {block}: a block holds {bs} bytes");
            let at = v.len().div_ceil(MIB) * MIB;
            put(v, at, data);
            at as u64
        };
        bat[index] = match state {
            Block::NotPresent => 0,
            Block::Undefined => 1,
            Block::Zero => 2,
            Block::Unmapped => 3,
            Block::Full(data) => alloc(&mut v, data) | 6,
            Block::Partial { data, present } => {
                assert!(has_parent, "PARTIALLY_PRESENT in a disk without a parent");
                assert_eq!(present.len(), sectors_per_block);
                let chunk = block / cr;
                let bits = bitmaps.entry(chunk).or_insert_with(|| vec![0u8; MIB]);
                let first = (block % cr) as usize * sectors_per_block;
                for (s, &p) in present.iter().enumerate() {
                    if p {
                        let bit = first + s;
                        bits[bit / 8] |= 1 << (bit % 8); // bit 0 of byte 0: the first sector
                    }
                }
                alloc(&mut v, data) | 7
            }
        };
    }
    for (chunk, bits) in &bitmaps {
        let at = v.len().div_ceil(MIB) * MIB;
        put(&mut v, at, bits);
        let index = ((chunk + 1) * (cr + 1) - 1) as usize;
        bat[index] = at as u64 | 6; // SB_BLOCK_PRESENT
    }
    let bat_bytes: Vec<u8> = bat.iter().flat_map(|e| e.to_le_bytes()).collect();
    put(&mut v, bat_at, &bat_bytes);
    let len = v.len().div_ceil(MIB) * MIB;
    v.resize(len, 0);
    v
}

/// The DataWriteGuid of a VHDX's current header: of the headers whose signature and CRC-32C
/// are right, the one with the higher sequence number (2.2.2).
pub fn data_write_guid(file: &[u8]) -> [u8; 16] {
    let mut best: Option<(u64, [u8; 16])> = None;
    for at in [64 << 10, 128 << 10] {
        let mut h = file[at..at + 4096].to_vec();
        let stored = u32::from_le_bytes(h[4..8].try_into().unwrap());
        h[4..8].fill(0);
        if &h[0..4] != b"head" || crc32c(&h) != stored {
            continue;
        }
        let seq = u64::from_le_bytes(h[8..16].try_into().unwrap());
        if best.is_none_or(|(s, _)| seq > s) {
            best = Some((seq, h[0x20..0x30].try_into().unwrap()));
        }
    }
    best.expect("no valid VHDX header").1
}
