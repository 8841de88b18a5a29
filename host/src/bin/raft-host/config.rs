//! The node's flags from the environment and from a TOML config file.
//!
//! Every flag of the node (the `RunArgs` on the root command, not those of
//! the subcommands) is read, in this order, from the command line, then
//! from the environment variable `RAFT_HOST_<FLAG_IN_UPPER_SNAKE>`, then
//! from the file of `--config FILE`, then from its default. The first two
//! are clap's own; the file is laid under them by making its values the
//! flags' defaults, so clap parses and validates them like any other.
//!
//! ```toml
//! # raft-host --config node.toml
//! data-dir = "/var/lib/raft-host"
//! api-addr = "127.0.0.1:7700"
//! advertise-addr = ["10.0.0.1:7800"]   # a repeatable flag takes an array
//! api-insecure = false                 # a switch takes a boolean
//! ```

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::Command;
use clap::error::{ContextKind, ContextValue, ErrorKind};

/// Prefix of the environment variable of each node flag.
pub const ENV_PREFIX: &str = "RAFT_HOST_";

/// The largest config file read (a node's config is a few hundred bytes).
pub const MAX_CONFIG_FILE_BYTES: u64 = 1024 * 1024;

/// Arguments of the root command that are not node flags.
const NOT_NODE_FLAGS: &[&str] = &["help", "version", "config"];

/// A config file that cannot be used: a usage error (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the config file {path} is larger than {MAX_CONFIG_FILE_BYTES} bytes")]
    TooLarge { path: PathBuf },
    #[error("the config file {path} is not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error(
        "unknown key `{key}` in the config file {path}{hint} (keys are the node's flags without `--`, e.g. `data-dir`)"
    )]
    UnknownKey {
        path: PathBuf,
        key: String,
        hint: String,
    },
    #[error("bad value for `{key}` in the config file {path}: {message}")]
    BadValue {
        path: PathBuf,
        key: String,
        message: String,
    },
}

/// The node flags of the root command: visible, with a long name.
fn node_flags(command: &Command) -> impl Iterator<Item = &clap::Arg> {
    command.get_arguments().filter(|arg| {
        !arg.is_hide_set()
            && arg.get_long().is_some()
            && !NOT_NODE_FLAGS.contains(&arg.get_id().as_str())
    })
}

/// The environment variable of a flag: `--data-dir` is `RAFT_HOST_DATA_DIR`.
pub fn env_name(long: &str) -> String {
    format!("{ENV_PREFIX}{}", long.replace('-', "_").to_uppercase())
}

/// The root command with an environment variable on every node flag (the
/// repeatable ones take a comma-separated list there, and on the command
/// line too).
pub fn with_env(command: Command) -> Command {
    let flags: Vec<(String, String, bool)> = node_flags(&command)
        .map(|arg| {
            let long = arg.get_long().expect("node flags have a long name");
            let multiple = matches!(arg.get_action(), clap::ArgAction::Append);
            (arg.get_id().to_string(), env_name(long), multiple)
        })
        .collect();
    flags
        .into_iter()
        .fold(command, |command, (id, env, multiple)| {
            command.mut_arg(id, |arg| {
                let arg = arg.env(env);
                if multiple {
                    arg.value_delimiter(',')
                } else {
                    arg
                }
            })
        })
}

/// The root command with the values of the config file at `path` as the
/// node flags' defaults, each checked with the flag's own parser first so
/// that a bad one is reported with its key and the file.
pub fn with_file(command: Command, path: &Path) -> Result<Command, ConfigError> {
    let table = read_table(path)?;
    let mut defaults = Vec::new();
    for (key, value) in &table {
        let Some(arg) = node_flags(&command).find(|arg| arg.get_long() == Some(key.as_str()))
        else {
            let dashed = key.replace('_', "-");
            let hint = if node_flags(&command).any(|arg| arg.get_long() == Some(dashed.as_str())) {
                format!(" (did you mean `{dashed}`?)")
            } else {
                String::new()
            };
            return Err(ConfigError::UnknownKey {
                path: path.to_path_buf(),
                key: key.clone(),
                hint,
            });
        };
        let bad = |message: String| ConfigError::BadValue {
            path: path.to_path_buf(),
            key: key.clone(),
            message,
        };
        let is_switch = matches!(arg.get_action(), clap::ArgAction::SetTrue);
        let values = match (value, is_switch) {
            (toml::Value::Boolean(on), true) => vec![on.to_string()],
            (_, true) => return Err(bad("expected true or false".to_string())),
            (toml::Value::Array(items), false) => {
                if !matches!(arg.get_action(), clap::ArgAction::Append) {
                    return Err(bad("takes one value, not an array".to_string()));
                }
                items
                    .iter()
                    .map(scalar)
                    .collect::<Result<_, _>>()
                    .map_err(bad)?
            }
            (value, false) => vec![scalar(value).map_err(bad)?],
        };
        if !is_switch {
            check_values(&command, key, &values).map_err(bad)?;
        }
        defaults.push((arg.get_id().to_string(), values));
    }
    Ok(defaults.into_iter().fold(command, |command, (id, values)| {
        command.mut_arg(id, |arg| arg.default_values(values))
    }))
}

fn read_table(path: &Path) -> Result<toml::Table, ConfigError> {
    let read = |source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    };
    let size = std::fs::metadata(path).map_err(read)?.len();
    if size > MAX_CONFIG_FILE_BYTES {
        return Err(ConfigError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    let text = std::fs::read_to_string(path).map_err(read)?;
    text.parse::<toml::Table>()
        .map_err(|error| ConfigError::Syntax {
            path: path.to_path_buf(),
            message: error.to_string().trim_end().to_string(),
        })
}

/// A TOML string, integer or float as the text a flag takes.
fn scalar(value: &toml::Value) -> Result<String, String> {
    match value {
        toml::Value::String(text) => Ok(text.clone()),
        toml::Value::Integer(n) => Ok(n.to_string()),
        toml::Value::Float(x) => Ok(x.to_string()),
        other => Err(format!(
            "expected a string or a number, not {}",
            other.type_str()
        )),
    }
}

/// Run the flag's parser on each value, as `--KEY=VALUE` alone on a command
/// line would; only errors about the value itself count (a flag that
/// requires another is checked once everything is put together).
fn check_values(command: &Command, key: &str, values: &[String]) -> Result<(), String> {
    let mut line: Vec<OsString> = vec![command.get_name().into()];
    line.extend(values.iter().map(|value| format!("--{key}={value}").into()));
    match command.clone().try_get_matches_from(line) {
        Err(error)
            if matches!(
                error.kind(),
                ErrorKind::InvalidValue | ErrorKind::ValueValidation | ErrorKind::InvalidUtf8
            ) && names_flag(&error, key) =>
        {
            // clap's message names the flag; the caller names the key and file.
            let text = error.to_string();
            let first = text.lines().next().unwrap_or_default();
            Err(first.trim_start_matches("error: ").to_string())
        }
        _ => Ok(()),
    }
}

/// Whether clap's error is about `--key` (and not, say, about a bad
/// environment variable of another flag).
fn names_flag(error: &clap::Error, key: &str) -> bool {
    match error.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(flag)) => {
            flag == &format!("--{key}") || flag.starts_with(&format!("--{key} "))
        }
        _ => true,
    }
}
