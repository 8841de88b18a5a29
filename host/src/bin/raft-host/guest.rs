//! `raft-host guest check`: a component checked without a node.

use iroh_raft::limits::{
    DEFAULT_APPLY_FUEL, DEFAULT_MEMORY_LIMIT_BYTES, DEFAULT_QUERY_FUEL, MAX_CALL_FUEL,
    MAX_MEMORY_LIMIT_BYTES,
};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use iroh_raft::wasm::GuestLimits;
use iroh_raft::wasm::conformance;

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
    let GuestCommand::Check {
        path,
        output,
        script,
        cache_dir,
        limits,
    } = command;
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
