//! Persistence off the node loop (raft-rs's asynchronous Ready).
//!
//! The loop stages each Ready's entries and hard state in the log store
//! (written to sled, readable, not yet durable) and goes on stepping;
//! a [`PersistJob`] tells the persistence thread which Ready that was and
//! which messages wait for it. The thread takes every job that queued up
//! while it was busy, makes them durable with one
//! [`SledStorage::sync_staged`] (group commit: the batch grows with the
//! disk's latency), and hands back a [`Persisted`]: the loop then sends
//! those messages and calls raft-rs's `on_persist_ready`. So the rule
//! "persist before you send what depends on it" holds, and a slow fsync
//! no longer stops the loop from reading its inbox.
//!
//! A follower with nothing else waiting makes its Ready durable on the
//! loop itself ([`SyncPlace`]): at one client each write is one append
//! per follower, and the trip to the thread and back was two thread
//! wake-ups on the path to every commit. The jobs and [`complete`] are the
//! same either way.
//!
//! The simulation runs the same jobs through [`complete`] on its own
//! thread, so it tests the code production runs.

use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use raft::prelude::Message;
use tokio::sync::mpsc;

use super::answers;
use crate::limits::{MAX_ENTRIES_SYNCED_ON_LOOP, MAX_SYNC_ON_LOOP, SLOW_SYNC_BACKOFF};
use crate::storage::{SledStorage, StorageError};

/// One staged Ready that still has to be made durable (or that has to
/// wait for an earlier one).
#[derive(Debug)]
pub(crate) struct PersistJob {
    /// raft-rs's number of the Ready (`Ready::number`).
    pub number: u64,
    /// It staged entries or a new term or vote: it needs an fsync.
    /// Otherwise it only carries messages that must not overtake the
    /// jobs before it (a follower's answer may acknowledge entries an
    /// earlier Ready staged).
    pub sync: bool,
    /// Log entries the Ready staged (what a sync on the loop would hold
    /// the node up for: see [`SyncPlace`]).
    pub entries: usize,
    /// raft-rs's `persisted_messages`: sent only once this is durable.
    pub messages: Vec<Message>,
}

/// Jobs up to `number` are durable; `messages` may now be sent.
#[derive(Debug)]
pub(crate) struct Persisted {
    pub number: u64,
    pub messages: Vec<Message>,
}

/// Make a group of jobs durable with at most one sync.
pub(crate) fn complete(
    storage: &SledStorage,
    jobs: Vec<PersistJob>,
) -> Result<Persisted, StorageError> {
    if jobs.iter().any(|job| job.sync) {
        storage.sync_staged()?;
    }
    let mut persisted = Persisted {
        number: 0,
        messages: Vec::new(),
    };
    for job in jobs {
        persisted.number = persisted.number.max(job.number);
        persisted.messages.extend(job.messages);
    }
    answers::drop_superseded_append_answers(&mut persisted.messages);
    Ok(persisted)
}

/// Where the node loop makes a round's jobs durable: on the persistence
/// thread, or on the loop itself.
///
/// The loop syncs itself only as a follower, only when its inbox is empty
/// and the thread holds no job (`NodeCore::persistence_in_flight` before the
/// round), only for a round of at most [`MAX_ENTRIES_SYNCED_ON_LOOP`]
/// entries, and not within [`SLOW_SYNC_BACKOFF`] of the second of two
/// syncs on the loop, that close together, that took longer than
/// [`MAX_SYNC_ON_LOOP`]:
/// - a leader's loop must keep taking proposals and answers while its own
///   write syncs (that is what lets the next sync carry them all);
/// - work already waiting must not wait for the disk as well;
/// - a larger round means busy clients: on a node with one tokio worker
///   the sync would hold up its API and QUIC tasks too;
/// - jobs become durable in order, so none may overtake one on the thread;
/// - a slow disk must not stop the loop answering heartbeats and reads;
///   one slow sync alone is not a slow disk: ext4 commits its journal every
///   5 s, and the sync that meets the commit takes a few milliseconds.
#[derive(Debug, Default)]
pub(crate) struct SyncPlace {
    /// Until then, every job goes to the thread (slow syncs on the loop).
    thread_only_until: Option<Instant>,
    /// When the last slow sync on the loop ended.
    last_slow: Option<Instant>,
}

impl SyncPlace {
    /// Whether the loop makes this round's jobs durable itself.
    pub(crate) fn on_loop(&self, round: RoundShape, now: Instant) -> bool {
        !round.leader
            && round.inbox_empty
            && !round.thread_busy
            && round.entries <= MAX_ENTRIES_SYNCED_ON_LOOP
            && self.thread_only_until.is_none_or(|until| now >= until)
    }

    /// A sync on the loop took `took`, ending at `now`.
    pub(crate) fn synced_on_loop(&mut self, took: Duration, now: Instant) {
        if took <= MAX_SYNC_ON_LOOP {
            return;
        }
        let again = self
            .last_slow
            .is_some_and(|last| now.saturating_duration_since(last) < SLOW_SYNC_BACKOFF);
        self.last_slow = Some(now);
        if again {
            tracing::debug!(
                took_ms = took.as_secs_f64() * 1e3,
                "a second slow sync on the node loop: syncing on the persistence thread for a while"
            );
            self.thread_only_until = Some(now + SLOW_SYNC_BACKOFF);
        } else {
            tracing::debug!(
                took_ms = took.as_secs_f64() * 1e3,
                "a slow sync on the node loop"
            );
        }
    }
}

/// What [`SyncPlace::on_loop`] decides by: the node and its round.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RoundShape {
    pub leader: bool,
    /// Nothing waits in the node's inbox.
    pub inbox_empty: bool,
    /// The persistence thread holds a job of an earlier round.
    pub thread_busy: bool,
    /// Log entries the round's jobs staged.
    pub entries: usize,
}

/// The loop's end of the persistence thread. Dropping it ends the thread
/// once the jobs already given are done.
#[derive(Debug)]
pub(crate) struct Persister {
    jobs: std_mpsc::Sender<PersistJob>,
}

impl Persister {
    /// Start the thread; results (or the storage error that ends it) come
    /// back on the returned receiver.
    pub(crate) fn start(
        storage: SledStorage,
    ) -> std::io::Result<(
        Self,
        mpsc::UnboundedReceiver<Result<Persisted, StorageError>>,
    )> {
        let (jobs, queue) = std_mpsc::channel::<PersistJob>();
        let (done, results) = mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name("raft-persist".into())
            .spawn(move || {
                crate::background_thread::run_as_background();
                run(&storage, &queue, &done)
            })?;
        Ok((Persister { jobs }, results))
    }

    /// Queue a job; false if the thread has stopped (after a storage
    /// error, which it reported).
    pub(crate) fn submit(&self, job: PersistJob) -> bool {
        self.jobs.send(job).is_ok()
    }
}

fn run(
    storage: &SledStorage,
    queue: &std_mpsc::Receiver<PersistJob>,
    done: &mpsc::UnboundedSender<Result<Persisted, StorageError>>,
) {
    while let Ok(first) = queue.recv() {
        let mut jobs = vec![first];
        jobs.extend(queue.try_iter());
        let result = complete(storage, jobs);
        let failed = result.is_err();
        if done.send(result).is_err() || failed {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use raft::prelude::{Entry, HardState, MessageType};

    use super::*;

    fn message(to: u64) -> Message {
        Message {
            msg_type: MessageType::MsgHeartbeatResponse,
            to,
            ..Default::default()
        }
    }

    fn job(number: u64, sync: bool, to: &[u64]) -> PersistJob {
        PersistJob {
            number,
            sync,
            entries: usize::from(sync),
            messages: to.iter().map(|&to| message(to)).collect(),
        }
    }

    /// A group reports its last number and every message, in job order;
    /// what was staged before it is durable afterwards.
    #[test]
    fn a_group_is_made_durable_once_and_keeps_its_messages_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = SledStorage::open(dir.path()).expect("open");
        let entry = Entry {
            index: 1,
            term: 1,
            ..Default::default()
        };
        let hard_state = HardState {
            term: 1,
            vote: 1,
            commit: 0,
            ..Default::default()
        };
        storage
            .stage_append(&[entry], Some(&hard_state))
            .expect("stage");
        let done = complete(
            &storage,
            vec![
                job(4, true, &[2]),
                job(5, false, &[3, 2]),
                job(6, false, &[]),
            ],
        )
        .expect("complete");
        assert_eq!(done.number, 6);
        let order: Vec<u64> = done.messages.iter().map(|m| m.to).collect();
        assert_eq!(order, [2, 3, 2]);
        drop(storage);
        let reopened = SledStorage::open(dir.path()).expect("reopen");
        assert_eq!(raft::Storage::last_index(&reopened).expect("last"), 1);
    }

    /// Answers to several appends from one leader, across the jobs of a
    /// group: only the last, which acknowledges the most, is sent.
    #[test]
    fn a_group_sends_the_last_of_a_run_of_append_answers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = SledStorage::open(dir.path()).expect("open");
        let answer = |index: u64| Message {
            msg_type: MessageType::MsgAppendResponse,
            to: 1,
            term: 2,
            index,
            ..Default::default()
        };
        let jobs = vec![
            PersistJob {
                number: 1,
                sync: true,
                entries: 2,
                messages: vec![answer(10), answer(11)],
            },
            PersistJob {
                number: 2,
                sync: true,
                entries: 1,
                messages: vec![answer(12)],
            },
        ];
        let done = complete(&storage, jobs).expect("complete");
        let indexes: Vec<u64> = done.messages.iter().map(|m| m.index).collect();
        assert_eq!(indexes, [12]);
    }

    /// Only a follower with an empty inbox, nothing on the thread and a
    /// small round syncs on its loop, and a second slow sync there within
    /// `SLOW_SYNC_BACKOFF` of the first sends the next ones to the thread
    /// for `SLOW_SYNC_BACKOFF`.
    #[test]
    fn a_follower_syncs_on_its_loop_only_when_nothing_waits() {
        let now = Instant::now();
        let idle = RoundShape {
            leader: false,
            inbox_empty: true,
            thread_busy: false,
            entries: 1,
        };
        let mut place = SyncPlace::default();
        assert!(place.on_loop(idle, now));
        let leader = RoundShape {
            leader: true,
            ..idle
        };
        assert!(!place.on_loop(leader, now), "a leader uses the thread");
        let waiting = RoundShape {
            inbox_empty: false,
            ..idle
        };
        assert!(!place.on_loop(waiting, now), "work is waiting");
        let busy = RoundShape {
            thread_busy: true,
            ..idle
        };
        assert!(!place.on_loop(busy, now), "a job is on the thread");
        let most = RoundShape {
            entries: MAX_ENTRIES_SYNCED_ON_LOOP,
            ..idle
        };
        assert!(place.on_loop(most, now));
        let large = RoundShape {
            entries: MAX_ENTRIES_SYNCED_ON_LOOP + 1,
            ..idle
        };
        assert!(!place.on_loop(large, now), "clients are busy");
        place.synced_on_loop(MAX_SYNC_ON_LOOP, now);
        assert!(place.on_loop(idle, now), "a sync at the limit is not slow");
        let slow = MAX_SYNC_ON_LOOP + Duration::from_micros(1);
        place.synced_on_loop(slow, now);
        assert!(
            place.on_loop(idle, now),
            "one slow sync alone (a journal commit)"
        );
        // Another one a backoff later is alone too.
        let later = now + SLOW_SYNC_BACKOFF;
        place.synced_on_loop(slow, later);
        assert!(place.on_loop(idle, later));
        let again = later + SLOW_SYNC_BACKOFF - Duration::from_millis(1);
        place.synced_on_loop(slow, again);
        assert!(!place.on_loop(idle, again), "two slow syncs close together");
        let almost = again + SLOW_SYNC_BACKOFF - Duration::from_millis(1);
        assert!(!place.on_loop(idle, almost));
        assert!(place.on_loop(idle, again + SLOW_SYNC_BACKOFF));
    }

    /// The thread reports each group on the channel, and the results of
    /// jobs given one after another arrive in order.
    #[tokio::test]
    async fn the_thread_reports_groups_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = SledStorage::open(dir.path()).expect("open");
        let (persister, mut results) = Persister::start(storage).expect("start");
        for number in 1..=20 {
            assert!(persister.submit(job(number, number % 3 == 0, &[number])));
        }
        let mut seen = Vec::new();
        while seen.last() != Some(&20) {
            let done = tokio::time::timeout(std::time::Duration::from_secs(10), results.recv())
                .await
                .expect("a report within 10 s")
                .expect("the thread runs")
                .expect("no storage error");
            seen.extend(done.messages.iter().map(|m| m.to));
            assert_eq!(seen.last(), Some(&done.number));
        }
        assert_eq!(seen, (1..=20).collect::<Vec<_>>());
    }
}
