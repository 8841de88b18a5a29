//! The scripted sequence of calls the checker runs against a guest.
//!
//! A script is text, one step per line:
//!
//! ```text
//! # comments and blank lines are skipped
//! apply put greeting hello world      <- apply the rest of the line, verbatim
//! query get greeting                  <- query it
//! apply-base64 //79AA==               <- apply these bytes (standard base64)
//! query-base64 Z2V0IGE=
//! ```
//!
//! Every command is applied as a committed entry would be: with an index,
//! a term and a leader timestamp that follow from its position in the script,
//! so two runs of the same script feed the guest exactly the same inputs.

use crate::limits::{MAX_SCRIPT_BYTES, MAX_SCRIPT_COMMAND_BYTES, MAX_SCRIPT_STEPS};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

/// Longest command, or unknown verb, quoted in a report line or an error.
const MAX_QUOTED_CHARS: usize = 60;

/// One call of a script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Apply a command as a committed entry.
    Apply(Vec<u8>),
    /// Run a read-only query.
    Query(Vec<u8>),
}

impl Step {
    /// The command or request bytes.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Step::Apply(bytes) | Step::Query(bytes) => bytes,
        }
    }

    /// `apply put a 1` or `query get a` (non-text bytes as base64).
    pub fn describe(&self) -> String {
        let verb = match self {
            Step::Apply(_) => "apply",
            Step::Query(_) => "query",
        };
        describe_bytes(verb, self.bytes())
    }
}

/// `verb text` for short text, `verb-base64 ...` otherwise, cut to a
/// readable length.
pub(crate) fn describe_bytes(verb: &str, bytes: &[u8]) -> String {
    let (verb, text) = match std::str::from_utf8(bytes) {
        Ok(text) if !text.chars().any(char::is_control) => (verb.to_string(), text.to_string()),
        _ => (format!("{verb}-base64"), BASE64.encode(bytes)),
    };
    let mut quoted: String = text.chars().take(MAX_QUOTED_CHARS).collect();
    if quoted.len() < text.len() {
        quoted.push_str(&format!("... ({} bytes)", bytes.len()));
    }
    format!("{verb} {quoted}")
}

/// Why a script was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScriptError {
    #[error(
        "line {line}: expected `apply`, `query`, `apply-base64` or `query-base64`, got `{got}`"
    )]
    UnknownVerb { line: usize, got: String },
    #[error("line {line}: invalid base64: {reason}")]
    Base64 { line: usize, reason: String },
    #[error("line {line}: empty command (a node never applies an empty command)")]
    Empty { line: usize },
    #[error("line {line}: the command is {len} bytes, more than the limit of {limit}")]
    TooLarge {
        line: usize,
        len: usize,
        limit: usize,
    },
    #[error("more than {limit} steps")]
    TooManySteps { limit: usize },
    #[error("the script has no steps")]
    NoSteps,
    #[error("cannot read the script {path}: {reason}")]
    Read { path: String, reason: String },
}

/// Read and parse a script file of at most [`MAX_SCRIPT_BYTES`].
pub fn read_file(path: &std::path::Path) -> Result<Vec<Step>, ScriptError> {
    let read_error = |reason: String| ScriptError::Read {
        path: path.display().to_string(),
        reason,
    };
    let size = std::fs::metadata(path)
        .map_err(|e| read_error(e.to_string()))?
        .len();
    if size > MAX_SCRIPT_BYTES {
        return Err(read_error(format!(
            "{size} bytes, more than the limit of {MAX_SCRIPT_BYTES}"
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|e| read_error(e.to_string()))?;
    parse(&text)
}

/// Parse a script (see the module documentation for the format).
pub fn parse(text: &str) -> Result<Vec<Step>, ScriptError> {
    let mut steps = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line_no = number + 1;
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let (verb, rest) = line.split_once(' ').unwrap_or((line, ""));
        let decode = |rest: &str| {
            BASE64
                .decode(rest.trim())
                .map_err(|error| ScriptError::Base64 {
                    line: line_no,
                    reason: error.to_string(),
                })
        };
        let step = match verb {
            "apply" => Step::Apply(rest.as_bytes().to_vec()),
            "query" => Step::Query(rest.as_bytes().to_vec()),
            "apply-base64" => Step::Apply(decode(rest)?),
            "query-base64" => Step::Query(decode(rest)?),
            other => {
                return Err(ScriptError::UnknownVerb {
                    line: line_no,
                    got: other.chars().take(MAX_QUOTED_CHARS).collect(),
                });
            }
        };
        let len = step.bytes().len();
        if len == 0 {
            return Err(ScriptError::Empty { line: line_no });
        }
        if len > MAX_SCRIPT_COMMAND_BYTES {
            return Err(ScriptError::TooLarge {
                line: line_no,
                len,
                limit: MAX_SCRIPT_COMMAND_BYTES,
            });
        }
        if steps.len() == MAX_SCRIPT_STEPS {
            return Err(ScriptError::TooManySteps {
                limit: MAX_SCRIPT_STEPS,
            });
        }
        steps.push(step);
    }
    if steps.is_empty() {
        return Err(ScriptError::NoSteps);
    }
    Ok(steps)
}

/// The script used when none is given. It speaks the grammars of the guests
/// in `guests/` (the key-value store and the counter, whose commands the
/// hostile guests share) and also sends what no guest should choke on:
/// unknown verbs, invalid UTF-8, a query that tries to write. The hostile
/// guests' `trap`, `loop` and `grow` are in it, so the checker shows how
/// each of them fails.
pub const DEFAULT_SCRIPT: &str = "\
# key-value store
apply put greeting hello world
apply put user/1 alice
apply put user/2 bob
query get greeting
apply get user/1
apply delete user/2
apply delete user/2
query list user/
apply list
query count
apply get missing
apply put ключ значение
apply put spaced  two  spaces 
query put x y
# counter
apply add 5
apply sub 2
query get
apply set 40
apply add 9223372036854775807
apply reset
apply add 1
# what no guest should choke on
apply frobnicate
apply-base64 //79AA==
query-base64 //79AA==
# the hostile guests' commands
apply print hello from the script
apply trap
apply loop
apply grow
apply add 2
query list
";

/// [`DEFAULT_SCRIPT`], parsed.
pub fn default_script() -> Vec<Step> {
    parse(DEFAULT_SCRIPT).expect("the built-in script is valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        let steps =
            parse("# c\n\napply put a 1\nquery get a\napply-base64 AAE=\nquery-base64 Yg==\n")
                .expect("valid");
        assert_eq!(
            steps,
            vec![
                Step::Apply(b"put a 1".to_vec()),
                Step::Query(b"get a".to_vec()),
                Step::Apply(vec![0, 1]),
                Step::Query(b"b".to_vec()),
            ]
        );
    }

    #[test]
    fn keeps_the_rest_of_the_line_verbatim() {
        let steps = parse("apply put k  two  spaces ").expect("valid");
        assert_eq!(steps, vec![Step::Apply(b"put k  two  spaces ".to_vec())]);
    }

    #[test]
    fn refuses_bad_scripts() {
        assert_eq!(
            parse("propose x"),
            Err(ScriptError::UnknownVerb {
                line: 1,
                got: "propose".into()
            })
        );
        assert_eq!(parse("apply"), Err(ScriptError::Empty { line: 1 }));
        assert!(matches!(
            parse("apply-base64 !!"),
            Err(ScriptError::Base64 { line: 1, .. })
        ));
        assert_eq!(parse("# nothing\n"), Err(ScriptError::NoSteps));
        let long = format!("apply {}", "x".repeat(MAX_SCRIPT_COMMAND_BYTES + 1));
        assert!(matches!(parse(&long), Err(ScriptError::TooLarge { .. })));
        let many = "apply a\n".repeat(MAX_SCRIPT_STEPS + 1);
        assert_eq!(
            parse(&many),
            Err(ScriptError::TooManySteps {
                limit: MAX_SCRIPT_STEPS
            })
        );
    }

    #[test]
    fn the_default_script_parses() {
        assert!(default_script().len() > 20);
    }

    #[test]
    fn the_command_limit_is_the_nodes() {
        assert_eq!(MAX_SCRIPT_COMMAND_BYTES, crate::limits::MAX_COMMAND_BYTES);
    }

    #[test]
    fn descriptions_are_short_and_printable() {
        assert_eq!(Step::Apply(b"put a 1".to_vec()).describe(), "apply put a 1");
        assert_eq!(Step::Query(vec![0xff]).describe(), "query-base64 /w==");
        let long = Step::Apply(vec![b'x'; 1000]).describe();
        assert!(long.len() < 100 && long.ends_with("(1000 bytes)"), "{long}");
    }
}
