//! `raft-host`: run a node, or talk to one.
//!
//! Thin by design: parse the command line, set up tracing, call the library.

use iroh_raft::limits::{
    DEFAULT_APPLY_FUEL, DEFAULT_COMPACTION_KEEP_ENTRIES, DEFAULT_MEMORY_LIMIT_BYTES,
    DEFAULT_QUERY_FUEL, DEFAULT_SNAPSHOT_EVERY_ENTRIES, DEFAULT_SNAPSHOT_EVERY_LOG_BYTES,
};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use clap::{Args, Parser, Subcommand};
use iroh_raft::api::{self, ApiClient, ApiClientError, Output};

use iroh_raft::node::{self, ClusterMode, Consistency, GuestSource, NodeConfig, SnapshotPolicy};
use iroh_raft::transport::{
    IrohTransport, NodeTicket, PeerDirectory, RelayChoice, TransportConfig, identity,
};
use iroh_raft::wasm::GuestLimits;
use iroh_raft::wasm::conformance;

/// Print a line to stdout; a closed pipe (`raft-host status | head -1`) is
/// not an error worth a panic.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

mod upgrades;
/// A replicated state machine host: Raft consensus, a sled log, and your
/// logic as a WebAssembly component.
///
/// Without a subcommand, runs a node. The subcommands talk to a running node.
#[derive(Debug, Parser)]
#[command(name = "raft-host", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Guest component (.wasm) for a new cluster [default: the built-in counter].
    /// An existing data dir keeps the guest it was created with.
    #[arg(long, value_name = "PATH")]
    guest: Option<PathBuf>,
    /// Where the node keeps its Raft log, metadata and components.
    #[arg(
        long,
        value_name = "DIR",
        default_value = "raft-data",
        env = "RAFT_HOST_DATA_DIR"
    )]
    data_dir: PathBuf,
    /// Raft id of this node (non-zero).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    id: u64,
    /// Address of the client API (HTTP/JSON). Keep it on loopback unless a
    /// proxy in front of it authenticates clients.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7700")]
    api_addr: SocketAddr,
    /// UDP address for the iroh-raft protocol between nodes. Use a fixed port:
    /// peers dial the address in this node's ticket.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7800")]
    bind_addr: SocketAddr,
    /// Address(es) to put in this node's ticket instead of --bind-addr
    /// (when binding 0.0.0.0, or behind port forwarding).
    #[arg(long, value_name = "ADDR")]
    advertise_addr: Vec<SocketAddr>,
    /// Join an existing cluster through this member's ticket (first add this
    /// node on the leader with `raft-host add-node`). Ignored once the data
    /// dir holds a log.
    #[arg(long, value_name = "TICKET")]
    join: Option<NodeTicket>,
    /// Relays for clusters across NATs: `disabled` (default), `default`
    /// (n0's public relays) or a relay URL.
    #[arg(long, value_name = "MODE", default_value = "disabled", value_parser = parse_relay)]
    relay: RelayChoice,
    /// Also allow this iroh node id to connect (besides the members).
    #[arg(long, value_name = "NODE_ID")]
    allow: Vec<iroh::EndpointId>,
    /// Fuel budget of one `apply` call.
    #[arg(long, default_value_t = DEFAULT_APPLY_FUEL)]
    apply_fuel: u64,
    /// Fuel budget of one `query` call.
    #[arg(long, default_value_t = DEFAULT_QUERY_FUEL)]
    query_fuel: u64,
    /// Linear memory cap of the guest, in MiB.
    #[arg(long, default_value_t = DEFAULT_MEMORY_LIMIT_BYTES / (1024 * 1024),
          value_parser = clap::value_parser!(u64).range(1..=65536))]
    memory_limit_mib: u64,
    /// Take a snapshot (and compact the log) after this many entries
    /// (0: never by count).
    #[arg(long, value_name = "ENTRIES", default_value_t = DEFAULT_SNAPSHOT_EVERY_ENTRIES)]
    snapshot_every: u64,
    /// ... or after this many MiB of log, whichever comes first (0: never
    /// by size).
    #[arg(long, value_name = "MIB", default_value_t = DEFAULT_SNAPSHOT_EVERY_LOG_BYTES / (1024 * 1024))]
    snapshot_every_mib: u64,
    /// Entries kept in the log behind a snapshot (a follower that is only a
    /// little behind catches up from them instead of a snapshot).
    #[arg(long, value_name = "ENTRIES", default_value_t = DEFAULT_COMPACTION_KEEP_ENTRIES)]
    snapshot_keep_entries: u64,
    /// Longest a component may take to compile when this node validates an
    /// upgrade (checked before proposing, never at apply time).
    #[arg(long, value_name = "SECONDS", default_value_t = iroh_raft::limits::DEFAULT_COMPILE_BUDGET.as_secs())]
    compile_budget_secs: u64,
    /// Compare state hashes with the other replicas every this many
    /// committed entries (divergence detection; 0: never).
    #[arg(long, value_name = "ENTRIES", default_value_t = iroh_raft::limits::DEFAULT_STATE_CHECK_EVERY)]
    state_check_every: u64,
    /// TESTS ONLY: serve every read from local state, skipping ReadIndex.
    /// This breaks linearizability on purpose, so the test suites can show
    /// that their checker catches it. Never use it in production.
    #[arg(long, hide = true)]
    unsafe_local_reads: bool,
    /// Start a new single-node cluster from a backup file (made with
    /// `raft-host backup`); the data dir must be empty.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["join", "guest"])]
    restore_from: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Propose a command; prints the guest's result once it is applied.
    Propose {
        /// The command (text, or base64 with --base64).
        command: String,
        #[command(flatten)]
        io: IoArgs,
    },
    /// Run a read-only query against the node's state.
    Query {
        /// The request (text, or base64 with --base64).
        request: String,
        /// `linearizable` (sees every write acknowledged before it), `lease`
        /// (leader lease, no round trip) or `stale` (this node's state).
        #[arg(long, default_value = "linearizable")]
        consistency: Consistency,
        #[command(flatten)]
        io: IoArgs,
    },
    /// Show the node's role, term, indexes and guest.
    Status {
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Exit 0 if the node answers, 1 otherwise.
    Health {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Print the node's ticket (what other nodes and `add-node` need).
    Ticket {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Add a node to the cluster (ask the leader): it joins as a learner,
    /// catches up, and is promoted to voter; returns once it votes.
    AddNode {
        /// The new node's ticket, as it printed at start.
        ticket: NodeTicket,
        /// Keep it a non-voting learner.
        #[arg(long)]
        learner: bool,
        /// Replace this voter: once the new node caught up, one joint
        /// consensus change promotes it and removes the old one.
        #[arg(long, value_name = "ID", conflicts_with = "learner",
              value_parser = clap::value_parser!(u64).range(1..))]
        replaces: Option<u64>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Remove a voter or learner from the cluster (ask the leader; removing
    /// the leader itself hands leadership over first).
    RemoveNode {
        /// Raft id of the node to remove.
        #[arg(value_parser = clap::value_parser!(u64).range(1..))]
        id: u64,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Hand leadership to another voter (ask the leader).
    TransferLeader {
        /// Raft id of the new leader [default: the most up-to-date voter].
        #[arg(value_parser = clap::value_parser!(u64).range(1..))]
        target: Option<u64>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Take a snapshot now and compact the log behind it.
    Snapshot {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Take a snapshot and download it to FILE: a backup that
    /// `raft-host --restore-from FILE` starts a new cluster from.
    Backup {
        /// Where to write the snapshot file.
        out: PathBuf,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Upgrade the cluster's guest to another component, through the log:
    /// every replica switches at the same index, the state migrating
    /// through the old `snapshot()` and the new `restore()`. The component
    /// is validated here first, then by the node.
    Upgrade {
        /// The new component (.wasm).
        #[arg(long, value_name = "PATH")]
        guest: PathBuf,
        /// Change nothing: run the candidate against the node's current
        /// state and its most recent entries, next to the active component,
        /// and report what differs.
        #[arg(long)]
        dry_run: bool,
        /// How many recent entries the dry run compares.
        #[arg(long, value_name = "N", default_value_t = iroh_raft::limits::DEFAULT_DRY_RUN_ENTRIES)]
        entries: usize,
        /// Fuel budget of one `apply` of the new component [default: the nodes'].
        #[arg(long)]
        apply_fuel: Option<u64>,
        /// Fuel budget of one `query` of the new component [default: the nodes'].
        #[arg(long)]
        query_fuel: Option<u64>,
        /// Memory cap of the new component, in MiB [default: the nodes'].
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=65536))]
        memory_limit_mib: Option<u64>,
        /// Print the answer as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Go back to the component that was active before the current one
    /// (the same mechanism as an upgrade).
    Rollback {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// The component history: every activation, its index, hash, name,
    /// version and outcome.
    Components {
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Work with guest components (no node needed).
    Guest {
        #[command(subcommand)]
        command: GuestCommand,
    },
}

#[derive(Debug, Subcommand)]
enum GuestCommand {
    /// Check that a component is a well-behaved guest: load it as a node
    /// does, list its imports, run a script of commands twice, round-trip
    /// its snapshots, and measure it. Exits 1 if any check fails.
    Check {
        /// The component (.wasm) to check.
        path: PathBuf,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Run this script instead of the built-in one (lines `apply CMD`,
        /// `query REQ`, `apply-base64 B64`, `query-base64 B64`).
        #[arg(long, value_name = "FILE")]
        script: Option<PathBuf>,
        /// Keep compiled components here (as a node's data dir does), so a
        /// second check loads from the cache.
        #[arg(long, value_name = "DIR")]
        cache_dir: Option<PathBuf>,
        /// Fuel budget of one `apply` call (use the cluster's).
        #[arg(long, default_value_t = DEFAULT_APPLY_FUEL)]
        apply_fuel: u64,
        /// Fuel budget of one `query` call.
        #[arg(long, default_value_t = DEFAULT_QUERY_FUEL)]
        query_fuel: u64,
        /// Linear memory cap of the guest, in MiB.
        #[arg(long, default_value_t = DEFAULT_MEMORY_LIMIT_BYTES / (1024 * 1024),
              value_parser = clap::value_parser!(u64).range(1..=65536))]
        memory_limit_mib: u64,
    },
}

fn parse_relay(text: &str) -> Result<RelayChoice, String> {
    match text {
        "disabled" | "off" => Ok(RelayChoice::Disabled),
        "default" => Ok(RelayChoice::Default),
        url => url
            .parse()
            .map(RelayChoice::Custom)
            .map_err(|e| format!("not `disabled`, `default` or a relay URL: {e}")),
    }
}

#[derive(Debug, Args)]
struct ApiArgs {
    /// URL of the node's API.
    #[arg(long, value_name = "URL", default_value = api::DEFAULT_API_URL, env = "RAFT_HOST_API")]
    api: String,
}

#[derive(Debug, Args)]
struct IoArgs {
    /// The argument is base64, and results are printed as base64.
    #[arg(long)]
    base64: bool,
    #[command(flatten)]
    api: ApiArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let outcome = match cli.command {
        None => run_node(cli.run),
        Some(command) => run_client(command),
    };
    match outcome {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,raft=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn run_node(args: RunArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(async move {
        std::fs::create_dir_all(&args.data_dir)
            .with_context(|| format!("cannot create the data dir {}", args.data_dir.display()))?;
        let secret_key =
            identity::load_or_create(&args.data_dir).context("loading the node's secret key")?;
        let directory = PeerDirectory::new();
        for node_id in &args.allow {
            directory.allow_extra(*node_id);
        }
        let transport_config = TransportConfig {
            bind_addr: args.bind_addr,
            advertise_addrs: args.advertise_addr.clone(),
            relay: args.relay.clone(),
        };
        if args.bind_addr.ip().is_unspecified() && args.advertise_addr.is_empty() {
            tracing::warn!(
                "--bind-addr is unspecified: pass --advertise-addr so peers can dial this node"
            );
        }
        let transport =
            IrohTransport::bind(args.id, secret_key, &transport_config, directory.clone())
                .await
                .context("starting the iroh endpoint")?;
        let ticket = transport.ticket();
        // Printed first: a joining node's operator needs it for `add-node`.
        println!("ticket: {ticket}");
        let fresh = iroh_raft::storage::DataDir::new(&args.data_dir).is_fresh();
        let cluster = match (&args.join, &args.restore_from) {
            (Some(join), _) if fresh => ClusterMode::Join {
                members: wait_until_added(&transport, join, args.id).await?,
            },
            (_, Some(backup)) if fresh => ClusterMode::Restore {
                backup: backup.clone(),
                addr: Some(transport.local_addr()),
            },
            (_, Some(_)) => anyhow::bail!(
                "--restore-from needs an empty data dir; {} already holds a cluster",
                args.data_dir.display()
            ),
            _ => ClusterMode::NewClusterAt(transport.local_addr()),
        };
        let acceptor = transport.acceptor();
        let config = NodeConfig {
            id: args.id,
            data_dir: args.data_dir.clone(),
            guest: args.guest.map_or(GuestSource::Default, GuestSource::File),
            limits: GuestLimits {
                apply_fuel: args.apply_fuel,
                query_fuel: args.query_fuel,
                memory_limit_bytes: args.memory_limit_mib * 1024 * 1024,
                ..GuestLimits::default()
            },
            cluster,
            snapshot: SnapshotPolicy {
                every_entries: args.snapshot_every,
                every_log_bytes: args.snapshot_every_mib.saturating_mul(1024 * 1024),
                keep_entries: args.snapshot_keep_entries,
            },
            forwarder: Some(transport.forwarder()),
            directory: Some(std::sync::Arc::new(directory)),
            peer_stats: Some(transport.peer_stats_registry()),
            ticket: Some(ticket.to_string()),
            compile_budget: std::time::Duration::from_secs(args.compile_budget_secs),
            state_check_every: args.state_check_every,
            unsafe_local_reads: args.unsafe_local_reads,
        };
        if args.unsafe_local_reads {
            tracing::warn!("--unsafe-local-reads: reads are NOT linearizable (a test switch)");
        }
        if !args.api_addr.ip().is_loopback() {
            tracing::warn!(addr = %args.api_addr,
                "the client API has no authentication and is bound beyond loopback");
        }
        let node = node::start(config, transport).context("starting the node")?;
        let router = acceptor.serve(node.raft_sender());
        let server = match api::serve(node.clone(), args.api_addr).await {
            Ok(server) => server,
            Err(error) => {
                node.shutdown().await;
                return Err(error).with_context(|| format!("binding the API to {}", args.api_addr));
            }
        };
        let status = node.status().await?;
        println!(
            "raft-host: node {} is {} (term {}), guest {} {} ({}), data dir {}",
            status.id,
            status.role,
            status.term,
            status.guest.name,
            status.guest.version,
            &status.guest.hash[..16],
            args.data_dir.display()
        );
        let url = format!("http://{}", server.local_addr);
        println!("API: {url}   try, in another terminal:");
        let api_flag = if url == api::DEFAULT_API_URL {
            String::new()
        } else {
            format!(" --api {url}")
        };
        let exe = invocation_name();
        println!("  {exe} propose{api_flag} 'add 5'");
        println!("  {exe} query{api_flag} get");
        println!("  {exe} status{api_flag}");

        let reason = tokio::select! {
            reason = node.stopped() => reason,
            _ = shutdown_signal() => {
                tracing::info!("shutting down");
                node.shutdown().await;
                None
            }
        };
        let _ = server.task.await;
        let _ = router.shutdown().await;
        match reason {
            Some(reason) => Err(anyhow::anyhow!("the node stopped: {reason}")),
            None => Ok(ExitCode::SUCCESS),
        }
    })
}

/// How long a joining node waits between asking for the membership.
const JOIN_POLL_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Ask the cluster for its membership until it includes this node (an
/// operator runs `add-node` with this node's ticket meanwhile).
async fn wait_until_added(
    transport: &IrohTransport,
    join: &NodeTicket,
    id: u64,
) -> anyhow::Result<std::collections::BTreeMap<u64, iroh_raft::transport::PeerAddr>> {
    let mut attempts = 0u64;
    loop {
        match transport.fetch_members(join).await {
            Ok(members) if members.contains_key(&id) => return Ok(members),
            Ok(_) | Err(_) => {
                if attempts.is_multiple_of(10) {
                    println!(
                        "waiting to be added to the cluster: on the leader run `{} add-node {}`",
                        invocation_name(),
                        transport.ticket()
                    );
                }
            }
        }
        attempts += 1;
        tokio::select! {
            _ = tokio::time::sleep(JOIN_POLL_INTERVAL) => {}
            _ = shutdown_signal() => anyhow::bail!("interrupted while waiting to join"),
        }
    }
}

/// How to call this binary from the current directory, for the hints the
/// node prints (`./target/release/raft-host` when run through cargo).
fn invocation_name() -> String {
    let relative = std::env::current_exe().ok().and_then(|exe| {
        let cwd = std::env::current_dir().ok()?;
        let relative = exe.strip_prefix(cwd).ok()?;
        Some(format!("./{}", relative.display()))
    });
    relative.unwrap_or_else(|| "raft-host".to_string())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

fn run_client(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Propose { command, io } => {
            let client = ApiClient::new(&io.api.api);
            let bytes = input_bytes(&command, io.base64)?;
            report(client.propose(&bytes).map(|r| r.output), io.base64)
        }
        Command::Query {
            request,
            consistency,
            io,
        } => {
            let client = ApiClient::new(&io.api.api);
            let bytes = input_bytes(&request, io.base64)?;
            report(
                client.query_with(&bytes, consistency).map(|r| r.output),
                io.base64,
            )
        }
        Command::Status { json, api } => {
            let status = ApiClient::new(&api.api).status()?;
            if json {
                say!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                let leader = status
                    .leader_id
                    .map_or_else(|| "none".to_string(), |id| id.to_string());
                say!("node id:       {}", status.id);
                say!("role:          {} (leader: {leader})", status.role);
                say!("term:          {}", status.term);
                say!("commit index:  {}", status.commit_index);
                say!("applied index: {}", status.applied_index);
                say!("last index:    {}", status.last_index);
                say!("voters:        {:?}", status.voters);
                say!(
                    "snapshot:      {}   first log index: {}",
                    status
                        .snapshot_index
                        .map_or("none".to_string(), |i| format!("at index {i}")),
                    status.first_log_index
                );
                say!(
                    "guest:         {} {} ({}), active since index {}",
                    status.guest.name,
                    status.guest.version,
                    status.guest.hash,
                    status.guest.since_index
                );
                say!(
                    "guest stats:   {} applied, {} failed, {} instance rebuilds",
                    status.guest.applied_entries,
                    status.guest.failed_entries,
                    status.guest.instance_rebuilds
                );
                match &status.diverged {
                    Some(d) => say!(
                        "state check:   DIVERGED at index {} (own state {}, majority {:?} {}): \
                         this node stopped applying; wipe it and add it again",
                        d.index,
                        &d.own_hash[..16],
                        d.majority,
                        &d.majority_hash[..16]
                    ),
                    None => say!(
                        "state check:   {}",
                        status
                            .last_verified_state_check
                            .map_or("none verified yet".to_string(), |i| format!(
                                "agreed with the majority at index {i}"
                            ))
                    ),
                }
                say!("data dir:      {}", status.data_dir);
                if let Some(ticket) = &status.ticket {
                    say!("ticket:        {ticket}");
                }
                say!("members:");
                for member in &status.members {
                    let node_id = member
                        .node_id
                        .as_deref()
                        .map_or("?".to_string(), |id| id.chars().take(10).collect());
                    let addrs: Vec<String> = member.addrs.iter().map(|a| a.to_string()).collect();
                    let matched = member
                        .match_index
                        .map_or("-".to_string(), |m| m.to_string());
                    let contact = member
                        .last_contact_ms
                        .map_or("-".to_string(), |ms| format!("{ms} ms ago"));
                    let role = match (status.leader_id == Some(member.id), member.voter) {
                        (true, _) => "leader ",
                        (false, true) => "voter  ",
                        (false, false) => "learner",
                    };
                    say!(
                        "  {:>3} {role} node {node_id} at {} match {matched} last contact {contact}",
                        member.id,
                        if addrs.is_empty() {
                            "-".to_string()
                        } else {
                            addrs.join(",")
                        }
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Ticket { api } => {
            let status = ApiClient::new(&api.api).status()?;
            match status.ticket {
                Some(ticket) => say!("{ticket}"),
                None => anyhow::bail!("this node has no network address"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::AddNode {
            ticket,
            learner,
            replaces,
            api,
        } => {
            let request = api::AddMemberRequest {
                ticket: ticket.to_string(),
                learner,
                replaces,
            };
            let what = match (learner, replaces) {
                (true, _) => format!("node {} added as a learner", ticket.raft_id),
                (false, Some(old)) => format!("node {} replaced node {old}", ticket.raft_id),
                (false, None) => format!("node {} added as a voter", ticket.raft_id),
            };
            report_membership(ApiClient::new(&api.api).change_members(request), &what)
        }
        Command::TransferLeader { target, api } => {
            let answer = ApiClient::new(&api.api).transfer_leader(target)?;
            say!("node {} leads", answer.leader_id);
            Ok(ExitCode::SUCCESS)
        }
        Command::Snapshot { api } => {
            let info = ApiClient::new(&api.api).snapshot()?;
            say!(
                "snapshot at index {} (term {}), {} bytes: {}",
                info.index,
                info.term,
                info.file_bytes,
                info.path
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Backup { out, api } => {
            let client = ApiClient::new(&api.api);
            let info = client.snapshot()?;
            let partial = out.with_extension("partial");
            let mut file = std::fs::File::create(&partial)
                .with_context(|| format!("cannot create {}", partial.display()))?;
            let bytes = client.download_snapshot(&mut file)?;
            file.sync_all()?;
            drop(file);
            // Check the whole file before calling it a backup.
            let loaded = iroh_raft::node::snapshot::read(&partial)
                .with_context(|| format!("the downloaded snapshot {}", partial.display()))?;
            std::fs::rename(&partial, &out)?;
            say!(
                "backup of index {} (term {}, snapshot taken at {}), {bytes} bytes: {}",
                loaded.header.index,
                loaded.header.term,
                info.index,
                out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::RemoveNode { id, api } => {
            let answer = ApiClient::new(&api.api).remove_member(id);
            report_membership(answer, &format!("node {id} removed"))
        }
        Command::Guest { command } => run_guest(command),
        Command::Upgrade {
            guest,
            dry_run,
            entries,
            apply_fuel,
            query_fuel,
            memory_limit_mib,
            json,
            api,
        } => {
            let limits = node::upgrade::LimitOverrides {
                apply_fuel,
                query_fuel,
                memory_limit_bytes: memory_limit_mib.map(|mib| mib * 1024 * 1024),
            };
            let upgrade = upgrades::UpgradeCommand {
                guest,
                dry_run,
                entries,
                limits,
                json,
            };
            upgrades::run_upgrade(&ApiClient::new(&api.api), &upgrade)
        }
        Command::Rollback { api } => upgrades::run_rollback(&ApiClient::new(&api.api)),
        Command::Components { json, api } => {
            upgrades::run_components(&ApiClient::new(&api.api), json)
        }
        Command::Health { api } => match ApiClient::new(&api.api).health() {
            Ok(health) => {
                say!("{}", health.status);
                Ok(ExitCode::SUCCESS)
            }
            Err(error) => {
                eprintln!("unhealthy: {error}");
                Ok(ExitCode::FAILURE)
            }
        },
    }
}

fn run_guest(command: GuestCommand) -> anyhow::Result<ExitCode> {
    let GuestCommand::Check {
        path,
        json,
        script,
        cache_dir,
        apply_fuel,
        query_fuel,
        memory_limit_mib,
    } = command;
    let script = match script {
        Some(file) => conformance::script::read_file(&file)?,
        None => conformance::default_script(),
    };
    let options = conformance::CheckOptions {
        limits: GuestLimits {
            apply_fuel,
            query_fuel,
            memory_limit_bytes: memory_limit_mib * 1024 * 1024,
            ..GuestLimits::default()
        },
        script,
        cache_dir,
    };
    let report = conformance::check_file(&path, &options);
    if json {
        say!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        say!("{}", report.to_text().trim_end());
    }
    Ok(if report.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn report_membership(
    answer: Result<api::types::MembershipResponse, ApiClientError>,
    done: &str,
) -> anyhow::Result<ExitCode> {
    match answer {
        Ok(response) => {
            say!("{done} (log index {})", response.index);
            Ok(ExitCode::SUCCESS)
        }
        Err(ApiClientError::Api(info)) => {
            let hint = info
                .leader_hint
                .map(|id| format!(" (the leader is node {id}: ask its API)"))
                .unwrap_or_default();
            eprintln!("error [{}]: {}{hint}", info.code, info.message);
            Ok(ExitCode::FAILURE)
        }
        Err(error) => Err(error.into()),
    }
}

fn input_bytes(argument: &str, base64: bool) -> anyhow::Result<Vec<u8>> {
    if base64 {
        BASE64
            .decode(argument.trim())
            .context("the argument is not valid base64")
    } else {
        Ok(argument.as_bytes().to_vec())
    }
}

/// Print a guest result: as text when it is text, else as base64.
fn report(result: Result<Output, ApiClientError>, base64: bool) -> anyhow::Result<ExitCode> {
    match result {
        Ok(output) => {
            match (&output.text, base64) {
                (Some(text), false) => say!("{text}"),
                (None, false) => say!("base64:{}", output.base64),
                (_, true) => say!("{}", output.base64),
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(ApiClientError::Api(info)) => {
            match info.index {
                Some(index) => {
                    eprintln!("error [{}] at index {index}: {}", info.code, info.message)
                }
                None => eprintln!("error [{}]: {}", info.code, info.message),
            }
            Ok(ExitCode::FAILURE)
        }
        Err(error) => Err(error.into()),
    }
}
