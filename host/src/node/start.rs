//! Starting a node: its parts run on a tokio task (the driver) and the
//! applier thread, joined to a transport.

use crate::limits::NODE_INBOX_CAPACITY;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tracing::Instrument as _;

use super::applier;
use super::assemble::{NodeParts, PartsOverrides, assemble};
use super::config::NodeConfig;
use super::driver;
use super::error::NodeError;
use super::handle::{HandleInner, NodeHandle};
use super::inbox::NodeInbox;

use super::persist::Persister;
use super::ports::{NodeLink, Transport};
use super::upgrade;

/// Open the data dir, load the guest, and start the node's tasks. Must be
/// called inside a tokio runtime.
pub fn start(config: NodeConfig, mut transport: impl Transport) -> Result<NodeHandle, NodeError> {
    let NodeParts {
        core,
        env,
        machine,
        history,
        applied_index,
        members,
        storage: size_reader,
        leader: leader_rx,
        instruments,
    } = assemble(&config, PartsOverrides::default())?;
    let term_rx = core.term_watch();
    let data_dir = &config.data_dir;
    transport.set_members(&members);
    let (fatal_tx, fatal_rx) = watch::channel(None);
    let (applier_tx, applier_shared, applier_thread) =
        applier::spawn(env.clone(), machine, applied_index, history, fatal_tx).map_err(
            |source| NodeError::DataDir {
                path: data_dir.clone(),
                source,
            },
        )?;
    let (persister, persisted) =
        Persister::start(size_reader.clone()).map_err(|source| NodeError::DataDir {
            path: data_dir.clone(),
            source,
        })?;
    let (inbox_tx, inbox_rx) = mpsc::channel(NODE_INBOX_CAPACITY);
    transport.attach(NodeLink {
        inbox: NodeInbox::new(inbox_tx.clone()),
        snapshot_dir: env.snapshot_dir.clone(),
        components: env.components.clone(),
    });
    let (shutdown_tx, shutdown_rx) = mpsc::channel(4);
    let (stopped_tx, stopped_rx) = watch::channel(None);
    let controls = driver::Controls {
        shutdown: shutdown_rx,
        fatal: fatal_rx,
    };
    let id = config.id;
    // Carries the node id and, recorded as it changes, the current term.
    let span = tracing::info_span!("node", id, term = tracing::field::Empty);
    let applier_on_fatal = applier_shared.clone();
    let driver = tokio::spawn(
        driver::run(
            core,
            inbox_rx,
            controls,
            applier_tx,
            env.clone(),
            driver::Persistence {
                storage: size_reader.clone(),
                persister,
                persisted,
            },
            transport,
        )
        .instrument(span),
    );
    tokio::spawn(async move {
        // raft-rs panics when a storage read fails after start-up; a panic
        // must still mark the node stopped, so the driver runs as its own task.
        let outcome = match driver.await {
            Ok(outcome) => outcome,
            Err(join_error) => Err(NodeError::TaskFailed(join_error.to_string())),
        };
        // The applier drains what it was given, then exits (its sender is
        // gone); join it off the async threads.
        let _ = tokio::task::spawn_blocking(move || applier_thread.join()).await;
        let (reason, reply) = match outcome {
            Ok(reply) => {
                tracing::info!(id, "node stopped");
                (String::new(), reply)
            }
            Err(error) => {
                tracing::error!(id, %error, "node stopped by a fatal error");
                // The disk may be what failed: sled must not touch it again.
                applier_on_fatal.abandon_store();
                (error.to_string(), None)
            }
        };
        let _ = stopped_tx.send(Some(reason));
        if let Some(reply) = reply {
            let _ = reply.send(());
        }
    });
    Ok(NodeHandle {
        inner: Arc::new(HandleInner {
            id,
            inbox: inbox_tx,
            upgrades: upgrade::handle::UpgradeEnv {
                engine: env.engine.clone(),
                components: env.components.clone(),
                limits: env.limits,
                compile_budget: config.compile_budget,
            },
            shutdown: shutdown_tx,
            forwarder: config.forwarder,
            directory: config.directory,
            ticket: config.ticket,
            applier: applier_shared,
            metrics: instruments,
            peer_stats: config.peer_stats,
            storage: size_reader,
            data_dir: config.data_dir,
            stopped: stopped_rx,
            leader: leader_rx,
            term: term_rx,
        }),
    })
}
