//! A FUSE filesystem that loses exactly what was not made durable, for
//! power-loss tests of programs that run on it unchanged (iroh-raft's
//! `raft-host` processes, with their real sled storage).
//!
//! [LazyFS] is the model: the filesystem keeps what programs write in
//! memory and, on a power cut ([`Disk::power_cut`]), keeps only what was
//! made durable. Here that means, as POSIX promises and no more:
//!
//! - file data and size become durable when the file is `fsync`ed or
//!   `fdatasync`ed (through any descriptor);
//! - a name created, removed or renamed in a directory becomes durable when
//!   that directory is `fsync`ed (a new file whose directory was never
//!   synced is gone after a cut, even if its data was synced; a rename not
//!   followed by a directory sync is undone);
//! - `close`, `sync_file_range` and time make nothing durable.
//!
//! ```text
//!  raft-host ──syscalls──► kernel FUSE (no writeback cache) ──► Fs ──► Model
//!                                                                   view │ durable
//!  Disk::power_cut: unmount · Model::power_cut (view := durable) · save to backing · mount
//! ```
//!
//! The durable state is also written to a *backing directory* at every cut
//! and unmount (and read from it at mount), so after a cut the backing
//! directory holds exactly what survived, to inspect or to start from.
//!
//! # What it models and what it does not
//!
//! - [`CutMode::DropAll`] drops *all* unsynced state: the worst case a
//!   correct program must survive, deterministic, and the one that catches
//!   a missing `fsync` every time it matters. [`CutMode::KeepSomePages`]
//!   lets a seeded random subset of the unsynced 4 KiB pages (and maybe the
//!   unsynced size) through, as a disk whose cache wrote back part of its
//!   data in any order: torn multi-page writes, newer pages over older ones.
//!   It does not tear inside a page, and it does not corrupt *synced* data
//!   (that is a different fault: bit rot, a lying disk).
//! - Unsynced directory changes are always all lost (no mode keeps some).
//! - Metadata other than size and names (mode, times, owner) is not
//!   modelled: a `chmod` is durable at once.
//! - Regular files and directories only: no symlinks, hard links, special
//!   files or extended attributes (the node uses none).
//! - Everything lives in memory (both states of every file): fine for test
//!   data directories of tens of MB, not for big disks.
//! - Faults ([`Faults`]): `ENOSPC` on write once a byte budget is spent,
//!   `EIO` on every sync; both until cleared.
//!
//! Mounting needs root and `/dev/fuse`: as root, fuser mounts with
//! `mount(2)` directly, so neither libfuse nor `fusermount3` is needed.
//!
//! [LazyFS]: https://github.com/dsrhaslab/lazyfs

mod fuse;
mod model;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, PoisonError};

pub use model::{CutMode, Faults, PAGE_BYTES, ROOT_INO, Stats};

use fuse::{Fs, Shared, SharedModel};
use model::Model;

/// A mounted power-cut filesystem. Unmounts (lazily if something still
/// uses it) and saves its durable state to the backing directory when
/// dropped, also while a test unwinds.
#[derive(Debug)]
pub struct Disk {
    shared: SharedModel,
    backing: PathBuf,
    mountpoint: PathBuf,
    session: Option<fuser::BackgroundSession>,
}

/// What one cut lost (differences of [`Stats`] over the cut).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CutReport {
    /// What was unsynced when the power went, one line per file or
    /// directory (before [`CutMode::KeepSomePages`] kept any of it).
    pub unsynced: Vec<String>,
    /// Unsynced pages the cut lost.
    pub lost_pages: u64,
    /// Unsynced pages it kept ([`CutMode::KeepSomePages`]).
    pub kept_pages: u64,
    /// Files whose unsynced size change it lost.
    pub lost_sizes: u64,
    /// Directories whose unsynced entries it lost.
    pub lost_dir_changes: u64,
}

impl CutReport {
    /// Whether the cut lost anything at all.
    pub fn lost_anything(&self) -> bool {
        self.lost_pages + self.lost_sizes + self.lost_dir_changes > 0
    }
}

impl Disk {
    /// Mounts the filesystem on `mountpoint` (an empty directory), starting
    /// from what `backing` holds (all of it taken as durable).
    pub fn mount(backing: &Path, mountpoint: &Path) -> io::Result<Disk> {
        let mut model = Model::new();
        load(&mut model, ROOT_INO, backing)?;
        let mut disk = Disk {
            shared: Arc::new(Mutex::new(Shared {
                model,
                generation: 0,
            })),
            backing: backing.to_path_buf(),
            mountpoint: mountpoint.to_path_buf(),
            session: None,
        };
        disk.mount_session()?;
        Ok(disk)
    }

    fn mount_session(&mut self) -> io::Result<()> {
        let generation = self.lock().generation;
        let mut config = fuser::Config::default();
        config.mount_options = vec![
            fuser::MountOption::FSName("powercut".into()),
            fuser::MountOption::Subtype("powercut".into()),
        ];
        let fs = Fs::new(self.shared.clone(), generation);
        let session = fuser::spawn_mount(fs, &self.mountpoint, &config).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "mount the power-cut FUSE filesystem on {}: {e} (it needs root and /dev/fuse)",
                    self.mountpoint.display()
                ),
            )
        })?;
        self.session = Some(session);
        Ok(())
    }

    /// Where programs see the filesystem.
    pub fn path(&self) -> &Path {
        &self.mountpoint
    }

    /// The backing directory (the durable state as of the last cut or
    /// unmount).
    pub fn backing(&self) -> &Path {
        &self.backing
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Cuts the power: unmounts (every process using the filesystem should
    /// be dead already; one that is not gets `EIO` from now on), keeps only
    /// what was durable (after what `mode` lets through), saves that to the
    /// backing directory and mounts it again.
    pub fn power_cut(&mut self, mode: CutMode) -> io::Result<CutReport> {
        self.unmount();
        let report = {
            let mut shared = self.lock();
            let before = shared.model.stats;
            let unsynced = shared.model.describe_unsynced();
            shared.model.power_cut(mode);
            shared.generation += 1;
            let after = shared.model.stats;
            CutReport {
                unsynced,
                lost_pages: after.lost_pages - before.lost_pages,
                kept_pages: after.kept_pages - before.kept_pages,
                lost_sizes: after.lost_sizes - before.lost_sizes,
                lost_dir_changes: after.lost_dir_changes - before.lost_dir_changes,
            }
        };
        self.save()?;
        self.mount_session()?;
        Ok(report)
    }

    /// Sets the faults in force (replacing the previous ones).
    pub fn set_faults(&self, faults: Faults) {
        self.lock().model.faults = faults;
    }

    /// The counters so far.
    pub fn stats(&self) -> Stats {
        self.lock().model.stats
    }

    /// What a cut now would lose: unsynced 4 KiB pages and directories with
    /// unsynced entries.
    pub fn unsynced(&self) -> (u64, u64) {
        self.lock().model.unsynced()
    }

    fn unmount(&mut self) {
        let Some(session) = self.session.take() else {
            return;
        };
        // A plain unmount fails while something still has a file open; then
        // detach it (the old session's files answer EIO from the next
        // generation on) and let its thread end when the last user goes.
        if session.umount_and_join().is_err() {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(&self.mountpoint)
                .status();
        }
    }

    /// Writes the durable state to the backing directory, replacing what it
    /// held.
    fn save(&self) -> io::Result<()> {
        for entry in fs::read_dir(&self.backing)? {
            let path = entry?.path();
            if path.is_dir() {
                fs::remove_dir_all(&path)?;
            } else {
                fs::remove_file(&path)?;
            }
        }
        let shared = self.lock();
        let mut result = Ok(());
        shared
            .model
            .walk_durable(ROOT_INO, &self.backing, &mut |path, perm, data| {
                if result.is_err() {
                    return;
                }
                result = save_one(path, perm, data, path == self.backing.as_path());
            });
        result
    }
}

fn save_one(path: &Path, perm: u16, data: Option<&[u8]>, is_root: bool) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    match data {
        Some(data) => fs::write(path, data)?,
        None if is_root => return Ok(()),
        None => fs::create_dir(path)?,
    }
    fs::set_permissions(path, fs::Permissions::from_mode(u32::from(perm)))
}

/// Loads `dir` (recursively) as durable contents of directory `ino`.
fn load(model: &mut Model, ino: u64, dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        let perm = (meta.permissions().mode() & 0o7777) as u16;
        if meta.is_dir() {
            let child = model.load_dir(ino, &entry.file_name(), perm);
            load(model, child, &entry.path())?;
        } else if meta.is_file() {
            let data = fs::read(entry.path())?;
            model.load_file(ino, &entry.file_name(), perm, data);
        } else {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("{}: only files and directories", entry.path().display()),
            ));
        }
    }
    Ok(())
}

impl Drop for Disk {
    fn drop(&mut self) {
        self.unmount();
        let _ = self.save();
    }
}
