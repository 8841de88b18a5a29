//! The filesystem mounted for real: what ordinary system calls make
//! durable. Needs root and /dev/fuse, like the power-loss tests of the
//! node (`IROH_RAFT_SKIP_FUSE=1` skips knowingly).

use std::fs::{self, File, OpenOptions};
use std::io::Write as _;

use powercut::{CutMode, Disk, Faults};

fn disk() -> Option<(Disk, tempfile::TempDir, tempfile::TempDir)> {
    if std::env::var_os("IROH_RAFT_SKIP_FUSE").is_some() {
        eprintln!("IROH_RAFT_SKIP_FUSE is set: skipping a test that mounts FUSE");
        return None;
    }
    let backing = tempfile::tempdir().expect("backing dir");
    let mountpoint = tempfile::tempdir().expect("mountpoint");
    let disk = Disk::mount(backing.path(), mountpoint.path())
        .unwrap_or_else(|e| panic!("{e}; set IROH_RAFT_SKIP_FUSE=1 to skip knowingly"));
    Some((disk, mountpoint, backing))
}

#[test]
fn syscalls_make_durable_what_posix_says_and_nothing_more() {
    let Some((mut disk, _mountpoint, _backing)) = disk() else {
        return;
    };
    let root = disk.path().to_path_buf();
    let dir = root.join("d");
    fs::create_dir(&dir).expect("mkdir");
    File::open(&root)
        .and_then(|d| d.sync_all())
        .expect("fsync root");

    let mut synced = File::create(dir.join("synced")).expect("create");
    synced.write_all(b"durable").expect("write");
    synced.sync_data().expect("fdatasync");
    synced.write_all(b" and not").expect("write more");
    drop(synced); // close makes nothing durable
    fs::write(dir.join("never-synced"), b"gone").expect("write");
    File::open(&dir)
        .and_then(|d| d.sync_all())
        .expect("fsync d");
    fs::write(dir.join("after-dir-sync"), b"gone too").expect("write");
    let (pages, dirs) = disk.unsynced();
    assert!(
        pages >= 2 && dirs == 1,
        "unsynced: {pages} pages, {dirs} dirs"
    );

    let report = disk.power_cut(CutMode::DropAll).expect("cut");
    assert!(report.lost_anything(), "{report:?}");
    assert_eq!(fs::read(dir.join("synced")).expect("read"), b"durable");
    assert_eq!(
        fs::read(dir.join("never-synced")).expect("its name was synced"),
        b""
    );
    assert!(!dir.join("after-dir-sync").exists());
    assert_eq!(
        fs::read(disk.backing().join("d/synced")).expect("backing"),
        b"durable",
        "the backing directory holds the durable state"
    );

    // The classic atomic replace: write, fsync, rename, fsync the directory.
    let tmp = dir.join("state.tmp");
    fs::write(&tmp, b"new state").expect("write tmp");
    File::open(&tmp)
        .and_then(|f| f.sync_all())
        .expect("fsync tmp");
    File::open(&dir)
        .and_then(|d| d.sync_all())
        .expect("fsync d");
    fs::rename(&tmp, dir.join("state")).expect("rename");
    disk.power_cut(CutMode::DropAll).expect("cut");
    assert!(!dir.join("state").exists(), "the rename was not synced");
    fs::rename(&tmp, dir.join("state")).expect("rename");
    File::open(&dir)
        .and_then(|d| d.sync_all())
        .expect("fsync d");
    disk.power_cut(CutMode::DropAll).expect("cut");
    assert_eq!(fs::read(dir.join("state")).expect("read"), b"new state");
}

#[test]
fn faults_reach_the_caller_and_clear() {
    let Some((disk, _mountpoint, _backing)) = disk() else {
        return;
    };
    let path = disk.path().join("f");
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)
        .expect("create");
    disk.set_faults(Faults {
        space_left_bytes: Some(10),
        ..Faults::default()
    });
    file.write_all(b"12345").expect("fits");
    let full = file.write_all(&[0; 100]).expect_err("disk full");
    assert_eq!(full.raw_os_error(), Some(28), "ENOSPC: {full}");
    disk.set_faults(Faults {
        fsync_eio: true,
        ..Faults::default()
    });
    let eio = file.sync_data().expect_err("fsync fails");
    assert_eq!(eio.raw_os_error(), Some(5), "EIO: {eio}");
    disk.set_faults(Faults::default());
    file.sync_data().expect("fsync works again");
    assert_eq!(disk.stats().faults_injected, 2);
}
