//! `raft-host upgrade`, `rollback` and `components`: the CLI side of
//! component upgrades (see `iroh_raft::node::upgrade`).

use iroh_raft::limits::DEFAULT_COMPILE_BUDGET;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use iroh_raft::node::upgrade::{LimitOverridesExt as _, validate_component};
use iroh_raft::wasm::{GuestLimits, WasmEngine};
use iroh_raft_client::blocking::Client as ApiClient;
use iroh_raft_client::upgrade::{ActivationOutcome, CheckOutcome, DryRunReport, LimitOverrides};
use iroh_raft_client::{Error as ApiClientError, UpgradeResponse};

/// What `raft-host upgrade` was asked.
#[derive(Debug)]
pub struct UpgradeCommand {
    pub guest: PathBuf,
    pub dry_run: bool,
    pub entries: usize,
    pub limits: LimitOverrides,
    pub json: bool,
}

/// Validate the component here, then send it to the node.
pub fn run_upgrade(client: &ApiClient, command: &UpgradeCommand) -> anyhow::Result<ExitCode> {
    let bytes = WasmEngine::read_component_file(&command.guest)
        .with_context(|| format!("reading {}", command.guest.display()))?;
    let engine = WasmEngine::new(None).context("starting the wasm engine")?;
    let validated = validate_component(
        &engine,
        &bytes,
        command.limits.resolve(GuestLimits::default()),
        DEFAULT_COMPILE_BUDGET,
    )
    .with_context(|| format!("{} is not a usable guest", command.guest.display()))?;
    if !command.json {
        say!(
            "validated {} {} ({} bytes, compiled in {} ms)",
            validated.info.name,
            validated.info.version,
            bytes.len(),
            validated.compile_ms
        );
    }
    let mut params: Vec<(&str, String)> = Vec::new();
    if let Some(fuel) = command.limits.apply_fuel {
        params.push(("apply_fuel", fuel.to_string()));
    }
    if let Some(fuel) = command.limits.query_fuel {
        params.push(("query_fuel", fuel.to_string()));
    }
    if let Some(bytes) = command.limits.memory_limit_bytes {
        params.push(("memory_limit_mib", (bytes / (1024 * 1024)).to_string()));
    }
    if command.dry_run {
        params.push(("entries", command.entries.to_string()));
        let report = client.dry_run(&bytes, &params)?;
        if command.json {
            say!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print_dry_run(&report);
        }
        let clean = report.restore == CheckOutcome::Ok && report.differing_entries == 0;
        return Ok(if clean {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(crate::EXIT_ACT)
        });
    }
    let answer = client.upgrade(&bytes, &params);
    report_activation(
        answer,
        command.json,
        "upgraded to",
        "the upgrade",
        "previous",
    )
}

/// Print the outcome of an upgrade or a rollback: the new component, or
/// why every replica stayed on the `stayed` one.
fn report_activation(
    answer: Result<UpgradeResponse, ApiClientError>,
    json: bool,
    done: &str,
    what: &str,
    stayed: &str,
) -> anyhow::Result<ExitCode> {
    match answer {
        Ok(answer) if json => {
            say!("{}", serde_json::to_string_pretty(&answer)?);
            Ok(ExitCode::SUCCESS)
        }
        Ok(answer) => {
            say!(
                "{done} {} {} ({}) at log index {}",
                answer.record.name,
                answer.record.version,
                answer.record.hash,
                answer.index
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(ApiClientError::Api(info)) if info.code == "upgrade_failed" => {
            eprintln!(
                "error [{}] at index {}: {what} failed and every replica stays on the {stayed} \
                 component: {}",
                info.code,
                info.index.unwrap_or_default(),
                info.message
            );
            Ok(ExitCode::FAILURE)
        }
        Err(error) => Err(error.into()),
    }
}

fn print_dry_run(report: &DryRunReport) {
    say!(
        "dry run of {} {} ({}) against {} {} ({}) at applied index {}",
        report.candidate_name,
        report.candidate_version,
        short(&report.candidate_hash),
        report.active_name,
        report.active_version,
        short(&report.active_hash),
        report.applied_index
    );
    say!(
        "  loads:                 yes (compiled in {} ms)",
        report.compile_ms
    );
    match &report.restore {
        CheckOutcome::Ok => say!(
            "  restores current state: yes{}",
            match report.same_snapshot_bytes {
                Some(true) => " (writes back identical snapshot bytes)",
                Some(false) => " (writes back a different snapshot format)",
                None => "",
            }
        ),
        CheckOutcome::Failed { reason } => say!("  restores current state: NO: {reason}"),
    }
    match (report.compared_from_index, report.compared_to_index) {
        (Some(from), Some(to)) => say!(
            "  recent entries:        {} compared (index {from}..={to}), {} differ, {} newly failing",
            report.entries_compared,
            report.differing_entries,
            report.new_failures
        ),
        _ => say!("  recent entries:        none compared"),
    }
    if report.entries_compared > 0 {
        say!(
            "  fuel:                  active {} / candidate {}",
            report.active_fuel,
            report.candidate_fuel
        );
        let same_state = report.active_state_hash == report.candidate_state_hash;
        say!(
            "  state afterwards:      {}",
            if same_state {
                "identical snapshot bytes"
            } else {
                "different snapshot bytes"
            }
        );
    }
    for difference in &report.differences {
        say!(
            "  index {:>8}  {:<24} active: {:<24} candidate: {}",
            difference.index,
            difference.command,
            difference.active,
            difference.candidate
        );
    }
    if report.differing_entries > report.differences.len() {
        say!(
            "  ... and {} more",
            report.differing_entries - report.differences.len()
        );
    }
    for note in &report.notes {
        say!("  note: {note}");
    }
}

/// Roll back to the previous component.
pub fn run_rollback(client: &ApiClient) -> anyhow::Result<ExitCode> {
    report_activation(
        client.rollback(),
        false,
        "rolled back to",
        "the rollback",
        "current",
    )
}

/// Print the component history.
pub fn run_components(client: &ApiClient, json: bool) -> anyhow::Result<ExitCode> {
    let history = client.components()?;
    if json {
        say!("{}", serde_json::to_string_pretty(&history)?);
        return Ok(ExitCode::SUCCESS);
    }
    say!(
        "active: {} {} ({}) since index {}",
        history.active.name,
        history.active.version,
        history.active.hash,
        history.active.index
    );
    say!(
        "{:>8}  {:<8}  {:<16}  {:<20}  outcome",
        "index",
        "kind",
        "hash",
        "name/version"
    );
    for record in &history.records {
        let outcome = match &record.outcome {
            ActivationOutcome::Activated => "activated".to_string(),
            ActivationOutcome::Failed { reason } => format!("failed: {reason}"),
        };
        let kind = record.kind.name();
        say!(
            "{:>8}  {:<8}  {:<16}  {:<20}  {outcome}",
            record.index,
            kind,
            short(&record.hash),
            format!("{} {}", record.name, record.version)
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn short(hash: &str) -> &str {
    hash.get(..16).unwrap_or(hash)
}
