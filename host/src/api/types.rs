//! The JSON bodies of the client API, shared by the server and the client.
//!
//! Commands, requests and results are bytes. On the wire each is given
//! either as text (`command`) or as base64 (`command_base64`), and each
//! result carries `base64` always and `text` when the bytes are valid UTF-8,
//! so text stays pleasant and binary stays safe.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};

/// `POST /v1/propose`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProposeRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_base64: Option<String>,
}

/// `POST /v1/query`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_base64: Option<String>,
    /// `linearizable` (default), `lease` or `stale`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistency: Option<crate::node::Consistency>,
}

/// Bytes returned by a guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Output {
    /// The bytes as text, when they are valid UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The bytes, base64 (standard alphabet, padded).
    pub base64: String,
}

impl Output {
    pub fn from_bytes(bytes: &[u8]) -> Self {
        Output {
            text: std::str::from_utf8(bytes).ok().map(str::to_owned),
            base64: BASE64.encode(bytes),
        }
    }

    /// The raw bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, base64::DecodeError> {
        BASE64.decode(&self.base64)
    }
}

/// Answer to a committed and applied proposal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProposeResponse {
    pub index: u64,
    pub term: u64,
    pub output: Output,
    pub fuel_used: u64,
}

/// Answer to a query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryResponse {
    /// The applied index the query saw.
    pub applied_index: u64,
    pub output: Output,
    pub fuel_used: u64,
}

/// `POST /v1/members`: add a node (a voter, once it caught up as a
/// learner), or only a learner, or a node that replaces a voter.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddMemberRequest {
    /// The new node's ticket, `<raft-id>:<node-id>@<ip:port>`.
    pub ticket: String,
    /// Keep it a learner (non-voting).
    #[serde(default)]
    pub learner: bool,
    /// Raft id of a voter the new node replaces (joint consensus).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces: Option<u64>,
}

/// `POST /v1/leader`: hand leadership over.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferLeaderRequest {
    /// The voter to lead; the most up-to-date one if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<u64>,
}

/// Answer to a leadership transfer: the new leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferLeaderResponse {
    pub leader_id: u64,
}

/// Answer to a membership change: the log index at which it applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembershipResponse {
    pub index: u64,
}

/// `GET /health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthResponse {
    pub status: String,
}

/// Every error the API returns: `{"error": {"code": ..., "message": ...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorInfo,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorInfo {
    /// Stable, machine-readable code (e.g. `not_leader`, `guest_trapped`).
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
    /// For errors of an entry that committed: its log index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u64>,
    /// For `not_leader`: the Raft id of the leader, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader_hint: Option<u64>,
    /// For `compacted` (a watch): the first index whose changes are kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_index: Option<u64>,
}

/// One line of a watch's stream (`GET /v1/watch`, newline-delimited JSON;
/// see [`super::watch`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WatchLine {
    /// The first line: changes after `since` follow.
    Start { since: u64, applied_index: u64 },
    /// The changes of one log entry under the watched prefix.
    Changes { index: u64, events: Vec<WatchEvent> },
    /// Every change up to `applied_index` was sent (resume after it).
    Progress { applied_index: u64 },
    /// The last line: the changes before `oldest_index` are gone.
    Compacted { oldest_index: u64 },
    /// The last line: the watch ended on the node's side.
    Error { error: ErrorInfo },
}

/// One key's change in a [`WatchLine::Changes`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchEvent {
    /// `put` or `delete`.
    pub op: WatchOp,
    pub key: Output,
    /// The new value (`put` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Output>,
}

/// What happened to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WatchOp {
    Put,
    Delete,
}

/// Pick the bytes out of a text-or-base64 pair (what the server does with
/// the `command`/`request` fields; public for the fuzz targets).
pub fn bytes_from(
    text: Option<String>,
    base64: Option<String>,
    field: &str,
) -> Result<Vec<u8>, String> {
    match (text, base64) {
        (Some(text), None) => Ok(text.into_bytes()),
        (None, Some(encoded)) => BASE64
            .decode(encoded.as_bytes())
            .map_err(|e| format!("`{field}_base64` is not valid base64: {e}")),
        (Some(_), Some(_)) => Err(format!(
            "give either `{field}` or `{field}_base64`, not both"
        )),
        (None, None) => Err(format!("missing `{field}` (text) or `{field}_base64`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_has_text_only_for_utf8() {
        let text = Output::from_bytes(b"7");
        assert_eq!(text.text.as_deref(), Some("7"));
        let binary = Output::from_bytes(&[0xff, 0x00]);
        assert_eq!(binary.text, None);
        assert_eq!(binary.to_bytes().expect("valid"), vec![0xff, 0x00]);
    }

    #[test]
    fn bytes_from_accepts_exactly_one_form() {
        assert_eq!(
            bytes_from(Some("a".into()), None, "command"),
            Ok(b"a".to_vec())
        );
        assert_eq!(
            bytes_from(None, Some("YQ==".into()), "command"),
            Ok(b"a".to_vec())
        );
        assert!(bytes_from(None, None, "command").is_err());
        assert!(bytes_from(Some("a".into()), Some("YQ==".into()), "command").is_err());
        assert!(bytes_from(None, Some("!!".into()), "command").is_err());
    }
}

/// The answer to an upgrade or a rollback: the activation's index and its
/// history record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpgradeResponse {
    pub index: u64,
    pub record: crate::node::upgrade::ComponentRecord,
}
