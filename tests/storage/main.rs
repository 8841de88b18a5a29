//! The storage layer on its own: `SledStorage` against raft-rs's `Storage`
//! contract and our durability rules. It needs no node, so it does not
//! declare the shared fixtures (`tests/common`).
//!
//! One test binary per topic; a new test file is one `mod` line here.

mod storage_contract;
