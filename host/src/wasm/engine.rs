//! The one wasmtime [`Engine`] of a node, and loading of components.
//!
//! The engine is configured for determinism (fuel metering, NaN
//! canonicalization, no threads, deterministic relaxed SIMD). Loading a
//! component checks, before anything runs, that it is a component, that it
//! exports the `state-machine` interface and that every import can be served
//! by the deterministic WASI; the compiled code is cached in the data dir,
//! keyed by the component's content hash and the engine's configuration, so
//! a restart does not pay for compilation again.

use crate::limits::{DEFAULT_MAX_WASM_STACK_BYTES, MAX_COMPONENT_BYTES};
use std::hash::Hasher;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine};

use super::bindings::GuestPre;
use super::error::WasmError;
use super::instance::StoreState;
use super::store_bindings::StoreGuestPre;

/// The magic bytes every wasm binary starts with.
const WASM_MAGIC: &[u8; 4] = b"\0asm";
/// Component binaries carry this layer/version after the magic (core modules
/// carry `01 00 00 00`).
const COMPONENT_VERSION: [u8; 4] = [0x0d, 0x00, 0x01, 0x00];

/// A content hash identifying a component (BLAKE3 of its bytes).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ComponentHash(pub [u8; 32]);

impl ComponentHash {
    pub fn of(bytes: &[u8]) -> Self {
        ComponentHash(*blake3::hash(bytes).as_bytes())
    }

    pub fn to_hex(&self) -> String {
        blake3::Hash::from_bytes(self.0).to_hex().to_string()
    }

    pub fn from_hex(hex: &str) -> Option<Self> {
        blake3::Hash::from_hex(hex)
            .ok()
            .map(|h| ComponentHash(*h.as_bytes()))
    }
}

impl std::fmt::Debug for ComponentHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ComponentHash({})", self.to_hex())
    }
}

impl std::fmt::Display for ComponentHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// The wasmtime engine plus the linker with the deterministic WASI. Cheap to
/// clone.
#[derive(Clone)]
pub struct WasmEngine {
    inner: Arc<EngineInner>,
}

struct EngineInner {
    engine: Engine,
    linker: Linker<StoreState>,
    cache_dir: Option<PathBuf>,
    /// Identifies the engine's compilation settings in cache file names, so a
    /// cached artifact from another wasmtime build or config is never loaded.
    config_tag: String,
}

impl std::fmt::Debug for WasmEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmEngine")
            .field("cache_dir", &self.inner.cache_dir)
            .field("config_tag", &self.inner.config_tag)
            .finish()
    }
}

/// Which version of the contract a guest implements, which decides where
/// its state lives (a wire type, also persisted: defined in the client
/// crate, with its interface names).
pub use iroh_raft_client::GuestWorld;

/// The linked exports of a component, of either world.
#[derive(Clone)]
pub(super) enum GuestPreKind {
    Memory(GuestPre<StoreState>),
    Store(StoreGuestPre<StoreState>),
}

/// A component that passed validation and is ready to instantiate.
#[derive(Clone)]
pub struct LoadedComponent {
    pub hash: ComponentHash,
    pub size_bytes: u64,
    /// The guest's command examples (see [`super::examples`]).
    pub examples: Arc<[String]>,
    pub(super) pre: GuestPreKind,
}

impl GuestPreKind {
    pub(super) fn engine(&self) -> &Engine {
        match self {
            GuestPreKind::Memory(pre) => pre.engine(),
            GuestPreKind::Store(pre) => pre.engine(),
        }
    }
}

impl LoadedComponent {
    /// Where this guest keeps its state.
    pub fn world(&self) -> GuestWorld {
        match self.pre {
            GuestPreKind::Memory(_) => GuestWorld::Memory,
            GuestPreKind::Store(_) => GuestWorld::Store,
        }
    }
}

impl std::fmt::Debug for LoadedComponent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedComponent")
            .field("hash", &self.hash)
            .field("size_bytes", &self.size_bytes)
            .field("world", &self.world())
            .finish()
    }
}

/// A component that is compiled (or was fetched from the cache) but not yet
/// linked: what [`WasmEngine::compile`] returns, so that its imports and
/// exports can be listed even when linking it would fail.
#[derive(Clone)]
pub struct CompiledComponent {
    pub hash: ComponentHash,
    pub size_bytes: u64,
    /// Whether the compiled code came from the cache (no compilation).
    pub from_cache: bool,
    /// The guest's command examples (see [`super::examples`]).
    pub examples: Arc<[String]>,
    component: Component,
}

impl std::fmt::Debug for CompiledComponent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledComponent")
            .field("hash", &self.hash)
            .field("size_bytes", &self.size_bytes)
            .field("from_cache", &self.from_cache)
            .finish()
    }
}

impl CompiledComponent {
    /// The names of the component's imports (e.g. `wasi:io/poll@0.2.9`), in
    /// the order the component declares them.
    pub fn import_names(&self, engine: &WasmEngine) -> Vec<String> {
        let ty = self.component.component_type();
        ty.imports(engine.engine())
            .map(|(name, _)| name.to_string())
            .collect()
    }

    /// The names of the component's exports.
    pub fn export_names(&self, engine: &WasmEngine) -> Vec<String> {
        let ty = self.component.component_type();
        ty.exports(engine.engine())
            .map(|(name, _)| name.to_string())
            .collect()
    }
}

/// Adapts `std::hash::Hasher` (which wasmtime's compatibility hash feeds) to
/// BLAKE3, whose output is stable across Rust versions.
struct StableHasher(blake3::Hasher);

impl Hasher for StableHasher {
    fn finish(&self) -> u64 {
        let bytes = self.0.finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&bytes.as_bytes()[..8]);
        u64::from_le_bytes(first)
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

impl WasmEngine {
    /// Create the engine. `cache_dir` (usually `<data-dir>/component-cache`)
    /// holds compiled components; `None` disables the cache.
    pub fn new(cache_dir: Option<PathBuf>) -> Result<Self, WasmError> {
        // Threads need wasmtime's `threads` feature, which we do not enable:
        // shared memory would make guests nondeterministic.
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .consume_fuel(true)
            .cranelift_nan_canonicalization(true)
            .relaxed_simd_deterministic(true)
            .max_wasm_stack(DEFAULT_MAX_WASM_STACK_BYTES);
        let engine = Engine::new(&config).map_err(|e| WasmError::Engine {
            reason: format!("{e:#}"),
        })?;
        let mut linker = Linker::<StoreState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(|e| WasmError::Engine {
            reason: format!("adding WASI to the linker: {e:#}"),
        })?;
        super::kv::link(&mut linker).map_err(|e| WasmError::Engine {
            reason: format!("adding the guest store to the linker: {e:#}"),
        })?;
        let mut hasher = StableHasher(blake3::Hasher::new());
        std::hash::Hash::hash(&engine.precompile_compatibility_hash(), &mut hasher);
        let config_tag = hasher.0.finalize().to_hex()[..16].to_string();
        if let Some(dir) = &cache_dir {
            std::fs::create_dir_all(dir).map_err(|source| WasmError::Cache {
                path: dir.clone(),
                source,
            })?;
        }
        Ok(WasmEngine {
            inner: Arc::new(EngineInner {
                engine,
                linker,
                cache_dir,
                config_tag,
            }),
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// Read a component file and load it (see [`Self::load`]).
    pub fn load_file(&self, path: &Path) -> Result<(LoadedComponent, Vec<u8>), WasmError> {
        let bytes = Self::read_component_file(path)?;
        let loaded = self.load(&bytes)?;
        Ok((loaded, bytes))
    }

    /// Read a component file, refusing one over [`MAX_COMPONENT_BYTES`]
    /// before reading it.
    pub fn read_component_file(path: &Path) -> Result<Vec<u8>, WasmError> {
        let read_err = |source| WasmError::ReadFile {
            path: path.to_path_buf(),
            source,
        };
        let size = std::fs::metadata(path).map_err(read_err)?.len();
        if size > MAX_COMPONENT_BYTES {
            return Err(WasmError::TooLarge {
                size_bytes: size,
                limit_bytes: MAX_COMPONENT_BYTES,
            });
        }
        std::fs::read(path).map_err(read_err)
    }

    /// Validate and compile (or fetch from the cache) a component, then link
    /// it: [`Self::compile`] followed by [`Self::link`].
    pub fn load(&self, bytes: &[u8]) -> Result<LoadedComponent, WasmError> {
        let compiled = self.compile(bytes)?;
        self.link(&compiled)
    }

    /// Check that `bytes` is a component within the size limit and compile
    /// it (or fetch the compiled code from the cache).
    pub fn compile(&self, bytes: &[u8]) -> Result<CompiledComponent, WasmError> {
        check_component_header(bytes)?;
        if bytes.len() as u64 > MAX_COMPONENT_BYTES {
            return Err(WasmError::TooLarge {
                size_bytes: bytes.len() as u64,
                limit_bytes: MAX_COMPONENT_BYTES,
            });
        }
        let hash = ComponentHash::of(bytes);
        let (component, from_cache) = self.compile_cached(hash, bytes)?;
        let examples = super::examples::read(bytes);
        for warning in &examples.warnings {
            tracing::warn!(component = %hash, "{warning}");
        }
        Ok(CompiledComponent {
            hash,
            size_bytes: bytes.len() as u64,
            from_cache,
            examples: examples.lines.into(),
            component,
        })
    }

    /// Resolve a compiled component's imports against the deterministic WASI
    /// (and the guest store) and check that it exports the `state-machine`
    /// interface of one of the two worlds (the 0.2.0 export decides).
    pub fn link(&self, compiled: &CompiledComponent) -> Result<LoadedComponent, WasmError> {
        let instance_pre = self
            .inner
            .linker
            .instantiate_pre(&compiled.component)
            .map_err(|e| WasmError::UnsupportedImport {
                reason: format!("{e:#}"),
            })?;
        let exports_store_world = compiled
            .export_names(self)
            .iter()
            .any(|name| name == GuestWorld::Store.export_name());
        let pre = if exports_store_world {
            StoreGuestPre::new(instance_pre).map(GuestPreKind::Store)
        } else {
            GuestPre::new(instance_pre).map(GuestPreKind::Memory)
        }
        .map_err(|e| WasmError::InterfaceMismatch {
            reason: format!("{e:#}"),
        })?;
        Ok(LoadedComponent {
            hash: compiled.hash,
            size_bytes: compiled.size_bytes,
            examples: compiled.examples.clone(),
            pre,
        })
    }

    fn cache_path(&self, hash: ComponentHash) -> Option<PathBuf> {
        let dir = self.inner.cache_dir.as_ref()?;
        Some(dir.join(format!("{}-{}.cwasm", hash.to_hex(), self.inner.config_tag)))
    }

    /// The compiled component, and whether it came from the cache.
    fn compile_cached(
        &self,
        hash: ComponentHash,
        bytes: &[u8],
    ) -> Result<(Component, bool), WasmError> {
        if let Some(path) = self.cache_path(hash)
            && path.exists()
        {
            match deserialize_cached(&self.inner.engine, &path) {
                Ok(component) => return Ok((component, true)),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e,
                        "ignoring unusable cached component; recompiling");
                }
            }
        }
        let started = std::time::Instant::now();
        let component =
            Component::new(&self.inner.engine, bytes).map_err(|e| WasmError::NotAComponent {
                reason: format!("{e:#}"),
            })?;
        tracing::debug!(%hash, elapsed_ms = started.elapsed().as_millis() as u64, "compiled component");
        if let Some(path) = self.cache_path(hash)
            && let Err(error) = self.store_cached(&component, &path)
        {
            // The cache only saves compile time: a local disk problem must
            // not fail a load that every other replica completes (an
            // upgrade's result is replicated).
            tracing::warn!(path = %path.display(), %error,
                "cannot cache the compiled component; it stays compiled in memory");
        }
        Ok((component, false))
    }

    fn store_cached(&self, component: &Component, path: &Path) -> Result<(), WasmError> {
        let cache_err = |source| WasmError::Cache {
            path: path.to_path_buf(),
            source,
        };
        let serialized = component.serialize().map_err(|e| WasmError::Engine {
            reason: format!("serializing compiled component: {e:#}"),
        })?;
        // Write to a temporary name and rename, so a crash never leaves a
        // truncated artifact under the real name. The name is unique per
        // process and call, so two engines filling one cache dir (the
        // checker and tests share one) never write the same file.
        static NEXT_TMP: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let unique = NEXT_TMP.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = path.with_extension(format!("cwasm.{}-{unique}.tmp", std::process::id()));
        // The artifact, then its checksum (checked before wasmtime maps it:
        // it trusts the bytes), synced before the rename makes it visible.
        let write = || -> std::io::Result<()> {
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            // Owner only, like every file in the data dir.
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(&tmp)?;
            std::io::Write::write_all(&mut file, &serialized)?;
            std::io::Write::write_all(&mut file, blake3::hash(&serialized).as_bytes())?;
            file.sync_all()?;
            std::fs::rename(&tmp, path)?;
            if let Some(dir) = path.parent() {
                std::fs::File::open(dir)?.sync_all()?;
            }
            Ok(())
        };
        write().map_err(cache_err)
    }
}

/// Reject anything that is not a component before handing it to the
/// compiler, with an error that says what it is instead.
fn check_component_header(bytes: &[u8]) -> Result<(), WasmError> {
    if bytes.len() < 8 || &bytes[..4] != WASM_MAGIC {
        return Err(WasmError::NotAComponent {
            reason: "the file does not start with the WebAssembly magic bytes".into(),
        });
    }
    if bytes[4..8] != COMPONENT_VERSION {
        return Err(WasmError::NotAComponent {
            reason: "this is a core WebAssembly module, not a component \
                     (wrap it with `wasm-tools component new`)"
                .into(),
        });
    }
    Ok(())
}

/// Bytes of the checksum after a cached artifact (BLAKE3).
const CACHE_CHECKSUM_BYTES: usize = 32;

/// Load a compiled component from the cache, if its checksum holds (a
/// damaged artifact is an error: the caller recompiles).
#[allow(unsafe_code)]
fn deserialize_cached(engine: &Engine, path: &Path) -> wasmtime::Result<Component> {
    let bytes = std::fs::read(path)?;
    let Some(split) = bytes.len().checked_sub(CACHE_CHECKSUM_BYTES) else {
        wasmtime::bail!("{} bytes, shorter than its checksum", bytes.len());
    };
    let (artifact, checksum) = bytes.split_at(split);
    if blake3::hash(artifact).as_bytes() != checksum {
        wasmtime::bail!("its checksum does not match: the file is damaged");
    }
    // SAFETY: wasmtime requires that the bytes were produced by
    // `Component::serialize` of a compatible engine and not tampered with.
    // Only this node writes into its cache dir (inside its private data dir,
    // like its keys and log), artifacts are synced and renamed into place
    // only when complete, the checksum above proves these bytes are the
    // ones written (a damaged disk cannot make wasmtime run garbage), and
    // the file name carries the engine's compatibility hash; wasmtime
    // additionally checks the header and version before use.
    unsafe { Component::deserialize(engine, artifact) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_check_names_what_is_wrong() {
        let not_wasm = check_component_header(b"hello world").expect_err("not wasm");
        assert!(not_wasm.to_string().contains("magic"));
        let module = check_component_header(b"\0asm\x01\0\0\0").expect_err("core module");
        assert!(module.to_string().contains("core WebAssembly module"));
        check_component_header(b"\0asm\x0d\0\x01\0").expect("component header");
    }

    #[test]
    fn a_damaged_cached_artifact_is_recompiled_not_run() {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = WasmEngine::new(Some(dir.path().to_path_buf())).expect("engine");
        engine.load(crate::wasm::DEFAULT_GUEST).expect("compiles");
        let cached = std::fs::read_dir(dir.path())
            .expect("cache dir")
            .map(|entry| entry.expect("entry").path())
            .find(|path| path.extension().is_some_and(|e| e == "cwasm"))
            .expect("a cached artifact");
        let mut bytes = std::fs::read(&cached).expect("read");
        let middle = bytes.len() / 2;
        bytes[middle..middle + 4096].fill(0);
        std::fs::write(&cached, &bytes).expect("damage");

        let engine = WasmEngine::new(Some(dir.path().to_path_buf())).expect("engine");
        let component = engine.load(crate::wasm::DEFAULT_GUEST).expect("recompiles");
        crate::wasm::StateMachine::new(component, crate::wasm::GuestLimits::default())
            .expect("instantiates");
        let repaired = std::fs::read(&cached).expect("read");
        assert_ne!(repaired, bytes, "the damaged artifact was replaced");
        deserialize_cached(&engine.inner.engine, &cached).expect("the new one checks out");
    }

    #[test]
    fn a_cache_that_cannot_be_written_does_not_fail_the_load() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = dir.path().join("component-cache");
        let engine = WasmEngine::new(Some(cache.clone())).expect("engine");
        std::fs::remove_dir(&cache).expect("remove the cache dir");
        std::fs::write(&cache, b"a plain file").expect("a file in its place");
        let component = engine.load(crate::wasm::DEFAULT_GUEST).expect("loads");
        crate::wasm::StateMachine::new(component, crate::wasm::GuestLimits::default())
            .expect("instantiates");
    }

    #[test]
    fn component_hash_hex_round_trips() {
        let hash = ComponentHash::of(b"abc");
        assert_eq!(ComponentHash::from_hex(&hash.to_hex()), Some(hash));
        assert_eq!(ComponentHash::from_hex("zz"), None);
    }
}
