//! Telling followers the commit index: with the next append, not with an
//! append of its own.
//!
//! By default raft-rs broadcasts an empty append whenever a leader's commit
//! index advances, so each write cost every follower two appends, two
//! answers and their delivery confirmations: one round for the entry, one
//! for its commit. Each is a wakeup on every node, and with one client at a
//! time that second round was ~15% of the cluster's CPU per write and
//! ~0.1 ms of its latency (BENCHMARKS.md, step 25). The node sets raft-rs's
//! `skip_bcast_commit`, so the commit index rides on the next append
//! instead, and the leader owes a notice:
//!
//! - the next proposal pays it (raft-rs broadcasts every proposal, and each
//!   append carries the commit index);
//! - a follower whose forwarded command just committed gets it at once: it
//!   answers its client only once the command applies there;
//! - otherwise the driver sends it after [`COMMIT_NOTICE_DELAY`] (the
//!   simulation sets the same timer in virtual time), and a tick sends
//!   whatever is still owed.
//!
//! raft-rs still broadcasts at once while a configuration change is
//! pending, and every heartbeat carries the commit index too.
//!
//! [`COMMIT_NOTICE_DELAY`]: crate::limits::COMMIT_NOTICE_DELAY

use std::collections::VecDeque;

use raft::StateRole;

use super::NodeCore;

/// What the leader still has to tell its followers about its commit index.
#[derive(Debug, Default)]
pub(super) struct CommitNotice {
    /// The commit index as of the last broadcast (a proposal or a notice):
    /// every follower that could take an append was sent this one.
    told: u64,
    /// Log indexes of forwarded commands proposed in this term and not yet
    /// committed, in order: their origins wait to apply them.
    forwarded: VecDeque<u64>,
}

impl NodeCore {
    /// Whether the leader's commit index advanced past what it last
    /// broadcast: the driver sends [`Self::send_commit_notice`] if nothing
    /// else carries it within [`crate::limits::COMMIT_NOTICE_DELAY`].
    pub fn owes_commit_notice(&self) -> bool {
        self.raw.raft.state == StateRole::Leader
            && self.raw.raft.raft_log.committed > self.commit_notice.told
    }

    /// Broadcast the commit index (an append to every follower, empty if it
    /// has every entry), if the leader owes it.
    pub fn send_commit_notice(&mut self) {
        if self.owes_commit_notice() {
            self.raw.raft.bcast_append();
            self.note_broadcast();
        }
    }

    /// raft-rs just broadcast appends (a proposal): they carry the commit
    /// index.
    pub(super) fn note_broadcast(&mut self) {
        self.commit_notice.told = self.raw.raft.raft_log.committed;
    }

    /// Forwarded commands were proposed at `indexes`.
    pub(super) fn note_forwarded(&mut self, indexes: impl IntoIterator<Item = u64>) {
        self.commit_notice.forwarded.extend(indexes);
    }

    /// Send the notice now if a forwarded command committed since the last
    /// broadcast: its origin is waiting for it. Called before each Ready.
    pub(super) fn notice_forwarded_commits(&mut self) {
        if self.raw.raft.state != StateRole::Leader {
            self.commit_notice.forwarded.clear();
            return;
        }
        let committed = self.raw.raft.raft_log.committed;
        let mut waiting = false;
        while self
            .commit_notice
            .forwarded
            .front()
            .is_some_and(|index| *index <= committed)
        {
            self.commit_notice.forwarded.pop_front();
            waiting = true;
        }
        if waiting {
            self.send_commit_notice();
        }
    }
}
