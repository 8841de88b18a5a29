//! Durable Raft storage on sled: the log, the hard state, the conf state, the
//! latest snapshot, and a small metadata area for the host.
//!
//! This is the only module that imports `sled`, and it owns the data dir:
//! [`DataDir`] knows every path on disk, [`ComponentStore`] the component
//! files, [`meta`] the typed metadata beside the log. [`SledStorage`] implements
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
//! 2. `ready.entries()` and `ready.hs()` → [`SledStorage::stage_append`],
//!    one atomic sled batch, readable at once but not yet durable; the
//!    node's persistence thread then calls [`SledStorage::sync_staged`],
//!    which makes everything staged so far durable with one flush and
//!    `fdatasync` (`node::persist`; [`SledStorage::append_and_persist`]
//!    does both in one call);
//! 3. only then send `ready.persisted_messages()`: a vote or an append
//!    acknowledgement must never be sent for state that could still be lost;
//! 4. a commit index alone is staged too (Raft can recompute it; the next
//!    durable write carries it to disk).
//!
//! Applied conf changes go to [`SledStorage::set_conf_state`]. To bound the
//! log, the host takes a snapshot of its state machine at an applied index
//! `i`, records it with [`SledStorage::save_snapshot`] (raft-rs then serves it
//! to followers that fell behind), and calls [`SledStorage::compact`] with any
//! index up to `i + 1`.
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
//! `sled::Batch` is atomic over entries and Raft state where that is needed
//! (an append that replaces a conflicting suffix, snapshots, compaction);
//! an append that only extends the log is written key by key, chunks then
//! hard state, because any prefix of it is a valid store and sled's atomic
//! batches cost two IO buffer writes each: `e` + big-endian index
//! → a chunk of consecutive protobuf `Entry`s starting there (an append's
//! entries in a few values, compaction removes whole chunks: `chunks.rs`);
//! `m/hard_state`, `m/conf_state`, `m/snapshot_meta`
//! (protobuf) and `m/snapshot_data` (bytes); `m/format` (a format marker);
//! `u/<name>` → host metadata. See `keys.rs`.
//!
//! First/last index, the log's terms (run-length encoded), the hard state, the
//! conf state and the snapshot metadata live in memory; the cache is replaced
//! only after the write it describes is in sled (durable, or staged for the
//! next sync), so it never describes what sled does not hold. Open scans and
//! validates the whole store (`recovery.rs`).
//!
//! # Durability rule
//!
//! Every write except [`SledStorage::set_commit`], [`SledStorage::compact`]
//! (both can be lost in a crash without harm) and [`SledStorage::stage_append`]
//! (durable at the next [`SledStorage::sync_staged`]) is durable when it returns
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
//! Note that raft-rs itself panics (`fatal!`) when a read it makes through
//! `raft::Storage` fails with anything but `Compacted`/`Unavailable`, so a
//! corrupt entry discovered after open surfaces as a panic of the task that
//! drives the `RawNode`.
//!
//! # Files
//!
//! `keys.rs` key layout · `chunks.rs` the log's chunks · `codec.rs` protobuf values · `cache.rs` the in-memory
//! mirror · `rules.rs` what a write may not do · `durability.rs` fsync beyond
//! sled · `recovery.rs` open-time scan and validation · `raft_storage.rs` the
//! `raft::Storage` read side · `error.rs` [`StorageError`].

mod cache;
pub mod change_history;
mod chunks;
mod codec;
mod components;
mod data_dir;
mod durability;
mod durable_mark;
mod error;
mod guest_store;
mod keys;
pub mod meta;
mod raft_storage;
mod recovery;
mod rules;
mod tail;

use crate::limits::{
    COMPACTION_BATCH_ENTRIES, LOCK_RETRY_INTERVAL, LOCK_WAIT, SLED_CACHE_BYTES, SLED_FLUSH_EVERY_MS,
};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{
    Arc, Mutex, MutexGuard, OnceLock, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard,
};

use raft::prelude::{ConfState, Entry, HardState, Snapshot};

use self::cache::{Cache, TermLookup};
use self::codec::encode;
pub use self::components::ComponentStore;
pub use self::data_dir::{
    DATA_DIR_MODE, DATA_FILE_MODE, DataDir, create_dir_durably, create_private_file, make_private,
};
use self::durability::Syncer;
use self::durable_mark::{DurableMark, MarkFile, MarkWriter};
pub use self::error::StorageError;
pub use self::guest_store::{
    CommitListener, Export, GuestStore, GuestTimer, StoreApplied, StorePin,
};
pub use self::meta::MetaUpdate;
use self::rules::{check_append, check_hard_state};

/// Durable `raft::Storage` on sled. Cheap to clone: clones share one store.
#[derive(Clone)]
pub struct SledStorage {
    inner: Arc<Inner>,
}

/// Called with the duration of each flush + fdatasync of the log store
/// (see [`SledStorage::observe_syncs`]).
pub type SyncObserver = Arc<dyn Fn(std::time::Duration) + Send + Sync>;

struct Inner {
    dir: PathBuf,
    db: sled::Db,
    /// Held for writing through a whole mutation, including its fsync, so
    /// readers never see sled contents the cache does not describe yet.
    state: RwLock<State>,
    /// The handles that complete sled's flush (`durability.rs`). Apart from
    /// the state lock: [`SledStorage::sync_staged`] makes staged writes
    /// durable on another thread while the node goes on staging.
    syncer: Mutex<Syncer>,
    /// The first write failure; once set, every write is refused. Shared
    /// with the durable mark's writer thread.
    failure: Arc<OnceLock<String>>,
    /// Records each durable position outside sled (`durable_mark.rs`).
    marks: MarkWriter,
    /// Bench-only switch, see [`SledStorage::set_fdatasync_for_bench`].
    fdatasync: AtomicBool,
    /// Bench-only switch, see [`SledStorage::set_durable_mark_for_bench`].
    durable_mark: AtomicBool,
    /// Raft asked for a snapshot the stored one cannot serve (too old, or
    /// from before the receiving peer joined); the node takes a new one.
    snapshot_wanted: AtomicBool,
    /// Told how long each flush + fdatasync took (the node's metrics).
    sync_observer: OnceLock<SyncObserver>,
}

struct State {
    cache: Cache,
    /// The newest entries as appended, answering most reads (`tail.rs`).
    tail: tail::LogTail,
    /// A durable write happened under the current write lock: its guard
    /// posts the new durable mark when released.
    mark_due: bool,
}

/// The write lock on [`State`]; when released after a durable write, it
/// hands the position the cache now describes to the mark writer (callers
/// update the cache only after the write is durable, so that position is).
struct WriteGuard<'a> {
    /// `None` only in benchmarks that measure the mark's cost.
    marks: Option<&'a MarkWriter>,
    state: RwLockWriteGuard<'a, State>,
}

impl std::ops::Deref for WriteGuard<'_> {
    type Target = State;
    fn deref(&self) -> &State {
        &self.state
    }
}

impl std::ops::DerefMut for WriteGuard<'_> {
    fn deref_mut(&mut self) -> &mut State {
        &mut self.state
    }
}

impl Drop for WriteGuard<'_> {
    fn drop(&mut self) {
        if std::mem::take(&mut self.state.mark_due)
            && let Some(marks) = self.marks
        {
            marks.post(DurableMark::of(&self.state.cache));
        }
    }
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
    /// keys or has a hole in its log is [`StorageError::Corrupt`]; one behind
    /// its durable mark (sled recovered an older prefix of a damaged file) is
    /// [`StorageError::DurabilityLost`]; a directory
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

        let opening = std::time::Instant::now();
        let db = open_sled(dir, SLED_CACHE_BYTES, true).map_err(StorageError::sled(
            "open the store (is another node using this directory?)",
        ))?;
        make_private(dir).map_err(unwritable(dir))?;
        tracing::debug!(
            elapsed_ms = opening.elapsed().as_millis() as u64,
            "opened sled"
        );
        let recovered = recovery::load(&db, data_file_had_content)?;
        let mark_file = check_durable_mark(dir, &recovered)?;
        let syncer = Syncer::open(dir)?;
        let failure = Arc::new(OnceLock::new());
        let marks = MarkWriter::start(mark_file, Arc::clone(&failure))
            .map_err(StorageError::io("start the durable mark's thread", dir))?;
        let storage = SledStorage {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                db,
                state: RwLock::new(State {
                    cache: recovered.cache,
                    tail: tail::LogTail::default(),
                    mark_due: false,
                }),
                syncer: Mutex::new(syncer),
                failure,
                marks,
                fdatasync: AtomicBool::new(true),
                durable_mark: AtomicBool::new(true),
                snapshot_wanted: AtomicBool::new(false),
                sync_observer: OnceLock::new(),
            }),
        };
        if recovered.is_new {
            let mut batch = sled::Batch::default();
            batch.insert(keys::FORMAT, keys::FORMAT_MARKER);
            let mut state = storage.inner.write()?;
            storage.inner.commit(
                &mut state,
                batch,
                Durability::Durable,
                "write the format marker",
            )?;
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
            return Err(StorageError::invalid(
                "bootstrap",
                "the conf state has no voters",
            ));
        }
        let mut state = self.inner.write()?;
        if !state.cache.is_fresh() {
            return Err(StorageError::AlreadyInitialized);
        }
        let mut batch = sled::Batch::default();
        batch.insert(keys::CONF_STATE, encode("conf state", conf_state)?);
        self.inner.commit(
            &mut state,
            batch,
            Durability::Durable,
            "write the bootstrap conf state",
        )?;
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
        self.append_with(entries, hard_state, Durability::Durable)
    }

    /// [`Self::append_and_persist`] without the wait for the disk: the
    /// entries and hard state are written to sled and readable at once
    /// (raft-rs reads them back after `advance_append_async`), and become
    /// durable at the next [`Self::sync_staged`] (or any durable write).
    /// Nothing that depends on them may be acknowledged before then. A
    /// crash may keep any prefix of the staged batches, each whole (sled
    /// batches are atomic), which Raft treats like writes that were never
    /// acknowledged.
    pub fn stage_append(
        &self,
        entries: &[Entry],
        hard_state: Option<&HardState>,
    ) -> Result<(), StorageError> {
        self.append_with(entries, hard_state, Durability::Lazy)
    }

    /// Makes everything staged so far durable, without holding up writers:
    /// the position the store describes is taken first, then sled is
    /// flushed and synced, then that position is recorded as the durable
    /// mark. Called by the node's persistence thread, which then lets
    /// raft-rs know (`on_persist_ready`).
    pub fn sync_staged(&self) -> Result<(), StorageError> {
        let mark = {
            let state = self.inner.read();
            if let Some(cause) = self.inner.failure.get() {
                return Err(StorageError::Failed {
                    cause: cause.clone(),
                });
            }
            DurableMark::of(&state.cache)
        };
        if let Err(e) = self.inner.make_durable() {
            let _ = self.inner.failure.set(e.to_string());
            tracing::error!(dir = %self.inner.dir.display(), error = %e, "log store sync failed; the store is now read-only");
            return Err(e);
        }
        if self.inner.durable_mark.load(Ordering::Relaxed) {
            self.inner.marks.post(mark);
        }
        Ok(())
    }

    fn append_with(
        &self,
        entries: &[Entry],
        hard_state: Option<&HardState>,
        durability: Durability,
    ) -> Result<(), StorageError> {
        if entries.is_empty() && hard_state.is_none() {
            return Ok(());
        }
        let mut state = self.inner.write()?;
        let mut next = state.cache.clone();
        // Entries that only extend the log, then the hard state: any prefix
        // of these writes is a valid store (a longer log, the earlier hard
        // state, nothing of it acknowledged before the sync), so they go in
        // one after another (`Inner::commit_in_order`). A conflicting suffix
        // is replaced atomically.
        let mut writes = Vec::new();
        let mut truncation = None;
        if let Some(first) = entries.first() {
            check_append(&state.cache, entries)?;
            if state
                .cache
                .log
                .last()
                .is_some_and(|last| last >= first.index)
            {
                let mut batch = sled::Batch::default();
                chunks::truncate_from(&self.inner.db, &mut batch, first.index)?;
                truncation = Some(batch);
            }
            writes = chunks::encode(entries)?;
            next.append(entries);
        }
        if let Some(hard_state) = hard_state {
            check_hard_state(&state.cache, &next, hard_state, "append")?;
            writes.push((keys::HARD_STATE.to_vec(), encode("hard state", hard_state)?));
            next.hard_state = Some(hard_state.clone());
        }
        match truncation {
            Some(mut batch) => {
                // The batch keeps the last write of a key, so a chunk stored
                // at the first new index is replaced.
                for (key, value) in writes {
                    batch.insert(key, value);
                }
                self.inner
                    .commit(&mut state, batch, durability, "apply the append batch")?;
            }
            None => self.inner.commit_in_order(
                &mut state,
                writes,
                durability,
                "apply the append batch",
            )?,
        }
        state.cache = next;
        state.tail.append(entries);
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
        let write = (
            keys::HARD_STATE.to_vec(),
            encode("hard state", &hard_state)?,
        );
        self.inner.commit_in_order(
            &mut state,
            vec![write],
            Durability::Lazy,
            "write the commit index",
        )?;
        state.cache.hard_state = Some(hard_state);
        Ok(())
    }

    /// Persists a new `ConfState` (after a conf change was applied), durably.
    pub fn set_conf_state(&self, conf_state: &ConfState) -> Result<(), StorageError> {
        self.set_conf_state_with_values(conf_state, &[])
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
        self.apply_snapshot_with_values(snapshot, &[])
    }

    /// [`Self::apply_snapshot`] and host metadata `values`, in one durable
    /// batch (see [`meta`]).
    fn apply_snapshot_with_values(
        &self,
        snapshot: &Snapshot,
        values: &[(&str, &[u8])],
    ) -> Result<(), StorageError> {
        let meta = snapshot.get_metadata();
        let mut state = self.inner.write()?;
        let cache = &state.cache;
        let covered_index = (cache.first_index() - 1).max(cache.snapshot_index());
        if meta.index == 0
            || meta.index < cache.first_index()
            || meta.index < cache.snapshot_index()
        {
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
        if !cache.log.is_empty() {
            chunks::remove_before(&self.inner.db, &mut batch, drop_until + 1)?;
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
        batch.insert(
            keys::CONF_STATE,
            encode("conf state", meta.get_conf_state())?,
        );
        batch.insert(keys::SNAPSHOT_META, encode("snapshot metadata", meta)?);
        batch.insert(keys::SNAPSHOT_DATA, &snapshot.data[..]);
        for (key, value) in values {
            batch.insert(keys::user_key(key), *value);
        }
        next.hard_state = Some(hard_state);
        next.conf_state = Some(meta.get_conf_state().clone());
        next.snapshot = Some(meta.clone());

        self.inner.commit(
            &mut state,
            batch,
            Durability::Durable,
            "apply the snapshot batch",
        )?;
        state.cache = next;
        state.tail.clear();
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
        self.inner.commit(
            &mut state,
            batch,
            Durability::Durable,
            "write the snapshot batch",
        )?;
        state.cache.snapshot = Some(meta.clone());
        Ok(())
    }

    /// Discards the log entries before `compact_index`; the first index
    /// becomes `compact_index`. Indexes at or below the first index are a no-op.
    ///
    /// Not synced: the removal reaches the disk with the next durable write
    /// (or sled's own flush within [`SLED_FLUSH_EVERY_MS`]). A crash before
    /// that brings removed entries back, a longer log behind the same
    /// snapshot, which is as valid; nothing acknowledged depends on it.
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
        compaction_allowed(cache, compact_index)?;
        // A batch per step, oldest first: one batch of hundreds of
        // thousands of removals made sled (and the allocator) hold hundreds
        // of MiB until its flush. A crash between steps leaves a shorter
        // prefix removed, which is as valid a log. A chunk that runs past
        // `to` is stored again from `to` on (`chunks::remove_before`).
        let mut from = first;
        while from < compact_index {
            let to = compact_index.min(from + COMPACTION_BATCH_ENTRIES);
            let mut batch = sled::Batch::default();
            chunks::remove_before(&self.inner.db, &mut batch, to)?;
            self.inner.commit(
                &mut state,
                batch,
                Durability::Lazy,
                "apply the compaction batch",
            )?;
            state.cache.log.compact_to(to);
            state.tail.trim_before(to);
            from = to;
        }
        Ok(())
    }

    /// One step of compaction towards `compact_index`: remove the oldest
    /// stored chunks that hold only entries before it, at most
    /// `max_chunks`, one key after another and oldest first (no sled batch:
    /// `apply_batch` rolls sled's IO buffer twice, a write and a waiting
    /// `sync_file_range` each, which made a step of a few dozen removals
    /// take 4-17 ms of the node loop). Any prefix of these removals is a
    /// valid log, a crash keeps a prefix (sled recovers a prefix of its
    /// log), and whole chunks leave no entry to store again, so no step
    /// needs to be atomic. A chunk that straddles `compact_index` stays.
    /// Returns whether anything was removed (`false`: this compaction is
    /// done).
    pub fn compact_whole_chunks(
        &self,
        compact_index: u64,
        max_chunks: usize,
    ) -> Result<bool, StorageError> {
        let mut state = self.inner.write()?;
        compaction_allowed(&state.cache, compact_index)?;
        let whole = chunks::whole_chunks_before(&self.inner.db, compact_index, max_chunks.max(1))?;
        let Some(&(_, last)) = whole.last() else {
            return Ok(false);
        };
        let removals = whole
            .iter()
            .map(|&(first, _)| keys::chunk_key(first).to_vec())
            .collect();
        self.inner.remove_in_order(
            &mut state,
            removals,
            Durability::Lazy,
            "remove log chunks behind the snapshot",
        )?;
        state.cache.log.compact_to(last + 1);
        state.tail.trim_before(last + 1);
        Ok(true)
    }

    /// Whether Raft needed a newer snapshot than the stored one since the
    /// last call (clears the flag).
    pub fn take_snapshot_wanted(&self) -> bool {
        self.inner.snapshot_wanted.swap(false, Ordering::Relaxed)
    }

    /// Index and term of the stored snapshot, if there is one.
    pub fn snapshot_position(&self) -> Option<(u64, u64)> {
        let state = self.inner.read();
        state
            .cache
            .snapshot
            .as_ref()
            .map(|meta| (meta.index, meta.term))
    }

    /// The first index still in the log (entries before it are compacted).
    pub fn first_log_index(&self) -> u64 {
        self.inner.read().cache.first_index()
    }

    /// The stored hard state (default when none was persisted).
    pub fn hard_state(&self) -> HardState {
        self.inner.read().cache.hard_state()
    }

    /// The stored conf state (default when none was persisted).
    pub fn conf_state(&self) -> ConfState {
        self.inner.read().cache.conf_state()
    }

    /// Persists a new `ConfState` together with host metadata values that
    /// must change with it (which entry it reflects, the members' addresses),
    /// in one durable batch: a crash leaves either all or none of them.
    fn set_conf_state_with_values(
        &self,
        conf_state: &ConfState,
        meta: &[(&str, &[u8])],
    ) -> Result<(), StorageError> {
        let mut state = self.inner.write()?;
        let mut batch = sled::Batch::default();
        batch.insert(keys::CONF_STATE, encode("conf state", conf_state)?);
        for (key, value) in meta {
            batch.insert(keys::user_key(key), *value);
        }
        self.inner.commit(
            &mut state,
            batch,
            Durability::Durable,
            "write the conf state",
        )?;
        state.cache.conf_state = Some(conf_state.clone());
        Ok(())
    }

    /// Reads a host metadata value (typed accessors: [`meta`]).
    fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let value = self
            .inner
            .db
            .get(keys::user_key(key))
            .map_err(StorageError::sled("read a metadata value"))?;
        Ok(value.map(|v| v.to_vec()))
    }

    /// Writes a host metadata value, durably.
    fn put_meta(&self, key: &str, value: &[u8]) -> Result<(), StorageError> {
        let mut state = self.inner.write()?;
        let mut batch = sled::Batch::default();
        batch.insert(keys::user_key(key), value);
        self.inner.commit(
            &mut state,
            batch,
            Durability::Durable,
            "write a metadata value",
        )
    }

    /// Bytes used on disk by the store, for status and metrics.
    pub fn size_on_disk(&self) -> Result<u64, StorageError> {
        self.inner
            .db
            .size_on_disk()
            .map_err(StorageError::sled("measure the store's size on disk"))
    }

    /// Report the duration of every later flush + fdatasync to
    /// `observer` (the node's `iroh_raft_disk_fsync_duration_seconds`).
    /// The first observer stays; later calls are ignored.
    pub fn observe_syncs(&self, observer: SyncObserver) {
        let _ = self.inner.sync_observer.set(observer);
    }

    /// BENCHMARKS ONLY: `false` skips the `fdatasync`/`fsync` calls after sled's
    /// flush, which makes writes NOT durable. Exists to measure their cost in
    /// `benches/storage_fsync.rs`; never call it in a node.
    #[doc(hidden)]
    pub fn set_fdatasync_for_bench(&self, on: bool) {
        self.inner.fdatasync.store(on, Ordering::Relaxed);
    }

    /// BENCHMARKS ONLY: `false` stops recording the durable mark
    /// (`durable_mark.rs`), so a damaged store would no longer be noticed.
    /// Exists to measure its cost in `benches/storage_fsync.rs`; never call
    /// it in a node.
    #[doc(hidden)]
    pub fn set_durable_mark_for_bench(&self, on: bool) {
        self.inner.durable_mark.store(on, Ordering::Relaxed);
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if self.failure.get().is_some() {
            // sled flushes on drop and waits for a flush a failed disk (a
            // full one, EIO) never completes: the process would hang
            // instead of exiting. Everything acknowledged was already
            // made durable, so the failed store is left unflushed.
            std::mem::forget(self.db.clone());
        }
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
    fn write(&self) -> Result<WriteGuard<'_>, StorageError> {
        let state = self.state.write().map_err(|_| StorageError::Failed {
            cause: "a thread panicked while writing to the store".to_owned(),
        })?;
        if let Some(cause) = self.failure.get() {
            return Err(StorageError::Failed {
                cause: cause.clone(),
            });
        }
        Ok(WriteGuard {
            marks: self
                .durable_mark
                .load(Ordering::Relaxed)
                .then_some(&self.marks),
            state,
        })
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
        let applied = self.db.apply_batch(batch);
        self.finish_commit(state, applied, durability, action)
    }

    /// Inserts `writes` one after another, for writes of which every prefix
    /// is a valid store (a crash keeps a prefix of sled's log). sled's
    /// `apply_batch` rolls its IO buffer twice to make a batch atomic, and
    /// each roll is a write and a `sync_file_range` of its own: on the path
    /// of every replicated write that was most of sled's IO.
    fn commit_in_order(
        &self,
        state: &mut State,
        writes: Vec<(Vec<u8>, Vec<u8>)>,
        durability: Durability,
        action: &'static str,
    ) -> Result<(), StorageError> {
        let applied = writes
            .into_iter()
            .try_for_each(|(key, value)| self.db.insert(key, value).map(drop));
        self.finish_commit(state, applied, durability, action)
    }

    /// Removes `keys` one after another, for removals of which every
    /// prefix leaves a valid store (see [`Self::commit_in_order`]).
    fn remove_in_order(
        &self,
        state: &mut State,
        keys: Vec<Vec<u8>>,
        durability: Durability,
        action: &'static str,
    ) -> Result<(), StorageError> {
        let applied = keys
            .into_iter()
            .try_for_each(|key| self.db.remove(key).map(drop));
        self.finish_commit(state, applied, durability, action)
    }

    fn finish_commit(
        &self,
        state: &mut State,
        applied: sled::Result<()>,
        durability: Durability,
        action: &'static str,
    ) -> Result<(), StorageError> {
        let result = applied
            .map_err(StorageError::sled(action))
            .and_then(|()| match durability {
                Durability::Durable => self.make_durable(),
                Durability::Lazy => Ok(()),
            });
        if result.is_ok() && durability == Durability::Durable {
            state.mark_due = true;
        }
        if let Err(e) = &result {
            let _ = self.failure.set(e.to_string());
            tracing::error!(dir = %self.dir.display(), error = %e, "log store write failed; the store is now read-only");
        }
        result
    }

    /// Makes every batch applied so far durable: sled's flush, then the
    /// `fdatasync`/`fsync` calls that complete it.
    fn make_durable(&self) -> Result<(), StorageError> {
        let mut syncer = self.syncer()?;
        let started = std::time::Instant::now();
        self.db
            .flush()
            .map_err(StorageError::sled("flush the store to disk"))?;
        if self.fdatasync.load(Ordering::Relaxed) {
            syncer.sync()?;
        }
        if let Some(observe) = self.sync_observer.get() {
            observe(started.elapsed());
        }
        Ok(())
    }

    fn syncer(&self) -> Result<MutexGuard<'_, Syncer>, StorageError> {
        self.syncer.lock().map_err(|_| StorageError::Failed {
            cause: "a thread panicked while syncing the store".to_owned(),
        })
    }
}

/// Entries no snapshot covers must stay (see [`SledStorage::compact`]):
/// `compact_index` may not pass `last_index + 1` nor the stored snapshot's
/// index + 1.
fn compaction_allowed(cache: &Cache, compact_index: u64) -> Result<(), StorageError> {
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
    Ok(())
}

/// Checks the recovered store against the durable mark in `dir` and opens
/// the mark for writing; creates the mark when there is none (a new store,
/// or one from a version without marks).
fn check_durable_mark(
    dir: &Path,
    recovered: &recovery::Recovered,
) -> Result<MarkFile, StorageError> {
    match MarkFile::open(dir)? {
        Some((file, mark)) => {
            mark.check(&recovered.cache)
                .map_err(|reason| StorageError::DurabilityLost {
                    path: dir.to_path_buf(),
                    reason,
                })?;
            Ok(file)
        }
        None => {
            if !recovered.is_new {
                tracing::warn!(
                    dir = %dir.display(),
                    "the log store has no durable mark (written by an older version?); creating one"
                );
            }
            MarkFile::create(dir, &DurableMark::of(&recovered.cache))
        }
    }
}

/// Open sled in `dir` with a page cache of `cache_bytes` (and sled's own
/// flush timer when `timed_flushes`), waiting up to
/// [`LOCK_WAIT`] for a previous user of the directory to let go.
fn open_sled(dir: &Path, cache_bytes: u64, timed_flushes: bool) -> sled::Result<sled::Db> {
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        let config = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            .flush_every_ms(timed_flushes.then_some(SLED_FLUSH_EVERY_MS));
        match config.open() {
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(LOCK_RETRY_INTERVAL);
            }
            other => return other,
        }
    }
}
