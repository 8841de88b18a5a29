//! Running a node: the node flags, turned into a [`HostBuilder`].

use iroh_raft::limits::{
    DEFAULT_COMPACTION_KEEP_ENTRIES, DEFAULT_SNAPSHOT_EVERY_ENTRIES,
    DEFAULT_SNAPSHOT_EVERY_LOG_BYTES,
};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use clap::builder::TypedValueParser as _;
use iroh_raft::api::{self, ApiConfig, ApiLimits, ApiTls, ApiTokens};
use iroh_raft::host::HostBuilder;

use crate::guest::GuestLimitArgs;
use crate::progress;
use iroh_raft::node::{GuestSource, SnapshotPolicy};
use iroh_raft::transport::{NodeTicket, RelayChoice, TransportConfig};

/// `--join`'s ticket; `None` when given empty.
#[derive(Debug, Clone)]
struct JoinTicket(Option<NodeTicket>);

fn parse_join(text: &str) -> Result<JoinTicket, String> {
    if text.is_empty() {
        return Ok(JoinTicket(None));
    }
    text.parse()
        .map(|ticket| JoinTicket(Some(ticket)))
        .map_err(|e: iroh_raft::membership::TicketError| e.to_string())
}

/// How the node writes its log lines (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (colored on a terminal).
    Text,
    /// One JSON object a line, for log shippers (Vector, Fluent Bit, Loki's
    /// promtail, journald's JSON readers).
    Json,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// How the node writes its log (stderr): `text` for people, `json`
    /// (one object a line) for log shippers.
    #[arg(
        long,
        value_enum,
        value_name = "FORMAT",
        default_value = "text",
        env = "RAFT_HOST_LOG_FORMAT"
    )]
    pub log_format: LogFormat,
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
    /// Address of the client API (HTTP/JSON). Beyond loopback it needs
    /// --api-tokens (or --api-insecure); see the README's "Security".
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7700")]
    api_addr: SocketAddr,
    /// Require a bearer token on the API: a file of lines `ROLE TOKEN`
    /// (ROLE: read, write or admin), readable by its owner only.
    #[arg(long, value_name = "FILE", env = "RAFT_HOST_API_TOKENS")]
    api_tokens: Option<PathBuf>,
    /// Serve the API over TLS with this PEM certificate (chain).
    #[arg(long, value_name = "PEM", requires = "api_tls_key")]
    api_tls_cert: Option<PathBuf>,
    /// The PEM private key of --api-tls-cert (readable by its owner only).
    #[arg(long, value_name = "PEM", requires = "api_tls_cert")]
    api_tls_key: Option<PathBuf>,
    /// Serve the API beyond loopback without --api-tokens: anyone who
    /// reaches it may replace the guest and read the whole state. Only
    /// behind something that authenticates clients.
    #[arg(long)]
    api_insecure: bool,
    /// API connections served at once; more are answered 503.
    #[arg(long, value_name = "N", default_value_t = iroh_raft::limits::API_MAX_CONNECTIONS,
          value_parser = clap::value_parser!(u64).range(1..100_000).map(|n| n as usize))]
    api_max_connections: usize,
    /// Longest a client may take for a TLS handshake or a request's headers
    /// (and longest an idle connection stays open).
    #[arg(long, value_name = "SECONDS", default_value_t = iroh_raft::limits::API_HEADER_TIMEOUT.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    api_header_timeout_secs: u64,
    /// Longest a client may take to send a JSON body (408 after).
    #[arg(long, value_name = "SECONDS", default_value_t = iroh_raft::limits::API_BODY_TIMEOUT.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    api_body_timeout_secs: u64,
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
    /// dir holds a log. An empty RAFT_HOST_JOIN counts as unset (compose
    /// files and unit environments pass one to every node).
    #[arg(long, value_name = "TICKET", env = "RAFT_HOST_JOIN", value_parser = parse_join)]
    join: Option<JoinTicket>,
    /// Relays for clusters across NATs: `disabled` (default), `default`
    /// (n0's public relays) or a relay URL.
    #[arg(long, value_name = "MODE", default_value = "disabled", value_parser = parse_relay)]
    relay: RelayChoice,
    /// Also allow this iroh node id to connect (besides the members).
    #[arg(long, value_name = "NODE_ID")]
    allow: Vec<iroh::EndpointId>,
    #[command(flatten)]
    limits: GuestLimitArgs,
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
    /// TESTS ONLY: run this node's wall clock this many ms ahead (negative:
    /// behind), as a machine with a badly set clock would. Its entries as
    /// leader carry that time (lease expiry follows them).
    #[arg(long, hide = true, value_name = "MS", allow_negative_numbers = true)]
    clock_skew_ms: Option<i64>,
    /// Applied entries whose changes are kept for watchers to resume from
    /// (`raft-host watch --since`); older ones are answered `compacted`
    /// (0: keep none, watches see only what happens while they run).
    #[arg(long, value_name = "ENTRIES", default_value_t = iroh_raft::limits::DEFAULT_WATCH_HISTORY_ENTRIES)]
    watch_history: u64,
    /// Watches served at once; each holds an API connection
    /// (--api-max-connections) while it runs.
    #[arg(long, value_name = "N", default_value_t = iroh_raft::limits::DEFAULT_MAX_WATCHERS)]
    max_watchers: usize,
    /// A host name clients use to reach the API (repeatable); besides IP
    /// addresses and `localhost` the API refuses requests naming other
    /// hosts (DNS rebinding).
    #[arg(long = "api-allowed-host", value_name = "NAME")]
    api_allowed_hosts: Vec<String>,
    /// Start a new single-node cluster from a backup file (made with
    /// `raft-host backup`); the data dir must be empty.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["join", "guest"])]
    restore_from: Option<PathBuf>,
    /// Threads that run the node's network and API tasks [default: one
    /// fewer than the CPUs, at least 1]. Persistence and the guest have
    /// threads of their own. Nodes that share a machine: give each its
    /// share of the CPUs.
    #[arg(long, value_name = "N", env = "RAFT_HOST_WORKER_THREADS",
          value_parser = clap::value_parser!(u64).range(1..=iroh_raft::limits::MAX_WORKER_THREADS as u64).map(|n| n as usize))]
    worker_threads: Option<usize>,
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

impl RunArgs {
    /// The rules between flags that clap checks only on the command line
    /// (a config file's values are defaults to clap): a usage error.
    pub fn check(&self) -> Result<(), String> {
        if self.api_tls_cert.is_some() != self.api_tls_key.is_some() {
            return Err(
                "--api-tls-cert and --api-tls-key go together: one of them is set (on the \
                 command line, in the environment or in the config file), the other is not"
                    .to_string(),
            );
        }
        Ok(())
    }

    /// How the API is served: its tokens and certificate are read here, so
    /// a bad file stops the node before anything starts.
    fn api_config(&self) -> anyhow::Result<ApiConfig> {
        let tokens = match &self.api_tokens {
            Some(path) => Some(ApiTokens::from_file(path)?),
            None => None,
        };
        let tls = match (&self.api_tls_cert, &self.api_tls_key) {
            (Some(cert), Some(key)) => Some(ApiTls::from_pem_files(cert, key)?),
            _ => None,
        };
        Ok(ApiConfig {
            access: api::ApiAccess {
                allowed_hosts: self.api_allowed_hosts.clone(),
            },
            tokens,
            tls,
            limits: ApiLimits {
                max_connections: self.api_max_connections,
                header_timeout: std::time::Duration::from_secs(self.api_header_timeout_secs),
                body_timeout: std::time::Duration::from_secs(self.api_body_timeout_secs),
                max_watchers: self.max_watchers,
                ..ApiLimits::default()
            },
            insecure: self.api_insecure,
        })
    }

    /// The node these flags describe.
    fn builder(&self) -> anyhow::Result<HostBuilder> {
        let mut builder = HostBuilder::new(&self.data_dir)
            .id(self.id)
            .guest(
                self.guest
                    .clone()
                    .map_or(GuestSource::Default, GuestSource::File),
            )
            .limits(self.limits.limits())
            .snapshot_policy(SnapshotPolicy {
                every_entries: self.snapshot_every,
                every_log_bytes: self.snapshot_every_mib.saturating_mul(1024 * 1024),
                keep_entries: self.snapshot_keep_entries,
            })
            .compile_budget(std::time::Duration::from_secs(self.compile_budget_secs))
            .state_check_every(self.state_check_every)
            .unsafe_local_reads(self.unsafe_local_reads)
            .clock_skew_ms(self.clock_skew_ms.unwrap_or(0))
            .watch_history(self.watch_history)
            .transport(TransportConfig {
                bind_addr: self.bind_addr,
                advertise_addrs: self.advertise_addr.clone(),
                relay: self.relay.clone(),
            })
            .api(self.api_addr)
            .api_config(self.api_config()?);
        for node_id in &self.allow {
            builder = builder.allow(*node_id);
        }
        if let Some(JoinTicket(Some(join))) = &self.join {
            builder = builder.join(join.clone());
        }
        if let Some(backup) = &self.restore_from {
            builder = builder.restore_from(backup);
        }
        Ok(builder)
    }
}

pub fn run_node(args: RunArgs) -> anyhow::Result<ExitCode> {
    // Whatever the node or sled creates later (sled's blob and snapshot
    // files too) is its owner's only: the data dir holds the whole state.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let workers = args
        .worker_threads
        .unwrap_or_else(iroh_raft::limits::default_worker_threads);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(async move {
        tracing::debug!(workers, "tokio worker threads");
        if args.bind_addr.ip().is_unspecified() && args.advertise_addr.is_empty() {
            tracing::warn!(
                "--bind-addr is unspecified: pass --advertise-addr so peers can dial this node"
            );
        }
        let mut bound = args.builder()?.bind().await?;
        let ticket = bound.ticket();
        if args.restore_from.is_some() && !bound.is_fresh() {
            bound.close().await;
            anyhow::bail!(
                "--restore-from needs an empty data dir; {} already holds a cluster",
                args.data_dir.display()
            );
        }
        // A node that joins prints its ticket now: the operator needs it
        // for `add-node` before the node can start. Any other node prints
        // it once it runs, so a node that fails to start prints only why.
        let joining = matches!(&args.join, Some(JoinTicket(Some(_)))) && bound.is_fresh();
        if joining {
            println!("ticket: {ticket}");
            let hint = format!(
                "waiting to be added to the cluster: on the leader run `{} add-node {ticket}`",
                invocation_name()
            );
            let added = tokio::select! {
                () = bound.wait_until_added(|attempt| {
                    if attempt.is_multiple_of(10) {
                        println!("{hint}");
                    }
                }) => true,
                _ = shutdown_signal() => false,
            };
            if !added {
                bound.close().await;
                anyhow::bail!("interrupted while waiting to join");
            }
        }
        if args.unsafe_local_reads {
            tracing::warn!("--unsafe-local-reads: reads are NOT linearizable (a test switch)");
        }
        let restoring = args
            .restore_from
            .as_ref()
            .map(|backup| progress::spinner(format!("restoring {}", backup.display())));
        let host = bound.start().await;
        if let Some(bar) = restoring {
            bar.finish_and_clear();
        }
        let host = host?;
        if !joining {
            println!("ticket: {ticket}");
        }
        let status = host.node().status().await?;
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
        let url = host.api_url().context("the API was asked for")?;
        println!("API: {url}   try, in another terminal:");
        if args.api_tokens.is_some() {
            println!(
                "  (with a token: --token-file FILE or RAFT_HOST_TOKEN; https: --ca-cert PEM)"
            );
        }
        let api_flag = if url == api::DEFAULT_API_URL {
            String::new()
        } else {
            format!(" --api {url}")
        };
        let exe = invocation_name();
        for (verb, argument) in banner_examples(&status.guest.examples) {
            println!("  {exe} {verb}{api_flag} {argument}");
        }
        println!("  {exe} status{api_flag}");
        if status.guest.examples.is_empty() {
            println!(
                "  {exe} query{api_flag} REQUEST   (this guest names no examples: see its docs)"
            );
        }

        let reason = tokio::select! {
            reason = host.stopped() => reason,
            _ = shutdown_signal() => {
                tracing::info!("shutting down");
                None
            }
        };
        host.shutdown().await;
        match reason {
            Some(reason) => Err(anyhow::anyhow!("the node stopped: {reason}")),
            None => Ok(ExitCode::SUCCESS),
        }
    })
}

/// The guest's examples as CLI arguments: `propose 'put a 1'`, `query get`
/// (quoted for a POSIX shell when they need it).
fn banner_examples(examples: &[String]) -> Vec<(&str, String)> {
    examples
        .iter()
        .filter_map(|line| {
            let (verb, rest) = line.split_once(' ')?;
            Some((verb, shell_quote(rest)))
        })
        .collect()
}

/// `text` as one word of a POSIX shell.
fn shell_quote(text: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_-./:=@,+".contains(c);
    if !text.is_empty() && text.chars().all(plain) {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
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
