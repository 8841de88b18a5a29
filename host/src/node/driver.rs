//! The async loop that drives [`NodeCore`]: it owns the node's inbox, the
//! tick interval and the hand-off to the applier and the transport.

use crate::limits::{
    COMMIT_NOTICE_DELAY, COMPACTION_STEP_INTERVAL_UNDER_LOAD, MAX_MESSAGES_PER_ROUND,
    MAX_PROPOSAL_HOLD, TICK_INTERVAL,
};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};

use super::answers;
use super::applier::{ApplierEnv, ApplierInbox, ApplyJob};
use super::apply_hold::ApplyHold;
use super::core::NodeCore;
use super::error::NodeError;
use super::inbox::NodeMsg;
use super::persist::{self, PersistJob, Persisted, Persister, RoundShape, SyncPlace};
use super::ports::Transport;
use super::round::{self, Deferred, SnapshotAnswer};
use super::upgrade::fetch as component_fetch;
use crate::storage::{SledStorage, StorageError};

/// Channels the loop listens on besides the inbox.
#[derive(Debug)]
pub struct Controls {
    pub shutdown: mpsc::Receiver<oneshot::Sender<()>>,
    pub fatal: watch::Receiver<Option<String>>,
}

/// The persistence thread (`node::persist`): where staged Readies go, and
/// where the news that they are durable comes back; and the store, for the
/// Readies a follower makes durable on the loop.
#[derive(Debug)]
pub(crate) struct Persistence {
    pub storage: SledStorage,
    pub persister: Persister,
    pub persisted: mpsc::UnboundedReceiver<Result<Persisted, StorageError>>,
}

/// Run the node until shutdown, until every handle is dropped, or until a
/// fatal error.
pub(crate) async fn run(
    mut core: NodeCore,
    mut inbox: mpsc::Receiver<NodeMsg>,
    mut controls: Controls,
    applier: ApplierInbox,
    prepare_env: ApplierEnv,
    persistence: Persistence,
    mut transport: impl Transport,
) -> Result<Option<oneshot::Sender<()>>, NodeError> {
    let Persistence {
        storage,
        persister,
        mut persisted,
    } = persistence;
    let mut sync_place = SyncPlace::default();
    let mut ticker = tokio::time::interval(TICK_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut snapshot_answer: Option<SnapshotAnswer> = None;
    // Log compaction behind a snapshot runs in rounds the loop has nothing
    // else to do, and under load at most once per
    // `COMPACTION_STEP_INTERVAL_UNDER_LOAD`.
    let mut idle = false;
    let mut last_compaction = Instant::now();
    let mut hold_until: Option<tokio::time::Instant> = None;
    let mut notice_at: Option<tokio::time::Instant> = None;
    let mut apply_hold = ApplyHold::default();
    let result = loop {
        let compact = idle || last_compaction.elapsed() >= COMPACTION_STEP_INTERVAL_UNDER_LOAD;
        if compact {
            last_compaction = Instant::now();
        }
        idle = false;
        // Taken before the round adds its own jobs: a job of an earlier
        // round that is not durable yet is on the persistence thread.
        let thread_busy = core.persistence_in_flight();
        // Ready first: at start-up this hands the committed entries to be
        // replayed to the applier before any query can overtake them.
        let round = match round::ready(
            &mut core,
            snapshot_answer.is_some(),
            compact,
            &mut |messages| transport.send(messages),
        ) {
            Ok(round) => round,
            Err(error) => break Err(error),
        };
        // The messages and the persistence thread first: they are the path
        // to the next commit, and the thread woken first takes the idle
        // core (a follower's Ready carries both the new entries to make
        // durable and the committed ones to apply).
        if let Some(members) = &round.members {
            transport.set_members(members);
        }
        if !round.messages.is_empty() {
            transport.send(round.messages);
        }
        // A sync on the loop may have made committed entries appliable:
        // the next Ready hands them out without waiting for other news.
        let mut go_round = false;
        if !round.persist.is_empty() {
            let shape = RoundShape {
                leader: core.is_leader(),
                inbox_empty: inbox.is_empty(),
                thread_busy,
                entries: round.persist.iter().map(|job| job.entries).sum(),
            };
            if sync_place.on_loop(shape, Instant::now()) {
                if let Err(error) = sync_on_loop(
                    &storage,
                    round.persist,
                    &mut sync_place,
                    &mut core,
                    &mut transport,
                ) {
                    break Err(error);
                }
                go_round = true;
            } else if !round.persist.into_iter().all(|job| persister.submit(job)) {
                // The thread stopped after a storage error it is reporting.
                tracing::debug!("the persistence thread stopped");
            }
        }
        if let Err(error) = hand_over_held(&applier, &mut apply_hold, &core, round.jobs).await {
            break Err(error);
        }
        if round.snapshot_answer.is_some() {
            snapshot_answer = round.snapshot_answer;
        }
        // Proposals held for a commit (see `NodeCore::end_round_proposals`)
        // go out by `MAX_PROPOSAL_HOLD` after the first was held.
        hold_until = match (core.holds_proposals(), hold_until) {
            (false, _) => None,
            (true, Some(until)) => Some(until),
            (true, None) => Some(tokio::time::Instant::now() + MAX_PROPOSAL_HOLD),
        };
        // A commit index no proposal carried goes out on its own by
        // `COMMIT_NOTICE_DELAY` after it advanced (see `core::commit_notice`).
        notice_at = match (core.owes_commit_notice(), notice_at) {
            (false, _) => None,
            (true, Some(at)) => Some(at),
            (true, None) => Some(tokio::time::Instant::now() + COMMIT_NOTICE_DELAY),
        };
        // Apply jobs a follower holds (see `node::apply_hold`) go out by then.
        let apply_due = apply_hold.due().map(tokio::time::Instant::from_std);
        tokio::select! {
            // Shutdown and fatal errors are checked first, so a busy inbox
            // can never delay them.
            biased;
            reply = controls.shutdown.recv() => break Ok(reply),
            _ = controls.fatal.changed() => {
                let reason = controls.fatal.borrow().clone().unwrap_or_default();
                break Err(NodeError::StateMachine(reason));
            }
            // Ticks before the inbox: a flood of messages must not hold
            // up heartbeats and elections.
            _ = ticker.tick() => {
                let now = Instant::now();
                core.tick(now, prepare_env.wall_clock.now_ms());
                if core.take_campaign_started() {
                    ticker.reset_after(TICK_INTERVAL + tick_phase_shift());
                }
                if core.choose_lazy_followers(now) {
                    transport.set_lazy_peers(core.lazy_followers());
                }
            }
            () = tokio::time::sleep_until(hold_until.unwrap_or_else(tokio::time::Instant::now)), if hold_until.is_some() => {
                core.flush_proposals();
            }
            () = tokio::time::sleep_until(notice_at.unwrap_or_else(tokio::time::Instant::now)), if notice_at.is_some() => {
                core.send_commit_notice();
            }
            taken = async { snapshot_answer.as_mut().expect("guarded").await }, if snapshot_answer.is_some() => {
                snapshot_answer = None;
                let taken = taken.unwrap_or_else(|_| Err("the applier stopped".into()));
                if let Err(error) = core.snapshot_done(taken) {
                    break Err(error);
                }
            }
            // A persistence report and the inbox are taken in one round
            // when both have news: one Ready then carries the commit index
            // the report advanced and the appends the inbox asked for (as
            // one message per follower: raft-rs's `batch_append`).
            done = persisted.recv() => {
                let Some(first) = done else {
                    break Err(NodeError::StateMachine("the persistence thread stopped".into()));
                };
                if let Err(error) = take_persisted(first, &mut persisted, &mut core, &mut transport) {
                    break Err(error);
                }
                let jobs = take_inbox(&mut core, None, &mut inbox, &prepare_env, &mut apply_hold);
                if let Err(error) = hand_over_held(&applier, &mut apply_hold, &core, jobs).await {
                    break Err(error);
                }
            }
            message = inbox.recv() => {
                let Some(message) = message else { break Ok(None) };
                let jobs = take_inbox(&mut core, Some(message), &mut inbox, &prepare_env, &mut apply_hold);
                if let Err(error) = hand_over_held(&applier, &mut apply_hold, &core, jobs).await {
                    break Err(error);
                }
                if let Ok(first) = persisted.try_recv()
                    && let Err(error) = take_persisted(first, &mut persisted, &mut core, &mut transport)
                {
                    break Err(error);
                }
            }
            () = tokio::time::sleep_until(apply_due.unwrap_or_else(tokio::time::Instant::now)), if apply_due.is_some() => {
                if let Err(error) = hand_over(&applier, apply_hold.release()).await {
                    break Err(error);
                }
            }
            () = std::future::ready(()), if go_round => {}
            // Nothing else to do: go round again, removing one more batch
            // of the log behind a snapshot (a round removes at most one, so
            // messages and ticks are never held up by more than a batch).
            () = std::future::ready(()), if core.compaction_pending() => {
                idle = true;
                // This branch is always ready: without a yield the loop
                // would not give its thread back to the runtime until the
                // compaction ends (~0.3 s behind a 100,000-entry snapshot),
                // and the API's and the transport's tasks queued on it
                // waited that long.
                tokio::task::yield_now().await;
            }
        }
    };
    if result.is_ok() {
        // Every committed entry known goes to the applier, as without the hold.
        let _ = hand_over(&applier, apply_hold.release()).await;
    }
    core.abandon_pending();
    result
}

/// Send the messages that waited for durability and tell raft-rs, for
/// `first` and every other report already queued.
fn take_persisted(
    first: Result<Persisted, StorageError>,
    persisted: &mut mpsc::UnboundedReceiver<Result<Persisted, StorageError>>,
    core: &mut NodeCore,
    transport: &mut impl Transport,
) -> Result<(), NodeError> {
    let done = drain_persisted(first, persisted)?;
    if !done.messages.is_empty() {
        transport.send(done.messages);
    }
    core.on_persisted(done.number);
    Ok(())
}

/// Make a follower's round durable on the loop (see `persist::SyncPlace`),
/// then send what waited for it and tell raft-rs, as a report from the
/// thread would.
fn sync_on_loop(
    storage: &SledStorage,
    jobs: Vec<PersistJob>,
    sync_place: &mut SyncPlace,
    core: &mut NodeCore,
    transport: &mut impl Transport,
) -> Result<(), NodeError> {
    let started = Instant::now();
    let done = persist::complete(storage, jobs)?;
    let now = Instant::now();
    sync_place.synced_on_loop(now - started, now);
    if !done.messages.is_empty() {
        transport.send(done.messages);
    }
    core.on_persisted(done.number);
    Ok(())
}

/// Dispatch `first` and whatever else the inbox holds, up to
/// `MAX_MESSAGES_PER_ROUND` inputs; returns the applier's work.
fn take_inbox(
    core: &mut NodeCore,
    first: Option<NodeMsg>,
    inbox: &mut mpsc::Receiver<NodeMsg>,
    prepare_env: &ApplierEnv,
    apply_hold: &mut ApplyHold,
) -> Vec<ApplyJob> {
    let mut jobs = Vec::new();
    let mut taken = 0;
    if let Some(message) = first {
        handle(core, message, &mut jobs, prepare_env, apply_hold);
        taken += 1;
    }
    while taken < MAX_MESSAGES_PER_ROUND {
        match inbox.try_recv() {
            Ok(message) => handle(core, message, &mut jobs, prepare_env, apply_hold),
            Err(_) => break,
        }
        taken += 1;
    }
    jobs
}

/// `first` and everything else the persistence thread has finished, as one
/// report: a busy thread must not keep the inbox waiting behind a queue of
/// reports.
fn drain_persisted(
    first: Result<Persisted, StorageError>,
    persisted: &mut mpsc::UnboundedReceiver<Result<Persisted, StorageError>>,
) -> Result<Persisted, StorageError> {
    let mut done = first?;
    while let Ok(next) = persisted.try_recv() {
        let next = next?;
        done.messages.extend(next.messages);
        done.number = next.number;
    }
    answers::drop_superseded_append_answers(&mut done.messages);
    Ok(done)
}

async fn hand_over(applier: &ApplierInbox, jobs: Vec<ApplyJob>) -> Result<(), NodeError> {
    for job in jobs {
        if applier.send(job).await.is_err() {
            return Err(NodeError::StateMachine("the applier stopped".into()));
        }
    }
    Ok(())
}

/// Hand `jobs` to the applier through a follower's hold (`node::apply_hold`).
async fn hand_over_held(
    applier: &ApplierInbox,
    apply_hold: &mut ApplyHold,
    core: &NodeCore,
    jobs: Vec<ApplyJob>,
) -> Result<(), NodeError> {
    let jobs = apply_hold.take(jobs, !core.is_leader(), Instant::now());
    hand_over(applier, jobs).await
}

/// Dispatch one input; preparing a component runs on a blocking thread.
fn handle(
    core: &mut NodeCore,
    message: NodeMsg,
    jobs: &mut Vec<ApplyJob>,
    prepare_env: &ApplierEnv,
    apply_hold: &mut ApplyHold,
) {
    let now = Instant::now();
    if message.from_client() {
        apply_hold.note_client(now);
    }
    let now_ms = prepare_env.wall_clock.now_ms();
    match round::dispatch(core, message, now, now_ms, jobs) {
        None => {}
        Some(Deferred::PrepareComponent { activation, reply }) => {
            let env = prepare_env.clone();
            tokio::task::spawn_blocking(move || {
                let _ = reply.send(component_fetch::prepare(&env, &activation));
            });
        }
    }
}

/// A random part of a tick (see [`NodeCore::take_campaign_started`]): not
/// for secrets, only to take apart the clocks of two campaigning nodes.
fn tick_phase_shift() -> Duration {
    let nanos = (TICK_INTERVAL.as_nanos() as u64).max(1);
    Duration::from_nanos(super::randomness::non_secret_u64() % nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tick_phase_shift_is_part_of_a_tick_and_varies() {
        let shifts: std::collections::BTreeSet<Duration> =
            (0..32).map(|_| tick_phase_shift()).collect();
        assert!(shifts.iter().all(|shift| *shift < TICK_INTERVAL));
        assert!(shifts.len() > 1, "the same shift every time: {shifts:?}");
    }
}
