//! The key-value state and what each command does to it.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::ops::Bound;

use crate::command::Command;
use crate::key::Key;

/// Sorted string keys to string values. A `BTreeMap` so that `list` and the
/// snapshot see the keys in the same order on every replica (byte order;
/// [`Key`] compares faster than `String` but in the same order).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Store {
    entries: BTreeMap<Key, String>,
}

impl Store {
    /// Wrap entries that already satisfy the key and value limits (the
    /// snapshot decoder checks them).
    pub(crate) fn from_entries(entries: BTreeMap<Key, String>) -> Self {
        Self { entries }
    }

    /// All entries, in key order.
    pub fn entries(&self) -> &BTreeMap<Key, String> {
        &self.entries
    }

    /// Execute a parsed command and return its result text.
    ///
    /// Commands are validated while parsing, so a state change cannot fail
    /// half-way: an `Err` (only `get` of a missing key) changes nothing.
    pub fn execute(&mut self, command: Command<'_>) -> Result<String, String> {
        match command {
            Command::Put { key, value } => {
                match self.entries.entry(Key::from(key)) {
                    Entry::Occupied(mut stored) => {
                        let stored = stored.get_mut();
                        // An update of a similar size reuses the old value's
                        // allocation (no free and malloc); a much smaller
                        // value does not keep a large one's memory.
                        if (value.len()..=value.len().saturating_mul(2))
                            .contains(&stored.capacity())
                        {
                            stored.clear();
                            stored.push_str(value);
                        } else {
                            *stored = value.to_owned();
                        }
                    }
                    Entry::Vacant(slot) => {
                        slot.insert(value.to_owned());
                    }
                }
                Ok("OK".to_owned())
            }
            Command::Delete { key } => {
                let existed = self.entries.remove(&Key::from(key)).is_some();
                Ok(if existed { "1" } else { "0" }.to_owned())
            }
            read_only => self.read(read_only),
        }
    }

    /// Answer a read-only command; `put` and `delete` are refused.
    pub fn read(&self, command: Command<'_>) -> Result<String, String> {
        match command {
            Command::Get { key } => self
                .entries
                .get(&Key::from(key))
                .cloned()
                .ok_or_else(|| format!("key not found: {key}")),
            Command::List { prefix } => {
                let keys: Vec<&str> = self
                    .entries
                    .range((Bound::Included(Key::from(prefix)), Bound::Unbounded))
                    .map(|(key, _)| key.as_str())
                    .take_while(|key| key.starts_with(prefix))
                    .collect();
                Ok(keys.join("\n"))
            }
            Command::Count => Ok(self.entries.len().to_string()),
            Command::Put { .. } | Command::Delete { .. } => Err(format!(
                "`{}` changes the store; propose it as a command, queries are read-only",
                verb(&command)
            )),
        }
    }
}

fn verb(command: &Command<'_>) -> &'static str {
    match command {
        Command::Put { .. } => "put",
        Command::Delete { .. } => "delete",
        Command::Get { .. } => "get",
        Command::List { .. } => "list",
        Command::Count => "count",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(store: &mut Store, text: &str) -> Result<String, String> {
        store.execute(Command::parse(text.as_bytes())?)
    }

    fn read(store: &Store, text: &str) -> Result<String, String> {
        store.read(Command::parse(text.as_bytes())?)
    }

    #[test]
    fn t10_put_get_delete() {
        let mut store = Store::default();
        assert_eq!(run(&mut store, "put a 1"), Ok("OK".to_owned()));
        assert_eq!(run(&mut store, "put a one two"), Ok("OK".to_owned()));
        assert_eq!(run(&mut store, "get a"), Ok("one two".to_owned()));
        assert_eq!(run(&mut store, "delete a"), Ok("1".to_owned()));
        assert_eq!(run(&mut store, "delete a"), Ok("0".to_owned()));
        assert_eq!(run(&mut store, "get a"), Err("key not found: a".to_owned()));
        assert_eq!(run(&mut store, "put empty"), Ok("OK".to_owned()));
        assert_eq!(run(&mut store, "get empty"), Ok(String::new()));
    }

    /// Overwrites of every size relation (longer, same, a bit shorter,
    /// much shorter, empty): the stored value is the new one, and a much
    /// shorter value does not keep the old one's memory.
    #[test]
    fn overwrites_store_the_new_value() {
        let mut store = Store::default();
        let long = "x".repeat(1000);
        for value in ["ab", "abcdefgh", long.as_str(), &long[..900], "ab", ""] {
            assert_eq!(
                run(&mut store, &format!("put k {value}")),
                Ok("OK".to_owned())
            );
            assert_eq!(read(&store, "get k"), Ok(value.to_owned()));
            let stored = &store.entries()[&Key::from("k")];
            assert!(
                stored.capacity() <= value.len().max(8) * 2,
                "{}",
                stored.capacity()
            );
        }
        assert_eq!(read(&store, "count"), Ok("1".to_owned()));
    }

    #[test]
    fn t10_list_is_sorted_and_prefix_filtered() {
        let mut store = Store::default();
        for key in ["user/b", "user/a", "admin", "user", "userx", "zed"] {
            run(&mut store, &format!("put {key} v")).expect("valid put");
        }
        assert_eq!(
            read(&store, "list"),
            Ok("admin\nuser\nuser/a\nuser/b\nuserx\nzed".to_owned())
        );
        assert_eq!(read(&store, "list user/"), Ok("user/a\nuser/b".to_owned()));
        assert_eq!(read(&store, "list nothing"), Ok(String::new()));
        assert_eq!(read(&store, "count"), Ok("6".to_owned()));
        assert_eq!(run(&mut store, "list u"), read(&store, "list u"));
    }

    #[test]
    fn t10_queries_refuse_writes() {
        let store = Store::default();
        let error = read(&store, "put a b").expect_err("read-only");
        assert!(error.contains("put"), "{error}");
        assert!(read(&store, "delete a").is_err());
    }

    #[test]
    fn t10_failed_commands_change_nothing() {
        let mut store = Store::default();
        run(&mut store, "put a 1").expect("valid put");
        let before = store.clone();
        for bad in ["get missing", "put", "put a\tb c", "frobnicate", "delete"] {
            assert!(run(&mut store, bad).is_err(), "{bad}");
        }
        assert_eq!(store, before);
    }
}
