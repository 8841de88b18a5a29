//! `hostile-memory`: a counter whose `grow` command allocates without bound.
//!
//! A test guest for the host's memory cap and rollback. It behaves exactly
//! like the `counter` guest (see `counter-logic` for the grammar) except:
//!
//! - command `grow`: adds 1000 to the counter, then allocates and touches
//!   1 MiB chunks until allocation fails, which aborts (a trap). The host must
//!   not keep the +1000;
//! - query `grow`: the same allocation spree.

use std::hint::black_box;

use counter_logic::{Counter, command_text};
use iroh_raft_guest::{EntryMeta, StateMachine};

/// What `grow` adds before allocating, so a host that keeps the partial state
/// change shows it as an off-by-1000 counter.
const CORRUPTION_DELTA: i64 = 1000;

/// Size of each allocation.
const CHUNK_BYTES: usize = 1024 * 1024;

/// Stride of the writes that make each chunk's pages really used.
const PAGE_BYTES: usize = 4096;

/// A counter with one extra, hostile command.
#[derive(Debug, Default)]
struct HostileMemory {
    counter: Counter,
}

impl StateMachine for HostileMemory {
    const NAME: &'static str = "hostile-memory";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    fn apply(&mut self, _meta: EntryMeta, command: &[u8]) -> Result<Vec<u8>, String> {
        if command_text(command)? == "grow" {
            self.counter.wrapping_add(CORRUPTION_DELTA);
            exhaust_memory();
        }
        self.counter.apply(command)
    }

    fn query(&self, request: &[u8]) -> Result<Vec<u8>, String> {
        if command_text(request)? == "grow" {
            exhaust_memory();
        }
        self.counter.query(request)
    }

    fn snapshot(&self) -> Result<Vec<u8>, String> {
        Ok(self.counter.snapshot())
    }

    fn restore(snapshot: &[u8]) -> Result<Self, String> {
        Counter::restore(snapshot).map(|counter| Self { counter })
    }
}

/// Allocate until the allocator fails, which aborts the instance (a trap).
///
/// No limit on purpose: the host's memory cap is what must stop this. The
/// loop still ends on its own, because wasm32's 4 GiB address space runs out.
fn exhaust_memory() -> ! {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut chunk = vec![0_u8; CHUNK_BYTES];
        for byte in chunk.iter_mut().step_by(PAGE_BYTES) {
            *byte = 1;
        }
        // `black_box` keeps the optimizer from proving the chunks unused and
        // eliding the allocations.
        hoard.push(black_box(chunk));
        black_box(&mut hoard);
    }
}

iroh_raft_guest::export_state_machine!(HostileMemory);

#[cfg(test)]
mod tests {
    use super::*;

    const META: EntryMeta = EntryMeta {
        index: 1,
        term: 1,
        timestamp_ms: 0,
    };

    #[test]
    fn t10_behaves_like_the_counter_otherwise() {
        let mut guest = HostileMemory::default();
        assert_eq!(guest.apply(META, b"set 9"), Ok(b"9".to_vec()));
        assert!(guest.apply(META, b"grow 1").is_err());
        assert_eq!(guest.query(b""), Ok(b"9".to_vec()));
        let restored = HostileMemory::restore(&guest.snapshot().expect("snapshot"));
        assert_eq!(restored.map(|guest| guest.counter), Ok(Counter::new(9)));
    }
}
