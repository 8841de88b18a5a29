//! Prometheus metrics of a node, served at `GET /metrics` in the text
//! exposition format (version 0.0.4) through `prometheus-client`.
//!
//! ```text
//!  recorded as it happens: NodeInstruments (proposals, fsyncs, applies,
//!    snapshots, leader changes) ──────────────────────────────────────────┐
//!  read at each scrape: Scrape (NodeStatus, the applier's RuntimeStats,   │
//!    the transport's PeerStats, sled's size on disk) ─────────────────────┼─► Registry ─► text
//!  ProcessCollector (/proc/self, build info) ─────────────────────────────┤
//!  the API's own refusals (api::stats::ApiStats) ─────────────────────────┘
//! ```
//!
//! Most numbers already have an owner (raft-rs, the applier, the
//! transport's senders, sled); a scrape reads them where they live
//! (`prometheus-client` collectors) instead of copying them into a second
//! registry that could disagree. What nobody else counts is recorded in
//! [`NodeInstruments`]. Label values are chosen by the code (roles,
//! outcomes, phases, peer ids), so the set of series never grows with
//! input.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use prometheus_client::registry::Registry;

mod describe;
mod instruments;
mod process;
mod scrape;

pub use self::instruments::NodeInstruments;
pub(crate) use self::instruments::SnapshotPhase;
pub(crate) use self::process::ProcessCollector;
pub(crate) use self::scrape::Scrape;

/// Helpers for other modules' collectors (the API's refusals).
pub(crate) mod collect {
    pub(crate) use super::describe::{Written, gauge, labelled_counters};
}

/// The `Content-Type` of [`encode_text`]'s output.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Every metric of a node: its instruments, one scrape's numbers, the
/// process. The caller may register more (the API adds its refusals)
/// before [`encode_text`].
pub(crate) fn registry(instruments: &NodeInstruments, scrape: Scrape) -> Registry {
    let mut registry = Registry::default();
    instruments.register(&mut registry);
    registry.register_collector(Box::new(scrape));
    registry.register_collector(Box::new(ProcessCollector));
    registry
}

/// The registry in the Prometheus text format 0.0.4.
pub fn encode_text(registry: &Registry) -> String {
    let mut text = String::new();
    // Writing into a String cannot fail; an encoder error would be a bug
    // in a collector, and a scrape then shows what was written before it.
    if let Err(error) = prometheus_client::encoding::prometheus_text::encode(&mut text, registry) {
        tracing::warn!(%error, "encoding the metrics failed");
    }
    text
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
    /// Requests carrying forwarded client commands (one or a batch).
    pub forward_batches: AtomicU64,
    /// Client commands forwarded; over `forward_batches`, the batch size.
    pub forwarded_proposals: AtomicU64,
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
    use crate::node::{Applied, ClientError, GuestStatus, NodeStatus};
    use crate::wasm::{GuestFailure, RuntimeStats};
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    #[test]
    fn proposal_timer_records_outcomes() {
        let instruments = NodeInstruments::default();
        let applied = |result| Applied {
            index: 1,
            term: 1,
            result,
            fuel_used: 0,
        };
        instruments
            .start_proposal()
            .finish(&Ok(applied(Ok(Vec::new()))));
        instruments
            .start_proposal()
            .finish(&Ok(applied(Err(GuestFailure::Rejected {
                message: "no".into(),
            }))));
        instruments
            .start_proposal()
            .finish(&Err(ClientError::Overloaded));
        drop(instruments.start_proposal());
        let count = |outcome: &str| {
            instruments.sample(&format!(
                "iroh_raft_proposals_total{{outcome=\"{outcome}\"}}"
            ))
        };
        assert_eq!(count(instruments::OUTCOME_ABANDONED), Some(1.0));
        assert_eq!(count("guest_error"), Some(1.0));
        assert_eq!(count("ok"), Some(1.0));
        assert_eq!(count("overloaded"), Some(1.0));
        // Only the error is a failed proposal; only applied proposals have
        // a latency.
        assert_eq!(
            instruments.sample("iroh_raft_proposals_failed_total"),
            Some(1.0)
        );
        assert_eq!(
            instruments.sample("iroh_raft_proposal_duration_seconds_count"),
            Some(2.0)
        );
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

    fn render(instruments: &NodeInstruments, scrape: Scrape) -> String {
        encode_text(&registry(instruments, scrape))
    }

    #[test]
    fn render_reports_gauges_and_peers_only_when_present() {
        let instruments = NodeInstruments::default();
        let single = render(
            &instruments,
            Scrape {
                status: status("leader"),
                guest: RuntimeStats::default(),
                peers: Vec::new(),
                storage_bytes: None,
            },
        );
        for line in [
            "iroh_raft_term 3\n",
            "iroh_raft_role{role=\"leader\"} 1\n",
            "iroh_raft_role{role=\"follower\"} 0\n",
            "iroh_raft_has_leader 1\n",
            "iroh_raft_commit_index 7\n",
            "iroh_raft_applied_index 6\n",
            "iroh_raft_last_log_index 8\n",
            "iroh_raft_leader_id 1\n",
            "iroh_raft_voters 3\n",
            "iroh_raft_proposals_total{outcome=\"ok\"} 0\n",
            "iroh_raft_proposals_failed_total 0\n",
            "iroh_raft_proposal_duration_seconds_count 0\n",
            "iroh_raft_disk_fsync_duration_seconds_count 0\n",
            "iroh_raft_apply_duration_seconds_count 0\n",
            "iroh_raft_snapshot_duration_seconds_count{phase=\"install\"} 0\n",
            "iroh_raft_leader_changes_seen_total 0\n",
            "iroh_raft_guest_applied_entries_total 0\n",
            "# TYPE iroh_raft_node_info gauge\n",
            "iroh_raft_node_info{id=\"1\",guest=\"counter\",guest_version=\"0.1.0\",guest_hash=\"ab\"} 1\n",
            "# TYPE process_cpu_seconds_total counter\n",
            "# TYPE iroh_raft_build_info gauge\n",
        ] {
            assert!(single.contains(line), "missing {line:?} in\n{single}");
        }
        assert!(!single.contains("iroh_raft_peer_"), "{single}");
        assert!(!single.contains("iroh_raft_storage_size_bytes"), "{single}");

        let peer = Arc::new(PeerStats::default());
        peer.bytes_sent.store(1234, Ordering::Relaxed);
        instruments.observe_fsync(Duration::from_millis(3));
        instruments.observe_snapshot(SnapshotPhase::Create, Duration::from_millis(20), 4096);
        instruments.leader_changed();
        let mut follower = status("follower");
        follower.leader_id = None;
        let cluster = render(
            &instruments,
            Scrape {
                status: follower,
                guest: RuntimeStats::default(),
                peers: vec![(2, peer)],
                storage_bytes: Some(4096),
            },
        );
        for line in [
            "iroh_raft_peer_sent_bytes_total{peer=\"2\"} 1234\n",
            "iroh_raft_peer_queue_drops_total{peer=\"2\"} 0\n",
            "iroh_raft_storage_size_bytes 4096\n",
            "iroh_raft_has_leader 0\n",
            "iroh_raft_disk_fsync_duration_seconds_bucket{le=\"0.0025\"} 0\n",
            "iroh_raft_disk_fsync_duration_seconds_bucket{le=\"0.005\"} 1\n",
            "iroh_raft_disk_fsync_duration_seconds_count 1\n",
            "iroh_raft_snapshot_duration_seconds_count{phase=\"create\"} 1\n",
            "iroh_raft_snapshot_size_bytes{phase=\"create\"} 4096\n",
            "iroh_raft_leader_changes_seen_total 1\n",
        ] {
            assert!(cluster.contains(line), "missing {line:?} in\n{cluster}");
        }
    }

    /// Every sample belongs to the family declared just before it, no
    /// family is declared twice, and every name is valid: what
    /// Prometheus's parser requires.
    #[test]
    fn every_sample_belongs_to_a_declared_family() {
        let text = render(
            &NodeInstruments::default(),
            Scrape {
                status: status("follower"),
                guest: RuntimeStats::default(),
                peers: vec![(2, Arc::default())],
                storage_bytes: Some(1),
            },
        );
        let valid = |name: &str| {
            let mut chars = name.chars();
            chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        };
        let mut declared = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap_or_default();
                assert!(!declared.contains(&name.to_string()), "{name} twice");
                declared.push(name.to_string());
            } else if let Some(rest) = line.strip_prefix("# HELP ") {
                assert!(!rest.ends_with(".."), "{line}");
            } else {
                let series = line.split([' ', '{']).next().unwrap_or_default();
                let family = declared.last().expect("a TYPE line first");
                assert!(
                    series == family
                        || ["_bucket", "_sum", "_count"]
                            .iter()
                            .any(|s| series == format!("{family}{s}")),
                    "{series} outside its family {family}"
                );
                assert!(valid(series), "{series}");
            }
        }
    }
}
