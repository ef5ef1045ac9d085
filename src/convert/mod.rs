//! MBR to GPT conversion: checks and a [`Plan`] built from reads only, applied behind an undo
//! journal.
//!
//! The pieces, in the order a conversion runs through them:
//! - `options.rs`: what the user asked for.
//! - `checks.rs`: the layout checks, one small function each (id, verdict, reason, fix).
//! - `bios.rs`: what becomes of BIOS boot (`--hybrid`, or the boot code that is cleared).
//! - `room.rs`: the room policy for the ESP: free space, shrink the last partition, grow.
//! - `identity.rs`: the seed of the derived GUIDs.
//! - `plan.rs`: the plan, a list of steps (offset, length, what, payload): the only place a
//!   write is described.
//! - `validate.rs`: checks -> room -> plan, as `validate` prints it.
//! - `assess.rs`: what `validate`, `convert` and `info` decide before any write: the boot files,
//!   Windows, the checks with theirs, the OS (a disk with none is refused as a data disk).
//! - `apply.rs`: journal of the steps, then the steps, on any `Disk`.
//! - `journal.rs` (+ `journal/decode.rs`): the undo journal and `rollback`.
//! - `run.rs`: one conversion: resolve inputs -> plan -> apply -> prove.
//! - `copy.rs`: the sparse copy behind `convert -o`, under a temporary name.
//! - `faults.rs`: fault injection for the kill tests (debug builds only).
//! - `boot.rs`: the boot layer's typed check, mapped into a [`Check`].
//! - `windows.rs`: Windows images: their checks, ESP files, new store and in-place registry
//!   writes, as checks and steps.

pub mod advice;
pub mod apply;
pub mod assess;
mod bios;
pub mod boot;
pub mod checks;
pub mod copy;
pub mod faults;
mod identity;
pub mod journal;
pub mod options;
pub mod plan;
pub mod room;
pub mod run;
pub mod source;
pub mod space;
pub mod validate;
pub mod windows;

pub use checks::{Check, CheckStatus};
pub use options::{Options, RoomChoice};
pub use plan::{Payload, Plan, Step};
pub use room::Room;
pub use validate::{validate, Validation};
