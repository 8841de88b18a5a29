//! The `counter` guest: a replicated `i64`.
//!
//! Commands: `add N`, `sub N`, `set N`, `reset`, `get` (UTF-8 text, `N` an
//! `i64`); each returns the new value as decimal text. Queries: `get` or an
//! empty request. The grammar, errors and snapshot format are documented in
//! the `counter-logic` crate, which holds all the logic.

use counter_logic::Counter;
use iroh_raft_guest::{EntryMeta, StateMachine};

/// The guest's state: just the counter.
#[derive(Debug, Default)]
struct CounterGuest {
    counter: Counter,
}

impl StateMachine for CounterGuest {
    const NAME: &'static str = "counter";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    fn apply(&mut self, _meta: EntryMeta, command: &[u8]) -> Result<Vec<u8>, String> {
        self.counter.apply(command)
    }

    fn query(&self, request: &[u8]) -> Result<Vec<u8>, String> {
        self.counter.query(request)
    }

    fn snapshot(&self) -> Result<Vec<u8>, String> {
        Ok(self.counter.snapshot())
    }

    fn restore(snapshot: &[u8]) -> Result<Self, String> {
        Counter::restore(snapshot).map(|counter| Self { counter })
    }
}

iroh_raft_guest::export_state_machine!(CounterGuest);
iroh_raft_guest::guest_examples!("propose add 5", "query get");

#[cfg(test)]
mod tests {
    use super::*;
    use iroh_raft_guest::Slot;

    const META: EntryMeta = EntryMeta {
        index: 1,
        term: 1,
        timestamp_ms: 0,
    };

    #[test]
    fn t10_through_the_sdk() {
        let slot = Slot::<CounterGuest>::new();
        assert_eq!(slot.query(b"get"), Ok(b"0".to_vec()));
        assert_eq!(slot.apply(META, b"add 7"), Ok(b"7".to_vec()));
        assert!(slot.apply(META, b"nope").is_err());
        let snapshot = slot.snapshot().expect("snapshot");

        let other = Slot::<CounterGuest>::new();
        other.restore(&snapshot).expect("restore");
        assert_eq!(other.query(b""), Ok(b"7".to_vec()));
        assert!(other.restore(b"garbage").is_err());
        assert_eq!(other.query(b""), Ok(b"7".to_vec()));
    }
}
