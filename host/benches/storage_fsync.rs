//! What durability costs in the sled log store.
//!
//! Appends entries with a hard state through `SledStorage::append_and_persist`,
//! the call the node makes for every `Ready`, and compares:
//!
//! - `flush only`: sled's `flush()` (ends in `sync_file_range` on Linux), NOT
//!   durable against power loss; only here to show what the extra sync costs;
//! - `flush + fdatasync, no mark`: durable, without the durable mark;
//! - `+ durable mark`: what ships: the same, and the background thread
//!   recording what was made durable (`host/src/storage/durable_mark.rs`),
//!   one more `fdatasync` of a small file per write (coalesced).
//!
//! Run: `cargo bench --bench storage_fsync` (set `STORAGE_BENCH_DIR` to measure
//! another disk; the default is cargo's target tmp dir, not a tmpfs `/tmp`).

#[path = "common/allocator.rs"]
mod allocator;

use std::error::Error;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use iroh_raft::storage::SledStorage;
use raft::prelude::{Entry, HardState};

/// Measured appends per case.
const ITERATIONS: usize = 2000;
/// Appends before measuring, so sled's first segment allocation is not counted.
const WARMUP_ITERATIONS: usize = 50;
/// Payload of every entry.
const PAYLOAD_BYTES: usize = 128;

#[derive(Debug, Clone, Copy)]
struct Case {
    durability: &'static str,
    fdatasync: bool,
    /// Record the durable mark (a second, background `fdatasync`), as a node does.
    durable_mark: bool,
    entries_per_append: u64,
}

const CASES: [Case; 6] = [
    Case {
        durability: "flush only (not durable)",
        fdatasync: false,
        durable_mark: false,
        entries_per_append: 1,
    },
    Case {
        durability: "flush + fdatasync, no mark",
        fdatasync: true,
        durable_mark: false,
        entries_per_append: 1,
    },
    Case {
        durability: "+ durable mark (shipped)",
        fdatasync: true,
        durable_mark: true,
        entries_per_append: 1,
    },
    Case {
        durability: "flush only (not durable)",
        fdatasync: false,
        durable_mark: false,
        entries_per_append: 64,
    },
    Case {
        durability: "flush + fdatasync, no mark",
        fdatasync: true,
        durable_mark: false,
        entries_per_append: 64,
    },
    Case {
        durability: "+ durable mark (shipped)",
        fdatasync: true,
        durable_mark: true,
        entries_per_append: 64,
    },
];

#[derive(Debug)]
struct Stats {
    p50: Duration,
    p99: Duration,
    max: Duration,
    appends_per_s: f64,
    entries_per_s: f64,
}

fn main() -> Result<(), Box<dyn Error>> {
    let base = std::env::var_os("STORAGE_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")));
    std::fs::create_dir_all(&base)?;
    println!(
        "storage_fsync: {ITERATIONS} appends per case ({WARMUP_ITERATIONS} warm-up), \
         {PAYLOAD_BYTES}-byte payloads, each append with a hard state, in {}",
        base.display()
    );
    println!();
    println!(
        "| durability                  | entries/append | p50 (us) | p99 (us) | max (us) | appends/s | entries/s |"
    );
    println!(
        "|-----------------------------|---------------:|---------:|---------:|---------:|----------:|----------:|"
    );
    for case in CASES {
        let stats = run(&base, case)?;
        println!(
            "| {:<27} | {:>14} | {:>8} | {:>8} | {:>8} | {:>9.0} | {:>9.0} |",
            case.durability,
            case.entries_per_append,
            stats.p50.as_micros(),
            stats.p99.as_micros(),
            stats.max.as_micros(),
            stats.appends_per_s,
            stats.entries_per_s,
        );
    }
    compaction(&base)?;
    Ok(())
}

/// Entries behind a snapshot removed by one compaction step, as the node
/// does after a snapshot (`COMPACTION_BATCH_ENTRIES` per round of its loop).
const COMPACTION_LOG_ENTRIES: u64 = 250_000;
/// Payload of the compacted entries: the large-state bench's 1 KiB puts.
const COMPACTION_PAYLOAD_BYTES: usize = 1024;

/// What one compaction step costs: a log of [`COMPACTION_LOG_ENTRIES`]
/// entries, a snapshot at its end, then `compact` one batch at a time,
/// timing each batch and an append right after it (what a write waits for
/// while the log behind a snapshot is removed).
fn compaction(base: &std::path::Path) -> Result<(), Box<dyn Error>> {
    use iroh_raft::limits::COMPACTION_BATCH_ENTRIES;
    let dir = tempfile::Builder::new()
        .prefix("storage-compaction-")
        .tempdir_in(base)?;
    let storage = SledStorage::open(dir.path())?;
    let payload = vec![0x5Au8; COMPACTION_PAYLOAD_BYTES];
    let mut next = 1u64;
    while next <= COMPACTION_LOG_ENTRIES {
        let entries = entries(next, 1000, &payload);
        let hard_state = HardState {
            term: 1,
            vote: 1,
            commit: next + 999,
            ..Default::default()
        };
        storage.append_and_persist(&entries, Some(&hard_state))?;
        next += 1000;
    }
    let last = next - 1;
    let mut snapshot = raft::prelude::Snapshot::default();
    snapshot.mut_metadata().index = last;
    snapshot.mut_metadata().term = 1;
    storage.save_snapshot(&snapshot)?;

    let mut steps = Vec::new();
    let mut appends = Vec::new();
    let started = Instant::now();
    let mut first = storage.first_log_index();
    while first <= last {
        let to = (first + COMPACTION_BATCH_ENTRIES).min(last + 1);
        let step = Instant::now();
        storage.compact(to)?;
        steps.push(step.elapsed());
        let entry = Entry {
            index: next,
            term: 1,
            data: payload.clone().into(),
            ..Default::default()
        };
        let append = Instant::now();
        storage.append_and_persist(&[entry], None)?;
        appends.push(append.elapsed());
        next += 1;
        first = to;
    }
    let total = started.elapsed();
    let summary = |mut times: Vec<Duration>| {
        times.sort_unstable();
        let at = |p: usize| times[(times.len() * p / 100).min(times.len() - 1)].as_micros();
        format!("p50 {} us, p99 {} us, max {} us", at(50), at(99), at(100))
    };
    println!();
    println!(
        "compaction: {COMPACTION_LOG_ENTRIES} entries of {COMPACTION_PAYLOAD_BYTES} bytes behind a \
         snapshot, removed {COMPACTION_BATCH_ENTRIES} per step: {} steps in {:.2} s",
        steps.len(),
        total.as_secs_f64()
    );
    println!("  one step: {}", summary(steps));
    println!("  an append right after it: {}", summary(appends));
    Ok(())
}

/// `count` entries of term 1 from index `first`, each carrying `payload`.
fn entries(first: u64, count: u64, payload: &[u8]) -> Vec<Entry> {
    (first..first + count)
        .map(|index| Entry {
            index,
            term: 1,
            data: payload.to_vec().into(),
            ..Default::default()
        })
        .collect()
}

fn run(base: &std::path::Path, case: Case) -> Result<Stats, Box<dyn Error>> {
    let dir = tempfile::Builder::new()
        .prefix("storage-fsync-")
        .tempdir_in(base)?;
    let storage = SledStorage::open(dir.path())?;
    storage.set_fdatasync_for_bench(case.fdatasync);
    storage.set_durable_mark_for_bench(case.durable_mark);
    let payload = vec![0xA5u8; PAYLOAD_BYTES];

    let mut next_index = 1u64;
    let mut latencies = Vec::with_capacity(ITERATIONS);
    for iteration in 0..WARMUP_ITERATIONS + ITERATIONS {
        let entries = entries(next_index, case.entries_per_append, &payload);
        // As in a follower's Ready: the commit trails the new entries.
        let hard_state = HardState {
            term: 1,
            vote: 1,
            commit: next_index - 1,
            ..Default::default()
        };
        let started = Instant::now();
        storage.append_and_persist(&entries, Some(&hard_state))?;
        let elapsed = started.elapsed();
        if iteration >= WARMUP_ITERATIONS {
            latencies.push(elapsed);
        }
        next_index += case.entries_per_append;
    }

    let total: Duration = latencies.iter().sum();
    latencies.sort_unstable();
    let percentile = |p: usize| latencies[(latencies.len() * p / 100).min(latencies.len() - 1)];
    let appends_per_s = ITERATIONS as f64 / total.as_secs_f64();
    Ok(Stats {
        p50: percentile(50),
        p99: percentile(99),
        max: latencies[latencies.len() - 1],
        appends_per_s,
        entries_per_s: appends_per_s * case.entries_per_append as f64,
    })
}
