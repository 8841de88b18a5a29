//! Watch fan-out: what 0, 1, 100 and 1,000 watchers on one node cost a
//! three-node cluster of real `raft-host` processes (`kv_store` guest)
//! taking writes, and whether the watchers keep up.
//!
//! Run: `make bench-watch` (or `cargo bench --bench watch_fanout`;
//! `BENCH_WATCHERS=0,1,100,1000,1000:idle`, `BENCH_SECONDS=10`,
//! `BENCH_CLIENTS=64` override; `N:idle` watchers watch a prefix no write
//! touches). For each watcher count: that many `GET /v1/watch?prefix=k`
//! streams are opened on a follower, `raft-host bench` puts at the leader
//! for the duration (random keys under `k`, 128-byte values), and then the
//! bench waits until every watcher has received one event per write the
//! load generator got acknowledged. Printed per row: write ops/s and p99,
//! events delivered per second (all watchers), how long after the load
//! ended the last watcher had every event (`drain`), and the watched
//! follower's CPU per write (user + system, from /proc). See
//! BENCHMARKS.md, "Watch fan-out".

#[path = "../../tests/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::cluster::Cluster;

/// Watcher counts measured by default (`BENCH_WATCHERS` overrides).
/// `N` watches the written keys; `N:idle` watches a prefix no write
/// touches (what a watcher costs when nothing it asked for changes).
const DEFAULT_WATCHERS: &str = "0,1,100,1000,1000:idle";
/// Seconds of write load per row (`BENCH_SECONDS`).
const DEFAULT_SECONDS: u64 = 10;
/// Writers (`BENCH_CLIENTS`).
const DEFAULT_CLIENTS: u64 = 64;
/// Longest the watchers may take to receive every event after the load.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(120);

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One watch, read on a thread: it counts `changes` lines' events.
struct Watcher {
    events: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Watcher {
    fn open(api_url: &str, prefix: &str) -> Watcher {
        let url = format!("{api_url}/v1/watch?prefix={prefix}");
        let response = ureq::get(&url)
            .call()
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        let reader = response.into_body().into_reader();
        let events = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (counted, stopping) = (events.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(move || {
                let mut reader = BufReader::with_capacity(64 * 1024, reader);
                let mut line = String::new();
                loop {
                    line.clear();
                    match reader.read_line(&mut line) {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    if stopping.load(Ordering::Relaxed) {
                        return;
                    }
                    if line.starts_with(r#"{"type":"changes""#) {
                        // One event per put: count them without parsing.
                        let events = line.matches(r#""op":"#).count() as u64;
                        counted.fetch_add(events, Ordering::Relaxed);
                    } else if line.contains(r#""type":"compacted""#)
                        || line.contains(r#""type":"error""#)
                    {
                        panic!("a watcher was cut off: {line}");
                    }
                }
            })
            .expect("spawn a watcher thread");
        Watcher {
            events,
            stop,
            thread,
        }
    }
}

/// User + system CPU time of process `pid` so far.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces): utime is the
    // 12th, stime the 13th.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|f| f.parse::<u64>().ok()))
        .sum();
    // The kernel's USER_HZ is 100 on every Linux this runs on.
    Duration::from_millis(ticks * 10)
}

struct Row {
    watchers: usize,
    idle: bool,
    ops_per_sec: f64,
    p99_ms: f64,
    events_per_sec: f64,
    drain: Duration,
    follower_cpu_us_per_write: f64,
}

fn main() {
    let counts: Vec<(usize, bool)> = std::env::var("BENCH_WATCHERS")
        .unwrap_or_else(|_| DEFAULT_WATCHERS.into())
        .split(',')
        .map(|spec| {
            let (n, idle) = match spec.trim().split_once(':') {
                Some((n, "idle")) => (n, true),
                _ => (spec.trim(), false),
            };
            (n.parse().expect("BENCH_WATCHERS: N or N:idle"), idle)
        })
        .collect();
    let seconds: u64 = env_or("BENCH_SECONDS", DEFAULT_SECONDS);
    let clients: u64 = env_or("BENCH_CLIENTS", DEFAULT_CLIENTS);
    let most = counts.iter().map(|c| c.0).max().unwrap_or(0).max(1);
    let max_watchers = (most + 16).to_string();
    let max_connections = (most + 256).to_string();
    let cluster = Cluster::start(
        3,
        "kv_store",
        &[
            "--max-watchers",
            &max_watchers,
            "--api-max-connections",
            &max_connections,
        ],
    );
    let leader = cluster.leader();
    let follower = cluster.follower_of(leader);
    let leader_url = cluster.member(leader).process().api_url.clone();
    let follower_process = cluster.member(follower).process();
    let follower_pid = follower_process.child.id();
    let mut rows = Vec::new();
    for &(count, idle) in &counts {
        let prefix = if idle { "idle/" } else { "k" };
        let watchers: Vec<Watcher> = (0..count)
            .map(|_| Watcher::open(&follower_process.api_url, prefix))
            .collect();
        let cpu_before = cpu_time(follower_pid);
        let started = Instant::now();
        let output = common::raft_host()
            .args([
                "bench",
                "--endpoints",
                &leader_url,
                "--clients",
                &clients.to_string(),
                "--duration-secs",
                &seconds.to_string(),
                "--json",
            ])
            .output()
            .expect("run raft-host bench");
        let load_ended = Instant::now();
        assert!(
            output.status.success(),
            "raft-host bench: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let report: serde_json::Value =
            serde_json::from_slice(&output.stdout).expect("bench --json output");
        let ops = report["ops"].as_u64().expect("ops");
        let ops_per_sec = report["ops_per_sec"].as_f64().expect("ops_per_sec");
        let p99_ms = report["latency_us"]["p99"].as_f64().expect("p99") / 1000.0;
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        let drain = loop {
            if idle
                || watchers
                    .iter()
                    .all(|w| w.events.load(Ordering::Relaxed) >= ops)
            {
                break load_ended.elapsed();
            }
            assert!(
                Instant::now() < deadline,
                "watchers still short of {ops} events after {DRAIN_TIMEOUT:?}"
            );
            std::thread::sleep(Duration::from_millis(5));
        };
        let cpu = cpu_time(follower_pid).saturating_sub(cpu_before);
        let delivered: u64 = watchers
            .iter()
            .map(|w| w.events.load(Ordering::Relaxed))
            .sum();
        rows.push(Row {
            watchers: count,
            idle,
            ops_per_sec,
            p99_ms,
            events_per_sec: delivered as f64 / (started.elapsed().as_secs_f64()),
            drain,
            follower_cpu_us_per_write: cpu.as_micros() as f64 / ops.max(1) as f64,
        });
        // Close this row's watches before the next: each thread returns
        // (dropping its connection) at the next line, which one more write
        // sends them all.
        for watcher in &watchers {
            watcher.stop.store(true, Ordering::Relaxed);
        }
        if !watchers.is_empty() {
            let wake = format!("put {prefix}stop 1");
            cluster
                .member(leader)
                .client()
                .propose(wake.as_bytes())
                .expect("a write to wake the watchers");
        }
        for watcher in watchers {
            watcher.thread.join().expect("a watcher thread");
        }
    }
    println!("\nwatch fan-out: {clients} writers, {seconds} s per row, watchers on one follower\n");
    println!(
        "| watchers | writes/s | vs none | p99 ms | events/s delivered | drain after load | follower CPU µs/write |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    let base = rows.iter().find(|r| r.watchers == 0).map(|r| r.ops_per_sec);
    for row in &rows {
        let ratio = base.map_or("—".to_string(), |b| format!("{:.2}", row.ops_per_sec / b));
        let idle = if row.idle { " (idle prefix)" } else { "" };
        println!(
            "| {}{idle} | {:.0} | {ratio} | {:.1} | {:.0} | {} ms | {:.0} |",
            row.watchers,
            row.ops_per_sec,
            row.p99_ms,
            row.events_per_sec,
            row.drain.as_millis(),
            row.follower_cpu_us_per_write,
        );
    }
}
