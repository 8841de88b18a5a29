//! `raft-host kv ...`: the `kv-store` guest's commands as subcommands, so an
//! operator need not remember the text grammar (docs/guests.md, "The
//! kv-store commands"). Each one builds the command text, proposes it (or
//! runs it as a query when it only reads) and prints the guest's answer
//! like `propose` and `query` do.

use std::io::Read as _;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use iroh_raft::node::Consistency;

use crate::client::ApiArgs;
use crate::output;

#[derive(Debug, Subcommand)]
pub enum KvCommand {
    /// Set KEY to VALUE (`put`), optionally with a lease.
    Put {
        key: String,
        value: String,
        #[command(flatten)]
        lease: LeaseOption,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Read KEY's value, or with --meta its revisions, version and lease
    /// as JSON.
    Get {
        key: String,
        /// Print `{"key","value","create_revision","mod_revision","version","lease"}`.
        #[arg(long)]
        meta: bool,
        #[command(flatten)]
        read: ReadArgs,
    },
    /// Remove KEY; prints 1 if it existed, 0 if not.
    Delete {
        key: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Set KEY to VALUE only if its modification revision is REVISION
    /// (0: only if KEY does not exist); fails with the revision it is at.
    Cas {
        key: String,
        revision: u64,
        value: String,
        #[command(flatten)]
        lease: LeaseOption,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Run a transaction (etcd's Txn) from a JSON file, or `-` for stdin:
    /// `{"compare":[...],"success":[...],"failure":[...]}`.
    Txn {
        /// The transaction's JSON file (`-`: standard input).
        file: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// The keys starting with PREFIX, one per line.
    List {
        #[arg(default_value = "")]
        prefix: String,
        #[command(flatten)]
        read: ReadArgs,
    },
    /// Leases: TTLs that keys share, renewed by keep-alives.
    Lease {
        #[command(subcommand)]
        command: LeaseCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum LeaseCommand {
    /// Grant a lease of TTL seconds; prints its id.
    Grant {
        ttl_secs: u64,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Renew lease ID for its TTL from now; prints the TTL.
    Keepalive {
        id: u64,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Revoke lease ID, deleting its keys; prints how many.
    Revoke {
        id: u64,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Lease ID's TTL, expiry and keys, as JSON.
    Ttl {
        id: u64,
        #[command(flatten)]
        read: ReadArgs,
    },
    /// Every lease's id, one per line.
    List {
        #[command(flatten)]
        read: ReadArgs,
    },
}

/// A put's lease: a TTL of its own, or an existing lease's id.
#[derive(Debug, Args)]
pub struct LeaseOption {
    /// Delete the key this many seconds after the write (a lease of its own).
    #[arg(long, value_name = "SECS", conflicts_with = "lease")]
    ttl: Option<u64>,
    /// Attach the key to this lease (`raft-host kv lease grant`).
    #[arg(long, value_name = "ID")]
    lease: Option<u64>,
}

impl LeaseOption {
    /// The trailing option word of a put or cas (module doc of the
    /// grammar: a value that itself ends in such a word gets ` ttl=0`).
    fn suffix(&self, value: &str) -> String {
        match (self.ttl, self.lease) {
            (Some(ttl), _) => format!(" ttl={ttl}"),
            (None, Some(id)) => format!(" lease={id}"),
            (None, None) if ends_with_option_word(value) => " ttl=0".into(),
            (None, None) => String::new(),
        }
    }
}

/// Whether the grammar would read the value's last word as a lease option.
fn ends_with_option_word(value: &str) -> bool {
    let last = value.rsplit(' ').next().unwrap_or_default();
    ["ttl=", "lease="].iter().any(|option| {
        last.strip_prefix(option)
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    })
}

/// How a reading subcommand reads.
#[derive(Debug, Args)]
pub struct ReadArgs {
    /// `linearizable`, `lease` or `stale` (see `raft-host query`).
    #[arg(long, default_value = "linearizable")]
    consistency: Consistency,
    #[command(flatten)]
    api: ApiArgs,
}

/// A key or lease word: one whitespace-free word, as the grammar needs.
fn word(what: &str, text: &str) -> anyhow::Result<()> {
    if text.is_empty() || text.chars().any(char::is_whitespace) {
        bail!("the {what} must be one word without spaces, not {text:?}");
    }
    Ok(())
}

fn propose(api: &ApiArgs, command: &str) -> anyhow::Result<ExitCode> {
    let answer = api.client()?.propose(command.as_bytes())?;
    output::proposal(&answer, api.format(), false)?;
    Ok(ExitCode::SUCCESS)
}

/// Run a read; `lines` names the column of an answer that is a list, one
/// item a line (`-o table` shows a row per item).
fn query(read: &ReadArgs, request: &str, lines: Option<&str>) -> anyhow::Result<ExitCode> {
    let answer = read
        .api
        .client()?
        .query_with(request.as_bytes(), read.consistency)?;
    output::query(&answer, read.api.format(), false, lines)?;
    Ok(ExitCode::SUCCESS)
}

pub fn run_kv(command: KvCommand) -> anyhow::Result<ExitCode> {
    match command {
        KvCommand::Put {
            key,
            value,
            lease,
            api,
        } => {
            word("key", &key)?;
            propose(&api, &format!("put {key} {value}{}", lease.suffix(&value)))
        }
        KvCommand::Get { key, meta, read } => {
            word("key", &key)?;
            let request = if meta {
                format!("get {key} meta")
            } else {
                format!("get {key}")
            };
            query(&read, &request, None)
        }
        KvCommand::Delete { key, api } => {
            word("key", &key)?;
            propose(&api, &format!("delete {key}"))
        }
        KvCommand::Cas {
            key,
            revision,
            value,
            lease,
            api,
        } => {
            word("key", &key)?;
            propose(
                &api,
                &format!("cas {key} {revision} {value}{}", lease.suffix(&value)),
            )
        }
        KvCommand::Txn { file, api } => {
            let mut text = String::new();
            if file == "-" {
                std::io::stdin()
                    .read_to_string(&mut text)
                    .context("reading the transaction from stdin")?;
            } else {
                text = std::fs::read_to_string(&file)
                    .with_context(|| format!("reading the transaction {file}"))?;
            }
            // Checked here, so a typo is not a committed error entry.
            let json: serde_json::Value =
                serde_json::from_str(&text).context("the transaction is not valid JSON")?;
            propose(&api, &format!("txn {json}"))
        }
        KvCommand::List { prefix, read } => {
            if !prefix.is_empty() {
                word("prefix", &prefix)?;
            }
            query(&read, format!("list {prefix}").trim_end(), Some("key"))
        }
        KvCommand::Lease { command } => match command {
            LeaseCommand::Grant { ttl_secs, api } => {
                propose(&api, &format!("lease grant {ttl_secs}"))
            }
            LeaseCommand::Keepalive { id, api } => propose(&api, &format!("lease keepalive {id}")),
            LeaseCommand::Revoke { id, api } => propose(&api, &format!("lease revoke {id}")),
            LeaseCommand::Ttl { id, read } => query(&read, &format!("lease ttl {id}"), None),
            LeaseCommand::List { read } => query(&read, "lease list", Some("lease")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_ending_like_an_option_keeps_its_last_word() {
        let none = LeaseOption {
            ttl: None,
            lease: None,
        };
        assert_eq!(none.suffix("plain value"), "");
        assert_eq!(none.suffix("wait ttl=5"), " ttl=0");
        assert_eq!(none.suffix("x lease=12"), " ttl=0");
        assert_eq!(none.suffix("ttl=5"), " ttl=0");
        assert_eq!(none.suffix("a ttl=x"), "");
        let ttl = LeaseOption {
            ttl: Some(3),
            lease: None,
        };
        assert_eq!(ttl.suffix("v"), " ttl=3");
    }
}
