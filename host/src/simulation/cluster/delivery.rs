//! The simulated network's edge: messages leave a node into the network
//! and arrive at another through the driver's own dispatch; a snapshot's
//! file travels beside its message, as the transport streams it.

use std::time::Duration;

use raft::prelude::{Message, MessageType};

use super::super::node::SimNode;
use super::{Event, SNAPSHOT_FAILURE_DELAY, Step, World};
use crate::node::inbox::NodeMsg;
use crate::node::snapshot as snapshot_file;
use crate::storage::DataDir;

impl<'a> World<'a> {
    pub(super) fn send(&mut self, from: u64, message: Message) {
        let to = message.to;
        if message.get_msg_type() == MessageType::MsgSnapshot {
            // A snapshot travels as a file transfer: it arrives once or
            // fails, and the leader hears which.
            let delays = self.net.delays(&mut self.rng, from, to);
            let life = self.nodes.get(&from).map_or(0, |n| n.life);
            match delays.first() {
                Some(&delay) => self.schedule(
                    delay,
                    Event::Deliver {
                        from,
                        to,
                        message: Box::new(message),
                    },
                ),
                None => self.schedule(
                    SNAPSHOT_FAILURE_DELAY,
                    Event::SnapshotReport {
                        leader: from,
                        life,
                        to,
                        delivered: false,
                    },
                ),
            }
            return;
        }
        for delay in self.net.delays(&mut self.rng, from, to) {
            self.schedule(
                delay,
                Event::Deliver {
                    from,
                    to,
                    message: Box::new(message.clone()),
                },
            );
        }
    }

    pub(super) fn deliver(&mut self, from: u64, to: u64, message: Message) -> Step<()> {
        let is_snapshot = message.get_msg_type() == MessageType::MsgSnapshot;
        if !self.nodes.get(&to).is_some_and(SimNode::is_live) {
            // The transport's contract: a snapshot that cannot arrive is
            // reported as failed, or the leader waits for it forever.
            if is_snapshot {
                self.report_snapshot_later(from, to, false);
            }
            return Ok(());
        }
        self.note(format!(
            "{from}->{to} {:?} term {} log_term {} index {} commit {} entries {} reject {}",
            message.get_msg_type(),
            message.term,
            message.log_term,
            message.index,
            message.commit,
            message.entries.len(),
            message.reject
        ));
        if is_snapshot {
            let delivered = self.copy_snapshot_file(from, to, &message);
            self.report_snapshot_later(from, to, delivered);
            if !delivered {
                return Ok(());
            }
            self.faults.snapshots_sent += 1;
        }
        self.input(to, NodeMsg::Raft(Box::new(message)))
    }

    /// The leader hears how its snapshot transfer ended, a little later,
    /// as the transport's background task reports it.
    fn report_snapshot_later(&mut self, leader: u64, to: u64, delivered: bool) {
        let life = self.nodes.get(&leader).map_or(0, |n| n.life);
        let delay = Duration::from_millis(self.rng.range(1, 20));
        self.schedule(
            delay,
            Event::SnapshotReport {
                leader,
                life,
                to,
                delivered,
            },
        );
    }

    /// What the transport does for a snapshot: the file, from the
    /// leader's snapshot directory into the follower's (written aside,
    /// then renamed). Fails if the leader has pruned it meanwhile.
    pub(super) fn copy_snapshot_file(&self, from: u64, to: u64, message: &Message) -> bool {
        let meta = message.get_snapshot().get_metadata();
        let (Some(source), Some(target)) = (self.nodes.get(&from), self.nodes.get(&to)) else {
            return false;
        };
        let source = snapshot_file::path_for(
            &DataDir::new(source.data_dir()).snapshots(),
            meta.index,
            meta.term,
        );
        let target_dir = DataDir::new(target.data_dir()).snapshots();
        let target = snapshot_file::path_for(&target_dir, meta.index, meta.term);
        let partial = target.with_extension("partial");
        std::fs::create_dir_all(&target_dir).is_ok()
            && std::fs::copy(&source, &partial).is_ok()
            && std::fs::rename(&partial, &target).is_ok()
    }
}
