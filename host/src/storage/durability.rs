//! Making sled's writes survive power loss.
//!
//! What sled 0.34.7 writes under the data directory, and what it does about it:
//!
//! | file              | what                                  | sled syncs it with                      |
//! |-------------------|---------------------------------------|-----------------------------------------|
//! | `db`              | the log-structured page store          | `sync_file_range` after each buffer write (Linux); `sync_all` only from its 500 ms background flusher |
//! | `conf`            | storage parameters (segment size, ...) | nothing                                  |
//! | `blobs/<lsn>`     | any log item over the blob threshold   | nothing                                  |
//! | `snap.<lsn>`      | recovery accelerator                   | `sync_all`, then rename (directory not synced) |
//!
//! `sync_file_range` waits for the data to reach the device but flushes neither
//! the device's write cache nor file metadata (the file grows as segments are
//! added), so a `flush()` that returned is not yet durable. [`Syncer::sync`]
//! completes it with `fdatasync` on `db`, `fdatasync` on every blob file it has
//! not synced yet, and `fsync` on `blobs/` and the data directory whenever their
//! listing changed.
//!
//! Blob threshold: sled stores a log item out of line when its serialized size
//! plus a 32-byte header exceeds `segment_size / 4 - 20` bytes, i.e. about
//! 128 KiB with the default 512 KiB segments. An item is one key/value update or
//! a whole consolidated leaf page (up to ~17 keys), so blobs appear for large
//! entries and snapshots, and can appear for pages of mid-sized entries. They are
//! therefore synced here rather than assumed away.

use std::collections::{BTreeSet, HashMap};
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::error::StorageError;

/// Name of sled's data file inside the data directory.
pub(crate) const SLED_DATA_FILE: &str = "db";
/// Name of sled's configuration file inside the data directory.
pub(crate) const SLED_CONF_FILE: &str = "conf";
/// Name of sled's directory of out-of-line values.
pub(crate) const SLED_BLOB_DIR: &str = "blobs";

/// Owns the file handles needed to make sled's writes durable.
#[derive(Debug)]
pub(crate) struct Syncer {
    db_path: PathBuf,
    db_file: File,
    dir: DirWatch,
    blobs: DirWatch,
    /// Blob files already synced, with their length at that time: sled writes a
    /// blob once and never appends, so a changed length means we saw it mid-write.
    synced_blobs: HashMap<OsString, u64>,
}

impl Syncer {
    /// Opens the handles and makes what sled created at open time durable
    /// (`conf`, `blobs/`, the directory entries). Call after sled opened `dir`.
    pub(crate) fn open(dir: &Path) -> Result<Self, StorageError> {
        let db_path = dir.join(SLED_DATA_FILE);
        // fdatasync needs no write access on Linux; a read-only handle cannot
        // interfere with sled's own (locked) handle.
        let db_file =
            File::open(&db_path).map_err(StorageError::io("open the sled data file", &db_path))?;
        let conf_path = dir.join(SLED_CONF_FILE);
        // sled writes `conf` on first open without syncing it; a torn `conf`
        // would make the next open fail.
        File::open(&conf_path)
            .and_then(|f| f.sync_all())
            .map_err(StorageError::io("fsync the sled config file", &conf_path))?;
        let mut syncer = Syncer {
            db_path,
            db_file,
            dir: DirWatch::new(dir.to_path_buf()),
            blobs: DirWatch::new(dir.join(SLED_BLOB_DIR)),
            synced_blobs: HashMap::new(),
        };
        syncer.sync()?;
        // The data directory itself may just have been created.
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_dir(parent)?;
        }
        Ok(syncer)
    }

    /// Makes everything sled has written so far durable. Call after `Db::flush`.
    pub(crate) fn sync(&mut self) -> Result<(), StorageError> {
        self.sync_blobs()?;
        self.db_file.sync_data().map_err(StorageError::io(
            "fdatasync the sled data file",
            &self.db_path,
        ))?;
        self.dir.refresh()?;
        self.dir.sync_if_dirty()
    }

    fn sync_blobs(&mut self) -> Result<(), StorageError> {
        let listed = self.blobs.refresh()?;
        if !listed && self.synced_blobs.is_empty() {
            // No blob files, and none created since.
            return self.blobs.sync_if_dirty();
        }
        let mut live = HashMap::with_capacity(self.blobs.names.len());
        for name in &self.blobs.names {
            let path = self.blobs.path.join(name);
            let len = match std::fs::metadata(&path) {
                Ok(meta) => meta.len(),
                // sled removed it since we listed the directory: nothing to keep.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(StorageError::io("stat a sled blob file", path)(e)),
            };
            if self.synced_blobs.get(name) != Some(&len) {
                match File::open(&path).and_then(|file| file.sync_data()) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(StorageError::io("fdatasync a sled blob file", path)(e)),
                }
            }
            live.insert(name.clone(), len);
        }
        self.synced_blobs = live;
        self.blobs.sync_if_dirty()
    }
}

/// Remembers a directory's listing to know when its entries need an fsync.
#[derive(Debug)]
struct DirWatch {
    path: PathBuf,
    names: BTreeSet<OsString>,
    /// The listing changed since the directory was last synced.
    dirty: bool,
    /// The directory's modification time when it was last listed, if that
    /// time was already [`DIR_MTIME_SETTLE`] old then: while it stays the
    /// same, the listing cannot have changed and is not read again (one
    /// `statx` instead of `open`, `getdents` and `close` per durable write).
    settled_mtime: Option<SystemTime>,
}

/// How old a directory's modification time must be before an unchanged one
/// is trusted to mean an unchanged listing. The kernel stamps directories
/// from a coarse clock (a few milliseconds): an entry created in the same
/// tick as the listing, just after it, would leave the time as it was.
const DIR_MTIME_SETTLE: Duration = Duration::from_millis(100);

impl DirWatch {
    fn new(path: PathBuf) -> Self {
        // Never synced by us yet: sled may just have created it.
        DirWatch {
            path,
            names: BTreeSet::new(),
            dirty: true,
            settled_mtime: None,
        }
    }

    /// Re-reads the listing (one `getdents` for our handful of files).
    /// Returns whether the listing was read (false: provably unchanged).
    fn refresh(&mut self) -> Result<bool, StorageError> {
        let mtime = std::fs::metadata(&self.path)
            .and_then(|meta| meta.modified())
            .map_err(StorageError::io("stat a sled directory", &self.path))?;
        if self.settled_mtime == Some(mtime) {
            return Ok(false);
        }
        let settled = SystemTime::now()
            .duration_since(mtime)
            .is_ok_and(|age| age >= DIR_MTIME_SETTLE);
        self.settled_mtime = settled.then_some(mtime);
        let mut names = BTreeSet::new();
        let entries = std::fs::read_dir(&self.path)
            .map_err(StorageError::io("list a sled directory", &self.path))?;
        for entry in entries {
            let entry = entry.map_err(StorageError::io("list a sled directory", &self.path))?;
            names.insert(entry.file_name());
        }
        if names != self.names {
            self.names = names;
            self.dirty = true;
        }
        Ok(true)
    }

    fn sync_if_dirty(&mut self) -> Result<(), StorageError> {
        if self.dirty {
            sync_dir(&self.path)?;
            self.dirty = false;
        }
        Ok(())
    }
}

/// `fsync` on a directory, so the names created in it survive power loss.
pub(crate) fn sync_dir(path: &Path) -> Result<(), StorageError> {
    File::open(path)
        .and_then(|dir| dir.sync_all())
        .map_err(StorageError::io("fsync a directory", path))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::ffi::{OsStr, OsString};
    use std::path::Path;

    use raft::prelude::Entry;

    use super::{SLED_BLOB_DIR, SLED_DATA_FILE, Syncer};
    use crate::storage::SledStorage;

    /// Far above sled's ~128 KiB blob threshold.
    fn big_entry(index: u64) -> Entry {
        Entry {
            index,
            term: 1,
            data: vec![index as u8; 300_000].into(),
            ..Default::default()
        }
    }

    fn blob_names(dir: &Path) -> BTreeSet<OsString> {
        std::fs::read_dir(dir.join(SLED_BLOB_DIR))
            .expect("list blobs")
            .map(|e| e.expect("dir entry").file_name())
            .collect()
    }

    fn synced_names(storage: &SledStorage) -> BTreeSet<OsString> {
        storage
            .inner
            .syncer()
            .expect("syncer")
            .synced_blobs
            .keys()
            .cloned()
            .collect()
    }

    #[test]
    fn new_blob_files_are_synced() {
        let dir = tempfile::tempdir().expect("temp dir");
        let storage = SledStorage::open(dir.path()).expect("open");
        assert!(synced_names(&storage).is_empty());
        storage
            .append_and_persist(&[big_entry(1), big_entry(2)], None)
            .expect("append");
        let on_disk = blob_names(dir.path());
        assert!(!on_disk.is_empty(), "the entries should have become blobs");
        assert_eq!(synced_names(&storage), on_disk);
        let syncer = storage.inner.syncer().expect("syncer");
        assert!(!syncer.blobs.dirty, "blobs/ was synced after it changed");
        assert!(!syncer.dir.dirty, "the data directory was synced");
    }

    /// The bookkeeping alone, on a directory laid out like sled's.
    #[test]
    fn blob_bookkeeping_follows_the_directory() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path();
        std::fs::write(path.join(SLED_DATA_FILE), b"").expect("db");
        std::fs::write(path.join(super::SLED_CONF_FILE), b"").expect("conf");
        std::fs::create_dir(path.join(SLED_BLOB_DIR)).expect("blobs/");
        let mut syncer = Syncer::open(path).expect("open");
        assert!(syncer.synced_blobs.is_empty());
        assert!(!syncer.blobs.dirty && !syncer.dir.dirty);

        let blob = path.join(SLED_BLOB_DIR).join("7");
        std::fs::write(&blob, b"half").expect("write blob");
        syncer.sync().expect("sync");
        assert_eq!(syncer.synced_blobs.get(OsStr::new("7")), Some(&4));
        assert!(!syncer.blobs.dirty);

        // Seen mid-write: a new length means it is synced again.
        std::fs::write(&blob, b"half and the rest").expect("finish blob");
        syncer.sync().expect("sync");
        assert_eq!(syncer.synced_blobs.get(OsStr::new("7")), Some(&17));

        std::fs::remove_file(&blob).expect("remove blob");
        syncer.sync().expect("sync");
        assert!(
            syncer.synced_blobs.is_empty(),
            "removed blobs are forgotten"
        );

        std::fs::write(path.join("snap.0000000000000001"), b"s").expect("snap");
        syncer.dir.refresh().expect("refresh");
        assert!(
            syncer.dir.dirty,
            "a new file in the data directory needs a dir fsync"
        );
        syncer.sync().expect("sync");
        assert!(!syncer.dir.dirty);
    }

    #[test]
    fn bench_switch_skips_the_sync() {
        let dir = tempfile::tempdir().expect("temp dir");
        let storage = SledStorage::open(dir.path()).expect("open");
        storage.set_fdatasync_for_bench(false);
        storage
            .append_and_persist(&[big_entry(1)], None)
            .expect("append");
        assert!(!blob_names(dir.path()).is_empty());
        assert!(
            synced_names(&storage).is_empty(),
            "no sync while switched off"
        );
        storage.set_fdatasync_for_bench(true);
        storage.put_meta("k", b"v").expect("durable write");
        assert_eq!(synced_names(&storage), blob_names(dir.path()));
    }
}
