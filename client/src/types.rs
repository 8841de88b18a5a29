//! The JSON bodies of the API's calls, shared by the node (which serves
//! them) and the clients.
//!
//! Commands, requests and results are bytes. On the wire each is given
//! either as text (`command`) or as base64 (`command_base64`), and each
//! result carries `base64` always and `text` when the bytes are valid UTF-8,
//! so text stays pleasant and binary stays safe.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};

use crate::status::Consistency;
use crate::upgrade::ComponentRecord;

/// `POST /v1/propose`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProposeRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_base64: Option<String>,
}

impl ProposeRequest {
    /// The command as text when it is UTF-8, else as base64.
    pub fn from_bytes(command: &[u8]) -> Self {
        match std::str::from_utf8(command) {
            Ok(text) => ProposeRequest {
                command: Some(text.to_string()),
                ..Default::default()
            },
            Err(_) => ProposeRequest {
                command_base64: Some(BASE64.encode(command)),
                ..Default::default()
            },
        }
    }
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
    pub consistency: Option<Consistency>,
}

impl QueryRequest {
    /// The request as text when it is UTF-8, else as base64.
    pub fn from_bytes(request: &[u8], consistency: Consistency) -> Self {
        let mut body = match std::str::from_utf8(request) {
            Ok(text) => QueryRequest {
                request: Some(text.to_string()),
                ..Default::default()
            },
            Err(_) => QueryRequest {
                request_base64: Some(BASE64.encode(request)),
                ..Default::default()
            },
        };
        body.consistency = Some(consistency);
        body
    }
}

/// Bytes returned by a guest (or a key or value in a watch event).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Output {
    /// The bytes as text, when they are valid UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The bytes, base64 (standard alphabet, padded).
    pub base64: String,
}

impl Output {
    /// Both forms of `bytes`.
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

    /// The text, or `base64:...` for bytes that are not UTF-8 (how the CLI
    /// prints results).
    pub fn display(&self) -> String {
        match &self.text {
            Some(text) => text.clone(),
            None => format!("base64:{}", self.base64),
        }
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

/// `GET /ready`: the node can serve (it knows a leader and has applied
/// close to the commit index it knows); when it cannot, the answer is a
/// `503` [`ErrorBody`] whose code says why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadyResponse {
    /// `ready`.
    pub status: String,
    pub leader_id: u64,
    pub term: u64,
    pub commit_index: u64,
    pub applied_index: u64,
}

/// Every error the API returns: `{"error": {"code": ..., "message": ...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorInfo,
}

/// What went wrong, with a stable code a program can act on.
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
    /// For `compacted` (a watch's `since` older than the kept history): the
    /// oldest index whose changes are still available.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_index: Option<u64>,
}

impl ErrorInfo {
    /// An error with `code` and `message` and nothing else.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        ErrorInfo {
            code: code.into(),
            message: message.into(),
            index: None,
            leader_hint: None,
            oldest_index: None,
        }
    }
}

/// The answer to an upgrade or a rollback: the activation's index and its
/// history record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpgradeResponse {
    pub index: u64,
    pub record: ComponentRecord,
}

/// Query parameters of `POST /v1/upgrade` (the component is the body).
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpgradeParams {
    /// Change nothing: compare the candidate with the active component.
    #[serde(default)]
    pub dry_run: bool,
    /// How many recent entries a dry run compares.
    pub entries: Option<usize>,
    /// Fuel of one `apply` of the new component.
    pub apply_fuel: Option<u64>,
    /// Fuel of one `query` of the new component.
    pub query_fuel: Option<u64>,
    /// Memory cap of the new component, MiB.
    pub memory_limit_mib: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_has_text_only_for_utf8() {
        let text = Output::from_bytes(b"7");
        assert_eq!(text.text.as_deref(), Some("7"));
        assert_eq!(text.display(), "7");
        let binary = Output::from_bytes(&[0xff, 0x00]);
        assert_eq!(binary.text, None);
        assert_eq!(binary.to_bytes().expect("valid"), vec![0xff, 0x00]);
        assert_eq!(binary.display(), "base64:/wA=");
    }

    #[test]
    fn bodies_carry_text_or_base64() {
        let text = ProposeRequest::from_bytes(b"add 1");
        assert_eq!(text.command.as_deref(), Some("add 1"));
        let binary = ProposeRequest::from_bytes(&[0xff]);
        assert_eq!(binary.command_base64.as_deref(), Some("/w=="));
        let query = QueryRequest::from_bytes(b"get", Consistency::Stale);
        assert_eq!(
            serde_json::to_string(&query).expect("json"),
            r#"{"request":"get","consistency":"stale"}"#
        );
    }

    #[test]
    fn an_error_without_optional_fields_reads() {
        let body: ErrorBody = serde_json::from_str(
            r#"{"error":{"code":"not_leader","message":"m","leader_hint":2}}"#,
        )
        .expect("error body");
        assert_eq!(body.error.leader_hint, Some(2));
        assert_eq!(body.error.oldest_index, None);
    }
}
