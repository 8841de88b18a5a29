//! The kv guest in Rust, Python and JavaScript: what each language costs.
//!
//! Run: `make guests-polyglot && cargo bench --bench guests` (`make bench`
//! does both; results in BENCHMARKS.md). Per guest it measures:
//!
//! 1. component size;
//! 2. compiling it cold (no cache), and loading it from the compile cache
//!    (what a node restart pays);
//! 3. one instantiation (what every restore and rebuild after a trap pays);
//! 4. time and fuel per `apply` of a kv put, over `PUTS` distinct keys;
//! 5. the linear memory, and snapshot and restore times, of a store of
//!    `SNAPSHOT_KEYS` keys.
//!
//! Wall-clock numbers are from one machine and vary run to run; fuel is
//! deterministic.

#[path = "common/allocator.rs"]
mod allocator;

use std::path::Path;
use std::time::{Duration, Instant};

use iroh_raft::wasm::{EntryContext, GuestLimits, StateMachine, WasmEngine};

/// The kv guest in each language: label and component path.
const GUESTS: &[(&str, &str)] = &[
    ("Rust", env!("IROH_RAFT_GUEST_KV")),
    ("Python", env!("IROH_RAFT_GUEST_KV_PYTHON")),
    ("JavaScript", env!("IROH_RAFT_GUEST_KV_JS")),
];

/// Puts timed one by one.
const PUTS: usize = 2_000;
/// Keys in the store whose snapshot and restore are timed.
const SNAPSHOT_KEYS: usize = 10_000;
/// Repetitions of the cheaper measurements (median reported).
const REPEATS: usize = 5;
/// Instantiations timed.
const INSTANTIATIONS: usize = 20;

fn entry(index: u64) -> EntryContext {
    EntryContext {
        index,
        term: 1,
        timestamp_ms: 1_767_225_600_000 + index,
    }
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    samples[((samples.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// A put of key `i` with a 32-byte value, as a client would send it.
fn put(i: usize) -> Vec<u8> {
    format!("put key{i:06} value-{i:06}-abcdefghijklmnopqrst").into_bytes()
}

fn bench(label: &str, path: &str) {
    assert!(
        Path::new(path).exists(),
        "{path} is missing: run `make guests-polyglot` first"
    );
    let bytes = std::fs::read(path).expect("read the component");

    // Cold: a fresh engine without a cache compiles the component.
    let engine = WasmEngine::new(None).expect("engine");
    let started = Instant::now();
    let loaded = engine.load(&bytes).expect("load");
    let cold = started.elapsed();

    // From the cache: a node restart. The first load fills the cache.
    let cache = tempfile::tempdir().expect("tempdir");
    WasmEngine::new(Some(cache.path().to_path_buf()))
        .expect("engine")
        .load(&bytes)
        .expect("load");
    let cached = median(
        (0..REPEATS)
            .map(|_| {
                let engine = WasmEngine::new(Some(cache.path().to_path_buf())).expect("engine");
                let started = Instant::now();
                engine.load(&bytes).expect("load from the cache");
                started.elapsed()
            })
            .collect(),
    );

    let limits = GuestLimits::default();
    let instantiate = median(
        (0..INSTANTIATIONS)
            .map(|_| {
                let started = Instant::now();
                let machine = StateMachine::new(loaded.clone(), limits).expect("instantiate");
                let elapsed = started.elapsed();
                drop(machine);
                elapsed
            })
            .collect(),
    );

    let mut machine = StateMachine::new(loaded.clone(), limits).expect("instantiate");
    let mut times = Vec::with_capacity(PUTS);
    let mut fuel = Vec::with_capacity(PUTS);
    for i in 0..PUTS {
        let command = put(i);
        let started = Instant::now();
        let outcome = machine.apply(entry(i as u64 + 1), &command).expect("apply");
        times.push(started.elapsed());
        assert_eq!(outcome.result.as_deref(), Ok(&b"OK"[..]), "{label}");
        fuel.push(outcome.fuel_used);
    }
    fuel.sort_unstable();
    let put_p50 = percentile(&mut times, 0.5);
    let put_p99 = percentile(&mut times, 0.99);

    let mut machine = StateMachine::new(loaded.clone(), limits).expect("instantiate");
    for i in 0..SNAPSHOT_KEYS {
        let outcome = machine.apply(entry(i as u64 + 1), &put(i)).expect("apply");
        assert!(outcome.result.is_ok(), "{label}");
    }
    let memory_bytes = machine.memory_bytes();
    let mut snapshot = Vec::new();
    let snapshot_time = median(
        (0..REPEATS)
            .map(|_| {
                let started = Instant::now();
                snapshot = machine.snapshot().expect("snapshot");
                started.elapsed()
            })
            .collect(),
    );
    let restore_time = median(
        (0..REPEATS)
            .map(|_| {
                let mut fresh = StateMachine::new(loaded.clone(), limits).expect("instantiate");
                let started = Instant::now();
                fresh
                    .restore(entry(SNAPSHOT_KEYS as u64), &snapshot)
                    .expect("restore");
                started.elapsed()
            })
            .collect(),
    );

    println!(
        "| {label} | {:.1} MiB | {:.0} ms | {:.1} ms | {:.2} ms | {:.1} µs / {:.1} µs | {} | {:.1} MiB | {:.0} KiB | {:.1} ms | {:.1} ms |",
        bytes.len() as f64 / (1024.0 * 1024.0),
        ms(cold),
        ms(cached),
        ms(instantiate),
        put_p50.as_secs_f64() * 1e6,
        put_p99.as_secs_f64() * 1e6,
        fuel[fuel.len() / 2],
        memory_bytes as f64 / (1024.0 * 1024.0),
        snapshot.len() as f64 / 1024.0,
        ms(snapshot_time),
        ms(restore_time),
    );
}

fn main() {
    println!(
        "kv guest per language: {PUTS} puts timed one by one; snapshot/restore of {SNAPSHOT_KEYS} keys"
    );
    println!();
    println!(
        "| guest | size | compile (cold) | load from cache | start-up | put p50 / p99 | fuel per put (median) | memory with 10k keys | snapshot size | snapshot | restore |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for (label, path) in GUESTS {
        bench(label, path);
    }
    println!();
    println!(
        "start-up: instantiate + info() + instantiate, as a node does (median of {INSTANTIATIONS}); \
         restore includes instantiating a fresh instance"
    );
}
