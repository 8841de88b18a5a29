//! A load generator against a local three-node cluster, and leader failover.
//!
//! Run: `BENCH_SECONDS=5 cargo bench --bench cluster` (prints a report; see
//! BENCHMARKS.md). `BENCH_SECONDS` sets the duration per run (default 5);
//! `BENCH_DATA_DIR` puts the nodes' data dirs under another directory (e.g.
//! `/dev/shm`, where fsync costs nothing, to separate the disk from the rest);
//! `BENCH_ONLY=leader-64,follower-1` runs only those cases (add `failover`
//! for it); `BENCH_THREADS=1` prints where the process's CPU time went, by
//! thread name, after each run.
//!
//! Three nodes in one process, assembled as `raft-host` assembles one (see
//! `iroh_raft::host::HostBuilder`): a real iroh endpoint each on loopback (relay
//! off), real sled on a temp dir (fsync on), the kv guest. Node 1 creates the
//! cluster; nodes 2 and 3 bind, are added on the leader, fetch the membership
//! and join. Measures:
//! 1. `put <16-byte key> <128-byte value>` through the leader's
//!    `NodeHandle::propose` with 1, 16, 64 and 256 clients (each waits for its
//!    result before the next): committed-and-applied ops/s, p50/p99/p99.9;
//! 2. the same through a follower (forwarded to the leader over iroh), 1 and
//!    64 clients;
//! 3. reads (`reads`): `get` through the leader and a follower at each
//!    consistency level (linearizable, lease, stale), 16 clients;
//! 4. a node added to a cluster holding 100,000 keys (`add-node`): the
//!    snapshot's size and the time to take it, the time to restore it into a
//!    fresh guest, and the time until `add-node` returns (the new node caught
//!    up through the snapshot and was promoted);
//! 5. a live upgrade (`upgrade`) from the Rust kv guest to the Python one
//!    (17 MiB, same snapshot format) through a follower, with 10,000 keys
//!    and one client writing throughout: the time until the activation
//!    applied (prepare round included) and the client's worst latency; then
//!    the rollback to the Rust guest;
//! 6. leader failover: the leader's node and endpoint go away (a crash as its
//!    peers see it); the time until a write commits through a survivor.

#[path = "common/allocator.rs"]
mod allocator;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use iroh::Endpoint;
use iroh::protocol::Router;
use iroh_raft::node::{
    self, ClusterMode, Consistency, GuestSource, MembershipChange, NodeConfig, NodeHandle,
};
use iroh_raft::transport::{
    IrohTransport, NodeTicket, PeerDirectory, RelayChoice, TransportConfig, identity,
};
use iroh_raft::wasm::GuestLimits;

#[path = "cluster/large_state.rs"]
mod large_state;
#[path = "common/process_memory.rs"]
mod process_memory;

/// Nodes in the cluster.
const CLUSTER_SIZE: u64 = 3;
/// Key and value sizes of every `put`.
const KEY_BYTES: usize = 16;
const VALUE_BYTES: usize = 128;
/// Distinct keys written: bounds the guest's memory however long the run.
const KEY_SPACE: u64 = 1 << 16;
/// Client counts of the runs through the leader and through a follower.
const LEADER_CLIENTS: [usize; 4] = [1, 16, 64, 256];
const FOLLOWER_CLIENTS: [usize; 2] = [1, 64];
/// Keys the cluster holds before a node is added (`add-node`).
const ADD_NODE_KEYS: u64 = 100_000;
/// Clients of the read runs.
const READ_CLIENTS: usize = 16;
/// How long adding a node holding [`ADD_NODE_KEYS`] keys may take.
const ADD_NODE_TIMEOUT: Duration = Duration::from_secs(300);
/// How long the cluster may take to form or converge.
const CONVERGENCE_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a waiting step re-checks the nodes.
const POLL_INTERVAL: Duration = Duration::from_millis(10);
/// One failover probe's budget: a write forwarded to the dead leader would
/// otherwise wait for the dial timeout (seconds).
const FAILOVER_PROBE_TIMEOUT: Duration = Duration::from_millis(100);
/// Pause between failover probes that failed fast (no leader known yet).
const FAILOVER_PROBE_PAUSE: Duration = Duration::from_millis(2);

/// The guest every node runs: `BENCH_GUEST` = `kv` (default, state in
/// guest memory), `kv_store` or `hostile_store` (state in the host's
/// store; `hostile_store` adds a trapping command).
fn guest_path() -> &'static str {
    match std::env::var("BENCH_GUEST").as_deref() {
        Ok("kv_store") => env!("IROH_RAFT_GUEST_KV_STORE"),
        Ok("hostile_store") => env!("IROH_RAFT_GUEST_HOSTILE_STORE"),
        _ => env!("IROH_RAFT_GUEST_KV"),
    }
}

fn bench_duration() -> Duration {
    let seconds = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5.0);
    Duration::from_secs_f64(seconds)
}

/// Whether `BENCH_ONLY` (a comma-separated list) selects this case.
fn selected(case: &str) -> bool {
    match std::env::var("BENCH_ONLY") {
        Ok(only) => only.split(',').any(|c| c.trim() == case),
        // The long cases run only when asked for.
        Err(_) => case != "large-state",
    }
}

/// Linux clock ticks per second of `/proc/*/stat` times (USER_HZ).
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;

/// CPU time (user + system) this process's threads have used, summed by
/// thread name (tokio workers, the appliers, sled's threads...). Empty off
/// Linux.
fn cpu_by_thread() -> BTreeMap<String, Duration> {
    let mut times = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return times;
    };
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ...`: comm may hold spaces, so split at the parens.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = stat[open + 1..close].to_string();
        let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
        // utime and stime are fields 14 and 15 of the line, 12 and 13 here.
        let ticks: f64 = fields
            .get(11..13)
            .map(|f| f.iter().filter_map(|t| t.parse::<f64>().ok()).sum())
            .unwrap_or(0.0);
        *times.entry(name).or_default() += Duration::from_secs_f64(ticks / CLOCK_TICKS_PER_SECOND);
    }
    times
}

fn total(times: &BTreeMap<String, Duration>) -> Duration {
    times.values().sum()
}

/// A fresh data dir, under `BENCH_DATA_DIR` if set.
fn data_dir() -> anyhow::Result<tempfile::TempDir> {
    let dir = match std::env::var_os("BENCH_DATA_DIR") {
        Some(base) => tempfile::tempdir_in(base),
        None => tempfile::tempdir(),
    };
    dir.context("creating a data dir")
}

/// One running member: its node, its endpoint and where it keeps its data.
struct Member {
    id: u64,
    node: NodeHandle,
    router: Router,
    endpoint: Endpoint,
    ticket: NodeTicket,
    _dir: tempfile::TempDir,
}

/// A member whose endpoint is up but whose node is not started yet (a
/// joining node must be added on the leader with its address first).
struct Bound {
    id: u64,
    dir: tempfile::TempDir,
    transport: IrohTransport,
    directory: PeerDirectory,
}

async fn bind(id: u64) -> anyhow::Result<Bound> {
    bind_in(id, data_dir()?).await
}

/// Bind an endpoint for node `id` whose data dir is `dir` (a restart binds
/// with the dir, and so the identity, it had).
async fn bind_in(id: u64, dir: tempfile::TempDir) -> anyhow::Result<Bound> {
    let secret_key = identity::load_or_create(dir.path())?;
    let directory = PeerDirectory::new();
    let config = TransportConfig {
        bind_addr: "127.0.0.1:0".parse().expect("a valid address"),
        advertise_addrs: Vec::new(),
        relay: RelayChoice::Disabled,
    };
    let transport = IrohTransport::bind(id, secret_key, &config, directory.clone()).await?;
    Ok(Bound {
        id,
        dir,
        transport,
        directory,
    })
}

/// Start the node on a bound endpoint, as `run_node` does.
fn start(bound: Bound, cluster: ClusterMode) -> anyhow::Result<Member> {
    let Bound {
        id,
        dir,
        transport,
        directory,
    } = bound;
    let ticket = transport.ticket();
    let endpoint = transport.endpoint().clone();
    let acceptor = transport.acceptor();
    let config = NodeConfig {
        id,
        data_dir: dir.path().to_path_buf(),
        guest: GuestSource::File(PathBuf::from(guest_path())),
        limits: GuestLimits::default(),
        cluster,
        snapshot: node::SnapshotPolicy::default(),
        forwarder: Some(transport.forwarder()),
        directory: Some(std::sync::Arc::new(directory)),
        peer_stats: Some(transport.peer_stats_registry()),
        ticket: Some(ticket.to_string()),
        compile_budget: iroh_raft::limits::DEFAULT_COMPILE_BUDGET,
        state_check_every: iroh_raft::limits::DEFAULT_STATE_CHECK_EVERY,
        ..NodeConfig::new(dir.path())
    };
    let node = node::start(config, transport).with_context(|| format!("starting node {id}"))?;
    let router = acceptor.serve(node.inbox());
    Ok(Member {
        id,
        node,
        router,
        endpoint,
        ticket,
        _dir: dir,
    })
}

/// Poll `check` until it returns `Some`, or fail with `what`.
async fn wait_for<T, F: Future<Output = Option<T>>>(
    what: &str,
    mut check: impl FnMut() -> F,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + CONVERGENCE_TIMEOUT;
    loop {
        if let Some(value) = check().await {
            return Ok(value);
        }
        anyhow::ensure!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Node 1 creates the cluster; every other node binds, is added on node 1
/// (the leader), fetches the membership from it and joins.
async fn start_cluster() -> anyhow::Result<Vec<Member>> {
    let first = bind(1).await?;
    let at = ClusterMode::NewClusterAt(first.transport.local_addr());
    let first = start(first, at)?;
    wait_for("node 1 to lead", || async {
        let status = first.node.status().await.ok()?;
        (status.role == "leader").then_some(())
    })
    .await?;
    let mut members = vec![first];
    for id in 2..=CLUSTER_SIZE {
        let (member, _) = add_member(&members[0], id).await?;
        members.push(member);
    }
    converge(&members).await?;
    Ok(members)
}

/// Add node `id` through `leader` the way an operator does: ask for the
/// change (it joins as a learner and is promoted once caught up), start the
/// node once the membership lists it, wait until the change is done.
/// Returns the node and the time `add-node` took.
async fn add_member(leader: &Member, id: u64) -> anyhow::Result<(Member, Duration)> {
    let bound = bind(id).await?;
    let change = MembershipChange::AddVoter {
        id,
        addr: bound.transport.local_addr(),
    };
    let started = Instant::now();
    let node = leader.node.clone();
    let added = tokio::spawn(async move { node.change_membership(change).await });
    // The leader's allowlist follows the applied configuration: ask until it
    // lists this node.
    let leader_ticket = leader.ticket.clone();
    let transport = &bound.transport;
    let fetched = wait_for("the membership", || async {
        let fetched = transport.fetch_members(&leader_ticket).await.ok()?;
        fetched.contains_key(&id).then_some(fetched)
    })
    .await?;
    let member = start(bound, ClusterMode::Join { members: fetched })?;
    tokio::time::timeout(ADD_NODE_TIMEOUT, added)
        .await
        .context("adding the node timed out")?
        .context("the add task")?
        .with_context(|| format!("adding node {id}"))?;
    Ok((member, started.elapsed()))
}

/// Wait until every member reports the same applied index; returns it.
async fn converge(members: &[Member]) -> anyhow::Result<u64> {
    wait_for("every node to apply the same index", || async {
        let mut indexes = Vec::new();
        for member in members {
            let status = member.node.status().await.ok()?;
            if (status.voters.len() as u64) < CLUSTER_SIZE {
                return None;
            }
            indexes.push(status.applied_index);
        }
        indexes.dedup();
        (indexes.len() == 1).then(|| indexes[0])
    })
    .await
}

async fn leader_index(members: &[Member]) -> anyhow::Result<usize> {
    wait_for("a leader", || async {
        for (i, member) in members.iter().enumerate() {
            if member.node.status().await.ok()?.role == "leader" {
                return Some(i);
            }
        }
        None
    })
    .await
}

/// `put <key> <value>` with a 16-byte key (one of [`KEY_SPACE`]) and a
/// 128-byte value.
fn put_command(value: &str, n: u64) -> Vec<u8> {
    let key = format!("k{:0width$}", n % KEY_SPACE, width = KEY_BYTES - 1);
    debug_assert_eq!(key.len(), KEY_BYTES);
    format!("put {key} {value}").into_bytes()
}

struct Report {
    ops: usize,
    errors: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
    /// CPU time of the whole process (three nodes and the clients).
    cpu: Duration,
}

impl Report {
    fn percentile_us(&self, p: f64) -> f64 {
        let i = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies[i].as_secs_f64() * 1e6
    }

    fn print(&mut self, path: &str, clients: usize) {
        self.latencies.sort();
        if self.latencies.is_empty() {
            println!(
                "{path:<22} {clients:>7}   no write succeeded ({} errors)",
                self.errors
            );
            return;
        }
        println!(
            "{path:<22} {clients:>7} {:>9.0} {:>9.0} {:>9.0} {:>9.0} {:>8} {:>6} {:>9.0} {:>6.2}",
            self.ops as f64 / self.elapsed.as_secs_f64(),
            self.percentile_us(0.50),
            self.percentile_us(0.99),
            self.percentile_us(0.999),
            self.ops,
            self.errors,
            self.cpu.as_secs_f64() * 1e6 / self.ops as f64,
            self.cpu.as_secs_f64() / self.elapsed.as_secs_f64(),
        );
    }
}

/// `clients` tasks, each proposing a put and waiting for its result before
/// the next, for `duration`.
async fn run_clients(node: &NodeHandle, clients: usize, duration: Duration) -> Report {
    let value: String = "v".repeat(VALUE_BYTES);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for client in 0..clients {
        let node = node.clone();
        let value = value.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0;
            let mut n = client as u64 * 7919;
            while started.elapsed() < duration {
                let command = put_command(&value, n);
                n += 1;
                let t = Instant::now();
                match node.propose(command).await {
                    Ok(applied) if applied.result.as_deref() == Ok(&b"OK"[..]) => {
                        latencies.push(t.elapsed());
                    }
                    Ok(applied) => panic!("the kv guest refused a put: {:?}", applied.result),
                    Err(error) => {
                        errors += 1;
                        if errors == 1 {
                            eprintln!("client {client}: {error}");
                        }
                    }
                }
            }
            (latencies, errors)
        }));
    }
    gather(tasks, started).await
}

/// What a client task returns: its latencies and its error count.
type ClientResult = (Vec<Duration>, usize);

/// Wait for every client task and add up their results.
async fn gather(tasks: Vec<tokio::task::JoinHandle<ClientResult>>, started: Instant) -> Report {
    let mut report = Report {
        ops: 0,
        errors: 0,
        elapsed: Duration::ZERO,
        latencies: Vec::new(),
        cpu: Duration::ZERO,
    };
    for task in tasks {
        let (latencies, errors) = task.await.expect("a client task");
        report.latencies.extend(latencies);
        report.errors += errors;
    }
    report.elapsed = started.elapsed();
    report.ops = report.latencies.len();
    report
}

/// `clients` tasks reading `get <key>` at `consistency` for `duration`.
async fn run_readers(
    node: &NodeHandle,
    clients: usize,
    duration: Duration,
    consistency: Consistency,
) -> Report {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for client in 0..clients {
        let node = node.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0;
            let mut n = client as u64 * 7919;
            while started.elapsed() < duration {
                let key = format!("k{:0width$}", n % KEY_SPACE, width = KEY_BYTES - 1);
                n += 1;
                let t = Instant::now();
                match node
                    .query_with(format!("get {key}").into_bytes(), consistency)
                    .await
                {
                    Ok(_) => latencies.push(t.elapsed()),
                    Err(_) => errors += 1,
                }
            }
            (latencies, errors)
        }));
    }
    gather(tasks, started).await
}

/// Fill the cluster with [`ADD_NODE_KEYS`] distinct keys, snapshot it, time
/// restoring that snapshot into a fresh guest, then add a fourth node.
/// Keys written before the upgrade case (if no earlier case wrote more).
const UPGRADE_KEYS: u64 = 10_000;

/// Upgrade kv → kv-python through a follower while one client writes; then
/// roll back. Prints the times and the writer's latencies meanwhile.
async fn upgrade_under_load(
    members: &[Member],
    leader: usize,
    follower: usize,
) -> anyhow::Result<()> {
    let python_path = PathBuf::from(env!("IROH_RAFT_GUEST_KV_PYTHON"));
    let python = std::fs::read(&python_path).with_context(|| {
        format!(
            "{} (build it with `make guests-polyglot`)",
            python_path.display()
        )
    })?;
    let value: String = "v".repeat(VALUE_BYTES);
    for n in 0..UPGRADE_KEYS {
        members[leader].node.propose(put_command(&value, n)).await?;
    }
    converge(members).await?;
    for (what, step) in [("upgrade to kv-python", 0), ("rollback to kv (Rust)", 1)] {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let node = members[leader].node.clone();
            let stop = stop.clone();
            let value = value.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let started = Instant::now();
                    match node.propose(put_command(&value, n)).await {
                        Ok(_) => latencies.push(started.elapsed()),
                        // Refused at once (e.g. overloaded): do not spin.
                        Err(_) => tokio::time::sleep(Duration::from_millis(1)).await,
                    }
                    n += 1;
                }
                latencies
            })
        };
        let started = Instant::now();
        let applied = if step == 0 {
            members[follower]
                .node
                .upgrade(python.clone(), Default::default())
                .await?
        } else {
            members[follower].node.rollback().await?
        };
        let took = started.elapsed();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut latencies = writer.await.context("writer task")?;
        anyhow::ensure!(
            applied.result.is_ok(),
            "{what} failed: {:?}",
            applied.result
        );
        latencies.sort();
        let worst = latencies.last().copied().unwrap_or_default();
        let p50 = latencies
            .get(latencies.len() / 2)
            .copied()
            .unwrap_or_default();
        println!(
            "{what}: applied at index {} after {:.2} s; the writer meanwhile: {} writes, \
             p50 {:.1} ms, worst {:.1} ms",
            applied.index,
            took.as_secs_f64(),
            latencies.len(),
            p50.as_secs_f64() * 1e3,
            worst.as_secs_f64() * 1e3
        );
    }
    Ok(())
}

async fn add_node_with_state(members: &mut Vec<Member>, leader: usize) -> anyhow::Result<()> {
    let value: String = "v".repeat(VALUE_BYTES);
    let loading = Instant::now();
    let mut tasks = Vec::new();
    const LOADERS: u64 = 64;
    for client in 0..LOADERS {
        let node = members[leader].node.clone();
        let value = value.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = client;
            while n < ADD_NODE_KEYS {
                let command = format!("put n{n:0width$} {value}", width = KEY_BYTES - 1);
                if node.propose(command.into_bytes()).await.is_ok() {
                    n += LOADERS;
                }
            }
        }));
    }
    for task in tasks {
        task.await.context("a loader task")?;
    }
    let loaded = loading.elapsed();
    let taking = Instant::now();
    let info = members[leader].node.snapshot().await?;
    let took = taking.elapsed();

    // What a follower does with the file: read and verify it, instantiate
    // its component, restore the guest state.
    let restoring = Instant::now();
    let loaded_snapshot = node::snapshot::read(std::path::Path::new(&info.path))?;
    let engine = iroh_raft::wasm::WasmEngine::new(None)?;
    let component = engine.load(loaded_snapshot.component())?;
    if component.world() == iroh_raft::wasm::GuestWorld::Memory {
        let mut machine = iroh_raft::wasm::StateMachine::new(component, GuestLimits::default())?;
        let entry = iroh_raft::wasm::EntryContext {
            index: loaded_snapshot.header.index,
            term: loaded_snapshot.header.term,
            timestamp_ms: loaded_snapshot.header.last_entry_timestamp_ms,
        };
        machine.restore(entry, &loaded_snapshot.state()?)?;
    }
    let restore_took = restoring.elapsed();

    let (member, add_took) = add_member(&members[leader], CLUSTER_SIZE + 1).await?;
    let status = member.node.status().await?;
    println!(
        "add-node: {ADD_NODE_KEYS} keys ({KEY_BYTES}-byte keys, {VALUE_BYTES}-byte values) \
         loaded in {:.1} s; snapshot at index {}: {:.1} MiB file ({:.1} MiB guest state), \
         taken in {:.0} ms; read + verify + instantiate + restore {:.0} ms; add-node \
         (learner, snapshot over iroh, install, catch-up, promotion) {:.0} ms; \
         the new node installed the snapshot at {:?}",
        loaded.as_secs_f64(),
        info.index,
        info.file_bytes as f64 / (1024.0 * 1024.0),
        loaded_snapshot.header.state_len as f64 / (1024.0 * 1024.0),
        took.as_secs_f64() * 1e3,
        restore_took.as_secs_f64() * 1e3,
        add_took.as_secs_f64() * 1e3,
        status.snapshot_index,
    );
    members.push(member);
    Ok(())
}

/// Crash the leader (node stopped, endpoint closed) and time the first write
/// that commits through a survivor.
async fn failover(members: &mut Vec<Member>, leader: usize) -> anyhow::Result<()> {
    let survivor = members
        .iter()
        .find(|m| m.id != members[leader].id)
        .expect("a three-node cluster has a follower")
        .node
        .clone();
    let value: String = "v".repeat(VALUE_BYTES);
    let dead = members.remove(leader);
    let killed = Instant::now();
    dead.node.shutdown().await;
    dead.router
        .shutdown()
        .await
        .context("stopping the router")?;
    if !dead.endpoint.is_closed() {
        dead.endpoint.close().await;
    }
    let kill_took = killed.elapsed();
    let mut probes = 0u64;
    let committed = loop {
        probes += 1;
        let command = put_command(&value, probes);
        match tokio::time::timeout(FAILOVER_PROBE_TIMEOUT, survivor.propose(command)).await {
            Ok(Ok(applied)) => break applied,
            Ok(Err(_)) => tokio::time::sleep(FAILOVER_PROBE_PAUSE).await,
            Err(_) => {}
        }
        anyhow::ensure!(
            killed.elapsed() < CONVERGENCE_TIMEOUT,
            "no write committed after the leader died"
        );
    };
    let took = killed.elapsed();
    let new_leader = members[leader_index(members).await?].id;
    println!(
        "failover: node {} killed (stop + endpoint close took {:.1} ms); first write \
         committed {:.0} ms after the kill (index {}, term {}), new leader node {new_leader}, \
         {probes} probes",
        dead.id,
        kill_took.as_secs_f64() * 1e3,
        took.as_secs_f64() * 1e3,
        committed.index,
        committed.term,
    );
    Ok(())
}

/// CPU time per thread name during one run: share of a core, µs per op.
fn print_threads(
    before: &BTreeMap<String, Duration>,
    after: &BTreeMap<String, Duration>,
    elapsed: Duration,
    ops: usize,
) {
    let mut used: Vec<(Duration, &String)> = after
        .iter()
        .map(|(name, t)| {
            (
                t.saturating_sub(before.get(name).copied().unwrap_or_default()),
                name,
            )
        })
        .filter(|(t, _)| !t.is_zero())
        .collect();
    used.sort_by(|a, b| b.cmp(a));
    for (time, name) in used {
        println!(
            "    {name:<18} {:>5.2} cores {:>7.1} µs/op",
            time.as_secs_f64() / elapsed.as_secs_f64(),
            time.as_secs_f64() * 1e6 / ops.max(1) as f64
        );
    }
}

async fn run(duration: Duration) -> anyhow::Result<()> {
    let formed = Instant::now();
    let mut members = start_cluster().await?;
    let leader = leader_index(&members).await?;
    let follower = (leader + 1) % members.len();
    println!(
        "# 3-node cluster in one process: iroh on loopback (relay off), sled with fsync, \
         guest {}, put of a {KEY_BYTES}-byte key and {VALUE_BYTES}-byte value, {duration:?} \
         per run",
        std::path::Path::new(guest_path())
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
    );
    println!(
        "# formed in {:.0} ms; leader node {}, follower runs through node {}",
        formed.elapsed().as_secs_f64() * 1e3,
        members[leader].id,
        members[follower].id
    );
    println!(
        "{:<22} {:>7} {:>9} {:>9} {:>9} {:>9} {:>8} {:>6} {:>9} {:>6}",
        "path",
        "clients",
        "ops/s",
        "p50 µs",
        "p99 µs",
        "p99.9 µs",
        "ops",
        "errors",
        "CPU µs/op",
        "cores"
    );
    let runs = LEADER_CLIENTS
        .iter()
        .map(|&c| (leader, "leader", c))
        .chain(FOLLOWER_CLIENTS.iter().map(|&c| (follower, "follower", c)));
    let show_threads = std::env::var_os("BENCH_THREADS").is_some();
    for (through, path, clients) in runs {
        if !selected(&format!("{path}-{clients}")) {
            continue;
        }
        let before = cpu_by_thread();
        let mut report = run_clients(&members[through].node, clients, duration).await;
        let after = cpu_by_thread();
        report.cpu = total(&after).saturating_sub(total(&before));
        report.print(path, clients);
        if show_threads {
            print_threads(&before, &after, report.elapsed, report.ops);
        }
        // Followers may trail at the end of a run; start the next one level.
        converge(&members).await?;
    }
    if selected("reads") {
        for (through, path) in [(leader, "leader"), (follower, "follower")] {
            for consistency in [
                Consistency::Linearizable,
                Consistency::Lease,
                Consistency::Stale,
            ] {
                let mut report =
                    run_readers(&members[through].node, READ_CLIENTS, duration, consistency).await;
                report.print(
                    &format!("{path}-{consistency:?}").to_lowercase(),
                    READ_CLIENTS,
                );
            }
        }
    }
    if selected("large-state") {
        large_state::run(&mut members, leader, duration).await?;
    }
    if selected("add-node") {
        add_node_with_state(&mut members, leader).await?;
    }
    if selected("upgrade") {
        upgrade_under_load(&members, leader, follower).await?;
    }
    if selected("failover") {
        failover(&mut members, leader).await?;
    }
    for member in &members {
        member.node.shutdown().await;
        let _ = member.router.shutdown().await;
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    // `RUST_LOG=iroh_raft=info` shows what the nodes do.
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let duration = bench_duration();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(run(duration))
}
