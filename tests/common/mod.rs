//! Fixtures shared by the integration tests: guest paths, library nodes,
//! real `raft-host` processes, and the one way tests wait, find the leader
//! and GET a URL.
//!
//! Each topic binary (`tests/<topic>/main.rs`) declares this module once
//! with `#[path = "../common/mod.rs"]`.

// Every binary compiles all of it and uses only part of it: a fixture
// unused by one topic is not dead code of the suite.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use iroh_raft::api::ApiClient;
use iroh_raft::node::{self, GuestSource, NoPeers, NodeConfig, NodeHandle, NodeStatus};
use iroh_raft::wasm::GuestLimits;

pub mod browser;
pub mod cluster;
pub mod jepsen;
pub mod netns;
pub mod power;
pub mod watch;

/// How long a test waits for a node process to print its API address.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a cluster may take to agree on something (elections take 1-2 s).
pub const CONVERGENCE_TIMEOUT: Duration = Duration::from_secs(60);
/// How often a waiting test re-checks the nodes.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Poll `check` every [`POLL_INTERVAL`] until it returns `Some`, or panic
/// with `what` after [`CONVERGENCE_TIMEOUT`]. Cluster state has no event a
/// test process could subscribe to, so tests poll the nodes' APIs.
pub fn wait_for<T>(what: &str, check: impl FnMut() -> Option<T>) -> T {
    poll(CONVERGENCE_TIMEOUT, POLL_INTERVAL, check)
        .unwrap_or_else(|| panic!("timed out waiting for {what}"))
}

/// Poll `check` every `interval` until it returns `Some`; `None` once
/// `timeout` has passed (for callers that handle "not yet" themselves).
pub fn poll<T>(
    timeout: Duration,
    interval: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(interval);
    }
}

/// The leader among `statuses`: of the nodes that say they lead, the one
/// with the highest term (a deposed leader may not know it yet).
pub fn leader_of(statuses: impl IntoIterator<Item = NodeStatus>) -> Option<NodeStatus> {
    statuses
        .into_iter()
        .filter(|s| s.role == "leader")
        .max_by_key(|s| s.term)
}

/// An HTTP answer, whatever its status.
pub struct HttpResponse {
    pub status: u16,
    pub content_type: String,
    pub headers: ureq::http::HeaderMap,
    pub body: String,
}

/// `GET url`; any status is an answer (panics only if there is none).
pub fn http_get(url: &str) -> HttpResponse {
    http_get_with(url, &[])
}

/// `GET url` with these extra headers (name, value).
pub fn http_get_with(url: &str, headers: &[(&str, &str)]) -> HttpResponse {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut request = agent.get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let mut response = request.call().unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = response
        .body_mut()
        .with_config()
        .limit(HTTP_BODY_LIMIT)
        .read_to_string()
        .unwrap_or_else(|e| panic!("body of GET {url}: {e}"));
    HttpResponse {
        status: response.status().as_u16(),
        content_type,
        headers: response.headers().clone(),
        body,
    }
}

/// The largest HTTP body a test reads (a node's results go up to 4 MiB,
/// JSON-escaped).
pub const HTTP_BODY_LIMIT: u64 = 64 * 1024 * 1024;

/// Path of a guest component built from `guests/` by the build script.
pub fn guest(name: &str) -> PathBuf {
    let path = match name {
        "counter" => env!("IROH_RAFT_GUEST_COUNTER"),
        "counter_v2" => env!("IROH_RAFT_GUEST_COUNTER_V2"),
        "counter_v2_reject" => env!("IROH_RAFT_GUEST_COUNTER_V2_REJECT"),
        "counter_v2_trap" => env!("IROH_RAFT_GUEST_COUNTER_V2_TRAP"),
        "kv" => env!("IROH_RAFT_GUEST_KV"),
        "kv_v2" => env!("IROH_RAFT_GUEST_KV_V2"),
        "kv_store" => env!("IROH_RAFT_GUEST_KV_STORE"),
        "kv_store_v2" => env!("IROH_RAFT_GUEST_KV_STORE_V2"),
        "hostile_store" => env!("IROH_RAFT_GUEST_HOSTILE_STORE"),
        "hostile_loop" => env!("IROH_RAFT_GUEST_HOSTILE_LOOP"),
        "hostile_memory" => env!("IROH_RAFT_GUEST_HOSTILE_MEMORY"),
        "hostile_trap" => env!("IROH_RAFT_GUEST_HOSTILE_TRAP"),
        "hostile_query_state" => env!("IROH_RAFT_GUEST_HOSTILE_QUERY_STATE"),
        "hostile_mix" => env!("IROH_RAFT_GUEST_HOSTILE_MIX"),
        "no_exports" => env!("IROH_RAFT_GUEST_NO_EXPORTS"),
        "kv_python" => env!("IROH_RAFT_GUEST_KV_PYTHON"),
        "kv_js" => env!("IROH_RAFT_GUEST_KV_JS"),
        "kv_store_python" => env!("IROH_RAFT_GUEST_KV_STORE_PYTHON"),
        "kv_store_js" => env!("IROH_RAFT_GUEST_KV_STORE_JS"),
        other => panic!("unknown guest {other}"),
    };
    let path = PathBuf::from(path);
    assert!(
        path.exists(),
        "{} is missing: build the Python and JavaScript guests with `make guests-polyglot` \
         (`make test` does)",
        path.display()
    );
    path
}

/// Start a library node on `dir` running `guest` with `limits`.
pub fn start_node(dir: &Path, guest_name: &str, limits: GuestLimits) -> NodeHandle {
    let config = NodeConfig {
        guest: GuestSource::File(guest(guest_name)),
        limits,
        ..NodeConfig::new(dir)
    };
    node::start(config, NoPeers).expect("node starts")
}

/// Propose text and return the result as text (panics on any error).
pub async fn propose_ok(node: &NodeHandle, command: &str) -> String {
    let applied = node
        .propose(command.as_bytes().to_vec())
        .await
        .unwrap_or_else(|e| panic!("propose {command:?}: {e}"));
    let bytes = applied
        .result
        .unwrap_or_else(|e| panic!("propose {command:?} failed in the guest: {e}"));
    String::from_utf8(bytes).expect("utf-8 result")
}

/// Query text and return the result as text (panics on any error).
pub async fn query_ok(node: &NodeHandle, request: &str) -> String {
    let answer = node
        .query(request.as_bytes().to_vec())
        .await
        .unwrap_or_else(|e| panic!("query {request:?}: {e}"));
    let bytes = answer
        .result
        .unwrap_or_else(|e| panic!("query {request:?} failed in the guest: {e}"));
    String::from_utf8(bytes).expect("utf-8 result")
}

/// The `raft-host` binary under test.
pub fn raft_host() -> Command {
    Command::new(env!("CARGO_BIN_EXE_raft-host"))
}

/// `raft-host`, run inside a network namespace when one is given.
pub fn in_netns(netns: Option<&str>) -> Command {
    match netns {
        None => raft_host(),
        Some(netns) => {
            let mut command = Command::new("ip");
            command
                .args(["netns", "exec", netns])
                .arg(env!("CARGO_BIN_EXE_raft-host"));
            command
        }
    }
}

/// A real `raft-host` node process, killed (SIGKILL) when dropped.
pub struct NodeProcess {
    pub child: Child,
    pub api_url: String,
    /// The network namespace the node runs in, if any (client commands then
    /// run there too).
    pub netns: Option<String>,
    /// The node's ticket, as it printed it.
    pub ticket: String,
    stderr_lines: mpsc::Receiver<String>,
    /// What it printed on stdout after its API line (the start banner).
    stdout_lines: mpsc::Receiver<String>,
}

/// A node process that printed its ticket but may not serve yet (a joining
/// node waits until an operator adds it).
pub struct StartingNode {
    child: Option<Child>,
    netns: Option<String>,
    pub ticket: String,
    api_rx: mpsc::Receiver<String>,
    stderr_lines: Option<mpsc::Receiver<String>>,
    stdout_lines: Option<mpsc::Receiver<String>>,
}

impl StartingNode {
    /// Wait until the node serves its API.
    pub fn wait_ready(mut self) -> NodeProcess {
        let mut child = self.child.take().expect("not yet taken");
        let stderr_lines = self.stderr_lines.take().expect("not yet taken");
        let stdout_lines = self.stdout_lines.take().expect("not yet taken");
        match self.api_rx.recv_timeout(STARTUP_TIMEOUT) {
            Ok(api_url) => NodeProcess {
                child,
                api_url,
                netns: self.netns.clone(),
                ticket: self.ticket.clone(),
                stderr_lines,
                stdout_lines,
            },
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                let log: Vec<String> = stderr_lines.try_iter().collect();
                panic!("raft-host did not become ready:\n{}", log.join("\n"));
            }
        }
    }
}

impl Drop for StartingNode {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A free UDP port on loopback (for nodes that must keep their address
/// across restarts).
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|socket| socket.local_addr())
        .expect("a free port")
        .port()
}

impl NodeProcess {
    /// Start `raft-host` with `args` on an ephemeral API port and wait until
    /// it prints its API address.
    pub fn start(data_dir: &Path, args: &[&str]) -> Self {
        Self::spawn(data_dir, args).wait_ready()
    }

    /// Start `raft-host` and wait only for its ticket.
    pub fn spawn(data_dir: &Path, args: &[&str]) -> StartingNode {
        Self::spawn_in(None, data_dir, args)
    }

    /// Like [`Self::spawn`], inside network namespace `netns` if given.
    pub fn spawn_in(netns: Option<&str>, data_dir: &Path, args: &[&str]) -> StartingNode {
        let mut command = in_netns(netns);
        command
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--api-addr", "127.0.0.1:0"]);
        if !args.contains(&"--bind-addr") {
            command.args(["--bind-addr", "127.0.0.1:0"]);
        }
        command.args(args);
        Self::spawn_command(netns, command)
    }

    /// Start a `raft-host` command the caller set up (its flags and
    /// environment: a test of how the node reads its settings) and wait
    /// only for its ticket.
    pub fn spawn_command(netns: Option<&str>, mut command: Command) -> StartingNode {
        let mut child = command
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn raft-host");
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let (ticket_tx, ticket_rx) = mpsc::channel();
        let (api_tx, api_rx) = mpsc::channel();
        let (out_tx, stdout_lines) = mpsc::channel();
        std::thread::spawn(move || {
            let mut api_seen = false;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if api_seen {
                    // Nobody may be listening: the send's error is no error.
                    let _ = out_tx.send(line.clone());
                }
                if let Some(rest) = line.strip_prefix("API: ") {
                    api_seen = true;
                    let url = rest
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_string();
                    let _ = api_tx.send(url);
                } else if let Some(ticket) = line.strip_prefix("ticket: ") {
                    let _ = ticket_tx.send(ticket.trim().to_string());
                }
            }
        });
        let (err_tx, stderr_lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if err_tx.send(line).is_err() {
                    break;
                }
            }
        });
        match ticket_rx.recv_timeout(STARTUP_TIMEOUT) {
            Ok(ticket) => StartingNode {
                child: Some(child),
                netns: netns.map(str::to_string),
                ticket,
                api_rx,
                stderr_lines: Some(stderr_lines),
                stdout_lines: Some(stdout_lines),
            },
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                let log: Vec<String> = stderr_lines.try_iter().collect();
                panic!("raft-host did not start:\n{}", log.join("\n"));
            }
        }
    }

    pub fn client(&self) -> ApiClient {
        ApiClient::new(&self.api_url)
    }

    /// Run a `raft-host` client subcommand against this node.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        self.cli_command(args)
            .output()
            .expect("run raft-host client")
    }

    /// The command [`Self::cli`] runs, for a test that sets more on it.
    pub fn cli_command(&self, args: &[&str]) -> Command {
        let (subcommand, rest) = args.split_first().expect("a subcommand");
        let mut command = in_netns(self.netns.as_deref());
        command
            .arg(subcommand)
            .args(["--api", &self.api_url])
            .args(rest);
        command
    }

    /// SIGKILL the process: no shutdown code runs.
    pub fn kill(mut self) {
        self.child.kill().expect("kill");
        self.child.wait().expect("reap");
    }

    /// The node's status through `raft-host status --json` (in its
    /// network namespace, if any); `None` if it does not answer.
    pub fn cli_status(&self) -> Option<NodeStatus> {
        let output = self.cli(&["status", "--json"]);
        if !output.status.success() {
            return None;
        }
        serde_json::from_slice(&output.stdout).ok()
    }

    /// The start banner's lines after its `API:` line, up to the line
    /// containing `last` (waits for them).
    pub fn banner_until(&self, last: &str) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let line = self
                .stdout_lines
                .recv_timeout(STARTUP_TIMEOUT)
                .unwrap_or_else(|_| panic!("no banner line with {last:?} after {lines:#?}"));
            let done = line.contains(last);
            lines.push(line);
            if done {
                return lines;
            }
        }
    }

    /// The log lines the node wrote since the last call (or since it
    /// started), for a test that keeps them.
    pub fn take_log(&self) -> Vec<String> {
        self.stderr_lines.try_iter().collect()
    }

    /// Wait until the node logs a line containing every one of `needles`;
    /// returns that line, or `None` after `timeout`.
    pub fn wait_for_log(&self, needles: &[&str], timeout: Duration) -> Option<String> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(std::time::Instant::now())?;
            let line = self.stderr_lines.recv_timeout(left).ok()?;
            if needles.iter().all(|needle| line.contains(needle)) {
                return Some(line);
            }
        }
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            // A failing test shows what the node logged last.
            let lines: Vec<String> = self.stderr_lines.try_iter().collect();
            let tail = &lines[lines.len().saturating_sub(LOG_LINES_ON_FAILURE)..];
            eprintln!("--- last log lines of the node at {} ---", self.api_url);
            for line in tail {
                eprintln!("{line}");
            }
        }
    }
}

/// Log lines of each node printed when a test fails.
pub const LOG_LINES_ON_FAILURE: usize = 40;
