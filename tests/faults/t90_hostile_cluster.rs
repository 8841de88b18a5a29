//! Hostile guests on a real cluster: three `raft-host` processes over iroh
//! on loopback running `guests/hostile-mix`, whose commands each misbehave
//! in one way (infinite loop, unbounded memory, deep recursion, NaNs, huge
//! results and error messages, a trap after a write, and reading the
//! clocks, random numbers, the environment and files through WASI).
//!
//! Each misbehaviour must end the same way whichever node the client asks
//! (a follower forwards to the leader), and as a query on every node; the
//! replicas' whole states must stay identical (the guest writes what its
//! WASI answered into its state, so comparing states compares what every
//! replica observed); and the nodes keep serving afterwards.
//!
//! One cluster for everything, to keep the run short.

use iroh_raft::limits::{MAX_ERROR_MESSAGE_BYTES, MAX_RESULT_BYTES};
use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use iroh_raft::api::{ApiClientError, Output};
use iroh_raft::node::{Consistency, NodeStatus};

use crate::common::cluster::{Cluster, Member};
use crate::common::wait_for;

/// Fuel per `apply` and per `query`: small, so the runaway guests stop fast.
const FUEL: u64 = 50_000_000;
/// Memory cap per instance, MiB: room for a result at the size limit, small
/// enough that `grow` hits it fast.
const MEMORY_LIMIT_MIB: u64 = 48;
/// Deep enough to overflow any stack the host allows (1 MiB of native
/// wasm stack, 1 MiB of the guest's own shadow stack).
const TOO_DEEP: u64 = 10_000_000;
/// Every NaN the `nan` probe makes (four `f64`, one `f32`), canonicalized:
/// x86 would give `fff8000000000000` for `0.0 / 0.0` and keep a payload
/// through arithmetic.
const CANONICAL_NANS: &str =
    "7ff8000000000000 7ff8000000000000 7ff8000000000000 7ff8000000000000 7fc00000";
/// Slack between the test's clock readings and the leader's timestamp (the
/// same machine's clock, read a few milliseconds apart).
const CLOCK_SLACK_MS: u64 = 1_000;

/// What one call came to, comparable across nodes (no index, no fuel).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// The result's bytes.
    Ok(Vec<u8>),
    /// An error's code and message.
    Failed { code: String, message: String },
}

impl Outcome {
    fn text(&self) -> &str {
        match self {
            Outcome::Ok(bytes) => std::str::from_utf8(bytes).expect("a text result"),
            Outcome::Failed { code, message } => panic!("expected a result, got {code}: {message}"),
        }
    }

    fn code(&self) -> &str {
        match self {
            Outcome::Ok(bytes) => panic!("expected a failure, got {} bytes", bytes.len()),
            Outcome::Failed { code, .. } => code,
        }
    }
}

fn outcome(output: Result<Output, ApiClientError>) -> Outcome {
    match output {
        Ok(output) => Outcome::Ok(output.to_bytes().expect("valid base64")),
        Err(ApiClientError::Api(info)) => Outcome::Failed {
            code: info.code,
            message: info.message,
        },
        Err(error) => panic!("the node did not answer: {error}"),
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as u64
}

/// Propose `command` through `member`; the outcome and the entry's index
/// (every outcome here is of a committed entry).
fn propose(member: &Member, command: &str) -> (Outcome, u64) {
    match member.client().propose(command.as_bytes()) {
        Ok(response) => (
            Outcome::Ok(response.output.to_bytes().expect("valid base64")),
            response.index,
        ),
        Err(ApiClientError::Api(info)) => {
            let index = info.index.unwrap_or_else(|| {
                panic!("{command:?} via node {}: not applied: {info:?}", member.id)
            });
            (
                Outcome::Failed {
                    code: info.code,
                    message: info.message,
                },
                index,
            )
        }
        Err(error) => panic!("{command:?} via node {}: {error}", member.id),
    }
}

/// A query answered from `member`'s own state.
fn query(member: &Member, request: &str) -> Outcome {
    outcome(
        member
            .client()
            .query_with(request.as_bytes(), Consistency::Stale)
            .map(|answer| answer.output),
    )
}

/// `key=value` fields of a probe's answer.
fn fields(text: &str) -> BTreeMap<&str, &str> {
    text.split(' ')
        .map(|field| field.split_once('=').expect("key=value"))
        .collect()
}

fn status(member: &Member) -> NodeStatus {
    member.status()
}

/// Propose `command` through every member (the leader and, forwarded, the
/// followers); asserts that all got the same outcome and returns it with
/// the entries' indexes.
fn through_every_node(cluster: &Cluster, command: &str) -> (Outcome, Vec<u64>) {
    let mut first: Option<Outcome> = None;
    let mut indexes = Vec::new();
    for member in &cluster.members {
        let (outcome, index) = propose(member, command);
        match &first {
            None => first = Some(outcome),
            Some(first) => assert_eq!(
                &outcome, first,
                "{command:?}: node {} got another outcome",
                member.id
            ),
        }
        indexes.push(index);
    }
    (first.expect("three members"), indexes)
}

#[test]
fn t90_hostile_guests_end_the_same_on_every_replica() {
    let fuel = FUEL.to_string();
    let memory = MEMORY_LIMIT_MIB.to_string();
    let cluster = Cluster::start(
        3,
        "hostile_mix",
        &[
            "--apply-fuel",
            &fuel,
            "--query-fuel",
            &fuel,
            "--memory-limit-mib",
            &memory,
        ],
    );
    let before: Vec<NodeStatus> = cluster.members.iter().map(status).collect();
    let memory_limit_bytes = MEMORY_LIMIT_MIB * 1024 * 1024;

    // Commands whose outcome does not depend on the entry: the same through
    // every node.
    let mut failed_indexes = Vec::new();
    let mut failing = |command: &str, code: &str, message: &str| {
        let (outcome, indexes) = through_every_node(&cluster, command);
        assert_eq!(
            outcome,
            Outcome::Failed {
                code: code.into(),
                message: message.into()
            },
            "{command:?}"
        );
        failed_indexes.extend(indexes);
    };
    failing(
        "loop",
        "guest_out_of_fuel",
        &format!("guest ran out of fuel (budget {FUEL} units)"),
    );
    failing(
        "grow",
        "guest_memory_limit",
        &format!("guest exceeded its memory limit of {memory_limit_bytes} bytes"),
    );
    failing(
        &format!("recurse {TOO_DEEP}"),
        "guest_trapped",
        "guest trapped: wasm trap: call stack exhausted",
    );
    failing(
        "trap-after-write victim written",
        "guest_trapped",
        "guest trapped: wasm trap: wasm `unreachable` instruction executed",
    );
    failing(
        &format!("huge {}", MAX_RESULT_BYTES + 1),
        "guest_result_too_large",
        &format!(
            "guest result of {} bytes exceeds the limit of {MAX_RESULT_BYTES} bytes",
            MAX_RESULT_BYTES + 1
        ),
    );
    failing(
        &format!("fail {}", MAX_ERROR_MESSAGE_BYTES + 1),
        "guest_result_too_large",
        &format!(
            "guest result of {} bytes exceeds the limit of {MAX_ERROR_MESSAGE_BYTES} bytes",
            MAX_ERROR_MESSAGE_BYTES + 1
        ),
    );
    let failed_indexes = failed_indexes;

    // The longest error message allowed, all control characters (the
    // worst case for JSON), makes it back through a follower too. An `err`
    // is a result, not a trap: no rebuild.
    let (rejected, rejected_indexes) =
        through_every_node(&cluster, &format!("fail {MAX_ERROR_MESSAGE_BYTES}"));
    assert_eq!(
        rejected,
        Outcome::Failed {
            code: "guest_rejected".into(),
            message: format!(
                "guest returned an error: {}",
                "\u{1}".repeat(MAX_ERROR_MESSAGE_BYTES)
            ),
        }
    );

    let (recursed, _) = through_every_node(&cluster, "recurse 1000");
    assert_eq!(recursed.text(), "1000");
    let (nans, _) = through_every_node(&cluster, "nan");
    assert_eq!(nans.text(), CANONICAL_NANS);
    let (env, _) = through_every_node(&cluster, "env");
    let env_fields = fields(env.text());
    for (field, expected) in [
        ("vars", "0"),
        ("args", "0"),
        ("raw_vars", "0"),
        ("raw_cwd", "None"),
    ] {
        assert_eq!(env_fields[field], expected, "{field} in {env:?}");
    }
    let (files, _) = through_every_node(&cluster, "file");
    let file_fields = fields(files.text());
    assert_eq!(file_fields["preopens"], "0", "{files:?}");
    for field in ["read", "list", "write"] {
        assert_ne!(file_fields[field], "ok", "{field} in {files:?}");
    }
    // The largest result allowed makes it back through a follower too.
    let (huge, _) = through_every_node(&cluster, &format!("huge {MAX_RESULT_BYTES}"));
    let Outcome::Ok(bytes) = &huge else {
        panic!("huge: {huge:?}")
    };
    assert_eq!(bytes.len(), MAX_RESULT_BYTES);
    assert!(
        bytes
            .iter()
            .enumerate()
            .all(|(i, byte)| *byte == b'a' + (i % 26) as u8),
        "huge: wrong bytes"
    );

    // Clocks and random numbers: a function of the entry, so each proposal
    // answers its own; checked here, and compared across replicas below.
    let mut time_indexes = Vec::new();
    for member in &cluster.members {
        let earliest_ms = now_ms();
        let (time, index) = propose(member, "time");
        let latest_ms = now_ms();
        let time = fields(time.text())
            .into_iter()
            .map(|(key, value)| (key.to_string(), value.parse::<u64>().expect("a number")))
            .collect::<BTreeMap<_, _>>();
        let meta_ms = time["meta_ms"];
        assert!(
            earliest_ms - CLOCK_SLACK_MS <= meta_ms && meta_ms <= latest_ms + CLOCK_SLACK_MS,
            "the leader's timestamp {meta_ms} is not now ({earliest_ms}..{latest_ms})"
        );
        assert_eq!(
            time["wall_ms"], meta_ms,
            "the wall clock is the entry's time"
        );
        assert_eq!(
            time["mono_ns"],
            meta_ms * 1_000_000,
            "so is the monotonic one"
        );
        assert_eq!(time["elapsed_ns"], 0, "time stands still during a call");
        time_indexes.push(index);
    }
    // The last entries proposed: every replica must reach this index.
    let mut last_index = 0;
    let mut random_answers = Vec::new();
    for member in &cluster.members {
        let (random, index) = propose(member, "random");
        random_answers.push(random.text().to_string());
        last_index = last_index.max(index);
    }
    let mut distinct = random_answers.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        3,
        "each entry seeds its own: {random_answers:?}"
    );
    for answer in &random_answers {
        assert!(
            answer.ends_with(" 0:0"),
            "the insecure seed is fixed: {answer}"
        );
    }

    // Every replica reaches the same applied index with the same state.
    for member in &cluster.members {
        wait_for(&format!("node {} to apply {last_index}", member.id), || {
            (member.client().status().ok()?.applied_index >= last_index).then_some(())
        });
    }
    let dumps: Vec<Outcome> = cluster.members.iter().map(|m| query(m, "dump")).collect();
    for (member, dump) in cluster.members.iter().zip(&dumps) {
        assert_eq!(dump, &dumps[0], "node {} has another state", member.id);
    }
    let state: BTreeMap<&str, &str> = dumps[0]
        .text()
        .lines()
        .map(|line| line.split_once('=').expect("key=value"))
        .collect();
    for index in &failed_indexes {
        assert!(
            !state.keys().any(|key| key.ends_with(&format!("@{index}"))),
            "entry {index} failed but left a trace: {state:?}"
        );
    }
    assert!(!state.contains_key("victim"), "the trapped write was kept");
    assert_eq!(
        state
            .iter()
            .filter(|(key, _)| key.starts_with("nan@"))
            .map(|(_, value)| *value)
            .collect::<Vec<_>>(),
        [CANONICAL_NANS; 3],
        "every replica recorded canonical NaNs"
    );
    for index in &time_indexes {
        assert!(
            state.contains_key(format!("time@{index}").as_str()),
            "{state:?}"
        );
    }

    // Every failed entry failed on every replica, and the traps were rolled
    // back by a rebuild there.
    let after: Vec<NodeStatus> = cluster.members.iter().map(status).collect();
    for (before, after) in before.iter().zip(&after) {
        assert_eq!(
            after.guest.failed_entries - before.guest.failed_entries,
            (failed_indexes.len() + rejected_indexes.len()) as u64,
            "node {}",
            after.id
        );
        assert_eq!(
            after.guest.instance_rebuilds - before.guest.instance_rebuilds,
            failed_indexes.len() as u64,
            "node {}",
            after.id
        );
    }

    // The same misbehaviour as queries, answered by each node from its own
    // state: identical everywhere, including the clocks (the last applied
    // entry's time) and random numbers (seeded from it).
    let probes = [
        "loop".to_string(),
        "grow".into(),
        format!("recurse {TOO_DEEP}"),
        "trap".into(),
        format!("huge {}", MAX_RESULT_BYTES + 1),
        format!("fail {}", MAX_ERROR_MESSAGE_BYTES + 1),
        "nan".into(),
        "time".into(),
        "random".into(),
        "env".into(),
        "file".into(),
        "dump".into(),
    ];
    let answers: Vec<Vec<Outcome>> = cluster
        .members
        .iter()
        .map(|member| probes.iter().map(|probe| query(member, probe)).collect())
        .collect();
    for (member, answer) in cluster.members.iter().zip(&answers) {
        assert_eq!(answer, &answers[0], "node {} answered otherwise", member.id);
    }
    let codes: Vec<&str> = answers[0][..6].iter().map(Outcome::code).collect();
    assert_eq!(
        codes,
        [
            "guest_out_of_fuel",
            "guest_memory_limit",
            "guest_trapped",
            "guest_trapped",
            "guest_result_too_large",
            "guest_result_too_large",
        ]
    );
    assert_eq!(answers[0][6].text(), CANONICAL_NANS);
    assert_eq!(
        answers[0][11], dumps[0],
        "the failed queries changed nothing"
    );

    // Every node still serves writes and reads.
    for member in &cluster.members {
        let (answer, _) = propose(member, &format!("put after-{} ok", member.id));
        assert_eq!(answer.text(), "OK");
    }
    for member in &cluster.members {
        cluster.wait_all_see(&format!("get after-{}", member.id), "ok");
    }
}
