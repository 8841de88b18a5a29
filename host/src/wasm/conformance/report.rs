//! The checker's report: checks with outcomes, the imports, measurements,
//! and how they read as text.

use std::fmt::Write as _;

use serde::Serialize;

use super::imports::ImportVerdict;
use crate::wasm::engine::GuestWorld;

/// The names of all checks of a 0.1.0 guest (state in its memory), in the
/// order they run; also the list used before the world is known. A check
/// that never ran because an earlier one failed is reported as skipped.
pub const CHECK_NAMES: &[&str] = &[
    "component",
    "examples",
    "imports",
    "exports",
    "start-up",
    "info",
    "round trip (fresh state)",
    "script",
    "errors leave state alone",
    "queries leave state alone",
    "deterministic",
    "round trip (after the script)",
    "restore carries the whole state",
    "garbage snapshot",
    "headroom",
];

/// The checks of a store-backed (0.2.0) guest, in the order they run;
/// [`SNAPSHOT_CHECK_NAMES`] follow them as not applicable.
pub const STORE_CHECK_NAMES: &[&str] = &[
    "component",
    "examples",
    "imports",
    "exports",
    "start-up",
    "info",
    "script",
    "errors leave state alone",
    "queries leave state alone",
    "deterministic",
    "migrate",
    "headroom",
];

/// The checks of `snapshot` and `restore`, which a store-backed guest does
/// not have.
pub const SNAPSHOT_CHECK_NAMES: &[&str] = &[
    "round trip (fresh state)",
    "round trip (after the script)",
    "restore carries the whole state",
    "garbage snapshot",
];

/// Why the snapshot checks do not apply to a store-backed guest.
const NOT_IN_STORE_WORLD: &str = "not part of a store-backed guest (0.2.0): its state lives in \
    the host's store, which the host snapshots, transfers and restores without the guest";

/// How one check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Pass,
    /// Works, but worth a look; does not fail the check.
    Warn,
    Fail,
    /// Not run: an earlier failure made it meaningless.
    Skip,
    /// Not part of the contract of the guest's world (the detail says
    /// why); does not fail the check.
    NotApplicable,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Pass => "PASS",
            Outcome::Warn => "WARN",
            Outcome::Fail => "FAIL",
            Outcome::Skip => "SKIP",
            Outcome::NotApplicable => "N/A",
        }
    }
}

/// One check and what it found, in plain words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub name: String,
    pub outcome: Outcome,
    pub detail: String,
}

impl Check {
    pub(super) fn pass(name: &str, detail: String) -> Self {
        Self::new(name, Outcome::Pass, detail)
    }
    pub(super) fn warn(name: &str, detail: String) -> Self {
        Self::new(name, Outcome::Warn, detail)
    }
    pub(super) fn fail(name: &str, detail: String) -> Self {
        Self::new(name, Outcome::Fail, detail)
    }
    pub(super) fn skip(name: &str, detail: &str) -> Self {
        Self::new(name, Outcome::Skip, detail.to_string())
    }
    pub(super) fn not_applicable(name: &str, detail: &str) -> Self {
        Self::new(name, Outcome::NotApplicable, detail.to_string())
    }
    fn new(name: &str, outcome: Outcome, detail: String) -> Self {
        Check {
            name: name.to_string(),
            outcome,
            detail,
        }
    }
}

/// Minimum, median and maximum of a series of measurements.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Spread {
    pub min: f64,
    pub median: f64,
    pub max: f64,
}

impl Spread {
    pub(super) fn of(values: &[f64]) -> Option<Self> {
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        Some(Spread {
            min: *sorted.first()?,
            median: sorted[sorted.len() / 2],
            max: *sorted.last()?,
        })
    }
}

/// What the checker measured (absent: not reached). Times are wall-clock on
/// the checking machine; fuel and memory are deterministic.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Measurements {
    pub size_bytes: Option<u64>,
    /// BLAKE3 of the component, as the node reports it.
    pub hash: Option<String>,
    pub compile_ms: Option<f64>,
    pub compiled_from_cache: Option<bool>,
    pub link_ms: Option<f64>,
    /// A node's start-up: instantiate, `info`, instantiate again.
    pub startup_ms: Option<f64>,
    /// One instantiation (what every restore and rebuild pays).
    pub instantiate_ms: Option<f64>,
    pub startup_fuel: Option<u64>,
    pub memory_after_startup_bytes: Option<u64>,
    /// Applies in the script that completed.
    pub applies: Option<u64>,
    pub apply_fuel: Option<Spread>,
    pub apply_us: Option<Spread>,
    pub query_fuel: Option<Spread>,
    pub peak_memory_bytes: Option<u64>,
    /// The most linear memory one step of the script added.
    pub max_step_memory_growth_bytes: Option<u64>,
    /// The snapshot after the script.
    pub snapshot_bytes: Option<u64>,
    pub snapshot_ms: Option<f64>,
    pub restore_ms: Option<f64>,
    /// Keys in the host's store after the script (store-backed guests).
    pub store_keys: Option<u64>,
    /// Bytes of keys and values in the host's store after the script.
    pub store_bytes: Option<u64>,
}

/// Name and version the guest reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GuestIdentity {
    pub name: String,
    pub version: String,
}

/// Everything the checker found about one component.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The file (or label) checked.
    pub guest_path: String,
    /// Whether every check passed or only warned.
    pub passed: bool,
    pub guest: Option<GuestIdentity>,
    /// Where the guest keeps its state, from its exports (absent: not a
    /// component that exports either world's interface).
    pub world: Option<GuestWorld>,
    pub checks: Vec<Check>,
    pub imports: Vec<ImportVerdict>,
    pub exports: Vec<String>,
    pub measurements: Measurements,
}

impl Report {
    pub(super) fn new(guest_path: String) -> Self {
        Report {
            guest_path,
            passed: false,
            guest: None,
            world: None,
            checks: Vec::new(),
            imports: Vec::new(),
            exports: Vec::new(),
            measurements: Measurements::default(),
        }
    }

    pub(super) fn push(&mut self, check: Check) {
        self.checks.push(check);
    }

    /// Mark every check that did not run as skipped (or, for a
    /// store-backed guest, the snapshot checks as not applicable) and
    /// settle `passed`.
    pub(super) fn skip_the_rest(&mut self) {
        let store_world = self.world == Some(GuestWorld::Store);
        let names: Vec<&str> = if store_world {
            [STORE_CHECK_NAMES, SNAPSHOT_CHECK_NAMES].concat()
        } else {
            CHECK_NAMES.to_vec()
        };
        for name in names {
            if self.checks.iter().any(|check| check.name == name) {
                continue;
            }
            self.checks
                .push(if store_world && SNAPSHOT_CHECK_NAMES.contains(&name) {
                    Check::not_applicable(name, NOT_IN_STORE_WORLD)
                } else {
                    Check::skip(name, "not run: an earlier check failed")
                });
        }
        self.passed = !self.checks.is_empty()
            && self.checks.iter().all(|check| {
                matches!(
                    check.outcome,
                    Outcome::Pass | Outcome::Warn | Outcome::NotApplicable
                )
            });
    }

    /// The check called `name`, if it is in the report.
    pub fn check(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|check| check.name == name)
    }

    /// The report as text for a terminal.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let guest = self
            .guest
            .as_ref()
            .map(|g| format!(" ({} {})", g.name, g.version))
            .unwrap_or_default();
        let _ = writeln!(out, "guest check: {}{guest}", self.guest_path);
        if let Some(world) = self.world {
            let _ = writeln!(out, "world: {world}");
        }
        for check in &self.checks {
            let _ = writeln!(
                out,
                "  {:<4}  {}: {}",
                check.outcome.label(),
                check.name,
                check.detail
            );
        }
        if !self.imports.is_empty() {
            let _ = writeln!(out, "imports:");
            for import in &self.imports {
                let mark = if import.served { "ok" } else { "NO" };
                let _ = writeln!(out, "  {mark}  {:<36} {}", import.name, import.how);
            }
        }
        let m = &self.measurements;
        let mut lines = Vec::new();
        if let (Some(size), Some(hash)) = (m.size_bytes, &m.hash) {
            lines.push(format!(
                "size {size} bytes, blake3 {}",
                hash.get(..16).unwrap_or(hash)
            ));
        }
        if let (Some(compile), Some(cached), Some(link)) =
            (m.compile_ms, m.compiled_from_cache, m.link_ms)
        {
            let how = if cached { "from the cache" } else { "compiled" };
            lines.push(format!("load {compile:.1} ms ({how}), link {link:.1} ms"));
        }
        if let (Some(startup), Some(instantiate), Some(fuel), Some(memory)) = (
            m.startup_ms,
            m.instantiate_ms,
            m.startup_fuel,
            m.memory_after_startup_bytes,
        ) {
            lines.push(format!(
                "start-up {startup:.1} ms as a node does it; one instantiation {instantiate:.1} ms, \
                 {fuel} fuel, {memory} bytes of linear memory"
            ));
        }
        if let (Some(applies), Some(fuel), Some(time)) = (m.applies, m.apply_fuel, m.apply_us) {
            lines.push(format!(
                "apply ({applies} calls): fuel min {:.0} / median {:.0} / max {:.0}; \
                 time median {:.0} us / max {:.0} us",
                fuel.min, fuel.median, fuel.max, time.median, time.max
            ));
        }
        if let Some(fuel) = m.query_fuel {
            lines.push(format!(
                "query: fuel median {:.0} / max {:.0}",
                fuel.median, fuel.max
            ));
        }
        if let (Some(peak), Some(growth)) = (m.peak_memory_bytes, m.max_step_memory_growth_bytes) {
            lines.push(format!(
                "linear memory: peak {peak} bytes during the script, at most {growth} bytes \
                 added by one step"
            ));
        }
        if let (Some(bytes), Some(snapshot), Some(restore)) =
            (m.snapshot_bytes, m.snapshot_ms, m.restore_ms)
        {
            lines.push(format!(
                "snapshot after the script: {bytes} bytes in {snapshot:.2} ms; \
                 restore (with a fresh instance) {restore:.2} ms"
            ));
        }
        if let (Some(keys), Some(bytes)) = (m.store_keys, m.store_bytes) {
            lines.push(format!(
                "the host's store after the script: {keys} keys, {bytes} bytes"
            ));
        }
        if !lines.is_empty() {
            let _ = writeln!(out, "measurements:");
            for line in lines {
                let _ = writeln!(out, "  {line}");
            }
        }
        let count = |outcome| self.checks.iter().filter(|c| c.outcome == outcome).count();
        let not_applicable = match count(Outcome::NotApplicable) {
            0 => String::new(),
            n => format!(", {n} not applicable"),
        };
        let _ = writeln!(
            out,
            "verdict: {} ({} checks passed, {} warned, {} failed, {} skipped{not_applicable})",
            if self.passed { "PASS" } else { "FAIL" },
            count(Outcome::Pass),
            count(Outcome::Warn),
            count(Outcome::Fail),
            count(Outcome::Skip)
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_checks_are_skipped_and_fail_the_report() {
        let mut report = Report::new("x.wasm".into());
        report.push(Check::fail("component", "not a component".into()));
        report.skip_the_rest();
        assert!(!report.passed);
        assert_eq!(report.checks.len(), CHECK_NAMES.len());
        assert_eq!(
            report.check("headroom").map(|c| c.outcome),
            Some(Outcome::Skip)
        );
        let text = report.to_text();
        assert!(text.contains("FAIL  component: not a component"), "{text}");
        assert!(text.contains("verdict: FAIL"), "{text}");
    }

    #[test]
    fn warnings_do_not_fail() {
        let mut report = Report::new("x.wasm".into());
        for name in CHECK_NAMES {
            report.push(Check::pass(name, "fine".into()));
        }
        report.checks[0].outcome = Outcome::Warn;
        report.skip_the_rest();
        assert!(report.passed);
    }

    #[test]
    fn a_store_guest_lists_the_snapshot_checks_as_not_applicable() {
        let mut report = Report::new("x.wasm".into());
        report.world = Some(GuestWorld::Store);
        for name in STORE_CHECK_NAMES {
            report.push(Check::pass(name, "fine".into()));
        }
        report.skip_the_rest();
        assert!(report.passed, "not applicable is not a failure");
        for name in SNAPSHOT_CHECK_NAMES {
            let check = report.check(name).expect("listed");
            assert_eq!(check.outcome, Outcome::NotApplicable, "{name}");
            assert!(check.detail.contains("store-backed"), "{}", check.detail);
        }
        assert_eq!(
            report.check("migrate").map(|c| c.outcome),
            Some(Outcome::Pass)
        );
        let text = report.to_text();
        assert!(text.contains("world: 0.2.0 store-guest"), "{text}");
        assert!(
            text.contains("N/A   garbage snapshot: not part of"),
            "{text}"
        );
        assert!(text.contains(", 4 not applicable)"), "{text}");
    }

    #[test]
    fn a_store_guest_that_fails_early_skips_the_rest() {
        let mut report = Report::new("x.wasm".into());
        report.world = Some(GuestWorld::Store);
        report.push(Check::fail("start-up", "trapped".into()));
        report.skip_the_rest();
        assert!(!report.passed);
        assert_eq!(
            report.check("migrate").map(|c| c.outcome),
            Some(Outcome::Skip)
        );
        assert_eq!(
            report.check("round trip (fresh state)").map(|c| c.outcome),
            Some(Outcome::NotApplicable)
        );
    }

    #[test]
    fn spread_of_nothing_is_none() {
        assert_eq!(Spread::of(&[]), None);
        let spread = Spread::of(&[3.0, 1.0, 2.0]).expect("values");
        assert_eq!((spread.min, spread.median, spread.max), (1.0, 2.0, 3.0));
    }
}
