//! The counter state machine: one `i64`, changed by text commands.
//!
//! This is plain Rust with no component-model code, so it is unit-tested
//! natively and shared by the `counter` guest and the hostile test guests
//! (which must behave exactly like the counter until they misbehave).
//!
//! # Grammar
//!
//! Commands and requests are UTF-8 text; surrounding whitespace is ignored and
//! words are separated by whitespace. `N` is a decimal `i64` (optional sign).
//!
//! | command  | effect                    | result              |
//! |----------|---------------------------|---------------------|
//! | `add N`  | value += N                | the new value       |
//! | `sub N`  | value -= N                | the new value       |
//! | `set N`  | value  = N                | the new value       |
//! | `reset`  | value  = 0                | `0`                 |
//! | `get`    | none                      | the current value   |
//!
//! Overflow, unknown commands and malformed numbers are errors and leave the
//! value unchanged. Queries accept `get` or an empty request.
//!
//! # Snapshot format
//!
//! Nine bytes: [`SNAPSHOT_VERSION`], then the value as 8 little-endian bytes.

use std::fmt;

/// The first byte of every snapshot; bump it when the format changes and keep
/// decoding the old one.
pub const SNAPSHOT_VERSION: u8 = 1;

/// Length of a version-1 snapshot: version byte plus an `i64`.
pub const SNAPSHOT_LEN_BYTES: usize = 1 + size_of::<i64>();

const COMMANDS_HELP: &str =
    "expected one of: `add <i64>`, `sub <i64>`, `set <i64>`, `reset`, `get`";
const QUERIES_HELP: &str = "expected `get` (or an empty request)";

/// A parsed counter command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// `add N`
    Add(i64),
    /// `sub N`
    Sub(i64),
    /// `set N`
    Set(i64),
    /// `reset`
    Reset,
    /// `get`: read the value through the log (a linearizable read).
    Get,
}

impl Command {
    /// Parse a command from its text form.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut words = text.split_whitespace();
        let verb = words.next().unwrap_or_default();
        let command = match verb {
            "add" => Self::Add(number(verb, words.next())?),
            "sub" => Self::Sub(number(verb, words.next())?),
            "set" => Self::Set(number(verb, words.next())?),
            "reset" => Self::Reset,
            "get" => Self::Get,
            "" => return Err(format!("empty command; {COMMANDS_HELP}")),
            unknown => return Err(format!("unknown command `{unknown}`; {COMMANDS_HELP}")),
        };
        match words.next() {
            None => Ok(command),
            Some(extra) => Err(format!(
                "unexpected `{extra}` after `{verb}`; {COMMANDS_HELP}"
            )),
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Add(n) => write!(f, "add {n}"),
            Self::Sub(n) => write!(f, "sub {n}"),
            Self::Set(n) => write!(f, "set {n}"),
            Self::Reset => f.write_str("reset"),
            Self::Get => f.write_str("get"),
        }
    }
}

fn number(verb: &str, word: Option<&str>) -> Result<i64, String> {
    let word = word.ok_or_else(|| format!("`{verb}` needs a number: `{verb} <i64>`"))?;
    word.parse()
        .map_err(|error| format!("`{word}` is not an i64 ({error}): `{verb} <i64>`"))
}

/// Decode a command or request as trimmed UTF-8 text.
///
/// Public so that guests extending the counter parse their extra commands
/// exactly like the counter does.
pub fn command_text(bytes: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(bytes)
        .map(str::trim)
        .map_err(|error| format!("command is not UTF-8 text: {error}"))
}

/// The counter's state.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counter {
    value: i64,
}

impl Counter {
    /// A counter holding `value`.
    pub const fn new(value: i64) -> Self {
        Self { value }
    }

    /// The current value.
    pub const fn value(&self) -> i64 {
        self.value
    }

    /// Apply a command given as bytes; returns the new value as decimal text.
    pub fn apply(&mut self, command: &[u8]) -> Result<Vec<u8>, String> {
        let command = Command::parse(command_text(command)?)?;
        let value = self.execute(command)?;
        Ok(value.to_string().into_bytes())
    }

    /// Execute a parsed command and return the new value. On `Err` the
    /// counter is unchanged.
    pub fn execute(&mut self, command: Command) -> Result<i64, String> {
        let value = match command {
            Command::Add(n) => self.value.checked_add(n),
            Command::Sub(n) => self.value.checked_sub(n),
            Command::Set(n) => Some(n),
            Command::Reset => Some(0),
            Command::Get => Some(self.value),
        }
        .ok_or_else(|| format!("`{command}` overflows the counter (value {})", self.value))?;
        self.value = value;
        Ok(value)
    }

    /// Add `delta`, wrapping around on overflow, so the value always changes
    /// for a non-zero `delta`. For the hostile guests, which must visibly
    /// corrupt the state before they misbehave.
    pub fn wrapping_add(&mut self, delta: i64) {
        self.value = self.value.wrapping_add(delta);
    }

    /// Answer a read-only request: `get` or empty returns the value.
    pub fn query(&self, request: &[u8]) -> Result<Vec<u8>, String> {
        match command_text(request)? {
            "" | "get" => Ok(self.value.to_string().into_bytes()),
            unknown => Err(format!("unknown query `{unknown}`; {QUERIES_HELP}")),
        }
    }

    /// Serialize: version byte, then the value little-endian.
    pub fn snapshot(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(SNAPSHOT_LEN_BYTES);
        bytes.push(SNAPSHOT_VERSION);
        bytes.extend_from_slice(&self.value.to_le_bytes());
        bytes
    }

    /// Deserialize a snapshot, rejecting anything that [`snapshot`](Self::snapshot)
    /// could not have produced.
    pub fn restore(snapshot: &[u8]) -> Result<Self, String> {
        let (&version, value) = snapshot.split_first().ok_or("empty counter snapshot")?;
        if version != SNAPSHOT_VERSION {
            return Err(format!(
                "unsupported counter snapshot version {version} (this guest reads version {SNAPSHOT_VERSION})"
            ));
        }
        let value = <[u8; 8]>::try_from(value).map_err(|_| {
            format!(
                "counter snapshot is {} bytes, expected {SNAPSHOT_LEN_BYTES}",
                snapshot.len()
            )
        })?;
        Ok(Self::new(i64::from_le_bytes(value)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(counter: &mut Counter, command: &str) -> Result<String, String> {
        counter
            .apply(command.as_bytes())
            .map(|bytes| String::from_utf8(bytes).expect("results are UTF-8"))
    }

    #[test]
    fn t10_parse_commands() {
        assert_eq!(Command::parse("add 5"), Ok(Command::Add(5)));
        assert_eq!(Command::parse("  sub   -7 \n"), Ok(Command::Sub(-7)));
        assert_eq!(Command::parse("set +42"), Ok(Command::Set(42)));
        assert_eq!(Command::parse("reset"), Ok(Command::Reset));
        assert_eq!(Command::parse("get"), Ok(Command::Get));
        assert_eq!(
            Command::parse(&format!("set {}", i64::MIN)),
            Ok(Command::Set(i64::MIN))
        );
    }

    #[test]
    fn t10_parse_rejects_with_help() {
        for bad in [
            "",
            "   ",
            "mul 2",
            "ADD 1",
            "add",
            "add x",
            "add 1.5",
            "add 1 2",
            "reset now",
            "add 9223372036854775808",
        ] {
            let error = Command::parse(bad).expect_err(bad);
            assert!(error.contains('`'), "{bad:?}: {error}");
        }
        let unknown = Command::parse("mul 2").expect_err("unknown verb");
        assert!(unknown.contains("add <i64>") && unknown.contains("reset"));
    }

    #[test]
    fn t10_apply_returns_new_value() {
        let mut counter = Counter::default();
        assert_eq!(apply(&mut counter, "add 10"), Ok("10".to_owned()));
        assert_eq!(apply(&mut counter, "sub 3"), Ok("7".to_owned()));
        assert_eq!(apply(&mut counter, "get"), Ok("7".to_owned()));
        assert_eq!(apply(&mut counter, "set -4"), Ok("-4".to_owned()));
        assert_eq!(apply(&mut counter, "reset"), Ok("0".to_owned()));
        assert_eq!(counter.value(), 0);
    }

    #[test]
    fn t10_errors_leave_state_unchanged() {
        let mut counter = Counter::new(i64::MAX - 1);
        assert!(apply(&mut counter, "add 2").is_err());
        assert!(apply(&mut counter, "bogus").is_err());
        assert!(counter.apply(&[0xff, 0xfe]).is_err());
        assert_eq!(counter.value(), i64::MAX - 1);

        let mut counter = Counter::new(i64::MIN);
        assert!(apply(&mut counter, "sub 1").is_err());
        assert!(apply(&mut counter, &format!("add {}", i64::MIN)).is_err());
        assert_eq!(counter.value(), i64::MIN);
    }

    #[test]
    fn t10_query() {
        let counter = Counter::new(-12);
        assert_eq!(counter.query(b"get"), Ok(b"-12".to_vec()));
        assert_eq!(counter.query(b""), Ok(b"-12".to_vec()));
        assert_eq!(counter.query(b" get\n"), Ok(b"-12".to_vec()));
        assert!(counter.query(b"add 1").is_err());
        assert!(counter.query(b"get 1").is_err());
    }

    #[test]
    fn t10_wrapping_add_always_changes() {
        let mut counter = Counter::new(i64::MAX);
        counter.wrapping_add(1000);
        assert_eq!(counter.value(), i64::MIN + 999);
    }

    #[test]
    fn t20_snapshot_round_trips() {
        for value in [0, 1, -1, 1000, i64::MAX, i64::MIN] {
            let counter = Counter::new(value);
            let bytes = counter.snapshot();
            assert_eq!(bytes.len(), SNAPSHOT_LEN_BYTES);
            assert_eq!(bytes[0], SNAPSHOT_VERSION);
            let restored = Counter::restore(&bytes).expect("own snapshot");
            assert_eq!(restored, counter);
            assert_eq!(restored.snapshot(), bytes);
        }
    }

    #[test]
    fn t20_snapshot_is_little_endian() {
        assert_eq!(
            Counter::new(0x0102).snapshot(),
            [1, 0x02, 0x01, 0, 0, 0, 0, 0, 0]
        );
    }

    #[test]
    fn t20_restore_rejects_garbage() {
        let good = Counter::new(7).snapshot();
        let mut wrong_version = good.clone();
        wrong_version[0] = 2;
        let mut too_long = good.clone();
        too_long.push(0);
        for bad in [
            Vec::new(),
            vec![SNAPSHOT_VERSION],
            good[..SNAPSHOT_LEN_BYTES - 1].to_vec(),
            too_long,
            wrong_version,
            vec![0; SNAPSHOT_LEN_BYTES],
        ] {
            assert!(Counter::restore(&bad).is_err(), "{bad:?}");
        }
    }
}
