//! What the host answers for each interface a guest may import.
//!
//! The linker offers all of WASI 0.2 (`wasmtime_wasi::p2`), configured by
//! [`crate::wasm::wasi::deterministic_wasi`]. This table is the reviewed
//! list: for every interface, how the host makes its answers the same on
//! every replica. An import the linker can serve but this table does not
//! list is reported as not reviewed, which fails the check: the checker
//! only vouches for what someone has thought through.

use serde::Serialize;

/// Each reviewed interface (name without version) and what the host's
/// deterministic WASI answers there.
pub const REVIEWED_IMPORTS: &[(&str, &str)] = &[
    ("wasi:io/error", "errors of the streams below"),
    ("wasi:io/poll", "readiness of the streams below"),
    (
        "wasi:io/streams",
        "stdout and stderr into the node's log, stdin empty",
    ),
    ("wasi:clocks/wall-clock", "the entry's leader timestamp"),
    (
        "wasi:clocks/monotonic-clock",
        "the entry's leader timestamp (waiting on it waits in real time: do not sleep in a guest)",
    ),
    (
        "wasi:random/random",
        "bytes from BLAKE3 keyed by the entry's index and term, the same on every replica",
    ),
    (
        "wasi:random/insecure",
        "the same bytes as wasi:random/random",
    ),
    ("wasi:random/insecure-seed", "a constant seed"),
    (
        "wasi:cli/environment",
        "no variables, no arguments, no working directory",
    ),
    (
        "wasi:cli/exit",
        "exiting traps the call, which is rolled back like any trap",
    ),
    ("wasi:cli/stdin", "always at end of input"),
    ("wasi:cli/stdout", "into the node's log, one line at a time"),
    ("wasi:cli/stderr", "into the node's log, one line at a time"),
    ("wasi:cli/terminal-input", "no terminal"),
    ("wasi:cli/terminal-output", "no terminal"),
    ("wasi:cli/terminal-stdin", "no terminal"),
    ("wasi:cli/terminal-stdout", "no terminal"),
    ("wasi:cli/terminal-stderr", "no terminal"),
    (
        "wasi:filesystem/types",
        "no files: nothing is preopened, so every file access fails the same way",
    ),
    ("wasi:filesystem/preopens", "no preopened directories"),
    (
        "wasi:sockets/network",
        "no network: every socket operation fails",
    ),
    (
        "wasi:sockets/instance-network",
        "no network: every socket operation fails",
    ),
    (
        "wasi:sockets/tcp",
        "no network: every socket operation fails",
    ),
    (
        "wasi:sockets/tcp-create-socket",
        "no network: every socket operation fails",
    ),
    (
        "wasi:sockets/udp",
        "no network: every socket operation fails",
    ),
    (
        "wasi:sockets/udp-create-socket",
        "no network: every socket operation fails",
    ),
    (
        "wasi:sockets/ip-name-lookup",
        "no network: every lookup fails",
    ),
];

/// One import of a guest and the host's answer to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImportVerdict {
    /// The import as the component names it, e.g. `wasi:io/poll@0.2.9`.
    pub name: String,
    /// Whether the host serves it deterministically.
    pub served: bool,
    /// What the host answers there, or why it cannot.
    pub how: String,
}

/// Review one import by name.
pub fn review(name: &str) -> ImportVerdict {
    let (interface, version) = name.split_once('@').unwrap_or((name, ""));
    let reviewed = REVIEWED_IMPORTS
        .iter()
        .find(|(known, _)| *known == interface)
        .map(|(_, how)| *how);
    let (served, how) = match reviewed {
        Some(how) if version.is_empty() || version.starts_with("0.2.") => (true, how.to_string()),
        Some(_) => (
            false,
            format!("the host serves WASI 0.2.x, not version {version}"),
        ),
        None if interface.starts_with("wasi:") => (
            false,
            "a WASI interface the host does not provide deterministically".to_string(),
        ),
        None => (
            false,
            "not WASI: the host provides nothing but deterministic WASI".to_string(),
        ),
    };
    ImportVerdict {
        name: name.to_string(),
        served,
        how,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reviews_by_interface_whatever_the_patch_version() {
        for name in ["wasi:io/poll@0.2.0", "wasi:io/poll@0.2.12", "wasi:io/poll"] {
            assert!(review(name).served, "{name}");
        }
        let clock = review("wasi:clocks/wall-clock@0.2.9");
        assert!(clock.served && clock.how.contains("timestamp"));
    }

    #[test]
    fn refuses_what_was_not_reviewed() {
        assert!(!review("wasi:http/outgoing-handler@0.2.9").served);
        assert!(!review("wasi:io/poll@0.3.0").served);
        let custom = review("acme:db/query@1.0.0");
        assert!(!custom.served && custom.how.contains("not WASI"));
    }

    #[test]
    fn every_interface_is_listed_once() {
        let mut names: Vec<&str> = REVIEWED_IMPORTS.iter().map(|(name, _)| *name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), REVIEWED_IMPORTS.len());
    }
}
