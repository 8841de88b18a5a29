//! One call's view of the store: the committed state plus its own writes.

use crate::limits::{MAX_STORE_KEY_BYTES, MAX_STORE_VALUE_BYTES, MAX_STORE_WRITE_SET_BYTES};
use crate::wasm::kv::StoreSizeExt as _;
use std::ops::Bound;
use std::sync::Arc;

use super::{CommittedState, Pairs, StagedWrite, StoreIoError, StoreSize, WriteSet};

/// What a call may do with the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// `apply` and `migrate`: read and write.
    ReadWrite,
    /// `query`: writes are refused.
    ReadOnly,
}

/// Why a write was refused; the guest sees it as a `store-error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    KeyTooLarge(u32),
    ValueTooLarge(u32),
    WriteSetTooLarge,
    ReadOnly,
}

/// One call's transaction. Reads see the committed state plus this call's
/// writes; the writes are handed out by [`Transaction::into_writes`] only
/// when the call succeeded.
#[derive(Debug)]
pub struct Transaction {
    base: Arc<dyn CommittedState>,
    access: Access,
    writes: WriteSet,
    /// Bytes of keys and values written so far (every `set` counts, even
    /// of the same key), checked against [`MAX_STORE_WRITE_SET_BYTES`].
    written_bytes: u64,
    /// The committed size, read on first use.
    base_size: Option<StoreSize>,
    /// The first local I/O error: the call is then aborted, and the node
    /// stops applying rather than record a result other replicas would not.
    io_error: Option<StoreIoError>,
}

/// `writes` without the keys whose value did not change (nothing to commit).
pub fn only_changes(mut writes: WriteSet) -> WriteSet {
    writes.retain(|_, write| write.old != write.new);
    writes
}

impl Transaction {
    pub fn new(base: Arc<dyn CommittedState>, access: Access) -> Self {
        Transaction {
            base,
            access,
            writes: WriteSet::new(),
            written_bytes: 0,
            base_size: None,
            io_error: None,
        }
    }

    /// The writes to commit (keys whose value did not change left out).
    pub fn into_writes(self) -> WriteSet {
        only_changes(self.into_all_writes())
    }

    /// Every write made, also those that set a key to the value it had
    /// (a watcher is told of those too: they are writes, like etcd's).
    pub fn into_all_writes(self) -> WriteSet {
        self.writes
    }

    /// The I/O error that aborted the call, if any.
    pub fn io_error(&self) -> Option<&StoreIoError> {
        self.io_error.as_ref()
    }

    /// Remember `error` (the first one wins) and pass it on.
    pub fn fail(&mut self, error: StoreIoError) -> StoreIoError {
        self.io_error.get_or_insert(error).clone()
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreIoError> {
        match self.writes.get(key) {
            Some(write) => Ok(write.new.clone()),
            None => self.base.get(key),
        }
    }

    pub fn set(&mut self, key: &[u8], value: Vec<u8>) -> Result<Result<(), Refusal>, StoreIoError> {
        let value_len = u32::try_from(value.len()).unwrap_or(u32::MAX);
        let refused = self.refuse_write(key).or_else(|| {
            (value_len > MAX_STORE_VALUE_BYTES).then_some(Refusal::ValueTooLarge(value_len))
        });
        if let Some(refusal) = refused.or_else(|| self.count_written(key.len() + value.len())) {
            return Ok(Err(refusal));
        }
        self.stage(key, Some(value))?;
        Ok(Ok(()))
    }

    /// Delete `key`; whether it was present.
    pub fn delete(&mut self, key: &[u8]) -> Result<Result<bool, Refusal>, StoreIoError> {
        if let Some(refusal) = self
            .refuse_write(key)
            .or_else(|| self.count_written(key.len()))
        {
            return Ok(Err(refusal));
        }
        Ok(Ok(self.stage(key, None)?.is_some()))
    }

    /// Why a write of `key` is refused, if it is.
    fn refuse_write(&self, key: &[u8]) -> Option<Refusal> {
        let key_len = u32::try_from(key.len()).unwrap_or(u32::MAX);
        if self.access == Access::ReadOnly {
            Some(Refusal::ReadOnly)
        } else if key_len > MAX_STORE_KEY_BYTES {
            Some(Refusal::KeyTooLarge(key_len))
        } else {
            None
        }
    }

    /// Count `bytes` against the write-set limit; the refusal if over.
    fn count_written(&mut self, bytes: usize) -> Option<Refusal> {
        let total = self.written_bytes.saturating_add(bytes as u64);
        if total > MAX_STORE_WRITE_SET_BYTES {
            return Some(Refusal::WriteSetTooLarge);
        }
        self.written_bytes = total;
        None
    }

    /// Record the new value of `key`; returns the value it replaces.
    fn stage(&mut self, key: &[u8], new: Option<Vec<u8>>) -> Result<Option<Vec<u8>>, StoreIoError> {
        if let Some(write) = self.writes.get_mut(key) {
            return Ok(std::mem::replace(&mut write.new, new));
        }
        let old = self.base.get(key)?;
        self.writes.insert(
            key.to_vec(),
            StagedWrite {
                old: old.clone(),
                new,
            },
        );
        Ok(old)
    }

    /// The whole store's size, this call's writes included.
    pub fn size(&mut self) -> Result<StoreSize, StoreIoError> {
        let base = match self.base_size {
            Some(size) => size,
            None => {
                let size = self.base.size()?;
                self.base_size = Some(size);
                size
            }
        };
        Ok(self
            .writes
            .iter()
            .fold(base, |size, (key, write)| size.after(key, write)))
    }

    /// Pairs with `start <= key < end`, ascending, merged with this call's
    /// writes, until `keep` says stop (it sees each pair before it is
    /// taken; returning false ends the scan without it).
    pub fn scan(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        keep: impl FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<Pairs, StoreIoError> {
        let upper = match end {
            Some(end) => Bound::Excluded(end.to_vec()),
            None => Bound::Unbounded,
        };
        if end.is_some_and(|end| end <= start) {
            return Ok(Vec::new());
        }
        let staged = self
            .writes
            .range::<Vec<u8>, _>((Bound::Included(start.to_vec()), upper));
        merge_scan(self.base.scan(start, end), staged, keep)
    }
}

/// Merge committed pairs with staged writes (both ascending): a staged
/// write wins over the committed value of its key, a staged delete hides
/// it. Stops when `keep` refuses a pair.
pub(super) fn merge_scan<'a>(
    committed: super::PairIter<'_>,
    staged: impl Iterator<Item = (&'a Vec<u8>, &'a StagedWrite)>,
    mut keep: impl FnMut(&[u8], &[u8]) -> bool,
) -> Result<Pairs, StoreIoError> {
    let mut staged = staged.peekable();
    let mut committed = committed.peekable();
    let mut out = Vec::new();
    loop {
        let take_staged = match (committed.peek(), staged.peek()) {
            (None, None) => break,
            (Some(Err(_)), _) => {
                return Err(match committed.next() {
                    Some(Err(error)) => error,
                    _ => StoreIoError("scan: an error vanished".into()),
                });
            }
            (None, Some(_)) => true,
            (Some(_), None) => false,
            (Some(Ok((key, _))), Some((staged_key, _))) => {
                if key.as_slice() == staged_key.as_slice() {
                    committed.next();
                    true
                } else {
                    staged_key.as_slice() < key.as_slice()
                }
            }
        };
        let pair = if take_staged {
            let Some((key, write)) = staged.next() else {
                break;
            };
            match &write.new {
                Some(value) => (key.clone(), value.clone()),
                None => continue,
            }
        } else {
            match committed.next() {
                Some(Ok(pair)) => pair,
                _ => break,
            }
        };
        if !keep(&pair.0, &pair.1) {
            break;
        }
        out.push(pair);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::{CommitMark, PairIter};
    use super::*;
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    /// A committed state in memory (the real one is sled, in `storage`).
    #[derive(Debug, Default)]
    struct Memory(Mutex<BTreeMap<Vec<u8>, Vec<u8>>>);

    impl CommittedState for Memory {
        fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreIoError> {
            Ok(self.0.lock().expect("lock").get(key).cloned())
        }
        fn scan<'a>(&'a self, start: &[u8], end: Option<&[u8]>) -> PairIter<'a> {
            let map = self.0.lock().expect("lock");
            let pairs: Vec<_> = map
                .iter()
                .filter(|(k, _)| k.as_slice() >= start && end.is_none_or(|e| k.as_slice() < e))
                .map(|(k, v)| Ok((k.clone(), v.clone())))
                .collect();
            Box::new(pairs.into_iter())
        }
        fn size(&self) -> Result<StoreSize, StoreIoError> {
            let map = self.0.lock().expect("lock");
            Ok(StoreSize {
                keys: map.len() as u64,
                bytes: map.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum(),
            })
        }
        fn commit(&self, writes: &WriteSet, _: CommitMark<'_>) -> Result<(), StoreIoError> {
            let mut map = self.0.lock().expect("lock");
            for (key, write) in writes {
                match &write.new {
                    Some(value) => map.insert(key.clone(), value.clone()),
                    None => map.remove(key),
                };
            }
            Ok(())
        }
        fn digest(&self) -> Result<[u8; 32], StoreIoError> {
            Ok([0; 32])
        }
    }

    fn store_with(pairs: &[(&str, &str)]) -> Arc<Memory> {
        let memory = Memory::default();
        for (k, v) in pairs {
            memory
                .0
                .lock()
                .expect("lock")
                .insert(k.as_bytes().to_vec(), v.as_bytes().to_vec());
        }
        Arc::new(memory)
    }

    fn keys(pairs: &[(Vec<u8>, Vec<u8>)]) -> Vec<String> {
        pairs
            .iter()
            .map(|(k, v)| {
                format!(
                    "{}={}",
                    String::from_utf8_lossy(k),
                    String::from_utf8_lossy(v)
                )
            })
            .collect()
    }

    #[test]
    fn reads_see_own_writes_and_scans_merge_in_order() {
        let base = store_with(&[("a", "1"), ("c", "3"), ("e", "5")]);
        let mut tx = Transaction::new(base, Access::ReadWrite);
        tx.set(b"b", b"2".to_vec()).expect("io").expect("set");
        tx.set(b"c", b"33".to_vec()).expect("io").expect("set");
        assert_eq!(tx.delete(b"e").expect("io"), Ok(true));
        assert_eq!(tx.delete(b"zz").expect("io"), Ok(false));
        assert_eq!(tx.get(b"c").expect("io"), Some(b"33".to_vec()));
        assert_eq!(tx.get(b"e").expect("io"), None);
        let all = tx.scan(b"", None, |_, _| true).expect("io");
        assert_eq!(keys(&all), ["a=1", "b=2", "c=33"]);
        let mut budget = 2;
        let two = tx
            .scan(b"b", None, |_, _| {
                budget -= 1;
                budget >= 0
            })
            .expect("io");
        assert_eq!(keys(&two), ["b=2", "c=33"]);
        assert_eq!(tx.scan(b"c", Some(b"c"), |_, _| true).expect("io"), []);
        assert_eq!(tx.size().expect("io"), StoreSize { keys: 3, bytes: 7 });
        let writes = tx.into_writes();
        assert_eq!(
            writes.keys().cloned().collect::<Vec<_>>(),
            [b"b".to_vec(), b"c".to_vec(), b"e".to_vec()],
            "a delete of an absent key is not a write"
        );
        assert_eq!(writes[&b"c".to_vec()].old, Some(b"3".to_vec()));
    }

    #[test]
    fn refusals_change_nothing() {
        let mut tx = Transaction::new(store_with(&[]), Access::ReadOnly);
        assert_eq!(tx.set(b"k", vec![1]).expect("io"), Err(Refusal::ReadOnly));
        assert_eq!(tx.delete(b"k").expect("io"), Err(Refusal::ReadOnly));
        let mut tx = Transaction::new(store_with(&[]), Access::ReadWrite);
        let long_key = vec![0u8; MAX_STORE_KEY_BYTES as usize + 1];
        assert_eq!(
            tx.set(&long_key, vec![]).expect("io"),
            Err(Refusal::KeyTooLarge(MAX_STORE_KEY_BYTES + 1))
        );
        let big = vec![0u8; MAX_STORE_VALUE_BYTES as usize + 1];
        assert_eq!(
            tx.set(b"k", big).expect("io"),
            Err(Refusal::ValueTooLarge(MAX_STORE_VALUE_BYTES + 1))
        );
        assert!(tx.into_writes().is_empty());
    }

    #[test]
    fn the_write_set_is_bounded() {
        let mut tx = Transaction::new(store_with(&[]), Access::ReadWrite);
        let value = vec![0u8; MAX_STORE_VALUE_BYTES as usize];
        let mut refused = None;
        for i in 0..200u32 {
            if let Err(refusal) = tx.set(&i.to_be_bytes(), value.clone()).expect("io") {
                refused = Some((i, refusal));
                break;
            }
        }
        let (at, refusal) = refused.expect("refused at some point");
        assert_eq!(refusal, Refusal::WriteSetTooLarge);
        assert_eq!(
            u64::from(at),
            MAX_STORE_WRITE_SET_BYTES / (u64::from(MAX_STORE_VALUE_BYTES) + 4)
        );
    }
}
