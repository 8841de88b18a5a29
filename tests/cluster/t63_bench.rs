//! `raft-host bench` against a real three-node cluster: it finds the leader
//! among the endpoints it is given, completes exactly the requests asked
//! for, and what it wrote is in the replicated state.

use iroh_raft::node::Consistency;

use crate::common::cluster::Cluster;
use crate::common::{self, NodeProcess};

/// Keys the bench writes (each once in its prefill, then at random).
const KEY_SPACE: u64 = 40;
/// Requests per measured run.
const COUNT: u64 = 300;
/// The bench's default key and value lengths (`bench.rs`).
const KEY_BYTES: usize = 10;
const VALUE_BYTES: usize = 128;

/// Run `raft-host bench --json` with `args`; whether it succeeded, and its
/// report.
fn bench(args: &[&str]) -> (bool, serde_json::Value) {
    let output = common::raft_host()
        .args(["bench", "--json"])
        .args(args)
        .output()
        .expect("run raft-host bench");
    let report = serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "bench {args:?} printed no JSON ({error}): {}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output.status.success(), report)
}

/// [`bench`], which must succeed.
fn bench_ok(args: &[&str]) -> serde_json::Value {
    let (success, report) = bench(args);
    assert!(success, "bench {args:?} failed: {report}");
    report
}

#[test]
fn t63_bench_writes_through_the_leader_and_reads_everywhere() {
    let cluster = Cluster::start(3, "kv", &[]);
    let leader = cluster.member(cluster.leader());
    let follower = cluster
        .running()
        .find(|m| m.id != leader.id)
        .expect("a follower");
    // The leader last: the bench must ask each node who leads, not take the
    // first.
    let mut urls: Vec<String> = cluster
        .running()
        .filter(|m| m.id != leader.id)
        .map(|m| m.process().api_url.clone())
        .collect();
    urls.push(leader.process().api_url.clone());
    let endpoints = urls.join(",");
    let applied_before = leader.status().applied_index;

    let key_space = KEY_SPACE.to_string();
    let count = COUNT.to_string();
    let writes = bench_ok(&[
        "--endpoints",
        &endpoints,
        "--prefill",
        "--key-space",
        &key_space,
        "--count",
        &count,
        "--clients",
        "8",
        "--connections",
        "4",
    ]);
    assert_eq!(writes["workload"], "put", "{writes}");
    assert_eq!(writes["ops"], COUNT, "{writes}");
    assert_eq!(writes["errors"], 0, "{writes}");
    assert_eq!(writes["clients"], 8, "{writes}");
    assert_eq!(writes["connections"], 4, "{writes}");
    assert_eq!(
        writes["endpoints"],
        serde_json::json!([leader.process().api_url]),
        "the bench did not pick the leader: {writes}"
    );
    let latency = &writes["latency_us"];
    let p50 = latency["p50"].as_u64().expect("p50");
    let p99 = latency["p99"].as_u64().expect("p99");
    let max = latency["max"].as_u64().expect("max");
    assert!(0 < p50 && p50 <= p99 && p99 <= max, "{latency}");

    // Every put became a log entry: the prefill's and the measured ones.
    let applied_after = leader.status().applied_index;
    assert!(
        applied_after - applied_before >= KEY_SPACE + COUNT,
        "applied {applied_before} -> {applied_after}: fewer than {} puts",
        KEY_SPACE + COUNT
    );
    // The prefill wrote every key, with a value of the asked length; a
    // linearizable read on a follower sees them.
    assert_eq!(
        follower
            .query("count", Consistency::Linearizable)
            .as_deref(),
        Some(key_space.as_str())
    );
    let last_key = format!("k{:0width$}", KEY_SPACE - 1, width = KEY_BYTES - 1);
    let value = follower
        .query(&format!("get {last_key}"), Consistency::Linearizable)
        .expect("the last key of the key space was written");
    assert_eq!(value.len(), VALUE_BYTES, "{value:?}");
    assert!(value.bytes().all(|b| b.is_ascii_lowercase()), "{value:?}");

    // Linearizable reads spread over every node: all keys exist, no errors.
    let reads = bench_ok(&[
        "--endpoints",
        &endpoints,
        "--target",
        "all",
        "--workload",
        "get",
        "--key-space",
        &key_space,
        "--count",
        &count,
        "--clients",
        "6",
    ]);
    assert_eq!(reads["workload"], "get", "{reads}");
    assert_eq!(reads["consistency"], "linearizable", "{reads}");
    assert_eq!(reads["ops"], COUNT, "{reads}");
    assert_eq!(reads["errors"], 0, "{reads}");
    assert_eq!(
        reads["endpoints"].as_array().map(Vec::len),
        Some(3),
        "{reads}"
    );
}

#[test]
fn t63_bench_refuses_bad_arguments_and_counts_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = NodeProcess::start(
        dir.path(),
        &["--guest", &common::guest("kv").display().to_string()],
    );
    for (args, says) in [
        (
            &["--clients", "2", "--connections", "4"][..],
            "more than --clients",
        ),
        (
            &["--key-space", "1000000", "--key-bytes", "5"][..],
            "too short",
        ),
        (&["--endpoints", "https://127.0.0.1:1"][..], "plain http"),
        (&["--clients", "0"][..], "--clients"),
    ] {
        let mut all = vec!["bench"];
        all.extend(args);
        let output = node.cli(&all);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} accepted");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }

    // Reads of keys nobody wrote: the guest refuses each, and the bench
    // counts them by kind instead of failing or hiding them.
    let (success, misses) = bench(&[
        "--endpoints",
        &node.api_url,
        "--workload",
        "get",
        "--count",
        "20",
        "--clients",
        "2",
    ]);
    assert!(!success, "a run without one success exits 1: {misses}");
    assert_eq!(misses["ops"], 0, "{misses}");
    assert_eq!(misses["errors"], 20, "{misses}");
    assert_eq!(
        misses["errors_by_kind"]["http 422 guest_rejected"], 20,
        "{misses}"
    );
}
