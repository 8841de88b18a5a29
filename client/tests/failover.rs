//! The clients against fake nodes in the test process: failover on refused
//! connects, leader hints, writes never repeated after a lost answer, the
//! bounded retries, and watches that resume exactly once.

mod fake_node;

use std::time::Duration;

use fake_node::{FakeNode, Reply, applied_json, dead_endpoint, not_leader_json, status_json};
use iroh_raft_client::{ClientOptions, Error, RetryPolicy, blocking};

fn quick(timeout_ms: u64) -> ClientOptions {
    ClientOptions {
        timeout: Some(Duration::from_millis(timeout_ms)),
        retry: RetryPolicy {
            backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(20),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// A node with Raft id `id` that applies proposals.
fn serving(id: u64) -> FakeNode {
    FakeNode::start(move |_, path, _| match path {
        "/v1/status" => Reply::Json(200, status_json(id)),
        "/v1/propose" => Reply::Json(200, applied_json(7)),
        _ => Reply::Json(
            404,
            r#"{"error":{"code":"not_found","message":"?"}}"#.into(),
        ),
    })
}

#[test]
fn a_propose_goes_to_the_next_endpoint_when_a_node_is_down() {
    let up = serving(2);
    let client = blocking::Client::with_options([dead_endpoint(), up.url.clone()], &quick(5_000))
        .expect("client");
    let applied = client
        .propose("add 1")
        .expect("proposed through the second endpoint");
    assert_eq!(applied.index, 7);
    assert_eq!(up.count("/v1/propose"), 1);
    // The next call starts where the last one succeeded.
    client.propose("add 1").expect("proposed again");
    assert_eq!(up.count("/v1/propose"), 2);
}

#[test]
fn not_leader_with_a_hint_goes_to_that_node() {
    let follower = FakeNode::start(|_, path, _| match path {
        "/v1/status" => Reply::Json(200, status_json(1)),
        _ => Reply::Json(503, not_leader_json(Some(3))),
    });
    let other = serving(2);
    let leader = serving(3);
    let client = blocking::Client::with_options(
        [&follower.url, &other.url, &leader.url].map(String::as_str),
        &quick(5_000),
    )
    .expect("client");
    client.propose("add 1").expect("proposed on the leader");
    assert_eq!(leader.count("/v1/propose"), 1);
    assert_eq!(other.count("/v1/propose"), 0, "the hint was followed");
    client.propose("add 1").expect("proposed again");
    assert_eq!(leader.count("/v1/propose"), 2);
    assert_eq!(follower.count("/v1/propose"), 1, "the leader is remembered");
}

#[test]
fn a_write_whose_answer_was_lost_is_not_sent_again_but_a_read_is() {
    let hanging = FakeNode::start(|_, _, _| Reply::Hang);
    let up = FakeNode::start(|_, path, _| match path {
        "/v1/query" => Reply::Json(
            200,
            r#"{"applied_index":3,"output":{"text":"5","base64":"NQ=="},"fuel_used":1}"#.into(),
        ),
        _ => Reply::Json(200, applied_json(7)),
    });
    let client =
        blocking::Client::with_options([&hanging.url, &up.url].map(String::as_str), &quick(300))
            .expect("client");
    match client.propose("add 1") {
        Err(Error::Transport { connect: false, .. }) => {}
        other => panic!("expected the lost answer, got {other:?}"),
    }
    assert_eq!(up.count("/v1/propose"), 0, "never proposed twice");
    let read = client.query("get").expect("the read fails over");
    assert_eq!(read.output.text.as_deref(), Some("5"));
}

#[test]
fn a_list_of_dead_nodes_fails_with_every_attempt() {
    let client = blocking::Client::with_options([dead_endpoint(), dead_endpoint()], &quick(1_000))
        .expect("client");
    match client.status() {
        Err(Error::Unavailable { attempts }) => assert_eq!(attempts.len(), 8, "{attempts:?}"),
        other => panic!("expected unavailable, got {other:?}"),
    }
    // One endpoint: the plain error, no retry.
    let one = blocking::Client::new(dead_endpoint());
    assert!(matches!(
        one.status(),
        Err(Error::Transport { connect: true, .. })
    ));
}

/// A node whose first watch stream delivers 1 and 2 and drops; the next
/// one (which must resume after 2) repeats 2 and delivers 3.
fn flaky_watcher() -> FakeNode {
    let line = |index: u64| {
        format!(
            r#"{{"type":"changes","index":{index},"events":[{{"op":"put","key":{{"text":"k","base64":"aw=="}},"value":{{"text":"{index}","base64":"MQ=="}}}}]}}"#
        )
    };
    FakeNode::start(move |_, path, _| {
        if path.contains("since=2") {
            Reply::Stream(vec![
                r#"{"type":"start","since":2,"applied_index":3}"#.into(),
                line(2),
                r#"{"type":"a_newer_kind"}"#.into(),
                line(3),
                r#"{"type":"compacted","oldest_index":9}"#.into(),
            ])
        } else if path.starts_with("/v1/watch?prefix=k%2F") {
            Reply::Stream(vec![
                r#"{"type":"start","since":0,"applied_index":2}"#.into(),
                line(1),
                line(2),
            ])
        } else {
            Reply::Json(
                400,
                r#"{"error":{"code":"bad_request","message":"?"}}"#.into(),
            )
        }
    })
}

#[tokio::test]
async fn a_watch_resumes_after_the_last_change_it_delivered() {
    let node = flaky_watcher();
    let client =
        iroh_raft_client::Client::with_options(node.url.as_str(), &quick(5_000)).expect("client");
    let mut watch = client.watch("k/", None);
    let mut seen = Vec::new();
    let end = loop {
        match tokio::time::timeout(Duration::from_secs(10), watch.next())
            .await
            .expect("the watch moves")
        {
            Some(Ok(changes)) => seen.push(changes.index),
            Some(Err(error)) => break error,
            None => panic!("ended without an error"),
        }
    };
    assert_eq!(seen, vec![1, 2, 3], "each change once");
    assert!(matches!(end, Error::Compacted { oldest_index: 9 }), "{end}");
    assert!(watch.next().await.is_none(), "ended");
    let requests = node.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert!(requests[1].ends_with("since=2"), "{requests:?}");
}

#[test]
fn the_blocking_watch_is_an_iterator_that_resumes_too() {
    let node = flaky_watcher();
    let client = blocking::Client::with_options(node.url.as_str(), &quick(5_000)).expect("client");
    let items: Vec<_> = client.watch("k/", None).expect("watch").collect();
    let indexes: Vec<u64> = items
        .iter()
        .filter_map(|item| item.as_ref().ok().map(|c| c.index))
        .collect();
    assert_eq!(indexes, vec![1, 2, 3]);
    assert!(matches!(
        items.last(),
        Some(Err(Error::Compacted { oldest_index: 9 }))
    ));
    // A refusal ends the watch at once.
    let refused: Vec<_> = client.watch("other", None).expect("watch").collect();
    assert!(matches!(&refused[..], [Err(Error::Api(info))] if info.code == "bad_request"));
}
