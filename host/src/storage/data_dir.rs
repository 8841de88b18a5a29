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
    /// existing one keeps its permissions.
    pub fn create(&self) -> std::io::Result<()> {
        if self.root.is_dir() {
            return Ok(());
        }
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, DATA_DIR_MODE);
        builder.create(&self.root)
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
