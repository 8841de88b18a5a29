//! Getting the bytes of a component that an activation entry names.
//!
//! The node that proposed an upgrade stored the component before proposing.
//! Any other replica may not hold it (it was down, it joined later, it
//! restored a snapshot taken before the upgrade): before it applies the
//! activation it downloads the file from a peer, by hash, and verifies it.
//! It never applies the entry without the verified bytes: it keeps asking
//! (the proposer first, then every member) until one answers, or until the
//! node stops.

use crate::limits::{FETCH_RETRY_INTERVAL, FETCH_TIMEOUT};
use std::sync::Arc;

use super::Activation;
use crate::node::applier::ApplierEnv;
use crate::node::ports::{Forwarder, PeerView};
use crate::storage::ComponentStore;
use crate::wasm::ComponentHash;

/// What the applier needs to download components from peers.
#[derive(Debug, Clone)]
pub struct PeerFetch {
    pub runtime: tokio::runtime::Handle,
    pub peers: Arc<dyn Forwarder>,
    /// Who the members are (the proposer may be gone).
    pub directory: Option<Arc<dyn PeerView>>,
    pub self_id: u64,
}

/// Why no bytes came back.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("the node is stopping")]
    Stopping,
    #[error("component {hash} is not stored here and this node has no peers to ask")]
    NoPeers { hash: ComponentHash },
    #[error("storing component {hash}: {source}")]
    Store {
        hash: ComponentHash,
        source: std::io::Error,
    },
}

/// The verified bytes of `hash`, from the local store or, failing that,
/// from a peer (then stored), asking every round until one answers or the
/// node stops. Blocks the calling (non-async) thread.
pub fn obtain(
    store: &ComponentStore,
    fetch: Option<&PeerFetch>,
    hash: ComponentHash,
    activation: &Activation,
    stopping: &dyn Fn() -> bool,
) -> Result<Vec<u8>, FetchError> {
    if let Ok(bytes) = store.get(&hash) {
        return Ok(bytes);
    }
    let Some(fetch) = fetch else {
        return Err(FetchError::NoPeers { hash });
    };
    let mut round = 0u64;
    loop {
        if let Some(bytes) = fetch_round(store, fetch, hash, activation, stopping)? {
            return Ok(bytes);
        }
        round += 1;
        if round == 1 || round.is_multiple_of(30) {
            tracing::warn!(%hash, round,
                "no peer could provide the component to activate; applying waits until one does");
        }
        std::thread::sleep(FETCH_RETRY_INTERVAL);
        if stopping() {
            return Err(FetchError::Stopping);
        }
    }
}

/// Ask each candidate peer once; the verified, stored bytes of the first
/// that provides them.
fn fetch_round(
    store: &ComponentStore,
    fetch: &PeerFetch,
    hash: ComponentHash,
    activation: &Activation,
    stopping: &dyn Fn() -> bool,
) -> Result<Option<Vec<u8>>, FetchError> {
    for peer in candidates(fetch, activation.source) {
        let download = fetch.runtime.block_on(async {
            tokio::time::timeout(
                FETCH_TIMEOUT,
                fetch
                    .peers
                    .fetch_component(peer, hash, activation.size_bytes),
            )
            .await
            .unwrap_or_else(|_| Err("timed out".into()))
        });
        match download {
            Ok(bytes) if ComponentHash::of(&bytes) == hash => {
                store
                    .put(&bytes)
                    .map_err(|source| FetchError::Store { hash, source })?;
                tracing::info!(%hash, peer, bytes = bytes.len(), "fetched a component");
                return Ok(Some(bytes));
            }
            Ok(_) => tracing::warn!(%hash, peer, "a peer sent a component with the wrong hash"),
            Err(error) => tracing::debug!(%hash, peer, %error, "fetching a component failed"),
        }
        if stopping() {
            return Err(FetchError::Stopping);
        }
    }
    Ok(None)
}

/// Get an activation's component ready before it is proposed: held (fetched
/// if needed, one round over the peers: the proposer waits for the answer)
/// and compiled into the node's compile cache, so applying the activation
/// later neither waits for the network nor for the compiler. Returns the
/// compile time in ms (0 when cached).
pub fn prepare(env: &ApplierEnv, activation: &Activation) -> Result<u64, String> {
    let hash = activation
        .component_hash()
        .ok_or_else(|| format!("`{}` is not a component hash", activation.hash))?;
    let bytes = match env.components.get(&hash) {
        Ok(bytes) => bytes,
        Err(_) => {
            let fetch = env
                .fetch
                .as_ref()
                .ok_or(FetchError::NoPeers { hash })
                .map_err(|e| e.to_string())?;
            fetch_round(&env.components, fetch, hash, activation, &|| false)
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("no peer could provide component {hash}"))?
        }
    };
    let started = std::time::Instant::now();
    let compiled = env.engine.compile(&bytes).map_err(|e| e.to_string())?;
    Ok(if compiled.from_cache {
        0
    } else {
        started.elapsed().as_millis() as u64
    })
}

/// The proposer first, then every other member.
fn candidates(fetch: &PeerFetch, source: u64) -> Vec<u64> {
    let mut peers = Vec::new();
    if source != fetch.self_id {
        peers.push(source);
    }
    if let Some(directory) = &fetch.directory {
        peers.extend(
            directory
                .member_ids()
                .into_iter()
                .filter(|id| *id != fetch.self_id && *id != source),
        );
    }
    peers
}
