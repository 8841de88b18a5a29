//! Single-node throughput and latency, and the cost of a guest `apply`.
//!
//! Run: `cargo bench --bench single_node` (prints a report; see
//! BENCHMARKS.md). Set `BENCH_SECONDS` to change the duration per run.
//!
//! Measures, on a real node (sled on a temp dir, fsync on, counter guest):
//! 1. proposals committed and applied per second, and p50/p99 latency, with 1
//!    and 64 concurrent clients, through the library handle and through the
//!    HTTP API;
//! 2. one guest `apply` of `add 1` versus the same logic in native Rust.

#[path = "common/allocator.rs"]
mod allocator;

use std::time::{Duration, Instant};

use iroh_raft::api::ApiClient;
use iroh_raft::node::{self, NoPeers, NodeConfig, NodeHandle};
use iroh_raft::wasm::{EntryContext, GuestLimits, StateMachine, WasmEngine};

fn bench_duration() -> Duration {
    let seconds = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5.0);
    Duration::from_secs_f64(seconds)
}

struct Report {
    ops: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Report {
    fn print(&mut self, label: &str) {
        self.latencies.sort();
        let pct = |p: f64| {
            let i = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
            self.latencies[i]
        };
        println!(
            "{label:<34} {:>9.0} ops/s   p50 {:>8.1} µs   p99 {:>8.1} µs   ({} ops)",
            self.ops as f64 / self.elapsed.as_secs_f64(),
            pct(0.50).as_secs_f64() * 1e6,
            pct(0.99).as_secs_f64() * 1e6,
            self.ops
        );
    }
}

async fn library_clients(node: &NodeHandle, clients: usize, duration: Duration) -> Report {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let node = node.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while started.elapsed() < duration {
                let t = Instant::now();
                let applied = node.propose(b"add 1".to_vec()).await.expect("propose");
                applied.result.expect("guest ok");
                latencies.push(t.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.expect("client"));
    }
    Report {
        ops: latencies.len(),
        elapsed: started.elapsed(),
        latencies,
    }
}

fn http_clients(url: &str, clients: usize, duration: Duration) -> Report {
    let started = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let client = ApiClient::new(url);
            std::thread::spawn(move || {
                let mut latencies = Vec::new();
                while started.elapsed() < duration {
                    let t = Instant::now();
                    client.propose(b"add 1").expect("propose");
                    latencies.push(t.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for thread in threads {
        latencies.extend(thread.join().expect("client"));
    }
    Report {
        ops: latencies.len(),
        elapsed: started.elapsed(),
        latencies,
    }
}

fn guest_versus_native(iterations: u32) {
    let engine = WasmEngine::new(None).expect("engine");
    let bytes = std::fs::read(env!("IROH_RAFT_GUEST_COUNTER")).expect("counter guest");
    let component = engine.load(&bytes).expect("load");
    let mut machine = StateMachine::new(component, GuestLimits::default()).expect("instance");
    let started = Instant::now();
    let mut fuel = 0;
    for i in 0..iterations {
        let entry = EntryContext {
            index: u64::from(i) + 1,
            term: 1,
            timestamp_ms: 0,
        };
        let outcome = machine.apply(entry, b"add 1").expect("apply");
        fuel = outcome.fuel_used;
        outcome.result.expect("guest ok");
    }
    let guest = started.elapsed() / iterations;

    let mut native = counter_logic::Counter::default();
    let started = Instant::now();
    for _ in 0..iterations {
        std::hint::black_box(native.apply(std::hint::black_box(b"add 1")).expect("ok"));
    }
    let native_time = started.elapsed() / iterations;
    println!(
        "guest apply `add 1`                {:>9.2} µs/op   ({fuel} fuel)",
        guest.as_secs_f64() * 1e6
    );
    println!(
        "native Rust, same logic            {:>9.3} µs/op   (guest/native = {:.0}x)",
        native_time.as_secs_f64() * 1e6,
        guest.as_secs_f64() / native_time.as_secs_f64()
    );
}

fn main() {
    let duration = bench_duration();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!("# single node, counter guest, sled with fsync, {duration:?} per run");
    runtime.block_on(async {
        for clients in [1, 64] {
            let dir = tempfile::tempdir().expect("tempdir");
            let node = node::start(NodeConfig::new(dir.path()), NoPeers).expect("node");
            let mut report = library_clients(&node, clients, duration).await;
            report.print(&format!("library handle, {clients} clients"));
            node.shutdown().await;
        }
        for clients in [1, 64] {
            let dir = tempfile::tempdir().expect("tempdir");
            let node = node::start(NodeConfig::new(dir.path()), NoPeers).expect("node");
            let server = iroh_raft::api::serve(node.clone(), "127.0.0.1:0".parse().expect("addr"))
                .await
                .expect("serve");
            let url = format!("http://{}", server.local_addr);
            let mut report =
                tokio::task::spawn_blocking(move || http_clients(&url, clients, duration))
                    .await
                    .expect("clients");
            report.print(&format!("HTTP API, {clients} clients"));
            node.shutdown().await;
        }
    });
    guest_versus_native(100_000);
}
