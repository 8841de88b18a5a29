//! The real `raft-host` binary: the CLI and HTTP round trips, and SIGKILL
//! restarts that lose nothing acknowledged and apply nothing twice.

use crate::common::{self, NodeProcess};

fn stdout_of(output: &std::process::Output) -> String {
    assert!(
        output.status.success(),
        "command failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone())
        .expect("utf-8")
        .trim()
        .to_string()
}

#[test]
fn t20_cli_round_trip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = NodeProcess::start(dir.path(), &[]);
    assert_eq!(stdout_of(&node.cli(&["propose", "add 5"])), "5");
    assert_eq!(stdout_of(&node.cli(&["propose", "add 2"])), "7");
    assert_eq!(stdout_of(&node.cli(&["query", "get"])), "7");
    let status = stdout_of(&node.cli(&["status"]));
    assert!(status.contains("role:          leader"), "{status}");
    assert!(status.contains("guest:         counter 1.0.0"), "{status}");
    assert_eq!(stdout_of(&node.cli(&["health"])), "ok");

    // Binary-safe input and output: base64 in, base64 out.
    assert_eq!(
        stdout_of(&node.cli(&["propose", "--base64", "YWRkIDE="])), // "add 1"
        "OA=="                                                      // "8"
    );

    // A guest error: exit code 1, the code and the index on stderr.
    let rejected = node.cli(&["propose", "frobnicate"]);
    assert_eq!(rejected.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&rejected.stderr);
    assert!(stderr.contains("guest_rejected"), "{stderr}");
    assert!(stderr.contains("at index"), "{stderr}");

    // Nothing in the data dir is readable by anyone but its owner: the
    // log, the store, a snapshot (a whole copy of the state), the key.
    node.client().snapshot().expect("snapshot");
    let mut files = 0;
    let mut pending = vec![dir.path().to_path_buf()];
    while let Some(path) = pending.pop() {
        use std::os::unix::fs::PermissionsExt as _;
        let metadata = std::fs::symlink_metadata(&path).expect("metadata");
        assert_eq!(
            metadata.permissions().mode() & 0o077,
            0,
            "{} is open to others",
            path.display()
        );
        if metadata.is_dir() {
            pending.extend(
                std::fs::read_dir(&path)
                    .expect("read dir")
                    .map(|entry| entry.expect("entry").path()),
            );
        } else {
            files += 1;
        }
    }
    assert!(files >= 5, "only {files} files checked");
}

#[test]
fn t21_http_round_trip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = NodeProcess::start(dir.path(), &[]);
    let client = node.client();
    let first = client.propose(b"add 40").expect("propose");
    assert_eq!(first.output.text.as_deref(), Some("40"));
    let second = client.propose(b"add 2").expect("propose");
    assert_eq!(second.index, first.index + 1);
    let answer = client.query(b"get").expect("query");
    assert_eq!(answer.output.text.as_deref(), Some("42"));
    assert_eq!(answer.applied_index, second.index);
    let status = client.status().expect("status");
    assert_eq!(status.applied_index, second.index);
    assert_eq!(status.guest.hash.len(), 64);
}

#[test]
fn t22_sigkill_keeps_every_acknowledged_write_and_applies_none_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut acknowledged = 0u64;
    for round in 0..3 {
        let node = NodeProcess::start(dir.path(), &[]);
        let client = node.client();
        // After a restart the state is exactly what was acknowledged.
        let value = client.query(b"get").expect("query").output.text;
        assert_eq!(
            value,
            Some(acknowledged.to_string()),
            "after restart {round}"
        );
        // Clients write concurrently; the node is killed while writes may
        // still be in flight.
        let writers: Vec<_> = (0..4)
            .map(|_| {
                let client = client.clone();
                std::thread::spawn(move || {
                    let mut acked = 0u64;
                    for _ in 0..25 {
                        if client.propose(b"add 1").is_ok() {
                            acked += 1;
                        }
                    }
                    acked
                })
            })
            .collect();
        let acked_now: u64 = writers.into_iter().map(|w| w.join().expect("writer")).sum();
        assert_eq!(acked_now, 100);
        acknowledged += acked_now;
        node.kill();
    }
    let node = NodeProcess::start(dir.path(), &[]);
    let value = node.client().query(b"get").expect("query").output.text;
    assert_eq!(value, Some(acknowledged.to_string()));
}

#[test]
fn t23_sigkill_during_writes_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = NodeProcess::start(dir.path(), &[]);
    let client = node.client();
    let (acked_tx, acked_rx) = std::sync::mpsc::channel();
    let writer = {
        let client = client.clone();
        std::thread::spawn(move || {
            // Write until the node dies; count only acknowledged writes.
            while client.propose(b"add 1").is_ok() {
                if acked_tx.send(()).is_err() {
                    break;
                }
            }
        })
    };
    // Kill once a good number of writes were acknowledged, mid-stream.
    for _ in 0..200 {
        acked_rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("writes are acknowledged");
    }
    node.kill();
    writer.join().expect("writer");
    let acknowledged = 200 + acked_rx.try_iter().count() as i64;

    let node = NodeProcess::start(dir.path(), &[]);
    let value: i64 = node
        .client()
        .query(b"get")
        .expect("query")
        .output
        .text
        .expect("text")
        .parse()
        .expect("a number");
    // Every acknowledged write is there; at most the one in flight when the
    // node died may have committed without its acknowledgement.
    assert!(
        value == acknowledged || value == acknowledged + 1,
        "acknowledged {acknowledged}, found {value}"
    );
}

#[test]
fn t24_guest_output_goes_to_the_node_log_with_the_guest_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let guest = common::guest("hostile_trap");
    let node = NodeProcess::start(
        dir.path(),
        &["--guest", guest.to_str().expect("utf-8 path")],
    );
    assert_eq!(
        stdout_of(&node.cli(&["propose", "print from-the-guest"])),
        "printed"
    );
    let line = node
        .wait_for_log(
            &["hostile-trap", "stdout", "from-the-guest"],
            std::time::Duration::from_secs(10),
        )
        .expect("the guest's stdout line is in the node's log");
    assert!(line.contains("guest"), "{line}");
    node.wait_for_log(
        &["hostile-trap", "stderr", "from-the-guest"],
        std::time::Duration::from_secs(10),
    )
    .expect("the guest's stderr line is in the node's log");
}
