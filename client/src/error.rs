//! Why a call failed.

use crate::types::ErrorInfo;

/// Why a call failed: the node's answer, the network, the client's own
/// configuration, a watch's history gone, or every endpoint of a list
/// failing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The node answered with an error (a stable `code` and a message).
    #[error("{} ({})", .0.message, .0.code)]
    Api(ErrorInfo),
    /// The node could not be reached or answered something unreadable.
    #[error("cannot talk to the node at {url}: {reason}")]
    Transport {
        url: String,
        reason: String,
        /// The connection could not be opened: the request provably never
        /// reached the node (a refused connect, an unknown host, a connect
        /// timeout). Otherwise the node may have received it.
        connect: bool,
    },
    /// The client's own options are unusable (no endpoint, a CA file that
    /// is not PEM, a token with white space).
    #[error("{0}")]
    Config(String),
    /// A watch's `since` (or the point it resumes from) is older than the
    /// history the node keeps: changes before `oldest_index` are gone.
    /// Read the state again and watch from a fresh `since`.
    #[error(
        "the changes before index {oldest_index} were compacted away: read the state again \
         and watch from a fresh `since`"
    )]
    Compacted { oldest_index: u64 },
    /// Every endpoint of the list was tried (within the bounded retries)
    /// and none could serve the call; what each attempt met, in order.
    #[error("no node could serve the call: {}", summary(.attempts))]
    Unavailable { attempts: Vec<Attempt> },
}

/// One failed attempt of a call that failed over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub url: String,
    pub error: String,
}

fn summary(attempts: &[Attempt]) -> String {
    attempts
        .iter()
        .map(|a| format!("{}: {}", a.url, a.error))
        .collect::<Vec<_>>()
        .join("; ")
}

impl Error {
    /// The API's error code, when the node answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Api(info) => Some(&info.code),
            Error::Compacted { .. } => Some("compacted"),
            _ => None,
        }
    }

    /// `not_leader`: the Raft id of the leader, if the node knew it.
    pub fn leader_hint(&self) -> Option<u64> {
        match self {
            Error::Api(info) if info.code == "not_leader" => info.leader_hint,
            _ => None,
        }
    }

    pub(crate) fn transport(url: &str, reason: impl ToString, connect: bool) -> Self {
        let reason = reason.to_string();
        let hint = scheme_hint(url, &reason);
        Error::Transport {
            url: url.to_string(),
            reason: format!("{reason}{hint}"),
            connect,
        }
    }
}

/// A hint when the answer looks like the other scheme: a TLS alert read
/// as HTTP, or plain HTTP read as TLS.
fn scheme_hint(url: &str, reason: &str) -> &'static str {
    if url.starts_with("http://") && reason.contains("invalid HTTP version") {
        " (does the node serve TLS? use an https:// URL)"
    } else if url.starts_with("https://") && reason.contains("InvalidContentType") {
        " (the node does not seem to serve TLS: use an http:// URL)"
    } else {
        ""
    }
}

/// Decode an answer: the JSON of `T` on a success, the API's error body
/// otherwise (an `Api` error, `Compacted` for `compacted`).
pub(crate) fn decode<T: serde::de::DeserializeOwned>(
    url: &str,
    status: u16,
    body: &[u8],
) -> Result<T, Error> {
    if (200..300).contains(&status) {
        return serde_json::from_slice(body)
            .map_err(|e| Error::transport(url, format!("unreadable answer: {e}"), false));
    }
    Err(error_answer(url, status, body))
}

/// The error a non-success answer carries.
pub(crate) fn error_answer(url: &str, status: u16, body: &[u8]) -> Error {
    match serde_json::from_slice::<crate::types::ErrorBody>(body) {
        Ok(body) if body.error.code == "compacted" => match body.error.oldest_index {
            Some(oldest_index) => Error::Compacted { oldest_index },
            None => Error::Api(body.error),
        },
        Ok(body) => Error::Api(body.error),
        Err(_) => Error::transport(
            url,
            format!("HTTP {status}: {}", String::from_utf8_lossy(body)),
            false,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_decode_to_values_or_typed_errors() {
        let ok: crate::types::MembershipResponse =
            decode("http://n", 200, br#"{"index":7}"#).expect("ok");
        assert_eq!(ok.index, 7);
        let not_leader = decode::<crate::types::MembershipResponse>(
            "http://n",
            503,
            br#"{"error":{"code":"not_leader","message":"m","leader_hint":3}}"#,
        )
        .expect_err("an error");
        assert_eq!(not_leader.leader_hint(), Some(3));
        let compacted = decode::<crate::types::MembershipResponse>(
            "http://n",
            410,
            br#"{"error":{"code":"compacted","message":"m","oldest_index":40}}"#,
        )
        .expect_err("an error");
        assert!(matches!(compacted, Error::Compacted { oldest_index: 40 }));
        let html = decode::<crate::types::MembershipResponse>("http://n", 502, b"<html>")
            .expect_err("an error");
        assert!(
            matches!(html, Error::Transport { connect: false, .. }),
            "{html}"
        );
    }
}
