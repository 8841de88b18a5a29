//! How a client subcommand prints its answer (`-o text|json|table`).
//!
//! - `text` (the default) is for people and for the scripts written
//!   against it so far: a result alone on stdout, so `$(raft-host query
//!   get)` is the value.
//! - `json` (`--json` is the same) is for programs: one JSON document on
//!   stdout (the API's answer where there is one), except `watch`, which
//!   prints one JSON line per log entry as they come.
//! - `table` is aligned columns: one row per item for lists (members,
//!   components, keys, watch events), a `FIELD VALUE` table for a single
//!   result.
//!
//! Errors do not depend on the format: one line on stderr, `error [CODE]:
//! ...` (see `main.rs`), and the exit code.

use clap::{Args, ValueEnum};
use iroh_raft_client::{NodeStatus, Output, ProposeResponse, QueryResponse};
use serde::Serialize;

/// The output formats.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// For people and existing scripts: a guest's result alone on stdout,
    /// or a few lines.
    #[default]
    Text,
    /// One JSON document (`watch`: one JSON line per log entry).
    Json,
    /// Aligned columns; a single result as FIELD VALUE rows.
    Table,
}

/// `-o/--output`, and `--json`, which scripts already use for `-o json`.
#[derive(Debug, Clone, Copy, Args)]
pub struct OutputArgs {
    /// How to print the answer: `text`, `json` (machine-readable: one JSON
    /// document; `watch`: one JSON line per entry) or `table` (aligned
    /// columns).
    #[arg(
        short = 'o',
        long = "output",
        value_enum,
        value_name = "FORMAT",
        default_value = "text"
    )]
    output: Format,
    /// The same as `-o json`.
    #[arg(long, conflicts_with = "output")]
    json: bool,
}

impl OutputArgs {
    /// The format asked for.
    pub fn format(&self) -> Format {
        if self.json { Format::Json } else { self.output }
    }
}

/// Print `value` as one (pretty) JSON document on stdout.
pub fn json(value: &impl Serialize) -> anyhow::Result<()> {
    say!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Rows of cells printed with every column as wide as its widest cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column names (printed upper case).
    pub fn new(header: &[&str]) -> Self {
        Table {
            header: header.iter().map(|name| name.to_uppercase()).collect(),
            rows: Vec::new(),
        }
    }

    /// A single result: one `FIELD VALUE` row per field.
    pub fn fields<'a>(fields: impl IntoIterator<Item = (&'a str, String)>) -> Self {
        let mut table = Table::new(&["field", "value"]);
        for (name, value) in fields {
            table.row([name.to_string(), value]);
        }
        table
    }

    /// Add a row (missing cells print empty, extra ones are dropped).
    pub fn row(&mut self, cells: impl IntoIterator<Item = String>) {
        let mut cells: Vec<String> = cells.into_iter().map(|cell| one_line(&cell)).collect();
        cells.resize(self.header.len(), String::new());
        self.rows.push(cells);
    }

    /// The table as lines, two spaces between columns, no trailing spaces.
    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&self.header).chain(&self.rows) {
            let mut line = String::new();
            for (cell, width) in row.iter().zip(&widths) {
                line.push_str(cell);
                line.extend(std::iter::repeat_n(' ', width - cell.chars().count() + 2));
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    /// Print the table on stdout.
    pub fn print(&self) {
        say!("{}", self.render().trim_end_matches('\n'));
    }
}

/// A cell on one line: a newline would break the columns.
fn one_line(cell: &str) -> String {
    if cell.contains(['\n', '\r', '\t']) {
        cell.replace(['\n', '\r', '\t'], " ")
    } else {
        cell.to_string()
    }
}

/// A guest's result in a table cell or a text line: its text, else
/// `base64:...` (`--base64`: always the base64).
pub fn result_text(output: &Output, base64: bool) -> String {
    match (&output.text, base64) {
        (Some(text), false) => text.clone(),
        (None, false) => format!("base64:{}", output.base64),
        (_, true) => output.base64.clone(),
    }
}

/// An applied proposal. In text the result alone goes to stdout (what
/// scripts capture) and where it was committed to stderr; json and table
/// carry both.
pub fn proposal(answer: &ProposeResponse, format: Format, base64: bool) -> anyhow::Result<()> {
    match format {
        Format::Text => {
            say!("{}", result_text(&answer.output, base64));
            eprintln!(
                "applied at index {} (term {}, {} fuel)",
                answer.index, answer.term, answer.fuel_used
            );
        }
        Format::Json => json(answer)?,
        Format::Table => Table::fields([
            ("index", answer.index.to_string()),
            ("term", answer.term.to_string()),
            ("fuel used", answer.fuel_used.to_string()),
            ("result", result_text(&answer.output, base64)),
        ])
        .print(),
    }
    Ok(())
}

/// A query's answer; `lines` names the column of a result that is a list
/// (one item a line, as `kv list` answers), which a table shows one row
/// per item.
pub fn query(
    answer: &QueryResponse,
    format: Format,
    base64: bool,
    lines: Option<&str>,
) -> anyhow::Result<()> {
    match (format, lines, &answer.output.text) {
        (Format::Text, _, _) => say!("{}", result_text(&answer.output, base64)),
        (Format::Json, _, _) => json(answer)?,
        (Format::Table, Some(column), Some(text)) if !base64 => {
            let mut table = Table::new(&[column]);
            for line in text.lines().filter(|line| !line.is_empty()) {
                table.row([line.to_string()]);
            }
            table.print();
        }
        (Format::Table, _, _) => Table::fields([
            ("applied index", answer.applied_index.to_string()),
            ("fuel used", answer.fuel_used.to_string()),
            ("result", result_text(&answer.output, base64)),
        ])
        .print(),
    }
    Ok(())
}

/// `raft-host status`.
pub fn status(status: &NodeStatus, format: Format) -> anyhow::Result<()> {
    match format {
        Format::Json => json(status)?,
        Format::Text => status_text(status),
        Format::Table => {
            let leader = status
                .leader_id
                .map_or_else(|| "none".to_string(), |id| id.to_string());
            let mut fields = vec![
                ("node id", status.id.to_string()),
                ("role", status.role.clone()),
                ("leader", leader),
                ("term", status.term.to_string()),
                ("commit index", status.commit_index.to_string()),
                ("applied index", status.applied_index.to_string()),
                ("last index", status.last_index.to_string()),
                ("first log index", status.first_log_index.to_string()),
                (
                    "snapshot index",
                    status
                        .snapshot_index
                        .map_or("none".to_string(), |i| i.to_string()),
                ),
                (
                    "guest",
                    format!("{} {}", status.guest.name, status.guest.version),
                ),
                ("guest hash", status.guest.hash.clone()),
                ("data dir", status.data_dir.clone()),
            ];
            if let Some(ticket) = &status.ticket {
                fields.push(("ticket", ticket.clone()));
            }
            if !status.guest.examples.is_empty() {
                fields.push(("guest examples", status.guest.examples.join("; ")));
            }
            Table::fields(fields).print();
            say!("");
            members_table(status).print();
        }
    }
    Ok(())
}

/// One row per member: its id, role, address, match index and contact.
fn members_table(status: &NodeStatus) -> Table {
    let mut table = Table::new(&["id", "role", "node id", "addrs", "match", "last contact"]);
    for member in &status.members {
        table.row([
            member.id.to_string(),
            member_role(status, member).to_string(),
            member.node_id.clone().unwrap_or_else(|| "?".into()),
            addrs(member),
            member
                .match_index
                .map_or("-".to_string(), |m| m.to_string()),
            member
                .last_contact_ms
                .map_or("-".to_string(), |ms| format!("{ms} ms ago")),
        ]);
    }
    table
}

fn member_role(status: &NodeStatus, member: &iroh_raft_client::MemberStatus) -> &'static str {
    match (status.leader_id == Some(member.id), member.voter) {
        (true, _) => "leader",
        (false, true) => "voter",
        (false, false) => "learner",
    }
}

fn addrs(member: &iroh_raft_client::MemberStatus) -> String {
    if member.addrs.is_empty() {
        return "-".to_string();
    }
    let addrs: Vec<String> = member.addrs.iter().map(|a| a.to_string()).collect();
    addrs.join(",")
}

/// The text of `raft-host status` (as it always was: scripts and people
/// read it).
fn status_text(status: &NodeStatus) {
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
            d.own_hash.get(..16).unwrap_or(&d.own_hash),
            d.majority,
            d.majority_hash.get(..16).unwrap_or(&d.majority_hash)
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
        let matched = member
            .match_index
            .map_or("-".to_string(), |m| m.to_string());
        let contact = member
            .last_contact_ms
            .map_or("-".to_string(), |ms| format!("{ms} ms ago"));
        say!(
            "  {:>3} {:<7} node {node_id} at {} match {matched} last contact {contact}",
            member.id,
            member_role(status, member),
            addrs(member)
        );
    }
}

/// Print a small answer with named fields: text as `text`, json as an
/// object of the fields, table as FIELD VALUE rows.
pub fn fields(
    format: Format,
    text: &str,
    fields: &[(&str, serde_json::Value)],
) -> anyhow::Result<()> {
    match format {
        Format::Text => say!("{text}"),
        Format::Json => {
            let object: serde_json::Map<String, serde_json::Value> = fields
                .iter()
                .map(|(name, value)| (name.replace(' ', "_"), value.clone()))
                .collect();
            json(&object)?;
        }
        Format::Table => Table::fields(fields.iter().map(|(name, value)| {
            let cell = match value {
                serde_json::Value::String(text) => text.clone(),
                serde_json::Value::Null => "-".to_string(),
                other => other.to_string(),
            };
            (*name, cell)
        }))
        .print(),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_as_wide_as_their_widest_cell() {
        let mut table = Table::new(&["id", "role"]);
        table.row(["1".to_string(), "leader".to_string()]);
        table.row(["12".to_string(), "learner\nx".to_string()]);
        table.row(["3".to_string()]);
        assert_eq!(
            table.render(),
            "ID  ROLE\n1   leader\n12  learner x\n3\n",
            "aligned, one line a row, no trailing spaces"
        );
    }

    #[test]
    fn json_wins_as_the_alias_of_its_format() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            out: OutputArgs,
        }
        let format = |args: &[&str]| {
            Cli::try_parse_from(std::iter::once("x").chain(args.iter().copied()))
                .map(|cli| cli.out.format())
        };
        assert_eq!(format(&[]).ok(), Some(Format::Text));
        assert_eq!(format(&["--json"]).ok(), Some(Format::Json));
        assert_eq!(format(&["-o", "table"]).ok(), Some(Format::Table));
        assert_eq!(format(&["--output=json"]).ok(), Some(Format::Json));
        assert!(format(&["--json", "-o", "table"]).is_err(), "two answers");
        assert!(format(&["-o", "yaml"]).is_err());
    }
}
