//! `hostile-mix`: a key-value store with one command per hostile behaviour.
//!
//! A test guest for running every kind of misbehaviour through a real
//! cluster (`tests/faults/t90_hostile_cluster.rs`): each one must end the
//! same way on every replica, leave the replicas' states identical, and
//! leave the nodes serving. The state is a `BTreeMap<String, String>`; what a probe
//! observed is written into it, so comparing the whole state across replicas
//! compares what each replica's WASI answered.
//!
//! Commands (`apply`):
//!
//! | command | what it does | result |
//! |---|---|---|
//! | `put K V` | sets `K` to `V` | `OK` |
//! | `trap-after-write K V` | sets `K`, then panics (a trap) | trap; the host must drop the write |
//! | `loop` | sets `loop`, then spins forever | out of fuel; rolled back |
//! | `grow` | sets `grow`, then allocates until the memory cap | memory limit; rolled back |
//! | `recurse N` | recursion N calls deep, records `recurse@I` | `N`, or a trap when too deep |
//! | `nan` | NaN from division, `sqrt`, `inf - inf`, a payload NaN, `f32`; records `nan@I` | the bit patterns, hex |
//! | `huge N` | records `huge@I`, returns N bytes | the bytes (`huge_byte(i)`) |
//! | `fail N` | returns an error of N control characters (U+0001) | `err`, or too large |
//! | `time` | reads the wall and monotonic clocks; records `time@I` | `wall_ms mono_ns elapsed_ns meta_ms` |
//! | `random` | reads WASI random, insecure random and the insecure seed; records `random@I` | hex |
//! | `env` | reads environment, arguments and working directory; records `env@I` | a summary |
//! | `file` | tries to read, list and write files, lists preopens; records `file@I` | a summary |
//!
//! (`I` is the entry's index.) Queries: `get K`, `dump` (every pair,
//! `K=V` per line, in key order), and the probes `loop`, `grow`,
//! `recurse N`, `nan`, `huge N`, `fail N`, `trap`, `time`, `random`, `env`,
//! `file`,
//! which answer like the commands without recording anything.

mod probe;
mod store;

use iroh_raft_guest::{EntryMeta, StateMachine};

use store::Store;

/// The largest `huge N` honoured: above the host's 16 MiB frame limit, below
/// its default 256 MiB memory cap, so a test can try both sides of the frame
/// limit without the memory cap interfering.
pub const MAX_HUGE_BYTES: usize = 64 * 1024 * 1024;

/// The byte at position `i` of a `huge` result: a pattern a receiver can
/// check without holding a second copy.
pub fn huge_byte(i: usize) -> u8 {
    b'a' + (i % 26) as u8
}

/// One parsed command or query.
#[derive(Debug, PartialEq, Eq)]
enum Command<'a> {
    Put(&'a str, &'a str),
    TrapAfterWrite(&'a str, &'a str),
    Get(&'a str),
    Dump,
    Loop,
    Grow,
    Trap,
    Recurse(u64),
    Nan,
    Huge(usize),
    Fail(usize),
    Time,
    Random,
    Env,
    File,
}

impl<'a> Command<'a> {
    fn parse(bytes: &'a [u8]) -> Result<Self, String> {
        let text = std::str::from_utf8(bytes)
            .map_err(|error| format!("not UTF-8 text: {error}"))?
            .trim();
        let (verb, rest) = text.split_once(' ').unwrap_or((text, ""));
        let rest = rest.trim();
        let key_value = || -> Result<(&'a str, &'a str), String> {
            rest.split_once(' ')
                .map(|(key, value)| (key, value.trim()))
                .filter(|(key, _)| !key.is_empty())
                .ok_or_else(|| format!("`{verb}` needs a key and a value"))
        };
        let number = || -> Result<u64, String> {
            rest.parse()
                .map_err(|_| format!("`{verb}` needs a number, got {rest:?}"))
        };
        Ok(match verb {
            "put" => {
                let (key, value) = key_value()?;
                Command::Put(key, value)
            }
            "trap-after-write" => {
                let (key, value) = key_value()?;
                Command::TrapAfterWrite(key, value)
            }
            "get" if !rest.is_empty() => Command::Get(rest),
            "dump" => Command::Dump,
            "loop" => Command::Loop,
            "grow" => Command::Grow,
            "trap" => Command::Trap,
            "recurse" => Command::Recurse(number()?),
            "nan" => Command::Nan,
            "huge" => {
                let len = usize::try_from(number()?).unwrap_or(usize::MAX);
                if len > MAX_HUGE_BYTES {
                    return Err(format!("`huge` is capped at {MAX_HUGE_BYTES} bytes"));
                }
                Command::Huge(len)
            }
            "fail" => {
                let len = usize::try_from(number()?).unwrap_or(usize::MAX);
                if len > MAX_HUGE_BYTES {
                    return Err(format!("`fail` is capped at {MAX_HUGE_BYTES} bytes"));
                }
                Command::Fail(len)
            }
            "time" => Command::Time,
            "random" => Command::Random,
            "env" => Command::Env,
            "file" => Command::File,
            _ => return Err(format!("unknown command {text:?}")),
        })
    }
}

/// The guest: a store, and the probes.
#[derive(Debug, Default)]
struct HostileMix {
    store: Store,
}

impl StateMachine for HostileMix {
    const NAME: &'static str = "hostile-mix";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    fn apply(&mut self, meta: EntryMeta, command: &[u8]) -> Result<Vec<u8>, String> {
        let command = Command::parse(command)?;
        // What a probe observed is recorded under `<probe>@<index>`.
        let mut record = |probe: &str, observed: &str| {
            self.store
                .put(format!("{probe}@{}", meta.index), observed.to_string());
        };
        let result = match command {
            Command::Put(key, value) => {
                self.store.put(key.to_string(), value.to_string());
                "OK".to_string()
            }
            Command::TrapAfterWrite(key, value) => {
                self.store.put(key.to_string(), value.to_string());
                panic!("hostile-mix: deliberate panic in `apply` after a write");
            }
            Command::Loop => {
                record("loop", "started");
                probe::spin_forever(meta.index)
            }
            Command::Grow => {
                record("grow", "started");
                probe::exhaust_memory()
            }
            Command::Huge(len) => {
                record("huge", &len.to_string());
                return Ok(probe::huge(len));
            }
            // No record: an `err` must leave the state as it was.
            Command::Fail(len) => return Err(probe::failure_message(len)),
            Command::Get(_) | Command::Dump | Command::Trap => {
                return Err("a query, not a command".to_string());
            }
            probe_command => {
                let (name, observed) = run_probe(&probe_command, meta.timestamp_ms);
                record(name, &observed);
                observed
            }
        };
        Ok(result.into_bytes())
    }

    fn query(&self, request: &[u8]) -> Result<Vec<u8>, String> {
        let text = match Command::parse(request)? {
            Command::Get(key) => self
                .store
                .get(key)
                .map(str::to_string)
                .ok_or_else(|| format!("no key {key:?}"))?,
            Command::Dump => self.store.dump(),
            Command::Loop => probe::spin_forever(0),
            Command::Grow => probe::exhaust_memory(),
            Command::Trap => panic!("hostile-mix: deliberate panic in `query`"),
            Command::Huge(len) => return Ok(probe::huge(len)),
            Command::Fail(len) => return Err(probe::failure_message(len)),
            Command::Put(..) | Command::TrapAfterWrite(..) => {
                return Err("a command, not a query".to_string());
            }
            // A query has no entry of its own; the clocks answer the last
            // applied entry's time, which the probe reports beside.
            probe_command => run_probe(&probe_command, 0).1,
        };
        Ok(text.into_bytes())
    }

    fn snapshot(&self) -> Result<Vec<u8>, String> {
        Ok(self.store.snapshot())
    }

    fn restore(snapshot: &[u8]) -> Result<Self, String> {
        Store::restore(snapshot).map(|store| Self { store })
    }
}

/// Run a probe that returns what it observed; `meta_ms` is the entry's
/// timestamp (0 for queries).
fn run_probe(command: &Command<'_>, meta_ms: u64) -> (&'static str, String) {
    match command {
        Command::Recurse(depth) => ("recurse", probe::recurse(*depth).to_string()),
        Command::Nan => ("nan", probe::nan_bits()),
        Command::Time => ("time", probe::time(meta_ms)),
        Command::Random => ("random", probe::random()),
        Command::Env => ("env", probe::env()),
        Command::File => ("file", probe::file()),
        other => unreachable!("{other:?} is not a probe"),
    }
}

iroh_raft_guest::export_state_machine!(HostileMix);

#[cfg(test)]
mod tests {
    use super::*;
    use std::panic::{AssertUnwindSafe, catch_unwind};

    const META: EntryMeta = EntryMeta {
        index: 7,
        term: 1,
        timestamp_ms: 1_700_000_000_000,
    };

    fn text(result: Result<Vec<u8>, String>) -> String {
        String::from_utf8(result.expect("ok")).expect("utf-8")
    }

    #[test]
    fn t10_parses_every_command() {
        assert_eq!(Command::parse(b"put a b c"), Ok(Command::Put("a", "b c")));
        assert_eq!(Command::parse(b" recurse 12 "), Ok(Command::Recurse(12)));
        assert_eq!(Command::parse(b"huge 3"), Ok(Command::Huge(3)));
        assert!(Command::parse(b"huge 999999999999").is_err());
        assert_eq!(Command::parse(b"fail 2"), Ok(Command::Fail(2)));
        assert!(Command::parse(b"put a").is_err());
        assert!(Command::parse(b"get").is_err());
        assert!(Command::parse(b"recurse x").is_err());
        assert!(Command::parse(&[0xff]).is_err());
    }

    #[test]
    fn t10_probes_are_recorded_under_their_index() {
        let mut guest = HostileMix::default();
        assert_eq!(text(guest.apply(META, b"put k v")), "OK");
        assert_eq!(text(guest.apply(META, b"recurse 100")), "100");
        assert_eq!(
            text(guest.apply(META, b"huge 28")),
            "abcdefghijklmnopqrstuvwxyzab"
        );
        assert_eq!(text(guest.query(b"get recurse@7")), "100");
        assert_eq!(
            text(guest.query(b"dump")),
            "huge@7=28\nk=v\nrecurse@7=100\n"
        );
        assert_eq!(guest.apply(META, b"fail 2"), Err("\u{1}\u{1}".to_string()));
        assert!(guest.apply(META, b"dump").is_err());
        assert!(guest.query(b"put a b").is_err());
    }

    #[test]
    fn t10_snapshot_round_trips() {
        let mut guest = HostileMix::default();
        guest.apply(META, b"put k v").expect("ok");
        guest
            .apply(META, b"put empty  ")
            .expect_err("needs a value");
        guest.apply(META, b"put x y z").expect("ok");
        let snapshot = guest.snapshot().expect("snapshot");
        let restored = HostileMix::restore(&snapshot).expect("restore");
        assert_eq!(restored.store, guest.store);
        assert!(HostileMix::restore(b"garbage").is_err());
    }

    #[test]
    fn t10_trap_after_write_writes_then_panics() {
        // Natively the panic unwinds (the wasm build aborts), so the test
        // sees the write the host must throw away.
        let mut guest = HostileMix::default();
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            guest.apply(META, b"trap-after-write k v")
        }));
        assert!(outcome.is_err(), "must panic");
        assert_eq!(guest.store.get("k"), Some("v"));
    }
}
