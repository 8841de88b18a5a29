//! The client crate (`iroh_raft_client`) and the CLI on top of it against a
//! real 3-node cluster of `raft-host` processes (the store-backed
//! `kv-store` guest): a client given all three endpoints, the first a
//! follower, proposes through that follower, follows the leader hint of a
//! leader-only call, keeps proposing after the first endpoint's node is
//! SIGKILLed, and its watch resumes on another node with each change once;
//! `raft-host --endpoints` and `raft-host watch` do the same from the
//! command line.

use std::io::{BufRead as _, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use iroh_raft_client::blocking::Client;
use iroh_raft_client::{ClientOptions, WatchOp};

use crate::common::cluster::Cluster;
use crate::common::wait_for;

/// How long one awaited line or change may take.
const STEP: Duration = Duration::from_secs(30);

fn put(client: &Client, key: &str, value: &str) -> u64 {
    let answer = client
        .propose(format!("put {key} {value}"))
        .unwrap_or_else(|e| panic!("put {key}: {e}"));
    assert_eq!(answer.output.text.as_deref(), Some("OK"));
    answer.index
}

#[test]
fn t66_a_client_of_three_endpoints_follows_hints_and_survives_its_first_node() {
    let mut cluster = Cluster::start(3, "kv_store", &[]);
    let leader = cluster.leader();
    let first = cluster.follower_of(leader);
    let second = cluster
        .running()
        .map(|m| m.id)
        .find(|id| *id != leader && *id != first)
        .expect("a third node");
    let url = |id: u64| cluster.member(id).process().api_url.clone();
    // The first endpoint is a follower; bare host:port works too.
    let endpoints = vec![
        url(first),
        url(second).trim_start_matches("http://").to_string(),
        url(leader),
    ];
    let fresh = || {
        Client::with_options(endpoints.clone(), &ClientOptions::default())
            .expect("a client of three endpoints")
    };
    let client = fresh();

    // Through the follower (it forwards to the leader).
    let mut puts = vec![put(&client, "k/0", "v0")];
    assert_eq!(
        client.status().expect("status").id,
        first,
        "starts at the first"
    );

    // A leader-only call, sent to the follower first: `not_leader` names the
    // leader and the client goes there.
    let moved = client
        .transfer_leader(Some(second))
        .expect("transferred through the hinted leader");
    assert_eq!(moved.leader_id, second);
    let leader = cluster.leader();
    assert_eq!(leader, second);

    // A watch through the same endpoints, after the first put: it is
    // served by the first endpoint's node.
    let since = puts[0];
    let (changes_tx, changes) = mpsc::channel();
    let watcher = fresh();
    std::thread::spawn(move || {
        let watch = match watcher.watch("k/", Some(since)) {
            Ok(watch) => watch,
            Err(error) => {
                let _ = changes_tx.send(Err(error.to_string()));
                return;
            }
        };
        for item in watch {
            let item = item.map_err(|e| e.to_string());
            let end = item.is_err();
            if changes_tx.send(item).is_err() || end {
                return;
            }
        }
    });

    let mut seen = Vec::new();
    let next_change = |seen: &mut Vec<(u64, String)>| {
        let changes = changes
            .recv_timeout(STEP)
            .unwrap_or_else(|_| panic!("no change after {seen:?}"))
            .unwrap_or_else(|e| panic!("the watch ended: {e}"));
        for event in &changes.events {
            assert_eq!(event.op, WatchOp::Put);
            seen.push((changes.index, event.key.display()));
        }
    };
    puts.push(put(&client, "k/1", "v1"));
    next_change(&mut seen);

    // Kill the first endpoint's node: a client whose first call goes there
    // keeps proposing, and the watch it served resumes on another node.
    cluster.member_mut(first).kill();
    let client = fresh();
    for i in 2..=10 {
        puts.push(put(&client, &format!("k/{i}"), &format!("v{i}")));
    }
    put(&client, "x/outside", "ignored");
    while seen.len() < 10 {
        next_change(&mut seen);
    }
    // Each change after `since` once, in order.
    let expected: Vec<(u64, String)> = puts[1..]
        .iter()
        .enumerate()
        .map(|(i, index)| (*index, format!("k/{}", i + 1)))
        .collect();
    assert_eq!(seen, expected);

    // The CLI: --endpoints with a dead node first, and `watch`.
    let cli_endpoints = endpoints.join(",");
    let proposed = cluster.member(leader).process().cli(&[
        "propose",
        "--endpoints",
        &cli_endpoints,
        "put k/cli yes",
    ]);
    assert!(
        proposed.status.success(),
        "{}",
        String::from_utf8_lossy(&proposed.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&proposed.stdout).trim(), "OK");
    let mut watch = cluster
        .member(leader)
        .process()
        .cli_command(&[
            "watch",
            "k/",
            "--since",
            &puts[0].to_string(),
            "--endpoints",
            &cli_endpoints,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("raft-host watch");
    let stdout = watch.stdout.take().expect("piped stdout");
    let (lines_tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut printed = Vec::new();
    while printed.len() < 11 {
        match lines.recv_timeout(STEP) {
            Ok(line) => printed.push(line),
            Err(_) => {
                let _ = watch.kill();
                let _ = watch.wait();
                panic!("raft-host watch printed only {printed:?}");
            }
        }
    }
    watch.kill().expect("stop raft-host watch");
    watch.wait().expect("reap raft-host watch");
    assert_eq!(printed[0], format!("{} put k/1 v1", puts[1]));
    assert_eq!(printed[9], format!("{} put k/10 v10", puts[10]));
    assert!(printed[10].ends_with(" put k/cli yes"), "{printed:?}");
    wait_for("the survivors to agree", || {
        let statuses: Vec<_> = cluster
            .running()
            .filter_map(|m| m.client().status().ok())
            .collect();
        (statuses.len() == 2 && statuses[0].applied_index == statuses[1].applied_index)
            .then_some(())
    });
}
