//! What the host answers for each interface a guest may import.
//!
//! The linker offers all of WASI 0.2 (`wasmtime_wasi::p2`), configured by
//! [`crate::wasm::wasi::deterministic_wasi`], and the guest store of
//! `wit/v0.2.0` ([`crate::wasm::kv`]). These tables are the reviewed
//! list: for every interface, how the host makes its answers the same on
//! every replica. An import the linker can serve but no table lists is
//! reported as not reviewed, which fails the check: the checker only
//! vouches for what someone has thought through.

use serde::Serialize;

use crate::wasm::engine::GuestWorld;

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

/// The interfaces of `wit/v0.2.0` a store-backed guest imports (name
/// without version; the host serves 0.2.x), and what the host answers.
pub const STORE_IMPORTS: &[(&str, &str)] = &[
    (
        "iroh-raft:state-machine/store",
        "the host's replicated key-value store: the committed state plus the call's own writes \
         (read-only in queries), byte-wise key order, fixed limits and fuel prices",
    ),
    (
        "iroh-raft:state-machine/types",
        "types only (entry-meta, guest-info): nothing to call",
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

/// Review one import by name, for a guest of `world` (only a
/// store-backed guest has the store: a 0.1.0 guest calling it would trap).
pub fn review(name: &str, world: GuestWorld) -> ImportVerdict {
    let (interface, version) = name.split_once('@').unwrap_or((name, ""));
    let find = |table: &[(&'static str, &'static str)]| {
        table
            .iter()
            .find(|(known, _)| *known == interface)
            .map(|(_, how)| *how)
    };
    let version_served = version.is_empty() || version.starts_with("0.2.");
    let (served, how) = match (find(REVIEWED_IMPORTS), find(STORE_IMPORTS)) {
        (Some(how), _) if version_served => (true, how.to_string()),
        (Some(_), _) => (
            false,
            format!("the host serves WASI 0.2.x, not version {version}"),
        ),
        (None, Some(_)) if world == GuestWorld::Memory => (
            false,
            "only a store-backed guest (0.2.0) has the interfaces of wit/v0.2.0; a 0.1.0 guest \
             calling the store traps"
                .to_string(),
        ),
        (None, Some(how)) if version_served => (true, how.to_string()),
        (None, Some(_)) => (
            false,
            format!("the host serves the store of wit/v0.2.0 (0.2.x), not version {version}"),
        ),
        (None, None) if interface.starts_with("wasi:") => (
            false,
            "a WASI interface the host does not provide deterministically".to_string(),
        ),
        (None, None) => (
            false,
            "not WASI: the host provides nothing but deterministic WASI and the guest store"
                .to_string(),
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
            for world in [GuestWorld::Memory, GuestWorld::Store] {
                assert!(review(name, world).served, "{name}");
            }
        }
        let clock = review("wasi:clocks/wall-clock@0.2.9", GuestWorld::Memory);
        assert!(clock.served && clock.how.contains("timestamp"));
    }

    #[test]
    fn refuses_what_was_not_reviewed() {
        assert!(!review("wasi:http/outgoing-handler@0.2.9", GuestWorld::Memory).served);
        assert!(!review("wasi:io/poll@0.3.0", GuestWorld::Memory).served);
        let custom = review("acme:db/query@1.0.0", GuestWorld::Store);
        assert!(!custom.served && custom.how.contains("not WASI"));
    }

    #[test]
    fn only_a_store_guest_has_the_store() {
        let store = crate::wasm::kv::STORE_INTERFACE;
        let served = review(store, GuestWorld::Store);
        assert!(served.served && served.how.contains("key-value store"));
        let refused = review(store, GuestWorld::Memory);
        assert!(
            !refused.served && refused.how.contains("traps"),
            "{}",
            refused.how
        );
        assert!(review("iroh-raft:state-machine/types@0.2.0", GuestWorld::Store).served);
        assert!(!review("iroh-raft:state-machine/store@0.3.0", GuestWorld::Store).served);
    }

    #[test]
    fn every_interface_is_listed_once() {
        let mut names: Vec<&str> = REVIEWED_IMPORTS
            .iter()
            .chain(STORE_IMPORTS)
            .map(|(name, _)| *name)
            .collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), REVIEWED_IMPORTS.len() + STORE_IMPORTS.len());
    }
}
