//! A guest's command examples: the custom section `iroh-raft:examples`.
//!
//! A guest can tell people what to type without a change to the WIT worlds
//! (so every older guest still loads): a custom section named
//! [`EXAMPLES_SECTION`], in the component or in any core module nested in
//! it, holding UTF-8 lines:
//!
//! ```text
//! # comments and blank lines are skipped
//! propose put greeting hello      <- a command the guest accepts
//! query get greeting              <- a request it answers
//! ```
//!
//! The Rust SDKs declare it with `guest_examples!` (a `link_section`
//! static, which survives into the component's core module); any other
//! guest gets a top-level section appended by `raft-host guest describe`
//! ([`with_examples`]). The node reads it when it loads the component
//! ([`read`]), shows it in its status (`guest.examples`) and suggests the
//! commands in its start banner. The section is advice only: a malformed
//! or oversized one gives warnings, never a failed load.

/// The name of the custom section.
pub const EXAMPLES_SECTION: &str = "iroh-raft:examples";

/// Most bytes of examples read from one component (all its sections
/// together): they are a few hints for a banner, not a manual.
pub const MAX_EXAMPLES_BYTES: usize = 4 * 1024;

/// Most example lines kept.
pub const MAX_EXAMPLES: usize = 16;

/// The verbs an example line may start with (the CLI's subcommands).
const VERBS: [&str; 2] = ["propose", "query"];

/// What a component says about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GuestExamples {
    /// `propose CMD` or `query REQ` lines, in the order given.
    pub lines: Vec<String>,
    /// Why some of the section was ignored (for a log line or a report).
    pub warnings: Vec<String>,
}

/// Why examples could not be attached to a component.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ExamplesError {
    #[error("not a WebAssembly binary: {0}")]
    NotWasm(String),
    #[error("the examples are not usable: {0}")]
    Invalid(String),
}

/// The examples in `component` (every [`EXAMPLES_SECTION`], top level or
/// nested, in order).
pub fn read(component: &[u8]) -> GuestExamples {
    let mut data = Vec::new();
    let mut warnings = Vec::new();
    let mut oversized = false;
    for payload in wasmparser::Parser::new(0).parse_all(component) {
        let payload = match payload {
            Ok(payload) => payload,
            // The engine reports a broken component; here it only ends the
            // search.
            Err(_) => break,
        };
        if let wasmparser::Payload::CustomSection(section) = payload
            && section.name() == EXAMPLES_SECTION
        {
            if data.len() + section.data().len() > MAX_EXAMPLES_BYTES {
                oversized = true;
                continue;
            }
            data.extend_from_slice(section.data());
            if !data.ends_with(b"\n") {
                data.push(b'\n');
            }
        }
    }
    if oversized {
        warnings.push(format!(
            "the {EXAMPLES_SECTION} sections hold more than {MAX_EXAMPLES_BYTES} bytes; the rest is ignored"
        ));
    }
    let mut examples = parse(&data);
    warnings.append(&mut examples.warnings);
    examples.warnings = warnings;
    examples
}

/// Parse the text of an examples section (see the module documentation).
pub fn parse(data: &[u8]) -> GuestExamples {
    let mut examples = GuestExamples::default();
    let text = match std::str::from_utf8(data) {
        Ok(text) => text,
        Err(error) => {
            examples.warnings.push(format!(
                "the {EXAMPLES_SECTION} section is not UTF-8 ({error}); it is ignored"
            ));
            return examples;
        }
    };
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (verb, rest) = line.split_once(' ').unwrap_or((line, ""));
        let rest = rest.trim();
        if !VERBS.contains(&verb) || rest.is_empty() || rest.chars().any(char::is_control) {
            examples.warnings.push(format!(
                "{EXAMPLES_SECTION} line {}: expected `propose CMD` or `query REQ`; ignored",
                number + 1
            ));
            continue;
        }
        if examples.lines.len() == MAX_EXAMPLES {
            examples.warnings.push(format!(
                "more than {MAX_EXAMPLES} examples; the rest are ignored"
            ));
            break;
        }
        examples.lines.push(format!("{verb} {rest}"));
    }
    examples
}

/// `component` with its top-level [`EXAMPLES_SECTION`]s replaced by one
/// holding `text`, which must parse without warnings.
pub fn with_examples(component: &[u8], text: &str) -> Result<Vec<u8>, ExamplesError> {
    let parsed = parse(text.as_bytes());
    if let Some(warning) = parsed.warnings.first() {
        return Err(ExamplesError::Invalid(
            warning.trim_end_matches("; ignored").to_string(),
        ));
    }
    if parsed.lines.is_empty() {
        return Err(ExamplesError::Invalid(
            "no `propose` or `query` line".into(),
        ));
    }
    if text.len() > MAX_EXAMPLES_BYTES {
        return Err(ExamplesError::Invalid(format!(
            "{} bytes, more than the limit of {MAX_EXAMPLES_BYTES}",
            text.len()
        )));
    }
    let mut out = Vec::with_capacity(component.len() + text.len() + 32);
    let mut sections = top_level_sections(component)?;
    out.extend_from_slice(&component[..8]);
    for (id, range, name) in sections.drain(..) {
        if id == 0 && name.as_deref() == Some(EXAMPLES_SECTION) {
            continue;
        }
        out.extend_from_slice(&component[range]);
    }
    let mut body = Vec::new();
    leb128(&mut body, EXAMPLES_SECTION.len());
    body.extend_from_slice(EXAMPLES_SECTION.as_bytes());
    body.extend_from_slice(text.as_bytes());
    out.push(0);
    leb128(&mut out, body.len());
    out.extend_from_slice(&body);
    Ok(out)
}

/// One top-level section: its id, its bytes (header included) and, for a
/// custom section, its name.
type Section = (u8, std::ops::Range<usize>, Option<String>);

/// The top-level sections of a wasm binary, by the binary format's framing
/// (`id`, LEB128 size, payload).
fn top_level_sections(bytes: &[u8]) -> Result<Vec<Section>, ExamplesError> {
    let bad = |what: &str| ExamplesError::NotWasm(what.to_string());
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(bad("no wasm magic"));
    }
    let mut sections = Vec::new();
    let mut at = 8;
    while at < bytes.len() {
        let start = at;
        let id = bytes[at];
        at += 1;
        let (size, used) = read_leb128(&bytes[at..]).ok_or_else(|| bad("a bad section size"))?;
        at += used;
        let end = at
            .checked_add(size)
            .filter(|end| *end <= bytes.len())
            .ok_or_else(|| bad("a section runs past the end"))?;
        let name = if id == 0 {
            let (len, used) =
                read_leb128(&bytes[at..end]).ok_or_else(|| bad("a bad custom section name"))?;
            let name_start = at + used;
            let name = bytes
                .get(name_start..name_start.saturating_add(len))
                .filter(|_| name_start + len <= end)
                .ok_or_else(|| bad("a custom section name runs past its section"))?;
            Some(String::from_utf8_lossy(name).into_owned())
        } else {
            None
        };
        sections.push((id, start..end, name));
        at = end;
    }
    Ok(sections)
}

fn leb128(out: &mut Vec<u8>, mut value: usize) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// An unsigned LEB128 of at most 5 bytes (a u32, as the format says) and
/// the bytes it used.
fn read_leb128(bytes: &[u8]) -> Option<(usize, usize)> {
    let mut value = 0usize;
    for (i, byte) in bytes.iter().take(5).enumerate() {
        value |= usize::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The smallest component: magic and the component layer/version.
    const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\x00\x01\x00";

    #[test]
    fn parses_lines_and_skips_comments() {
        let examples = parse(b"# kv\n\npropose put a 1\n  query   get a  \n");
        assert_eq!(examples.lines, vec!["propose put a 1", "query get a"]);
        assert!(examples.warnings.is_empty());
    }

    #[test]
    fn bad_lines_warn_and_are_skipped() {
        let examples = parse(b"status\npropose\napply x\nquery get\n");
        assert_eq!(examples.lines, vec!["query get"]);
        assert_eq!(examples.warnings.len(), 3, "{:?}", examples.warnings);
        assert!(examples.warnings[0].contains("line 1"));
    }

    #[test]
    fn malformed_utf8_is_a_warning_not_an_error() {
        let examples = parse(b"propose \xff\xfe\n");
        assert!(examples.lines.is_empty());
        assert!(examples.warnings[0].contains("not UTF-8"));
    }

    #[test]
    fn too_many_lines_are_cut() {
        let text = "query get\n".repeat(MAX_EXAMPLES + 3);
        let examples = parse(text.as_bytes());
        assert_eq!(examples.lines.len(), MAX_EXAMPLES);
        assert_eq!(examples.warnings.len(), 1);
    }

    #[test]
    fn attached_examples_are_read_back_and_replaced() {
        let once = with_examples(EMPTY_COMPONENT, "propose add 5\n").expect("attach");
        assert_eq!(read(&once).lines, vec!["propose add 5"]);
        let twice = with_examples(&once, "query get\n").expect("replace");
        assert_eq!(read(&twice).lines, vec!["query get"]);
        assert!(with_examples(EMPTY_COMPONENT, "status\n").is_err());
        assert!(with_examples(b"nope", "query get").is_err());
    }

    #[test]
    fn an_oversized_section_is_ignored_with_a_warning() {
        let mut text = "query get\n".to_string();
        text.push_str(&"#".repeat(MAX_EXAMPLES_BYTES));
        let mut component = EMPTY_COMPONENT.to_vec();
        let mut body = Vec::new();
        leb128(&mut body, EXAMPLES_SECTION.len());
        body.extend_from_slice(EXAMPLES_SECTION.as_bytes());
        body.extend_from_slice(text.as_bytes());
        component.push(0);
        leb128(&mut component, body.len());
        component.extend_from_slice(&body);
        let examples = read(&component);
        assert!(examples.lines.is_empty());
        assert!(examples.warnings[0].contains("more than"), "{examples:?}");
    }

    #[test]
    fn no_section_means_no_examples() {
        assert_eq!(read(EMPTY_COMPONENT), GuestExamples::default());
        assert_eq!(read(b"garbage"), GuestExamples::default());
    }
}
