//! The applier: a dedicated thread that owns the guest [`StateMachine`] and
//! applies committed entries in log order.
//!
//! Guest calls are synchronous CPU work (wasmtime without async), so they run
//! on their own OS thread instead of blocking the node's tokio task: the node
//! keeps persisting and replicating the next batch while this one applies.
//! The node hands over batches through a bounded channel (backpressure) and
//! the applier answers waiting clients itself once their entry is applied.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use raft::prelude::{ConfState, Snapshot};
use tokio::sync::{mpsc, oneshot, watch};

use super::components::ComponentStore;
use super::envelope::Payload;
use super::error::ClientError;
use super::snapshot::{self, LoadedSnapshot, SnapshotDescriptor, SnapshotHeader};
use crate::transport::PeerAddr;
use crate::wasm::{
    EntryContext, GuestFailure, GuestInfo, GuestLimits, RuntimeStats, StateMachine, WasmEngine,
    WasmError,
};

/// Batches of committed entries that may wait for the applier.
pub const APPLY_QUEUE_CAPACITY: usize = 256;

/// The result of one applied client command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub index: u64,
    pub term: u64,
    pub result: Result<Vec<u8>, GuestFailure>,
    pub fuel_used: u64,
}

/// Where the result of a proposal goes: the applied result, or why it was
/// dropped. A sender dropped without an answer means the node stopped and
/// the outcome is unknown.
pub type ProposalReply = oneshot::Sender<Result<Applied, ClientError>>;

/// One committed entry, in log order.
#[derive(Debug)]
pub struct ApplyItem {
    pub index: u64,
    pub term: u64,
    pub payload: Payload,
    /// The client waiting for this entry, if it was proposed on this node.
    pub reply: Option<ProposalReply>,
}

/// The result of a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryAnswer {
    /// The applied index the query ran at.
    pub applied_index: u64,
    pub result: Result<Vec<u8>, GuestFailure>,
    pub fuel_used: u64,
}

/// Where a query's answer goes.
pub type QueryReply = oneshot::Sender<Result<QueryAnswer, ClientError>>;

/// Work for the applier.
#[derive(Debug)]
pub enum ApplyJob {
    Apply(Vec<ApplyItem>),
    /// Run a query once the applied index reaches `min_applied` (a
    /// linearizable read waits for its read index; a stale read passes 0).
    Query {
        request: Vec<u8>,
        min_applied: u64,
        reply: QueryReply,
    },
    /// Write a snapshot file of the state as of every entry handed over so
    /// far (`index`, `term`), with the configuration at that point.
    Snapshot {
        index: u64,
        term: u64,
        conf: ConfState,
        members: BTreeMap<u64, PeerAddr>,
        reply: oneshot::Sender<Result<TakenSnapshot, String>>,
    },
    /// Replace the state with a snapshot received from the leader.
    Restore(Box<LoadedSnapshot>),
}

/// A snapshot the applier wrote: the Raft view of it (metadata plus the
/// file's descriptor as data) and its size.
#[derive(Debug, Clone)]
pub struct TakenSnapshot {
    pub snapshot: Snapshot,
    pub file_len: u64,
}

/// What the applier publishes for status pages, readable from any thread.
#[derive(Debug)]
pub struct ApplierShared {
    applied_index: AtomicU64,
    guest: Mutex<(GuestInfo, String)>,
    stats: Mutex<RuntimeStats>,
}

impl ApplierShared {
    pub fn applied_index(&self) -> u64 {
        self.applied_index.load(Ordering::Acquire)
    }
    /// The running guest's name/version and component hash.
    pub fn guest(&self) -> (GuestInfo, String) {
        self.guest.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
    pub fn stats(&self) -> RuntimeStats {
        *self.stats.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn set_guest(&self, machine: &StateMachine) {
        *self.guest.lock().unwrap_or_else(|p| p.into_inner()) =
            (machine.info().clone(), machine.component().hash.to_hex());
    }
}

/// What the applier needs besides the state machine: how to build another
/// one (when a snapshot brings a different component) and where snapshot
/// files and components live.
#[derive(Debug, Clone)]
pub struct ApplierEnv {
    pub node_id: u64,
    pub engine: WasmEngine,
    pub limits: GuestLimits,
    pub components: ComponentStore,
    pub snapshot_dir: PathBuf,
}

/// Start the applier thread. `fatal` receives a message if the runtime fails
/// in a way that must stop the node (a nondeterministic guest).
pub fn spawn(
    env: ApplierEnv,
    machine: StateMachine,
    applied_index: u64,
    fatal: watch::Sender<Option<String>>,
) -> std::io::Result<(
    mpsc::Sender<ApplyJob>,
    Arc<ApplierShared>,
    std::thread::JoinHandle<()>,
)> {
    let (tx, rx) = mpsc::channel(APPLY_QUEUE_CAPACITY);
    let shared = Arc::new(ApplierShared {
        applied_index: AtomicU64::new(applied_index),
        guest: Mutex::new((machine.info().clone(), machine.component().hash.to_hex())),
        stats: Mutex::new(machine.stats()),
    });
    let thread_shared = shared.clone();
    let join = std::thread::Builder::new()
        .name("applier".into())
        .spawn(move || {
            let _span = tracing::info_span!("applier", id = env.node_id).entered();
            let mut applier = Applier {
                env,
                machine,
                shared: thread_shared,
                waiting_queries: BTreeMap::new(),
            };
            if let Err(error) = applier.run(rx) {
                tracing::error!(%error, "the state machine failed; stopping the node");
                let _ = fatal.send(Some(error.to_string()));
            }
        })?;
    Ok((tx, shared, join))
}

/// The applier thread's state.
struct Applier {
    env: ApplierEnv,
    machine: StateMachine,
    shared: Arc<ApplierShared>,
    /// Queries waiting for the applied index to reach their read index.
    waiting_queries: BTreeMap<u64, Vec<(Vec<u8>, QueryReply)>>,
}

impl Applier {
    fn run(&mut self, mut rx: mpsc::Receiver<ApplyJob>) -> Result<(), WasmError> {
        while let Some(job) = rx.blocking_recv() {
            match job {
                ApplyJob::Apply(items) => {
                    for item in items {
                        apply_one(&mut self.machine, item, &self.shared)?;
                    }
                    self.run_ready_queries()?;
                }
                ApplyJob::Query {
                    request,
                    min_applied,
                    reply,
                } => {
                    if min_applied <= self.shared.applied_index() {
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
                } => {
                    let taken = self.take_snapshot(index, term, &conf, members);
                    if let Err(error) = &taken {
                        tracing::warn!(index, %error, "taking a snapshot failed; will retry later");
                    }
                    let _ = reply.send(taken);
                }
                ApplyJob::Restore(loaded) => {
                    self.restore(&loaded)?;
                    self.run_ready_queries()?;
                }
            }
        }
        Ok(())
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

    /// Serialize the guest and write the snapshot file. The state is the
    /// one after every entry handed over so far, which the node guarantees
    /// is `index`.
    fn take_snapshot(
        &mut self,
        index: u64,
        term: u64,
        conf: &ConfState,
        members: BTreeMap<u64, PeerAddr>,
    ) -> Result<TakenSnapshot, String> {
        let applied = self.shared.applied_index();
        if applied != index {
            return Err(format!("asked for index {index}, applied {applied}"));
        }
        let state = self.machine.snapshot().map_err(|e| e.to_string())?;
        let hash = self.machine.component().hash;
        let component = self
            .env
            .components
            .get(&hash)
            .map_err(|e| format!("reading the active component {hash}: {e}"))?;
        let header = SnapshotHeader {
            index,
            term,
            conf: conf.into(),
            members,
            component_hash: hash.to_hex(),
            component_len: component.len() as u64,
            state_len: state.len() as u64,
            last_entry_timestamp_ms: self.machine.last_entry().timestamp_ms,
            taken_by: self.env.node_id,
            taken_at_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        };
        let descriptor = snapshot::write(&self.env.snapshot_dir, &header, &component, &state)
            .map_err(|e| e.to_string())?;
        tracing::info!(
            index,
            term,
            state_bytes = state.len(),
            file_bytes = descriptor.file_len,
            "took a snapshot"
        );
        Ok(TakenSnapshot {
            snapshot: raft_snapshot(&header, &descriptor),
            file_len: descriptor.file_len,
        })
    }

    /// Replace the guest's state (and, if the snapshot says so, the guest
    /// itself) with a snapshot's. A snapshot the guest cannot restore stops
    /// the node: every replica must hold the leader's state.
    fn restore(&mut self, loaded: &LoadedSnapshot) -> Result<(), WasmError> {
        let header = &loaded.header;
        if header.component_hash != self.machine.component().hash.to_hex() {
            self.machine = build_machine(&self.env, loaded)?;
        }
        self.machine
            .restore(snapshot_entry(header), loaded.state())?;
        self.shared.set_guest(&self.machine);
        *self.shared.stats.lock().unwrap_or_else(|p| p.into_inner()) = self.machine.stats();
        self.shared
            .applied_index
            .store(header.index, Ordering::Release);
        tracing::info!(index = header.index, term = header.term,
            guest = %self.machine.info().name, "restored a snapshot");
        Ok(())
    }
}

/// The entry context a snapshot's state corresponds to (what `restore`
/// sees as its clock and random seed).
pub fn snapshot_entry(header: &SnapshotHeader) -> EntryContext {
    EntryContext {
        index: header.index,
        term: header.term,
        timestamp_ms: header.last_entry_timestamp_ms,
    }
}

/// Load the component a snapshot names (filing it in the component store)
/// and instantiate it in its initial state.
pub fn build_machine(env: &ApplierEnv, loaded: &LoadedSnapshot) -> Result<StateMachine, WasmError> {
    let hash = env
        .components
        .put(loaded.component())
        .map_err(|e| WasmError::Instantiate {
            reason: format!("storing the snapshot's component: {e}"),
        })?;
    if hash.to_hex() != loaded.header.component_hash {
        return Err(WasmError::Instantiate {
            reason: format!(
                "the snapshot's component hashes to {hash}, its header says {}",
                loaded.header.component_hash
            ),
        });
    }
    let component = env.engine.load(loaded.component())?;
    StateMachine::new(component, env.limits)
}

/// Raft's view of a snapshot file: metadata plus the descriptor as data.
pub fn raft_snapshot(header: &SnapshotHeader, descriptor: &SnapshotDescriptor) -> Snapshot {
    let mut snapshot = Snapshot::default();
    let metadata = snapshot.mut_metadata();
    metadata.index = header.index;
    metadata.term = header.term;
    metadata.set_conf_state((&header.conf).into());
    snapshot.data = descriptor.encode().into();
    snapshot
}

fn apply_one(
    machine: &mut StateMachine,
    item: ApplyItem,
    shared: &ApplierShared,
) -> Result<(), WasmError> {
    let previous = shared.applied_index();
    assert!(
        item.index > previous,
        "entries are applied in log order: {} after {previous}",
        item.index
    );
    match item.payload {
        Payload::Noop => {
            shared.applied_index.store(item.index, Ordering::Release);
            if let Some(reply) = item.reply {
                // A membership change: applied once it is in the
                // configuration; there is no guest result.
                let _ = reply.send(Ok(Applied {
                    index: item.index,
                    term: item.term,
                    result: Ok(Vec::new()),
                    fuel_used: 0,
                }));
            }
        }
        Payload::Command {
            timestamp_ms,
            command,
        } => {
            let entry = EntryContext {
                index: item.index,
                term: item.term,
                timestamp_ms,
            };
            let outcome = machine.apply(entry, &command)?;
            // Published before the client hears back, so a status read after
            // the answer includes this entry.
            *shared.stats.lock().unwrap_or_else(|p| p.into_inner()) = machine.stats();
            shared.applied_index.store(item.index, Ordering::Release);
            if let Some(reply) = item.reply {
                // The client may have given up waiting; the entry is applied
                // regardless.
                let _ = reply.send(Ok(Applied {
                    index: item.index,
                    term: item.term,
                    result: outcome.result,
                    fuel_used: outcome.fuel_used,
                }));
            }
        }
    }
    shared.applied_index.store(item.index, Ordering::Release);
    Ok(())
}
