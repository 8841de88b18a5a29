//! Compare-and-swap under contention: clients running read-modify-write
//! loops with `cas` against the `kv_store` guest on a three-node cluster of
//! real `raft-host` processes, over one hot key and over 64 keys.
//!
//! Run: `make bench-cas` (or `cargo bench --bench cas_contention`;
//! `BENCH_SECONDS=10`, `BENCH_CLIENTS=16`, `BENCH_KEYS=1,64` override).
//! Each client loops: `get KEY meta` (a lease read on the leader, for the
//! key's revision), then `cas KEY REVISION VALUE` through the leader; a
//! `cas failed` answer means another client won that revision, and the
//! client reads again. Printed per key count: cas attempts per second,
//! the share that won, successful read-modify-writes per second, and the
//! p50/p99 of a cas round trip. See BENCHMARKS.md, "Compare-and-swap under
//! contention".

#[path = "../../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use iroh_raft::api::{ApiClient, ApiClientError};
use iroh_raft::node::Consistency;

use common::cluster::Cluster;

const DEFAULT_SECONDS: u64 = 10;
const DEFAULT_CLIENTS: usize = 16;
const DEFAULT_KEYS: &str = "1,64";

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What one client did.
#[derive(Default)]
struct Tally {
    won: u64,
    lost: u64,
    latencies: Vec<Duration>,
}

/// The key's mod revision (0: absent), from `get KEY meta`.
fn revision(client: &ApiClient, key: &str) -> u64 {
    match client.query_with(format!("get {key} meta").as_bytes(), Consistency::Lease) {
        Ok(answer) => {
            let text = answer.output.text.unwrap_or_default();
            let meta: serde_json::Value = serde_json::from_str(&text).expect("get meta: JSON");
            meta["mod_revision"].as_u64().expect("mod_revision")
        }
        Err(ApiClientError::Api(info)) if info.message.contains("not found") => 0,
        Err(error) => panic!("get {key} meta: {error}"),
    }
}

fn run_client(client: ApiClient, keys: Vec<String>, stop: Arc<AtomicBool>, seed: usize) -> Tally {
    let mut tally = Tally::default();
    let mut n = seed;
    while !stop.load(Ordering::Relaxed) {
        n = n
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let key = &keys[(n >> 33) % keys.len()];
        let expected = revision(&client, key);
        let started = Instant::now();
        let answer = client.propose(format!("cas {key} {expected} v{n}").as_bytes());
        tally.latencies.push(started.elapsed());
        match answer {
            Ok(_) => tally.won += 1,
            Err(ApiClientError::Api(info)) if info.message.contains("cas failed") => {
                tally.lost += 1;
            }
            Err(error) => panic!("cas {key}: {error}"),
        }
    }
    tally
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let seconds: u64 = env_or("BENCH_SECONDS", DEFAULT_SECONDS);
    let clients: usize = env_or("BENCH_CLIENTS", DEFAULT_CLIENTS);
    let key_counts: Vec<usize> = std::env::var("BENCH_KEYS")
        .unwrap_or_else(|_| DEFAULT_KEYS.into())
        .split(',')
        .map(|n| n.trim().parse().expect("BENCH_KEYS: numbers"))
        .collect();
    let cluster = Cluster::start(3, "kv_store", &[]);
    let leader = cluster.leader();
    println!(
        "\ncas under contention: {clients} clients, {seconds} s per row, through the leader\n"
    );
    println!("| keys | cas/s | won | read-modify-writes/s | cas p50 ms | cas p99 ms |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for &count in &key_counts {
        let keys: Vec<String> = (0..count).map(|i| format!("hot{count}-{i}")).collect();
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let threads: Vec<_> = (0..clients)
            .map(|i| {
                let (client, keys, stop) =
                    (cluster.member(leader).client(), keys.clone(), stop.clone());
                std::thread::spawn(move || run_client(client, keys, stop, i + 1))
            })
            .collect();
        std::thread::sleep(Duration::from_secs(seconds));
        stop.store(true, Ordering::Relaxed);
        let tallies: Vec<Tally> = threads
            .into_iter()
            .map(|t| t.join().expect("a client"))
            .collect();
        let elapsed = started.elapsed().as_secs_f64();
        let won: u64 = tallies.iter().map(|t| t.won).sum();
        let lost: u64 = tallies.iter().map(|t| t.lost).sum();
        let mut latencies: Vec<Duration> = tallies.into_iter().flat_map(|t| t.latencies).collect();
        latencies.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "| {count} | {:.0} | {:.0} % | {:.0} | {:.1} | {:.1} |",
            (won + lost) as f64 / elapsed,
            100.0 * won as f64 / (won + lost).max(1) as f64,
            won as f64 / elapsed,
            ms(percentile(&latencies, 0.5)),
            ms(percentile(&latencies, 0.99)),
        );
    }
}
