//! Resource limits for guests, and the limiter that enforces the memory cap.
//!
//! Every limit is deterministic: it depends only on what the guest does, never
//! on wall-clock time or on the machine, so every replica stops a runaway
//! guest at exactly the same instruction.

use wasmtime::ResourceLimiter;

/// Fuel for one `apply`. Roughly one unit per wasm instruction: 1e9 is a few
/// hundred milliseconds of guest work, far more than any sane command needs.
pub const DEFAULT_APPLY_FUEL: u64 = 1_000_000_000;
/// Fuel for one `query`.
pub const DEFAULT_QUERY_FUEL: u64 = 1_000_000_000;
/// Fuel for `snapshot`, `restore`, `info` and instantiation: they walk the
/// whole state, so they get more.
pub const DEFAULT_MAINTENANCE_FUEL: u64 = 20_000_000_000;
/// Total linear memory a guest instance may use (all its memories together).
pub const DEFAULT_MEMORY_LIMIT_BYTES: u64 = 256 * 1024 * 1024;
/// Table elements per table; far above what real guests use.
pub const MAX_TABLE_ELEMENTS: usize = 1_000_000;
/// Core instances, tables and memories per component instance.
pub const MAX_INSTANCES: usize = 64;
pub const MAX_TABLES: usize = 64;
pub const MAX_MEMORIES: usize = 16;
/// Native stack the guest may use. Deep recursion traps at the same depth on
/// every replica running the same host build on the same architecture.
pub const DEFAULT_MAX_WASM_STACK_BYTES: usize = 1024 * 1024;
/// Largest component file the host loads.
pub const MAX_COMPONENT_BYTES: u64 = 128 * 1024 * 1024;
/// Longest line of guest stdout/stderr forwarded to the log; longer lines are
/// truncated so one write cannot make the host buffer without bound.
pub const MAX_GUEST_LOG_LINE_BYTES: usize = 4 * 1024;
/// Largest result of one `apply` or `query` (the bytes of an `ok`). A
/// larger one is the failure [`super::GuestFailure::ResultTooLarge`] on
/// every replica, rolled back like a trap. Without it a result's fate
/// depended on the path it took: a follower forwarding a proposal gets the
/// leader's answer in one frame of at most `MAX_FRAME_BYTES`, and a client
/// reads at most `MAX_RESPONSE_BYTES` of JSON, which holds a result twice
/// (text and base64) and escapes a control character in six bytes.
pub const MAX_RESULT_BYTES: usize = 4 * 1024 * 1024;
/// Largest message of an `err` from `apply` or `query`; a longer one is
/// [`super::GuestFailure::ResultTooLarge`] too. Smaller than results
/// because a forwarded failure travels as JSON, each byte escaped in up to
/// six, inside one frame; twice the largest command, so a message that
/// quotes the command it refuses still fits.
pub const MAX_ERROR_MESSAGE_BYTES: usize = 2 * 1024 * 1024;

// The answer carrying a result or a message fits a frame and a client
// response, however its bytes escape in JSON (see `MAX_RESULT_BYTES`).
const _: () = assert!(MAX_RESULT_BYTES * 2 <= crate::transport::codec::MAX_FRAME_BYTES);
const _: () = assert!(MAX_RESULT_BYTES as u64 * 8 <= crate::api::client::MAX_RESPONSE_BYTES);
const _: () = assert!(MAX_ERROR_MESSAGE_BYTES * 8 <= crate::transport::codec::MAX_FRAME_BYTES);

/// Per-guest resource settings. Every replica of a cluster must use the same
/// values, or a guest may succeed on one node and fail on another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestLimits {
    pub apply_fuel: u64,
    pub query_fuel: u64,
    pub maintenance_fuel: u64,
    pub memory_limit_bytes: u64,
}

impl Default for GuestLimits {
    fn default() -> Self {
        GuestLimits {
            apply_fuel: DEFAULT_APPLY_FUEL,
            query_fuel: DEFAULT_QUERY_FUEL,
            maintenance_fuel: DEFAULT_MAINTENANCE_FUEL,
            memory_limit_bytes: DEFAULT_MEMORY_LIMIT_BYTES,
        }
    }
}

/// Raised (as a trap) when a guest grows its memory beyond the cap; the
/// runtime recognizes it to report [`super::GuestFailure::MemoryLimit`].
#[derive(Debug, thiserror::Error)]
#[error("guest memory limit of {limit_bytes} bytes exceeded")]
pub struct MemoryLimitExceeded {
    pub limit_bytes: u64,
}

/// Enforces [`GuestLimits::memory_limit_bytes`] over all memories of one
/// instance. A growth past the cap traps instead of returning -1, so the
/// failure is a clean, recognizable error rather than whatever the guest's
/// allocator does when `memory.grow` fails.
#[derive(Debug)]
pub struct MemoryLimiter {
    limit_bytes: u64,
    used_bytes: u64,
}

impl MemoryLimiter {
    pub fn new(limit_bytes: u64) -> Self {
        MemoryLimiter {
            limit_bytes,
            used_bytes: 0,
        }
    }

    /// Linear memory currently held by the instance.
    pub fn used_bytes(&self) -> u64 {
        self.used_bytes
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let growth = (desired as u64).saturating_sub(current as u64);
        let total = self.used_bytes.saturating_add(growth);
        if total > self.limit_bytes {
            return Err(MemoryLimitExceeded {
                limit_bytes: self.limit_bytes,
            }
            .into());
        }
        self.used_bytes = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_limiter_counts_all_growth_and_refuses_past_the_cap() {
        let mut limiter = MemoryLimiter::new(100);
        assert!(limiter.memory_growing(0, 60, None).expect("under cap"));
        assert_eq!(limiter.used_bytes(), 60);
        // A second memory shares the same budget.
        let err = limiter
            .memory_growing(0, 50, None)
            .expect_err("over the shared cap");
        assert!(err.downcast_ref::<MemoryLimitExceeded>().is_some());
        assert_eq!(limiter.used_bytes(), 60, "a refused growth is not counted");
        assert!(
            limiter
                .memory_growing(60, 100, None)
                .expect("exactly the cap")
        );
    }

    #[test]
    fn table_growth_is_capped() {
        let mut limiter = MemoryLimiter::new(0);
        assert!(limiter.table_growing(0, 10, None).expect("ok"));
        assert!(
            !limiter
                .table_growing(0, MAX_TABLE_ELEMENTS + 1, None)
                .expect("ok")
        );
    }
}
