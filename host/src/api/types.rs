//! The JSON bodies of the client API, shared by the server and the client:
//! defined once, in the client crate (`iroh_raft_client::types`), and
//! re-exported here.
//!
//! Commands, requests and results are bytes. On the wire each is given
//! either as text (`command`) or as base64 (`command_base64`), and each
//! result carries `base64` always and `text` when the bytes are valid UTF-8,
//! so text stays pleasant and binary stays safe.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

pub use iroh_raft_client::types::{
    AddMemberRequest, ErrorBody, ErrorInfo, HealthResponse, MembershipResponse, Output,
    ProposeRequest, ProposeResponse, QueryRequest, QueryResponse, ReadyResponse,
    TransferLeaderRequest, TransferLeaderResponse, UpgradeParams, UpgradeResponse,
};
pub use iroh_raft_client::watch::{WatchEvent, WatchLine, WatchOp};

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
