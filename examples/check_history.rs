//! Check a recorded client history (JSON lines, see
//! `iroh_raft::linearizability::History`) for linearizability.
//!
//! `cargo run --example check_history -- history.jsonl [kv|counter]`
//! prints the report and exits 1 if the history is not linearizable (or the
//! search ran out of budget).

use std::process::ExitCode;

use anyhow::Context as _;
use iroh_raft::linearizability::{CounterModel, History, KvModel, check};

fn main() -> anyhow::Result<ExitCode> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .context("usage: check_history <history.jsonl> [kv|counter]")?;
    let history = History::load(&path).with_context(|| format!("reading {path}"))?;
    let report = match args.next().as_deref() {
        None | Some("kv") => check(&KvModel, &history),
        Some("counter") => check(&CounterModel, &history),
        Some(other) => anyhow::bail!("unknown model {other}: use kv or counter"),
    }
    .context("checking the history")?;
    println!("{report}");
    Ok(if report.verdict.is_linearizable() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
