//! `hostile-trap`: a counter whose `trap` command panics.
//!
//! A test guest for the host's trap handling and rollback. It behaves exactly
//! like the `counter` guest (see `counter-logic` for the grammar) except:
//!
//! - command `trap`: adds 1000 to the counter, then panics. On wasm a panic
//!   aborts, which is a trap; the host must not keep the +1000;
//! - query `trap`: panics;
//! - command or query `print <text>`: writes `<text>` to stdout and to stderr
//!   and returns `printed`, so the host can test where guest output goes.

use counter_logic::{Counter, command_text};
use iroh_raft_guest::{EntryMeta, StateMachine};

/// What `trap` adds before panicking, so a host that keeps the partial state
/// change shows it as an off-by-1000 counter.
const CORRUPTION_DELTA: i64 = 1000;

/// A counter with extra commands.
#[derive(Debug, Default)]
struct HostileTrap {
    counter: Counter,
}

/// The commands this guest adds to the counter's.
enum Extra<'a> {
    Trap,
    Print(&'a str),
}

impl<'a> Extra<'a> {
    fn parse(text: &'a str) -> Option<Self> {
        match text {
            "trap" => Some(Self::Trap),
            "print" => Some(Self::Print("")),
            _ => text.strip_prefix("print ").map(Self::Print),
        }
    }
}

impl StateMachine for HostileTrap {
    const NAME: &'static str = "hostile-trap";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    fn apply(&mut self, _meta: EntryMeta, command: &[u8]) -> Result<Vec<u8>, String> {
        match Extra::parse(command_text(command)?) {
            Some(Extra::Trap) => {
                self.counter.wrapping_add(CORRUPTION_DELTA);
                panic!("hostile-trap: deliberate panic in `apply` after changing the state");
            }
            Some(Extra::Print(text)) => Ok(print(text)),
            None => self.counter.apply(command),
        }
    }

    fn query(&self, request: &[u8]) -> Result<Vec<u8>, String> {
        match Extra::parse(command_text(request)?) {
            Some(Extra::Trap) => panic!("hostile-trap: deliberate panic in `query`"),
            Some(Extra::Print(text)) => Ok(print(text)),
            None => self.counter.query(request),
        }
    }

    fn snapshot(&self) -> Result<Vec<u8>, String> {
        Ok(self.counter.snapshot())
    }

    fn restore(snapshot: &[u8]) -> Result<Self, String> {
        Counter::restore(snapshot).map(|counter| Self { counter })
    }
}

fn print(text: &str) -> Vec<u8> {
    println!("{text}");
    eprintln!("{text}");
    b"printed".to_vec()
}

iroh_raft_guest::export_state_machine!(HostileTrap);

#[cfg(test)]
mod tests {
    use super::*;
    use std::panic::{AssertUnwindSafe, catch_unwind};

    const META: EntryMeta = EntryMeta {
        index: 1,
        term: 1,
        timestamp_ms: 0,
    };

    #[test]
    fn t10_behaves_like_the_counter_otherwise() {
        let mut guest = HostileTrap::default();
        assert_eq!(guest.apply(META, b"add 3"), Ok(b"3".to_vec()));
        assert!(guest.apply(META, b"traps").is_err());
        assert_eq!(guest.query(b"get"), Ok(b"3".to_vec()));
        let restored = HostileTrap::restore(&guest.snapshot().expect("snapshot"));
        assert_eq!(restored.map(|guest| guest.counter), Ok(Counter::new(3)));
    }

    #[test]
    fn t10_print_answers_printed() {
        let mut guest = HostileTrap::default();
        assert_eq!(guest.apply(META, b"print hello"), Ok(b"printed".to_vec()));
        assert_eq!(guest.query(b"print hello there"), Ok(b"printed".to_vec()));
        assert_eq!(guest.counter, Counter::new(0));
    }

    #[test]
    fn t10_trap_changes_state_then_panics() {
        // Natively the panic unwinds (only the wasm build aborts), which lets
        // the test see the state the host must throw away.
        let mut guest = HostileTrap::default();
        let outcome = catch_unwind(AssertUnwindSafe(|| guest.apply(META, b"trap")));
        assert!(outcome.is_err(), "trap must panic");
        assert_eq!(guest.counter, Counter::new(CORRUPTION_DELTA));
        let outcome = catch_unwind(AssertUnwindSafe(|| guest.query(b"trap")));
        assert!(outcome.is_err(), "query trap must panic");
    }
}
