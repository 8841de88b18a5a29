//! Storage contract suite: `SledStorage` against the semantics of raft-rs's
//! `MemStorage` (its unit tests, ported), plus what only a durable store must
//! get right: restart recovery, conflict truncation on disk, refusing corrupt
//! or unwritable data directories.
//!
//! Topics: t10 the `MemStorage` contract, t20 lifecycle and restart recovery,
//! t30 the write rules, t50 the environment (corrupt and unwritable stores).

use std::path::Path;

use iroh_raft::membership::{Members, PeerAddr};
use iroh_raft::storage::{MetaUpdate, SledStorage, StorageError};
use iroh_raft::wasm::ComponentHash;
use raft::prelude::{ConfState, Entry, HardState, Snapshot};
use raft::{Error as RaftError, GetEntriesContext, Storage, StorageError as RaftStorageError};
use tempfile::TempDir;

// ---------------------------------------------------------------- fixtures

fn new_entry(index: u64, term: u64) -> Entry {
    Entry {
        index,
        term,
        ..Default::default()
    }
}

fn entry_with_data(index: u64, term: u64, data: &[u8]) -> Entry {
    Entry {
        index,
        term,
        data: data.to_vec().into(),
        ..Default::default()
    }
}

fn new_snapshot(index: u64, term: u64, voters: Vec<u64>) -> Snapshot {
    let mut s = Snapshot::default();
    s.mut_metadata().index = index;
    s.mut_metadata().term = term;
    s.mut_metadata().mut_conf_state().voters = voters;
    s
}

fn snapshot_with_data(index: u64, term: u64, voters: Vec<u64>, data: &[u8]) -> Snapshot {
    let mut s = new_snapshot(index, term, voters);
    s.data = data.to_vec().into();
    s
}

fn hard_state(term: u64, vote: u64, commit: u64) -> HardState {
    HardState {
        term,
        vote,
        commit,
        ..Default::default()
    }
}

fn size_of(e: &Entry) -> u64 {
    u64::from(protobuf::Message::compute_size(e))
}

fn ctx() -> GetEntriesContext {
    GetEntriesContext::empty(false)
}

fn compacted() -> RaftError {
    RaftError::Store(RaftStorageError::Compacted)
}

fn unavailable() -> RaftError {
    RaftError::Store(RaftStorageError::Unavailable)
}

/// A store in a temporary directory that can be closed and reopened.
struct Fixture {
    dir: TempDir,
    storage: Option<SledStorage>,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("create a temp dir");
        let storage = SledStorage::open(dir.path()).expect("open a fresh store");
        Fixture {
            dir,
            storage: Some(storage),
        }
    }

    fn storage(&self) -> &SledStorage {
        self.storage.as_ref().expect("store is open")
    }

    fn close(&mut self) {
        self.storage = None;
    }

    /// Simulates a restart: every handle is dropped, the directory reopened.
    fn reopen(&mut self) -> &SledStorage {
        self.close();
        self.storage = Some(SledStorage::open(self.dir.path()).expect("reopen the store"));
        self.storage()
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// A log holding `ents` whose earlier entries were compacted away after a
/// snapshot at the last entry: `first_index == ents[0].index` and the term of
/// `first_index - 1` is `Compacted`, as in `MemStorage`'s tests that set
/// `entries` directly.
fn compacted_log(ents: &[Entry]) -> Fixture {
    let fixture = Fixture::new();
    let s = fixture.storage();
    let first = ents[0].index;
    let last = ents.last().expect("entries").clone();
    let mut all: Vec<Entry> = (1..first)
        .map(|i| new_entry(i, i.min(ents[0].term)))
        .collect();
    all.extend_from_slice(ents);
    s.append_and_persist(&all, Some(&hard_state(last.term, 1, last.index)))
        .expect("append");
    s.save_snapshot(&new_snapshot(last.index, last.term, vec![1]))
        .expect("save snapshot");
    s.compact(first).expect("compact");
    assert_eq!(s.first_index(), Ok(first));
    assert_eq!(s.last_index(), Ok(last.index));
    fixture
}

/// A log holding `ents` after installing a leader snapshot just before them.
fn log_after_snapshot(ents: &[Entry]) -> Fixture {
    let fixture = Fixture::new();
    let s = fixture.storage();
    let before = ents[0].index - 1;
    s.apply_snapshot(&new_snapshot(before, ents[0].term, vec![1]))
        .expect("apply snapshot");
    s.append_and_persist(ents, None).expect("append");
    fixture
}

/// Every stored entry, read through `raft::Storage`.
fn all_entries(s: &SledStorage) -> Vec<Entry> {
    let (first, last) = (
        s.first_index().expect("first"),
        s.last_index().expect("last"),
    );
    if last < first {
        return Vec::new();
    }
    s.entries(first, last + 1, None, ctx()).expect("entries")
}

// ------------------------------------------------- t10: MemStorage contract

#[test]
fn t10_term() {
    let ents = vec![new_entry(3, 3), new_entry(4, 4), new_entry(5, 5)];
    let tests = vec![
        (2, Err(compacted())),
        (3, Ok(3)),
        (4, Ok(4)),
        (5, Ok(5)),
        (6, Err(unavailable())),
    ];
    for (i, (idx, wterm)) in tests.into_iter().enumerate() {
        let fixture = compacted_log(&ents);
        let t = fixture.storage().term(idx);
        assert_eq!(t, wterm, "#{i}: term({idx})");
    }
}

#[test]
fn t10_entries_respect_range_and_max_size() {
    let ents = vec![
        new_entry(3, 3),
        new_entry(4, 4),
        new_entry(5, 5),
        new_entry(6, 6),
    ];
    let max_u64 = u64::MAX;
    let tests = vec![
        (2, 6, max_u64, Err(compacted())),
        (3, 4, max_u64, Ok(vec![new_entry(3, 3)])),
        (4, 5, max_u64, Ok(vec![new_entry(4, 4)])),
        (4, 6, max_u64, Ok(vec![new_entry(4, 4), new_entry(5, 5)])),
        (
            4,
            7,
            max_u64,
            Ok(vec![new_entry(4, 4), new_entry(5, 5), new_entry(6, 6)]),
        ),
        // even if maxsize is zero, the first entry should be returned
        (4, 7, 0, Ok(vec![new_entry(4, 4)])),
        // limit to 2
        (
            4,
            7,
            size_of(&ents[1]) + size_of(&ents[2]),
            Ok(vec![new_entry(4, 4), new_entry(5, 5)]),
        ),
        (
            4,
            7,
            size_of(&ents[1]) + size_of(&ents[2]) + size_of(&ents[3]) / 2,
            Ok(vec![new_entry(4, 4), new_entry(5, 5)]),
        ),
        (
            4,
            7,
            size_of(&ents[1]) + size_of(&ents[2]) + size_of(&ents[3]) - 1,
            Ok(vec![new_entry(4, 4), new_entry(5, 5)]),
        ),
        // all
        (
            4,
            7,
            size_of(&ents[1]) + size_of(&ents[2]) + size_of(&ents[3]),
            Ok(vec![new_entry(4, 4), new_entry(5, 5), new_entry(6, 6)]),
        ),
    ];
    let fixture = compacted_log(&ents);
    for (i, (lo, hi, maxsize, wentries)) in tests.into_iter().enumerate() {
        let e = fixture.storage().entries(lo, hi, maxsize, ctx());
        assert_eq!(e, wentries, "#{i}: entries({lo}, {hi}, {maxsize})");
    }
}

#[test]
fn t10_entries_without_limit_and_past_the_end() {
    let fixture = compacted_log(&[new_entry(3, 3), new_entry(4, 4)]);
    let s = fixture.storage();
    assert_eq!(s.entries(3, 5, None, ctx()).map(|e| e.len()), Ok(2));
    assert_eq!(s.entries(4, 4, None, ctx()), Ok(vec![]));
    // MemStorage panics here; a durable store answers with an error instead.
    assert_eq!(s.entries(3, 6, None, ctx()), Err(unavailable()));
}

#[test]
fn t10_last_index() {
    let fixture = log_after_snapshot(&[new_entry(3, 3), new_entry(4, 4), new_entry(5, 5)]);
    let s = fixture.storage();
    assert_eq!(s.last_index(), Ok(5));
    s.append_and_persist(&[new_entry(6, 5)], None)
        .expect("append");
    assert_eq!(s.last_index(), Ok(6));
}

#[test]
fn t10_first_index() {
    let fixture = compacted_log(&[new_entry(3, 3), new_entry(4, 4), new_entry(5, 5)]);
    let s = fixture.storage();
    assert_eq!(s.first_index(), Ok(3));
    s.compact(4).expect("compact");
    assert_eq!(s.first_index(), Ok(4));
}

#[test]
fn t10_compact() {
    let ents = vec![new_entry(3, 3), new_entry(4, 4), new_entry(5, 5)];
    let tests = vec![(2, 3, 3, 3), (3, 3, 3, 3), (4, 4, 4, 2), (5, 5, 5, 1)];
    for (i, (idx, windex, wterm, wlen)) in tests.into_iter().enumerate() {
        let fixture = compacted_log(&ents);
        let s = fixture.storage();
        s.compact(idx).expect("compact");
        let index = s.first_index().expect("first index");
        assert_eq!(index, windex, "#{i}: first index");
        let term = s
            .entries(index, index + 1, 1, ctx())
            .map(|v| v.first().map_or(0, |e| e.term))
            .unwrap_or(0);
        assert_eq!(term, wterm, "#{i}: term");
        let last = s.last_index().expect("last index");
        let len = s
            .entries(index, last + 1, 100, ctx())
            .expect("entries")
            .len();
        assert_eq!(len, wlen, "#{i}: len");
    }
}

/// The node loop's compaction step removes whole stored chunks only, the
/// oldest first and at most as many as asked; a chunk that straddles the
/// target stays; once nothing whole is left before the target it reports
/// that it is done; and what it left is the log a restart finds.
#[test]
fn t10_compaction_in_steps_of_whole_chunks() {
    let mut fixture = Fixture::new();
    let s = fixture.storage();
    // One append per entry: a stored chunk per entry for 1..=6, then one
    // chunk of 7..=9.
    for index in 1..=6 {
        s.append_and_persist(&[new_entry(index, 1)], Some(&hard_state(1, 1, index)))
            .expect("append");
    }
    s.append_and_persist(
        &[new_entry(7, 1), new_entry(8, 1), new_entry(9, 1)],
        Some(&hard_state(1, 1, 9)),
    )
    .expect("append");
    s.save_snapshot(&new_snapshot(9, 1, vec![1]))
        .expect("save snapshot");

    let step = |target: u64, max_chunks: usize| {
        s.compact_whole_chunks(target, max_chunks)
            .expect("a compaction step")
    };
    assert!(step(8, 2));
    assert_eq!(s.first_index(), Ok(3), "two chunks, entries 1 and 2");
    assert!(step(8, 100));
    assert_eq!(
        s.first_index(),
        Ok(7),
        "entries 3..=6; the chunk 7..=9 holds entry 8 and stays whole"
    );
    assert!(!step(8, 100), "done");
    assert_eq!(s.first_index(), Ok(7));
    let kept = all_entries(s);
    assert_eq!(
        kept.iter().map(|e| e.index).collect::<Vec<_>>(),
        vec![7, 8, 9]
    );
    // Past the snapshot is refused, as `compact` refuses it.
    assert!(s.compact_whole_chunks(11, 1).is_err());

    let s = fixture.reopen();
    assert_eq!(s.first_index(), Ok(7));
    assert_eq!(all_entries(s), kept);
}

/// `MemStorage::snapshot` fabricates an empty snapshot at the commit index and
/// rewrites its index up to `request_index`. `SledStorage` serves the snapshot
/// saved by the host, with its data, and answers `SnapshotTemporarilyUnavailable`
/// when it is older than requested, so raft-rs retries later.
#[test]
fn t10_snapshot_is_served_from_the_saved_one() {
    let nodes = vec![1, 2, 3];
    let tests = vec![
        (4, 0, Some(4)),
        (5, 5, Some(5)),
        (5, 6, None),
        (0, 0, None), // nothing saved
    ];
    for (i, (saved, request, want)) in tests.into_iter().enumerate() {
        let fixture = Fixture::new();
        let s = fixture.storage();
        let ents: Vec<_> = (1..=5).map(|i| new_entry(i, i)).collect();
        s.append_and_persist(&ents, Some(&hard_state(5, 1, 5)))
            .expect("append");
        let data = format!("state at {saved}");
        if saved > 0 {
            let snap = snapshot_with_data(saved, saved, nodes.clone(), data.as_bytes());
            s.save_snapshot(&snap).expect("save snapshot");
        }
        let got = s.snapshot(request, 2);
        match want {
            Some(index) => {
                let want = snapshot_with_data(index, index, nodes.clone(), data.as_bytes());
                assert_eq!(got, Ok(want), "#{i}");
            }
            None => assert_eq!(
                got,
                Err(RaftError::Store(
                    RaftStorageError::SnapshotTemporarilyUnavailable
                )),
                "#{i}"
            ),
        }
    }
}

#[test]
fn t10_append() {
    let ents = vec![new_entry(3, 3), new_entry(4, 4), new_entry(5, 5)];
    let tests = vec![
        (
            vec![new_entry(3, 3), new_entry(4, 4), new_entry(5, 5)],
            Some(vec![new_entry(3, 3), new_entry(4, 4), new_entry(5, 5)]),
        ),
        (
            vec![new_entry(3, 3), new_entry(4, 6), new_entry(5, 6)],
            Some(vec![new_entry(3, 3), new_entry(4, 6), new_entry(5, 6)]),
        ),
        (
            vec![
                new_entry(3, 3),
                new_entry(4, 4),
                new_entry(5, 5),
                new_entry(6, 5),
            ],
            Some(vec![
                new_entry(3, 3),
                new_entry(4, 4),
                new_entry(5, 5),
                new_entry(6, 5),
            ]),
        ),
        // overwrite compacted raft logs is not allowed
        (
            vec![new_entry(2, 3), new_entry(3, 3), new_entry(4, 5)],
            None,
        ),
        // truncate the existing entries and append
        (
            vec![new_entry(4, 5)],
            Some(vec![new_entry(3, 3), new_entry(4, 5)]),
        ),
        // direct append
        (
            vec![new_entry(6, 6)],
            Some(vec![
                new_entry(3, 3),
                new_entry(4, 4),
                new_entry(5, 5),
                new_entry(6, 6),
            ]),
        ),
    ];
    for (i, (entries, wentries)) in tests.into_iter().enumerate() {
        let mut fixture = log_after_snapshot(&ents);
        let res = fixture.storage().append_and_persist(&entries, None);
        match wentries {
            Some(wentries) => {
                res.unwrap_or_else(|e| panic!("#{i}: append failed: {e}"));
                assert_eq!(all_entries(fixture.storage()), wentries, "#{i}");
                assert_eq!(all_entries(fixture.reopen()), wentries, "#{i} after reopen");
            }
            None => {
                let err = res.expect_err("append must be refused");
                assert!(
                    matches!(err, StorageError::InvalidRequest { .. }),
                    "#{i}: {err}"
                );
                assert_eq!(all_entries(fixture.storage()), ents, "#{i}: log unchanged");
            }
        }
    }
}

#[test]
fn t10_apply_snapshot() {
    let nodes = vec![1, 2, 3];
    let fixture = Fixture::new();
    let s = fixture.storage();
    s.apply_snapshot(&new_snapshot(4, 4, nodes.clone()))
        .expect("apply snapshot");
    let err = s
        .apply_snapshot(&new_snapshot(3, 3, nodes))
        .expect_err("older snapshot must be refused");
    assert!(
        matches!(
            err,
            StorageError::SnapshotOutOfDate {
                snapshot_index: 3,
                covered_index: 4
            }
        ),
        "{err}"
    );
}

// ------------------------------------------- t20: lifecycle and recovery

#[test]
fn t20_fresh_store_and_bootstrap() {
    let mut fixture = Fixture::new();
    let s = fixture.storage();
    assert!(s.is_fresh());
    let state = s.initial_state().expect("initial state");
    assert!(!state.initialized());
    assert_eq!((s.first_index(), s.last_index()), (Ok(1), Ok(0)));
    assert_eq!(s.term(0), Ok(0));

    // Host metadata does not make the Raft state non-fresh.
    s.set_members(&Members::new()).expect("put meta");
    assert!(s.is_fresh());

    let empty = s.bootstrap(&ConfState::default()).expect_err("no voters");
    assert!(
        matches!(empty, StorageError::InvalidRequest { .. }),
        "{empty}"
    );

    let conf = ConfState::from((vec![1, 2, 3], vec![4]));
    s.bootstrap(&conf).expect("bootstrap");
    assert!(!s.is_fresh());
    assert_eq!(s.conf_state(), conf);
    assert!(s.initial_state().expect("initial state").initialized());
    let again = s.bootstrap(&conf).expect_err("second bootstrap");
    assert!(matches!(again, StorageError::AlreadyInitialized), "{again}");

    let s = fixture.reopen();
    assert!(!s.is_fresh());
    assert_eq!(s.initial_state().expect("initial state").conf_state, conf);
    assert!(matches!(
        s.bootstrap(&conf),
        Err(StorageError::AlreadyInitialized)
    ));
}

#[test]
fn t20_any_raft_state_ends_freshness() {
    let fixture = Fixture::new();
    fixture
        .storage()
        .append_and_persist(&[], Some(&hard_state(1, 0, 0)))
        .expect("hard state");
    assert!(!fixture.storage().is_fresh());

    let fixture = Fixture::new();
    fixture
        .storage()
        .append_and_persist(&[new_entry(1, 1)], None)
        .expect("entry");
    assert!(!fixture.storage().is_fresh());

    let fixture = Fixture::new();
    fixture
        .storage()
        .apply_snapshot(&new_snapshot(3, 1, vec![1]))
        .expect("snapshot");
    assert!(!fixture.storage().is_fresh());
}

#[test]
fn t20_append_and_hard_state_are_visible_after_reopen() {
    let mut fixture = Fixture::new();
    let s = fixture.storage();
    let ents = vec![
        entry_with_data(1, 1, b"a"),
        entry_with_data(2, 1, b"b"),
        entry_with_data(3, 2, b"c"),
    ];
    let hs = hard_state(2, 3, 2);
    s.append_and_persist(&ents, Some(&hs)).expect("persist");
    // A no-op must not disturb anything.
    s.append_and_persist(&[], None).expect("no-op");

    let s = fixture.reopen();
    assert_eq!(s.hard_state(), hs);
    assert_eq!(s.initial_state().expect("state").hard_state, hs);
    assert_eq!(all_entries(s), ents);
    assert_eq!((s.term(2), s.term(3)), (Ok(1), Ok(2)));
}

#[test]
fn t20_restart_recovers_everything() {
    let mut fixture = Fixture::new();
    let s = fixture.storage();
    let conf = ConfState::from((vec![1, 2, 3], vec![]));
    s.bootstrap(&conf).expect("bootstrap");
    let ents: Vec<_> = (1..=10)
        .map(|i| entry_with_data(i, 1 + i / 4, format!("cmd {i}").as_bytes()))
        .collect();
    s.append_and_persist(&ents, Some(&hard_state(3, 2, 7)))
        .expect("persist");
    let snap = snapshot_with_data(6, 2, vec![1, 2, 3], b"state machine at 6");
    s.save_snapshot(&snap).expect("save snapshot");
    s.compact(5).expect("compact");
    let conf2 = ConfState::from((vec![1, 2, 3, 4], vec![]));
    s.set_conf_state(&conf2).expect("conf state");
    let component = ComponentHash::of(b"component bytes");
    s.set_active_component(&component).expect("meta");
    s.set_commit(9).expect("commit");
    // The commit is not synced by itself; the next durable write carries it.
    let members = one_member();
    s.set_members(&members).expect("meta");

    let s = fixture.reopen();
    assert_eq!(s.hard_state(), hard_state(3, 2, 9));
    assert_eq!(s.conf_state(), conf2);
    assert_eq!((s.first_index(), s.last_index()), (Ok(5), Ok(10)));
    assert_eq!(all_entries(s), ents[4..].to_vec());
    assert_eq!(s.term(4), Err(compacted()));
    assert_eq!(s.term(6), Ok(2));
    assert_eq!(s.term(10), Ok(3));
    assert_eq!(s.snapshot(0, 2), Ok(snap));
    assert_eq!(s.active_component().expect("meta"), Some(component));
    assert_eq!(s.members().expect("meta"), members);
}

#[test]
fn t20_meta_survives_reopen() {
    let mut fixture = Fixture::new();
    let s = fixture.storage();
    assert_eq!(s.active_component().expect("get"), None);
    assert_eq!(s.members().expect("get"), Members::new());
    assert_eq!(s.conf_index().expect("get"), 0);
    let (first, second) = (ComponentHash::of(b"abc"), ComponentHash::of(b"def"));
    s.set_active_component(&first).expect("put");
    s.set_active_component(&second).expect("overwrite");
    s.set_members(&one_member()).expect("members");
    s.set_conf_state_with_meta(
        &ConfState::from((vec![1], vec![])),
        MetaUpdate {
            members: None,
            conf_index: Some(12),
            active_component: None,
        },
    )
    .expect("conf state with meta");
    let s = fixture.reopen();
    assert_eq!(s.active_component().expect("get"), Some(second));
    assert_eq!(s.members().expect("get"), one_member());
    assert_eq!(s.conf_index().expect("get"), 12);
}

#[test]
fn t20_applied_snapshot_survives_reopen() {
    let mut fixture = Fixture::new();
    let s = fixture.storage();
    s.append_and_persist(
        &[new_entry(1, 1), new_entry(2, 1)],
        Some(&hard_state(1, 1, 1)),
    )
    .expect("persist");
    // Large enough for sled to store it out of line, as a blob file.
    let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    let snap = snapshot_with_data(20, 3, vec![1, 2, 5], &data);
    s.apply_snapshot(&snap).expect("apply snapshot");
    assert_eq!((s.first_index(), s.last_index()), (Ok(21), Ok(20)));
    assert_eq!(s.hard_state(), hard_state(3, 1, 20));
    assert_eq!(s.conf_state(), ConfState::from((vec![1, 2, 5], vec![])));
    assert!(
        blob_files(fixture.path()) > 0,
        "the snapshot should have exercised sled's blob files"
    );

    let s = fixture.reopen();
    assert_eq!((s.first_index(), s.last_index()), (Ok(21), Ok(20)));
    assert_eq!(s.term(20), Ok(3));
    assert_eq!(s.hard_state(), hard_state(3, 1, 20));
    assert_eq!(s.conf_state(), ConfState::from((vec![1, 2, 5], vec![])));
    assert_eq!(s.snapshot(20, 2), Ok(snap));
    s.append_and_persist(&[new_entry(21, 3)], None)
        .expect("append after snapshot");
}

#[test]
fn t20_a_snapshot_and_its_metadata_are_one_write() {
    let mut fixture = Fixture::new();
    let s = fixture.storage();
    let component = ComponentHash::of(b"the snapshot's component");
    let snap = new_snapshot(9, 2, vec![1]);
    s.apply_snapshot_with_meta(
        &snap,
        MetaUpdate {
            members: Some(&one_member()),
            conf_index: Some(9),
            active_component: Some(&component),
        },
    )
    .expect("apply");
    let s = fixture.reopen();
    assert_eq!(s.snapshot(9, 1), Ok(snap));
    assert_eq!(s.members().expect("get"), one_member());
    assert_eq!(s.conf_index().expect("get"), 9);
    assert_eq!(s.active_component().expect("get"), Some(component));
    // A refused snapshot writes none of its metadata either.
    let older = new_snapshot(5, 2, vec![1]);
    let other = ComponentHash::of(b"another component");
    s.apply_snapshot_with_meta(
        &older,
        MetaUpdate {
            members: None,
            conf_index: Some(5),
            active_component: Some(&other),
        },
    )
    .expect_err("out of date");
    assert_eq!(s.conf_index().expect("get"), 9);
    assert_eq!(s.active_component().expect("get"), Some(component));
}

#[test]
fn t20_large_entries_survive_reopen() {
    let mut fixture = Fixture::new();
    let big: Vec<u8> = (0..600_000u32).map(|i| (i % 253) as u8).collect();
    let ents = vec![
        entry_with_data(1, 1, &big),
        entry_with_data(2, 1, b"small"),
        entry_with_data(3, 1, &big[..300_000]),
    ];
    fixture
        .storage()
        .append_and_persist(&ents, Some(&hard_state(1, 1, 3)))
        .expect("persist");
    assert!(blob_files(fixture.path()) > 0, "expected sled blob files");
    assert_eq!(all_entries(fixture.reopen()), ents);
}

#[test]
fn t20_second_open_of_the_same_directory_is_refused() {
    let fixture = Fixture::new();
    let err = SledStorage::open(fixture.path()).expect_err("directory is locked");
    assert!(matches!(err, StorageError::Sled { .. }), "{err}");
    assert!(err.to_string().contains("lock"), "{err}");
}

#[test]
fn t20_clones_share_one_store() {
    let fixture = Fixture::new();
    let writer = fixture.storage().clone();
    writer
        .append_and_persist(&[new_entry(1, 1)], Some(&hard_state(1, 1, 0)))
        .expect("persist");
    assert_eq!(fixture.storage().last_index(), Ok(1));
    assert_eq!(fixture.storage().hard_state(), hard_state(1, 1, 0));
}

#[test]
fn t20_size_on_disk_grows() {
    let fixture = Fixture::new();
    let s = fixture.storage();
    let before = s.size_on_disk().expect("size");
    let ents: Vec<_> = (1..=200)
        .map(|i| entry_with_data(i, 1, &[7u8; 1024]))
        .collect();
    s.append_and_persist(&ents, None).expect("persist");
    let after = s.size_on_disk().expect("size");
    assert!(after > before, "{after} > {before}");
}

fn blob_files(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("blobs")).map_or(0, |d| d.count())
}

// ------------------------------------------------------ t30: write rules

#[test]
fn t30_conflicting_append_truncates_the_tail_on_disk() {
    let mut fixture = Fixture::new();
    let s = fixture.storage();
    let ents: Vec<_> = (1..=5).map(|i| new_entry(i, 1)).collect();
    s.append_and_persist(&ents, Some(&hard_state(1, 1, 2)))
        .expect("persist");
    s.append_and_persist(&[new_entry(3, 2)], Some(&hard_state(2, 0, 2)))
        .expect("conflicting append");
    let want = vec![new_entry(1, 1), new_entry(2, 1), new_entry(3, 2)];
    assert_eq!(all_entries(s), want);
    assert_eq!(s.term(4), Err(unavailable()));

    // The truncated entries are gone from disk, not just from the cache.
    let s = fixture.reopen();
    assert_eq!(s.last_index(), Ok(3));
    assert_eq!(all_entries(s), want);
    s.append_and_persist(&[new_entry(4, 2)], None)
        .expect("append");
    assert_eq!(s.last_index(), Ok(4));
}

#[test]
fn t30_append_refuses_gaps_and_broken_batches() {
    let fixture = Fixture::new();
    let s = fixture.storage();
    s.append_and_persist(&[new_entry(1, 1), new_entry(2, 1)], None)
        .expect("append");
    let cases = [
        (vec![new_entry(4, 1)], "gap after the last index"),
        (vec![new_entry(3, 1), new_entry(5, 1)], "not contiguous"),
        (
            vec![new_entry(3, 2), new_entry(4, 1)],
            "term goes back in the batch",
        ),
        (vec![new_entry(3, 0)], "term below the previous entry's"),
        (vec![new_entry(0, 1)], "index 0"),
    ];
    for (entries, why) in cases {
        let err = s.append_and_persist(&entries, None).expect_err(why);
        assert!(
            matches!(err, StorageError::InvalidRequest { .. }),
            "{why}: {err}"
        );
    }
    assert_eq!(all_entries(s), vec![new_entry(1, 1), new_entry(2, 1)]);
}

#[test]
fn t30_hard_state_rules() {
    let fixture = Fixture::new();
    let s = fixture.storage();
    s.append_and_persist(&[new_entry(1, 2)], Some(&hard_state(2, 1, 1)))
        .expect("persist");
    let back = s
        .append_and_persist(&[], Some(&hard_state(1, 1, 1)))
        .expect_err("term goes back");
    assert!(
        matches!(back, StorageError::InvalidRequest { .. }),
        "{back}"
    );
    let past = s
        .append_and_persist(&[], Some(&hard_state(2, 1, 2)))
        .expect_err("commit past last index");
    assert!(
        matches!(past, StorageError::InvalidRequest { .. }),
        "{past}"
    );
    // The entries that make a commit valid may come in the same call.
    s.append_and_persist(&[new_entry(2, 2)], Some(&hard_state(2, 1, 2)))
        .expect("commit with its entry");
    assert!(s.set_commit(3).is_err(), "set_commit past last index");
    s.set_commit(2).expect("set_commit");
    assert_eq!(s.hard_state(), hard_state(2, 1, 2));
}

#[test]
fn t30_set_commit_keeps_term_and_vote() {
    let mut fixture = Fixture::new();
    let s = fixture.storage();
    let ents: Vec<_> = (1..=3).map(|i| new_entry(i, 4)).collect();
    s.append_and_persist(&ents, Some(&hard_state(4, 2, 1)))
        .expect("persist");
    s.set_commit(3).expect("set_commit");
    assert_eq!(s.hard_state(), hard_state(4, 2, 3));
    s.set_conf_state(&ConfState::from((vec![1], vec![])))
        .expect("a durable write");
    assert_eq!(fixture.reopen().hard_state(), hard_state(4, 2, 3));
}

#[test]
fn t30_compact_rules() {
    let fixture = Fixture::new();
    let s = fixture.storage();
    let ents: Vec<_> = (1..=10).map(|i| new_entry(i, 1)).collect();
    s.append_and_persist(&ents, Some(&hard_state(1, 1, 8)))
        .expect("persist");
    let no_snapshot = s.compact(3).expect_err("no snapshot covers 1..3");
    assert!(
        matches!(no_snapshot, StorageError::InvalidRequest { .. }),
        "{no_snapshot}"
    );
    s.save_snapshot(&new_snapshot(5, 1, vec![1]))
        .expect("snapshot");
    assert!(s.compact(7).is_err(), "past the snapshot");
    s.compact(6).expect("compact up to the snapshot");
    assert_eq!(s.first_index(), Ok(6));
    assert_eq!(s.term(5), Ok(1), "term of snapshot index is kept");
    s.compact(2).expect("below the first index is a no-op");
    assert_eq!(s.first_index(), Ok(6));
}

#[test]
fn t30_compact_everything_then_append() {
    let mut fixture = Fixture::new();
    let s = fixture.storage();
    let ents: Vec<_> = (1..=4).map(|i| new_entry(i, 1)).collect();
    s.append_and_persist(&ents, Some(&hard_state(1, 1, 4)))
        .expect("persist");
    s.save_snapshot(&new_snapshot(4, 1, vec![1]))
        .expect("snapshot");
    assert!(s.compact(6).is_err(), "past last index + 1");
    s.compact(5).expect("compact all");
    assert_eq!((s.first_index(), s.last_index()), (Ok(5), Ok(4)));
    let s = fixture.reopen();
    assert_eq!((s.first_index(), s.last_index()), (Ok(5), Ok(4)));
    assert_eq!(s.term(4), Ok(1));
    assert!(s.append_and_persist(&[new_entry(4, 1)], None).is_err());
    s.append_and_persist(&[new_entry(5, 2)], None)
        .expect("append");
    assert_eq!(all_entries(s), vec![new_entry(5, 2)]);
}

#[test]
fn t30_apply_snapshot_keeps_a_matching_tail_only() {
    let ents: Vec<_> = (1..=10).map(|i| new_entry(i, 1)).collect();

    let mut fixture = Fixture::new();
    let s = fixture.storage();
    s.append_and_persist(&ents, Some(&hard_state(1, 1, 3)))
        .expect("persist");
    s.apply_snapshot(&new_snapshot(5, 1, vec![1, 2]))
        .expect("matching");
    assert_eq!((s.first_index(), s.last_index()), (Ok(6), Ok(10)));
    assert_eq!(s.hard_state(), hard_state(1, 1, 5));
    let s = fixture.reopen();
    assert_eq!(all_entries(s), ents[5..].to_vec());

    let mut fixture = Fixture::new();
    let s = fixture.storage();
    s.append_and_persist(&ents, Some(&hard_state(1, 1, 3)))
        .expect("persist");
    s.apply_snapshot(&new_snapshot(5, 2, vec![1, 2]))
        .expect("conflicting");
    assert_eq!((s.first_index(), s.last_index()), (Ok(6), Ok(5)));
    assert_eq!(s.hard_state(), hard_state(2, 1, 5));
    let s = fixture.reopen();
    assert_eq!((s.first_index(), s.last_index()), (Ok(6), Ok(5)));
    assert_eq!(all_entries(s), vec![]);
}

#[test]
fn t30_save_snapshot_rules() {
    let fixture = Fixture::new();
    let s = fixture.storage();
    let ents: Vec<_> = (1..=6).map(|i| new_entry(i, 1 + i / 4)).collect();
    s.append_and_persist(&ents, Some(&hard_state(2, 1, 5)))
        .expect("persist");
    assert!(
        s.save_snapshot(&new_snapshot(6, 2, vec![1])).is_err(),
        "uncommitted"
    );
    assert!(
        s.save_snapshot(&new_snapshot(4, 1, vec![1])).is_err(),
        "wrong term"
    );
    assert!(
        s.save_snapshot(&new_snapshot(0, 0, vec![1])).is_err(),
        "index 0"
    );
    s.save_snapshot(&new_snapshot(4, 2, vec![1])).expect("save");
    let older = s
        .save_snapshot(&new_snapshot(3, 1, vec![1]))
        .expect_err("older");
    assert!(
        matches!(older, StorageError::SnapshotOutOfDate { .. }),
        "{older}"
    );
    // Saving does not compact.
    assert_eq!(s.first_index(), Ok(1));
}

// ------------------------------------------------------ t50: environment

/// Opens the store's sled database directly, as a damaged disk or another
/// program could leave it, and applies `damage`.
fn damage(fixture: &mut Fixture, damage: impl FnOnce(&sled::Db)) {
    fixture.close();
    let db = sled::open(fixture.path()).expect("raw sled open");
    damage(&db);
    db.flush().expect("raw flush");
}

fn populated() -> Fixture {
    let fixture = Fixture::new();
    let s = fixture.storage();
    s.bootstrap(&ConfState::from((vec![1], vec![])))
        .expect("bootstrap");
    // Three appends, so three chunks: entries 1-2, 3-4 and 5.
    for range in [1..=2, 3..=4, 5..=5] {
        let ents: Vec<_> = range.map(|i| new_entry(i, 1)).collect();
        s.append_and_persist(&ents, Some(&hard_state(1, 1, 3.min(ents[0].index))))
            .expect("persist");
    }
    fixture
}

/// The raw key of the log chunk starting at `index` (the store's layout).
fn chunk_key(index: u64) -> Vec<u8> {
    let mut key = vec![b'e'];
    key.extend_from_slice(&index.to_be_bytes());
    key
}

/// A chunk's raw value: a `u32` count, then each entry's `u32` length and
/// protobuf bytes (little-endian), as `storage/chunks.rs` documents.
fn chunk_value(entries: &[Entry]) -> Vec<u8> {
    let mut value = (entries.len() as u32).to_le_bytes().to_vec();
    for entry in entries {
        let bytes = protobuf::Message::write_to_bytes(entry).expect("encode");
        value.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        value.extend_from_slice(&bytes);
    }
    value
}

fn expect_corrupt(fixture: &Fixture, what_contains: &str) -> StorageError {
    let err = SledStorage::open(fixture.path()).expect_err("corrupt store must be refused");
    match &err {
        StorageError::Corrupt { what, .. } => {
            assert!(
                what.contains(what_contains),
                "{what:?} should name {what_contains:?}: {err}"
            );
        }
        other => panic!("expected Corrupt naming {what_contains:?}, got {other}"),
    }
    err
}

#[test]
fn t50_garbage_hard_state_is_corrupt() {
    let mut fixture = populated();
    damage(&mut fixture, |db| {
        db.insert(b"m/hard_state", &b"\xff\xff\xff garbage"[..])
            .expect("insert");
    });
    let err = expect_corrupt(&fixture, "m/hard_state");
    assert!(err.to_string().contains("HardState"), "{err}");
}

#[test]
fn t50_garbage_entry_is_corrupt() {
    let mut fixture = populated();
    damage(&mut fixture, |db| {
        db.insert(chunk_key(3), &b"\xff\xfe"[..]).expect("insert");
    });
    expect_corrupt(&fixture, "log entries from 3");

    // Valid framing around bytes that are no entry.
    let mut fixture = populated();
    let mut value = 1u32.to_le_bytes().to_vec();
    value.extend_from_slice(&3u32.to_le_bytes());
    value.extend_from_slice(b"\xff\xff\xff");
    damage(&mut fixture, |db| {
        db.insert(chunk_key(3), value).expect("insert");
    });
    let err = expect_corrupt(&fixture, "log entries from 3");
    assert!(err.to_string().contains("cannot decode entry 3"), "{err}");
}

#[test]
fn t50_hole_in_the_log_is_corrupt() {
    let mut fixture = populated();
    damage(&mut fixture, |db| {
        db.remove(chunk_key(3)).expect("remove");
    });
    let err = expect_corrupt(&fixture, "log entries from 5");
    assert!(err.to_string().contains("not contiguous"), "{err}");
}

#[test]
fn t50_entry_under_the_wrong_key_is_corrupt() {
    let mut fixture = populated();
    damage(&mut fixture, |db| {
        db.insert(chunk_key(2), chunk_value(&[new_entry(7, 1)]))
            .expect("insert");
    });
    let err = expect_corrupt(&fixture, "log entries from 2");
    assert!(err.to_string().contains("says 7"), "{err}");
}

/// A store written before chunks (one protobuf entry per key, format 1) is
/// rewritten as chunks when opened, and reads back exactly.
#[test]
fn t50_a_store_of_the_format_before_chunks_is_migrated() {
    let dir = tempfile::tempdir().expect("temp dir");
    let written: Vec<_> = (1..=7)
        .map(|i| entry_with_data(i, 1 + i / 4, format!("command {i}").as_bytes()))
        .collect();
    {
        let db = sled::open(dir.path()).expect("raw sled open");
        db.insert(b"m/format", &b"iroh-raft-log/1"[..])
            .expect("format");
        let conf = ConfState::from((vec![1], vec![]));
        db.insert(
            b"m/conf_state",
            protobuf::Message::write_to_bytes(&conf).expect("encode"),
        )
        .expect("conf");
        db.insert(
            b"m/hard_state",
            protobuf::Message::write_to_bytes(&hard_state(2, 1, 6)).expect("encode"),
        )
        .expect("hard state");
        for entry in &written {
            db.insert(
                chunk_key(entry.index),
                protobuf::Message::write_to_bytes(entry).expect("encode"),
            )
            .expect("entry");
        }
        db.flush().expect("flush");
    }
    for _ in 0..2 {
        let s = SledStorage::open(dir.path()).expect("open a format-1 store");
        assert_eq!(
            s.entries(1, 8, None, ctx()).expect("entries"),
            written,
            "every entry reads back"
        );
        assert_eq!(s.term(7), Ok(2));
        assert_eq!(
            s.initial_state().expect("state").hard_state,
            hard_state(2, 1, 6)
        );
        // Writing on goes into chunks after the migrated ones.
        if s.last_index() == Ok(7) {
            s.append_and_persist(&[new_entry(8, 2)], None)
                .expect("append");
        }
    }
    let db = sled::open(dir.path()).expect("raw sled open");
    assert_eq!(
        db.get(b"m/format").expect("get").as_deref(),
        Some(&b"iroh-raft-log/2"[..])
    );
    assert_eq!(
        db.get(chunk_key(3)).expect("get").as_deref(),
        Some(&chunk_value(&written[2..3])[..]),
        "an old entry is now a chunk of one"
    );
}

#[test]
fn t50_commit_past_the_log_is_corrupt() {
    let mut fixture = populated();
    let bytes = protobuf::Message::write_to_bytes(&hard_state(1, 1, 99)).expect("encode");
    damage(&mut fixture, |db| {
        db.insert(b"m/hard_state", bytes).expect("insert");
    });
    expect_corrupt(&fixture, "m/hard_state");
}

#[test]
fn t50_snapshot_metadata_without_data_is_corrupt() {
    let mut fixture = populated();
    fixture
        .storage()
        .save_snapshot(&snapshot_with_data(2, 1, vec![1], b"s"))
        .expect("snapshot");
    damage(&mut fixture, |db| {
        db.remove(b"m/snapshot_data").expect("remove");
    });
    expect_corrupt(&fixture, "snapshot");
}

#[test]
fn t50_foreign_keys_and_formats_are_corrupt() {
    let mut fixture = populated();
    damage(&mut fixture, |db| {
        db.insert(b"zz/unknown", &b"x"[..]).expect("insert");
    });
    expect_corrupt(&fixture, "zz/unknown");

    let mut fixture = populated();
    damage(&mut fixture, |db| {
        db.insert(b"m/format", &b"iroh-raft-log/99"[..])
            .expect("insert");
    });
    expect_corrupt(&fixture, "m/format");

    // A sled database some other program wrote.
    let dir = tempfile::tempdir().expect("temp dir");
    {
        let db = sled::open(dir.path()).expect("raw sled open");
        db.insert(b"hello", &b"world"[..]).expect("insert");
        db.flush().expect("flush");
    }
    let err = SledStorage::open(dir.path()).expect_err("foreign store");
    assert!(matches!(err, StorageError::Corrupt { .. }), "{err}");
}

/// sled reads a data file it cannot make sense of as an empty database; the
/// missing format marker is how the store notices its data is gone.
#[test]
fn t50_garbage_data_file_is_corrupt() {
    let mut fixture = populated();
    fixture.close();
    let garbage: Vec<u8> = (0..2_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(fixture.path().join("db"), &garbage).expect("overwrite db");
    let err = expect_corrupt(&fixture, "m/format");
    assert!(err.to_string().contains("delete it"), "{err}");

    // Also in a directory that never held a store.
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("db"), &garbage).expect("write db");
    let err = SledStorage::open(dir.path()).expect_err("garbage db file");
    assert!(matches!(err, StorageError::Corrupt { .. }), "{err}");
}

#[test]
fn t50_unwritable_directory_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("not-a-directory");
    std::fs::write(&file, b"x").expect("write file");
    let target = file.join("data");
    let err = SledStorage::open(&target).expect_err("path under a regular file");
    match &err {
        StorageError::DataDirUnwritable { path, .. } => assert_eq!(path, &target),
        other => panic!("expected DataDirUnwritable, got {other}"),
    }
    assert!(
        err.to_string().contains(&*target.to_string_lossy()),
        "message names the path: {err}"
    );
}

#[test]
fn t50_empty_existing_directory_is_a_fresh_store() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("node-1");
    std::fs::create_dir(&data).expect("mkdir");
    let s = SledStorage::open(&data).expect("open");
    assert!(s.is_fresh());
    drop(s);
    assert!(SledStorage::open(&data).expect("reopen").is_fresh());
}

/// After a failed sync nothing is known about what reached the disk, so the
/// store stops accepting writes instead of letting the node retry.
#[test]
fn t50_failed_sync_stops_every_write() {
    let fixture = Fixture::new();
    let s = fixture.storage();
    s.append_and_persist(&[new_entry(1, 1)], Some(&hard_state(1, 1, 1)))
        .expect("persist");
    // The durability step lists sled's blob directory; take it away.
    std::fs::remove_dir_all(fixture.path().join("blobs")).expect("remove blobs/");
    let err = s
        .append_and_persist(&[new_entry(2, 1)], None)
        .expect_err("the sync must fail");
    match &err {
        StorageError::Io { path, .. } => assert!(path.ends_with("blobs"), "{err}"),
        other => panic!("expected an Io error naming blobs/, got {other}"),
    }
    // Readers keep seeing the last acknowledged state.
    assert_eq!(s.last_index(), Ok(1));
    for attempt in [
        s.set_members(&Members::new()),
        s.set_commit(1),
        s.append_and_persist(&[new_entry(2, 1)], None),
    ] {
        let refused = attempt.expect_err("writes are refused after a failure");
        assert!(matches!(refused, StorageError::Failed { .. }), "{refused}");
        assert!(
            refused.to_string().contains("blobs"),
            "names the cause: {refused}"
        );
    }
}

/// A membership of one node with an address, for the metadata tests.
fn one_member() -> Members {
    let addr = PeerAddr {
        node_id: "5b7a".into(),
        addrs: vec!["127.0.0.1:7802".parse().expect("addr")],
    };
    [(1, addr)].into_iter().collect()
}

/// A store holding entries 1..=10 of term 1 (committed), closed, and a
/// copy of its files as they are now, to put back later under a newer
/// durable mark.
fn store_with_an_older_copy() -> (TempDir, TempDir) {
    let dir = TempDir::new().expect("tempdir");
    let copy = TempDir::new().expect("tempdir");
    let storage = SledStorage::open(dir.path()).expect("open");
    storage
        .bootstrap(&ConfState::from((vec![1], vec![])))
        .expect("bootstrap");
    let entries: Vec<Entry> = (1..=10).map(|i| new_entry(i, 1)).collect();
    storage
        .append_and_persist(&entries, Some(&hard_state(1, 1, 10)))
        .expect("append");
    drop(storage);
    for file in ["db", "conf"] {
        std::fs::copy(dir.path().join(file), copy.path().join(file)).expect("copy");
    }
    (dir, copy)
}

/// A store whose files were replaced by an older copy of themselves (what
/// sled recovers from a damaged file looks just like that) is refused, and
/// a store that moved on (a new term truncating an old one's tail) is not.
#[test]
fn t50_a_store_older_than_its_durable_mark_is_refused() {
    let (dir, copy) = store_with_an_older_copy();

    let storage = SledStorage::open(dir.path()).expect("reopen");
    let entries: Vec<Entry> = (11..=20).map(|i| new_entry(i, 1)).collect();
    storage
        .append_and_persist(&entries, Some(&hard_state(1, 1, 20)))
        .expect("append");
    drop(storage);

    // Put the old files back under the newer mark.
    for file in ["db", "conf"] {
        std::fs::copy(copy.path().join(file), dir.path().join(file)).expect("restore");
    }
    let err = SledStorage::open(dir.path()).expect_err("an older store is refused");
    assert!(
        matches!(err, StorageError::DurabilityLost { .. }),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains("corrupt data dir") && message.contains("commit index is 10"),
        "{message}"
    );
}

/// Staged writes (the node's async Ready): readable at once, as raft-rs
/// requires before `advance_append_async`; `sync_staged` makes them durable
/// and records the durable mark, so rolling the files back behind them is
/// refused like any other lost write.
#[test]
fn t50_b_staged_entries_are_readable_at_once_and_marked_durable_by_sync_staged() {
    let (dir, copy) = store_with_an_older_copy();

    let storage = SledStorage::open(dir.path()).expect("reopen");
    let staged: Vec<Entry> = (11..=20).map(|i| new_entry(i, 2)).collect();
    storage
        .stage_append(&staged, Some(&hard_state(2, 1, 15)))
        .expect("stage");
    assert_eq!(storage.last_index().expect("last index"), 20);
    assert_eq!(storage.term(20).expect("term"), 2);
    assert_eq!(
        storage
            .entries(11, 21, None, ctx())
            .expect("staged entries"),
        staged
    );
    storage.sync_staged().expect("sync");
    drop(storage);

    for file in ["db", "conf"] {
        std::fs::copy(copy.path().join(file), dir.path().join(file)).expect("restore");
    }
    let err = SledStorage::open(dir.path()).expect_err("the staged and synced writes were marked");
    assert!(
        err.to_string().contains("it had made term 2 durable"),
        "{err}"
    );
}

#[test]
fn t50_a_new_term_truncating_an_old_tail_passes_the_durable_mark() {
    let dir = TempDir::new().expect("tempdir");
    let storage = SledStorage::open(dir.path()).expect("open");
    storage
        .bootstrap(&ConfState::from((vec![1, 2, 3], vec![])))
        .expect("bootstrap");
    let entries: Vec<Entry> = (1..=10).map(|i| new_entry(i, 1)).collect();
    storage
        .append_and_persist(&entries, Some(&hard_state(1, 1, 5)))
        .expect("append");
    // A leader of term 2 replaces the uncommitted 6..=10 with one entry.
    storage
        .append_and_persist(&[new_entry(6, 2)], Some(&hard_state(2, 2, 5)))
        .expect("truncate");
    drop(storage);
    let storage = SledStorage::open(dir.path()).expect("a truncated log is a valid log");
    assert_eq!(storage.last_index().expect("last"), 6);
}
