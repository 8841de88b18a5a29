//! The dry run of an upgrade between store-backed guests: the candidate's
//! `migrate` and the recent commands run on copy-on-write views of the live
//! store ([`Overlay`]), side by side with the active component on a view
//! of its own. The node's store is only read.
//!
//! Unlike a 0.1.0 guest's dry run, which replays the recent entries from
//! the state before them, this replays them on the current state (the
//! store keeps no older versions): it answers "what would each component
//! do with these commands now". The store keeps changing while it runs, so
//! a difference on a key written meanwhile can be spurious.

use std::sync::Arc;

use super::canary::Side;
use super::{CheckOutcome, DryRunReport};
use crate::wasm::kv::{CommitMark, CommittedState, Overlay};
use crate::wasm::{EntryContext, StoreMachine};

/// Everything a store dry run needs, copied out of the applier.
#[derive(Debug)]
pub struct StoreCanaryInput {
    pub active: Side,
    pub candidate: Side,
    pub compile_ms: u64,
    pub applied_index: u64,
    pub live: Arc<dyn CommittedState>,
    /// The last entry applied (the upgrade's `migrate` sees it).
    pub current_entry: EntryContext,
    pub recent: Vec<(EntryContext, Vec<u8>)>,
    pub entries: usize,
}

/// Run the dry run and report.
pub fn run(input: StoreCanaryInput) -> DryRunReport {
    let mut report = super::canary::empty_report(&input.active, &input.candidate);
    report.compile_ms = input.compile_ms;
    report.applied_index = input.applied_index;
    report.notes.push(
        "store-backed guests: the recent commands were replayed on copy-on-write views of the \
         current state, not on the state before them"
            .into(),
    );
    if let Err(reason) = compare(&input, &mut report) {
        report.notes.push(reason);
    }
    report
}

fn compare(input: &StoreCanaryInput, report: &mut DryRunReport) -> Result<(), String> {
    let active_view = Arc::new(Overlay::new(input.live.clone()));
    let candidate_view = Arc::new(Overlay::new(input.live.clone()));
    let mut active = StoreMachine::new(
        input.active.component.clone(),
        input.active.limits,
        active_view.clone(),
    )
    .map_err(|e| e.to_string())?;
    let mut candidate = StoreMachine::new(
        input.candidate.component.clone(),
        input.candidate.limits,
        candidate_view.clone(),
    )
    .map_err(|e| e.to_string())?;
    // The upgrade runs the candidate's `migrate` first, in one transaction.
    match candidate
        .migrate(input.current_entry, &input.active.info)
        .map_err(|e| e.to_string())?
    {
        Ok(writes) => {
            report.same_snapshot_bytes = Some(writes.is_empty());
            let mark = CommitMark {
                index: input.current_entry.index,
                term: input.current_entry.term,
                node_meta: None,
                changes: &[],
            };
            candidate_view
                .commit(&writes, mark)
                .map_err(|e| e.to_string())?;
        }
        Err(failure) => {
            report.restore = CheckOutcome::Failed {
                reason: format!("the candidate's migrate failed: {failure}"),
            };
            return Ok(());
        }
    }
    if input.recent.is_empty() {
        return Err("no recent commands to compare (none applied since the node started)".into());
    }
    let compared = input.entries.min(input.recent.len());
    let recent = &input.recent[input.recent.len() - compared..];
    report.compared_from_index = recent.first().map(|(e, _)| e.index);
    report.compared_to_index = recent.last().map(|(e, _)| e.index);
    for (entry, command) in recent {
        let old = active
            .apply(*entry, command)
            .map_err(|e| format!("active component at index {}: {e}", entry.index))?;
        let new = candidate
            .apply(*entry, command)
            .map_err(|e| format!("candidate at index {}: {e}", entry.index))?;
        super::canary::record_entry(report, *entry, command, &old, &new);
    }
    active.flush().map_err(|e| e.to_string())?;
    candidate.flush().map_err(|e| e.to_string())?;
    report.active_state_hash = Some(active_view.changes_digest());
    report.candidate_state_hash = Some(candidate_view.changes_digest());
    Ok(())
}
