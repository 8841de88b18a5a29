//! Jepsen-style: a real cluster of `raft-host` processes, each in its own
//! network namespace, under a seeded schedule of real faults (SIGKILL and
//! restart, SIGSTOP/SIGCONT, rolling restarts, partitions, one-way drops,
//! slow and lossy links) while concurrent clients put, delete and get keys
//! through different nodes. At the end: the recorded history must be
//! linearizable, no acknowledged write lost, every replica the same, and the
//! cluster must make progress within a bound after healing. See
//! `tests/common/jepsen` for how, and its knobs (`SEED`, `JEPSEN_SECONDS`,
//! `JEPSEN_NODES`, ...).
//!
//! This short run is part of the normal test suite; `make jepsen-soak` runs
//! the same test for an hour on five nodes. It needs root (network
//! namespaces, nftables, tc); `IROH_RAFT_SKIP_NETNS=1` skips it knowingly.

use crate::common::jepsen::{self, Config};
use crate::common::netns;

/// How long the nemesis runs in the normal test suite (it also runs until
/// every fault kind was injected once).
const CI_SECONDS: u64 = 60;

#[test]
fn t92_linearizable_under_faults() {
    if let Some(reason) = netns::skip_reason() {
        eprintln!("{reason}");
        return;
    }
    let summary = jepsen::run(&Config::from_env(CI_SECONDS));
    println!("{summary}");
}
