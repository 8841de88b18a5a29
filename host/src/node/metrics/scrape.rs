//! What one scrape reads from the numbers' owners (raft-rs's view in the
//! node status, the applier's [`RuntimeStats`], the transport's
//! [`PeerStats`], sled's size on disk), written as a `prometheus-client`
//! collector. Nothing here is stored between scrapes, so it can never
//! disagree with `/v1/status`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;

use super::PeerStats;
use super::describe::{self, Written};
use crate::node::NodeStatus;
use crate::wasm::RuntimeStats;

/// The roles a node reports (see [`NodeStatus::role`]), one series each.
const ROLES: [&str; 4] = ["leader", "follower", "candidate", "pre_candidate"];

/// The numbers one scrape reads from their owners.
#[derive(Debug)]
pub(crate) struct Scrape {
    pub status: NodeStatus,
    pub guest: RuntimeStats,
    /// Per-peer transport counters; empty without a network transport.
    pub peers: Vec<(u64, Arc<PeerStats>)>,
    /// `None` if it could not be measured (the series is then left out).
    pub storage_bytes: Option<u64>,
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Written {
        self.raft(&mut encoder)?;
        self.guest(&mut encoder)?;
        if let Some(bytes) = self.storage_bytes {
            describe::gauge(
                &mut encoder,
                "iroh_raft_storage_size_bytes",
                "Bytes the sled store uses on disk.",
                bytes,
            )?;
        }
        self.peers(&mut encoder)
    }
}

impl Scrape {
    fn raft(&self, encoder: &mut DescriptorEncoder) -> Written {
        let status = &self.status;
        let id = status.id.to_string();
        describe::info(
            encoder,
            "iroh_raft_node",
            "Always 1; labels identify the node and its active guest component.",
            &[
                ("id", id.as_str()),
                ("guest", status.guest.name.as_str()),
                ("guest_version", status.guest.version.as_str()),
                ("guest_hash", status.guest.hash.as_str()),
            ],
        )?;
        describe::gauge(encoder, "iroh_raft_term", "Current Raft term.", status.term)?;
        describe::labelled_gauges(
            encoder,
            "iroh_raft_role",
            "1 for the role this node has now, 0 for the others.",
            ROLES.map(|role| ([("role", role)], u64::from(status.role == role))),
        )?;
        describe::gauge(
            encoder,
            "iroh_raft_has_leader",
            "1 if this node knows of a leader, 0 if not (etcd's server_has_leader).",
            u64::from(status.leader_id.is_some()),
        )?;
        describe::gauge(
            encoder,
            "iroh_raft_diverged",
            "1 if this node's state disagreed with the majority's at a state check (it stopped \
             applying).",
            u64::from(status.diverged.is_some()),
        )?;
        describe::gauge(
            encoder,
            "iroh_raft_leader_id",
            "Raft id of the leader this node knows of; 0 if none.",
            status.leader_id.unwrap_or(0),
        )?;
        describe::gauge(
            encoder,
            "iroh_raft_voters",
            "Voters in the current configuration.",
            status.voters.len() as u64,
        )?;
        describe::gauge(
            encoder,
            "iroh_raft_last_log_index",
            "Index of the last entry in this node's log.",
            status.last_index,
        )?;
        describe::gauge(
            encoder,
            "iroh_raft_commit_index",
            "Highest log index known to be committed.",
            status.commit_index,
        )?;
        describe::gauge(
            encoder,
            "iroh_raft_applied_index",
            "Highest log index applied to the guest.",
            status.applied_index,
        )?;
        describe::gauge(
            encoder,
            "iroh_raft_pending_proposals",
            "Proposals waiting to commit on this node.",
            status.pending_proposals as u64,
        )
    }

    fn guest(&self, encoder: &mut DescriptorEncoder) -> Written {
        let guest = &self.guest;
        describe::counter(
            encoder,
            "iroh_raft_guest_applied_entries",
            "Entries applied by the guest in this process (replays after a restart included).",
            guest.applied,
        )?;
        describe::counter(
            encoder,
            "iroh_raft_guest_failed_entries",
            "Applied entries whose result was an error (rejected, trapped, out of fuel or memory).",
            guest.failures,
        )?;
        describe::counter(
            encoder,
            "iroh_raft_guest_instance_rebuilds",
            "Guest instances rebuilt after a trap.",
            guest.rebuilds,
        )?;
        describe::counter(
            encoder,
            "iroh_raft_guest_checkpoints",
            "In-memory guest checkpoints taken.",
            guest.checkpoints,
        )?;
        describe::counter(
            encoder,
            "iroh_raft_guest_checkpoint_failures",
            "In-memory guest checkpoints that failed (the state no longer fits twice in the \
             guest's memory, or snapshot() ran out of fuel).",
            guest.checkpoint_failures,
        )?;
        describe::gauge(
            encoder,
            "iroh_raft_guest_checkpoints_failing",
            "1 while the guest's checkpoints fail: no snapshot is written and the log is not \
             compacted.",
            u64::from(guest.checkpoint_failing_since.is_some()),
        )?;
        describe::gauge(
            encoder,
            "iroh_raft_guest_uncheckpointed_bytes",
            "Bytes of commands applied since the last checkpoint: what rolling back a trap \
             replays.",
            guest.uncheckpointed_bytes,
        )?;
        describe::gauge(
            encoder,
            "iroh_raft_guest_stalled",
            "1 while the guest can no longer make progress and this node refuses new commands.",
            u64::from(guest.stalled),
        )?;
        describe::counter(
            encoder,
            "iroh_raft_guest_apply_fuel",
            "Fuel consumed by guest apply calls; divide by applied entries for fuel per apply.",
            guest.apply_fuel,
        )
    }

    fn peers(&self, encoder: &mut DescriptorEncoder) -> Written {
        if self.peers.is_empty() {
            return Ok(());
        }
        type Read = fn(&PeerStats) -> &AtomicU64;
        let families: [(&str, &str, Read); 8] = [
            (
                "iroh_raft_peer_sent_frames",
                "Frames delivered to the peer.",
                |s| &s.frames_sent,
            ),
            (
                "iroh_raft_peer_sent_messages",
                "Raft messages delivered to the peer.",
                |s| &s.messages_sent,
            ),
            (
                "iroh_raft_peer_sent_bytes",
                "Bytes of Raft messages delivered to the peer.",
                |s| &s.bytes_sent,
            ),
            (
                "iroh_raft_peer_queue_drops",
                "Raft messages dropped because the peer's send queue was full.",
                |s| &s.queue_drops,
            ),
            (
                "iroh_raft_peer_reconnects",
                "Connections dialed to the peer.",
                |s| &s.reconnects,
            ),
            (
                "iroh_raft_peer_send_errors",
                "Batches that failed to reach the peer (Raft retransmits).",
                |s| &s.send_errors,
            ),
            (
                "iroh_raft_peer_forward_batches",
                "Requests forwarding client commands to the peer as leader (a command or a batch).",
                |s| &s.forward_batches,
            ),
            (
                "iroh_raft_peer_forwarded_proposals",
                "Client commands forwarded to the peer as leader.",
                |s| &s.forwarded_proposals,
            ),
        ];
        for (name, help, read) in families {
            describe::labelled_counters(
                encoder,
                name,
                help,
                self.peers.iter().map(|(peer, stats)| {
                    (
                        [("peer", peer.to_string())],
                        read(stats).load(Ordering::Relaxed),
                    )
                }),
            )?;
        }
        Ok(())
    }
}
