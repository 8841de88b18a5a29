//! `raft-host guest check`: a component checked without a node.

use iroh_raft::limits::{
    DEFAULT_APPLY_FUEL, DEFAULT_MEMORY_LIMIT_BYTES, DEFAULT_QUERY_FUEL, MAX_CALL_FUEL,
    MAX_MEMORY_LIMIT_BYTES,
};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use iroh_raft::wasm::conformance;
use iroh_raft::wasm::{GuestLimits, WasmEngine};

use crate::output::{Format, OutputArgs};

#[derive(Debug, Subcommand)]
pub enum GuestCommand {
    /// Check that a component is a well-behaved guest: load it as a node
    /// does, say which world it targets (0.1.0: state in its memory; 0.2.0
    /// store-guest: state in the host's store), list its imports, run a
    /// script of commands twice, round-trip its snapshots (0.1.0) or run
    /// its `migrate` (0.2.0, on an in-memory store), and measure it. Exits
    /// 1 if any check fails.
    Check {
        /// The component (.wasm) to check.
        path: PathBuf,
        /// `-o json`: the report as JSON (`table`: as `text`, a report
        /// is already laid out in columns).
        #[command(flatten)]
        output: OutputArgs,
        /// Run this script instead of the built-in one (lines `apply CMD`,
        /// `query REQ`, `apply-base64 B64`, `query-base64 B64`).
        #[arg(long, value_name = "FILE")]
        script: Option<PathBuf>,
        /// Keep compiled components here (as a node's data dir does), so a
        /// second check loads from the cache.
        #[arg(long, value_name = "DIR")]
        cache_dir: Option<PathBuf>,
        /// The limits to check under (use the cluster's).
        #[command(flatten)]
        limits: GuestLimitArgs,
    },
    /// Run commands against a guest on this machine, without a cluster:
    /// each step's result, fuel and state size (a store-backed guest runs
    /// on an in-memory store). Lines as in a check script, plus `state`
    /// (print the whole state). Without --script, reads stdin: a prompt
    /// when it is a terminal, else a script.
    Run {
        /// The component (.wasm) to run.
        path: PathBuf,
        /// Read the lines from this file (`-`: stdin).
        #[arg(long, value_name = "FILE")]
        script: Option<PathBuf>,
        /// `-o json`: one JSON object a line (the guest, then each step:
        /// `step`, `ok` or `error`, `fuel`, the state); `table`: as `text`.
        #[command(flatten)]
        output: OutputArgs,
        /// The limits to run under (use the cluster's).
        #[command(flatten)]
        limits: GuestLimitArgs,
    },
    /// Create a new guest in directory NAME: sources, the WIT it
    /// implements, a build command and a test (see its README.md).
    New(crate::guest_new::NewArgs),
    /// Attach command examples to a component (the custom section
    /// `iroh-raft:examples`, replacing any at its top level): a node
    /// suggests them in its start banner. For guests built without the
    /// Rust SDKs' `guest_examples!`.
    Describe {
        /// The component (.wasm) to describe.
        path: PathBuf,
        /// The examples: lines `propose CMD` or `query REQ` (`#` comments).
        #[arg(long, value_name = "FILE")]
        examples: PathBuf,
        /// Where to write the described component (may be the input).
        /// Not `-o`: that is the output format everywhere else.
        #[arg(long = "out", value_name = "OUT")]
        out: PathBuf,
        /// `-o json`: the written file and its examples as JSON.
        #[command(flatten)]
        output: OutputArgs,
    },
}

/// The largest `--memory-limit-mib` ([`MAX_MEMORY_LIMIT_BYTES`] in MiB).
pub const MAX_MEMORY_LIMIT_MIB: u64 = MAX_MEMORY_LIMIT_BYTES / (1024 * 1024);

/// A guest's limits on the command line: a node's flags, and a guest
/// check's (which should match the cluster's).
#[derive(Debug, Clone, Copy, Args)]
pub struct GuestLimitArgs {
    /// Fuel budget of one `apply` call.
    #[arg(long, default_value_t = DEFAULT_APPLY_FUEL,
          value_parser = clap::value_parser!(u64).range(1..=MAX_CALL_FUEL))]
    apply_fuel: u64,
    /// Fuel budget of one `query` call.
    #[arg(long, default_value_t = DEFAULT_QUERY_FUEL,
          value_parser = clap::value_parser!(u64).range(1..=MAX_CALL_FUEL))]
    query_fuel: u64,
    /// Linear memory cap of the guest, in MiB.
    #[arg(long, default_value_t = DEFAULT_MEMORY_LIMIT_BYTES / (1024 * 1024),
          value_parser = clap::value_parser!(u64).range(1..=MAX_MEMORY_LIMIT_MIB))]
    memory_limit_mib: u64,
}

impl GuestLimitArgs {
    pub fn limits(&self) -> GuestLimits {
        GuestLimits {
            apply_fuel: self.apply_fuel,
            query_fuel: self.query_fuel,
            memory_limit_bytes: self.memory_limit_mib * 1024 * 1024,
            ..GuestLimits::default()
        }
    }
}

pub fn run_guest(command: GuestCommand) -> anyhow::Result<ExitCode> {
    match command {
        GuestCommand::Check {
            path,
            output,
            script,
            cache_dir,
            limits,
        } => check(path, &output, script, cache_dir, limits),
        GuestCommand::Run {
            path,
            script,
            output,
            limits,
        } => crate::guest_run::run(&path, script, limits.limits(), output.format()),
        GuestCommand::New(args) => crate::guest_new::run(&args),
        GuestCommand::Describe {
            path,
            examples,
            out,
            output,
        } => describe(&path, &examples, &out, output.format()),
    }
}

/// `guest describe`: the component with its examples section replaced.
fn describe(
    path: &Path,
    examples: &Path,
    output: &Path,
    format: Format,
) -> anyhow::Result<ExitCode> {
    use anyhow::Context as _;
    use iroh_raft::wasm::examples::{self, MAX_EXAMPLES_BYTES};
    let component = WasmEngine::read_component_file(path)?;
    let size = std::fs::metadata(examples)
        .with_context(|| format!("cannot read {}", examples.display()))?
        .len();
    anyhow::ensure!(
        size <= MAX_EXAMPLES_BYTES as u64,
        "{} is {size} bytes, more than the limit of {MAX_EXAMPLES_BYTES}",
        examples.display()
    );
    let text = std::fs::read_to_string(examples)
        .with_context(|| format!("cannot read {}", examples.display()))?;
    let described = examples::with_examples(&component, &text)
        .with_context(|| format!("{}", examples.display()))?;
    std::fs::write(output, &described)
        .with_context(|| format!("cannot write {}", output.display()))?;
    let lines = examples::read(&described).lines;
    if format == Format::Json {
        crate::output::json(&serde_json::json!({
            "out": output.display().to_string(),
            "examples": lines,
        }))?;
    } else {
        say!("{}: {} examples", output.display(), lines.len());
    }
    Ok(ExitCode::SUCCESS)
}

fn check(
    path: PathBuf,
    output: &OutputArgs,
    script: Option<PathBuf>,
    cache_dir: Option<PathBuf>,
    limits: GuestLimitArgs,
) -> anyhow::Result<ExitCode> {
    let script = match script {
        Some(file) => conformance::script::read_file(&file)?,
        None => conformance::default_script(),
    };
    let options = conformance::CheckOptions {
        limits: limits.limits(),
        script,
        cache_dir,
    };
    let report = conformance::check_file(&path, &options);
    if output.format() == Format::Json {
        crate::output::json(&report)?;
    } else {
        say!("{}", report.to_text().trim_end());
    }
    Ok(if report.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
