//! A node whose disk fills up stops with a clear error, and its process
//! exits non-zero (so a supervisor restarts it) instead of hanging in
//! sled's drop, which waits for a flush the full disk never completes.
//! Needs root (a small tmpfs is mounted), like the network tests.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::{self, NodeProcess};

/// A tmpfs of `size` mounted on a temp dir, unmounted when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> SmallDisk {
        let dir = tempfile::tempdir().expect("tempdir");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(status.success(), "mount a tmpfs (needs root)");
        SmallDisk { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

#[test]
fn t45_a_full_disk_ends_the_process_with_an_error() {
    if let Some(reason) = common::netns::skip_reason() {
        eprintln!("{reason}");
        return;
    }
    let disk = SmallDisk::mount("5m");
    let data_dir: PathBuf = disk.path().join("node");
    let mut node = NodeProcess::start(&data_dir, &[]);
    let client = node.client();
    // Entries of 100 KB (the counter guest rejects them, after they are
    // logged) until the disk is full and the node stops.
    let command = format!("add 1 {}", "x".repeat(100_000));
    let mut accepted = 0;
    let refusal = loop {
        match client.propose(command.as_bytes()) {
            Err(error) if !error.to_string().contains("guest_rejected") => break error,
            _ => accepted += 1,
        }
        assert!(accepted < 1_000, "5 MB never filled up");
    };
    assert!(accepted > 5, "stopped after {accepted} entries: {refusal}");
    let status = common::poll(Duration::from_secs(30), common::POLL_INTERVAL, || {
        node.child.try_wait().expect("try_wait")
    })
    .expect("the process exits after the fatal error");
    assert!(!status.success(), "exit status {status}");
    let log = node.take_log().join("\n");
    assert!(
        log.contains("No space left on device"),
        "the cause is logged: {log}"
    );
}
