//! What the benches that time processes share: the built binary and a timed, checked run.
#![allow(dead_code)] // each bench uses part of it

use std::process::Command;
use std::time::{Duration, Instant};

/// The `vhdtool` binary Cargo built for the benches.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_vhdtool")
}

/// Run `cmd`, check it succeeded (its stdout and stderr shown when not), give its stdout and
/// its wall time.
pub fn run_output(cmd: &mut Command) -> (String, Duration) {
    let t = Instant::now();
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let took = t.elapsed();
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (String::from_utf8_lossy(&out.stdout).into_owned(), took)
}

/// [`run_output`], the wall time only.
pub fn run(cmd: &mut Command) -> Duration {
    run_output(cmd).1
}
