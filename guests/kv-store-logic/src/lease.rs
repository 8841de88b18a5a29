//! Leases: a TTL shared by the keys attached to it, renewed by keep-alive
//! commands, revoked by a command or by expiry.
//!
//! Expiry is decided by the entries' leader timestamps only: at the start
//! of every `apply`, each lease with `expires_at_ms <=` the entry's
//! `timestamp_ms` is revoked, soonest first, and its keys deleted in that
//! entry's write set (watchers see `delete` events of that index). Every
//! replica applies the same entries with the same timestamps, so a key
//! expires at the same index everywhere, whatever the nodes' clocks say.
//! The expiry index (hidden keys ordered by time) makes this O(expired);
//! the host's timer (the SDK's `TIMER_KEY`) holds the soonest expiry, so
//! the leader proposes an empty entry when it is due even if nobody writes.
//!
//! Bounded work: one entry deletes at most
//! [`MAX_EXPIRED_KEYS_PER_ENTRY`](crate::MAX_EXPIRED_KEYS_PER_ENTRY) keys of
//! revoked leases; a lease with more keeps the rest (and stays due, so the
//! timer fires again at once) for the next entries.

use iroh_raft_store_guest::{KvStore, describe};

use crate::keys::{
    EXPIRY, Lease, expiry_key, lease_member_key, lease_member_prefix, meta_key, parse_expiry_key,
    read_lease, write_lease,
};
use crate::prefix_end;
use crate::tx::Tx;

/// The longest TTL a lease may have: ten years.
pub const MAX_LEASE_TTL_SECS: u64 = 10 * 365 * 24 * 3600;

/// How many keys `lease ttl` lists (the first ones, in key order).
pub const LEASE_TTL_MAX_KEYS: u32 = 1_000;

/// Keys fetched per scan while revoking.
const REVOKE_PAGE: u32 = 256;

fn err(e: iroh_raft_store_guest::StoreError) -> String {
    describe(&e)
}

fn not_found(id: u64) -> String {
    format!("lease {id} not found")
}

fn expires_at(now_ms: u64, ttl_secs: u64) -> Result<u64, String> {
    if ttl_secs == 0 || ttl_secs > MAX_LEASE_TTL_SECS {
        return Err(format!(
            "a lease's ttl is 1 to {MAX_LEASE_TTL_SECS} seconds, not {ttl_secs}"
        ));
    }
    now_ms
        .checked_add(ttl_secs * 1000)
        .ok_or_else(|| "the lease would expire after the end of time".to_owned())
}

/// Grant a lease with id `id` (an entry's index), expiring `ttl_secs` after
/// this entry's timestamp.
pub(crate) fn grant(tx: &mut Tx<'_, impl KvStore>, id: u64, ttl_secs: u64) -> Result<(), String> {
    let expires_at_ms = expires_at(tx.now_ms(), ttl_secs)?;
    let lease = Lease {
        ttl_secs,
        expires_at_ms,
        keys: 0,
    };
    write_lease(tx, id, &lease).map_err(err)?;
    tx.set(&expiry_key(expires_at_ms, id), b"").map_err(err)?;
    tx.leases_changed = true;
    Ok(())
}

/// A lease keys may be attached to: present and not yet expired.
pub(crate) fn live(tx: &Tx<'_, impl KvStore>, id: u64) -> Result<Lease, String> {
    let lease = read_lease(tx, id).ok_or_else(|| not_found(id))?;
    if lease.expires_at_ms <= tx.now_ms() {
        // Only a lease with more keys than one entry revokes gets here.
        return Err(format!("lease {id} has expired"));
    }
    Ok(lease)
}

/// Renew lease `id`: it now expires its TTL after this entry. Answers the TTL.
pub(crate) fn keepalive(tx: &mut Tx<'_, impl KvStore>, id: u64) -> Result<u64, String> {
    let mut lease = live(tx, id)?;
    let renewed = expires_at(tx.now_ms(), lease.ttl_secs)?;
    move_expiry(tx, id, &mut lease, renewed)?;
    Ok(lease.ttl_secs)
}

fn move_expiry(
    tx: &mut Tx<'_, impl KvStore>,
    id: u64,
    lease: &mut Lease,
    expires_at_ms: u64,
) -> Result<(), String> {
    if lease.expires_at_ms != expires_at_ms {
        tx.delete(&expiry_key(lease.expires_at_ms, id))
            .map_err(err)?;
        tx.set(&expiry_key(expires_at_ms, id), b"").map_err(err)?;
        lease.expires_at_ms = expires_at_ms;
        write_lease(tx, id, lease).map_err(err)?;
        tx.leases_changed = true;
    }
    Ok(())
}

/// Attach `key` to lease `id` (checked live by the caller).
pub(crate) fn attach(tx: &mut Tx<'_, impl KvStore>, id: u64, key: &[u8]) -> Result<(), String> {
    let mut lease = live(tx, id)?;
    tx.set(&lease_member_key(id, key), b"").map_err(err)?;
    lease.keys += 1;
    write_lease(tx, id, &lease).map_err(err)
}

/// Detach `key` from lease `id` (the key stays).
pub(crate) fn detach(tx: &mut Tx<'_, impl KvStore>, id: u64, key: &[u8]) -> Result<(), String> {
    if tx.delete(&lease_member_key(id, key)).map_err(err)?
        && let Some(mut lease) = read_lease(tx, id)
    {
        lease.keys = lease.keys.saturating_sub(1);
        write_lease(tx, id, &lease).map_err(err)?;
    }
    Ok(())
}

/// Delete lease `id`'s keys, at most the entry's remaining budget; drop
/// the lease once none is left. Returns whether it is gone.
fn revoke_keys(tx: &mut Tx<'_, impl KvStore>, id: u64, mut lease: Lease) -> Result<bool, String> {
    let prefix = lease_member_prefix(id);
    let end = prefix_end(&prefix);
    loop {
        if tx.revoke_budget == 0 {
            break;
        }
        let page =
            u32::try_from(tx.revoke_budget.min(u64::from(REVOKE_PAGE))).expect("at most a page");
        let members = tx.scan_keys(&prefix, end.as_deref(), page);
        if members.is_empty() {
            tx.delete(&crate::keys::lease_key(id)).map_err(err)?;
            tx.delete(&expiry_key(lease.expires_at_ms, id))
                .map_err(err)?;
            tx.leases_changed = true;
            return Ok(true);
        }
        for member in members {
            let key = &member[prefix.len()..];
            tx.delete(key).map_err(err)?;
            tx.delete(&meta_key(key)).map_err(err)?;
            tx.delete(&member).map_err(err)?;
            lease.keys = lease.keys.saturating_sub(1);
            tx.revoke_budget -= 1;
        }
    }
    write_lease(tx, id, &lease).map_err(err)?;
    Ok(false)
}

/// Revoke lease `id` now: its keys are deleted (those over this entry's
/// budget by the next entries, as if it had expired now). Answers how many
/// keys it had.
pub(crate) fn revoke(tx: &mut Tx<'_, impl KvStore>, id: u64) -> Result<u64, String> {
    let mut lease = read_lease(tx, id).ok_or_else(|| not_found(id))?;
    let keys = lease.keys;
    if !revoke_keys(tx, id, lease)? {
        // Re-read: revoke_keys wrote the lease's remaining key count.
        lease = read_lease(tx, id).ok_or_else(|| not_found(id))?;
        let now = tx.now_ms();
        if lease.expires_at_ms > now {
            move_expiry(tx, id, &mut lease, now)?;
        }
    }
    Ok(keys)
}

/// Revoke every lease due at this entry's timestamp, soonest first, within
/// the entry's budget. Never fails for a reason of its own (the tick that
/// runs it must not), only if the store refuses a write.
pub(crate) fn expire_due(tx: &mut Tx<'_, impl KvStore>) -> Result<(), String> {
    let now = tx.now_ms();
    // The timer is the soonest expiry: one read when nothing is due.
    match iroh_raft_store_guest::timer(tx) {
        Some(due) if due <= now => {}
        _ => return Ok(()),
    }
    let end = prefix_end(EXPIRY);
    while let Some((at, id)) = tx
        .scan_keys(EXPIRY, end.as_deref(), 1)
        .first()
        .and_then(|key| parse_expiry_key(key))
        .filter(|&(at, _)| at <= now)
    {
        tx.leases_changed = true;
        let gone = match read_lease(tx, id) {
            Some(lease) => revoke_keys(tx, id, lease)?,
            None => {
                // An index entry without its lease: drop it.
                tx.delete(&expiry_key(at, id)).map_err(err)?;
                true
            }
        };
        if !gone {
            break;
        }
    }
    Ok(())
}

/// `lease ttl ID` as JSON.
pub(crate) fn describe_lease(store: &impl KvStore, id: u64) -> Result<String, String> {
    #[derive(serde::Serialize)]
    struct LeaseInfo {
        id: u64,
        ttl: u64,
        expires_at_ms: u64,
        keys: Vec<String>,
    }
    let lease = read_lease(store, id).ok_or_else(|| not_found(id))?;
    let prefix = lease_member_prefix(id);
    let keys = store
        .scan_keys(&prefix, prefix_end(&prefix).as_deref(), LEASE_TTL_MAX_KEYS)
        .into_iter()
        .map(|member| String::from_utf8_lossy(&member[prefix.len()..]).into_owned())
        .collect();
    crate::to_json(&LeaseInfo {
        id,
        ttl: lease.ttl_secs,
        expires_at_ms: lease.expires_at_ms,
        keys,
    })
}

/// `lease list`: every lease id, ascending, one per line.
pub(crate) fn list(store: &impl KvStore) -> String {
    let prefix = crate::keys::LEASE;
    let end = prefix_end(prefix);
    let mut ids = Vec::new();
    let mut start = prefix.to_vec();
    loop {
        let page = store.scan_keys(&start, end.as_deref(), 1_000);
        let Some(last) = page.last() else { break };
        start = last.clone();
        start.push(0);
        ids.extend(page.iter().filter_map(|key| {
            let id = <[u8; 8]>::try_from(&key[prefix.len()..]).ok()?;
            Some(u64::from_be_bytes(id).to_string())
        }));
    }
    ids.join("\n")
}
