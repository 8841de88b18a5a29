//! Faults the cluster must survive or catch on loopback: bad input,
//! a full disk, power loss, a replica whose state drifts, a checker that must catch a broken
//! cluster, hostile guests on a cluster.
//!
//! One test binary per topic; a new test file is one `mod` line here.

#[path = "../common/mod.rs"]
mod common;

mod t40_bad_input;
mod t45_disk_full;
mod t46_power_loss;
mod t47_power_loss_cluster;
mod t48_disk_faults;
mod t58_divergence;
mod t59_checker_can_fail;
mod t90_hostile_cluster;
