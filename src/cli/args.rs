//! Value parsers shared by the subcommands' arguments.

use crate::gpt::Guid;

/// "100M", "260MiB", "1G", "104857600".
pub fn parse_size(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (examples: 100M, 260MiB, 1G)"))?;
    let mul: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" | "kb" => 1 << 10,
        "m" | "mib" | "mb" => 1 << 20,
        "g" | "gib" | "gb" => 1 << 30,
        "t" | "tib" | "tb" => 1 << 40,
        u => {
            return Err(format!(
                "unknown size unit {u:?} (use K, M, G or T: binary units)"
            ))
        }
    };
    n.checked_mul(mul)
        .ok_or_else(|| format!("{s:?} is too large"))
}

pub fn parse_map(s: &str) -> std::result::Result<(u8, Guid), String> {
    let (t, g) = s.split_once('=').ok_or_else(|| {
        format!("{s:?}: expected MBRTYPE=GUID, e.g. 0x12=ebd0a0a2-b9e5-4433-87c0-68b6b72699c7")
    })?;
    let t = t.trim();
    let hex = t
        .strip_prefix("0x")
        .or_else(|| t.strip_prefix("0X"))
        .unwrap_or(t);
    let ty =
        u8::from_str_radix(hex, 16).map_err(|_| format!("{t:?} is not an MBR type (00-ff)"))?;
    let guid: Guid = g
        .trim()
        .parse()
        .map_err(|_| format!("{g:?} is not a GUID"))?;
    Ok((ty, guid))
}
