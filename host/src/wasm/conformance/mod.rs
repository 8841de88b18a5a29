//! The guest conformance checker behind `raft-host guest check GUEST.wasm`.
//!
//! It loads a component the way a node does ([`WasmEngine::compile`] and
//! [`WasmEngine::link`], which together are [`WasmEngine::load`], then
//! [`StateMachine::new`] or [`StoreMachine::new`]) and checks what of the
//! contract of its world can be checked from outside. The exports decide
//! the world (reported as [`Report::world`]): `wit/state-machine.wit`
//! (0.1.0, state in the guest's memory) or `wit/v0.2.0` (store-backed, state
//! in the host's store).
//!
//! ```text
//!  component ─► imports ─► exports ─► start-up ─► info
//!      │ a failure here skips everything to its right
//!      ├─ 0.1.0 ─► round trip (fresh)
//!      │    script run A (snapshot around every step) ── errors / queries leave state alone
//!      │    script run B (same inputs, fresh instance) ── identical results and snapshot
//!      │    round trip after the script; restore mid-script carries the whole state;
//!      │    garbage snapshot; fuel and memory headroom
//!      └─ 0.2.0 ─► (over an in-memory store: an overlay on the empty state)
//!           script run A (store digest around every step) ── errors / queries leave it alone
//!           script run B (fresh store and instance) ── identical results and store contents
//!           migrate from itself; fuel and memory headroom
//!           (the snapshot checks do not apply: the host moves the store)
//! ```
//!
//! The checker reports; it never changes anything but its own temporary
//! instances and stores (and the compile cache, if given one). Each check
//! ends as passed, warning (works, but worth a look), failed, skipped
//! because an earlier failure made it meaningless, or not applicable to the
//! guest's world. Any failure fails the whole check.

mod behaviour;
pub mod imports;
mod report;
pub mod script;
mod startup;
mod store;

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

pub use self::imports::ImportVerdict;
pub use self::report::{Check, Measurements, Outcome, Report, Spread};
pub use self::script::{Step, default_script};
pub use self::store::{empty_store, store_contents};

use super::engine::{LoadedComponent, WasmEngine};
use super::error::{GuestFailure, WasmError};
use super::limits::GuestLimits;
use super::machine::GuestMachine;
use super::state_machine::{ApplyOutcome, StateMachine};
use super::store_machine::StoreMachine;
use super::wasi::EntryContext;

/// Leader timestamp of the first scripted entry (2026-01-01T00:00:00Z);
/// each further step is one second later.
const SCRIPT_START_TIMESTAMP_MS: u64 = 1_767_225_600_000;

/// Bytes that are no guest's snapshot, for the garbage-restore check.
const GARBAGE_SNAPSHOT: &[u8] = b"\xffthis is not a snapshot of any guest\x00\x01\x02";

/// Above this share of the `apply` fuel budget the checker warns: a command
/// that needs more is one larger input away from running out.
const FUEL_WARNING_PERCENT: u64 = 10;

/// Above this share of the memory cap (or of the maintenance fuel at
/// start-up) the checker warns.
const MEMORY_WARNING_PERCENT: u64 = 50;

/// Most individual problems listed in one check's detail.
const MAX_LISTED_PROBLEMS: usize = 5;

/// How to run a check.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// The limits the guest runs under (use the cluster's).
    pub limits: GuestLimits,
    /// The steps to run (see [`script`]).
    pub script: Vec<Step>,
    /// Where compiled components are cached (a node uses
    /// `<data-dir>/component-cache`); `None` compiles every time.
    pub cache_dir: Option<PathBuf>,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            limits: GuestLimits::default(),
            script: default_script(),
            cache_dir: None,
        }
    }
}

/// What one step of a script produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StepResult {
    /// The step, as text (see [`Step::describe`]).
    pub step: String,
    /// Its result.
    pub result: Result<Vec<u8>, GuestFailure>,
    /// Fuel it used.
    pub fuel_used: u64,
}

/// Check the component in the file at `path`.
pub fn check_file(path: &Path, options: &CheckOptions) -> Report {
    let mut report = Report::new(path.display().to_string());
    match WasmEngine::read_component_file(path) {
        Ok(bytes) => run(&mut report, &bytes, options),
        Err(error) => report.push(Check::fail("component", error.to_string())),
    }
    report.skip_the_rest();
    report
}

/// Check a component given as bytes (`name` labels the report).
pub fn check_bytes(name: &str, bytes: &[u8], options: &CheckOptions) -> Report {
    let mut report = Report::new(name.to_string());
    run(&mut report, bytes, options);
    report.skip_the_rest();
    report
}

/// Every check in order; returns early (leaving the rest to be marked
/// skipped) when a failure makes the following checks meaningless.
fn run(report: &mut Report, bytes: &[u8], options: &CheckOptions) {
    let Some(loaded) = startup::load(report, bytes, options) else {
        return;
    };
    let limits = options.limits;
    match startup::start(report, &loaded, limits) {
        Some(GuestMachine::Memory(machine)) => run_memory(report, &loaded, options, machine),
        Some(GuestMachine::Store(_)) => store::run(report, &loaded, options),
        None => {}
    }
}

/// The checks of a 0.1.0 guest, after start-up.
fn run_memory(
    report: &mut Report,
    loaded: &LoadedComponent,
    options: &CheckOptions,
    mut machine: StateMachine,
) {
    let limits = options.limits;
    behaviour::round_trip(report, &mut machine, "round trip (fresh state)", 0);

    let script = &options.script;
    let Some(mut run_a) = behaviour::run_script_observed(report, loaded, limits, script) else {
        return;
    };
    behaviour::deterministic_replay(report, loaded, limits, script, &run_a);
    let index = u64::try_from(script.len()).unwrap_or(u64::MAX);
    behaviour::round_trip(
        report,
        &mut run_a.machine,
        "round trip (after the script)",
        index,
    );
    behaviour::restore_mid_script(report, loaded, limits, script);
    behaviour::garbage_snapshot(report, loaded, limits, &machine);
    behaviour::headroom(report, limits, run_a.machine.memory_bytes());
}

/// What a script runs on: a guest of either world, as its state machine.
pub trait ScriptMachine {
    /// Apply one committed command.
    fn apply(&mut self, entry: EntryContext, command: &[u8]) -> Result<ApplyOutcome, WasmError>;
    /// Run a read-only query; its result and the fuel it used.
    fn query(&mut self, request: &[u8]) -> Result<(Result<Vec<u8>, GuestFailure>, u64), WasmError>;
}

impl ScriptMachine for StateMachine {
    fn apply(&mut self, entry: EntryContext, command: &[u8]) -> Result<ApplyOutcome, WasmError> {
        StateMachine::apply(self, entry, command)
    }
    fn query(&mut self, request: &[u8]) -> Result<(Result<Vec<u8>, GuestFailure>, u64), WasmError> {
        StateMachine::query(self, request)
    }
}

impl ScriptMachine for StoreMachine {
    /// Each step is flushed to the store at once (a node flushes per batch
    /// of entries), so the checker sees the store after every step.
    fn apply(&mut self, entry: EntryContext, command: &[u8]) -> Result<ApplyOutcome, WasmError> {
        let outcome = StoreMachine::apply(self, entry, command)?;
        self.flush()?;
        Ok(outcome)
    }
    fn query(&mut self, request: &[u8]) -> Result<(Result<Vec<u8>, GuestFailure>, u64), WasmError> {
        StoreMachine::query(self, request)
    }
}

/// Apply and query `script` on `machine` from the start, with entries as a
/// node would number them. Also used by the cross-language tests.
pub fn run_steps(
    machine: &mut impl ScriptMachine,
    script: &[Step],
) -> Result<Vec<StepResult>, WasmError> {
    script
        .iter()
        .enumerate()
        .map(|(position, step)| execute(machine, position, step))
        .collect()
}

/// The entry a script step at `position` is applied as.
pub fn entry_for(position: u64) -> EntryContext {
    EntryContext {
        index: position + 1,
        term: 1,
        timestamp_ms: SCRIPT_START_TIMESTAMP_MS + position * 1000,
    }
}

pub(super) fn execute(
    machine: &mut impl ScriptMachine,
    position: usize,
    step: &Step,
) -> Result<StepResult, WasmError> {
    let (result, fuel_used) = match step {
        Step::Apply(command) => {
            let outcome = machine.apply(entry_for(position as u64), command)?;
            (outcome.result, outcome.fuel_used)
        }
        Step::Query(request) => machine.query(request)?,
    };
    Ok(StepResult {
        step: step.describe(),
        result,
        fuel_used,
    })
}

pub(super) fn first_difference(a: &[u8], b: &[u8]) -> String {
    match a.iter().zip(b).position(|(x, y)| x != y) {
        Some(at) => format!(" (first difference at byte {at})"),
        None => String::new(),
    }
}

pub(super) fn list(items: impl IntoIterator<Item = String>) -> String {
    let items: Vec<String> = items.into_iter().collect();
    let shown = items.len().min(MAX_LISTED_PROBLEMS);
    let mut text = items[..shown].join("; ");
    if items.len() > shown {
        text.push_str(&format!("; and {} more", items.len() - shown));
    }
    text
}

pub(super) fn millis(started: Instant) -> f64 {
    started.elapsed().as_secs_f64() * 1000.0
}

pub(super) fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}
