//! Test guest: a "version 2" of the counter whose `restore` refuses every
//! snapshot. Upgrading to it must fail on every replica and leave the
//! cluster on version 1 with its state untouched.

use counter_logic::Counter;
use iroh_raft_guest::{EntryMeta, StateMachine};

#[derive(Debug, Default)]
struct RejectingCounter {
    counter: Counter,
}

impl StateMachine for RejectingCounter {
    const NAME: &'static str = "counter";
    const VERSION: &'static str = "2.0.0-reject";

    fn apply(&mut self, _meta: EntryMeta, command: &[u8]) -> Result<Vec<u8>, String> {
        self.counter.apply(command)
    }

    fn query(&self, request: &[u8]) -> Result<Vec<u8>, String> {
        self.counter.query(request)
    }

    fn snapshot(&self) -> Result<Vec<u8>, String> {
        Ok(self.counter.snapshot())
    }

    fn restore(_snapshot: &[u8]) -> Result<Self, String> {
        Err("this version cannot read the previous state".to_string())
    }
}

iroh_raft_guest::export_state_machine!(RejectingCounter);
