//! The deterministic cluster simulation: thousands of seeded runs with
//! `make simulate`, a few hundred in `make test`.
//!
//! One test binary per topic; a new test file is one `mod` line here.

#[path = "../common/mod.rs"]
mod common;

mod t15_simulation;
