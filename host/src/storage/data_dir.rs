//! The data dir: the one type that knows every path a node keeps on disk.
//!
//! ```text
//! <data-dir>/                 created 0700: it holds the node's secret key
//!   raft/                     sled: Raft log, hard state, conf state, metadata ([`SledStorage`])
//!   store/                    sled: a store-backed guest's keys and values ([`GuestStore`])
//!   snapshots/                snapshot files `<index>-<term>.snap` (format: `node::snapshot`)
//!   components/               guest components `<blake3>.wasm`, verified on read ([`ComponentStore`])
//!   component-cache/          wasmtime's compiled components (disposable: rebuilt when missing)
//!   node.key                  the iroh secret key, 32 bytes, 0600 (`transport::identity`)
//! ```
//!
//! Everything but `component-cache/` is needed to restart the node as the
//! same member; an operator backs up a node with `raft-host backup` (a
//! snapshot file) rather than by copying this directory.
//!
//! [`SledStorage`]: super::SledStorage
//! [`ComponentStore`]: super::ComponentStore
//! [`GuestStore`]: super::GuestStore

use std::path::{Path, PathBuf};

/// Subdirectory of the sled store.
const RAFT_DIR: &str = "raft";
/// Subdirectory of the guest store (its own sled database).
const STORE_DIR: &str = "store";
/// Subdirectory of the snapshot files.
const SNAPSHOTS_DIR: &str = "snapshots";
/// Subdirectory of the component files.
const COMPONENTS_DIR: &str = "components";
/// Subdirectory of wasmtime's compile cache.
const COMPILE_CACHE_DIR: &str = "component-cache";
/// File name of the node's secret key.
const SECRET_KEY_FILE: &str = "node.key";
/// Permissions of a data dir this node creates (Unix): owner only.
pub const DATA_DIR_MODE: u32 = 0o700;
/// Permissions of the files a node writes (Unix): owner only. The state,
/// the snapshots (a whole copy of it) and the key are the node's secrets.
pub const DATA_FILE_MODE: u32 = 0o600;

/// Create (or truncate) a file that only its owner may read.
pub fn create_private_file(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, DATA_FILE_MODE);
    options.open(path)
}

/// Create `dir` (and its parents) and make the new entries durable: a
/// file renamed into a directory whose own entry was never synced can
/// vanish with it after a power loss.
pub fn create_dir_durably(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    create_durably_with(&builder, dir)
}

/// [`create_dir_durably`] with `builder`'s options (which must be
/// recursive).
fn create_durably_with(builder: &std::fs::DirBuilder, dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    // The directories this call creates, deepest first.
    let mut created = Vec::new();
    let mut missing = Some(dir);
    while let Some(path) = missing.filter(|p| !p.as_os_str().is_empty() && !p.exists()) {
        created.push(path);
        missing = path.parent();
    }
    builder.create(dir)?;
    for path in created {
        let parent = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}

/// Restrict `dir` and everything in it to its owner: sled creates its
/// files with the process's umask (0644 under the usual 022).
pub fn make_private(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let metadata = std::fs::symlink_metadata(dir)?;
        if metadata.is_dir() {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(DATA_DIR_MODE))?;
            for entry in std::fs::read_dir(dir)? {
                make_private(&entry?.path())?;
            }
        } else if metadata.is_file() {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(DATA_FILE_MODE))?;
        }
    }
    Ok(())
}

/// Where one node keeps its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DataDir { root: root.into() }
    }

    /// Create the directory (owner-only on Unix) if it does not exist; an
    /// existing one (made by an operator, or a temp dir) is made
    /// owner-only too.
    pub fn create(&self) -> std::io::Result<()> {
        if self.root.is_dir() {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt as _;
                let mode = std::fs::metadata(&self.root)?.permissions().mode();
                if mode & 0o777 != DATA_DIR_MODE {
                    std::fs::set_permissions(
                        &self.root,
                        std::fs::Permissions::from_mode(DATA_DIR_MODE),
                    )?;
                }
            }
            return Ok(());
        }
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, DATA_DIR_MODE);
        // Durably: the first writes a node acknowledges go into this
        // directory, and a power cut before its name reached the disk took
        // the whole store with it (the node came back as a new cluster;
        // found by tests/faults/t46_power_loss.rs).
        create_durably_with(&builder, &self.root)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The sled store.
    pub fn raft_log(&self) -> PathBuf {
        self.root.join(RAFT_DIR)
    }

    /// The guest store's sled database.
    pub fn guest_store(&self) -> PathBuf {
        self.root.join(STORE_DIR)
    }

    /// The snapshot files.
    pub fn snapshots(&self) -> PathBuf {
        self.root.join(SNAPSHOTS_DIR)
    }

    /// The component files.
    pub fn components(&self) -> PathBuf {
        self.root.join(COMPONENTS_DIR)
    }

    /// wasmtime's compile cache.
    pub fn compile_cache(&self) -> PathBuf {
        self.root.join(COMPILE_CACHE_DIR)
    }

    /// The node's secret key file.
    pub fn secret_key(&self) -> PathBuf {
        self.root.join(SECRET_KEY_FILE)
    }

    /// True when no Raft log was ever created here (a new node).
    pub fn is_fresh(&self) -> bool {
        !self.raft_log().exists()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_owner_only_and_paths_inside() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = DataDir::new(tmp.path().join("node"));
        assert!(dir.is_fresh());
        dir.create().expect("create");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.root())
                .expect("stat")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, DATA_DIR_MODE);
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let open = tempfile::tempdir().expect("tempdir");
            std::fs::set_permissions(open.path(), std::fs::Permissions::from_mode(0o755))
                .expect("chmod");
            DataDir::new(open.path()).create().expect("create");
            let mode = std::fs::metadata(open.path())
                .expect("stat")
                .permissions()
                .mode();
            assert_eq!(
                mode & 0o777,
                DATA_DIR_MODE,
                "an existing dir is made private"
            );
        }
        for path in [
            dir.raft_log(),
            dir.guest_store(),
            dir.snapshots(),
            dir.components(),
            dir.compile_cache(),
            dir.secret_key(),
        ] {
            assert_eq!(path.parent(), Some(dir.root()));
        }
    }
}
