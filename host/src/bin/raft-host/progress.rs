//! Progress bars of the long client calls (`upgrade`, `rollback`,
//! `backup`, `add-node`) and of a node restoring a backup.
//!
//! Drawn on stderr only when it is a terminal: a script's or a test's
//! stderr holds errors and nothing else, and then the node is not even
//! polled. What a call waits for is seen from the outside: the API's calls
//! answer only when they are done, so while one runs on this thread another
//! thread asks the node's `/v1/status` how far it got ([`while_polling`])
//! and the pure functions below ([`catch_up`], [`upgrade_phase`]) turn
//! that status into a phase.

use std::borrow::Cow;
use std::io::IsTerminal as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};
use iroh_raft_client::NodeStatus;

/// How often a waiting call asks the node how far it got.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// How often a spinner turns (and the elapsed time is redrawn).
const TICK_INTERVAL: Duration = Duration::from_millis(100);

/// Whether bars are drawn at all.
pub fn shown() -> bool {
    std::io::stderr().is_terminal()
}

/// stderr on a terminal, else nowhere.
fn target() -> ProgressDrawTarget {
    if shown() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    }
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .expect("the templates are literals, checked by the tests")
        .progress_chars("=> ")
}

/// `bar` with its style and message, then turning (in that order: the
/// first frame already shows the message).
fn styled(bar: ProgressBar, template: &str, message: Cow<'static, str>) -> ProgressBar {
    bar.set_style(style(template));
    bar.set_message(message);
    bar.enable_steady_tick(TICK_INTERVAL);
    bar
}

const SPINNER: &str = "{spinner} {elapsed:>4} {msg}";
const BYTES: &str =
    "{spinner} {elapsed:>4} {msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec})";
const ENTRIES: &str = "{spinner} {elapsed:>4} {msg} [{bar:30}] {pos}/{len}";

/// A phase of unknown length: a spinner, the time it took, a message.
pub fn spinner(message: impl Into<Cow<'static, str>>) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(None, target());
    styled(bar, SPINNER, message.into())
}

/// A transfer of `total` bytes.
pub fn bytes(total: u64, message: impl Into<Cow<'static, str>>) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total), target());
    styled(bar, BYTES, message.into())
}

/// A bar whose position and length are log indexes (a member catching up
/// with the commit index); a spinner until [`show_catch_up`] knows them.
pub fn entries(message: impl Into<Cow<'static, str>>) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(0), target());
    styled(bar, SPINNER, message.into())
}

/// Run `call` on this thread while `poll` runs every [`POLL_INTERVAL`] on
/// another, until `call` returns. Without a terminal `poll` never runs.
pub fn while_polling<T>(mut poll: impl FnMut() + Send, call: impl FnOnce() -> T) -> T {
    if !shown() {
        return call();
    }
    let (done, stop) = mpsc::channel::<()>();
    std::thread::scope(|scope| {
        scope.spawn(move || {
            // Ends when `done` is dropped: the call returned.
            while let Err(mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(POLL_INTERVAL) {
                poll();
            }
        });
        let answer = call();
        drop(done);
        answer
    })
}

/// A writer that advances `bar` by what it writes (a download).
pub struct Counted<'a, W> {
    pub inner: W,
    bar: &'a ProgressBar,
}

impl<'a, W> Counted<'a, W> {
    pub fn new(inner: W, bar: &'a ProgressBar) -> Self {
        Counted { inner, bar }
    }
}

impl<W: std::io::Write> std::io::Write for Counted<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.bar.inc(written as u64);
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A component being uploaded: the bytes the client sent so far, of all.
#[derive(Debug, Clone, Copy)]
pub struct Upload<'a> {
    pub sent: &'a AtomicU64,
    pub total: u64,
}

impl Upload<'_> {
    /// `uploading 1.50 MiB of 4.00 MiB` while bytes are left to send;
    /// `None` once all are sent (the node's phases follow).
    pub fn message(&self) -> Option<String> {
        let sent = self.sent.load(Ordering::Relaxed);
        (sent < self.total).then(|| {
            format!(
                "uploading {} of {}",
                HumanBytes(sent),
                HumanBytes(self.total)
            )
        })
    }
}

/// How far a member being added got, as the leader's status shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatchUp {
    /// Not in the configuration yet (the learner is being proposed), or
    /// the node answering is not the leader and knows no match indexes.
    Waiting,
    /// A member whose log holds entries up to `matched` of `commit`: a
    /// snapshot transfer, then the log's tail.
    Behind { matched: u64, commit: u64 },
    /// Holds everything committed; promotion to voter follows.
    CaughtUp { voter: bool },
}

/// Where member `id` stands in `status` (the leader's).
pub fn catch_up(status: &NodeStatus, id: u64) -> CatchUp {
    let Some(member) = status.members.iter().find(|m| m.id == id) else {
        return CatchUp::Waiting;
    };
    match member.match_index {
        None => CatchUp::Waiting,
        Some(matched) if matched >= status.commit_index => CatchUp::CaughtUp {
            voter: member.voter,
        },
        Some(matched) => CatchUp::Behind {
            matched,
            commit: status.commit_index,
        },
    }
}

/// Show `phase` on a catch-up bar.
pub fn show_catch_up(bar: &ProgressBar, id: u64, phase: CatchUp) {
    match phase {
        CatchUp::Waiting => bar.set_message(format!("adding node {id}")),
        CatchUp::Behind { matched, commit } => {
            bar.set_style(style(ENTRIES));
            bar.set_length(commit);
            bar.set_position(matched);
            bar.set_message(format!("node {id} catching up (snapshot, then log)"));
        }
        CatchUp::CaughtUp { voter } => {
            let length = bar.length().unwrap_or(0);
            bar.set_position(length);
            bar.set_message(if voter {
                format!("node {id} caught up and votes")
            } else {
                format!("node {id} caught up; promoting it")
            });
        }
    }
}

/// What an upgrade is doing, seen from the node's status while the
/// upload call runs (the node validates the component, has the members
/// fetch and compile it, then proposes its activation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpgradePhase {
    /// Uploaded or being uploaded; the node validates it and the members
    /// prepare it (the prepare round): the log has not moved.
    Preparing,
    /// The log moved past where it was: the activation entry is on its
    /// way through the log.
    Activating,
    /// The node applies entries with the new component.
    Activated,
}

/// The phase of an upgrade to `hash` that started when the log's last
/// index was `last_index_before`.
pub fn upgrade_phase(status: &NodeStatus, last_index_before: u64, hash: &str) -> UpgradePhase {
    if status.guest.hash == hash {
        UpgradePhase::Activated
    } else if status.last_index > last_index_before {
        UpgradePhase::Activating
    } else {
        UpgradePhase::Preparing
    }
}

/// The message of an upgrade's phase.
pub fn upgrade_message(phase: UpgradePhase) -> &'static str {
    match phase {
        UpgradePhase::Preparing => "node validating the component, members preparing it",
        UpgradePhase::Activating => "activating through the log",
        UpgradePhase::Activated => "activated; waiting for the answer",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(json: serde_json::Value) -> NodeStatus {
        let mut base = serde_json::json!({
            "id": 1, "role": "leader", "term": 2, "leader_id": 1,
            "commit_index": 100, "applied_index": 100, "last_index": 100,
            "voters": [1], "pending_proposals": 0, "members": [],
            "guest": {"name": "kv", "version": "1", "hash": "aaaa",
                      "applied_entries": 0, "failed_entries": 0,
                      "instance_rebuilds": 0},
            "data_dir": "/d"
        });
        if let (Some(base), Some(extra)) = (base.as_object_mut(), json.as_object()) {
            for (key, value) in extra {
                base.insert(key.clone(), value.clone());
            }
        }
        serde_json::from_value(base).expect("a status")
    }

    fn member(id: u64, voter: bool, match_index: Option<u64>) -> serde_json::Value {
        serde_json::json!({"id": id, "node_id": null, "addrs": [], "voter": voter,
                           "match_index": match_index, "last_contact_ms": null})
    }

    #[test]
    fn a_new_member_is_waited_for_then_catches_up_then_votes() {
        let absent = status(serde_json::json!({"members": [member(1, true, Some(100))]}));
        assert_eq!(catch_up(&absent, 4), CatchUp::Waiting);
        let unknown = status(serde_json::json!({"members": [member(4, false, None)]}));
        assert_eq!(catch_up(&unknown, 4), CatchUp::Waiting);
        let behind = status(serde_json::json!({"members": [member(4, false, Some(40))]}));
        assert_eq!(
            catch_up(&behind, 4),
            CatchUp::Behind {
                matched: 40,
                commit: 100
            }
        );
        let learner = status(serde_json::json!({"members": [member(4, false, Some(100))]}));
        assert_eq!(catch_up(&learner, 4), CatchUp::CaughtUp { voter: false });
        let voter = status(serde_json::json!({"members": [member(4, true, Some(101))]}));
        assert_eq!(catch_up(&voter, 4), CatchUp::CaughtUp { voter: true });

        let bar = entries("x");
        show_catch_up(&bar, 4, catch_up(&behind, 4));
        assert_eq!((bar.position(), bar.length()), (40, Some(100)));
        show_catch_up(&bar, 4, catch_up(&voter, 4));
        assert_eq!(bar.position(), 100, "full once caught up");
    }

    #[test]
    fn an_upload_is_shown_until_its_last_byte() {
        let sent = AtomicU64::new(0);
        let upload = Upload {
            sent: &sent,
            total: 3 * 1024 * 1024,
        };
        assert_eq!(
            upload.message().as_deref(),
            Some("uploading 0 B of 3.00 MiB")
        );
        sent.store(3 * 1024 * 1024, Ordering::Relaxed);
        assert_eq!(upload.message(), None, "the node's phases follow");
    }

    #[test]
    fn an_upgrade_prepares_then_activates() {
        let before = status(serde_json::json!({}));
        assert_eq!(upgrade_phase(&before, 100, "bbbb"), UpgradePhase::Preparing);
        let moved = status(serde_json::json!({"last_index": 101}));
        assert_eq!(upgrade_phase(&moved, 100, "bbbb"), UpgradePhase::Activating);
        let mut switched = status(serde_json::json!({"last_index": 101}));
        switched.guest.hash = "bbbb".into();
        assert_eq!(
            upgrade_phase(&switched, 100, "bbbb"),
            UpgradePhase::Activated
        );
    }

    #[test]
    fn the_templates_parse_and_a_counted_writer_advances_its_bar() {
        for template in [SPINNER, BYTES, ENTRIES] {
            assert!(ProgressStyle::with_template(template).is_ok(), "{template}");
        }
        let bar = bytes(10, "download");
        let mut out = Counted::new(Vec::new(), &bar);
        std::io::Write::write_all(&mut out, b"12345").expect("write");
        assert_eq!((bar.position(), out.inner.len()), (5, 5));
    }

    #[test]
    fn without_a_terminal_the_call_runs_and_nothing_polls() {
        // The tests' stderr is captured, not a terminal.
        if shown() {
            return;
        }
        let mut polled = false;
        let answer = while_polling(|| polled = true, || 7);
        assert_eq!(answer, 7);
        assert!(!polled, "no status requests when no bar is drawn");
    }
}
