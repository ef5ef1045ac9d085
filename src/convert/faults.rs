//! Fault injection for the kill tests: the process aborts (as if killed) just before its Nth
//! mutating operation (journal writes, resizes, writes to the image), counting from 0, when
//! `VHDTOOL_FAULT_AFTER_WRITES=N` is set.
//!
//! Compiled into debug builds only (the test binaries): a release binary has no such switch,
//! and there [`Faults::tick`] only counts.

/// The environment variable of the switch.
#[cfg(debug_assertions)]
pub const FAULT_ENV: &str = "VHDTOOL_FAULT_AFTER_WRITES";

/// Counts mutating operations and, in debug builds, aborts at the configured one.
#[derive(Debug, Default)]
pub struct Faults {
    #[cfg(debug_assertions)]
    remaining: Option<u64>,
    pub operations: u64,
}

impl Faults {
    /// The switch as the environment sets it (debug builds), else none.
    pub fn from_env() -> Self {
        Faults {
            #[cfg(debug_assertions)]
            remaining: std::env::var(FAULT_ENV).ok().and_then(|v| v.parse().ok()),
            operations: 0,
        }
    }
    /// No fault: only counting.
    pub fn none() -> Self {
        Faults::default()
    }
    /// Called before each mutating operation.
    pub fn tick(&mut self) {
        #[cfg(debug_assertions)]
        if let Some(r) = self.remaining.as_mut() {
            if *r == 0 {
                eprintln!(
                    "vhdtool: fault injection: aborting before operation {}",
                    self.operations
                );
                std::process::abort();
            }
            *r = r.saturating_sub(1);
        }
        self.operations = self.operations.saturating_add(1);
    }
}
