//! Power loss on one node: a real `raft-host` whose data dir is on the
//! `powercut` FUSE filesystem, which loses exactly what was not fsynced.
//!
//! Each round: start the node on the same dir (it must start: refusing a
//! data dir a power cut left is a failure), check the counter holds every
//! acknowledged `add 1` and nothing that was never sent, write with
//! concurrent clients, SIGKILL the node mid-stream, cut the power. SIGKILL
//! alone keeps the page cache; the cut is what drops the unsynced writes.
//! Snapshots and log compaction run every few entries, so cuts also land
//! around snapshot files, sled's own snapshots and compaction.
//!
//! `POWER_CUTS=N` (default [`SHORT_FORM_CUTS`]) and `SEED=S`: see
//! `tests/common/power.rs`; `make power-loss` is the long form.

use std::time::{Duration, Instant};

use crate::common::NodeProcess;
use crate::common::power::{self, CutTotals, PowerDisk, Rng, WRITERS, counter, start_writers};

/// Cuts in the short form (`make test`).
const SHORT_FORM_CUTS: u64 = 30;
/// Most acknowledged writes before a kill.
const MAX_ACKS_PER_ROUND: u64 = 80;
/// How long a writing client may go without an acknowledgement.
const ACK_TIMEOUT: Duration = Duration::from_secs(30);
/// Frequent snapshots and compaction, so cuts land around them too.
const NODE_ARGS: &[&str] = &["--snapshot-every", "40", "--snapshot-keep-entries", "10"];

#[test]
fn t52_power_cuts_on_one_node_lose_no_acknowledged_write() {
    let Some(mut disk) = PowerDisk::mount() else {
        return;
    };
    let cuts = power::cuts(SHORT_FORM_CUTS);
    let seed = power::seed("t52");
    let mut rng = Rng::new(seed);
    let data_dir = disk.path().join("node");
    let started = Instant::now();
    let mut totals = CutTotals::default();
    // Every acknowledged write is in `floor`; `ceiling` adds the writes that
    // were in flight at a kill (they may have committed).
    let (mut floor, mut ceiling) = (0u64, 0u64);
    let mut acknowledged = 0u64;
    for round in 0..=cuts {
        let node = NodeProcess::start(&data_dir, NODE_ARGS);
        let value = counter(&node);
        assert!(
            floor <= value && value <= ceiling,
            "SEED={seed} after cut {round}: the counter is {value}, acknowledged writes put it \
             in {floor}..={ceiling}"
        );
        if round == cuts {
            break;
        }
        (floor, ceiling) = (value, value);
        // One round in eight kills the node as soon as it serves (a cut
        // during or right after recovery).
        let acks_before_kill = if rng.below(8) == 0 {
            0
        } else {
            1 + rng.below(MAX_ACKS_PER_ROUND)
        };
        let (acked_rx, writers) = start_writers(&node);
        for _ in 0..acks_before_kill {
            acked_rx
                .recv_timeout(ACK_TIMEOUT)
                .unwrap_or_else(|_| panic!("SEED={seed} round {round}: writes stopped"));
        }
        node.kill();
        for writer in writers {
            writer.join().expect("writer");
        }
        let acked = acks_before_kill + acked_rx.try_iter().count() as u64;
        acknowledged += acked;
        floor += acked;
        ceiling += acked + WRITERS;
        totals.add(disk.cut(power::cut_mode(&mut rng)));
    }
    eprintln!(
        "t52: {} power cuts in {:.0?}, {acknowledged} acknowledged writes, none lost; {}; disk: {:?}",
        totals.cuts,
        started.elapsed(),
        totals.describe(),
        disk.stats(),
    );
    // Otherwise the cuts tested nothing: the node would have to have synced
    // everything before every kill.
    assert!(
        totals.cuts == 0 || totals.cuts_that_lost > 0,
        "SEED={seed}: no cut found anything unsynced"
    );
}
