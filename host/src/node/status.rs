//! The status report of a node, as served by the API and printed by the CLI:
//! defined in the client crate, which reads it.

pub use iroh_raft_client::status::{GuestStatus, MemberStatus, NodeStatus};
