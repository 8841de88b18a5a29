//! The checks up to a running instance: `component`, `imports`, `exports`
//! (compile and link, as [`WasmEngine::load`] does; the exports decide the
//! world), `start-up` and `info` (instantiate, as [`StateMachine::new`] or
//! [`StoreMachine::new`] does).

use crate::limits::MAX_COMPONENT_BYTES;
use std::time::Instant;

use super::imports::{self, ImportVerdict};
use super::report::{self, Check, Outcome, Report};
use super::{CheckOptions, list, mib, millis, store};
use crate::wasm::engine::{GuestWorld, LoadedComponent, WasmEngine};
use crate::wasm::error::WasmError;
use crate::wasm::examples::{self, EXAMPLES_SECTION};
use crate::wasm::instance::GuestInstance;
use crate::wasm::limits::GuestLimits;
use crate::wasm::machine::GuestMachine;
use crate::wasm::state_machine::StateMachine;
use crate::wasm::store_machine::StoreMachine;

/// The `examples` check: the command examples the guest names (its
/// `iroh-raft:examples` section), which a node suggests at start; none is
/// fine, a malformed section a warning (a node ignores what it cannot use).
fn examples_check(bytes: &[u8]) -> Check {
    let found = examples::read(bytes);
    if !found.warnings.is_empty() {
        return Check::warn("examples", list(found.warnings));
    }
    if found.lines.is_empty() {
        return Check::pass(
            "examples",
            format!(
                "none: a node suggests only generic commands (name some: the SDKs' \
                 `guest_examples!`, or `raft-host guest describe`; section {EXAMPLES_SECTION})"
            ),
        );
    }
    Check::pass(
        "examples",
        format!("{} named: {}", found.lines.len(), found.lines.join("; ")),
    )
}

/// Compile and link: the `component`, `imports` and `exports` checks.
pub(super) fn load(
    report: &mut Report,
    bytes: &[u8],
    options: &CheckOptions,
) -> Option<LoadedComponent> {
    let engine = match WasmEngine::new(options.cache_dir.clone()) {
        Ok(engine) => engine,
        Err(error) => {
            report.push(Check::fail("component", error.to_string()));
            return None;
        }
    };
    let started = Instant::now();
    let compiled = match engine.compile(bytes) {
        Ok(compiled) => compiled,
        Err(error) => {
            report.push(Check::fail("component", error.to_string()));
            return None;
        }
    };
    let m = &mut report.measurements;
    m.size_bytes = Some(compiled.size_bytes);
    m.hash = Some(compiled.hash.to_hex());
    m.compile_ms = Some(millis(started));
    m.compiled_from_cache = Some(compiled.from_cache);
    report.push(Check::pass(
        "component",
        format!(
            "a WebAssembly component of {} (the limit is {}), {} in {:.0} ms",
            mib(compiled.size_bytes),
            mib(MAX_COMPONENT_BYTES),
            if compiled.from_cache {
                "loaded from the compile cache"
            } else {
                "compiled"
            },
            millis(started)
        ),
    ));

    report.push(examples_check(bytes));

    report.exports = compiled.export_names(&engine);
    // The rule `WasmEngine::link` applies: the 0.2.0 export makes a
    // store-backed guest.
    let exported = [GuestWorld::Store, GuestWorld::Memory]
        .into_iter()
        .find(|world| report.exports.iter().any(|e| e == world.export_name()));
    report.imports = compiled
        .import_names(&engine)
        .iter()
        .map(|name| imports::review(name, exported.unwrap_or(GuestWorld::Memory)))
        .collect();
    let started = Instant::now();
    let linked = engine.link(&compiled);
    report.measurements.link_ms = Some(millis(started));

    let unserved: Vec<&ImportVerdict> = report.imports.iter().filter(|i| !i.served).collect();
    let imports_check = match (&linked, unserved.is_empty()) {
        (Err(WasmError::UnsupportedImport { reason }), _) => Check::fail(
            "imports",
            format!("the host cannot link the component: {reason}"),
        ),
        (_, false) => Check::fail(
            "imports",
            format!(
                "{} of {} imports are not served deterministically: {}",
                unserved.len(),
                report.imports.len(),
                list(unserved.iter().map(|i| format!("{} ({})", i.name, i.how)))
            ),
        ),
        (_, true) if report.imports.is_empty() => Check::pass(
            "imports",
            "none: the guest needs nothing from the host".into(),
        ),
        (_, true) => Check::pass(
            "imports",
            format!(
                "{} imports, all served deterministically by the host (listed below)",
                report.imports.len()
            ),
        ),
    };
    let imports_failed = imports_check.outcome == Outcome::Fail;
    report.push(imports_check);

    let exports_check = match (exported, &linked) {
        (None, _) => Check::fail(
            "exports",
            format!(
                "does not export {} or {} (exports: {})",
                GuestWorld::Memory.export_name(),
                GuestWorld::Store.export_name(),
                if report.exports.is_empty() {
                    "nothing".to_string()
                } else {
                    report.exports.join(", ")
                }
            ),
        ),
        (Some(world), Err(WasmError::InterfaceMismatch { reason })) => Check::fail(
            "exports",
            format!(
                "exports {} with the wrong shape: {reason}",
                world.export_name()
            ),
        ),
        (Some(_), Err(_)) => {
            Check::skip("exports", "not checked: the component could not be linked")
        }
        (Some(_), Ok(loaded)) => Check::pass(
            "exports",
            format!(
                "exports {} with the expected functions: a {}",
                loaded.world().export_name(),
                loaded.world()
            ),
        ),
    };
    report.push(exports_check);
    report.world = exported;
    match linked {
        Ok(loaded) if !imports_failed => Some(loaded),
        Ok(_) => None,
        Err(error) => {
            if !matches!(
                error,
                WasmError::UnsupportedImport { .. } | WasmError::InterfaceMismatch { .. }
            ) {
                report.push(Check::fail("link", error.to_string()));
            }
            None
        }
    }
}

/// A machine for `loaded` as a node builds one: a store-backed guest over
/// an empty in-memory store of its own.
pub(super) fn new_machine(
    loaded: &LoadedComponent,
    limits: GuestLimits,
) -> Result<GuestMachine, WasmError> {
    Ok(match loaded.world() {
        GuestWorld::Memory => StateMachine::new(loaded.clone(), limits)?.into(),
        GuestWorld::Store => {
            StoreMachine::new(loaded.clone(), limits, store::empty_store())?.into()
        }
    })
}

/// Instantiate as a node does: the `start-up` and `info` checks.
pub(super) fn start(
    report: &mut Report,
    loaded: &LoadedComponent,
    limits: GuestLimits,
) -> Option<GuestMachine> {
    let started = Instant::now();
    let machine = match new_machine(loaded, limits) {
        Ok(machine) => machine,
        Err(error) => {
            report.push(Check::fail("start-up", error.to_string()));
            return None;
        }
    };
    report.measurements.startup_ms = Some(millis(started));
    let info = machine.info().clone();
    report.guest = Some(report::GuestIdentity {
        name: info.name.clone(),
        version: info.version.clone(),
    });
    // One more instance, alone, for the cost of one instantiation (what a
    // rebuild after a trap and every restore pay).
    let started = Instant::now();
    let mut instance = match GuestInstance::new(loaded, &info.name, limits) {
        Ok(instance) => instance,
        Err(error) => {
            report.push(Check::fail("start-up", error.to_string()));
            return None;
        }
    };
    let m = &mut report.measurements;
    m.instantiate_ms = Some(millis(started));
    m.startup_fuel = Some(instance.startup_fuel_used());
    m.memory_after_startup_bytes = Some(instance.memory_bytes());
    report.push(Check::pass(
        "start-up",
        format!(
            "instantiates in {:.1} ms using {} fuel and {} of linear memory",
            millis(started),
            instance.startup_fuel_used(),
            mib(instance.memory_bytes())
        ),
    ));

    let info_check = match instance.info() {
        _ if info.name.is_empty() || info.version.is_empty() => Check::fail(
            "info",
            format!(
                "name {:?} and version {:?} must both be non-empty",
                info.name, info.version
            ),
        ),
        Ok(again) if again.name == info.name && again.version == info.version => Check::pass(
            "info",
            format!(
                "{} {}, the same from every instance",
                info.name, info.version
            ),
        ),
        Ok(again) => Check::fail(
            "info",
            format!(
                "differs between instances: {} {} vs {} {}",
                info.name, info.version, again.name, again.version
            ),
        ),
        Err(failure) => Check::fail("info", format!("a second instance failed: {failure}")),
    };
    report.push(info_check);
    Some(machine)
}
