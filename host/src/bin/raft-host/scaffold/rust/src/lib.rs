//! {{name}}: a replicated counter, an iroh-raft guest.
//!
//! Commands (UTF-8): `add N` adds the `i64` N and returns the new value;
//! `reset` sets it to 0. Queries: `get` (or nothing) returns the value.
//! The state lives in the guest's memory; `snapshot` writes it as 8
//! little-endian bytes and `restore` reads them back.

use iroh_raft_guest::{EntryMeta, StateMachine};

#[derive(Debug, Default)]
struct Counter {
    value: i64,
}

impl StateMachine for Counter {
    const NAME: &'static str = "{{name}}";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    fn apply(&mut self, _meta: EntryMeta, command: &[u8]) -> Result<Vec<u8>, String> {
        let command = std::str::from_utf8(command).map_err(|_| "the command is not UTF-8")?;
        // Validate first, mutate last: an `Err` must leave the state as it was.
        let value = match command.split_once(' ') {
            Some(("add", n)) => {
                let n: i64 = n.trim().parse().map_err(|e| format!("add: {e}"))?;
                self.value.checked_add(n).ok_or("add: the counter would overflow")?
            }
            None if command == "reset" => 0,
            _ => return Err(format!("unknown command {command:?}: try `add N` or `reset`")),
        };
        self.value = value;
        Ok(value.to_string().into_bytes())
    }

    fn query(&self, request: &[u8]) -> Result<Vec<u8>, String> {
        match request {
            b"" | b"get" => Ok(self.value.to_string().into_bytes()),
            _ => Err("unknown query: try `get`".into()),
        }
    }

    fn snapshot(&self) -> Result<Vec<u8>, String> {
        Ok(self.value.to_le_bytes().to_vec())
    }

    fn restore(snapshot: &[u8]) -> Result<Self, String> {
        let bytes = <[u8; 8]>::try_from(snapshot)
            .map_err(|_| format!("a snapshot is 8 bytes, not {}", snapshot.len()))?;
        Ok(Self {
            value: i64::from_le_bytes(bytes),
        })
    }
}

iroh_raft_guest::export_state_machine!(Counter);

// What a node suggests in its start banner.
iroh_raft_guest::guest_examples!("propose add 5", "query get");

#[cfg(test)]
mod tests {
    use super::*;

    const META: EntryMeta = EntryMeta {
        index: 1,
        term: 1,
        timestamp_ms: 0,
    };

    #[test]
    fn adds_rejects_and_round_trips() {
        let mut counter = Counter::default();
        assert_eq!(counter.apply(META, b"add 5"), Ok(b"5".to_vec()));
        assert!(counter.apply(META, b"add x").is_err());
        assert!(counter.apply(META, format!("add {}", i64::MAX).as_bytes()).is_err());
        assert_eq!(counter.query(b"get"), Ok(b"5".to_vec()));

        let restored = Counter::restore(&counter.snapshot().expect("snapshot")).expect("restore");
        assert_eq!(restored.query(b""), Ok(b"5".to_vec()));
        assert!(Counter::restore(b"garbage").is_err());
    }
}
