//! Guests: hostile guests on one node, `raft-host guest check`, the kv
//! guest in Rust, Python and JavaScript, and the polyglot guests in
//! clusters.
//!
//! One test binary per topic; a new test file is one `mod` line here.

#[path = "../common/mod.rs"]
mod common;
mod polyglot;

mod t30_hostile_guests;
mod t31_store_guests;
mod t32_instance_history;
mod t35_state_past_the_memory_cap;
mod t80_guest_check;
mod t81_guest_languages;
mod t82_polyglot_cluster;
mod t83_guest_new;
mod t84_guest_run;
mod t85_guest_examples;
