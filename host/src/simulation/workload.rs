//! The simulated clients: each sends one kv request at a time (puts,
//! deletes and reads of a few keys) to some node and records it, and what
//! came of it, in a linearizability history.
//!
//! | the node's answer | recorded as |
//! |---|---|
//! | the guest's `Ok` or `Err` | ok, with that reply |
//! | `not_leader`, `overloaded`, `proposal_dropped`, `empty_command` | fail: did not happen |
//! | a read's error of any kind | fail: a read changes nothing |
//! | any other error, the node crashed, no answer within [`CLIENT_TIMEOUT`] | unknown: maybe happened |

use std::time::Duration;

use tokio::sync::oneshot;

use super::rng::SimRng;
use crate::linearizability::{ClientId, History, OpId, Recorder, Reply};
use crate::node::applier::{Applied, QueryAnswer};
use crate::node::{ClientError, Consistency};
use crate::wasm::GuestFailure;

/// How long a client waits for an answer before it records "unknown" and
/// moves on (above the node's 5 s read-index timeout).
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(6);
/// Keys the clients contend on.
pub const KEYS: u64 = 4;
/// Longest pause between a client's requests.
pub const MAX_THINK_TIME_MS: u64 = 60;

/// A request a client sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub text: String,
    /// `None` for a write, proposed through the log.
    pub read: Option<Consistency>,
}

/// A request on its way.
#[derive(Debug)]
pub enum Waiting {
    Write(oneshot::Receiver<Result<Applied, ClientError>>),
    Read(oneshot::Receiver<Result<QueryAnswer, ClientError>>),
}

/// What happened to a request, as the client records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Reply(Reply),
    Failed,
    Unknown,
}

/// One client.
#[derive(Debug)]
pub struct Client {
    pub id: u64,
    /// The node it talks to next (the last leader hint it got).
    pub target: Option<u64>,
    pub outstanding: Option<Outstanding>,
}

/// The client's request in flight.
#[derive(Debug)]
pub struct Outstanding {
    pub op: OpId,
    pub node: u64,
    pub waiting: Waiting,
}

/// The clients and their history.
#[derive(Debug)]
pub struct Workload {
    pub clients: Vec<Client>,
    pub recorder: Recorder,
    next_value: u64,
    pub answers: AnswerCounts,
}

/// Tally of outcomes, for the report.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct AnswerCounts {
    pub ok: u64,
    pub failed: u64,
    pub unknown: u64,
}

impl Workload {
    pub fn new(clients: usize) -> Self {
        Workload {
            clients: (0..clients as u64)
                .map(|id| Client {
                    id,
                    target: None,
                    outstanding: None,
                })
                .collect(),
            recorder: Recorder::new(),
            next_value: 1,
            answers: AnswerCounts::default(),
        }
    }

    /// The next request: 45% puts, 10% deletes, 45% reads (a fifth of
    /// them lease reads).
    pub fn next_request(&mut self, rng: &mut SimRng) -> Request {
        let key = format!("k{}", rng.range(0, KEYS));
        let roll = rng.range(0, 100);
        if roll < 45 {
            let value = self.next_value;
            self.next_value += 1;
            Request {
                text: format!("put {key} v{value}"),
                read: None,
            }
        } else if roll < 55 {
            Request {
                text: format!("delete {key}"),
                read: None,
            }
        } else {
            let consistency = if roll < 64 {
                Consistency::Lease
            } else {
                Consistency::Linearizable
            };
            Request {
                text: format!("get {key}"),
                read: Some(consistency),
            }
        }
    }

    /// Record the outcome of client `client`'s outstanding request.
    pub fn finish(&mut self, client: usize, answer: &Answer) {
        let Some(outstanding) = self.clients[client].outstanding.take() else {
            return;
        };
        match answer {
            Answer::Reply(reply) => {
                self.answers.ok += 1;
                self.recorder.complete(outstanding.op, reply.clone());
            }
            Answer::Failed => {
                self.answers.failed += 1;
                self.recorder.fail(outstanding.op);
            }
            Answer::Unknown => {
                self.answers.unknown += 1;
                self.recorder.timeout(outstanding.op);
            }
        }
    }

    /// Record that `client` sends `request` now.
    pub fn invoke(&mut self, client: usize, request: &Request) -> OpId {
        self.recorder
            .invoke(ClientId(self.clients[client].id), request.text.clone())
    }

    pub fn history(&self) -> History {
        self.recorder.history()
    }
}

/// The answer that has arrived for `waiting`, if one has (a dropped reply
/// means the node crashed or stopped).
pub fn poll(waiting: &mut Waiting) -> Option<(Answer, Option<u64>)> {
    match waiting {
        Waiting::Write(rx) => match rx.try_recv() {
            Err(oneshot::error::TryRecvError::Empty) => None,
            Err(oneshot::error::TryRecvError::Closed) => Some((Answer::Unknown, None)),
            Ok(Ok(applied)) => Some((Answer::Reply(guest_reply(applied.result)), None)),
            Ok(Err(error)) => Some(write_error(&error)),
        },
        Waiting::Read(rx) => match rx.try_recv() {
            Err(oneshot::error::TryRecvError::Empty) => None,
            Err(oneshot::error::TryRecvError::Closed) => Some((Answer::Failed, None)),
            Ok(Ok(answer)) => Some((Answer::Reply(guest_reply(answer.result)), None)),
            Ok(Err(error)) => Some((Answer::Failed, leader_hint(&error))),
        },
    }
}

fn guest_reply(result: Result<Vec<u8>, GuestFailure>) -> Reply {
    match result {
        Ok(bytes) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
        Err(GuestFailure::Rejected { message }) => Err(message),
        // A trap or an exhausted budget: an answer the kv model never
        // gives, so the checker reports it.
        Err(other) => Err(other.to_string()),
    }
}

fn write_error(error: &ClientError) -> (Answer, Option<u64>) {
    let answer = match error {
        ClientError::NotLeader { .. }
        | ClientError::Overloaded
        | ClientError::ProposalDropped
        | ClientError::EmptyCommand
        | ClientError::GuestStalled { .. } => Answer::Failed,
        _ => Answer::Unknown,
    };
    (answer, leader_hint(error))
}

fn leader_hint(error: &ClientError) -> Option<u64> {
    match error {
        ClientError::NotLeader { leader_hint } => *leader_hint,
        _ => None,
    }
}
