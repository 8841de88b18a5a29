//! Reads: stale, lease and linearizable (ReadIndex) queries, and the lease
//! that lets a leader answer without a round trip.

use crate::limits::{LEASE_DURATION, READ_INDEX_TIMEOUT};
use std::time::Instant;

use raft::StateRole;

use super::{Consistency, NodeCore, Outbound, PendingRead};
use crate::node::applier::{ApplyJob, QueryReply};
use crate::node::error::ClientError;

impl NodeCore {
    /// Serve a query at the requested consistency. The answer comes from the
    /// applier once its state is recent enough.
    pub fn read(
        &mut self,
        request: Vec<u8>,
        consistency: Consistency,
        now: Instant,
        reply: QueryReply,
        out: &mut Vec<ApplyJob>,
    ) {
        let consistency = if self.unsafe_local_reads {
            Consistency::Stale
        } else {
            consistency
        };
        match consistency {
            // Not before the replay after a restart; the applier's inbox
            // raises it to the entries already answered (so a client reads
            // its own acknowledged writes on this node).
            Consistency::Stale => out.push(ApplyJob::Query {
                request,
                min_applied: self.stale_read_floor,
                reply,
            }),
            Consistency::Lease if self.lease_valid(now) => out.push(ApplyJob::Query {
                request,
                min_applied: self.raw.raft.raft_log.committed,
                reply,
            }),
            Consistency::Lease | Consistency::Linearizable => {
                let id = self.next_read_id;
                self.next_read_id += 1;
                self.reads.insert(
                    id,
                    PendingRead {
                        request,
                        reply,
                        issued: now,
                        term: self.raw.raft.term,
                    },
                );
                self.raw.read_index(id.to_be_bytes().to_vec());
            }
        }
    }

    /// A leader may answer from its own state while a quorum confirmed its
    /// leadership less than [`LEASE_DURATION`] ago, in this term, with no
    /// leadership transfer under way.
    pub(super) fn lease_valid(&self, now: Instant) -> bool {
        let raft = &self.raw.raft;
        raft.state == StateRole::Leader
            && raft.lead_transferee.is_none()
            && raft.commit_to_current_term()
            && self
                .lease_until
                .is_some_and(|(until, term)| term == raft.term && now < until)
    }

    /// raft-rs drops a read index request silently when there is no leader
    /// or the leader has not committed in its term yet: ask again each tick,
    /// and give up after [`READ_INDEX_TIMEOUT`].
    pub(super) fn retry_reads(&mut self, now: Instant) {
        let mut expired = Vec::new();
        for (id, read) in &self.reads {
            if now.duration_since(read.issued) > READ_INDEX_TIMEOUT {
                expired.push(*id);
            }
        }
        for id in expired {
            if let Some(read) = self.reads.remove(&id) {
                let _ = read.reply.send(Err(ClientError::Timeout {
                    timeout_ms: READ_INDEX_TIMEOUT.as_millis() as u64,
                }));
            }
        }
        let ids: Vec<u64> = self.reads.keys().copied().collect();
        for id in ids {
            self.raw.read_index(id.to_be_bytes().to_vec());
        }
    }

    /// Read indexes that arrived: their queries go to the applier, to run
    /// once the state includes the read index.
    pub(super) fn collect_read_states(&mut self, states: &[raft::ReadState], out: &mut Outbound) {
        for state in states {
            let Ok(bytes) = <[u8; 8]>::try_from(state.request_ctx.as_slice()) else {
                continue;
            };
            // A retried read can be confirmed twice: the first answer wins.
            let Some(read) = self.reads.remove(&u64::from_be_bytes(bytes)) else {
                continue;
            };
            let raft = &self.raw.raft;
            if raft.state == StateRole::Leader && raft.term == read.term {
                // A quorum acknowledged this leader after `issued`.
                let until = read.issued + LEASE_DURATION;
                if self
                    .lease_until
                    .is_none_or(|(old, term)| term != raft.term || old < until)
                {
                    self.lease_until = Some((until, raft.term));
                }
            }
            out.jobs.push(ApplyJob::Query {
                request: read.request,
                min_applied: state.index,
                reply: read.reply,
            });
        }
    }
}
