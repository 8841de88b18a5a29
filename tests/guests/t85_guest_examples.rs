//! Guests name their command examples (the custom section
//! `iroh-raft:examples`): the Rust SDKs' `guest_examples!` survives into
//! the component (the polyglot guests get the section appended), a node shows the examples in its status and suggests
//! them in its start banner, and the suggested command works.

use iroh_raft::wasm::examples;

use crate::common::{self, NodeProcess};

#[test]
fn t85_the_guests_name_their_examples() {
    for (guest, first) in [
        ("counter", "propose add 5"),
        ("kv", "propose put greeting hello"),
        ("kv_store", "propose put greeting hello"),
        // The polyglot guests get theirs appended after their build
        // (guests/tools/attach-examples in the Makefile).
        ("kv_python", "propose put greeting hello"),
        ("kv_js", "propose put greeting hello"),
        ("kv_store_python", "propose put greeting hello"),
        ("kv_store_js", "propose put greeting hello"),
    ] {
        let bytes = std::fs::read(common::guest(guest)).expect("read the guest");
        let found = examples::read(&bytes);
        assert!(found.warnings.is_empty(), "{guest}: {found:?}");
        assert_eq!(
            found.lines.first().map(String::as_str),
            Some(first),
            "{guest}"
        );
    }
    // A guest without the section has none (and still loads: t80).
    let bytes = std::fs::read(common::guest("counter_v2")).expect("read the guest");
    assert!(examples::read(&bytes).lines.is_empty());
}

#[test]
fn t85_a_kv_node_suggests_commands_that_work() {
    let dir = tempfile::tempdir().expect("tempdir");
    let guest = common::guest("kv");
    let node = NodeProcess::start(
        dir.path(),
        &["--guest", guest.to_str().expect("UTF-8 path")],
    );
    let banner = node.banner_until(" status");
    let propose = banner
        .iter()
        .find(|line| line.contains(" propose "))
        .unwrap_or_else(|| panic!("no propose suggestion in {banner:#?}"));
    assert!(
        !banner.iter().any(|line| line.contains("add 5")),
        "{banner:#?}"
    );
    // `  raft-host propose --api URL 'put greeting hello'`: the argument is
    // the quoted rest.
    let command = propose
        .split_once(" '")
        .and_then(|(_, rest)| rest.strip_suffix('\''))
        .unwrap_or_else(|| panic!("no quoted command in {propose:?}"));
    assert_eq!(command, "put greeting hello");
    let output = node.cli(&["propose", command]);
    assert!(
        output.status.success(),
        "the suggested command failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let output = node.cli(&["query", "get greeting"]);
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "hello");

    let status = node.cli_status().expect("status");
    assert_eq!(
        status.guest.examples,
        [
            "propose put greeting hello",
            "query get greeting",
            "query list"
        ]
    );
}

#[test]
fn t85_a_guest_without_examples_gets_generic_hints() {
    let dir = tempfile::tempdir().expect("tempdir");
    let guest = common::guest("counter_v2");
    let node = NodeProcess::start(
        dir.path(),
        &["--guest", guest.to_str().expect("UTF-8 path")],
    );
    let banner = node.banner_until(" query");
    assert!(
        !banner.iter().any(|line| line.contains(" propose")),
        "no command to propose is guessed: {banner:#?}"
    );
    assert!(
        banner.iter().any(|line| line.contains(" status")),
        "{banner:#?}"
    );
    assert!(node.cli_status().expect("status").guest.examples.is_empty());
}
