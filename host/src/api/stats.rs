//! What the API refused and why, for `/metrics`: an operator sees a
//! client with a wrong token, a flood of connections or slow bodies
//! without reading logs.
//!
//! - `iroh_raft_api_connections` (gauge): connections served now.
//! - `iroh_raft_api_refused_total{reason}` (counter): refusals, `reason`
//!   one of [`Refused::name`].

use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;

use crate::node::metrics::collect;

/// Why the API refused a connection or a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Over the connection cap, answered `503`.
    TooManyConnections,
    /// Over the cap and the refusing connections too: closed unanswered.
    ClosedOverCap,
    /// `401`.
    Unauthenticated,
    /// `403` for the role.
    InsufficientRole,
    /// `408`.
    BodyTimeout,
    /// `413`.
    BodyTooLarge,
    /// `503` for uploads.
    TooManyUploads,
}

const ALL: [Refused; 7] = [
    Refused::TooManyConnections,
    Refused::ClosedOverCap,
    Refused::Unauthenticated,
    Refused::InsufficientRole,
    Refused::BodyTimeout,
    Refused::BodyTooLarge,
    Refused::TooManyUploads,
];

impl Refused {
    /// The `reason` label.
    pub fn name(self) -> &'static str {
        match self {
            Refused::TooManyConnections => "too_many_connections",
            Refused::ClosedOverCap => "closed_over_cap",
            Refused::Unauthenticated => "unauthenticated",
            Refused::InsufficientRole => "insufficient_role",
            Refused::BodyTimeout => "body_timeout",
            Refused::BodyTooLarge => "body_too_large",
            Refused::TooManyUploads => "too_many_uploads",
        }
    }
}

/// The counters, shared by the listener and the middlewares of one API.
#[derive(Debug, Default)]
pub struct ApiStats {
    connections: AtomicU64,
    refused: [AtomicU64; ALL.len()],
}

impl ApiStats {
    pub fn refused(&self, why: Refused) {
        self.refused[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn refused_count(&self, why: Refused) -> u64 {
        self.refused[why as usize].load(Ordering::Relaxed)
    }

    /// A connection is served until the guard drops.
    pub fn connection(self: &std::sync::Arc<Self>) -> ConnectionGuard {
        self.connections.fetch_add(1, Ordering::Relaxed);
        ConnectionGuard(self.clone())
    }
}

/// Read at each scrape of `/metrics`.
impl Collector for ApiStats {
    fn encode(&self, mut encoder: DescriptorEncoder) -> collect::Written {
        collect::gauge(
            &mut encoder,
            "iroh_raft_api_connections",
            "Client API connections served now.",
            self.connections.load(Ordering::Relaxed),
        )?;
        collect::labelled_counters(
            &mut encoder,
            "iroh_raft_api_refused",
            "Client API connections and requests refused, by reason.",
            ALL.map(|why| ([("reason", why.name())], self.refused_count(why))),
        )
    }
}

/// Counts one served connection while it lives.
#[derive(Debug)]
pub struct ConnectionGuard(std::sync::Arc<ApiStats>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_render_per_reason() {
        let stats = std::sync::Arc::new(ApiStats::default());
        stats.refused(Refused::BodyTimeout);
        stats.refused(Refused::BodyTimeout);
        let guard = stats.connection();
        let render = |stats: &std::sync::Arc<ApiStats>| {
            let mut registry = prometheus_client::registry::Registry::default();
            registry.register_collector(Box::new(stats.clone()));
            crate::node::metrics::encode_text(&registry)
        };
        let text = render(&stats);
        assert!(text.contains("iroh_raft_api_connections 1\n"), "{text}");
        assert!(
            text.contains("iroh_raft_api_refused_total{reason=\"body_timeout\"} 2\n"),
            "{text}"
        );
        drop(guard);
        assert!(render(&stats).contains("iroh_raft_api_connections 0\n"));
    }
}
