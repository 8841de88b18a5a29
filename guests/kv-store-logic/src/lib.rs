//! The `kv` commands (`put`, `get`, `delete`, `list`, `count`; grammar in
//! `kv-command`) run against the host's store instead of a map in guest
//! memory: the same script gives the same results as the `kv` guest.
//!
//! Keys are stored as their UTF-8 bytes and values as theirs, so the
//! store's byte-wise order is the `kv` guest's string order.

use iroh_raft_store_guest::{KvStore, describe};
use kv_command::Command;

/// Keys fetched per `scan-keys` call when listing.
const LIST_PAGE: u32 = 1_000;

/// Execute a command (from `apply`).
pub fn execute(store: &mut impl KvStore, command: Command<'_>) -> Result<String, String> {
    match command {
        Command::Put { key, value } => {
            store
                .set(key.as_bytes(), value.as_bytes())
                .map_err(|e| describe(&e))?;
            Ok("OK".to_owned())
        }
        Command::Delete { key } => {
            let existed = store.delete(key.as_bytes()).map_err(|e| describe(&e))?;
            Ok(if existed { "1" } else { "0" }.to_owned())
        }
        read_only => read(store, read_only),
    }
}

/// Answer a read-only command (from `query`); `put` and `delete` are
/// refused with the `kv` guest's message.
pub fn read(store: &impl KvStore, command: Command<'_>) -> Result<String, String> {
    match command {
        Command::Get { key } => store
            .get(key.as_bytes())
            .map(|value| String::from_utf8_lossy(&value).into_owned())
            .ok_or_else(|| format!("key not found: {key}")),
        Command::List { prefix } => Ok(list(store, prefix.as_bytes()).join("\n")),
        Command::Count => Ok(store.size().keys.to_string()),
        Command::Put { .. } | Command::Delete { .. } => Err(format!(
            "`{}` changes the store; propose it as a command, queries are read-only",
            if matches!(command, Command::Put { .. }) {
                "put"
            } else {
                "delete"
            }
        )),
    }
}

/// Every key starting with `prefix`, in order, page by page.
fn list(store: &impl KvStore, prefix: &[u8]) -> Vec<String> {
    let end = prefix_end(prefix);
    let mut keys = Vec::new();
    let mut start = prefix.to_vec();
    loop {
        let page = store.scan_keys(&start, end.as_deref(), LIST_PAGE);
        let Some(last) = page.last() else { break };
        start = last.clone();
        start.push(0);
        keys.extend(
            page.into_iter()
                .map(|key| String::from_utf8_lossy(&key).into_owned()),
        );
    }
    keys
}

/// The exclusive end of the keys starting with `prefix`.
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use iroh_raft_store_guest::MemoryStore;

    fn run(store: &mut MemoryStore, text: &str) -> Result<String, String> {
        execute(store, Command::parse(text.as_bytes())?)
    }

    #[test]
    fn t10_same_answers_as_kv() {
        let mut store = MemoryStore::default();
        assert_eq!(run(&mut store, "put a 1"), Ok("OK".to_owned()));
        assert_eq!(run(&mut store, "put a one two"), Ok("OK".to_owned()));
        assert_eq!(run(&mut store, "get a"), Ok("one two".to_owned()));
        assert_eq!(run(&mut store, "delete a"), Ok("1".to_owned()));
        assert_eq!(run(&mut store, "delete a"), Ok("0".to_owned()));
        assert_eq!(run(&mut store, "get a"), Err("key not found: a".to_owned()));
        for key in ["user/b", "user/a", "admin", "user", "userx", "zed"] {
            run(&mut store, &format!("put {key} v")).expect("valid put");
        }
        assert_eq!(
            run(&mut store, "list"),
            Ok("admin\nuser\nuser/a\nuser/b\nuserx\nzed".to_owned())
        );
        assert_eq!(
            run(&mut store, "list user/"),
            Ok("user/a\nuser/b".to_owned())
        );
        assert_eq!(run(&mut store, "count"), Ok("6".to_owned()));
        store.read_only = true;
        assert!(read(&store, Command::parse(b"put a b").expect("parse")).is_err());
    }

    #[test]
    fn t10_list_pages_through_many_keys() {
        let mut store = MemoryStore::default();
        for i in 0..2_500 {
            run(&mut store, &format!("put k{i:05} v")).expect("put");
        }
        let listed = run(&mut store, "list k").expect("list");
        assert_eq!(listed.lines().count(), 2_500);
        assert_eq!(listed.lines().last(), Some("k02499"));
    }
}
