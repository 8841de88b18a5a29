//! Bridges raft-rs's `slog` logging into `tracing`, so a node has one log
//! stream.

use std::fmt::Write as _;

use slog::{Drain, KV, Level, OwnedKVList, Record};

/// A `slog` drain that re-emits every record as a `tracing` event with
/// target `raft`.
#[derive(Debug, Default, Clone, Copy)]
pub struct TracingDrain;

impl Drain for TracingDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &Record<'_>, values: &OwnedKVList) -> Result<(), slog::Never> {
        let mut fields = FieldWriter(String::new());
        // Serializing into a String cannot fail; a failure would only lose
        // the key-value suffix of one log line.
        let _ = record.kv().serialize(record, &mut fields);
        let _ = values.serialize(record, &mut fields);
        let message = record.msg();
        let kv = fields.0;
        match record.level() {
            Level::Critical | Level::Error => tracing::error!(target: "raft", "{message}{kv}"),
            Level::Warning => tracing::warn!(target: "raft", "{message}{kv}"),
            Level::Info => tracing::info!(target: "raft", "{message}{kv}"),
            Level::Debug => tracing::debug!(target: "raft", "{message}{kv}"),
            Level::Trace => tracing::trace!(target: "raft", "{message}{kv}"),
        }
        Ok(())
    }
}

struct FieldWriter(String);

impl slog::Serializer for FieldWriter {
    fn emit_arguments(&mut self, key: slog::Key, val: &std::fmt::Arguments<'_>) -> slog::Result {
        let _ = write!(self.0, " {key}={val}");
        Ok(())
    }
}

/// The logger handed to raft-rs for the node with Raft id `raft_id`.
pub fn raft_logger(raft_id: u64) -> slog::Logger {
    slog::Logger::root(TracingDrain.fuse(), slog::o!("raft_id" => raft_id))
}
