//! The `iroh-raft:state-machine/store@0.2.0` functions, linked by hand so
//! each can charge fuel from the calling guest's budget.

use crate::limits::{
    MAX_STORE_KEY_BYTES, MAX_STORE_SCAN_BYTES, MAX_STORE_SCAN_ITEMS, MAX_STORE_VALUE_BYTES,
    MAX_STORE_WRITE_SET_BYTES, STORE_FUEL_PER_BYTE, STORE_FUEL_PER_CALL,
};
use wasmtime::component::Linker;
use wasmtime::{StoreContextMut, Trap};

use super::prefix_end;
use super::transaction::{Refusal, Transaction};
use crate::wasm::instance::StoreState;
use crate::wasm::store_bindings::{KvPair, StoreError, StoreLimits, StoreSize};

/// The interface's name as components import it.
pub const STORE_INTERFACE: &str = "iroh-raft:state-machine/store@0.2.0";

type Ctx<'a> = StoreContextMut<'a, StoreState>;

/// Add the store's functions to `linker`. Components that do not import
/// the store (0.1.0 guests) are unaffected.
pub fn link(linker: &mut Linker<StoreState>) -> wasmtime::Result<()> {
    let mut store = linker.instance(STORE_INTERFACE)?;
    store.func_wrap("limits", |mut ctx: Ctx<'_>, (): ()| {
        charge(&mut ctx, 0)?;
        Ok((StoreLimits {
            max_key_bytes: MAX_STORE_KEY_BYTES,
            max_value_bytes: MAX_STORE_VALUE_BYTES,
            max_write_set_bytes: MAX_STORE_WRITE_SET_BYTES,
            max_scan_items: MAX_STORE_SCAN_ITEMS,
            max_scan_bytes: MAX_STORE_SCAN_BYTES,
            fuel_per_call: STORE_FUEL_PER_CALL,
            fuel_per_byte: STORE_FUEL_PER_BYTE,
        },))
    })?;
    store.func_wrap("get", |mut ctx: Ctx<'_>, (key,): (Vec<u8>,)| {
        charge(&mut ctx, key.len())?;
        let value = with_tx(&mut ctx, |tx| tx.get(&key))?;
        charge_bytes(&mut ctx, value.as_ref().map_or(0, Vec::len))?;
        Ok((value,))
    })?;
    store.func_wrap("exists", |mut ctx: Ctx<'_>, (key,): (Vec<u8>,)| {
        charge(&mut ctx, key.len())?;
        let value = with_tx(&mut ctx, |tx| tx.get(&key))?;
        Ok((value.is_some(),))
    })?;
    store.func_wrap(
        "set",
        |mut ctx: Ctx<'_>, (key, value): (Vec<u8>, Vec<u8>)| {
            charge(&mut ctx, key.len() + value.len())?;
            let result = with_tx(&mut ctx, |tx| tx.set(&key, value))?;
            Ok((result.map_err(store_error),))
        },
    )?;
    store.func_wrap("delete", |mut ctx: Ctx<'_>, (key,): (Vec<u8>,)| {
        charge(&mut ctx, key.len())?;
        let result = with_tx(&mut ctx, |tx| tx.delete(&key))?;
        Ok((result.map_err(store_error),))
    })?;
    store.func_wrap(
        "scan",
        |mut ctx: Ctx<'_>, (start, end, limit): (Vec<u8>, Option<Vec<u8>>, u32)| {
            let pairs = scan(&mut ctx, &start, end.as_deref(), limit, true)?;
            Ok((pairs
                .into_iter()
                .map(|(key, value)| KvPair { key, value })
                .collect::<Vec<_>>(),))
        },
    )?;
    store.func_wrap(
        "scan-keys",
        |mut ctx: Ctx<'_>, (start, end, limit): (Vec<u8>, Option<Vec<u8>>, u32)| {
            let pairs = scan(&mut ctx, &start, end.as_deref(), limit, false)?;
            Ok((pairs.into_iter().map(|(key, _)| key).collect::<Vec<_>>(),))
        },
    )?;
    store.func_wrap(
        "scan-prefix",
        |mut ctx: Ctx<'_>, (prefix, after, limit): (Vec<u8>, Option<Vec<u8>>, u32)| {
            let start = match after {
                Some(mut after) if after.as_slice() >= prefix.as_slice() => {
                    after.push(0);
                    after
                }
                _ => prefix.clone(),
            };
            let end = prefix_end(&prefix);
            let pairs = scan(&mut ctx, &start, end.as_deref(), limit, true)?;
            Ok((pairs
                .into_iter()
                .map(|(key, value)| KvPair { key, value })
                .collect::<Vec<_>>(),))
        },
    )?;
    store.func_wrap("size", |mut ctx: Ctx<'_>, (): ()| {
        charge(&mut ctx, 0)?;
        let size = with_tx(&mut ctx, |tx| tx.size())?;
        Ok((StoreSize {
            keys: size.keys,
            bytes: size.bytes,
        },))
    })?;
    Ok(())
}

/// Scan for the guest: cut at `limit`, [`MAX_STORE_SCAN_ITEMS`],
/// [`MAX_STORE_SCAN_BYTES`] and the fuel left (a scan the guest cannot pay
/// for traps with out-of-fuel before it reads further).
fn scan(
    ctx: &mut Ctx<'_>,
    start: &[u8],
    end: Option<&[u8]>,
    limit: u32,
    with_values: bool,
) -> wasmtime::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    charge(ctx, start.len() + end.map_or(0, <[u8]>::len))?;
    let fuel_left = ctx.get_fuel()?;
    let affordable_bytes = fuel_left / STORE_FUEL_PER_BYTE.max(1);
    let max_items = limit.min(MAX_STORE_SCAN_ITEMS) as usize;
    let (mut items, mut bytes, mut unaffordable) = (0usize, 0u64, false);
    let pairs = with_tx(ctx, |tx| {
        tx.scan(start, end, |key, value| {
            let size = (key.len() + if with_values { value.len() } else { 0 }) as u64;
            if items == max_items || (items > 0 && bytes + size > MAX_STORE_SCAN_BYTES) {
                return false;
            }
            if bytes + size > affordable_bytes {
                unaffordable = true;
                return false;
            }
            items += 1;
            bytes += size;
            true
        })
    })?;
    if unaffordable {
        ctx.set_fuel(0)?;
        return Err(Trap::OutOfFuel.into());
    }
    charge_bytes(ctx, bytes as usize)?;
    Ok(pairs)
}

/// Run `f` on the call's transaction; an I/O error aborts the call (and is
/// remembered, so the node stops instead of recording a result).
fn with_tx<R>(
    ctx: &mut Ctx<'_>,
    f: impl FnOnce(&mut Transaction) -> Result<R, super::StoreIoError>,
) -> wasmtime::Result<R> {
    let Some(tx) = ctx.data_mut().transaction() else {
        return Err(wasmtime::Error::msg(
            "the store was called outside apply, query or migrate",
        ));
    };
    f(tx).map_err(|error| wasmtime::Error::new(tx.fail(error)))
}

/// Charge one call plus `bytes` of data.
fn charge(ctx: &mut Ctx<'_>, bytes: usize) -> wasmtime::Result<()> {
    consume(
        ctx,
        STORE_FUEL_PER_CALL.saturating_add(STORE_FUEL_PER_BYTE.saturating_mul(bytes as u64)),
    )
}

/// Charge `bytes` of data returned.
fn charge_bytes(ctx: &mut Ctx<'_>, bytes: usize) -> wasmtime::Result<()> {
    consume(ctx, STORE_FUEL_PER_BYTE.saturating_mul(bytes as u64))
}

/// Take `fuel` from the call's budget, trapping with out-of-fuel (like
/// wasm code would) when it does not have that much.
fn consume(ctx: &mut Ctx<'_>, fuel: u64) -> wasmtime::Result<()> {
    let left = ctx.get_fuel()?;
    match left.checked_sub(fuel) {
        Some(rest) => {
            ctx.set_fuel(rest)?;
            Ok(())
        }
        None => {
            ctx.set_fuel(0)?;
            Err(Trap::OutOfFuel.into())
        }
    }
}

fn store_error(refusal: Refusal) -> StoreError {
    match refusal {
        Refusal::KeyTooLarge(len) => StoreError::KeyTooLarge(len),
        Refusal::ValueTooLarge(len) => StoreError::ValueTooLarge(len),
        Refusal::WriteSetTooLarge => StoreError::WriteSetTooLarge,
        Refusal::ReadOnly => StoreError::ReadOnly,
    }
}
