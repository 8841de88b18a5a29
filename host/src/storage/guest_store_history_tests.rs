//! The guest store's change history and timer (see
//! [`super::change_history`]): records written with each commit, read in
//! pages, pruned past the retention, kept across a reopen, reset by a
//! snapshot load; the live feed; the guest's timer key.

use super::*;
use crate::wasm::kv::{Change, StagedWrite};

fn store_at(retention: u64) -> (tempfile::TempDir, sled::Db, GuestStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = sled::open(dir.path()).expect("sled");
    let store = GuestStore::open_in(db.clone()).expect("open");
    store.set_history_retention(retention).expect("retention");
    (dir, db, store)
}

/// Commit entry `index` setting `key` to `new` (`None`: deleting it),
/// with its change record; returns the changes watchers were given.
fn commit_one(store: &GuestStore, index: u64, key: &[u8], new: Option<Vec<u8>>) -> usize {
    let old = store.get(key).expect("get");
    let writes: WriteSet = [(key.to_vec(), StagedWrite { old, new })].into();
    let changes: Vec<EntryChanges> = EntryChanges::of(index, &writes).into_iter().collect();
    store
        .commit(
            &writes,
            CommitMark {
                index,
                term: 1,
                node_meta: None,
                changes: &changes,
            },
        )
        .expect("commit");
    changes.len()
}

/// Commit entry `index` putting `key` = `value` (and the change record).
fn commit_put(store: &GuestStore, index: u64, key: &str, value: &str) {
    commit_one(
        store,
        index,
        key.as_bytes(),
        Some(value.as_bytes().to_vec()),
    );
}

fn keys(page: &HistoryPage) -> Vec<(u64, String)> {
    page.entries
        .iter()
        .flat_map(|e| {
            e.changes
                .iter()
                .map(move |c| (e.index, String::from_utf8_lossy(&c.key).into_owned()))
        })
        .collect()
}

#[test]
fn history_is_read_after_an_index_filtered_by_prefix_in_pages() {
    let (_dir, _db, store) = store_at(1_000);
    for index in 1..=10 {
        let key = if index % 2 == 0 { "even" } else { "odd" };
        commit_put(&store, index, &format!("{key}/{index}"), "v");
    }
    let all = store.history_after(0, b"", 100, usize::MAX).expect("read");
    assert_eq!(all.entries.len(), 10);
    assert_eq!(all.scanned_to, 10);
    let evens = store
        .history_after(3, b"even/", 100, usize::MAX)
        .expect("read");
    assert_eq!(
        keys(&evens),
        [4, 6, 8, 10].map(|i| (i, format!("even/{i}"))).to_vec()
    );
    // A page of three: resume after what it scanned, lose nothing.
    let first = store.history_after(0, b"", 3, usize::MAX).expect("read");
    assert_eq!(first.entries.len(), 3);
    assert_eq!(first.scanned_to, 3);
    let rest = store
        .history_after(first.scanned_to, b"", 100, usize::MAX)
        .expect("read");
    assert_eq!(rest.entries.first().map(|e| e.index), Some(4));
    assert_eq!(rest.entries.len(), 7);
    // Nothing after the applied index yet.
    let future = store.history_after(10, b"", 100, usize::MAX).expect("read");
    assert!(future.entries.is_empty());
    assert_eq!(future.scanned_to, 10);
}

#[test]
fn history_past_the_retention_is_pruned_and_answered_compacted() {
    let (_dir, db, store) = store_at(5);
    for index in 1..=40 {
        commit_put(&store, index, "k", &index.to_string());
    }
    let oldest = store.history_oldest_index();
    assert_eq!(oldest, 36, "five entries kept behind index 40");
    assert_eq!(
        store.history_after(0, b"", 100, usize::MAX),
        Err(HistoryError::Compacted { oldest_index: 36 })
    );
    let kept = store.history_after(35, b"", 100, usize::MAX).expect("read");
    assert_eq!(
        kept.entries.iter().map(|e| e.index).collect::<Vec<_>>(),
        [36, 37, 38, 39, 40]
    );
    let records = store
        .tree
        .scan_prefix(change_history::HISTORY_PREFIX)
        .count();
    assert_eq!(records, 5, "pruned records are removed, not only hidden");

    // A reopened store keeps its history and floor.
    drop(store);
    let reopened = GuestStore::open_in(db).expect("reopen");
    reopened.set_history_retention(5).expect("retention");
    assert_eq!(reopened.history_oldest_index(), 36);
    let again = reopened
        .history_after(35, b"", 100, usize::MAX)
        .expect("read");
    assert_eq!(again, kept);
}

#[test]
fn without_history_only_live_changes_are_available() {
    let (_dir, _db, store) = store_at(0);
    for index in 1..=3 {
        commit_put(&store, index, "k", "v");
    }
    assert_eq!(store.history_oldest_index(), 4);
    assert_eq!(
        store
            .tree
            .scan_prefix(change_history::HISTORY_PREFIX)
            .count(),
        0
    );
    assert!(
        store
            .history_after(3, b"", 10, usize::MAX)
            .expect("from now")
            .entries
            .is_empty()
    );
    assert!(store.history_after(2, b"", 10, usize::MAX).is_err());
}

#[test]
fn the_feed_tells_watchers_of_commits_and_snapshot_loads() {
    let (_dir, _db, store) = store_at(100);
    let mut feed = store.subscribe();
    commit_put(&store, 1, "a", "1");
    match feed.try_recv().expect("a commit") {
        FeedItem::Committed {
            applied, changes, ..
        } => {
            assert_eq!(applied, 1);
            assert_eq!(
                changes.to_vec(),
                vec![EntryChanges {
                    index: 1,
                    changes: vec![Change {
                        key: b"a".to_vec(),
                        value: Some(b"1".to_vec())
                    }]
                }]
            );
        }
        other => panic!("expected a commit, got {other:?}"),
    }
    // A snapshot load: the history restarts at its index.
    let section = {
        let mut out = Vec::new();
        for part in [&1u32.to_be_bytes()[..], b"z", &1u32.to_be_bytes(), b"9"] {
            out.extend_from_slice(part);
        }
        out
    };
    store
        .import(
            &mut section.as_slice(),
            section.len() as u64,
            CommitMark {
                index: 50,
                term: 2,
                node_meta: None,
                changes: &[],
            },
        )
        .expect("import");
    assert!(matches!(
        feed.try_recv(),
        Ok(FeedItem::Imported { index: 50 })
    ));
    assert_eq!(store.history_oldest_index(), 51);
    assert!(store.history_after(1, b"", 10, usize::MAX).is_err());
    commit_put(&store, 51, "b", "2");
    let after = store.history_after(50, b"", 10, usize::MAX).expect("read");
    assert_eq!(after.entries.len(), 1);
}

#[test]
fn the_timer_follows_the_guest_timer_key() {
    let (_dir, db, store) = store_at(100);
    let timer = store.timer();
    assert_eq!(timer.due_ms(), None);
    let hidden = commit_one(&store, 1, TIMER_KEY, Some(1_234u64.to_be_bytes().to_vec()));
    assert_eq!(hidden, 0, "the timer key is hidden from watchers");
    assert_eq!(timer.due_ms(), Some(1_234));
    drop(store);
    let reopened = GuestStore::open_in(db).expect("reopen");
    assert_eq!(reopened.timer().due_ms(), Some(1_234));
    let store = reopened;
    commit_one(&store, 2, TIMER_KEY, None);
    assert_eq!(store.timer().due_ms(), None);
}
