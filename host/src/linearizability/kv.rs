//! The model of the `kv` guest (`guests/kv`): its text commands and answers.
//!
//! The grammar mirrors `guests/kv/src/command.rs` and the answers
//! `guests/kv/src/store.rs`; keep them in step. Not modelled: the key and
//! value size limits (a test has no reason to exceed them), so an oversized
//! `put` that the guest refuses would show up as a violation.

use std::collections::BTreeMap;
use std::ops::Bound;

use super::history::Reply;
use super::model::Model;

/// The `kv` guest as a [`Model`]. Partitioned by key unless the history
/// contains `list` or `count`, which read every key.
#[derive(Debug, Clone, Copy, Default)]
pub struct KvModel;

/// A parsed `kv` command or query (`get`, `list` and `count` may be either).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvInput {
    /// `put <key> <value>`: answers `OK`.
    Put {
        /// The key.
        key: String,
        /// The value, verbatim (may contain spaces, may be empty).
        value: String,
    },
    /// `delete <key>`: answers `1` if the key existed, else `0`.
    Delete {
        /// The key.
        key: String,
    },
    /// `get <key>`: the value, or the error `key not found: <key>`.
    Get {
        /// The key.
        key: String,
    },
    /// `list [prefix]`: matching keys, sorted, joined by `\n`.
    List {
        /// The prefix; empty for all keys.
        prefix: String,
    },
    /// `count`: the number of keys.
    Count,
}

/// A parsed `kv` answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvOutput {
    /// An `Ok` answer's text (`OK`, `1`/`0`, a value, a key list, a count).
    Text(String),
    /// `get` of a missing key (the guest's `key not found: <key>` error).
    NotFound,
    /// Any other error. The model never produces it, so a recorded one is
    /// always a violation: every command the model parses succeeds.
    Error(String),
}

impl Model for KvModel {
    /// Key to value. Within one key's partition it holds at most that key.
    type State = BTreeMap<String, String>;
    type Input = KvInput;
    type Output = KvOutput;

    fn init(&self) -> Self::State {
        BTreeMap::new()
    }

    fn parse_input(&self, text: &str) -> Result<KvInput, String> {
        // As the guest: one trailing line ending and leading whitespace are
        // ignored; the verb ends at the first space.
        let text = text
            .strip_suffix("\r\n")
            .or_else(|| text.strip_suffix('\n'))
            .unwrap_or(text)
            .trim_start();
        let (verb, rest) = text.split_once(' ').unwrap_or((text, ""));
        let mut words = rest.split(' ').filter(|word| !word.is_empty());
        let input = match verb {
            "put" => {
                // Only the first space after the key separates; the value is
                // verbatim.
                let rest = rest.trim_start_matches(' ');
                let (key, value) = rest.split_once(' ').unwrap_or((rest, ""));
                return match valid_key(key) {
                    true => Ok(KvInput::Put {
                        key: key.to_owned(),
                        value: value.to_owned(),
                    }),
                    false => Err(format!("`put` needs a one-word key: {text:?}")),
                };
            }
            "delete" | "get" => {
                let key = words.next().filter(|key| valid_key(key));
                let Some(key) = key else {
                    return Err(format!("`{verb}` needs a one-word key: {text:?}"));
                };
                let key = key.to_owned();
                if verb == "get" {
                    KvInput::Get { key }
                } else {
                    KvInput::Delete { key }
                }
            }
            "list" => KvInput::List {
                prefix: words.next().unwrap_or_default().to_owned(),
            },
            "count" => KvInput::Count,
            _ => return Err(format!("not a kv command: {text:?}")),
        };
        match words.next() {
            None => Ok(input),
            Some(extra) => Err(format!("unexpected `{extra}` in {text:?}")),
        }
    }

    fn parse_output(&self, input: &KvInput, reply: &Reply) -> Result<KvOutput, String> {
        Ok(match (input, reply) {
            (_, Ok(text)) => KvOutput::Text(text.clone()),
            (KvInput::Get { key }, Err(message))
                if message.strip_prefix("key not found: ") == Some(key) =>
            {
                KvOutput::NotFound
            }
            (_, Err(message)) => KvOutput::Error(message.clone()),
        })
    }

    fn step(&self, state: &Self::State, input: &KvInput) -> (Self::State, KvOutput) {
        match input {
            KvInput::Put { key, value } => {
                let mut next = state.clone();
                next.insert(key.clone(), value.clone());
                (next, KvOutput::Text("OK".to_owned()))
            }
            KvInput::Delete { key } => {
                let mut next = state.clone();
                let existed = next.remove(key).is_some();
                (
                    next,
                    KvOutput::Text(if existed { "1" } else { "0" }.to_owned()),
                )
            }
            KvInput::Get { key } => {
                let output = match state.get(key) {
                    Some(value) => KvOutput::Text(value.clone()),
                    None => KvOutput::NotFound,
                };
                (state.clone(), output)
            }
            KvInput::List { prefix } => {
                let keys: Vec<&str> = state
                    .range::<str, _>((Bound::Included(prefix.as_str()), Bound::Unbounded))
                    .map(|(key, _)| key.as_str())
                    .take_while(|key| key.starts_with(prefix.as_str()))
                    .collect();
                (state.clone(), KvOutput::Text(keys.join("\n")))
            }
            KvInput::Count => (state.clone(), KvOutput::Text(state.len().to_string())),
        }
    }

    fn partition_key(&self, input: &KvInput) -> Option<String> {
        match input {
            KvInput::Put { key, .. } | KvInput::Delete { key } | KvInput::Get { key } => {
                Some(key.clone())
            }
            KvInput::List { .. } | KvInput::Count => None,
        }
    }

    fn is_read_only(&self, input: &KvInput) -> bool {
        matches!(
            input,
            KvInput::Get { .. } | KvInput::List { .. } | KvInput::Count
        )
    }

    fn describe_output(&self, output: &KvOutput) -> String {
        match output {
            KvOutput::Text(text) => format!("{text:?}"),
            KvOutput::NotFound => "not found".to_owned(),
            KvOutput::Error(message) => format!("error {message:?}"),
        }
    }
}

/// A key the guest accepts: non-empty, one word.
fn valid_key(key: &str) -> bool {
    !key.is_empty() && !key.contains(char::is_whitespace)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(state: &mut BTreeMap<String, String>, text: &str) -> KvOutput {
        let input = KvModel.parse_input(text).expect("valid command");
        let (next, output) = KvModel.step(state, &input);
        *state = next;
        output
    }

    fn text(text: &str) -> KvOutput {
        KvOutput::Text(text.to_owned())
    }

    /// The same sequence as the guest's own `t10_put_get_delete`, with the
    /// answers it asserts there.
    #[test]
    fn t10_answers_match_the_guest() {
        let mut state = KvModel.init();
        assert_eq!(run(&mut state, "put a 1"), text("OK"));
        assert_eq!(run(&mut state, "put a one two"), text("OK"));
        assert_eq!(run(&mut state, "get a"), text("one two"));
        assert_eq!(run(&mut state, "delete a"), text("1"));
        assert_eq!(run(&mut state, "delete a"), text("0"));
        assert_eq!(run(&mut state, "get a"), KvOutput::NotFound);
        assert_eq!(run(&mut state, "put empty"), text("OK"));
        assert_eq!(run(&mut state, "get empty"), text(""));
        assert_eq!(run(&mut state, "put  b  spaced \n"), text("OK"));
        assert_eq!(run(&mut state, "get b"), text(" spaced "));
        assert_eq!(run(&mut state, "list"), text("b\nempty"));
        assert_eq!(run(&mut state, "list e"), text("empty"));
        assert_eq!(run(&mut state, "count"), text("2"));
    }

    #[test]
    fn t20_parsing() {
        let get = KvModel.parse_input("get a").expect("valid");
        assert_eq!(
            KvModel.parse_output(&get, &Err("key not found: a".to_owned())),
            Ok(KvOutput::NotFound)
        );
        assert_eq!(
            KvModel.parse_output(&get, &Err("key not found: b".to_owned())),
            Ok(KvOutput::Error("key not found: b".to_owned()))
        );
        assert_eq!(KvModel.partition_key(&get).as_deref(), Some("a"));
        assert!(KvModel.is_read_only(&get));
        let count = KvModel.parse_input("count").expect("valid");
        assert_eq!(KvModel.partition_key(&count), None);
        for bad in ["", "put", "get", "get a b", "frobnicate x", "count 2"] {
            assert!(KvModel.parse_input(bad).is_err(), "{bad:?}");
        }
    }
}
