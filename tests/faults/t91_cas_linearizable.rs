//! Compare-and-swap stays linearizable under faults: a Jepsen-style
//! workload against the `kv-store` guest on a 3-node cluster of `raft-host`
//! processes on loopback. Concurrent clients read keys with their
//! revisions (`get KEY meta`), `cas` them on the revision they last saw,
//! put, delete and get them, one request at a time each, through whichever
//! node they talk to, while a seeded nemesis kills (SIGKILL) and restarts
//! the leader or a follower and moves leadership. Every request and what
//! came of it goes into a history that the checker judges with
//! [`CasModel`] (revisions and cas); the same checker must reject a
//! corrupted copy in which a cas wins a revision already taken.
//!
//! `SEED=N` replays the schedule and the clients' choices (timing is the
//! machine's); `T91_SECONDS` sets how long the nemesis runs (default 20).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use iroh_raft::api::ApiClient;
use iroh_raft::linearizability::{
    CasModel, ClientId, History, OpId, Operation, Outcome, Recorder, check,
};
use iroh_raft::node::Consistency;

use crate::common::cluster::Cluster;
use crate::common::jepsen::client::{Answer, CLIENT_TIMEOUT, propose_answer, query_answer};
use crate::common::jepsen::rng::Rng;
use crate::common::{self, wait_for};

/// Concurrent clients.
const CLIENTS: u64 = 4;
/// Keys they share: few, so cas requests collide.
const KEYS: u64 = 3;
/// How long a fault lasts and the healthy gap after it, at least and at most.
const FAULT: (Duration, Duration) = (Duration::from_millis(1500), Duration::from_millis(3000));
const GAP: (Duration, Duration) = (Duration::from_millis(500), Duration::from_millis(1500));
/// A client pauses up to this long between requests.
const MAX_THINK: Duration = Duration::from_millis(10);

/// The nodes' API URLs by position (`None` while a node is down); clients
/// read it before every request, the nemesis updates it.
type Endpoints = Arc<Mutex<Vec<Option<String>>>>;

fn endpoints_of(cluster: &Cluster) -> Vec<Option<String>> {
    cluster
        .members
        .iter()
        .map(|m| m.process.as_ref().map(|p| p.api_url.clone()))
        .collect()
}

/// One client's loop: pick a key and a request, send it, record it.
fn run_client(
    client: u64,
    mut rng: Rng,
    endpoints: &Endpoints,
    recorder: &Recorder,
    stop: &AtomicBool,
) -> (u64, u64) {
    let mut node = client as usize % 3;
    let mut apis: HashMap<String, ApiClient> = HashMap::new();
    // The revision this client last saw of each key (0: absent or never read).
    let mut seen: HashMap<String, u64> = HashMap::new();
    let (mut seq, mut cas_won) = (0u64, 0u64);
    while !stop.load(Ordering::SeqCst) {
        let url = endpoints.lock().unwrap_or_else(PoisonError::into_inner)[node].clone();
        let Some(url) = url else {
            node = rng.below(3) as usize;
            continue;
        };
        let api = apis
            .entry(url.clone())
            .or_insert_with(|| ApiClient::with_timeout(&url, CLIENT_TIMEOUT));
        seq += 1;
        let key = format!("k{}", rng.below(KEYS));
        let value = format!("c{client}-{seq}");
        let (text, read) = match rng.below(100) {
            0..35 => (format!("get {key} meta"), Some(Consistency::Linearizable)),
            35..75 => (
                format!("cas {key} {} {value}", seen.get(&key).copied().unwrap_or(0)),
                None,
            ),
            75..85 => (format!("put {key} {value}"), None),
            85..90 => (format!("delete {key}"), None),
            _ => (format!("get {key}"), Some(Consistency::Lease)),
        };
        let op = recorder.invoke(ClientId(client), text.clone());
        let answer = match read {
            None => propose_answer(api.propose(text.as_bytes())),
            Some(consistency) => query_answer(api.query_with(text.as_bytes(), consistency)),
        };
        match &answer {
            Answer::Reply(reply) => {
                if text.ends_with(" meta") {
                    let revision = match reply {
                        Ok(json) => serde_json::from_str::<serde_json::Value>(json)
                            .ok()
                            .and_then(|v| v["mod_revision"].as_u64()),
                        Err(_) => Some(0),
                    };
                    if let Some(revision) = revision {
                        seen.insert(key, revision);
                    }
                } else if text.starts_with("cas ") && reply.is_ok() {
                    cas_won += 1;
                }
                recorder.complete(op, reply.clone());
            }
            Answer::Failed(_) => recorder.fail(op),
            Answer::Unknown(_) => recorder.timeout(op),
        }
        if !matches!(answer, Answer::Reply(_)) {
            node = rng.below(3) as usize;
        }
        std::thread::sleep(rng.between(Duration::ZERO, MAX_THINK));
    }
    (seq, cas_won)
}

/// The leader's id, once the running nodes agree on one.
fn leader_id(cluster: &Cluster) -> u64 {
    wait_for("a leader", || {
        common::leader_of(cluster.running().filter_map(|m| m.client().status().ok())).map(|s| s.id)
    })
}

/// Kill and restart a node, or move leadership: one fault, healed.
fn strike(cluster: &mut Cluster, endpoints: &Endpoints, rng: &mut Rng, log: &mut Vec<String>) {
    let leader = leader_id(cluster);
    let followers: Vec<u64> = cluster
        .running()
        .map(|m| m.id)
        .filter(|&id| id != leader)
        .collect();
    let follower = *rng.pick(&followers);
    let kind = rng.below(3);
    if kind == 2 {
        let to = cluster.member(leader).client().transfer_leader(None);
        log.push(format!("transfer leadership from {leader}: {}", to.is_ok()));
        std::thread::sleep(rng.between(FAULT.0, FAULT.1));
        return;
    }
    let victim = if kind == 0 { leader } else { follower };
    log.push(format!(
        "kill {} {victim}",
        if kind == 0 { "leader" } else { "follower" }
    ));
    let position = cluster
        .members
        .iter()
        .position(|m| m.id == victim)
        .expect("a member");
    endpoints.lock().unwrap_or_else(PoisonError::into_inner)[position] = None;
    cluster.member_mut(victim).kill();
    std::thread::sleep(rng.between(FAULT.0, FAULT.1));
    cluster.member_mut(victim).start();
    *endpoints.lock().unwrap_or_else(PoisonError::into_inner) = endpoints_of(cluster);
}

/// A copy of `history` with one more, impossible operation: after
/// everything, a cas on a revision an earlier cas already won, answered
/// `OK`. Values are unique and revisions only grow, so no order explains
/// it.
fn corrupted_copy(history: &History) -> Option<History> {
    // Not revision 0: a key deleted after a cas created it may be created
    // by a cas again.
    let (key, revision) = history.ops.iter().find_map(|op| {
        let mut words = op.input.split(' ');
        let (verb, key, revision) = (words.next()?, words.next()?, words.next()?);
        (verb == "cas"
            && revision != "0"
            && matches!(&op.outcome, Outcome::Ok { output: Ok(_), .. }))
        .then_some((key, revision))
    })?;
    let end = history
        .ops
        .iter()
        .filter_map(|op| op.complete().or(Some(op.invoke)))
        .max()
        .unwrap_or_default();
    let mut corrupted = history.clone();
    corrupted.ops.push(Operation {
        id: OpId(history.ops.len() as u64),
        client: ClientId(CLIENTS + 1),
        input: format!("cas {key} {revision} corrupted"),
        invoke: end + 1,
        outcome: Outcome::Ok {
            complete: end + 2,
            output: Ok("OK".to_owned()),
        },
    });
    Some(corrupted)
}

#[test]
fn t91_cas_is_linearizable_under_kills_and_leader_changes() {
    let seed = std::env::var("SEED")
        .ok()
        .map(|s| s.trim().parse().expect("SEED is a number"))
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("after 1970")
                .as_nanos() as u64
        });
    let seconds: u64 = std::env::var("T91_SECONDS")
        .ok()
        .map(|s| s.trim().parse().expect("T91_SECONDS is a number"))
        .unwrap_or(20);
    eprintln!("t91: SEED={seed} T91_SECONDS={seconds}");
    let mut rng = Rng::new(seed);

    let mut cluster = Cluster::start(3, "kv_store", &[]);
    let endpoints: Endpoints = Arc::new(Mutex::new(endpoints_of(&cluster)));
    let recorder = Recorder::new();
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (1..=CLIENTS)
        .map(|client| {
            let (rng, endpoints, recorder, stop) = (
                rng.fork(client),
                Arc::clone(&endpoints),
                recorder.clone(),
                Arc::clone(&stop),
            );
            std::thread::spawn(move || run_client(client, rng, &endpoints, &recorder, &stop))
        })
        .collect();

    let mut nemesis = rng.fork(0);
    let mut faults = Vec::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(seconds) {
        std::thread::sleep(nemesis.between(GAP.0, GAP.1));
        strike(&mut cluster, &endpoints, &mut nemesis, &mut faults);
    }
    // Healed: every node is up; the clients must get through again.
    let progress = recorder.history().ops.len();
    wait_for("the clients to make progress after the faults", || {
        let history = recorder.history();
        (history.ops[progress..]
            .iter()
            .filter(|op| matches!(op.outcome, Outcome::Ok { .. }))
            .count()
            >= 20)
            .then_some(())
    });
    stop.store(true, Ordering::SeqCst);
    let mut cas_won = 0;
    for client in clients {
        cas_won += client.join().expect("a client").1;
    }

    // Final reads through every node, recorded too.
    let leader = leader_id(&cluster);
    let commit = cluster.member(leader).status().commit_index;
    wait_for("every node to apply the leader's commit index", || {
        cluster
            .running()
            .all(|m| m.client().status().is_ok_and(|s| s.applied_index >= commit))
            .then_some(())
    });
    for key in (0..KEYS).map(|k| format!("k{k}")) {
        let states: Vec<Option<String>> = cluster
            .running()
            .map(|m| m.query(&format!("get {key} meta"), Consistency::Stale))
            .collect();
        assert!(
            states.windows(2).all(|w| w[0] == w[1]),
            "replicas differ on {key}: {states:?}"
        );
        for member in cluster.running() {
            let text = format!("get {key} meta");
            let op = recorder.invoke(ClientId(0), text.clone());
            match query_answer(
                member
                    .client()
                    .query_with(text.as_bytes(), Consistency::Linearizable),
            ) {
                Answer::Reply(reply) => recorder.complete(op, reply),
                _ => recorder.fail(op),
            }
        }
    }

    let history = recorder.history();
    let count = |verb: &str, won: Option<bool>| {
        history
            .ops
            .iter()
            .filter(|op| op.input.starts_with(verb))
            .filter(|op| match (won, &op.outcome) {
                (None, _) => true,
                (Some(w), Outcome::Ok { output, .. }) => output.is_ok() == w,
                _ => false,
            })
            .count()
    };
    eprintln!(
        "t91: {} operations, cas {} ({} won, {} refused), faults: {}",
        history.ops.len(),
        count("cas ", None),
        count("cas ", Some(true)),
        count("cas ", Some(false)),
        faults.join(", ")
    );
    assert!(cas_won > 10, "the workload swapped something ({cas_won})");
    assert!(
        count("cas ", Some(false)) > 10,
        "the clients contended: some cas lost"
    );

    let model = CasModel::new(&history).unwrap_or_else(|e| panic!("SEED={seed}: {e}"));
    let report = check(&model, &history).expect("a well-formed history");
    assert!(
        report.verdict.is_linearizable(),
        "SEED={seed}: not linearizable: {report}"
    );
    eprintln!(
        "t91: linearizable ({} operations in {} partitions, {} steps)",
        report.operations, report.partitions, report.steps
    );

    let corrupted = corrupted_copy(&history).expect("a cas won");
    let model = CasModel::new(&corrupted).expect("still well formed");
    let rejected = check(&model, &corrupted).expect("still checkable");
    assert!(
        rejected.verdict.is_violation(),
        "the checker accepted a second cas on a taken revision: {rejected}"
    );
}
