//! Issue 15, item 4: what an instance's history decides, and what it does
//! not (the guarantee documented in docs/guests.md, "Near a limit, the
//! instance's history counts").
//!
//! Two instances of the kv guest hold the same state: one applied the
//! whole log (as a leader does), the other was restored from a snapshot
//! of it (as a replica that restarted or installed a snapshot is). Their
//! allocators' free lists differ, so one command costs them different
//! fuel; with the documented margin (limits twice the peak) that never
//! changes a result, while a limit between the two costs does.

use iroh_raft::wasm::{
    ApplyOutcome, EntryContext, GuestFailure, GuestLimits, StateMachine, WasmEngine,
};

use crate::common::guest;

/// The log both instances share, then the commands they both apply.
const HISTORY_ENTRIES: u64 = 2_000;
const PROBES: u64 = 200;

fn entry(index: u64) -> EntryContext {
    EntryContext {
        index,
        term: 1,
        timestamp_ms: 0,
    }
}

/// A log with puts of varied sizes and deletes, so the heap fragments.
fn history() -> Vec<String> {
    let mut log = Vec::new();
    for k in 0..HISTORY_ENTRIES {
        log.push(format!(
            "put key{} {}",
            k % 300,
            "v".repeat((k % 97) as usize)
        ));
        if k % 3 == 0 {
            log.push(format!("delete key{}", (k * 7) % 300));
        }
    }
    log
}

/// Larger values than the history's, so a probe costs more than any entry
/// of the history.
fn probe(k: u64) -> String {
    format!(
        "put key{} {}",
        (k * 13) % 400,
        "w".repeat(10_000 + (k % 50) as usize)
    )
}

/// (the instance that applied the history, one restored from its snapshot,
/// the most fuel an entry of the history took)
fn twins(limits: GuestLimits) -> (StateMachine, StateMachine, u64) {
    let engine = WasmEngine::new(None).expect("engine");
    let bytes = std::fs::read(guest("kv")).expect("read kv");
    let new = || StateMachine::new(engine.load(&bytes).expect("load"), limits).expect("instance");
    let mut long_lived = new();
    let log = history();
    let mut history_peak = 0;
    for (i, command) in log.iter().enumerate() {
        let outcome = long_lived
            .apply(entry(i as u64 + 1), command.as_bytes())
            .expect("apply");
        assert!(outcome.result.is_ok(), "{command}: {:?}", outcome.result);
        history_peak = history_peak.max(outcome.fuel_used);
    }
    let snapshot = long_lived.snapshot().expect("snapshot");
    let mut restored = new();
    restored
        .restore(entry(log.len() as u64), &snapshot)
        .expect("restore");
    (long_lived, restored, history_peak)
}

fn apply(machine: &mut StateMachine, index: u64, command: &str) -> ApplyOutcome {
    machine
        .apply(entry(index), command.as_bytes())
        .expect("apply")
}

#[test]
fn t32_near_the_fuel_cap_the_instance_history_counts_and_the_margin_covers_it() {
    let first_probe_index = history().len() as u64 + 1;

    // Same state, different heaps: the same command costs different fuel.
    let (mut long_lived, mut restored, history_peak) = twins(GuestLimits::default());
    let mut costs = Vec::new();
    for k in 0..PROBES {
        let command = probe(k);
        let a = apply(&mut long_lived, first_probe_index + k, &command);
        let b = apply(&mut restored, first_probe_index + k, &command);
        assert_eq!(a.result, b.result, "{command}");
        costs.push((a.fuel_used, b.fuel_used));
    }
    assert_eq!(
        long_lived.snapshot().expect("snapshot"),
        restored.snapshot().expect("snapshot"),
        "the states stay equal"
    );
    assert!(
        costs.iter().any(|(a, b)| a != b),
        "the fuel of a call depends on the instance's history (docs/guests.md says so)"
    );
    let peak = costs.iter().map(|&(a, b)| a.max(b)).max().expect("probes");

    // With the documented margin, twice the peak, every result is the same.
    let margin = GuestLimits {
        apply_fuel: 2 * peak,
        ..GuestLimits::default()
    };
    let (mut long_lived, mut restored, _) = twins(margin);
    for k in 0..PROBES {
        let command = probe(k);
        let a = apply(&mut long_lived, first_probe_index + k, &command);
        let b = apply(&mut restored, first_probe_index + k, &command);
        assert!(a.result.is_ok() && a.result == b.result, "{command}");
    }

    // A limit between the two costs of the first probe: the same entry
    // succeeds on one replica and runs out of fuel on the other. This is
    // the case the state check catches and fences
    // (tests/faults/t58_divergence.rs).
    let (a, b) = costs[0];
    assert_ne!(a, b, "the first probe costs the twins different fuel");
    let edge = GuestLimits {
        apply_fuel: a.min(b),
        ..GuestLimits::default()
    };
    assert!(
        edge.apply_fuel >= history_peak,
        "the history ({history_peak} fuel at most) fits under the edge ({})",
        edge.apply_fuel
    );
    let (mut long_lived, mut restored, _) = twins(edge);
    let results = [
        apply(&mut long_lived, first_probe_index, &probe(0)).result,
        apply(&mut restored, first_probe_index, &probe(0)).result,
    ];
    let ran_out = results
        .iter()
        .filter(|r| matches!(r, Err(GuestFailure::OutOfFuel { .. })))
        .count();
    assert_eq!(ran_out, 1, "at {} fuel: {results:?}", edge.apply_fuel);
}
