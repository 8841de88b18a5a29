//! The kv guest filled with 64 KiB values past a small memory cap: a
//! state of about half the cap no longer checkpoints.

use super::*;
use crate::wasm::WasmEngine;

const CAP_BYTES: u64 = 16 * 1024 * 1024;
const VALUE_BYTES: usize = 64 * 1024;
/// More puts than a 16 MiB cap can take (each adds 64 KiB): every loop
/// below ends long before, or its test fails.
const MAX_PUTS: u64 = 1_000;
/// Rebuilds a test allows: the failing checkpoints and their retries
/// (a handful; before the back-off it was one per entry).
const FEW_REBUILDS: u64 = 4;

fn kv(memory_limit_bytes: u64) -> StateMachine {
    guest(env!("IROH_RAFT_GUEST_KV"), memory_limit_bytes)
}

fn guest(path: &str, memory_limit_bytes: u64) -> StateMachine {
    let bytes = std::fs::read(path).expect("the build script built the guest");
    let component = WasmEngine::new(None)
        .expect("engine")
        .load(&bytes)
        .expect("the guest loads");
    let limits = GuestLimits {
        memory_limit_bytes,
        ..GuestLimits::default()
    };
    StateMachine::new(component, limits).expect("the guest instantiates")
}

fn entry(index: u64) -> EntryContext {
    EntryContext {
        index,
        term: 1,
        timestamp_ms: index,
    }
}

/// The command that puts a 64 KiB value (naming `index`) under `key`.
fn put_command(index: u64, key: &str) -> Vec<u8> {
    let value = format!("{index:08}").repeat(VALUE_BYTES / 8);
    format!("put {key} {value}").into_bytes()
}

fn put(machine: &mut StateMachine, index: u64, key: &str) -> Result<Vec<u8>, GuestFailure> {
    machine
        .apply(entry(index), &put_command(index, key))
        .expect("the runtime keeps working")
        .result
}

fn query(machine: &mut StateMachine, request: &str) -> String {
    let (result, _) = machine.query(request.as_bytes()).expect("runtime");
    String::from_utf8(result.expect("the query succeeds")).expect("text")
}

/// Put `k1`, `k2`, ... until checkpoints fail; the index of the last put.
fn fill_until_checkpoints_fail(machine: &mut StateMachine) -> u64 {
    for index in 1..=MAX_PUTS {
        assert_eq!(
            put(machine, index, &format!("k{index}")),
            Ok(b"OK".to_vec())
        );
        if machine.checkpoint_failing_since().is_some() {
            return index;
        }
    }
    panic!("checkpoints never failed: {:?}", machine.stats());
}

#[test]
fn failing_checkpoints_back_off_instead_of_rebuilding_after_every_entry() {
    let mut machine = kv(CAP_BYTES);
    let filled = fill_until_checkpoints_fail(&mut machine);
    let stats = machine.stats();
    assert_eq!(stats.checkpoint_failing_since, Some(filled));
    assert_eq!(stats.checkpoint_failures, 1);
    assert_eq!(
        stats.rebuilds, 1,
        "the failed snapshot poisoned the instance"
    );
    // Overwrite the same keys: the state stays as large, the tail grows
    // until the guest stalls.
    let mut index = filled;
    while machine.stalled().is_none() {
        index += 1;
        assert!(index <= MAX_PUTS, "never stalled: {:?}", machine.stats());
        let key = format!("k{}", 1 + index % filled);
        assert_eq!(
            put(&mut machine, index, &key),
            Ok(b"OK".to_vec()),
            "put {index}"
        );
    }
    let stats = machine.stats();
    assert!(stats.rebuilds <= FEW_REBUILDS, "{stats:?}");
    assert!(stats.checkpoint_failures <= FEW_REBUILDS, "{stats:?}");
    assert!(stats.stalled);
    let stalled = machine.stalled().expect("stalled");
    assert_eq!(stalled.since_index, filled);
    assert!(
        matches!(stalled.failure, GuestFailure::MemoryLimit { limit_bytes } if limit_bytes == CAP_BYTES),
        "{stalled}"
    );
    assert!(
        matches!(stalled.cause, StallCause::TailLimit { bytes, .. } if bytes as u64 >= CAP_BYTES),
        "{stalled}"
    );
    // Committed entries still apply, and reads see them.
    index += 1;
    assert_eq!(put(&mut machine, index, "k1"), Ok(b"OK".to_vec()));
    assert!(query(&mut machine, "get k1").starts_with(&format!("{index:08}")));
    assert_eq!(query(&mut machine, "count"), filled.to_string());
}

#[test]
fn an_entry_that_hits_the_memory_cap_while_checkpoints_fail_stalls_the_guest() {
    let mut machine = kv(CAP_BYTES);
    let filled = fill_until_checkpoints_fail(&mut machine);
    let mut index = filled;
    let failure = loop {
        index += 1;
        assert!(
            index <= MAX_PUTS,
            "never hit the cap: {:?}",
            machine.stats()
        );
        match put(&mut machine, index, &format!("k{index}")) {
            Ok(_) => assert!(machine.stalled().is_none(), "stalled before the cap"),
            Err(failure) => break failure,
        }
    };
    assert_eq!(
        failure,
        GuestFailure::MemoryLimit {
            limit_bytes: CAP_BYTES
        }
    );
    let stalled = machine.stalled().expect("stalled");
    assert_eq!(stalled.cause, StallCause::MemoryFull);
    // The failed put was rolled back, the others kept.
    assert_eq!(query(&mut machine, "count"), (index - 1).to_string());
    let stats = machine.stats();
    assert!(stats.rebuilds <= FEW_REBUILDS, "{stats:?}");
}

#[test]
fn hitting_the_memory_cap_checks_at_once_whether_the_state_still_checkpoints() {
    // A state of 7.5 MiB: the next checkpoint is due at 8 MiB of tail, and
    // this one would fail (it needs room for the state twice).
    let mut machine = kv(CAP_BYTES);
    let filled = 120;
    for index in 1..=filled {
        assert_eq!(
            put(&mut machine, index, &format!("k{index}")),
            Ok(b"OK".to_vec())
        );
    }
    assert_eq!(machine.checkpoint_failing_since(), None);
    // A command too large to even copy into the guest's memory.
    let huge = vec![b'x'; 10 * 1024 * 1024];
    let outcome = machine.apply(entry(filled + 1), &huge).expect("runtime");
    assert_eq!(
        outcome.result,
        Err(GuestFailure::MemoryLimit {
            limit_bytes: CAP_BYTES
        })
    );
    let stalled = machine.stalled().expect("no room left");
    assert_eq!(stalled.cause, StallCause::MemoryFull);
    assert_eq!(query(&mut machine, "count"), filled.to_string());

    // A small state hitting the cap (a memory bomb) checkpoints fine: that
    // entry fails, the guest goes on.
    let mut bomb = guest(env!("IROH_RAFT_GUEST_HOSTILE_MEMORY"), CAP_BYTES);
    let add = bomb.apply(entry(1), b"add 7").expect("runtime");
    assert_eq!(add.result, Ok(b"7".to_vec()));
    let grow = bomb.apply(entry(2), b"grow").expect("runtime");
    assert!(matches!(grow.result, Err(GuestFailure::MemoryLimit { .. })));
    assert_eq!(bomb.stalled(), None);
    let stats = bomb.stats();
    assert_eq!(
        (stats.checkpoints, stats.checkpoint_failing_since),
        (1, None)
    );
    assert_eq!(query(&mut bomb, "get"), "7");
}

#[test]
fn replaying_a_tail_after_a_restore_does_not_rebuild_per_entry() {
    // What a restart does: restore the last snapshot on disk, then apply
    // every entry after it.
    let mut machine = kv(CAP_BYTES);
    assert_eq!(put(&mut machine, 1, "k1"), Ok(b"OK".to_vec()));
    let on_disk = machine.snapshot().expect("a small state serializes");
    let mut restarted = kv(CAP_BYTES);
    restarted.restore(entry(1), &on_disk).expect("restore");
    let mut index = 1;
    while restarted.stalled().is_none() {
        index += 1;
        assert!(index <= MAX_PUTS, "never stalled: {:?}", restarted.stats());
        // Keys k2..k120 (7.5 MiB), then overwrites.
        let key = format!("k{}", 2 + index % 119);
        assert_eq!(put(&mut restarted, index, &key), Ok(b"OK".to_vec()));
    }
    let stats = restarted.stats();
    assert!(stats.checkpoint_failing_since.is_some(), "{stats:?}");
    assert!(stats.rebuilds <= FEW_REBUILDS, "{stats:?}");
}

#[test]
fn an_upgrade_to_a_larger_cap_moves_a_state_that_no_longer_fits() {
    let mut machine = kv(CAP_BYTES);
    let filled = fill_until_checkpoints_fail(&mut machine);
    let refused = machine.snapshot().expect_err("does not fit twice");
    assert!(
        matches!(
            refused,
            WasmError::SnapshotFailed {
                failure: GuestFailure::MemoryLimit { .. }
            }
        ),
        "{refused}"
    );
    assert!(
        machine.snapshot_for_upgrade(CAP_BYTES).is_err(),
        "the same cap does not help"
    );
    let state = machine
        .snapshot_for_upgrade(4 * CAP_BYTES)
        .expect("fits under the larger cap");
    let mut upgraded = kv(4 * CAP_BYTES);
    upgraded.restore(entry(filled), &state).expect("restore");
    assert_eq!(query(&mut upgraded, "count"), filled.to_string());
    assert_eq!(upgraded.stats().checkpoint_failing_since, None);
    assert_eq!(upgraded.snapshot().expect("fits now"), state);
    // The live instance was left alone: it still applies.
    assert_eq!(put(&mut machine, filled + 1, "k1"), Ok(b"OK".to_vec()));
}

/// kv's snapshot format (guests/kv/src/snapshot.rs) of `count` keys with
/// 1 MiB values.
fn kv_snapshot(count: u32) -> Vec<u8> {
    let value = vec![b'v'; 1024 * 1024];
    let mut bytes = b"IRKV\x01".to_vec();
    bytes.extend_from_slice(&u64::from(count).to_le_bytes());
    for i in 0..count {
        let key = format!("k{i:04}");
        for field in [key.as_bytes(), &value] {
            let len = u32::try_from(field.len()).expect("small");
            bytes.extend_from_slice(&len.to_le_bytes());
            bytes.extend_from_slice(field);
        }
    }
    bytes
}

#[test]
fn a_state_over_128_mib_serializes_when_the_cap_holds_it_twice() {
    // wasmtime copies at most 128 MiB out of a guest per call unless told
    // otherwise: the cap, not that default, must bound a snapshot.
    let state = kv_snapshot(136);
    let mut machine = kv(320 * 1024 * 1024);
    machine.restore(entry(1), &state).expect("restore");
    assert_eq!(machine.snapshot().expect("fits twice in 320 MiB"), state);
}
