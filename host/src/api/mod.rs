//! The client-facing API: an HTTP/JSON server in front of a [`NodeHandle`]
//! and the blocking client the CLI uses.
//!
//! The API talks to the node only through its cloneable handle.
//!
//! [`NodeHandle`]: crate::node::NodeHandle

pub mod client;
pub mod guard;
pub mod server;
pub mod types;
pub mod upgrades;

pub use client::{ApiClient, ApiClientError, DEFAULT_API_URL};
pub use guard::ApiAccess;
pub use server::{ServeHandle, router, router_with, serve, serve_with};
pub use types::{
    AddMemberRequest, ErrorBody, ErrorInfo, Output, ProposeResponse, QueryResponse,
    TransferLeaderRequest, TransferLeaderResponse,
};
