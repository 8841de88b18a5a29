//! The applier: a dedicated thread that owns the guest [`StateMachine`] and
//! applies committed entries in log order.
//!
//! Guest calls are synchronous CPU work (wasmtime without async), so they run
//! on their own OS thread instead of blocking the node's tokio task: the node
//! keeps persisting and replicating the next batch while this one applies.
//! The node hands over batches through a bounded channel (backpressure) and
//! the applier answers waiting clients itself once their entry is applied.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use raft::prelude::{ConfState, Snapshot};
use tokio::sync::{mpsc, oneshot, watch};

use super::canary::{self, CanaryInput, Side};
use super::component_fetch::{self, PeerFetch};
use super::components::ComponentStore;
use super::divergence::{Divergence, DivergenceMonitor};
use super::envelope::Payload;
use super::error::ClientError;
use super::snapshot::{self, LoadedSnapshot, SnapshotDescriptor, SnapshotHeader};
use super::upgrade::{
    Activation, ActivationKind, ActivationOutcome, ComponentHistory, ComponentRecord, DryRunReport,
    LimitOverrides, MAX_COMPONENT_BYTES,
};
use crate::transport::PeerAddr;
use crate::wasm::{
    EntryContext, GuestFailure, GuestInfo, GuestLimits, LoadedComponent, RuntimeStats,
    StateMachine, WasmEngine, WasmError,
};

/// Batches of committed entries that may wait for the applier.
pub const APPLY_QUEUE_CAPACITY: usize = 256;
/// Results of the most recent entries kept for `GET /v1/results` (which
/// component applied each entry, and a hash of its result).
pub const RECENT_RESULTS_CAPACITY: usize = 10_000;

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
    /// Compare a candidate component with the active one (an upgrade's dry
    /// run). The applier copies what the comparison needs and runs it on
    /// another thread, so applying goes on meanwhile.
    DryRun {
        candidate: Box<Candidate>,
        reply: oneshot::Sender<Result<DryRunReport, String>>,
    },
    /// Answered once every job before it is done (a simulation steps the
    /// applier in lock step with the node this way).
    Barrier(oneshot::Sender<()>),
    /// A peer's state hash at a state check; `voters` is the configuration
    /// now.
    PeerStateHash {
        from: u64,
        index: u64,
        hash: [u8; 32],
        voters: Vec<u64>,
    },
}

/// A validated candidate component for a dry run.
#[derive(Debug)]
pub struct Candidate {
    pub component: LoadedComponent,
    pub info: GuestInfo,
    pub limits: LimitOverrides,
    pub compile_ms: u64,
    /// How many recent entries to compare.
    pub entries: usize,
}

/// Which component applied an entry, and what came out (for comparing
/// replicas: every replica must show the same records).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AppliedRecord {
    pub index: u64,
    /// BLAKE3 (hex) of the component that applied it.
    pub component: String,
    pub ok: bool,
    /// BLAKE3 (hex) of the result bytes, or of the failure's JSON.
    pub result_hash: String,
    /// BLAKE3 (hex) of the guest's `snapshot()` right after this entry;
    /// only recorded when [`ApplierEnv::hash_states`] is on (a simulation's
    /// check that replicas agree at every index).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_hash: Option<String>,
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
    history: Mutex<ComponentHistory>,
    recent: Mutex<VecDeque<AppliedRecord>>,
    /// The divergence verdict and the last verified state check.
    divergence: Mutex<(Option<Divergence>, Option<u64>)>,
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
    /// Set once this node's state disagreed with the majority's.
    pub fn diverged(&self) -> Option<Divergence> {
        self.divergence
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .clone()
    }
    /// The latest state check a majority agreed with this node on.
    pub fn last_verified_state_check(&self) -> Option<u64> {
        self.divergence.lock().unwrap_or_else(|p| p.into_inner()).1
    }
    /// The component history (the active component and every activation).
    pub fn history(&self) -> ComponentHistory {
        self.history
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
    /// Results of the applied entries with index ≥ `since` still kept.
    pub fn recent_results(&self, since: u64, limit: usize) -> Vec<AppliedRecord> {
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        let start = recent.partition_point(|r| r.index < since);
        recent.iter().skip(start).take(limit).cloned().collect()
    }
    fn set_guest(&self, machine: &StateMachine) {
        *self.guest.lock().unwrap_or_else(|p| p.into_inner()) =
            (machine.info().clone(), machine.component().hash.to_hex());
    }
    fn set_history(&self, history: &ComponentHistory) {
        *self.history.lock().unwrap_or_else(|p| p.into_inner()) = history.clone();
    }
    fn push_result(&self, record: AppliedRecord) {
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        // A restore moves the applied index back (restart replays): keep the
        // list ordered by index.
        while recent.back().is_some_and(|last| last.index >= record.index) {
            recent.pop_back();
        }
        if recent.len() == RECENT_RESULTS_CAPACITY {
            recent.pop_front();
        }
        recent.push_back(record);
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
    /// Downloads components from peers; `None` for a node without a
    /// network.
    pub fetch: Option<PeerFetch>,
    /// Where this node's state hashes go (to its peers); `None` for a node
    /// without a network.
    pub state_hashes: Option<mpsc::UnboundedSender<(u64, [u8; 32])>>,
    /// The clock snapshot headers are stamped with.
    pub wall_clock: WallClock,
    /// Hash the whole state after every applied entry (see
    /// [`AppliedRecord::state_hash`]). Costs a `snapshot()` per entry: for
    /// simulations, off in production.
    pub hash_states: bool,
}

/// Where the applier reads the wall clock: the system's, or a
/// simulation's virtual one (so a seeded run writes the same bytes twice).
#[derive(Clone)]
pub struct WallClock(Arc<dyn Fn() -> u64 + Send + Sync>);

impl WallClock {
    /// Milliseconds since the Unix epoch, from the system clock.
    pub fn system() -> Self {
        WallClock(Arc::new(unix_now_ms))
    }

    /// A clock that reads `now_ms`.
    pub fn new(now_ms: impl Fn() -> u64 + Send + Sync + 'static) -> Self {
        WallClock(Arc::new(now_ms))
    }

    pub fn now_ms(&self) -> u64 {
        (self.0)()
    }
}

/// Milliseconds since the Unix epoch, from the system clock (0 before it).
pub fn unix_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl std::fmt::Debug for WallClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WallClock")
    }
}

/// Start the applier thread. `fatal` receives a message if the runtime fails
/// in a way that must stop the node (a nondeterministic guest).
pub fn spawn(
    env: ApplierEnv,
    machine: StateMachine,
    applied_index: u64,
    history: ComponentHistory,
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
        history: Mutex::new(history.clone()),
        recent: Mutex::new(VecDeque::new()),
        divergence: Mutex::new((None, None)),
    });
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
    history: ComponentHistory,
    /// State hashes of recent checks; once it finds this node outvoted,
    /// nothing is applied or answered any more.
    monitor: DivergenceMonitor,
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
                        if let Some(divergence) = self.monitor.diverged() {
                            refuse(item.reply, divergence.index);
                            continue;
                        }
                        self.apply_one(item, &rx)?;
                    }
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
            taken_at_ms: self.env.wall_clock.now_ms(),
            history: Some(self.history.clone()),
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
        let limits = header.limit_overrides().resolve(self.env.limits);
        if header.component_hash != self.machine.component().hash.to_hex()
            || limits != self.machine.limits()
        {
            self.machine = build_machine(&self.env, loaded)?;
        }
        self.machine
            .restore(snapshot_entry(header), loaded.state())?;
        self.history = header.component_history(self.machine.info());
        self.shared.set_history(&self.history);
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
    StateMachine::new(
        component,
        loaded.header.limit_overrides().resolve(env.limits),
    )
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
        let (result, fuel_used) = match item.payload {
            // A leader's no-op or a membership change: applied once it is
            // in the configuration; there is no guest result.
            Payload::Noop => (Ok(Vec::new()), 0),
            Payload::Command {
                timestamp_ms,
                command,
            } => {
                let entry = EntryContext {
                    index: item.index,
                    term: item.term,
                    timestamp_ms,
                };
                let outcome = self.machine.apply(entry, &command)?;
                self.record_result(item.index, &outcome.result);
                (outcome.result, outcome.fuel_used)
            }
            Payload::StateCheck => {
                self.check_state(item.index);
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
                self.record_result(item.index, &result);
                (result, 0)
            }
        };
        // Published before the client hears back, so a status read after
        // the answer includes this entry.
        *self.shared.stats.lock().unwrap_or_else(|p| p.into_inner()) = self.machine.stats();
        self.shared
            .applied_index
            .store(item.index, Ordering::Release);
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

    /// BLAKE3 of the guest's whole state. A snapshot that fails does so
    /// alike everywhere: its error is the state's fingerprint then.
    fn state_digest(&mut self) -> blake3::Hash {
        match self.machine.snapshot() {
            Ok(state) => blake3::hash(&state),
            Err(error) => blake3::hash(error.to_string().as_bytes()),
        }
    }

    /// Hash the state at a state check, tell the peers, and compare.
    fn check_state(&mut self, index: u64) {
        let hash = *self.state_digest().as_bytes();
        if let Some(peers) = &self.env.state_hashes {
            let _ = peers.send((index, hash));
        }
        let found = self.monitor.record(self.env.node_id, index, hash, &[]);
        self.publish_divergence(found);
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

    fn record_result(&mut self, index: u64, result: &Result<Vec<u8>, GuestFailure>) {
        let result_hash = match result {
            Ok(bytes) => blake3::hash(bytes),
            Err(failure) => blake3::hash(
                serde_json::to_string(failure)
                    .unwrap_or_default()
                    .as_bytes(),
            ),
        };
        let state_hash = self
            .env
            .hash_states
            .then(|| self.state_digest().to_hex().to_string());
        self.shared.push_result(AppliedRecord {
            index,
            component: self.machine.component().hash.to_hex(),
            ok: result.is_ok(),
            result_hash: result_hash.to_hex().to_string(),
            state_hash,
        });
    }

    /// Apply an activation entry: switch to the named component, migrating
    /// the state through `snapshot()` → `restore()`, or stay on the current
    /// one if anything fails. The result is the new history record (JSON)
    /// or the reason, identical on every replica. Only the node stopping
    /// while it fetches the component is an `Err` (the entry is then not
    /// applied, and is again after a restart).
    fn activate(
        &mut self,
        entry: EntryContext,
        activation: &Activation,
        rx: &mpsc::Receiver<ApplyJob>,
    ) -> Result<Result<Vec<u8>, GuestFailure>, WasmError> {
        let mut record = ComponentRecord {
            index: entry.index,
            kind: activation.kind,
            hash: activation.hash.clone(),
            size_bytes: activation.size_bytes,
            name: String::new(),
            version: String::new(),
            timestamp_ms: entry.timestamp_ms,
            limits: activation.limits,
            outcome: ActivationOutcome::Activated,
        };
        let result = match self.migrate(entry, activation, rx)? {
            Ok(mut next) => {
                next.continue_stats(&self.machine);
                record.name = next.info().name.clone();
                record.version = next.info().version.clone();
                tracing::info!(index = entry.index, kind = ?activation.kind,
                    from = %self.machine.component().hash, to = %activation.hash,
                    name = %record.name, version = %record.version, "activated a component");
                self.machine = next;
                self.shared.set_guest(&self.machine);
                Ok(serde_json::to_vec(&record).unwrap_or_default())
            }
            Err((reason, info)) => {
                if let Some(info) = info {
                    record.name = info.name;
                    record.version = info.version;
                }
                tracing::warn!(index = entry.index, hash = %activation.hash, %reason,
                    "component activation failed; the previous component stays active");
                record.outcome = ActivationOutcome::Failed {
                    reason: reason.clone(),
                };
                Err(GuestFailure::UpgradeFailed { reason })
            }
        };
        self.history.record(record);
        self.shared.set_history(&self.history);
        Ok(result)
    }

    /// Build the next state machine: the new component holding the current
    /// state. `Ok(Err((reason, info)))` is a deterministic failure (with
    /// the new component's `info()` if it got that far).
    fn migrate(
        &mut self,
        entry: EntryContext,
        activation: &Activation,
        rx: &mpsc::Receiver<ApplyJob>,
    ) -> Result<Result<StateMachine, (String, Option<GuestInfo>)>, WasmError> {
        let Some(hash) = activation.component_hash() else {
            return Ok(Err((
                format!("`{}` is not a component hash", activation.hash),
                None,
            )));
        };
        if activation.size_bytes > MAX_COMPONENT_BYTES {
            return Ok(Err((
                format!(
                    "the component is {} bytes, over the limit of {MAX_COMPONENT_BYTES}",
                    activation.size_bytes
                ),
                None,
            )));
        }
        let bytes = component_fetch::obtain(
            &self.env.components,
            self.env.fetch.as_ref(),
            hash,
            activation,
            &|| rx.is_closed(),
        )
        .map_err(|error| WasmError::Instantiate {
            reason: format!(
                "cannot apply the activation at index {}: {error}",
                entry.index
            ),
        })?;
        let limits = activation.limits.resolve(self.env.limits);
        let next = self
            .env
            .engine
            .load(&bytes)
            .and_then(|component| StateMachine::new(component, limits));
        let mut next = match next {
            Ok(next) => next,
            Err(error) => {
                return Ok(Err((
                    format!("the new component does not load: {error}"),
                    None,
                )));
            }
        };
        let info = Some(next.info().clone());
        let state = match self.machine.snapshot() {
            Ok(state) => state,
            Err(error) => {
                return Ok(Err((
                    format!("the active component's snapshot failed: {error}"),
                    info,
                )));
            }
        };
        Ok(match next.restore(entry, &state) {
            Ok(()) => Ok(next),
            Err(error) => Err((
                format!("the new component's restore of the current state failed: {error}"),
                info,
            )),
        })
    }

    /// Start a dry run: copy the current state and the replay window, and
    /// compare on a thread of its own.
    fn dry_run(
        &mut self,
        candidate: Candidate,
        reply: oneshot::Sender<Result<DryRunReport, String>>,
    ) {
        let input = CanaryInput {
            active: Side {
                component: self.machine.component().clone(),
                limits: self.machine.limits(),
                info: self.machine.info().clone(),
            },
            candidate: Side {
                component: candidate.component,
                limits: candidate.limits.resolve(self.env.limits),
                info: candidate.info,
            },
            compile_ms: candidate.compile_ms,
            applied_index: self.shared.applied_index(),
            current_state: self.machine.snapshot().map_err(|e| e.to_string()),
            current_entry: self.machine.last_entry(),
            window: self.machine.replay_window(),
            entries: candidate.entries,
        };
        let spawned = std::thread::Builder::new()
            .name("dry-run".into())
            .spawn(move || {
                let _ = reply.send(Ok(canary::run(input)));
            });
        if let Err(error) = spawned {
            tracing::warn!(%error, "cannot start a dry run thread");
        }
    }
}

/// Answer a client whose entry this diverged node will not apply.
fn refuse(reply: Option<ProposalReply>, index: u64) {
    if let Some(reply) = reply {
        let _ = reply.send(Err(ClientError::Diverged { index }));
    }
}

/// The history of a node that starts from scratch: the genesis component.
pub fn genesis_history(machine: &StateMachine) -> ComponentHistory {
    ComponentHistory::new(ComponentRecord {
        index: 0,
        kind: ActivationKind::Genesis,
        hash: machine.component().hash.to_hex(),
        size_bytes: machine.component().size_bytes,
        name: machine.info().name.clone(),
        version: machine.info().version.clone(),
        timestamp_ms: 0,
        limits: LimitOverrides::default(),
        outcome: ActivationOutcome::Activated,
    })
}
