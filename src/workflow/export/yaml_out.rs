//! A small block-style YAML writer for the exports. serde-based writers
//! sort or lose key order and cannot write comments; these files are read
//! by people before they are submitted, so both matter. Scalars are quoted
//! whenever a YAML 1.1 or 1.2 reader (PyYAML, GitHub's, Kubernetes') could
//! take them for anything but the string written.

use std::fmt::Write as _;

/// A YAML value with its keys in the order they are to be written.
#[derive(Debug, Clone, PartialEq)]
pub enum Yaml {
    Bool(bool),
    Int(i64),
    Str(String),
    Seq(Vec<Yaml>),
    Map(Vec<(String, Yaml)>),
    /// A value with comment lines written before its key (or item).
    Commented(String, Box<Yaml>),
}

impl Yaml {
    pub fn str(s: impl Into<String>) -> Yaml {
        Yaml::Str(s.into())
    }

    pub fn map<K: Into<String>>(entries: impl IntoIterator<Item = (K, Yaml)>) -> Yaml {
        Yaml::Map(entries.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    pub fn strs<S: Into<String>>(items: impl IntoIterator<Item = S>) -> Yaml {
        Yaml::Seq(items.into_iter().map(|s| Yaml::Str(s.into())).collect())
    }

    pub fn commented(comment: impl Into<String>, value: Yaml) -> Yaml {
        Yaml::Commented(comment.into(), Box::new(value))
    }

    fn uncommented(&self) -> (Option<&str>, &Yaml) {
        match self {
            Yaml::Commented(c, v) => {
                let (inner, v) = v.uncommented();
                (Some(inner.unwrap_or(c)), v)
            }
            v => (None, v),
        }
    }
}

/// The document as block-style YAML, ending in a newline.
pub fn to_string(doc: &Yaml) -> String {
    let mut out = String::new();
    let (comment, value) = doc.uncommented();
    if let Some(c) = comment {
        write_comment(&mut out, c, 0);
    }
    match value {
        Yaml::Map(entries) if !entries.is_empty() => write_map(&mut out, entries, 0),
        Yaml::Seq(items) if !items.is_empty() => write_seq(&mut out, items, 0),
        other => {
            out.push_str(&inline(other, false).unwrap_or_default());
            out.push('\n');
        }
    }
    out
}

/// Longest line a scalar-only sequence is written on in flow style.
const FLOW_WIDTH: usize = 100;

fn write_comment(out: &mut String, comment: &str, indent: usize) {
    for line in comment.lines() {
        let line = line.trim_end();
        if line.is_empty() {
            let _ = writeln!(out, "{:indent$}#", "");
        } else {
            let _ = writeln!(out, "{:indent$}# {line}", "");
        }
    }
}

fn write_map(out: &mut String, entries: &[(String, Yaml)], indent: usize) {
    for (key, value) in entries {
        let (comment, value) = value.uncommented();
        if let Some(c) = comment {
            write_comment(out, c, indent);
        }
        let _ = write!(out, "{:indent$}{}:", "", scalar(key, false));
        write_after_key(out, value, indent);
    }
}

fn write_after_key(out: &mut String, value: &Yaml, indent: usize) {
    if let Some(text) = inline(value, false) {
        let _ = writeln!(out, " {text}");
        return;
    }
    if let Yaml::Seq(items) = value {
        if let Some(flow) = flow_seq(items) {
            if indent + flow.len() < FLOW_WIDTH {
                let _ = writeln!(out, " {flow}");
                return;
            }
        }
    }
    out.push('\n');
    match value {
        Yaml::Map(entries) => write_map(out, entries, indent + 2),
        Yaml::Seq(items) => write_seq(out, items, indent + 2),
        _ => {}
    }
}

fn write_seq(out: &mut String, items: &[Yaml], indent: usize) {
    for item in items {
        let (comment, item) = item.uncommented();
        if let Some(c) = comment {
            write_comment(out, c, indent);
        }
        if let Some(text) = inline(item, false) {
            let _ = writeln!(out, "{:indent$}- {text}", "");
            continue;
        }
        // A block item: written one level deeper, then its first line's
        // indentation becomes the dash.
        let mut block = String::new();
        match item {
            Yaml::Map(entries) => write_map(&mut block, entries, indent + 2),
            Yaml::Seq(items) => write_seq(&mut block, items, indent + 2),
            _ => {}
        }
        let _ = write!(out, "{:indent$}- {}", "", &block[indent + 2..]);
    }
}

/// A scalar or an empty collection on the key's line; `None` for a block.
fn inline(value: &Yaml, flow: bool) -> Option<String> {
    match value {
        Yaml::Bool(b) => Some(b.to_string()),
        Yaml::Int(i) => Some(i.to_string()),
        Yaml::Str(s) => Some(scalar(s, flow)),
        Yaml::Seq(items) if items.is_empty() => Some("[]".into()),
        Yaml::Map(entries) if entries.is_empty() => Some("{}".into()),
        Yaml::Commented(_, v) => inline(v, flow),
        _ => None,
    }
}

/// `[a, b]` when every item is a scalar.
fn flow_seq(items: &[Yaml]) -> Option<String> {
    let parts: Option<Vec<String>> = items
        .iter()
        .map(|i| match i {
            Yaml::Seq(_) | Yaml::Map(_) | Yaml::Commented(..) => None,
            other => inline(other, true),
        })
        .collect();
    parts.map(|p| format!("[{}]", p.join(", ")))
}

/// A string as a plain scalar when that reads back as the same string,
/// else double-quoted.
fn scalar(s: &str, flow: bool) -> String {
    if plain_ok(s, flow) {
        s.to_string()
    } else {
        quoted(s)
    }
}

fn plain_ok(s: &str, flow: bool) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    let second = s.chars().nth(1);
    if s.trim() != s || s.starts_with("---") || s.starts_with("...") || s.starts_with("<<") {
        return false;
    }
    // Indicators that start something else; `-`, `?` and `:` only when a
    // space (or nothing) follows.
    let indicator = match first {
        '-' | '?' | ':' => second.is_none_or(|c| c == ' '),
        ',' | '[' | ']' | '{' | '}' | '#' | '&' | '*' | '!' | '|' | '>' | '\'' | '"' | '%'
        | '@' | '`' | '.' => true,
        _ => false,
    };
    // Numbers in any YAML version's spelling (1_000, 0x1f, 1:30, .5, -1).
    let numeric = first.is_ascii_digit()
        || (matches!(first, '-' | '+') && second.is_some_and(|c| c.is_ascii_digit() || c == '.'));
    let reserved = matches!(
        s.to_ascii_lowercase().as_str(),
        "null" | "~" | "true" | "false" | "yes" | "no" | "on" | "off" | "y" | "n" | "="
    );
    let breaks = s.contains(": ")
        || s.contains(" #")
        || s.ends_with(':')
        || (flow && s.contains([',', '[', ']', '{', '}']))
        || s.chars()
            .any(|c| c.is_control() || !printable(c) || c == '\u{feff}');
    !(indicator || numeric || reserved || breaks)
}

/// YAML's `c-printable` (tab, line breaks and C1 controls other than NEL
/// excluded: those are escaped).
fn printable(c: char) -> bool {
    matches!(c, '\u{20}'..='\u{7e}' | '\u{85}' | '\u{a0}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}' | '\u{10000}'..)
}

/// Double-quoted: JSON's escapes are YAML's too; what JSON leaves raw but
/// YAML does not allow raw (DEL, C1 controls, BOM) is escaped as well.
fn quoted(s: &str) -> String {
    let json = serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if printable(c) && c != '\u{feff}' {
            out.push(c);
        } else if (c as u32) < 0x10000 {
            let _ = write!(out, "\\u{:04x}", c as u32);
        } else {
            let _ = write!(out, "\\U{:08x}", c as u32);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::yaml;

    fn roundtrip(s: &str) -> serde_json::Value {
        let doc = Yaml::map([
            ("k", Yaml::str(s)),
            ("l", Yaml::strs([s, "x"])),
            ("m", Yaml::Seq(vec![Yaml::map([("a", Yaml::str(s))])])),
        ]);
        let text = to_string(&doc);
        yaml::parse(&text)
            .unwrap_or_else(|e| panic!("{s:?}: {e:?}\n{text}"))
            .to_json()
    }

    #[test]
    fn every_string_reads_back_as_itself() {
        let hostile = [
            "",
            " lead",
            "trail ",
            "on",
            "Yes",
            "null",
            "~",
            "1",
            "-1",
            "1.5",
            ".5",
            ".inf",
            "0x1f",
            "1_000",
            "1:30",
            "2024-01-01",
            "-C",
            "--only",
            "- x",
            "a: b",
            "a #b",
            "a:",
            "#x",
            "*x",
            "&x",
            "!x",
            "%x",
            "@x",
            "`x",
            "'x'",
            "\"x\"",
            "[a]",
            "{a}",
            "a,b",
            "a[b]",
            "---",
            "...",
            "<<",
            "line\nbreak",
            "tab\there",
            "nul\u{0}",
            "del\u{7f}",
            "c1\u{86}",
            "bom\u{feff}",
            "emoji 🦀",
            "${{ secrets.HF_TOKEN }}",
            "nvidia.com/gpu",
            "qwen3.5-27b",
            "onboard -C \"$ONBOARD_WORKSPACE\" run m --only a",
        ];
        for s in hostile {
            let v = roundtrip(s);
            assert_eq!(v["k"], s, "{s:?}");
            assert_eq!(v["l"][0], s, "{s:?}");
            assert_eq!(v["m"][0]["a"], s, "{s:?}");
        }
    }

    #[test]
    fn writes_block_style_with_comments_in_key_order() {
        let doc = Yaml::commented(
            "Generated.",
            Yaml::map([
                ("z", Yaml::Int(1)),
                (
                    "jobs",
                    Yaml::map([(
                        "a",
                        Yaml::commented(
                            "first job",
                            Yaml::map([
                                ("needs", Yaml::strs(["b", "c"])),
                                ("empty", Yaml::Seq(vec![])),
                                (
                                    "steps",
                                    Yaml::Seq(vec![Yaml::map([
                                        ("run", Yaml::str("echo hi")),
                                        ("if", Yaml::Bool(false)),
                                    ])]),
                                ),
                            ]),
                        ),
                    )]),
                ),
                ("on", Yaml::Map(Vec::new())),
            ]),
        );
        assert_eq!(
            to_string(&doc),
            "# Generated.\nz: 1\njobs:\n  # first job\n  a:\n    needs: [b, c]\n    empty: []\n    \
             steps:\n      - run: echo hi\n        if: false\n\"on\": {}\n"
        );
    }
}
