//! Fuzz target for the client API's request bodies (`host/src/api/types.rs`)
//! and what the server decodes out of them (text-or-base64 bytes, tickets).

use iroh_raft::api::types::{
    AddMemberRequest, ProposeRequest, QueryRequest, TransferLeaderRequest, bytes_from,
};
use iroh_raft::transport::NodeTicket;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Fuzz target `api_request`: the input as the body of every `POST`
/// endpoint that takes one.
///
/// Asserts: no panic; whatever parses survives serialize → parse
/// unchanged; the bytes the server takes from a propose or query body, and
/// a ticket that parses, round-trip through their text forms.
pub fn api_request(data: &[u8]) {
    if let Some(propose) = round_trip::<ProposeRequest>(data) {
        check_bytes(propose.command, propose.command_base64, "command");
    }
    if let Some(query) = round_trip::<QueryRequest>(data) {
        check_bytes(query.request, query.request_base64, "request");
    }
    if let Some(add) = round_trip::<AddMemberRequest>(data)
        && let Ok(ticket) = add.ticket.parse::<NodeTicket>()
    {
        let again: NodeTicket = ticket.to_string().parse().expect("a printed ticket parses");
        assert_eq!(again.to_string(), ticket.to_string());
    }
    round_trip::<TransferLeaderRequest>(data);
}

fn round_trip<T>(data: &[u8]) -> Option<T>
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let parsed: T = serde_json::from_slice(data).ok()?;
    let json = serde_json::to_vec(&parsed).expect("a parsed body re-encodes");
    let again: T = serde_json::from_slice(&json).expect("a re-encoded body parses");
    assert_eq!(again, parsed);
    Some(parsed)
}

/// The bytes decoded from a body are what the body said: the text's bytes,
/// or the base64's, which re-encode to the same base64 (standard alphabet,
/// padded: nothing else decodes).
fn check_bytes(text: Option<String>, base64: Option<String>, field: &str) {
    let Ok(bytes) = bytes_from(text.clone(), base64.clone(), field) else {
        return;
    };
    match (text, base64) {
        (Some(text), None) => assert_eq!(bytes, text.into_bytes()),
        (None, Some(encoded)) => {
            let output = iroh_raft::api::types::Output::from_bytes(&bytes);
            assert_eq!(output.base64, encoded, "base64 that decodes re-encodes");
        }
        other => panic!("bytes from an invalid pair: {other:?}"),
    }
}
