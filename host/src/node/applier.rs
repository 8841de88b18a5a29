//! The applier: a dedicated thread that owns the guest [`StateMachine`] and
//! applies committed entries in log order.
//!
//! Guest calls are synchronous CPU work (wasmtime without async), so they run
//! on their own OS thread instead of blocking the node's tokio task: the node
//! keeps persisting and replicating the next batch while this one applies.
//! The node hands over batches through a bounded channel (backpressure) and
//! the applier answers waiting clients itself once their entry is applied.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot, watch};

use super::envelope::Payload;
use super::error::ClientError;
use crate::wasm::{EntryContext, GuestFailure, GuestInfo, RuntimeStats, StateMachine, WasmError};

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

/// Work for the applier.
#[derive(Debug)]
pub enum ApplyJob {
    Apply(Vec<ApplyItem>),
    Query {
        request: Vec<u8>,
        reply: oneshot::Sender<QueryAnswer>,
    },
}

/// What the applier publishes for status pages, readable from any thread.
#[derive(Debug)]
pub struct ApplierShared {
    applied_index: AtomicU64,
    guest: GuestInfo,
    component_hash: String,
    stats: Mutex<RuntimeStats>,
}

impl ApplierShared {
    pub fn applied_index(&self) -> u64 {
        self.applied_index.load(Ordering::Acquire)
    }
    pub fn guest(&self) -> &GuestInfo {
        &self.guest
    }
    pub fn component_hash(&self) -> &str {
        &self.component_hash
    }
    pub fn stats(&self) -> RuntimeStats {
        *self.stats.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Start the applier thread. `fatal` receives a message if the runtime fails
/// in a way that must stop the node (a nondeterministic guest).
pub fn spawn(
    node_id: u64,
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
        guest: machine.info().clone(),
        component_hash: machine.component().hash.to_hex(),
        stats: Mutex::new(machine.stats()),
    });
    let thread_shared = shared.clone();
    let join = std::thread::Builder::new()
        .name("applier".into())
        .spawn(move || {
            let _span = tracing::info_span!("applier", id = node_id).entered();
            if let Err(error) = run(machine, rx, &thread_shared) {
                tracing::error!(%error, "the state machine failed; stopping the node");
                let _ = fatal.send(Some(error.to_string()));
            }
        })?;
    Ok((tx, shared, join))
}

fn run(
    mut machine: StateMachine,
    mut rx: mpsc::Receiver<ApplyJob>,
    shared: &ApplierShared,
) -> Result<(), WasmError> {
    while let Some(job) = rx.blocking_recv() {
        match job {
            ApplyJob::Apply(items) => {
                for item in items {
                    apply_one(&mut machine, item, shared)?;
                }
            }
            ApplyJob::Query { request, reply } => {
                let (result, fuel_used) = machine.query(&request)?;
                *shared.stats.lock().unwrap_or_else(|p| p.into_inner()) = machine.stats();
                let _ = reply.send(QueryAnswer {
                    applied_index: shared.applied_index(),
                    result,
                    fuel_used,
                });
            }
        }
    }
    Ok(())
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
