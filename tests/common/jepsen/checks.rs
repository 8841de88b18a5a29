//! What is checked once the nemesis is done and every fault is healed:
//!
//! 1. progress: every node accepts a write within [`RECOVERY_TIMEOUT`];
//! 2. convergence: every replica reaches the same commit and applied index
//!    and holds the same state, read with stale queries from each node's
//!    own state (within [`CONVERGENCE_TIMEOUT`]);
//! 3. final reads: a linearizable read of every key on every node, recorded
//!    in the history like any other request;
//! 4. no acknowledged write is lost: a direct check of the final values
//!    against the writes ([`lost_writes`]), besides the checker's verdict;
//! 5. the linearizability checker on the whole history, and on a copy
//!    corrupted on purpose, which it must reject ([`corrupted_copy`]).

use iroh_raft::limits::CLIENT_TIMEOUT;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use iroh_raft::api::ApiClient;
use iroh_raft::linearizability::{ClientId, History, Operation, Outcome};
use iroh_raft::node::{Consistency, NodeStatus};

use super::client::{Answer, Journal, Request, send};
use super::db::{Db, POLL_INTERVAL};
use crate::common::CONVERGENCE_TIMEOUT;
use crate::common::netns::in_netns;

/// After healing, every node must accept a write within this long.
pub const RECOVERY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the final reads may take, each retried until it is answered.
const FINAL_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Client ids of the checks' own requests (the workload's are small).
const PROBE_CLIENTS: u64 = 100;
pub const FINAL_READERS: u64 = 200;

/// A key/value state as a replica holds it.
pub type State = BTreeMap<String, String>;

/// The key each node's recovery probe writes.
pub fn probe_key(id: u8) -> String {
    format!("probe-{id}")
}

fn api(db: &Db, id: u8) -> (String, ApiClient) {
    let (ns, url) = db
        .endpoints
        .get(id as usize - 1)
        .unwrap_or_else(|| panic!("node {id} is down after healing"));
    (ns.to_owned(), ApiClient::with_timeout(&url, CLIENT_TIMEOUT))
}

/// Write through every node until each has accepted one write; returns how
/// long that took. Panics after [`RECOVERY_TIMEOUT`].
pub fn progress_after_heal(db: &Db, journal: &Journal) -> Duration {
    let start = Instant::now();
    for id in db.ids() {
        let (ns, api) = api(db, id);
        for attempt in 1.. {
            let request = Request {
                text: format!("put {} healed-{attempt}", probe_key(id)),
                read: None,
            };
            let client = ClientId(PROBE_CLIENTS + u64::from(id));
            if let Answer::Reply(Ok(_)) = send(journal, client, id, (&ns, &api), &request) {
                break;
            }
            assert!(
                start.elapsed() < RECOVERY_TIMEOUT,
                "no progress within {RECOVERY_TIMEOUT:?} after healing: node {id} accepted no write"
            );
            std::thread::sleep(POLL_INTERVAL);
        }
    }
    start.elapsed()
}

/// `(commit, applied)` of every node once they all agree, have applied
/// everything committed, the leader has nothing uncommitted, and two polls
/// in a row saw the same.
fn wait_quiet(db: &Db, deadline: Instant) -> u64 {
    let mut previous: Option<Vec<(u64, u64)>> = None;
    loop {
        let statuses: Vec<Option<NodeStatus>> =
            db.ids().into_iter().map(|id| db.status(id)).collect();
        if let Some(statuses) = statuses
            .iter()
            .cloned()
            .collect::<Option<Vec<NodeStatus>>>()
        {
            let indexes: Vec<(u64, u64)> = statuses
                .iter()
                .map(|s| (s.commit_index, s.applied_index))
                .collect();
            let (commit, applied) = indexes[0];
            let agreed = commit == applied && indexes.iter().all(|&i| i == (commit, applied));
            let leader_done = statuses
                .iter()
                .any(|s| s.role == "leader" && s.last_index == s.commit_index);
            if agreed && leader_done && previous.as_ref() == Some(&indexes) {
                return applied;
            }
            previous = Some(indexes);
        }
        assert!(
            Instant::now() < deadline,
            "the replicas did not converge within {CONVERGENCE_TIMEOUT:?}: {statuses:#?}"
        );
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// A stale read of node `id`'s own state: a text answer, `None` for "key
/// not found".
fn stale(db: &Db, id: u8, request: &str) -> Option<String> {
    let (ns, api) = api(db, id);
    let result = in_netns(&ns, || {
        api.query_with(request.as_bytes(), Consistency::Stale)
    });
    match result {
        Ok(answer) => Some(answer.output.text.unwrap_or_default()),
        Err(e) if e.to_string().contains("key not found") => None,
        Err(e) => panic!("stale {request:?} on node {id}: {e}"),
    }
}

/// Node `id`'s whole state, from stale reads.
fn replica_state(db: &Db, id: u8) -> State {
    let keys = stale(db, id, "list").expect("list answers");
    keys.lines()
        .map(|key| {
            let value = stale(db, id, &format!("get {key}"))
                .unwrap_or_else(|| panic!("node {id} lists {key} but has no value for it"));
            (key.to_owned(), value)
        })
        .collect()
}

/// Wait until the replicas converge and return the applied index they
/// agree on and each one's state, read while that index held still.
pub fn converged_states(db: &Db) -> (u64, Vec<State>) {
    let deadline = Instant::now() + CONVERGENCE_TIMEOUT;
    loop {
        let applied = wait_quiet(db, deadline);
        let states: Vec<State> = db
            .ids()
            .into_iter()
            .map(|id| replica_state(db, id))
            .collect();
        let still = db
            .ids()
            .into_iter()
            .all(|id| db.status(id).is_some_and(|s| s.applied_index == applied));
        if still {
            return (applied, states);
        }
    }
}

/// A linearizable read of every key on every node, each retried until it
/// is answered; recorded as clients `FINAL_READERS + id`. Returns each
/// node's answers (`None`: not found).
pub fn final_reads(
    db: &Db,
    journal: &Journal,
    keys: &[String],
) -> Vec<BTreeMap<String, Option<String>>> {
    let start = Instant::now();
    db.ids()
        .into_iter()
        .map(|id| {
            let (ns, api) = api(db, id);
            keys.iter()
                .map(|key| {
                    let request = Request {
                        text: format!("get {key}"),
                        read: Some(Consistency::Linearizable),
                    };
                    let client = ClientId(FINAL_READERS + u64::from(id));
                    let value = loop {
                        match send(journal, client, id, (&ns, &api), &request) {
                            Answer::Reply(Ok(value)) => break Some(value),
                            Answer::Reply(Err(message)) => {
                                assert_eq!(
                                    message,
                                    format!("key not found: {key}"),
                                    "final read of {key} on node {id}"
                                );
                                break None;
                            }
                            Answer::Failed(_) | Answer::Unknown(_) => {
                                assert!(
                                    start.elapsed() < FINAL_READ_TIMEOUT,
                                    "node {id} answered no linearizable read of {key} within {FINAL_READ_TIMEOUT:?}"
                                );
                                std::thread::sleep(POLL_INTERVAL);
                            }
                        }
                    };
                    (key.clone(), value)
                })
                .collect()
        })
        .collect()
}

/// A write in the history: the op and the value it wrote (`None`: a
/// delete).
struct Write<'a> {
    op: &'a Operation,
    value: Option<&'a str>,
}

fn writes_of<'a>(history: &'a History, key: &str) -> Vec<Write<'a>> {
    history
        .ops
        .iter()
        .filter_map(|op| {
            let mut words = op.input.splitn(3, ' ');
            match (words.next(), words.next(), words.next()) {
                (Some("put"), Some(k), Some(value)) if k == key => Some(Write {
                    op,
                    value: Some(value),
                }),
                (Some("delete"), Some(k), None) if k == key => Some(Write { op, value: None }),
                _ => None,
            }
        })
        .collect()
}

fn acked(op: &Operation) -> Option<u64> {
    match op.outcome {
        Outcome::Ok { complete, .. } => Some(complete),
        _ => None,
    }
}

/// Acknowledged writes the final state contradicts, by real-time order
/// alone: the final value of a key must come from a put that did not fail,
/// and no acknowledged write may have started after the final value's put
/// was acknowledged; an absent key needs a delete that may have come after
/// every acknowledged put. Returns one line per problem.
pub fn lost_writes(history: &History, finals: &BTreeMap<String, Option<String>>) -> Vec<String> {
    let mut problems = Vec::new();
    for (key, value) in finals {
        let writes = writes_of(history, key);
        match value {
            Some(value) => {
                let Some(writer) = writes.iter().find(|w| w.value == Some(value.as_str())) else {
                    problems.push(format!("{key} = {value:?}, which no put wrote"));
                    continue;
                };
                if matches!(writer.op.outcome, Outcome::Fail { .. }) {
                    problems.push(format!(
                        "{key} = {value:?}, written by {}, which failed",
                        writer.op
                    ));
                }
                let Some(written) = acked(writer.op) else {
                    continue; // unknown: it may have taken effect last
                };
                for later in writes.iter().filter(|w| w.op.invoke > written) {
                    if acked(later.op).is_some() {
                        problems.push(format!(
                            "{key} = {value:?} from {}, yet {} started after it and was acknowledged: lost",
                            writer.op, later.op
                        ));
                    }
                }
            }
            None => {
                for put in writes
                    .iter()
                    .filter(|w| w.value.is_some() && acked(w.op).is_some())
                {
                    let deletable = writes.iter().any(|w| {
                        w.value.is_none()
                            && !matches!(w.op.outcome, Outcome::Fail { .. })
                            && w.op.complete().is_none_or(|done| done > put.op.invoke)
                    });
                    if !deletable {
                        problems.push(format!(
                            "{key} is absent, yet {} was acknowledged and no delete can come after it: lost",
                            put.op
                        ));
                    }
                }
            }
        }
    }
    problems
}

/// A copy of `history` that cannot be linearizable, and how it was
/// corrupted: preferably a final read made to answer an older acknowledged
/// value of its key, one whose put completed before the put of the value
/// it really read started (a stale read); else a final read made to answer
/// a value nobody wrote.
pub fn corrupted_copy(history: &History) -> (History, String) {
    let mut copy = history.clone();
    let is_final_read =
        |op: &Operation| op.client.0 >= FINAL_READERS && op.input.starts_with("get ");
    let stale = history.ops.iter().enumerate().find_map(|(index, read)| {
        if !is_final_read(read) {
            return None;
        }
        let Outcome::Ok {
            output: Ok(value), ..
        } = &read.outcome
        else {
            return None;
        };
        let key = read.input.strip_prefix("get ")?;
        let writes = writes_of(history, key);
        let newer = writes
            .iter()
            .find(|w| w.value == Some(value.as_str()) && acked(w.op).is_some())?;
        let older = writes.iter().find(|w| {
            w.value.is_some_and(|v| v != value)
                && acked(w.op).is_some_and(|done| done < newer.op.invoke)
        })?;
        Some((index, older.value?.to_owned(), key.to_owned()))
    });
    if let Some((index, old_value, key)) = stale {
        set_reply(&mut copy.ops[index], old_value.clone());
        return (
            copy,
            format!("a final read of {key} answers the overwritten value {old_value:?}"),
        );
    }
    let index = history
        .ops
        .iter()
        .position(|op| is_final_read(op) && acked(op).is_some())
        .expect("the final reads were answered");
    set_reply(&mut copy.ops[index], "never-written".to_owned());
    (
        copy,
        format!("{} answers a value nobody wrote", history.ops[index].input),
    )
}

fn set_reply(op: &mut Operation, value: String) {
    let Outcome::Ok { output, .. } = &mut op.outcome else {
        unreachable!("only answered reads are corrupted")
    };
    *output = Ok(value);
}
