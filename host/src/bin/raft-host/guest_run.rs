//! `raft-host guest run GUEST.wasm`: commands against a guest on this
//! machine, without a cluster, for fast iteration on a guest's logic.
//!
//! Each line is a step of a `guest check` script (`apply CMD`, `query
//! REQ`, `apply-base64 B64`, `query-base64 B64`) or `state`, which prints
//! the whole state (a 0.1.0 guest's snapshot, a store-backed guest's
//! pairs). Commands are applied as committed entries would be (index,
//! term and leader timestamp from their position, as `guest check` does);
//! a store-backed guest runs over an in-memory store. After each step the
//! result, the fuel used and the state's size (for a store-backed guest,
//! the keys the step wrote) are printed. The lines come from `--script
//! FILE`, from stdin piped in (`--script -` or no `--script`), or from a
//! prompt when stdin is a terminal.

use std::io::{BufRead as _, IsTerminal as _, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;

use crate::output::Format;
use base64::Engine as _;
use iroh_raft::limits::MAX_SCRIPT_BYTES;
use iroh_raft::wasm::conformance::script::{self, Step};
use iroh_raft::wasm::conformance::{ScriptMachine, empty_store, entry_for, store_contents};
use iroh_raft::wasm::kv::Pairs;
use iroh_raft::wasm::{
    GuestFailure, GuestLimits, GuestMachine, GuestWorld, StateMachine, StoreMachine, WasmEngine,
};
use iroh_raft_client::Output;

/// Most bytes of a state, or of a result, printed (the rest is counted,
/// not shown): a terminal is not a hex dump tool.
const MAX_SHOWN_BYTES: usize = 4 * 1024;

/// Most pairs of a store printed by `state`.
const MAX_SHOWN_KEYS: usize = 100;

/// Most keys listed as written by one step.
const MAX_LISTED_WRITES: usize = 8;

/// Above this many keys in the store, a step's writes are not listed:
/// finding them compares the whole store before and after the step.
const MAX_DIFFED_KEYS: u64 = 10_000;

/// One line of a run: a script step, or `state`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    Step(Step),
    State,
}

/// Parse one line (`None`: blank or a comment).
pub fn parse_line(line: &str) -> Result<Option<Line>, String> {
    let trimmed = line.trim();
    if trimmed.is_empty() || trimmed.starts_with('#') {
        return Ok(None);
    }
    if trimmed == "state" {
        return Ok(Some(Line::State));
    }
    match script::parse(line) {
        Ok(mut steps) if steps.len() == 1 => Ok(steps.pop().map(Line::Step)),
        Ok(_) => Err("expected one step".into()),
        // The parser numbers lines from its own input, here always 1.
        Err(error) => Err(error
            .to_string()
            .trim_start_matches("line 1: ")
            .replace("expected `apply`", "expected `state`, `apply`")),
    }
}

/// Parse a whole script, naming the first bad line.
fn parse_script(text: &str, source: &str) -> anyhow::Result<Vec<Line>> {
    let mut lines = Vec::new();
    for (number, line) in text.lines().enumerate() {
        match parse_line(line) {
            Ok(Some(parsed)) => lines.push(parsed),
            Ok(None) => {}
            Err(reason) => anyhow::bail!("{source} line {}: {reason}", number + 1),
        }
    }
    anyhow::ensure!(!lines.is_empty(), "{source} has no steps");
    Ok(lines)
}

/// A script file, or stdin for `-`, of at most [`MAX_SCRIPT_BYTES`].
fn read_script(path: &Path) -> anyhow::Result<String> {
    let mut text = String::new();
    let source: Box<dyn std::io::Read> = if path == Path::new("-") {
        Box::new(std::io::stdin())
    } else {
        Box::new(
            std::fs::File::open(path)
                .with_context(|| format!("cannot read the script {}", path.display()))?,
        )
    };
    source
        .take(MAX_SCRIPT_BYTES + 1)
        .read_to_string(&mut text)
        .with_context(|| format!("cannot read the script {}", path.display()))?;
    anyhow::ensure!(
        text.len() as u64 <= MAX_SCRIPT_BYTES,
        "the script {} is larger than the limit of {MAX_SCRIPT_BYTES} bytes",
        path.display()
    );
    Ok(text)
}

/// The guest being run, where the next entry goes, and how to print.
struct Session {
    machine: GuestMachine,
    applied: u64,
    /// `json`: one JSON object a line (the guest, then one per step);
    /// `text` and `table`: lines for people.
    format: Format,
}

/// Print one JSON object as a line.
fn json_line(value: &serde_json::Value) {
    say!("{value}");
}

pub fn run(
    path: &Path,
    script: Option<PathBuf>,
    limits: GuestLimits,
    format: Format,
) -> anyhow::Result<ExitCode> {
    let engine = WasmEngine::new(None)?;
    let (loaded, _) = engine
        .load_file(path)
        .with_context(|| format!("loading {}", path.display()))?;
    let machine = match loaded.world() {
        GuestWorld::Memory => GuestMachine::from(StateMachine::new(loaded, limits)?),
        GuestWorld::Store => GuestMachine::from(StoreMachine::new(loaded, limits, empty_store())?),
    };
    let info = machine.info().clone();
    let mut session = Session {
        machine,
        applied: 0,
        format,
    };
    let examples: Vec<String> = session
        .machine
        .component()
        .examples
        .iter()
        .map(|example| example.replacen("propose", "apply", 1))
        .collect();
    if format == Format::Json {
        json_line(&serde_json::json!({
            "guest": {
                "name": info.name,
                "version": info.version,
                "world": session.machine.world().to_string(),
                "examples": examples,
            }
        }));
    } else {
        let world = match session.machine.world() {
            GuestWorld::Memory => "0.1.0, state in its memory",
            GuestWorld::Store => "0.2.0, state in an in-memory store",
        };
        say!("guest {} {} ({world})", info.name, info.version);
        for example in &examples {
            say!("  example: {example}");
        }
    }

    let interactive = script.is_none() && std::io::stdin().is_terminal();
    if interactive {
        return repl(&mut session);
    }
    let script = script.unwrap_or_else(|| PathBuf::from("-"));
    let text = read_script(&script)?;
    let lines = parse_script(&text, &script.display().to_string())?;
    for line in &lines {
        session.run_line(line)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Read lines at a prompt until end of input; a bad line is reported and
/// skipped.
fn repl(session: &mut Session) -> anyhow::Result<ExitCode> {
    if session.format != Format::Json {
        say!(
            "lines: apply CMD | query REQ | apply-base64 B64 | query-base64 B64 | state (Ctrl-D \
             ends)"
        );
    }
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    loop {
        print!("> ");
        let _ = std::io::stdout().flush();
        let mut line = String::new();
        if input.read_line(&mut line)? == 0 {
            say!("");
            return Ok(ExitCode::SUCCESS);
        }
        match parse_line(&line) {
            Ok(Some(parsed)) => session.run_line(&parsed)?,
            Ok(None) => {}
            Err(reason) if session.format == Format::Json => {
                json_line(&serde_json::json!({ "error": reason }));
            }
            Err(reason) => say!("error: {reason}"),
        }
    }
}

impl Session {
    fn run_line(&mut self, line: &Line) -> anyhow::Result<()> {
        match line {
            Line::State => self.print_state(),
            Line::Step(step) => self.run_step(step),
        }
    }

    fn run_step(&mut self, step: &Step) -> anyhow::Result<()> {
        let before = self.pairs_to_diff()?;
        let (result, fuel) = match step {
            Step::Apply(command) => {
                let outcome = run_apply(&mut self.machine, entry_for(self.applied), command)?;
                self.applied += 1;
                (outcome.0, outcome.1)
            }
            Step::Query(request) => run_query(&mut self.machine, request)?,
        };
        let state = match &mut self.machine {
            GuestMachine::Memory(machine) => StepState::Memory(
                machine
                    .snapshot()
                    .map(|snapshot| snapshot.len() as u64)
                    .map_err(|error| error.to_string()),
            ),
            GuestMachine::Store(machine) => {
                let size = machine.state().size()?;
                let writes = match (before, self.pairs_to_diff()?) {
                    (Some(before), Some(after)) => Some(written(&before, &after)),
                    _ => None,
                };
                StepState::Store {
                    keys: size.keys,
                    bytes: size.bytes,
                    writes,
                }
            }
        };
        if self.format == Format::Json {
            json_line(&step_json(step, &result, fuel, &state));
            return Ok(());
        }
        say!("{}", step.describe());
        match &result {
            Ok(bytes) => say!("  ok: {}", shown(bytes)),
            Err(failure) => say!("  error: {failure}"),
        }
        let state = match state {
            StepState::Memory(Ok(bytes)) => format!("state {bytes} bytes"),
            StepState::Memory(Err(error)) => format!("state unavailable ({error})"),
            StepState::Store {
                keys,
                bytes,
                writes,
            } => {
                let writes = match writes {
                    Some(writes) => writes.to_text(),
                    None => format!("; writes not listed (over {MAX_DIFFED_KEYS} keys)"),
                };
                format!("store {keys} keys, {bytes} bytes{writes}")
            }
        };
        say!("  fuel {fuel}, {state}");
        Ok(())
    }

    /// A store-backed guest's pairs, to find a step's writes; `None` when
    /// there are more than [`MAX_DIFFED_KEYS`].
    fn pairs_to_diff(&self) -> anyhow::Result<Option<Pairs>> {
        match &self.machine {
            GuestMachine::Store(machine) if machine.state().size()?.keys > MAX_DIFFED_KEYS => {
                Ok(None)
            }
            _ => self.store_pairs().map(Some),
        }
    }

    /// A store-backed guest's pairs (nothing for a 0.1.0 guest).
    fn store_pairs(&self) -> anyhow::Result<Pairs> {
        match &self.machine {
            GuestMachine::Memory(_) => Ok(Vec::new()),
            GuestMachine::Store(machine) => Ok(store_contents(machine.state().as_ref())?),
        }
    }

    fn print_state(&mut self) -> anyhow::Result<()> {
        if self.format == Format::Json {
            let state = match &mut self.machine {
                GuestMachine::Memory(machine) => match machine.snapshot() {
                    Ok(snapshot) => {
                        serde_json::json!({ "snapshot": Output::from_bytes(&snapshot) })
                    }
                    Err(error) => serde_json::json!({ "error": error.to_string() }),
                },
                GuestMachine::Store(machine) => {
                    let state = machine.state();
                    let keys = state.size()?.keys;
                    let mut pairs = Vec::new();
                    for pair in state.scan(b"", None).take(MAX_SHOWN_KEYS) {
                        let (key, value) = pair?;
                        pairs.push(serde_json::json!({
                            "key": Output::from_bytes(&key),
                            "value": Output::from_bytes(&value),
                        }));
                    }
                    serde_json::json!({ "keys": keys, "pairs": pairs })
                }
            };
            json_line(&serde_json::json!({ "state": state }));
            return Ok(());
        }
        say!("state");
        match &mut self.machine {
            GuestMachine::Memory(machine) => match machine.snapshot() {
                Ok(snapshot) => say!("  snapshot, {} bytes: {}", snapshot.len(), shown(&snapshot)),
                Err(error) => say!("  error: {error}"),
            },
            GuestMachine::Store(machine) => {
                let state = machine.state();
                let keys = state.size()?.keys;
                say!("  {keys} keys");
                for pair in state.scan(b"", None).take(MAX_SHOWN_KEYS) {
                    let (key, value) = pair?;
                    say!("  {} = {}", shown(&key), shown(&value));
                }
                if keys > MAX_SHOWN_KEYS as u64 {
                    say!("  ... and {} more", keys - MAX_SHOWN_KEYS as u64);
                }
            }
        }
        Ok(())
    }
}

/// The state after a step.
enum StepState {
    /// A 0.1.0 guest: its snapshot's size (or why it has none).
    Memory(Result<u64, String>),
    /// A store-backed guest: the store's size and the keys the step
    /// changed (`None` over [`MAX_DIFFED_KEYS`]).
    Store {
        keys: u64,
        bytes: u64,
        writes: Option<Writes>,
    },
}

/// One step as a JSON object: `step`, `ok` (the result as text and
/// base64) or `error`, `fuel`, and the state (`state_bytes`, or `store`
/// with `keys`, `bytes` and the keys `wrote` and `deleted`).
fn step_json(
    step: &Step,
    result: &Result<Vec<u8>, GuestFailure>,
    fuel: u64,
    state: &StepState,
) -> serde_json::Value {
    let mut object = serde_json::json!({ "step": step.describe(), "fuel": fuel });
    match result {
        Ok(bytes) => object["ok"] = serde_json::json!(Output::from_bytes(bytes)),
        Err(failure) => object["error"] = serde_json::json!(failure.to_string()),
    }
    match state {
        StepState::Memory(Ok(bytes)) => object["state_bytes"] = serde_json::json!(bytes),
        StepState::Memory(Err(error)) => object["state_error"] = serde_json::json!(error),
        StepState::Store {
            keys,
            bytes,
            writes,
        } => {
            let mut store = serde_json::json!({ "keys": keys, "bytes": bytes });
            if let Some(writes) = writes {
                let keys = |list: &[Vec<u8>]| -> Vec<Output> {
                    list.iter().map(|key| Output::from_bytes(key)).collect()
                };
                store["wrote"] = serde_json::json!(keys(&writes.wrote));
                store["deleted"] = serde_json::json!(keys(&writes.deleted));
            }
            object["store"] = store;
        }
    }
    object
}

type StepOutcome = (Result<Vec<u8>, GuestFailure>, u64);

fn run_apply(
    machine: &mut GuestMachine,
    entry: iroh_raft::wasm::EntryContext,
    command: &[u8],
) -> anyhow::Result<StepOutcome> {
    let outcome = match machine {
        GuestMachine::Memory(m) => ScriptMachine::apply(m, entry, command)?,
        GuestMachine::Store(m) => ScriptMachine::apply(m, entry, command)?,
    };
    Ok((outcome.result, outcome.fuel_used))
}

fn run_query(machine: &mut GuestMachine, request: &[u8]) -> anyhow::Result<StepOutcome> {
    Ok(match machine {
        GuestMachine::Memory(m) => ScriptMachine::query(m, request)?,
        GuestMachine::Store(m) => ScriptMachine::query(m, request)?,
    })
}

/// Text as it is, anything else as `base64:...`; cut at
/// [`MAX_SHOWN_BYTES`].
fn shown(bytes: &[u8]) -> String {
    let cut = &bytes[..bytes.len().min(MAX_SHOWN_BYTES)];
    let mut text = match std::str::from_utf8(cut) {
        Ok(text) if !text.chars().any(|c| c.is_control() && c != '\n') => {
            format!("{text:?}")
        }
        _ => format!(
            "base64:{}",
            base64::engine::general_purpose::STANDARD.encode(cut)
        ),
    };
    if cut.len() < bytes.len() {
        text.push_str(&format!(" ... ({} bytes)", bytes.len()));
    }
    text
}

/// The keys a step changed.
#[derive(Debug, Default, PartialEq, Eq)]
struct Writes {
    wrote: Vec<Vec<u8>>,
    deleted: Vec<Vec<u8>>,
}

impl Writes {
    /// `; wrote a, b; deleted c` (at most [`MAX_LISTED_WRITES`] of each).
    fn to_text(&self) -> String {
        let list = |keys: &[Vec<u8>]| {
            let mut text: Vec<String> = keys
                .iter()
                .take(MAX_LISTED_WRITES)
                .map(|k| shown(k))
                .collect();
            if keys.len() > MAX_LISTED_WRITES {
                text.push(format!("and {} more", keys.len() - MAX_LISTED_WRITES));
            }
            text.join(", ")
        };
        let mut text = String::new();
        if !self.wrote.is_empty() {
            text.push_str(&format!("; wrote {}", list(&self.wrote)));
        }
        if !self.deleted.is_empty() {
            text.push_str(&format!("; deleted {}", list(&self.deleted)));
        }
        text
    }
}

/// The keys that differ between two sorted lists of pairs.
fn written(before: &[(Vec<u8>, Vec<u8>)], after: &[(Vec<u8>, Vec<u8>)]) -> Writes {
    use std::collections::BTreeMap;
    let before: BTreeMap<&[u8], &[u8]> = before
        .iter()
        .map(|(k, v)| (k.as_slice(), v.as_slice()))
        .collect();
    let after_map: BTreeMap<&[u8], &[u8]> = after
        .iter()
        .map(|(k, v)| (k.as_slice(), v.as_slice()))
        .collect();
    Writes {
        wrote: after_map
            .iter()
            .filter(|(k, v)| before.get(*k) != Some(*v))
            .map(|(k, _)| k.to_vec())
            .collect(),
        deleted: before
            .keys()
            .filter(|k| !after_map.contains_key(*k))
            .map(|k| k.to_vec())
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_parse_like_a_check_script_plus_state() {
        assert_eq!(parse_line("  # hi"), Ok(None));
        assert_eq!(parse_line("state"), Ok(Some(Line::State)));
        assert_eq!(
            parse_line("apply put a 1"),
            Ok(Some(Line::Step(Step::Apply(b"put a 1".to_vec()))))
        );
        let error = parse_line("propose x").expect_err("unknown verb");
        assert!(error.starts_with("expected `state`, `apply`"), "{error}");
        let error = parse_script("apply a\nfrob\n", "s.txt").expect_err("bad line");
        assert_eq!(error.to_string().split(':').next(), Some("s.txt line 2"));
    }

    #[test]
    fn writes_are_listed_by_key() {
        let before = vec![
            (b"a".to_vec(), b"1".to_vec()),
            (b"b".to_vec(), b"2".to_vec()),
        ];
        let after = vec![
            (b"a".to_vec(), b"9".to_vec()),
            (b"c".to_vec(), b"3".to_vec()),
        ];
        let writes = written(&before, &after);
        assert_eq!(
            writes,
            Writes {
                wrote: vec![b"a".to_vec(), b"c".to_vec()],
                deleted: vec![b"b".to_vec()],
            }
        );
        assert_eq!(writes.to_text(), "; wrote \"a\", \"c\"; deleted \"b\"");
        assert_eq!(shown(&[0xff]), "base64:/w==");
    }
}
