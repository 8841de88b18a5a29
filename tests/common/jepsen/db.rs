//! The system under test: one `raft-host` process per network namespace of
//! a [`TestNet`], running the kv guest, and the process-level faults the
//! nemesis applies to them (SIGKILL and restart, SIGTERM and restart,
//! SIGSTOP and SIGCONT). Network faults go through [`Db::net`].
//!
//! Clients find the nodes through [`Endpoints`]: each node's namespace and
//! the URL of its API (on the namespace's loopback, a new port at each
//! start), or none while the node is down.

use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::Path;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use iroh_raft::api::ApiClient;
use iroh_raft::node::NodeStatus;
use rustix::process::{Pid, Signal, kill_process};

use crate::common::netns::{TestNet, in_netns};
use crate::common::{NodeProcess, leader_of, poll};

/// How long a status request may take before the node counts as
/// unreachable (a paused node never answers).
const STATUS_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a node has to exit after SIGTERM before it gets SIGKILL.
const GRACEFUL_STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// How often waits re-check the nodes.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Snapshot often and keep a short log behind it, so that a node that was
/// down for a few seconds catches up from a snapshot: those code paths run
/// under faults too.
const NODE_ARGS: &[&str] = &["--snapshot-every", "300", "--snapshot-keep-entries", "100"];

/// Where each node's API is, shared with the client threads.
#[derive(Debug)]
pub struct Endpoints {
    namespaces: Vec<String>,
    urls: Mutex<Vec<Option<String>>>,
    changed: Condvar,
}

impl Endpoints {
    fn lock(&self) -> MutexGuard<'_, Vec<Option<String>>> {
        self.urls.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn len(&self) -> usize {
        self.namespaces.len()
    }

    /// Node `index` (0-based)'s namespace and API URL, if it is up.
    pub fn get(&self, index: usize) -> Option<(&str, String)> {
        let url = self.lock()[index].clone()?;
        Some((&self.namespaces[index], url))
    }

    fn set(&self, index: usize, url: Option<String>) {
        self.lock()[index] = url;
        self.changed.notify_all();
    }

    /// Wait until some node is up, at most `timeout`.
    pub fn wait_any_up(&self, timeout: Duration) {
        let urls = self.lock();
        let _ = self
            .changed
            .wait_timeout_while(urls, timeout, |urls| urls.iter().all(Option::is_none))
            .unwrap_or_else(PoisonError::into_inner);
    }
}

/// One node: how to (re)start it, and its process while it runs.
struct Node {
    id: u8,
    ns: String,
    dir: tempfile::TempDir,
    args: Vec<String>,
    process: Option<NodeProcess>,
    paused: bool,
    /// Starts so far (the log marks each).
    starts: u32,
    /// Every line the node's processes logged.
    log: BufWriter<File>,
}

impl Node {
    fn spawn(&mut self) -> crate::common::StartingNode {
        assert!(self.process.is_none(), "node {} is running", self.id);
        self.starts += 1;
        let _ = writeln!(self.log, "=== start {} ===", self.starts);
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        NodeProcess::spawn_in(Some(&self.ns), self.dir.path(), &args)
    }

    fn save_log(&mut self) {
        if let Some(process) = &self.process {
            for line in process.take_log() {
                let _ = writeln!(self.log, "{line}");
            }
        }
        let _ = self.log.flush();
    }

    fn pid(&self) -> Pid {
        Pid::from_child(&self.process.as_ref().expect("running").child)
    }
}

/// The cluster and its network.
pub struct Db {
    /// Declared before `net`: the processes die before their namespaces go.
    nodes: Vec<Node>,
    pub net: TestNet,
    pub endpoints: std::sync::Arc<Endpoints>,
    /// The guest the cluster started with (see [`Guest`]).
    pub guest: Guest,
}

/// The kv guest the cluster runs, and the version upgrades switch to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guest {
    /// `kv` (state in guest memory) and `kv_v2`.
    Kv,
    /// `kv_store` (state in the host's store, queries beside the applier)
    /// and `kv_store_v2`.
    KvStore,
}

impl Guest {
    /// The guest file name of version 1 and of version 2.
    pub fn files(self) -> (&'static str, &'static str) {
        match self {
            Guest::Kv => ("kv", "kv_v2"),
            Guest::KvStore => ("kv_store", "kv_store_v2"),
        }
    }
}

impl Db {
    /// Set up `n` namespaces and start a cluster of `n` voters in them, the
    /// way an operator does: node 1 first, then each other node with
    /// `--join` and `add-node` on the leader. Node logs go to
    /// `<log_dir>/node-<i>.log`.
    pub fn start(n: u8, log_dir: &Path) -> Db {
        Db::start_with(n, log_dir, Guest::Kv)
    }

    /// [`Db::start`] with `guest`.
    pub fn start_with(n: u8, log_dir: &Path, guest: Guest) -> Db {
        let mut net = TestNet::create("j", n);
        net.install_firewall();
        let kv = crate::common::guest(guest.files().0).display().to_string();
        let nodes = (1..=n)
            .map(|i| {
                let mut args = net.node_args(i, &kv);
                args.extend(NODE_ARGS.iter().map(|a| a.to_string()));
                let log = File::create(log_dir.join(format!("node-{i}.log"))).expect("log file");
                Node {
                    id: i,
                    ns: net.ns(i),
                    dir: tempfile::tempdir().expect("tempdir"),
                    args,
                    process: None,
                    paused: false,
                    starts: 0,
                    log: BufWriter::new(log),
                }
            })
            .collect();
        let endpoints = std::sync::Arc::new(Endpoints {
            namespaces: (1..=n).map(|i| net.ns(i)).collect(),
            urls: Mutex::new(vec![None; n as usize]),
            changed: Condvar::new(),
        });
        let mut db = Db {
            nodes,
            net,
            endpoints,
            guest,
        };
        let first = db.nodes[0].spawn().wait_ready();
        let ticket = first.ticket.clone();
        db.set_process(1, first);
        for i in 2..=n {
            let node = db.node_mut(i);
            node.args.extend(["--join".to_string(), ticket.clone()]);
            let starting = node.spawn();
            let leader = db
                .leader(crate::common::CONVERGENCE_TIMEOUT)
                .expect("a leader while the cluster grows");
            let added = db.with_api(leader, Duration::from_secs(330), |api| {
                api.add_member(&starting.ticket)
            });
            if let Err(e) = added {
                panic!("add-node {i}: {e}");
            }
            db.set_process(i, starting.wait_ready());
        }
        db
    }

    pub fn ids(&self) -> Vec<u8> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    fn node(&self, id: u8) -> &Node {
        &self.nodes[id as usize - 1]
    }

    fn node_mut(&mut self, id: u8) -> &mut Node {
        &mut self.nodes[id as usize - 1]
    }

    fn set_process(&mut self, id: u8, process: NodeProcess) {
        let url = process.api_url.clone();
        self.node_mut(id).process = Some(process);
        self.endpoints.set(id as usize - 1, Some(url));
    }

    /// Running and not paused.
    pub fn is_serving(&self, id: u8) -> bool {
        let node = self.node(id);
        node.process.is_some() && !node.paused
    }

    pub fn is_running(&self, id: u8) -> bool {
        self.node(id).process.is_some()
    }

    /// Call node `id`'s API from inside its namespace.
    pub fn with_api<T>(&self, id: u8, timeout: Duration, call: impl FnOnce(&ApiClient) -> T) -> T {
        let node = self.node(id);
        let url = &node.process.as_ref().expect("running").api_url;
        in_netns(&node.ns, || call(&ApiClient::with_timeout(url, timeout)))
    }

    /// Node `id`'s status; `None` if it is down, paused or does not answer.
    pub fn status(&self, id: u8) -> Option<NodeStatus> {
        if !self.is_serving(id) {
            return None;
        }
        self.with_api(id, STATUS_TIMEOUT, |api| api.status().ok())
    }

    /// The leader the serving nodes report now and its term (the one with
    /// the highest term, should a deposed one not know yet).
    pub fn leader_and_term(&self) -> Option<(u8, u64)> {
        leader_of(self.ids().into_iter().filter_map(|id| self.status(id)))
            .map(|s| (s.id as u8, s.term))
    }

    /// [`Self::leader_and_term`]'s leader, waiting up to `timeout` for one.
    pub fn leader(&self, timeout: Duration) -> Option<u8> {
        poll(timeout, POLL_INTERVAL, || {
            self.leader_and_term().map(|(id, _)| id)
        })
    }

    /// SIGKILL node `id`: no shutdown code runs.
    pub fn kill(&mut self, id: u8) {
        let node = self.node_mut(id);
        node.save_log();
        let process = node.process.take().expect("running");
        node.paused = false;
        self.endpoints.set(id as usize - 1, None);
        process.kill();
    }

    /// SIGTERM node `id` and wait for it to exit (SIGKILL after
    /// [`GRACEFUL_STOP_TIMEOUT`]); returns whether it exited by itself.
    pub fn terminate(&mut self, id: u8) -> bool {
        self.endpoints.set(id as usize - 1, None);
        let node = self.node_mut(id);
        kill_process(node.pid(), Signal::TERM).expect("SIGTERM");
        let deadline = Instant::now() + GRACEFUL_STOP_TIMEOUT;
        let mut process = node.process.take().expect("running");
        let exited = loop {
            if process.child.try_wait().expect("try_wait").is_some() {
                break true;
            }
            if Instant::now() >= deadline {
                break false;
            }
            std::thread::sleep(POLL_INTERVAL);
        };
        node.process = Some(process);
        node.save_log();
        // Dropping it SIGKILLs it if it is still there.
        drop(node.process.take());
        exited
    }

    /// Start node `id` again on its data dir and wait until it serves.
    pub fn restart(&mut self, id: u8) {
        let process = self.node_mut(id).spawn().wait_ready();
        self.set_process(id, process);
    }

    /// SIGSTOP node `id`: it stops dead, sockets open, until [`Self::resume`].
    pub fn pause(&mut self, id: u8) {
        let node = self.node_mut(id);
        kill_process(node.pid(), Signal::STOP).expect("SIGSTOP");
        node.paused = true;
    }

    pub fn resume(&mut self, id: u8) {
        let node = self.node_mut(id);
        kill_process(node.pid(), Signal::CONT).expect("SIGCONT");
        node.paused = false;
    }

    /// Undo every fault: a clean network, every node running and resumed.
    pub fn heal_all(&mut self) {
        self.net.clear_faults();
        for id in self.ids() {
            self.net.heal(id);
            if self.node(id).paused {
                self.resume(id);
            }
            if !self.is_running(id) {
                self.restart(id);
            }
        }
    }

    /// Write what the nodes logged so far to their log files.
    pub fn save_logs(&mut self) {
        for node in &mut self.nodes {
            node.save_log();
        }
    }
}
