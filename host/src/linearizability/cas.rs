//! The model of the `kv-store` guest's revisions and compare-and-swap
//! (`guests/kv-store-logic`): `put`, `delete`, `get`, `get KEY meta` and
//! `cas KEY REVISION VALUE`.
//!
//! A key's `mod_revision` is the log index of the entry that last wrote it,
//! which no sequential specification can predict. What it can rely on:
//! every write has its own index, and later writes (in the linearization)
//! have larger ones. So [`CasModel`] learns each write's revision from the
//! history itself: every `get KEY meta` answer pairs a value with its
//! `mod_revision`, and with **unique values per write** (the workload's
//! job: `c<client>-<seq>`) that pairing is a fact about the run. The model
//! then knows, for any value, the revision of the write that stored it (or
//! that no answer showed it), and checks:
//!
//! - a `cas` succeeds exactly when the key's current value is the one
//!   observed at the expected revision (0: when the key is absent), and a
//!   failed one names the current value's revision (0 when absent; one no
//!   answer showed when the current value's revision was never observed);
//! - `version` counts the writes since the key was created;
//! - revisions grow along the order of the writes to a key (a write whose
//!   observed revision is not above the last one cannot come after it);
//! - values, deletes and not-found answers as in [`KvModel`](super::KvModel).
//!
//! Preconditions (checked by [`CasModel::new`]): every value is written
//! once, no two answers pair a value or a revision differently, and a
//! `cas` expects 0 or a revision some `get KEY meta` answer reported.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::history::{History, Outcome, Reply};
use super::model::Model;

/// The `kv-store` guest's revisions and `cas` as a [`Model`] (see the
/// module docs). Partitioned by key.
#[derive(Debug, Clone)]
pub struct CasModel {
    revisions: Arc<Revisions>,
}

/// What the history says about each write's revision.
#[derive(Debug, Default)]
struct Revisions {
    by_value: HashMap<(String, String), u64>,
    by_revision: HashMap<(String, u64), String>,
}

/// A parsed command or query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CasInput {
    /// `put KEY VALUE`: `OK`.
    Put { key: String, value: String },
    /// `delete KEY`: `1` or `0`.
    Delete { key: String },
    /// `get KEY`: the value or `key not found: KEY`.
    Get { key: String },
    /// `get KEY meta`: the value with its revisions and version.
    GetMeta { key: String },
    /// `cas KEY EXPECTED VALUE`: `OK` or `cas failed: KEY is at revision N`.
    Cas {
        key: String,
        expected: u64,
        value: String,
    },
}

impl CasInput {
    fn key(&self) -> &str {
        match self {
            CasInput::Put { key, .. }
            | CasInput::Delete { key }
            | CasInput::Get { key }
            | CasInput::GetMeta { key }
            | CasInput::Cas { key, .. } => key,
        }
    }
}

/// Which write a failed `cas` says the key is at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CasAt {
    /// Revision 0: the key is absent.
    Absent,
    /// The write that stored this value (its revision was observed).
    Value(String),
    /// A write whose revision no `get KEY meta` answer showed.
    Unobserved,
}

/// A parsed answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CasOutput {
    /// `OK`, `1`/`0`, or a value.
    Text(String),
    /// `key not found: KEY`.
    NotFound,
    /// `get KEY meta` of a present key (its revision is checked by
    /// [`CasModel::new`]'s learning).
    Meta { value: String, version: u64 },
    /// `cas failed: KEY is at revision N`.
    CasFailed(CasAt),
    /// What the model answers for a write that cannot come here: its
    /// revision is not above the key's last one. No recorded answer equals
    /// it.
    Impossible,
    /// Any other error; the model never produces it.
    Error(String),
}

/// One key's state.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CasKey {
    /// The value, if present.
    value: Option<String>,
    /// Writes since it was created.
    version: u64,
    /// The largest observed revision among the writes applied so far.
    last_revision: u64,
}

/// The JSON of `get KEY meta` (only the fields the model checks).
#[derive(serde::Deserialize)]
struct MetaAnswer {
    value: String,
    mod_revision: u64,
    version: u64,
}

fn parse_meta(text: &str) -> Option<MetaAnswer> {
    serde_json::from_str(text).ok()
}

impl CasModel {
    /// Learn the revision of every write from the answers in `history`;
    /// an error if the history breaks the preconditions (see the module
    /// docs), which is itself a violation or a workload that cannot be
    /// checked.
    pub fn new(history: &History) -> Result<Self, String> {
        let mut revisions = Revisions::default();
        let inputs: Vec<CasInput> = history
            .ops
            .iter()
            .map(|op| parse_input(&op.input))
            .collect::<Result<_, _>>()?;
        let mut written: HashMap<(&str, &str), usize> = HashMap::new();
        for input in &inputs {
            if let CasInput::Put { key, value } | CasInput::Cas { key, value, .. } = input {
                *written.entry((key, value)).or_default() += 1;
            }
        }
        if let Some(((key, value), _)) = written.iter().find(|(_, n)| **n > 1) {
            return Err(format!(
                "the value {value:?} is written to {key:?} more than once: values must be unique per write"
            ));
        }
        for (op, input) in history.ops.iter().zip(&inputs) {
            let (
                CasInput::GetMeta { key },
                Outcome::Ok {
                    output: Ok(text), ..
                },
            ) = (input, &op.outcome)
            else {
                continue;
            };
            let answer = parse_meta(text)
                .ok_or_else(|| format!("op {}: not a meta answer: {text:?}", op.id.0))?;
            let (value, revision) = (answer.value, answer.mod_revision);
            match revisions.by_value.get(&(key.clone(), value.clone())) {
                Some(&known) if known != revision => {
                    return Err(format!(
                        "{key:?}: the value {value:?} is reported at revision {known} and at {revision}"
                    ));
                }
                _ => {}
            }
            match revisions.by_revision.get(&(key.clone(), revision)) {
                Some(known) if *known != value => {
                    return Err(format!(
                        "{key:?}: revision {revision} is reported with the value {known:?} and with {value:?}"
                    ));
                }
                _ => {}
            }
            revisions
                .by_value
                .insert((key.clone(), value.clone()), revision);
            revisions.by_revision.insert((key.clone(), revision), value);
        }
        for input in &inputs {
            if let CasInput::Cas { key, expected, .. } = input
                && *expected != 0
                && !revisions
                    .by_revision
                    .contains_key(&(key.clone(), *expected))
            {
                return Err(format!(
                    "a cas of {key:?} expects revision {expected}, which no `get {key} meta` answer reported"
                ));
            }
        }
        Ok(CasModel {
            revisions: Arc::new(revisions),
        })
    }

    fn revision_of(&self, key: &str, value: &str) -> Option<u64> {
        self.revisions
            .by_value
            .get(&(key.to_owned(), value.to_owned()))
            .copied()
    }

    fn value_at(&self, key: &str, revision: u64) -> Option<&String> {
        self.revisions.by_revision.get(&(key.to_owned(), revision))
    }

    /// The key's state after writing `value`, or `None` if that write's
    /// observed revision cannot follow the key's last one.
    fn write(&self, state: &CasKey, key: &str, value: &str) -> Option<CasKey> {
        let revision = self.revision_of(key, value);
        if revision.is_some_and(|r| r <= state.last_revision) {
            return None;
        }
        Some(CasKey {
            value: Some(value.to_owned()),
            version: if state.value.is_some() {
                state.version + 1
            } else {
                1
            },
            last_revision: revision.unwrap_or(state.last_revision),
        })
    }
}

fn parse_input(text: &str) -> Result<CasInput, String> {
    let text = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(text)
        .trim_start();
    let (verb, rest) = text.split_once(' ').unwrap_or((text, ""));
    let words: Vec<&str> = rest.split(' ').filter(|w| !w.is_empty()).collect();
    let valid = |key: &str| !key.is_empty() && !key.contains(char::is_whitespace);
    let bad = || format!("not a command the cas model knows: {text:?}");
    match verb {
        "put" | "cas" => {
            let rest = rest.trim_start_matches(' ');
            let (key, rest) = rest.split_once(' ').unwrap_or((rest, ""));
            if !valid(key) {
                return Err(bad());
            }
            if verb == "put" {
                return Ok(CasInput::Put {
                    key: key.to_owned(),
                    value: rest.to_owned(),
                });
            }
            let rest = rest.trim_start_matches(' ');
            let (expected, value) = rest.split_once(' ').unwrap_or((rest, ""));
            Ok(CasInput::Cas {
                key: key.to_owned(),
                expected: expected.parse().map_err(|_| bad())?,
                value: value.to_owned(),
            })
        }
        "delete" | "get" => match words.as_slice() {
            [key] if valid(key) && verb == "delete" => Ok(CasInput::Delete {
                key: (*key).to_owned(),
            }),
            [key] if valid(key) => Ok(CasInput::Get {
                key: (*key).to_owned(),
            }),
            [key, "meta"] if valid(key) && verb == "get" => Ok(CasInput::GetMeta {
                key: (*key).to_owned(),
            }),
            _ => Err(bad()),
        },
        _ => Err(bad()),
    }
}

impl Model for CasModel {
    /// Key to its state; within one key's partition at most that key.
    type State = BTreeMap<String, CasKey>;
    type Input = CasInput;
    type Output = CasOutput;

    fn init(&self) -> Self::State {
        BTreeMap::new()
    }

    fn parse_input(&self, text: &str) -> Result<CasInput, String> {
        parse_input(text)
    }

    fn parse_output(&self, input: &CasInput, reply: &Reply) -> Result<CasOutput, String> {
        let key = input.key();
        Ok(match (input, reply) {
            (CasInput::GetMeta { .. }, Ok(text)) => match parse_meta(text) {
                Some(meta) => CasOutput::Meta {
                    value: meta.value,
                    version: meta.version,
                },
                None => CasOutput::Error(text.clone()),
            },
            (_, Ok(text)) => CasOutput::Text(text.clone()),
            (CasInput::Get { .. } | CasInput::GetMeta { .. }, Err(message))
                if message.strip_prefix("key not found: ") == Some(key) =>
            {
                CasOutput::NotFound
            }
            (CasInput::Cas { .. }, Err(message)) => {
                let revision = message
                    .strip_prefix("cas failed: ")
                    .and_then(|rest| rest.strip_prefix(key))
                    .and_then(|rest| rest.strip_prefix(" is at revision "))
                    .and_then(|n| n.parse::<u64>().ok());
                match revision {
                    Some(0) => CasOutput::CasFailed(CasAt::Absent),
                    Some(n) => CasOutput::CasFailed(match self.value_at(key, n) {
                        Some(value) => CasAt::Value(value.clone()),
                        None => CasAt::Unobserved,
                    }),
                    None => CasOutput::Error(message.clone()),
                }
            }
            (_, Err(message)) => CasOutput::Error(message.clone()),
        })
    }

    fn step(&self, state: &Self::State, input: &CasInput) -> (Self::State, CasOutput) {
        let key = input.key();
        let current = state.get(key).cloned().unwrap_or(CasKey {
            value: None,
            version: 0,
            last_revision: 0,
        });
        let with = |next: CasKey| {
            let mut state = state.clone();
            state.insert(key.to_owned(), next);
            state
        };
        match input {
            CasInput::Put { value, .. } => match self.write(&current, key, value) {
                Some(next) => (with(next), CasOutput::Text("OK".to_owned())),
                None => (state.clone(), CasOutput::Impossible),
            },
            CasInput::Cas {
                expected, value, ..
            } => {
                let matches = match (&current.value, expected) {
                    (None, 0) => true,
                    (Some(now), expected @ 1..) => self.value_at(key, *expected) == Some(now),
                    _ => false,
                };
                if !matches {
                    let at = match &current.value {
                        None => CasAt::Absent,
                        Some(now) if self.revision_of(key, now).is_some() => {
                            CasAt::Value(now.clone())
                        }
                        Some(_) => CasAt::Unobserved,
                    };
                    return (state.clone(), CasOutput::CasFailed(at));
                }
                match self.write(&current, key, value) {
                    Some(next) => (with(next), CasOutput::Text("OK".to_owned())),
                    None => (state.clone(), CasOutput::Impossible),
                }
            }
            CasInput::Delete { .. } => {
                let existed = current.value.is_some();
                let next = CasKey {
                    value: None,
                    version: 0,
                    last_revision: current.last_revision,
                };
                (
                    with(next),
                    CasOutput::Text(if existed { "1" } else { "0" }.to_owned()),
                )
            }
            CasInput::Get { .. } => (
                state.clone(),
                match current.value {
                    Some(value) => CasOutput::Text(value),
                    None => CasOutput::NotFound,
                },
            ),
            CasInput::GetMeta { .. } => (
                state.clone(),
                match current.value {
                    Some(value) => CasOutput::Meta {
                        value,
                        version: current.version,
                    },
                    None => CasOutput::NotFound,
                },
            ),
        }
    }

    fn partition_key(&self, input: &CasInput) -> Option<String> {
        Some(input.key().to_owned())
    }

    fn is_read_only(&self, input: &CasInput) -> bool {
        matches!(input, CasInput::Get { .. } | CasInput::GetMeta { .. })
    }

    fn describe_output(&self, output: &CasOutput) -> String {
        match output {
            CasOutput::Text(text) => format!("{text:?}"),
            CasOutput::NotFound => "not found".to_owned(),
            CasOutput::Meta { value, version } => format!("{value:?} at version {version}"),
            CasOutput::CasFailed(CasAt::Absent) => "cas failed: absent".to_owned(),
            CasOutput::CasFailed(CasAt::Value(value)) => {
                format!("cas failed: at the write of {value:?}")
            }
            CasOutput::CasFailed(CasAt::Unobserved) => {
                "cas failed: at a write no answer showed".to_owned()
            }
            CasOutput::Impossible => "impossible here (revisions go back)".to_owned(),
            CasOutput::Error(message) => format!("error {message:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linearizability::{ClientId, Recorder, check};

    fn meta(value: &str, revision: u64, version: u64) -> Reply {
        Ok(format!(
            r#"{{"key":"k","value":"{value}","create_revision":1,"mod_revision":{revision},"version":{version},"lease":0}}"#
        ))
    }

    /// Two clients read revision 5, both cas on it; the recorder gives the
    /// events in the order listed.
    fn race(second_answer: Reply) -> History {
        let recorder = Recorder::new();
        let (a, b) = (ClientId(1), ClientId(2));
        let put = recorder.invoke(a, "put k v1");
        recorder.complete(put, Ok("OK".to_owned()));
        let read = recorder.invoke(a, "get k meta");
        recorder.complete(read, meta("v1", 5, 1));
        let cas_a = recorder.invoke(a, "cas k 5 from-a");
        let cas_b = recorder.invoke(b, "cas k 5 from-b");
        recorder.complete(cas_a, Ok("OK".to_owned()));
        recorder.complete(cas_b, second_answer);
        let read = recorder.invoke(a, "get k meta");
        recorder.complete(read, meta("from-a", 9, 2));
        recorder.history()
    }

    #[test]
    fn t10_one_winner_is_linearizable_two_are_not() {
        let history = race(Err("cas failed: k is at revision 9".to_owned()));
        let model = CasModel::new(&history).expect("well formed");
        let report = check(&model, &history).expect("checkable");
        assert!(report.verdict.is_linearizable(), "{report}");

        // Both win the same revision: no order explains it.
        let history = race(Ok("OK".to_owned()));
        let model = CasModel::new(&history).expect("well formed");
        let report = check(&model, &history).expect("checkable");
        assert!(report.verdict.is_violation(), "{report}");

        // The loser names a revision no write of this value had.
        let history = race(Err("cas failed: k is at revision 5".to_owned()));
        let model = CasModel::new(&history).expect("well formed");
        assert!(
            check(&model, &history)
                .expect("checkable")
                .verdict
                .is_violation()
        );
    }

    #[test]
    fn t10_versions_and_revision_order_are_checked() {
        let recorder = Recorder::new();
        let c = ClientId(1);
        for (input, reply) in [
            ("put k a", Ok("OK".to_owned())),
            ("get k meta", meta("a", 7, 1)),
            ("put k b", Ok("OK".to_owned())),
            // Revision 6 < 7: b cannot have been written after a.
            ("get k meta", meta("b", 6, 2)),
        ] {
            let op = recorder.invoke(c, input);
            recorder.complete(op, reply);
        }
        let history = recorder.history();
        let model = CasModel::new(&history).expect("well formed");
        assert!(
            check(&model, &history)
                .expect("checkable")
                .verdict
                .is_violation()
        );

        let recorder = Recorder::new();
        for (input, reply) in [
            ("put k a", Ok("OK".to_owned())),
            ("put k b", Ok("OK".to_owned())),
            ("get k meta", meta("b", 8, 1)),
        ] {
            let op = recorder.invoke(c, input);
            recorder.complete(op, reply);
        }
        let history = recorder.history();
        let model = CasModel::new(&history).expect("well formed");
        assert!(
            check(&model, &history)
                .expect("checkable")
                .verdict
                .is_violation(),
            "version 1 after two writes"
        );
    }

    #[test]
    fn t10_preconditions() {
        let recorder = Recorder::new();
        let op = recorder.invoke(ClientId(1), "cas k 3 v");
        recorder.timeout(op);
        assert!(
            CasModel::new(&recorder.history()).is_err(),
            "revision 3 never observed"
        );
        let recorder = Recorder::new();
        for input in ["put k v", "put k v"] {
            let op = recorder.invoke(ClientId(1), input);
            recorder.complete(op, Ok("OK".to_owned()));
        }
        assert!(
            CasModel::new(&recorder.history()).is_err(),
            "a value written twice"
        );
        let recorder = Recorder::new();
        for reply in [meta("a", 3, 1), meta("a", 4, 1)] {
            let op = recorder.invoke(ClientId(1), "get k meta");
            recorder.complete(op, reply);
        }
        assert!(
            CasModel::new(&recorder.history()).is_err(),
            "one value, two revisions"
        );
    }
}
