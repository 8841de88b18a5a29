//! `hostile-loop`: a counter whose `loop` command never returns.
//!
//! A test guest for the host's fuel metering and rollback. It behaves exactly
//! like the `counter` guest (see `counter-logic` for the grammar) except:
//!
//! - command `loop`: adds 1000 to the counter, then spins forever. The host
//!   must stop it when the call runs out of fuel and must not keep the +1000;
//! - query `loop`: spins forever.

use std::hint::black_box;

use counter_logic::{Counter, command_text};
use iroh_raft_guest::{EntryMeta, StateMachine};

/// What `loop` adds before spinning, so a host that keeps the partial state
/// change shows it as an off-by-1000 counter.
const CORRUPTION_DELTA: i64 = 1000;

/// A counter with one extra, hostile command.
#[derive(Debug, Default)]
struct HostileLoop {
    counter: Counter,
}

impl StateMachine for HostileLoop {
    const NAME: &'static str = "hostile-loop";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    fn apply(&mut self, _meta: EntryMeta, command: &[u8]) -> Result<Vec<u8>, String> {
        if command_text(command)? == "loop" {
            self.counter.wrapping_add(CORRUPTION_DELTA);
            spin_forever(self.counter.value());
        }
        self.counter.apply(command)
    }

    fn query(&self, request: &[u8]) -> Result<Vec<u8>, String> {
        if command_text(request)? == "loop" {
            spin_forever(self.counter.value());
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

/// Never returns; only the host's fuel limit ends it. Unbounded on purpose.
fn spin_forever(seed: i64) -> ! {
    let mut spins = seed;
    loop {
        // `black_box` makes every iteration observable to the optimizer, so
        // the loop is compiled as a real loop that burns fuel.
        spins = black_box(spins.wrapping_add(1));
    }
}

iroh_raft_guest::export_state_machine!(HostileLoop);

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
        let mut guest = HostileLoop::default();
        assert_eq!(guest.apply(META, b"add 5"), Ok(b"5".to_vec()));
        assert!(guest.apply(META, b"loops").is_err());
        assert_eq!(guest.query(b"get"), Ok(b"5".to_vec()));
        let restored = HostileLoop::restore(&guest.snapshot().expect("snapshot"));
        assert_eq!(restored.map(|guest| guest.counter), Ok(Counter::new(5)));
    }
}
