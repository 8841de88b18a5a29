//! `raft-host bench`: a closed-loop load generator against running nodes,
//! like etcd's `benchmark` tool.
//!
//! N clients share M keep-alive HTTP/1.1 connections (client `i` uses
//! connection `i % M`; a connection carries one request at a time). Each
//! client has one request in flight: it sends, waits for the answer, records
//! the latency (including the wait for its connection), and sends the next.
//! Writes are `put <key> <value>` proposals to `POST /v1/propose`, reads
//! `get <key>` queries to `POST /v1/query`, for a guest that speaks the kv
//! grammar (`guests/kv`); keys are drawn at random from a key space
//! (`--prefill` first writes each of them once, so reads find them).
//!
//! ```text
//!  client 0 ─┐                      ┌─> endpoint (the leader, or each given one)
//!  client 1 ─┼─> connection 0 ──────┤
//!  client 2 ─┘   (one in flight)    │
//!  ...       ──> connection M-1 ────┘
//!         │
//!         └─> own histogram + error counts, merged at the end
//! ```
//!
//! The client is tokio + hyper (not the CLI's blocking client): hundreds of
//! connections from one process on a few threads.

mod histogram;
mod http;
mod report;

use std::collections::BTreeMap;
use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use clap::builder::TypedValueParser as _;
use clap::{Args, ValueEnum};
use iroh_raft_client::{Consistency, DEFAULT_API_URL};
use serde::Serialize;
use tokio::sync::Mutex;

use self::histogram::Histogram;
use self::http::{Connection, Endpoint, Failure, find_leader, parse_endpoint, send};
use self::report::{Latency, Report, print_table, show_progress};

/// Clients when `--clients` is not given.
pub const DEFAULT_CLIENTS: usize = 16;
/// The most clients (and connections) one bench runs: each holds a
/// histogram and possibly a socket.
pub const MAX_CLIENTS: usize = 4096;
/// Run time when neither `--duration-secs` nor `--count` is given.
pub const DEFAULT_DURATION_SECS: u64 = 10;
/// The longest `--duration-secs` (a day).
pub const MAX_DURATION_SECS: u64 = 24 * 60 * 60;
/// Key length, bytes: `k` and the key's number, zero-padded (like etcd's
/// benchmark, whose default key is 8 bytes; ours carries a prefix).
pub const DEFAULT_KEY_BYTES: usize = 10;
/// Value length, bytes (etcd's `check perf` writes 128-byte values... and so
/// does the comparison in BENCHMARKS.md).
pub const DEFAULT_VALUE_BYTES: usize = 128;
/// Longest key and value the bench sends (the kv guest's own limits are
/// 1 KiB keys and 1 MiB values).
pub const MAX_KEY_BYTES: usize = 1024;
pub const MAX_VALUE_BYTES: usize = 1024 * 1024;
/// Distinct keys when `--key-space` is not given.
pub const DEFAULT_KEY_SPACE: u64 = 100_000;
/// How long one request may take before it counts as a `timeout` error
/// (its connection is then dropped and opened again).
pub const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 10_000;
/// Pause after a failed connect before the client tries again: a node that
/// is down is not hammered in a tight loop (the failure is counted).
const RECONNECT_BACKOFF: Duration = Duration::from_millis(100);
/// Distinct error kinds kept per client; any further kind counts as `other`.
const MAX_ERROR_KINDS: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Workload {
    /// `put <key> <value>` through `POST /v1/propose` (waits until applied).
    Put,
    /// `get <key>` through `POST /v1/query`, at `--consistency`.
    Get,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// Only the endpoint whose node leads (asked through `/v1/status`).
    Leader,
    /// Every endpoint given, connections spread round-robin.
    All,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// What each request does.
    #[arg(long, value_enum, default_value_t = Workload::Put)]
    workload: Workload,
    /// The nodes' API URLs (comma-separated or repeated; plain http).
    #[arg(long, visible_alias = "api", value_name = "URL", value_delimiter = ',',
          default_value = DEFAULT_API_URL, env = "RAFT_HOST_API")]
    endpoints: Vec<String>,
    /// Which endpoints get the load.
    #[arg(long, value_enum, default_value_t = Target::Leader)]
    target: Target,
    /// Concurrent clients, each with one request in flight.
    #[arg(long, default_value_t = DEFAULT_CLIENTS,
          value_parser = clap::value_parser!(u64).range(1..=MAX_CLIENTS as u64).map(|n| n as usize))]
    clients: usize,
    /// Connections the clients share [default: one per client].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=MAX_CLIENTS as u64).map(|n| n as usize))]
    connections: Option<usize>,
    /// Run this long [default: 10 s, unless --count].
    #[arg(long, value_name = "SECS", conflicts_with = "count",
          value_parser = clap::value_parser!(u64).range(1..=MAX_DURATION_SECS))]
    duration_secs: Option<u64>,
    /// Run until this many requests completed (errors included).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    count: Option<u64>,
    /// Key length in bytes.
    #[arg(long, default_value_t = DEFAULT_KEY_BYTES,
          value_parser = clap::value_parser!(u64).range(1..=MAX_KEY_BYTES as u64).map(|n| n as usize))]
    key_bytes: usize,
    /// Value length in bytes (puts).
    #[arg(long, default_value_t = DEFAULT_VALUE_BYTES,
          value_parser = clap::value_parser!(u64).range(0..=MAX_VALUE_BYTES as u64).map(|n| n as usize))]
    value_bytes: usize,
    /// Distinct keys, drawn uniformly at random.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_KEY_SPACE,
          value_parser = clap::value_parser!(u64).range(1..))]
    key_space: u64,
    /// The reads' consistency: linearizable, lease or stale.
    #[arg(long, default_value = "linearizable")]
    consistency: Consistency,
    /// Before measuring, put every key of the key space once (the kv
    /// guest answers `get` of a missing key with an error), with the same
    /// clients; not measured.
    #[arg(long)]
    prefill: bool,
    /// One request's budget, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = DEFAULT_REQUEST_TIMEOUT_MS,
          value_parser = clap::value_parser!(u64).range(1..))]
    timeout_ms: u64,
    /// Bearer token for nodes with --api-tokens (prefer the environment
    /// variable or --token-file).
    #[arg(
        long,
        value_name = "TOKEN",
        env = "RAFT_HOST_TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,
    /// Read the bearer token from this file (its first line).
    #[arg(long, value_name = "FILE", env = "RAFT_HOST_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// `-o json`: the report as JSON on stdout (`table` and `text`: the
    /// report's table).
    #[command(flatten)]
    output: crate::output::OutputArgs,
}

/// When the clients stop sending.
#[derive(Debug, Clone, Copy)]
enum Stop {
    At(Instant),
    AfterCount(u64),
}

/// What every client reads.
struct Plan {
    workload: Workload,
    key_bytes: usize,
    value_bytes: usize,
    key_space: u64,
    consistency: Consistency,
    timeout: Duration,
    authorization: Option<String>,
    /// The token of `authorization`, for the client crate.
    token: Option<String>,
}

/// Counters the progress line reads while the clients run.
#[derive(Default)]
struct Progress {
    /// Requests started (count mode stops at `--count`).
    started: AtomicU64,
    ok: AtomicU64,
    errors: AtomicU64,
}

/// What one client saw.
#[derive(Default)]
struct ClientResult {
    latencies: Histogram,
    errors: BTreeMap<String, u64>,
}

impl ClientResult {
    fn error(&mut self, kind: String) {
        let kind = if self.errors.len() >= MAX_ERROR_KINDS && !self.errors.contains_key(&kind) {
            "other".to_string()
        } else {
            kind
        };
        *self.errors.entry(kind).or_default() += 1;
    }
}

pub fn run_bench(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let connections = args.connections.unwrap_or(args.clients);
    if connections > args.clients {
        bail!(
            "--connections {connections} is more than --clients {}: a connection without a \
             client would stay idle",
            args.clients
        );
    }
    let digits = (args.key_space - 1).checked_ilog10().unwrap_or(0) as usize + 1;
    if args.key_bytes < digits + 1 {
        bail!(
            "--key-bytes {} is too short for --key-space {}: a key is `k` and {digits} digits",
            args.key_bytes,
            args.key_space
        );
    }
    let endpoints = args
        .endpoints
        .iter()
        .map(|url| parse_endpoint(url))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if endpoints.is_empty() {
        bail!("--endpoints is empty");
    }
    let token = crate::client::read_token(args.token_file.as_deref(), args.token.as_deref())?;
    let plan = Plan {
        workload: args.workload,
        key_bytes: args.key_bytes,
        value_bytes: args.value_bytes,
        key_space: args.key_space,
        consistency: args.consistency,
        timeout: Duration::from_millis(args.timeout_ms),
        authorization: token.as_ref().map(|token| format!("Bearer {token}")),
        token,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the bench's runtime")?;
    let report = runtime.block_on(bench(&args, connections, endpoints, plan))?;
    if args.output.format() == crate::output::Format::Json {
        crate::output::json(&report)?;
    } else {
        print_table(&report);
    }
    Ok(if report.ops == 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

async fn bench(
    args: &BenchArgs,
    connection_count: usize,
    endpoints: Vec<Endpoint>,
    plan: Plan,
) -> anyhow::Result<Report> {
    let targets = match args.target {
        Target::All => endpoints,
        Target::Leader => vec![find_leader(&endpoints, plan.token.as_deref()).await?],
    };
    let connections: Vec<Arc<Connection>> = (0..connection_count)
        .map(|i| {
            Arc::new(Connection {
                endpoint: targets[i % targets.len()].clone(),
                sender: Mutex::new(None),
            })
        })
        .collect();
    let plan = Arc::new(plan);
    if args.prefill {
        prefill(args.clients, &connections, &plan).await?;
    }
    let stop = match (args.count, args.duration_secs) {
        (Some(count), _) => Stop::AfterCount(count),
        (None, secs) => {
            Stop::At(Instant::now() + Duration::from_secs(secs.unwrap_or(DEFAULT_DURATION_SECS)))
        }
    };
    let progress = Arc::new(Progress::default());
    let started = Instant::now();
    let progress_line = std::io::stderr()
        .is_terminal()
        .then(|| tokio::spawn(show_progress(Arc::clone(&progress), started)));
    let mut clients = tokio::task::JoinSet::new();
    for client in 0..args.clients {
        let connection = Arc::clone(&connections[client % connection_count]);
        let plan = Arc::clone(&plan);
        let progress = Arc::clone(&progress);
        clients.spawn(run_client(client as u64, connection, plan, progress, stop));
    }
    let mut latencies = Histogram::default();
    let mut errors_by_kind = BTreeMap::new();
    while let Some(result) = clients.join_next().await {
        let result = result.context("a bench client panicked")?;
        latencies.merge(&result.latencies);
        for (kind, count) in result.errors {
            *errors_by_kind.entry(kind).or_default() += count;
        }
    }
    let elapsed = started.elapsed();
    if let Some(line) = progress_line {
        line.abort();
        eprintln!();
    }
    let ops = latencies.count();
    Ok(Report {
        workload: plan.workload,
        consistency: (plan.workload == Workload::Get).then_some(plan.consistency),
        endpoints: targets.iter().map(|e| e.url.clone()).collect(),
        clients: args.clients,
        connections: connection_count,
        key_bytes: plan.key_bytes,
        value_bytes: plan.value_bytes,
        key_space: plan.key_space,
        elapsed_secs: elapsed.as_secs_f64(),
        ops,
        ops_per_sec: ops as f64 / elapsed.as_secs_f64().max(f64::MIN_POSITIVE),
        latency_us: Latency {
            mean: latencies.mean_us(),
            p50: latencies.percentile_us(50.0),
            p90: latencies.percentile_us(90.0),
            p99: latencies.percentile_us(99.0),
            p999: latencies.percentile_us(99.9),
            max: latencies.max_us(),
        },
        errors: errors_by_kind.values().sum(),
        errors_by_kind,
    })
}

/// A small, fast, seedable generator (SplitMix64) for keys and values: the
/// bench needs spread, not secrecy.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// The body of one request: JSON, keys and values are `[a-z0-9]` so they
/// need no escaping.
fn request_body(plan: &Plan, workload: Workload, key: u64, value: &str) -> (&'static str, Bytes) {
    let key = format!("k{key:0width$}", width = plan.key_bytes - 1);
    match workload {
        Workload::Put => (
            "/v1/propose",
            Bytes::from(format!(r#"{{"command":"put {key} {value}"}}"#)),
        ),
        Workload::Get => {
            let consistency = consistency_name(plan.consistency);
            (
                "/v1/query",
                Bytes::from(format!(
                    r#"{{"request":"get {key}","consistency":"{consistency}"}}"#
                )),
            )
        }
    }
}

fn consistency_name(consistency: Consistency) -> &'static str {
    match consistency {
        Consistency::Linearizable => "linearizable",
        Consistency::Lease => "lease",
        Consistency::Stale => "stale",
    }
}

async fn run_client(
    id: u64,
    connection: Arc<Connection>,
    plan: Arc<Plan>,
    progress: Arc<Progress>,
    stop: Stop,
) -> ClientResult {
    let mut rng = SplitMix64(id ^ std::process::id() as u64 ^ now_nanos());
    let value = random_value(&mut rng, plan.value_bytes);
    let mut result = ClientResult::default();
    loop {
        match stop {
            Stop::At(deadline) if Instant::now() >= deadline => break,
            Stop::AfterCount(count)
                if progress.started.fetch_add(1, Ordering::Relaxed) >= count =>
            {
                break;
            }
            _ => {}
        }
        let key = rng.next() % plan.key_space;
        let (path, body) = request_body(&plan, plan.workload, key, &value);
        let started = Instant::now();
        let outcome = tokio::time::timeout(plan.timeout, send(&connection, &plan, path, body))
            .await
            .unwrap_or_else(|_| Err(Failure::Transport("timeout".to_string())));
        match outcome {
            Ok(()) => {
                result
                    .latencies
                    .record(started.elapsed().as_micros().try_into().unwrap_or(u64::MAX));
                progress.ok.fetch_add(1, Ordering::Relaxed);
            }
            Err(failure) => {
                progress.errors.fetch_add(1, Ordering::Relaxed);
                let reconnect = matches!(failure, Failure::Transport(_));
                result.error(failure.kind());
                if reconnect {
                    // Whatever the connection was doing is unknown now.
                    *connection.sender.lock().await = None;
                }
                if let Failure::Connect(_) = failure {
                    tokio::time::sleep(RECONNECT_BACKOFF).await;
                }
            }
        }
    }
    result
}

fn random_value(rng: &mut SplitMix64, bytes: usize) -> String {
    (0..bytes)
        .map(|_| char::from(b'a' + (rng.next() % 26) as u8))
        .collect()
}

/// Put keys `0..key_space` once each, `clients` at a time over the
/// connections; fails on the first error (a read run against a half-filled
/// key space would count misses as errors).
async fn prefill(
    clients: usize,
    connections: &[Arc<Connection>],
    plan: &Arc<Plan>,
) -> anyhow::Result<()> {
    let next_key = Arc::new(AtomicU64::new(0));
    let mut tasks: tokio::task::JoinSet<anyhow::Result<()>> = tokio::task::JoinSet::new();
    for client in 0..clients {
        let connection = Arc::clone(&connections[client % connections.len()]);
        let plan = Arc::clone(plan);
        let next_key = Arc::clone(&next_key);
        tasks.spawn(async move {
            let mut rng = SplitMix64(client as u64 ^ now_nanos());
            let value = random_value(&mut rng, plan.value_bytes);
            loop {
                let key = next_key.fetch_add(1, Ordering::Relaxed);
                if key >= plan.key_space {
                    return Ok(());
                }
                let (path, body) = request_body(&plan, Workload::Put, key, &value);
                tokio::time::timeout(plan.timeout, send(&connection, &plan, path, body))
                    .await
                    .unwrap_or_else(|_| Err(Failure::Transport("timeout".to_string())))
                    .map_err(|failure| {
                        anyhow::anyhow!("prefill: putting key {key}: {}", failure.kind())
                    })?;
            }
        });
    }
    while let Some(result) = tasks.join_next().await {
        result.context("a prefill client panicked")??;
    }
    Ok(())
}

fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_have_the_asked_length_and_stay_in_the_key_space() {
        let plan = Plan {
            workload: Workload::Put,
            key_bytes: 10,
            value_bytes: 3,
            key_space: 1000,
            consistency: Consistency::Linearizable,
            timeout: Duration::from_secs(1),
            authorization: None,
            token: None,
        };
        let mut rng = SplitMix64(7);
        for _ in 0..100 {
            let (path, body) = request_body(&plan, Workload::Put, rng.next() % 1000, "abc");
            assert_eq!(path, "/v1/propose");
            let json: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
            let command = json["command"].as_str().expect("a command");
            let mut words = command.split(' ');
            assert_eq!(words.next(), Some("put"));
            let key = words.next().expect("a key");
            assert_eq!(key.len(), 10);
            assert!(key[1..].parse::<u64>().expect("a number") < 1000);
            assert_eq!(words.next(), Some("abc"));
        }
    }
}
