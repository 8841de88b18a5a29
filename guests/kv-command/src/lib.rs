//! The text grammar of the key-value guests (`kv` keeps its map in guest
//! memory, `kv-store` in the host's store; both parse commands here, so the
//! same script gives the same results on both).
//!
//! ```text
//! command  = put | delete | get | list | count    (UTF-8; leading whitespace
//! put      = "put" SP+ key [SP value]               and one trailing "\n" or
//!                                                   "\r\n" are ignored)
//! delete   = "delete" SP+ key
//! get      = "get" SP+ key
//! list     = "list" [SP+ prefix]
//! count    = "count"
//! ```
//!
//! `key` and `prefix` are single whitespace-free words. For `put`, `value` is
//! everything after the one space that ends the key, verbatim: it may contain
//! spaces (also leading and trailing ones) and may be empty (`put k` and
//! `put k ` both store `""`). The other commands tolerate extra spaces around
//! their words.

use std::fmt;

/// Longest key accepted, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;

/// Longest value accepted, in bytes (1 MiB).
pub const MAX_VALUE_BYTES: usize = 1024 * 1024;

const HELP: &str = "expected one of: `put <key> <value>`, `delete <key>`, `get <key>`, \
                    `list [prefix]`, `count`";

/// A parsed command, borrowing from the command text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command<'a> {
    /// Insert or overwrite `key`.
    Put { key: &'a str, value: &'a str },
    /// Remove `key` if present.
    Delete { key: &'a str },
    /// Read one value.
    Get { key: &'a str },
    /// The sorted keys starting with `prefix` (all keys if it is empty).
    List { prefix: &'a str },
    /// The number of keys.
    Count,
}

impl<'a> Command<'a> {
    /// Parse a command or query from raw bytes.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, String> {
        let text = std::str::from_utf8(bytes)
            .map_err(|error| format!("command is not UTF-8 text: {error}"))?;
        let text = strip_line_ending(text).trim_start();
        let (verb, rest) = text.split_once(' ').unwrap_or((text, ""));
        match verb {
            "put" => parse_put(rest),
            "delete" => Ok(Self::Delete {
                key: one_key(verb, rest)?,
            }),
            "get" => Ok(Self::Get {
                key: one_key(verb, rest)?,
            }),
            "list" => {
                let mut words = rest.split(' ').filter(|word| !word.is_empty());
                let prefix = words.next().unwrap_or_default();
                no_more(verb, words.next())?;
                ensure_word("prefix", prefix)?;
                Ok(Self::List { prefix })
            }
            "count" => {
                no_more(verb, rest.split(' ').find(|word| !word.is_empty()))?;
                Ok(Self::Count)
            }
            "" => Err(format!("empty command; {HELP}")),
            unknown => Err(format!("unknown command `{}`; {HELP}", truncate(unknown))),
        }
    }

    /// Whether the command leaves the store unchanged (and so may be a query).
    pub fn is_read_only(&self) -> bool {
        !matches!(self, Self::Put { .. } | Self::Delete { .. })
    }
}

impl fmt::Display for Command<'_> {
    /// The canonical text form; parsing it gives the same command back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Put { key, value } => write!(f, "put {key} {value}"),
            Self::Delete { key } => write!(f, "delete {key}"),
            Self::Get { key } => write!(f, "get {key}"),
            Self::List { prefix: "" } => f.write_str("list"),
            Self::List { prefix } => write!(f, "list {prefix}"),
            Self::Count => f.write_str("count"),
        }
    }
}

fn parse_put(rest: &str) -> Result<Command<'_>, String> {
    let rest = rest.trim_start_matches(' ');
    // Only the first space after the key separates; the value is verbatim.
    let (key, value) = rest.split_once(' ').unwrap_or((rest, ""));
    if key.is_empty() {
        return Err("`put` needs a key: `put <key> <value>`".to_owned());
    }
    validate_key(key)?;
    validate_value(value)?;
    Ok(Command::Put { key, value })
}

fn one_key<'a>(verb: &str, rest: &'a str) -> Result<&'a str, String> {
    let mut words = rest.split(' ').filter(|word| !word.is_empty());
    let key = words
        .next()
        .ok_or_else(|| format!("`{verb}` needs a key: `{verb} <key>`"))?;
    no_more(verb, words.next())?;
    validate_key(key)?;
    Ok(key)
}

fn no_more(verb: &str, extra: Option<&str>) -> Result<(), String> {
    match extra {
        None => Ok(()),
        Some(extra) => Err(format!(
            "unexpected `{}` after `{verb}`; {HELP}",
            truncate(extra)
        )),
    }
}

/// Check that `key` could be stored: non-empty, one word, not too long.
pub fn validate_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("keys must not be empty".to_owned());
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(format!(
            "key is {} bytes; the limit is {MAX_KEY_BYTES}",
            key.len()
        ));
    }
    ensure_word("key", key)
}

/// Check that `value` could be stored: not too long.
pub fn validate_value(value: &str) -> Result<(), String> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(format!(
            "value is {} bytes; the limit is {MAX_VALUE_BYTES}",
            value.len()
        ));
    }
    Ok(())
}

fn ensure_word(what: &str, word: &str) -> Result<(), String> {
    if word.contains(char::is_whitespace) {
        return Err(format!(
            "{what} `{}` contains whitespace; {what}s are single words",
            truncate(word).escape_debug()
        ));
    }
    Ok(())
}

/// Drop one trailing line ending, as sent by `echo` or a terminal.
fn strip_line_ending(text: &str) -> &str {
    text.strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(text)
}

/// Keep error messages short when they quote client input.
fn truncate(text: &str) -> &str {
    const MAX_QUOTED_CHARS: usize = 64;
    match text.char_indices().nth(MAX_QUOTED_CHARS) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Command<'_>, String> {
        Command::parse(text.as_bytes())
    }

    #[test]
    fn t10_put_value_is_verbatim() {
        assert_eq!(
            parse("put k v"),
            Ok(Command::Put {
                key: "k",
                value: "v"
            })
        );
        assert_eq!(
            parse("put greeting hello, wide  world "),
            Ok(Command::Put {
                key: "greeting",
                value: "hello, wide  world "
            })
        );
        assert_eq!(
            parse("put k  two leading"),
            Ok(Command::Put {
                key: "k",
                value: " two leading"
            })
        );
        assert_eq!(
            parse("put   k v"),
            Ok(Command::Put {
                key: "k",
                value: "v"
            })
        );
        assert_eq!(
            parse("put k "),
            Ok(Command::Put {
                key: "k",
                value: ""
            })
        );
        assert_eq!(
            parse("put k"),
            Ok(Command::Put {
                key: "k",
                value: ""
            })
        );
        assert_eq!(
            parse("put k v\n"),
            Ok(Command::Put {
                key: "k",
                value: "v"
            })
        );
        assert_eq!(
            parse("put k v\r\n"),
            Ok(Command::Put {
                key: "k",
                value: "v"
            })
        );
        assert_eq!(
            parse("put k a\nb"),
            Ok(Command::Put {
                key: "k",
                value: "a\nb"
            })
        );
        assert_eq!(
            parse("put ключ значение"),
            Ok(Command::Put {
                key: "ключ",
                value: "значение"
            })
        );
    }

    #[test]
    fn t10_other_commands() {
        assert_eq!(parse("delete k"), Ok(Command::Delete { key: "k" }));
        assert_eq!(parse("get  k  "), Ok(Command::Get { key: "k" }));
        assert_eq!(parse("list"), Ok(Command::List { prefix: "" }));
        assert_eq!(parse("list "), Ok(Command::List { prefix: "" }));
        assert_eq!(parse("list user/"), Ok(Command::List { prefix: "user/" }));
        assert_eq!(parse("count"), Ok(Command::Count));
        assert_eq!(parse("count\n"), Ok(Command::Count));
        assert_eq!(parse(" \tget k"), Ok(Command::Get { key: "k" }));
    }

    #[test]
    fn t10_rejects_with_help() {
        for bad in [
            "",
            "\n",
            "PUT k v",
            "insert k v",
            "put",
            "put ",
            "put k\tx v",
            "delete",
            "delete a b",
            "get",
            "get a b",
            "get a\tb",
            "list a b",
            "count 1",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should be rejected");
        }
        let unknown = parse("insert k v").expect_err("unknown verb");
        assert!(unknown.contains("put <key> <value>") && unknown.contains("count"));
        assert!(Command::parse(&[b'g', b'e', b't', b' ', 0xff]).is_err());
    }

    #[test]
    fn t10_limits() {
        let key = "k".repeat(MAX_KEY_BYTES);
        assert!(parse(&format!("put {key} v")).is_ok());
        assert!(parse(&format!("put {key}k v")).is_err());
        assert!(parse(&format!("get {key}k")).is_err());

        let value = "v".repeat(MAX_VALUE_BYTES);
        assert!(parse(&format!("put k {value}")).is_ok());
        let error = parse(&format!("put k {value}v")).expect_err("value too long");
        assert!(error.contains("limit"), "{error}");
    }

    #[test]
    fn t10_long_input_is_not_echoed_whole() {
        let error = parse(&"x".repeat(10_000)).expect_err("unknown verb");
        assert!(error.len() < 400, "{}", error.len());
    }

    #[test]
    fn t10_display_round_trips() {
        for text in [
            "put k v w ",
            "put k ",
            "delete k",
            "get k",
            "list",
            "list p",
            "count",
        ] {
            let command = parse(text).expect(text);
            assert_eq!(command.to_string(), text);
            assert_eq!(parse(&command.to_string()), Ok(command));
        }
    }

    #[test]
    fn t10_read_only() {
        assert!(!parse("put k v").expect("valid").is_read_only());
        assert!(!parse("delete k").expect("valid").is_read_only());
        assert!(parse("get k").expect("valid").is_read_only());
        assert!(parse("list").expect("valid").is_read_only());
        assert!(parse("count").expect("valid").is_read_only());
    }
}
