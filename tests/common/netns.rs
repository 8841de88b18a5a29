//! Test hosts in network namespaces: one namespace per node, each joined by
//! a veth pair to a bridge in a "switch" namespace, addresses
//! `10.231.<k>.<i>/24`. The test sets the network up and [`TestNet`]'s
//! `Drop` tears it down, even when the test panics; it needs root (CI runs
//! as root). Set `IROH_RAFT_SKIP_NETNS=1` to skip such tests knowingly
//! ([`skip_reason`]).
//!
//! ```text
//!   <p>n1 (10.231.k.1) ──veth──┐
//!   <p>n2 (10.231.k.2) ──veth──┼── br0 in <p>sw
//!   <p>n3 (10.231.k.3) ──veth──┘
//! ```
//!
//! Faults, all on these namespaces only:
//!
//! - [`TestNet::cut`] / [`TestNet::heal`]: unplug a node's cable on the
//!   switch (nothing gets in or out of its veth; its loopback still works).
//! - [`TestNet::block`]: drop every packet from one node to another (one
//!   way), with nftables rules in both namespaces; partitions are made of
//!   these. [`TestNet::lossy`] drops a random share of a node's packets.
//! - [`TestNet::slow`]: a slow link, `tc netem` (delay, jitter, loss,
//!   reordering) where the kernel has it, else a congested one (`tc tbf` at
//!   a few kB/s: queueing delay and tail drops).
//! - [`TestNet::clear_faults`]: back to a clean network.
//!
//! A thread reaches a node's loopback (its API) by entering the node's
//! namespace for a while: [`in_netns`].

use std::fs::File;
use std::io::Write as _;
use std::marker::PhantomData;
use std::os::fd::AsFd as _;
use std::process::{Command, Stdio};
use std::sync::{Condvar, Mutex, PoisonError};

use rustix::thread::{LinkNameSpaceType, move_into_link_name_space};

/// Why tests that need network namespaces are skipped, if they are:
/// `IROH_RAFT_SKIP_NETNS` is set (a machine without root).
pub fn skip_reason() -> Option<&'static str> {
    std::env::var_os("IROH_RAFT_SKIP_NETNS")
        .is_some()
        .then_some("IROH_RAFT_SKIP_NETNS is set: skipping a test that needs network namespaces")
}

fn run(program: &str, args: &[&str]) {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn ip(args: &[&str]) {
    run("ip", args);
}

fn tc(args: &[&str]) {
    run("tc", args);
}

/// Whether `program args` succeeds (for probing what the system has).
fn succeeds(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// The nftables table each node's namespace gets for [`TestNet::block`] and
/// [`TestNet::lossy`]: two chains, flushed by [`TestNet::clear_faults`].
const FIREWALL: &str = "table inet chaos {
    chain input { type filter hook input priority 0; policy accept; }
    chain output { type filter hook output priority 0; policy accept; }
}
";

/// Whether some [`TestNet`] of this process exists, and the signal that
/// none does any more.
static BUSY: Mutex<bool> = Mutex::new(false);
static FREED: Condvar = Condvar::new();

/// A process's turn to have a [`TestNet`]: the network tests share one
/// test binary, whose harness runs them on parallel threads, yet two
/// networks of one process would share names (they are named after the
/// process) and the tests' time bounds assume the machine to themselves.
#[derive(Debug)]
struct Turn;

impl Turn {
    /// Wait until no other [`TestNet`] of this process exists.
    fn take() -> Turn {
        let busy = BUSY.lock().unwrap_or_else(PoisonError::into_inner);
        let mut busy = FREED
            .wait_while(busy, |busy| *busy)
            .unwrap_or_else(PoisonError::into_inner);
        *busy = true;
        Turn
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        *BUSY.lock().unwrap_or_else(PoisonError::into_inner) = false;
        FREED.notify_one();
    }
}

/// Namespaces `<p>sw` (the switch) and `<p>n1..`, where `<p>` names the
/// test binary's process, so runs in parallel never collide. One at a time
/// per process.
#[derive(Debug)]
pub struct TestNet {
    prefix: String,
    subnet: u8,
    nodes: u8,
    /// Whether the namespaces have nftables tables (see
    /// [`Self::install_firewall`]).
    firewall: bool,
    /// Whether the kernel has `sch_netem` (probed by
    /// [`Self::install_firewall`]).
    netem: bool,
    /// Released (last, after `Drop` deleted the namespaces) for the next
    /// network of this process.
    _turn: Turn,
}

impl TestNet {
    /// Create the switch and `nodes` node namespaces, once no other
    /// network of this process exists. `tag` tells tests apart in the names
    /// (one letter keeps interface names under 16 bytes).
    pub fn create(tag: &str, nodes: u8) -> Self {
        let turn = Turn::take();
        let pid = std::process::id();
        let mut net = TestNet {
            prefix: format!("ir{tag}{pid}"),
            subnet: (pid % 250) as u8,
            nodes: 0,
            firewall: false,
            netem: false,
            _turn: turn,
        };
        let sw = net.switch();
        // A namespace of ours left over by a killed run with the same pid.
        for name in std::iter::once(sw.clone()).chain((1..=nodes).map(|i| net.ns(i))) {
            if std::path::Path::new("/run/netns").join(&name).exists() {
                let _ = Command::new("ip").args(["netns", "del", &name]).status();
            }
        }
        ip(&["netns", "add", &sw]);
        ip(&["-n", &sw, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &sw, "link", "set", "br0", "up"]);
        for i in 1..=nodes {
            let ns = net.ns(i);
            let (inner, outer) = (net.inner_link(i), format!("{}s{i}", net.prefix));
            ip(&["netns", "add", &ns]);
            // From here on `Drop` deletes it, whatever fails next.
            net.nodes = i;
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
            ip(&[
                "link", "add", &inner, "type", "veth", "peer", "name", &outer,
            ]);
            ip(&["link", "set", &inner, "netns", &ns]);
            ip(&["link", "set", &outer, "netns", &sw]);
            ip(&["-n", &sw, "link", "set", &outer, "master", "br0"]);
            ip(&["-n", &sw, "link", "set", &outer, "up"]);
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/24", net.addr(i)),
                "dev",
                &inner,
            ]);
            ip(&["-n", &ns, "link", "set", &inner, "up"]);
        }
        net
    }

    pub fn switch(&self) -> String {
        format!("{}sw", self.prefix)
    }

    pub fn ns(&self, i: u8) -> String {
        format!("{}n{i}", self.prefix)
    }

    pub fn addr(&self, i: u8) -> String {
        format!("10.231.{}.{i}", self.subnet)
    }

    pub fn nodes(&self) -> u8 {
        self.nodes
    }

    /// The node's end of its veth pair (inside its namespace).
    fn inner_link(&self, i: u8) -> String {
        format!("{}v{i}", self.prefix)
    }

    /// Unplug node `i` from the switch: nothing gets in or out.
    pub fn cut(&self, i: u8) {
        self.set_switch_port(i, "down");
    }

    pub fn heal(&self, i: u8) {
        self.set_switch_port(i, "up");
    }

    fn set_switch_port(&self, i: u8, state: &str) {
        let port = format!("{}s{i}", self.prefix);
        ip(&["-n", &self.switch(), "link", "set", &port, state]);
    }

    /// `raft-host` arguments for node `i` in this network running `guest`.
    pub fn node_args(&self, i: u8, guest: &str) -> Vec<String> {
        vec![
            "--id".into(),
            i.to_string(),
            "--bind-addr".into(),
            format!("{}:7800", self.addr(i)),
            "--guest".into(),
            guest.to_owned(),
        ]
    }

    /// Start a cluster of this network's nodes running `guest` (a path),
    /// node `i` in namespace `i` with data dir `dirs[i - 1]`: node 1 creates
    /// it, the others join and are added through node 1.
    pub fn start_cluster(
        &self,
        guest: &str,
        dirs: &[tempfile::TempDir],
    ) -> Vec<super::NodeProcess> {
        use super::NodeProcess;
        let first_args = self.node_args(1, guest);
        let first_args: Vec<&str> = first_args.iter().map(String::as_str).collect();
        let first =
            NodeProcess::spawn_in(Some(&self.ns(1)), dirs[0].path(), &first_args).wait_ready();
        let mut nodes = vec![first];
        for i in 2..=self.nodes {
            let mut joiner = self.node_args(i, guest);
            joiner.extend(["--join".to_string(), nodes[0].ticket.clone()]);
            let joiner: Vec<&str> = joiner.iter().map(String::as_str).collect();
            let starting =
                NodeProcess::spawn_in(Some(&self.ns(i)), dirs[(i - 1) as usize].path(), &joiner);
            let added = nodes[0].cli(&["add-node", &starting.ticket]);
            assert!(
                added.status.success(),
                "{}",
                String::from_utf8_lossy(&added.stderr)
            );
            nodes.push(starting.wait_ready());
        }
        nodes
    }

    /// Give every node namespace an nftables table for [`Self::block`] and
    /// [`Self::lossy`], and probe for `tc netem`. Panics, saying what to
    /// install, when `nft` is missing.
    pub fn install_firewall(&mut self) {
        assert!(
            succeeds("nft", &["--version"]),
            "`nft` (nftables) is missing: `make setup` installs it \
             (or set IROH_RAFT_SKIP_NETNS=1 to skip the network tests knowingly)"
        );
        for i in 1..=self.nodes {
            self.nft(i, FIREWALL);
        }
        self.firewall = true;
        let link = self.inner_link(1);
        let ns = self.ns(1);
        self.netem = succeeds(
            "tc",
            &[
                "-n", &ns, "qdisc", "add", "dev", &link, "root", "netem", "delay", "1ms",
            ],
        );
        if self.netem {
            tc(&["-n", &ns, "qdisc", "del", "dev", &link, "root"]);
        }
    }

    /// Whether [`Self::slow`] uses `tc netem` (else `tc tbf`).
    pub fn has_netem(&self) -> bool {
        self.netem
    }

    fn nft(&self, i: u8, script: &str) {
        let ns = self.ns(i);
        let mut child = Command::new("ip")
            .args(["netns", "exec", &ns, "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run nft");
        child
            .stdin
            .take()
            .expect("piped stdin")
            .write_all(script.as_bytes())
            .expect("write the nft script");
        let output = child.wait_with_output().expect("wait for nft");
        assert!(
            output.status.success(),
            "nft in {ns}: {}\n{script}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Drop every packet from node `from` to node `to` (one way): on
    /// `from`'s way out and, should one slip through, on `to`'s way in.
    pub fn block(&self, from: u8, to: u8) {
        assert!(self.firewall, "install_firewall first");
        self.nft(
            from,
            &format!(
                "add rule inet chaos output ip daddr {} drop\n",
                self.addr(to)
            ),
        );
        self.nft(
            to,
            &format!(
                "add rule inet chaos input ip saddr {} drop\n",
                self.addr(from)
            ),
        );
    }

    /// Cut every link between the groups (each group stays connected
    /// within).
    pub fn partition(&self, groups: &[Vec<u8>]) {
        for (a, one) in groups.iter().enumerate() {
            for other in &groups[a + 1..] {
                for &x in one {
                    for &y in other {
                        self.block(x, y);
                        self.block(y, x);
                    }
                }
            }
        }
    }

    /// Drop `percent` of node `i`'s packets to the other nodes, at random.
    pub fn lossy(&self, i: u8, percent: u8) {
        assert!(self.firewall, "install_firewall first");
        self.nft(
            i,
            &format!(
                "add rule inet chaos output ip daddr 10.231.{}.0/24 numgen random mod 100 < {percent} drop\n",
                self.subnet
            ),
        );
    }

    /// Make node `i`'s outgoing link slow: with netem, 40 ms ± 20 ms of
    /// delay, 2% loss and a quarter of the packets reordered; without, a
    /// 64 kbit/s token bucket whose queue holds up to 200 ms.
    pub fn slow(&self, i: u8) {
        let (ns, link) = (self.ns(i), self.inner_link(i));
        let base = ["-n", &ns, "qdisc", "replace", "dev", &link, "root"];
        let shape: &[&str] = if self.netem {
            &[
                "netem", "delay", "40ms", "20ms", "loss", "2%", "reorder", "25%", "50%",
            ]
        } else {
            &["tbf", "rate", "64kbit", "burst", "4kb", "latency", "200ms"]
        };
        tc(&[&base[..], shape].concat());
    }

    /// Remove every rule and shaper: a clean network again (cut cables
    /// stay cut: [`Self::heal`] them).
    pub fn clear_faults(&self) {
        for i in 1..=self.nodes {
            if self.firewall {
                self.nft(
                    i,
                    "flush chain inet chaos input\nflush chain inet chaos output\n",
                );
            }
            // Fails when there is no shaper: that is the clean state.
            let _ = succeeds(
                "tc",
                &[
                    "-n",
                    &self.ns(i),
                    "qdisc",
                    "del",
                    "dev",
                    &self.inner_link(i),
                    "root",
                ],
            );
        }
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        // Deleting a namespace deletes its veth ends and nftables tables
        // too.
        for i in 1..=self.nodes {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(i)])
                .status();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.switch()])
            .status();
    }
}

/// The calling thread, moved into a network namespace until this is
/// dropped (a thread's network namespace is its own: the rest of the
/// process stays where it is). Not `Send`: it must be dropped on the thread
/// that made it.
#[derive(Debug)]
pub struct Entered {
    home: File,
    _same_thread: PhantomData<*const ()>,
}

/// Move the calling thread into namespace `ns` (as created with
/// `ip netns add`). Sockets opened meanwhile stay in `ns`.
pub fn enter(ns: &str) -> Entered {
    let home = File::open("/proc/thread-self/ns/net").expect("open this thread's namespace");
    let target =
        File::open(format!("/run/netns/{ns}")).unwrap_or_else(|e| panic!("open netns {ns}: {e}"));
    move_into_link_name_space(target.as_fd(), Some(LinkNameSpaceType::Network))
        .unwrap_or_else(|e| panic!("enter netns {ns}: {e}"));
    Entered {
        home,
        _same_thread: PhantomData,
    }
}

impl Drop for Entered {
    fn drop(&mut self) {
        move_into_link_name_space(self.home.as_fd(), Some(LinkNameSpaceType::Network))
            .expect("return to the thread's own namespace");
    }
}

/// Run `f` on this thread inside namespace `ns`.
pub fn in_netns<T>(ns: &str, f: impl FnOnce() -> T) -> T {
    let _entered = enter(ns);
    f()
}
