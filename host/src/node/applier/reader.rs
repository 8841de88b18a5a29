//! The query thread: a store-backed guest's queries run here, beside the
//! applier, instead of waiting between its entries.
//!
//! ```text
//!  driver ── ApplierInbox ──┬── entries, snapshots, upgrades ──► applier ── commits ──► store
//!                           └── queries ──► QueryQueue ──► reader (pins the store, runs the query)
//! ```
//!
//! A query waits until the store holds its read index (`min_applied`), then
//! pins the store (no commit changes it meanwhile) and runs on an instance
//! of the component that applied the pinned state: the applier publishes
//! each component with the index it applies from ([`ReadTargets`]) before
//! anything it commits can be read. A 0.1.0 guest keeps its state in the
//! applier's own instance, so its queries still go to the applier.

use crate::limits::QUERY_QUEUE_CAPACITY;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};

use tokio::sync::{mpsc, watch};

use super::{ApplierShared, ApplyJob, QueryAnswer, QueryReply};
use crate::node::error::ClientError;
use crate::storage::GuestStore;
use crate::wasm::kv::CommittedState;
use crate::wasm::{EntryContext, GuestLimits, GuestMachine, GuestWorld, LoadedComponent};
use crate::wasm::{StoreReader, WasmError};

/// Where the node hands work to the applier: everything goes to the
/// applier in order, except a store-backed guest's queries, which go to
/// the query thread (when the node runs one).
#[derive(Clone)]
pub struct ApplierInbox {
    jobs: mpsc::Sender<ApplyJob>,
    queries: Option<Arc<OpenQueue>>,
    shared: Arc<ApplierShared>,
}

/// The query queue as the inboxes hold it: closed when the last one goes.
pub(super) struct OpenQueue(Arc<QueryQueue>);

impl Drop for OpenQueue {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// The applier (or the query thread) stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApplierStopped;

impl ApplierInbox {
    pub(super) fn new(
        jobs: mpsc::Sender<ApplyJob>,
        queries: Option<Arc<QueryQueue>>,
        shared: Arc<ApplierShared>,
    ) -> Self {
        ApplierInbox {
            jobs,
            queries: queries.map(|queue| Arc::new(OpenQueue(queue))),
            shared,
        }
    }

    /// Hand over a job, waiting while the applier's queue is full.
    pub async fn send(&self, job: ApplyJob) -> Result<(), ApplierStopped> {
        match self.route(job) {
            Some(job) => self.jobs.send(job).await.map_err(|_| ApplierStopped),
            None => Ok(()),
        }
    }

    /// [`Self::send`] from a thread outside the runtime.
    pub fn blocking_send(&self, job: ApplyJob) -> Result<(), ApplierStopped> {
        match self.route(job) {
            Some(job) => self.jobs.blocking_send(job).map_err(|_| ApplierStopped),
            None => Ok(()),
        }
    }

    /// Queue a store-backed guest's query on the query thread; any other
    /// job is returned, for the applier.
    fn route(&self, job: ApplyJob) -> Option<ApplyJob> {
        let Some(queue) = &self.queries else {
            return Some(job);
        };
        match job {
            ApplyJob::Query {
                request,
                min_applied,
                reply,
            } if self.shared.world() == GuestWorld::Store => {
                // At least every entry whose client heard back (the applier
                // publishes an entry's index before it answers): applied
                // entries reach the store at the end of their batch.
                let min_applied = min_applied.max(self.shared.applied_index());
                queue.0.push(QueuedQuery {
                    request,
                    min_applied,
                    reply,
                });
                None
            }
            other => Some(other),
        }
    }
}

/// Which component answers queries over the store from which applied
/// index on. The applier publishes a component before it commits anything
/// at that index, so a query always finds the component that applied the
/// state it reads.
#[derive(Debug, Default)]
pub(super) struct ReadTargets(Mutex<Vec<ReadTarget>>);

#[derive(Debug, Clone)]
pub(super) struct ReadTarget {
    from_index: u64,
    component: LoadedComponent,
    name: String,
    limits: GuestLimits,
}

impl ReadTargets {
    /// `machine` applies entries after `from_index` (and its state at
    /// `from_index`, if it migrated it); only store-backed guests answer
    /// queries on the query thread. Targets no query can need again (the
    /// store is past a later one) are dropped.
    pub(super) fn publish(&self, from_index: u64, machine: &GuestMachine, store_at: u64) {
        let GuestMachine::Store(store_machine) = machine else {
            return;
        };
        let mut targets = self.0.lock().unwrap_or_else(|p| p.into_inner());
        targets.retain(|target| target.from_index < from_index);
        if let Some(current) = targets.iter().rposition(|t| t.from_index <= store_at) {
            targets.drain(..current);
        }
        targets.push(ReadTarget {
            from_index,
            component: store_machine.component().clone(),
            name: store_machine.info().name.clone(),
            limits: store_machine.limits(),
        });
    }

    /// The component that applied the store's state at `index`.
    fn at(&self, index: u64) -> Option<ReadTarget> {
        let targets = self.0.lock().unwrap_or_else(|p| p.into_inner());
        targets
            .iter()
            .rev()
            .find(|target| target.from_index <= index)
            .or(targets.first())
            .cloned()
    }
}

/// A query waiting for the query thread.
struct QueuedQuery {
    request: Vec<u8>,
    min_applied: u64,
    reply: QueryReply,
}

/// The query thread's inbox; it also wakes up when the store commits.
pub(super) struct QueryQueue {
    state: Mutex<QueueState>,
    wake: Condvar,
}

#[derive(Default)]
struct QueueState {
    incoming: Vec<QueuedQuery>,
    /// Queries queued or waiting for their index, for the bound.
    queued: usize,
    closed: bool,
}

impl QueryQueue {
    fn push(&self, query: QueuedQuery) {
        let mut state = self.lock();
        if state.closed {
            let _ = query.reply.send(Err(ClientError::Stopped));
            return;
        }
        if state.queued >= QUERY_QUEUE_CAPACITY {
            drop(state);
            let _ = query.reply.send(Err(ClientError::Overloaded));
            return;
        }
        state.queued += 1;
        state.incoming.push(query);
        self.wake.notify_one();
    }

    /// Wake the query thread (the store committed).
    fn poke(&self) {
        let _state = self.lock();
        self.wake.notify_one();
    }

    fn close(&self) {
        self.lock().closed = true;
        self.wake.notify_one();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Start the query thread for a node whose store is `store`. Stops when
/// the last [`ApplierInbox`] is dropped; a failure of the store stops the
/// node through `fatal`.
pub(super) fn spawn(
    node_id: u64,
    store: GuestStore,
    shared: Arc<ApplierShared>,
    fatal: watch::Sender<Option<String>>,
) -> std::io::Result<(Arc<QueryQueue>, std::thread::JoinHandle<()>)> {
    let queue = Arc::new(QueryQueue {
        state: Mutex::default(),
        wake: Condvar::new(),
    });
    let poked = Arc::downgrade(&queue);
    store.set_commit_listener(Box::new(move |_index| {
        if let Some(queue) = poked.upgrade() {
            queue.poke();
        }
    }));
    let thread_queue = queue.clone();
    let join = std::thread::Builder::new()
        .name("queries".into())
        .spawn(move || {
            let _span = tracing::info_span!("queries", id = node_id).entered();
            let mut reader = Reader {
                state: Arc::new(store.clone()),
                store,
                shared,
                queue: thread_queue,
                reader: None,
                waiting: BTreeMap::new(),
            };
            if let Err(error) = reader.run() {
                tracing::error!(%error, "the query thread failed; stopping the node");
                let _ = fatal.send(Some(error.to_string()));
            }
            reader.refuse_all(ClientError::Stopped);
        })?;
    Ok((queue, join))
}

struct Reader {
    store: GuestStore,
    state: Arc<dyn CommittedState>,
    shared: Arc<ApplierShared>,
    queue: Arc<QueryQueue>,
    /// The instance of the component that answered last.
    reader: Option<StoreReader>,
    /// Queries waiting for the store to reach their index.
    waiting: BTreeMap<u64, Vec<(Vec<u8>, QueryReply)>>,
}

impl Reader {
    fn run(&mut self) -> Result<(), WasmError> {
        let queue = self.queue.clone();
        loop {
            {
                let mut state = queue.lock();
                loop {
                    for query in state.incoming.drain(..) {
                        self.waiting
                            .entry(query.min_applied)
                            .or_default()
                            .push((query.request, query.reply));
                    }
                    if state.closed {
                        return Ok(());
                    }
                    let committed = self.store.committed().index;
                    if self
                        .waiting
                        .first_key_value()
                        .is_some_and(|(min, _)| *min <= committed)
                    {
                        break;
                    }
                    state = queue.wake.wait(state).unwrap_or_else(|p| p.into_inner());
                }
            }
            self.answer_ready()?;
        }
    }

    /// Answer every query whose index the store has reached, each over
    /// the state pinned for its own call (so a commit waits for one query
    /// at most).
    fn answer_ready(&mut self) -> Result<(), WasmError> {
        let committed = self.store.committed().index;
        let later = self.waiting.split_off(&(committed + 1));
        let ready = std::mem::replace(&mut self.waiting, later);
        let store = self.store.clone();
        for (request, reply) in ready.into_values().flatten() {
            let pin = store.pin();
            let answer = self.answer(pin.applied.index, pin.applied.term, &request)?;
            drop(pin);
            let _ = reply.send(answer);
            self.queue.lock().queued -= 1;
        }
        Ok(())
    }

    /// Run one query over the pinned state at `index`.
    fn answer(
        &mut self,
        index: u64,
        term: u64,
        request: &[u8],
    ) -> Result<Result<QueryAnswer, ClientError>, WasmError> {
        if let Some(divergence) = self.shared.diverged() {
            return Ok(Err(ClientError::Diverged {
                index: divergence.index,
            }));
        }
        let Some(target) = self.shared.read_targets.at(index) else {
            return Ok(Err(ClientError::Stopped));
        };
        let current = self.reader.as_ref().is_some_and(|reader| {
            reader.component().hash == target.component.hash && reader.limits() == target.limits
        });
        if !current {
            self.reader = Some(StoreReader::new(
                target.component,
                &target.name,
                target.limits,
                self.state.clone(),
            )?);
        }
        let reader = self.reader.as_mut().expect("set above");
        let entry = EntryContext {
            index,
            term,
            timestamp_ms: self.shared.last_timestamp_ms.load(Ordering::Acquire),
        };
        let (result, fuel_used) = reader.query(entry, request)?;
        Ok(Ok(QueryAnswer {
            applied_index: index,
            result,
            fuel_used,
        }))
    }

    fn refuse_all(&mut self, error: ClientError) {
        for (_, queries) in std::mem::take(&mut self.waiting) {
            for (_, reply) in queries {
                let _ = reply.send(Err(error.clone()));
            }
        }
        for query in self.queue.lock().incoming.drain(..) {
            let _ = query.reply.send(Err(error.clone()));
        }
    }
}
