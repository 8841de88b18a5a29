//! Snapshot files: the guest's state at one log index, with everything a
//! node needs to continue from there.
//!
//! A snapshot is a plain, self-contained file, so the same file is what the
//! leader streams to a lagging follower, what a restarted node recovers
//! from, and what an operator backs up:
//!
//! ```text
//! "IRSNAP01"                     magic + format version
//! u32 big-endian                 header length
//! header (JSON)                  index, term, conf state, members, component hash and sizes
//! component bytes                the active component (.wasm)
//! state bytes                    see [`StateFormat`]
//! 32 bytes                       BLAKE3 of everything above
//! ```
//!
//! The state of a 0.1.0 guest is what its `snapshot()` returned; that of a
//! store-backed guest is every pair of the host's store, in key order
//! (`u32 BE key length, key, u32 BE value length, value`), streamed from
//! the store when written and into it when installed.
//!
//! Raft itself only sees a small [`SnapshotDescriptor`] (file length and
//! checksum) as the snapshot's `data`; the bytes travel beside Raft, in
//! chunks (see `transport::snapshot`).

use crate::limits::{
    DEFAULT_COMPACTION_KEEP_ENTRIES, DEFAULT_SNAPSHOT_EVERY_ENTRIES,
    DEFAULT_SNAPSHOT_EVERY_LOG_BYTES, MAX_SNAPSHOT_FILE_BYTES, MAX_SNAPSHOT_HEADER_BYTES,
    SNAPSHOT_SYNC_EVERY_BYTES,
};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use raft::prelude::ConfState;
use serde::{Deserialize, Serialize};

use super::upgrade::{
    ActivationKind, ActivationOutcome, ComponentHistory, ComponentRecord, LimitOverrides,
};
use crate::membership::PeerAddr;
use crate::wasm::GuestInfo;

/// First bytes of every snapshot file (the last two digits are the format).
pub const SNAPSHOT_MAGIC: &[u8; 8] = b"IRSNAP01";

const CHECKSUM_BYTES: usize = 32;

/// When to take snapshots and how much log to keep behind them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotPolicy {
    /// Snapshot after this many entries since the last snapshot (0 = never
    /// by count).
    pub every_entries: u64,
    /// Snapshot after this many bytes of entry payload since the last one
    /// (0 = never by size).
    pub every_log_bytes: u64,
    /// Entries kept in the log behind the snapshot.
    pub keep_entries: u64,
}

impl Default for SnapshotPolicy {
    fn default() -> Self {
        SnapshotPolicy {
            every_entries: DEFAULT_SNAPSHOT_EVERY_ENTRIES,
            every_log_bytes: DEFAULT_SNAPSHOT_EVERY_LOG_BYTES,
            keep_entries: DEFAULT_COMPACTION_KEEP_ENTRIES,
        }
    }
}

impl SnapshotPolicy {
    /// Is a snapshot due after `entries` entries and `bytes` bytes?
    pub fn due(&self, entries: u64, bytes: u64) -> bool {
        (self.every_entries > 0 && entries >= self.every_entries)
            || (self.every_log_bytes > 0 && bytes >= self.every_log_bytes)
    }
}

/// Everything about a snapshot except the bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotHeader {
    /// Last log index the state includes.
    pub index: u64,
    pub term: u64,
    pub conf: ConfStateRecord,
    /// Address of every member at `index`.
    pub members: BTreeMap<u64, PeerAddr>,
    /// BLAKE3 (hex) of the component that produced the state.
    pub component_hash: String,
    pub component_len: u64,
    pub state_len: u64,
    /// Leader timestamp of the last entry the state includes (the clock the
    /// guest sees while restoring).
    pub last_entry_timestamp_ms: u64,
    /// Raft id of the node that took it, and when (informational).
    pub taken_by: u64,
    pub taken_at_ms: u64,
    /// The component history at `index` (the active component's limits
    /// included). Absent in files written before upgrades existed.
    #[serde(default)]
    pub history: Option<ComponentHistory>,
    /// What the state section holds. Absent in files written before
    /// store-backed guests existed (they hold guest bytes).
    #[serde(default)]
    pub state_format: StateFormat,
}

/// What a snapshot's state section holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StateFormat {
    /// The bytes a 0.1.0 guest's `snapshot()` returned.
    #[default]
    GuestBytes,
    /// The pairs of a store-backed guest's store, in key order.
    StorePairs,
}

impl SnapshotHeader {
    /// The history this snapshot carries, or, for an older file, one that
    /// starts with its component.
    pub fn component_history(&self, info: &GuestInfo) -> ComponentHistory {
        self.history.clone().unwrap_or_else(|| {
            ComponentHistory::new(ComponentRecord {
                index: self.index,
                kind: ActivationKind::Genesis,
                hash: self.component_hash.clone(),
                size_bytes: self.component_len,
                name: info.name.clone(),
                version: info.version.clone(),
                timestamp_ms: 0,
                limits: LimitOverrides::default(),
                outcome: ActivationOutcome::Activated,
            })
        })
    }

    /// The limits the snapshot's component runs with.
    pub fn limit_overrides(&self) -> LimitOverrides {
        self.history
            .as_ref()
            .map(|h| h.active.limits)
            .unwrap_or_default()
    }
}

/// raft-rs's `ConfState`, in a form serde can write.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfStateRecord {
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
    pub voters_outgoing: Vec<u64>,
    pub learners_next: Vec<u64>,
    pub auto_leave: bool,
}

impl From<&ConfState> for ConfStateRecord {
    fn from(conf: &ConfState) -> Self {
        ConfStateRecord {
            voters: conf.voters.clone(),
            learners: conf.learners.clone(),
            voters_outgoing: conf.voters_outgoing.clone(),
            learners_next: conf.learners_next.clone(),
            auto_leave: conf.auto_leave,
        }
    }
}

impl From<&ConfStateRecord> for ConfState {
    fn from(record: &ConfStateRecord) -> Self {
        ConfState {
            voters: record.voters.clone(),
            learners: record.learners.clone(),
            voters_outgoing: record.voters_outgoing.clone(),
            learners_next: record.learners_next.clone(),
            auto_leave: record.auto_leave,
            ..Default::default()
        }
    }
}

/// What Raft carries as the snapshot's `data`: enough to find and verify
/// the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotDescriptor {
    pub file_len: u64,
    /// BLAKE3 (hex) of the whole file.
    pub file_hash: String,
}

impl SnapshotDescriptor {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, SnapshotError> {
        serde_json::from_slice(bytes)
            .map_err(|e| SnapshotError::Invalid(format!("descriptor: {e}")))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("not a valid snapshot: {0}")]
    Invalid(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SnapshotError + '_ {
    move |source| SnapshotError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Where the snapshot at (`index`, `term`) lives.
pub fn path_for(dir: &Path, index: u64, term: u64) -> PathBuf {
    dir.join(format!("snap-{index:020}-{term:020}.snap"))
}

/// Where a partly received snapshot is kept until it is complete.
pub fn partial_path_for(dir: &Path, index: u64, term: u64, file_hash: &str) -> PathBuf {
    let short = file_hash.get(..16).unwrap_or(file_hash);
    dir.join(format!("incoming-{index:020}-{term:020}-{short}.part"))
}

/// Write a snapshot file durably (temp file, fsync, rename, fsync the
/// directory); returns its descriptor.
pub fn write(
    dir: &Path,
    header: &SnapshotHeader,
    component: &[u8],
    state: &[u8],
) -> Result<SnapshotDescriptor, SnapshotError> {
    write_streamed(dir, header, component, &mut |out| {
        out.write_all(state)?;
        Ok(state.len() as u64)
    })
}

/// [`write()`] with the state section produced by `state`, which writes
/// exactly `header.state_len` bytes into the file as it goes (a store
/// streams its pairs this way, in constant memory) and returns how many it
/// wrote.
pub fn write_streamed(
    dir: &Path,
    header: &SnapshotHeader,
    component: &[u8],
    state: &mut dyn FnMut(&mut dyn Write) -> std::io::Result<u64>,
) -> Result<SnapshotDescriptor, SnapshotError> {
    crate::storage::create_dir_durably(dir).map_err(io_err(dir))?;
    let path = path_for(dir, header.index, header.term);
    let tmp = path.with_extension("snap.tmp");
    let header_bytes = serde_json::to_vec(header)
        .map_err(|e| SnapshotError::Invalid(format!("encoding the header: {e}")))?;
    let header_len = u32::try_from(header_bytes.len())
        .ok()
        .filter(|len| *len <= MAX_SNAPSHOT_HEADER_BYTES)
        .ok_or_else(|| SnapshotError::Invalid("the header is too large".into()))?;
    let mut out = HashingWriter {
        file: std::io::BufWriter::new(
            crate::storage::create_private_file(&tmp).map_err(io_err(&tmp))?,
        ),
        body: blake3::Hasher::new(),
        whole: blake3::Hasher::new(),
        len: 0,
        unsynced: 0,
    };
    for part in [
        &SNAPSHOT_MAGIC[..],
        &header_len.to_be_bytes()[..],
        &header_bytes,
        component,
    ] {
        out.write_all(part).map_err(io_err(&tmp))?;
    }
    let before_state = out.len;
    let state_len = state(&mut out).map_err(io_err(&tmp))?;
    if state_len != header.state_len || out.len - before_state != state_len {
        return Err(SnapshotError::Invalid(format!(
            "the state section is {} bytes, its header says {}",
            out.len - before_state,
            header.state_len
        )));
    }
    // `body` covers the body (the trailer checks it); `whole` the whole
    // file (the descriptor names it), so the file is never re-read.
    let checksum = out.body.finalize();
    out.file
        .write_all(checksum.as_bytes())
        .map_err(io_err(&tmp))?;
    out.whole.update(checksum.as_bytes());
    let file_len = out.len + CHECKSUM_BYTES as u64;
    let file = out.file.into_inner().map_err(|e| SnapshotError::Io {
        path: tmp.clone(),
        source: e.into_error(),
    })?;
    file.sync_all().map_err(io_err(&tmp))?;
    drop(file);
    std::fs::rename(&tmp, &path).map_err(io_err(&path))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))?;
    Ok(SnapshotDescriptor {
        file_len,
        file_hash: out.whole.finalize().to_hex().to_string(),
    })
}

/// Writes through to the file while hashing the body and the whole file,
/// syncing every [`SNAPSHOT_SYNC_EVERY_BYTES`].
struct HashingWriter {
    file: std::io::BufWriter<File>,
    body: blake3::Hasher,
    whole: blake3::Hasher,
    len: u64,
    unsynced: u64,
}

impl Write for HashingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let written = self.file.write(buf)?;
        self.body.update(&buf[..written]);
        self.whole.update(&buf[..written]);
        self.len += written as u64;
        self.unsynced += written as u64;
        if self.unsynced >= SNAPSHOT_SYNC_EVERY_BYTES {
            self.file.flush()?;
            self.file.get_ref().sync_data()?;
            self.unsynced = 0;
        }
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// Read only the header of a snapshot file (no checksum check: for a node
/// that needs the metadata, not the state).
pub fn read_header(path: &Path) -> Result<SnapshotHeader, SnapshotError> {
    let mut file = File::open(path).map_err(io_err(path))?;
    let mut fixed = [0u8; 12];
    file.read_exact(&mut fixed).map_err(io_err(path))?;
    if &fixed[..SNAPSHOT_MAGIC.len()] != SNAPSHOT_MAGIC {
        return Err(SnapshotError::Invalid(
            "wrong magic bytes (not a snapshot, or an unknown format)".into(),
        ));
    }
    let mut len_bytes = [0u8; 4];
    len_bytes.copy_from_slice(&fixed[SNAPSHOT_MAGIC.len()..]);
    let header_len = u32::from_be_bytes(len_bytes);
    if header_len > MAX_SNAPSHOT_HEADER_BYTES {
        return Err(SnapshotError::Invalid("header too large".into()));
    }
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header).map_err(io_err(path))?;
    serde_json::from_slice(&header).map_err(|e| SnapshotError::Invalid(format!("header: {e}")))
}

/// BLAKE3 (hex) of a whole file, read in pieces.
pub fn hash_file(path: &Path) -> Result<String, SnapshotError> {
    let mut file = File::open(path).map_err(io_err(path))?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1024 * 1024];
    loop {
        let read = file.read(&mut buf).map_err(io_err(path))?;
        if read == 0 {
            break;
        }
        hasher.update(&buf[..read]);
    }
    Ok(hasher.finalize().to_hex().to_string())
}

/// A verified snapshot file. A 0.1.0 guest's is read into memory once
/// (the parts are views into it); a store's state section stays in the
/// file and is streamed from an open handle (so it survives the file being
/// pruned meanwhile), keeping memory constant however large the state.
#[derive(Clone)]
pub struct LoadedSnapshot {
    pub header: SnapshotHeader,
    bytes: Vec<u8>,
    component_start: usize,
    state_start: usize,
    state_end: usize,
    /// The open file the state section is streamed from, and where the
    /// section starts in it; `None` when it is in `bytes`.
    file: Option<(Arc<File>, u64)>,
}

impl std::fmt::Debug for LoadedSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedSnapshot")
            .field("header", &self.header)
            .field("bytes", &self.bytes.len())
            .field("streamed", &self.file.is_some())
            .finish()
    }
}

impl LoadedSnapshot {
    pub fn component(&self) -> &[u8] {
        &self.bytes[self.component_start..self.state_start]
    }

    /// The state section in memory (read from the file now if it is
    /// streamed; prefer [`Self::state_reader`] for a store's pairs).
    pub fn state(&self) -> Result<std::borrow::Cow<'_, [u8]>, SnapshotError> {
        match &self.file {
            None => Ok(std::borrow::Cow::Borrowed(
                &self.bytes[self.state_start..self.state_end],
            )),
            Some(_) => {
                let mut state = Vec::new();
                self.state_reader()
                    .read_to_end(&mut state)
                    .map_err(|source| SnapshotError::Io {
                        path: PathBuf::from("(open snapshot file)"),
                        source,
                    })?;
                Ok(std::borrow::Cow::Owned(state))
            }
        }
    }

    /// The state section as a stream of `header.state_len` bytes.
    pub fn state_reader(&self) -> Box<dyn Read + Send + '_> {
        match &self.file {
            None => Box::new(&self.bytes[self.state_start..self.state_end]),
            Some((file, offset)) => Box::new(std::io::BufReader::with_capacity(
                1024 * 1024,
                SectionReader {
                    file: file.clone(),
                    position: *offset,
                    end: offset + self.header.state_len,
                },
            )),
        }
    }
}

/// Reads a section of an open file by position (no shared cursor).
struct SectionReader {
    file: Arc<File>,
    position: u64,
    end: u64,
}

impl Read for SectionReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let left = self.end.saturating_sub(self.position);
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        if want == 0 {
            return Ok(0);
        }
        let read = self.file.read_at(&mut buf[..want], self.position)?;
        if read == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        self.position += read as u64;
        Ok(read)
    }
}

/// Read and fully verify a snapshot file (magic, sizes, checksum). A
/// store's pairs are verified by streaming and left in the file.
pub fn read(path: &Path) -> Result<LoadedSnapshot, SnapshotError> {
    let len = std::fs::metadata(path).map_err(io_err(path))?.len();
    if len > MAX_SNAPSHOT_FILE_BYTES {
        return Err(SnapshotError::Invalid(format!(
            "{len} bytes; the limit is {MAX_SNAPSHOT_FILE_BYTES}"
        )));
    }
    let header = read_header(path)?;
    if header.state_format == StateFormat::GuestBytes {
        let bytes = std::fs::read(path).map_err(io_err(path))?;
        return parse(bytes);
    }
    read_streamed(path, len)
}

/// Verify a file whose state section stays on disk: hash it in pieces,
/// then keep everything before the state in memory.
fn read_streamed(path: &Path, len: u64) -> Result<LoadedSnapshot, SnapshotError> {
    let invalid = |why: &str| SnapshotError::Invalid(why.to_string());
    let mut file = File::open(path).map_err(io_err(path))?;
    if len < (SNAPSHOT_MAGIC.len() + 4 + CHECKSUM_BYTES) as u64 {
        return Err(invalid("too short"));
    }
    let body_len = len - CHECKSUM_BYTES as u64;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1024 * 1024];
    let mut left = body_len;
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        file.read_exact(&mut buf[..want]).map_err(io_err(path))?;
        hasher.update(&buf[..want]);
        left -= want as u64;
    }
    let mut trailer = [0u8; CHECKSUM_BYTES];
    file.read_exact(&mut trailer).map_err(io_err(path))?;
    if hasher.finalize().as_bytes() != &trailer {
        return Err(invalid("checksum mismatch (damaged or truncated)"));
    }
    let header = read_header(path)?;
    // The header's length as written in the file, not as re-encoded.
    let mut fixed = [0u8; 12];
    {
        use std::os::unix::fs::FileExt;
        file.read_exact_at(&mut fixed, 0).map_err(io_err(path))?;
    }
    let mut len_bytes = [0u8; 4];
    len_bytes.copy_from_slice(&fixed[SNAPSHOT_MAGIC.len()..]);
    let component_start = 12 + u32::from_be_bytes(len_bytes) as u64;
    let state_start = component_start
        .checked_add(header.component_len)
        .ok_or_else(|| invalid("component length out of range"))?;
    if state_start.checked_add(header.state_len) != Some(body_len) {
        return Err(invalid("section lengths do not add up to the file size"));
    }
    let mut bytes = vec![0u8; usize::try_from(state_start).map_err(|_| invalid("too large"))?];
    {
        use std::os::unix::fs::FileExt;
        file.read_exact_at(&mut bytes, 0).map_err(io_err(path))?;
    }
    Ok(LoadedSnapshot {
        header,
        bytes,
        component_start: component_start as usize,
        state_start: state_start as usize,
        state_end: state_start as usize,
        file: Some((Arc::new(file), state_start)),
    })
}

/// Verify and split the bytes of a snapshot file.
pub fn parse(bytes: Vec<u8>) -> Result<LoadedSnapshot, SnapshotError> {
    let invalid = |why: &str| SnapshotError::Invalid(why.to_string());
    let fixed = SNAPSHOT_MAGIC.len() + 4;
    if bytes.len() < fixed + CHECKSUM_BYTES {
        return Err(invalid("too short"));
    }
    if &bytes[..SNAPSHOT_MAGIC.len()] != SNAPSHOT_MAGIC {
        return Err(invalid(
            "wrong magic bytes (not a snapshot, or an unknown format)",
        ));
    }
    let body_end = bytes.len() - CHECKSUM_BYTES;
    let expected = blake3::hash(&bytes[..body_end]);
    if expected.as_bytes() != &bytes[body_end..] {
        return Err(invalid("checksum mismatch (damaged or truncated)"));
    }
    let mut len_bytes = [0u8; 4];
    len_bytes.copy_from_slice(&bytes[SNAPSHOT_MAGIC.len()..fixed]);
    let header_len = u32::from_be_bytes(len_bytes);
    if header_len > MAX_SNAPSHOT_HEADER_BYTES {
        return Err(invalid("header too large"));
    }
    let header_end = fixed
        .checked_add(header_len as usize)
        .filter(|end| *end <= body_end)
        .ok_or_else(|| invalid("header runs past the end"))?;
    let header: SnapshotHeader = serde_json::from_slice(&bytes[fixed..header_end])
        .map_err(|e| SnapshotError::Invalid(format!("header: {e}")))?;
    let component_start = header_end;
    let state_start = usize::try_from(header.component_len)
        .ok()
        .and_then(|len| component_start.checked_add(len))
        .ok_or_else(|| invalid("component length out of range"))?;
    let state_end = usize::try_from(header.state_len)
        .ok()
        .and_then(|len| state_start.checked_add(len))
        .filter(|end| *end == body_end)
        .ok_or_else(|| invalid("section lengths do not add up to the file size"))?;
    Ok(LoadedSnapshot {
        header,
        bytes,
        component_start,
        state_start,
        state_end,
        file: None,
    })
}

/// Delete snapshot files older than `keep_index` and abandoned partial
/// transfers of older snapshots. Errors are logged: stale files only cost
/// disk space.
pub fn prune(dir: &Path, keep_index: u64) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let index = name
            .strip_prefix("snap-")
            .or_else(|| name.strip_prefix("incoming-"))
            .and_then(|rest| rest.get(..20))
            .and_then(|digits| digits.parse::<u64>().ok());
        let stale_tmp = name.ends_with(".tmp");
        if (stale_tmp || index.is_some_and(|index| index < keep_index))
            && let Err(error) = std::fs::remove_file(entry.path())
        {
            tracing::warn!(file = name, %error, "cannot delete an old snapshot file");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(index: u64, component: &[u8], state: &[u8]) -> SnapshotHeader {
        SnapshotHeader {
            index,
            term: 2,
            conf: ConfStateRecord {
                voters: vec![1, 2, 3],
                ..Default::default()
            },
            members: BTreeMap::new(),
            component_hash: "00".into(),
            component_len: component.len() as u64,
            state_len: state.len() as u64,
            last_entry_timestamp_ms: 0,
            taken_by: 1,
            history: None,
            taken_at_ms: 0,
            state_format: StateFormat::GuestBytes,
        }
    }

    #[test]
    fn round_trip_and_descriptor() {
        let dir = tempfile::tempdir().expect("tempdir");
        let head = header(7, b"wasm", b"state");
        let descriptor = write(dir.path(), &head, b"wasm", b"state").expect("write");
        let path = path_for(dir.path(), 7, 2);
        assert_eq!(
            descriptor.file_len,
            std::fs::metadata(&path).expect("stat").len()
        );
        assert_eq!(descriptor.file_hash, hash_file(&path).expect("hash"));
        let loaded = read(&path).expect("read");
        assert_eq!(loaded.header, head);
        assert_eq!(loaded.component(), b"wasm");
        assert_eq!(&*loaded.state().expect("state"), b"state");
        let decoded = SnapshotDescriptor::decode(&descriptor.encode()).expect("decode");
        assert_eq!(decoded, descriptor);
    }

    #[test]
    fn a_stores_pairs_stream_in_and_out_and_survive_pruning() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pairs: Vec<u8> = (0..50_000u32).flat_map(|i| i.to_be_bytes()).collect();
        let mut head = header(7, b"wasm", &pairs);
        head.state_format = StateFormat::StorePairs;
        let descriptor = write_streamed(dir.path(), &head, b"wasm", &mut |out| {
            for chunk in pairs.chunks(1000) {
                out.write_all(chunk)?;
            }
            Ok(pairs.len() as u64)
        })
        .expect("write");
        let path = path_for(dir.path(), 7, 2);
        assert_eq!(descriptor.file_hash, hash_file(&path).expect("hash"));
        let loaded = read(&path).expect("read");
        assert!(loaded.file.is_some(), "the pairs stay in the file");
        assert_eq!(loaded.component(), b"wasm");
        std::fs::remove_file(&path).expect("prune it");
        let mut streamed = Vec::new();
        loaded
            .state_reader()
            .read_to_end(&mut streamed)
            .expect("stream");
        assert_eq!(streamed, pairs, "read from the open handle");

        // A wrong length or a damaged byte is refused.
        let short = write_streamed(dir.path(), &head, b"wasm", &mut |out| {
            out.write_all(b"abc")?;
            Ok(3)
        });
        assert!(short.is_err());
        write_streamed(dir.path(), &head, b"wasm", &mut |out| {
            out.write_all(&pairs)?;
            Ok(pairs.len() as u64)
        })
        .expect("write");
        let mut bytes = std::fs::read(&path).expect("read");
        let middle = bytes.len() / 2;
        bytes[middle] ^= 1;
        std::fs::write(&path, bytes).expect("damage");
        let error = read(&path).expect_err("damaged");
        assert!(error.to_string().contains("checksum"), "{error}");
    }

    #[test]
    fn damage_is_detected() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), &header(3, b"c", b"s"), b"c", b"s").expect("write");
        let path = path_for(dir.path(), 3, 2);
        let mut bytes = std::fs::read(&path).expect("read");
        let middle = bytes.len() / 2;
        bytes[middle] ^= 1;
        assert!(matches!(
            parse(bytes.clone()),
            Err(SnapshotError::Invalid(_))
        ));
        bytes.truncate(10);
        assert!(parse(bytes).is_err());
        assert!(parse(b"IRSNAP99aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".to_vec()).is_err());
    }

    #[test]
    fn lying_lengths_are_refused() {
        // A header whose lengths do not add up, with a valid checksum.
        let mut head = header(3, b"c", b"s");
        head.state_len = 1 << 40;
        let header_bytes = serde_json::to_vec(&head).expect("json");
        let mut bytes = SNAPSHOT_MAGIC.to_vec();
        bytes.extend((header_bytes.len() as u32).to_be_bytes());
        bytes.extend(&header_bytes);
        bytes.extend(b"cs");
        let sum = blake3::hash(&bytes);
        bytes.extend(sum.as_bytes());
        let err = parse(bytes).expect_err("lengths");
        assert!(err.to_string().contains("do not add up"), "{err}");
    }

    #[test]
    fn prune_keeps_the_newest() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), &header(3, b"c", b"s"), b"c", b"s").expect("write");
        write(dir.path(), &header(9, b"c", b"s"), b"c", b"s").expect("write");
        std::fs::write(partial_path_for(dir.path(), 4, 1, "abcdef"), b"x").expect("part");
        prune(dir.path(), 9);
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            vec![
                path_for(dir.path(), 9, 2)
                    .file_name()
                    .expect("name")
                    .to_string_lossy()
                    .into_owned()
            ]
        );
    }

    #[test]
    fn policy() {
        let policy = SnapshotPolicy {
            every_entries: 10,
            every_log_bytes: 100,
            keep_entries: 0,
        };
        assert!(!policy.due(9, 99));
        assert!(policy.due(10, 0));
        assert!(policy.due(0, 100));
        let never = SnapshotPolicy {
            every_entries: 0,
            every_log_bytes: 0,
            keep_entries: 0,
        };
        assert!(!never.due(u64::MAX, u64::MAX));
    }
}
