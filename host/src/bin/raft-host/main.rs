//! `raft-host`: run a node, or talk to one.
//!
//! Thin by design: parse the command line, set up tracing, call the library
//! ([`iroh_raft::host::HostBuilder`] runs the node). The node's flags are in
//! `run.rs`, the client subcommands in `client.rs`, `guest.rs`, `kv.rs` and
//! `upgrades.rs`, the load generator in `bench.rs` and `bench/`.

use std::process::ExitCode;

use clap::Parser;

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
mod guest;
mod kv;
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
#[derive(Debug, Parser)]
#[command(name = "raft-host", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<client::Command>,
    #[command(flatten)]
    run: run::RunArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Only a node has a log format to choose; the client subcommands log
    // little and log it as text.
    let log_format = match cli.command {
        None => cli.run.log_format,
        Some(_) => run::LogFormat::Text,
    };
    init_tracing(log_format);
    let outcome = match cli.command {
        None => run::run_node(cli.run),
        Some(command) => client::run_client(command),
    };
    match outcome {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {}", error_report(&error));
            ExitCode::FAILURE
        }
    }
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

/// Logs go to stderr, filtered by `RUST_LOG` (default `info,raft=warn`):
/// as text for people, or as one JSON object a line for log shippers
/// (`{"timestamp":..,"level":"INFO","fields":{"message":..},"target":..,
/// "span":{..},"spans":[..]}`, tracing-subscriber's JSON format).
fn init_tracing(format: run::LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,raft=warn"));
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
