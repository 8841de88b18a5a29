//! Fixtures for the tests of guests in several languages: where each guest
//! component is, and a compile cache shared by every test process.
//!
//! The Rust guests are built by the host's build script; the Python and
//! JavaScript ones by `make guests-polyglot` (their toolchains come from
//! PyPI and npm). Compiling a 12-18 MB component takes wasmtime 20-30 s on
//! two cores, so the tests keep the compiled code in one cache under the
//! target dir, exactly as a node keeps it in its data dir.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use iroh_raft::wasm::{LoadedComponent, WasmEngine};

/// The kv guest in each language, by the name the tests use.
pub const KV_GUESTS: &[&str] = &["kv", "kv_python", "kv_js"];

/// The store-backed kv guest (WIT 0.2.0) in each language.
pub const KV_STORE_GUESTS: &[&str] = &["kv_store", "kv_store_python", "kv_store_js"];

/// Path of a guest component, failing with how to build it when missing
/// (the one list of guests is in `tests/common`).
pub fn guest_path(name: &str) -> PathBuf {
    crate::common::guest(name)
}

/// The compile cache the tests share (next to the polyglot components).
pub fn compile_cache() -> PathBuf {
    Path::new(env!("IROH_RAFT_GUEST_KV_PYTHON"))
        .parent()
        .expect("the components live in a directory")
        .join("compile-cache")
}

/// A guest compiled once per test process (through the shared cache).
pub fn load(name: &str) -> LoadedComponent {
    static LOADED: OnceLock<Mutex<HashMap<String, LoadedComponent>>> = OnceLock::new();
    let mut loaded = LOADED
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(component) = loaded.get(name) {
        return component.clone();
    }
    let engine = WasmEngine::new(Some(compile_cache())).expect("engine");
    let (component, _) = engine
        .load_file(&guest_path(name))
        .unwrap_or_else(|e| panic!("loading {name}: {e}"));
    loaded.insert(name.to_string(), component.clone());
    component
}

/// Put the compiled code of `name` into a node's data dir cache (as if the
/// node had compiled it before), so a test cluster does not compile the
/// same component once per node.
pub fn seed_node_cache(name: &str, data_dir: &Path) {
    let component = load(name);
    let prefix = component.hash.to_hex();
    let node_cache = data_dir.join("component-cache");
    std::fs::create_dir_all(&node_cache).expect("create the node's cache dir");
    for entry in std::fs::read_dir(compile_cache()).expect("read the compile cache") {
        let path = entry.expect("cache entry").path();
        let file_name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if file_name.starts_with(&prefix) && file_name.ends_with(".cwasm") {
            std::fs::copy(&path, node_cache.join(file_name)).expect("copy the compiled guest");
        }
    }
}
