//! Single behaviours measured on a calm, formed cluster in virtual time,
//! for tests that check a bound a seeded run's invariants do not.

use std::time::Duration;

use tokio::sync::oneshot;

use super::{Step, World};
use crate::node::inbox::NodeMsg;

/// Longer than any calm network delay: what a crashed node sent before it
/// died has arrived after this.
const IN_FLIGHT_DRAIN: Duration = Duration::from_millis(20);

/// What `World::split_vote_recovery` saw.
#[derive(Debug, Clone, Copy)]
pub struct SplitVote {
    /// From the survivors' simultaneous campaign to a new leader.
    pub elected_after: Duration,
    /// How many terms the election took (2 when the first vote split).
    pub terms: u64,
    /// The shortest of the survivors' election timeouts, in ticks.
    pub shorter_timeout_ticks: usize,
    /// Whether a survivor's core reported that a tick started a campaign
    /// (the retry after the split), as the node's driver is told so it can
    /// shift its ticks (`NodeCore::take_campaign_started`).
    pub retry_started_by_a_tick: bool,
}

impl World<'_> {
    /// Propose one write on the leader, with nothing after it, and return
    /// how long after the leader committed it every follower knew it was
    /// committed. Nothing else carries the commit index here, so this is
    /// the commit notice's bound (`node::core::commit_notice`).
    pub fn lone_write_commit_spread(&mut self) -> Step<Duration> {
        let Some(leader) = self.leader() else {
            return Err(self.stop("no leader to write to"));
        };
        let (reply, _answer) = oneshot::channel();
        self.input(
            leader,
            NodeMsg::Propose {
                command: b"put lone-write v1".to_vec(),
                reply,
            },
        )?;
        let index = self.view_of(leader).map_or(0, |view| view.last_index);
        let committed_on = |world: &World, id: u64| {
            world
                .view_of(id)
                .is_some_and(|view| view.commit_index >= index)
        };
        let limit = Duration::from_secs(5);
        self.run_until(limit, |w| committed_on(w, leader))?;
        let committed_at = self.now;
        self.run_until(limit, |w| {
            w.live_ids().into_iter().all(|id| committed_on(w, id))
        })?;
        Ok(self.now - committed_at)
    }

    /// Crash the leader and, once its last messages have arrived, make
    /// every survivor campaign at the same instant, so each votes for
    /// itself and the vote splits; run until one of them leads.
    pub fn split_vote_recovery(&mut self) -> Step<SplitVote> {
        let Some(leader) = self.leader() else {
            return Err(self.stop("no leader to crash"));
        };
        let term_before = self.view_of(leader).map_or(0, |view| view.term);
        self.crash(leader);
        let survivors = self.live_ids();
        if survivors.len() < 2 {
            return Err(self.stop("too few survivors to split a vote"));
        }
        // Let what the leader sent before it died arrive first: a follower
        // that hears from a leader is in its lease again and ignores votes.
        self.run_for(IN_FLIGHT_DRAIN)?;
        let campaigned_at = self.now;
        for &id in &survivors {
            let mut campaigned = Ok(());
            self.drive(id, |live, _| {
                campaigned = live.core.campaign_now();
                // Only campaigns a tick starts count from here.
                live.core.take_campaign_started();
            })?;
            if let Err(error) = campaigned {
                return Err(self.stop(format!("node {id} could not campaign: {error}")));
            }
        }
        self.run_until(Duration::from_secs(10), |w| w.leader().is_some())?;
        let mut retry_started_by_a_tick = false;
        for &id in &survivors {
            self.drive(id, |live, _| {
                retry_started_by_a_tick |= live.core.take_campaign_started();
            })?;
        }
        let Some(view) = self.leader().and_then(|id| self.view_of(id)) else {
            return Err(self.stop("the leader vanished"));
        };
        let shorter_timeout_ticks = survivors
            .iter()
            .filter_map(|id| self.nodes.get(id))
            .map(|node| node.election_timeout_ticks)
            .min()
            .unwrap_or(0);
        Ok(SplitVote {
            elected_after: self.now - campaigned_at,
            terms: view.term - term_before,
            shorter_timeout_ticks,
            retry_started_by_a_tick,
        })
    }

    fn view_of(&self, id: u64) -> Option<crate::node::core::RaftView> {
        self.nodes.get(&id)?.view()
    }
}
