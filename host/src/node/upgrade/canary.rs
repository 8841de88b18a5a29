//! The dry run of an upgrade (a canary): run a candidate component against
//! the current state and the most recent entries, side by side with the
//! active component, on private instances. The node's real state is never
//! touched: everything here works on copies (snapshot bytes and commands).

use super::{CheckOutcome, DryRunReport, ResultDifference};
use crate::limits::MAX_DRY_RUN_DIFFERENCES;
use crate::limits::MAX_SHOWN_COMMAND_CHARS;
use crate::wasm::{
    ApplyOutcome, EntryContext, GuestFailure, GuestInfo, GuestLimits, LoadedComponent,
    ReplayWindow, StateMachine,
};

/// One side of the comparison: a component and the limits it runs with.
#[derive(Debug, Clone)]
pub struct Side {
    pub component: LoadedComponent,
    pub limits: GuestLimits,
    pub info: GuestInfo,
}

/// Everything a dry run needs, copied out of the applier.
#[derive(Debug)]
pub struct CanaryInput {
    pub active: Side,
    pub candidate: Side,
    pub compile_ms: u64,
    pub applied_index: u64,
    /// The active component's `snapshot()` now, and the entry it is at.
    pub current_state: Result<Vec<u8>, String>,
    pub current_entry: EntryContext,
    pub window: ReplayWindow,
    /// How many of the window's last entries to compare.
    pub entries: usize,
}

/// Run the dry run and report.
pub fn run(input: CanaryInput) -> DryRunReport {
    let mut report = empty_report(&input.active, &input.candidate);
    report.compile_ms = input.compile_ms;
    report.applied_index = input.applied_index;
    check_restore(&input, &mut report);
    if let Err(reason) = compare_recent(&input, &mut report) {
        report.notes.push(reason);
    }
    report
}

/// A report of nothing compared yet.
pub(super) fn empty_report(active: &Side, candidate: &Side) -> DryRunReport {
    DryRunReport {
        candidate_hash: candidate.component.hash.to_hex(),
        candidate_name: candidate.info.name.clone(),
        candidate_version: candidate.info.version.clone(),
        active_hash: active.component.hash.to_hex(),
        active_name: active.info.name.clone(),
        active_version: active.info.version.clone(),
        compile_ms: 0,
        applied_index: 0,
        restore: CheckOutcome::Ok,
        same_snapshot_bytes: None,
        compared_from_index: None,
        compared_to_index: None,
        entries_compared: 0,
        differing_entries: 0,
        differences: Vec::new(),
        new_failures: 0,
        active_fuel: 0,
        candidate_fuel: 0,
        active_state_hash: None,
        candidate_state_hash: None,
        notes: Vec::new(),
    }
}

/// Count one entry both sides applied.
pub(super) fn record_entry(
    report: &mut DryRunReport,
    entry: EntryContext,
    command: &[u8],
    old: &ApplyOutcome,
    new: &ApplyOutcome,
) {
    report.entries_compared += 1;
    report.active_fuel += old.fuel_used;
    report.candidate_fuel += new.fuel_used;
    if old.result.is_ok() && new.result.is_err() {
        report.new_failures += 1;
    }
    if old.result != new.result {
        report.differing_entries += 1;
        if report.differences.len() < MAX_DRY_RUN_DIFFERENCES {
            report.differences.push(ResultDifference {
                index: entry.index,
                command: shown(command),
                active: describe(&old.result),
                candidate: describe(&new.result),
            });
        }
    }
}

/// Does the candidate's `restore` take the current state, and what does it
/// write back?
fn check_restore(input: &CanaryInput, report: &mut DryRunReport) {
    let state = match &input.current_state {
        Ok(state) => state,
        Err(reason) => {
            report.restore = CheckOutcome::Failed {
                reason: format!("the active component could not snapshot: {reason}"),
            };
            return;
        }
    };
    let outcome = fresh(&input.candidate).and_then(|mut candidate| {
        candidate
            .restore(input.current_entry, state)
            .map_err(|e| e.to_string())?;
        candidate.snapshot().map_err(|e| e.to_string())
    });
    match outcome {
        Ok(written) => report.same_snapshot_bytes = Some(&written == state),
        Err(reason) => report.restore = CheckOutcome::Failed { reason },
    }
}

/// Replay the window's last entries on both components from the same state.
fn compare_recent(input: &CanaryInput, report: &mut DryRunReport) -> Result<(), String> {
    let window = &input.window;
    if window.entries.is_empty() {
        return Err("no recent entries to compare (none applied since the last restore)".into());
    }
    let compared = input.entries.min(window.entries.len());
    let (prefix, recent) = window.entries.split_at(window.entries.len() - compared);

    let mut active = fresh(&input.active)?;
    let mut start = window.base_entry;
    if let Some(base) = &window.base {
        active
            .restore(window.base_entry, base)
            .map_err(|e| format!("rebuilding the state before the compared entries: {e}"))?;
    }
    for (entry, command) in prefix {
        active
            .apply(*entry, command)
            .map_err(|e| format!("replaying index {}: {e}", entry.index))?;
        start = *entry;
    }
    let mut candidate = fresh(&input.candidate)?;
    let state = active
        .snapshot()
        .map_err(|e| format!("the active component could not snapshot: {e}"))?;
    candidate.restore(start, &state).map_err(|e| {
        format!(
            "the candidate cannot restore the state at index {}: {e}",
            start.index
        )
    })?;

    report.compared_from_index = recent.first().map(|(e, _)| e.index);
    report.compared_to_index = recent.last().map(|(e, _)| e.index);
    for (entry, command) in recent {
        let old = active
            .apply(*entry, command)
            .map_err(|e| format!("active component at index {}: {e}", entry.index))?;
        let new = candidate
            .apply(*entry, command)
            .map_err(|e| format!("candidate at index {}: {e}", entry.index))?;
        record_entry(report, *entry, command, &old, &new);
    }
    report.active_state_hash = active.snapshot().ok().map(|s| hash_hex(&s));
    report.candidate_state_hash = candidate.snapshot().ok().map(|s| hash_hex(&s));
    Ok(())
}

fn fresh(side: &Side) -> Result<StateMachine, String> {
    StateMachine::new(side.component.clone(), side.limits).map_err(|e| e.to_string())
}

fn hash_hex(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

fn shown(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut shown: String = text.chars().take(MAX_SHOWN_COMMAND_CHARS).collect();
    if text.chars().count() > MAX_SHOWN_COMMAND_CHARS {
        shown.push('…');
    }
    shown
}

fn describe(result: &Result<Vec<u8>, GuestFailure>) -> String {
    match result {
        Ok(bytes) => format!("ok: {}", shown(bytes)),
        Err(failure) => format!("{}: {failure}", failure.code()),
    }
}
