//! Real clusters of `raft-host` processes on loopback, grown the way an
//! operator grows them: start a node with `--join`, `add-node` its ticket on
//! the leader.

use iroh_raft::api::ApiClient;
use iroh_raft::node::{Consistency, NodeStatus};

use super::{NodeProcess, free_udp_port, leader_of, wait_for};

/// The id of the leader the running `members` agree on, once there is one.
pub fn leader(members: &[Member]) -> u64 {
    wait_for("a leader", || {
        leader_of(
            members
                .iter()
                .filter(|m| m.is_running())
                .filter_map(|m| m.client().status().ok()),
        )
        .map(|s| s.id)
    })
}

/// One node of a test cluster: its process and how to restart it.
pub struct Member {
    pub id: u64,
    pub port: u16,
    pub dir: tempfile::TempDir,
    pub process: Option<NodeProcess>,
    /// Arguments besides the data dir and API address.
    pub args: Vec<String>,
}

impl Member {
    pub fn new(id: u64, guest: &str, extra: &[&str]) -> Self {
        let port = free_udp_port();
        let mut args = vec![
            "--id".to_string(),
            id.to_string(),
            "--bind-addr".into(),
            format!("127.0.0.1:{port}"),
            "--guest".into(),
            super::guest(guest).display().to_string(),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        Member {
            id,
            port,
            dir: tempfile::tempdir().expect("tempdir"),
            process: None,
            args,
        }
    }

    pub fn process(&self) -> &NodeProcess {
        self.process.as_ref().expect("node is running")
    }

    pub fn is_running(&self) -> bool {
        self.process.is_some()
    }

    pub fn client(&self) -> ApiClient {
        self.process().client()
    }

    pub fn status(&self) -> NodeStatus {
        self.client().status().expect("status")
    }

    /// Start (or restart) the node with its arguments.
    pub fn start(&mut self) {
        assert!(self.process.is_none(), "stop it first");
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        self.process = Some(NodeProcess::start(self.dir.path(), &args));
    }

    /// SIGKILL the node.
    pub fn kill(&mut self) {
        self.process.take().expect("running").kill();
    }

    /// A text query at the given consistency; `None` on any error.
    pub fn query(&self, request: &str, consistency: Consistency) -> Option<String> {
        let answer = self
            .client()
            .query_with(request.as_bytes(), consistency)
            .ok()?;
        answer.output.text
    }
}

/// A cluster of members; node ids are 1, 2, ... in order of creation.
pub struct Cluster {
    pub members: Vec<Member>,
    guest: String,
    extra: Vec<String>,
    /// Arguments for node `id` alone (e.g. a clock skew).
    per_node: fn(u64) -> Vec<String>,
}

impl Cluster {
    /// Start node 1 as a new cluster and grow it to `n` voters.
    pub fn start(n: u64, guest: &str, extra: &[&str]) -> Self {
        Self::start_each(n, guest, extra, |_| Vec::new())
    }

    /// [`Self::start`], with `per_node(id)`'s arguments added for node `id`.
    pub fn start_each(
        n: u64,
        guest: &str,
        extra: &[&str],
        per_node: fn(u64) -> Vec<String>,
    ) -> Self {
        let mut cluster = Cluster {
            members: Vec::new(),
            guest: guest.to_string(),
            extra: extra.iter().map(|a| a.to_string()).collect(),
            per_node,
        };
        let mut first = cluster.new_member();
        first.start();
        cluster.members.push(first);
        for _ in 1..n {
            cluster.add_node(&[]);
        }
        cluster
    }

    fn new_member(&self) -> Member {
        let id = self.members.len() as u64 + 1;
        let own = (self.per_node)(id);
        let extra: Vec<&str> = self.extra.iter().chain(&own).map(String::as_str).collect();
        Member::new(id, &self.guest, &extra)
    }

    /// Start a new node with `--join` and add it through the leader with
    /// `add-node <ticket> <add_args>`; returns its index in `members`.
    pub fn add_node(&mut self, add_args: &[&str]) -> usize {
        let mut member = self.new_member();
        let join = self.member(self.leader()).process().ticket.clone();
        member.args.extend(["--join".to_string(), join]);
        let args: Vec<&str> = member.args.iter().map(String::as_str).collect();
        let starting = NodeProcess::spawn(member.dir.path(), &args);
        let mut cli = vec!["add-node", starting.ticket.as_str()];
        cli.extend(add_args);
        let added = self.member(self.leader()).process().cli(&cli);
        assert!(
            added.status.success(),
            "add-node: {}",
            String::from_utf8_lossy(&added.stderr)
        );
        member.process = Some(starting.wait_ready());
        self.members.push(member);
        self.members.len() - 1
    }

    pub fn member(&self, id: u64) -> &Member {
        self.members
            .iter()
            .find(|m| m.id == id)
            .expect("a member with this id")
    }

    pub fn member_mut(&mut self, id: u64) -> &mut Member {
        self.members
            .iter_mut()
            .find(|m| m.id == id)
            .expect("a member with this id")
    }

    pub fn running(&self) -> impl Iterator<Item = &Member> {
        self.members.iter().filter(|m| m.is_running())
    }

    /// The id of the leader the running nodes agree on.
    pub fn leader(&self) -> u64 {
        leader(&self.members)
    }

    /// A running node other than `leader`, once it follows `leader`.
    pub fn follower_of(&self, leader: u64) -> u64 {
        let follower = self
            .running()
            .find(|m| m.id != leader)
            .expect("a follower")
            .id;
        wait_for(&format!("node {follower} to follow {leader}"), || {
            (self.member(follower).status().leader_id == Some(leader)).then_some(())
        });
        follower
    }

    /// Run a CLI command against the leader; panics unless it succeeds.
    pub fn cli_on_leader(&self, args: &[&str]) -> String {
        let out = self.member(self.leader()).process().cli(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Wait until every running member answers `request` (stale, from its
    /// own state) with `expected`.
    pub fn wait_all_see(&self, request: &str, expected: &str) {
        for member in self.running() {
            wait_for(
                &format!("node {} to answer {request:?} with {expected:?}", member.id),
                || (member.query(request, Consistency::Stale)? == expected).then_some(()),
            );
        }
    }
}
