//! The boot layer's typed results in the validation: its check becomes one of `validate`'s
//! checks, and a plan adds the ESP's mount note to its guest notes.

use super::checks::{Check, CheckStatus};
use super::validate::Validation;
use crate::boot::linux::{BootCheck, Resolved, Verdict};

impl From<Verdict> for CheckStatus {
    fn from(v: Verdict) -> Self {
        match v {
            Verdict::Pass => CheckStatus::Pass,
            Verdict::Warn => CheckStatus::Warn,
            Verdict::Fail => CheckStatus::Fail,
        }
    }
}

impl From<&BootCheck> for Check {
    fn from(c: &BootCheck) -> Self {
        Check {
            id: c.id,
            status: c.verdict.into(),
            detail: c.detail.clone(),
            fix: c.fix.clone(),
            kind: c.kind,
        }
    }
}

/// Adds the boot files' check to `v` (a failure drops the plan: nothing will be written) and,
/// with a plan, the ESP's mount note to the guest notes. Nothing for a disk that is already GPT.
pub fn attach(v: &mut Validation, resolved: &mut Resolved) {
    if v.already_gpt {
        return;
    }
    if let Some(c) = &resolved.check {
        if c.verdict == Verdict::Fail {
            v.plan = None;
        }
        v.checks.push(Check::from(c));
    }
    if let (Some(lb), Some(esp)) = (
        resolved.linux.as_mut(),
        v.plan.as_ref().and_then(|p| p.esp.as_ref()),
    ) {
        lb.add_esp_note(esp.volume_id);
    }
}
