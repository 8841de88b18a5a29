//! `raft-host guest new NAME --lang rust|python|js [--store]`: a new guest
//! from the templates in `scaffold/`, embedded in the binary with the WIT
//! they implement, so it works without the repository.
//!
//! Each template is a tiny but complete guest (a counter in the 0.1.0
//! world, whose snapshot and restore round-trip; with `--store`, a
//! key-value map over the host's store, with a `migrate` hook) that builds
//! with one command, passes `raft-host guest check`, has a native test of
//! its logic, and names its command examples for the node's start banner.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, ValueEnum};

/// Longest guest name: it becomes a crate or package name and a file name.
pub const MAX_NAME_CHARS: usize = 64;

/// The crates.io version of the SDKs a Rust scaffold depends on when no SDK
/// sources are found (the SDKs are published from `guests/sdk` and
/// `guests/store-sdk`).
const SDK_VERSION: &str = "0.1";

/// The SDKs next to the sources this binary was built from: a scaffold made
/// on the machine that built it uses them when they are still there.
const BUILT_FROM_GUESTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../guests");

#[derive(Debug, Args)]
pub struct NewArgs {
    /// The guest's directory, created (its last component is the name:
    /// lowercase ASCII letters, digits, `-` and `_`, starting with a letter).
    name: PathBuf,
    /// The language of the guest.
    #[arg(long, value_enum)]
    lang: Lang,
    /// A store-backed guest (WIT 0.2.0, state in the host's store) rather
    /// than one that keeps its state in its memory (0.1.0).
    #[arg(long)]
    store: bool,
    /// Rust: the SDK crate to depend on by path (`guests/sdk`, or
    /// `guests/store-sdk` with --store; `guests/` also works). Default: the
    /// SDK sources this binary was built from, when present, else the
    /// crates.io release.
    #[arg(long, value_name = "DIR")]
    sdk_path: Option<PathBuf>,
    /// `-o json`: what was created (`dir`, `lang`, `world`, `files`) as
    /// JSON; `table`: as `text`.
    #[command(flatten)]
    output: crate::output::OutputArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Lang {
    Rust,
    Python,
    Js,
}

/// One file of a template: its path in the guest's directory and its text
/// (with `{{...}}` placeholders).
type Template = &'static [(&'static str, &'static str)];

const WIT_MEMORY: &str = include_str!("../../../wit/state-machine.wit");
const WIT_STORE: &str = include_str!("../../../wit/v0.2.0/state-machine.wit");

/// `template!(DIR: FILE, ...)`: each FILE of `scaffold/DIR`. A manifest is
/// kept as `Cargo.toml.in` there (`"Cargo.toml" in "Cargo.toml.in"`):
/// cargo leaves a directory holding a `Cargo.toml` out of the packaged
/// crate, as another package's.
macro_rules! template {
    ($dir:literal: $($file:literal $(in $source:literal)?),+ $(,)?) => {
        &[$(($file, template!(@source $dir, $file $(, $source)?))),+]
    };
    (@source $dir:literal, $file:literal) => {
        include_str!(concat!("scaffold/", $dir, "/", $file))
    };
    (@source $dir:literal, $file:literal, $source:literal) => {
        include_str!(concat!("scaffold/", $dir, "/", $source))
    };
}

const RUST: Template = template!("rust":
    ".gitignore", "Cargo.toml" in "Cargo.toml.in", "README.md", "src/lib.rs");
const RUST_STORE: Template = template!("rust-store":
    ".gitignore", "Cargo.toml" in "Cargo.toml.in", "README.md", "src/lib.rs");
const PYTHON: Template = template!("python":
    ".gitignore", "Makefile", "README.md", "app.py", "counter.py", "test_counter.py", "examples.txt");
const PYTHON_STORE: Template = template!("python-store":
    ".gitignore", "Makefile", "README.md", "app.py", "kvmap.py", "test_kvmap.py", "examples.txt");
const JS: Template = template!("js":
    ".gitignore", "package.json", "README.md", "build.mjs", "examples.txt",
    "src/guest.js", "src/counter.js", "test/counter.test.mjs");
const JS_STORE: Template = template!("js-store":
    ".gitignore", "package.json", "README.md", "build.mjs", "examples.txt",
    "src/guest.js", "src/kvmap.js", "test/kvmap.test.mjs");

/// Why a scaffold was refused.
#[derive(Debug, thiserror::Error)]
pub enum NewError {
    /// A usage error (exit code 2).
    #[error("{0}")]
    Usage(String),
    /// The directory exists and holds something.
    #[error("{0} already exists and is not empty: pick another name, or remove it")]
    NotEmpty(String),
}

pub fn run(args: &NewArgs) -> anyhow::Result<ExitCode> {
    match scaffold(args) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(error) => match error.downcast_ref::<NewError>() {
            Some(NewError::Usage(_)) => {
                eprintln!("error: {error}");
                Ok(ExitCode::from(crate::EXIT_USAGE))
            }
            _ => Err(error),
        },
    }
}

fn scaffold(args: &NewArgs) -> anyhow::Result<()> {
    let name = args
        .name
        .file_name()
        .and_then(|name| name.to_str())
        .ok_or_else(|| NewError::Usage(format!("{}: no name", args.name.display())))?;
    check_name(name).map_err(NewError::Usage)?;
    if args.sdk_path.is_some() && args.lang != Lang::Rust {
        return Err(NewError::Usage("--sdk-path is for --lang rust".into()).into());
    }
    let dir = &args.name;
    let occupied = match std::fs::read_dir(dir) {
        Ok(mut entries) => entries.next().is_some(),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => false,
        Err(error) => return Err(error).with_context(|| format!("reading {}", dir.display())),
    };
    if occupied {
        return Err(NewError::NotEmpty(dir.display().to_string()).into());
    }

    let (template, module, what) = match (args.lang, args.store) {
        (Lang::Rust, false) => (RUST, "", "a replicated counter"),
        (Lang::Rust, true) => (
            RUST_STORE,
            "",
            "a replicated key-value map over the host's store",
        ),
        (Lang::Python, false) => (PYTHON, "counter", "a replicated counter"),
        (Lang::Python, true) => (
            PYTHON_STORE,
            "kvmap",
            "a replicated key-value map over the host's store",
        ),
        (Lang::Js, false) => (JS, "counter", "a replicated counter"),
        (Lang::Js, true) => (
            JS_STORE,
            "kvmap",
            "a replicated key-value map over the host's store",
        ),
    };
    let (world, wit, sdk_crate, sdk_dir) = if args.store {
        (
            "store-guest",
            WIT_STORE,
            "iroh-raft-store-guest",
            "store-sdk",
        )
    } else {
        ("guest", WIT_MEMORY, "iroh-raft-guest", "sdk")
    };
    let sdk = match args.lang {
        Lang::Rust => sdk_dependency(args.sdk_path.as_deref(), sdk_crate, sdk_dir)?,
        _ => String::new(),
    };
    let fill = |text: &str| {
        text.replace("{{name}}", name)
            .replace("{{crate}}", &name.replace('-', "_"))
            .replace("{{sdk}}", &sdk)
            .replace("{{sdk_crate}}", sdk_crate)
            .replace("{{world}}", world)
            .replace("{{module}}", module)
            .replace("{{what}}", what)
    };
    let files = template
        .iter()
        .map(|(path, text)| (*path, fill(text)))
        .chain([("wit/state-machine.wit", wit.to_string())]);
    let mut created = Vec::new();
    for (file, text) in files {
        let path = dir.join(file);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        created.push(file);
    }
    if args.output.format() == crate::output::Format::Json {
        return crate::output::json(&serde_json::json!({
            "dir": dir.display().to_string(),
            "lang": format!("{:?}", args.lang).to_lowercase(),
            "world": world,
            "what": what,
            "files": created,
        }));
    }
    say!("created {} ({})", dir.display(), what);
    say!("next: cd {} and see README.md", dir.display());
    Ok(())
}

/// A name is a crate, package and file name at once.
fn check_name(name: &str) -> Result<(), String> {
    let valid = name.len() <= MAX_NAME_CHARS
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "bad guest name {name:?}: use lowercase ASCII letters, digits, `-` and `_`, \
             starting with a letter, at most {MAX_NAME_CHARS} characters"
        ))
    }
}

/// The TOML value of the Rust scaffold's SDK dependency.
fn sdk_dependency(given: Option<&Path>, crate_name: &str, dir: &str) -> anyhow::Result<String> {
    let is_sdk = |path: &Path| {
        std::fs::read_to_string(path.join("Cargo.toml"))
            .is_ok_and(|toml| toml.contains(&format!("name = \"{crate_name}\"")))
    };
    let found = |base: &Path| {
        [base.to_path_buf(), base.join(dir)]
            .into_iter()
            .find(|path| is_sdk(path))
    };
    let path = match given {
        Some(given) => Some(found(given).ok_or_else(|| {
            NewError::Usage(format!(
                "--sdk-path {}: neither it nor {dir}/ in it is the {crate_name} crate",
                given.display()
            ))
        })?),
        None => found(Path::new(BUILT_FROM_GUESTS)),
    };
    Ok(match path {
        Some(path) => {
            let path = std::fs::canonicalize(&path)
                .with_context(|| format!("resolving {}", path.display()))?;
            let path = path.to_str().context("the SDK's path is not UTF-8")?;
            // A TOML basic string: escape what it needs.
            format!(
                "{{ path = \"{}\" }}",
                path.replace('\\', "\\\\").replace('"', "\\\"")
            )
        }
        None => format!("\"{SDK_VERSION}\""),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(check_name("my-guest_2").is_ok());
        for bad in [
            "",
            "2x",
            "My",
            "a b",
            "a/b",
            "é",
            &"a".repeat(MAX_NAME_CHARS + 1),
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn every_template_has_its_placeholders_filled() {
        for template in [RUST, RUST_STORE, PYTHON, PYTHON_STORE, JS, JS_STORE] {
            for (path, text) in template {
                for placeholder in text.match_indices("{{").map(|(at, _)| &text[at..]) {
                    let known = [
                        "{{name}}",
                        "{{crate}}",
                        "{{sdk}}",
                        "{{sdk_crate}}",
                        "{{world}}",
                        "{{module}}",
                        "{{what}}",
                    ];
                    assert!(
                        known.iter().any(|k| placeholder.starts_with(k)),
                        "{path}: {}",
                        &placeholder[..placeholder.len().min(20)]
                    );
                }
            }
        }
    }
}
