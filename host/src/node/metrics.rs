//! Prometheus metrics: the instruments a node records on its hot path, and
//! the text exposition format (version 0.0.4) served at `GET /metrics`.
//!
//! ```text
//!  NodeHandle::propose ──record──► NodeMetrics (proposal outcomes, latency) ─┐
//!  NodeHandle::status (raft view, applier's RuntimeStats) ───────────────────┤
//!  transport's PeerStatsRegistry (per-peer PeerStats) ───────────────────────┼─► render ─► text
//!  SledStorage::size_on_disk ────────────────────────────────────────────────┘
//! ```
//!
//! Most numbers already have an owner (raft-rs, the applier, the transport's
//! senders, sled); a scrape reads them where they live instead of copying
//! them into a second registry that could disagree. Only what nobody else
//! counts — proposal outcomes and latency — is recorded here, in
//! `NodeMetrics`.
//!
//! **Why hand-written.** The format is a few lines of text per metric, and
//! we need three instruments. The `prometheus` crate would bring a global
//! registry, macros and a dependency tree for that; this file has no
//! dependencies, no globals, and every series is declared in `render`.
//! Label values recorded at run time are `&'static str`, so the set of series
//! is fixed by the code and never grows with input.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{Applied, ClientError, NodeStatus};
use crate::wasm::RuntimeStats;

/// The `Content-Type` of `render`'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Upper bounds of the proposal latency buckets, in seconds: 100 µs to 10 s
/// in 1-2.5-5 steps (a fsync is ~100 µs to ~10 ms; 10 s is the API timeout).
pub(crate) const PROPOSAL_SECONDS_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// The roles a node reports (see [`NodeStatus::role`]), one series each.
const ROLES: [&str; 4] = ["leader", "follower", "candidate", "pre_candidate"];

/// Outcome of a proposal whose caller stopped waiting (the API's timeout,
/// a client that hung up) before it was answered.
pub(crate) const OUTCOME_ABANDONED: &str = "abandoned";

/// A histogram with fixed buckets; lock-free.
#[derive(Debug)]
pub(crate) struct Histogram {
    bounds: &'static [f64],
    /// Per-bucket (not cumulative) counts; the last one is `+Inf`.
    buckets: Box<[AtomicU64]>,
    /// The sum of observations, as `f64` bits.
    sum_bits: AtomicU64,
}

/// A histogram as read at one moment.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HistogramSnapshot {
    /// `(upper bound, cumulative count)`, ending with `+Inf`.
    pub cumulative: Vec<(f64, u64)>,
    pub sum: f64,
    pub count: u64,
}

impl Histogram {
    /// `bounds` must be finite and strictly increasing (a bug otherwise).
    pub fn new(bounds: &'static [f64]) -> Self {
        assert!(
            bounds.iter().all(|b| b.is_finite()) && bounds.windows(2).all(|w| w[0] < w[1]),
            "histogram bounds must be finite and strictly increasing: {bounds:?}"
        );
        Histogram {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_bits: AtomicU64::new(0.0_f64.to_bits()),
        }
    }

    pub fn observe(&self, value: f64) {
        // Buckets are `le` (less or equal); NaN lands in +Inf.
        let bucket = self
            .bounds
            .iter()
            .position(|bound| value <= *bound)
            .unwrap_or(self.bounds.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        // The closure always returns `Some`, so this cannot fail.
        let _ = self
            .sum_bits
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + value).to_bits())
            });
    }

    pub fn observe_duration(&self, duration: Duration) {
        self.observe(duration.as_secs_f64());
    }

    /// The count is the sum of the buckets, so `+Inf` always equals it even
    /// while other threads observe.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut running = 0;
        let cumulative: Vec<(f64, u64)> = self
            .bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(self.buckets.iter())
            .map(|(bound, count)| {
                running += count.load(Ordering::Relaxed);
                (bound, running)
            })
            .collect();
        HistogramSnapshot {
            cumulative,
            sum: f64::from_bits(self.sum_bits.load(Ordering::Relaxed)),
            count: running,
        }
    }
}

/// Counters keyed by the value of one label. Values are `&'static str`: the
/// code, not the input, decides which series exist.
#[derive(Debug, Default)]
pub(crate) struct LabeledCounter {
    counts: Mutex<BTreeMap<&'static str, u64>>,
}

impl LabeledCounter {
    /// A counter whose `values` are exported (as 0) before they happen, so
    /// `rate()` sees them from the first scrape.
    pub fn with_values(values: &[&'static str]) -> Self {
        LabeledCounter {
            counts: Mutex::new(values.iter().map(|v| (*v, 0)).collect()),
        }
    }

    pub fn inc(&self, value: &'static str) {
        *self.lock().entry(value).or_insert(0) += 1;
    }

    /// Every value and its count, sorted by value.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        self.lock().iter().map(|(v, n)| (*v, *n)).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<&'static str, u64>> {
        // A counter map is consistent after any panic: keep counting.
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What a node records itself: what happens to the proposals made through
/// its handle. Forwarded proposals count on the node the client called.
#[derive(Debug)]
pub(crate) struct NodeMetrics {
    /// Proposals by outcome: `ok`, `guest_error` (applied; the guest's
    /// result is an error), a [`ClientError::code`] (not applied), or
    /// [`OUTCOME_ABANDONED`].
    pub proposals: LabeledCounter,
    /// Seconds from the proposal reaching the handle to its applied result
    /// (applied proposals only).
    pub proposal_duration: Histogram,
}

impl Default for NodeMetrics {
    fn default() -> Self {
        NodeMetrics {
            proposals: LabeledCounter::with_values(&["ok", "guest_error"]),
            proposal_duration: Histogram::new(PROPOSAL_SECONDS_BUCKETS),
        }
    }
}

impl NodeMetrics {
    /// Start timing one proposal. The timer records the outcome given to
    /// [`ProposalTimer::finish`], or [`OUTCOME_ABANDONED`] if it is dropped
    /// first (the caller's future was cancelled mid-await).
    pub fn start_proposal(&self) -> ProposalTimer<'_> {
        ProposalTimer {
            metrics: self,
            started: Instant::now(),
            finished: false,
        }
    }
}

/// Records one proposal's outcome and latency; see
/// [`NodeMetrics::start_proposal`].
#[derive(Debug)]
pub(crate) struct ProposalTimer<'a> {
    metrics: &'a NodeMetrics,
    started: Instant,
    finished: bool,
}

impl ProposalTimer<'_> {
    pub fn finish(mut self, result: &Result<Applied, ClientError>) {
        self.finished = true;
        let outcome = match result {
            Ok(applied) => {
                self.metrics
                    .proposal_duration
                    .observe_duration(self.started.elapsed());
                if applied.result.is_ok() {
                    "ok"
                } else {
                    "guest_error"
                }
            }
            Err(error) => error.code(),
        };
        self.metrics.proposals.inc(outcome);
    }
}

impl Drop for ProposalTimer<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.metrics.proposals.inc(OUTCOME_ABANDONED);
        }
    }
}

/// The numbers one scrape reads from their owners.
#[derive(Debug)]
pub(crate) struct Scrape<'a> {
    pub status: &'a NodeStatus,
    pub guest: RuntimeStats,
    /// Per-peer transport counters; empty without a network transport.
    pub peers: &'a [(u64, Arc<PeerStats>)],
    /// `None` if it could not be measured (the series is then left out).
    pub storage_bytes: Option<u64>,
}

/// A metric family's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// Writes the Prometheus text exposition format 0.0.4.
#[derive(Debug, Default)]
pub(crate) struct TextEncoder {
    out: String,
}

impl TextEncoder {
    /// Start a family: its `# HELP` and `# TYPE` lines.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) {
        debug_assert!(valid_name(name), "bad metric name {name:?}");
        let _ = writeln!(
            self.out,
            "# HELP {name} {}\n# TYPE {name} {}",
            escape_help(help),
            kind.as_str()
        );
    }

    /// One sample of an integer value.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: u64) {
        self.series(name, labels);
        let _ = writeln!(self.out, " {value}");
    }

    /// One sample of a float value.
    pub fn sample_f64(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.series(name, labels);
        let _ = writeln!(self.out, " {}", format_f64(value));
    }

    /// A family with one unlabelled sample.
    pub fn single(&mut self, name: &str, kind: Kind, help: &str, value: u64) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    /// A whole histogram family: cumulative `_bucket`s ending in `+Inf`,
    /// `_sum` and `_count`.
    pub fn histogram(&mut self, name: &str, help: &str, histogram: &HistogramSnapshot) {
        self.family(name, Kind::Histogram, help);
        let bucket = format!("{name}_bucket");
        for (bound, count) in &histogram.cumulative {
            self.sample(&bucket, &[("le", &format_f64(*bound))], *count);
        }
        self.sample_f64(&format!("{name}_sum"), &[], histogram.sum);
        self.sample(&format!("{name}_count"), &[], histogram.count);
    }

    pub fn finish(self) -> String {
        self.out
    }

    fn series(&mut self, name: &str, labels: &[(&str, &str)]) {
        self.out.push_str(name);
        if labels.is_empty() {
            return;
        }
        self.out.push('{');
        for (i, (label, value)) in labels.iter().enumerate() {
            debug_assert!(valid_name(label), "bad label name {label:?}");
            if i > 0 {
                self.out.push(',');
            }
            let _ = write!(self.out, "{label}=\"{}\"", escape_label_value(value));
        }
        self.out.push('}');
    }
}

/// Render every metric of a node.
pub(crate) fn render(recorded: &NodeMetrics, scrape: &Scrape<'_>) -> String {
    let status = scrape.status;
    let mut enc = TextEncoder::default();

    enc.family(
        "iroh_raft_node_info",
        Kind::Gauge,
        "Always 1; labels identify the node and its active guest component.",
    );
    enc.sample(
        "iroh_raft_node_info",
        &[
            ("id", &status.id.to_string()),
            ("guest", &status.guest.name),
            ("guest_version", &status.guest.version),
            ("guest_hash", &status.guest.hash),
        ],
        1,
    );
    enc.single(
        "iroh_raft_term",
        Kind::Gauge,
        "Current Raft term.",
        status.term,
    );
    enc.family(
        "iroh_raft_role",
        Kind::Gauge,
        "1 for the role this node has now, 0 for the others.",
    );
    for role in ROLES {
        let value = u64::from(status.role == role);
        enc.sample("iroh_raft_role", &[("role", role)], value);
    }
    enc.single(
        "iroh_raft_diverged",
        Kind::Gauge,
        "1 if this node's state disagreed with the majority's at a state check (it stopped applying).",
        u64::from(status.diverged.is_some()),
    );
    enc.single(
        "iroh_raft_leader_id",
        Kind::Gauge,
        "Raft id of the leader this node knows of; 0 if none.",
        status.leader_id.unwrap_or(0),
    );
    enc.single(
        "iroh_raft_voters",
        Kind::Gauge,
        "Voters in the current configuration.",
        status.voters.len() as u64,
    );
    enc.single(
        "iroh_raft_last_log_index",
        Kind::Gauge,
        "Index of the last entry in this node's log.",
        status.last_index,
    );
    enc.single(
        "iroh_raft_commit_index",
        Kind::Gauge,
        "Highest log index known to be committed.",
        status.commit_index,
    );
    enc.single(
        "iroh_raft_applied_index",
        Kind::Gauge,
        "Highest log index applied to the guest.",
        status.applied_index,
    );
    enc.single(
        "iroh_raft_pending_proposals",
        Kind::Gauge,
        "Proposals waiting to commit on this node.",
        status.pending_proposals as u64,
    );

    enc.family(
        "iroh_raft_proposals_total",
        Kind::Counter,
        "Proposals made through this node by outcome: ok, guest_error (applied, the guest \
         returned an error), abandoned (the caller stopped waiting) or the API error code.",
    );
    for (outcome, count) in recorded.proposals.snapshot() {
        enc.sample("iroh_raft_proposals_total", &[("outcome", outcome)], count);
    }
    enc.histogram(
        "iroh_raft_proposal_duration_seconds",
        "Seconds from a proposal reaching this node to its applied result.",
        &recorded.proposal_duration.snapshot(),
    );

    let guest = scrape.guest;
    enc.single(
        "iroh_raft_guest_applied_entries_total",
        Kind::Counter,
        "Entries applied by the guest in this process (replays after a restart included).",
        guest.applied,
    );
    enc.single(
        "iroh_raft_guest_failed_entries_total",
        Kind::Counter,
        "Applied entries whose result was an error (rejected, trapped, out of fuel or memory).",
        guest.failures,
    );
    enc.single(
        "iroh_raft_guest_instance_rebuilds_total",
        Kind::Counter,
        "Guest instances rebuilt after a trap.",
        guest.rebuilds,
    );
    enc.single(
        "iroh_raft_guest_checkpoints_total",
        Kind::Counter,
        "In-memory guest checkpoints taken.",
        guest.checkpoints,
    );
    enc.single(
        "iroh_raft_guest_checkpoint_failures_total",
        Kind::Counter,
        "In-memory guest checkpoints that failed (the state no longer fits twice in the guest's \
         memory, or snapshot() ran out of fuel).",
        guest.checkpoint_failures,
    );
    enc.single(
        "iroh_raft_guest_checkpoints_failing",
        Kind::Gauge,
        "1 while the guest's checkpoints fail: no snapshot is written and the log is not compacted.",
        u64::from(guest.checkpoint_failing_since.is_some()),
    );
    enc.single(
        "iroh_raft_guest_uncheckpointed_bytes",
        Kind::Gauge,
        "Bytes of commands applied since the last checkpoint: what rolling back a trap replays.",
        guest.uncheckpointed_bytes,
    );
    enc.single(
        "iroh_raft_guest_stalled",
        Kind::Gauge,
        "1 while the guest can no longer make progress and this node refuses new commands.",
        u64::from(guest.stalled),
    );
    enc.single(
        "iroh_raft_guest_apply_fuel_total",
        Kind::Counter,
        "Fuel consumed by guest apply calls; divide by applied entries for fuel per apply.",
        guest.apply_fuel,
    );

    if let Some(bytes) = scrape.storage_bytes {
        enc.single(
            "iroh_raft_storage_size_bytes",
            Kind::Gauge,
            "Bytes the sled store uses on disk.",
            bytes,
        );
    }

    if !scrape.peers.is_empty() {
        type Read = fn(&PeerStats) -> &AtomicU64;
        let families: [(&str, &str, Read); 6] = [
            (
                "iroh_raft_peer_sent_frames_total",
                "Frames delivered to the peer.",
                |s| &s.frames_sent,
            ),
            (
                "iroh_raft_peer_sent_messages_total",
                "Raft messages delivered to the peer.",
                |s| &s.messages_sent,
            ),
            (
                "iroh_raft_peer_sent_bytes_total",
                "Bytes of Raft messages delivered to the peer.",
                |s| &s.bytes_sent,
            ),
            (
                "iroh_raft_peer_queue_drops_total",
                "Raft messages dropped because the peer's send queue was full.",
                |s| &s.queue_drops,
            ),
            (
                "iroh_raft_peer_reconnects_total",
                "Connections dialed to the peer.",
                |s| &s.reconnects,
            ),
            (
                "iroh_raft_peer_send_errors_total",
                "Batches that failed to reach the peer (Raft retransmits).",
                |s| &s.send_errors,
            ),
        ];
        for (name, help, read) in families {
            enc.family(name, Kind::Counter, help);
            for (peer, stats) in scrape.peers {
                let value = read(stats).load(Ordering::Relaxed);
                enc.sample(name, &[("peer", &peer.to_string())], value);
            }
        }
    }
    enc.finish()
}

/// Floats as Prometheus parses them (`+Inf`, not Rust's `inf`).
fn format_f64(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value == f64::INFINITY {
        "+Inf".into()
    } else if value == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        value.to_string()
    }
}

fn escape_label_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Counters for one peer (exported as metrics).
#[derive(Debug, Default)]
pub struct PeerStats {
    pub frames_sent: AtomicU64,
    pub messages_sent: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub queue_drops: AtomicU64,
    pub reconnects: AtomicU64,
    pub send_errors: AtomicU64,
}

/// Every peer's [`PeerStats`], shared with whoever exports them (the node's
/// `/metrics`) while the transport itself moves into the node's task. The
/// transport adds a peer when it first talks to it and removes it when the
/// peer leaves the membership. Cheap to clone: clones share one map.
#[derive(Debug, Clone, Default)]
pub struct PeerStatsRegistry {
    peers: Arc<std::sync::Mutex<BTreeMap<u64, Arc<PeerStats>>>>,
}

impl PeerStatsRegistry {
    pub(crate) fn insert(&self, raft_id: u64, stats: Arc<PeerStats>) {
        self.lock().insert(raft_id, stats);
    }

    pub(crate) fn remove(&self, raft_id: u64) {
        self.lock().remove(&raft_id);
    }

    /// The peers' counters, by Raft id.
    pub fn snapshot(&self) -> Vec<(u64, Arc<PeerStats>)> {
        self.lock()
            .iter()
            .map(|(id, stats)| (*id, stats.clone()))
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<PeerStats>>> {
        // The map is consistent after any panic: keep serving it.
        self.peers.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::{GuestStatus, NodeStatus};
    use crate::wasm::GuestFailure;

    #[test]
    fn encoder_writes_the_exact_text_format() {
        static BOUNDS: &[f64] = &[0.25, 1.0];
        let histogram = Histogram::new(BOUNDS);
        for value in [0.25, 0.5, 0.5, 3.0] {
            histogram.observe(value);
        }
        let counter = LabeledCounter::with_values(&["ok"]);
        counter.inc("rejected");
        counter.inc("rejected");

        let mut enc = TextEncoder::default();
        enc.single("demo_up", Kind::Gauge, "Whether it is up.", 1);
        enc.family("demo_requests_total", Kind::Counter, "Requests.");
        for (outcome, count) in counter.snapshot() {
            enc.sample("demo_requests_total", &[("outcome", outcome)], count);
        }
        enc.histogram("demo_seconds", "Latency.", &histogram.snapshot());

        assert_eq!(
            enc.finish(),
            "# HELP demo_up Whether it is up.\n\
             # TYPE demo_up gauge\n\
             demo_up 1\n\
             # HELP demo_requests_total Requests.\n\
             # TYPE demo_requests_total counter\n\
             demo_requests_total{outcome=\"ok\"} 0\n\
             demo_requests_total{outcome=\"rejected\"} 2\n\
             # HELP demo_seconds Latency.\n\
             # TYPE demo_seconds histogram\n\
             demo_seconds_bucket{le=\"0.25\"} 1\n\
             demo_seconds_bucket{le=\"1\"} 3\n\
             demo_seconds_bucket{le=\"+Inf\"} 4\n\
             demo_seconds_sum 4.25\n\
             demo_seconds_count 4\n"
        );
    }

    #[test]
    fn label_values_and_help_are_escaped() {
        let mut enc = TextEncoder::default();
        enc.family("demo_info", Kind::Gauge, "A \\ backslash\nand a newline.");
        enc.sample(
            "demo_info",
            &[("name", "a \"quoted\" \\path\\\nline"), ("b", "")],
            1,
        );
        assert_eq!(
            enc.finish(),
            "# HELP demo_info A \\\\ backslash\\nand a newline.\n\
             # TYPE demo_info gauge\n\
             demo_info{name=\"a \\\"quoted\\\" \\\\path\\\\\\nline\",b=\"\"} 1\n"
        );
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_end_in_inf() {
        let histogram = Histogram::new(PROPOSAL_SECONDS_BUCKETS);
        histogram.observe_duration(Duration::from_micros(50));
        histogram.observe_duration(Duration::from_millis(3));
        histogram.observe_duration(Duration::from_secs(60));
        histogram.observe(f64::NAN);
        let snapshot = histogram.snapshot();
        assert_eq!(
            snapshot.cumulative.len(),
            PROPOSAL_SECONDS_BUCKETS.len() + 1
        );
        assert!(snapshot.cumulative.windows(2).all(|w| w[0].1 <= w[1].1));
        assert_eq!(snapshot.cumulative[0], (0.0001, 1));
        assert_eq!(snapshot.cumulative.last(), Some(&(f64::INFINITY, 4)));
        assert_eq!(snapshot.count, 4);
        let below_10s = snapshot.cumulative[PROPOSAL_SECONDS_BUCKETS.len() - 1];
        assert_eq!(below_10s, (10.0, 2));
        assert_eq!(format_f64(f64::INFINITY), "+Inf");
        assert_eq!(format_f64(0.0001), "0.0001");
    }

    #[test]
    fn proposal_timer_records_outcomes() {
        let metrics = NodeMetrics::default();
        let applied = |result| Applied {
            index: 1,
            term: 1,
            result,
            fuel_used: 0,
        };
        metrics
            .start_proposal()
            .finish(&Ok(applied(Ok(Vec::new()))));
        metrics
            .start_proposal()
            .finish(&Ok(applied(Err(GuestFailure::Rejected {
                message: "no".into(),
            }))));
        metrics
            .start_proposal()
            .finish(&Err(ClientError::Overloaded));
        drop(metrics.start_proposal());
        assert_eq!(
            metrics.proposals.snapshot(),
            vec![
                (OUTCOME_ABANDONED, 1),
                ("guest_error", 1),
                ("ok", 1),
                ("overloaded", 1)
            ]
        );
        // Only applied proposals have a latency.
        assert_eq!(metrics.proposal_duration.snapshot().count, 2);
    }

    fn status(role: &str) -> NodeStatus {
        NodeStatus {
            id: 1,
            role: role.into(),
            term: 3,
            leader_id: Some(1),
            commit_index: 7,
            applied_index: 6,
            last_index: 8,
            voters: vec![1, 2, 3],
            pending_proposals: 0,
            members: Vec::new(),
            guest: GuestStatus {
                name: "counter".into(),
                version: "0.1.0".into(),
                hash: "ab".into(),
                since_index: 0,
                applied_entries: 0,
                failed_entries: 0,
                instance_rebuilds: 0,
                world: None,
                store: None,
                checkpoint_failures: 0,
                checkpoint_failing_since: None,
                uncheckpointed_bytes: 0,
                refusing_commands: false,
                examples: Vec::new(),
            },
            data_dir: "/tmp/x".into(),
            ticket: None,
            snapshot_index: None,
            first_log_index: 1,
            applier_busy: None,
            diverged: None,
            last_verified_state_check: None,
        }
    }

    #[test]
    fn render_reports_gauges_and_peers_only_when_present() {
        let status = status("leader");
        let metrics = NodeMetrics::default();
        let single = render(
            &metrics,
            &Scrape {
                status: &status,
                guest: RuntimeStats::default(),
                peers: &[],
                storage_bytes: None,
            },
        );
        for line in [
            "iroh_raft_term 3\n",
            "iroh_raft_role{role=\"leader\"} 1\n",
            "iroh_raft_role{role=\"follower\"} 0\n",
            "iroh_raft_commit_index 7\n",
            "iroh_raft_applied_index 6\n",
            "iroh_raft_last_log_index 8\n",
            "iroh_raft_leader_id 1\n",
            "iroh_raft_voters 3\n",
            "iroh_raft_proposals_total{outcome=\"ok\"} 0\n",
            "iroh_raft_proposal_duration_seconds_count 0\n",
        ] {
            assert!(single.contains(line), "missing {line:?} in\n{single}");
        }
        assert!(!single.contains("iroh_raft_peer_"), "{single}");
        assert!(!single.contains("iroh_raft_storage_size_bytes"), "{single}");

        let peer = Arc::new(PeerStats::default());
        peer.bytes_sent.store(1234, Ordering::Relaxed);
        let cluster = render(
            &metrics,
            &Scrape {
                status: &status,
                guest: RuntimeStats::default(),
                peers: &[(2, peer)],
                storage_bytes: Some(4096),
            },
        );
        assert!(cluster.contains("iroh_raft_peer_sent_bytes_total{peer=\"2\"} 1234\n"));
        assert!(cluster.contains("iroh_raft_peer_queue_drops_total{peer=\"2\"} 0\n"));
        assert!(cluster.contains("iroh_raft_storage_size_bytes 4096\n"));
    }

    #[test]
    fn every_sample_belongs_to_a_declared_family() {
        let status = status("follower");
        let text = render(
            &NodeMetrics::default(),
            &Scrape {
                status: &status,
                guest: RuntimeStats::default(),
                peers: &[(2, Arc::default())],
                storage_bytes: Some(1),
            },
        );
        let mut declared = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap_or_default();
                assert!(!declared.contains(&name.to_string()), "{name} twice");
                declared.push(name.to_string());
            } else if !line.starts_with('#') {
                let series = line.split([' ', '{']).next().unwrap_or_default();
                let family = declared.last().expect("a TYPE line first");
                assert!(
                    series == family
                        || ["_bucket", "_sum", "_count"]
                            .iter()
                            .any(|s| series == format!("{family}{s}")),
                    "{series} outside its family {family}"
                );
                assert!(valid_name(series), "{series}");
            }
        }
    }
}
