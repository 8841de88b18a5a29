//! A Jepsen-style test of a real cluster: `raft-host` processes in network
//! namespaces ([`db`]), clients recording a history of puts, deletes and
//! gets against different nodes ([`client`]), a seeded nemesis killing,
//! pausing, restarting and partitioning them ([`nemesis`]), and at the end
//! the checks ([`checks`]): progress after healing, convergence, no lost
//! acknowledged write, and the linearizability checker's verdict.
//!
//! ```text
//!   clients (threads, one request at a time) ──HTTP in the node's netns──► raft-host 1..n
//!        │ invoke / complete / fail / timeout                                 ▲
//!        ▼                                                                    │ SIGKILL, SIGSTOP, SIGTERM,
//!   Recorder ──► History ──► checks + linearizability::check             nemesis ─┘ nft drops, tc shaping
//! ```
//!
//! Knobs (environment variables):
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `SEED` | the seed of the fault schedule and the workload | from the clock, printed |
//! | `JEPSEN_SECONDS` | how long the nemesis runs (at least until every fault kind ran once) | 60 |
//! | `JEPSEN_NODES` | cluster size, 3 to 9 | 3 |
//! | `JEPSEN_CLIENTS` | concurrent clients | 2 × nodes − 1 |
//! | `JEPSEN_FAULTS` | the fault kinds to use, comma-separated (`kill-leader,bridge`) | all |
//! | `JEPSEN_KEEP` | keep the history and node logs even when the run passes | unset |
//! | `JEPSEN_GUEST` | `kv` (state in guest memory) or `kv_store` (state in the host's store) | by the seed: `kv_store` when odd |
//!
//! On failure the history (JSON lines) and every node's log are kept in a
//! temporary directory whose path is printed with the seed.

pub mod checks;
pub mod client;
pub mod db;
pub mod nemesis;
pub mod rng;

use std::fmt;
use std::time::{Duration, Instant};

use iroh_raft::linearizability::{History, KvModel, Outcome, check};

use self::client::{Clients, Journal, Keys, Tally};
use self::db::{Db, Guest};
use self::nemesis::{Fault, NemesisReport, Schedule};
use self::rng::Rng;

/// One run's settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub seed: u64,
    pub duration: Duration,
    pub nodes: u8,
    pub clients: u64,
    pub faults: Vec<Fault>,
    pub keep: bool,
    pub guest: Guest,
}

fn env_number(name: &str) -> Option<u64> {
    let text = std::env::var(name).ok()?;
    Some(
        text.trim()
            .parse()
            .unwrap_or_else(|e| panic!("{name}={text:?}: {e}")),
    )
}

impl Config {
    /// The command that runs this configuration again.
    pub fn rerun_command(&self) -> String {
        let mut vars = format!(
            "SEED={} JEPSEN_SECONDS={} JEPSEN_NODES={} JEPSEN_CLIENTS={}",
            self.seed,
            self.duration.as_secs(),
            self.nodes,
            self.clients
        );
        vars.push_str(match self.guest {
            Guest::Kv => " JEPSEN_GUEST=kv",
            Guest::KvStore => " JEPSEN_GUEST=kv_store",
        });
        if self.faults.len() < Fault::ALL.len() {
            let names: Vec<String> = self.faults.iter().map(Fault::to_string).collect();
            vars.push_str(&format!(" JEPSEN_FAULTS={}", names.join(",")));
        }
        format!("{vars} cargo test --test netns t92_jepsen -- --nocapture")
    }

    /// The settings from the environment (see the module doc), with the
    /// defaults of the short run in the normal test suite.
    pub fn from_env(default_seconds: u64) -> Self {
        let seed = env_number("SEED").unwrap_or_else(|| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("the clock is after 1970");
            now.as_nanos() as u64 ^ u64::from(std::process::id())
        });
        let nodes = env_number("JEPSEN_NODES").unwrap_or(3);
        assert!(
            (3..=9).contains(&nodes),
            "JEPSEN_NODES must be 3 to 9, not {nodes}"
        );
        Config {
            seed,
            duration: Duration::from_secs(env_number("JEPSEN_SECONDS").unwrap_or(default_seconds)),
            nodes: nodes as u8,
            clients: env_number("JEPSEN_CLIENTS").unwrap_or(2 * nodes - 1),
            faults: std::env::var("JEPSEN_FAULTS")
                .map(|list| Fault::parse_list(&list))
                .unwrap_or_else(|_| Fault::ALL.to_vec()),
            keep: std::env::var_os("JEPSEN_KEEP").is_some(),
            guest: match std::env::var("JEPSEN_GUEST").as_deref() {
                Ok("kv") => Guest::Kv,
                Ok("kv_store") => Guest::KvStore,
                Ok(other) => panic!("JEPSEN_GUEST must be kv or kv_store, not {other:?}"),
                // Both kinds over the runs of the normal suite.
                Err(_) if seed % 2 == 1 => Guest::KvStore,
                Err(_) => Guest::Kv,
            },
        }
    }
}

/// Keeps the evidence of a failing run: on a panic (any failed check or
/// wait) it writes the history to `<dir>/history.jsonl`, keeps the
/// directory with the node logs, and prints both with the seed.
struct Evidence {
    dir: tempfile::TempDir,
    journal: Journal,
    rerun: String,
    keep: bool,
}

impl Evidence {
    fn save(&mut self, why: &str) {
        let path = self.dir.path().join("history.jsonl");
        let saved = self.journal.history().save(&path);
        let requests = self.dir.path().join("requests.txt");
        if let Err(e) = self.journal.save_requests(&requests) {
            eprintln!("t92: saving {} failed: {e}", requests.display());
        }
        self.dir.disable_cleanup(true);
        eprintln!("t92 {why}; the same schedule again: {}", self.rerun);
        match saved {
            Ok(()) => eprintln!(
                "t92 history: {} (check it again: cargo run --example check_history -- {} kv)",
                path.display(),
                path.display()
            ),
            Err(e) => eprintln!("t92: saving the history to {} failed: {e}", path.display()),
        }
        eprintln!(
            "t92 node logs: {}/node-*.log; which node served each request and why it got no reply: {}",
            self.dir.path().display(),
            requests.display()
        );
    }
}

impl Drop for Evidence {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.save("FAILED");
        } else if self.keep {
            self.save("kept (JEPSEN_KEEP)");
        }
    }
}

/// Operation counts by outcome.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    pub ok: usize,
    pub fail: usize,
    pub unknown: usize,
}

impl fmt::Display for Counts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ok, {} failed, {} unknown",
            self.ok, self.fail, self.unknown
        )
    }
}

/// What a run did and found.
#[derive(Debug)]
pub struct Summary {
    pub config: Config,
    pub elapsed: Duration,
    pub nemesis: NemesisReport,
    pub netem: bool,
    /// By verb: put, delete, get.
    pub ops: Vec<(String, Counts)>,
    /// Why the workload's requests got no reply.
    pub no_reply: Tally,
    pub recovery: Duration,
    pub applied_index: u64,
    pub keys: usize,
    pub verdict: String,
    pub check_time: Duration,
    pub self_test: String,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.config;
        writeln!(f, "== t92 jepsen summary ==")?;
        writeln!(f, "seed:        SEED={}", c.seed)?;
        writeln!(f, "rerun:       {}", c.rerun_command())?;
        writeln!(
            f,
            "cluster:     {} nodes, {} clients, {} keys",
            c.nodes, c.clients, self.keys
        )?;
        writeln!(
            f,
            "duration:    {:.1}s (nemesis asked for {}s)",
            self.elapsed.as_secs_f64(),
            c.duration.as_secs()
        )?;
        let total: usize = self
            .ops
            .iter()
            .map(|(_, n)| n.ok + n.fail + n.unknown)
            .sum();
        writeln!(f, "operations:  {total}")?;
        for (verb, counts) in &self.ops {
            writeln!(f, "  {verb:<8} {counts}")?;
        }
        for (why, count) in &self.no_reply {
            writeln!(f, "  {why:<28} x{count}")?;
        }
        let faults: u32 = self.nemesis.counts.values().sum();
        writeln!(f, "faults:      {faults}")?;
        for (fault, count) in &self.nemesis.counts {
            writeln!(f, "  {fault:<20} x{count}")?;
        }
        for upgrade in &self.nemesis.upgrades {
            writeln!(f, "  upgrade: {upgrade}")?;
        }
        if self.nemesis.forced_stops > 0 {
            writeln!(
                f,
                "  ({} nodes needed SIGKILL after SIGTERM)",
                self.nemesis.forced_stops
            )?;
        }
        writeln!(
            f,
            "slow links:  {}",
            if self.netem {
                "tc netem"
            } else {
                "tc tbf (no netem in this kernel)"
            }
        )?;
        writeln!(
            f,
            "recovery:    every node took a write {:.1}s after healing (bound {}s)",
            self.recovery.as_secs_f64(),
            checks::RECOVERY_TIMEOUT.as_secs()
        )?;
        writeln!(
            f,
            "converged:   all replicas at applied index {}, same state",
            self.applied_index
        )?;
        writeln!(
            f,
            "checker:     {} in {:.2}s",
            self.verdict,
            self.check_time.as_secs_f64()
        )?;
        write!(f, "self-test:   {}", self.self_test)
    }
}

fn count_ops(history: &History) -> Vec<(String, Counts)> {
    let mut by_verb: Vec<(String, Counts)> = Vec::new();
    for op in &history.ops {
        let verb = op.input.split(' ').next().unwrap_or_default();
        let index = match by_verb.iter().position(|(v, _)| v == verb) {
            Some(index) => index,
            None => {
                by_verb.push((verb.to_owned(), Counts::default()));
                by_verb.len() - 1
            }
        };
        let counts = &mut by_verb[index].1;
        match op.outcome {
            Outcome::Ok { .. } => counts.ok += 1,
            Outcome::Fail { .. } => counts.fail += 1,
            Outcome::Unknown => counts.unknown += 1,
        }
    }
    by_verb
}

/// Run the whole test: set up, work under faults, heal, check. Panics on
/// any failed check, after keeping the evidence.
pub fn run(config: &Config) -> Summary {
    println!(
        "t92 jepsen: SEED={} ({} nodes, {} clients, nemesis for {}s)",
        config.seed,
        config.nodes,
        config.clients,
        config.duration.as_secs()
    );
    if config.faults.len() < Fault::ALL.len() {
        let names: Vec<String> = config.faults.iter().map(Fault::to_string).collect();
        println!("t92 faults: only {}", names.join(", "));
    }
    let started = Instant::now();
    let journal = Journal::new();
    // Declared first, dropped last: it sees the panic of anything below.
    let evidence = Evidence {
        dir: tempfile::Builder::new()
            .prefix("t92-jepsen-")
            .tempdir()
            .expect("a temp dir"),
        journal: journal.clone(),
        rerun: config.rerun_command(),
        keep: config.keep,
    };
    let mut rng = Rng::new(config.seed);
    let schedule = Schedule::new(rng.fork(1), &config.faults);
    let mut client_rng = rng.fork(2);

    let mut db = Db::start_with(config.nodes, evidence.dir.path(), config.guest);
    let keys = Keys::new();
    let clients = Clients::start(
        config.clients,
        &mut client_rng,
        keys,
        &db.endpoints,
        &journal,
    );
    let nemesis = nemesis::run(&mut db, schedule, config.duration);
    db.heal_all();
    let recovery = checks::progress_after_heal(&db, &journal);
    let no_reply = clients.stop();

    let (applied_index, states) = checks::converged_states(&db);
    for (id, state) in db.ids().into_iter().zip(&states) {
        assert_eq!(
            state, &states[0],
            "node {id}'s state differs from node 1's at applied index {applied_index}"
        );
    }
    // Upgrades during partitions: every replica runs the same component,
    // active since the same index.
    let components: Vec<_> = db
        .ids()
        .into_iter()
        .map(|id| {
            let status = db.status(id).expect("a converged node answers");
            (status.guest.hash, status.guest.since_index)
        })
        .collect();
    for (id, component) in db.ids().into_iter().zip(&components) {
        assert_eq!(
            component, &components[0],
            "node {id} runs another component (or since another index) than node 1"
        );
    }
    let mut all_keys = keys.all();
    all_keys.extend(db.ids().into_iter().map(checks::probe_key));
    // The workload's keys; besides them only what a migration to v2 of
    // the store guest writes (`_migrated`, a note of the upgrade).
    let (workload, migration): (checks::State, checks::State) = states[0]
        .clone()
        .into_iter()
        .partition(|(key, _)| all_keys.contains(key));
    assert!(
        migration.keys().all(|key| key == "_migrated"),
        "keys no client wrote: {migration:?}"
    );
    let finals = checks::final_reads(&db, &journal, &all_keys);
    for (id, reads) in db.ids().into_iter().zip(&finals) {
        let seen: checks::State = reads
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), v.clone()?)))
            .collect();
        assert_eq!(
            seen, workload,
            "node {id}'s linearizable reads differ from the replicas' state"
        );
    }
    db.save_logs();

    let history = journal.history();
    let lost = checks::lost_writes(&history, &finals[0]);
    let check_start = Instant::now();
    let report = check(&KvModel, &history).expect("a well-formed kv history");
    let check_time = check_start.elapsed();
    assert!(
        lost.is_empty() && report.verdict.is_linearizable(),
        "the history fails its checks\nfinal values against the writes: {} problem(s)\n{}\nlinearizability: {report}",
        lost.len(),
        lost.join("\n")
    );
    let verdict = format!(
        "linearizable ({} operations searched in {} partitions, {} steps)",
        report.operations, report.partitions, report.steps
    );

    // The same checker must reject this very history once it is corrupted,
    // or its verdict above means nothing.
    let (corrupted, how) = checks::corrupted_copy(&history);
    let rejected = check(&KvModel, &corrupted).expect("still well formed");
    assert!(
        rejected.verdict.is_violation(),
        "the checker accepted a corrupted history ({how}): {rejected}"
    );
    let self_test = format!("rejected a corrupted copy: {how}");

    let summary = Summary {
        config: config.clone(),
        elapsed: started.elapsed(),
        nemesis,
        netem: db.net.has_netem(),
        ops: count_ops(&history),
        no_reply,
        recovery,
        applied_index,
        keys: all_keys.len(),
        verdict,
        check_time,
        self_test,
    };
    drop(db);
    drop(evidence);
    summary
}
