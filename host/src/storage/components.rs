//! The node's store of guest component files, content-addressed by hash.
//!
//! Components can be tens of megabytes, so they live as files next to the
//! Raft log rather than inside it; the log and the metadata refer to them by
//! hash. Files are written atomically and fsynced, and verified against their
//! hash on every read.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::wasm::ComponentHash;

/// A directory of `<blake3-hex>.wasm` files.
#[derive(Debug, Clone)]
pub struct ComponentStore {
    dir: PathBuf,
}

impl ComponentStore {
    pub fn open(dir: PathBuf) -> std::io::Result<Self> {
        super::create_dir_durably(&dir)?;
        Ok(ComponentStore { dir })
    }

    /// The directory the files are in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path_of(&self, hash: &ComponentHash) -> PathBuf {
        self.dir.join(format!("{}.wasm", hash.to_hex()))
    }

    /// Store `bytes` durably; returns their hash. Idempotent.
    pub fn put(&self, bytes: &[u8]) -> std::io::Result<ComponentHash> {
        let hash = ComponentHash::of(bytes);
        let path = self.path_of(&hash);
        if matches!(self.get(&hash), Ok(existing) if existing.len() == bytes.len()) {
            return Ok(hash);
        }
        let tmp = path.with_extension("wasm.tmp");
        let mut file = super::create_private_file(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, &path)?;
        sync_dir(&self.dir)?;
        Ok(hash)
    }

    /// Read a component and check it still has the hash it is filed under.
    pub fn get(&self, hash: &ComponentHash) -> std::io::Result<Vec<u8>> {
        let bytes = std::fs::read(self.path_of(hash))?;
        if ComponentHash::of(&bytes) != *hash {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "file content does not match its hash",
            ));
        }
        Ok(bytes)
    }
}

/// Make a rename inside `dir` durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_and_detect_damage() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ComponentStore::open(dir.path().join("c")).expect("open");
        let hash = store.put(b"component bytes").expect("put");
        assert_eq!(store.put(b"component bytes").expect("idempotent"), hash);
        assert_eq!(store.get(&hash).expect("get"), b"component bytes");
        std::fs::write(store.path_of(&hash), b"tampered").expect("write");
        let err = store.get(&hash).expect_err("damaged file");
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    }
}
