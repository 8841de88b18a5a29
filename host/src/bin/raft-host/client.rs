//! The subcommands that talk to running nodes through their HTTP API, with
//! the client crate's blocking client (`iroh_raft_client::blocking`): one
//! endpoint (`--api`) or several with failover (`--endpoints`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use clap::{Args, Subcommand};
use iroh_raft::node;
use iroh_raft::transport::NodeTicket;
use iroh_raft_client::blocking::Client as ApiClient;
use iroh_raft_client::{
    AddMemberRequest, ClientOptions, Consistency, DEFAULT_API_URL, Error as ApiClientError, WatchOp,
};

use crate::guest::{self, GuestCommand};
use crate::output::{self, Format, OutputArgs};
use crate::{progress, upgrades};

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Propose a command; prints the guest's result once it is applied
    /// (`-o text`: the index and term it was applied at go to stderr).
    Propose {
        /// The command (text, or base64 with --base64); `-` reads it from
        /// stdin (a command that is a lone `-`: `--base64 LQ==` or a file).
        #[arg(required_unless_present = "file", conflicts_with = "file")]
        command: Option<String>,
        /// Read the command from FILE (`-`: stdin), for commands too large
        /// for a command line or not text; one final newline is dropped.
        #[arg(short = 'f', long = "file", value_name = "FILE")]
        file: Option<PathBuf>,
        #[command(flatten)]
        io: IoArgs,
    },
    /// Run a read-only query against the node's state.
    Query {
        /// The request (text, or base64 with --base64); `-` reads it from
        /// stdin (a request that is a lone `-`: `--base64 LQ==` or a file).
        #[arg(required_unless_present = "file", conflicts_with = "file")]
        request: Option<String>,
        /// Read the request from FILE (`-`: stdin); one final newline is
        /// dropped.
        #[arg(short = 'f', long = "file", value_name = "FILE")]
        file: Option<PathBuf>,
        /// `linearizable` (sees every write acknowledged before it), `lease`
        /// (leader lease, no round trip) or `stale` (this node's state).
        #[arg(long, default_value = "linearizable")]
        consistency: Consistency,
        #[command(flatten)]
        io: IoArgs,
    },
    /// Show the node's role, term, indexes and guest.
    Status {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Exit 0 if the node answers, 1 otherwise.
    Health {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Exit 0 if the node can serve now (it knows a leader and has applied
    /// close to the commit index: `GET /ready`), 1 with the reason
    /// otherwise. For readiness probes; `health` is the liveness probe.
    Ready {
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
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=iroh_raft::limits::MAX_CALL_FUEL))]
        apply_fuel: Option<u64>,
        /// Fuel budget of one `query` of the new component [default: the nodes'].
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=iroh_raft::limits::MAX_CALL_FUEL))]
        query_fuel: Option<u64>,
        /// Memory cap of the new component, in MiB [default: the nodes'].
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=crate::guest::MAX_MEMORY_LIMIT_MIB))]
        memory_limit_mib: Option<u64>,
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
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Print the changes of the keys under PREFIX as they commit, one line
    /// per key (`INDEX put KEY VALUE`, `INDEX delete KEY`; keys and values
    /// that are not UTF-8 as `base64:...`), for guests that keep their
    /// state in the node's store. Resumes by itself when a node goes away
    /// (give several with --endpoints). Exits 3 when the changes it must
    /// resume from were compacted away (read the state, then watch again
    /// with a fresh --since).
    Watch {
        /// Watch the keys that start with this (default: every key).
        #[arg(default_value = "")]
        prefix: String,
        /// Start after this log index [default: now].
        #[arg(long, value_name = "INDEX")]
        since: Option<u64>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Load the nodes with concurrent writes or reads and report
    /// throughput and latency percentiles (a closed loop: each client has
    /// one request in flight). For a guest that speaks the kv grammar.
    Bench(crate::bench::BenchArgs),
    /// The kv-store guest's commands: put (with a TTL or lease), get
    /// (with revisions), delete, cas, txn, list, leases.
    Kv {
        #[command(subcommand)]
        command: crate::kv::KvCommand,
    },
    /// Work with guest components (no node needed).
    Guest {
        #[command(subcommand)]
        command: GuestCommand,
    },
}

#[derive(Debug, Args)]
pub struct ApiArgs {
    /// URL of the node's API (`https://` for a node with TLS; a bare
    /// HOST:PORT means http://HOST:PORT).
    #[arg(long, value_name = "URL", default_value = DEFAULT_API_URL, env = "RAFT_HOST_API")]
    api: String,
    /// The APIs of several nodes (comma-separated): a call goes to the
    /// next one when a node cannot be reached and follows leader hints; a
    /// write is sent again only when it provably did not reach a node.
    /// Takes precedence over --api.
    #[arg(
        long,
        value_name = "URL,URL,...",
        value_delimiter = ',',
        env = "RAFT_HOST_ENDPOINTS"
    )]
    endpoints: Option<Vec<String>>,
    /// Bearer token for a node with --api-tokens (prefer the environment
    /// variable or --token-file: a command line is visible to other users).
    #[arg(
        long,
        value_name = "TOKEN",
        env = "RAFT_HOST_TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,
    /// Read the bearer token from this file (its first line); it takes
    /// precedence over --token and RAFT_HOST_TOKEN.
    #[arg(long, value_name = "FILE", env = "RAFT_HOST_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// Trust the certificates in this PEM file for https (a node's
    /// self-signed certificate, or its CA) instead of the public CAs.
    #[arg(long, value_name = "PEM", env = "RAFT_HOST_CA_CERT")]
    ca_cert: Option<PathBuf>,
    #[command(flatten)]
    pub output: OutputArgs,
}

impl ApiArgs {
    /// The output format asked for (`-o`, `--json`).
    pub fn format(&self) -> Format {
        self.output.format()
    }

    /// The client these flags describe.
    pub fn client(&self) -> anyhow::Result<ApiClient> {
        let token = read_token(self.token_file.as_deref(), self.token.as_deref())?;
        let ca_certs_pem = match &self.ca_cert {
            Some(path) => Some(
                std::fs::read(path)
                    .with_context(|| format!("reading the CA certificate {}", path.display()))?,
            ),
            None => None,
        };
        let options = ClientOptions {
            token,
            ca_certs_pem,
            ..Default::default()
        };
        Ok(match &self.endpoints {
            Some(endpoints) if !endpoints.is_empty() => {
                ApiClient::with_options(endpoints.clone(), &options)?
            }
            _ => ApiClient::with_options(self.api.as_str(), &options)?,
        })
    }
}

/// The bearer token: the file's first line, else the given one.
pub fn read_token(file: Option<&Path>, token: Option<&str>) -> anyhow::Result<Option<String>> {
    Ok(match (file, token) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the token file {}", path.display()))?;
            Some(text.lines().next().unwrap_or_default().trim().to_string())
        }
        (None, Some(token)) => Some(token.trim().to_string()),
        (None, None) => None,
    })
}

#[derive(Debug, Args)]
pub struct IoArgs {
    /// The argument is base64, and results are printed as base64.
    #[arg(long)]
    base64: bool,
    #[command(flatten)]
    api: ApiArgs,
}

pub fn run_client(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Propose { command, file, io } => {
            let client = io.api.client()?;
            let bytes = input_bytes(command.as_deref(), file.as_deref(), io.base64)?;
            let answer = client.propose(&bytes)?;
            output::proposal(&answer, io.api.format(), io.base64)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Query {
            request,
            file,
            consistency,
            io,
        } => {
            let client = io.api.client()?;
            let bytes = input_bytes(request.as_deref(), file.as_deref(), io.base64)?;
            let answer = client.query_with(&bytes, consistency)?;
            output::query(&answer, io.api.format(), io.base64, None)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { api } => {
            let status = api.client()?.status()?;
            output::status(&status, api.format())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Ticket { api } => {
            let status = api.client()?.status()?;
            let Some(ticket) = status.ticket else {
                anyhow::bail!("this node has no network address");
            };
            output::fields(
                api.format(),
                &ticket,
                &[("id", status.id.into()), ("ticket", ticket.clone().into())],
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Command::AddNode {
            ticket,
            learner,
            replaces,
            api,
        } => add_node(&api, &ticket, learner, replaces),
        Command::TransferLeader { target, api } => {
            let answer = api.client()?.transfer_leader(target)?;
            output::fields(
                api.format(),
                &format!("node {} leads", answer.leader_id),
                &[("leader id", answer.leader_id.into())],
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Snapshot { api } => {
            let client = api.client()?;
            let bar = progress::spinner("taking a snapshot");
            let info = client.snapshot();
            bar.finish_and_clear();
            let info = info?;
            match api.format() {
                Format::Json => output::json(&info)?,
                format => output::fields(
                    format,
                    &format!(
                        "snapshot at index {} (term {}), {} bytes: {}",
                        info.index, info.term, info.file_bytes, info.path
                    ),
                    &[
                        ("index", info.index.into()),
                        ("term", info.term.into()),
                        ("file bytes", info.file_bytes.into()),
                        ("path", info.path.clone().into()),
                    ],
                )?,
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Backup { out, api } => backup(&api, &out),
        Command::RemoveNode { id, api } => {
            let answer = api.client()?.remove_member(id)?;
            output::fields(
                api.format(),
                &format!("node {id} removed (log index {})", answer.index),
                &[("removed", id.into()), ("index", answer.index.into())],
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Guest { command } => guest::run_guest(command),
        Command::Kv { command } => crate::kv::run_kv(command),
        Command::Bench(args) => crate::bench::run_bench(args),
        Command::Upgrade {
            guest,
            dry_run,
            entries,
            apply_fuel,
            query_fuel,
            memory_limit_mib,
            api,
        } => {
            let limits = node::upgrade::LimitOverrides {
                apply_fuel,
                query_fuel,
                memory_limit_bytes: memory_limit_mib.map(|mib| mib * 1024 * 1024),
                maintenance_fuel: None,
            };
            let upgrade = upgrades::UpgradeCommand {
                guest,
                dry_run,
                entries,
                limits,
                format: api.format(),
            };
            upgrades::run_upgrade(&api.client()?, &upgrade)
        }
        Command::Rollback { api } => upgrades::run_rollback(&api.client()?, api.format()),
        Command::Components { api } => upgrades::run_components(&api.client()?, api.format()),
        Command::Watch { prefix, since, api } => {
            run_watch(&api.client()?, &prefix, since, api.format())
        }
        Command::Ready { api } => match api.client()?.ready() {
            Ok(ready) => {
                match api.format() {
                    Format::Json => output::json(&ready)?,
                    format => output::fields(
                        format,
                        &format!(
                            "{} (leader {}, term {}, applied {} of {})",
                            ready.status,
                            ready.leader_id,
                            ready.term,
                            ready.applied_index,
                            ready.commit_index
                        ),
                        &[
                            ("status", ready.status.clone().into()),
                            ("leader id", ready.leader_id.into()),
                            ("term", ready.term.into()),
                            ("applied index", ready.applied_index.into()),
                            ("commit index", ready.commit_index.into()),
                        ],
                    )?,
                }
                Ok(ExitCode::SUCCESS)
            }
            Err(error) => {
                eprintln!("not ready: {error}");
                Ok(ExitCode::FAILURE)
            }
        },
        Command::Health { api } => match api.client()?.health() {
            Ok(health) => {
                match api.format() {
                    Format::Json => output::json(&health)?,
                    format => output::fields(
                        format,
                        &health.status,
                        &[("status", health.status.clone().into())],
                    )?,
                }
                Ok(ExitCode::SUCCESS)
            }
            Err(error) => {
                eprintln!("{}", crate::error_line(&error.into()));
                Ok(ExitCode::from(crate::EXIT_ERROR))
            }
        },
    }
}

/// Add a node; while the leader works (the learner catching up through a
/// snapshot and the log, then its promotion), a bar shows its match index
/// against the commit index.
fn add_node(
    api: &ApiArgs,
    ticket: &NodeTicket,
    learner: bool,
    replaces: Option<u64>,
) -> anyhow::Result<ExitCode> {
    let client = api.client()?;
    let request = AddMemberRequest {
        ticket: ticket.to_string(),
        learner,
        replaces,
    };
    let id = ticket.raft_id;
    let (what, role) = match (learner, replaces) {
        (true, _) => (format!("node {id} added as a learner"), "learner"),
        (false, Some(old)) => (format!("node {id} replaced node {old}"), "voter"),
        (false, None) => (format!("node {id} added as a voter"), "voter"),
    };
    let bar = progress::entries(format!("adding node {id}"));
    let poller = client.clone();
    let answer = progress::while_polling(
        || {
            if let Ok(status) = poller.status() {
                progress::show_catch_up(&bar, id, progress::catch_up(&status, id));
            }
        },
        || client.change_members(request),
    );
    bar.finish_and_clear();
    let answer = answer?;
    let mut fields: Vec<(&str, serde_json::Value)> = vec![
        ("id", id.into()),
        ("role", role.into()),
        ("index", answer.index.into()),
    ];
    if let Some(old) = replaces {
        fields.push(("replaced", old.into()));
    }
    output::fields(
        api.format(),
        &format!("{what} (log index {})", answer.index),
        &fields,
    )?;
    Ok(ExitCode::SUCCESS)
}

/// Take a snapshot, download it to `out` (a bar of its bytes) and check
/// the whole file before calling it a backup.
fn backup(api: &ApiArgs, out: &Path) -> anyhow::Result<ExitCode> {
    let client = api.client()?;
    let bar = progress::spinner("taking a snapshot");
    let info = client.snapshot();
    bar.finish_and_clear();
    let info = info?;
    let partial = out.with_extension("partial");
    let file = std::fs::File::create(&partial)
        .with_context(|| format!("cannot create {}", partial.display()))?;
    let bar = progress::bytes(info.file_bytes, "downloading");
    let mut counted = progress::Counted::new(file, &bar);
    let bytes = client.download_snapshot(&mut counted);
    bar.finish_and_clear();
    let bytes = bytes?;
    let file = counted.inner;
    file.sync_all()?;
    drop(file);
    let bar = progress::spinner("checking the backup");
    let loaded = iroh_raft::node::snapshot::read(&partial);
    bar.finish_and_clear();
    let loaded =
        loaded.with_context(|| format!("the downloaded snapshot {}", partial.display()))?;
    std::fs::rename(&partial, out)?;
    output::fields(
        api.format(),
        &format!(
            "backup of index {} (term {}, snapshot taken at {}), {bytes} bytes: {}",
            loaded.header.index,
            loaded.header.term,
            info.index,
            out.display()
        ),
        &[
            ("index", loaded.header.index.into()),
            ("term", loaded.header.term.into()),
            ("snapshot index", info.index.into()),
            ("bytes", bytes.into()),
            ("path", out.display().to_string().into()),
        ],
    )?;
    Ok(ExitCode::SUCCESS)
}

/// Print each change under `prefix` until the watch ends: text lines, the
/// node's JSON lines, or table rows (columns of a fixed width: the rows
/// come one by one).
fn run_watch(
    client: &ApiClient,
    prefix: &str,
    since: Option<u64>,
    format: Format,
) -> anyhow::Result<ExitCode> {
    let watch = client.watch(prefix, since)?;
    if format == Format::Table {
        say!("{}", watch_row("INDEX", "OP", "KEY", ""));
    }
    for changes in watch {
        let changes = match changes {
            Ok(changes) => changes,
            Err(error @ ApiClientError::Compacted { .. }) => {
                eprintln!("error [compacted]: {error}");
                return Ok(ExitCode::from(crate::EXIT_ACT));
            }
            Err(error) => return Err(error.into()),
        };
        if format == Format::Json {
            say!("{}", changes.to_json_line());
            continue;
        }
        for event in &changes.events {
            let key = event.key.display();
            let (op, value) = match event.op {
                WatchOp::Put => ("put", event.value.as_ref().map(|v| v.display())),
                WatchOp::Delete => ("delete", None),
            };
            if format == Format::Table {
                let index = changes.index.to_string();
                say!(
                    "{}",
                    watch_row(&index, op, &key, value.as_deref().unwrap_or_default())
                );
                continue;
            }
            match value {
                Some(value) => say!("{} {op} {key} {value}", changes.index),
                None => say!("{} {op} {key}", changes.index),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A row of `watch -o table`.
fn watch_row(index: &str, op: &str, key: &str, value: &str) -> String {
    format!("{index:<10}  {op:<6}  {key:<24}  {value}")
        .trim_end()
        .to_string()
}

/// The bytes of a command or request: the argument, or (for `-` or
/// `--file`) what stdin or the file holds, base64-decoded with `--base64`.
fn input_bytes(
    argument: Option<&str>,
    file: Option<&Path>,
    base64: bool,
) -> anyhow::Result<Vec<u8>> {
    let bytes = match (argument, file) {
        (Some("-"), _) => read_input(Path::new("-"))?,
        (Some(argument), _) => argument.as_bytes().to_vec(),
        (None, Some(file)) => read_input(file)?,
        (None, None) => anyhow::bail!("give the argument, `-` (stdin) or --file FILE"),
    };
    if base64 {
        let text = std::str::from_utf8(&bytes).context("the input is not valid base64")?;
        BASE64
            .decode(text.trim())
            .context("the input is not valid base64")
    } else {
        Ok(bytes)
    }
}

/// What `path` holds (`-`: stdin), without one final newline (`echo` and
/// editors add one; a command that must end in a newline goes as base64).
pub fn read_input(path: &Path) -> anyhow::Result<Vec<u8>> {
    let mut bytes = if path == Path::new("-") {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut bytes)
            .context("reading stdin")?;
        bytes
    } else {
        std::fs::read(path).with_context(|| format!("reading {}", path.display()))?
    };
    if bytes.ends_with(b"\n") {
        bytes.pop();
        if bytes.ends_with(b"\r") {
            bytes.pop();
        }
    }
    Ok(bytes)
}
