//! What the bench shows: the live progress line and the final table (or
//! the same as JSON).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use iroh_raft_client::Consistency;
use serde::Serialize;

use super::{Progress, Workload, consistency_name};

/// How often the progress line on stderr is refreshed.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);

/// The machine-readable result (`--json`); the table prints the same.
#[derive(Debug, Serialize)]
pub(super) struct Report {
    pub(super) workload: Workload,
    pub(super) consistency: Option<Consistency>,
    pub(super) endpoints: Vec<String>,
    pub(super) clients: usize,
    pub(super) connections: usize,
    pub(super) key_bytes: usize,
    pub(super) value_bytes: usize,
    pub(super) key_space: u64,
    pub(super) elapsed_secs: f64,
    /// Requests answered with 200.
    pub(super) ops: u64,
    pub(super) ops_per_sec: f64,
    pub(super) latency_us: Latency,
    pub(super) errors: u64,
    pub(super) errors_by_kind: BTreeMap<String, u64>,
}

/// Latencies of the successful requests, µs (within 1/64 above the truth).
#[derive(Debug, Serialize)]
pub(super) struct Latency {
    pub(super) mean: f64,
    pub(super) p50: u64,
    pub(super) p90: u64,
    pub(super) p99: u64,
    pub(super) p999: u64,
    pub(super) max: u64,
}

pub(super) async fn show_progress(progress: Arc<Progress>, started: Instant) {
    let mut interval = tokio::time::interval(PROGRESS_INTERVAL);
    interval.tick().await;
    let mut previous = (0, Instant::now());
    loop {
        interval.tick().await;
        let ok = progress.ok.load(Ordering::Relaxed);
        let errors = progress.errors.load(Ordering::Relaxed);
        let now = Instant::now();
        let rate = (ok - previous.0) as f64 / (now - previous.1).as_secs_f64();
        previous = (ok, now);
        let mut stderr = std::io::stderr().lock();
        // \r and "erase line": the line is rewritten in place.
        let _ = write!(
            stderr,
            "\r\x1b[2K{:>6.1} s  {ok:>10} ops  {rate:>10.0} ops/s  {errors} errors",
            started.elapsed().as_secs_f64()
        );
        let _ = stderr.flush();
    }
}

pub(super) fn print_table(report: &Report) {
    let what = match report.consistency {
        Some(consistency) => format!("get ({})", consistency_name(consistency)),
        None => "put".to_string(),
    };
    say!(
        "{what} of {}-byte keys (key space {}){} to {}",
        report.key_bytes,
        report.key_space,
        if report.workload == Workload::Put {
            format!(", {}-byte values", report.value_bytes)
        } else {
            String::new()
        },
        report.endpoints.join(", ")
    );
    say!(
        "{} clients over {} connections, {:.2} s",
        report.clients,
        report.connections,
        report.elapsed_secs
    );
    say!();
    say!(
        "{:>10} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8}",
        "ops",
        "ops/s",
        "mean ms",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "p99.9 ms",
        "max ms",
        "errors"
    );
    let ms = |us: u64| us as f64 / 1000.0;
    let latency = &report.latency_us;
    say!(
        "{:>10} {:>10.1} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>8}",
        report.ops,
        report.ops_per_sec,
        latency.mean / 1000.0,
        ms(latency.p50),
        ms(latency.p90),
        ms(latency.p99),
        ms(latency.p999),
        ms(latency.max),
        report.errors
    );
    if !report.errors_by_kind.is_empty() {
        say!();
        say!("errors by kind:");
        for (kind, count) in &report.errors_by_kind {
            say!("  {count:>10}  {kind}");
        }
    }
}
