//! Test guest: a counter that breaks the contract by changing its state in
//! `query` (it counts the queries it served and puts the count in its
//! snapshot). Replicas serve different queries, so their states drift apart
//! while every applied result stays the same: nondeterminism that the
//! host's sandbox cannot prevent. The host's divergence detection must
//! notice and stop the replica that disagrees with the majority.

use std::cell::Cell;

use counter_logic::Counter;
use iroh_raft_guest::{EntryMeta, StateMachine};

#[derive(Debug, Default)]
struct QueryCountingCounter {
    counter: Counter,
    queries: Cell<u64>,
}

impl StateMachine for QueryCountingCounter {
    const NAME: &'static str = "hostile-query-state";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    fn apply(&mut self, _meta: EntryMeta, command: &[u8]) -> Result<Vec<u8>, String> {
        self.counter.apply(command)
    }

    fn query(&self, request: &[u8]) -> Result<Vec<u8>, String> {
        self.queries.set(self.queries.get() + 1);
        self.counter.query(request)
    }

    fn snapshot(&self) -> Result<Vec<u8>, String> {
        let mut bytes = self.counter.snapshot();
        bytes.extend_from_slice(&self.queries.get().to_le_bytes());
        Ok(bytes)
    }

    fn restore(snapshot: &[u8]) -> Result<Self, String> {
        let split = snapshot.len().checked_sub(8).ok_or("snapshot too short")?;
        let (counter, queries) = snapshot.split_at(split);
        let queries = u64::from_le_bytes(queries.try_into().map_err(|_| "bad query count")?);
        Ok(Self {
            counter: Counter::restore(counter)?,
            queries: Cell::new(queries),
        })
    }
}

iroh_raft_guest::export_state_machine!(QueryCountingCounter);
