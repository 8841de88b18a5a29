//! One simulated node: the real `NodeCore` over real sled storage and the
//! real applier thread with a real guest, stepped by hand.
//!
//! The only differences from a production node are at the edges: inputs
//! come from the simulation's event loop instead of the driver's channels,
//! outgoing messages go to the simulated network, and after each step the
//! node waits for its applier (an `ApplyJob::Barrier`) so that what the
//! guest did is part of the step. A crash drops everything in memory
//! (unsent messages, waiting clients, the guest) and keeps exactly what the
//! storage made durable. Staged Readies are made durable within the step
//! that staged them (`persist::complete`, as the persistence thread does),
//! so a crash between steps loses only the commit index, which Raft
//! recomputes.

use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use raft::prelude::Message;
use tokio::sync::{mpsc, oneshot, watch};

use crate::node::applier::{self, ApplierInbox, ApplierShared, ApplyJob, WallClock};
use crate::node::core::{NodeCore, RaftView};
use crate::node::inbox::NodeMsg;
use crate::node::persist;
use crate::node::round::{self, Deferred, SnapshotAnswer};
use crate::node::{NodeConfig, NodeError, NodeParts, PartsOverrides, assemble};
use crate::storage::SledStorage;
use crate::wasm::WasmEngine;

/// What a node emitted during one step.
#[derive(Debug, Default)]
pub struct StepOutput {
    /// Raft messages for peers, in the order the node sent them.
    pub messages: Vec<Message>,
    /// `(index, hash)` of the state checks the node applied, for its peers.
    pub state_hashes: Vec<(u64, [u8; 32])>,
}

/// A running incarnation of a node.
pub struct Live {
    pub core: NodeCore,
    pub storage: SledStorage,
    pub shared: Arc<ApplierShared>,
    applier: ApplierInbox,
    thread: Option<JoinHandle<()>>,
    fatal: watch::Receiver<Option<String>>,
    snapshot_answer: Option<SnapshotAnswer>,
    state_hashes: mpsc::UnboundedReceiver<(u64, [u8; 32])>,
    /// Jobs were handed over since the last barrier (most steps hand
    /// none, and skip the round trip to the applier thread).
    unsettled: bool,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live").field("core", &self.core).finish()
    }
}

/// A node of the simulated cluster, running or crashed.
#[derive(Debug)]
pub struct SimNode {
    pub id: u64,
    pub config: NodeConfig,
    /// Counts starts: events addressed to an earlier incarnation are void.
    pub life: u64,
    pub live: Option<Live>,
    /// Removed from the cluster: never started again.
    pub retired: bool,
    /// Frozen (as by SIGSTOP) until this virtual time: it neither ticks
    /// nor reads its messages, which wait for it.
    pub paused_until: Duration,
    /// How far this incarnation's wall clock is behind the cluster's
    /// virtual one (machines' clocks differ; the stamps guests see must
    /// still never go back).
    pub clock_behind_ms: u64,
    /// A [`crate::limits::COMMIT_NOTICE_DELAY`] timer is set for this
    /// incarnation (the driver keeps one at a time too).
    pub commit_notice_scheduled: bool,
    /// This incarnation's election timeout, in ticks (fixed per life).
    pub election_timeout_ticks: usize,
}

impl SimNode {
    pub fn new(id: u64, config: NodeConfig) -> Self {
        SimNode {
            id,
            config,
            life: 0,
            live: None,
            retired: false,
            paused_until: Duration::ZERO,
            clock_behind_ms: 0,
            commit_notice_scheduled: false,
            election_timeout_ticks: 0,
        }
    }

    pub fn data_dir(&self) -> &PathBuf {
        &self.config.data_dir
    }

    /// Open the data dir and start the node (its applier thread included).
    pub fn start(
        &mut self,
        engine: &WasmEngine,
        clock: WallClock,
        election_timeout_ticks: usize,
    ) -> Result<(), NodeError> {
        let NodeParts {
            core,
            mut env,
            machine,
            history,
            applied_index,
            storage,
            ..
        } = assemble(
            &self.config,
            PartsOverrides {
                engine: Some(engine.clone()),
                election_timeout_ticks: Some(election_timeout_ticks),
                wall_clock: Some(clock),
                hash_states: true,
                queries_in_log_order: true,
            },
        )?;
        let (hash_tx, hash_rx) = mpsc::unbounded_channel();
        env.state_hashes = Some(hash_tx);
        let (fatal_tx, fatal_rx) = watch::channel(None);
        let (applier, shared, thread) =
            applier::spawn(env, machine, applied_index, history, fatal_tx).map_err(|source| {
                NodeError::DataDir {
                    path: self.config.data_dir.clone(),
                    source,
                }
            })?;
        self.life += 1;
        self.live = Some(Live {
            core,
            storage,
            shared,
            applier,
            thread: Some(thread),
            fatal: fatal_rx,
            snapshot_answer: None,
            state_hashes: hash_rx,
            unsettled: false,
        });
        Ok(())
    }

    /// Lose everything in memory; keep what storage made durable.
    pub fn crash(&mut self) {
        if let Some(mut live) = self.live.take() {
            let thread = live.thread.take();
            // Dropping the core drops every waiting client's reply and the
            // store's handles; dropping the sender ends the applier.
            drop(live);
            if let Some(thread) = thread {
                let _ = thread.join();
            }
        }
    }

    pub fn is_live(&self) -> bool {
        self.live.is_some()
    }

    pub fn view(&self) -> Option<RaftView> {
        self.live.as_ref().map(|live| live.core.view())
    }
}

impl Live {
    /// Hand jobs to the applier.
    pub fn hand_over(&mut self, jobs: Vec<ApplyJob>) -> Result<(), String> {
        for job in jobs {
            self.unsettled = true;
            self.applier
                .blocking_send(job)
                .map_err(|_| "the applier stopped".to_owned())?;
        }
        Ok(())
    }

    /// Hand one input to the core through the driver's own dispatch.
    /// Preparing a component (an upgrade's prepare round) is not part of
    /// the simulated world: the simulated network carries no such request.
    pub fn input(&mut self, message: NodeMsg, now: Instant, now_ms: u64, jobs: &mut Vec<ApplyJob>) {
        if let Some(Deferred::PrepareComponent { reply, .. }) =
            round::dispatch(&mut self.core, message, now, now_ms, jobs)
        {
            let _ = reply.send(Err("the simulation does not prepare components".into()));
        }
    }

    /// Run Ready rounds to completion, as the driver does after every
    /// input (the same `round::ready`), and wait until the applier has
    /// done everything handed to it.
    pub fn settle(&mut self) -> Result<StepOutput, String> {
        let mut output = StepOutput::default();
        loop {
            let mut early = Vec::new();
            let round = round::ready(
                &mut self.core,
                self.snapshot_answer.is_some(),
                true,
                &mut |messages| early.extend(messages),
            )
            .map_err(|e| format!("node error: {e}"))?;
            output.messages.extend(early);
            self.hand_over(round.jobs)?;
            output.messages.extend(round.messages);
            // The persistence thread's work, done at once (the same
            // `persist::complete`): staged Readies become durable, then
            // their messages leave and raft-rs hears of it.
            if !round.persist.is_empty() {
                let done = persist::complete(&self.storage, round.persist)
                    .map_err(|e| format!("persisting: {e}"))?;
                output.messages.extend(done.messages);
                self.core.on_persisted(done.number);
            }
            if round.snapshot_answer.is_some() {
                self.snapshot_answer = round.snapshot_answer;
            }
            self.barrier()?;
            match self
                .snapshot_answer
                .as_mut()
                .map(|answer| answer.try_recv())
            {
                Some(Ok(taken)) => {
                    self.snapshot_answer = None;
                    self.core
                        .snapshot_done(taken)
                        .map_err(|e| format!("recording a snapshot: {e}"))?;
                    // Recording may have compacted the log: handle what
                    // that made ready.
                    continue;
                }
                Some(Err(oneshot::error::TryRecvError::Closed)) => {
                    return Err("the applier dropped a snapshot job".into());
                }
                Some(Err(oneshot::error::TryRecvError::Empty)) | None => {}
            }
            if !self.core.has_ready() {
                break;
            }
        }
        while let Ok(hash) = self.state_hashes.try_recv() {
            output.state_hashes.push(hash);
        }
        if let Some(reason) = self.fatal.borrow().clone() {
            return Err(format!("the state machine failed: {reason}"));
        }
        Ok(output)
    }

    /// Wait until the applier finished every job handed to it.
    fn barrier(&mut self) -> Result<(), String> {
        if !self.unsettled {
            return Ok(());
        }
        let (done, wait) = oneshot::channel();
        self.applier
            .blocking_send(ApplyJob::Barrier(done))
            .map_err(|_| "the applier stopped".to_owned())?;
        wait.blocking_recv()
            .map_err(|_| "the applier stopped".to_owned())?;
        self.unsettled = false;
        Ok(())
    }
}
