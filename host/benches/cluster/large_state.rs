//! The `large-state` case of the cluster bench: the same cluster holding a
//! large store-backed state (`BENCH_GUEST=kv_store` or `hostile_store`).
//!
//! `BENCH_ONLY=large-state BENCH_GUEST=hostile_store BENCH_STATE_MIB=2048
//! cargo bench --bench cluster` fills the cluster with 1 KiB values up to
//! `BENCH_STATE_MIB` (default 2048: 2M keys) and measures:
//! 1. `put` at 64 clients through the leader, on the empty store and at
//!    the full state (ops/s, p50, p99);
//! 2. the process's resident memory (three nodes in one process);
//! 3. a snapshot taken while 16 clients write: its time, and the writes'
//!    worst latency meanwhile (how long applies paused);
//! 4. a trapping entry (`put-then-trap`, hostile_store only) against a put;
//! 5. a fourth node added (snapshot streamed over iroh and installed):
//!    time, MiB/s, and the process's peak memory;
//! 6. a follower restarted (shut down, started on its data dir) until a
//!    linearizable read through it answers.

use super::process_memory::memory_mib;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use iroh_raft::node::{
    Applied, ClientError, ClusterMode, Consistency, MembershipChange, NodeHandle,
};

use super::{
    ADD_NODE_TIMEOUT, CLUSTER_SIZE, Member, Report, bind, bind_in, converge, run_clients, start,
    wait_for,
};

/// Bytes of each value written by the fill.
const FILL_VALUE_BYTES: usize = 1024;
/// Clients of the fill and of the measured runs.
const CLIENTS: usize = 64;
/// Clients writing while a snapshot is taken.
const SNAPSHOT_CLIENTS: usize = 16;
/// Samples of the trap comparison.
const TRAP_SAMPLES: usize = 20;
/// Pause before asking again after an answer a client retries (a leader
/// change takes at least an election timeout to settle).
const RETRY_PAUSE: Duration = Duration::from_millis(100);
/// Most times one request is asked again before the bench gives up.
const MAX_RETRIES: u32 = 100;

/// Whether a client asks again after `error`: the request did not apply
/// (`not_leader`, `proposal_dropped`, `overloaded`) or may have, and the
/// bench's requests are safe to apply twice (`outcome_unknown`, `timeout`:
/// a put, a trapping put, adding a voter that may already be one).
fn retryable(error: &ClientError) -> bool {
    matches!(
        error,
        ClientError::NotLeader { .. }
            | ClientError::ProposalDropped
            | ClientError::Overloaded
            | ClientError::OutcomeUnknown
            | ClientError::Timeout { .. }
    )
}

/// `propose` as a client drives it through a leader change: a retryable
/// answer is asked again (the node forwards to whoever leads by then).
async fn propose_retrying(node: &NodeHandle, command: &[u8]) -> anyhow::Result<Applied> {
    let mut retries = 0;
    loop {
        match node.propose(command.to_vec()).await {
            Err(error) if retryable(&error) && retries < MAX_RETRIES => {
                retries += 1;
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            other => return Ok(other?),
        }
    }
}

/// The member that leads now, if one does.
async fn current_leader(nodes: &[NodeHandle]) -> Option<&NodeHandle> {
    for node in nodes {
        if node.status().await.ok()?.role == "leader" {
            return Some(node);
        }
    }
    None
}

/// Remove node `id` through whoever leads, asking again on a retryable
/// answer (a node already gone is what was asked).
async fn remove_member_retrying(members: &[Member], id: u64) -> anyhow::Result<()> {
    let nodes: Vec<NodeHandle> = members.iter().map(|m| m.node.clone()).collect();
    let mut retries = 0;
    loop {
        let answer = match current_leader(&nodes).await {
            Some(leader) => {
                leader
                    .change_membership(MembershipChange::RemoveNode { id })
                    .await
            }
            None => Err(ClientError::NotLeader { leader_hint: None }),
        };
        match answer {
            Ok(_) => return Ok(()),
            Err(ClientError::InvalidMembership(why)) if why.contains("not a member") => {
                return Ok(());
            }
            Err(ClientError::InvalidMembership(why))
                if retries < MAX_RETRIES && why.contains("in progress") => {}
            Err(error) if retryable(&error) && retries < MAX_RETRIES => {}
            Err(error) => return Err(error).with_context(|| format!("removing node {id}")),
        }
        retries += 1;
        tokio::time::sleep(RETRY_PAUSE).await;
    }
}

/// Add node `id` as an operator does, through leader changes: ask whoever
/// leads for `AddVoter`, and ask again on a retryable answer (the first
/// request may have applied: a learner is then promoted, a voter is
/// refused as one, which is what was asked). Starts the node once a
/// member's membership lists it. Returns it and the time the add took.
async fn add_member_retrying(members: &[Member], id: u64) -> anyhow::Result<(Member, Duration)> {
    let bound = bind(id).await?;
    let change = MembershipChange::AddVoter {
        id,
        addr: bound.transport.local_addr(),
    };
    let started = Instant::now();
    let nodes: Vec<NodeHandle> = members.iter().map(|m| m.node.clone()).collect();
    let added = tokio::spawn(async move {
        let mut retries = 0;
        loop {
            let answer = match current_leader(&nodes).await {
                Some(leader) => leader.change_membership(change.clone()).await,
                None => Err(ClientError::NotLeader { leader_hint: None }),
            };
            match answer {
                Ok(_) => return Ok(retries),
                Err(ClientError::InvalidMembership(why)) if why.contains("already a voter") => {
                    return Ok(retries);
                }
                // An earlier request of ours is still being carried out.
                Err(ClientError::InvalidMembership(why))
                    if retries > 0
                        && (why.contains("in progress") || why.contains("catching up")) =>
                {
                    retries += 1;
                }
                Err(error) if retryable(&error) && retries < MAX_RETRIES => {
                    eprintln!("# add-node: {} ({error}); asking again", error.code());
                    retries += 1;
                }
                Err(error) => return Err(error),
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    });
    let transport = &bound.transport;
    let fetched = wait_for("the membership", || async {
        for member in members {
            if let Ok(fetched) = transport.fetch_members(&member.ticket).await
                && fetched.contains_key(&id)
            {
                return Some(fetched);
            }
        }
        None
    })
    .await?;
    let member = start(bound, ClusterMode::Join { members: fetched })?;
    let retries = tokio::time::timeout(ADD_NODE_TIMEOUT, added)
        .await
        .context("adding the node timed out")?
        .context("the add task")?
        .with_context(|| format!("adding node {id}"))?;
    if retries > 0 {
        println!("# add-node: asked {retries} more times (leader changes)");
    }
    Ok((member, started.elapsed()))
}

/// Wait until every node removed the log behind its snapshot (it keeps
/// `DEFAULT_COMPACTION_KEEP_ENTRIES`, and compacts in batches).
async fn wait_compacted(members: &[Member]) -> anyhow::Result<()> {
    use iroh_raft::limits::{COMPACTION_BATCH_ENTRIES, DEFAULT_COMPACTION_KEEP_ENTRIES};
    wait_for(
        "every node to compact its log behind its snapshot",
        || async {
            for member in members {
                let status = member.node.status().await.ok()?;
                let snapshot = status.snapshot_index?;
                let behind = DEFAULT_COMPACTION_KEEP_ENTRIES + COMPACTION_BATCH_ENTRIES;
                if status.first_log_index + behind < snapshot {
                    return None;
                }
            }
            Some(())
        },
    )
    .await
}

/// Each node's snapshot index and log range: shows whether the log
/// behind a snapshot is still being compacted.
async fn log_positions(members: &[Member], when: &str) {
    for member in members {
        if let Ok(status) = member.node.status().await {
            println!(
                "# {when}: node {} snapshot {:?}, log {}..={}",
                status.id, status.snapshot_index, status.first_log_index, status.last_index
            );
        }
    }
}

fn row(label: &str, report: &mut Report) {
    report.latencies.sort();
    println!(
        "{label:<28} {:>9.0} ops/s   p50 {:>7.2} ms   p99 {:>7.2} ms   max {:>8.2} ms   ({} ops, {} errors)",
        report.ops as f64 / report.elapsed.as_secs_f64(),
        report.percentile_us(0.50) / 1e3,
        report.percentile_us(0.99) / 1e3,
        report.percentile_us(1.0) / 1e3,
        report.ops,
        report.errors
    );
}

/// Write `keys` keys of [`FILL_VALUE_BYTES`] through `node`, 64 at a time.
async fn fill(node: &NodeHandle, keys: u64) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let value = "f".repeat(FILL_VALUE_BYTES);
    let mut tasks = Vec::new();
    for client in 0..CLIENTS as u64 {
        let node = node.clone();
        let value = value.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = client;
            while n < keys {
                let command = format!("put s{n:015} {value}");
                // A put is safe to apply twice: any failure is asked again.
                if node.propose(command.into_bytes()).await.is_ok() {
                    n += CLIENTS as u64;
                    if client == 0 && n % (keys / 10).max(1) < CLIENTS as u64 {
                        eprintln!("# fill: {n} of {keys} keys");
                    }
                }
            }
        }));
    }
    for task in tasks {
        task.await.context("a fill task")?;
    }
    Ok(started.elapsed())
}

pub async fn run(
    members: &mut Vec<Member>,
    leader: usize,
    duration: Duration,
) -> anyhow::Result<()> {
    let state_mib: u64 = std::env::var("BENCH_STATE_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2048);
    let keys = state_mib * 1024 * 1024 / (FILL_VALUE_BYTES as u64 + 16);
    let guest = std::env::var("BENCH_GUEST").unwrap_or_else(|_| "kv".into());
    println!(
        "# large state: guest {guest}, {keys} keys of {FILL_VALUE_BYTES} bytes ({state_mib} MiB)"
    );
    let node = members[leader].node.clone();
    let mut empty = run_clients(&node, CLIENTS, duration).await;
    row("put, 64 clients, empty", &mut empty);
    converge(members).await?;

    let filled = fill(&node, keys).await?;
    converge(members).await?;
    let status = node.status().await?;
    println!(
        "# filled in {:.0} s ({:.0} keys/s, {:.1} MiB/s); store {:?}",
        filled.as_secs_f64(),
        keys as f64 / filled.as_secs_f64(),
        (keys * FILL_VALUE_BYTES as u64) as f64 / (1024.0 * 1024.0) / filled.as_secs_f64(),
        status.guest.store
    );
    // Every node snapshots the full state now: otherwise the policy's
    // snapshot (due every 256 MiB of log) may run during the short run
    // below on some nodes and not others. Its cost is measured apart (the
    // 16-client run during a snapshot, below).
    let settling = Instant::now();
    let mut snapshots = Vec::new();
    for member in members.iter() {
        let node = member.node.clone();
        snapshots.push(tokio::spawn(async move { node.snapshot().await }));
    }
    for snapshot in snapshots {
        snapshot.await.context("a snapshot task")??;
    }
    println!(
        "# every node snapshotted the full state in {:.1} s (concurrently)",
        settling.elapsed().as_secs_f64()
    );
    converge(members).await?;
    // Right after a snapshot each node removes the log behind it (one
    // `COMPACTION_BATCH_ENTRIES` batch per round of its loop): the first
    // run pays for that, the second runs once it is done.
    log_positions(members, "before the run after the snapshots").await;
    let mut compacting = run_clients(&node, CLIENTS, duration).await;
    log_positions(members, "after it").await;
    row(
        &format!("put, 64 clients, {state_mib} MiB, right after the snapshots"),
        &mut compacting,
    );
    let compacted = Instant::now();
    wait_compacted(members).await?;
    println!(
        "# every log compacted behind its snapshot {:.1} s later",
        compacted.elapsed().as_secs_f64()
    );
    let mut full = run_clients(&node, CLIENTS, duration).await;
    row(
        &format!("put, 64 clients, {state_mib} MiB, between snapshots"),
        &mut full,
    );
    let rate = |report: &Report| report.ops as f64 / report.elapsed.as_secs_f64();
    println!(
        "# throughput at {state_mib} MiB / empty: {:.2} right after the snapshots, {:.2} between \
         snapshots",
        rate(&compacting) / rate(&empty),
        rate(&full) / rate(&empty)
    );
    converge(members).await?;
    let (rss, peak) = memory_mib();
    println!(
        "# process memory (3 nodes): {rss:.0} MiB resident, {peak:.0} MiB peak; \
         {:.0} MiB per node",
        rss / CLUSTER_SIZE as f64
    );

    // A snapshot while writing.
    let writers = {
        let node = node.clone();
        tokio::spawn(async move { run_clients(&node, SNAPSHOT_CLIENTS, duration).await })
    };
    let taking = Instant::now();
    let info = node.snapshot().await?;
    let took = taking.elapsed();
    let mut during = writers.await.context("the writers")?;
    println!(
        "# snapshot at index {} ({:.0} MiB file) taken in {:.1} s while {SNAPSHOT_CLIENTS} \
         clients wrote:",
        info.index,
        info.file_bytes as f64 / (1024.0 * 1024.0),
        took.as_secs_f64()
    );
    row("put, 16 clients, snapshot", &mut during);

    if guest == "hostile_store" {
        let (mut plain, mut trapping) = (Vec::new(), Vec::new());
        for n in 0..TRAP_SAMPLES {
            let t = Instant::now();
            propose_retrying(&node, format!("put t{n} x").as_bytes()).await?;
            plain.push(t.elapsed());
            let t = Instant::now();
            let applied =
                propose_retrying(&node, format!("put-then-trap t{n} x").as_bytes()).await?;
            trapping.push(t.elapsed());
            anyhow::ensure!(applied.result.is_err(), "put-then-trap must trap");
        }
        plain.sort();
        trapping.sort();
        let p50 = |v: &[Duration]| v[v.len() / 2].as_secs_f64() * 1e3;
        println!(
            "# at {state_mib} MiB: a put p50 {:.2} ms, a trapping put p50 {:.2} ms",
            p50(&plain),
            p50(&trapping)
        );
    }

    // A fourth node, through a snapshot of the whole state.
    let (member, took) = add_member_retrying(members, CLUSTER_SIZE + 1).await?;
    let (rss, peak) = memory_mib();
    println!(
        "# add-node with {state_mib} MiB: {:.1} s ({:.1} MiB/s of snapshot file); the new node \
         installed the snapshot at {:?}; process memory now {rss:.0} MiB, peak {peak:.0} MiB",
        took.as_secs_f64(),
        info.file_bytes as f64 / (1024.0 * 1024.0) / took.as_secs_f64(),
        member.node.status().await?.snapshot_index
    );
    // Out of the configuration before it stops: four voters with two down
    // (this one and the follower restarted next) have no quorum.
    remove_member_retrying(members, member.id).await?;
    member.node.shutdown().await;
    let _ = member.router.shutdown().await;

    // Restart a follower on its data dir (leadership may have moved).
    let mut follower = (leader + 1) % members.len();
    for (i, member) in members.iter().enumerate() {
        if member.node.status().await?.role != "leader" {
            follower = i;
            break;
        }
    }
    let old = members.remove(follower);
    let id = old.id;
    old.node.shutdown().await;
    let _ = old.router.shutdown().await;
    drop(old.endpoint);
    drop(old.node);
    let restarting = Instant::now();
    let bound = bind_in(id, old._dir).await?;
    let restarted = start(
        bound,
        ClusterMode::Join {
            members: Default::default(),
        },
    )?;
    let node = restarted.node.clone();
    wait_for("a linearizable read on the restarted node", || {
        let node = node.clone();
        async move {
            let answer = node
                .query_with(b"get s000000000000000".to_vec(), Consistency::Linearizable)
                .await
                .ok()?;
            answer.result.is_ok().then_some(())
        }
    })
    .await?;
    println!(
        "# restart of a follower holding {state_mib} MiB: first linearizable read after {:.2} s \
         ({} entries replayed into its guest)",
        restarting.elapsed().as_secs_f64(),
        node.status().await?.guest.applied_entries
    );
    members.insert(follower, restarted);
    Ok(())
}
