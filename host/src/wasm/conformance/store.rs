//! The checks of a store-backed (0.2.0) guest's behaviour, each run on an
//! in-memory store of its own (an [`Overlay`] on the [`EmptyState`], so
//! nothing of a node is involved): the script (failed commands and queries
//! leave the store alone), two identical runs, `migrate` from itself, and
//! headroom in the budgets. Such a guest has no `snapshot` or `restore`
//! (the host moves its store), so those checks are reported as not
//! applicable.

use std::sync::Arc;
use std::time::Instant;

use super::behaviour::{describe_result, headroom};
use super::report::{Check, Report, Spread};
use super::script::Step;
use super::{CheckOptions, StepResult, entry_for, execute, list, run_steps};
use crate::wasm::engine::LoadedComponent;
use crate::wasm::error::{GuestFailure, WasmError};
use crate::wasm::kv::{CommittedState, EmptyState, Overlay, Pairs, StoreIoError};
use crate::wasm::limits::GuestLimits;
use crate::wasm::store_machine::StoreMachine;

/// A fresh, empty store that keeps its commits in memory.
pub fn empty_store() -> Arc<dyn CommittedState> {
    Arc::new(Overlay::new(Arc::new(EmptyState)))
}

/// Every pair in `state`, in key order.
pub fn store_contents(state: &dyn CommittedState) -> Result<Pairs, StoreIoError> {
    state.scan(b"", None).collect()
}

/// The checks of a store-backed guest, after start-up.
pub(super) fn run(report: &mut Report, loaded: &LoadedComponent, options: &CheckOptions) {
    let (limits, script) = (options.limits, &options.script);
    let Some(mut run_a) = run_script_observed(report, loaded, limits, script) else {
        return;
    };
    deterministic_replay(report, loaded, limits, script, &run_a);
    let index = u64::try_from(script.len()).unwrap_or(u64::MAX);
    migrate_from_itself(report, &mut run_a.machine, index);
    headroom(report, limits, run_a.machine.memory_bytes());
}

/// The result of running a script on a fresh machine and store.
struct StoreRun {
    machine: StoreMachine,
    results: Vec<StepResult>,
}

/// Run the script with the store's digest taken before and after every
/// step: the `script`, `errors leave state alone` and `queries leave
/// state alone` checks, and the apply measurements.
fn run_script_observed(
    report: &mut Report,
    loaded: &LoadedComponent,
    limits: GuestLimits,
    script: &[Step],
) -> Option<StoreRun> {
    let fail = |report: &mut Report, detail: String| {
        report.push(Check::fail("script", detail));
        None
    };
    let mut machine = match StoreMachine::new(loaded.clone(), limits, empty_store()) {
        Ok(machine) => machine,
        Err(error) => return fail(report, error.to_string()),
    };
    let mut results = Vec::with_capacity(script.len());
    let mut traps = Vec::new();
    let mut failed_applies = 0usize;
    let mut changed_by_failure = Vec::new();
    let mut changed_by_query = Vec::new();
    let mut apply_fuel = Vec::new();
    let mut apply_us = Vec::new();
    let mut query_fuel = Vec::new();
    let mut peak_memory = machine.memory_bytes();
    let mut max_growth = 0u64;
    for (position, step) in script.iter().enumerate() {
        let before = match machine.state().digest() {
            Ok(digest) => digest,
            Err(error) => return fail(report, error.to_string()),
        };
        let memory_before = machine.memory_bytes();
        let started = Instant::now();
        let outcome = execute(&mut machine, position, step);
        let elapsed_us = started.elapsed().as_secs_f64() * 1e6;
        let result = match outcome {
            Ok(result) => result,
            Err(error) => {
                return fail(
                    report,
                    format!("`{}` broke the runtime: {error}", step.describe()),
                );
            }
        };
        peak_memory = peak_memory.max(machine.memory_bytes());
        // After a trap the instance is a fresh one; growth is then 0.
        max_growth = max_growth.max(machine.memory_bytes().saturating_sub(memory_before));
        let after = match machine.state().digest() {
            Ok(digest) => digest,
            Err(error) => return fail(report, error.to_string()),
        };
        let trapped = result
            .result
            .as_ref()
            .is_err_and(GuestFailure::poisons_instance);
        if trapped {
            traps.push(format!(
                "`{}`: {}",
                step.describe(),
                describe_result(&result.result)
            ));
        }
        match step {
            Step::Apply(_) if result.result.is_err() => {
                failed_applies += 1;
                if before != after {
                    changed_by_failure.push(format!("`{}`", step.describe()));
                }
            }
            Step::Query(_) if before != after => {
                changed_by_query.push(format!("`{}`", step.describe()));
            }
            _ => {}
        }
        match step {
            Step::Apply(_) if !trapped => {
                apply_fuel.push(result.fuel_used as f64);
                apply_us.push(elapsed_us);
            }
            Step::Query(_) => query_fuel.push(result.fuel_used as f64),
            Step::Apply(_) => {}
        }
        results.push(result);
    }
    let size = match machine.state().size() {
        Ok(size) => size,
        Err(error) => return fail(report, error.to_string()),
    };
    let m = &mut report.measurements;
    m.applies = Some(apply_fuel.len() as u64);
    m.apply_fuel = Spread::of(&apply_fuel);
    m.apply_us = Spread::of(&apply_us);
    m.query_fuel = Spread::of(&query_fuel);
    m.peak_memory_bytes = Some(peak_memory);
    m.max_step_memory_growth_bytes = Some(max_growth);
    m.store_keys = Some(size.keys);
    m.store_bytes = Some(size.bytes);

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
                "{} of {} steps did not complete (the host discarded each one's writes): {}",
                traps.len(),
                script.len(),
                list(traps)
            ),
        )
    });
    // The host's transaction guarantees both: a failure here is a host bug.
    report.push(if changed_by_failure.is_empty() {
        Check::pass(
            "errors leave state alone",
            match failed_applies {
                0 => "no command failed (the host's transaction would discard a failed one's \
                      writes)"
                    .to_string(),
                n => format!(
                    "{n} commands failed and the host's transaction discarded their writes: \
                     the store was unchanged after each"
                ),
            },
        )
    } else {
        Check::fail(
            "errors leave state alone",
            format!(
                "the store changed although the command failed (a bug in the host's \
                 transaction): {}",
                list(changed_by_failure)
            ),
        )
    });
    report.push(if changed_by_query.is_empty() {
        Check::pass(
            "queries leave state alone",
            format!(
                "{} queries, none changed the store (the host runs them read-only: a write is \
                 refused with `read-only`)",
                script
                    .iter()
                    .filter(|s| matches!(s, Step::Query(_)))
                    .count()
            ),
        )
    } else {
        Check::fail(
            "queries leave state alone",
            format!(
                "the store changed during a query (a bug in the host's read-only \
                 transaction): {}",
                list(changed_by_query)
            ),
        )
    });
    Some(StoreRun { machine, results })
}

/// The same script on a fresh machine and store, without the digests in
/// between, gives the same results and the same store contents.
fn deterministic_replay(
    report: &mut Report,
    loaded: &LoadedComponent,
    limits: GuestLimits,
    script: &[Step],
    run_a: &StoreRun,
) {
    const NAME: &str = "deterministic";
    let outcome = (|| -> Result<Check, WasmError> {
        let mut machine = StoreMachine::new(loaded.clone(), limits, empty_store())?;
        let results = run_steps(&mut machine, script)?;
        let differing: Vec<String> = run_a
            .results
            .iter()
            .zip(&results)
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
        if !differing.is_empty() {
            return Ok(Check::fail(
                NAME,
                format!(
                    "two runs of the script on a fresh store and instance differ: {}",
                    list(differing)
                ),
            ));
        }
        let a = store_contents(run_a.machine.state().as_ref())?;
        let b = store_contents(machine.state().as_ref())?;
        Ok(match first_difference(&a, &b) {
            Some(difference) => Check::fail(
                NAME,
                format!(
                    "two runs of the script gave the same results but different store contents: \
                     {difference}"
                ),
            ),
            None => Check::pass(
                NAME,
                format!(
                    "a second run on a fresh store and instance gave identical results and \
                     identical store contents ({} keys, {} bytes)",
                    a.len(),
                    a.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>()
                ),
            ),
        })
    })();
    report.push(outcome.unwrap_or_else(|error| Check::fail(NAME, error.to_string())));
}

/// An upgrade to the same component runs `migrate` with the guest itself
/// as the previous one; it must succeed (on the store the script left).
fn migrate_from_itself(report: &mut Report, machine: &mut StoreMachine, index: u64) {
    const NAME: &str = "migrate";
    let info = machine.info().clone();
    let from = format!("{} {} (itself)", info.name, info.version);
    report.push(match machine.migrate(entry_for(index), &info) {
        Ok(Ok(writes)) if writes.is_empty() => Check::pass(
            NAME,
            format!("migrate from {from} returned ok, changing nothing"),
        ),
        Ok(Ok(writes)) => Check::pass(
            NAME,
            format!(
                "migrate from {from} returned ok, writing {} keys",
                writes.len()
            ),
        ),
        Ok(Err(failure)) => Check::fail(
            NAME,
            format!(
                "migrate from {from} failed: {failure} (an upgrade to this same component would \
                 fail on every replica)"
            ),
        ),
        Err(error) => Check::fail(NAME, format!("migrate broke the runtime: {error}")),
    });
}

/// Where two stores' contents (both in key order) first differ, if they do.
fn first_difference(a: &[(Vec<u8>, Vec<u8>)], b: &[(Vec<u8>, Vec<u8>)]) -> Option<String> {
    let key = |key: &[u8]| String::from_utf8_lossy(key).into_owned();
    for (x, y) in a.iter().zip(b) {
        if x.0 != y.0 {
            let first = x.0.clone().min(y.0.clone());
            return Some(format!("the key {:?} is only in one of them", key(&first)));
        }
        if x.1 != y.1 {
            return Some(format!(
                "the key {:?} has different values ({} and {} bytes)",
                key(&x.0),
                x.1.len(),
                y.1.len()
            ));
        }
    }
    match a.len().cmp(&b.len()) {
        std::cmp::Ordering::Equal => None,
        _ => Some(format!("{} keys, then {} keys", a.len(), b.len())),
    }
}

#[cfg(test)]
mod tests {
    use super::super::report::Outcome;
    use super::super::script;
    use super::*;
    use crate::wasm::engine::GuestWorld;
    use std::path::Path;

    fn check(guest: &str, script: &str) -> Report {
        let options = CheckOptions {
            script: script::parse(script).expect("valid script"),
            ..CheckOptions::default()
        };
        super::super::check_file(Path::new(guest), &options)
    }

    fn outcome<'a>(report: &'a Report, name: &str) -> (Outcome, &'a str) {
        let check = report.check(name).expect("listed");
        (check.outcome, &check.detail)
    }

    #[test]
    fn the_kv_store_guest_passes_as_a_store_guest() {
        let report = check(
            env!("IROH_RAFT_GUEST_KV_STORE"),
            "apply put a 1\napply put b 2\napply get nothing\nquery put c 3\nquery list\n",
        );
        assert!(report.passed, "{}", report.to_text());
        assert_eq!(report.world, Some(GuestWorld::Store));
        assert_eq!(
            outcome(&report, "errors leave state alone").1,
            "1 commands failed and the host's transaction discarded their writes: the store \
             was unchanged after each"
        );
        assert_eq!(
            outcome(&report, "migrate"),
            (
                Outcome::Pass,
                "migrate from kv-store 1.0.0 (itself) returned ok, changing nothing"
            )
        );
        // a and b, their revision records and kv-store's count of those
        // (hidden keys).
        assert_eq!(report.measurements.store_keys, Some(5));
        assert_eq!(
            outcome(&report, "garbage snapshot").0,
            Outcome::NotApplicable
        );
    }

    #[test]
    fn a_migration_that_fails_fails_the_check() {
        let writes = check(env!("IROH_RAFT_GUEST_KV_STORE_V2"), "apply put a 1\n");
        assert_eq!(
            outcome(&writes, "migrate"),
            (
                Outcome::Pass,
                "migrate from kv-store 2.0.0 (itself) returned ok, writing 1 keys"
            ),
            "{}",
            writes.to_text()
        );
        let blocked = check(
            env!("IROH_RAFT_GUEST_KV_STORE_V2"),
            "apply put _block_migration yes\n",
        );
        assert!(!blocked.passed);
        let (result, detail) = outcome(&blocked, "migrate");
        assert_eq!(result, Outcome::Fail);
        assert!(
            detail.contains("blocked by the key _block_migration")
                && detail.contains("would fail on every replica"),
            "{detail}"
        );
    }

    #[test]
    fn a_memory_guest_is_reported_as_one() {
        let report = check(env!("IROH_RAFT_GUEST_COUNTER"), "apply add 1\nquery get\n");
        assert!(report.passed, "{}", report.to_text());
        assert_eq!(report.world, Some(GuestWorld::Memory));
        assert!(report.check("migrate").is_none());
        assert_eq!(outcome(&report, "garbage snapshot").0, Outcome::Pass);
    }

    fn pairs(items: &[(&str, &str)]) -> Vec<(Vec<u8>, Vec<u8>)> {
        items
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn first_difference_names_the_key() {
        let a = pairs(&[("a", "1"), ("b", "2")]);
        assert_eq!(first_difference(&a, &a), None);
        let other_value = pairs(&[("a", "1"), ("b", "22")]);
        assert_eq!(
            first_difference(&a, &other_value).as_deref(),
            Some("the key \"b\" has different values (1 and 2 bytes)")
        );
        let other_key = pairs(&[("a", "1"), ("c", "2")]);
        assert_eq!(
            first_difference(&a, &other_key).as_deref(),
            Some("the key \"b\" is only in one of them")
        );
        let longer = pairs(&[("a", "1"), ("b", "2"), ("c", "3")]);
        assert_eq!(
            first_difference(&a, &longer).as_deref(),
            Some("2 keys, then 3 keys")
        );
    }

    #[test]
    fn an_empty_store_is_empty_and_keeps_what_is_committed() {
        let store = empty_store();
        assert_eq!(store_contents(store.as_ref()), Ok(Vec::new()));
        let writes = crate::wasm::kv::WriteSet::from([(
            b"k".to_vec(),
            crate::wasm::kv::StagedWrite {
                old: None,
                new: Some(b"v".to_vec()),
            },
        )]);
        let mark = crate::wasm::kv::CommitMark {
            index: 1,
            term: 1,
            node_meta: None,
            changes: &[],
        };
        store.commit(&writes, mark).expect("commit");
        assert_eq!(store_contents(store.as_ref()), Ok(pairs(&[("k", "v")])));
        assert_eq!(
            store_contents(empty_store().as_ref()),
            Ok(Vec::new()),
            "each store is its own"
        );
    }
}
