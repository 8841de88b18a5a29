//! The filesystem as two states: what a process sees (the *view*) and what
//! survived the last power cut would leave (the *durable* state).
//!
//! Every inode keeps both. Writes, truncations and directory changes touch
//! only the view; `fsync`/`fdatasync` of a file copies its view to its
//! durable state, `fsync` of a directory copies that directory's entries. A
//! power cut ([`Model::power_cut`]) throws the view away (or, in
//! [`CutMode::KeepSomePages`], first lets a random subset of the unsynced
//! pages reach the durable state, as a disk that writes back out of order
//! does) and keeps only the inodes the durable directories still reach.
//!
//! No I/O happens here: `fuse.rs` glues it to the kernel, `lib.rs` loads it
//! from and saves it to the backing directory.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::{OsStr, OsString};
use std::time::SystemTime;

use fuser::Errno;

/// The root directory's inode number (FUSE's).
pub const ROOT_INO: u64 = 1;

/// Granularity of the dirty tracking and of [`CutMode::KeepSomePages`]: a
/// page is written back whole or not at all (torn writes at page grain).
pub const PAGE_BYTES: usize = 4096;

/// What a power cut does with writes nobody fsynced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CutMode {
    /// Lose every unsynced write, size change and directory change: the
    /// worst case a correct program must survive, and a deterministic one.
    DropAll,
    /// Each unsynced page of each file independently survives or not (and
    /// an unsynced size change survives or not), drawn from `seed`: a disk
    /// that wrote back part of its cache, in any order, before power went.
    /// Unsynced directory changes are still all lost.
    KeepSomePages {
        /// Seeds the choices, so a failing cut can be replayed.
        seed: u64,
    },
}

/// Faults the filesystem injects until they are cleared.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Faults {
    /// Bytes that writes may still add; a write past them fails with
    /// `ENOSPC` (a full disk). `None`: unlimited.
    pub space_left_bytes: Option<u64>,
    /// `fsync`, `fdatasync` and directory `fsync` fail with `EIO` and make
    /// nothing durable (a failing disk; after such an error Linux may
    /// already have dropped the dirty pages, so nothing can be assumed).
    pub fsync_eio: bool,
}

/// Counters over the life of the model (across cuts).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// `write` calls that succeeded.
    pub writes: u64,
    /// Bytes they wrote.
    pub written_bytes: u64,
    /// File syncs (`fsync` or `fdatasync`) that succeeded.
    pub file_syncs: u64,
    /// Directory syncs that succeeded.
    pub dir_syncs: u64,
    /// Power cuts.
    pub cuts: u64,
    /// Unsynced pages lost by power cuts (a page per dirty 4 KiB).
    pub lost_pages: u64,
    /// Unsynced pages a [`CutMode::KeepSomePages`] cut kept.
    pub kept_pages: u64,
    /// Files whose unsynced size change a cut lost.
    pub lost_sizes: u64,
    /// Directories whose unsynced entry changes a cut lost.
    pub lost_dir_changes: u64,
    /// Faults injected (`ENOSPC` on write, `EIO` on sync).
    pub faults_injected: u64,
}

/// What [`Model::walk_durable`] calls: path, permission bits, and the
/// durable contents of a file (`None` for a directory).
pub type Visit<'a> = dyn FnMut(&std::path::Path, u16, Option<&[u8]>) + 'a;

/// One entry of [`Model::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: OsString,
    pub ino: u64,
    pub is_dir: bool,
}

/// Attributes the glue reports for an inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr {
    pub ino: u64,
    pub is_dir: bool,
    pub size: u64,
    /// Permission bits (`0o7777` at most).
    pub perm: u16,
    pub mtime: SystemTime,
}

#[derive(Debug)]
struct Inode {
    perm: u16,
    mtime: SystemTime,
    body: Body,
}

#[derive(Debug)]
enum Body {
    File(FileData),
    Dir(DirData),
}

#[derive(Debug, Default)]
struct FileData {
    view: Vec<u8>,
    durable: Vec<u8>,
    /// Pages of `view` written or cut since the last sync.
    dirty: BTreeSet<usize>,
    /// The smallest length `view` had since the last sync: a sync must cut
    /// `durable` there first, or bytes truncated and then re-grown as zeros
    /// would come back.
    min_len: usize,
}

#[derive(Debug, Default)]
struct DirData {
    view: BTreeMap<OsString, u64>,
    durable: BTreeMap<OsString, u64>,
}

/// The whole filesystem. See the module documentation.
#[derive(Debug)]
pub struct Model {
    inodes: HashMap<u64, Inode>,
    next_ino: u64,
    /// Faults in force.
    pub faults: Faults,
    /// Counters.
    pub stats: Stats,
}

impl Default for Model {
    fn default() -> Self {
        Self::new()
    }
}

/// A small deterministic generator (SplitMix64) for [`CutMode::KeepSomePages`].
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn coin(&mut self) -> bool {
        self.next() & 1 == 1
    }
}

impl Model {
    /// An empty filesystem: a root directory, durable.
    pub fn new() -> Self {
        let mut inodes = HashMap::new();
        inodes.insert(
            ROOT_INO,
            Inode {
                perm: 0o755,
                mtime: SystemTime::now(),
                body: Body::Dir(DirData::default()),
            },
        );
        Model {
            inodes,
            next_ino: ROOT_INO + 1,
            faults: Faults::default(),
            stats: Stats::default(),
        }
    }

    fn inode(&self, ino: u64) -> Result<&Inode, Errno> {
        self.inodes.get(&ino).ok_or(Errno::ENOENT)
    }

    fn inode_mut(&mut self, ino: u64) -> Result<&mut Inode, Errno> {
        self.inodes.get_mut(&ino).ok_or(Errno::ENOENT)
    }

    fn dir(&self, ino: u64) -> Result<&DirData, Errno> {
        match &self.inode(ino)?.body {
            Body::Dir(dir) => Ok(dir),
            Body::File(_) => Err(Errno::ENOTDIR),
        }
    }

    fn dir_mut(&mut self, ino: u64) -> Result<&mut DirData, Errno> {
        match &mut self.inode_mut(ino)?.body {
            Body::Dir(dir) => Ok(dir),
            Body::File(_) => Err(Errno::ENOTDIR),
        }
    }

    fn file_mut(&mut self, ino: u64) -> Result<&mut FileData, Errno> {
        match &mut self.inode_mut(ino)?.body {
            Body::File(file) => Ok(file),
            Body::Dir(_) => Err(Errno::EISDIR),
        }
    }

    /// The attributes of `ino`.
    pub fn attr(&self, ino: u64) -> Result<Attr, Errno> {
        let inode = self.inode(ino)?;
        let (is_dir, size) = match &inode.body {
            Body::File(file) => (false, file.view.len() as u64),
            Body::Dir(dir) => (true, dir.view.len() as u64),
        };
        Ok(Attr {
            ino,
            is_dir,
            size,
            perm: inode.perm,
            mtime: inode.mtime,
        })
    }

    /// The inode `name` in directory `parent` names (in the view).
    pub fn lookup(&self, parent: u64, name: &OsStr) -> Result<u64, Errno> {
        self.dir(parent)?
            .view
            .get(name)
            .copied()
            .ok_or(Errno::ENOENT)
    }

    /// The entries of directory `ino`, in name order, with whether each is a
    /// directory.
    pub fn list(&self, ino: u64) -> Result<Vec<Entry>, Errno> {
        let dir = self.dir(ino)?;
        Ok(dir
            .view
            .iter()
            .map(|(name, &child)| {
                let is_dir = matches!(self.inodes.get(&child).map(|i| &i.body), Some(Body::Dir(_)));
                Entry {
                    name: name.clone(),
                    ino: child,
                    is_dir,
                }
            })
            .collect())
    }

    fn new_inode(&mut self, perm: u16, body: Body) -> u64 {
        let ino = self.next_ino;
        self.next_ino += 1;
        self.inodes.insert(
            ino,
            Inode {
                perm: perm & 0o7777,
                mtime: SystemTime::now(),
                body,
            },
        );
        ino
    }

    /// Creates an empty file or directory `name` in `parent` (view only).
    pub fn create(
        &mut self,
        parent: u64,
        name: &OsStr,
        is_dir: bool,
        perm: u16,
    ) -> Result<u64, Errno> {
        if self.dir(parent)?.view.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        let body = if is_dir {
            Body::Dir(DirData::default())
        } else {
            Body::File(FileData::default())
        };
        let ino = self.new_inode(perm, body);
        self.dir_mut(parent)?.view.insert(name.to_os_string(), ino);
        Ok(ino)
    }

    /// Removes `name` from `parent` (view only): a file (`rmdir == false`)
    /// or an empty directory.
    pub fn remove(&mut self, parent: u64, name: &OsStr, rmdir: bool) -> Result<(), Errno> {
        let ino = self.lookup(parent, name)?;
        match (&self.inode(ino)?.body, rmdir) {
            (Body::File(_), true) => return Err(Errno::ENOTDIR),
            (Body::Dir(_), false) => return Err(Errno::EISDIR),
            (Body::Dir(dir), true) if !dir.view.is_empty() => return Err(Errno::ENOTEMPTY),
            _ => {}
        }
        self.dir_mut(parent)?.view.remove(name);
        Ok(())
    }

    /// `rename(2)` (view only). `no_replace`: `RENAME_NOREPLACE`.
    pub fn rename(
        &mut self,
        parent: u64,
        name: &OsStr,
        new_parent: u64,
        new_name: &OsStr,
        no_replace: bool,
    ) -> Result<(), Errno> {
        let ino = self.lookup(parent, name)?;
        self.dir(new_parent)?;
        let moving_dir = matches!(self.inode(ino)?.body, Body::Dir(_));
        if moving_dir && self.is_ancestor_or_self(ino, new_parent) {
            return Err(Errno::EINVAL);
        }
        if let Ok(target) = self.lookup(new_parent, new_name) {
            if target == ino {
                return Ok(());
            }
            if no_replace {
                return Err(Errno::EEXIST);
            }
            match (&self.inode(target)?.body, moving_dir) {
                (Body::Dir(_), false) => return Err(Errno::EISDIR),
                (Body::File(_), true) => return Err(Errno::ENOTDIR),
                (Body::Dir(dir), true) if !dir.view.is_empty() => {
                    return Err(Errno::ENOTEMPTY);
                }
                _ => {}
            }
        }
        self.dir_mut(parent)?.view.remove(name);
        self.dir_mut(new_parent)?
            .view
            .insert(new_name.to_os_string(), ino);
        Ok(())
    }

    /// Whether directory `ancestor` is `dir` or contains it (in the view).
    fn is_ancestor_or_self(&self, ancestor: u64, dir: u64) -> bool {
        if ancestor == dir {
            return true;
        }
        match self.dir(ancestor) {
            Ok(data) => data
                .view
                .values()
                .any(|&child| self.is_ancestor_or_self(child, dir)),
            Err(_) => false,
        }
    }

    /// Reads up to `size` bytes at `offset`.
    pub fn read(&self, ino: u64, offset: u64, size: u32) -> Result<&[u8], Errno> {
        match &self.inode(ino)?.body {
            Body::File(file) => {
                let len = file.view.len();
                let start = usize::try_from(offset).unwrap_or(usize::MAX).min(len);
                let end = start.saturating_add(size as usize).min(len);
                Ok(&file.view[start..end])
            }
            Body::Dir(_) => Err(Errno::EISDIR),
        }
    }

    /// Writes `data` at `offset` (view only), unless the disk is "full".
    pub fn write(&mut self, ino: u64, offset: u64, data: &[u8]) -> Result<u32, Errno> {
        let count = u32::try_from(data.len()).map_err(|_| Errno::EINVAL)?;
        if let Some(left) = self.faults.space_left_bytes {
            if data.len() as u64 > left {
                self.stats.faults_injected += 1;
                return Err(Errno::ENOSPC);
            }
            self.faults.space_left_bytes = Some(left - data.len() as u64);
        }
        let start = usize::try_from(offset).map_err(|_| Errno::EFBIG)?;
        let end = start.checked_add(data.len()).ok_or(Errno::EFBIG)?;
        let inode = self.inode_mut(ino)?;
        inode.mtime = SystemTime::now();
        let Body::File(file) = &mut inode.body else {
            return Err(Errno::EISDIR);
        };
        if file.view.len() < end {
            file.view.resize(end, 0);
        }
        file.view[start..end].copy_from_slice(data);
        if !data.is_empty() {
            file.dirty
                .extend(start / PAGE_BYTES..=(end - 1) / PAGE_BYTES);
        }
        self.stats.writes += 1;
        self.stats.written_bytes += data.len() as u64;
        Ok(count)
    }

    /// Truncates or extends file `ino` to `size` (view only).
    pub fn set_len(&mut self, ino: u64, size: u64) -> Result<(), Errno> {
        let size = usize::try_from(size).map_err(|_| Errno::EFBIG)?;
        let inode = self.inode_mut(ino)?;
        inode.mtime = SystemTime::now();
        let Body::File(file) = &mut inode.body else {
            return Err(Errno::EISDIR);
        };
        if size < file.view.len() {
            file.min_len = file.min_len.min(size);
            if size % PAGE_BYTES != 0 {
                // The page the cut falls in changed (its tail is now gone).
                file.dirty.insert(size / PAGE_BYTES);
            }
        }
        file.view.resize(size, 0);
        Ok(())
    }

    /// Sets the permission bits (applied to both states at once: metadata
    /// durability is not modelled).
    pub fn set_perm(&mut self, ino: u64, perm: u16) -> Result<(), Errno> {
        self.inode_mut(ino)?.perm = perm & 0o7777;
        Ok(())
    }

    /// `fsync`/`fdatasync` of a file: its data and size become durable.
    pub fn sync_file(&mut self, ino: u64) -> Result<(), Errno> {
        if self.faults.fsync_eio {
            self.stats.faults_injected += 1;
            return Err(Errno::EIO);
        }
        let file = self.file_mut(ino)?;
        file.durable.truncate(file.min_len);
        file.durable.resize(file.view.len(), 0);
        for &page in &file.dirty {
            let start = page * PAGE_BYTES;
            let end = (start + PAGE_BYTES).min(file.view.len());
            if start < end {
                file.durable[start..end].copy_from_slice(&file.view[start..end]);
            }
        }
        file.dirty.clear();
        file.min_len = file.view.len();
        self.stats.file_syncs += 1;
        Ok(())
    }

    /// `fsync` of a directory: its entries (names and what they point to)
    /// become durable; the contents of the files and directories named do
    /// not.
    pub fn sync_dir(&mut self, ino: u64) -> Result<(), Errno> {
        if self.faults.fsync_eio {
            self.stats.faults_injected += 1;
            return Err(Errno::EIO);
        }
        let dir = self.dir_mut(ino)?;
        dir.durable = dir.view.clone();
        self.stats.dir_syncs += 1;
        Ok(())
    }

    /// A power cut: every inode's view becomes its durable state (after the
    /// pages `mode` lets through), and inodes no durable directory reaches
    /// any more are forgotten.
    pub fn power_cut(&mut self, mode: CutMode) {
        let mut rng = match mode {
            CutMode::DropAll => None,
            CutMode::KeepSomePages { seed } => Some(SplitMix64(seed)),
        };
        // Walk in inode order so a seed replays the same choices.
        let mut inos: Vec<u64> = self.inodes.keys().copied().collect();
        inos.sort_unstable();
        for ino in inos {
            let Some(inode) = self.inodes.get_mut(&ino) else {
                continue;
            };
            match &mut inode.body {
                Body::File(file) => {
                    let size_changed =
                        file.min_len < file.durable.len() || file.view.len() != file.durable.len();
                    let mut lost = 0;
                    let mut kept = 0;
                    if let Some(rng) = rng.as_mut() {
                        if size_changed && rng.coin() {
                            file.durable.truncate(file.min_len);
                            file.durable.resize(file.view.len(), 0);
                        } else if size_changed {
                            self.stats.lost_sizes += 1;
                        }
                        for &page in &file.dirty {
                            let start = page * PAGE_BYTES;
                            let end = (start + PAGE_BYTES).min(file.view.len());
                            if start < end && rng.coin() {
                                if file.durable.len() < end {
                                    file.durable.resize(end, 0);
                                }
                                file.durable[start..end].copy_from_slice(&file.view[start..end]);
                                kept += 1;
                            } else {
                                lost += 1;
                            }
                        }
                    } else {
                        lost = file.dirty.len() as u64;
                        if size_changed {
                            self.stats.lost_sizes += 1;
                        }
                    }
                    self.stats.lost_pages += lost;
                    self.stats.kept_pages += kept;
                    file.view = file.durable.clone();
                    file.dirty.clear();
                    file.min_len = file.view.len();
                }
                Body::Dir(dir) => {
                    if dir.view != dir.durable {
                        self.stats.lost_dir_changes += 1;
                    }
                    dir.view = dir.durable.clone();
                }
            }
        }
        self.collect_unreachable();
        self.stats.cuts += 1;
    }

    /// Forgets inodes the root does not reach (after a cut, view = durable).
    fn collect_unreachable(&mut self) {
        let mut reachable = BTreeSet::new();
        let mut stack = vec![ROOT_INO];
        while let Some(ino) = stack.pop() {
            if !reachable.insert(ino) {
                continue;
            }
            if let Some(Inode {
                body: Body::Dir(dir),
                ..
            }) = self.inodes.get(&ino)
            {
                stack.extend(dir.view.values().copied());
            }
        }
        self.inodes.retain(|ino, _| reachable.contains(ino));
    }

    /// Bytes written but not yet synced, counted in dirty pages, plus
    /// directories with unsynced entries: what a cut now would lose.
    pub fn unsynced(&self) -> (u64, u64) {
        let mut pages = 0;
        let mut dirs = 0;
        for inode in self.inodes.values() {
            match &inode.body {
                Body::File(file) => pages += file.dirty.len() as u64,
                Body::Dir(dir) => dirs += u64::from(dir.view != dir.durable),
            }
        }
        (pages, dirs)
    }

    /// What a cut now would lose, one line per file or directory, by path
    /// (paths as the view names them; unnamed inodes are not listed).
    pub fn describe_unsynced(&self) -> Vec<String> {
        let mut lines = Vec::new();
        let mut stack = vec![(ROOT_INO, std::path::PathBuf::from("/"))];
        let mut seen = BTreeSet::new();
        while let Some((ino, path)) = stack.pop() {
            if !seen.insert(ino) {
                continue;
            }
            let Some(inode) = self.inodes.get(&ino) else {
                continue;
            };
            match &inode.body {
                Body::File(file) => {
                    if !file.dirty.is_empty() || file.view.len() != file.durable.len() {
                        lines.push(format!(
                            "{}: {} unsynced pages, size {} (durable {})",
                            path.display(),
                            file.dirty.len(),
                            file.view.len(),
                            file.durable.len()
                        ));
                    }
                }
                Body::Dir(dir) => {
                    let added: Vec<_> = dir
                        .view
                        .iter()
                        .filter(|(name, ino)| dir.durable.get(*name) != Some(ino))
                        .map(|(name, _)| name.to_string_lossy().into_owned())
                        .collect();
                    let removed: Vec<_> = dir
                        .durable
                        .iter()
                        .filter(|(name, ino)| dir.view.get(*name) != Some(ino))
                        .map(|(name, _)| name.to_string_lossy().into_owned())
                        .collect();
                    if !added.is_empty() || !removed.is_empty() {
                        lines.push(format!(
                            "{}: unsynced entries, new {added:?}, removed {removed:?}",
                            path.display()
                        ));
                    }
                    for (name, &child) in &dir.view {
                        stack.push((child, path.join(name)));
                    }
                }
            }
        }
        lines.sort();
        lines
    }

    /// Adds a file that is already durable (loading the backing directory).
    pub fn load_file(&mut self, parent: u64, name: &OsStr, perm: u16, data: Vec<u8>) -> u64 {
        let len = data.len();
        let ino = self.new_inode(
            perm,
            Body::File(FileData {
                view: data.clone(),
                durable: data,
                dirty: BTreeSet::new(),
                min_len: len,
            }),
        );
        self.link_durably(parent, name, ino);
        ino
    }

    /// Adds a directory that is already durable (loading the backing directory).
    pub fn load_dir(&mut self, parent: u64, name: &OsStr, perm: u16) -> u64 {
        let ino = self.new_inode(perm, Body::Dir(DirData::default()));
        self.link_durably(parent, name, ino);
        ino
    }

    fn link_durably(&mut self, parent: u64, name: &OsStr, ino: u64) {
        if let Some(Inode {
            body: Body::Dir(dir),
            ..
        }) = self.inodes.get_mut(&parent)
        {
            dir.view.insert(name.to_os_string(), ino);
            dir.durable.insert(name.to_os_string(), ino);
        }
    }

    /// The durable tree under `ino`, for saving to the backing directory:
    /// calls `visit` on each file and directory, parents first.
    pub fn walk_durable(&self, ino: u64, path: &std::path::Path, visit: &mut Visit<'_>) {
        let Some(inode) = self.inodes.get(&ino) else {
            return;
        };
        match &inode.body {
            Body::File(file) => visit(path, inode.perm, Some(&file.durable)),
            Body::Dir(dir) => {
                visit(path, inode.perm, None);
                for (name, &child) in &dir.durable {
                    self.walk_durable(child, &path.join(name), visit);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
