//! What clients did: one [`Operation`] per request, and its JSON-lines form.
//!
//! # Time
//!
//! [`Operation::invoke`] and the completion time in [`Outcome`] are `u64`s
//! whose only meaning is their order. Two sources are expected:
//!
//! - the [`Recorder`](super::Recorder)'s logical clock: a counter bumped on
//!   every event under one lock, so events that happened one after the other
//!   in real time get increasing numbers (the usual case: in-process tests and
//!   the simulator);
//! - a monotonic clock in nanoseconds shared by every client (for example
//!   `CLOCK_MONOTONIC` when real processes on one machine write histories that
//!   are merged afterwards).
//!
//! Equal times are treated as concurrent: an operation that completes at `t`
//! and another invoked at `t` may be ordered either way. That can only make
//! the checker more lenient, never report a violation that did not happen.

use std::fmt;
use std::io::{BufRead, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

/// A client: a sequential process with at most one outstanding request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ClientId(pub u64);

/// An operation's identity within one history (the recorder numbers them
/// from zero in invocation order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OpId(pub u64);

/// What the state machine answered: the guest's `Ok` text or its `Err`
/// message. A guest error is still an answer (the command went through the
/// log and was applied); host-side failures are [`Outcome::Fail`] or
/// [`Outcome::Unknown`], never a `Reply`.
pub type Reply = Result<String, String>;

/// How an operation ended, as far as its client knows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// The client got the state machine's answer at time `complete`; the
    /// operation took effect exactly once between invocation and then.
    Ok {
        /// When the answer arrived.
        complete: u64,
        /// The answer.
        output: Reply,
    },
    /// The operation definitely did not take effect (for example it was
    /// refused with "not leader" before being proposed). The checker ignores
    /// it.
    Fail {
        /// When the client learned it.
        complete: u64,
    },
    /// The client gave up waiting (a timeout, a dropped connection): the
    /// operation may have taken effect at any time after its invocation,
    /// even after the end of the history, or never.
    Unknown,
}

/// One client request and what came of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    /// Unique within the history.
    pub id: OpId,
    /// Who sent it.
    pub client: ClientId,
    /// The command or query text, exactly as sent to the state machine.
    pub input: String,
    /// When the client sent it (see the module doc on time).
    pub invoke: u64,
    /// How it ended.
    #[serde(flatten)]
    pub outcome: Outcome,
}

impl Operation {
    /// When the client learned the outcome, if it did.
    pub fn complete(&self) -> Option<u64> {
        match self.outcome {
            Outcome::Ok { complete, .. } | Outcome::Fail { complete } => Some(complete),
            Outcome::Unknown => None,
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            id: OpId(id),
            client: ClientId(client),
            input,
            invoke,
            outcome,
        } = self;
        write!(f, "op {id} (client {client}) `{input}` ")?;
        match outcome {
            Outcome::Ok {
                complete,
                output: Ok(text),
            } => write!(f, "-> {text:?} [{invoke}, {complete}]"),
            Outcome::Ok {
                complete,
                output: Err(message),
            } => write!(f, "-> error {message:?} [{invoke}, {complete}]"),
            Outcome::Fail { complete } => write!(f, "-> failed [{invoke}, {complete}]"),
            Outcome::Unknown => write!(f, "-> unknown [{invoke}, ...)"),
        }
    }
}

/// Why a history cannot be checked: it is malformed or the model does not
/// understand it. (A history that is well formed but wrong is not an error:
/// it is a [`Verdict::NotLinearizable`](super::Verdict::NotLinearizable).)
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// Reading or writing the history file failed.
    #[error("history I/O: {0}")]
    Io(#[from] std::io::Error),
    /// A line of a JSON-lines history is not an [`Operation`].
    #[error("history line {line}: {source}")]
    Json {
        /// 1-based line number.
        line: usize,
        /// What serde said.
        source: serde_json::Error,
    },
    /// Two operations share an id.
    #[error("operation id {0} appears twice")]
    DuplicateId(u64),
    /// An operation completed before it was invoked.
    #[error("{op}: completes before it is invoked")]
    CompletesBeforeInvoke {
        /// The operation, as text.
        op: String,
    },
    /// A client had two requests outstanding at once, which the history model
    /// rules out (the checker would still work, but it points to a broken
    /// recorder, so it is refused rather than guessed around).
    #[error("client {client} invoked {second} while {first} was outstanding")]
    OverlappingClient {
        /// The client.
        client: u64,
        /// The earlier operation, as text.
        first: String,
        /// The later one, as text.
        second: String,
    },
    /// The model cannot interpret an operation's input or output.
    #[error("{op}: {reason}")]
    Model {
        /// The operation, as text.
        op: String,
        /// What the model said.
        reason: String,
    },
}

/// A client history: operations in any order (the checker sorts by time).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    /// The operations.
    pub ops: Vec<Operation>,
}

impl History {
    /// A history of these operations.
    pub fn new(ops: Vec<Operation>) -> Self {
        Self { ops }
    }

    /// Check the shape rules: unique ids, completion not before invocation,
    /// one outstanding request per client. The checker calls this first.
    pub fn validate(&self) -> Result<(), HistoryError> {
        let mut ids = std::collections::HashSet::with_capacity(self.ops.len());
        for op in &self.ops {
            if !ids.insert(op.id) {
                return Err(HistoryError::DuplicateId(op.id.0));
            }
            if op.complete().is_some_and(|complete| complete < op.invoke) {
                return Err(HistoryError::CompletesBeforeInvoke { op: op.to_string() });
            }
        }
        // Per client, sorted by invocation, each completed request must end
        // before the next starts. An unknown one ended (for its client) when
        // it was given up on, which the history does not record, so it
        // constrains nothing.
        let mut by_client: Vec<&Operation> = self.ops.iter().collect();
        by_client.sort_by_key(|op| (op.client, op.invoke));
        for pair in by_client.windows(2) {
            let [first, second] = pair else {
                unreachable!("windows(2) yields pairs")
            };
            if first.client == second.client
                && first
                    .complete()
                    .is_some_and(|complete| complete > second.invoke)
            {
                return Err(HistoryError::OverlappingClient {
                    client: first.client.0,
                    first: first.to_string(),
                    second: second.to_string(),
                });
            }
        }
        Ok(())
    }

    /// Write one JSON object per line, in the order held.
    pub fn write_jsonl(&self, mut writer: impl Write) -> Result<(), HistoryError> {
        for op in &self.ops {
            serde_json::to_writer(&mut writer, op).map_err(std::io::Error::from)?;
            writer.write_all(b"\n")?;
        }
        writer.flush()?;
        Ok(())
    }

    /// Read a history written by [`write_jsonl`](Self::write_jsonl) (or by
    /// anything else that writes one [`Operation`] per line). Blank lines are
    /// skipped.
    pub fn read_jsonl(reader: impl BufRead) -> Result<Self, HistoryError> {
        let mut ops = Vec::new();
        for (index, line) in reader.lines().enumerate() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            let op = serde_json::from_str(&line).map_err(|source| HistoryError::Json {
                line: index + 1,
                source,
            })?;
            ops.push(op);
        }
        Ok(Self { ops })
    }

    /// Write the history to a file (created or truncated).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), HistoryError> {
        let file = std::fs::File::create(path)?;
        self.write_jsonl(std::io::BufWriter::new(file))
    }

    /// Read a history from a file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, HistoryError> {
        let file = std::fs::File::open(path)?;
        Self::read_jsonl(std::io::BufReader::new(file))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(id: u64, client: u64, invoke: u64, outcome: Outcome) -> Operation {
        Operation {
            id: OpId(id),
            client: ClientId(client),
            input: "put k v".to_owned(),
            invoke,
            outcome,
        }
    }

    #[test]
    fn t10_jsonl_round_trip_and_shape() {
        let history = History::new(vec![
            op(
                0,
                1,
                1,
                Outcome::Ok {
                    complete: 2,
                    output: Ok("OK".to_owned()),
                },
            ),
            op(
                1,
                1,
                3,
                Outcome::Ok {
                    complete: 4,
                    output: Err("key not found: k".to_owned()),
                },
            ),
            op(2, 2, 1, Outcome::Fail { complete: 5 }),
            op(3, 3, 6, Outcome::Unknown),
        ]);
        let mut bytes = Vec::new();
        history.write_jsonl(&mut bytes).expect("write to a Vec");
        let text = String::from_utf8(bytes).expect("JSON is UTF-8");
        let first = text.lines().next().expect("four lines");
        assert_eq!(
            first,
            r#"{"id":0,"client":1,"input":"put k v","invoke":1,"outcome":"ok","complete":2,"output":{"Ok":"OK"}}"#
        );
        assert!(text.contains(r#""outcome":"unknown""#));
        let back = History::read_jsonl(format!("{text}\n\n").as_bytes()).expect("read back");
        assert_eq!(back, history);
        back.validate().expect("well formed");
    }

    #[test]
    fn t20_bad_lines_and_shapes_are_errors() {
        let error = History::read_jsonl("\n{\"id\":0}\n".as_bytes()).expect_err("missing fields");
        assert!(
            matches!(error, HistoryError::Json { line: 2, .. }),
            "{error}"
        );

        let overlapping = History::new(vec![
            op(0, 1, 1, Outcome::Fail { complete: 5 }),
            op(1, 1, 3, Outcome::Unknown),
        ]);
        assert!(matches!(
            overlapping.validate(),
            Err(HistoryError::OverlappingClient { client: 1, .. })
        ));
        // After an unknown outcome the client may go on at once.
        let after_timeout = History::new(vec![
            op(0, 1, 1, Outcome::Unknown),
            op(1, 1, 3, Outcome::Unknown),
        ]);
        after_timeout
            .validate()
            .expect("a timed-out request is not outstanding");

        let backwards = History::new(vec![op(0, 1, 5, Outcome::Fail { complete: 4 })]);
        assert!(matches!(
            backwards.validate(),
            Err(HistoryError::CompletesBeforeInvoke { .. })
        ));
        let duplicate = History::new(vec![
            op(7, 1, 1, Outcome::Unknown),
            op(7, 2, 1, Outcome::Unknown),
        ]);
        assert!(matches!(
            duplicate.validate(),
            Err(HistoryError::DuplicateId(7))
        ));
    }
}
