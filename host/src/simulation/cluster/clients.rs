//! The simulated clients: each runs one operation at a time against a
//! node of its choice, and its answers go into the recorded history.

use std::time::Duration;

use tokio::sync::oneshot;

use super::super::workload::{self, Answer, Outstanding, Waiting};
use super::{AdminKind, Event, Step, TICK, World};
use crate::node::inbox::NodeMsg;

impl<'a> World<'a> {
    // ---- clients ----

    pub(super) fn client_next(&mut self, client: usize) -> Step<()> {
        if !self.clients_running || self.workload.clients[client].outstanding.is_some() {
            return Ok(());
        }
        let live = self.live_ids();
        let target = self.workload.clients[client]
            .target
            .filter(|t| live.contains(t))
            .or_else(|| self.rng.pick(&live));
        let Some(node) = target else {
            self.schedule(TICK, Event::ClientNext { client });
            return Ok(());
        };
        let request = self.workload.next_request(&mut self.rng);
        self.send_request(client, node, &request)
    }

    pub(super) fn send_request(
        &mut self,
        client: usize,
        node: u64,
        request: &workload::Request,
    ) -> Step<()> {
        let op = self.workload.invoke(client, request);
        self.note(format!("client {client} -> node {node}: {}", request.text));
        let bytes = request.text.clone().into_bytes();
        let waiting = match request.read {
            None => {
                let (tx, rx) = oneshot::channel();
                self.input(
                    node,
                    NodeMsg::Propose {
                        command: bytes,
                        reply: tx,
                    },
                )?;
                Waiting::Write(rx)
            }
            Some(consistency) => {
                let (tx, rx) = oneshot::channel();
                self.input(
                    node,
                    NodeMsg::Query {
                        request: bytes,
                        consistency,
                        reply: tx,
                    },
                )?;
                Waiting::Read(rx)
            }
        };
        self.workload.clients[client].outstanding = Some(Outstanding { op, node, waiting });
        self.schedule(
            crate::limits::CLIENT_TIMEOUT,
            Event::ClientDeadline { client, op },
        );
        Ok(())
    }

    pub(super) fn finish_client(&mut self, client: usize, answer: Answer, hint: Option<u64>) {
        let node = self.workload.clients[client]
            .outstanding
            .as_ref()
            .map_or(0, |o| o.node);
        self.note(format!("client {client} <- node {node}: {answer:?}"));
        self.workload.finish(client, &answer);
        self.workload.clients[client].target = match answer {
            Answer::Reply(_) => Some(node),
            _ => hint,
        };
        let think = Duration::from_millis(self.rng.range(1, workload::MAX_THINK_TIME_MS));
        self.schedule(think, Event::ClientNext { client });
    }

    /// Collect every answer that arrived, in client order, and the
    /// operators' answers.
    pub(super) fn poll_answers(&mut self) -> Step<()> {
        for client in 0..self.workload.clients.len() {
            let polled = self.workload.clients[client]
                .outstanding
                .as_mut()
                .and_then(|o| workload::poll(&mut o.waiting));
            if let Some((answer, hint)) = polled {
                self.finish_client(client, answer, hint);
            }
        }
        let mut index = 0;
        while index < self.admin.len() {
            let answer = match self.admin[index].1.try_recv() {
                Err(oneshot::error::TryRecvError::Empty) => {
                    index += 1;
                    continue;
                }
                Ok(answer) => Some(answer),
                Err(oneshot::error::TryRecvError::Closed) => None,
            };
            let (kind, _) = self.admin.remove(index);
            self.note(format!("operator: {kind:?} -> {answer:?}"));
            match (kind, answer) {
                (AdminKind::Remove(id), Some(Ok(_))) => {
                    if let Some(node) = self.nodes.get_mut(&id) {
                        node.crash();
                        node.retired = true;
                    }
                    self.faults.members_removed += 1;
                }
                (AdminKind::Add, Some(Ok(_))) => self.faults.members_added += 1,
                (AdminKind::Upgrade, Some(Ok(applied))) => {
                    if applied.result.is_ok() {
                        self.faults.upgrades += 1;
                    } else {
                        return Err(self.stop(format!(
                            "an upgrade between kv components failed: {:?}",
                            applied.result
                        )));
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }
}
