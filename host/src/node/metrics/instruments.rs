//! The instruments a node records into as things happen: proposals, fsyncs,
//! applies, snapshots, leader changes. Everything else on `/metrics` is
//! read at scrape time from where it already lives (see `scrape.rs`).
//!
//! One [`NodeInstruments`] per node, made when the node is assembled;
//! clones (they share the counts, `prometheus-client`'s metrics are
//! reference-counted) go to the parts that record: the core (leader
//! changes), the applier (apply and snapshot durations), the log store
//! (fsyncs) and the handle (proposals).

use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::super::{Applied, ClientError};

/// Upper bounds of the latency buckets, in seconds: 100 µs to 10 s in
/// 1-2.5-5 steps (a fsync is ~100 µs to ~10 ms; 10 s is the API timeout).
pub(crate) const LATENCY_SECONDS_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Upper bounds of the snapshot duration buckets, in seconds: 1 ms (a
/// small guest's state) to 10 minutes (gigabytes of store-backed state on
/// a slow disk).
pub(crate) const SNAPSHOT_SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

/// Outcome of a proposal that applied and whose guest returned a result
/// (a guest's error is `guest_error`).
const OUTCOME_OK: &str = "ok";
/// Outcome of a proposal whose caller stopped waiting (the API's timeout,
/// a client that hung up) before it was answered.
pub(crate) const OUTCOME_ABANDONED: &str = "abandoned";

/// A label set of one label whose value the code chooses (never input), so
/// the set of series is fixed by the code.
pub(crate) type OneLabel = [(&'static str, &'static str); 1];

/// Which snapshot operation a duration or size belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SnapshotPhase {
    /// This node wrote a snapshot of its state (log compaction, or for a
    /// peer that fell behind).
    Create,
    /// This node replaced its state with a snapshot (received from the
    /// leader, or the latest one at start-up).
    Install,
}

impl SnapshotPhase {
    fn label(self) -> OneLabel {
        [(
            "phase",
            match self {
                SnapshotPhase::Create => "create",
                SnapshotPhase::Install => "install",
            },
        )]
    }
}

type HistogramFamily = Family<OneLabel, Histogram, fn() -> Histogram>;

/// What a node records as it happens. Cheap to clone: clones share counts.
#[derive(Debug, Clone)]
pub struct NodeInstruments {
    /// Proposals made through this node by outcome: `ok`, `guest_error`
    /// (applied; the guest's result is an error), a [`ClientError::code`]
    /// (not applied), or [`OUTCOME_ABANDONED`]. Forwarded proposals count
    /// on the node the client called.
    proposals: Family<OneLabel, Counter>,
    /// `proposals` with `outcome="ok"`, the one nearly every proposal
    /// counts in: a handle to the same count, without the family's lock
    /// and label lookup per write.
    proposals_ok: Counter,
    /// Proposals that got an error instead of an applied result (etcd's
    /// `proposals_failed_total`).
    proposals_failed: Counter,
    /// Seconds from the proposal reaching the handle to its applied result.
    proposal_seconds: Histogram,
    /// Seconds of each flush + fdatasync of the log store.
    fsync_seconds: Histogram,
    /// Seconds of each guest `apply` call (and its store batch).
    apply_seconds: Histogram,
    snapshot_seconds: HistogramFamily,
    /// Bytes of the last snapshot file written or installed.
    snapshot_bytes: Family<OneLabel, Gauge>,
    /// Times this node saw a new leader (etcd's `leader_changes_seen_total`).
    leader_changes: Counter,
}

impl Default for NodeInstruments {
    fn default() -> Self {
        let proposals: Family<OneLabel, Counter> = Family::default();
        let proposals_ok = proposals.get_or_create(&[("outcome", OUTCOME_OK)]).clone();
        let instruments = NodeInstruments {
            proposals,
            proposals_ok,
            proposals_failed: Counter::default(),
            proposal_seconds: latency_histogram(),
            fsync_seconds: latency_histogram(),
            apply_seconds: latency_histogram(),
            snapshot_seconds: Family::new_with_constructor(|| {
                Histogram::new(SNAPSHOT_SECONDS_BUCKETS.iter().copied())
            }),
            snapshot_bytes: Family::default(),
            leader_changes: Counter::default(),
        };
        // Exported as 0 before they happen, so `rate()` sees them from
        // the first scrape.
        for outcome in [OUTCOME_OK, "guest_error"] {
            let _ = instruments.proposals.get_or_create(&[("outcome", outcome)]);
        }
        for phase in [SnapshotPhase::Create, SnapshotPhase::Install] {
            let _ = instruments.snapshot_seconds.get_or_create(&phase.label());
            let _ = instruments.snapshot_bytes.get_or_create(&phase.label());
        }
        instruments
    }
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_SECONDS_BUCKETS.iter().copied())
}

impl NodeInstruments {
    /// Start timing one proposal. The timer records the outcome given to
    /// [`ProposalTimer::finish`], or [`OUTCOME_ABANDONED`] if it is dropped
    /// first (the caller's future was cancelled mid-await).
    pub(crate) fn start_proposal(&self) -> ProposalTimer<'_> {
        ProposalTimer {
            instruments: self,
            started: Instant::now(),
            finished: false,
        }
    }

    pub(crate) fn observe_fsync(&self, took: Duration) {
        self.fsync_seconds.observe(took.as_secs_f64());
    }

    /// [`Self::observe_fsync`] as the log store's observer.
    pub(crate) fn fsync_observer(&self) -> crate::storage::SyncObserver {
        let instruments = self.clone();
        std::sync::Arc::new(move |took| instruments.observe_fsync(took))
    }

    pub(crate) fn observe_apply(&self, took: Duration) {
        self.apply_seconds.observe(took.as_secs_f64());
    }

    pub(crate) fn observe_snapshot(&self, phase: SnapshotPhase, took: Duration, bytes: u64) {
        self.snapshot_seconds
            .get_or_create(&phase.label())
            .observe(took.as_secs_f64());
        self.snapshot_bytes
            .get_or_create(&phase.label())
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    pub(crate) fn leader_changed(&self) {
        self.leader_changes.inc();
    }

    /// Register clones of every instrument (they keep counting into the
    /// same numbers).
    pub(crate) fn register(&self, registry: &mut Registry) {
        registry.register(
            "iroh_raft_proposals",
            "Proposals made through this node by outcome: ok, guest_error (applied, the guest \
             returned an error), abandoned (the caller stopped waiting) or the API error code",
            self.proposals.clone(),
        );
        registry.register(
            "iroh_raft_proposals_failed",
            "Proposals made through this node that got an error instead of an applied result \
             (the error codes of iroh_raft_proposals_total)",
            self.proposals_failed.clone(),
        );
        registry.register(
            "iroh_raft_proposal_duration_seconds",
            "Seconds from a proposal reaching this node to its applied result",
            self.proposal_seconds.clone(),
        );
        registry.register(
            "iroh_raft_disk_fsync_duration_seconds",
            "Seconds of each flush and fdatasync of the Raft log store (one per group of \
             appended entries)",
            self.fsync_seconds.clone(),
        );
        registry.register(
            "iroh_raft_apply_duration_seconds",
            "Seconds of each guest apply call, its store writes included",
            self.apply_seconds.clone(),
        );
        registry.register(
            "iroh_raft_snapshot_duration_seconds",
            "Seconds to write a snapshot of the state (phase create) or to replace the state \
             with one (phase install)",
            self.snapshot_seconds.clone(),
        );
        registry.register(
            "iroh_raft_snapshot_size_bytes",
            "Bytes of guest state in the last snapshot written (phase create) or installed \
             (phase install); 0 before the first",
            self.snapshot_bytes.clone(),
        );
        registry.register(
            "iroh_raft_leader_changes_seen",
            "Times this node saw a new leader",
            self.leader_changes.clone(),
        );
    }

    /// This node's instruments alone, as text.
    #[cfg(test)]
    fn text(&self) -> String {
        let mut registry = Registry::default();
        self.register(&mut registry);
        super::encode_text(&registry)
    }

    /// The value of one series (`name{labels}`) of [`Self::text`].
    #[cfg(test)]
    pub(crate) fn sample(&self, series: &str) -> Option<f64> {
        let prefix = format!("{series} ");
        let text = self.text();
        let line = text.lines().find(|line| line.starts_with(&prefix))?;
        line[prefix.len()..].parse().ok()
    }
}

/// Records one proposal's outcome and latency; see
/// [`NodeInstruments::start_proposal`].
#[derive(Debug)]
pub(crate) struct ProposalTimer<'a> {
    instruments: &'a NodeInstruments,
    started: Instant,
    finished: bool,
}

impl ProposalTimer<'_> {
    pub fn finish(mut self, result: &Result<Applied, ClientError>) {
        self.finished = true;
        let outcome = match result {
            Ok(applied) => {
                self.instruments
                    .proposal_seconds
                    .observe(self.started.elapsed().as_secs_f64());
                if applied.result.is_ok() {
                    OUTCOME_OK
                } else {
                    "guest_error"
                }
            }
            Err(error) => {
                self.instruments.proposals_failed.inc();
                error.code()
            }
        };
        if outcome == OUTCOME_OK {
            self.instruments.proposals_ok.inc();
        } else {
            self.instruments
                .proposals
                .get_or_create(&[("outcome", outcome)])
                .inc();
        }
    }
}

impl Drop for ProposalTimer<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.instruments
                .proposals
                .get_or_create(&[("outcome", OUTCOME_ABANDONED)])
                .inc();
        }
    }
}
