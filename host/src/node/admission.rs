//! Admission control: whether this node takes new client commands.
//!
//! The applier knows when the guest can no longer make progress (see
//! [`StateMachine::stalled`](crate::wasm::StateMachine::stalled)); the core,
//! which appends proposals, asks before it appends a command. The refusal is
//! this node's own, not a replicated outcome: a refused command never
//! reaches the log, entries already in it still apply everywhere, and
//! component activations are always let in (an upgrade that raises the
//! memory cap is the way out).

use std::sync::{Arc, Mutex, MutexGuard};

use super::error::ClientError;
use crate::wasm::Stalled;

/// Whether new commands are let in; cheap to clone, shared by the applier
/// (which sets it) and the core (which reads it).
#[derive(Debug, Clone, Default)]
pub struct Admission(Arc<Mutex<Option<ClientError>>>);

impl Admission {
    /// `Err` with the reason while new commands are refused.
    pub fn check(&self) -> Result<(), ClientError> {
        match &*self.lock() {
            Some(refusal) => Err(refusal.clone()),
            None => Ok(()),
        }
    }

    /// Refuse new commands because the guest is `stalled`, or (`None`) let
    /// them in again. Logged when it changes.
    pub fn set(&self, stalled: Option<&Stalled>) {
        let mut refusal = self.lock();
        match (stalled, refusal.is_some()) {
            (Some(stalled), false) => tracing::warn!(%stalled,
                "the guest can no longer make progress: refusing new commands \
                 (committed entries still apply)"),
            (None, true) => tracing::info!("the guest makes progress again: taking new commands"),
            _ => {}
        }
        *refusal = stalled.map(|stalled| ClientError::GuestStalled {
            reason: stalled.to_string(),
        });
    }

    fn lock(&self) -> MutexGuard<'_, Option<ClientError>> {
        // An `Option` is consistent after any panic.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wasm::{GuestFailure, StallCause};

    #[test]
    fn a_stall_refuses_commands_with_its_reason_until_cleared() {
        let admission = Admission::default();
        assert_eq!(admission.check(), Ok(()));
        let stalled = Stalled {
            since_index: 7,
            failure: GuestFailure::MemoryLimit { limit_bytes: 1024 },
            cause: StallCause::MemoryFull,
        };
        admission.set(Some(&stalled));
        let refusal = admission.clone().check().expect_err("refused");
        assert_eq!(refusal.code(), "guest_stalled");
        let message = refusal.to_string();
        for needle in [
            "since index 7",
            "1024 bytes",
            "no room left",
            "--memory-limit-mib",
        ] {
            assert!(message.contains(needle), "{needle:?} missing in {message}");
        }
        admission.set(None);
        assert_eq!(admission.check(), Ok(()));
    }
}
