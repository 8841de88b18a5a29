//! The node's secret key: created on first start, kept in the data dir with
//! permissions 0600, so the node id stays the same across restarts.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use iroh::SecretKey;

use crate::storage::DataDir;

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("cannot create the data dir {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("secret key file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("secret key file {path} is damaged: expected 32 bytes, found {found}")]
    Damaged { path: PathBuf, found: usize },
}

/// Load the node's key from `data_dir`, creating it on first start.
pub fn load_or_create(data_dir: &Path) -> Result<SecretKey, IdentityError> {
    let path = DataDir::new(data_dir).secret_key();
    let io = |source| IdentityError::Io {
        path: path.clone(),
        source,
    };
    match std::fs::read(&path) {
        Ok(bytes) => {
            let bytes: [u8; 32] =
                bytes
                    .as_slice()
                    .try_into()
                    .map_err(|_| IdentityError::Damaged {
                        path: path.clone(),
                        found: bytes.len(),
                    })?;
            Ok(SecretKey::from_bytes(&bytes))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            DataDir::new(data_dir)
                .create()
                .map_err(|source| IdentityError::DataDir {
                    path: data_dir.to_path_buf(),
                    source,
                })?;
            let key = SecretKey::generate();
            let tmp = path.with_extension("key.tmp");
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(&tmp).map_err(io)?;
            file.write_all(&key.to_bytes()).map_err(io)?;
            file.sync_all().map_err(io)?;
            drop(file);
            std::fs::rename(&tmp, &path).map_err(io)?;
            std::fs::File::open(data_dir)
                .and_then(|dir| dir.sync_all())
                .map_err(io)?;
            Ok(key)
        }
        Err(e) => Err(io(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_stable_private_and_checked() {
        let parent = tempfile::tempdir().expect("tempdir");
        // A data dir the key creates is the owner's alone, as the node's is.
        let dir = DataDir::new(parent.path().join("node"));
        let dir = dir.root();
        let first = load_or_create(dir).expect("create");
        let again = load_or_create(dir).expect("load");
        assert_eq!(first.public(), again.public());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode_of =
                |path: &Path| std::fs::metadata(path).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode_of(&DataDir::new(dir).secret_key()), 0o600);
            assert_eq!(mode_of(dir), crate::storage::DATA_DIR_MODE);
        }
        std::fs::write(DataDir::new(dir).secret_key(), b"short").expect("write");
        assert!(matches!(
            load_or_create(dir),
            Err(IdentityError::Damaged { found: 5, .. })
        ));
    }
}
