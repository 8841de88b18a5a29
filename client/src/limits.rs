//! Every bound of the clients, named.

use std::time::Duration;

/// How long a client waits for one call (the node gives up after its own
/// `DEFAULT_REQUEST_TIMEOUT`, which is shorter).
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a client waits for calls that may take minutes (adding a
/// voter that must catch up first, taking or downloading a snapshot,
/// upgrades).
pub const LONG_CLIENT_TIMEOUT: Duration = Duration::from_secs(330);
/// Largest response body a client reads (JSON answers; a watch line).
pub const MAX_RESPONSE_BYTES: u64 = 64 * 1024 * 1024;
/// Largest snapshot file a client downloads (the node's own cap on
/// snapshot files is the same, checked at compile time in the node).
pub const MAX_DOWNLOAD_BYTES: u64 = 8 * 1024 * 1024 * 1024;
/// How long asking an endpoint for its Raft id (to follow a leader hint)
/// may take before it is skipped.
pub const ID_PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// First pause after every endpoint of a list failed once; doubled after
/// each further round, up to [`MAX_RETRY_BACKOFF`].
pub const RETRY_BACKOFF: Duration = Duration::from_millis(100);
/// Longest pause between rounds of retries.
pub const MAX_RETRY_BACKOFF: Duration = Duration::from_secs(2);
/// Attempts one call makes per endpoint of a list, by default (a list of
/// three tries at most twelve times, about four rounds: long enough to
/// ride out an election).
pub const ATTEMPTS_PER_ENDPOINT: usize = 4;
/// A watch that hears nothing (not even the node's `progress`, sent every
/// ~10 s when idle) for this long takes its connection for dead and
/// reconnects.
pub const WATCH_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Failed (re)connects in a row after which a watch gives up.
pub const MAX_WATCH_RECONNECTS: usize = 20;
