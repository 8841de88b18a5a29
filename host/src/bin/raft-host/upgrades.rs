//! `raft-host upgrade`, `rollback` and `components`: the CLI side of
//! component upgrades (see `iroh_raft::node::upgrade`).

use iroh_raft::limits::DEFAULT_COMPILE_BUDGET;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use anyhow::Context as _;
use iroh_raft::node::upgrade::{LimitOverridesExt as _, validate_component};
use iroh_raft::wasm::{GuestLimits, WasmEngine};
use iroh_raft_client::blocking::Client as ApiClient;
use iroh_raft_client::upgrade::{ActivationOutcome, CheckOutcome, DryRunReport, LimitOverrides};
use iroh_raft_client::{Error as ApiClientError, UpgradeResponse};

use crate::output::{self, Format, Table};
use crate::progress;

/// What `raft-host upgrade` was asked.
#[derive(Debug)]
pub struct UpgradeCommand {
    pub guest: PathBuf,
    pub dry_run: bool,
    pub entries: usize,
    pub limits: LimitOverrides,
    pub format: Format,
}

/// Validate the component here, then send it to the node.
pub fn run_upgrade(client: &ApiClient, command: &UpgradeCommand) -> anyhow::Result<ExitCode> {
    let bytes = WasmEngine::read_component_file(&command.guest)
        .with_context(|| format!("reading {}", command.guest.display()))?;
    let bar = progress::spinner(format!(
        "validating {} here",
        command.guest.file_name().map_or_else(
            || command.guest.display().to_string(),
            |name| name.to_string_lossy().into_owned()
        )
    ));
    let validated = WasmEngine::new(None)
        .context("starting the wasm engine")
        .and_then(|engine| {
            validate_component(
                &engine,
                &bytes,
                command.limits.resolve(GuestLimits::default()),
                DEFAULT_COMPILE_BUDGET,
            )
            .with_context(|| format!("{} is not a usable guest", command.guest.display()))
        });
    bar.finish_and_clear();
    let validated = validated?;
    if command.format == Format::Text {
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
        let bar = progress::spinner(format!(
            "uploading {} bytes; the node runs the dry run",
            bytes.len()
        ));
        let report = client.dry_run(&bytes, &params);
        bar.finish_and_clear();
        let report = report?;
        match command.format {
            Format::Json => output::json(&report)?,
            Format::Text => print_dry_run(&report),
            Format::Table => dry_run_table(&report),
        }
        let clean = report.restore == CheckOutcome::Ok && report.differing_entries == 0;
        return Ok(if clean {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(crate::EXIT_ACT)
        });
    }
    let hash = blake3::hash(&bytes).to_hex().to_string();
    let sent = Arc::new(AtomicU64::new(0));
    let upload = progress::Upload {
        sent: &sent,
        total: bytes.len() as u64,
    };
    let answer = with_phases(client, "uploading", &hash, Some(upload), || {
        client.upgrade_with_progress(&bytes, &params, &sent)
    });
    report_activation(
        answer,
        command.format,
        "upgraded to",
        "the upgrade",
        "previous",
    )
}

/// Run an upgrade or rollback call (to the component `hash`, if known)
/// under a spinner whose message follows the phase: the upload's bytes,
/// then what the node's status shows.
fn with_phases<T>(
    client: &ApiClient,
    first: &str,
    hash: &str,
    upload: Option<progress::Upload<'_>>,
    call: impl FnOnce() -> T,
) -> T {
    let bar = progress::spinner(first.to_string());
    // Where the log was: an activation entry moves it.
    let before = progress::shown()
        .then(|| client.status().ok())
        .flatten()
        .map(|status| status.last_index);
    let poller = client.clone();
    let answer = progress::while_polling(
        || {
            if let Some(message) = upload.as_ref().and_then(progress::Upload::message) {
                bar.set_message(message);
            } else if let (Some(before), Ok(status)) = (before, poller.status()) {
                let phase = progress::upgrade_phase(&status, before, hash);
                bar.set_message(progress::upgrade_message(phase));
            }
        },
        call,
    );
    bar.finish_and_clear();
    answer
}

/// Print the outcome of an upgrade or a rollback: the new component, or
/// why every replica stayed on the `stayed` one.
fn report_activation(
    answer: Result<UpgradeResponse, ApiClientError>,
    format: Format,
    done: &str,
    what: &str,
    stayed: &str,
) -> anyhow::Result<ExitCode> {
    match answer {
        Ok(answer) if format == Format::Json => {
            output::json(&answer)?;
            Ok(ExitCode::SUCCESS)
        }
        Ok(answer) if format == Format::Table => {
            let record = &answer.record;
            Table::fields([
                ("index", answer.index.to_string()),
                ("kind", record.kind.name().to_string()),
                ("name", record.name.clone()),
                ("version", record.version.clone()),
                ("hash", record.hash.clone()),
                ("size bytes", record.size_bytes.to_string()),
            ])
            .print();
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
pub fn run_rollback(client: &ApiClient, format: Format) -> anyhow::Result<ExitCode> {
    // The component to go back to, for the phase the status shows.
    let previous = progress::shown()
        .then(|| client.components().ok())
        .flatten()
        .and_then(|history| history.previous().map(|record| record.hash.clone()))
        .unwrap_or_default();
    let answer = with_phases(client, "rolling back", &previous, None, || {
        client.rollback()
    });
    report_activation(answer, format, "rolled back to", "the rollback", "current")
}

/// Print the component history.
pub fn run_components(client: &ApiClient, format: Format) -> anyhow::Result<ExitCode> {
    let history = client.components()?;
    match format {
        Format::Json => {
            output::json(&history)?;
            return Ok(ExitCode::SUCCESS);
        }
        Format::Table => {
            let mut table = Table::new(&[
                "index", "kind", "hash", "name", "version", "active", "outcome",
            ]);
            for record in &history.records {
                let active =
                    record.index == history.active.index && record.hash == history.active.hash;
                table.row([
                    record.index.to_string(),
                    record.kind.name().to_string(),
                    short(&record.hash).to_string(),
                    record.name.clone(),
                    record.version.clone(),
                    if active { "*" } else { "" }.to_string(),
                    outcome(&record.outcome),
                ]);
            }
            table.print();
            return Ok(ExitCode::SUCCESS);
        }
        Format::Text => {}
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
        let outcome = outcome(&record.outcome);
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

fn outcome(outcome: &ActivationOutcome) -> String {
    match outcome {
        ActivationOutcome::Activated => "activated".to_string(),
        ActivationOutcome::Failed { reason } => format!("failed: {reason}"),
    }
}

/// A dry run as FIELD VALUE rows, then its differences as columns.
fn dry_run_table(report: &DryRunReport) {
    let restore = match &report.restore {
        CheckOutcome::Ok => "yes".to_string(),
        CheckOutcome::Failed { reason } => format!("NO: {reason}"),
    };
    let compared = match (report.compared_from_index, report.compared_to_index) {
        (Some(from), Some(to)) => format!("{from}..={to}"),
        _ => "none".to_string(),
    };
    Table::fields([
        (
            "candidate",
            format!("{} {}", report.candidate_name, report.candidate_version),
        ),
        ("candidate hash", report.candidate_hash.clone()),
        (
            "active",
            format!("{} {}", report.active_name, report.active_version),
        ),
        ("active hash", report.active_hash.clone()),
        ("applied index", report.applied_index.to_string()),
        ("compile ms", report.compile_ms.to_string()),
        ("restores state", restore),
        ("entries compared", report.entries_compared.to_string()),
        ("compared indexes", compared),
        ("differing entries", report.differing_entries.to_string()),
        ("new failures", report.new_failures.to_string()),
        ("active fuel", report.active_fuel.to_string()),
        ("candidate fuel", report.candidate_fuel.to_string()),
    ])
    .print();
    if !report.differences.is_empty() {
        say!("");
        let mut table = Table::new(&["index", "command", "active", "candidate"]);
        for difference in &report.differences {
            table.row([
                difference.index.to_string(),
                difference.command.clone(),
                difference.active.clone(),
                difference.candidate.clone(),
            ]);
        }
        table.print();
    }
    for note in &report.notes {
        say!("note: {note}");
    }
}

fn short(hash: &str) -> &str {
    hash.get(..16).unwrap_or(hash)
}
