//! The applier: a dedicated thread that owns the guest [`StateMachine`] and
//! applies committed entries in log order.
//!
//! Guest calls are synchronous CPU work (wasmtime without async), so they run
//! on their own OS thread instead of blocking the node's tokio task: the node
//! keeps persisting and replicating the next batch while this one applies.
//! The node hands over batches through a bounded channel (backpressure) and
//! the applier answers waiting clients itself once their entry is applied.

use crate::limits::APPLY_QUEUE_CAPACITY;
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, watch};

use super::divergence::{Divergence, DivergenceMonitor};
use super::envelope::Payload;
use super::error::ClientError;
use super::forwarded::ForwardWaiters;
use super::upgrade::ComponentHistory;
use crate::wasm::{EntryContext, GuestFailure, GuestMachine, WasmError};

mod env;
mod jobs;
mod reader;
mod shared;
mod snapshots;

pub use self::env::{ApplierEnv, WallClock, unix_now_ms};
pub use self::jobs::{
    Applied, AppliedRecord, ApplyItem, ApplyJob, Candidate, ProposalReply, QueryAnswer, QueryReply,
    TakenSnapshot,
};
pub use self::reader::ApplierInbox;
pub use self::shared::ApplierShared;
use self::shared::ResultRecord;
pub use self::snapshots::{
    build_machine, install_state, raft_snapshot, store_mark, stored_history,
};

/// Start the applier thread, and the query thread beside it (see
/// `reader.rs`) unless `env.queries_in_log_order`. `fatal` receives a
/// message if the runtime fails in a way that must stop the node (a
/// nondeterministic guest, a failing store). The returned thread ends
/// after both.
pub fn spawn(
    env: ApplierEnv,
    machine: GuestMachine,
    applied_index: u64,
    history: ComponentHistory,
    fatal: watch::Sender<Option<String>>,
) -> std::io::Result<(
    ApplierInbox,
    Arc<ApplierShared>,
    std::thread::JoinHandle<()>,
)> {
    let (tx, rx) = mpsc::channel(APPLY_QUEUE_CAPACITY);
    let shared = Arc::new(ApplierShared {
        applied_index: AtomicU64::new(applied_index),
        guest: Mutex::new((machine.info().clone(), machine.component().hash.to_hex())),
        world: Mutex::new(machine.world()),
        examples: Mutex::new(machine.component().examples.clone()),
        store: env.guest_store.clone(),
        stats: Mutex::new(machine.stats()),
        history: Mutex::new(history.clone()),
        recent: Mutex::new(VecDeque::new()),
        divergence: Mutex::new((None, None)),
        read_targets: Default::default(),
        last_timestamp_ms: AtomicU64::new(machine.last_entry().timestamp_ms),
        busy_index: AtomicU64::new(0),
        busy_since: AtomicU64::new(0),
        epoch: std::time::Instant::now(),
        forwards: ForwardWaiters::new(env.node_id),
    });
    shared
        .read_targets
        .publish(0, &machine, env.guest_store.committed().index);
    let queries = if env.queries_in_log_order {
        None
    } else {
        Some(reader::spawn(
            env.node_id,
            env.guest_store.clone(),
            shared.clone(),
            fatal.clone(),
        )?)
    };
    let (queue, query_thread) = queries.unzip();
    let thread_shared = shared.clone();
    let join = std::thread::Builder::new()
        .name("applier".into())
        .spawn(move || {
            let _span = tracing::info_span!("applier", id = env.node_id).entered();
            let mut applier = Applier {
                monitor: DivergenceMonitor::new(env.node_id),
                env,
                machine,
                history,
                shared: thread_shared,
                waiting_queries: BTreeMap::new(),
                export: None,
            };
            if let Err(error) = applier.run(rx) {
                tracing::error!(%error, "the state machine failed; stopping the node");
                let _ = fatal.send(Some(error.to_string()));
            }
            // The inbox is gone (or the node stops): so is the query
            // thread's queue.
            if let Some(thread) = query_thread {
                let _ = thread.join();
            }
        })?;
    Ok((ApplierInbox::new(tx, queue, shared.clone()), shared, join))
}

/// The applier thread's state.
pub(in crate::node) struct Applier {
    pub(in crate::node) env: ApplierEnv,
    pub(in crate::node) machine: GuestMachine,
    pub(in crate::node) history: ComponentHistory,
    /// State hashes of recent checks; once it finds this node outvoted,
    /// nothing is applied or answered any more.
    monitor: DivergenceMonitor,
    pub(in crate::node) shared: Arc<ApplierShared>,
    /// Queries waiting for the applied index to reach their read index.
    waiting_queries: BTreeMap<u64, Vec<(Vec<u8>, QueryReply)>>,
    /// The thread writing a store-backed guest's snapshot while applies go
    /// on (see `snapshots.rs`).
    pub(in crate::node) export: Option<std::thread::JoinHandle<()>>,
}

impl Applier {
    fn run(&mut self, mut rx: mpsc::Receiver<ApplyJob>) -> Result<(), WasmError> {
        while let Some(job) = rx.blocking_recv() {
            match job {
                ApplyJob::Apply(items) => {
                    for item in items {
                        if let Some(divergence) = self.monitor.diverged() {
                            // Nothing applies any more: forwarded commands
                            // can no longer be followed here.
                            self.shared.forwards.lost_track();
                            refuse(item.reply, divergence.index);
                            continue;
                        }
                        self.shared.set_busy(Some(item.index));
                        self.apply_one(item, &rx)?;
                        self.shared.set_busy(None);
                    }
                    self.machine.flush()?;
                    self.run_ready_queries()?;
                }
                ApplyJob::PeerStateHash {
                    from,
                    index,
                    hash,
                    voters,
                } => {
                    let found = self.monitor.record(from, index, hash, &voters);
                    self.publish_divergence(found);
                }
                ApplyJob::DryRun { candidate, reply } => self.dry_run(*candidate, reply),
                ApplyJob::Barrier(reply) => {
                    // Everything before it is done, a snapshot's file too.
                    self.finish_export();
                    let _ = reply.send(());
                }
                ApplyJob::Query {
                    request,
                    min_applied,
                    reply,
                } => {
                    if let Some(divergence) = self.monitor.diverged() {
                        let _ = reply.send(Err(ClientError::Diverged {
                            index: divergence.index,
                        }));
                    } else if min_applied <= self.shared.applied_index() {
                        self.query(&request, reply)?;
                    } else {
                        self.waiting_queries
                            .entry(min_applied)
                            .or_default()
                            .push((request, reply));
                    }
                }
                ApplyJob::Snapshot {
                    index,
                    term,
                    conf,
                    members,
                    reply,
                } => self.take_snapshot(index, term, &conf, members, reply),
                ApplyJob::Restore(loaded) => {
                    self.finish_export();
                    self.machine.flush()?;
                    self.restore(&loaded)?;
                    self.run_ready_queries()?;
                }
            }
        }
        self.finish_export();
        self.machine.flush()
    }

    fn query(&mut self, request: &[u8], reply: QueryReply) -> Result<(), WasmError> {
        let (result, fuel_used) = self.machine.query(request)?;
        *self.shared.stats.lock().unwrap_or_else(|p| p.into_inner()) = self.machine.stats();
        let _ = reply.send(Ok(QueryAnswer {
            applied_index: self.shared.applied_index(),
            result,
            fuel_used,
        }));
        Ok(())
    }

    fn run_ready_queries(&mut self) -> Result<(), WasmError> {
        let applied = self.shared.applied_index();
        while let Some(entry) = self.waiting_queries.first_entry() {
            if *entry.key() > applied {
                break;
            }
            for (request, reply) in entry.remove() {
                self.query(&request, reply)?;
            }
        }
        Ok(())
    }
}

impl Applier {
    /// Apply one committed entry and answer its client, if it waits here.
    fn apply_one(
        &mut self,
        item: ApplyItem,
        rx: &mpsc::Receiver<ApplyJob>,
    ) -> Result<(), WasmError> {
        let previous = self.shared.applied_index();
        assert!(
            item.index > previous,
            "entries are applied in log order: {} after {previous}",
            item.index
        );
        let mut forward = None;
        let (result, fuel_used) = match item.payload {
            // A leader's no-op or a membership change: applied once it is
            // in the configuration; there is no guest result.
            Payload::Noop => {
                self.mark_store_applied(item.index, item.term)?;
                (Ok(Vec::new()), 0)
            }
            Payload::Command {
                timestamp_ms,
                forward: id,
                command,
            } => {
                forward = id;
                self.shared
                    .last_timestamp_ms
                    .store(timestamp_ms, Ordering::Release);
                let entry = EntryContext {
                    index: item.index,
                    term: item.term,
                    timestamp_ms,
                };
                let started = std::time::Instant::now();
                let outcome = self.machine.apply(entry, &command)?;
                self.env.instruments.observe_apply(started.elapsed());
                self.record_result(item.index, &outcome.result)?;
                (outcome.result, outcome.fuel_used)
            }
            Payload::StateCheck => {
                self.check_state(item.index)?;
                self.mark_store_applied(item.index, item.term)?;
                (Ok(Vec::new()), 0)
            }
            Payload::Activate {
                timestamp_ms,
                activation,
            } => {
                let entry = EntryContext {
                    index: item.index,
                    term: item.term,
                    timestamp_ms,
                };
                let result = self.activate(entry, &activation, rx)?;
                self.record_result(item.index, &result)?;
                (result, 0)
            }
        };
        // Published before the client hears back, so a status read after
        // the answer includes this entry.
        self.publish_guest_state();
        self.shared
            .applied_index
            .store(item.index, Ordering::Release);
        self.shared
            .forwards
            .applied(item.index, item.term, forward.as_ref(), &result, fuel_used);
        if let Some(reply) = item.reply {
            // The client may have given up waiting; the entry is applied
            // regardless.
            let _ = reply.send(Ok(Applied {
                index: item.index,
                term: item.term,
                result,
                fuel_used,
            }));
        }
        Ok(())
    }

    /// Record in a store-backed guest's store that an entry without guest
    /// writes applied, so a restart resumes after it (and never mistakes
    /// the store for older than a snapshot taken at that entry).
    fn mark_store_applied(&mut self, index: u64, term: u64) -> Result<(), WasmError> {
        if let GuestMachine::Store(machine) = &mut self.machine {
            machine.mark_applied(index, term);
        }
        Ok(())
    }

    /// The guest's counters for status pages, and whether it takes new
    /// commands for the core.
    fn publish_guest_state(&self) {
        *self.shared.stats.lock().unwrap_or_else(|p| p.into_inner()) = self.machine.stats();
        self.env.admission.set(self.machine.stalled().as_ref());
    }

    /// A fingerprint of the guest's whole state, or `None` when a 0.1.0
    /// guest's state cannot be serialized now. Such a replica leaves the
    /// check to the others rather than vote with an error: whether a state
    /// near the memory cap fits twice depends on the instance's heap, which
    /// differs between replicas (one rebuilt after a trap or a restart is
    /// more compact), so an error is not a fingerprint of the state. While
    /// checkpoints fail it is not even tried (it would fail and cost a
    /// rebuild). A store-backed guest's digest is the store's.
    fn state_digest(&mut self) -> Result<Option<blake3::Hash>, WasmError> {
        match &mut self.machine {
            GuestMachine::Memory(machine) => {
                if machine.checkpoint_failing_since().is_some() {
                    return Ok(None);
                }
                Ok(machine.snapshot().ok().map(|state| blake3::hash(&state)))
            }
            GuestMachine::Store(_) => self.machine.state_digest().map(Some),
        }
    }

    /// Hash the state at a state check, tell the peers, and compare.
    fn check_state(&mut self, index: u64) -> Result<(), WasmError> {
        let Some(hash) = self.state_digest()? else {
            tracing::info!(
                index,
                "state check skipped: the guest's state cannot be serialized now"
            );
            return Ok(());
        };
        let hash = *hash.as_bytes();
        if let Some(peers) = &self.env.state_hashes {
            let _ = peers.send((index, hash));
        }
        let found = self.monitor.record(self.env.node_id, index, hash, &[]);
        self.publish_divergence(found);
        Ok(())
    }

    fn publish_divergence(&self, found: Option<Divergence>) {
        if let Some(divergence) = &found {
            tracing::error!(index = divergence.index, own = %divergence.own_hash,
                majority = %divergence.majority_hash, agreeing = ?divergence.majority,
                "THIS NODE'S STATE DIVERGED from the majority's at a state check; \
                 it stops applying and answering. Wipe its data dir and add it again.");
        }
        *self
            .shared
            .divergence
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = (
            self.monitor.diverged().cloned(),
            self.monitor.last_verified(),
        );
    }

    fn record_result(
        &mut self,
        index: u64,
        result: &Result<Vec<u8>, GuestFailure>,
    ) -> Result<(), WasmError> {
        let result_hash = match result {
            Ok(bytes) => blake3::hash(bytes),
            Err(failure) => blake3::hash(
                serde_json::to_string(failure)
                    .unwrap_or_default()
                    .as_bytes(),
            ),
        };
        let state_hash = if self.env.hash_states {
            self.state_digest()?
        } else {
            None
        };
        self.shared.push_result(ResultRecord {
            index,
            component: self.machine.component().hash,
            ok: result.is_ok(),
            result_hash,
            state_hash,
        });
        Ok(())
    }
}

/// Answer a client whose entry this diverged node will not apply.
fn refuse(reply: Option<ProposalReply>, index: u64) {
    if let Some(reply) = reply {
        let _ = reply.send(Err(ClientError::Diverged { index }));
    }
}
