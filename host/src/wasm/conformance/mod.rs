//! The guest conformance checker behind `raft-host guest check GUEST.wasm`.
//!
//! It loads a component the way a node does ([`WasmEngine::compile`] and
//! [`WasmEngine::link`], which together are [`WasmEngine::load`], then
//! [`StateMachine::new`]) and checks what of the contract in
//! `wit/state-machine.wit` can be checked from outside:
//!
//! ```text
//!  component ─► imports ─► exports ─► start-up ─► info ─► round trip (fresh)
//!      │ a failure here skips everything to its right │
//!      ▼                                              ▼
//!  script run A (snapshot around every step) ── errors / queries leave state alone
//!  script run B (same inputs, fresh instance) ── identical results and snapshot
//!  round trip after the script; restore mid-script carries the whole state;
//!  garbage snapshot; fuel and memory headroom
//! ```
//!
//! The checker reports; it never changes anything but its own temporary
//! instances (and the compile cache, if given one). Each check ends as
//! passed, warning (works, but worth a look), failed, or skipped because an
//! earlier failure made it meaningless. Any failure fails the whole check.

pub mod imports;
mod report;
pub mod script;

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

pub use self::imports::ImportVerdict;
pub use self::report::{Check, Measurements, Outcome, Report, Spread};
pub use self::script::{Step, default_script};

use super::engine::{LoadedComponent, WasmEngine};
use super::error::{GuestFailure, WasmError};
use super::instance::GuestInstance;
use super::limits::GuestLimits;
use super::state_machine::StateMachine;
use super::wasi::EntryContext;

/// The export every guest must have.
pub const STATE_MACHINE_EXPORT: &str = "iroh-raft:state-machine/state-machine@0.1.0";

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
    let Some(loaded) = load(report, bytes, options) else {
        return;
    };
    let limits = options.limits;
    let Some(mut machine) = start(report, &loaded, limits) else {
        return;
    };
    round_trip(report, &mut machine, "round trip (fresh state)", 0);

    let script = &options.script;
    let Some(mut run_a) = run_script_observed(report, &loaded, limits, script) else {
        return;
    };
    deterministic_replay(report, &loaded, limits, script, &run_a);
    let index = u64::try_from(script.len()).unwrap_or(u64::MAX);
    round_trip(
        report,
        &mut run_a.machine,
        "round trip (after the script)",
        index,
    );
    restore_mid_script(report, &loaded, limits, script);
    garbage_snapshot(report, &loaded, limits, &machine);
    headroom(report, limits, &run_a);
}

/// Compile and link: the `component`, `imports` and `exports` checks.
fn load(report: &mut Report, bytes: &[u8], options: &CheckOptions) -> Option<LoadedComponent> {
    let engine = match WasmEngine::new(options.cache_dir.clone()) {
        Ok(engine) => engine,
        Err(error) => {
            report.push(Check::fail("component", error.to_string()));
            return None;
        }
    };
    let started = Instant::now();
    let compiled = match engine.compile(bytes) {
        Ok(compiled) => compiled,
        Err(error) => {
            report.push(Check::fail("component", error.to_string()));
            return None;
        }
    };
    let m = &mut report.measurements;
    m.size_bytes = Some(compiled.size_bytes);
    m.hash = Some(compiled.hash.to_hex());
    m.compile_ms = Some(millis(started));
    m.compiled_from_cache = Some(compiled.from_cache);
    report.push(Check::pass(
        "component",
        format!(
            "a WebAssembly component of {} (the limit is {}), {} in {:.0} ms",
            mib(compiled.size_bytes),
            mib(super::limits::MAX_COMPONENT_BYTES),
            if compiled.from_cache {
                "loaded from the compile cache"
            } else {
                "compiled"
            },
            millis(started)
        ),
    ));

    report.imports = compiled
        .import_names(&engine)
        .iter()
        .map(|name| imports::review(name))
        .collect();
    report.exports = compiled.export_names(&engine);
    let started = Instant::now();
    let linked = engine.link(&compiled);
    report.measurements.link_ms = Some(millis(started));

    let unserved: Vec<&ImportVerdict> = report.imports.iter().filter(|i| !i.served).collect();
    let imports_check = match (&linked, unserved.is_empty()) {
        (Err(WasmError::UnsupportedImport { reason }), _) => Check::fail(
            "imports",
            format!("the host cannot link the component: {reason}"),
        ),
        (_, false) => Check::fail(
            "imports",
            format!(
                "{} of {} imports are not served deterministically: {}",
                unserved.len(),
                report.imports.len(),
                list(unserved.iter().map(|i| format!("{} ({})", i.name, i.how)))
            ),
        ),
        (_, true) if report.imports.is_empty() => Check::pass(
            "imports",
            "none: the guest needs nothing from the host".into(),
        ),
        (_, true) => Check::pass(
            "imports",
            format!(
                "{} imports, all served deterministically by the host (listed below)",
                report.imports.len()
            ),
        ),
    };
    let imports_failed = imports_check.outcome == Outcome::Fail;
    report.push(imports_check);

    let exports_check = if !report.exports.iter().any(|e| e == STATE_MACHINE_EXPORT) {
        Check::fail(
            "exports",
            format!(
                "does not export {STATE_MACHINE_EXPORT} (exports: {})",
                if report.exports.is_empty() {
                    "nothing".to_string()
                } else {
                    report.exports.join(", ")
                }
            ),
        )
    } else {
        match &linked {
            Err(WasmError::InterfaceMismatch { reason }) => Check::fail(
                "exports",
                format!("exports {STATE_MACHINE_EXPORT} with the wrong shape: {reason}"),
            ),
            Err(_) => Check::skip("exports", "not checked: the component could not be linked"),
            Ok(_) => Check::pass(
                "exports",
                format!("exports {STATE_MACHINE_EXPORT} with the expected functions"),
            ),
        }
    };
    report.push(exports_check);
    match linked {
        Ok(loaded) if !imports_failed => Some(loaded),
        Ok(_) => None,
        Err(error) => {
            if !matches!(
                error,
                WasmError::UnsupportedImport { .. } | WasmError::InterfaceMismatch { .. }
            ) {
                report.push(Check::fail("link", error.to_string()));
            }
            None
        }
    }
}

/// Instantiate as a node does: the `start-up` and `info` checks.
fn start(
    report: &mut Report,
    loaded: &LoadedComponent,
    limits: GuestLimits,
) -> Option<StateMachine> {
    let started = Instant::now();
    let machine = match StateMachine::new(loaded.clone(), limits) {
        Ok(machine) => machine,
        Err(error) => {
            report.push(Check::fail("start-up", error.to_string()));
            return None;
        }
    };
    report.measurements.startup_ms = Some(millis(started));
    let info = machine.info().clone();
    report.guest = Some(report::GuestIdentity {
        name: info.name.clone(),
        version: info.version.clone(),
    });
    // One more instance, alone, for the cost of one instantiation (what a
    // rebuild after a trap and every restore pay).
    let started = Instant::now();
    let mut instance = match GuestInstance::new(loaded, &info.name, limits) {
        Ok(instance) => instance,
        Err(error) => {
            report.push(Check::fail("start-up", error.to_string()));
            return None;
        }
    };
    let m = &mut report.measurements;
    m.instantiate_ms = Some(millis(started));
    m.startup_fuel = Some(instance.startup_fuel_used());
    m.memory_after_startup_bytes = Some(instance.memory_bytes());
    report.push(Check::pass(
        "start-up",
        format!(
            "instantiates in {:.1} ms using {} fuel and {} of linear memory",
            millis(started),
            instance.startup_fuel_used(),
            mib(instance.memory_bytes())
        ),
    ));

    let info_check = match instance.info() {
        _ if info.name.is_empty() || info.version.is_empty() => Check::fail(
            "info",
            format!(
                "name {:?} and version {:?} must both be non-empty",
                info.name, info.version
            ),
        ),
        Ok(again) if again.name == info.name && again.version == info.version => Check::pass(
            "info",
            format!(
                "{} {}, the same from every instance",
                info.name, info.version
            ),
        ),
        Ok(again) => Check::fail(
            "info",
            format!(
                "differs between instances: {} {} vs {} {}",
                info.name, info.version, again.name, again.version
            ),
        ),
        Err(failure) => Check::fail("info", format!("a second instance failed: {failure}")),
    };
    report.push(info_check);
    Some(machine)
}

/// snapshot → restore → snapshot gives identical bytes.
fn round_trip(report: &mut Report, machine: &mut StateMachine, name: &'static str, index: u64) {
    let entry = entry_for(index);
    let started = Instant::now();
    let first = match machine.snapshot() {
        Ok(bytes) => bytes,
        Err(error) => return report.push(Check::fail(name, error.to_string())),
    };
    let snapshot_ms = millis(started);
    let started = Instant::now();
    if let Err(error) = machine.restore(entry, &first) {
        return report.push(Check::fail(name, error.to_string()));
    }
    let restore_ms = millis(started);
    let second = match machine.snapshot() {
        Ok(bytes) => bytes,
        Err(error) => {
            return report.push(Check::fail(name, format!("after restore: {error}")));
        }
    };
    if index > 0 {
        let m = &mut report.measurements;
        m.snapshot_bytes = Some(first.len() as u64);
        m.snapshot_ms = Some(snapshot_ms);
        m.restore_ms = Some(restore_ms);
    }
    report.push(if first == second {
        Check::pass(
            name,
            format!(
                "snapshot ({} bytes) -> restore -> snapshot gives identical bytes",
                first.len()
            ),
        )
    } else {
        Check::fail(
            name,
            format!(
                "snapshot -> restore -> snapshot differs: {} bytes, then {} bytes{}",
                first.len(),
                second.len(),
                first_difference(&first, &second)
            ),
        )
    });
}

/// The result of running a script on a fresh machine.
struct ScriptRun {
    machine: StateMachine,
    results: Vec<StepResult>,
    final_snapshot: Vec<u8>,
}

/// Run the script with a snapshot before and after every step: the
/// `script`, `errors leave state alone` and `queries leave state alone`
/// checks, and the apply measurements.
fn run_script_observed(
    report: &mut Report,
    loaded: &LoadedComponent,
    limits: GuestLimits,
    script: &[Step],
) -> Option<ScriptRun> {
    let mut machine = match StateMachine::new(loaded.clone(), limits) {
        Ok(machine) => machine,
        Err(error) => {
            report.push(Check::fail("script", error.to_string()));
            return None;
        }
    };
    let mut results = Vec::with_capacity(script.len());
    let mut traps = Vec::new();
    let mut changed_by_error = Vec::new();
    let mut changed_by_query = Vec::new();
    let mut apply_fuel = Vec::new();
    let mut apply_us = Vec::new();
    let mut query_fuel = Vec::new();
    let mut peak_memory = machine.memory_bytes();
    for (position, step) in script.iter().enumerate() {
        let before = match machine.snapshot() {
            Ok(bytes) => bytes,
            Err(error) => {
                report.push(Check::fail(
                    "script",
                    format!("snapshot before `{}`: {error}", step.describe()),
                ));
                return None;
            }
        };
        let started = Instant::now();
        let outcome = execute(&mut machine, position, step);
        let elapsed_us = started.elapsed().as_secs_f64() * 1e6;
        let result = match outcome {
            Ok(result) => result,
            Err(error) => {
                report.push(Check::fail(
                    "script",
                    format!("`{}` broke the runtime: {error}", step.describe()),
                ));
                return None;
            }
        };
        peak_memory = peak_memory.max(machine.memory_bytes());
        let after = match machine.snapshot() {
            Ok(bytes) => bytes,
            Err(error) => {
                report.push(Check::fail(
                    "script",
                    format!("snapshot after `{}`: {error}", step.describe()),
                ));
                return None;
            }
        };
        match (&result.result, step) {
            (Err(failure), _) if failure.poisons_instance() => {
                traps.push(format!("`{}`: {failure}", step.describe()));
            }
            (Err(_), Step::Apply(_)) if before != after => {
                changed_by_error.push(format!("`{}`", step.describe()));
            }
            (_, Step::Query(_)) if before != after => {
                changed_by_query.push(format!("`{}`", step.describe()));
            }
            _ => {}
        }
        match step {
            Step::Apply(_) if !result.result.as_ref().is_err_and(|f| f.poisons_instance()) => {
                apply_fuel.push(result.fuel_used as f64);
                apply_us.push(elapsed_us);
            }
            Step::Query(_) => query_fuel.push(result.fuel_used as f64),
            Step::Apply(_) => {}
        }
        results.push(result);
    }
    let final_snapshot = match machine.snapshot() {
        Ok(bytes) => bytes,
        Err(error) => {
            report.push(Check::fail("script", error.to_string()));
            return None;
        }
    };
    let m = &mut report.measurements;
    m.applies = Some(apply_fuel.len() as u64);
    m.apply_fuel = Spread::of(&apply_fuel);
    m.apply_us = Spread::of(&apply_us);
    m.query_fuel = Spread::of(&query_fuel);
    m.peak_memory_bytes = Some(peak_memory);

    let ok = results.iter().filter(|r| r.result.is_ok()).count();
    let rejected = results
        .iter()
        .filter(|r| matches!(r.result, Err(GuestFailure::Rejected { .. })))
        .count();
    report.push(if traps.is_empty() {
        Check::pass(
            "script",
            format!(
                "{} steps: {ok} ok, {rejected} returned an error, none trapped",
                script.len()
            ),
        )
    } else {
        Check::fail(
            "script",
            format!(
                "{} of {} steps did not complete (the host rolled each back): {}",
                traps.len(),
                script.len(),
                list(traps)
            ),
        )
    });
    report.push(if changed_by_error.is_empty() {
        Check::pass(
            "errors leave state alone",
            format!("{rejected} commands returned an error, none changed the snapshot"),
        )
    } else {
        Check::fail(
            "errors leave state alone",
            format!(
                "returned an error but changed the state: {}",
                list(changed_by_error)
            ),
        )
    });
    report.push(if changed_by_query.is_empty() {
        Check::pass(
            "queries leave state alone",
            format!(
                "{} queries, none changed the snapshot",
                script
                    .iter()
                    .filter(|s| matches!(s, Step::Query(_)))
                    .count()
            ),
        )
    } else {
        Check::fail(
            "queries leave state alone",
            format!("changed the state: {}", list(changed_by_query)),
        )
    });
    Some(ScriptRun {
        machine,
        results,
        final_snapshot,
    })
}

/// The same script on a fresh machine, without the snapshots in between,
/// gives the same results and the same final snapshot.
fn deterministic_replay(
    report: &mut Report,
    loaded: &LoadedComponent,
    limits: GuestLimits,
    script: &[Step],
    run_a: &ScriptRun,
) {
    const NAME: &str = "deterministic";
    let run_b = match replay_plain(loaded, limits, script) {
        Ok(run) => run,
        Err(error) => return report.push(Check::fail(NAME, error.to_string())),
    };
    let differing: Vec<String> = run_a
        .results
        .iter()
        .zip(&run_b.results)
        .filter(|(a, b)| a.result != b.result)
        .map(|(a, b)| {
            format!(
                "`{}` gave {} then {}",
                a.step,
                describe_result(&a.result),
                describe_result(&b.result)
            )
        })
        .collect();
    report.push(if !differing.is_empty() {
        Check::fail(
            NAME,
            format!(
                "two runs of the script from a fresh instance differ: {}",
                list(differing)
            ),
        )
    } else if run_a.final_snapshot != run_b.final_snapshot {
        Check::fail(
            NAME,
            format!(
                "two runs of the script gave the same results but different snapshots{}",
                first_difference(&run_a.final_snapshot, &run_b.final_snapshot)
            ),
        )
    } else {
        Check::pass(
            NAME,
            format!(
                "a second run from a fresh instance gave identical results and an identical \
                 snapshot ({} bytes)",
                run_b.final_snapshot.len()
            ),
        )
    });
}

/// Restore a snapshot taken half-way into a fresh machine; the second half
/// of the script must then go exactly as on the original.
fn restore_mid_script(
    report: &mut Report,
    loaded: &LoadedComponent,
    limits: GuestLimits,
    script: &[Step],
) {
    const NAME: &str = "restore carries the whole state";
    let half = script.len() / 2;
    let outcome = (|| -> Result<Check, WasmError> {
        let mut original = StateMachine::new(loaded.clone(), limits)?;
        let mut first_half = Vec::new();
        for (position, step) in script[..half].iter().enumerate() {
            first_half.push(execute(&mut original, position, step)?);
        }
        let snapshot = original.snapshot()?;
        let mut restored = StateMachine::new(loaded.clone(), limits)?;
        restored.restore(entry_for(half as u64), &snapshot)?;
        let mut differing = Vec::new();
        for (offset, step) in script[half..].iter().enumerate() {
            let a = execute(&mut original, half + offset, step)?;
            let b = execute(&mut restored, half + offset, step)?;
            if a.result != b.result {
                differing.push(format!(
                    "`{}` gave {} on the original, {} on the restored copy",
                    a.step,
                    describe_result(&a.result),
                    describe_result(&b.result)
                ));
            }
        }
        let (a, b) = (original.snapshot()?, restored.snapshot()?);
        Ok(if !differing.is_empty() {
            Check::fail(
                NAME,
                format!(
                    "after restoring a snapshot taken at step {half}, results differ: {}",
                    list(differing)
                ),
            )
        } else if a != b {
            Check::fail(
                NAME,
                format!(
                    "after restoring a snapshot taken at step {half}, the final snapshots \
                     differ{}",
                    first_difference(&a, &b)
                ),
            )
        } else {
            Check::pass(
                NAME,
                format!(
                    "a copy restored from the snapshot at step {half} of {} behaved identically",
                    script.len()
                ),
            )
        })
    })();
    report.push(outcome.unwrap_or_else(|error| Check::fail(NAME, error.to_string())));
}

/// `restore` of bytes that are not a snapshot should return an error.
fn garbage_snapshot(
    report: &mut Report,
    loaded: &LoadedComponent,
    limits: GuestLimits,
    machine: &StateMachine,
) {
    const NAME: &str = "garbage snapshot";
    let mut instance = match GuestInstance::new(loaded, &machine.info().name, limits) {
        Ok(instance) => instance,
        Err(error) => return report.push(Check::fail(NAME, error.to_string())),
    };
    report.push(
        match instance.restore(EntryContext::default(), GARBAGE_SNAPSHOT) {
            Err(GuestFailure::Rejected { message }) => Check::pass(
                NAME,
                format!("restore of foreign bytes returned an error: {message}"),
            ),
            Ok(()) => Check::warn(
                NAME,
                "restore accepted bytes that are not one of its snapshots".into(),
            ),
            Err(failure) => Check::warn(
                NAME,
                format!(
                    "restore of foreign bytes did not return an error but failed with: \
                     {failure} (the host copes, but an error says what is wrong)"
                ),
            ),
        },
    );
}

/// Warn when the guest uses a large share of its budgets.
fn headroom(report: &mut Report, limits: GuestLimits, run: &ScriptRun) {
    const NAME: &str = "headroom";
    let m = &report.measurements;
    let mut warnings = Vec::new();
    if let Some(spread) = &m.apply_fuel
        && spread.max as u64 * 100 > limits.apply_fuel * FUEL_WARNING_PERCENT
    {
        warnings.push(format!(
            "an apply used {} fuel, more than {FUEL_WARNING_PERCENT}% of the budget of {}",
            spread.max as u64, limits.apply_fuel
        ));
    }
    if let Some(fuel) = m.startup_fuel
        && fuel * 100 > limits.maintenance_fuel * MEMORY_WARNING_PERCENT
    {
        warnings.push(format!(
            "start-up used {fuel} fuel, more than {MEMORY_WARNING_PERCENT}% of the budget of {}",
            limits.maintenance_fuel
        ));
    }
    let memory = run.machine.memory_bytes();
    if memory * 100 > limits.memory_limit_bytes * MEMORY_WARNING_PERCENT {
        warnings.push(format!(
            "holds {} of linear memory, more than {MEMORY_WARNING_PERCENT}% of the cap of {}",
            mib(memory),
            mib(limits.memory_limit_bytes)
        ));
    }
    report.push(if warnings.is_empty() {
        Check::pass(
            NAME,
            format!(
                "well inside the limits (apply fuel {}, memory {})",
                limits.apply_fuel,
                mib(limits.memory_limit_bytes)
            ),
        )
    } else {
        Check::warn(NAME, warnings.join("; "))
    });
}

/// Run the whole script on a fresh machine, with nothing in between.
fn replay_plain(
    loaded: &LoadedComponent,
    limits: GuestLimits,
    script: &[Step],
) -> Result<ScriptRun, WasmError> {
    let mut machine = StateMachine::new(loaded.clone(), limits)?;
    let results = run_steps(&mut machine, script)?;
    let final_snapshot = machine.snapshot()?;
    Ok(ScriptRun {
        machine,
        results,
        final_snapshot,
    })
}

/// Apply and query `script` on `machine` from the start, with entries as a
/// node would number them. Also used by the cross-language tests.
pub fn run_steps(
    machine: &mut StateMachine,
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

fn execute(
    machine: &mut StateMachine,
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

fn describe_result(result: &Result<Vec<u8>, GuestFailure>) -> String {
    match result {
        Ok(bytes) => format!("`{}`", script::describe_bytes("ok", bytes)),
        Err(failure) => format!("`{failure}`"),
    }
}

fn first_difference(a: &[u8], b: &[u8]) -> String {
    match a.iter().zip(b).position(|(x, y)| x != y) {
        Some(at) => format!(" (first difference at byte {at})"),
        None => String::new(),
    }
}

fn list(items: impl IntoIterator<Item = String>) -> String {
    let items: Vec<String> = items.into_iter().collect();
    let shown = items.len().min(MAX_LISTED_PROBLEMS);
    let mut text = items[..shown].join("; ");
    if items.len() > shown {
        text.push_str(&format!("; and {} more", items.len() - shown));
    }
    text
}

fn millis(started: Instant) -> f64 {
    started.elapsed().as_secs_f64() * 1000.0
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}
