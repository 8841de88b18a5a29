//! The client-facing API: an HTTP/JSON server in front of a [`NodeHandle`]
//! and the names of the clients (which live in the `iroh_raft_client` crate).
//!
//! The API talks to the node only through its cloneable handle. A request
//! travels: [`listener`] (connection cap, TLS, header timeout) →
//! [`service`] (`POST /v1/propose` straight on, the rest by the router) → [`guard`]
//! (cross-site requests) → [`auth`] (bearer token, the role [`policy`]
//! names for the route) → [`admission`] (the body, within its size and
//! time) → a handler in [`server`] or [`upgrades`]. How it is served is an
//! [`ApiConfig`].
//!
//! [`NodeHandle`]: crate::node::NodeHandle

pub mod admission;
pub mod auth;
pub mod client;
pub mod config;
pub mod gate;
pub mod guard;
pub mod listener;
pub mod policy;
pub mod secret;
pub mod server;
pub mod service;
pub mod stats;
pub mod tls;
pub mod types;
pub mod ui;
pub mod upgrades;
pub mod watch;

pub use auth::ApiTokens;
pub use client::{ApiClient, ApiClientError, ClientOptions, DEFAULT_API_URL};
pub use config::{ApiConfig, ApiLimits, ExposureError};
pub use guard::ApiAccess;
pub use policy::Role;
pub use secret::CredentialError;
pub use server::{ServeError, ServeHandle, router, router_with, serve, serve_with};
pub use tls::ApiTls;
pub use types::{
    AddMemberRequest, ErrorBody, ErrorInfo, Output, ProposeResponse, QueryResponse,
    TransferLeaderRequest, TransferLeaderResponse, WatchEvent, WatchLine, WatchOp,
};
