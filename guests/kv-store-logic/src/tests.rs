use super::*;
use iroh_raft_store_guest::{MemoryStore, TIMER_KEY, is_hidden, timer};

/// A store plus the log around it: each `apply` is the next entry, at the
/// current time; an `Err` discards the entry's writes, as the host does.
struct Log {
    store: MemoryStore,
    index: u64,
    now_ms: u64,
}

const START_MS: u64 = 1_700_000_000_000;

impl Log {
    fn new() -> Self {
        Log {
            store: MemoryStore::default(),
            index: 0,
            now_ms: START_MS,
        }
    }

    fn apply(&mut self, command: &str) -> Result<String, String> {
        self.apply_bytes(command.as_bytes())
    }

    fn apply_bytes(&mut self, command: &[u8]) -> Result<String, String> {
        self.index += 1;
        let meta = EntryMeta {
            index: self.index,
            term: 1,
            timestamp_ms: self.now_ms,
        };
        let before = self.store.clone();
        let result = super::apply(&mut self.store, meta, command);
        if result.is_err() {
            self.store = before;
        }
        result
    }

    fn ok(&mut self, command: &str) -> String {
        self.apply(command)
            .unwrap_or_else(|e| panic!("{command:?} failed: {e}"))
    }

    fn query(&self, request: &str) -> Result<String, String> {
        let mut store = self.store.clone();
        store.read_only = true;
        super::query(&store, request.as_bytes())
    }

    fn meta(&self, key: &str) -> serde_json::Value {
        let text = self.query(&format!("get {key} meta")).expect("present");
        serde_json::from_str(&text).expect("json")
    }

    fn advance_ms(&mut self, ms: u64) {
        self.now_ms += ms;
    }

    fn hidden(&self) -> usize {
        self.store.pairs.keys().filter(|k| is_hidden(k)).count()
    }

    /// The store's own key count minus its hidden keys must be `count`,
    /// and the hidden counter must count the hidden keys.
    fn assert_counts(&self) {
        let users = self.store.pairs.len() - self.hidden();
        assert_eq!(self.query("count"), Ok(users.to_string()));
        assert_eq!(tx::hidden_keys(&self.store), self.hidden() as u64);
    }
}

#[test]
fn t10_same_answers_as_kv() {
    let mut log = Log::new();
    assert_eq!(log.apply("put a 1"), Ok("OK".to_owned()));
    assert_eq!(log.apply("put a one two"), Ok("OK".to_owned()));
    assert_eq!(log.apply("get a"), Ok("one two".to_owned()));
    assert_eq!(log.apply("delete a"), Ok("1".to_owned()));
    assert_eq!(log.apply("delete a"), Ok("0".to_owned()));
    assert_eq!(log.apply("get a"), Err("key not found: a".to_owned()));
    for key in ["user/b", "user/a", "admin", "user", "userx", "zed"] {
        log.ok(&format!("put {key} v"));
    }
    assert_eq!(
        log.apply("list"),
        Ok("admin\nuser\nuser/a\nuser/b\nuserx\nzed".to_owned())
    );
    assert_eq!(log.apply("list user/"), Ok("user/a\nuser/b".to_owned()));
    assert_eq!(log.apply("count"), Ok("6".to_owned()));
    assert_eq!(
        log.query("put a b"),
        Err("`put` changes the store; propose it as a command, queries are read-only".to_owned())
    );
    assert_eq!(
        log.apply("frobnicate"),
        Err(Command::parse(b"frobnicate").expect_err("kv refuses it"))
    );
    log.assert_counts();
}

#[test]
fn t10_list_pages_through_many_keys() {
    let mut log = Log::new();
    for i in 0..2_500 {
        log.ok(&format!("put k{i:05} v"));
    }
    let listed = log.ok("list k");
    assert_eq!(listed.lines().count(), 2_500);
    assert_eq!(listed.lines().last(), Some("k02499"));
    assert_eq!(
        log.ok("list").lines().count(),
        2_500,
        "no hidden key listed"
    );
    assert_eq!(log.ok("count"), "2500");
}

#[test]
fn t20_revisions_follow_the_log() {
    let mut log = Log::new();
    log.ok("put a x"); // index 1
    log.ok("put b y"); // 2
    log.ok("put a z"); // 3
    let a = log.meta("a");
    assert_eq!(
        a,
        serde_json::json!({"key":"a","value":"z","create_revision":1,"mod_revision":3,"version":2,"lease":0})
    );
    // Field order is part of the answer.
    assert_eq!(
        log.query("get a meta"),
        Ok(
            r#"{"key":"a","value":"z","create_revision":1,"mod_revision":3,"version":2,"lease":0}"#
                .to_owned()
        )
    );
    assert_eq!(log.apply("get a meta"), log.query("get a meta"));
    log.ok("delete a"); // 5 (4 was the get)
    assert_eq!(log.query("get a meta"), Err("key not found: a".to_owned()));
    log.ok("put a again"); // 6
    assert_eq!(log.meta("a")["create_revision"], 6);
    assert_eq!(log.meta("a")["version"], 1);
    log.assert_counts();
    // Metadata never shows in list or count.
    assert_eq!(log.ok("list"), "a\nb");
    assert_eq!(log.ok("count"), "2");
}

#[test]
fn t20_cas_swaps_only_at_the_expected_revision() {
    let mut log = Log::new();
    assert_eq!(log.apply("cas k 0 first"), Ok("OK".to_owned())); // 1
    assert_eq!(
        log.apply("cas k 0 again"),
        Err("cas failed: k is at revision 1".to_owned())
    );
    assert_eq!(
        log.apply("cas k 7 nope"),
        Err("cas failed: k is at revision 1".to_owned())
    );
    assert_eq!(log.apply("cas k 1 second value"), Ok("OK".to_owned())); // 4
    assert_eq!(log.ok("get k"), "second value");
    assert_eq!(log.meta("k")["mod_revision"], 4);
    assert_eq!(log.meta("k")["version"], 2);
    assert_eq!(
        log.apply("cas missing 3 v"),
        Err("cas failed: missing is at revision 0".to_owned())
    );
    // A failed cas writes nothing (the host discards the entry's writes).
    let before = log.store.clone();
    assert!(log.apply("cas k 1 stale").is_err());
    assert_eq!(log.store, before);
    assert!(log.query("cas k 4 v").is_err(), "cas is not a query");
    log.assert_counts();
}

#[test]
fn t20_keys_from_before_revisions_still_work() {
    let mut log = Log::new();
    // What a kv-store without revisions left: bare pairs.
    log.store.pairs.insert(b"old".to_vec(), b"value".to_vec());
    log.store.pairs.insert(b"older".to_vec(), b"v".to_vec());
    assert_eq!(log.query("count"), Ok("2".to_owned()));
    assert_eq!(
        log.meta("old"),
        serde_json::json!({"key":"old","value":"value","create_revision":0,"mod_revision":0,"version":1,"lease":0})
    );
    let refused = log.apply("cas old 0 new").expect_err("the key exists");
    assert!(
        refused.starts_with("cas failed: old is at revision 0"),
        "{refused}"
    );
    let swapped = log.ok(
        r#"txn {"compare":[{"key":"old","target":"exists","op":"=","value":true},
                           {"key":"old","target":"mod_revision","op":"=","value":0}],
               "success":[{"op":"put","key":"old","value":"new"}]}"#,
    );
    assert!(swapped.starts_with(r#"{"succeeded":true"#), "{swapped}");
    assert_eq!(log.meta("old")["version"], 2);
    assert_eq!(log.meta("old")["create_revision"], 0);
    let rev = log.meta("old")["mod_revision"].as_u64().expect("a number");
    log.ok(&format!("cas old {rev} newer"));
    assert_eq!(log.ok("delete older"), "1");
    assert_eq!(log.ok("count"), "1");
    log.assert_counts();
}

#[test]
fn t30_txn_runs_one_branch_atomically() {
    let mut log = Log::new();
    log.ok("put a 1"); // 1
    let txn = r#"txn {"compare":[{"key":"a","target":"value","op":"=","value":"1"},
                                  {"key":"a","target":"version","op":"<","value":2}],
                      "success":[{"op":"put","key":"a","value":"2"},{"op":"put","key":"b","value":"x"},
                                 {"op":"get","key":"a"},{"op":"delete","key":"zz"}],
                      "failure":[{"op":"get","key":"a"},{"op":"get","key":"nothing"}]}"#;
    assert_eq!(
        log.apply(txn),
        Ok(concat!(
            r#"{"succeeded":true,"results":[{"op":"put","key":"a","mod_revision":2},"#,
            r#"{"op":"put","key":"b","mod_revision":2},"#,
            r#"{"op":"get","found":true,"key":"a","value":"2","create_revision":1,"mod_revision":2,"version":2,"lease":0},"#,
            r#"{"op":"delete","key":"zz","deleted":0}]}"#
        )
        .to_owned())
    );
    // The same txn again: the compares fail now.
    assert_eq!(
        log.apply(txn),
        Ok(concat!(
            r#"{"succeeded":false,"results":[{"op":"get","found":true,"key":"a","value":"2","create_revision":1,"mod_revision":2,"version":2,"lease":0},"#,
            r#"{"op":"get","found":false,"key":"nothing"}]}"#
        )
        .to_owned())
    );
    // A value compare of an absent key is false whatever the op (etcd).
    let absent = log.ok(
        r#"txn {"compare":[{"key":"none","target":"value","op":"!=","value":"x"}],"success":[{"op":"put","key":"c","value":"1"}]}"#,
    );
    assert_eq!(absent, r#"{"succeeded":false,"results":[]}"#);
    // Revisions of an absent key are 0.
    let created = log.ok(
        r#"txn {"compare":[{"key":"c","target":"create_revision","op":"=","value":0},{"key":"c","target":"exists","op":"!=","value":true}],"success":[{"op":"put","key":"c","value":"1"}]}"#,
    );
    assert!(created.starts_with(r#"{"succeeded":true"#));

    // A read-only txn is also a query; one that writes is not.
    let read = r#"txn {"compare":[{"key":"c","target":"exists","op":"=","value":true}],"success":[{"op":"get","key":"c"}]}"#;
    assert_eq!(log.query(read), log.apply(read));
    assert!(log.query(txn).is_err());

    // Malformed or unknown: an error, nothing written.
    let before = log.store.clone();
    for bad in [
        "txn",
        "txn {",
        r#"txn {"compare":[],"success":[],"failure":[],"else":[]}"#,
        r#"txn {"success":[{"op":"put","key":"d","value":"1","lease":999}]}"#,
        r#"txn {"success":[{"op":"put","key":"d","value":"1"},{"op":"put","key":"e","value":"1","lease":999}]}"#,
    ] {
        assert!(log.apply(bad).is_err(), "{bad}");
        assert_eq!(log.store, before, "{bad} wrote something");
    }
    log.assert_counts();
}

#[test]
fn t40_leases_grant_attach_renew_revoke() {
    let mut log = Log::new();
    let id: u64 = log.ok("lease grant 10").parse().expect("an id"); // 1
    assert_eq!(id, 1, "the id is the entry's index");
    log.ok(&format!("put a 1 lease={id}")); // 2
    log.ok(&format!("put b 2 lease={id}")); // 3
    assert_eq!(log.meta("a")["lease"], id);
    let expires = START_MS + 10_000;
    assert_eq!(
        log.query(&format!("lease ttl {id}")),
        Ok(format!(
            r#"{{"id":1,"ttl":10,"expires_at_ms":{expires},"keys":["a","b"]}}"#
        ))
    );
    assert_eq!(timer(&log.store), Some(expires));
    assert_eq!(
        log.apply("put c 3 lease=99"),
        Err("lease 99 not found".to_owned())
    );

    // Renewing moves the expiry (and the timer) to ttl after this entry.
    log.advance_ms(4_000);
    assert_eq!(log.ok(&format!("lease keepalive {id}")), "10");
    assert_eq!(timer(&log.store), Some(START_MS + 14_000));

    // A put without a lease option detaches the key (as etcd).
    log.ok("put b 3");
    assert_eq!(log.meta("b")["lease"], 0);
    let ttl: serde_json::Value =
        serde_json::from_str(&log.ok(&format!("lease ttl {id}"))).expect("json");
    assert_eq!(ttl["keys"], serde_json::json!(["a"]));
    assert_eq!(log.ok("lease list"), "1");

    assert_eq!(log.ok(&format!("lease revoke {id}")), "1");
    assert_eq!(log.query("get a"), Err("key not found: a".to_owned()));
    assert_eq!(log.ok("get b"), "3");
    assert_eq!(log.ok("lease list"), "");
    assert_eq!(timer(&log.store), None, "no lease left: no timer");
    assert!(log.apply(&format!("lease keepalive {id}")).is_err());
    assert!(log.apply("lease grant 0").is_err());
    log.assert_counts();
    assert_eq!(log.hidden(), 2, "b's metadata and the hidden key counter");
}

#[test]
fn t40_put_with_ttl_expires_at_the_first_entry_past_it() {
    let mut log = Log::new();
    log.ok("put k v ttl=1"); // 1: lease 1, expires at START + 1000
    assert_eq!(log.meta("k")["lease"], 1);
    assert_eq!(timer(&log.store), Some(START_MS + 1_000));
    log.advance_ms(999);
    assert_eq!(log.ok("get k"), "v", "not yet");
    log.advance_ms(1);
    // Expiry runs first, in this entry, before the command.
    assert_eq!(log.apply("get k"), Err("key not found: k".to_owned()));
    // That entry failed, so its expiry was discarded with its writes ...
    assert!(log.store.pairs.contains_key(b"k".as_slice()));
    // ... and a tick (the host's empty command) does it; it never fails.
    assert_eq!(log.apply_bytes(b""), Ok("OK".to_owned()));
    assert!(!log.store.pairs.contains_key(b"k".as_slice()));
    assert_eq!(timer(&log.store), None);
    assert_eq!(log.ok("lease list"), "");
    assert_eq!(
        log.store.pairs.len(),
        1,
        "only the hidden key counter is left"
    );
    log.assert_counts();
}

#[test]
fn t40_leases_expire_soonest_first_and_the_timer_follows() {
    let mut log = Log::new();
    log.ok("put a 1 ttl=30"); // lease 1, +30 s
    log.ok("put b 1 ttl=10"); // lease 2, +10 s
    log.ok("put c 1 ttl=20"); // lease 3, +20 s
    log.ok(
        r#"txn {"success":[{"op":"put","key":"d","value":"1","ttl":5},{"op":"put","key":"e","value":"1","ttl":5}]}"#,
    ); // lease 4 shared, +5 s
    assert!(
        log.apply(r#"txn {"success":[{"op":"put","key":"f","value":"1","ttl":5},{"op":"put","key":"g","value":"1","ttl":6}]}"#)
            .is_err(),
        "one entry grants one lease"
    );
    assert_eq!(log.meta("e")["lease"], 4);
    assert_eq!(timer(&log.store), Some(START_MS + 5_000));
    let mut gone = Vec::new();
    for _ in 0..40 {
        log.advance_ms(1_000);
        log.ok("");
        let left = log.ok("list");
        for key in ["a", "b", "c", "d", "e"] {
            if !left.contains(key) && !gone.contains(&key) {
                gone.push(key);
            }
        }
        match timer(&log.store) {
            Some(due) => assert!(due > log.now_ms, "the timer is the next expiry"),
            None => assert_eq!(left, ""),
        }
    }
    assert_eq!(gone, ["d", "e", "b", "c", "a"]);
    log.assert_counts();
}

#[test]
fn t40_a_huge_lease_expires_over_several_entries() {
    let mut log = Log::new();
    let id = log.ok("lease grant 1");
    let keys = MAX_EXPIRED_KEYS_PER_ENTRY * 2 + 10;
    for i in 0..keys {
        log.ok(&format!("put k{i:05} v lease={id}"));
    }
    log.ok("put other v");
    log.advance_ms(1_000);
    let mut ticks = 0;
    while log.query("count") != Ok("1".to_owned()) {
        ticks += 1;
        assert!(ticks <= 3, "expiry makes progress");
        log.ok("");
        if log.query("count") != Ok("1".to_owned()) {
            let due = timer(&log.store).expect("still due");
            assert!(due <= log.now_ms, "the timer stays due while keys are left");
            // A lease being revoked takes no new keys and no keep-alive.
            assert!(log.apply(&format!("put x v lease={id}")).is_err());
            assert!(log.apply(&format!("lease keepalive {id}")).is_err());
        }
    }
    assert_eq!(
        ticks, 3,
        "{keys} keys at {MAX_EXPIRED_KEYS_PER_ENTRY} per entry"
    );
    assert_eq!(timer(&log.store), None);
    assert_eq!(log.ok("lease list"), "");
    log.assert_counts();
}

#[test]
fn t40_revoking_a_huge_lease_finishes_on_the_next_entries() {
    let mut log = Log::new();
    let id = log.ok("lease grant 100");
    let keys = MAX_EXPIRED_KEYS_PER_ENTRY + 5;
    for i in 0..keys {
        log.ok(&format!("put k{i:05} v lease={id}"));
    }
    assert_eq!(log.ok(&format!("lease revoke {id}")), keys.to_string());
    assert_eq!(
        log.query("count"),
        Ok("5".to_owned()),
        "the rest waits for the next entry"
    );
    assert!(timer(&log.store).is_some_and(|due| due <= log.now_ms));
    log.ok("");
    assert_eq!(log.query("count"), Ok("0".to_owned()));
    assert_eq!(timer(&log.store), None);
    log.assert_counts();
}

#[test]
fn t50_hidden_keys_stay_hidden() {
    let mut log = Log::new();
    log.ok("put a 1 ttl=100");
    log.ok("lease grant 5");
    log.ok("put b 2");
    assert!(log.hidden() > 3);
    assert!(log.store.pairs.contains_key(TIMER_KEY));
    assert_eq!(log.ok("list"), "a\nb");
    assert_eq!(log.ok("count"), "2");
    log.assert_counts();
    // Text keys never reach the hidden range, not even the last code point.
    log.ok("put \u{10ffff} top");
    assert_eq!(log.ok("list"), "a\nb\n\u{10ffff}");
    assert_eq!(log.ok("list \u{10ffff}"), "\u{10ffff}");
}

#[test]
fn t50_same_commands_same_store() {
    // Determinism: the same entries (indexes and timestamps) give the same
    // store, byte for byte.
    let run = || {
        let mut log = Log::new();
        for i in 0..50u64 {
            let _ = log.apply(&format!("put k{} {i} ttl={}", i % 7, i % 3));
            let _ = log.apply(&format!("cas k{} {} x", i % 5, i.saturating_sub(3)));
            log.advance_ms(300);
            let _ = log.apply("");
        }
        log.store
    };
    assert_eq!(run(), run());
}
