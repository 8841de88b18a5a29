//! The checks of a running 0.1.0 guest's behaviour (state in its memory):
//! snapshot round trips, the script (errors and queries leave state alone),
//! two identical runs, restore mid-script, garbage snapshots, and headroom
//! in the budgets (shared with the store-backed guests' checks in
//! [`super::store`]).

use std::time::Instant;

use super::report::{Check, Report, Spread};
use super::script::{self, Step};
use super::{
    FUEL_WARNING_PERCENT, GARBAGE_SNAPSHOT, MEMORY_WARNING_PERCENT, StepResult, entry_for, execute,
    first_difference, list, mib, millis, run_steps,
};
use crate::wasm::engine::LoadedComponent;
use crate::wasm::error::{GuestFailure, WasmError};
use crate::wasm::instance::GuestInstance;
use crate::wasm::limits::GuestLimits;
use crate::wasm::state_machine::StateMachine;
use crate::wasm::wasi::EntryContext;

/// snapshot → restore → snapshot gives identical bytes.
pub(super) fn round_trip(
    report: &mut Report,
    machine: &mut StateMachine,
    name: &'static str,
    index: u64,
) {
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
pub(super) struct ScriptRun {
    pub(super) machine: StateMachine,
    pub(super) results: Vec<StepResult>,
    pub(super) final_snapshot: Vec<u8>,
}

/// Run the script with a snapshot before and after every step: the
/// `script`, `errors leave state alone` and `queries leave state alone`
/// checks, and the apply measurements.
pub(super) fn run_script_observed(
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
    let mut max_growth = 0u64;
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
        let memory_before = machine.memory_bytes();
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
        // After a trap the instance is a rebuilt one; growth is then 0.
        max_growth = max_growth.max(machine.memory_bytes().saturating_sub(memory_before));
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
    m.max_step_memory_growth_bytes = Some(max_growth);

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
pub(super) fn deterministic_replay(
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
pub(super) fn restore_mid_script(
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
pub(super) fn garbage_snapshot(
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

/// Warn when the guest uses a large share of its budgets; `memory` is the
/// linear memory it holds after the script.
pub(super) fn headroom(report: &mut Report, limits: GuestLimits, memory: u64) {
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
pub(super) fn replay_plain(
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

pub(super) fn describe_result(result: &Result<Vec<u8>, GuestFailure>) -> String {
    match result {
        Ok(bytes) => format!("`{}`", script::describe_bytes("ok", bytes)),
        Err(failure) => format!("`{failure}`"),
    }
}
