//! Faults on a real network: `raft-host` processes in network namespaces
//! (`common::netns`), cut off, partitioned, slowed and killed; the
//! Jepsen-style test and the regressions it found. These need root (CI
//! runs as root); `IROH_RAFT_SKIP_NETNS=1` skips them knowingly. They take
//! turns (one network per process at a time, see `TestNet`), so each has
//! the machine's timing to itself as when it was a binary of its own.
//!
//! One test binary per topic; a new test file is one `mod` line here.

#[path = "../common/mod.rs"]
mod common;

mod t70_partition;
mod t92_jepsen;
mod t93_stale_leader_proposal;
mod t94_watch_partition;
