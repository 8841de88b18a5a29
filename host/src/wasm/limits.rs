//! Resource limits for guests, and the limiter that enforces the memory cap.
//!
//! Every limit is deterministic: it depends only on what the guest does, never
//! on wall-clock time or on the machine, so every replica stops a runaway
//! guest at exactly the same instruction.

use crate::limits::{
    DEFAULT_APPLY_FUEL, DEFAULT_MAINTENANCE_FUEL, DEFAULT_MEMORY_LIMIT_BYTES, DEFAULT_QUERY_FUEL,
    MAX_CALL_FUEL, MAX_INSTANCES, MAX_MEMORIES, MAX_MEMORY_LIMIT_BYTES, MAX_TABLE_ELEMENTS,
    MAX_TABLES,
};
use wasmtime::ResourceLimiter;

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

impl GuestLimits {
    /// Whether every limit is positive and within its bound
    /// ([`MAX_CALL_FUEL`], [`MAX_MEMORY_LIMIT_BYTES`]); the error names
    /// the first that is not.
    pub fn check(&self) -> Result<(), String> {
        check_limit("apply fuel", self.apply_fuel, MAX_CALL_FUEL)?;
        check_limit("query fuel", self.query_fuel, MAX_CALL_FUEL)?;
        check_limit(
            "the memory limit (bytes)",
            self.memory_limit_bytes,
            MAX_MEMORY_LIMIT_BYTES,
        )
    }
}

/// `value` of the limit `what` is in `1..=max`.
pub fn check_limit(what: &str, value: u64, max: u64) -> Result<(), String> {
    if value == 0 || value > max {
        return Err(format!("{what} must be 1 to {max}, not {value}"));
    }
    Ok(())
}

/// Raised (as a trap) when a guest grows its memory beyond the cap; the
/// runtime recognizes it to report [`super::GuestFailure::MemoryLimit`].
#[derive(Debug, thiserror::Error)]
#[error("guest memory limit of {limit_bytes} bytes exceeded")]
pub struct MemoryLimitExceeded {
    pub limit_bytes: u64,
}

/// Raised (as a trap) when this machine failed to provide memory the guest
/// was entitled to (an `mmap`/`mprotect` failure). Local, so never a
/// replicated result: the instance reports it ([`MemoryLimiter::take_host_fault`])
/// and the node stops applying instead of recording a failure the other
/// replicas would not.
#[derive(Debug, thiserror::Error)]
#[error("the host could not provide guest memory: {reason}")]
pub struct HostMemoryFault {
    pub reason: String,
}

/// Enforces [`GuestLimits::memory_limit_bytes`] over all memories of one
/// instance. A growth past the cap traps instead of returning -1, so the
/// failure is a clean, recognizable error rather than whatever the guest's
/// allocator does when `memory.grow` fails.
#[derive(Debug)]
pub struct MemoryLimiter {
    limit_bytes: u64,
    used_bytes: u64,
    /// Set when the operating system refused memory within the cap.
    host_fault: Option<String>,
}

impl MemoryLimiter {
    pub fn new(limit_bytes: u64) -> Self {
        MemoryLimiter {
            limit_bytes,
            used_bytes: 0,
            host_fault: None,
        }
    }

    /// The host's failure to provide memory since the last call, if any.
    pub fn take_host_fault(&mut self) -> Option<String> {
        self.host_fault.take()
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

    /// Growth failed after [`Self::memory_growing`] allowed it (or before,
    /// past what the memory's type can represent). Failures wasmtime
    /// decides from the module (its declared maximum, its page size) are
    /// the same on every replica: `memory.grow` returns -1 as usual. An
    /// operating-system error (the chain holds an errno) is this machine's
    /// fault and must not become the entry's result.
    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        let from_the_host = error
            .chain()
            .any(|cause| cause.is::<std::io::Error>() || cause.is::<rustix::io::Errno>());
        if !from_the_host {
            return Ok(());
        }
        let reason = format!("{error:#}");
        tracing::error!(%reason, "the host could not provide guest memory");
        self.host_fault = Some(reason.clone());
        Err(HostMemoryFault { reason }.into())
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
    fn only_an_operating_system_error_is_a_host_fault() {
        let mut limiter = MemoryLimiter::new(1 << 20);
        let module_limit = wasmtime::Error::msg("Memory maximum size exceeded");
        assert!(limiter.memory_grow_failed(module_limit).is_ok());
        assert_eq!(limiter.take_host_fault(), None);

        let mmap = wasmtime::Error::from(rustix::io::Errno::NOMEM).context("mprotect");
        let err = limiter
            .memory_grow_failed(mmap)
            .expect_err("an errno traps");
        assert!(err.downcast_ref::<HostMemoryFault>().is_some());
        let fault = limiter.take_host_fault().expect("recorded");
        assert!(fault.contains("mprotect"), "{fault}");
        assert_eq!(limiter.take_host_fault(), None, "taken once");
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
