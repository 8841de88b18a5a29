//! Guest timers: a store-backed guest that keeps a due time in its timer
//! key ([`crate::wasm::kv::TIMER_KEY`]) is called once the leader's clock
//! passes it, through an empty command the leader appends. Every replica
//! applies that entry with the leader's stamp, so what the guest does then
//! (expire leases, say) happens at the same index everywhere, whatever
//! each node's own clock reads.

use crate::limits::GUEST_TIMER_RETRY_INTERVAL;
use std::time::Instant;

use raft::StateRole;

use super::NodeCore;
use crate::node::envelope;
use crate::storage::GuestTimer;

/// The guest's timer as the leader follows it.
#[derive(Debug, Default)]
pub(super) struct TimerCalls {
    timer: GuestTimer,
    /// The due time last called for, when, and the entry that carries it.
    last: Option<LastCall>,
}

#[derive(Debug, Clone, Copy)]
struct LastCall {
    due_ms: u64,
    at: Instant,
    index: u64,
}

impl TimerCalls {
    pub(super) fn new(timer: GuestTimer) -> Self {
        TimerCalls { timer, last: None }
    }
}

impl NodeCore {
    /// On the leader, append an empty command when the guest's timer is
    /// due. Once per due time: again only after the last call committed
    /// without the timer moving and [`GUEST_TIMER_RETRY_INTERVAL`] passed
    /// (a guest that never moves it costs one entry a second, not one a
    /// tick).
    pub(super) fn call_guest_timer_if_due(&mut self, now: Instant, now_ms: u64) {
        let Some(due_ms) = self.timers.timer.due_ms() else {
            return;
        };
        if self.raw.raft.state != StateRole::Leader || now_ms < due_ms {
            return;
        }
        if let Some(last) = self.timers.last
            && last.due_ms == due_ms
            && (last.index > self.raw.raft.raft_log.committed
                || now.duration_since(last.at) < GUEST_TIMER_RETRY_INTERVAL)
        {
            return;
        }
        if self.admission.check().is_err() {
            return;
        }
        let stamp = self.stamp(now_ms);
        if let Ok((index, _)) = self.append_proposal(envelope::encode_command(stamp, None, &[])) {
            tracing::debug!(index, due_ms, "called the guest's timer");
            self.timers.last = Some(LastCall {
                due_ms,
                at: now,
                index,
            });
        }
    }
}
