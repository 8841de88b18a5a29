//! A memory-state guest at its memory cap: how much state fits, and what a
//! node does once its state no longer does.
//!
//! Run: `cargo bench --bench memory_state` (prints a report; see
//! BENCHMARKS.md). `BENCH_CAP_MIB` sets the node's memory cap in part 2
//! (default 256, the default cap).
//!
//! 1. The kv guest alone, filled with 64 KiB values, a `snapshot()` tried
//!    after every 1/64 of the cap: the largest state that serializes, per
//!    cap (docs/guests.md quotes this table).
//! 2. A real node (sled on a temp dir, fsync on, the kv guest) filled with
//!    64 KiB puts by one client until it refuses them (`guest_stalled`):
//!    per-put latency before and after its checkpoints start failing, and
//!    the guest's instance rebuilds; then a restart and the time until the
//!    first linearizable read answers.

#[path = "common/allocator.rs"]
mod allocator;

use std::time::{Duration, Instant};

use iroh_raft::node::{self, ClientError, GuestSource, NoPeers, NodeConfig, NodeHandle};
use iroh_raft::wasm::{EntryContext, GuestLimits, StateMachine, WasmEngine};

const MIB: u64 = 1024 * 1024;
const VALUE_BYTES: usize = 64 * 1024;
/// More puts than any cap measured here can hold.
const MAX_PUTS: u64 = 1_000_000;

fn kv_path() -> &'static str {
    env!("IROH_RAFT_GUEST_KV")
}

fn put_command(i: u64) -> Vec<u8> {
    let value = format!("{i:08}").repeat(VALUE_BYTES / 8);
    format!("put k{i} {value}").into_bytes()
}

fn mib(bytes: f64) -> f64 {
    bytes / MIB as f64
}

/// Part 1: the largest kv state that serializes under each cap.
fn state_limit_per_cap(engine: &WasmEngine) {
    let component = engine
        .load(&std::fs::read(kv_path()).expect("kv guest"))
        .expect("load");
    println!("| memory cap | largest state that snapshots | first that does not |");
    println!("|---|---|---|");
    for cap_mib in [16, 64, 256, 1024] {
        let limits = GuestLimits {
            memory_limit_bytes: cap_mib * MIB,
            ..GuestLimits::default()
        };
        let mut machine = StateMachine::new(component.clone(), limits).expect("instance");
        let puts_per_try = (cap_mib * MIB / 64 / VALUE_BYTES as u64).max(1);
        let (mut index, mut last_good) = (0, 0);
        let state = |puts: u64| mib((puts * VALUE_BYTES as u64) as f64);
        let failure = loop {
            for _ in 0..puts_per_try {
                index += 1;
                let entry = EntryContext {
                    index,
                    term: 1,
                    timestamp_ms: 0,
                };
                let outcome = machine.apply(entry, &put_command(index)).expect("apply");
                outcome.result.expect("the put fits");
            }
            match machine.snapshot() {
                Ok(_) => last_good = index,
                Err(error) => break error,
            }
        };
        println!(
            "| {cap_mib} MiB | {:.1} MiB | {:.1} MiB |",
            state(last_good),
            state(index)
        );
        eprintln!("  ({cap_mib} MiB: {failure})");
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

fn print_phase(label: &str, latencies: &mut [Duration]) {
    latencies.sort();
    println!(
        "{label:<44} {:>6} puts   p50 {:>7.1} ms   p99 {:>7.1} ms   max {:>7.1} ms",
        latencies.len(),
        percentile(latencies, 0.50),
        percentile(latencies, 0.99),
        latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1e3)
    );
}

fn start(dir: &std::path::Path, limits: GuestLimits) -> NodeHandle {
    let config = NodeConfig {
        guest: GuestSource::File(kv_path().into()),
        limits,
        ..NodeConfig::new(dir)
    };
    node::start(config, NoPeers).expect("node starts")
}

/// Part 2: a node filled past its cap, then restarted.
async fn node_past_its_cap(cap_mib: u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let limits = GuestLimits {
        memory_limit_bytes: cap_mib * MIB,
        ..GuestLimits::default()
    };
    let node = start(dir.path(), limits);
    let (mut before, mut after) = (Vec::new(), Vec::new());
    let mut failing_at = None;
    let mut stored = 0;
    let started = Instant::now();
    for i in 1..=MAX_PUTS {
        let t = Instant::now();
        match node.propose(put_command(i)).await {
            Ok(applied) => stored += u64::from(applied.result.is_ok()),
            Err(ClientError::GuestStalled { reason }) => {
                println!("refused from put {i}: {reason}");
                break;
            }
            Err(other) => panic!("put {i}: {other}"),
        }
        let elapsed = t.elapsed();
        if failing_at.is_none() {
            let guest = node.status().await.expect("status").guest;
            failing_at = guest.checkpoint_failing_since.map(|_| i);
        }
        if failing_at.is_some() {
            after.push(elapsed);
        } else {
            before.push(elapsed);
        }
    }
    let fill = started.elapsed();
    let status = node.status().await.expect("status");
    println!(
        "# node, kv guest, {cap_mib} MiB cap, 64 KiB puts, 1 client: {stored} stored \
         ({:.0} MiB) in {:.1} s",
        mib((stored * VALUE_BYTES as u64) as f64),
        fill.as_secs_f64()
    );
    print_phase("while checkpoints succeed", &mut before);
    print_phase("once they fail, until refused", &mut after);
    println!(
        "checkpoints failing from put {}; {} checkpoint failures, {} instance rebuilds, \
         {} entries applied; snapshot on disk at index {:?}, log from {}",
        failing_at.unwrap_or(0),
        status.guest.checkpoint_failures,
        status.guest.instance_rebuilds,
        status.guest.applied_entries,
        status.snapshot_index,
        status.first_log_index
    );
    node.shutdown().await;
    drop(node);

    let started = Instant::now();
    let node = start(dir.path(), limits);
    let count = node.query(b"count".to_vec()).await.expect("first read");
    let elapsed = started.elapsed();
    let status = node.status().await.expect("status");
    println!(
        "restart to the first linearizable read: {:.1} s ({} entries replayed, {} instance \
         rebuilds, count {}, refusing commands: {})",
        elapsed.as_secs_f64(),
        status.guest.applied_entries,
        status.guest.instance_rebuilds,
        String::from_utf8_lossy(&count.result.expect("count")),
        status.guest.refusing_commands
    );
    node.shutdown().await;
}

fn main() {
    let cap_mib = std::env::var("BENCH_CAP_MIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(256);
    let engine = WasmEngine::new(None).expect("engine");
    println!("# the kv guest alone: the largest state that serializes, per memory cap");
    state_limit_per_cap(&engine);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(node_past_its_cap(cap_mib));
}
