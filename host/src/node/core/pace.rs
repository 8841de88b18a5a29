//! Which followers a leader keeps up to date at once, and which get their
//! appends in batches.
//!
//! A commit waits for a quorum: in a 3-node cluster, the leader and one
//! follower. Sending every append to the other follower at once costs it a
//! sync and the leader a round of frames per write, for an answer the
//! commit does not need; on a machine short of CPU that work delays the
//! commit itself. So the followers serving clients (their clients wait
//! for their own log) and, besides them, as many as a commit needs (the
//! furthest ahead) are *eager*; the rest are *lazy*: the transport holds
//! their appends for
//! [`LAZY_APPEND_DELAY`](crate::limits::LAZY_APPEND_DELAY) and sends what
//! gathered as one frame. Nothing about safety changes (a held append is a
//! slower network); a lazy follower that gets ahead of an eager one, as
//! when the eager one stops answering, is eager from the next tick.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use raft::StateRole;

use super::NodeCore;
use crate::limits::CLIENT_PEER_WINDOW;

/// When each peer last served a client through this node, and the lazy
/// followers chosen last.
#[derive(Debug, Default)]
pub(super) struct Pace {
    client_seen: BTreeMap<u64, Instant>,
    lazy: BTreeSet<u64>,
}

impl NodeCore {
    /// `peer` forwarded a client's write or asked for a read index at `now`.
    pub(crate) fn note_client_peer(&mut self, peer: u64, now: Instant) {
        self.pace.client_seen.insert(peer, now);
    }

    /// The followers whose appends may wait, as last chosen.
    pub fn lazy_followers(&self) -> &BTreeSet<u64> {
        &self.pace.lazy
    }

    /// Choose the followers whose appends may wait anew (none unless this
    /// node leads a cluster in a single configuration: a joint one needs
    /// two quorums); whether the choice changed.
    pub fn choose_lazy_followers(&mut self, now: Instant) -> bool {
        let lazy = self.lazy_followers_now(now);
        let changed = lazy != self.pace.lazy;
        self.pace.lazy = lazy;
        changed
    }

    fn lazy_followers_now(&mut self, now: Instant) -> BTreeSet<u64> {
        let client_seen = &mut self.pace.client_seen;
        client_seen.retain(|_, seen| now.saturating_duration_since(*seen) < CLIENT_PEER_WINDOW);
        let raft = &self.raw.raft;
        let conf = self.storage.conf_state();
        if raft.state != StateRole::Leader || !conf.voters_outgoing.is_empty() {
            return BTreeSet::new();
        }
        let matched = |id: &u64| raft.prs().get(*id).map_or(0, |progress| progress.matched);
        let followers: Vec<(u64, u64)> = conf
            .voters
            .iter()
            .filter(|id| **id != raft.id)
            .map(|id| (*id, matched(id)))
            .collect();
        let serving: BTreeSet<u64> = client_seen.keys().copied().collect();
        choose_lazy(&followers, &conf.learners, &serving)
    }
}

/// The lazy ones among `followers` (`(id, matched index)`, the leader not
/// among them) and `learners`: all but the followers serving clients and
/// enough of the others, the furthest ahead (the lowest id first among
/// equals, so the choice holds still while the cluster is idle), to make a
/// quorum with the leader. A follower serving clients is busy with them:
/// the commit must not have to wait for it.
fn choose_lazy(
    followers: &[(u64, u64)],
    learners: &[u64],
    serving: &BTreeSet<u64>,
) -> BTreeSet<u64> {
    // A quorum is `voters / 2 + 1`, the leader included.
    let voters = followers.len() + 1;
    let needed = voters / 2;
    let mut furthest: Vec<(u64, u64)> = followers
        .iter()
        .copied()
        .filter(|(id, _)| !serving.contains(id))
        .collect();
    furthest.sort_by_key(|(id, matched)| (std::cmp::Reverse(*matched), *id));
    let eager: BTreeSet<u64> = furthest
        .iter()
        .take(needed)
        .map(|(id, _)| *id)
        .chain(serving.iter().copied())
        .collect();
    followers
        .iter()
        .map(|(id, _)| *id)
        .chain(learners.iter().copied())
        .filter(|id| !eager.contains(id))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[u64]) -> BTreeSet<u64> {
        ids.iter().copied().collect()
    }

    #[test]
    fn a_three_node_leader_keeps_the_follower_furthest_ahead_eager() {
        assert_eq!(choose_lazy(&[(2, 10), (3, 12)], &[], &set(&[])), set(&[2]));
        assert_eq!(choose_lazy(&[(2, 12), (3, 10)], &[], &set(&[])), set(&[3]));
        // Equal progress (an idle cluster): the lower id stays eager.
        assert_eq!(choose_lazy(&[(2, 10), (3, 10)], &[], &set(&[])), set(&[3]));
    }

    #[test]
    fn a_follower_serving_clients_is_eager_and_the_quorum_does_not_count_on_it() {
        assert_eq!(choose_lazy(&[(2, 12), (3, 10)], &[], &set(&[3])), set(&[]));
        assert_eq!(
            choose_lazy(&[(2, 12), (3, 10)], &[], &set(&[2, 3])),
            set(&[])
        );
    }

    #[test]
    fn a_five_node_leader_keeps_two_followers_eager_besides_those_serving_clients() {
        let followers = [(2, 5), (3, 9), (4, 7), (5, 9)];
        assert_eq!(choose_lazy(&followers, &[], &set(&[])), set(&[2, 4]));
        assert_eq!(choose_lazy(&followers, &[], &set(&[3])), set(&[2]));
        assert_eq!(choose_lazy(&followers, &[], &set(&[2])), set(&[4]));
    }

    #[test]
    fn two_voters_have_no_lazy_follower_and_learners_are_lazy() {
        assert_eq!(choose_lazy(&[(2, 1)], &[], &set(&[])), set(&[]));
        assert_eq!(choose_lazy(&[], &[], &set(&[])), set(&[]));
        assert_eq!(choose_lazy(&[(2, 1)], &[7, 8], &set(&[8])), set(&[7]));
    }
}
