//! The nemesis: a seeded schedule of faults, applied one at a time to the
//! running cluster while the clients work, each healed before the next.
//!
//! ```text
//!  |-- gap --|== fault ==|-- gap --|== fault ==| ...   until the run's duration has
//!   healthy    injected    healthy                     passed and every kind ran once
//! ```
//!
//! The schedule is a function of the seed only: first every [`Fault`] kind
//! once in a seeded order, then kinds drawn at random. Which node a fault
//! hits depends on the cluster at that moment ("the leader"), so a rerun
//! with the same seed hits the same roles, not always the same ids.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use super::db::{Db, POLL_INTERVAL};
use super::rng::Rng;

/// How long a fault lasts, at least and at most.
const FAULT_DURATION: (Duration, Duration) = (Duration::from_millis(2500), Duration::from_secs(5));
/// Healthy time between faults, at least and at most.
const GAP: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(3));
/// How long the nemesis looks for a leader to aim at before it picks any
/// node.
const LEADER_WAIT: Duration = Duration::from_secs(10);
/// How long a restarted node has, in a rolling restart, to catch up with
/// the leader before the next node goes down.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(60);
/// Share of packets `LossyNetwork` drops on every link, in percent.
const LOSS_PERCENT: u8 = 15;

/// One kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    /// SIGKILL the leader; restart it when the fault ends.
    KillLeader,
    /// SIGKILL a follower; restart it when the fault ends.
    KillFollower,
    /// SIGSTOP the leader (it keeps its sockets and wakes up believing it
    /// leads); SIGCONT when the fault ends.
    PauseLeader,
    /// SIGSTOP a follower; SIGCONT when the fault ends.
    PauseFollower,
    /// Cut the leader off from every other node.
    IsolateLeader,
    /// Split the nodes into a random minority and majority.
    SplitMajority,
    /// Drop everything the leader sends to the others (it still hears
    /// them).
    LeaderCannotSend,
    /// Drop everything the others send to the leader (it still reaches
    /// them).
    LeaderCannotHear,
    /// Split the nodes into two halves that cannot talk, and one node
    /// that talks to both (a non-transitive partition).
    Bridge,
    /// Slow links on every node (tc netem, or tc tbf without netem).
    SlowNetwork,
    /// Drop a random share of every node's packets.
    LossyNetwork,
    /// Stop (SIGTERM) and restart every node, one after the other, each
    /// caught up before the next goes.
    RollingRestart,
    /// Split a minority away, then upgrade the guest through a majority
    /// node (kv 1.0.0 and kv 2.0.0 alternate: the same behaviour in
    /// different components). The minority switches when it catches up.
    UpgradeDuringPartition,
}

impl Fault {
    pub const ALL: [Fault; 13] = [
        Fault::KillLeader,
        Fault::KillFollower,
        Fault::PauseLeader,
        Fault::PauseFollower,
        Fault::IsolateLeader,
        Fault::SplitMajority,
        Fault::LeaderCannotSend,
        Fault::LeaderCannotHear,
        Fault::Bridge,
        Fault::SlowNetwork,
        Fault::LossyNetwork,
        Fault::RollingRestart,
        Fault::UpgradeDuringPartition,
    ];
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Fault::KillLeader => "kill-leader",
            Fault::KillFollower => "kill-follower",
            Fault::PauseLeader => "pause-leader",
            Fault::PauseFollower => "pause-follower",
            Fault::IsolateLeader => "isolate-leader",
            Fault::SplitMajority => "split-majority",
            Fault::LeaderCannotSend => "leader-cannot-send",
            Fault::LeaderCannotHear => "leader-cannot-hear",
            Fault::Bridge => "bridge",
            Fault::SlowNetwork => "slow-network",
            Fault::LossyNetwork => "lossy-network",
            Fault::RollingRestart => "rolling-restart",
            Fault::UpgradeDuringPartition => "upgrade-during-partition",
        })
    }
}

/// One step of the schedule.
#[derive(Debug, Clone)]
pub struct Step {
    pub fault: Fault,
    /// Healthy time before it.
    pub gap: Duration,
    pub duration: Duration,
    /// Draws for the step's own choices (which follower, which split).
    pub rng: Rng,
}

impl Fault {
    /// The kinds named in `list` (comma-separated, as printed, e.g.
    /// `kill-leader,bridge`).
    pub fn parse_list(list: &str) -> Vec<Fault> {
        list.split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .map(|name| {
                *Fault::ALL
                    .iter()
                    .find(|fault| fault.to_string() == name)
                    .unwrap_or_else(|| {
                        let known: Vec<String> = Fault::ALL.iter().map(Fault::to_string).collect();
                        panic!("unknown fault {name:?}; known: {}", known.join(","))
                    })
            })
            .collect()
    }
}

/// The seeded, endless list of steps.
#[derive(Debug)]
pub struct Schedule {
    rng: Rng,
    kinds: Vec<Fault>,
    first_round: Vec<Fault>,
}

impl Schedule {
    /// Steps of the given kinds (all of them once first).
    pub fn new(mut rng: Rng, kinds: &[Fault]) -> Self {
        assert!(!kinds.is_empty(), "no fault kinds to schedule");
        let mut first_round = kinds.to_vec();
        rng.shuffle(&mut first_round);
        first_round.reverse(); // popped from the back
        Schedule {
            rng,
            kinds: kinds.to_vec(),
            first_round,
        }
    }

    /// How many kinds it draws from.
    pub fn kinds(&self) -> usize {
        self.kinds.len()
    }
}

impl Iterator for Schedule {
    type Item = Step;

    fn next(&mut self) -> Option<Step> {
        let fault = match self.first_round.pop() {
            Some(fault) => fault,
            None => *self.rng.pick(&self.kinds),
        };
        Some(Step {
            fault,
            gap: self.rng.between(GAP.0, GAP.1),
            duration: self.rng.between(FAULT_DURATION.0, FAULT_DURATION.1),
            rng: self.rng.fork(0),
        })
    }
}

/// What the nemesis did.
#[derive(Debug, Default)]
pub struct NemesisReport {
    /// Faults injected, by kind.
    pub counts: BTreeMap<Fault, u32>,
    /// Nodes that did not stop within the grace period after SIGTERM.
    pub forced_stops: u32,
    /// What each upgrade attempt answered.
    pub upgrades: Vec<String>,
}

/// What an injected fault needs undone.
enum Undo {
    Restart(u8),
    Resume(u8),
    Network,
    Nothing,
}

/// Run the schedule against `db` until `duration` has passed and every kind
/// ran at least once; every fault is healed on return.
pub fn run(db: &mut Db, schedule: Schedule, duration: Duration) -> NemesisReport {
    let start = Instant::now();
    let mut report = NemesisReport::default();
    let kinds = schedule.kinds();
    for mut step in schedule {
        let every_kind_ran = report.counts.len() == kinds;
        if every_kind_ran && start.elapsed() >= duration {
            break;
        }
        std::thread::sleep(step.gap);
        let at = start.elapsed();
        // Shows whether the previous fault moved the leadership.
        let before = match db.leader_and_term() {
            Some((leader, term)) => format!("leader {leader} term {term}"),
            None => "no leader".to_owned(),
        };
        let (what, undo) = inject(db, &mut step, &mut report);
        *report.counts.entry(step.fault).or_default() += 1;
        if matches!(undo, Undo::Nothing) {
            // Over already (a rolling restart).
            println!(
                "[nemesis {:>6.1}s] ({before}) {}: {what}, took {:.1}s",
                at.as_secs_f64(),
                step.fault,
                (start.elapsed() - at).as_secs_f64()
            );
            db.save_logs();
            continue;
        }
        println!(
            "[nemesis {:>6.1}s] ({before}) {}: {what} for {:.1}s",
            at.as_secs_f64(),
            step.fault,
            step.duration.as_secs_f64()
        );
        std::thread::sleep(step.duration);
        match undo {
            Undo::Restart(id) => db.restart(id),
            Undo::Resume(id) => db.resume(id),
            Undo::Network => db.net.clear_faults(),
            Undo::Nothing => {}
        }
        db.save_logs();
    }
    report
}

/// The leader, or any serving node if none shows up in time.
fn leader_or_any(db: &Db, rng: &mut Rng) -> u8 {
    db.leader(LEADER_WAIT).unwrap_or_else(|| {
        let serving: Vec<u8> = db
            .ids()
            .into_iter()
            .filter(|&id| db.is_serving(id))
            .collect();
        *rng.pick(&serving)
    })
}

fn others(db: &Db, id: u8) -> Vec<u8> {
    db.ids().into_iter().filter(|&other| other != id).collect()
}

/// Apply `step`'s fault; says what it did and what to undo.
fn inject(db: &mut Db, step: &mut Step, report: &mut NemesisReport) -> (String, Undo) {
    let rng = &mut step.rng;
    match step.fault {
        Fault::KillLeader | Fault::KillFollower | Fault::PauseLeader | Fault::PauseFollower => {
            let leader = leader_or_any(db, rng);
            let target = match step.fault {
                Fault::KillLeader | Fault::PauseLeader => leader,
                _ => *rng.pick(&others(db, leader)),
            };
            if matches!(step.fault, Fault::KillLeader | Fault::KillFollower) {
                db.kill(target);
                (format!("SIGKILL node {target}"), Undo::Restart(target))
            } else {
                db.pause(target);
                (format!("SIGSTOP node {target}"), Undo::Resume(target))
            }
        }
        Fault::IsolateLeader => {
            let leader = leader_or_any(db, rng);
            db.net.partition(&[vec![leader], others(db, leader)]);
            (format!("node {leader} cut off"), Undo::Network)
        }
        Fault::SplitMajority => {
            let (minority, majority) = split_minority(db, rng);
            (
                format!("minority {minority:?} | majority {majority:?}"),
                Undo::Network,
            )
        }
        Fault::LeaderCannotSend | Fault::LeaderCannotHear => {
            let leader = leader_or_any(db, rng);
            for other in others(db, leader) {
                if step.fault == Fault::LeaderCannotSend {
                    db.net.block(leader, other);
                } else {
                    db.net.block(other, leader);
                }
            }
            let way = if step.fault == Fault::LeaderCannotSend {
                "from"
            } else {
                "to"
            };
            (
                format!("packets {way} leader {leader} dropped"),
                Undo::Network,
            )
        }
        Fault::Bridge => {
            let mut ids = db.ids();
            rng.shuffle(&mut ids);
            let bridge = ids.remove(0);
            let right = ids.split_off(ids.len() / 2);
            let left = ids;
            db.net.partition(&[left.clone(), right.clone()]);
            (
                format!("{left:?} | {right:?}, node {bridge} sees both"),
                Undo::Network,
            )
        }
        Fault::SlowNetwork => {
            for id in db.ids() {
                db.net.slow(id);
            }
            let how = if db.net.has_netem() {
                "netem delay 40±20 ms, 2% loss, 25% reordered"
            } else {
                "tbf at 64 kbit/s (this kernel has no netem)"
            };
            (format!("every link slow: {how}"), Undo::Network)
        }
        Fault::LossyNetwork => {
            for id in db.ids() {
                db.net.lossy(id, LOSS_PERCENT);
            }
            (
                format!("{LOSS_PERCENT}% of packets dropped on every link"),
                Undo::Network,
            )
        }
        Fault::UpgradeDuringPartition => {
            let (minority, majority) = split_minority(db, rng);
            let through = *rng.pick(&majority);
            let outcome = upgrade_through(db, through);
            report.upgrades.push(outcome.clone());
            (
                format!("minority {minority:?} cut off; upgrade through node {through}: {outcome}"),
                Undo::Network,
            )
        }
        Fault::RollingRestart => {
            let mut ids = db.ids();
            rng.shuffle(&mut ids);
            for &id in &ids {
                if !db.terminate(id) {
                    report.forced_stops += 1;
                    println!("[nemesis] node {id} did not stop on SIGTERM; killed it");
                }
                db.restart(id);
                wait_caught_up(db, id);
            }
            (format!("restarted in order {ids:?}"), Undo::Nothing)
        }
    }
}

/// How long an upgrade through the API may take (validation, the prepare
/// round, the activation).
const UPGRADE_TIMEOUT: Duration = Duration::from_secs(120);

/// Switch the cluster between version 1.0.0 and 2.0.0 of its guest
/// through node `id`; says what happened.
fn upgrade_through(db: &Db, id: u8) -> String {
    let active = db.status(id).map(|status| status.guest.version);
    let (v1, v2) = db.guest.files();
    let target = if active.as_deref() == Some("1.0.0") {
        v2
    } else {
        v1
    };
    let bytes = std::fs::read(crate::common::guest(target)).expect("read the guest");
    db.with_api(id, UPGRADE_TIMEOUT, |api| match api.upgrade(&bytes, &[]) {
        Ok(answer) => format!(
            "activated {} {} at index {}",
            answer.record.name, answer.record.version, answer.index
        ),
        Err(error) => format!("not activated ({error})"),
    })
}

/// Wait until node `id` applied what the leader had committed when it came
/// back.
fn wait_caught_up(db: &Db, id: u8) {
    let deadline = Instant::now() + CATCH_UP_TIMEOUT;
    let target = db
        .leader(CATCH_UP_TIMEOUT)
        .and_then(|leader| db.status(leader))
        .map(|status| status.commit_index)
        .unwrap_or_else(|| {
            panic!("no leader within {CATCH_UP_TIMEOUT:?} during a rolling restart")
        });
    loop {
        if db
            .status(id)
            .is_some_and(|status| status.applied_index >= target)
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "node {id} did not catch up to index {target} within {CATCH_UP_TIMEOUT:?} after a restart"
        );
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// Cut a random minority off from the majority; returns both sides.
fn split_minority(db: &Db, rng: &mut Rng) -> (Vec<u8>, Vec<u8>) {
    let mut ids = db.ids();
    rng.shuffle(&mut ids);
    let majority = ids.split_off((ids.len() - 1) / 2);
    let minority = ids;
    db.net.partition(&[minority.clone(), majority.clone()]);
    (minority, majority)
}
