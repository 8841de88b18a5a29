//! Durable Raft storage on sled: the log, the hard state, the conf state, the
//! latest snapshot, and a small metadata area for the host.
//!
//! This is the only module that imports `sled`. [`SledStorage`] implements
//! [`raft::Storage`] with the semantics of raft-rs's `MemStorage` (first index
//! is the snapshot index + 1 when the log is empty, `term` of the snapshot
//! index is answered from the snapshot's metadata, `Compacted` below the first
//! index, `Unavailable` past the last), and adds the write side the node calls
//! while handling a `Ready`.
//!
//! # How data flows through it
//!
//! The node owns the `RawNode`, which owns one clone of the storage; the node
//! keeps another clone to write with. For each `Ready`, in raft-rs's order:
//!
//! 1. `ready.snapshot()` not empty → [`SledStorage::apply_snapshot`];
//! 2. `ready.entries()` and `ready.hs()` → [`SledStorage::append_and_persist`],
//!    one atomic sled batch, durable before it returns;
//! 3. only then send `ready.persisted_messages()`: a vote or an append
//!    acknowledgement must never be sent for state that could still be lost;
//! 4. the light ready's commit index → [`SledStorage::set_commit`] (not synced:
//!    Raft can recompute it; the next durable write carries it to disk).
//!
//! ```
//! use iroh_raft::storage::SledStorage;
//! use raft::prelude::{ConfState, Entry, HardState};
//! use raft::Storage as _;
//!
//! let dir = tempfile::tempdir()?;
//! let storage = SledStorage::open(dir.path())?;
//! if storage.is_fresh() {
//!     storage.bootstrap(&ConfState::from((vec![1, 2, 3], vec![])))?;
//! }
//! let entry = Entry { index: 1, term: 1, ..Default::default() };
//! let hard_state = HardState { term: 1, vote: 1, commit: 0, ..Default::default() };
//! storage.append_and_persist(&[entry], Some(&hard_state))?;
//! assert_eq!(storage.last_index()?, 1);
//! drop(storage);
//!
//! // A restart sees exactly what was acknowledged.
//! let storage = SledStorage::open(dir.path())?;
//! assert_eq!(storage.initial_state()?.hard_state, hard_state);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Layout
//!
//! One sled tree (the default one) with prefixed keys, so a single
//! `sled::Batch` is atomic over entries and Raft state: `e` + big-endian index
//! → protobuf `Entry`; `m/hard_state`, `m/conf_state`, `m/snapshot_meta`
//! (protobuf) and `m/snapshot_data` (bytes); `m/format` (a format marker);
//! `u/<name>` → host metadata. See `keys.rs`.
//!
//! First/last index, the log's terms (run-length encoded), the hard state, the
//! conf state and the snapshot metadata live in memory; the cache is replaced
//! only after the write it describes is durable, so readers always see
//! acknowledged state. Open scans and validates the whole store (`recovery.rs`).
//!
//! # Durability rule
//!
//! Every write except [`SledStorage::set_commit`] is durable when it returns
//! `Ok`: `sled::Db::flush`, then `fdatasync` of sled's data file `db` (sled's
//! flush ends in `sync_file_range` on Linux, which flushes neither the device
//! cache nor file metadata), of any new blob file under `blobs/` (sled writes
//! large values there and never syncs them), and `fsync` of the directories
//! whose listing changed. Details in `durability.rs`.
//!
//! Any error is fatal: raft-rs documents that after a storage error "the raft
//! instance will become inoperable", and after a failed `fsync` the page cache
//! can no longer be trusted. The store then refuses every further write
//! ([`StorageError::Failed`]); the node must stop, never retry and carry on.

mod cache;
mod codec;
mod durability;
mod error;
mod keys;
mod recovery;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use raft::prelude::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState};

use self::cache::{Cache, TermLookup};
use self::codec::{decode, encode};
use self::durability::Syncer;
pub use self::error::StorageError;
use self::keys::entry_key;

/// Durable `raft::Storage` on sled. Cheap to clone: clones share one store.
#[derive(Clone)]
pub struct SledStorage {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    db: sled::Db,
    /// Held for writing through a whole mutation, including its fsync, so
    /// readers never see sled contents the cache does not describe yet.
    state: RwLock<State>,
    /// The first write failure; once set, every write is refused.
    failure: OnceLock<String>,
    /// Bench-only switch, see [`SledStorage::set_fdatasync_for_bench`].
    fdatasync: AtomicBool,
}

struct State {
    cache: Cache,
    syncer: Syncer,
}

/// Whether a write must be on disk before it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Durability {
    Durable,
    Lazy,
}

impl std::fmt::Debug for SledStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.inner.read();
        f.debug_struct("SledStorage")
            .field("dir", &self.inner.dir)
            .field("first_index", &state.cache.first_index())
            .field("last_index", &state.cache.last_index())
            .field("hard_state", &state.cache.hard_state)
            .field("failure", &self.inner.failure.get())
            .finish()
    }
}

impl SledStorage {
    /// Opens (creating if needed) the log store in the directory `dir`.
    ///
    /// Validates what is there: a store that cannot be decoded, misses required
    /// keys or has a hole in its log is [`StorageError::Corrupt`]; a directory
    /// that cannot be created or written is [`StorageError::DataDirUnwritable`];
    /// a directory already open (in this or another process) is a
    /// [`StorageError::Sled`] lock error.
    pub fn open(dir: &Path) -> Result<Self, StorageError> {
        let unwritable = |path: &Path| {
            let path = path.to_path_buf();
            move |source| StorageError::DataDirUnwritable { path, source }
        };
        std::fs::create_dir_all(dir).map_err(unwritable(dir))?;
        let data_path = dir.join(durability::SLED_DATA_FILE);
        let data_file_had_content = std::fs::metadata(&data_path).is_ok_and(|m| m.len() > 0);
        // sled would report this as a generic I/O error; opening the file for
        // writing first (sled opens it with `create`) names the path.
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&data_path)
            .map_err(unwritable(&data_path))?;

        let db = sled::Config::new()
            .path(dir)
            .open()
            .map_err(StorageError::sled("open the store (is another node using this directory?)"))?;
        let recovered = recovery::load(&db, data_file_had_content)?;
        let syncer = Syncer::open(dir)?;
        let storage = SledStorage {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                db,
                state: RwLock::new(State {
                    cache: recovered.cache,
                    syncer,
                }),
                failure: OnceLock::new(),
                fdatasync: AtomicBool::new(true),
            }),
        };
        if recovered.is_new {
            let mut batch = sled::Batch::default();
            batch.insert(keys::FORMAT, keys::FORMAT_MARKER);
            let mut state = storage.inner.write()?;
            storage.inner.commit(&mut state, batch, Durability::Durable, "write the format marker")?;
        }
        Ok(storage)
    }

    /// The data directory.
    pub fn path(&self) -> &Path {
        &self.inner.dir
    }

    /// True when nothing was ever persisted: no hard state, no conf state, no
    /// entries, no snapshot (host metadata does not count).
    pub fn is_fresh(&self) -> bool {
        self.inner.read().cache.is_fresh()
    }

    /// Persists the initial `ConfState` of a brand-new cluster, durably. Only
    /// allowed on a fresh store ([`StorageError::AlreadyInitialized`] otherwise).
    pub fn bootstrap(&self, conf_state: &ConfState) -> Result<(), StorageError> {
        if conf_state.voters.is_empty() {
            return Err(StorageError::invalid("bootstrap", "the conf state has no voters"));
        }
        let mut state = self.inner.write()?;
        if !state.cache.is_fresh() {
            return Err(StorageError::AlreadyInitialized);
        }
        let mut batch = sled::Batch::default();
        batch.insert(keys::CONF_STATE, encode("conf state", conf_state)?);
        self.inner.commit(&mut state, batch, Durability::Durable, "write the bootstrap conf state")?;
        state.cache.conf_state = Some(conf_state.clone());
        Ok(())
    }

    /// The core Raft persistence step: appends `entries` (first removing every
    /// stored entry at or after `entries[0].index`, as raft-rs requires on a
    /// conflict) and stores `hard_state` if given, in one sled batch, durable
    /// before it returns. No entries and no hard state is a no-op.
    ///
    /// Refused ([`StorageError::InvalidRequest`]): entries that are not
    /// contiguous, leave a gap after the last index, rewrite compacted or
    /// snapshotted entries, or whose terms go back; a hard state whose term goes
    /// back or whose commit index is past the resulting last index.
    pub fn append_and_persist(
        &self,
        entries: &[Entry],
        hard_state: Option<&HardState>,
    ) -> Result<(), StorageError> {
        if entries.is_empty() && hard_state.is_none() {
            return Ok(());
        }
        let mut state = self.inner.write()?;
        let mut next = state.cache.clone();
        let mut batch = sled::Batch::default();
        if let Some(first) = entries.first() {
            check_append(&state.cache, entries)?;
            for entry in entries {
                batch.insert(&entry_key(entry.index), encode("log entry", entry)?);
            }
            // Entries past the new tail belong to the conflicting suffix.
            let new_last = first.index + entries.len() as u64 - 1;
            if let Some(old_last) = state.cache.log.last() {
                for index in new_last + 1..=old_last {
                    batch.remove(&entry_key(index));
                }
            }
            next.append(entries);
        }
        if let Some(hard_state) = hard_state {
            check_hard_state(&state.cache, &next, hard_state, "append")?;
            batch.insert(keys::HARD_STATE, encode("hard state", hard_state)?);
            next.hard_state = Some(hard_state.clone());
        }
        self.inner.commit(&mut state, batch, Durability::Durable, "apply the append batch")?;
        state.cache = next;
        Ok(())
    }

    /// Updates only the commit index of the stored hard state. Not synced: the
    /// commit index can be recomputed, and the next durable write carries it.
    pub fn set_commit(&self, commit: u64) -> Result<(), StorageError> {
        let mut state = self.inner.write()?;
        let mut hard_state = state.cache.hard_state();
        if hard_state.commit == commit && state.cache.hard_state.is_some() {
            return Ok(());
        }
        hard_state.commit = commit;
        check_hard_state(&state.cache, &state.cache, &hard_state, "set_commit")?;
        let mut batch = sled::Batch::default();
        batch.insert(keys::HARD_STATE, encode("hard state", &hard_state)?);
        self.inner.commit(&mut state, batch, Durability::Lazy, "write the commit index")?;
        state.cache.hard_state = Some(hard_state);
        Ok(())
    }

    /// Persists a new `ConfState` (after a conf change was applied), durably.
    pub fn set_conf_state(&self, conf_state: &ConfState) -> Result<(), StorageError> {
        let mut state = self.inner.write()?;
        let mut batch = sled::Batch::default();
        batch.insert(keys::CONF_STATE, encode("conf state", conf_state)?);
        self.inner.commit(&mut state, batch, Durability::Durable, "write the conf state")?;
        state.cache.conf_state = Some(conf_state.clone());
        Ok(())
    }

    /// Installs a snapshot received from the leader (raft-rs `Ready::snapshot`),
    /// durably: stores its metadata and data, takes the conf state from it,
    /// drops every entry up to its index (the whole log if the log's term at
    /// that index differs), and sets the hard state's commit to its index and
    /// term to at least its term, as `MemStorage::apply_snapshot` does.
    ///
    /// [`StorageError::SnapshotOutOfDate`] if the store already covers a later
    /// index (the snapshot's index is below the first index or the current
    /// snapshot's index).
    pub fn apply_snapshot(&self, snapshot: &Snapshot) -> Result<(), StorageError> {
        let meta = snapshot.get_metadata();
        let mut state = self.inner.write()?;
        let cache = &state.cache;
        let covered_index = (cache.first_index() - 1).max(cache.snapshot_index());
        if meta.index == 0 || meta.index < cache.first_index() || meta.index < cache.snapshot_index() {
            return Err(StorageError::SnapshotOutOfDate {
                snapshot_index: meta.index,
                covered_index,
            });
        }

        let mut next = cache.clone();
        let mut batch = sled::Batch::default();
        // Keep the entries after the snapshot only if the log agrees with it.
        let keep_tail = cache.log.term(meta.index) == Some(meta.term);
        let drop_until = if keep_tail {
            meta.index
        } else {
            cache.log.last().unwrap_or(0)
        };
        if let Some(first) = cache.log.first() {
            for index in first..=drop_until {
                batch.remove(&entry_key(index));
            }
        }
        if keep_tail {
            next.log.compact_to(meta.index + 1);
        } else {
            next.log.clear();
        }

        let mut hard_state = cache.hard_state();
        hard_state.term = hard_state.term.max(meta.term);
        hard_state.commit = meta.index;
        batch.insert(keys::HARD_STATE, encode("hard state", &hard_state)?);
        batch.insert(keys::CONF_STATE, encode("conf state", meta.get_conf_state())?);
        batch.insert(keys::SNAPSHOT_META, encode("snapshot metadata", meta)?);
        batch.insert(keys::SNAPSHOT_DATA, &snapshot.data[..]);
        next.hard_state = Some(hard_state);
        next.conf_state = Some(meta.get_conf_state().clone());
        next.snapshot = Some(meta.clone());

        self.inner.commit(&mut state, batch, Durability::Durable, "apply the snapshot batch")?;
        state.cache = next;
        Ok(())
    }

    /// Records a locally taken snapshot (metadata and data) so that
    /// `raft::Storage::snapshot` can serve it, durably. Does not compact.
    ///
    /// The snapshot must cover committed entries only (`index <= commit`), match
    /// the log's term at its index, and not be older than the stored one.
    pub fn save_snapshot(&self, snapshot: &Snapshot) -> Result<(), StorageError> {
        let meta = snapshot.get_metadata();
        let mut state = self.inner.write()?;
        let cache = &state.cache;
        if meta.index < cache.snapshot_index() {
            return Err(StorageError::SnapshotOutOfDate {
                snapshot_index: meta.index,
                covered_index: cache.snapshot_index(),
            });
        }
        let commit = cache.hard_state().commit;
        if meta.index == 0 || meta.index > commit {
            return Err(StorageError::invalid(
                "save_snapshot",
                format!(
                    "snapshot index {} must be in 1..={commit} (the commit index)",
                    meta.index
                ),
            ));
        }
        match cache.term(meta.index) {
            TermLookup::Found(term) if term == meta.term => {}
            found => {
                return Err(StorageError::invalid(
                    "save_snapshot",
                    format!(
                        "snapshot at index {} has term {}, the log has {found:?} there",
                        meta.index, meta.term
                    ),
                ));
            }
        }
        let mut batch = sled::Batch::default();
        batch.insert(keys::SNAPSHOT_META, encode("snapshot metadata", meta)?);
        batch.insert(keys::SNAPSHOT_DATA, &snapshot.data[..]);
        self.inner.commit(&mut state, batch, Durability::Durable, "write the snapshot batch")?;
        state.cache.snapshot = Some(meta.clone());
        Ok(())
    }

    /// Discards the log entries before `compact_index`, durably; the first index
    /// becomes `compact_index`. Indexes at or below the first index are a no-op.
    ///
    /// `compact_index` may not exceed `last_index + 1`, nor the stored
    /// snapshot's index + 1: entries no snapshot covers must stay, or a
    /// lagging follower could be served neither entries nor a snapshot.
    pub fn compact(&self, compact_index: u64) -> Result<(), StorageError> {
        let mut state = self.inner.write()?;
        let cache = &state.cache;
        let first = cache.first_index();
        if compact_index <= first {
            return Ok(());
        }
        let limit = (cache.last_index() + 1).min(cache.snapshot_index() + 1);
        if compact_index > limit {
            return Err(StorageError::invalid(
                "compact",
                format!(
                    "compact index {compact_index} is past {limit} (last index {} + 1, \
                     snapshot index {} + 1); save a snapshot first",
                    cache.last_index(),
                    cache.snapshot_index()
                ),
            ));
        }
        let mut batch = sled::Batch::default();
        for index in first..compact_index {
            batch.remove(&entry_key(index));
        }
        self.inner.commit(&mut state, batch, Durability::Durable, "apply the compaction batch")?;
        state.cache.log.compact_to(compact_index);
        Ok(())
    }

    /// The stored hard state (default when none was persisted).
    pub fn hard_state(&self) -> HardState {
        self.inner.read().cache.hard_state()
    }

    /// The stored conf state (default when none was persisted).
    pub fn conf_state(&self) -> ConfState {
        self.inner.read().cache.conf_state()
    }

    /// Reads a host metadata value (node identity, component registry, ...).
    pub fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let value = self
            .inner
            .db
            .get(keys::user_key(key))
            .map_err(StorageError::sled("read a metadata value"))?;
        Ok(value.map(|v| v.to_vec()))
    }

    /// Writes a host metadata value, durably.
    pub fn put_meta(&self, key: &str, value: &[u8]) -> Result<(), StorageError> {
        let mut state = self.inner.write()?;
        let mut batch = sled::Batch::default();
        batch.insert(keys::user_key(key), value);
        self.inner.commit(&mut state, batch, Durability::Durable, "write a metadata value")
    }

    /// Bytes used on disk by the store, for status and metrics.
    pub fn size_on_disk(&self) -> Result<u64, StorageError> {
        self.inner
            .db
            .size_on_disk()
            .map_err(StorageError::sled("measure the store's size on disk"))
    }

    /// BENCHMARKS ONLY: `false` skips the `fdatasync`/`fsync` calls after sled's
    /// flush, which makes writes NOT durable. Exists to measure their cost in
    /// `benches/storage_fsync.rs`; never call it in a node.
    #[doc(hidden)]
    pub fn set_fdatasync_for_bench(&self, on: bool) {
        self.inner.fdatasync.store(on, Ordering::Relaxed);
    }
}

impl Inner {
    fn read(&self) -> RwLockReadGuard<'_, State> {
        // The cache is assigned as the last step of a write, which cannot
        // panic; a panic earlier leaves it describing the last acknowledged
        // write, which is exactly what readers should see.
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// The write lock, refused once a write failed or a writer panicked.
    fn write(&self) -> Result<RwLockWriteGuard<'_, State>, StorageError> {
        let guard = self.state.write().map_err(|_| StorageError::Failed {
            cause: "a thread panicked while writing to the store".to_owned(),
        })?;
        if let Some(cause) = self.failure.get() {
            return Err(StorageError::Failed {
                cause: cause.clone(),
            });
        }
        Ok(guard)
    }

    /// Applies `batch` atomically and, for [`Durability::Durable`], makes it durable.
    /// The caller updates the cache only after this returned `Ok`.
    fn commit(
        &self,
        state: &mut State,
        batch: sled::Batch,
        durability: Durability,
        action: &'static str,
    ) -> Result<(), StorageError> {
        let result = self
            .db
            .apply_batch(batch)
            .map_err(StorageError::sled(action))
            .and_then(|()| match durability {
                Durability::Durable => self.make_durable(&mut state.syncer),
                Durability::Lazy => Ok(()),
            });
        if let Err(e) = &result {
            let _ = self.failure.set(e.to_string());
            tracing::error!(dir = %self.dir.display(), error = %e, "log store write failed; the store is now read-only");
        }
        result
    }

    fn make_durable(&self, syncer: &mut Syncer) -> Result<(), StorageError> {
        self.db
            .flush()
            .map_err(StorageError::sled("flush the store to disk"))?;
        if self.fdatasync.load(Ordering::Relaxed) {
            syncer.sync()?;
        }
        Ok(())
    }
}

/// The append rules of `MemStorage::append` (which panics) plus the Raft
/// invariant that terms never go back, as errors.
fn check_append(cache: &Cache, entries: &[Entry]) -> Result<(), StorageError> {
    let invalid = |reason: String| Err(StorageError::invalid("append", reason));
    let Some(first) = entries.first() else {
        return Ok(());
    };
    for pair in entries.windows(2) {
        if pair[1].index != pair[0].index + 1 {
            return invalid(format!(
                "entries are not contiguous: {} follows {}",
                pair[1].index, pair[0].index
            ));
        }
        if pair[1].term < pair[0].term {
            return invalid(format!(
                "term goes back from {} to {} at index {}",
                pair[0].term, pair[1].term, pair[1].index
            ));
        }
    }
    if first.index < cache.first_index() {
        return invalid(format!(
            "would overwrite compacted entries: appending at {}, first index is {}",
            first.index,
            cache.first_index()
        ));
    }
    if first.index <= cache.snapshot_index() {
        return invalid(format!(
            "would overwrite entries covered by the snapshot at {}: appending at {}",
            cache.snapshot_index(),
            first.index
        ));
    }
    if first.index > cache.last_index() + 1 {
        return invalid(format!(
            "would leave a gap: appending at {}, last index is {}",
            first.index,
            cache.last_index()
        ));
    }
    if let TermLookup::Found(previous) = cache.term(first.index - 1)
        && first.term < previous
    {
        return invalid(format!(
            "term goes back from {previous} to {} at index {}",
            first.term, first.index
        ));
    }
    Ok(())
}

/// Terms never go back; `commit <= last index` (raft-rs refuses to start otherwise).
fn check_hard_state(
    current: &Cache,
    next: &Cache,
    hard_state: &HardState,
    operation: &'static str,
) -> Result<(), StorageError> {
    let current_term = current.hard_state.as_ref().map_or(0, |hs| hs.term);
    if hard_state.term < current_term {
        return Err(StorageError::invalid(
            operation,
            format!(
                "hard state term goes back from {current_term} to {}",
                hard_state.term
            ),
        ));
    }
    if hard_state.commit > next.last_index() {
        return Err(StorageError::invalid(
            operation,
            format!(
                "commit index {} is past the last index {}",
                hard_state.commit,
                next.last_index()
            ),
        ));
    }
    Ok(())
}

impl raft::Storage for SledStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let state = self.inner.read();
        Ok(RaftState::new(
            state.cache.hard_state(),
            state.cache.conf_state(),
        ))
    }

    /// `[low, high)`, at least one entry when the range is not empty, then as
    /// many as fit in `max_size` (the rule of `raft::util::limit_size`, applied
    /// while reading so a large range is not read only to be thrown away).
    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let max_size = max_size.into().unwrap_or(raft::NO_LIMIT);
        // Held while reading sled so no write can change the range under us.
        let state = self.inner.read();
        if low < state.cache.first_index() {
            return Err(raft::Error::Store(raft::StorageError::Compacted));
        }
        // MemStorage panics here; a bad request must not take the node down.
        if high > state.cache.last_index() + 1 {
            return Err(raft::Error::Store(raft::StorageError::Unavailable));
        }
        if low >= high {
            return Ok(Vec::new());
        }

        let wanted = high - low;
        let mut entries = Vec::with_capacity(wanted.min(1024) as usize);
        let mut size = 0u64;
        let mut limited = false;
        for item in self.inner.db.range(entry_key(low)..entry_key(high)) {
            let (key, value) = item
                .map_err(StorageError::sled("read log entries"))
                .map_err(StorageError::into_raft)?;
            let entry: Entry = decode(&key, &value).map_err(StorageError::into_raft)?;
            let expected = low + entries.len() as u64;
            if entry.index != expected {
                return Err(StorageError::corrupt(
                    keys::describe(&key),
                    format!("expected log entry {expected}, found {}", entry.index),
                )
                .into_raft());
            }
            size += u64::from(protobuf::Message::compute_size(&entry));
            if !entries.is_empty() && size > max_size {
                limited = true;
                break;
            }
            entries.push(entry);
        }
        if !limited && entries.len() as u64 != wanted {
            let missing = low + entries.len() as u64;
            return Err(StorageError::corrupt(
                keys::describe(&entry_key(missing)),
                format!("missing although the log spans {low}..{high}"),
            )
            .into_raft());
        }
        Ok(entries)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        match self.inner.read().cache.term(idx) {
            TermLookup::Found(term) => Ok(term),
            TermLookup::Compacted => Err(raft::Error::Store(raft::StorageError::Compacted)),
            TermLookup::Unavailable => Err(raft::Error::Store(raft::StorageError::Unavailable)),
        }
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.inner.read().cache.first_index())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.inner.read().cache.last_index())
    }

    /// The stored snapshot if its index is at least `request_index`, otherwise
    /// `SnapshotTemporarilyUnavailable` so raft-rs retries once the host has
    /// taken a newer one. (Unlike `MemStorage`, which fabricates an empty
    /// snapshot at the commit index, this serves real data and never rewrites a
    /// snapshot's index.)
    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let state = self.inner.read();
        let Some(meta) = state
            .cache
            .snapshot
            .as_ref()
            .filter(|meta| meta.index >= request_index)
        else {
            return Err(raft::Error::Store(
                raft::StorageError::SnapshotTemporarilyUnavailable,
            ));
        };
        let data = self
            .inner
            .db
            .get(keys::SNAPSHOT_DATA)
            .map_err(StorageError::sled("read the snapshot data"))
            .map_err(StorageError::into_raft)?
            .ok_or_else(|| {
                StorageError::corrupt("key m/snapshot_data", "missing next to snapshot metadata")
                    .into_raft()
            })?;
        let mut snapshot = Snapshot::default();
        snapshot.set_metadata(meta.clone());
        snapshot.data = data.to_vec().into();
        Ok(snapshot)
    }
}
