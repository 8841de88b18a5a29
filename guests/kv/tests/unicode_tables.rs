//! The Unicode tables the Python and JavaScript kv guests need to give
//! byte-for-byte the results of this guest, generated from Rust's own.
//!
//! The kv guest quotes a rejected key with `str::escape_debug`, and trims
//! with `char::is_whitespace`. Python's and SpiderMonkey's Unicode data are
//! other versions (and SpiderMonkey in a component has no Unicode property
//! escapes at all), so the other guests carry these tables instead:
//!
//! - `WHITESPACE`: the characters `char::is_whitespace` accepts;
//! - `ESCAPED`: the characters `escape_debug` writes as `\u{..}` anywhere;
//! - `GRAPHEME_EXTEND`: the characters it writes as `\u{..}` only as the
//!   first character of the string (grapheme extenders).
//!
//! This test fails when the committed tables differ from what this Rust
//! toolchain generates; `IROH_RAFT_UPDATE_TABLES=1 cargo test
//! --manifest-path guests/Cargo.toml -p kv --test unicode_tables` rewrites
//! them.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Inclusive code point ranges.
type Ranges = Vec<(u32, u32)>;

struct Tables {
    whitespace: Vec<u32>,
    escaped: Ranges,
    grapheme_extend: Ranges,
}

fn generate() -> Tables {
    let mut whitespace = Vec::new();
    let mut escaped = Vec::new();
    let mut grapheme_extend = Vec::new();
    for c in (0..=u32::from(char::MAX)).filter_map(char::from_u32) {
        let code = u32::from(c);
        if c.is_whitespace() {
            whitespace.push(code);
        }
        // `escape_debug` of a string escapes grapheme extenders only in
        // first position; after another character they print as themselves
        // unless they are not printable.
        let later = format!("a{c}").escape_debug().to_string();
        let later = &later[1..];
        let first = c.to_string().escape_debug().to_string();
        let unicode_escape = |text: &str| text.starts_with("\\u{");
        if unicode_escape(later) {
            escaped.push(code);
        } else if unicode_escape(&first) {
            grapheme_extend.push(code);
        }
    }
    Tables {
        whitespace,
        escaped: ranges(&escaped),
        grapheme_extend: ranges(&grapheme_extend),
    }
}

fn ranges(codes: &[u32]) -> Ranges {
    let mut out: Ranges = Vec::new();
    for &code in codes {
        match out.last_mut() {
            Some((_, end)) if *end + 1 == code => *end = code,
            _ => out.push((code, code)),
        }
    }
    out
}

/// Flattened `start, end` pairs, eight to a line.
fn flat(ranges: &Ranges, indent: &str) -> String {
    let mut out = String::new();
    for chunk in ranges.chunks(8) {
        out.push_str(indent);
        let pairs: Vec<String> = chunk
            .iter()
            .map(|(start, end)| format!("0x{start:x}, 0x{end:x},"))
            .collect();
        out.push_str(&pairs.join(" "));
        out.push('\n');
    }
    out
}

fn codes(codes: &[u32]) -> String {
    let items: Vec<String> = codes.iter().map(|c| format!("0x{c:x}")).collect();
    items.join(", ")
}

const HEADER: &str = "Generated from Rust's char tables by guests/kv/tests/unicode_tables.rs;\n\
     do not edit. Regenerate with IROH_RAFT_UPDATE_TABLES=1 cargo test \\\n  \
     --manifest-path guests/Cargo.toml -p kv --test unicode_tables";

fn python(tables: &Tables) -> String {
    let mut out = String::new();
    for line in HEADER.lines() {
        let _ = writeln!(out, "# {line}");
    }
    let _ = writeln!(
        out,
        "\"\"\"Unicode tables that make this guest quote and trim exactly as the Rust kv guest.\"\"\""
    );
    let _ = writeln!(out);
    let _ = writeln!(out, "# Code points `char::is_whitespace` accepts.");
    let _ = writeln!(out, "WHITESPACE = ({},)", codes(&tables.whitespace));
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "# Inclusive ranges (start, end, start, end, ...) that `escape_debug` writes as \\u{{..}}."
    );
    let _ = writeln!(out, "ESCAPED = (");
    out.push_str(&flat(&tables.escaped, "    "));
    let _ = writeln!(out, ")");
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "# Inclusive ranges it writes as \\u{{..}} only as a string's first character."
    );
    let _ = writeln!(out, "GRAPHEME_EXTEND = (");
    out.push_str(&flat(&tables.grapheme_extend, "    "));
    let _ = writeln!(out, ")");
    out
}

fn javascript(tables: &Tables) -> String {
    let mut out = String::new();
    for line in HEADER.lines() {
        let _ = writeln!(out, "// {line}");
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "/** Code points `char::is_whitespace` accepts. */");
    let _ = writeln!(
        out,
        "export const WHITESPACE = [{}];",
        codes(&tables.whitespace)
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "/** Inclusive ranges (start, end, start, end, ...) that `escape_debug` writes as \\u{{..}}. */"
    );
    let _ = writeln!(out, "export const ESCAPED = [");
    out.push_str(&flat(&tables.escaped, "  "));
    let _ = writeln!(out, "];");
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "/** Inclusive ranges it writes as \\u{{..}} only as a string's first character. */"
    );
    let _ = writeln!(out, "export const GRAPHEME_EXTEND = [");
    out.push_str(&flat(&tables.grapheme_extend, "  "));
    let _ = writeln!(out, "];");
    out
}

fn guests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("kv lives in guests/")
        .to_path_buf()
}

#[test]
fn committed_tables_match_this_toolchain() {
    let tables = generate();
    let files = [
        (
            guests_dir().join("kv-python/unicode_tables.py"),
            python(&tables),
        ),
        (
            guests_dir().join("kv-js/src/unicode_tables.js"),
            javascript(&tables),
        ),
    ];
    let update = std::env::var_os("IROH_RAFT_UPDATE_TABLES").is_some();
    for (path, expected) in files {
        if update {
            std::fs::write(&path, &expected).expect("write the table");
            continue;
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == expected,
            "{} is not what this Rust toolchain generates: run \
             IROH_RAFT_UPDATE_TABLES=1 cargo test --manifest-path guests/Cargo.toml -p kv \
             --test unicode_tables",
            path.display()
        );
    }
}

#[test]
fn tables_have_the_expected_shape() {
    let tables = generate();
    // The 25 White_Space code points.
    assert_eq!(tables.whitespace.len(), 25);
    assert!(tables.escaped.contains(&(0x1, 0x8)), "controls are escaped");
    // What the guests implement by hand besides the tables: the short
    // escapes, and quotes escaped in every position.
    assert_eq!(
        "\0\t\r\n\\'\"".escape_debug().to_string(),
        r#"\0\t\r\n\\\'\""#
    );
    assert!(
        tables
            .grapheme_extend
            .iter()
            .any(|&(start, end)| start <= 0x301 && 0x301 <= end),
        "a combining acute accent extends graphemes"
    );
    // A space is printable; a no-break space is not.
    let escaped = |code: u32| tables.escaped.iter().any(|&(s, e)| s <= code && code <= e);
    assert!(!escaped(0x20) && escaped(0xa0));
}
