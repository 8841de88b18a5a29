//! The storage error type.
//!
//! Every variant is fatal for the node: raft-rs documents that after a storage
//! error "the raft instance will become inoperable", and a failed `fsync` leaves
//! the page cache in an unknown state, so retrying could report success for data
//! that never reached the disk. The node stops; an operator restarts it.

use std::io;
use std::path::PathBuf;

/// Errors of the sled-backed Raft log store.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The data directory cannot be created or written.
    #[error("data directory {path} is not writable: {source}")]
    DataDirUnwritable {
        /// The directory (or file inside it) that could not be created or opened.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },

    /// A file system call failed (typically `fsync`).
    #[error("I/O error on {path} while trying to {action}: {source}")]
    Io {
        /// The file or directory the call was made on.
        path: PathBuf,
        /// What we were doing, e.g. "fdatasync the sled data file".
        action: &'static str,
        /// What the operating system said.
        source: io::Error,
    },

    /// sled reported an error (I/O, its own corruption detection, a held lock).
    #[error("sled failed to {action}: {source}")]
    Sled {
        /// What we were doing, e.g. "apply the append batch".
        action: &'static str,
        /// sled's error.
        source: sled::Error,
    },

    /// The store holds data this module did not write or cannot read back.
    #[error("corrupt log store ({what}): {reason}")]
    Corrupt {
        /// The key or structure that is damaged, e.g. "key m/hard_state".
        what: String,
        /// Why it is considered damaged.
        reason: String,
    },

    /// The store came back behind what it had made durable (sled recovered an
    /// older prefix of a damaged file, or the files were replaced): serving it
    /// would lose acknowledged writes, a term or a vote.
    #[error(
        "corrupt data dir: the log store in {path} is behind what it had made durable: {reason}. \
         It was damaged or replaced; this node must not serve it. To recover the member, \
         remove it from the cluster (`raft-host remove-node ID`, or add a fresh node with \
         `add-node TICKET --replaces ID`), then start it with an empty data dir; a single \
         node restores from a backup (`--restore-from FILE`). See the README, \"A damaged log is \
         refused\""
    )]
    DurabilityLost {
        /// The log store's directory.
        path: PathBuf,
        /// What went back, e.g. "its commit index is 75 but it had made commit index 300 durable".
        reason: String,
    },

    /// A protobuf message could not be encoded.
    #[error("failed to encode {what}: {source}")]
    Codec {
        /// Which message, e.g. "hard state".
        what: &'static str,
        /// protobuf's error.
        source: protobuf::ProtobufError,
    },

    /// `bootstrap` was called on a store that already holds Raft state.
    #[error("bootstrap refused: the log store already holds Raft state")]
    AlreadyInitialized,

    /// A snapshot older than what the store already covers.
    #[error(
        "snapshot at index {snapshot_index} is out of date: the store already covers index {covered_index}"
    )]
    SnapshotOutOfDate {
        /// Index of the rejected snapshot.
        snapshot_index: u64,
        /// The store's first index minus one, or its current snapshot's index if higher.
        covered_index: u64,
    },

    /// The caller broke the storage contract (a log gap, overwriting compacted or
    /// snapshotted entries, terms going back, compacting past the snapshot...).
    /// This is a bug in the caller, reported instead of panicking.
    #[error("invalid {operation}: {reason}")]
    InvalidRequest {
        /// The storage call, e.g. "append".
        operation: &'static str,
        /// Which rule was broken, with the offending values.
        reason: String,
    },

    /// An earlier write failed; the on-disk state is unknown, so every further
    /// write is refused until the node is restarted.
    #[error("log store refuses writes after an earlier failure ({cause}); restart the node")]
    Failed {
        /// The message of the first failure.
        cause: String,
    },
}

impl StorageError {
    pub(crate) fn corrupt(what: impl Into<String>, reason: impl Into<String>) -> Self {
        StorageError::Corrupt {
            what: what.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn invalid(operation: &'static str, reason: impl Into<String>) -> Self {
        StorageError::InvalidRequest {
            operation,
            reason: reason.into(),
        }
    }

    pub(crate) fn sled(action: &'static str) -> impl FnOnce(sled::Error) -> Self {
        move |source| StorageError::Sled { action, source }
    }

    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| StorageError::Io {
            path,
            action,
            source,
        }
    }

    /// Wraps this error the way raft-rs expects from a `raft::Storage`.
    pub(crate) fn into_raft(self) -> raft::Error {
        raft::Error::Store(raft::StorageError::Other(Box::new(self)))
    }
}
