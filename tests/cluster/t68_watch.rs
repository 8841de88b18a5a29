//! Watches (`GET /v1/watch`) on real 3-node clusters of `raft-host`
//! processes running the `kv-store` guest: changes in log order, each
//! exactly once from `since`, across a leader kill (the watcher on the dead
//! leader resumes on a survivor) and a follower restart (the follower
//! resumes from its own, persisted history); compaction answered with the
//! oldest index kept; guests that cannot be watched refused clearly.

use iroh_raft::api::{ApiClient, ErrorBody, WatchLine, WatchOp};

use crate::common::cluster::Cluster;
use crate::common::watch::{Seen, Watch};

/// Put `key` = `value` through `client`; the entry's index.
fn put(client: &ApiClient, key: &str, value: &str) -> u64 {
    let answer = client
        .propose(format!("put {key} {value}").as_bytes())
        .expect("put");
    assert_eq!(answer.output.text.as_deref(), Some("OK"));
    answer.index
}

fn put_seen(index: u64, key: &str, value: &str) -> Seen {
    (
        index,
        WatchOp::Put,
        key.to_string(),
        Some(value.to_string()),
    )
}

fn since(watch: &Watch) -> u64 {
    match watch.start {
        WatchLine::Start { since, .. } => since,
        _ => unreachable!("Watch::open checks the first line"),
    }
}

#[test]
fn t68_watchers_see_each_change_once_in_order_across_a_leader_kill_and_a_follower_restart() {
    let mut cluster = Cluster::start(3, "kv_store", &[]);
    let leader = cluster.leader();
    let follower = cluster.follower_of(leader);
    let mut on_follower = Watch::open(&cluster.member(follower).process().api_url, "prefix=k/")
        .expect("watch the follower");
    let mut on_leader = Watch::open(&cluster.member(leader).process().api_url, "prefix=k/")
        .expect("watch the leader");
    // Both start at "now": nothing before them is sent.
    assert!(since(&on_follower) > 0 && since(&on_leader) > 0);

    let mut expected: Vec<Seen> = Vec::new();
    let client = cluster.member(leader).client();
    for i in 0..20 {
        let (key, value) = (format!("k/{i:02}"), format!("v{i}"));
        expected.push(put_seen(put(&client, &key, &value), &key, &value));
        // Outside the prefix: never shown.
        put(&client, &format!("x/{i}"), "ignored");
    }
    // Writing a key's value again is an event too (like etcd).
    expected.push(put_seen(put(&client, "k/01", "v1"), "k/01", "v1"));
    let deleted = client.propose(b"delete k/00").expect("delete");
    assert_eq!(deleted.output.text.as_deref(), Some("1"));
    expected.push((deleted.index, WatchOp::Delete, "k/00".into(), None));

    let first_part = on_leader.changes_through(deleted.index);
    assert_eq!(
        first_part, expected,
        "the leader's watcher, before the kill"
    );

    // The leader dies; its watcher resumes on a survivor from where it was.
    cluster.member_mut(leader).kill();
    assert_eq!(on_leader.next(crate::common::CONVERGENCE_TIMEOUT), None);
    let new_leader = cluster.leader();
    let client = cluster.member(new_leader).client();
    for i in 20..40 {
        let (key, value) = (format!("k/{i:02}"), format!("v{i}"));
        expected.push(put_seen(put(&client, &key, &value), &key, &value));
    }
    let last = expected.last().map(|seen| seen.0).expect("writes");
    let survivor = cluster
        .running()
        .find(|m| m.id != follower)
        .expect("a survivor besides the follower")
        .id;
    let mut resumed = Watch::open(
        &cluster.member(survivor).process().api_url,
        &format!("prefix=k/&since={}", deleted.index),
    )
    .expect("resume on a survivor");
    let mut leader_watcher_saw = first_part;
    leader_watcher_saw.extend(resumed.changes_through(last));
    assert_eq!(leader_watcher_saw, expected, "the resumed watcher");

    // The follower saw everything, once, in order, without a reconnect.
    let follower_saw = on_follower.changes_through(last);
    assert_eq!(follower_saw, expected, "the follower's watcher");

    // The follower restarts (the old leader back first, for a quorum);
    // its watcher resumes there, from its own history.
    cluster.member_mut(leader).start();
    cluster.member_mut(follower).kill();
    let before_restart = expected.len();
    let client = cluster.member(cluster.leader()).client();
    for i in 40..50 {
        let (key, value) = (format!("k/{i:02}"), format!("v{i}"));
        expected.push(put_seen(put(&client, &key, &value), &key, &value));
    }
    let last = expected.last().map(|seen| seen.0).expect("writes");
    cluster.member_mut(follower).start();
    let mut after_restart = Watch::open(
        &cluster.member(follower).process().api_url,
        &format!("prefix=k/&since={}", follower_saw.last().expect("seen").0),
    )
    .expect("resume on the restarted follower");
    assert_eq!(
        after_restart.changes_through(last),
        expected[before_restart..],
        "the follower's watcher after its restart"
    );
}

#[test]
fn t68_compacted_history_and_unwatchable_guests_are_answered_clearly() {
    let cluster = Cluster::start(1, "kv_store", &["--watch-history", "5"]);
    let node = cluster.member(1);
    let client = node.client();
    let mut last = 0;
    for i in 0..20 {
        last = put(&client, &format!("k{i}"), "v");
    }
    let refused = Watch::open(&node.process().api_url, "since=1").err();
    let refused = refused.expect("since=1 is older than the history kept");
    assert_eq!(refused.status, 410, "{}", refused.body);
    let body: ErrorBody = serde_json::from_str(&refused.body).expect("an error body");
    assert_eq!(body.error.code, "compacted");
    let oldest = body.error.oldest_index.expect("the oldest index kept");
    assert!(
        oldest > 1 && oldest <= last - 4,
        "oldest {oldest}, last {last}: five entries are kept"
    );
    // From the oldest index kept on, every change is there. The window may
    // still move by an entry whose store commit lands just after its client
    // was answered: then the answer is another 410 with a later oldest
    // index, and that one is served.
    let mut oldest = oldest;
    let mut watch = None;
    for _ in 0..5 {
        match Watch::open(&node.process().api_url, &format!("since={}", oldest - 1)) {
            Ok(opened) => {
                watch = Some(opened);
                break;
            }
            Err(refused) => {
                assert_eq!(refused.status, 410, "{}", refused.body);
                let body: ErrorBody = serde_json::from_str(&refused.body).expect("an error body");
                let moved = body.error.oldest_index.expect("the oldest index kept");
                assert!(
                    moved > oldest && moved <= last - 4,
                    "oldest {oldest} -> {moved}, last {last}"
                );
                oldest = moved;
            }
        }
    }
    let mut watch = watch.expect("a watch since the oldest index kept");
    let seen = watch.changes_through(last);
    assert_eq!(seen.first().map(|s| s.0), Some(oldest));
    assert_eq!(seen.last().map(|s| s.0), Some(last));

    for (query, status, code) in [
        ("since=-1", 400, "bad_request"),
        ("prefix=a&prefix_base64=YQ==", 400, "bad_request"),
        ("prefix_base64=!!", 400, "bad_request"),
        ("colour=blue", 400, "bad_request"),
    ] {
        let refused = Watch::open(&node.process().api_url, query)
            .err()
            .unwrap_or_else(|| panic!("{query} is refused"));
        assert_eq!(refused.status, status, "{query}: {}", refused.body);
        let body: ErrorBody = serde_json::from_str(&refused.body).expect("an error body");
        assert_eq!(body.error.code, code, "{query}");
    }

    let memory_guest = Cluster::start(1, "kv", &[]);
    let refused = Watch::open(&memory_guest.member(1).process().api_url, "")
        .err()
        .expect("a memory guest cannot be watched");
    assert_eq!(refused.status, 400);
    let body: ErrorBody = serde_json::from_str(&refused.body).expect("an error body");
    assert_eq!(body.error.code, "watch_unsupported");
}

#[test]
fn t68_a_watcher_that_stops_reading_catches_up_from_the_history() {
    use std::io::{BufRead, BufReader, Write};

    let cluster = Cluster::start(1, "kv_store", &[]);
    let node = cluster.member(1);
    let client = node.client();
    // A watch whose client reads nothing for a while: its connection and
    // buffer fill, the node's watch task blocks, and the live feed (1,024
    // commits deep) runs past it; reading again, it must catch up from the
    // history.
    let address = node
        .process()
        .api_url
        .trim_start_matches("http://")
        .to_string();
    let mut stream = std::net::TcpStream::connect(&address).expect("connect");
    write!(
        stream,
        "GET /v1/watch?prefix=big/ HTTP/1.1\r\nhost: {address}\r\nconnection: close\r\n\r\n"
    )
    .expect("send the request");
    let mut reader = BufReader::new(stream);
    let mut head = String::new();
    while !head.contains(r#""type":"start""#) {
        let mut line = String::new();
        assert!(reader.read_line(&mut line).expect("read") > 0, "{head}");
        head.push_str(&line);
    }
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let value = "v".repeat(8 * 1024);
    let mut expected = Vec::new();
    for i in 0..2_000 {
        expected.push(put(&client, &format!("big/{i:04}"), &value));
    }
    // Now read: every change, once, in order (chunked encoding: a line of
    // JSON is a chunk's payload, the chunk sizes are lines of hex).
    let mut seen = Vec::new();
    for line in reader.lines() {
        let line = line.expect("read the stream");
        let Ok(parsed) = serde_json::from_str::<WatchLine>(&line) else {
            continue;
        };
        if let WatchLine::Changes { index, events } = parsed {
            assert_eq!(events.len(), 1);
            seen.push(index);
            if seen.len() == expected.len() {
                break;
            }
        }
    }
    assert_eq!(seen, expected);
    // The watch task blocked on the full connection while the feed ran on:
    // once read again, it found it had lagged and read the history.
    assert!(
        node.process()
            .wait_for_log(
                &["fell behind the live feed"],
                crate::common::CONVERGENCE_TIMEOUT
            )
            .is_some(),
        "the watch lagged behind the feed"
    );
}
