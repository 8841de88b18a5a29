//! Single behaviours measured on a calm, formed cluster in virtual time,
//! for tests that check a bound a seeded run's invariants do not.

use std::time::Duration;

use tokio::sync::oneshot;

use super::{Step, World};
use crate::node::inbox::NodeMsg;

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

    fn view_of(&self, id: u64) -> Option<crate::node::core::RaftView> {
        self.nodes.get(&id)?.view()
    }
}
