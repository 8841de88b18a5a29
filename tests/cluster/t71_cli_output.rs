//! What the client subcommands print (`-o text|json|table`, `--json`),
//! that their progress bars stay off a stderr that is not a terminal, and
//! that a node that cannot start says why once: no ticket, no iroh ERROR.

use std::io::BufRead as _;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use iroh_raft_client::NodeStatus;
use iroh_raft_client::upgrade::ComponentHistory;

use crate::common::{NodeProcess, guest, raft_host};

/// How long a watch may take to print a change that is already committed.
const WATCH_LINE_TIMEOUT: Duration = Duration::from_secs(30);

/// A successful run's stdout; its stderr must be empty (no progress bars,
/// no logs: stderr is not a terminal here).
fn quiet(output: &std::process::Output, what: &str) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{what} failed: {stderr}");
    assert!(
        stderr.is_empty(),
        "{what}: nothing on stderr, got {stderr:?}"
    );
    String::from_utf8(output.stdout.clone()).expect("utf-8 output")
}

fn json(output: &std::process::Output, what: &str) -> serde_json::Value {
    let stdout = quiet(output, what);
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {stdout}"))
}

/// The value of row `field` of a FIELD VALUE table.
fn field<'a>(table: &'a str, field: &str) -> Option<&'a str> {
    table.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?;
        rest.starts_with("  ").then(|| rest.trim())
    })
}

/// `raft-host kv ...` against `node` (`--api` goes after the nested
/// subcommand, so through the environment).
fn kv(node: &NodeProcess, args: &[&str]) -> std::process::Output {
    raft_host()
        .arg("kv")
        .args(args)
        .env("RAFT_HOST_API", &node.api_url)
        .output()
        .expect("run raft-host kv")
}

#[test]
fn t71_every_client_subcommand_prints_text_json_and_tables() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kv_store = guest("kv_store");
    let node = NodeProcess::start(
        &dir.path().join("node"),
        &["--guest", kv_store.to_str().expect("utf-8 path")],
    );

    // propose: the result alone on stdout in text, where it was committed
    // on stderr; index and term in JSON and in the table too.
    let text = node.cli(&["propose", "put k/a 1"]);
    assert!(text.status.success());
    assert_eq!(String::from_utf8_lossy(&text.stdout).trim(), "OK");
    let said = String::from_utf8_lossy(&text.stderr);
    assert!(
        said.starts_with("applied at index ") && said.contains("(term "),
        "{said}"
    );
    let proposed = json(
        &node.cli(&["propose", "-o", "json", "put k/b 2"]),
        "propose",
    );
    let index = proposed["index"].as_u64().expect("an index");
    assert!(
        index > 0 && proposed["term"].as_u64() > Some(0),
        "{proposed}"
    );
    assert_eq!(proposed["output"]["text"], "OK");
    let table = quiet(
        &node.cli(&["propose", "-o", "table", "put k/c 3"]),
        "propose",
    );
    assert!(table.starts_with("FIELD"), "{table}");
    let table_index: u64 = field(&table, "index").expect("index").parse().expect("n");
    assert_eq!(table_index, index + 1, "{table}");
    assert!(field(&table, "term").is_some() && field(&table, "result") == Some("OK"));
    // kv's proposals are proposals too.
    let put = json(&kv(&node, &["put", "k/d", "4", "--json"]), "kv put");
    assert_eq!(put["index"].as_u64(), Some(index + 2), "{put}");

    // query, and `--json` as the alias of `-o json`.
    let read = json(&node.cli(&["query", "--json", "get k/a"]), "query");
    assert_eq!(read["output"]["text"], "1");
    assert!(read["applied_index"].as_u64() >= Some(index + 2));
    let conflict = node.cli(&["query", "--json", "-o", "table", "get k/a"]);
    assert_eq!(
        conflict.status.code(),
        Some(2),
        "two formats: a usage error"
    );
    let bad = node.cli(&["status", "-o", "yaml"]);
    assert_eq!(bad.status.code(), Some(2), "an unknown format");

    // Lists as columns.
    let keys = quiet(&kv(&node, &["list", "k/", "-o", "table"]), "kv list");
    assert_eq!(keys, "KEY\nk/a\nk/b\nk/c\nk/d\n");
    let status: NodeStatus =
        serde_json::from_value(json(&node.cli(&["status", "-o", "json"]), "status"))
            .expect("a status");
    let legacy: NodeStatus =
        serde_json::from_value(json(&node.cli(&["status", "--json"]), "status --json"))
            .expect("a status");
    assert_eq!((status.id, legacy.id), (1, 1));
    let table = quiet(&node.cli(&["status", "-o", "table"]), "status");
    assert_eq!(field(&table, "role"), Some("leader"), "{table}");
    let header = table
        .lines()
        .find(|line| line.starts_with("ID "))
        .expect("the members' header");
    assert!(
        header.contains("ROLE") && header.contains("MATCH"),
        "{header}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("1 ") && l.contains("leader")),
        "a row per member: {table}"
    );
    let history: ComponentHistory =
        serde_json::from_value(json(&node.cli(&["components", "-o", "json"]), "components"))
            .expect("a history");
    let table = quiet(&node.cli(&["components", "-o", "table"]), "components");
    let rows: Vec<&str> = table.lines().collect();
    assert!(
        rows[0].starts_with("INDEX") && rows[0].contains("OUTCOME"),
        "{table}"
    );
    assert_eq!(rows.len(), history.records.len() + 1, "{table}");
    assert!(rows[1].contains("genesis") && rows[1].contains("kv-store"));

    // watch: one JSON line per entry, or table rows as they come.
    for (format, check) in [("json", "{\"type\":\"changes\""), ("table", "INDEX")] {
        let mut watch = node
            .cli_command(&["watch", "k/", "--since", "1", "-o", format])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn watch");
        let stdout = watch.stdout.take().expect("piped");
        // Read on a thread: a watch that prints nothing must fail the
        // test, not hang it.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let next = || {
            rx.recv_timeout(WATCH_LINE_TIMEOUT)
                .unwrap_or_else(|_| panic!("watch -o {format} printed no line"))
        };
        let first = next();
        assert!(first.starts_with(check), "{format}: {first}");
        if format == "table" {
            let row = next();
            let cells: Vec<&str> = row.split_whitespace().collect();
            assert_eq!(cells[1..], ["put", "k/a", "1"], "{row}");
        } else {
            let line: serde_json::Value = serde_json::from_str(&first).expect("JSON");
            assert_eq!(line["events"][0]["key"]["text"], "k/a", "{line}");
        }
        watch.kill().expect("kill the watch");
        watch.wait().expect("reap the watch");
    }

    // Single answers.
    assert_eq!(
        json(&node.cli(&["health", "-o", "json"]), "health")["status"],
        "ok"
    );
    let ready = json(&node.cli(&["ready", "-o", "json"]), "ready");
    assert_eq!(
        (ready["status"].as_str(), ready["leader_id"].as_u64()),
        (Some("ready"), Some(1))
    );
    let ticket = json(&node.cli(&["ticket", "-o", "json"]), "ticket");
    assert_eq!(ticket["ticket"], node.ticket.as_str());
    let table = quiet(&node.cli(&["ticket", "-o", "table"]), "ticket");
    assert_eq!(field(&table, "ticket"), Some(node.ticket.as_str()));
    let snapshot = json(&node.cli(&["snapshot", "-o", "json"]), "snapshot");
    assert!(snapshot["index"].as_u64() >= Some(index + 2), "{snapshot}");

    // A backup (a snapshot, then a download): its bar stays off stderr.
    let out = dir.path().join("backup.snap");
    let backup = json(
        &node.cli(&["backup", out.to_str().expect("utf-8 path"), "-o", "json"]),
        "backup",
    );
    assert_eq!(
        backup["bytes"].as_u64(),
        Some(std::fs::metadata(&out).expect("the backup").len())
    );

    // An upgrade (validation, upload, prepare round, activation) and a
    // rollback: their phases stay off stderr too.
    let v2 = guest("kv_store_v2");
    let upgraded = json(
        &node.cli(&[
            "upgrade",
            "--guest",
            v2.to_str().expect("utf-8"),
            "-o",
            "json",
        ]),
        "upgrade",
    );
    let hash = blake3::hash(&std::fs::read(&v2).expect("read v2")).to_hex();
    assert_eq!(upgraded["record"]["hash"], hash.as_str(), "{upgraded}");
    let rolled = quiet(&node.cli(&["rollback", "-o", "table"]), "rollback");
    assert_eq!(field(&rolled, "kind"), Some("rollback"), "{rolled}");
    // The count behind the upload's progress: every byte, once.
    let v2_bytes = std::fs::read(&v2).expect("read v2");
    let sent = Arc::new(AtomicU64::new(0));
    let again = node
        .client()
        .upgrade_with_progress(&v2_bytes, &[], &sent)
        .expect("upgrade again");
    assert_eq!(again.record.hash, hash.as_str());
    assert_eq!(sent.load(Ordering::Relaxed), v2_bytes.len() as u64);
}

/// On a terminal the same calls draw their progress: `backup` run under
/// `script(1)` (a pseudo-terminal; util-linux, Debian's essential
/// `bsdutils`) shows its three phases on the terminal, and still writes
/// the file.
#[test]
fn t71_on_a_terminal_a_backup_draws_its_progress() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = NodeProcess::start(
        dir.path(),
        &["--guest", guest("kv_store").to_str().expect("utf-8")],
    );
    node.client()
        .propose(b"put greeting hello")
        .expect("a write");
    let out = dir.path().join("on-a-terminal.snap");
    let line = format!(
        "{} backup {} --api {}",
        env!("CARGO_BIN_EXE_raft-host"),
        out.display(),
        node.api_url
    );
    let terminal = Command::new("script")
        .args(["--quiet", "--return", "--command", &line, "/dev/null"])
        .env("TERM", "xterm")
        .stdin(Stdio::null())
        .output()
        .expect("run script(1)");
    let shown = String::from_utf8_lossy(&terminal.stdout);
    assert!(terminal.status.success(), "backup on a terminal: {shown}");
    for phase in ["taking a snapshot", "downloading", "checking the backup"] {
        assert!(
            shown.contains(phase),
            "no {phase:?} on the terminal: {shown:?}"
        );
    }
    assert!(std::fs::metadata(&out).expect("the backup").len() > 0);
}

#[test]
fn t71_add_node_prints_its_answer_without_progress_noise() {
    let dirs = [
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    ];
    let first = NodeProcess::start(dirs[0].path(), &["--id", "1"]);
    let joining = NodeProcess::spawn(
        dirs[1].path(),
        &["--id", "2", "--join", first.ticket.as_str()],
    );
    let added = json(
        &first.cli(&["add-node", joining.ticket.as_str(), "-o", "json"]),
        "add-node",
    );
    assert_eq!(
        (added["id"].as_u64(), added["role"].as_str()),
        (Some(2), Some("voter"))
    );
    assert!(added["index"].as_u64() > Some(0), "{added}");
    let second = joining.wait_ready();
    assert_eq!(second.client().status().expect("status").id, 2);
}

/// Run a node that must fail to start; returns (stdout, stderr).
fn failed_start(mut command: Command) -> (String, String) {
    let output = command
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .output()
        .expect("run raft-host");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    (stdout, stderr)
}

/// The cause once, as the one error line; no ERROR log line, no ticket.
fn says_once(stdout: &str, stderr: &str, cause: &str) {
    assert_eq!(
        stderr.matches(cause).count(),
        1,
        "the cause {cause:?} exactly once:\n{stderr}"
    );
    let error_lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(error_lines.len(), 1, "one error line:\n{stderr}");
    assert!(error_lines[0].contains(cause), "{stderr}");
    assert!(!stderr.contains("ERROR"), "no ERROR log line:\n{stderr}");
    assert!(
        !stdout.contains("ticket:"),
        "no ticket before a refusal:\n{stdout}"
    );
}

fn node_command(data_dir: &std::path::Path, api_addr: &str) -> Command {
    let mut command = raft_host();
    command.arg("--data-dir").arg(data_dir).args([
        "--api-addr",
        api_addr,
        "--bind-addr",
        "127.0.0.1:0",
    ]);
    command
}

#[test]
fn t71_a_node_that_cannot_start_says_why_once() {
    let dir = tempfile::tempdir().expect("tempdir");

    // A data dir another node holds.
    let data_dir = dir.path().join("held");
    let _holder = NodeProcess::start(&data_dir, &[]);
    let (stdout, stderr) = failed_start(node_command(&data_dir, "127.0.0.1:0"));
    says_once(&stdout, &stderr, "is another node using this directory?");

    // A guest file that is no component.
    let mut command = node_command(&dir.path().join("bad-guest"), "127.0.0.1:0");
    command.args(["--guest", "/etc/passwd"]);
    let (stdout, stderr) = failed_start(command);
    says_once(&stdout, &stderr, "not a WebAssembly component");

    // An API address in use.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let addr = taken.local_addr().expect("its address").to_string();
    let (stdout, stderr) = failed_start(node_command(&dir.path().join("port"), &addr));
    says_once(&stdout, &stderr, &addr);
}
