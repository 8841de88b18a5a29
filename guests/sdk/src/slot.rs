//! The one place a component instance keeps its state.

use std::cell::RefCell;
use std::fmt;

use crate::{EntryMeta, StateMachine};

/// Holds the state of one guest instance and routes the exports to it.
///
/// Starts empty; the first call fills it with `T::default()`. The
/// [`export_state_machine!`](crate::export_state_machine) macro keeps one
/// `Slot` in a thread-local (a component instance is single-threaded) and
/// forwards every export here. It is public so that the SDK glue can be tested
/// natively, exactly as the component uses it.
pub struct Slot<T> {
    state: RefCell<Option<T>>,
}

impl<T: StateMachine> Slot<T> {
    /// An empty slot; the state is created on first use.
    pub const fn new() -> Self {
        Self {
            state: RefCell::new(None),
        }
    }

    /// The `apply` export.
    pub fn apply(&self, meta: EntryMeta, command: &[u8]) -> Result<Vec<u8>, String> {
        let mut state = self.state.borrow_mut();
        state.get_or_insert_with(T::default).apply(meta, command)
    }

    /// The `query` export.
    pub fn query(&self, request: &[u8]) -> Result<Vec<u8>, String> {
        self.with_state(|state| state.query(request))
    }

    /// The `snapshot` export.
    pub fn snapshot(&self) -> Result<Vec<u8>, String> {
        self.with_state(T::snapshot)
    }

    /// The `restore` export: all or nothing.
    ///
    /// The new state is built completely before it replaces the old one, so a
    /// rejected snapshot leaves the current state in place.
    pub fn restore(&self, snapshot: &[u8]) -> Result<(), String> {
        let restored = T::restore(snapshot)?;
        *self.state.borrow_mut() = Some(restored);
        Ok(())
    }

    fn with_state<R>(&self, read: impl FnOnce(&T) -> R) -> R {
        let mut state = self.state.borrow_mut();
        read(state.get_or_insert_with(T::default))
    }
}

impl<T: StateMachine> Default for Slot<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> fmt::Debug for Slot<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let initialized = self.state.try_borrow().map(|state| state.is_some());
        f.debug_struct("Slot")
            .field("initialized", &initialized.ok())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A state machine that records applied commands and fails on `"fail"`.
    #[derive(Default, Debug, PartialEq)]
    struct Log {
        entries: Vec<Vec<u8>>,
    }

    impl StateMachine for Log {
        const NAME: &'static str = "log";
        const VERSION: &'static str = "0.0.1";

        fn apply(&mut self, _meta: EntryMeta, command: &[u8]) -> Result<Vec<u8>, String> {
            if command == b"fail" {
                return Err("refused".to_owned());
            }
            self.entries.push(command.to_vec());
            Ok(self.entries.len().to_string().into_bytes())
        }

        fn query(&self, _request: &[u8]) -> Result<Vec<u8>, String> {
            Ok(self.entries.join(&b','))
        }

        fn snapshot(&self) -> Result<Vec<u8>, String> {
            Ok(self.entries.join(&b','))
        }

        fn restore(snapshot: &[u8]) -> Result<Self, String> {
            if snapshot.starts_with(b"bad") {
                return Err("bad snapshot".to_owned());
            }
            let entries = snapshot
                .split(|&byte| byte == b',')
                .filter(|entry| !entry.is_empty())
                .map(<[u8]>::to_vec)
                .collect();
            Ok(Self { entries })
        }
    }

    fn meta(index: u64) -> EntryMeta {
        EntryMeta {
            index,
            term: 1,
            timestamp_ms: 0,
        }
    }

    #[test]
    fn t10_first_call_starts_from_default() {
        let slot = Slot::<Log>::new();
        assert_eq!(slot.query(b""), Ok(Vec::new()));
        assert_eq!(slot.snapshot(), Ok(Vec::new()));
    }

    #[test]
    fn t10_apply_mutates_and_query_reads() {
        let slot = Slot::<Log>::new();
        assert_eq!(slot.apply(meta(1), b"a"), Ok(b"1".to_vec()));
        assert_eq!(slot.apply(meta(2), b"b"), Ok(b"2".to_vec()));
        assert_eq!(slot.apply(meta(3), b"fail"), Err("refused".to_owned()));
        assert_eq!(slot.query(b""), Ok(b"a,b".to_vec()));
    }

    #[test]
    fn t20_restore_replaces_state() {
        let slot = Slot::<Log>::new();
        slot.apply(meta(1), b"old").expect("apply succeeds");
        slot.restore(b"x,y").expect("valid snapshot");
        assert_eq!(slot.snapshot(), Ok(b"x,y".to_vec()));
    }

    #[test]
    fn t20_failed_restore_keeps_old_state() {
        let slot = Slot::<Log>::new();
        slot.apply(meta(1), b"keep").expect("apply succeeds");
        assert_eq!(slot.restore(b"bad,data"), Err("bad snapshot".to_owned()));
        assert_eq!(slot.snapshot(), Ok(b"keep".to_vec()));
    }

    #[test]
    fn t20_info_reports_name_and_version() {
        let info = crate::__private::info::<Log>();
        assert_eq!(info.name, "log");
        assert_eq!(info.version, "0.0.1");
    }
}
