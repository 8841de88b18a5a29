//! What operators' tools rely on (issue 18): `GET /ready` for load
//! balancers, the JSON error body on a 404 and a 405, JSON log lines for
//! log shippers, and the systemd unit in `packaging/`.

use std::process::Command;
use std::time::{Duration, Instant};

use iroh_raft::api::ErrorBody;
use iroh_raft::limits::{MAX_ELECTION_TICKS, TICK_INTERVAL};

use crate::common::cluster::Cluster;
use crate::common::{HttpResponse, NodeProcess, POLL_INTERVAL, http_get, poll, wait_for};

/// The `error.code` of a JSON error answer; panics on any other body.
fn error_code(response: &HttpResponse) -> String {
    assert!(
        response.content_type.starts_with("application/json"),
        "{} {}: {}",
        response.status,
        response.content_type,
        response.body
    );
    let body: ErrorBody = serde_json::from_str(&response.body)
        .unwrap_or_else(|e| panic!("not an error body ({e}): {}", response.body));
    body.error.code
}

#[test]
fn t69_ready_on_a_healthy_cluster_and_no_leader_once_cut_off() {
    let mut cluster = Cluster::start(3, "kv", &[]);
    let leader = cluster.leader();
    // Every member: followers learn the leader from its heartbeats.
    for member in &cluster.members {
        let url = format!("{}/ready", member.process().api_url);
        let ready = wait_for(&format!("node {} ready", member.id), || {
            let response = http_get(&url);
            (response.status == 200).then_some(response)
        });
        let body: serde_json::Value = serde_json::from_str(&ready.body).expect("JSON");
        assert_eq!(body["status"], "ready", "{}", ready.body);
        assert_eq!(body["leader_id"], leader, "{}", ready.body);
        assert!(
            body["applied_index"].as_u64() <= body["commit_index"].as_u64(),
            "{}",
            ready.body
        );
    }

    // The CLI's readiness probe agrees.
    let output = cluster.member(leader).process().cli(&["ready"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(
        stdout.starts_with(&format!("ready (leader {leader}")),
        "{stdout}"
    );

    // The leader loses both followers: check-quorum makes it step down
    // within two election timeouts, and it must then say it is not ready.
    let followers: Vec<u64> = cluster
        .members
        .iter()
        .map(|m| m.id)
        .filter(|&id| id != leader)
        .collect();
    for id in followers {
        cluster.member_mut(id).kill();
    }
    let url = format!("{}/ready", cluster.member(leader).process().api_url);
    let max_election_timeout = TICK_INTERVAL * MAX_ELECTION_TICKS as u32;
    // Two election timeouts for check-quorum, one more for a loaded machine.
    let bound = max_election_timeout * 3;
    let cut_off = Instant::now();
    let refused = poll(bound, POLL_INTERVAL, || {
        let response = http_get(&url);
        (response.status != 200).then_some(response)
    })
    .unwrap_or_else(|| panic!("node {leader} still ready {bound:?} after losing its quorum"));
    eprintln!("not ready after {:?}", cut_off.elapsed());
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert_eq!(error_code(&refused), "no_leader", "{}", refused.body);
    let output = cluster.member(leader).process().cli(&["ready"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(
        stderr.contains("not ready") && stderr.contains("no_leader"),
        "{stderr}"
    );
    // `/health` still passes: the node works, it just cannot serve.
    assert_eq!(
        http_get(&format!(
            "{}/health",
            cluster.member(leader).process().api_url
        ))
        .status,
        200
    );
}

/// A request with `method` to `url`, answered whatever its status.
fn request(method: &str, url: &str) -> HttpResponse {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let request = ureq::http::Request::builder()
        .method(method)
        .uri(url)
        .body(())
        .expect("a request");
    let mut response = agent
        .run(request)
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let content_type = header("content-type");
    let headers = response.headers().clone();
    let body = response
        .body_mut()
        .read_to_string()
        .unwrap_or_else(|e| panic!("body of {method} {url}: {e}"));
    HttpResponse {
        status: response.status().as_u16(),
        content_type,
        headers,
        body,
    }
}

#[test]
fn t69_404_and_405_answer_the_json_error_body() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = NodeProcess::start(dir.path(), &[]);
    let api = &node.api_url;

    let missing = http_get(&format!("{api}/v1/nope"));
    assert_eq!(missing.status, 404, "{}", missing.body);
    assert_eq!(error_code(&missing), "not_found");

    for (method, path, allowed) in [
        ("GET", "/v1/propose", "POST"),
        ("DELETE", "/v1/status", "GET"),
        ("DELETE", "/ready", "GET"),
        ("DELETE", "/v1/upgrade", "POST"),
        ("GET", "/v1/members/3", "DELETE"),
    ] {
        let response = request(method, &format!("{api}{path}"));
        assert_eq!(response.status, 405, "{method} {path}: {}", response.body);
        assert_eq!(
            error_code(&response),
            "method_not_allowed",
            "{method} {path}"
        );
        let allow = response
            .headers
            .get("allow")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(allow.contains(allowed), "{method} {path}: Allow {allow:?}");
    }
}

#[test]
fn t69_log_format_json_writes_one_object_a_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = NodeProcess::start(dir.path(), &["--log-format", "json"]);
    // Every line from the start up to the one saying it leads.
    let mut lines: Vec<String> = Vec::new();
    wait_for("the node to log its role", || {
        lines.extend(node.take_log());
        lines
            .iter()
            .any(|l| l.contains("raft role changed"))
            .then_some(())
    });
    for line in lines.iter().filter(|l| !l.trim().is_empty()) {
        let value: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("a log line that is not JSON ({e}): {line}"));
        for key in ["timestamp", "level", "target"] {
            assert!(value[key].is_string(), "no `{key}` in {line}");
        }
        assert!(
            value["fields"]["message"].is_string(),
            "no `fields.message` in {line}"
        );
    }
    let role = lines
        .iter()
        .find(|l| l.contains("raft role changed"))
        .expect("found above");
    let value: serde_json::Value = serde_json::from_str(role).expect("checked above");
    assert_eq!(value["level"], "INFO", "{role}");
    assert_eq!(value["fields"]["role"], "Leader", "{role}");
    // The node's span carries its id, as in the text format.
    assert_eq!(value["span"]["id"], 1, "{role}");

    // The default is text: not JSON.
    let dir = tempfile::tempdir().expect("tempdir");
    let text = NodeProcess::start(dir.path(), &[]);
    let line = text
        .wait_for_log(&["raft role changed"], Duration::from_secs(30))
        .expect("a log line about the role");
    assert!(
        serde_json::from_str::<serde_json::Value>(&line).is_err(),
        "{line}"
    );

    // An unknown format is refused by the argument parser.
    let output = Command::new(env!("CARGO_BIN_EXE_raft-host"))
        .args(["--log-format", "xml"])
        .output()
        .expect("run raft-host");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--log-format"), "{stderr}");
}

#[test]
fn t69_systemd_unit_passes_systemd_analyze_verify() {
    let Ok(analyze) = which("systemd-analyze") else {
        eprintln!("SKIPPED t69_systemd_unit: systemd-analyze not found on PATH");
        return;
    };
    let unit = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../packaging/raft-host.service")
        .canonicalize()
        .expect("packaging/raft-host.service exists");
    // `verify` checks that ExecStart's binary exists: point it at the one
    // cargo built, in a copy of the unit.
    let dir = tempfile::tempdir().expect("tempdir");
    let text = std::fs::read_to_string(&unit).expect("read the unit");
    assert!(
        text.contains("ExecStart=/usr/local/bin/raft-host "),
        "the unit's ExecStart changed; update this test"
    );
    // The hardening the README promises.
    for setting in [
        "DynamicUser=yes",
        "StateDirectory=raft-host",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=\n",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_NETLINK AF_UNIX",
        "SystemCallFilter=@system-service",
    ] {
        assert!(text.contains(setting), "the unit lacks {setting:?}");
    }
    let copy = dir.path().join("raft-host.service");
    std::fs::write(
        &copy,
        text.replace(
            "ExecStart=/usr/local/bin/raft-host ",
            &format!("ExecStart={} ", env!("CARGO_BIN_EXE_raft-host")),
        ),
    )
    .expect("write the copy");
    let output = Command::new(analyze)
        .arg("verify")
        .arg(&copy)
        .env("SYSTEMD_LOG_LEVEL", "notice")
        .output()
        .expect("run systemd-analyze");
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Any complaint about our unit (unknown keys, bad values) fails it;
    // messages about the machine's own units are not ours.
    let ours: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("raft-host.service"))
        .collect();
    assert!(
        output.status.success() && ours.is_empty(),
        "systemd-analyze verify: {:?}\n{stderr}",
        output.status
    );
}

/// The path of `program` on `PATH`.
fn which(program: &str) -> Result<std::path::PathBuf, ()> {
    let path = std::env::var_os("PATH").ok_or(())?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
        .ok_or(())
}

/// The compose file hands every node `RAFT_HOST_JOIN`, empty for node 1 (and
/// for restarts): empty must mean "no ticket", anything else a ticket.
#[test]
fn t69_an_empty_raft_host_join_starts_a_new_cluster() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_raft-host"))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--api-addr", "127.0.0.1:0", "--bind-addr", "127.0.0.1:0"])
        .env("RAFT_HOST_JOIN", "")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn raft-host");
    let stdout = child.stdout.take().expect("piped");
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // A new cluster's node leads at once; a joining one would wait, so
    // wait for the line with a deadline.
    let deadline = Instant::now() + crate::common::STARTUP_TIMEOUT;
    let mut leads = false;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match lines.recv_timeout(left) {
            Ok(line) if line.contains("is leader") => {
                leads = true;
                break;
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(leads, "the node did not start a cluster of its own");

    let output = Command::new(env!("CARGO_BIN_EXE_raft-host"))
        .arg("--data-dir")
        .arg(dir.path().join("other"))
        .env("RAFT_HOST_JOIN", "not-a-ticket")
        .output()
        .expect("run raft-host");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("--join"), "{stderr}");
    assert!(!dir.path().join("other").exists(), "created the data dir");
}

/// `packaging/` in the repository.
fn packaging(file: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../packaging")
        .join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `raft-host ARGS --help` exits 0 only when clap accepts every flag and
/// value before `--help`: the packaging's command lines still fit the CLI.
fn assert_cli_accepts(origin: &str, args: &[String]) {
    let output = Command::new(env!("CARGO_BIN_EXE_raft-host"))
        .args(args)
        .arg("--help")
        .output()
        .expect("run raft-host");
    assert!(
        output.status.success(),
        "{origin}: raft-host refuses {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The container image and the compose file cannot be built or run here
/// (no container runtime on the machines that run the tests), so check
/// what can go stale: their command lines against the CLI, and the files
/// the Dockerfile copies against what the build makes.
#[test]
fn t69_packaging_command_lines_fit_the_cli() {
    let dockerfile = packaging("Dockerfile");
    // The JSON-array instructions: ENTRYPOINT + CMD, and the health
    // check's `CMD` (on the line after `HEALTHCHECK`).
    let json_arrays = |prefix: &str| -> Vec<Vec<String>> {
        dockerfile
            .lines()
            .map(str::trim)
            .filter_map(|l| l.strip_prefix(prefix))
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}")))
            .collect()
    };
    assert_eq!(json_arrays("ENTRYPOINT "), [["raft-host"]]);
    let cmds = json_arrays("CMD ");
    assert_eq!(cmds.len(), 2, "the health check's CMD and the image's");
    for cmd in cmds {
        match cmd.split_first() {
            Some((program, args)) if program == "raft-host" => {
                assert_eq!(args.first().map(String::as_str), Some("health"));
                assert_cli_accepts("Dockerfile HEALTHCHECK", args);
            }
            _ => assert_cli_accepts("Dockerfile CMD", &cmd),
        }
    }
    assert!(dockerfile.contains("--profile dist --bin raft-host"));
    assert!(
        packaging("../Cargo.toml").contains("[profile.dist]"),
        "the Dockerfile builds with the profile `dist`"
    );
    // Each guest the image ships is one the build makes.
    let guests_dir = "target/guests/wasm32-wasip2/release/";
    let shipped: Vec<&str> = dockerfile
        .split_whitespace()
        .filter_map(|word| word.strip_prefix(guests_dir))
        .filter_map(|file| file.strip_suffix(".wasm"))
        .collect();
    assert_eq!(shipped, ["kv", "kv_store", "counter"]);
    for name in &shipped {
        assert!(crate::common::guest(name).is_file(), "{name}");
    }

    // The compose services' commands (flow sequences, one per service).
    let compose = packaging("docker-compose.yml");
    let mut commands = 0;
    for chunk in compose.split("command: [").skip(1) {
        let list = chunk.split(']').next().expect("a closing bracket");
        let args: Vec<String> = list
            .split(',')
            .map(|word| word.trim().trim_matches('"').to_string())
            .filter(|word| !word.is_empty())
            .collect();
        if let Some(guest) = args.iter().skip_while(|a| *a != "--guest").nth(1) {
            let file = guest
                .strip_prefix("/usr/local/share/raft-host/guests/")
                .expect("a guest the image ships");
            assert!(
                dockerfile.contains(&format!("{guests_dir}{file}")),
                "{file}"
            );
        }
        assert_cli_accepts("docker-compose.yml", &args);
        commands += 1;
    }
    assert_eq!(commands, 3, "three nodes");

    // The systemd environment file's node arguments (the active line).
    let env = packaging("raft-host.env");
    let args = env
        .lines()
        .find_map(|l| l.strip_prefix("RAFT_HOST_ARGS="))
        .expect("RAFT_HOST_ARGS");
    let args: Vec<String> = args.split_whitespace().map(str::to_string).collect();
    assert_cli_accepts("raft-host.env", &args);
}
