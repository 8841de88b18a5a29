//! The kernel side: FUSE requests turned into [`Model`] calls.
//!
//! Three things make the model see what a real disk would:
//!
//! - No writeback cache (fuser does not ask for `FUSE_WRITEBACK_CACHE`):
//!   every `write(2)` reaches the model before it returns, so nothing sits
//!   in the kernel that a cut would not see. `sync_file_range` (sled's own
//!   flush) therefore has nothing to do and does not reach us, as on a real
//!   disk it would not flush the device either.
//! - `fsync`/`fdatasync` and directory `fsync` are answered, never `ENOSYS`:
//!   on `ENOSYS` the kernel stops sending them and reports success itself.
//! - `flush` (each `close`) and `release` make nothing durable.
//!
//! A session belongs to one mount generation: after a cut, a process still
//! holding a file of the old (lazily detached) mount gets `EIO`, as it would
//! from a machine that lost power, and cannot change the new state.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow, WriteFlags,
};

use crate::model::{Attr, Entry, Model};

/// How long the kernel may cache names and attributes. Every change goes
/// through this one mount, so the kernel's caches stay right; a cut
/// remounts, which drops them.
const TTL: Duration = Duration::from_secs(1);

/// `S_IFMT` and `S_IFREG` of `mknod`'s mode.
const S_IFMT: u32 = 0o170_000;
const S_IFREG: u32 = 0o100_000;
/// `O_EXCL` and `O_TRUNC` of `create`'s flags (Linux values).
const O_EXCL: i32 = 0o200;
const O_TRUNC: i32 = 0o1000;

/// What [`Model`] and the mount share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) model: Model,
    /// Bumped by every cut: sessions of older mounts answer `EIO`.
    pub(crate) generation: u64,
}

pub(crate) type SharedModel = Arc<Mutex<Shared>>;

/// One mount's FUSE handler.
#[derive(Debug)]
pub(crate) struct Fs {
    shared: SharedModel,
    generation: u64,
    /// Directory listings taken at `opendir`, so `readdir` offsets stay
    /// valid while the directory changes.
    listings: Mutex<HashMap<u64, Vec<Entry>>>,
    next_handle: AtomicU64,
}

impl Fs {
    pub(crate) fn new(shared: SharedModel, generation: u64) -> Self {
        Fs {
            shared,
            generation,
            listings: Mutex::new(HashMap::new()),
            next_handle: AtomicU64::new(1),
        }
    }

    /// The model, if this mount is still the live one.
    fn model(&self) -> Result<MutexGuard<'_, Shared>, Errno> {
        let shared = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        if shared.generation == self.generation {
            Ok(shared)
        } else {
            Err(Errno::EIO)
        }
    }

    /// Creates a file or directory with the permission bits of `mode`.
    fn make(&self, parent: INodeNo, name: &OsStr, is_dir: bool, mode: u32) -> Result<Attr, Errno> {
        self.with(|m| {
            let ino = m.create(parent.0, name, is_dir, (mode & 0o7777) as u16)?;
            m.attr(ino)
        })
    }

    fn with<T>(&self, f: impl FnOnce(&mut Model) -> Result<T, Errno>) -> Result<T, Errno> {
        f(&mut self.model()?.model)
    }
}

fn file_attr(attr: Attr, req: &Request) -> FileAttr {
    FileAttr {
        ino: INodeNo(attr.ino),
        size: attr.size,
        blocks: attr.size.div_ceil(512),
        atime: attr.mtime,
        mtime: attr.mtime,
        ctime: attr.mtime,
        crtime: attr.mtime,
        kind: if attr.is_dir {
            FileType::Directory
        } else {
            FileType::RegularFile
        },
        perm: attr.perm,
        nlink: if attr.is_dir { 2 } else { 1 },
        uid: req.uid(),
        gid: req.gid(),
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

fn reply_empty(reply: ReplyEmpty, result: Result<(), Errno>) {
    match result {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(e),
    }
}

fn reply_entry(reply: ReplyEntry, req: &Request, result: Result<Attr, Errno>) {
    match result {
        Ok(attr) => reply.entry(&TTL, &file_attr(attr, req), Generation(0)),
        Err(e) => reply.error(e),
    }
}

fn reply_attr(reply: ReplyAttr, req: &Request, result: Result<Attr, Errno>) {
    match result {
        Ok(attr) => reply.attr(&TTL, &file_attr(attr, req)),
        Err(e) => reply.error(e),
    }
}

impl Filesystem for Fs {
    fn lookup(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        reply_entry(reply, req, self.with(|m| m.attr(m.lookup(parent.0, name)?)));
    }

    fn getattr(&self, req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        reply_attr(reply, req, self.with(|m| m.attr(ino.0)));
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let result = self.with(|m| {
            if let Some(mode) = mode {
                m.set_perm(ino.0, (mode & 0o7777) as u16)?;
            }
            if let Some(size) = size {
                m.set_len(ino.0, size)?;
            }
            m.attr(ino.0)
        });
        reply_attr(reply, req, result);
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        if mode & S_IFMT != S_IFREG {
            reply.error(Errno::EPERM);
            return;
        }
        reply_entry(reply, req, self.make(parent, name, false, mode & !umask));
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        reply_entry(reply, req, self.make(parent, name, true, mode & !umask));
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply_empty(reply, self.with(|m| m.remove(parent.0, name, false)));
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply_empty(reply, self.with(|m| m.remove(parent.0, name, true)));
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        if flags.contains(RenameFlags::RENAME_EXCHANGE)
            || flags.contains(RenameFlags::RENAME_WHITEOUT)
        {
            reply.error(Errno::EINVAL);
            return;
        }
        let no_replace = flags.contains(RenameFlags::RENAME_NOREPLACE);
        reply_empty(
            reply,
            self.with(|m| m.rename(parent.0, name, newparent.0, newname, no_replace)),
        );
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.with(|m| m.attr(ino.0)) {
            Ok(_) => reply.opened(FileHandle(0), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let shared = match self.model() {
            Ok(shared) => shared,
            Err(e) => return reply.error(e),
        };
        match shared.model.read(ino.0, offset, size) {
            Ok(data) => reply.data(data),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.with(|m| m.write(ino.0, offset, data)) {
            Ok(written) => reply.written(written),
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // `close` makes nothing durable.
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // fdatasync is treated as fsync: the size is data we model, and the
        // other metadata (times) is not modelled.
        reply_empty(reply, self.with(|m| m.sync_file(ino.0)));
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.with(|m| m.list(ino.0)) {
            Ok(listing) => {
                let handle = self.next_handle.fetch_add(1, Ordering::Relaxed);
                self.listings
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(handle, listing);
                reply.opened(FileHandle(handle), FopenFlags::empty());
            }
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let listings = self.listings.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(listing) = listings.get(&fh.0) else {
            return reply.error(Errno::EBADF);
        };
        let dots = [
            (OsStr::new("."), ino.0, true),
            (OsStr::new(".."), ino.0, true),
        ];
        let entries = dots.into_iter().chain(
            listing
                .iter()
                .map(|e| (e.name.as_os_str(), e.ino, e.is_dir)),
        );
        for (index, (name, child, is_dir)) in entries.enumerate().skip(offset as usize) {
            let kind = if is_dir {
                FileType::Directory
            } else {
                FileType::RegularFile
            };
            if reply.add(INodeNo(child), index as u64 + 1, kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.listings
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply_empty(reply, self.with(|m| m.sync_dir(ino.0)));
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        // Plenty of room, unless a disk-full fault says otherwise.
        const BLOCK_BYTES: u64 = 4096;
        const BLOCKS: u64 = 1 << 24;
        let free = match self.model() {
            Ok(shared) => shared
                .model
                .faults
                .space_left_bytes
                .map_or(BLOCKS, |left| (left / BLOCK_BYTES).min(BLOCKS)),
            Err(e) => return reply.error(e),
        };
        reply.statfs(BLOCKS, free, free, 1 << 20, 1 << 20, 4096, 255, 4096);
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        reply.ok();
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let perm = (mode & !umask & 0o7777) as u16;
        let result = self.with(|m| {
            let ino = match m.lookup(parent.0, name) {
                Ok(_) if flags & O_EXCL != 0 => return Err(Errno::EEXIST),
                Ok(ino) => {
                    if flags & O_TRUNC != 0 {
                        m.set_len(ino, 0)?;
                    }
                    ino
                }
                Err(_) => m.create(parent.0, name, false, perm)?,
            };
            m.attr(ino)
        });
        match result {
            Ok(attr) => reply.created(
                &TTL,
                &file_attr(attr, req),
                Generation(0),
                FileHandle(0),
                FopenFlags::empty(),
            ),
            Err(e) => reply.error(e),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        // Plain allocation only: it grows the file like a write of zeros
        // (an unsynced size change).
        if mode != 0 {
            return reply.error(Errno::EOPNOTSUPP);
        }
        let result = self.with(|m| {
            let end = offset.checked_add(length).ok_or(Errno::EFBIG)?;
            if end > m.attr(ino.0)?.size {
                m.set_len(ino.0, end)?;
            }
            Ok(())
        });
        reply_empty(reply, result);
    }
}
