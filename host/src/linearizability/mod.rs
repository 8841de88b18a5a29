//! A linearizability checker for client histories.
//!
//! Tests and the simulator record what clients did (what they sent, when,
//! and what came back) and this module decides whether some single order of
//! those operations, each taking effect at one instant between its
//! invocation and its completion, explains every answer. That is what a
//! Raft-replicated state machine promises, so a history that fails is a bug
//! (a stale read, a lost acknowledged write, a write applied twice).
//!
//! ## How data flows
//!
//! ```text
//!  clients ──invoke/complete/fail/timeout──► Recorder ──history()──► History ──► check(model, &history) ──► Report
//!                                                                    │  ▲                │
//!                                                       save/load JSON lines       per key: WGL search
//! ```
//!
//! - [`history`]: the data model ([`Operation`], [`Outcome`]: ok, fail =
//!   definitely did not happen, unknown = maybe happened, at any time after
//!   its invocation), what a time means, and the JSON-lines file format.
//! - [`Recorder`]: a thread-safe recorder with a logical clock.
//! - [`Model`]: the sequential specification; [`KvModel`] and
//!   [`CounterModel`] describe the two guests, [`CasModel`] the `kv-store`
//!   guest's revisions and compare-and-swap (it learns each write's
//!   revision from the history's answers).
//! - [`check`]: splits the history per key when the model allows
//!   (linearizability is compositional), runs the Wing & Gong search with
//!   Lowe's memoization (as porcupine does) on each part within a step
//!   budget ([`MAX_SEARCH_STEPS`]), and explains the first violation: the
//!   key, the shortest failing prefix of its history, the longest order that
//!   still explains everything and what went wrong after it.
//!
//! ## Recording and checking a history
//!
//! ```
//! use iroh_raft::linearizability::{check, ClientId, KvModel, Recorder};
//!
//! let recorder = Recorder::new(); // clone it into each client thread
//! let write = recorder.invoke(ClientId(1), "put x 1");
//! let read = recorder.invoke(ClientId(2), "get x"); // concurrent with the put
//! recorder.complete(read, Err("key not found: x".to_owned()));
//! recorder.complete(write, Ok("OK".to_owned()));
//! let stale = recorder.invoke(ClientId(2), "get x"); // after the put was acknowledged
//! recorder.complete(stale, Err("key not found: x".to_owned()));
//!
//! let history = recorder.history();
//! let report = check(&KvModel, &history).expect("a well-formed kv history");
//! assert!(report.verdict.is_violation());
//! // The report names key "x", the `get` that saw nothing after `put x 1`
//! // completed, and the orders it tried.
//! eprintln!("{report}");
//!
//! // Keep it for later: one JSON object per line.
//! let mut file = Vec::new();
//! history.write_jsonl(&mut file).expect("write to memory");
//! ```
//!
//! A recorded file is checked again with
//! `cargo run --example check_history -- path [kv|counter]`.

mod cas;
mod check;
mod counter;
pub mod history;
mod kv;
mod model;
mod recorder;
mod search;

#[cfg(test)]
mod tests;

pub use cas::{CasAt, CasInput, CasKey, CasModel, CasOutput};
pub use check::{
    Candidate, CheckOptions, DeadEndReport, MAX_SEARCH_STEPS, Report, Verdict, Violation, check,
    check_with,
};
pub use counter::{CounterInput, CounterModel, CounterOutput};
pub use history::{ClientId, History, HistoryError, OpId, Operation, Outcome, Reply};
pub use kv::{KvInput, KvModel, KvOutput};
pub use model::Model;
pub use recorder::Recorder;
