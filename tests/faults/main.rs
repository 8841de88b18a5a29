//! Faults the cluster must survive or catch on loopback: bad input,
//! unauthenticated and abusive API clients, a full disk, a damaged log, power loss,
//! a replica whose state drifts, a checker that must catch a broken cluster, hostile
//! guests on a cluster.
//!
//! One test binary per topic; a new test file is one `mod` line here.

#[path = "../common/mod.rs"]
mod common;

mod t40_bad_input;
mod t45_disk_full;
mod t46_damaged_log;
mod t47_api_auth;
mod t48_api_limits;
mod t52_power_loss;
mod t53_power_loss_cluster;
mod t54_disk_faults;
mod t58_divergence;
mod t59_checker_can_fail;
mod t90_hostile_cluster;
mod t91_cas_linearizable;
