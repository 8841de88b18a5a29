//! `raft-host`: run a node, or talk to one.
//!
//! Thin by design: parse the command line, set up tracing, call the library
//! ([`iroh_raft::host::HostBuilder`] runs the node). The node's flags are in
//! `run.rs` (their environment variables and config file in `config.rs`),
//! the client subcommands in `client.rs`, `guest.rs` (with `guest_new.rs`,
//! `guest_run.rs`), `kv.rs` and `upgrades.rs` (how they print in
//! `output.rs`, their progress bars in `progress.rs`), the load generator
//! in `bench.rs` and `bench/`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand};

/// Print a line to stdout; a closed pipe (`raft-host status | head -1`) is
/// not an error worth a panic.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

mod bench;
mod client;
mod config;
mod guest;
mod guest_new;
mod guest_run;
mod kv;
mod output;
mod progress;
mod run;
mod upgrades;

/// jemalloc, not glibc's malloc: after each snapshot of a large
/// store-backed state (sled pages read by the export, log compaction) glibc
/// kept the freed memory in its per-thread arenas, and a node's RSS stepped
/// up at every snapshot (535 MiB at 512 MiB of state, against 238 MiB with
/// jemalloc; BENCHMARKS.md, "Guest state in the host").
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// A replicated state machine host: Raft consensus, a sled log, and your
/// logic as a WebAssembly component.
///
/// Without a subcommand, runs a node. The subcommands talk to a running node.
/// Every node flag can also be given as an environment variable
/// `RAFT_HOST_<FLAG>` (`--data-dir`: `RAFT_HOST_DATA_DIR`) or in the TOML file of
/// --config; the command line wins over the environment, which wins over
/// the file.
#[derive(Debug, Parser)]
#[command(name = "raft-host", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<TopCommand>,
    /// Read node flags from this TOML file (keys: the flag names without
    /// `--`, e.g. `data-dir = "/var/lib/raft"`).
    #[arg(long, value_name = "FILE", env = "RAFT_HOST_CONFIG")]
    config: Option<PathBuf>,
    #[command(flatten)]
    run: run::RunArgs,
}

#[derive(Debug, Subcommand)]
enum TopCommand {
    #[command(flatten)]
    Client(Box<client::Command>),
    /// Print a shell completion script (bash: `source <(raft-host
    /// completion bash)`).
    Completion {
        /// The shell to complete in.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff: `raft-host man > raft-host.1; man
    /// ./raft-host.1`).
    Man,
}

/// Exit code: the cluster, a node or a guest refused or failed the call
/// (also any other error of a client subcommand, and a node that stops
/// with an error).
pub const EXIT_ERROR: u8 = 1;
/// Exit code of a usage error (clap's own, and a bad config file).
pub const EXIT_USAGE: u8 = 2;
/// Exit code of an answer to act on, not an error: an upgrade's dry run
/// found differences, or a watch must start again (its changes were
/// compacted away).
pub const EXIT_ACT: u8 = 3;

fn main() -> ExitCode {
    let command = config::with_env(Cli::command());
    let matches = command.clone().get_matches();
    let matches = match matches.get_one::<PathBuf>("config") {
        Some(path) if matches.subcommand().is_none() => {
            match config::with_file(command.clone(), path) {
                Ok(with_file) => with_file.get_matches(),
                Err(error) => {
                    eprintln!("error: {error}");
                    return ExitCode::from(EXIT_USAGE);
                }
            }
        }
        _ => matches,
    };
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|error| error.exit());
    if cli.command.is_none()
        && let Err(message) = cli.run.check()
    {
        command
            .clone()
            .error(clap::error::ErrorKind::ArgumentConflict, message)
            .exit();
    }
    let outcome = match cli.command {
        Some(TopCommand::Completion { shell }) => {
            let mut command = command;
            clap_complete::generate(shell, &mut command, "raft-host", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Some(TopCommand::Man) => print_man(command),
        Some(TopCommand::Client(command)) => {
            // The client subcommands log little, and log it as text.
            init_tracing(run::LogFormat::Text);
            client::run_client(*command)
        }
        None => {
            // Only a node has a log format to choose.
            init_tracing(cli.run.log_format);
            run::run_node(cli.run)
        }
    };
    match outcome {
        Ok(code) => code,
        Err(error) => {
            eprintln!("{}", error_line(&error));
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// The one line of an error on stderr: `error [CODE]: MESSAGE` when a
/// node or the client gave it a code (the API's stable codes, or
/// `transport`, `unavailable`, `compacted`, `client_config` from the
/// client), else `error: MESSAGE` (a local problem: a file, an argument).
pub fn error_line(error: &anyhow::Error) -> String {
    use iroh_raft_client::Error as ClientError;
    let coded = error
        .chain()
        .find_map(|cause| cause.downcast_ref::<ClientError>());
    match coded {
        Some(ClientError::Api(info)) => {
            let at = info
                .index
                .map(|i| format!(" at index {i}"))
                .unwrap_or_default();
            let hint = info
                .leader_hint
                .map(|id| format!(" (the leader is node {id}: ask its API)"))
                .unwrap_or_default();
            format!("error [{}]{at}: {}{hint}", info.code, info.message)
        }
        Some(client_error) => {
            let code = match client_error {
                ClientError::Transport { .. } => "transport",
                ClientError::Unavailable { .. } => "unavailable",
                ClientError::Compacted { .. } => "compacted",
                _ => "client_config",
            };
            format!("error [{code}]: {}", error_report(error))
        }
        None => format!("error: {}", error_report(error)),
    }
}

/// The man page: the node's flags (with their environment variables) and
/// the list of subcommands (each one's flags: `raft-host SUBCOMMAND --help`).
fn print_man(command: clap::Command) -> anyhow::Result<ExitCode> {
    let mut out = Vec::new();
    clap_mangen::Man::new(command).render(&mut out)?;
    std::io::Write::write_all(&mut std::io::stdout().lock(), &out)?;
    Ok(ExitCode::SUCCESS)
}

/// The error and its causes, each said once: many of our error types
/// already include their cause's text in their own message (`storage:
/// {0}`), which `{:#}` would print again.
fn error_report(error: &anyhow::Error) -> String {
    let mut report = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if report.contains(&text) {
            continue;
        }
        if !report.is_empty() {
            report.push_str(": ");
        }
        report.push_str(&text);
    }
    report
}

/// What the node logs without `RUST_LOG`: `info`, raft-rs's own chatter
/// at `warn`, and iroh's UDP send path at `warn`: iroh opens an
/// `info`-level span for every datagram it sends (`poll_send` in
/// `iroh::socket::transports`), which cost ~3% of a node's CPU under load
/// and logs nothing. iroh's relay keeps `info` (connecting, connected).
const DEFAULT_LOG_FILTER: &str =
    "info,raft=warn,iroh::socket::transports=warn,iroh::socket::transports::relay=info";

/// Logs go to stderr, filtered by `RUST_LOG` (default [`DEFAULT_LOG_FILTER`]):
/// as text for people, or as one JSON object a line for log shippers
/// (`{"timestamp":..,"level":"INFO","fields":{"message":..},"target":..,
/// "span":{..},"spans":[..]}`, tracing-subscriber's JSON format).
fn init_tracing(format: run::LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        run::LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        run::LogFormat::Json => builder.json().with_ansi(false).init(),
    }
}
