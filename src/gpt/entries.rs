//! Decoding the used entries of a validated entry array, and findings about where they lie.

use zerocopy::FromBytes;

use super::raw::RawGptEntry;
use super::{type_name, GptHeader, GptPartition, Guid, MAX_ENTRY_FINDINGS};
use crate::finding::Finding;

/// Decode the used entries of a validated array, with findings about their placement.
pub(super) fn decode_entries(
    h: &GptHeader,
    array: &[u8],
    findings: &mut Vec<Finding>,
) -> Vec<GptPartition> {
    let esize = usize::try_from(h.size_of_partition_entry).unwrap_or(usize::MAX);
    let mut parts = Vec::new();
    for (index, chunk) in (1u32..).zip(array.chunks_exact(esize.max(1))) {
        let Ok((e, _)) = RawGptEntry::read_from_prefix(chunk) else {
            continue;
        };
        let type_guid = Guid(e.partition_type_guid);
        if type_guid.is_nil() {
            continue;
        }
        let units: Vec<u16> = e
            .partition_name
            .iter()
            .map(|u| u.get())
            .take_while(|&u| u != 0)
            .collect();
        parts.push(GptPartition {
            index,
            type_guid,
            type_name: type_name(&type_guid),
            unique_guid: Guid(e.unique_partition_guid),
            first_lba: e.starting_lba.get(),
            last_lba: e.ending_lba.get(),
            attributes: e.attributes.get(),
            name: String::from_utf16_lossy(&units),
        });
    }
    check_entries(h, &parts, findings);
    parts
}

/// Findings about entries: reversed, outside the usable LBAs, overlapping.
fn check_entries(h: &GptHeader, parts: &[GptPartition], findings: &mut Vec<Finding>) {
    let mut reversed = 0usize;
    let mut outside = 0usize;
    for p in parts {
        if p.first_lba > p.last_lba {
            if reversed < MAX_ENTRY_FINDINGS {
                findings.push(Finding::error(
                    "gpt.partition.reversed",
                    format!(
                        "partition {}: first LBA {} is after last LBA {}",
                        p.index, p.first_lba, p.last_lba
                    ),
                ));
            }
            reversed = reversed.saturating_add(1);
        } else if p.first_lba < h.first_usable_lba || p.last_lba > h.last_usable_lba {
            if outside < MAX_ENTRY_FINDINGS {
                findings.push(Finding::error(
                    "gpt.partition.outside-usable",
                    format!(
                        "partition {} (LBA {}..={}) is not inside the usable LBAs {}..={}",
                        p.index, p.first_lba, p.last_lba, h.first_usable_lba, h.last_usable_lba
                    ),
                ));
            }
            outside = outside.saturating_add(1);
        }
    }
    // Overlaps: sweep in start order, remembering the entry reaching furthest so far.
    let mut order: Vec<&GptPartition> =
        parts.iter().filter(|p| p.first_lba <= p.last_lba).collect();
    order.sort_by_key(|p| (p.first_lba, p.last_lba, p.index));
    let mut reach: Option<&GptPartition> = None;
    let mut overlaps = 0usize;
    for p in order {
        match reach {
            Some(r) if p.first_lba <= r.last_lba => {
                if overlaps < MAX_ENTRY_FINDINGS {
                    findings.push(Finding::error(
                        "gpt.partition.overlap",
                        format!(
                            "partitions {} (LBA {}..={}) and {} (LBA {}..={}) overlap",
                            r.index, r.first_lba, r.last_lba, p.index, p.first_lba, p.last_lba
                        ),
                    ));
                }
                overlaps = overlaps.saturating_add(1);
                if p.last_lba > r.last_lba {
                    reach = Some(p);
                }
            }
            _ => reach = Some(p),
        }
    }
    for (id, n) in [
        ("gpt.partition.reversed", reversed),
        ("gpt.partition.outside-usable", outside),
        ("gpt.partition.overlap", overlaps),
    ] {
        if n > MAX_ENTRY_FINDINGS {
            findings.push(Finding::error(
                id,
                format!(
                    "{} more like this not listed",
                    n.saturating_sub(MAX_ENTRY_FINDINGS)
                ),
            ));
        }
    }
}
