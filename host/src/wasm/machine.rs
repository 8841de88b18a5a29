//! A guest of either world behind one type: what the node's applier runs.

use super::bindings::GuestInfo;
use super::engine::{GuestWorld, LoadedComponent};
use super::error::{GuestFailure, WasmError};
use super::limits::GuestLimits;
use super::state_machine::{ApplyOutcome, ReplayWindow, RuntimeStats, Stalled, StateMachine};
use super::store_machine::StoreMachine;
use super::wasi::EntryContext;

/// A running guest: state in its own memory (0.1.0) or in the host's
/// store (0.2.0).
#[derive(Debug)]
pub enum GuestMachine {
    Memory(StateMachine),
    Store(StoreMachine),
}

impl From<StateMachine> for GuestMachine {
    fn from(machine: StateMachine) -> Self {
        GuestMachine::Memory(machine)
    }
}

impl From<StoreMachine> for GuestMachine {
    fn from(machine: StoreMachine) -> Self {
        GuestMachine::Store(machine)
    }
}

impl GuestMachine {
    pub fn world(&self) -> GuestWorld {
        self.component().world()
    }

    pub fn info(&self) -> &GuestInfo {
        match self {
            GuestMachine::Memory(m) => m.info(),
            GuestMachine::Store(m) => m.info(),
        }
    }

    pub fn component(&self) -> &LoadedComponent {
        match self {
            GuestMachine::Memory(m) => m.component(),
            GuestMachine::Store(m) => m.component(),
        }
    }

    pub fn limits(&self) -> GuestLimits {
        match self {
            GuestMachine::Memory(m) => m.limits(),
            GuestMachine::Store(m) => m.limits(),
        }
    }

    pub fn stats(&self) -> RuntimeStats {
        match self {
            GuestMachine::Memory(m) => m.stats(),
            GuestMachine::Store(m) => m.stats(),
        }
    }

    /// Continue counting where `previous` (the guest this one replaces)
    /// left off, so status counters span upgrades.
    pub fn continue_stats(&mut self, previous: &GuestMachine) {
        let stats = previous.stats();
        match self {
            GuestMachine::Memory(m) => m.set_stats(stats),
            GuestMachine::Store(m) => m.continue_stats(stats),
        }
    }

    pub fn last_entry(&self) -> EntryContext {
        match self {
            GuestMachine::Memory(m) => m.last_entry(),
            GuestMachine::Store(m) => m.last_entry(),
        }
    }

    pub fn memory_bytes(&self) -> u64 {
        match self {
            GuestMachine::Memory(m) => m.memory_bytes(),
            GuestMachine::Store(m) => m.memory_bytes(),
        }
    }

    /// Apply one committed command (a store-backed guest commits its
    /// writes with the entry).
    pub fn apply(
        &mut self,
        entry: EntryContext,
        command: &[u8],
    ) -> Result<ApplyOutcome, WasmError> {
        match self {
            GuestMachine::Memory(m) => m.apply(entry, command),
            GuestMachine::Store(m) => m.apply(entry, command),
        }
    }

    pub fn query(
        &mut self,
        request: &[u8],
    ) -> Result<(Result<Vec<u8>, GuestFailure>, u64), WasmError> {
        match self {
            GuestMachine::Memory(m) => m.query(request),
            GuestMachine::Store(m) => m.query(request),
        }
    }

    /// The memory guest's whole state (`snapshot()`); a store-backed
    /// guest's state is read from the store instead.
    pub fn snapshot(&mut self) -> Result<Vec<u8>, WasmError> {
        match self {
            GuestMachine::Memory(m) => m.snapshot(),
            GuestMachine::Store(_) => Err(WasmError::WrongWorld {
                call: "snapshot()",
                world: GuestWorld::Store,
            }),
        }
    }

    /// A fingerprint of the whole state, equal on replicas with equal
    /// states. A memory guest's snapshot that fails does so alike
    /// everywhere: its error is the fingerprint then.
    pub fn state_digest(&mut self) -> Result<blake3::Hash, WasmError> {
        match self {
            GuestMachine::Memory(m) => Ok(match m.snapshot() {
                Ok(state) => blake3::hash(&state),
                Err(error) => blake3::hash(error.to_string().as_bytes()),
            }),
            GuestMachine::Store(m) => {
                m.flush()?;
                Ok(blake3::Hash::from_bytes(m.state().digest()?))
            }
        }
    }

    /// Write what a store-backed guest applied since the last flush to the
    /// store (see [`StoreMachine::flush`]); nothing for a memory guest.
    pub fn flush(&mut self) -> Result<(), WasmError> {
        match self {
            GuestMachine::Memory(_) => Ok(()),
            GuestMachine::Store(m) => m.flush(),
        }
    }

    /// Since which applied index a 0.1.0 guest's checkpoints fail (never
    /// for a store-backed guest: it has none).
    pub fn checkpoint_failing_since(&self) -> Option<u64> {
        match self {
            GuestMachine::Memory(m) => m.checkpoint_failing_since(),
            GuestMachine::Store(_) => None,
        }
    }

    /// Why the guest can no longer make progress, if it cannot (a 0.1.0
    /// guest past its memory cap; a store-backed guest is never stalled).
    pub fn stalled(&self) -> Option<Stalled> {
        match self {
            GuestMachine::Memory(m) => m.stalled(),
            GuestMachine::Store(_) => None,
        }
    }

    /// The recent history a dry run replays (memory guests only).
    pub fn replay_window(&self) -> Option<ReplayWindow> {
        match self {
            GuestMachine::Memory(m) => Some(m.replay_window()),
            GuestMachine::Store(_) => None,
        }
    }
}
