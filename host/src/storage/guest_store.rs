//! The committed state of a store-backed guest (WIT 0.2.0): its keys and
//! values in a sled database of their own (`<data-dir>/store`), with the
//! index of the last entry applied to them.
//!
//! | key in tree `guest-store` | value                                       |
//! |---------------------------|---------------------------------------------|
//! | `d` + guest key           | the guest's value                           |
//! | `m/applied`               | index, term of the last applied entry (BE)  |
//! | `m/size`                  | keys, bytes (u64 BE each)                   |
//! | `m/sum`                   | the state's additive hash (4 × u64 BE)      |
//! | `m/node`                  | the node's metadata at `m/applied` (opaque) |
//! | `m/importing`             | present while a snapshot is being loaded    |
//! | `h` + index, `m/history-floor` | the change history (see [`super::change_history`]) |
//!
//! Every entry's writes, the applied index, the size and the hash are one
//! `sled::Batch`, so they are atomic. They are not fsynced per entry: the
//! Raft log is the durable record (a node applies only entries its own log
//! already made durable), sled flushes this database in the background and
//! recovers a prefix of its writes, so after a crash the store is at some
//! applied index at most the log's and the node replays only the entries
//! after it. Its own database keeps the Raft log's fsyncs small: they never
//! carry the state's pages (or sled's blob files of large values).
//!
//! The state hash is additive (the sum, lane-wise modulo 2^64, of a BLAKE3
//! hash per pair), so it follows every write in O(1) and replicas compare
//! GiBs of state without reading them.
//!
//! Queries run on a thread of their own, beside the applier. sled has no
//! snapshots, so a query [`GuestStore::pin`]s the store: while a pin is
//! held no commit or import changes it (they wait, at most one query long),
//! so every read of one query sees the state at one applied index.

use crate::wasm::kv::StoreSizeExt as _;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};

use crate::limits::{
    HISTORY_PRUNE_MIN_PER_COMMIT, SLED_STORE_CACHE_BYTES, STORE_EXPORT_BATCH_BYTES,
    STORE_EXPORT_BATCH_PAIRS, STORE_FLUSH_EVERY_BYTES, STORE_IMPORT_BATCH_RECORDS,
    WATCH_FEED_CAPACITY,
};
use crate::wasm::kv::{
    CommitMark, CommittedState, EntryChanges, PairIter, Pairs, StoreIoError, StoreSize, TIMER_KEY,
    WriteSet, prefix_end, timer_due_ms,
};

use super::change_history::{self, FeedItem, HistoryError, HistoryPage};
use super::error::StorageError;

const TREE: &[u8] = b"guest-store";
const DATA_PREFIX: &[u8] = b"d";
const APPLIED: &[u8] = b"m/applied";
const SIZE: &[u8] = b"m/size";
const SUM: &[u8] = b"m/sum";
const NODE_META: &[u8] = b"m/node";
const IMPORTING: &[u8] = b"m/importing";

/// The guest store. Cheap to clone: clones share one database.
#[derive(Clone)]
pub struct GuestStore {
    db: sled::Db,
    tree: sled::Tree,
    /// Size and hash as of the last commit (only the applier writes).
    totals: Arc<Mutex<Totals>>,
    /// The point-in-time export in progress, if any (see [`Export`]).
    capture: Arc<Mutex<Option<Capture>>>,
    /// Background flushes (see [`Flusher`]).
    flusher: Arc<Flusher>,
    /// Held shared by a query ([`Self::pin`]), exclusively by a commit or
    /// an import.
    pins: Arc<RwLock<()>>,
    /// Called after each commit or import with its applied index (the
    /// query thread waits for it).
    on_commit: Arc<Mutex<Option<CommitListener>>>,
    /// Set once a write or flush failed (see `Drop`).
    failed: Arc<std::sync::atomic::AtomicBool>,
    /// How much change history is kept, and from where it is complete.
    history: Arc<Mutex<History>>,
    /// Tells live watchers about each commit and import.
    feed: tokio::sync::broadcast::Sender<FeedItem>,
    /// The time the guest asked to be called at ([`TIMER_KEY`]).
    timer: GuestTimer,
}

/// The change history's setting and extent (see [`super::change_history`]).
#[derive(Debug, Clone, Copy, Default)]
struct History {
    /// Entries of history kept behind the applied index (0: none).
    retention: u64,
    /// The history is complete for the entries after this index.
    floor: u64,
}

/// The time a store-backed guest asked to be called at, in ms since the
/// Unix epoch (from its [`TIMER_KEY`]); shared by the store, which sees it
/// change, and the node's core, which proposes the call on the leader.
#[derive(Debug, Clone, Default)]
pub struct GuestTimer(Arc<std::sync::atomic::AtomicU64>);

impl GuestTimer {
    /// The time the guest is due to be called at, if it asked.
    pub fn due_ms(&self) -> Option<u64> {
        match self.0.load(std::sync::atomic::Ordering::Acquire) {
            0 => None,
            due => Some(due),
        }
    }

    fn set(&self, due_ms: Option<u64>) {
        // A timer at time 0 is due at once, like one at time 1.
        let value = due_ms.map_or(0, |due| due.max(1));
        self.0.store(value, std::sync::atomic::Ordering::Release);
    }
}

impl Drop for GuestStore {
    fn drop(&mut self) {
        if self.failed.load(std::sync::atomic::Ordering::Relaxed) {
            // sled's drop waits for a flush a failed disk never completes;
            // the store is not needed to recover (the log replays it).
            std::mem::forget(self.db.clone());
        }
    }
}

/// What [`GuestStore::set_commit_listener`] calls after each commit.
pub type CommitListener = Box<dyn Fn(u64) + Send>;

/// A held [`GuestStore::pin`]: the store stays as it is until it drops.
#[derive(Debug)]
pub struct StorePin<'a> {
    _shared: RwLockReadGuard<'a, ()>,
    /// The entry the pinned state was applied up to.
    pub applied: StoreApplied,
}

/// Flushes the store in the background every [`STORE_FLUSH_EVERY_BYTES`]
/// written: sled keeps written pages in memory until a flush, and its own
/// timer (every 500 ms) let a node writing fast hold GiBs. Not needed for
/// durability (the Raft log is the record); a failed flush is reported by
/// the next commit, which stops the node.
#[derive(Debug, Default)]
struct Flusher {
    unflushed: std::sync::atomic::AtomicU64,
    running: std::sync::atomic::AtomicBool,
    failure: Mutex<Option<String>>,
}

/// What a running export needs to see the store as it was when it began:
/// the last key it wrote, and the value before the first commit since then
/// of every key after it (`None`: the key did not exist).
#[derive(Debug, Default)]
struct Capture {
    cursor: Option<Vec<u8>>,
    before: std::collections::BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Totals {
    size: StoreSize,
    sum: [u64; 4],
    /// The entry applied last (index 0: none yet).
    applied: StoreApplied,
}

impl std::fmt::Debug for GuestStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestStore")
            .field("totals", &*self.totals())
            .finish()
    }
}

/// Where a store stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreApplied {
    pub index: u64,
    pub term: u64,
}

fn data_key(key: &[u8]) -> Vec<u8> {
    let mut full = Vec::with_capacity(DATA_PREFIX.len() + key.len());
    full.extend_from_slice(DATA_PREFIX);
    full.extend_from_slice(key);
    full
}

fn io(action: &'static str) -> impl FnOnce(sled::Error) -> StoreIoError {
    move |error| StoreIoError(format!("{action}: {error}"))
}

/// The hash of one pair, as four lanes.
fn pair_hash(key: &[u8], value: &[u8]) -> [u64; 4] {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&(key.len() as u64).to_le_bytes());
    hasher.update(key);
    hasher.update(value);
    let bytes = hasher.finalize();
    let mut lanes = [0u64; 4];
    for (lane, chunk) in lanes.iter_mut().zip(bytes.as_bytes().chunks_exact(8)) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        *lane = u64::from_le_bytes(word);
    }
    lanes
}

fn add(sum: &mut [u64; 4], lanes: [u64; 4]) {
    for (s, l) in sum.iter_mut().zip(lanes) {
        *s = s.wrapping_add(l);
    }
}

fn sub(sum: &mut [u64; 4], lanes: [u64; 4]) {
    for (s, l) in sum.iter_mut().zip(lanes) {
        *s = s.wrapping_sub(l);
    }
}

fn u64s<const N: usize>(bytes: &[u8]) -> Option<[u64; N]> {
    if bytes.len() != N * 8 {
        return None;
    }
    let mut out = [0u64; N];
    for (value, chunk) in out.iter_mut().zip(bytes.chunks_exact(8)) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        *value = u64::from_be_bytes(word);
    }
    Some(out)
}

fn be_bytes(values: &[u64]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_be_bytes()).collect()
}

impl GuestStore {
    /// Open (creating) the store in the directory `dir`.
    pub fn open(dir: &std::path::Path) -> Result<Self, StorageError> {
        let db = super::open_sled(dir, SLED_STORE_CACHE_BYTES, false).map_err(
            StorageError::sled("open the guest store (is another node using this directory?)"),
        )?;
        super::make_private(dir).map_err(|source| StorageError::DataDirUnwritable {
            path: dir.to_path_buf(),
            source,
        })?;
        Self::open_in(db)
    }

    /// Open the store in `db` (empty if it was never written).
    fn open_in(db: sled::Db) -> Result<Self, StorageError> {
        let tree = db
            .open_tree(TREE)
            .map_err(StorageError::sled("open the guest store"))?;
        let corrupt = |what: &[u8]| StorageError::Corrupt {
            what: format!("guest store key {}", String::from_utf8_lossy(what)),
            reason: "wrong length".into(),
        };
        let read = |key: &[u8]| {
            tree.get(key)
                .map_err(StorageError::sled("read the guest store's metadata"))
        };
        let size = match read(SIZE)? {
            Some(bytes) => {
                let [keys, bytes] = u64s::<2>(&bytes).ok_or_else(|| corrupt(SIZE))?;
                StoreSize { keys, bytes }
            }
            None => StoreSize::default(),
        };
        let sum = match read(SUM)? {
            Some(bytes) => u64s::<4>(&bytes).ok_or_else(|| corrupt(SUM))?,
            None => [0; 4],
        };
        let applied = match read(APPLIED)? {
            Some(bytes) => {
                let [index, term] = u64s::<2>(&bytes).ok_or_else(|| corrupt(APPLIED))?;
                StoreApplied { index, term }
            }
            None => StoreApplied::default(),
        };
        let floor = match read(change_history::FLOOR)? {
            Some(bytes) => u64s::<1>(&bytes).ok_or_else(|| corrupt(change_history::FLOOR))?[0],
            // A store from before the history (or with it off): complete
            // from here on.
            None => applied.index,
        };
        let timer = GuestTimer::default();
        timer.set(
            tree.get(data_key(TIMER_KEY))
                .map_err(StorageError::sled("read the guest store's timer"))?
                .and_then(|value| timer_due_ms(&value)),
        );
        Ok(GuestStore {
            db,
            tree,
            totals: Arc::new(Mutex::new(Totals { size, sum, applied })),
            capture: Arc::new(Mutex::new(None)),
            flusher: Arc::default(),
            pins: Arc::default(),
            on_commit: Arc::default(),
            failed: Arc::default(),
            history: Arc::new(Mutex::new(History {
                retention: 0,
                floor,
            })),
            feed: tokio::sync::broadcast::channel(WATCH_FEED_CAPACITY).0,
            timer,
        })
    }

    /// Keep the changes of the last `entries` applied entries for watchers
    /// (0: keep none; watchers then only see what happens while they
    /// watch). Turning it off removes the history kept so far.
    pub fn set_history_retention(&self, entries: u64) -> Result<(), StorageError> {
        let _exclusive = self.exclusive();
        let applied = self.totals().applied.index;
        let mut history = self.history();
        if entries == 0 {
            loop {
                let mut batch = sled::Batch::default();
                let mut count = 0;
                for key in self.tree.scan_prefix(change_history::HISTORY_PREFIX).keys() {
                    batch.remove(key.map_err(StorageError::sled("clear the change history"))?);
                    count += 1;
                    if count == STORE_IMPORT_BATCH_RECORDS {
                        break;
                    }
                }
                if count == 0 {
                    break;
                }
                self.tree
                    .apply_batch(batch)
                    .map_err(StorageError::sled("clear the change history"))?;
            }
            self.tree
                .remove(change_history::FLOOR)
                .map_err(StorageError::sled("clear the change history"))?;
            history.floor = applied;
        } else if history.retention == 0 {
            // Complete from the floor read at open (the applied index if
            // the history was off before).
            self.tree
                .insert(change_history::FLOOR, &history.floor.to_be_bytes())
                .map_err(StorageError::sled("start the change history"))?;
        }
        history.retention = entries;
        Ok(())
    }

    fn history(&self) -> std::sync::MutexGuard<'_, History> {
        self.history.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The first index whose changes a watcher can still be given.
    pub fn history_oldest_index(&self) -> u64 {
        let history = *self.history();
        if history.retention == 0 {
            self.totals().applied.index + 1
        } else {
            history.floor + 1
        }
    }

    /// Live news of every commit and import from now on (a receiver that
    /// falls more than [`WATCH_FEED_CAPACITY`] commits behind is told it
    /// lagged, and reads the history instead).
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<FeedItem> {
        self.feed.subscribe()
    }

    /// The changes of the entries after `since` under `prefix`, oldest
    /// first: at most `max_entries` of them and about `max_bytes` (one
    /// always fits). Subscribe first, then read: a commit is published
    /// after it is readable here, so nothing falls between the two.
    pub fn history_after(
        &self,
        since: u64,
        prefix: &[u8],
        max_entries: usize,
        max_bytes: usize,
    ) -> Result<HistoryPage, HistoryError> {
        let oldest = self.history_oldest_index();
        if since.saturating_add(1) < oldest {
            return Err(HistoryError::Compacted {
                oldest_index: oldest,
            });
        }
        // Read before the records: everything committed up to here is in
        // them (a commit's batch lands before its index is published).
        let committed = self.totals().applied.index;
        let mut page = HistoryPage {
            entries: Vec::new(),
            scanned_to: committed.max(since),
        };
        let mut bytes = 0usize;
        let start = change_history::record_key(since.saturating_add(1));
        let end = change_history::record_key(committed.saturating_add(1));
        if start < end {
            for record in self.tree.range(start..end) {
                let (key, value) = record.map_err(io("read the change history"))?;
                let index = change_history::record_index(&key)
                    .ok_or_else(|| StoreIoError("a change history key is damaged".into()))?;
                if page.entries.len() == max_entries || bytes >= max_bytes {
                    page.scanned_to = index - 1;
                    break;
                }
                let changes = change_history::decode(&value).map_err(|reason| {
                    StoreIoError(format!("the change history at index {index}: {reason}"))
                })?;
                let entry = EntryChanges { index, changes };
                if let Some(matched) = change_history::matching(&entry, prefix) {
                    bytes += value.len();
                    page.entries.push(matched);
                }
            }
        }
        // Pruned while it was read: what it skipped may be gone.
        let oldest = self.history_oldest_index();
        if since.saturating_add(1) < oldest {
            return Err(HistoryError::Compacted {
                oldest_index: oldest,
            });
        }
        Ok(page)
    }

    /// The time the guest asked to be called at (shared, kept current).
    pub fn timer(&self) -> GuestTimer {
        self.timer.clone()
    }

    /// Add the records of `changes` to `batch` and remove the oldest ones
    /// past the retention (a few more than were added, so the history
    /// shrinks back after the retention is lowered).
    fn record_history(
        &self,
        batch: &mut sled::Batch,
        changes: &[EntryChanges],
        applied: u64,
    ) -> Result<(), StoreIoError> {
        let mut history = self.history();
        if history.retention == 0 {
            history.floor = applied;
            return Ok(());
        }
        for entry in changes {
            batch.insert(
                &change_history::record_key(entry.index)[..],
                change_history::encode(&entry.changes),
            );
        }
        let target = applied.saturating_sub(history.retention);
        if target <= history.floor {
            return Ok(());
        }
        let budget = HISTORY_PRUNE_MIN_PER_COMMIT + 2 * changes.len();
        let mut floor = target;
        let range = change_history::record_key(history.floor + 1)
            ..change_history::record_key(target.saturating_add(1));
        for (removed, key) in self.tree.range(range).keys().enumerate() {
            let key = key.map_err(io("prune the change history"))?;
            if removed == budget {
                let index = change_history::record_index(&key)
                    .ok_or_else(|| StoreIoError("a change history key is damaged".into()))?;
                floor = index - 1;
                break;
            }
            batch.remove(key);
        }
        // Moved before the batch lands, so a reader that misses a removed
        // record sees the new floor when it checks afterwards.
        history.floor = floor;
        batch.insert(change_history::FLOOR, &floor.to_be_bytes());
        Ok(())
    }

    /// Tell live watchers about a commit (only if any listen: the changes
    /// are copied for them).
    fn publish(&self, item: impl FnOnce() -> FeedItem) {
        if self.feed.receiver_count() > 0 {
            let _ = self.feed.send(item());
        }
    }

    /// Keep the store as it is while the returned pin lives: commits and
    /// imports wait for it (a query holds one for its whole call, so all
    /// its reads see one state).
    pub fn pin(&self) -> StorePin<'_> {
        let shared = self.pins.read().unwrap_or_else(|p| p.into_inner());
        StorePin {
            _shared: shared,
            applied: self.totals().applied,
        }
    }

    /// The entry the store's state was applied up to, as of the last
    /// commit (index 0: none yet).
    pub fn committed(&self) -> StoreApplied {
        self.totals().applied
    }

    /// Call `listener` with the applied index after every commit and
    /// import from now on (replacing an earlier listener).
    pub fn set_commit_listener(&self, listener: CommitListener) {
        *self.on_commit.lock().unwrap_or_else(|p| p.into_inner()) = Some(listener);
    }

    fn committed_to(&self, index: u64) {
        if let Some(listener) = &*self.on_commit.lock().unwrap_or_else(|p| p.into_inner()) {
            listener(index);
        }
    }

    /// Remember that a write failed: the store is never flushed again.
    fn mark_failed(&self) {
        self.failed
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// The node stopped on a fatal error (a failed log write: the disk is
    /// full or fails `fsync`): never flush this store again, not even in
    /// sled's drop, which ends in `sync_all().unwrap()` and so panicked on a
    /// disk answering `EIO` (exit 101 and a backtrace after the real cause).
    /// Like a crash at this point: a restart replays the log from the
    /// store's durable applied index.
    pub fn abandon(&self) {
        self.mark_failed();
    }

    fn exclusive(&self) -> std::sync::RwLockWriteGuard<'_, ()> {
        self.pins.write().unwrap_or_else(|p| p.into_inner())
    }

    fn totals(&self) -> std::sync::MutexGuard<'_, Totals> {
        self.totals.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The last entry applied to the store; `None` if none ever was, or if
    /// loading a snapshot into it was interrupted (it must be loaded again).
    pub fn applied(&self) -> Result<Option<StoreApplied>, StoreIoError> {
        if self
            .tree
            .contains_key(IMPORTING)
            .map_err(io("read the guest store's metadata"))?
        {
            return Ok(None);
        }
        let Some(bytes) = self
            .tree
            .get(APPLIED)
            .map_err(io("read the guest store's applied index"))?
        else {
            return Ok(None);
        };
        let [index, term] = u64s::<2>(&bytes)
            .ok_or_else(|| StoreIoError("the guest store's applied index is damaged".into()))?;
        Ok(Some(StoreApplied { index, term }))
    }

    /// The node metadata committed with the applied index.
    pub fn node_meta(&self) -> Result<Option<Vec<u8>>, StoreIoError> {
        Ok(self
            .tree
            .get(NODE_META)
            .map_err(io("read the guest store's node metadata"))?
            .map(|v| v.to_vec()))
    }

    fn capture(&self) -> std::sync::MutexGuard<'_, Option<Capture>> {
        self.capture.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Start exporting the state as it is now (call it between commits, on
    /// the thread that commits). The [`Export`] then streams that state on
    /// any thread while commits go on: a commit first saves the old value
    /// of each key the export has not reached yet. Only one export runs at
    /// a time.
    pub fn begin_export(&self) -> Result<Export, StoreIoError> {
        let mut capture = self.capture();
        if capture.is_some() {
            return Err(StoreIoError("an export is already running".into()));
        }
        *capture = Some(Capture::default());
        let size = self.totals().size;
        Ok(Export {
            store: self.clone(),
            len: size.bytes + 8 * size.keys,
        })
    }

    /// The next pairs of the running export (at most
    /// [`STORE_EXPORT_BATCH_PAIRS`] or about [`STORE_EXPORT_BATCH_BYTES`]),
    /// as of its start; empty at the end.
    fn export_batch(&self) -> Result<Pairs, StoreIoError> {
        let mut guard = self.capture();
        let capture = guard
            .as_mut()
            .ok_or_else(|| StoreIoError("no export is running".into()))?;
        let end = prefix_end(DATA_PREFIX).unwrap_or_default();
        let lower = match &capture.cursor {
            Some(cursor) => std::ops::Bound::Excluded(data_key(cursor)),
            None => std::ops::Bound::Included(DATA_PREFIX.to_vec()),
        };
        let mut live = self
            .tree
            .range::<Vec<u8>, _>((lower, std::ops::Bound::Excluded(end)))
            .peekable();
        let before_lower = match &capture.cursor {
            Some(cursor) => std::ops::Bound::Excluded(cursor.clone()),
            None => std::ops::Bound::Unbounded,
        };
        let mut before = capture
            .before
            .range::<Vec<u8>, _>((before_lower, std::ops::Bound::Unbounded))
            .peekable();
        let mut batch = Vec::new();
        let mut batch_bytes = 0usize;
        let mut last = None;
        while batch.len() < STORE_EXPORT_BATCH_PAIRS && batch_bytes < STORE_EXPORT_BATCH_BYTES {
            let live_key = match live.peek() {
                Some(Ok((key, _))) => Some(key[DATA_PREFIX.len()..].to_vec()),
                Some(Err(_)) => {
                    let Some(Err(error)) = live.next() else {
                        break;
                    };
                    return Err(io("export the guest store")(error));
                }
                None => None,
            };
            let before_key = before.peek().map(|(key, _)| (*key).clone());
            let (key, value) = match (live_key, before_key) {
                (None, None) => break,
                (Some(l), Some(b)) if b <= l => {
                    if b == l {
                        live.next();
                    }
                    let (key, old) = before.next().expect("peeked");
                    (key.clone(), old.clone())
                }
                (Some(_), _) => match live.next() {
                    Some(Ok((key, value))) => {
                        (key[DATA_PREFIX.len()..].to_vec(), Some(value.to_vec()))
                    }
                    _ => break,
                },
                (None, Some(_)) => {
                    let (key, old) = before.next().expect("peeked");
                    (key.clone(), old.clone())
                }
            };
            last = Some(key.clone());
            // A key written since the export began, absent before: skip.
            if let Some(value) = value {
                batch_bytes += key.len() + value.len();
                batch.push((key, value));
            }
        }
        if let Some(last) = last {
            capture.cursor = Some(last);
        }
        Ok(batch)
    }

    /// Replace the whole state with the `len` bytes of pairs `input` holds
    /// (as an [`Export`] writes them), applied as of `mark`. Streams in
    /// batches of [`STORE_IMPORT_BATCH_RECORDS`]; an interrupted import
    /// leaves the store marked as such, so it is never taken for a state.
    pub fn import(
        &self,
        input: &mut dyn Read,
        len: u64,
        mark: CommitMark<'_>,
    ) -> Result<(), StoreIoError> {
        self.import_pairs(input, len, mark)
            .inspect_err(|_| self.mark_failed())
    }

    fn import_pairs(
        &self,
        input: &mut dyn Read,
        len: u64,
        mark: CommitMark<'_>,
    ) -> Result<(), StoreIoError> {
        let exclusive = self.exclusive();
        self.tree
            .insert(IMPORTING, &[])
            .map_err(io("mark the guest store as importing"))?;
        self.clear_data()?;
        let mut totals = Totals {
            applied: StoreApplied {
                index: mark.index,
                term: mark.term,
            },
            ..Totals::default()
        };
        let mut batch = sled::Batch::default();
        let mut in_batch = 0usize;
        let mut left = len;
        let bad =
            |why: &str| StoreIoError(format!("the snapshot's store pairs are damaged: {why}"));
        let mut read_exact = |buf: &mut [u8], left: &mut u64| -> Result<(), StoreIoError> {
            if (buf.len() as u64) > *left {
                return Err(bad("a pair runs past the section"));
            }
            input
                .read_exact(buf)
                .map_err(|e| StoreIoError(format!("reading the snapshot's pairs: {e}")))?;
            *left -= buf.len() as u64;
            Ok(())
        };
        let mut previous: Option<Vec<u8>> = None;
        let mut loaded_since_flush = 0u64;
        while left > 0 {
            let mut word = [0u8; 4];
            read_exact(&mut word, &mut left)?;
            let mut key = vec![0u8; u32::from_be_bytes(word) as usize];
            read_exact(&mut key, &mut left)?;
            read_exact(&mut word, &mut left)?;
            let mut value = vec![0u8; u32::from_be_bytes(word) as usize];
            read_exact(&mut value, &mut left)?;
            if previous.as_ref().is_some_and(|p| *p >= key) {
                return Err(bad("keys out of order"));
            }
            add(&mut totals.sum, pair_hash(&key, &value));
            totals.size.keys += 1;
            totals.size.bytes += (key.len() + value.len()) as u64;
            loaded_since_flush += (key.len() + value.len()) as u64;
            batch.insert(data_key(&key), value);
            previous = Some(key);
            in_batch += 1;
            if in_batch == STORE_IMPORT_BATCH_RECORDS {
                self.tree
                    .apply_batch(std::mem::take(&mut batch))
                    .map_err(io("load the snapshot into the guest store"))?;
                in_batch = 0;
                if loaded_since_flush >= STORE_FLUSH_EVERY_BYTES {
                    // Bounds sled's memory while GiBs stream in.
                    self.db.flush().map_err(io("flush the guest store"))?;
                    loaded_since_flush = 0;
                }
            }
        }
        self.write_meta(&mut batch, &totals, &mark);
        batch.remove(IMPORTING);
        {
            // The history before the snapshot's index is unknown here.
            let mut history = self.history();
            history.floor = mark.index;
            if history.retention > 0 {
                batch.insert(change_history::FLOOR, &mark.index.to_be_bytes());
            }
        }
        self.tree
            .apply_batch(batch)
            .map_err(io("load the snapshot into the guest store"))?;
        *self.totals() = totals;
        self.timer.set(
            self.tree
                .get(data_key(TIMER_KEY))
                .map_err(io("read the guest store's timer"))?
                .and_then(|value| timer_due_ms(&value)),
        );
        drop(exclusive);
        self.committed_to(mark.index);
        self.publish(|| FeedItem::Imported { index: mark.index });
        // Not required (the snapshot file stays until a newer one), but a
        // restart right after then need not load it again.
        self.db.flush().map_err(io("flush the guest store"))?;
        Ok(())
    }

    /// Remove every pair (and the metadata), in bounded batches.
    fn clear_data(&self) -> Result<(), StoreIoError> {
        loop {
            let mut batch = sled::Batch::default();
            let mut count = 0;
            for key in self.tree.iter().keys() {
                let key = key.map_err(io("clear the guest store"))?;
                if key.as_ref() == IMPORTING {
                    continue;
                }
                batch.remove(key);
                count += 1;
                if count == STORE_IMPORT_BATCH_RECORDS {
                    break;
                }
            }
            if count == 0 {
                return Ok(());
            }
            self.tree
                .apply_batch(batch)
                .map_err(io("clear the guest store"))?;
        }
    }

    /// Count `written` bytes; past [`STORE_FLUSH_EVERY_BYTES`] start a
    /// flush on a thread of its own (one at a time). Returns the error of
    /// an earlier background flush.
    fn flush_in_background(&self, written: u64) -> Result<(), StoreIoError> {
        use std::sync::atomic::Ordering;
        let flusher = &self.flusher;
        if let Some(failure) = flusher
            .failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            return Err(StoreIoError(failure));
        }
        let unflushed = flusher.unflushed.fetch_add(written, Ordering::Relaxed) + written;
        if unflushed < STORE_FLUSH_EVERY_BYTES || flusher.running.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        flusher.unflushed.store(0, Ordering::Relaxed);
        let (db, flusher, failed) = (self.db.clone(), self.flusher.clone(), self.failed.clone());
        let spawned = std::thread::Builder::new()
            .name("store-flush".into())
            .spawn(move || {
                if let Err(error) = db.flush() {
                    tracing::error!(%error, "flushing the guest store failed");
                    failed.store(true, Ordering::Relaxed);
                    *flusher.failure.lock().unwrap_or_else(|p| p.into_inner()) =
                        Some(format!("flush the guest store: {error}"));
                }
                flusher.running.store(false, Ordering::Release);
            });
        if spawned.is_err() {
            // No thread to spare: flush here.
            self.flusher.running.store(false, Ordering::Release);
            self.db.flush().map_err(io("flush the guest store"))?;
        }
        Ok(())
    }

    fn write_meta(&self, batch: &mut sled::Batch, totals: &Totals, mark: &CommitMark<'_>) {
        batch.insert(APPLIED, be_bytes(&[mark.index, mark.term]));
        batch.insert(SIZE, be_bytes(&[totals.size.keys, totals.size.bytes]));
        batch.insert(SUM, be_bytes(&totals.sum));
        if let Some(meta) = mark.node_meta {
            batch.insert(NODE_META, meta);
        }
    }
}

/// A point-in-time export of a [`GuestStore`] (see
/// [`GuestStore::begin_export`]): every pair, in key order, as `u32 BE key
/// length, key, u32 BE value length, value`, a snapshot's state section.
/// Reads the tree in batches; memory grows only with the keys committed
/// while it runs (their old values).
pub struct Export {
    store: GuestStore,
    len: u64,
}

impl std::fmt::Debug for Export {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Export").field("len", &self.len).finish()
    }
}

impl Export {
    /// The bytes [`Self::write_to`] writes.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Stream the pairs into `out`; returns the bytes written (always
    /// [`Self::len`] on success).
    pub fn write_to(&self, out: &mut dyn Write) -> Result<u64, StoreIoError> {
        let mut written = 0u64;
        loop {
            let batch = self.store.export_batch()?;
            if batch.is_empty() {
                break;
            }
            for (key, value) in batch {
                for part in [
                    &(key.len() as u32).to_be_bytes()[..],
                    &key,
                    &(value.len() as u32).to_be_bytes()[..],
                    &value,
                ] {
                    out.write_all(part)
                        .map_err(|e| StoreIoError(format!("writing the store's pairs: {e}")))?;
                }
                written += 8 + key.len() as u64 + value.len() as u64;
            }
        }
        if written != self.len {
            return Err(StoreIoError(format!(
                "the export wrote {written} bytes, the store held {} when it began",
                self.len
            )));
        }
        Ok(written)
    }
}

impl Drop for Export {
    fn drop(&mut self) {
        *self.store.capture() = None;
    }
}

impl CommittedState for GuestStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreIoError> {
        Ok(self
            .tree
            .get(data_key(key))
            .map_err(io("read the guest store"))?
            .map(|v| v.to_vec()))
    }

    fn scan<'a>(&'a self, start: &[u8], end: Option<&[u8]>) -> PairIter<'a> {
        let upper = match end {
            Some(end) => data_key(end),
            None => prefix_end(DATA_PREFIX).unwrap_or_default(),
        };
        let lower = data_key(start);
        if upper <= lower {
            return Box::new(std::iter::empty());
        }
        Box::new(self.tree.range(lower..upper).map(|pair| {
            pair.map(|(key, value)| (key[DATA_PREFIX.len()..].to_vec(), value.to_vec()))
                .map_err(io("scan the guest store"))
        }))
    }

    fn size(&self) -> Result<StoreSize, StoreIoError> {
        Ok(self.totals().size)
    }

    fn commit(&self, writes: &WriteSet, mark: CommitMark<'_>) -> Result<(), StoreIoError> {
        let exclusive = self.exclusive();
        // Held through the batch, so an export never reads between the
        // saved old values and the new ones.
        let mut capture = self.capture();
        if let Some(capture) = capture.as_mut() {
            for (key, write) in writes {
                if capture.cursor.as_ref().is_none_or(|cursor| key > cursor) {
                    capture
                        .before
                        .entry(key.clone())
                        .or_insert_with(|| write.old.clone());
                }
            }
        }
        let mut totals = *self.totals();
        let mut batch = sled::Batch::default();
        for (key, write) in writes {
            if let Some(old) = &write.old {
                sub(&mut totals.sum, pair_hash(key, old));
            }
            totals.size = totals.size.after(key, write);
            match &write.new {
                Some(new) => {
                    add(&mut totals.sum, pair_hash(key, new));
                    batch.insert(data_key(key), new.as_slice());
                }
                None => batch.remove(data_key(key)),
            }
        }
        self.write_meta(&mut batch, &totals, &mark);
        self.record_history(&mut batch, mark.changes, mark.index)
            .inspect_err(|_| self.mark_failed())?;
        self.tree
            .apply_batch(batch)
            .map_err(io("commit to the guest store"))
            .inspect_err(|_| self.mark_failed())?;
        totals.applied = StoreApplied {
            index: mark.index,
            term: mark.term,
        };
        *self.totals() = totals;
        if let Some(write) = writes.get(TIMER_KEY) {
            self.timer.set(write.new.as_deref().and_then(timer_due_ms));
        }
        drop(capture);
        drop(exclusive);
        self.committed_to(mark.index);
        self.publish(|| FeedItem::Committed {
            applied: mark.index,
            changes: mark.changes.into(),
            rendered: mark.changes.iter().map(|_| Default::default()).collect(),
        });
        let written: usize = writes
            .iter()
            .map(|(key, write)| key.len() + write.new.as_ref().map_or(0, Vec::len))
            .sum();
        self.flush_in_background(written as u64)
    }

    fn digest(&self) -> Result<[u8; 32], StoreIoError> {
        let totals = *self.totals();
        let mut hasher = blake3::Hasher::new();
        hasher.update(b"iroh-raft guest store v1");
        hasher.update(&be_bytes(&totals.sum));
        hasher.update(&be_bytes(&[totals.size.keys, totals.size.bytes]));
        Ok(*hasher.finalize().as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wasm::kv::StagedWrite;

    fn open() -> (tempfile::TempDir, GuestStore) {
        let (dir, _, store) = open_db();
        (dir, store)
    }

    fn open_db() -> (tempfile::TempDir, sled::Db, GuestStore) {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = sled::open(dir.path()).expect("sled");
        let store = GuestStore::open_in(db.clone()).expect("open");
        (dir, db, store)
    }

    fn put(key: &str, old: Option<&str>, new: Option<&str>) -> (Vec<u8>, StagedWrite) {
        (
            key.as_bytes().to_vec(),
            StagedWrite {
                old: old.map(|v| v.as_bytes().to_vec()),
                new: new.map(|v| v.as_bytes().to_vec()),
            },
        )
    }

    fn mark(index: u64) -> CommitMark<'static> {
        CommitMark {
            index,
            term: 1,
            node_meta: None,
            changes: &[],
        }
    }

    #[test]
    fn commits_are_visible_with_their_index_and_digest_follows_content() {
        let (_dir, store) = open();
        assert_eq!(store.applied().expect("applied"), None);
        let empty = store.digest().expect("digest");
        store
            .commit(
                &[put("a", None, Some("1")), put("b", None, Some("2"))].into(),
                mark(3),
            )
            .expect("commit");
        assert_eq!(
            store.applied().expect("applied"),
            Some(StoreApplied { index: 3, term: 1 })
        );
        assert_eq!(store.get(b"a").expect("get"), Some(b"1".to_vec()));
        let two = store.digest().expect("digest");
        store
            .commit(&[put("b", Some("2"), None)].into(), mark(4))
            .expect("commit");
        let one = store.digest().expect("digest");
        assert_ne!(one, two);
        store
            .commit(&[put("a", Some("1"), None)].into(), mark(5))
            .expect("commit");
        assert_eq!(
            store.digest().expect("digest"),
            empty,
            "the digest is of the content, not of the history"
        );
        assert_eq!(store.size().expect("size"), StoreSize::default());
    }

    #[test]
    fn export_then_import_gives_the_same_state() {
        let (_dir, store) = open();
        let writes: WriteSet = (0..10_000u32)
            .map(|i| {
                (
                    format!("key{i:05}").into_bytes(),
                    StagedWrite {
                        old: None,
                        new: Some(vec![i as u8; (i % 50) as usize]),
                    },
                )
            })
            .collect();
        store.commit(&writes, mark(7)).expect("commit");
        let mut section = Vec::new();
        let len = store
            .begin_export()
            .expect("begin")
            .write_to(&mut section)
            .expect("export");
        assert_eq!(len, section.len() as u64);

        let (_dir2, db2, other) = open_db();
        other
            .commit(&[put("stale", None, Some("x"))].into(), mark(2))
            .expect("commit");
        other
            .import(&mut section.as_slice(), len, mark(7))
            .expect("import");
        assert_eq!(
            other.digest().expect("digest"),
            store.digest().expect("digest")
        );
        assert_eq!(other.get(b"stale").expect("get"), None);
        assert_eq!(other.size().expect("size"), store.size().expect("size"));
        let reopened = GuestStore::open_in(db2).expect("reopen");
        assert_eq!(
            reopened.digest().expect("digest"),
            store.digest().expect("digest"),
            "size and hash are read back from the tree"
        );
    }

    #[test]
    fn an_export_sees_the_state_when_it_began_while_commits_go_on() {
        let (_dir, store) = open();
        let n = STORE_EXPORT_BATCH_PAIRS;
        let initial: WriteSet = (0..3 * n)
            .map(|i| put(&format!("k{i:06}"), None, Some(&format!("v{i}"))))
            .collect();
        store.commit(&initial, mark(1)).expect("commit");
        let mut expected = Vec::new();
        store
            .begin_export()
            .expect("begin")
            .write_to(&mut expected)
            .expect("export");

        // The writer commits after the first batch was read: it changes a
        // key already written and one not yet, deletes one not yet, and
        // adds keys on both sides of the cursor.
        let export = store.begin_export().expect("begin");
        assert!(store.begin_export().is_err(), "one export at a time");
        let changes: WriteSet = [
            put("k000001", Some("v1"), Some("changed")),
            put(
                &format!("k{:06}", 2 * n),
                Some(&format!("v{}", 2 * n)),
                Some("changed"),
            ),
            put(
                &format!("k{:06}", 2 * n + 1),
                Some(&format!("v{}", 2 * n + 1)),
                None,
            ),
            put("a-new-first", None, Some("x")),
            put("z-new-last", None, Some("y")),
        ]
        .into();
        let mut streamed = Vec::new();
        let mut writer = CommitAfterFirstWrite {
            out: &mut streamed,
            store: &store,
            changes: Some(changes),
        };
        export.write_to(&mut writer).expect("export");
        drop(export);
        assert!(
            streamed == expected,
            "the export is the state when it began"
        );

        let mut after = Vec::new();
        store
            .begin_export()
            .expect("begin")
            .write_to(&mut after)
            .expect("export");
        assert!(after != expected, "the commits did land");
        assert_eq!(store.get(b"z-new-last").expect("get"), Some(b"y".to_vec()));
    }

    /// Commits `changes` to the store after the first write it passes on.
    struct CommitAfterFirstWrite<'a> {
        out: &'a mut Vec<u8>,
        store: &'a GuestStore,
        changes: Option<WriteSet>,
    }

    impl Write for CommitAfterFirstWrite<'_> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.out.extend_from_slice(buf);
            if let Some(changes) = self.changes.take() {
                self.store.commit(&changes, mark(9)).expect("commit");
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_damaged_section_is_refused_and_the_store_stays_marked() {
        let (_dir, store) = open();
        let section = [0u8, 0, 0, 9, b'k'];
        let error = store
            .import(&mut section.as_slice(), section.len() as u64, mark(3))
            .expect_err("damaged");
        assert!(error.to_string().contains("damaged"), "{error}");
        assert_eq!(store.applied().expect("applied"), None);
    }

    #[test]
    fn a_pinned_store_keeps_its_state_until_the_pin_drops() {
        let (_dir, store) = open();
        store
            .commit(&[put("k", None, Some("1"))].into(), mark(3))
            .expect("commit");
        let (told, listened) = std::sync::mpsc::channel();
        store.set_commit_listener(Box::new(move |index| {
            let _ = told.send(index);
        }));
        let pin = store.pin();
        assert_eq!(pin.applied, StoreApplied { index: 3, term: 1 });
        let (done, committed) = std::sync::mpsc::channel();
        let writer = store.clone();
        let thread = std::thread::spawn(move || {
            let result = writer.commit(&[put("k", Some("1"), Some("2"))].into(), mark(4));
            let _ = done.send(());
            result
        });
        assert!(
            committed
                .recv_timeout(std::time::Duration::from_millis(200))
                .is_err(),
            "a commit went through a pin"
        );
        assert_eq!(store.get(b"k").expect("get"), Some(b"1".to_vec()));
        drop(pin);
        thread.join().expect("joins").expect("commit");
        assert_eq!(listened.recv().expect("told"), 4);
        assert_eq!(store.get(b"k").expect("get"), Some(b"2".to_vec()));
        assert_eq!(store.committed(), StoreApplied { index: 4, term: 1 });
    }
}

#[cfg(test)]
#[path = "guest_store_history_tests.rs"]
mod history_tests;
