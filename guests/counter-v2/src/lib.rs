//! The `counter` guest, version 2: the example of a live upgrade.
//!
//! Everything version 1 does, plus `mul N` (multiply, an error on
//! overflow). The state and the snapshot format are unchanged, so version 2
//! restores version 1's snapshots (that is how the state migrates when a
//! cluster upgrades) and version 1 restores version 2's (so a rollback
//! works too). A guest whose format changes would bump the snapshot's
//! version byte and keep decoding the old versions in `restore`.

use counter_logic::{Command, Counter, command_text};
use iroh_raft_guest::{EntryMeta, StateMachine};

/// The guest's state: just the counter, as in version 1.
#[derive(Debug, Default)]
struct CounterV2 {
    counter: Counter,
}

impl CounterV2 {
    /// `mul N`, or `None` for every other command (handled as in version 1).
    fn multiply(&mut self, command: &[u8]) -> Option<Result<Vec<u8>, String>> {
        let text = command_text(command).ok()?;
        let mut words = text.split_whitespace();
        if words.next() != Some("mul") {
            return None;
        }
        let factor = match (words.next().map(str::parse::<i64>), words.next()) {
            (Some(Ok(factor)), None) => factor,
            _ => return Some(Err("expected `mul <i64>`".to_string())),
        };
        let value = self.counter.value();
        Some(match value.checked_mul(factor) {
            Some(product) => self
                .counter
                .execute(Command::Set(product))
                .map(|v| v.to_string().into_bytes()),
            None => Err(format!(
                "`mul {factor}` overflows the counter (value {value})"
            )),
        })
    }
}

impl StateMachine for CounterV2 {
    const NAME: &'static str = "counter";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    fn apply(&mut self, _meta: EntryMeta, command: &[u8]) -> Result<Vec<u8>, String> {
        match self.multiply(command) {
            Some(result) => result,
            None => self.counter.apply(command),
        }
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

iroh_raft_guest::export_state_machine!(CounterV2);

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
    fn multiplies_and_reads_version_one_snapshots() {
        let v1 = Counter::new(6).snapshot();
        let slot = Slot::<CounterV2>::new();
        slot.restore(&v1).expect("restore a version 1 snapshot");
        assert_eq!(slot.apply(META, b"mul 7"), Ok(b"42".to_vec()));
        assert_eq!(slot.apply(META, b"add 1"), Ok(b"43".to_vec()));
        assert!(slot.apply(META, b"mul x").is_err());
        assert!(
            slot.apply(META, &format!("mul {}", i64::MAX).into_bytes())
                .is_err()
        );
        assert_eq!(slot.query(b"get"), Ok(b"43".to_vec()));
        assert_eq!(
            slot.snapshot().expect("snapshot"),
            Counter::new(43).snapshot()
        );
    }
}
