//! The `raft-host` command line as an operator uses it: commands and
//! requests from a file or stdin (larger than a command line may be),
//! the node's flags from a TOML config file and from `RAFT_HOST_*`
//! environment variables (command line > environment > file), a config
//! file with an unknown key refused as a usage error, the completion
//! scripts and man page, and the exit codes and one error format of the
//! client subcommands (the dry run's exit 3 is checked in `t57_upgrades`,
//! a compacted watch's here).

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::common::{NodeProcess, free_udp_port, guest, raft_host};

/// Bigger than Linux's limit on one argument (`MAX_ARG_STRLEN`, 128 KiB),
/// so this value can only reach the node through a file or stdin.
const LARGE_VALUE_BYTES: usize = 200 * 1024;

/// Run `command` with `input` on its stdin.
fn with_stdin(mut command: Command, input: &[u8]) -> std::process::Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn raft-host client");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(input)
        .expect("write stdin");
    child.wait_with_output().expect("wait for raft-host client")
}

fn stdout(output: &std::process::Output) -> String {
    assert!(
        output.status.success(),
        "raft-host failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).expect("utf-8 output")
}

#[test]
fn t67_commands_and_requests_from_a_file_and_stdin() {
    let dir = tempfile::tempdir().expect("tempdir");
    let guest_path = guest("kv_store");
    let guest_path = guest_path.to_str().expect("utf-8 path");
    let node = NodeProcess::start(&dir.path().join("node"), &["--guest", guest_path]);

    // A command over the argument limit, from a file.
    let value: String = (0..LARGE_VALUE_BYTES)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let command_file = dir.path().join("put.txt");
    std::fs::write(&command_file, format!("put k {value}\n")).expect("write the command");
    let file = command_file.to_str().expect("utf-8 path");
    stdout(&node.cli(&["propose", "-f", file]));

    // The request from stdin (`-`), its final newline dropped.
    let got = stdout(&with_stdin(node.cli_command(&["query", "-"]), b"get k\n"));
    assert_eq!(got.trim_end_matches('\n'), value, "the value read back");
    // `-f -` is stdin too.
    let got = stdout(&with_stdin(
        node.cli_command(&["query", "-f", "-"]),
        b"get k",
    ));
    assert_eq!(got.trim_end_matches('\n'), value);

    // With --base64 the file and stdin hold base64; `-` as a command is
    // stdin, never the literal `-`.
    let b64_file = dir.path().join("put.b64");
    std::fs::write(&b64_file, "cHV0IGIgeA==\n").expect("write the command"); // put b x
    let file = b64_file.to_str().expect("utf-8 path");
    stdout(&node.cli(&["propose", "--base64", "-f", file]));
    let got = stdout(&with_stdin(
        node.cli_command(&["query", "--base64", "-"]),
        b"Z2V0IGI=", // get b
    ));
    assert_eq!(got.trim_end(), "eA==", "`x` as base64");
    stdout(&with_stdin(node.cli_command(&["propose", "-"]), b"put c y"));
    assert_eq!(stdout(&node.cli(&["query", "get c"])).trim_end(), "y");

    // Both an argument and a file, or neither: usage errors.
    let both = node.cli(&["propose", "get k", "-f", file]);
    assert_eq!(both.status.code(), Some(2), "argument and --file");
    let neither = node.cli(&["query"]);
    assert_eq!(neither.status.code(), Some(2), "no request");
}

/// A free TCP port on loopback, for an API address set in a file.
fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// `raft-host` with no `RAFT_HOST_*` variable of the test's environment.
fn clean_raft_host() -> Command {
    let mut command = raft_host();
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("RAFT_HOST_") {
            command.env_remove(name);
        }
    }
    command
}

fn write_config(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write the config file");
}

#[test]
fn t67_node_flags_from_a_config_file_the_environment_and_the_command_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("data");
    let file_port = free_tcp_port();
    let bind_port = free_udp_port();
    let config = dir.path().join("node.toml");
    write_config(
        &config,
        &format!(
            "data-dir = {:?}\napi-addr = \"127.0.0.1:{file_port}\"\nguest = {:?}\n\
             bind-addr = \"127.0.0.1:{bind_port}\"\n",
            data_dir.to_str().expect("utf-8 path"),
            guest("kv_store").to_str().expect("utf-8 path"),
        ),
    );

    // Only the file: every setting comes from it.
    let mut command = clean_raft_host();
    command.arg("--config").arg(&config);
    let node = NodeProcess::spawn_command(None, command).wait_ready();
    assert_eq!(node.api_url, format!("http://127.0.0.1:{file_port}"));
    assert!(
        node.ticket.ends_with(&format!("@127.0.0.1:{bind_port}")),
        "the ticket {} names the file's bind address",
        node.ticket
    );
    let status = node.client().status().expect("status");
    assert_eq!(status.guest.name, "kv-store", "the file's guest");
    assert_eq!(Path::new(&status.data_dir), data_dir, "the file's data dir");
    node.kill();

    // The environment wins over the file.
    let env_port = free_tcp_port();
    let mut command = clean_raft_host();
    command
        .arg("--config")
        .arg(&config)
        .env("RAFT_HOST_API_ADDR", format!("127.0.0.1:{env_port}"));
    let node = NodeProcess::spawn_command(None, command).wait_ready();
    assert_eq!(node.api_url, format!("http://127.0.0.1:{env_port}"));
    let status = node.client().status().expect("status");
    assert_eq!(Path::new(&status.data_dir), data_dir, "still the file's");
    node.kill();

    // The command line wins over the environment; RAFT_HOST_CONFIG names
    // the file.
    let flag_port = free_tcp_port();
    let mut command = clean_raft_host();
    command
        .args(["--api-addr", &format!("127.0.0.1:{flag_port}")])
        .env("RAFT_HOST_CONFIG", &config)
        .env("RAFT_HOST_API_ADDR", format!("127.0.0.1:{env_port}"));
    let node = NodeProcess::spawn_command(None, command).wait_ready();
    assert_eq!(node.api_url, format!("http://127.0.0.1:{flag_port}"));
    node.kill();
}

#[test]
fn t67_a_config_file_with_an_unknown_key_or_a_bad_value_is_a_usage_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("data");
    let config = dir.path().join("node.toml");

    write_config(
        &config,
        &format!(
            "data-dir = {:?}\nsnapshot-evry = 5\n",
            data_dir.to_str().expect("utf-8 path")
        ),
    );
    let output = clean_raft_host()
        .arg("--config")
        .arg(&config)
        .output()
        .expect("run raft-host");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "a usage error: {stderr}");
    assert!(
        stderr.contains("unknown key `snapshot-evry`")
            && stderr.contains(config.to_str().expect("utf-8 path")),
        "names the key and the file: {stderr}"
    );
    assert!(!data_dir.exists(), "refused before creating the data dir");

    write_config(&config, "data_dir = \"x\"\n");
    let output = clean_raft_host()
        .arg("--config")
        .arg(&config)
        .output()
        .expect("run raft-host");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("did you mean `data-dir`?"), "{stderr}");

    write_config(&config, "api-addr = \"localhost\"\n");
    let output = clean_raft_host()
        .arg("--config")
        .arg(&config)
        .output()
        .expect("run raft-host");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("bad value for `api-addr`")
            && stderr.contains(config.to_str().expect("utf-8 path")),
        "names the key and the file: {stderr}"
    );

    // A certificate without its key would serve plain http: refused like
    // the same flags on a command line.
    write_config(&config, "api-tls-cert = \"cert.pem\"\n");
    let output = clean_raft_host()
        .arg("--config")
        .arg(&config)
        .output()
        .expect("run raft-host");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--api-tls-key"), "{stderr}");
}

#[test]
fn t67_completion_scripts_and_the_man_page() {
    let run = |args: &[&str]| {
        let output = raft_host().args(args).output().expect("run raft-host");
        stdout(&output)
    };
    let bash = run(&["completion", "bash"]);
    assert!(bash.contains("propose"), "bash completes the subcommands");
    assert!(bash.contains("--data-dir"), "and the node's flags");
    assert!(run(&["completion", "zsh"]).contains("propose"));
    assert!(run(&["completion", "fish"]).contains("propose"));
    let man = run(&["man"]);
    assert!(man.contains(".TH"), "a roff page");
    assert!(
        man.contains("RAFT_HOST_DATA_DIR"),
        "with the environment variables"
    );
    let bad = raft_host()
        .args(["completion", "tcsh"])
        .output()
        .expect("run raft-host");
    assert_eq!(bad.status.code(), Some(2), "an unknown shell");
}

#[test]
fn t67_client_errors_have_one_format_and_distinct_exit_codes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let guest_path = guest("kv_store");
    let guest_path = guest_path.to_str().expect("utf-8 path");
    let node = NodeProcess::start(
        &dir.path().join("node"),
        &["--guest", guest_path, "--watch-history", "2"],
    );

    // The guest refuses a committed command: its code and index, exit 1.
    let output = node.cli(&["propose", "frobnicate k"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with("error [guest_rejected] at index "),
        "{stderr}"
    );
    // The node refuses a request (an empty command): its code, exit 1.
    let output = node.cli(&["propose", ""]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.starts_with("error [empty_command]: "), "{stderr}");
    // No node there: the client's code, exit 1.
    let closed = format!("http://127.0.0.1:{}", free_tcp_port());
    let output = raft_host()
        .args(["status", "--api", &closed])
        .output()
        .expect("run raft-host");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.starts_with("error [transport]: "), "{stderr}");
    let output = raft_host()
        .args(["health", "--api", &closed])
        .output()
        .expect("run raft-host");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.starts_with("error [transport]: "), "{stderr}");
    // A local problem (a missing file): no code, exit 1.
    let output = node.cli(&["propose", "-f", "/nonexistent/command"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with("error: reading /nonexistent/command"),
        "{stderr}"
    );
    // A usage error: exit 2.
    let output = node.cli(&["propose", "--consistency", "stale", "x"]);
    assert_eq!(output.status.code(), Some(2));
    // A watch from before the history kept must start again: exit 3.
    for i in 0..5 {
        stdout(&node.cli(&["propose", &format!("put k{i} v")]));
    }
    let output = node.cli(&["watch", "--since", "1"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(stderr.starts_with("error [compacted]: "), "{stderr}");
}
