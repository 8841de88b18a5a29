//! Which endpoint a call tries next: the failover policy, without I/O (the
//! async and the blocking client both drive it).
//!
//! A call starts at the endpoint that answered last. When an attempt
//! fails, the call's plan decides:
//!
//! - **Stop** with that error when the call may not be repeated: a
//!   non-idempotent call (a proposal, a membership
//!   change, an upgrade...) is only sent again when the first try provably
//!   did not reach a node (the connection could not be opened) or a node
//!   refused it before doing anything (`not_leader`, `overloaded`,
//!   `too_many_connections`). After a timeout or a connection lost
//!   mid-call the node may have applied it: retrying could apply it twice,
//!   so the error goes back to the caller. A read
//!   is tried again on any transport error and on the errors of a node
//!   that cannot serve (`node_stopped`, `timeout`, `diverged`, ...).
//!   A client with one endpoint never retries: it behaves as a plain
//!   HTTP call.
//! - **Try** another endpoint: for `not_leader` with a `leader_hint`, the
//!   endpoint whose node has that Raft id (if no endpoint's id is
//!   known yet, the client first asks their `/v1/status`);
//!   otherwise the next one in the list. After each round through the
//!   whole list it pauses ([`RETRY_BACKOFF`], doubling up to
//!   [`MAX_RETRY_BACKOFF`]), e.g. while the cluster elects a leader.
//! - **Give up** with [`Error::Unavailable`] (every attempt's error) once
//!   the attempts are spent ([`ATTEMPTS_PER_ENDPOINT`] per endpoint by
//!   default).

use std::time::Duration;

use crate::error::{Attempt, Error};
use crate::limits::{ATTEMPTS_PER_ENDPOINT, MAX_RETRY_BACKOFF, RETRY_BACKOFF};

/// Whether a call may be sent again after an attempt whose fate is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Safety {
    /// Reads: repeating them changes nothing.
    Repeatable,
    /// Writes: sent again only when provably not received or refused.
    Once,
}

/// How a client retries across its endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts of one call over all endpoints; `None`:
    /// [`ATTEMPTS_PER_ENDPOINT`] per endpoint. Ignored with one endpoint
    /// (one attempt).
    pub max_attempts: Option<usize>,
    /// The pause after the first round through the list; doubles after
    /// each further round, up to `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: None,
            backoff: RETRY_BACKOFF,
            max_backoff: MAX_RETRY_BACKOFF,
        }
    }
}

/// What the driver does next.
#[derive(Debug)]
pub(crate) enum Step {
    /// Send the call to this endpoint, after this pause.
    Try {
        endpoint: usize,
        after: Option<Duration>,
    },
    /// Learn the Raft ids of the endpoints not known yet (their
    /// `/v1/status`), then call [`Plan::located`].
    Locate { leader: u64 },
    /// Return this error.
    Stop(Error),
}

/// The retry state of one call.
#[derive(Debug)]
pub(crate) struct Plan {
    endpoints: usize,
    safety: Safety,
    policy: RetryPolicy,
    attempts_left: usize,
    /// Attempts since the last pause.
    in_round: usize,
    rounds: u32,
    /// The endpoint of the last failed attempt.
    last: usize,
    failures: Vec<Attempt>,
}

impl Plan {
    pub(crate) fn new(endpoints: usize, safety: Safety, policy: RetryPolicy) -> Self {
        let attempts = match endpoints {
            0 | 1 => 1,
            n => policy
                .max_attempts
                .unwrap_or(n * ATTEMPTS_PER_ENDPOINT)
                .max(1),
        };
        Plan {
            endpoints,
            safety,
            policy,
            attempts_left: attempts,
            in_round: 0,
            rounds: 0,
            last: 0,
            failures: Vec::new(),
        }
    }

    /// The attempt at `endpoint` (`url`) failed with `error`; `of_id` maps a
    /// Raft id to the endpoint known to have it.
    pub(crate) fn failed(
        &mut self,
        endpoint: usize,
        url: &str,
        error: Error,
        of_id: impl Fn(u64) -> Option<usize>,
    ) -> Step {
        self.attempts_left = self.attempts_left.saturating_sub(1);
        self.in_round += 1;
        self.last = endpoint;
        if self.endpoints <= 1 || !self.may_retry(&error) {
            return Step::Stop(error);
        }
        let hint = error.leader_hint();
        self.failures.push(Attempt {
            url: url.to_string(),
            error: error.to_string(),
        });
        if self.attempts_left == 0 {
            return Step::Stop(Error::Unavailable {
                attempts: std::mem::take(&mut self.failures),
            });
        }
        match hint {
            Some(leader) => match of_id(leader) {
                Some(next) if next != endpoint => self.go(next),
                Some(_) => self.go(self.after(endpoint)),
                None => Step::Locate { leader },
            },
            None => self.go(self.after(endpoint)),
        }
    }

    /// After [`Step::Locate`]: go to the leader's endpoint if it is now
    /// known, else on down the list.
    pub(crate) fn located(&mut self, leader: Option<usize>) -> Step {
        match leader {
            Some(next) if next != self.last => self.go(next),
            _ => self.go(self.after(self.last)),
        }
    }

    fn after(&self, endpoint: usize) -> usize {
        (endpoint + 1) % self.endpoints
    }

    fn go(&mut self, endpoint: usize) -> Step {
        let after = if self.in_round >= self.endpoints {
            self.in_round = 0;
            let pause = self
                .policy
                .backoff
                .saturating_mul(1 << self.rounds.min(16))
                .min(self.policy.max_backoff);
            self.rounds += 1;
            Some(pause)
        } else {
            None
        };
        Step::Try { endpoint, after }
    }

    fn may_retry(&self, error: &Error) -> bool {
        let refused = matches!(
            error.code(),
            Some("not_leader" | "overloaded" | "too_many_connections")
        );
        match (self.safety, error) {
            (_, Error::Transport { connect: true, .. }) => true,
            (_, Error::Api(_)) if refused => true,
            (Safety::Repeatable, Error::Transport { .. }) => true,
            (Safety::Repeatable, Error::Api(info)) => matches!(
                info.code.as_str(),
                "node_stopped" | "timeout" | "diverged" | "applier_stalled" | "guest_stalled"
            ),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::ErrorInfo;

    fn refused(url: &str) -> Error {
        Error::transport(url, "connection refused", true)
    }

    fn lost(url: &str) -> Error {
        Error::transport(url, "timeout", false)
    }

    fn not_leader(hint: Option<u64>) -> Error {
        let mut info = ErrorInfo::new("not_leader", "not the leader");
        info.leader_hint = hint;
        Error::Api(info)
    }

    fn next(step: Step) -> (usize, Option<Duration>) {
        match step {
            Step::Try { endpoint, after } => (endpoint, after),
            other => panic!("expected a try, got {other:?}"),
        }
    }

    #[test]
    fn one_endpoint_never_retries() {
        let mut plan = Plan::new(1, Safety::Repeatable, RetryPolicy::default());
        assert!(matches!(
            plan.failed(0, "a", refused("a"), |_| None),
            Step::Stop(Error::Transport { .. })
        ));
    }

    #[test]
    fn a_write_is_repeated_only_when_provably_not_applied() {
        let mut plan = Plan::new(3, Safety::Once, RetryPolicy::default());
        assert_eq!(next(plan.failed(0, "a", refused("a"), |_| None)), (1, None));
        assert_eq!(
            next(plan.failed(1, "b", not_leader(None), |_| None)),
            (2, None)
        );
        // A timeout: the node may have applied it.
        assert!(matches!(
            plan.failed(2, "c", lost("c"), |_| None),
            Step::Stop(Error::Transport { connect: false, .. })
        ));
        let mut plan = Plan::new(3, Safety::Once, RetryPolicy::default());
        assert!(matches!(
            plan.failed(
                0,
                "a",
                Error::Api(ErrorInfo::new("outcome_unknown", "?")),
                |_| None
            ),
            Step::Stop(Error::Api(_))
        ));
    }

    #[test]
    fn a_read_is_repeated_after_any_transport_error() {
        let mut plan = Plan::new(2, Safety::Repeatable, RetryPolicy::default());
        assert_eq!(next(plan.failed(0, "a", lost("a"), |_| None)), (1, None));
        assert!(matches!(
            plan.failed(
                1,
                "b",
                Error::Api(ErrorInfo::new("guest_rejected", "no")),
                |_| None
            ),
            Step::Stop(Error::Api(_))
        ));
    }

    #[test]
    fn leader_hints_are_followed_or_located() {
        let mut plan = Plan::new(3, Safety::Once, RetryPolicy::default());
        assert_eq!(
            next(plan.failed(0, "a", not_leader(Some(7)), |id| (id == 7).then_some(2))),
            (2, None)
        );
        let mut plan = Plan::new(3, Safety::Once, RetryPolicy::default());
        assert!(matches!(
            plan.failed(0, "a", not_leader(Some(7)), |_| None),
            Step::Locate { leader: 7 }
        ));
        assert_eq!(next(plan.located(Some(2))), (2, None));
        let mut plan = Plan::new(3, Safety::Once, RetryPolicy::default());
        assert!(matches!(
            plan.failed(1, "b", not_leader(Some(7)), |_| None),
            Step::Locate { .. }
        ));
        assert_eq!(next(plan.located(None)), (2, None), "on down the list");
    }

    #[test]
    fn rounds_pause_and_attempts_are_bounded() {
        let policy = RetryPolicy {
            max_attempts: Some(5),
            backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(15),
        };
        let mut plan = Plan::new(2, Safety::Once, policy);
        assert_eq!(next(plan.failed(0, "a", refused("a"), |_| None)), (1, None));
        assert_eq!(
            next(plan.failed(1, "b", refused("b"), |_| None)),
            (0, Some(Duration::from_millis(10)))
        );
        assert_eq!(next(plan.failed(0, "a", refused("a"), |_| None)), (1, None));
        assert_eq!(
            next(plan.failed(1, "b", refused("b"), |_| None)),
            (0, Some(Duration::from_millis(15))),
            "capped"
        );
        match plan.failed(0, "a", refused("a"), |_| None) {
            Step::Stop(Error::Unavailable { attempts }) => {
                assert_eq!(attempts.len(), 5);
                assert_eq!(attempts[1].url, "b");
            }
            other => panic!("expected unavailable, got {other:?}"),
        }
    }
}
