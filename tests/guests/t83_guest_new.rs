//! `raft-host guest new`: each scaffold builds with its one command,
//! passes `raft-host guest check`, names its examples, and its own test
//! passes; bad names and occupied directories are refused. Also: the SDKs'
//! WIT copies (what their published crates bind) equal `wit/`.
//!
//! The Rust scaffolds build into the guests' own target dirs
//! (`target/guests`, `target/guests-native`: same profiles, so only the
//! scaffold itself compiles), with the SDKs of this repository by path and
//! `guests/Cargo.lock`'s versions; the Python and
//! JavaScript ones use the project-local toolchains of `make
//! guests-polyglot`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use iroh_raft::wasm::examples;

use crate::polyglot;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ is in the repository")
        .to_path_buf()
}

/// The workspace's target dir.
fn target() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target dir")
        .to_path_buf()
}

fn raft_host() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_raft-host"));
    command.env("RUST_LOG", "error");
    command
}

fn run(command: &mut Command) -> Output {
    let output = command.output().expect("run a command");
    assert!(
        output.status.success(),
        "{command:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn guest_new(dir: &Path, args: &[&str]) -> Output {
    raft_host()
        .args(["guest", "new"])
        .arg(dir)
        .args(args)
        .output()
        .expect("run raft-host guest new")
}

/// `raft-host guest check` passes, and the component names `examples`.
fn assert_checks(component: &Path, expected_examples: &[&str]) {
    let cache = polyglot::compile_cache();
    let output = raft_host()
        .args(["guest", "check", "--json", "--cache-dir"])
        .arg(&cache)
        .arg(component)
        .output()
        .expect("run raft-host guest check");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("a report");
    assert!(output.status.success(), "{report:#}");
    assert_eq!(report["passed"], true);
    let named = report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|check| check["name"] == "examples")
        .and_then(|check| check["detail"].as_str())
        .expect("an examples check");
    assert!(
        named.starts_with(&format!("{} named: ", expected_examples.len())),
        "{named}"
    );
    let bytes = std::fs::read(component).expect("read the component");
    assert_eq!(examples::read(&bytes).lines, expected_examples);
}

#[test]
fn t83_refuses_bad_names_and_occupied_directories() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = guest_new(&dir.path().join("Bad Name"), &["--lang", "rust"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("bad guest name \"Bad Name\""), "{stderr}");

    let occupied = dir.path().join("taken");
    std::fs::create_dir(&occupied).expect("mkdir");
    std::fs::write(occupied.join("keep.txt"), "mine").expect("write");
    let output = guest_new(&occupied, &["--lang", "python"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("already exists and is not empty"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(occupied.join("keep.txt")).expect("kept"),
        "mine"
    );

    let output = guest_new(&dir.path().join("g"), &["--lang", "js", "--sdk-path", "x"]);
    assert_eq!(output.status.code(), Some(2), "--sdk-path is for rust");
}

/// `-o json` on `guest new` and `guest describe`: what was created, and
/// the examples attached.
#[test]
fn t83_guest_new_and_describe_print_json() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("tally");
    let output = run(raft_host()
        .args(["guest", "new"])
        .arg(&dir)
        .args(["--lang", "python", "-o", "json"]));
    let created: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("guest new -o json is JSON");
    assert_eq!(created["lang"], "python");
    assert_eq!(created["world"], "guest");
    let files: Vec<&str> = created["files"]
        .as_array()
        .expect("files")
        .iter()
        .filter_map(|file| file.as_str())
        .collect();
    for file in ["app.py", "examples.txt", "wit/state-machine.wit"] {
        assert!(files.contains(&file), "{created}");
    }
    for file in &files {
        assert!(dir.join(file).is_file(), "{file} listed but not written");
    }

    let examples_file = tmp.path().join("examples.txt");
    std::fs::write(&examples_file, "propose add 5\nquery get\n").expect("write examples");
    let described = tmp.path().join("described.wasm");
    let output = run(raft_host()
        .args(["guest", "describe", "--examples"])
        .arg(&examples_file)
        .arg(crate::common::guest("counter_v2"))
        .arg("--out")
        .arg(&described)
        .args(["-o", "json"]));
    let answer: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("guest describe -o json is JSON");
    assert_eq!(
        answer["examples"],
        serde_json::json!(["propose add 5", "query get"])
    );
    let bytes = std::fs::read(&described).expect("the described component");
    assert_eq!(examples::read(&bytes).lines, ["propose add 5", "query get"]);
}

#[test]
fn t83_rust_scaffolds_build_check_and_test() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    // The guests' own target dirs: the scaffold's profile is theirs, so
    // wit-bindgen and the SDKs are already built there.
    let (wasm_target, native_target) = (target().join("guests"), target().join("guests-native"));
    for (name, store, sdk, expected) in [
        (
            "my-counter",
            false,
            "guests/sdk",
            &["propose add 5", "query get"][..],
        ),
        (
            "my-map",
            true,
            "guests/store-sdk",
            &["propose set greeting hello", "query get greeting"][..],
        ),
    ] {
        let guest = dir.path().join(name);
        let mut args = vec!["--lang", "rust"];
        if store {
            args.push("--store");
        }
        let sdk_path = repo().join(sdk);
        args.extend(["--sdk-path", sdk_path.to_str().expect("UTF-8 path")]);
        let output = guest_new(&guest, &args);
        assert!(output.status.success(), "{output:?}");
        assert!(guest.join("wit/state-machine.wit").exists());
        // The guests' pinned versions: no registry lookup, and the shared
        // target dir's dependencies stay fresh.
        std::fs::copy(repo().join("guests/Cargo.lock"), guest.join("Cargo.lock"))
            .expect("copy the lock file");
        run(Command::new(&cargo)
            .current_dir(&guest)
            .env("CARGO_TARGET_DIR", &wasm_target)
            .args(["build", "--release", "--target", "wasm32-wasip2", "--quiet"]));
        let component = wasm_target
            .join("wasm32-wasip2/release")
            .join(format!("{}.wasm", name.replace('-', "_")));
        assert_checks(&component, expected);
        let output = run(Command::new(&cargo)
            .current_dir(&guest)
            .env("CARGO_TARGET_DIR", &native_target)
            .args(["test", "--quiet"]));
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(stdout.contains("1 passed"), "{stdout}");
    }
}

/// The project-local toolchain `make guests-polyglot` installs.
fn toolchain(path: PathBuf) -> PathBuf {
    assert!(
        path.exists(),
        "{} is missing: install the guest toolchains with `make guests-polyglot` \
         (`make test` does)",
        path.display()
    );
    path
}

#[test]
fn t83_python_scaffold_builds_checks_and_tests() {
    let componentize = toolchain(target().join("guest-toolchains/python/bin/componentize-py"));
    let dir = tempfile::tempdir().expect("tempdir");
    let guest = dir.path().join("py-counter");
    assert!(guest_new(&guest, &["--lang", "python"]).status.success());
    run(Command::new("make")
        .arg("-C")
        .arg(&guest)
        .arg(format!("COMPONENTIZE_PY={}", componentize.display()))
        .arg(format!("RAFT_HOST={}", env!("CARGO_BIN_EXE_raft-host")))
        .env("PYTHONDONTWRITEBYTECODE", "1"));
    assert_checks(
        &guest.join("py-counter.wasm"),
        &["propose add 5", "query get"],
    );
    let output = run(Command::new("make").arg("-C").arg(&guest).arg("test"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("Ran 1 test"), "{stderr}");
}

#[test]
fn t83_js_scaffold_builds_checks_and_tests() {
    let node_modules = toolchain(repo().join("guests/kv-js/node_modules"));
    let dir = tempfile::tempdir().expect("tempdir");
    let guest = dir.path().join("js-map");
    assert!(
        guest_new(&guest, &["--lang", "js", "--store"])
            .status
            .success()
    );
    // What `npm install` would give it: the pinned componentize-js.
    std::os::unix::fs::symlink(&node_modules, guest.join("node_modules")).expect("symlink");
    run(Command::new("node")
        .current_dir(&guest)
        .args(["build.mjs", "js-map.wasm"])
        .env("RAFT_HOST", env!("CARGO_BIN_EXE_raft-host")));
    assert_checks(
        &guest.join("js-map.wasm"),
        &["propose set greeting hello", "query get greeting"],
    );
    run(Command::new("node")
        .current_dir(&guest)
        .args(["--test", "test/"]));
}

#[test]
fn t83_the_sdks_bind_a_copy_of_wit() {
    for (copy, original) in [
        ("guests/sdk/wit/state-machine.wit", "wit/state-machine.wit"),
        (
            "guests/store-sdk/wit/state-machine.wit",
            "wit/v0.2.0/state-machine.wit",
        ),
    ] {
        let read = |path: &str| std::fs::read_to_string(repo().join(path)).expect(path);
        assert!(
            read(copy) == read(original),
            "{copy} differs from {original}: copy it again (cp {original} {copy})"
        );
    }
}
