//! Clusters doing their job: a single library node, the `raft-host`
//! process, three-node clusters, the iroh-raft/0 protocol, snapshots and
//! membership, live upgrades, metrics.
//!
//! One test binary per topic; a new test file is one `mod` line here.

#[path = "../common/mod.rs"]
mod common;

mod t10_single_node;
mod t20_process;
mod t29_cluster_limits;
mod t50_cluster;
mod t51_forward_failover;
mod t55_protocol;
mod t56_snapshots_membership;
mod t57_upgrades;
mod t60_metrics;
mod t61_store_cluster;
mod t62_failover_exactly_once;
mod t63_bench;
mod t64_kv_cas_leases;
mod t65_dashboard;
mod t66_client;
mod t67_cli;
mod t68_watch;
mod t69_ops;
mod t71_cli_output;
