//! Reading the API's credentials from files: token files, certificates and
//! private keys, and why one is refused.
//!
//! A file holding a secret (tokens, a private key) is refused when users
//! other than its owner's group may read or write it, or its group may
//! write it, as ssh refuses a private key "too open": the API's tokens
//! open the whole state to whoever reads them. Modes 0600, 0400 and 0640
//! pass.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use crate::limits::MAX_API_SECRET_FILE_BYTES;

/// Why the API's credentials could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{} holds a secret but its mode is {mode:04o}: other users may read or change it; \
         run `chmod 600 {}`",
        path.display(), path.display()
    )]
    TooOpen { path: PathBuf, mode: u32 },
    #[error("{} is larger than {limit_bytes} bytes", path.display())]
    TooLarge { path: PathBuf, limit_bytes: u64 },
    #[error("{}, line {line}: {reason}", path.display())]
    TokenLine {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("{} holds no token (lines `ROLE TOKEN`, ROLE one of read, write, admin)", path.display())]
    NoTokens { path: PathBuf },
    #[error("{}: {reason}", path.display())]
    Pem { path: PathBuf, reason: String },
    #[error("the TLS certificate and key do not go together: {0}")]
    Tls(String),
}

/// The bytes of a file that holds a secret, after checking that only its
/// owner (and its group, reading) may use it.
pub fn read_private(path: &Path) -> Result<Vec<u8>, CredentialError> {
    let metadata = std::fs::metadata(path).map_err(|source| CredentialError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = metadata.permissions().mode() & 0o7777;
        if mode & 0o027 != 0 {
            return Err(CredentialError::TooOpen {
                path: path.to_path_buf(),
                mode,
            });
        }
    }
    #[cfg(not(unix))]
    let _ = metadata;
    read_bounded(path)
}

/// The bytes of a file, refusing one larger than
/// [`MAX_API_SECRET_FILE_BYTES`] (a certificate chain is public).
pub fn read_bounded(path: &Path) -> Result<Vec<u8>, CredentialError> {
    let read_error = |source| CredentialError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_error)?;
    let mut bytes = Vec::new();
    file.take(MAX_API_SECRET_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() as u64 > MAX_API_SECRET_FILE_BYTES {
        return Err(CredentialError::TooLarge {
            path: path.to_path_buf(),
            limit_bytes: MAX_API_SECRET_FILE_BYTES,
        });
    }
    Ok(bytes)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn a_secret_others_can_read_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("tokens");
        std::fs::write(&path, "admin 0123456789abcdef0123\n").expect("write");
        for (mode, ok) in [
            (0o600, true),
            (0o400, true),
            (0o640, true),
            (0o644, false),
            (0o660, false),
            (0o604, false),
        ] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
            let result = read_private(&path);
            assert_eq!(result.is_ok(), ok, "mode {mode:o}: {result:?}");
            if let Err(error) = result {
                assert!(error.to_string().contains("chmod 600"), "{error}");
            }
        }
    }
}
