//! The logic of the `kv-store` guests: the `kv` commands (`put`, `get`,
//! `delete`, `list`, `count`; grammar in `kv-command`) over the host's
//! store, with the `kv` guest's answers, plus what etcd users reach for:
//! revisions, compare-and-swap, transactions and leases.
//!
//! | text | answer | apply | query |
//! |---|---|---|---|
//! | `put KEY VALUE [ttl=S \| lease=ID]` | `OK` | yes | no |
//! | `delete KEY` | `1` if it existed, else `0` | yes | no |
//! | `get KEY` | the value, or err `key not found: KEY` | yes | yes |
//! | `get KEY meta` | `{"key","value","create_revision","mod_revision","version","lease"}` | yes | yes |
//! | `list [PREFIX]` / `count` | as `kv` (hidden keys never appear) | yes | yes |
//! | `cas KEY REV VALUE [ttl=S \| lease=ID]` | `OK`, or err `cas failed: KEY is at revision N` | yes | no |
//! | `txn JSON` | `{"succeeded":BOOL,"results":[...]}` (see [`txn`]) | yes | only without writes |
//! | `lease grant TTL` | the lease id (the entry's index) | yes | no |
//! | `lease keepalive ID` | the TTL (it now expires TTL s after this entry) | yes | no |
//! | `lease revoke ID` | how many keys it had (all deleted) | yes | no |
//! | `lease ttl ID` | `{"id","ttl","expires_at_ms","keys"}` | yes | yes |
//! | `lease list` | lease ids, ascending, one per line | yes | yes |
//! | the empty command | `OK`: a tick that only expires what is due | yes | no |
//!
//! **Revisions.** Every write of a key stores, beside it, the index of the
//! entry that created it (`create_revision`), of the one that last wrote it
//! (`mod_revision`), how many writes it had since it was created
//! (`version`, 1 after the create) and its lease (0: none). A key written
//! by a `kv-store` from before revisions has no such record and reports
//! `create_revision` 0, `mod_revision` 0, `version` 1, lease 0; its next
//! write gives it a record (`version` 2). `cas KEY 0 ...` means "the key
//! must not exist", so such a key is swapped with a `txn` comparing
//! `exists` (or after any `put`).
//!
//! **cas.** `cas KEY EXPECTED VALUE` writes like `put` when the key's
//! `mod_revision` is `EXPECTED` (0: the key is absent); otherwise the entry
//! fails with `cas failed: KEY is at revision N` (N = 0 when absent) and
//! writes nothing.
//!
//! **Leases** (see [`lease`]). `put KEY VALUE lease=ID` attaches the key to
//! an existing lease; `ttl=S` grants a lease of `S` seconds for it (id =
//! the entry's index; the `ttl=` puts of one `txn` with the same TTL share
//! it). As in etcd, a put without either option detaches the key from its
//! lease. The option is the value's last word: to store a value that ends
//! in such a word, append ` ttl=0` (no lease). A lease expires at the first
//! entry whose leader timestamp reaches `expires_at_ms`, on every replica
//! alike; a query may still see an expired key until that entry applies
//! (the host's timer proposes one). A command that fails (`cas failed`, a
//! bad `txn` operation) has its whole write set discarded by the host,
//! expiries included; the next entry that succeeds (at the latest the
//! host's timer tick, which never fails) does them.
//!
//! Keys are stored as their UTF-8 bytes and values as theirs, so the
//! store's byte-wise order is the `kv` guest's string order. The guest's
//! bookkeeping lives under hidden keys (first byte `0xFF`, see `keys.rs`),
//! which `list` and `count` leave out and the host's watchers never report.

mod command;
mod keys;
pub mod lease;
mod tx;
pub mod txn;

use iroh_raft_store_guest::{EntryMeta, HIDDEN_KEY_PREFIX, KvStore, describe};
use kv_command::Command;
use serde::Serialize;

pub use command::{LeaseOption, StoreCommand};
pub use keys::Meta;

use keys::{read_meta, write_meta};
use tx::Tx;
use txn::{CmpOp, Op, Target, Txn};

/// Keys fetched per `scan-keys` call when listing.
const LIST_PAGE: u32 = 1_000;

/// Most keys of revoked leases (expired or `lease revoke`d) one entry
/// deletes. A lease with more keeps the rest for the next entries, so one
/// entry stays well within its fuel (each key costs a few store calls) and
/// write set, on every replica alike.
pub const MAX_EXPIRED_KEYS_PER_ENTRY: u64 = 1_000;

/// Apply a command: expire the leases due at `meta.timestamp_ms`, then run
/// it. On `Err` the host discards every write of the entry.
pub fn apply(store: &mut impl KvStore, meta: EntryMeta, command: &[u8]) -> Result<String, String> {
    let command = StoreCommand::parse(command)?;
    let mut tx = Tx::new(store, meta);
    lease::expire_due(&mut tx)?;
    let answer = execute(&mut tx, command)?;
    tx.finish().map_err(|e| describe(&e))?;
    Ok(answer)
}

/// Answer a query (read-only; commands that write are refused).
pub fn query(store: &impl KvStore, request: &[u8]) -> Result<String, String> {
    read(store, StoreCommand::parse_request(request)?)
}

/// The number of user keys: the store's keys minus the hidden ones.
pub fn count(store: &impl KvStore) -> u64 {
    store.size().keys.saturating_sub(tx::hidden_keys(store))
}

fn execute(tx: &mut Tx<'_, impl KvStore>, command: StoreCommand<'_>) -> Result<String, String> {
    match command {
        StoreCommand::Tick => Ok("OK".to_owned()),
        StoreCommand::Put { key, value, lease } => {
            put(tx, key, value, lease)?;
            Ok("OK".to_owned())
        }
        StoreCommand::Kv(Command::Put { key, value }) => {
            put(tx, key, value, LeaseOption::None)?;
            Ok("OK".to_owned())
        }
        StoreCommand::Kv(Command::Delete { key }) => {
            Ok(if delete(tx, key)? { "1" } else { "0" }.to_owned())
        }
        StoreCommand::Cas {
            key,
            expected,
            value,
            lease,
        } => {
            let current = read_meta(tx, key.as_bytes());
            let at = current.map_or(0, |m| m.mod_revision);
            if at != expected || (expected == 0 && current.is_some()) {
                let legacy = if current == Some(Meta::LEGACY) {
                    " (written before revisions: swap it with a txn comparing `exists`)"
                } else {
                    ""
                };
                return Err(format!("cas failed: {key} is at revision {at}{legacy}"));
            }
            put(tx, key, value, lease)?;
            Ok("OK".to_owned())
        }
        StoreCommand::Txn(txn) => run_txn(tx, &txn),
        StoreCommand::LeaseGrant { ttl_secs } => {
            let id = tx.index();
            lease::grant(tx, id, ttl_secs)?;
            Ok(id.to_string())
        }
        StoreCommand::LeaseKeepalive { id } => lease::keepalive(tx, id).map(|t| t.to_string()),
        StoreCommand::LeaseRevoke { id } => lease::revoke(tx, id).map(|n| n.to_string()),
        read_only => read(&*tx, read_only),
    }
}

/// Answer a read-only command; commands that write are refused.
fn read(store: &impl KvStore, command: StoreCommand<'_>) -> Result<String, String> {
    match command {
        StoreCommand::Kv(Command::Get { key }) => store
            .get(key.as_bytes())
            .map(|value| String::from_utf8_lossy(&value).into_owned())
            .ok_or_else(|| format!("key not found: {key}")),
        StoreCommand::Kv(Command::List { prefix }) => Ok(list(store, prefix.as_bytes()).join("\n")),
        StoreCommand::Kv(Command::Count) => Ok(count(store).to_string()),
        StoreCommand::GetMeta { key } => {
            get_meta(store, key).ok_or_else(|| format!("key not found: {key}"))
        }
        StoreCommand::LeaseTtl { id } => lease::describe_lease(store, id),
        StoreCommand::LeaseList => Ok(lease::list(store)),
        StoreCommand::Txn(txn) if txn.is_read_only() => {
            let succeeded = compares_hold(store, &txn)?;
            let ops = if succeeded {
                &txn.success
            } else {
                &txn.failure
            };
            let results = ops
                .iter()
                .map(|op| txn_get(store, op.key()))
                .collect::<Result<_, _>>()?;
            to_json(&TxnAnswer { succeeded, results })
        }
        StoreCommand::Tick => Err(kv_command::Command::parse(b"").expect_err("empty is refused")),
        write => Err(format!(
            "`{}` changes the store; propose it as a command, queries are read-only",
            write.verb()
        )),
    }
}

/// The value of a key with its metadata, as `get KEY meta` answers.
#[derive(Serialize)]
struct KeyInfo<'a> {
    key: &'a str,
    value: String,
    create_revision: u64,
    mod_revision: u64,
    version: u64,
    lease: u64,
}

fn key_info<'a>(store: &impl KvStore, key: &'a str) -> Option<KeyInfo<'a>> {
    let value = store.get(key.as_bytes())?;
    let meta = read_meta(store, key.as_bytes()).unwrap_or(Meta::LEGACY);
    Some(KeyInfo {
        key,
        value: String::from_utf8_lossy(&value).into_owned(),
        create_revision: meta.create_revision,
        mod_revision: meta.mod_revision,
        version: meta.version,
        lease: meta.lease,
    })
}

fn get_meta(store: &impl KvStore, key: &str) -> Option<String> {
    to_json(&key_info(store, key)?).ok()
}

pub(crate) fn to_json(value: &impl Serialize) -> Result<String, String> {
    serde_json::to_string(value).map_err(|e| format!("encoding the answer: {e}"))
}

/// Write `key` with its new metadata, attaching or detaching its lease.
fn put(
    tx: &mut Tx<'_, impl KvStore>,
    key: &str,
    value: &str,
    option: LeaseOption,
) -> Result<(), String> {
    let index = tx.index();
    let new_lease = match option {
        LeaseOption::None => 0,
        LeaseOption::Lease(id) => {
            lease::live(tx, id)?;
            id
        }
        LeaseOption::Ttl(ttl) => match tx.granted {
            Some(granted) if granted == ttl => index,
            Some(granted) => {
                return Err(format!(
                    "one entry grants at most one lease: ttl={ttl} after ttl={granted}"
                ));
            }
            None => {
                lease::grant(tx, index, ttl)?;
                tx.granted = Some(ttl);
                index
            }
        },
    };
    let old = read_meta(tx, key.as_bytes());
    let meta = Meta {
        create_revision: old.map_or(index, |m| m.create_revision),
        mod_revision: index,
        version: old.map_or(1, |m| m.version.saturating_add(1)),
        lease: new_lease,
    };
    let old_lease = old.map_or(0, |m| m.lease);
    if old_lease != new_lease {
        if old_lease != 0 {
            lease::detach(tx, old_lease, key.as_bytes())?;
        }
        if new_lease != 0 {
            lease::attach(tx, new_lease, key.as_bytes())?;
        }
    }
    tx.set(key.as_bytes(), value.as_bytes())
        .map_err(|e| describe(&e))?;
    write_meta(tx, key.as_bytes(), &meta).map_err(|e| describe(&e))
}

/// Delete `key` and its metadata; whether it existed.
fn delete(tx: &mut Tx<'_, impl KvStore>, key: &str) -> Result<bool, String> {
    if let Some(Meta {
        lease: id @ 1.., ..
    }) = read_meta(tx, key.as_bytes())
    {
        lease::detach(tx, id, key.as_bytes())?;
    }
    tx.delete(&keys::meta_key(key.as_bytes()))
        .map_err(|e| describe(&e))?;
    tx.delete(key.as_bytes()).map_err(|e| describe(&e))
}

#[derive(Serialize)]
struct TxnAnswer<'a> {
    succeeded: bool,
    results: Vec<OpResult<'a>>,
}

#[derive(Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum OpResult<'a> {
    Put {
        key: &'a str,
        mod_revision: u64,
    },
    Delete {
        key: &'a str,
        deleted: u8,
    },
    Get {
        found: bool,
        #[serde(flatten)]
        info: GetResult<'a>,
    },
}

#[derive(Serialize)]
#[serde(untagged)]
enum GetResult<'a> {
    Found(KeyInfo<'a>),
    Missing { key: &'a str },
}

fn txn_get<'a>(store: &impl KvStore, key: &'a str) -> Result<OpResult<'a>, String> {
    Ok(match key_info(store, key) {
        Some(info) => OpResult::Get {
            found: true,
            info: GetResult::Found(info),
        },
        None => OpResult::Get {
            found: false,
            info: GetResult::Missing { key },
        },
    })
}

/// Whether every compare of `txn` holds in `store`.
fn compares_hold(store: &impl KvStore, txn: &Txn) -> Result<bool, String> {
    for compare in &txn.compare {
        let key = compare.key.as_bytes();
        let meta = read_meta(store, key);
        let holds = match compare.target {
            Target::Value => match (store.get(key), compare.value.as_str()) {
                (Some(value), Some(expected)) => {
                    compare.op.holds(value.as_slice().cmp(expected.as_bytes()))
                }
                // etcd: a value compare of an absent key is false.
                _ => false,
            },
            Target::Exists => {
                let expected = compare.value.as_bool().unwrap_or_default();
                (meta.is_some() == expected) == (compare.op == CmpOp::Eq)
            }
            target => {
                let actual = meta.map_or(0, |m| match target {
                    Target::ModRevision => m.mod_revision,
                    Target::CreateRevision => m.create_revision,
                    _ => m.version,
                });
                let expected = compare.value.as_u64().unwrap_or_default();
                compare.op.holds(actual.cmp(&expected))
            }
        };
        if !holds {
            return Ok(false);
        }
    }
    Ok(true)
}

fn run_txn(tx: &mut Tx<'_, impl KvStore>, txn: &Txn) -> Result<String, String> {
    let succeeded = compares_hold(tx, txn)?;
    let ops = if succeeded {
        &txn.success
    } else {
        &txn.failure
    };
    let mut results = Vec::with_capacity(ops.len());
    for op in ops {
        results.push(match op {
            Op::Put { key, value, .. } => {
                put(tx, key, value, op.lease_option())?;
                OpResult::Put {
                    key,
                    mod_revision: tx.index(),
                }
            }
            Op::Delete { key } => OpResult::Delete {
                key,
                deleted: u8::from(delete(tx, key)?),
            },
            Op::Get { key } => txn_get(tx, key)?,
        });
    }
    to_json(&TxnAnswer { succeeded, results })
}

/// Every user key starting with `prefix`, in order, page by page (never a
/// hidden key: they sort after every UTF-8 key).
fn list(store: &impl KvStore, prefix: &[u8]) -> Vec<String> {
    let end = prefix_end(prefix)
        .filter(|end| end.as_slice() < [HIDDEN_KEY_PREFIX].as_slice())
        .unwrap_or_else(|| vec![HIDDEN_KEY_PREFIX]);
    let mut keys = Vec::new();
    let mut start = prefix.to_vec();
    loop {
        let page = store.scan_keys(&start, Some(&end), LIST_PAGE);
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
mod tests;
