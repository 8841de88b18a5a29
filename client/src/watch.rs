//! Watching changes: `GET /v1/watch?prefix=P&since=I`, newline-delimited
//! JSON, resumed across dropped connections.
//!
//! The node answers with one JSON object per line ([`WatchLine`]): a
//! `start` line, then the `changes` of each log entry that touch the prefix
//! (in log order, an entry's changes together), a `progress` line when idle
//! (everything up to its `applied_index` was delivered), and possibly a last
//! `compacted` or `error` line.
//!
//! A `Watch` (the async client's; the blocking client's iterator runs one) keeps the index it has delivered up to (the last entry's, or
//! a later `progress`). When the connection drops, a node stops, or nothing
//! arrives for [`WATCH_IDLE_TIMEOUT`], it reconnects (the same endpoint
//! first, then the next ones) with `since` = that index, and skips any entry
//! at or below it, so the consumer sees each change exactly once.
//! `compacted` (the node no longer holds the changes after that index) ends
//! the watch with [`Error::Compacted`].

use serde::{Deserialize, Serialize};

#[cfg(doc)]
use crate::error::Error;
#[cfg(doc)]
use crate::limits::WATCH_IDLE_TIMEOUT;
use crate::types::{ErrorInfo, Output};
#[cfg(feature = "async")]
pub use crate::watch_stream::Watch;

/// One line of a watch stream (the node writes them, the clients read
/// them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WatchLine {
    /// The first line: changes after `since` follow.
    Start { since: u64, applied_index: u64 },
    /// The changes of one log entry under the watched prefix, in order.
    Changes { index: u64, events: Vec<WatchEvent> },
    /// Every change up to `applied_index` was sent (resume after it).
    Progress { applied_index: u64 },
    /// The last line: the changes before `oldest_index` are gone.
    Compacted { oldest_index: u64 },
    /// The last line: the watch ended on the node's side (e.g. it stops).
    Error { error: ErrorInfo },
}

/// One key's change in a [`WatchLine::Changes`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchEvent {
    /// `put` or `delete`.
    pub op: WatchOp,
    pub key: Output,
    /// The new value (`put` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Output>,
}

/// What happened to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WatchOp {
    Put,
    Delete,
}

/// The changes one log entry made under the watched prefix: what a watch
/// delivers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Changes {
    /// The entry's log index.
    pub index: u64,
    pub events: Vec<WatchEvent>,
}

impl Changes {
    /// The changes as the node sent them: one `changes` line of JSON.
    pub fn to_json_line(&self) -> String {
        let line = WatchLine::Changes {
            index: self.index,
            events: self.events.clone(),
        };
        serde_json::to_string(&line)
            .unwrap_or_else(|e| format!("{{\"type\":\"error\",\"message\":\"{e}\"}}"))
    }
}

/// Read a line; `Ok(None)` for a line of a type this client does not know
/// (a newer node's), which a watch skips.
pub(crate) fn parse_line(line: &[u8]) -> Result<Option<WatchLine>, serde_json::Error> {
    match serde_json::from_slice(line) {
        Ok(parsed) => Ok(Some(parsed)),
        Err(error) => {
            #[derive(Deserialize)]
            struct Kind {
                #[serde(rename = "type")]
                kind: String,
            }
            const KNOWN: [&str; 5] = ["start", "changes", "progress", "compacted", "error"];
            match serde_json::from_slice::<Kind>(line) {
                Ok(Kind { kind }) if !KNOWN.contains(&kind.as_str()) => Ok(None),
                _ => Err(error),
            }
        }
    }
}

/// What a message means for the consumer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Deliver(Changes),
    /// A stream (re)started.
    Started,
    Nothing,
    Compacted(u64),
    Stopped(ErrorInfo),
}

/// Where a watch resumes from: the exactly-once bookkeeping, without I/O.
#[derive(Debug, Clone, Default)]
pub(crate) struct Resume {
    /// Every change of the entries up to here was delivered.
    since: Option<u64>,
}

impl Resume {
    pub(crate) fn new(since: Option<u64>) -> Self {
        Resume { since }
    }

    pub(crate) fn since(&self) -> Option<u64> {
        self.since
    }

    pub(crate) fn on(&mut self, message: WatchLine) -> Outcome {
        match message {
            WatchLine::Start { since, .. } => {
                if self.since.is_none() {
                    self.since = Some(since);
                }
                Outcome::Started
            }
            WatchLine::Changes { index, events } => {
                if self.since.is_some_and(|since| index <= since) {
                    return Outcome::Nothing;
                }
                self.since = Some(index);
                Outcome::Deliver(Changes { index, events })
            }
            WatchLine::Progress { applied_index } => {
                self.since = Some(self.since.map_or(applied_index, |s| s.max(applied_index)));
                Outcome::Nothing
            }
            WatchLine::Compacted { oldest_index } => Outcome::Compacted(oldest_index),
            WatchLine::Error { error } => Outcome::Stopped(error),
        }
    }
}

/// Splits a byte stream into lines, each at most `max` bytes.
#[derive(Debug, Default)]
pub(crate) struct Lines {
    buf: Vec<u8>,
    /// Bytes of `buf` known to hold no newline.
    scanned: usize,
}

impl Lines {
    /// Add bytes; fails when a line grows past `max` bytes.
    pub(crate) fn push(&mut self, bytes: &[u8], max: usize) -> Result<(), String> {
        self.buf.extend_from_slice(bytes);
        let unfinished = match self.buf.iter().rposition(|&b| b == b'\n') {
            Some(newline) => self.buf.len() - newline - 1,
            None => self.buf.len(),
        };
        if unfinished > max {
            return Err(format!("a line of the stream is longer than {max} bytes"));
        }
        Ok(())
    }

    /// The next complete line, without its newline.
    pub(crate) fn next_line(&mut self) -> Option<Vec<u8>> {
        let Some(found) = self.buf[self.scanned..].iter().position(|&b| b == b'\n') else {
            self.scanned = self.buf.len();
            return None;
        };
        let newline = self.scanned + found;
        let mut line: Vec<u8> = self.buf.drain(..=newline).collect();
        line.pop();
        self.scanned = 0;
        Some(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn changes(index: u64) -> WatchLine {
        WatchLine::Changes {
            index,
            events: vec![WatchEvent {
                op: WatchOp::Delete,
                key: Output::from_bytes(b"k"),
                value: None,
            }],
        }
    }

    #[test]
    fn messages_read_as_the_spec_writes_them() {
        let line = r#"{"type":"changes","index":5,"events":[{"op":"put","key":{"text":"a","base64":"YQ=="},"value":{"text":"1","base64":"MQ=="}},{"op":"delete","key":{"base64":"/w=="}}]}"#;
        let message = parse_line(line.as_bytes()).expect("changes");
        let Some(WatchLine::Changes { index, events }) = message else {
            panic!("not changes: {message:?}");
        };
        assert_eq!(index, 5);
        assert_eq!(events[1].key.to_bytes().expect("b64"), vec![0xff]);
        assert_eq!(events[1].op, WatchOp::Delete);
        let changes = Changes { index, events };
        assert_eq!(changes.to_json_line(), line, "printed as received");
        let start: WatchLine =
            serde_json::from_str(r#"{"type":"start","since":3,"applied_index":9}"#).expect("start");
        assert_eq!(
            start,
            WatchLine::Start {
                since: 3,
                applied_index: 9
            }
        );
        let future = parse_line(br#"{"type":"heartbeat_v2","x":1}"#).expect("unknown");
        assert_eq!(future, None, "a newer node's line is skipped");
        assert!(parse_line(br#"{"type":"changes","index":"x"}"#).is_err());
    }

    #[test]
    fn each_change_is_delivered_once_across_restarts() {
        let mut resume = Resume::new(None);
        assert_eq!(
            resume.on(WatchLine::Start {
                since: 10,
                applied_index: 10
            }),
            Outcome::Started
        );
        assert!(matches!(resume.on(changes(11)), Outcome::Deliver(_)));
        assert!(matches!(resume.on(changes(12)), Outcome::Deliver(_)));
        // A reconnect resumes after 12; a node that repeats 12 is skipped.
        assert_eq!(resume.since(), Some(12));
        assert_eq!(
            resume.on(WatchLine::Start {
                since: 12,
                applied_index: 14
            }),
            Outcome::Started
        );
        assert_eq!(resume.on(changes(12)), Outcome::Nothing);
        assert!(matches!(resume.on(changes(14)), Outcome::Deliver(_)));
        assert_eq!(
            resume.on(WatchLine::Progress { applied_index: 20 }),
            Outcome::Nothing
        );
        assert_eq!(resume.since(), Some(20));
        assert_eq!(resume.on(changes(19)), Outcome::Nothing);
        assert_eq!(
            resume.on(WatchLine::Compacted { oldest_index: 30 }),
            Outcome::Compacted(30)
        );
    }

    #[test]
    fn lines_split_and_are_bounded() {
        let mut lines = Lines::default();
        lines.push(b"ab", 10).expect("short");
        assert_eq!(lines.next_line(), None);
        lines.push(b"c\nd\n\ne", 10).expect("short");
        assert_eq!(lines.next_line().as_deref(), Some(&b"abc"[..]));
        assert_eq!(lines.next_line().as_deref(), Some(&b"d"[..]));
        assert_eq!(lines.next_line().as_deref(), Some(&b""[..]));
        assert_eq!(lines.next_line(), None);
        assert!(lines.push(b"0123456789x", 10).is_err());
    }
}
