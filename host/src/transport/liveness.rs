//! Connections that lead to a peer's dead process.
//!
//! A node keeps one outgoing connection per peer ([`PeerConnection`]). When
//! the peer's process dies and a new one starts, that connection leads
//! nowhere, yet it looks open until a lane's
//! [`ANSWER_TIMEOUT`](crate::limits::ANSWER_TIMEOUT) or QUIC's
//! idle timeout: for seconds, the votes, appends and forwarded writes sent
//! on it vanish. (The failover bench measured it: a write through a
//! follower waited 2.2 s when the new leader was a node killed and
//! restarted a few seconds before, because the follower's connection to it
//! still led to its old process.)
//!
//! A restarted peer dials in, so a connection a peer opens to this node is
//! a hint: the connection held to that peer is asked for a heartbeat, and
//! one that does not answer within [`probe_timeout`] is closed. Its streams
//! fail at once (a forwarded write's outcome is then settled from the log,
//! as after any lost connection) and the next send dials the new process.
//! A node that starts greets every member for the same reason, so each one
//! drops its connection to the old process before it needs it.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use iroh::endpoint::{Connection, PathId, VarInt};

use super::directory::PeerDirectory;
use super::message::{Heartbeat, WireMessage};
use super::net::ConnectionPool;
use super::sender::{self, PeerConnection};
use crate::limits::{PEER_PROBE_MIN_TIMEOUT, PEER_PROBE_RTTS};

/// QUIC close code of a connection closed because it did not answer a
/// liveness probe (its peer most likely restarted).
pub const CLOSE_UNANSWERED_PROBE: u32 = 408;

/// How long a held connection with round trip `rtt` may take to answer a
/// heartbeat: [`PEER_PROBE_RTTS`] round trips, at least
/// [`PEER_PROBE_MIN_TIMEOUT`].
pub fn probe_timeout(rtt: Option<Duration>) -> Duration {
    rtt.map_or(PEER_PROBE_MIN_TIMEOUT, |rtt| {
        rtt.saturating_mul(PEER_PROBE_RTTS)
            .max(PEER_PROBE_MIN_TIMEOUT)
    })
}

/// Peer `raft_id` dialed this node: check, in the background, the
/// connection this node holds to it (if any). One check per peer at a time.
pub(super) fn peer_dialed_in(pool: &ConnectionPool, raft_id: u64) {
    let Some(peer) = pool.existing(raft_id) else {
        return;
    };
    if peer.probing.swap(true, Ordering::AcqRel) {
        return;
    }
    tokio::spawn(async move {
        if let Some(held) = peer.held().await {
            check(&peer, held).await;
        }
        peer.probing.store(false, Ordering::Release);
    });
}

/// Dial every member but `self_id`, so a member still holding a connection
/// to this node's previous process checks it now (see the module docs).
/// Failures only log: the node dials again whenever it has something to
/// send.
pub(super) fn greet_members(pool: &ConnectionPool, directory: &PeerDirectory, self_id: u64) {
    for raft_id in directory.members().into_keys().filter(|id| *id != self_id) {
        let (peer, _) = pool.get(raft_id);
        tokio::spawn(async move {
            if let Err(error) = peer.get().await {
                tracing::debug!(peer = raft_id, %error, "could not greet a member at start");
            }
        });
    }
}

/// Ask `held` for a heartbeat; close it if no answer comes in time.
async fn check(peer: &Arc<PeerConnection>, held: Connection) {
    let timeout = probe_timeout(held.rtt(PathId::ZERO));
    let heartbeat = WireMessage::Heartbeat(Heartbeat {
        sequence: held.stable_id() as u64,
    });
    let answered = tokio::time::timeout(timeout, async {
        let (mut send, mut recv) = held.open_bi().await.map_err(|e| e.to_string())?;
        let answer = sender::exchange(&mut send, &mut recv, heartbeat, timeout).await;
        let _ = send.finish();
        answer
    })
    .await
    .unwrap_or_else(|_| Err("no answer in time".into()));
    match answered {
        // Any answer (even an error frame) comes from a live process.
        Ok(_) => {}
        Err(error) => {
            tracing::info!(peer = peer.raft_id(), %error, timeout_ms = timeout.as_millis() as u64,
                "the connection to a peer that dialed in again did not answer a heartbeat; \
                 closing it (the peer restarted?)");
            held.close(
                VarInt::from_u32(CLOSE_UNANSWERED_PROBE),
                b"no answer to a liveness probe",
            );
            peer.invalidate(&held).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_waits_several_round_trips_but_never_less_than_the_floor() {
        assert_eq!(probe_timeout(None), PEER_PROBE_MIN_TIMEOUT);
        assert_eq!(
            probe_timeout(Some(Duration::from_micros(300))),
            PEER_PROBE_MIN_TIMEOUT,
            "loopback round trips get the floor"
        );
        let far = Duration::from_millis(120);
        assert_eq!(probe_timeout(Some(far)), far * PEER_PROBE_RTTS);
        assert!(probe_timeout(Some(Duration::MAX)) >= PEER_PROBE_MIN_TIMEOUT);
    }
}
