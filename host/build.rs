//! Builds the guest components in `guests/` and tells the host crate where
//! they are.
//!
//! The default guest (the counter) is embedded into `raft-host`, and the
//! tests load the other guests, so they must exist before the host compiles.
//! As wasmtime's own `test-programs` do, we run a nested `cargo build` for
//! `wasm32-wasip2` into a separate target dir (so it never waits on the lock
//! of the outer build) and export each artifact's path as
//! `IROH_RAFT_GUEST_<NAME>` (e.g. `IROH_RAFT_GUEST_COUNTER`). The Python and
//! JavaScript guests' paths are exported the same way
//! (`IROH_RAFT_GUEST_KV_PYTHON`, `IROH_RAFT_GUEST_KV_STORE_JS`, ...), but
//! `make guests-polyglot` builds them.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The Rust target guests are compiled for: it produces components directly.
const GUEST_TARGET: &str = "wasm32-wasip2";

/// Every guest crate in `guests/` whose component the host or its tests use,
/// by artifact name.
const GUESTS: &[&str] = &[
    "counter",
    "counter_v2",
    "counter_v2_reject",
    "counter_v2_trap",
    "kv",
    "kv_v2",
    "kv_store",
    "kv_store_v2",
    "hostile_store",
    "hostile_loop",
    "hostile_memory",
    "hostile_trap",
    "hostile_query_state",
    "hostile_mix",
    "no_exports",
];

/// Where `make guests-polyglot` puts the guests written in other languages,
/// under the guests' target dir.
const POLYGLOT_DIR: &str = "polyglot";

/// The guests built by the Makefile rather than cargo, by artifact name.
const POLYGLOT_GUESTS: &[&str] = &["kv_python", "kv_js", "kv_store_python", "kv_store_js"];

fn main() {
    export_rustc_version();
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest_dir
        .parent()
        .expect("host/ lives inside the workspace root")
        .to_path_buf();
    let guests_dir = root.join("guests");
    if !guests_dir.join("Cargo.toml").exists() {
        use_bundled_default_guest(&manifest_dir);
        return;
    }
    println!("cargo:rerun-if-changed={}", root.join("wit").display());
    // The workspace manifest and every crate of the guests workspace (cargo
    // scans directories recursively). Only cargo crates: the Python and
    // JavaScript guests are built by the Makefile, and watching their
    // node_modules would make every build walk thousands of files.
    for file in ["Cargo.toml", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", guests_dir.join(file).display());
    }
    for entry in std::fs::read_dir(&guests_dir).expect("guests/ exists") {
        let path = entry.expect("readable guests/ entry").path();
        if path.join("Cargo.toml").exists() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }

    let target_dir = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("guests");
    build_guests(&guests_dir, &target_dir);

    // The Python and JavaScript guests are built by `make guests-polyglot`
    // (their toolchains come from PyPI and npm, not cargo); the tests find
    // them here and say how to build them when they are missing.
    let polyglot = target_dir.join(POLYGLOT_DIR);
    for name in POLYGLOT_GUESTS {
        println!(
            "cargo:rustc-env=IROH_RAFT_GUEST_{}={}",
            name.to_uppercase(),
            polyglot.join(format!("{name}.wasm")).display()
        );
    }

    let artifacts = target_dir.join(GUEST_TARGET).join("release");
    for name in GUESTS {
        let path = artifacts.join(format!("{name}.wasm"));
        assert!(
            path.exists(),
            "guest build succeeded but {} is missing",
            path.display()
        );
        println!(
            "cargo:rustc-env=IROH_RAFT_GUEST_{}={}",
            name.to_uppercase(),
            path.display()
        );
    }
}

/// Where a packaged crate carries the default guest, built (`make package`
/// puts it there; the package's `include` takes it along).
const BUNDLED_DEFAULT_GUEST: &str = "default-guest/counter.wasm";

/// Outside the repository (a crate from `make package`, installed with
/// `cargo install`) there are no guest sources: embed the bundled default
/// guest. Only the node needs it; the test guests come with the repository.
fn use_bundled_default_guest(manifest_dir: &Path) {
    let bundled = manifest_dir.join(BUNDLED_DEFAULT_GUEST);
    println!("cargo:rerun-if-changed={}", bundled.display());
    assert!(
        bundled.exists(),
        "neither the guest sources (../guests) nor the bundled default guest ({}) are here: \
         build from the repository, or package with `make package`",
        bundled.display()
    );
    println!(
        "cargo:rustc-env=IROH_RAFT_GUEST_COUNTER={}",
        bundled.display()
    );
}

/// The compiler's version (`1.95.0`), for the `iroh_raft_build_info`
/// metric; `unknown` if rustc cannot say.
fn export_rustc_version() {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".to_string());
    let version = Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.split_whitespace().nth(1).map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=IROH_RAFT_RUSTC_VERSION={version}");
}

fn build_guests(guests_dir: &Path, target_dir: &Path) {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--manifest-path")
        .arg(guests_dir.join("Cargo.toml"))
        .arg("--target")
        .arg(GUEST_TARGET)
        .arg("--release")
        .arg("--target-dir")
        .arg(target_dir);
    // The outer build's flags and wrappers (e.g. clippy-driver) are for the
    // host; the guests get a plain build.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTC_WRAPPER",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd.status().expect("failed to run cargo for the guests");
    if !status.success() {
        panic!(
            "building the guest components failed (see the errors above). \
             Is the {GUEST_TARGET} target installed? Run `rustup target add {GUEST_TARGET}` \
             (`make setup` does it)."
        );
    }
}
