//! Forwarded commands that survive the death of the leader they were
//! forwarded to, and still apply exactly once.
//!
//! A follower forwards a client's command to the leader. If the leader dies
//! with the command in flight, the follower cannot ask it what became of
//! the command, and sending it to the next leader could apply it twice.
//! Instead the follower watches its own log, which ends up holding the same
//! committed entries as every other replica's:
//!
//! ```text
//!  follower (origin)                               leader of term T
//!    register(T) ──► waiter {id, T}
//!    forward {command, id, T} ───────────────────► propose only if still
//!                                                  the leader of term T;
//!                                                  the entry carries `id`
//!    applier: entry with `id` applies here ──► waiter: Applied (the
//!             result this replica computed, the same as the leader's)
//!    applier: an entry of a term > T applies
//!             and `id` was not among them  ──► waiter: NeverCommits:
//!             forward again (new id, new term) to the new leader
//! ```
//!
//! Why `NeverCommits` is safe to act on. The leader proposes a tagged
//! command only while it leads term `T` exactly (checked in the node loop,
//! in the same step as the proposal), so the entry, if it exists anywhere,
//! has term `T`, whether or not the leader ever acknowledged it. Say this
//! replica applies a committed entry `e` at index `k` with term `T' > T`,
//! and no entry carrying `id` was applied from the registration up to `k`
//! (none could be before: the command is proposed only after it). If the
//! command's entry ever committed, at index `j`:
//! - `j > k` is impossible: terms never decrease along a log, and the
//!   committed prefix is part of every later leader's log, so no entry of
//!   term `T < T'` can commit after `e`;
//! - `j <= k` is impossible: only one entry ever commits at an index
//!   (Raft's state machine safety), and this replica applied the committed
//!   entries up to `k` without seeing `id`.
//!
//! So it never commits, and sending the command again cannot apply it
//! twice. A replica that skips entries (it installs a snapshot) cannot tell
//! and answers `LostTrack` (`outcome_unknown`): that, and a leader that neither
//! answers nor loses its term, are the only `outcome_unknown` left.
//!
//! Ids carry the node's incarnation (random per process), so entries a
//! restarted node replays never match a waiter of its new life. No table
//! of ids is kept in the replicated state: the waiter lives only on the
//! origin node, for as long as its client waits.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::applier::Applied;
use crate::wasm::GuestFailure;

/// The identity of one forwarded command, carried in its entry's envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ForwardId {
    /// The Raft id of the node the client sent it to.
    pub origin: u64,
    /// Random per run of the origin process.
    pub incarnation: u64,
    /// Counts the origin's forwards in this run.
    pub seq: u64,
}

/// What a forward asks of the leader: propose the command under `id`, and
/// only as the leader of exactly `term`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardTag {
    pub id: ForwardId,
    pub term: u64,
}

/// How a forwarded command's fate was learned from the local log.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Settled {
    /// Its entry applied here, with this result.
    Applied(Applied),
    /// An entry of this later term applied first: it can never commit.
    NeverCommits { term: u64 },
    /// This replica skipped entries (a snapshot) or stopped applying.
    LostTrack,
}

#[derive(Debug)]
struct Waiter {
    term: u64,
    reply: oneshot::Sender<Settled>,
}

/// The forwarded commands of this node whose clients still wait. Fed by
/// the applier with every entry it applies, in log order.
#[derive(Debug)]
pub(crate) struct ForwardWaiters {
    origin: u64,
    incarnation: u64,
    next_seq: AtomicU64,
    waiting: Mutex<BTreeMap<u64, Waiter>>,
}

/// One registered waiter; dropping it unregisters it.
#[derive(Debug)]
pub(crate) struct Registration<'a> {
    waiters: &'a ForwardWaiters,
    pub(crate) tag: ForwardTag,
    answer: oneshot::Receiver<Settled>,
}

impl Registration<'_> {
    /// Wait until the command's fate is known.
    pub(crate) async fn settled(&mut self) -> Settled {
        (&mut self.answer).await.unwrap_or(Settled::LostTrack)
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.waiters.lock().remove(&self.tag.id.seq);
    }
}

impl ForwardWaiters {
    pub(crate) fn new(origin: u64) -> Self {
        // Two runs of a node never share an incarnation.
        Self::with_incarnation(origin, super::randomness::non_secret_u64())
    }

    fn with_incarnation(origin: u64, incarnation: u64) -> Self {
        ForwardWaiters {
            origin,
            incarnation,
            next_seq: AtomicU64::new(0),
            waiting: Mutex::new(BTreeMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Waiter>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A fresh id, waiting for its entry, for a proposal to the leader of
    /// `term` (this node's current term: the leader refuses any other).
    pub(crate) fn register(&self, term: u64) -> Registration<'_> {
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let (reply, answer) = oneshot::channel();
        self.lock().insert(seq, Waiter { term, reply });
        Registration {
            waiters: self,
            tag: ForwardTag {
                id: ForwardId {
                    origin: self.origin,
                    incarnation: self.incarnation,
                    seq,
                },
                term,
            },
            answer,
        }
    }

    /// The applier applied the committed entry at `index` of `term`,
    /// carrying `forward` (if it is a forwarded command) with this result.
    pub(crate) fn applied(
        &self,
        index: u64,
        term: u64,
        forward: Option<&ForwardId>,
        result: &Result<Vec<u8>, GuestFailure>,
        fuel_used: u64,
    ) {
        let mut waiting = self.lock();
        if waiting.is_empty() {
            return;
        }
        if let Some(id) = forward
            && id.origin == self.origin
            && id.incarnation == self.incarnation
            && let Some(waiter) = waiting.remove(&id.seq)
        {
            let _ = waiter.reply.send(Settled::Applied(Applied {
                index,
                term,
                result: result.clone(),
                fuel_used,
            }));
        }
        // Every proposal of an older term that has not applied by now never
        // will (see the module docs).
        let superseded: Vec<u64> = waiting
            .iter()
            .filter(|(_, waiter)| waiter.term < term)
            .map(|(seq, _)| *seq)
            .collect();
        for seq in superseded {
            if let Some(waiter) = waiting.remove(&seq) {
                let _ = waiter.reply.send(Settled::NeverCommits { term });
            }
        }
    }

    /// Entries were skipped (a snapshot was installed) or will not be
    /// applied any more: no waiter can tell what became of its command.
    pub(crate) fn lost_track(&self) {
        for (_, waiter) in std::mem::take(&mut *self.lock()) {
            let _ = waiter.reply.send(Settled::LostTrack);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok() -> Result<Vec<u8>, GuestFailure> {
        Ok(b"7".to_vec())
    }

    fn now(registration: &mut Registration<'_>) -> Option<Settled> {
        registration.answer.try_recv().ok()
    }

    #[test]
    fn its_own_entry_answers_with_the_local_result() {
        let waiters = ForwardWaiters::with_incarnation(2, 99);
        let mut registration = waiters.register(5);
        let id = registration.tag.id;
        assert_eq!(
            (id.origin, id.incarnation, registration.tag.term),
            (2, 99, 5)
        );
        waiters.applied(10, 5, None, &ok(), 0);
        assert_eq!(now(&mut registration), None, "another entry of its term");
        waiters.applied(11, 5, Some(&id), &ok(), 3);
        assert_eq!(
            now(&mut registration),
            Some(Settled::Applied(Applied {
                index: 11,
                term: 5,
                result: ok(),
                fuel_used: 3
            }))
        );
    }

    #[test]
    fn a_later_term_settles_it_as_never_committing() {
        let waiters = ForwardWaiters::with_incarnation(2, 99);
        let mut old = waiters.register(5);
        let mut current = waiters.register(6);
        waiters.applied(20, 6, None, &ok(), 0);
        assert_eq!(now(&mut old), Some(Settled::NeverCommits { term: 6 }));
        assert_eq!(now(&mut current), None, "proposed in the term that applies");
        waiters.applied(21, 7, None, &ok(), 0);
        assert_eq!(now(&mut current), Some(Settled::NeverCommits { term: 7 }));
    }

    #[test]
    fn its_entry_in_a_later_term_still_counts_as_applied() {
        let waiters = ForwardWaiters::with_incarnation(2, 99);
        let mut registration = waiters.register(5);
        let id = registration.tag.id;
        waiters.applied(30, 6, Some(&id), &ok(), 0);
        assert!(matches!(now(&mut registration), Some(Settled::Applied(_))));
    }

    #[test]
    fn another_incarnation_or_origin_never_matches() {
        let waiters = ForwardWaiters::with_incarnation(2, 99);
        let mut registration = waiters.register(5);
        let mut id = registration.tag.id;
        id.incarnation = 98;
        waiters.applied(40, 5, Some(&id), &ok(), 0);
        id.incarnation = 99;
        id.origin = 3;
        waiters.applied(41, 5, Some(&id), &ok(), 0);
        assert_eq!(now(&mut registration), None);
    }

    #[test]
    fn ids_are_fresh_and_dropping_unregisters() {
        let waiters = ForwardWaiters::with_incarnation(2, 99);
        let first = waiters.register(5);
        let second = waiters.register(5);
        assert_ne!(first.tag.id, second.tag.id);
        drop(first);
        assert_eq!(waiters.lock().len(), 1);
        drop(second);
        assert!(waiters.lock().is_empty());
        assert_ne!(
            ForwardWaiters::new(2).incarnation,
            ForwardWaiters::new(2).incarnation
        );
    }

    #[test]
    fn a_snapshot_loses_track_of_every_waiter() {
        let waiters = ForwardWaiters::with_incarnation(2, 99);
        let mut registration = waiters.register(5);
        waiters.lost_track();
        assert_eq!(now(&mut registration), Some(Settled::LostTrack));
    }
}
