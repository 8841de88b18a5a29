//! Bad input gets a clear error and changes nothing: guest files, data dirs,
//! HTTP bodies and command-line arguments.

use std::io::Write as _;

use iroh_raft::node::{self, GuestSource, NoPeers, NodeConfig, NodeError};
use iroh_raft::wasm::{GuestLimits, WasmError};

use crate::common::{
    HTTP_BODY_LIMIT, NodeProcess, guest, http_get, propose_ok, query_ok, raft_host, start_node,
};

fn start_with_guest(dir: &std::path::Path, guest: GuestSource) -> Result<(), NodeError> {
    let config = NodeConfig {
        guest,
        ..NodeConfig::new(dir)
    };
    node::start(config, NoPeers).map(drop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t40_bad_guest_files_are_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let files = tempfile::tempdir().expect("tempdir");

    let missing = files.path().join("missing.wasm");
    let err = start_with_guest(&dir.path().join("a"), GuestSource::File(missing))
        .expect_err("missing file");
    assert!(
        matches!(err, NodeError::Wasm(WasmError::ReadFile { .. })),
        "{err}"
    );

    let text = files.path().join("text.wasm");
    std::fs::write(&text, "definitely not wasm").expect("write");
    let err =
        start_with_guest(&dir.path().join("b"), GuestSource::File(text)).expect_err("not wasm");
    assert!(
        err.to_string().contains("not a WebAssembly component"),
        "{err}"
    );

    let module = files.path().join("module.wasm");
    // The smallest valid core module: magic + version 1.
    std::fs::write(&module, b"\0asm\x01\0\0\0").expect("write");
    let err = start_with_guest(&dir.path().join("c"), GuestSource::File(module))
        .expect_err("core module");
    assert!(err.to_string().contains("core WebAssembly module"), "{err}");

    let truncated = files.path().join("truncated.wasm");
    let counter = std::fs::read(guest("counter")).expect("counter");
    std::fs::write(&truncated, &counter[..counter.len() / 2]).expect("write");
    let err = start_with_guest(&dir.path().join("d"), GuestSource::File(truncated))
        .expect_err("truncated component");
    assert!(
        matches!(err, NodeError::Wasm(WasmError::NotAComponent { .. })),
        "{err}"
    );

    let err = start_with_guest(
        &dir.path().join("e"),
        GuestSource::File(guest("no_exports")),
    )
    .expect_err("component without the interface");
    assert!(
        matches!(err, NodeError::Wasm(WasmError::InterfaceMismatch { .. })),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t41_a_data_dir_keeps_its_guest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = start_node(dir.path(), "counter", GuestLimits::default());
    propose_ok(&node, "add 9").await;
    node.shutdown().await;
    drop(node);

    let err = start_with_guest(dir.path(), GuestSource::File(guest("kv")))
        .expect_err("another guest on an existing data dir");
    assert!(matches!(err, NodeError::GuestMismatch { .. }), "{err}");

    // Without --guest the stored component runs, with its state.
    let node = node::start(NodeConfig::new(dir.path()), NoPeers).expect("restart");
    assert_eq!(query_ok(&node, "get").await, "9");
    node.shutdown().await;
}

#[test]
fn t42_corrupt_and_unwritable_data_dirs_fail_cleanly() {
    // A data dir whose log is garbage.
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("raft")).expect("mkdir");
    let mut db = std::fs::File::create(dir.path().join("raft/db")).expect("create");
    db.write_all(&[0xAB; 4096]).expect("write");
    drop(db);
    std::fs::write(dir.path().join("raft/conf"), b"garbage").expect("write");
    let output = raft_host()
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--api-addr", "127.0.0.1:0"])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("error: starting the node"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    // A data dir that cannot be created (a regular file is in the way).
    let file = tempfile::NamedTempFile::new().expect("file");
    let output = raft_host()
        .arg("--data-dir")
        .arg(file.path().join("data"))
        .args(["--api-addr", "127.0.0.1:0"])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("data dir"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn t43_bad_cli_arguments_exit_2_with_usage() {
    for args in [
        vec!["--id", "0"],
        vec!["--id", "x"],
        vec!["--api-addr", "not-an-address"],
        vec!["--memory-limit-mib", "0"],
        // Past the bounds (limits.rs): a looping guest would hold every
        // replica for hours.
        vec!["--apply-fuel", "18446744073709551615"],
        vec!["--query-fuel", "18446744073709551615"],
        vec!["--memory-limit-mib", "17179869184"],
        vec!["--worker-threads", "0"],
        vec!["--worker-threads", "1025"],
        vec![
            "upgrade",
            "--guest",
            "x.wasm",
            "--apply-fuel",
            "18446744073709551615",
        ],
        vec!["propose"],
        vec!["no-such-command"],
    ] {
        let output = raft_host().args(&args).output().expect("run");
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(!output.stderr.is_empty(), "{args:?}");
    }
    // A client command against a node that is not there: exit 1, no panic.
    let output = raft_host()
        .args(["status", "--api", "http://127.0.0.1:9"])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot talk to the node"), "{stderr}");
}

/// A raw HTTP POST, so the test controls every byte of the body.
fn post(url: &str, path: &str, body: &[u8]) -> (u16, serde_json::Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut response = agent
        .post(format!("{url}{path}"))
        .header("content-type", "application/json")
        .send(body)
        .expect("request");
    let status = response.status().as_u16();
    let text = response
        .body_mut()
        .with_config()
        .limit(HTTP_BODY_LIMIT)
        .read_to_string()
        .expect("body");
    (status, json(&text))
}

/// An HTTP header's name and value.
type Header<'a> = (&'a str, &'a str);

/// POST `body` with exactly `headers` (no content type unless given).
fn post_with_headers(
    url: &str,
    path: &str,
    headers: &[Header],
    body: &[u8],
) -> (u16, serde_json::Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut request = agent.post(format!("{url}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let mut response = request.send(body).expect("request");
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().expect("body");
    (status, json(&text))
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|_| panic!("not JSON: {text}"))
}

#[test]
fn t44_bad_http_bodies_get_json_errors_and_change_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = NodeProcess::start(dir.path(), &[]);
    let url = node.api_url.clone();
    assert_eq!(post(&url, "/v1/propose", br#"{"command":"add 1"}"#).0, 200);

    let oversized = vec![b'a'; iroh_raft::limits::MAX_API_BODY_BYTES + 1];
    let cases: Vec<(&[u8], u16, &str)> = vec![
        (b"not json", 400, "bad_request"),
        (br#"{"command": 5}"#, 400, "bad_request"),
        (br#"{"command":"add 1","extra":1}"#, 400, "bad_request"),
        (br#"{}"#, 400, "bad_request"),
        (
            br#"{"command":"add 1","command_base64":"YQ=="}"#,
            400,
            "bad_request",
        ),
        (br#"{"command_base64":"***"}"#, 400, "bad_request"),
        (br#"{"command":""}"#, 400, "empty_command"),
        (&oversized, 413, "body_too_large"),
    ];
    for (body, status, code) in cases {
        let (got_status, json) = post(&url, "/v1/propose", body);
        let shown = String::from_utf8_lossy(&body[..body.len().min(60)]);
        assert_eq!(got_status, status, "{shown}: {json}");
        assert_eq!(json["error"]["code"], code, "{shown}: {json}");
        assert!(
            json["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
    let nope = http_get(&format!("{url}/v1/nope"));
    assert_eq!(
        (nope.status, json(&nope.body)["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    let (status, json) = post(&url, "/v1/query", br#"{"request":"nonsense"}"#);
    assert_eq!(
        (status, json["error"]["code"].as_str()),
        (422, Some("guest_rejected"))
    );

    // What a web page could make a browser send (CSRF, DNS rebinding).
    let forged: [(&[Header], u16, &str); 4] = [
        (
            &[("content-type", "text/plain")],
            415,
            "unsupported_media_type",
        ),
        (&[], 415, "unsupported_media_type"),
        (
            &[
                ("content-type", "application/json"),
                ("origin", "http://evil.example"),
            ],
            403,
            "forbidden_origin",
        ),
        (
            &[
                ("content-type", "application/json"),
                ("host", "evil.example"),
            ],
            403,
            "forbidden_host",
        ),
    ];
    for (headers, status, code) in forged {
        let (got_status, json) =
            post_with_headers(&url, "/v1/propose", headers, br#"{"command":"add 100"}"#);
        assert_eq!(
            (got_status, json["error"]["code"].as_str()),
            (status, Some(code)),
            "{headers:?}"
        );
    }

    // None of it reached the log or the state.
    let (_, json) = post(&url, "/v1/query", br#"{"request":"get"}"#);
    assert_eq!(json["output"]["text"], "1");
    // Bootstrap entry, leader no-op, one command.
    assert_eq!(node.client().status().expect("status").last_index, 3);
}
