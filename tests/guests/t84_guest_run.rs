//! `raft-host guest run`: a script against the counter (state in its
//! memory) and the kv-store guest (an in-memory store), from a file and
//! from piped stdin, showing results, fuel and state; bad files and bad
//! lines are refused with the line named.

use std::io::Write as _;
use std::process::{Command, Output, Stdio};

use crate::common;

fn guest_run(guest: &str, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_raft-host"))
        .args(["guest", "run"])
        .arg(common::guest(guest))
        .args(args)
        .env("RUST_LOG", "error")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run raft-host guest run");
    let mut input = child.stdin.take().expect("piped stdin");
    input
        .write_all(stdin.unwrap_or_default().as_bytes())
        .expect("write stdin");
    drop(input);
    child.wait_with_output().expect("wait for raft-host")
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The fuel a step's summary line reports.
fn fuel_of(summary: &str) -> u64 {
    summary
        .trim()
        .strip_prefix("fuel ")
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no fuel in {summary:?}"))
}

#[test]
fn t84_runs_a_script_on_a_memory_guest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("script.txt");
    std::fs::write(
        &script,
        "# a counter\napply add 5\napply nonsense\nquery get\nstate\n",
    )
    .expect("write the script");
    let out = stdout(&guest_run(
        "counter",
        &["--script", script.to_str().expect("UTF-8")],
        None,
    ));
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("guest counter "), "{out}");
    assert!(lines.contains(&"  example: apply add 5"), "{out}");
    let at = lines
        .iter()
        .position(|l| *l == "apply add 5")
        .expect("the step");
    assert_eq!(lines[at + 1], "  ok: \"5\"");
    assert!(fuel_of(lines[at + 2]) > 0, "{out}");
    assert!(lines[at + 2].ends_with("state 9 bytes"), "{out}");
    assert!(
        lines[at + 4].starts_with("  error: guest returned an error"),
        "{out}"
    );
    assert!(out.contains("query get\n  ok: \"5\"\n"), "{out}");
    assert!(
        out.contains("state\n  snapshot, 9 bytes: base64:AQUAAAAAAAAA"),
        "{out}"
    );
}

#[test]
fn t84_runs_piped_stdin_on_a_store_guest() {
    let out = stdout(&guest_run(
        "kv_store",
        &[],
        Some("apply put greeting hello\napply put user/1 alice\nquery get greeting\nstate\n"),
    ));
    assert!(out.contains("0.2.0, state in an in-memory store"), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    let at = lines
        .iter()
        .position(|l| *l == "apply put greeting hello")
        .expect("the step");
    assert_eq!(lines[at + 1], "  ok: \"OK\"");
    assert!(fuel_of(lines[at + 2]) > 0, "{out}");
    assert!(lines[at + 2].contains("wrote \"greeting\""), "{out}");
    assert!(
        out.contains("query get greeting\n  ok: \"hello\"\n"),
        "{out}"
    );
    assert!(out.contains("  \"greeting\" = \"hello\"\n"), "{out}");
    assert!(out.contains("  \"user/1\" = \"alice\"\n"), "{out}");
}

#[test]
fn t84_refuses_bad_files_and_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("missing.txt");
    let output = guest_run(
        "counter",
        &["--script", missing.to_str().expect("UTF-8")],
        None,
    );
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot read the script"), "{stderr}");

    let output = guest_run(
        "counter",
        &["--script", "-"],
        Some("apply add 1\npropose add 2\n"),
    );
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("- line 2: expected `state`, `apply`"),
        "{stderr}"
    );
    assert!(
        !String::from_utf8_lossy(&output.stdout).contains("ok:"),
        "nothing runs before the script is read whole"
    );

    let not_wasm = dir.path().join("not.wasm");
    std::fs::write(&not_wasm, "hello").expect("write");
    let output = Command::new(env!("CARGO_BIN_EXE_raft-host"))
        .args(["guest", "run", "--script", "-"])
        .arg(&not_wasm)
        .stdin(Stdio::null())
        .output()
        .expect("run raft-host");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.starts_with("error: loading "), "{stderr}");
}

/// On a terminal (a pseudo-terminal from `script(1)`, util-linux, fed the
/// lines through its stdin) `guest run` is a prompt: each line answered
/// after a `> `, a bad line reported and skipped (the session goes on),
/// Ctrl-D (the end of the input) ends it.
#[test]
fn t84_on_a_terminal_guest_run_is_a_prompt() {
    let command = format!(
        "{} guest run {}",
        env!("CARGO_BIN_EXE_raft-host"),
        common::guest("counter").display()
    );
    let mut child = Command::new("script")
        .args(["--quiet", "--return", "--command", &command, "/dev/null"])
        .env("TERM", "xterm")
        .env("RUST_LOG", "error")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run script(1)");
    let mut input = child.stdin.take().expect("piped stdin");
    input
        .write_all(b"apply add 5\nfrobnicate\napply add 2\nquery get\n")
        .expect("write stdin");
    drop(input);
    let output = child.wait_with_output().expect("wait for script");
    let shown = String::from_utf8_lossy(&output.stdout).replace('\r', "");
    assert!(output.status.success(), "{shown}");
    // The answers come after prompts, in order; the bad line did not end
    // the session.
    let answers: Vec<&str> = shown
        .lines()
        // An error follows its prompt on the same line.
        .map(|line| line.trim_start_matches("> "))
        .filter(|line| line.starts_with("  ok: ") || line.starts_with("error: "))
        .collect();
    assert_eq!(answers.len(), 4, "{shown}");
    assert_eq!(answers[0], "  ok: \"5\"", "{shown}");
    assert!(answers[1].starts_with("error: "), "{shown}");
    assert_eq!(answers[2], "  ok: \"7\"", "{shown}");
    assert_eq!(answers[3], "  ok: \"7\"", "{shown}");
    assert!(shown.matches("> ").count() >= 4, "{shown}");
}

/// `-o json`: one JSON object a line, the guest first, then each step with
/// its result, fuel and the keys it wrote or deleted, then the state.
#[test]
fn t84_guest_run_prints_json_lines() {
    let output = guest_run(
        "kv_store",
        &["-o", "json"],
        Some("apply put a 1\napply delete a\nquery get a\nstate\n"),
    );
    let lines: Vec<serde_json::Value> = stdout(&output)
        .lines()
        .map(|line| serde_json::from_str(line).expect("each line is JSON"))
        .collect();
    assert_eq!(lines.len(), 5, "{lines:?}");
    assert_eq!(lines[0]["guest"]["name"], "kv-store");
    let keys = |step: &serde_json::Value, list: &str| -> Vec<String> {
        step["store"][list]
            .as_array()
            .expect("a list of keys")
            .iter()
            .filter_map(|key| key["text"].as_str().map(str::to_owned))
            .collect()
    };
    assert_eq!(lines[1]["step"], "apply put a 1");
    assert_eq!(lines[1]["ok"]["text"], "OK");
    assert!(lines[1]["fuel"].as_u64() > Some(0));
    assert!(
        keys(&lines[1], "wrote").contains(&"a".to_string()),
        "{}",
        lines[1]
    );
    assert!(
        keys(&lines[2], "deleted").contains(&"a".to_string()),
        "{}",
        lines[2]
    );
    assert!(lines[3]["error"].is_string(), "a missing key: {}", lines[3]);
    let pairs = lines[4]["state"]["pairs"].as_array().expect("pairs");
    assert!(
        pairs.iter().all(|pair| pair["key"]["text"] != "a"),
        "{}",
        lines[4]
    );
}
