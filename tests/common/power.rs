//! Disks that lose power: the `powercut` FUSE filesystem (tests/powercut)
//! mounted on a temp dir, for the power-loss and disk-fault tests.
//!
//! Mounting needs root and `/dev/fuse` (CI runs as root); a machine without
//! them fails these tests with the reason, unless `IROH_RAFT_SKIP_FUSE=1`
//! says to skip them knowingly ([`skip_reason`]). `POWER_CUTS=N` sets how
//! many power cuts each power-loss test makes (the long form, `make
//! power-loss`), `SEED=S` replays one run.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{SystemTime, UNIX_EPOCH};

pub use powercut::{CutMode, CutReport, Faults, Stats};

use super::NodeProcess;
pub use super::jepsen::rng::Rng;

/// Clients writing at once; each has at most one write in flight when the
/// node dies, which may have committed without its acknowledgement.
pub const WRITERS: u64 = 3;

/// Why tests that mount FUSE are skipped, if they are.
pub fn skip_reason() -> Option<&'static str> {
    std::env::var_os("IROH_RAFT_SKIP_FUSE")
        .is_some()
        .then_some("IROH_RAFT_SKIP_FUSE is set: skipping a test that mounts FUSE")
}

/// A mounted power-cut disk. Dropping it unmounts it (lazily if a process
/// still uses it) and removes its directories, except when the test is
/// failing: then the backing directory (what survived the last cut) stays
/// and its path is printed.
pub struct PowerDisk {
    disk: Option<powercut::Disk>,
    mountpoint: Option<tempfile::TempDir>,
    backing: Option<tempfile::TempDir>,
}

impl PowerDisk {
    /// Mounts a fresh, empty disk; `None` if [`skip_reason`] says to skip.
    pub fn mount() -> Option<PowerDisk> {
        if let Some(reason) = skip_reason() {
            eprintln!("{reason}");
            return None;
        }
        let backing = tempfile::tempdir().expect("backing dir");
        let mountpoint = tempfile::tempdir().expect("mountpoint");
        let disk = powercut::Disk::mount(backing.path(), mountpoint.path()).unwrap_or_else(|e| {
            panic!("{e}. Power-loss tests need root and FUSE; IROH_RAFT_SKIP_FUSE=1 skips them")
        });
        Some(PowerDisk {
            disk: Some(disk),
            mountpoint: Some(mountpoint),
            backing: Some(backing),
        })
    }

    fn disk(&self) -> &powercut::Disk {
        self.disk.as_ref().expect("mounted until dropped")
    }

    /// Where the node's data dirs go.
    pub fn path(&self) -> &Path {
        self.disk().path()
    }

    /// Cut the power: everything not made durable is lost (see
    /// [`CutMode`]). Stop every node using the disk first.
    pub fn cut(&mut self, mode: CutMode) -> CutReport {
        self.disk
            .as_mut()
            .expect("mounted until dropped")
            .power_cut(mode)
            .expect("power cut")
    }

    pub fn set_faults(&self, faults: Faults) {
        self.disk().set_faults(faults);
    }

    pub fn stats(&self) -> Stats {
        self.disk().stats()
    }
}

impl Drop for PowerDisk {
    fn drop(&mut self) {
        // Unmount before the directories go.
        drop(self.disk.take());
        drop(self.mountpoint.take());
        if std::thread::panicking()
            && let Some(backing) = self.backing.take()
        {
            let kept: PathBuf = backing.keep();
            eprintln!(
                "the durable state after the last power cut is kept in {}",
                kept.display()
            );
        }
    }
}

/// How many power cuts a test makes: `POWER_CUTS`, else `default` (the
/// short form that `make test` runs).
pub fn cuts(default: u64) -> u64 {
    match std::env::var("POWER_CUTS") {
        Ok(value) => value
            .parse()
            .unwrap_or_else(|_| panic!("POWER_CUTS={value:?} is not a number")),
        Err(_) => default,
    }
}

/// The run's seed: `SEED`, else drawn from the clock; printed so a failure
/// can be replayed (the schedule of kills and cut modes, not the timing).
pub fn seed(test: &str) -> u64 {
    let seed = match std::env::var("SEED") {
        Ok(value) => value
            .parse()
            .unwrap_or_else(|_| panic!("SEED={value:?} is not a number")),
        Err(_) => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .as_nanos() as u64,
    };
    eprintln!("{test}: SEED={seed}");
    seed
}

/// Half the cuts drop every unsynced write, half keep a random subset of
/// the unsynced pages (torn, reordered write-back).
pub fn cut_mode(rng: &mut Rng) -> CutMode {
    if rng.below(2) == 0 {
        CutMode::DropAll
    } else {
        CutMode::KeepSomePages {
            seed: rng.next_u64(),
        }
    }
}

/// Totals over a run's cuts, printed at the end.
#[derive(Debug, Default)]
pub struct CutTotals {
    pub cuts: u64,
    pub lost_pages: u64,
    pub kept_pages: u64,
    pub lost_sizes: u64,
    pub lost_dir_changes: u64,
    /// Cuts that lost something (the rest found everything synced).
    pub cuts_that_lost: u64,
}

impl CutTotals {
    pub fn add(&mut self, report: CutReport) {
        if std::env::var_os("POWER_VERBOSE").is_some() {
            eprintln!("cut {}: {:#?}", self.cuts + 1, report.unsynced);
        }
        self.cuts += 1;
        self.lost_pages += report.lost_pages;
        self.kept_pages += report.kept_pages;
        self.lost_sizes += report.lost_sizes;
        self.lost_dir_changes += report.lost_dir_changes;
        self.cuts_that_lost += u64::from(report.lost_anything());
    }

    /// What the cuts lost, for the closing line of a run.
    pub fn describe(&self) -> String {
        format!(
            "the cuts dropped {} unsynced pages ({} more kept by torn write-back), {} unsynced \
             sizes and {} directories' unsynced entries; {} of {} cuts lost something",
            self.lost_pages,
            self.kept_pages,
            self.lost_sizes,
            self.lost_dir_changes,
            self.cuts_that_lost,
            self.cuts
        )
    }
}

/// The counter, read once the node serves.
pub fn counter(node: &NodeProcess) -> u64 {
    let client = node.client();
    super::wait_for("the counter to be readable", || {
        client.query(b"get").ok()?.output.text?.parse().ok()
    })
}

/// Start `WRITERS` clients sending `add 1` to the counter guest until the
/// node stops answering; each acknowledgement is one message on the
/// returned channel.
pub fn start_writers(node: &NodeProcess) -> (mpsc::Receiver<()>, Vec<std::thread::JoinHandle<()>>) {
    let (acked_tx, acked_rx) = mpsc::channel();
    let writers = (0..WRITERS)
        .map(|_| {
            let client = node.client();
            let acked_tx = acked_tx.clone();
            std::thread::spawn(move || {
                while client.propose(b"add 1").is_ok() {
                    if acked_tx.send(()).is_err() {
                        break;
                    }
                }
            })
        })
        .collect();
    (acked_rx, writers)
}
