//! Assembling a node before it runs: open (or bootstrap) the data dir,
//! load the guest from the latest snapshot or the configured source, and
//! build the Raft core over the opened storage.

use crate::limits::{
    ELECTION_TICKS, HEARTBEAT_TICKS, MAX_COMMITTED_BYTES_PER_READY, MAX_ELECTION_TICKS,
    MAX_INFLIGHT_MESSAGES, MAX_RAFT_MESSAGE_BYTES,
};
use crate::node::upgrade::LimitOverridesExt as _;
use std::collections::BTreeMap;

use raft::RawNode;
use raft::prelude::{ConfChange, ConfChangeType, ConfState, Entry, EntryType, HardState};
use tokio::sync::{mpsc, watch};

use super::admission::Admission;
use super::applier::{self, ApplierEnv};
use super::config::{ClusterMode, GuestSource, NodeConfig};
use super::core::{CoreSetup, NodeCore};
use super::error::NodeError;
use super::logger;
use super::metrics::NodeInstruments;
use super::snapshot::{self, LoadedSnapshot};
use super::upgrade;
use crate::membership::{self, Members, PeerAddr};
use crate::storage::{ComponentStore, DataDir, GuestStore, MetaUpdate, SledStorage};
use crate::wasm::{ComponentHash, EntryContext, GuestMachine, WasmEngine, WasmError};

/// A node's parts before anything runs: the Raft core over its opened
/// storage, and the guest restored to where the log resumes. [`start`] runs
/// them on a tokio task and the applier thread; the deterministic
/// simulation ([`crate::simulation`]) steps them by hand.
#[derive(Debug)]
pub struct NodeParts {
    pub core: NodeCore,
    pub env: ApplierEnv,
    pub machine: GuestMachine,
    pub history: upgrade::ComponentHistory,
    pub applied_index: u64,
    pub members: BTreeMap<u64, PeerAddr>,
    /// Another handle on the core's store (for its size on disk).
    pub storage: SledStorage,
    /// The leader the core currently knows of.
    pub leader: watch::Receiver<Option<u64>>,
    /// What the node's parts record for `/metrics`.
    pub instruments: NodeInstruments,
}

/// Where a simulated node differs from a production one.
#[derive(Debug, Default)]
pub struct PartsOverrides {
    /// Share one engine (and its compiled components) between nodes.
    pub engine: Option<WasmEngine>,
    /// A fixed election timeout in ticks instead of raft-rs's random one
    /// (which reads the thread's RNG, so no seed could replay it).
    pub election_timeout_ticks: Option<usize>,
    pub wall_clock: Option<applier::WallClock>,
    /// See [`ApplierEnv::hash_states`].
    pub hash_states: bool,
    /// See [`ApplierEnv::queries_in_log_order`].
    pub queries_in_log_order: bool,
}

/// Open the data dir (bootstrapping it if empty), load the guest from the
/// latest snapshot or the configured file, and build the Raft core.
pub fn assemble(config: &NodeConfig, overrides: PartsOverrides) -> Result<NodeParts, NodeError> {
    if config.id == 0 {
        return Err(NodeError::Config("the node id must be non-zero".into()));
    }
    config
        .limits
        .check()
        .map_err(|reason| NodeError::Config(format!("guest limits: {reason}")))?;
    let data_dir = DataDir::new(&config.data_dir);
    data_dir.create().map_err(|source| NodeError::DataDir {
        path: config.data_dir.clone(),
        source,
    })?;
    let storage = SledStorage::open(&data_dir.raft_log())?;
    let instruments = NodeInstruments::default();
    storage.observe_syncs(instruments.fsync_observer());
    let state_hash_tx = broadcast_state_hashes(config);
    let engine = match overrides.engine {
        Some(engine) => engine,
        None => WasmEngine::new(Some(data_dir.compile_cache()))?,
    };
    let components =
        ComponentStore::open(data_dir.components()).map_err(|source| NodeError::DataDir {
            path: data_dir.components(),
            source,
        })?;
    let env = ApplierEnv {
        node_id: config.id,
        engine: engine.clone(),
        limits: config.limits,
        components: components.clone(),
        guest_store: {
            let store = GuestStore::open(&data_dir.guest_store())?;
            store.set_history_retention(config.watch_history_entries)?;
            store
        },
        snapshot_dir: data_dir.snapshots(),
        fetch: config
            .forwarder
            .clone()
            .map(|peers| upgrade::fetch::PeerFetch {
                runtime: tokio::runtime::Handle::current(),
                peers,
                directory: config.directory.clone(),
                self_id: config.id,
            }),
        state_hashes: state_hash_tx,
        wall_clock: overrides
            .wall_clock
            .unwrap_or_else(|| match config.clock_skew_ms {
                0 => applier::WallClock::system(),
                skew => applier::WallClock::new(move || {
                    applier::unix_now_ms().saturating_add_signed(skew)
                }),
            }),
        hash_states: overrides.hash_states,
        admission: Admission::default(),
        queries_in_log_order: overrides.queries_in_log_order,
        instruments: instruments.clone(),
    };
    if let ClusterMode::Restore { backup, addr } = &config.cluster
        && storage.is_fresh()
    {
        bootstrap_from_backup(config, &env, &storage, backup, addr.clone())?;
    }
    let (machine, history, applied_index) = match storage.snapshot_position() {
        Some((index, term)) => restore_latest_snapshot(config, &env, &storage, index, term)?,
        None => {
            let machine = load_active_guest(config, &storage, &env)?;
            let history = upgrade::genesis_history(&machine);
            resume_from_store(&env, machine, history, 0)?
        }
    };
    let last_index = raft::Storage::last_index(&storage)?;
    if applied_index > last_index {
        // A node applies only entries its own log made durable first, so
        // this store is not from this log.
        return Err(NodeError::CorruptEntry {
            index: applied_index,
            reason: format!(
                "the guest store is at index {applied_index}, past the log's last index \
                 {last_index}: the data dir is corrupt (remove this member and add it again)"
            ),
        });
    }
    if applied_index > storage.hard_state().commit {
        // The store applied entries whose commit index was not fsynced (it
        // rides along with the next durable write); they were committed.
        storage.set_commit(applied_index)?;
    }
    tracing::info!(id = config.id, guest = %machine.info().name,
        version = %machine.info().version, hash = %machine.component().hash,
        applied_index, "guest loaded");
    warn_if_limits_differ(config, &history);

    let members = if storage.is_fresh() {
        bootstrap(config, &storage)?
    } else {
        storage.members()?
    };
    let conf_applied_index = storage.conf_index()?;

    let mut raft_config = raft::Config {
        id: config.id,
        election_tick: ELECTION_TICKS,
        heartbeat_tick: HEARTBEAT_TICKS,
        min_election_tick: ELECTION_TICKS,
        max_election_tick: MAX_ELECTION_TICKS,
        // The guest starts from the snapshot: have raft-rs hand out every
        // committed entry after it again (see the module docs).
        applied: applied_index,
        max_size_per_msg: MAX_RAFT_MESSAGE_BYTES,
        max_inflight_msgs: MAX_INFLIGHT_MESSAGES,
        max_committed_size_per_ready: MAX_COMMITTED_BYTES_PER_READY,
        check_quorum: true,
        pre_vote: true,
        batch_append: true,
        // The commit index rides on the next append (node::core::commit_notice).
        skip_bcast_commit: true,
        ..Default::default()
    };
    if let Some(ticks) = overrides.election_timeout_ticks {
        // raft-rs draws from [min, max): a range of one is fixed.
        raft_config.min_election_tick = ticks;
        raft_config.max_election_tick = ticks + 1;
    }
    raft_config.validate()?;
    let raw = RawNode::new(
        &raft_config,
        storage.clone(),
        &logger::raft_logger(config.id),
    )?;
    let (leader_tx, leader_rx) = watch::channel(None);
    let core = NodeCore::new(
        raw,
        CoreSetup {
            storage: storage.clone(),
            members: members.clone(),
            leader_tx,
            conf_applied_index,
            applied_index,
            snapshot_policy: config.snapshot,
            snapshot_dir: env.snapshot_dir.clone(),
            state_check_every: config.state_check_every,
            unsafe_local_reads: config.unsafe_local_reads,
            admission: env.admission.clone(),
            guest_timer: env.guest_store.timer(),
            instruments: instruments.clone(),
        },
    );
    Ok(NodeParts {
        core,
        env,
        machine,
        history,
        applied_index,
        members,
        storage,
        leader: leader_rx,
        instruments,
    })
}

/// Set up an empty data dir, returning the initial membership.
///
/// A new cluster's first entry is the configuration change that adds this
/// node (with its address), written as already committed: nodes that join
/// later replay it like any other entry and so learn the first member.
fn bootstrap(
    config: &NodeConfig,
    storage: &SledStorage,
) -> Result<BTreeMap<u64, PeerAddr>, NodeError> {
    let self_addr = match &config.cluster {
        ClusterMode::Join { members } => {
            tracing::info!(id = config.id, members = ?members.keys().collect::<Vec<_>>(),
                "joining a cluster; waiting for the leader");
            return Ok(members.clone());
        }
        ClusterMode::NewCluster => None,
        ClusterMode::NewClusterAt(addr) => Some(addr.clone()),
        ClusterMode::Restore { .. } => {
            return Err(NodeError::Config(
                "restoring a backup left the data dir empty".into(),
            ));
        }
    };
    let mut change = ConfChange::default();
    change.set_change_type(ConfChangeType::AddNode);
    change.node_id = config.id;
    if let Some(addr) = &self_addr {
        change.context = membership::encode_address(addr).into();
    }
    let data = protobuf::Message::write_to_bytes(&change)
        .map_err(|e| NodeError::Config(format!("encoding the bootstrap entry: {e}")))?;
    let mut entry = Entry::default();
    entry.set_entry_type(EntryType::EntryConfChange);
    entry.index = 1;
    entry.term = 1;
    entry.data = data.into();
    let hard_state = HardState {
        term: 1,
        vote: 0,
        commit: 1,
        ..Default::default()
    };
    storage.bootstrap(&ConfState {
        voters: vec![config.id],
        ..Default::default()
    })?;
    storage.append_and_persist(&[entry], Some(&hard_state))?;
    let members: Members = self_addr.into_iter().map(|a| (config.id, a)).collect();
    storage.set_members(&members)?;
    tracing::info!(id = config.id, "bootstrapped a new cluster");
    Ok(members)
}

/// Start a new single-node cluster from a backup snapshot: the backup is
/// read and its guest restored first (a bad file changes nothing), then the
/// snapshot is rewritten with this node as the only member and installed.
fn bootstrap_from_backup(
    config: &NodeConfig,
    env: &ApplierEnv,
    storage: &SledStorage,
    backup: &std::path::Path,
    addr: Option<PeerAddr>,
) -> Result<(), NodeError> {
    let bad = |reason: String| NodeError::Config(format!("backup {}: {reason}", backup.display()));
    let loaded = snapshot::read(backup).map_err(|e| bad(e.to_string()))?;
    let mut machine = applier::build_machine(env, &loaded)?;
    applier::install_state(env, &mut machine, &loaded)?;
    let mut header = loaded.header.clone();
    header.conf = snapshot::ConfStateRecord {
        voters: vec![config.id],
        ..Default::default()
    };
    header.members = addr.into_iter().map(|a| (config.id, a)).collect();
    let descriptor =
        snapshot::write_streamed(&env.snapshot_dir, &header, loaded.component(), &mut |out| {
            std::io::copy(&mut loaded.state_reader(), out)
        })
        .map_err(|e| bad(e.to_string()))?;
    let raft_snapshot = applier::raft_snapshot(&header, &descriptor);
    storage.bootstrap(&ConfState {
        voters: vec![config.id],
        ..Default::default()
    })?;
    let component = machine.component().hash;
    storage.apply_snapshot_with_meta(
        &raft_snapshot,
        MetaUpdate {
            members: Some(&header.members),
            conf_index: Some(header.index),
            active_component: Some(&component),
        },
    )?;
    tracing::info!(id = config.id, index = header.index, guest = %machine.info().name,
        "started a new cluster from a backup");
    Ok(())
}

/// Instantiate the guest from the latest snapshot file (its component and
/// its state). A missing or damaged file stops the node with the reason: the
/// log before it is gone, so only a backup can help.
fn restore_latest_snapshot(
    config: &NodeConfig,
    env: &ApplierEnv,
    storage: &SledStorage,
    index: u64,
    term: u64,
) -> Result<(GuestMachine, upgrade::ComponentHistory, u64), NodeError> {
    let path = snapshot::path_for(&env.snapshot_dir, index, term);
    let corrupt = |e: snapshot::SnapshotError| NodeError::CorruptEntry {
        index,
        reason: format!("the latest snapshot ({}): {e}", path.display()),
    };
    // A store-backed guest's store already holds the snapshot's state (and
    // maybe more): only the header is needed, not GiBs of pairs.
    if env
        .guest_store
        .applied()
        .map_err(WasmError::from)?
        .is_some_and(|applied| applied.index >= index)
    {
        let header = snapshot::read_header(&path).map_err(corrupt)?;
        if header.state_format == snapshot::StateFormat::StorePairs {
            check_given_guest(config, storage, &header)?;
            let missing = |reason: String| NodeError::ComponentStore {
                hash: header.component_hash.clone(),
                path: env.components.dir().to_path_buf(),
                reason,
            };
            let hash = ComponentHash::from_hex(&header.component_hash)
                .ok_or_else(|| missing("not a component hash".into()))?;
            let component = env
                .components
                .get(&hash)
                .map_err(|e| missing(e.to_string()))?;
            let machine = env.new_machine(
                env.engine.load(&component)?,
                header.limit_overrides().resolve(env.limits),
            )?;
            let history = header.component_history(machine.info());
            return Ok(resume_from_store(env, machine, history, index)?);
        }
    }
    let loaded: LoadedSnapshot = snapshot::read(&path).map_err(corrupt)?;
    check_given_guest(config, storage, &loaded.header)?;
    let mut machine = applier::build_machine(env, &loaded)?;
    let history = applier::install_state(env, &mut machine, &loaded)?;
    Ok(resume_from_store(env, machine, history, index)?)
}

/// A guest file given on the command line must be one the cluster ran.
fn check_given_guest(
    config: &NodeConfig,
    storage: &SledStorage,
    header: &snapshot::SnapshotHeader,
) -> Result<(), NodeError> {
    let given = match &config.guest {
        GuestSource::Default => None,
        GuestSource::File(path) => {
            Some(std::fs::read(path).map_err(|source| NodeError::DataDir {
                path: path.clone(),
                source,
            })?)
        }
        GuestSource::Bytes(bytes) => Some(bytes.to_vec()),
    };
    if let Some(bytes) = given {
        // The cluster may have upgraded since it was created with this
        // file: any component it has run (or started with) is accepted.
        let given_hash = ComponentHash::of(&bytes);
        let genesis = storage.active_component()?;
        let known = given_hash.to_hex() == header.component_hash
            || genesis == Some(given_hash)
            || header
                .history
                .as_ref()
                .is_some_and(|h| upgrade::handle::in_history(h, &given_hash));
        if !known {
            return Err(NodeError::GuestMismatch {
                stored: header.component_hash.clone(),
                given: given_hash.to_hex(),
            });
        }
    }
    Ok(())
}

/// Where a store-backed guest resumes: its store is at some applied index
/// (at least the snapshot's, `applied`), committed with the component
/// history at that index, so only the log after it is replayed. A 0.1.0
/// guest (or an empty store) resumes where it was restored.
fn resume_from_store(
    env: &ApplierEnv,
    machine: GuestMachine,
    history: upgrade::ComponentHistory,
    applied: u64,
) -> Result<(GuestMachine, upgrade::ComponentHistory, u64), WasmError> {
    let GuestMachine::Store(_) = &machine else {
        return Ok((machine, history, applied));
    };
    let Some(stored) = env.guest_store.applied()? else {
        return Ok((machine, history, applied));
    };
    if stored.index < applied {
        return Ok((machine, history, applied));
    }
    let history = applier::stored_history(env)?.unwrap_or(history);
    let active = &history.active;
    let limits = active.limits.resolve(env.limits);
    let mut machine = if active.hash == machine.component().hash.to_hex()
        && limits == machine.limits()
    {
        machine
    } else {
        // Upgraded after the snapshot (or genesis): the store says to what.
        let hash = ComponentHash::from_hex(&active.hash).ok_or_else(|| WasmError::Instantiate {
            reason: format!("the guest store names the component `{}`", active.hash),
        })?;
        let bytes = env
            .components
            .get(&hash)
            .map_err(|e| WasmError::Instantiate {
                reason: format!("the active component {hash} is missing: {e}"),
            })?;
        env.new_machine(env.engine.load(&bytes)?, limits)?
    };
    if let GuestMachine::Store(store_machine) = &mut machine {
        store_machine.set_last_entry(EntryContext {
            index: stored.index,
            term: stored.term,
            timestamp_ms: 0,
        });
    }
    tracing::info!(
        applied = stored.index,
        "the guest store resumes; replaying the log after it"
    );
    Ok((machine, history, stored.index))
}

/// The guest limits are the cluster's (set when it was created, changed by
/// upgrades); a node's flags only create a cluster. Say so when they differ.
fn warn_if_limits_differ(config: &NodeConfig, history: &upgrade::ComponentHistory) {
    let cluster = history.active.limits.resolve(config.limits);
    if cluster != config.limits {
        tracing::warn!(
            apply_fuel = cluster.apply_fuel,
            query_fuel = cluster.query_fuel,
            maintenance_fuel = cluster.maintenance_fuel,
            memory_limit_bytes = cluster.memory_limit_bytes,
            "this node's guest limit flags differ from the cluster's; the cluster's apply \
             (change them with `raft-host upgrade <component> --apply-fuel ...`)"
        );
    }
}

/// Pick the component this data dir runs: the stored one if the cluster
/// exists, else the configured one (which is then stored).
fn load_active_guest(
    config: &NodeConfig,
    storage: &SledStorage,
    env: &ApplierEnv,
) -> Result<GuestMachine, NodeError> {
    let (engine, components) = (&env.engine, &env.components);
    let stored = storage.active_component()?;
    // Load (and so validate) a given file before anything is written: a bad
    // file changes nothing.
    let given = match &config.guest {
        GuestSource::Default => None,
        GuestSource::File(path) => Some(engine.load_file(path)?),
        GuestSource::Bytes(bytes) => Some((engine.load(bytes)?, bytes.to_vec())),
    };
    match stored {
        Some(hash) if !storage.is_fresh() => {
            let loaded = match given {
                Some((loaded, _)) if loaded.hash == hash => loaded,
                Some((loaded, _)) => {
                    return Err(NodeError::GuestMismatch {
                        stored: hash.to_hex(),
                        given: loaded.hash.to_hex(),
                    });
                }
                None => {
                    let bytes = components
                        .get(&hash)
                        .map_err(|e| NodeError::ComponentStore {
                            hash: hash.to_hex(),
                            path: components.path_of(&hash),
                            reason: e.to_string(),
                        })?;
                    engine.load(&bytes)?
                }
            };
            let limits = match storage.genesis_limits()? {
                Some(limits) => limits,
                // A data dir from before the limits were recorded.
                None => config.limits,
            };
            Ok(env.new_machine(loaded, limits)?)
        }
        _ => {
            let (loaded, bytes) = match given {
                Some(given) => given,
                None => {
                    let bytes = crate::wasm::DEFAULT_GUEST.to_vec();
                    (engine.load(&bytes)?, bytes)
                }
            };
            let machine = env.new_machine(loaded, config.limits)?;
            // The new cluster's limits: recorded, so that a restart with
            // other flags replays the log with the same ones.
            storage.set_genesis_limits(&config.limits)?;
            let hash = components
                .put(&bytes)
                .map_err(|source| NodeError::DataDir {
                    path: components.path_of(&ComponentHash::of(&bytes)),
                    source,
                })?;
            storage.set_active_component(&hash)?;
            Ok(machine)
        }
    }
}

/// Send this node's state hashes to every other member (the divergence
/// check); `None` for a node without peers.
fn broadcast_state_hashes(config: &NodeConfig) -> Option<mpsc::UnboundedSender<(u64, [u8; 32])>> {
    let (forwarder, directory) = (config.forwarder.clone()?, config.directory.clone()?);
    let (tx, mut rx) = mpsc::unbounded_channel::<(u64, [u8; 32])>();
    let id = config.id;
    tokio::spawn(async move {
        while let Some((index, hash)) = rx.recv().await {
            for peer in directory.member_ids().into_iter().filter(|p| *p != id) {
                let forwarder = forwarder.clone();
                tokio::spawn(async move {
                    if let Err(error) = forwarder.report_state_hash(peer, index, hash).await {
                        tracing::debug!(peer, index, %error, "could not send a state hash");
                    }
                });
            }
        }
    });
    Some(tx)
}
