//! Divergence detection: replicas compare hashes of their state at indexes
//! they agree on through the log.
//!
//! Every [`DEFAULT_STATE_CHECK_EVERY`] committed entries the leader appends
//! a *state check* entry. Each replica, applying it, hashes its guest's
//! `snapshot()` (BLAKE3) and sends the hash to every member over
//! iroh-raft/0. A replica that sees a majority of voters agree on a hash
//! other than its own has diverged: its state is not what the cluster's log
//! says it should be (a guest that breaks the determinism rules in a way
//! the sandbox cannot prevent, a host bug, a disk that lied). It says so
//! loudly (an error in the log, `diverged` in its status, the
//! `iroh_raft_diverged` metric) and stops applying and answering, rather
//! than serve wrong answers. The fix is operational: wipe the node and add
//! it again (it then restores the majority's snapshot).
//!
//! The check costs one `snapshot()` per interval on every replica.

use crate::limits::KEPT_CHECK_ROUNDS;
use std::collections::BTreeMap;

/// What a replica found when it disagreed with the majority (a wire type).
pub use iroh_raft_client::Divergence;

/// Hashes reported for recent state checks, and the verdict.
#[derive(Debug)]
pub struct DivergenceMonitor {
    own_id: u64,
    /// Per check index: every node's reported hash (this node's included).
    rounds: BTreeMap<u64, BTreeMap<u64, [u8; 32]>>,
    voters: Vec<u64>,
    diverged: Option<Divergence>,
    /// The latest check at which a majority (this node included) agreed.
    last_verified: Option<u64>,
}

impl DivergenceMonitor {
    pub fn new(own_id: u64) -> Self {
        DivergenceMonitor {
            own_id,
            rounds: BTreeMap::new(),
            voters: Vec::new(),
            diverged: None,
            last_verified: None,
        }
    }

    pub fn diverged(&self) -> Option<&Divergence> {
        self.diverged.as_ref()
    }

    pub fn last_verified(&self) -> Option<u64> {
        self.last_verified
    }

    /// Record `node`'s hash at check `index`; `voters` is the current
    /// configuration (empty: keep the last known). Returns the divergence if
    /// this report revealed it.
    pub fn record(
        &mut self,
        node: u64,
        index: u64,
        hash: [u8; 32],
        voters: &[u64],
    ) -> Option<Divergence> {
        if !voters.is_empty() {
            self.voters = voters.to_vec();
        }
        if self.rounds.len() >= KEPT_CHECK_ROUNDS && !self.rounds.contains_key(&index) {
            let oldest = *self.rounds.keys().next()?;
            if index < oldest {
                return None;
            }
            self.rounds.remove(&oldest);
        }
        self.rounds.entry(index).or_default().insert(node, hash);
        self.evaluate(index)
    }

    fn evaluate(&mut self, index: u64) -> Option<Divergence> {
        if self.diverged.is_some() || self.voters.is_empty() {
            return None;
        }
        let round = self.rounds.get(&index)?;
        let own = *round.get(&self.own_id)?;
        let majority = self.voters.len() / 2 + 1;
        let mut tally: BTreeMap<[u8; 32], Vec<u64>> = BTreeMap::new();
        for (node, hash) in round {
            if self.voters.contains(node) {
                tally.entry(*hash).or_default().push(*node);
            }
        }
        for (hash, nodes) in tally {
            if nodes.len() < majority {
                continue;
            }
            if hash == own {
                self.last_verified = self.last_verified.max(Some(index));
                return None;
            }
            let divergence = Divergence {
                index,
                own_hash: hex(&own),
                majority_hash: hex(&hash),
                majority: nodes,
            };
            self.diverged = Some(divergence.clone());
            return Some(divergence);
        }
        None
    }
}

fn hex(hash: &[u8; 32]) -> String {
    blake3::Hash::from_bytes(*hash).to_hex().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replica_outvoted_by_a_majority_has_diverged() {
        let (good, bad) = ([1u8; 32], [2u8; 32]);
        let mut three = DivergenceMonitor::new(3);
        assert_eq!(three.record(3, 10, bad, &[1, 2, 3]), None);
        assert_eq!(
            three.record(1, 10, good, &[]),
            None,
            "one vote is no majority"
        );
        let found = three.record(2, 10, good, &[]).expect("diverged");
        assert_eq!((found.index, found.majority.clone()), (10, vec![1, 2]));
        assert_eq!(three.diverged(), Some(&found));

        let mut one = DivergenceMonitor::new(1);
        one.record(2, 10, good, &[1, 2, 3]);
        assert_eq!(one.record(1, 10, good, &[]), None);
        assert_eq!(one.last_verified(), Some(10));
        assert_eq!(
            one.record(3, 10, bad, &[]),
            None,
            "the minority does not matter"
        );
        assert!(one.diverged().is_none());
    }

    #[test]
    fn learners_do_not_vote_and_old_rounds_are_dropped() {
        let mut node = DivergenceMonitor::new(1);
        node.record(1, 5, [0; 32], &[1, 2, 3]);
        node.record(4, 5, [9; 32], &[]);
        node.record(5, 5, [9; 32], &[]);
        assert!(node.diverged().is_none(), "4 and 5 are not voters");
        for index in 6..(6 + KEPT_CHECK_ROUNDS as u64) {
            node.record(1, index, [0; 32], &[]);
        }
        assert_eq!(node.rounds.len(), KEPT_CHECK_ROUNDS);
        assert_eq!(node.record(2, 5, [0; 32], &[]), None, "too old");
    }
}
