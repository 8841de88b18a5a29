//! What the log store last made durable, recorded outside sled, so that a
//! damaged store is refused instead of silently served.
//!
//! sled treats a checksum failure anywhere in its log file as the torn tail
//! of a crash and recovers the consistent prefix before it. A flipped byte in
//! the middle of `db` (or a truncated file) therefore comes back as an
//! *older* store that passes every check of `recovery.rs`: acknowledged
//! entries, the term and the vote are gone, and the node would serve an old
//! state, vote twice in a term and lose writes it acknowledged.
//!
//! After every durable write the store hands its new position (a
//! [`DurableMark`]) to a background thread, which writes it to
//! `durable-mark` in the store's directory and `fdatasync`s it. The mark only
//! ever describes state that sled already made durable, so after a power
//! cut the store is at or past the mark; at open, a store that is behind it
//! is refused with [`StorageError::DurabilityLost`].
//!
//! # What "behind" means
//!
//! A Raft log may legitimately shrink (a new leader truncates conflicting
//! entries, a snapshot replaces a log), and the mark may lag the store by a
//! few writes. So the check uses only what can never go back:
//!
//! - the hard state's term never decreases, and within one term the vote
//!   never changes;
//! - the commit index never decreases, and a committed entry never changes
//!   (its term at the marked commit index must match);
//! - the stored snapshot's index never decreases;
//! - within one term, entries written in that term are never removed (log
//!   matching: a leader never contradicts the entries of its own term), so
//!   if the marked log ended with an entry of the marked term and the store
//!   is still in that term, its log reaches at least that far.
//!
//! Damage that loses only the writes of the last moments before the mark
//! could be written (one `fdatasync` of a small file) is not noticed; any
//! older loss is.
//!
//! # File format
//!
//! Two fixed slots of [`SLOT_LEN`] bytes in separate 512-byte sectors, written
//! alternately, each with a sequence number and a BLAKE3 checksum: a torn
//! write damages at most the slot being written, and open takes the valid
//! slot with the highest sequence number. The file's size never changes after
//! creation, so `fdatasync` has no metadata to write.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::thread::JoinHandle;
use std::time::Instant;

use crate::limits::DURABLE_MARK_INTERVAL;

use super::cache::{Cache, TermLookup};
use super::data_dir::create_private_file;
use super::error::StorageError;

/// Name of the mark file inside the log store's directory (sled only looks
/// at its own `db`, `conf`, `blobs/` and `snap.*` there).
pub(crate) const MARK_FILE: &str = "durable-mark";
/// Magic bytes at the start of a slot.
const MAGIC: &[u8; 8] = b"IRDMARK1";
/// Bytes of one slot: magic, sequence number, seven fields, checksum.
const SLOT_LEN: usize = 8 + 8 + 7 * 8 + CHECKSUM_LEN;
/// Bytes of BLAKE3 kept as the slot's checksum.
const CHECKSUM_LEN: usize = 16;
/// Offset of slot `i`: one slot per 512-byte sector.
const SLOT_SPACING: u64 = 512;
/// Size of the file: both slots.
const FILE_LEN: u64 = 2 * SLOT_SPACING;

/// The position of the log store after a durable write.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct DurableMark {
    /// Hard state: term, vote, commit index.
    pub(crate) term: u64,
    pub(crate) vote: u64,
    pub(crate) commit: u64,
    /// Term of the entry at `commit` (0 when `commit` is 0).
    pub(crate) commit_term: u64,
    /// Index and term of the last entry (or of the snapshot when the log is empty).
    pub(crate) last_index: u64,
    pub(crate) last_term: u64,
    /// Index of the stored snapshot, 0 when there is none.
    pub(crate) snapshot_index: u64,
}

impl DurableMark {
    /// The position `cache` describes.
    pub(crate) fn of(cache: &Cache) -> Self {
        let hard_state = cache.hard_state();
        let term_at = |index: u64| match cache.term(index) {
            TermLookup::Found(term) => term,
            _ => 0,
        };
        let last_index = cache.last_index();
        DurableMark {
            term: hard_state.term,
            vote: hard_state.vote,
            commit: hard_state.commit,
            commit_term: term_at(hard_state.commit),
            last_index,
            last_term: term_at(last_index),
            snapshot_index: cache.snapshot_index(),
        }
    }

    /// Whether the recovered store `cache` can be the store this mark was
    /// taken of, or a later one. `Err` says what went back.
    pub(crate) fn check(&self, cache: &Cache) -> Result<(), String> {
        let now = DurableMark::of(cache);
        if now.term < self.term {
            return Err(format!(
                "its term is {} but it had made term {} durable",
                now.term, self.term
            ));
        }
        if now.term == self.term && self.vote != 0 && now.vote != self.vote {
            return Err(format!(
                "its vote in term {} is {} but it had made a vote for {} durable",
                now.term, now.vote, self.vote
            ));
        }
        if now.commit < self.commit {
            return Err(format!(
                "its commit index is {} but it had made commit index {} durable",
                now.commit, self.commit
            ));
        }
        if now.snapshot_index < self.snapshot_index {
            return Err(format!(
                "its snapshot is at index {} but it had made a snapshot at {} durable",
                now.snapshot_index, self.snapshot_index
            ));
        }
        if self.commit > 0 {
            same_entry(cache, self.commit, self.commit_term, "committed entry")?;
        }
        let tail_of_this_term = self.last_term == self.term && self.last_index > 0;
        if now.term == self.term && tail_of_this_term {
            if now.last_index < self.last_index {
                return Err(format!(
                    "its log ends at {} but it had made entries up to {} (term {}) durable",
                    now.last_index, self.last_index, self.last_term
                ));
            }
            same_entry(cache, self.last_index, self.last_term, "entry")?;
        }
        Ok(())
    }

    fn encode(&self, sequence: u64) -> [u8; SLOT_LEN] {
        let mut slot = [0u8; SLOT_LEN];
        slot[..8].copy_from_slice(MAGIC);
        let fields = [
            sequence,
            self.term,
            self.vote,
            self.commit,
            self.commit_term,
            self.last_index,
            self.last_term,
            self.snapshot_index,
        ];
        for (i, field) in fields.iter().enumerate() {
            slot[8 + i * 8..16 + i * 8].copy_from_slice(&field.to_le_bytes());
        }
        let body = SLOT_LEN - CHECKSUM_LEN;
        let checksum = blake3::hash(&slot[..body]);
        slot[body..].copy_from_slice(&checksum.as_bytes()[..CHECKSUM_LEN]);
        slot
    }

    /// `(sequence, mark)` of a valid slot, `None` for a damaged or blank one.
    fn decode(slot: &[u8; SLOT_LEN]) -> Option<(u64, Self)> {
        let body = SLOT_LEN - CHECKSUM_LEN;
        if &slot[..8] != MAGIC
            || blake3::hash(&slot[..body]).as_bytes()[..CHECKSUM_LEN] != slot[body..]
        {
            return None;
        }
        let field = |i: usize| {
            let bytes: [u8; 8] = slot[8 + i * 8..16 + i * 8].try_into().expect("8 bytes");
            u64::from_le_bytes(bytes)
        };
        Some((
            field(0),
            DurableMark {
                term: field(1),
                vote: field(2),
                commit: field(3),
                commit_term: field(4),
                last_index: field(5),
                last_term: field(6),
                snapshot_index: field(7),
            },
        ))
    }
}

/// The store must still hold the entry at `index` with `term`, or a
/// snapshot past it (compaction may have removed the entry since).
fn same_entry(cache: &Cache, index: u64, term: u64, what: &str) -> Result<(), String> {
    match cache.term(index) {
        TermLookup::Found(found) if found == term => Ok(()),
        TermLookup::Found(found) => Err(format!(
            "its {what} at index {index} has term {found} but it had made term {term} durable there"
        )),
        TermLookup::Compacted => Ok(()),
        TermLookup::Unavailable => Err(format!(
            "its log ends at {} but it had made the {what} at index {index} durable",
            cache.last_index()
        )),
    }
}

/// The mark file: reads it at open, writes it from a background thread.
pub(crate) struct MarkFile {
    path: PathBuf,
    file: File,
    sequence: u64,
}

impl MarkFile {
    /// Opens the mark in `dir` and reads it; `None` when there is none yet
    /// (no file, or one created but never written before a crash).
    pub(crate) fn open(dir: &Path) -> Result<Option<(Self, DurableMark)>, StorageError> {
        let path = dir.join(MARK_FILE);
        let file = match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
        {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StorageError::io("open the durable mark", &path)(e)),
        };
        Ok(read_slots(&file, &path)?.map(|(sequence, mark)| {
            (
                MarkFile {
                    path,
                    file,
                    sequence,
                },
                mark,
            )
        }))
    }

    /// Creates (or replaces) the mark in `dir` holding `mark` in both slots,
    /// durably, directory entry included.
    pub(crate) fn create(dir: &Path, mark: &DurableMark) -> Result<Self, StorageError> {
        let path = dir.join(MARK_FILE);
        let file = create_mark_file(dir, &path, mark)?;
        Ok(MarkFile {
            path,
            file,
            sequence: 1,
        })
    }

    /// Writes `mark` into the older slot and makes it durable.
    pub(crate) fn write(&mut self, mark: &DurableMark) -> Result<(), StorageError> {
        self.sequence += 1;
        let offset = (self.sequence % 2) * SLOT_SPACING;
        self.file
            .write_all_at(&mark.encode(self.sequence), offset)
            .and_then(|()| self.file.sync_data())
            .map_err(StorageError::io("write the durable mark", &self.path))
    }
}

fn create_mark_file(dir: &Path, path: &Path, mark: &DurableMark) -> Result<File, StorageError> {
    let io_error = |action| StorageError::io(action, path);
    let file = create_private_file(path).map_err(io_error("create the durable mark"))?;
    // Full size now, so later writes never change the file's length.
    file.set_len(FILE_LEN)
        .and_then(|()| file.write_all_at(&mark.encode(0), 0))
        .and_then(|()| file.write_all_at(&mark.encode(1), SLOT_SPACING))
        .and_then(|()| file.sync_all())
        .map_err(io_error("write the durable mark"))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(StorageError::io("fsync the log store's directory", dir))?;
    // Reopen for reading too (`create_private_file` is write-only).
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(io_error("open the durable mark"))
}

/// The newest valid slot; `None` when both are blank (the file was created
/// but no mark written before a crash).
fn read_slots(file: &File, path: &Path) -> Result<Option<(u64, DurableMark)>, StorageError> {
    let mut best: Option<(u64, DurableMark)> = None;
    let mut blank = 0;
    for i in 0..2 {
        let mut slot = [0u8; SLOT_LEN];
        match file.read_exact_at(&mut slot, i * SLOT_SPACING) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {}
            Err(e) => return Err(StorageError::io("read the durable mark", path)(e)),
        }
        if slot.iter().all(|&b| b == 0) {
            blank += 1;
        } else if let Some(found) = DurableMark::decode(&slot)
            && best.is_none_or(|(sequence, _)| found.0 > sequence)
        {
            best = Some(found);
        }
    }
    if best.is_none() && blank < 2 {
        return Err(StorageError::DurabilityLost {
            path: path.to_path_buf(),
            reason: "its durable mark is unreadable (both copies damaged)".to_owned(),
        });
    }
    Ok(best)
}

/// Writes marks from a background thread, so that a durable write does not
/// wait for a second `fdatasync`. Coalesces: only the newest pending mark is
/// written, at most once per [`DURABLE_MARK_INTERVAL`] (a mark is a lower
/// bound of what is durable, so a later one only checks a little less).
pub(crate) struct MarkWriter {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    pending: Mutex<Pending>,
    wake: Condvar,
}

#[derive(Default)]
struct Pending {
    mark: Option<DurableMark>,
    stop: bool,
    /// The thread sleeps until a mark comes (not out its interval): only
    /// then does a post wake it. Waking it on every durable write, to find
    /// its interval not over, cost a context switch per write.
    idle: bool,
}

impl MarkWriter {
    /// Starts the thread. A write failure is recorded in `failure` (the
    /// store then refuses every write, as for any storage error).
    pub(crate) fn start(mut file: MarkFile, failure: Arc<OnceLock<String>>) -> io::Result<Self> {
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending::default()),
            wake: Condvar::new(),
        });
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("durable-mark".into())
            .spawn(move || {
                crate::background_thread::run_as_background();
                let mut not_before = Instant::now();
                while let Some(mark) = thread_shared.next(not_before) {
                    not_before = Instant::now() + DURABLE_MARK_INTERVAL;
                    if let Err(e) = file.write(&mark) {
                        tracing::error!(error = %e, "durable mark write failed; the store is now read-only");
                        let _ = failure.set(e.to_string());
                        return;
                    }
                }
            })?;
        Ok(MarkWriter {
            shared,
            thread: Some(thread),
        })
    }

    /// Queues `mark` (replacing any mark not written yet).
    pub(crate) fn post(&self, mark: DurableMark) {
        let mut pending = self.shared.lock();
        pending.mark = Some(mark);
        if pending.idle {
            self.shared.wake.notify_one();
        }
    }

    /// Writes what is pending and stops the thread.
    pub(crate) fn stop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for MarkWriter {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The next mark to write, not before `not_before` (unless stopping);
    /// `None` once stopped with nothing pending.
    fn next(&self, not_before: Instant) -> Option<DurableMark> {
        let mut pending = self.lock();
        loop {
            if pending.stop {
                return pending.mark.take();
            }
            let now = Instant::now();
            if now < not_before {
                pending = self
                    .wake
                    .wait_timeout(pending, not_before - now)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
                continue;
            }
            if let Some(mark) = pending.mark.take() {
                return Some(mark);
            }
            pending.idle = true;
            pending = self
                .wake
                .wait(pending)
                .unwrap_or_else(PoisonError::into_inner);
            pending.idle = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::prelude::{Entry, HardState, SnapshotMetadata};

    fn cache(term: u64, vote: u64, commit: u64, entries: &[(u64, u64)]) -> Cache {
        let mut cache = Cache {
            hard_state: Some(HardState {
                term,
                vote,
                commit,
                ..Default::default()
            }),
            ..Default::default()
        };
        let entries: Vec<Entry> = entries
            .iter()
            .map(|&(index, term)| Entry {
                index,
                term,
                ..Default::default()
            })
            .collect();
        cache.append(&entries);
        cache
    }

    fn log(from: u64, to: u64, term: u64) -> Vec<(u64, u64)> {
        (from..=to).map(|i| (i, term)).collect()
    }

    #[test]
    fn a_store_at_or_past_its_mark_passes() {
        let before = cache(2, 1, 10, &log(1, 12, 2));
        let mark = DurableMark::of(&before);
        assert_eq!(mark.check(&before), Ok(()));
        let later = cache(2, 1, 15, &log(1, 20, 2));
        assert_eq!(mark.check(&later), Ok(()));
        // A new term may truncate an uncommitted tail of an older term.
        let mark = DurableMark::of(&cache(3, 3, 10, &log(1, 14, 2)));
        let truncated = cache(4, 2, 10, &[log(1, 10, 2), log(11, 11, 4)].concat());
        assert_eq!(mark.check(&truncated), Ok(()));
    }

    #[test]
    fn a_store_behind_its_mark_is_refused() {
        let mark = DurableMark::of(&cache(2, 1, 300, &log(1, 301, 2)));
        // sled recovered an old prefix: fewer entries, older commit.
        let older = cache(2, 1, 75, &log(1, 76, 2));
        assert!(
            mark.check(&older)
                .expect_err("refused")
                .contains("commit index is 75")
        );
        // An older term.
        let older_term = cache(1, 1, 300, &log(1, 301, 1));
        assert!(
            mark.check(&older_term)
                .expect_err("refused")
                .contains("term is 1")
        );
        // Another vote in the same term.
        let revoted = cache(2, 3, 300, &log(1, 301, 2));
        assert!(mark.check(&revoted).expect_err("refused").contains("vote"));
        // A different committed entry.
        let replaced = cache(2, 1, 300, &[log(1, 299, 2), log(300, 301, 3)].concat());
        assert!(
            mark.check(&replaced)
                .expect_err("refused")
                .contains("committed entry")
        );
        // Uncommitted entries of the current term lost.
        let mark = DurableMark::of(&cache(2, 1, 10, &log(1, 30, 2)));
        let short = cache(2, 1, 10, &log(1, 20, 2));
        assert!(
            mark.check(&short)
                .expect_err("refused")
                .contains("up to 30")
        );
    }

    #[test]
    fn compacted_entries_and_snapshots_are_accounted_for() {
        let mut compacted = cache(2, 1, 300, &log(1, 301, 2));
        let mark = DurableMark::of(&compacted);
        compacted.snapshot = Some(SnapshotMetadata {
            index: 301,
            term: 2,
            ..Default::default()
        });
        compacted.log.clear();
        assert_eq!(mark.check(&compacted), Ok(()));
        let snapshot_mark = DurableMark::of(&compacted);
        let before_snapshot = cache(2, 1, 300, &log(1, 301, 2));
        assert!(
            snapshot_mark
                .check(&before_snapshot)
                .expect_err("refused")
                .contains("snapshot")
        );
    }

    #[test]
    fn the_newest_valid_slot_wins_and_a_torn_slot_is_skipped() {
        let dir = tempfile::tempdir().expect("ok");
        assert!(MarkFile::open(dir.path()).expect("ok").is_none());
        let mut file = MarkFile::create(dir.path(), &DurableMark::default()).expect("ok");
        let first = DurableMark {
            term: 1,
            commit: 5,
            ..Default::default()
        };
        let second = DurableMark {
            term: 2,
            commit: 9,
            ..Default::default()
        };
        file.write(&first).expect("ok");
        file.write(&second).expect("ok");
        drop(file);
        let (_, read) = MarkFile::open(dir.path()).expect("ok").expect("ok");
        assert_eq!(read, second);

        // Tear the newest slot (sequence 3, the second slot): the older one is used.
        let path = dir.path().join(MARK_FILE);
        let raw = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("ok");
        raw.write_all_at(&[0xff; 4], SLOT_SPACING + 16).expect("ok");
        drop(raw);
        let (_, read) = MarkFile::open(dir.path()).expect("ok").expect("ok");
        assert_eq!(read, first);

        // Both damaged: refused.
        let raw = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("ok");
        raw.write_all_at(&[0xff; 4], 16).expect("ok");
        drop(raw);
        assert!(matches!(
            MarkFile::open(dir.path()),
            Err(StorageError::DurabilityLost { .. })
        ));
    }

    #[test]
    fn the_writer_writes_the_newest_mark_before_it_stops() {
        let dir = tempfile::tempdir().expect("ok");
        let file = MarkFile::create(dir.path(), &DurableMark::default()).expect("ok");
        let failure = Arc::new(OnceLock::new());
        let mut writer = MarkWriter::start(file, Arc::clone(&failure)).expect("ok");
        for commit in 1..=100 {
            writer.post(DurableMark {
                term: 1,
                commit,
                ..Default::default()
            });
        }
        writer.stop();
        let (_, read) = MarkFile::open(dir.path()).expect("ok").expect("ok");
        assert_eq!(read.commit, 100);
        assert!(failure.get().is_none());
    }

    /// A mark posted while the thread waits out its interval (and is not
    /// woken for it) is written when the interval ends, without a stop.
    #[test]
    fn a_mark_posted_within_the_interval_is_written_after_it() {
        let dir = tempfile::tempdir().expect("ok");
        let file = MarkFile::create(dir.path(), &DurableMark::default()).expect("ok");
        let failure = Arc::new(OnceLock::new());
        let writer = MarkWriter::start(file, Arc::clone(&failure)).expect("ok");
        let written = |commit: u64| {
            let deadline = Instant::now() + std::time::Duration::from_secs(10);
            while Instant::now() < deadline {
                let (_, read) = MarkFile::open(dir.path()).expect("ok").expect("ok");
                if read.commit == commit {
                    return true;
                }
                std::thread::yield_now();
            }
            false
        };
        let mark = |commit| DurableMark {
            term: 1,
            commit,
            ..Default::default()
        };
        writer.post(mark(1));
        assert!(written(1), "the first mark is written");
        writer.post(mark(2));
        assert!(written(2), "the mark posted within the interval is written");
        assert!(failure.get().is_none());
        drop(writer);
    }
}
