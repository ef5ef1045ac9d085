//! MBR to GPT conversion: a [`plan::Plan`] built from reads only, applied behind an undo
//! journal.
//!
//! The pieces:
//! - `plan.rs`: the layout checks (`validate`) and the plan: every region that will be written,
//!   the new partition table, the new disk size. Nothing is written while planning.
//! - `apply.rs`: carries a plan out: journal first (fsynced), then the writes, then fsync.
//! - `journal.rs`: the undo journal and `rollback`.
//! - `copy.rs`: the sparse-aware copy behind `convert -o`.
//!
//! Room strategies are steps of the plan ([`plan::Room`]): new strategies (shrinking the last
//! partition) add a variant and the steps that carry it out, not a new pipeline.

pub mod apply;
pub mod boot;
pub mod copy;
pub mod journal;
pub mod plan;

pub use plan::{validate, Check, CheckStatus, Options, Plan, Region, Room, RoomChoice, Validation};
