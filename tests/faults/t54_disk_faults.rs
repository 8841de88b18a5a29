//! A disk that fails under a writing node, through the `powercut` FUSE
//! filesystem: `fsync` answering `EIO` (a failing device) and `ENOSPC` on
//! write (a full disk, the FUSE form of t45's tmpfs). Either way the node
//! must stop with the cause logged and its process exit non-zero within
//! seconds (so a supervisor restarts it); then the power is cut (what was
//! not synced is gone, as after `EIO` Linux may already have dropped the
//! dirty pages), the fault cleared, and the restarted node must hold every
//! acknowledged write and take new ones.

use std::time::{Duration, Instant};

use crate::common::power::{CutMode, Faults, PowerDisk, WRITERS, counter, start_writers};
use crate::common::{self, NodeProcess};

/// Writes acknowledged before the fault is injected.
const ACKS_BEFORE_FAULT: usize = 30;
/// How long the node may take to exit after the fault. Seconds, not the
/// minutes a hung process would take: in practice it exits well within one.
const EXIT_TIMEOUT: Duration = Duration::from_secs(20);
const ACK_TIMEOUT: Duration = Duration::from_secs(30);

/// Start a node, write, inject `faults` while clients write, check the
/// process exits non-zero logging `cause`, cut the power, clear the
/// fault, restart and check every acknowledged write.
fn fault_under_load(faults: Faults, cause: &str) {
    let Some(mut disk) = PowerDisk::mount() else {
        return;
    };
    let data_dir = disk.path().join("node");
    let mut node = NodeProcess::start(&data_dir, &[]);
    let (acked_rx, writers) = start_writers(&node);
    for _ in 0..ACKS_BEFORE_FAULT {
        acked_rx
            .recv_timeout(ACK_TIMEOUT)
            .expect("writes are acknowledged");
    }
    disk.set_faults(faults);
    let faulted = Instant::now();
    let status = common::poll(EXIT_TIMEOUT, common::POLL_INTERVAL, || {
        node.child.try_wait().expect("try_wait")
    })
    .unwrap_or_else(|| panic!("the node did not exit within {EXIT_TIMEOUT:?} of {faults:?}"));
    let exit_after = faulted.elapsed();
    assert!(!status.success(), "exit status {status}");
    for writer in writers {
        writer.join().expect("writer");
    }
    let acknowledged = (ACKS_BEFORE_FAULT + acked_rx.try_iter().count()) as u64;
    let log = node.take_log().join("\n");
    if std::env::var_os("POWER_VERBOSE").is_some() {
        eprintln!("{log}");
    }
    assert!(log.contains(cause), "the cause ({cause}) is logged: {log}");
    // An error exit, not a panic (sled's drop used to panic on EIO).
    assert!(!log.contains("panicked"), "no panic: {log}");
    drop(node);
    assert!(disk.stats().faults_injected > 0, "the fault was hit");

    let report = disk.cut(CutMode::DropAll);
    disk.set_faults(Faults::default());
    let node = NodeProcess::start(&data_dir, &[]);
    let value = counter(&node);
    assert!(
        acknowledged <= value && value <= acknowledged + WRITERS,
        "after {faults:?} and a power cut the counter is {value}, acknowledged writes put it in \
         {acknowledged}..={}",
        acknowledged + WRITERS
    );
    let next = node.client().propose(b"add 1").expect("writes again");
    assert_eq!(next.output.text, Some((value + 1).to_string()));
    eprintln!(
        "t54 {faults:?}: exited ({status}) {exit_after:.1?} after the fault; {acknowledged} \
         acknowledged writes all present after the cut (counter {value}); the cut dropped {} \
         unsynced pages",
        report.lost_pages
    );
}

#[test]
fn t54_fsync_eio_stops_the_node_and_loses_no_acknowledged_write() {
    fault_under_load(
        Faults {
            fsync_eio: true,
            ..Faults::default()
        },
        "Input/output error",
    );
}

#[test]
fn t54_a_full_fuse_disk_stops_the_node_and_loses_no_acknowledged_write() {
    fault_under_load(
        Faults {
            space_left_bytes: Some(64 * 1024),
            ..Faults::default()
        },
        "No space left on device",
    );
}
