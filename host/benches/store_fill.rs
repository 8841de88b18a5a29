//! Guest state that outgrows guest memory: one node filled with 64 KiB
//! values, a store-backed guest against the memory one.
//!
//! Run: `cargo bench --bench store_fill` (prints a report; see
//! BENCHMARKS.md). `BENCH_FILL_MIB` sets how much state to write (default
//! 1024); `BENCH_GUEST` picks the guest: `hostile_store` (default; the
//! `kv-store` commands plus a trapping one) or `kv` (the 0.1.0 memory
//! guest, 256 MiB cap: its per-put cost explodes past ~130 MiB, so keep
//! `BENCH_FILL_MIB` small for it). `BENCH_DATA_DIR` puts the data dir
//! elsewhere.
//!
//! Measures, on a real node (sled on a temp dir, fsync on), one client:
//! 1. `put <key> <64 KiB value>` latency (p50, p99, max) per slice of the
//!    fill, so a latency that grows with the state shows;
//! 2. the cost of one trapping entry at the full state (`put-then-trap`)
//!    against a plain put;
//! 3. the process's resident memory at the end;
//! 4. restart (shutdown, start on the same data dir) until the first
//!    linearizable read answers.

#[path = "common/allocator.rs"]
mod allocator;
#[path = "common/process_memory.rs"]
mod process_memory;

use process_memory::memory_mib;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use iroh_raft::node::{self, Consistency, GuestSource, NoPeers, NodeConfig, NodeHandle};
use iroh_raft::wasm::GuestLimits;

/// Bytes of each value (`BENCH_VALUE_BYTES` overrides it).
const VALUE_BYTES: usize = 64 * 1024;
/// Slices of the fill reported separately.
const SLICES: u64 = 8;
/// Puts and trapping puts compared at the end.
const TRAP_SAMPLES: usize = 20;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn guest_path(name: &str) -> anyhow::Result<&'static str> {
    Ok(match name {
        "hostile_store" => env!("IROH_RAFT_GUEST_HOSTILE_STORE"),
        "kv_store" => env!("IROH_RAFT_GUEST_KV_STORE"),
        "kv" => env!("IROH_RAFT_GUEST_KV"),
        other => anyhow::bail!("unknown BENCH_GUEST {other}"),
    })
}

fn start(dir: &std::path::Path, guest: &str) -> anyhow::Result<NodeHandle> {
    let config = NodeConfig {
        guest: GuestSource::File(guest_path(guest)?.into()),
        limits: GuestLimits::default(),
        ..NodeConfig::new(dir)
    };
    node::start(config, NoPeers).context("starting the node")
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

async fn put(node: &NodeHandle, command: String) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let applied = node.propose(command.into_bytes()).await?;
    let elapsed = started.elapsed();
    applied
        .result
        .map_err(|failure| anyhow::anyhow!("the put failed: {failure}"))?;
    Ok(elapsed)
}

async fn run() -> anyhow::Result<()> {
    let guest = std::env::var("BENCH_GUEST").unwrap_or_else(|_| "hostile_store".into());
    let fill_mib = env_u64("BENCH_FILL_MIB", 1024);
    let dir = match std::env::var_os("BENCH_DATA_DIR") {
        Some(base) => tempfile::tempdir_in(base),
        None => tempfile::tempdir(),
    }?;
    let value_bytes = env_u64("BENCH_VALUE_BYTES", VALUE_BYTES as u64) as usize;
    let puts = fill_mib * 1024 * 1024 / value_bytes as u64;
    let value = "v".repeat(value_bytes);
    let node = start(dir.path(), &guest)?;
    println!(
        "# one node, guest {guest}, {puts} puts of a {value_bytes}-byte value ({fill_mib} MiB), \
         one client"
    );
    println!(
        "{:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "state MiB", "p50 ms", "p99 ms", "max ms", "puts/s", "RSS MiB"
    );
    let slice = puts.div_ceil(SLICES);
    let mut done = 0;
    while done < puts {
        let started = Instant::now();
        let mut latencies = Vec::new();
        for n in done..(done + slice).min(puts) {
            latencies.push(put(&node, format!("put f{n:012} {value}")).await?);
        }
        done += latencies.len() as u64;
        let elapsed = started.elapsed();
        latencies.sort();
        println!(
            "{:>10.0} {:>10.2} {:>10.2} {:>10.2} {:>10.0} {:>10.0}",
            (done * value_bytes as u64) as f64 / (1024.0 * 1024.0),
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.99),
            percentile(&latencies, 1.0),
            latencies.len() as f64 / elapsed.as_secs_f64(),
            memory_mib().0
        );
    }

    if guest == "hostile_store" {
        let (mut plain, mut trapping) = (Vec::new(), Vec::new());
        for n in 0..TRAP_SAMPLES {
            plain.push(put(&node, format!("put t{n} small")).await?);
            let started = Instant::now();
            let applied = node
                .propose(format!("put-then-trap t{n} small").into_bytes())
                .await?;
            trapping.push(started.elapsed());
            anyhow::ensure!(applied.result.is_err(), "put-then-trap must trap");
        }
        plain.sort();
        trapping.sort();
        println!(
            "# at {fill_mib} MiB: a plain put p50 {:.2} ms, a trapping put p50 {:.2} ms \
             (the trap's extra cost: {:.2} ms)",
            percentile(&plain, 0.5),
            percentile(&trapping, 0.5),
            percentile(&trapping, 0.5) - percentile(&plain, 0.5)
        );
    }
    let (rss, peak) = memory_mib();
    println!("# process memory: {rss:.0} MiB resident, {peak:.0} MiB peak");
    let status = node.status().await?;
    println!(
        "# guest: {} instance rebuilds, {} applied; store {:?}",
        status.guest.instance_rebuilds, status.guest.applied_entries, status.guest.store
    );

    node.shutdown().await;
    drop(node);
    let restarting = Instant::now();
    let node = start(dir.path(), &guest)?;
    let started = restarting.elapsed();
    let answer = node
        .query_with(b"get f000000000000".to_vec(), Consistency::Linearizable)
        .await?;
    anyhow::ensure!(answer.result.is_ok(), "the first read failed");
    println!(
        "# restart: node started in {:.0} ms, first linearizable read after {:.0} ms \
         ({} entries replayed into the guest)",
        started.as_secs_f64() * 1e3,
        restarting.elapsed().as_secs_f64() * 1e3,
        node.status().await?.guest.applied_entries
    );
    node.shutdown().await;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?
        .block_on(run())
}
