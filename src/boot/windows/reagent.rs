//! `\Windows\System32\Recovery\ReAgent.xml`: WinRE's registration. Its `<WinreBCD id="{...}"/>`
//! names the WinRE loader object of the store; the conversion writes a new store, so the id
//! becomes the new WinRE loader's GUID, written in place (a GUID string has one length, so the
//! file's size does not change). WinreLocation's `guid` is left alone: in MBR form Windows
//! writes zeros there, and `reagentc` rewrites the location at its next run.

use crate::error::{Error, Result};
use crate::fs::ntfsfile::{FileExtents, NtfsVolume};
use crate::gpt::Guid;

pub const REAGENT_XML: &str = "\\Windows\\System32\\Recovery\\ReAgent.xml";
const MAX_REAGENT_BYTES: u64 = 1 << 20;
const WINRE_BCD: &[u8] = b"<WinreBCD id=\"";
/// `{xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx}`
const GUID_TEXT_BYTES: usize = 38;

/// ReAgent.xml with WinRE configured.
#[derive(Debug, Clone)]
pub struct ReAgent {
    pub bytes: Vec<u8>,
    /// Byte offset of the WinreBCD GUID text (`{` included).
    pub id_at: usize,
    pub id: Guid,
    /// Where the file's bytes are; `None` when it is resident (inside its MFT record) and so
    /// not patched here.
    pub extents: Option<FileExtents>,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Read ReAgent.xml; `None` when it is missing or WinRE is not configured (a nil id).
pub fn read_reagent(vol: &NtfsVolume) -> Result<Option<ReAgent>> {
    if !vol.exists(REAGENT_XML)? {
        return Ok(None);
    }
    let bytes = vol.read_file(REAGENT_XML, MAX_REAGENT_BYTES)?;
    let Some(id_at) = find(&bytes, WINRE_BCD).and_then(|a| a.checked_add(WINRE_BCD.len())) else {
        return Ok(None);
    };
    let text = bytes
        .get(id_at..id_at.saturating_add(GUID_TEXT_BYTES))
        .and_then(|t| std::str::from_utf8(t).ok())
        .ok_or_else(|| Error::corrupt("ReAgent.xml: WinreBCD id is not a GUID"))?;
    let id: Guid = text
        .trim_start_matches('{')
        .trim_end_matches('}')
        .parse()
        .map_err(|_| Error::corrupt(format!("ReAgent.xml: WinreBCD id {text:?} is not a GUID")))?;
    if id == Guid::NIL {
        return Ok(None);
    }
    let extents = vol.file_extents(REAGENT_XML).ok();
    Ok(Some(ReAgent {
        bytes,
        id_at,
        id,
        extents,
    }))
}

impl ReAgent {
    /// The write (volume offset, bytes) that sets the WinreBCD id to `new_id`.
    pub fn patch(&self, new_id: &Guid) -> Result<Option<(u64, Vec<u8>)>> {
        let Some(ext) = &self.extents else {
            return Ok(None);
        };
        let text = format!("{{{new_id}}}");
        if text.len() != GUID_TEXT_BYTES {
            return Err(Error::internal("a GUID's text is not 38 bytes"));
        }
        let at = u64::try_from(self.id_at).map_err(|_| Error::corrupt("ReAgent.xml offset"))?;
        let pieces = ext
            .map(at, 38)
            .ok_or_else(|| Error::corrupt("ReAgent.xml: the id lies outside the file"))?;
        match pieces.as_slice() {
            [(vol, _)] => Ok(Some((*vol, text.into_bytes()))),
            _ => Ok(None),
        }
    }
}
