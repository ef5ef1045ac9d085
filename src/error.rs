//! The one public error type of the library.
//!
//! `Corrupt` ("this image is broken") stays apart from `Unsupported` ("valid, but not handled"),
//! so that callers (and exit codes) can tell a damaged image from a feature gap.

use std::fmt;

/// What kind of failure an [`Error`] is. Stable: the CLI maps each kind to an exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ErrorKind {
    /// Reading or writing the file failed (permissions, disk full, EIO).
    Io,
    /// The image contradicts its own format (bad checksum, impossible sizes, truncated).
    Corrupt,
    /// The image is valid but of a kind this command does not handle (dynamic VHD, ...).
    Unsupported,
    /// The request does not fit the image (bad option, layout that cannot be converted).
    InvalidInput,
    /// Another process holds the image, or state on disk disagrees with the request.
    Conflict,
    /// vhdtool broke one of its own invariants (a bug, not a problem of the input): a plan that
    /// does not hold together, a payload of the wrong size.
    Internal,
    /// A remote service refused the request (`upload`: no such blob, wrong size, a read-only or
    /// expired SAS, Entra ID required); nothing was written.
    Refused,
    /// A remote service or the network kept failing past the retry budget (`upload`).
    Network,
}

impl ErrorKind {
    /// Every kind, in exit-code order (for tests and documentation).
    pub const ALL: [ErrorKind; 8] = [
        ErrorKind::Io,
        ErrorKind::Corrupt,
        ErrorKind::Unsupported,
        ErrorKind::Conflict,
        ErrorKind::InvalidInput,
        ErrorKind::Refused,
        ErrorKind::Network,
        ErrorKind::Internal,
    ];

    /// The process exit code of a command that fails with this kind: the one mapping from
    /// error kind to exit code (README.md, "Exit codes", documents it; `tests/exit_codes.rs`
    /// checks the table against real runs). 0, 1, 2 and 8 are not errors: success, findings,
    /// a bad command line (clap) and "already GPT".
    pub const fn exit_code(self) -> u8 {
        match self {
            ErrorKind::Io => 3,
            ErrorKind::Corrupt => 4,
            ErrorKind::Unsupported => 5,
            ErrorKind::Conflict => 6,
            ErrorKind::InvalidInput => 7,
            ErrorKind::Refused => 9,
            ErrorKind::Network => 10,
            ErrorKind::Internal => 11,
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::Io => "I/O error",
            ErrorKind::Corrupt => "corrupt input",
            ErrorKind::Unsupported => "unsupported input",
            ErrorKind::InvalidInput => "invalid input",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Internal => "internal error",
            ErrorKind::Refused => "refused",
            ErrorKind::Network => "network",
        })
    }
}

/// A library error: its kind, a message saying what was expected and what was found (offsets in
/// hex), and the underlying I/O error if there is one.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    kind: ErrorKind,
    message: String,
    #[source]
    source: Option<std::io::Error>,
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            source: None,
        }
    }
    pub fn corrupt(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Corrupt, message)
    }
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unsupported, message)
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, message)
    }
    pub fn refused(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Refused, message)
    }
    pub fn network(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Network, message)
    }
    /// A broken internal invariant: a bug of vhdtool, reported as such.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(
            ErrorKind::Internal,
            format!("{} (a bug in vhdtool: please report it)", message.into()),
        )
    }
    /// An I/O error with what was being done ("reading 512 bytes at 0x1ff000 of disk.vhd").
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        let context = context.into();
        Error {
            kind: ErrorKind::Io,
            message: format!("{context}: {source}"),
            source: Some(source),
        }
    }
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
    pub fn message(&self) -> &str {
        &self.message
    }
    /// The same error with more context in front ("GPT header at 0x200: ...").
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }
    /// The raw OS error, if any (used to tell ENOSPC and EROFS apart).
    pub fn raw_os_error(&self) -> Option<i32> {
        self.source.as_ref().and_then(|e| e.raw_os_error())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's exit-code table names each kind's code, and no two kinds share one.
    #[test]
    fn every_kind_has_its_own_code_and_the_readme_row_says_it() {
        let readme = include_str!("../README.md");
        let table = readme
            .split("## Exit codes")
            .nth(1)
            .and_then(|t| t.split("\n## ").next())
            .unwrap();
        let rows: Vec<(u8, &str)> = table
            .lines()
            .filter_map(|l| {
                let mut cols = l.trim_start_matches('|').split('|');
                let code = cols.next()?.trim().parse().ok()?;
                Some((code, cols.next()?.trim()))
            })
            .collect();
        let mut seen = std::collections::BTreeSet::new();
        for kind in ErrorKind::ALL {
            let code = kind.exit_code();
            assert!(seen.insert(code), "{kind:?}: code {code} used twice");
            assert!(![0, 1, 2, 8, 101].contains(&code), "{kind:?}: {code}");
            let row = rows.iter().find(|(c, _)| *c == code).map(|(_, m)| *m);
            let word = match kind {
                ErrorKind::Io => "I/O error",
                ErrorKind::Corrupt => "corrupt",
                ErrorKind::Unsupported => "unsupported",
                ErrorKind::Conflict => "conflict",
                ErrorKind::InvalidInput => "invalid request",
                ErrorKind::Refused => "refused",
                ErrorKind::Network => "network",
                ErrorKind::Internal => "internal error",
            };
            assert!(
                row.is_some_and(|r| r.contains(word)),
                "README row for {code} should name {word:?}: {row:?}"
            );
        }
    }
}
