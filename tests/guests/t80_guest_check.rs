//! `raft-host guest check` on every guest in `guests/`: the well-behaved
//! ones of both worlds pass (and the report says which world), each
//! hostile one fails the way it was written to fail.

use std::process::Output;

use serde_json::Value;

use crate::polyglot;

/// Run `raft-host guest check --json` on a guest; returns the exit status
/// and the parsed report.
fn check(name: &str, extra: &[&str]) -> (bool, Value) {
    let output = guest_check(
        &polyglot::guest_path(name).display().to_string(),
        extra,
        true,
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "{name}: not a JSON report ({e}):\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output.status.success(), report)
}

fn guest_check(path: &str, extra: &[&str], json: bool) -> Output {
    let cache = polyglot::compile_cache().display().to_string();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_raft-host"));
    command
        .args(["guest", "check", path, "--cache-dir", &cache])
        .args(extra)
        .env("RUST_LOG", "error");
    if json {
        command.arg("--json");
    }
    command.output().expect("run raft-host guest check")
}

/// The outcome and detail of one check of a report.
fn outcome<'a>(report: &'a Value, name: &str) -> (&'a str, &'a str) {
    let check = report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|check| check["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {report:#}"));
    (
        check["outcome"].as_str().expect("outcome"),
        check["detail"].as_str().expect("detail"),
    )
}

fn failed_checks(report: &Value) -> Vec<String> {
    report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|check| check["outcome"] == "fail")
        .map(|check| check["name"].as_str().expect("name").to_string())
        .collect()
}

fn assert_passes(name: &str, expected_guest: &str) -> Value {
    let (passed, report) = check(name, &[]);
    assert!(passed, "{name} should pass:\n{report:#}");
    assert_eq!(report["passed"], true);
    assert_eq!(report["guest"]["name"], expected_guest);
    assert!(failed_checks(&report).is_empty(), "{report:#}");
    for import in report["imports"].as_array().expect("imports") {
        assert_eq!(import["served"], true, "{import}");
    }
    let m = &report["measurements"];
    assert!(m["apply_fuel"]["max"].as_f64().expect("apply fuel") > 0.0);
    assert!(m["peak_memory_bytes"].as_u64().expect("memory") > 0);
    assert!(m["startup_ms"].as_f64().is_some());
    report
}

#[test]
fn t80_rust_guests_pass() {
    assert_passes("counter", "counter");
    let kv = assert_passes("kv", "kv");
    assert_eq!(kv["world"], "memory");
    assert_eq!(outcome(&kv, "garbage snapshot").0, "pass");
}

#[test]
fn t80_store_guests_pass_in_every_language() {
    for (name, guest) in [
        ("kv_store", "kv-store"),
        ("kv_store_python", "kv-store-python"),
        ("kv_store_js", "kv-store-js"),
    ] {
        let report = assert_passes(name, guest);
        assert_eq!(report["world"], "store", "{name}");
        let (_, exports) = outcome(&report, "exports");
        assert!(
            exports.contains("state-machine@0.2.0") && exports.contains("store-guest"),
            "{name}: {exports}"
        );
        for check in [
            "script",
            "errors leave state alone",
            "queries leave state alone",
            "deterministic",
            "migrate",
            "headroom",
        ] {
            assert_eq!(
                outcome(&report, check).0,
                "pass",
                "{name} {check}: {report:#}"
            );
        }
        // The script's failed commands were discarded by the host's
        // transaction, and two runs left the same store.
        let (_, errors) = outcome(&report, "errors leave state alone");
        assert!(
            errors.contains("discarded their writes"),
            "{name}: {errors}"
        );
        let (_, deterministic) = outcome(&report, "deterministic");
        assert!(
            deterministic.contains("identical store contents"),
            "{name}: {deterministic}"
        );
        for check in [
            "round trip (fresh state)",
            "round trip (after the script)",
            "restore carries the whole state",
            "garbage snapshot",
        ] {
            let (result, detail) = outcome(&report, check);
            assert_eq!(result, "not_applicable", "{name} {check}");
            assert!(detail.contains("store-backed"), "{name}: {detail}");
        }
        let store_import = report["imports"]
            .as_array()
            .expect("imports")
            .iter()
            .find(|import| import["name"] == "iroh-raft:state-machine/store@0.2.0")
            .unwrap_or_else(|| panic!("{name} imports the store: {report:#}"));
        assert_eq!(store_import["served"], true);
        let keys = report["measurements"]["store_keys"].as_u64();
        assert!(keys.is_some_and(|keys| keys > 0), "{name}: {report:#}");
    }
}

#[test]
fn t80_python_guest_passes() {
    let report = assert_passes("kv_python", "kv-python");
    // componentize-py's runtime imports much of WASI (files, sockets, ...);
    // the host answers each deterministically.
    let imports: Vec<&str> = report["imports"]
        .as_array()
        .expect("imports")
        .iter()
        .map(|import| import["name"].as_str().expect("name"))
        .collect();
    assert!(
        imports
            .iter()
            .any(|name| name.starts_with("wasi:sockets/tcp@")),
        "{imports:?}"
    );
}

#[test]
fn t80_javascript_guest_passes() {
    let report = assert_passes("kv_js", "kv-js");
    // Built with only stdio enabled: no clocks, random or sockets.
    for import in report["imports"].as_array().expect("imports") {
        let name = import["name"].as_str().expect("name");
        assert!(
            !name.starts_with("wasi:random") && !name.starts_with("wasi:sockets"),
            "{name}"
        );
    }
}

#[test]
fn t80_hostile_guests_fail_as_written() {
    for (guest, expected) in [
        ("hostile_trap", "guest trapped"),
        ("hostile_loop", "ran out of fuel"),
        ("hostile_memory", "exceeded its memory limit"),
    ] {
        let (passed, report) = check(guest, &[]);
        assert!(!passed, "{guest} must fail");
        assert_eq!(failed_checks(&report), ["script"], "{guest}: {report:#}");
        let (_, detail) = outcome(&report, "script");
        assert!(detail.contains(expected), "{guest}: {detail}");
        // The host rolled every failure back, so the rest of the contract
        // still holds.
        assert_eq!(outcome(&report, "deterministic").0, "pass", "{guest}");
        assert_eq!(
            outcome(&report, "restore carries the whole state").0,
            "pass"
        );
    }
}

#[test]
fn t80_a_guest_without_exports_fails_at_exports() {
    let (passed, report) = check("no_exports", &[]);
    assert!(!passed);
    assert_eq!(failed_checks(&report), ["exports"]);
    let (_, detail) = outcome(&report, "exports");
    assert!(
        detail.contains("does not export iroh-raft:state-machine/state-machine@0.1.0"),
        "{detail}"
    );
    assert_eq!(outcome(&report, "start-up").0, "skip");
}

#[test]
fn t80_a_file_that_is_not_a_component_fails_in_plain_words() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("not-a-guest.wasm");
    std::fs::write(&path, b"hello").expect("write");
    let output = guest_check(&path.display().to_string(), &[], false);
    assert!(!output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("FAIL  component: not a WebAssembly component"),
        "{text}"
    );
    assert!(text.contains("verdict: FAIL"), "{text}");
}

#[test]
fn t80_a_script_file_replaces_the_built_in_script() {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("script.txt");
    std::fs::write(
        &script,
        "# a tiny script\napply put a 1\nquery get a\napply-base64 //4=\n",
    )
    .expect("write");
    let (passed, report) = check("kv", &["--script", &script.display().to_string()]);
    assert!(passed, "{report:#}");
    let (_, detail) = outcome(&report, "script");
    assert_eq!(detail, "3 steps: 2 ok, 1 returned an error, none trapped");

    std::fs::write(&script, "propose put a 1\n").expect("write");
    let output = guest_check(
        &polyglot::guest_path("kv").display().to_string(),
        &["--script", &script.display().to_string()],
        false,
    );
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("line 1: expected `apply`"));
}

#[test]
fn t80_text_report_of_a_store_guest_names_its_world() {
    let output = guest_check(
        &polyglot::guest_path("kv_store").display().to_string(),
        &[],
        false,
    );
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}");
    for needle in [
        "world: 0.2.0 store-guest (state in the host's store)",
        "PASS  migrate: migrate from kv-store",
        "N/A   round trip (fresh state): not part of a store-backed guest",
        "ok  iroh-raft:state-machine/store@0.2.0",
        "the host's store after the script:",
        "verdict: PASS",
        "4 not applicable)",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
}

#[test]
fn t80_text_report_lists_checks_imports_and_measurements() {
    let output = guest_check(
        &polyglot::guest_path("counter").display().to_string(),
        &[],
        false,
    );
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    for needle in [
        "PASS  deterministic:",
        "imports:",
        "wasi:cli/environment",
        "measurements:",
        "apply (",
        "verdict: PASS",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
}
