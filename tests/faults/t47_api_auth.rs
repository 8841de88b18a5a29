//! The client API's authentication and TLS (issue 15, item 11): who may
//! call what with which token, the CLI over https with a self-signed
//! certificate, and a node that refuses to serve an open API beyond
//! loopback.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use iroh_raft::api::{ApiClient, ApiClientError, ClientOptions};

use crate::common::{NodeProcess, guest, http_get_with, raft_host};

const ADMIN: &str = "admin-7f3c9e1a5b2d4f6a8c0e";
const WRITER: &str = "write-2b4d6f8a0c1e3a5c7e9b";
const READER: &str = "read-9e8d7c6b5a4f3e2d1c0b";

/// A token file with one token per role, mode 0600, in `dir`.
fn token_file(dir: &Path) -> PathBuf {
    let path = dir.join("api-tokens");
    std::fs::write(
        &path,
        format!("# role token\nadmin {ADMIN}\nwrite {WRITER}\nread  {READER}\n"),
    )
    .expect("write tokens");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    path
}

/// The committed test certificate, and a private copy of its key (the node
/// refuses a key others may read; git keeps no such mode).
fn certificate(dir: &Path) -> (PathBuf, PathBuf) {
    let certs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/certs");
    let key = dir.join("node.key");
    std::fs::copy(certs.join("node.key"), &key).expect("copy key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    (certs.join("node.crt"), key)
}

fn client(url: &str, token: Option<&str>, ca_cert: Option<&Path>) -> ApiClient {
    let options = ClientOptions {
        token: token.map(str::to_string),
        ca_certs_pem: ca_cert.map(|path| std::fs::read(path).expect("read certificate")),
        ..Default::default()
    };
    ApiClient::with_options(url, &options).expect("client")
}

/// The error code of a refused call.
fn code<T: std::fmt::Debug>(result: Result<T, ApiClientError>) -> String {
    match result {
        Err(ApiClientError::Api(info)) => info.code,
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// A GET with an optional `Authorization`: status, `WWW-Authenticate`,
/// and the JSON error code.
fn raw_get(url: &str, authorization: Option<&str>) -> (u16, String, String) {
    let headers: Vec<(&str, &str)> = authorization
        .map(|value| ("authorization", value))
        .into_iter()
        .collect();
    let response = http_get_with(url, &headers);
    let challenge = response
        .headers
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let code = serde_json::from_str::<serde_json::Value>(&response.body)
        .ok()
        .and_then(|json| json["error"]["code"].as_str().map(str::to_string))
        .unwrap_or_default();
    (response.status, challenge, code)
}

#[test]
fn t47_each_role_reaches_as_far_as_it_goes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tokens = token_file(dir.path());
    let tokens_arg = tokens.to_str().expect("utf-8 path");
    let node = NodeProcess::start(&dir.path().join("data"), &["--api-tokens", tokens_arg]);
    let url = node.api_url.clone();

    // No token, a wrong one, another scheme: 401 with a Bearer challenge.
    for authorization in [
        None,
        Some("Bearer not-a-token-of-this-node"),
        Some("Basic YWRtaW46YWRtaW4="),
    ] {
        let (status, challenge, code) = raw_get(&format!("{url}/v1/status"), authorization);
        assert_eq!(
            (status, code.as_str()),
            (401, "unauthenticated"),
            "{authorization:?}"
        );
        assert!(challenge.starts_with("Bearer"), "{challenge}");
    }
    // /health and /ready stay open (probes carry no credentials); /metrics
    // does not. (A single node leads at once: ready.)
    assert_eq!(raw_get(&format!("{url}/health"), None).0, 200);
    assert_eq!(raw_get(&format!("{url}/ready"), None).0, 200);
    assert_eq!(raw_get(&format!("{url}/metrics"), None).0, 401);
    assert_eq!(
        code(client(&url, None, None).propose(b"add 1")),
        "unauthenticated"
    );

    // read: status and queries, nothing that changes the state.
    let reader = client(&url, Some(READER), None);
    reader.status().expect("read may see the status");
    reader.query(b"get").expect("read may query");
    assert_eq!(code(reader.propose(b"add 1")), "insufficient_role");

    // write: propose, but not change the cluster or read out the state.
    let writer = client(&url, Some(WRITER), None);
    assert_eq!(
        writer
            .propose(b"add 2")
            .expect("write may propose")
            .output
            .text
            .as_deref(),
        Some("2")
    );
    let candidate = std::fs::read(guest("counter_v2")).expect("counter v2");
    assert_eq!(code(writer.dry_run(&candidate, &[])), "insufficient_role");
    assert_eq!(code(writer.upgrade(&candidate, &[])), "insufficient_role");
    assert_eq!(code(writer.snapshot()), "insufficient_role");
    assert_eq!(
        code(writer.download_snapshot(&mut Vec::new())),
        "insufficient_role"
    );
    assert_eq!(code(writer.remove_member(1)), "insufficient_role");

    // admin: all of it.
    let admin = client(&url, Some(ADMIN), None);
    let report = admin.dry_run(&candidate, &[]).expect("admin may dry-run");
    assert_eq!(report.candidate_hash.len(), 64, "{report:?}");
    admin.snapshot().expect("admin may take a snapshot");
    let mut backup = Vec::new();
    assert!(
        admin
            .download_snapshot(&mut backup)
            .expect("admin may back up")
            > 0
    );
    let upgraded = admin.upgrade(&candidate, &[]).expect("admin may upgrade");
    assert!(upgraded.index > 0);
    assert_eq!(
        admin
            .propose(b"add 1")
            .expect("propose")
            .output
            .text
            .as_deref(),
        Some("3")
    );

    // The CLI sends a token from a file.
    let token_path = dir.path().join("write-token");
    std::fs::write(&token_path, format!("{WRITER}\n")).expect("write token");
    let output = node.cli(&[
        "propose",
        "--token-file",
        token_path.to_str().expect("utf-8"),
        "add 4",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "7");
    let output = node.cli(&["status"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("unauthenticated") && stderr.contains("RAFT_HOST_TOKEN"),
        "{stderr}"
    );
}

#[test]
fn t47_the_cli_speaks_tls_to_a_self_signed_node() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tokens = token_file(dir.path());
    let (cert, key) = certificate(dir.path());
    let node = NodeProcess::start(
        &dir.path().join("data"),
        &[
            "--api-tokens",
            tokens.to_str().expect("utf-8"),
            "--api-tls-cert",
            cert.to_str().expect("utf-8"),
            "--api-tls-key",
            key.to_str().expect("utf-8"),
        ],
    );
    assert!(
        node.api_url.starts_with("https://127.0.0.1:"),
        "{}",
        node.api_url
    );
    let cert_arg = cert.to_str().expect("utf-8");

    let output = node.cli(&["status", "--ca-cert", cert_arg, "--token", ADMIN]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("role:          leader"));

    let output = in_env(
        node.cli_command(&["propose", "--ca-cert", cert_arg, "add 5"]),
        WRITER,
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "5");

    // Without trusting the certificate the CLI refuses to talk.
    let output = node.cli(&["status", "--token", ADMIN]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("certificate") || stderr.contains("UnknownIssuer"),
        "{stderr}"
    );

    // Plain HTTP to the TLS port gets no API answer.
    let plain = node.api_url.replace("https://", "http://");
    match ApiClient::new(&plain).health() {
        Err(ApiClientError::Transport { reason, .. }) => {
            assert!(reason.contains("use an https:// URL"), "{reason}")
        }
        other => panic!("expected no answer, got {other:?}"),
    }
}

/// Run `command` with the token in `RAFT_HOST_TOKEN`.
fn in_env(mut command: std::process::Command, token: &str) -> std::process::Output {
    command
        .env("RAFT_HOST_TOKEN", token)
        .output()
        .expect("run raft-host client")
}

#[test]
fn t47_an_open_api_beyond_loopback_refuses_to_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let output = raft_host()
        .arg("--data-dir")
        .arg(&data)
        .args(["--api-addr", "0.0.0.0:0", "--bind-addr", "127.0.0.1:0"])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for needle in ["without authentication", "--api-tokens", "--api-insecure"] {
        assert!(stderr.contains(needle), "{needle}: {stderr}");
    }
    assert!(!data.exists(), "nothing is created before the refusal");

    // A token file others may read is refused like an ssh key.
    let tokens = token_file(dir.path());
    std::fs::set_permissions(&tokens, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let output = raft_host()
        .arg("--data-dir")
        .arg(&data)
        .args(["--api-addr", "127.0.0.1:0", "--bind-addr", "127.0.0.1:0"])
        .arg("--api-tokens")
        .arg(&tokens)
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("chmod 600"), "{stderr}");
    assert!(!data.exists());
}
