//! The model alone, without FUSE.
use super::*;

fn name(s: &str) -> &OsStr {
    OsStr::new(s)
}

fn content(model: &Model, parent: u64, file: &str) -> Option<Vec<u8>> {
    let ino = model.lookup(parent, name(file)).ok()?;
    Some(model.read(ino, 0, u32::MAX).expect("read").to_vec())
}

#[test]
fn unsynced_writes_are_lost_and_synced_ones_kept() {
    let mut m = Model::new();
    let f = m.create(ROOT_INO, name("f"), false, 0o600).expect("create");
    m.sync_dir(ROOT_INO).expect("sync dir");
    m.write(f, 0, b"hello").expect("write");
    m.sync_file(f).expect("sync");
    m.write(f, 5, b" world").expect("write");
    assert_eq!(
        content(&m, ROOT_INO, "f").as_deref(),
        Some(&b"hello world"[..])
    );
    assert_eq!(m.unsynced(), (1, 0));
    m.power_cut(CutMode::DropAll);
    assert_eq!(content(&m, ROOT_INO, "f").as_deref(), Some(&b"hello"[..]));
    assert_eq!(m.stats.lost_pages, 1);
    assert_eq!(m.stats.lost_sizes, 1);
}

#[test]
fn a_name_needs_its_directory_synced() {
    let mut m = Model::new();
    let f = m.create(ROOT_INO, name("f"), false, 0o600).expect("create");
    m.write(f, 0, b"data").expect("write");
    m.sync_file(f).expect("sync file only");
    m.power_cut(CutMode::DropAll);
    assert_eq!(
        content(&m, ROOT_INO, "f"),
        None,
        "the entry was never synced"
    );

    let f = m.create(ROOT_INO, name("g"), false, 0o600).expect("create");
    m.sync_dir(ROOT_INO).expect("sync dir");
    m.write(f, 0, b"data").expect("write");
    m.power_cut(CutMode::DropAll);
    assert_eq!(
        content(&m, ROOT_INO, "g").as_deref(),
        Some(&b""[..]),
        "the name survives, the unsynced data does not"
    );
}

#[test]
fn rename_without_a_directory_sync_is_undone() {
    let mut m = Model::new();
    let tmp = m
        .create(ROOT_INO, name("x.tmp"), false, 0o600)
        .expect("create");
    m.write(tmp, 0, b"new").expect("write");
    m.sync_file(tmp).expect("sync");
    m.sync_dir(ROOT_INO).expect("sync dir");
    m.rename(ROOT_INO, name("x.tmp"), ROOT_INO, name("x"), false)
        .expect("rename");
    m.power_cut(CutMode::DropAll);
    assert!(content(&m, ROOT_INO, "x").is_none());
    assert_eq!(content(&m, ROOT_INO, "x.tmp").as_deref(), Some(&b"new"[..]));

    m.rename(ROOT_INO, name("x.tmp"), ROOT_INO, name("x"), false)
        .expect("rename");
    m.sync_dir(ROOT_INO).expect("sync dir");
    m.power_cut(CutMode::DropAll);
    assert!(content(&m, ROOT_INO, "x.tmp").is_none());
    assert_eq!(content(&m, ROOT_INO, "x").as_deref(), Some(&b"new"[..]));
}

#[test]
fn a_synced_truncation_does_not_bring_old_bytes_back() {
    let mut m = Model::new();
    let f = m.create(ROOT_INO, name("f"), false, 0o600).expect("create");
    m.sync_dir(ROOT_INO).expect("sync dir");
    m.write(f, 0, &[7; 10_000]).expect("write");
    m.sync_file(f).expect("sync");
    m.set_len(f, 100).expect("truncate");
    m.set_len(f, 10_000).expect("extend");
    m.sync_file(f).expect("sync");
    m.power_cut(CutMode::DropAll);
    let data = content(&m, ROOT_INO, "f").expect("file");
    assert_eq!(data.len(), 10_000);
    assert!(data[..100].iter().all(|&b| b == 7));
    assert!(data[100..].iter().all(|&b| b == 0));
}

#[test]
fn keeping_some_pages_is_replayable_and_keeps_synced_data() {
    let run = |seed| {
        let mut m = Model::new();
        let f = m.create(ROOT_INO, name("f"), false, 0o600).expect("create");
        m.sync_dir(ROOT_INO).expect("sync dir");
        m.write(f, 0, &[1; 3 * PAGE_BYTES]).expect("write");
        m.sync_file(f).expect("sync");
        m.write(f, 0, &[2; 8 * PAGE_BYTES]).expect("write");
        m.power_cut(CutMode::KeepSomePages { seed });
        (content(&m, ROOT_INO, "f").expect("file"), m.stats)
    };
    let (data, stats) = run(7);
    assert_eq!(run(7).0, data, "the same seed keeps the same pages");
    assert_eq!(stats.kept_pages + stats.lost_pages, 8);
    assert!(stats.kept_pages > 0 && stats.lost_pages > 0, "{stats:?}");
    for page in data.chunks(PAGE_BYTES) {
        let first = page[0];
        assert!(page.iter().all(|&b| b == first), "pages are whole");
        assert!(first == 1 || first == 2 || first == 0);
    }
    assert!(data.len() >= 3 * PAGE_BYTES, "synced bytes stay");
    assert!(data[..3 * PAGE_BYTES].iter().all(|&b| b != 0));
}

#[test]
fn faults_refuse_writes_and_syncs() {
    let mut m = Model::new();
    let f = m.create(ROOT_INO, name("f"), false, 0o600).expect("create");
    m.faults.space_left_bytes = Some(10);
    m.write(f, 0, b"12345").expect("fits");
    assert_eq!(m.write(f, 5, b"123456"), Err(Errno::ENOSPC));
    m.faults = Faults {
        fsync_eio: true,
        ..Faults::default()
    };
    assert_eq!(m.sync_file(f), Err(Errno::EIO));
    assert_eq!(m.sync_dir(ROOT_INO), Err(Errno::EIO));
    m.power_cut(CutMode::DropAll);
    assert!(
        content(&m, ROOT_INO, "f").is_none(),
        "nothing became durable"
    );
    assert_eq!(m.stats.faults_injected, 3);
}

#[test]
fn removed_files_stay_until_the_removal_is_synced() {
    let mut m = Model::new();
    let d = m.create(ROOT_INO, name("d"), true, 0o700).expect("mkdir");
    let f = m.create(d, name("f"), false, 0o600).expect("create");
    m.write(f, 0, b"x").expect("write");
    m.sync_file(f).expect("sync");
    m.sync_dir(d).expect("sync d");
    m.sync_dir(ROOT_INO).expect("sync root");
    m.remove(d, name("f"), false).expect("unlink");
    assert_eq!(m.remove(ROOT_INO, name("d"), false), Err(Errno::EISDIR));
    m.power_cut(CutMode::DropAll);
    assert_eq!(content(&m, d, "f").as_deref(), Some(&b"x"[..]));
    m.remove(d, name("f"), false).expect("unlink");
    m.sync_dir(d).expect("sync d");
    m.power_cut(CutMode::DropAll);
    assert!(content(&m, d, "f").is_none());
}
