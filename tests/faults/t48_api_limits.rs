//! The client API's limits (issue 15, item 12): slow bodies and slow or
//! idle connections are cut off, connections over the cap are answered
//! `503`, and at most two component uploads run at once.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use iroh_raft::api::ApiClientError;
use iroh_raft::limits::API_MAX_COMPONENT_UPLOADS;

use crate::common::{NodeProcess, guest, http_get, wait_for};

/// How long a test reads an answer before it calls the node stuck (far
/// beyond every timeout the tests configure).
const READ_PATIENCE: Duration = Duration::from_secs(60);

/// `host:port` of a node's `http://` API.
fn addr(node: &NodeProcess) -> String {
    node.api_url
        .strip_prefix("http://")
        .expect("a plain HTTP API")
        .to_string()
}

/// The file descriptors the node process holds.
fn node_fds(node: &NodeProcess) -> usize {
    std::fs::read_dir(format!("/proc/{}/fd", node.child.id()))
        .expect("the node's fds")
        .count()
}

fn connect(addr: &str) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(READ_PATIENCE))
        .expect("read timeout");
    stream
}

/// A POST announcing `announced` bytes of body and sending 1 KiB of it.
fn slow_post(addr: &str, path: &str, content_type: &str, announced: usize) -> TcpStream {
    let mut stream = connect(addr);
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: {content_type}\r\n\
         content-length: {announced}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).expect("send head");
    stream.write_all(&[b'x'; 1024]).expect("send a little body");
    stream
}

/// Everything the node sends until it closes the connection (its answer,
/// if any).
fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    match stream.read_to_end(&mut answer) {
        Ok(_) => {}
        // A reset after the answer still closes the connection.
        Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(error) => panic!("the node kept the connection open: {error}"),
    }
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn t48_slow_bodies_and_idle_connections_are_cut_off() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = NodeProcess::start(
        dir.path(),
        &[
            "--api-body-timeout-secs",
            "2",
            "--api-header-timeout-secs",
            "2",
        ],
    );
    let addr = addr(&node);
    let before = node_fds(&node);
    let started = Instant::now();
    // The issue's attack, scaled down: bodies announced at 2 MB, 1 KiB sent.
    let mut slow_bodies: Vec<TcpStream> = (0..50)
        .map(|_| slow_post(&addr, "/v1/propose", "application/json", 2_000_000))
        .collect();
    // Connections that send nothing, and one that stops inside its headers.
    let mut idle: Vec<TcpStream> = (0..10).map(|_| connect(&addr)).collect();
    let mut half = connect(&addr);
    half.write_all(b"POST /v1/propose HTTP/1.1\r\nhost: x")
        .expect("send half a head");
    idle.push(half);

    for stream in &mut slow_bodies {
        let answer = read_until_closed(stream);
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains(r#""code":"body_timeout""#), "{answer}");
    }
    for stream in &mut idle {
        let answer = read_until_closed(stream);
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
            "{answer}"
        );
    }
    let took = started.elapsed();
    // Each was cut off after its 2 s; the margin is for a loaded machine.
    assert!(took < Duration::from_secs(20), "took {took:?}");
    // The node let go of every descriptor.
    wait_for("the node to close the connections", || {
        (node_fds(&node) <= before + 2).then_some(())
    });
    // And it still serves, and counts what it refused.
    node.client().propose(b"add 1").expect("propose");
    let metrics = http_get(&format!("{}/metrics", node.api_url)).body;
    assert!(
        metrics.contains("iroh_raft_api_refused_total{reason=\"body_timeout\"} 50\n"),
        "{metrics}"
    );
}

#[test]
fn t48_connections_over_the_cap_are_answered_503() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = NodeProcess::start(
        dir.path(),
        &[
            "--api-max-connections",
            "4",
            "--api-header-timeout-secs",
            "300",
        ],
    );
    let addr = addr(&node);
    // Four connections take every slot (the node accepts in order, so they
    // are in before the request below).
    let mut held: Vec<TcpStream> = (0..4).map(|_| connect(&addr)).collect();
    let refused = node.client().status();
    match refused {
        Err(ApiClientError::Api(info)) => assert_eq!(info.code, "too_many_connections"),
        other => panic!("expected 503 too_many_connections, got {other:?}"),
    }
    // A freed slot serves again.
    drop(held.pop());
    let metrics = wait_for("a freed connection slot", || {
        let answer = http_get(&format!("{}/metrics", node.api_url));
        (answer.status == 200).then_some(answer.body)
    });
    assert!(
        metrics.contains("iroh_raft_api_refused_total{reason=\"too_many_connections\"}"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("too_many_connections\"} 0\n"),
        "{metrics}"
    );
    drop(held);
}

#[test]
fn t48_at_most_two_component_uploads_run_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = NodeProcess::start(dir.path(), &[]);
    let addr = addr(&node);
    // Uploads that have their permit: the node asks for the body (100
    // Continue) only once admitted.
    let upload = || {
        let mut stream = connect(&addr);
        let head = format!(
            "POST /v1/upgrade HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/wasm\r\n\
             content-length: 10000000\r\nexpect: 100-continue\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).expect("send head");
        stream
    };
    let mut uploads: Vec<TcpStream> = (0..API_MAX_COMPONENT_UPLOADS)
        .map(|_| {
            let mut stream = upload();
            let mut interim = [0u8; 25];
            stream.read_exact(&mut interim).expect("100 Continue");
            assert!(interim.starts_with(b"HTTP/1.1 100 Continue"));
            stream.write_all(&[0u8; 1024]).expect("send a little body");
            stream
        })
        .collect();
    // A third is refused before it sends its body.
    let answer = read_until_closed(&mut upload());
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains(r#""code":"too_many_uploads""#), "{answer}");
    drop(uploads.pop());
    let candidate = std::fs::read(guest("counter_v2")).expect("counter v2");
    wait_for("a freed upload slot", || {
        node.client().dry_run(&candidate, &[]).ok()
    });
}
