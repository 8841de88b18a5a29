//! The nemesis: the faults a simulation injects while its clients run,
//! one every 0.3-2.5 s of virtual time, overlapping each other: crashes
//! and restarts, frozen nodes, partitions, bad network weather, membership
//! changes, forced snapshots, component upgrades, leadership transfers.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::oneshot;

use super::{AdminKind, Event, Step, World, addr_of};
use crate::membership::PeerAddr;
use crate::node::ClusterMode;
use crate::node::core::MembershipChange;
use crate::node::inbox::NodeMsg;
use crate::node::upgrade::{Activation, ActivationKind, LimitOverrides};
use crate::simulation::network::Weather;
use crate::wasm::ComponentHash;

/// Most voters the nemesis grows the cluster to, fewest it shrinks it to.
const MAX_VOTERS: usize = 5;
const MIN_VOTERS: usize = 3;

impl World<'_> {
    pub(super) fn nemesis(&mut self) -> Step<()> {
        let live = self.live_ids();
        let voters = self.voters();
        let down = voters.iter().filter(|v| !live.contains(v)).count();
        // Keep a majority of voters able to run most of the time; a
        // partition may still cut it off.
        let may_crash = down + 1 < voters.len().div_ceil(2);
        let mut roll = self.rng.range(0, 100);
        if roll < 20 && !may_crash {
            // A pause or a partition instead.
            roll += 20;
        }
        match roll {
            0..=19 => {
                if let Some(victim) = self.leader_or_any(&live) {
                    self.crash(victim);
                    let after = Duration::from_millis(self.rng.range(100, 4000));
                    self.schedule(after, Event::Restart { node: victim });
                }
            }
            20..=29 => {
                if let Some(victim) = self.leader_or_any(&live) {
                    let pause = Duration::from_millis(self.rng.range(200, 4000));
                    self.note(format!("pause node {victim} for {} ms", pause.as_millis()));
                    if let Some(node) = self.nodes.get_mut(&victim) {
                        node.paused_until = self.now + pause;
                    }
                    self.faults.pauses += 1;
                }
            }
            30..=44 => self.partition(&live),
            45..=56 => {
                let weather = Weather::stormy(&mut self.rng);
                self.note(format!("weather {weather:?}"));
                self.net.weather = weather;
                self.faults.weather_changes += 1;
                let after = Duration::from_millis(self.rng.range(500, 5000));
                self.schedule(after, Event::Calm);
            }
            57..=67 => self.change_membership(&voters)?,
            68..=76 => {
                if let Some(node) = self.rng.pick(&live) {
                    self.note(format!("snapshot on node {node}"));
                    let (tx, _rx) = oneshot::channel();
                    self.input(node, NodeMsg::Snapshot { reply: tx })?;
                }
            }
            77..=86 if self.components.len() > 1 => self.upgrade()?,
            _ => {
                if let Some(leader) = self.leader() {
                    self.note(format!("transfer leadership away from {leader}"));
                    self.faults.transfers += 1;
                    let (tx, _rx) = oneshot::channel();
                    self.input(
                        leader,
                        NodeMsg::TransferLeader {
                            target: None,
                            reply: tx,
                        },
                    )?;
                }
            }
        }
        Ok(())
    }

    /// The leader half the time, else any of `live`.
    fn leader_or_any(&mut self, live: &[u64]) -> Option<u64> {
        if self.rng.chance(0.5) {
            self.leader()
        } else {
            self.rng.pick(live)
        }
    }

    fn partition(&mut self, live: &[u64]) {
        let all: Vec<u64> = self
            .nodes
            .values()
            .filter(|n| !n.retired)
            .map(|n| n.id)
            .collect();
        if all.len() < 2 {
            return;
        }
        let kind = self.rng.range(0, 4);
        match kind {
            0 => {
                // Isolate the leader (or anyone).
                let Some(victim) = self.leader().or_else(|| self.rng.pick(live)) else {
                    return;
                };
                let rest: Vec<u64> = all.iter().copied().filter(|n| *n != victim).collect();
                self.note(format!("partition: isolate {victim}"));
                self.net.split(&[victim], &rest);
            }
            1 => {
                let mut shuffled = all.clone();
                for i in (1..shuffled.len()).rev() {
                    let j = self.rng.range(0, i as u64 + 1) as usize;
                    shuffled.swap(i, j);
                }
                let cut = self.rng.range(1, shuffled.len() as u64) as usize;
                let (a, b) = shuffled.split_at(cut);
                self.note(format!("partition: {a:?} | {b:?}"));
                self.net.split(a, b);
            }
            2 => {
                let from = self.rng.pick(&all).unwrap_or(1);
                let to = self.rng.pick(&all).unwrap_or(1);
                if from != to {
                    self.note(format!("partition: one way {from} -/-> {to}"));
                    self.net.cut_one_way(from, to);
                }
            }
            _ => {
                // Bridge: two sides that only one node hears both of.
                let mut others: Vec<u64> = all.clone();
                let bridge = others.remove(self.rng.range(0, others.len() as u64) as usize);
                let half = others.len() / 2;
                let (a, b) = others.split_at(half);
                self.note(format!(
                    "partition: bridge {bridge} between {a:?} and {b:?}"
                ));
                self.net.split(a, b);
            }
        }
        self.faults.partitions += 1;
        let after = Duration::from_millis(self.rng.range(300, 5000));
        self.schedule(after, Event::Heal);
    }

    fn change_membership(&mut self, voters: &[u64]) -> Step<()> {
        if !self
            .admin
            .iter()
            .all(|(k, _)| matches!(k, AdminKind::Upgrade))
        {
            return Ok(());
        }
        if voters.len() < MAX_VOTERS && (voters.len() <= MIN_VOTERS || self.rng.chance(0.5)) {
            self.add_node()
        } else if voters.len() > MIN_VOTERS {
            let Some(victim) = self.rng.pick(voters) else {
                return Ok(());
            };
            let Some(leader) = self.leader() else {
                return Ok(());
            };
            self.note(format!("remove node {victim} via {leader}"));
            let (tx, rx) = oneshot::channel();
            self.input(
                leader,
                NodeMsg::ChangeMembership {
                    change: MembershipChange::RemoveNode { id: victim },
                    reply: tx,
                },
            )?;
            self.admin.push((AdminKind::Remove(victim), rx));
            Ok(())
        } else {
            Ok(())
        }
    }

    /// Start a new node that joins, and ask the leader to add it.
    pub(super) fn add_node(&mut self) -> Step<()> {
        let Some(view) = self.leader_view() else {
            return Ok(());
        };
        let leader = view.id;
        let members: BTreeMap<u64, PeerAddr> = view
            .members
            .iter()
            .map(|m| (m.id, m.addr.clone().unwrap_or_else(|| addr_of(m.id))))
            .collect();
        let id = self.new_node(ClusterMode::Join { members })?;
        self.note(format!("add node {id} via {leader}"));
        let (tx, rx) = oneshot::channel();
        self.input(
            leader,
            NodeMsg::ChangeMembership {
                change: MembershipChange::AddVoter {
                    id,
                    addr: addr_of(id),
                },
                reply: tx,
            },
        )?;
        self.admin.push((AdminKind::Add, rx));
        Ok(())
    }

    /// Switch the cluster to the other kv component through the log.
    fn upgrade(&mut self) -> Step<()> {
        let Some(leader) = self.leader() else {
            return Ok(());
        };
        let bytes = &self.components[self.upgrade_to];
        let activation = Activation {
            hash: ComponentHash::of(bytes).to_hex(),
            size_bytes: bytes.len() as u64,
            kind: ActivationKind::Upgrade,
            limits: LimitOverrides::default(),
            source: leader,
        };
        self.upgrade_to = (self.upgrade_to + 1) % self.components.len();
        self.note(format!("upgrade to {} via {leader}", activation.hash));
        let (tx, rx) = oneshot::channel();
        self.input(
            leader,
            NodeMsg::ProposeActivation {
                activation,
                reply: tx,
            },
        )?;
        self.admin.push((AdminKind::Upgrade, rx));
        Ok(())
    }
}
