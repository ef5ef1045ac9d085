//! The command line: clap definitions, one file per subcommand, exit codes.
//!
//! Commands build a report value; `output.rs` renders it as text or JSON.

mod args;
mod checksum;
mod convert;
mod info;
pub mod output;
mod upload;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::error::Error;

/// Exit codes (documented in README.md; scripts rely on them).
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// The command ran and found problems: findings of severity error (`info`), a failed check
    /// (`validate`), differences (`diff`, `verify`).
    pub const FINDINGS: u8 = 1;
    /// Bad command line (clap's own code).
    pub const USAGE: u8 = 2;
    /// Reading or writing failed (permissions, disk full, EIO).
    pub const IO: u8 = 3;
    /// The image is corrupt.
    pub const CORRUPT: u8 = 4;
    /// The image is valid but not handled by this command (dynamic VHD, ...).
    pub const UNSUPPORTED: u8 = 5;
    /// The image is locked by another vhdtool, or read-only.
    pub const CONFLICT: u8 = 6;
    /// The request does not fit the image (an option, a layout that cannot be converted).
    pub const INVALID: u8 = 7;
    /// `validate`/`convert`: the disk already has a GPT; nothing to do.
    pub const ALREADY_GPT: u8 = 8;
    /// `upload`: the destination refused it before any page was written (no such blob, wrong
    /// size, a read-only or expired SAS, Entra ID required).
    pub const REFUSED: u8 = 9;
    /// `upload`: the service or the network kept failing past the retry budget (rerun with
    /// --resume).
    pub const NETWORK: u8 = 10;
    /// vhdtool broke one of its own invariants (a bug; the message says what).
    pub const INTERNAL: u8 = 11;

    // the names above are the error kinds' codes (crate::error::ErrorKind::exit_code)
    const _: () = {
        use crate::error::ErrorKind as K;
        assert!(IO == K::Io.exit_code() && CORRUPT == K::Corrupt.exit_code());
        assert!(UNSUPPORTED == K::Unsupported.exit_code() && CONFLICT == K::Conflict.exit_code());
        assert!(INVALID == K::InvalidInput.exit_code() && REFUSED == K::Refused.exit_code());
        assert!(NETWORK == K::Network.exit_code() && INTERNAL == K::Internal.exit_code());
    };
}

/// Offline inspection and Generation-1 to Generation-2 conversion of VHD disk images.
#[derive(Debug, Parser)]
#[command(name = "vhdtool", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show what an image holds: footer, partition tables, filesystems, findings and the
    /// Azure / Generation-2 readiness verdicts. Reads metadata only.
    Info(info::InfoArgs),
    /// Run every layout check MBR2GPT runs, and more, each with its reason and fix; then print
    /// the plan `convert` would carry out. Writes nothing.
    Validate(convert::ValidateArgs),
    /// Convert an MBR disk to GPT with an EFI System Partition, in place (behind an undo
    /// journal) or into a copy (-o).
    Convert(convert::ConvertArgs),
    /// Undo an in-place conversion from its journal, byte for byte.
    Rollback(convert::RollbackArgs),
    /// CRC32 of every chunk and of the whole file, all-zero ranges and holes (never read);
    /// optionally a manifest and the ranges an uploader must send.
    Checksum(checksum::ChecksumArgs),
    /// Compare an image with a manifest from `checksum --manifest`: changed chunks, named.
    Verify(checksum::VerifyArgs),
    /// Compare two images byte for byte: changed ranges to the sector, named by both layouts.
    Diff(checksum::DiffArgs),
    /// Upload the data pages of a fixed VHD to a managed disk or page blob (SAS URL), in
    /// parallel, with retries, resumable (--resume), verified (--verify).
    Upload(upload::UploadArgs),
}

/// Parse the command line, run the command, and give the exit code.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Info(args) => info::run(&args),
        Command::Validate(args) => convert::run_validate(&args),
        Command::Convert(args) => convert::run_convert(&args),
        Command::Rollback(args) => convert::run_rollback(&args),
        Command::Checksum(args) => checksum::run_checksum(&args),
        Command::Verify(args) => checksum::run_verify(&args),
        Command::Diff(args) => checksum::run_diff(&args),
        Command::Upload(args) => upload::run(&args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            output::error(&e);
            ExitCode::from(exit_code(&e))
        }
    }
}

/// The exit code for a library error: the one mapping, [`ErrorKind::exit_code`].
pub fn exit_code(e: &Error) -> u8 {
    e.kind().exit_code()
}
