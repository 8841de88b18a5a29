//! A follower that serves no clients applies committed entries in batches.
//!
//! At one client, the leader's append for each write carries the commit of
//! the write before it, so a follower's applier woke once per write to
//! apply one entry: a thread wake-up and ~25 µs of CPU per write on a
//! machine whose CPU the next commit waits for. Nobody waits for that
//! follower's applied state unless it serves clients, so such a follower
//! now lets its apply jobs gather for up to
//! [`FOLLOWER_APPLY_DELAY`](crate::limits::FOLLOWER_APPLY_DELAY) and hands
//! them over together. Anything else for the applier (a query, a snapshot,
//! a barrier) takes the held jobs with it, in order, so what it sees is
//! unchanged; a node that serves a client (a write or a read through its
//! API) applies at once for [`CLIENT_PEER_WINDOW`] after.

use std::time::Instant;

use super::applier::ApplyJob;
use crate::limits::{CLIENT_PEER_WINDOW, FOLLOWER_APPLY_DELAY, MAX_HELD_APPLY_JOBS};

/// Apply jobs a follower holds back, and when it last served a client.
#[derive(Debug, Default)]
pub(crate) struct ApplyHold {
    held: Vec<ApplyJob>,
    /// When the held jobs go to the applier anyway.
    due: Option<Instant>,
    client_seen: Option<Instant>,
}

impl ApplyHold {
    /// This node took a client's write or read at `now`.
    pub(crate) fn note_client(&mut self, now: Instant) {
        self.client_seen = Some(now);
    }

    /// What goes to the applier now, in order: the held jobs, then `jobs`;
    /// or nothing, when a follower serving no clients can hold `jobs` (only
    /// entries to apply) as well.
    pub(crate) fn take(
        &mut self,
        jobs: Vec<ApplyJob>,
        follower: bool,
        now: Instant,
    ) -> Vec<ApplyJob> {
        if jobs.is_empty() {
            return jobs;
        }
        let serving = self
            .client_seen
            .is_some_and(|seen| now.saturating_duration_since(seen) < CLIENT_PEER_WINDOW);
        let only_entries = jobs.iter().all(|job| matches!(job, ApplyJob::Apply(_)));
        if follower
            && !serving
            && only_entries
            && self.held.len() + jobs.len() <= MAX_HELD_APPLY_JOBS
        {
            self.held.extend(jobs);
            self.due.get_or_insert(now + FOLLOWER_APPLY_DELAY);
            return Vec::new();
        }
        let mut out = self.release();
        out.extend(jobs);
        out
    }

    /// When the held jobs are due, if any are held.
    pub(crate) fn due(&self) -> Option<Instant> {
        self.due
    }

    /// Every held job, for the applier now.
    pub(crate) fn release(&mut self) -> Vec<ApplyJob> {
        self.due = None;
        std::mem::take(&mut self.held)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::sync::oneshot;

    use super::*;

    fn entries() -> ApplyJob {
        ApplyJob::Apply(Vec::new())
    }

    fn barrier() -> ApplyJob {
        ApplyJob::Barrier(oneshot::channel().0)
    }

    fn kinds(jobs: &[ApplyJob]) -> Vec<&'static str> {
        jobs.iter()
            .map(|job| match job {
                ApplyJob::Apply(_) => "apply",
                ApplyJob::Barrier(_) => "barrier",
                _ => "other",
            })
            .collect()
    }

    /// A follower serving nobody holds entries until they are due or until
    /// another job comes, which takes them along first.
    #[test]
    fn a_follower_serving_nobody_holds_entries_until_something_else_comes() {
        let now = Instant::now();
        let mut hold = ApplyHold::default();
        assert!(hold.take(vec![entries()], true, now).is_empty());
        assert_eq!(hold.due(), Some(now + FOLLOWER_APPLY_DELAY));
        let later = now + Duration::from_millis(1);
        assert!(hold.take(vec![entries()], true, later).is_empty());
        assert_eq!(
            hold.due(),
            Some(now + FOLLOWER_APPLY_DELAY),
            "the first held sets it"
        );
        let out = hold.take(vec![barrier()], true, later);
        assert_eq!(kinds(&out), ["apply", "apply", "barrier"]);
        assert_eq!(hold.due(), None);
        assert!(hold.take(Vec::new(), true, later).is_empty());
        assert!(hold.take(vec![entries()], true, later).is_empty());
        assert_eq!(kinds(&hold.release()), ["apply"]);
        assert_eq!(hold.due(), None);
    }

    /// A leader, and a follower that served a client within the window,
    /// apply at once; a full hold goes out.
    #[test]
    fn a_leader_or_a_node_serving_clients_applies_at_once() {
        let now = Instant::now();
        let mut hold = ApplyHold::default();
        assert_eq!(kinds(&hold.take(vec![entries()], false, now)), ["apply"]);
        hold.note_client(now);
        assert_eq!(kinds(&hold.take(vec![entries()], true, now)), ["apply"]);
        let almost = now + CLIENT_PEER_WINDOW - Duration::from_millis(1);
        assert_eq!(kinds(&hold.take(vec![entries()], true, almost)), ["apply"]);
        let after = now + CLIENT_PEER_WINDOW;
        assert!(hold.take(vec![entries()], true, after).is_empty());
        for _ in 1..MAX_HELD_APPLY_JOBS {
            assert!(hold.take(vec![entries()], true, after).is_empty());
        }
        let out = hold.take(vec![entries()], true, after);
        assert_eq!(out.len(), MAX_HELD_APPLY_JOBS + 1, "a full hold goes out");
        assert_eq!(hold.due(), None);
    }
}
