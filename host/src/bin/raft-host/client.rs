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
    AddMemberRequest, ClientOptions, Consistency, DEFAULT_API_URL, Error as ApiClientError,
    MembershipResponse, Output, WatchOp,
};

use crate::guest::{self, GuestCommand};
use crate::upgrades;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Propose a command; prints the guest's result once it is applied.
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
        /// Print each entry's changes as the JSON line the node sent.
        #[arg(long)]
        json: bool,
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
}

impl ApiArgs {
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
            report(client.propose(&bytes).map(|r| r.output), io.base64)
        }
        Command::Query {
            request,
            file,
            consistency,
            io,
        } => {
            let client = io.api.client()?;
            let bytes = input_bytes(request.as_deref(), file.as_deref(), io.base64)?;
            report(
                client.query_with(&bytes, consistency).map(|r| r.output),
                io.base64,
            )
        }
        Command::Status { json, api } => {
            let status = api.client()?.status()?;
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
                if let Some(world) = status.guest.world {
                    say!("guest world:   {world}");
                }
                if !status.guest.examples.is_empty() {
                    say!("guest examples: {}", status.guest.examples.join("; "));
                }
                if let Some(store) = status.guest.store {
                    say!(
                        "guest store:   {} keys, {:.1} MiB",
                        store.keys,
                        store.bytes as f64 / (1024.0 * 1024.0)
                    );
                }
                if let Some(since) = status.guest.checkpoint_failing_since {
                    say!(
                        "checkpoints:   FAILING since index {since} ({} failures; {} bytes to \
                         replay on a trap; no snapshots, the log is not compacted)",
                        status.guest.checkpoint_failures,
                        status.guest.uncheckpointed_bytes
                    );
                }
                if status.guest.refusing_commands {
                    say!(
                        "               REFUSING NEW COMMANDS: the guest can no longer make \
                         progress; raise its memory limit (`raft-host upgrade --guest <the active \
                         .wasm> --memory-limit-mib <larger>`) or move to a store-backed guest"
                    );
                }
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
            let status = api.client()?.status()?;
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
            let request = AddMemberRequest {
                ticket: ticket.to_string(),
                learner,
                replaces,
            };
            let what = match (learner, replaces) {
                (true, _) => format!("node {} added as a learner", ticket.raft_id),
                (false, Some(old)) => format!("node {} replaced node {old}", ticket.raft_id),
                (false, None) => format!("node {} added as a voter", ticket.raft_id),
            };
            report_membership(api.client()?.change_members(request), &what)
        }
        Command::TransferLeader { target, api } => {
            let answer = api.client()?.transfer_leader(target)?;
            say!("node {} leads", answer.leader_id);
            Ok(ExitCode::SUCCESS)
        }
        Command::Snapshot { api } => {
            let info = api.client()?.snapshot()?;
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
            let client = api.client()?;
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
            let answer = api.client()?.remove_member(id);
            report_membership(answer, &format!("node {id} removed"))
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
            json,
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
                json,
            };
            upgrades::run_upgrade(&api.client()?, &upgrade)
        }
        Command::Rollback { api } => upgrades::run_rollback(&api.client()?),
        Command::Components { json, api } => upgrades::run_components(&api.client()?, json),
        Command::Watch {
            prefix,
            since,
            json,
            api,
        } => run_watch(&api.client()?, &prefix, since, json),
        Command::Ready { api } => match api.client()?.ready() {
            Ok(ready) => {
                say!(
                    "{} (leader {}, term {}, applied {} of {})",
                    ready.status,
                    ready.leader_id,
                    ready.term,
                    ready.applied_index,
                    ready.commit_index
                );
                Ok(ExitCode::SUCCESS)
            }
            Err(error) => {
                eprintln!("not ready: {error}");
                Ok(ExitCode::FAILURE)
            }
        },
        Command::Health { api } => match api.client()?.health() {
            Ok(health) => {
                say!("{}", health.status);
                Ok(ExitCode::SUCCESS)
            }
            Err(error) => {
                eprintln!("{}", crate::error_line(&error.into()));
                Ok(ExitCode::from(crate::EXIT_ERROR))
            }
        },
    }
}

/// Print each change under `prefix` until the watch ends.
fn run_watch(
    client: &ApiClient,
    prefix: &str,
    since: Option<u64>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    for changes in client.watch(prefix, since)? {
        let changes = match changes {
            Ok(changes) => changes,
            Err(error @ ApiClientError::Compacted { .. }) => {
                eprintln!("error [compacted]: {error}");
                return Ok(ExitCode::from(crate::EXIT_ACT));
            }
            Err(error) => return Err(error.into()),
        };
        if json {
            say!("{}", changes.to_json_line());
            continue;
        }
        for event in &changes.events {
            let key = event.key.display();
            match (event.op, &event.value) {
                (WatchOp::Put, Some(value)) => {
                    say!("{} put {key} {}", changes.index, value.display())
                }
                (WatchOp::Put, None) => say!("{} put {key}", changes.index),
                (WatchOp::Delete, _) => say!("{} delete {key}", changes.index),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn report_membership(
    answer: Result<MembershipResponse, ApiClientError>,
    done: &str,
) -> anyhow::Result<ExitCode> {
    match answer {
        Ok(response) => {
            say!("{done} (log index {})", response.index);
            Ok(ExitCode::SUCCESS)
        }
        // Printed by main, as every error of a client subcommand is.
        Err(error) => Err(error.into()),
    }
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

/// Print a guest result: as text when it is text, else as base64.
pub fn report(result: Result<Output, ApiClientError>, base64: bool) -> anyhow::Result<ExitCode> {
    match result {
        Ok(output) => {
            match (&output.text, base64) {
                (Some(text), false) => say!("{text}"),
                (None, false) => say!("base64:{}", output.base64),
                (_, true) => say!("{}", output.base64),
            }
            Ok(ExitCode::SUCCESS)
        }
        // Printed by main (`error [CODE] at index N: MESSAGE`, exit 1).
        Err(error) => Err(error.into()),
    }
}
