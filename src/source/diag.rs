//! Findings tied to a place in a user's file, printed compiler-style
//! (`file:line:col: message`, the offending line, a caret) or as JSON.

use super::yaml::{Pos, Span};
use serde::Serialize;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub line: usize,
    pub col: usize,
    /// Where the offending text ends (inclusive), when the finding is about
    /// a node: lets a CI underline the whole value, not one character.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_line: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_col: Option<usize>,
    /// A stable identifier of the kind of finding (`unknown-key`, `cycle`, …).
    pub code: &'static str,
    pub message: String,
    /// The text found at the position, as written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub found: Option<String>,
    /// How to fix it, when there is a likely fix.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn new(file: &Path, pos: Pos, code: &'static str, message: impl Into<String>) -> Self {
        Diagnostic {
            file: file.to_path_buf(),
            line: pos.line.max(1),
            col: pos.col.max(1),
            end_line: None,
            end_col: None,
            code,
            message: message.into(),
            found: None,
            help: None,
        }
    }

    /// A finding about a node: records the node's text from `source`.
    pub fn at(
        file: &Path,
        source: &str,
        span: Span,
        code: &'static str,
        message: impl Into<String>,
    ) -> Self {
        let mut d = Diagnostic::new(file, span.start, code, message);
        d.found = excerpt(source, span);
        // Spans end one past the node's last character; a node that ends at
        // the start of a line (a block mapping) ends on the line before.
        if span.end > span.start {
            let (line, col) = if span.end.col > 1 {
                (span.end.line, span.end.col - 1)
            } else {
                let line = span.end.line.saturating_sub(1).max(d.line);
                let len = source
                    .lines()
                    .nth(line.saturating_sub(1))
                    .map_or(1, |l| l.chars().count().max(1));
                (line, len)
            };
            if (line, col) >= (d.line, d.col) {
                d.end_line = Some(line);
                d.end_col = Some(col);
            }
        }
        d
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// `file:line:col: message` followed by the source line and a caret.
    pub fn render(&self, source: Option<&str>) -> String {
        let mut out = format!(
            "{}:{}:{}: error[{}]: {}",
            self.file.display(),
            self.line,
            self.col,
            self.code,
            self.message
        );
        if let Some(line) = source.and_then(|s| s.lines().nth(self.line - 1)) {
            let gutter = self.line.to_string().len();
            // Columns, not characters: a tab shows as four spaces and a wide
            // character takes two, in the line and under it alike.
            let before: String = line.chars().take(self.col - 1).collect();
            let from_here: String = line.chars().skip(self.col - 1).collect();
            let found = self
                .found
                .as_deref()
                .map(|f| f.lines().next().unwrap_or(""));
            let caret_len = found
                .map(display_width)
                .unwrap_or(1)
                .clamp(1, display_width(&from_here).max(1));
            let _ = write!(
                out,
                "\n{:gutter$} |\n{} | {}\n{:gutter$} | {}{}",
                "",
                self.line,
                expand_tabs(line),
                "",
                " ".repeat(display_width(&before)),
                "^".repeat(caret_len)
            );
        }
        if let Some(help) = &self.help {
            let _ = write!(out, "\n  = help: {help}");
        }
        out
    }
}

/// How a line is shown: tabs as four spaces.
fn expand_tabs(line: &str) -> String {
    line.replace('\t', "    ")
}

/// Columns `text` takes once shown (tabs expanded, wide characters two).
fn display_width(text: &str) -> usize {
    unicode_width::UnicodeWidthStr::width(expand_tabs(text).as_str())
}

/// GitHub's workflow commands (`::error file=…,line=…::message`): printed
/// by a step, each becomes an annotation on the pull request's line.
pub mod github {
    use super::Diagnostic;

    /// The message part: `%`, CR and LF are the only characters the runner
    /// decodes there (actions/toolkit's `escapeData`).
    pub fn escape_data(text: &str) -> String {
        text.replace('%', "%25")
            .replace('\r', "%0D")
            .replace('\n', "%0A")
    }

    /// A property value: also `:` and `,`, which end a value
    /// (actions/toolkit's `escapeProperty`).
    pub fn escape_property(text: &str) -> String {
        escape_data(text).replace(':', "%3A").replace(',', "%2C")
    }

    /// One `::error` line for a finding; `file` as the repository sees it
    /// (relative to its root). The help, when there is one, is the
    /// annotation's second line.
    pub fn annotation(d: &Diagnostic, file: &str) -> String {
        let mut props = vec![
            format!("file={}", escape_property(file)),
            format!("line={}", d.line),
            format!("col={}", d.col),
        ];
        if let Some(end_line) = d.end_line {
            props.push(format!("endLine={end_line}"));
            // GitHub takes a column range only within one line.
            if let (Some(end_col), true) = (d.end_col, end_line == d.line) {
                props.push(format!("endColumn={end_col}"));
            }
        }
        props.push(format!(
            "title={}",
            escape_property(&format!("onboard validate: {}", d.code))
        ));
        let mut message = d.message.clone();
        if let Some(help) = &d.help {
            message.push_str("\nhelp: ");
            message.push_str(help);
        }
        format!("::error {}::{}", props.join(","), escape_data(&message))
    }
}

/// The text a span covers, one line at most and trimmed to a readable size.
fn excerpt(source: &str, span: Span) -> Option<String> {
    let line = source.lines().nth(span.start.line.checked_sub(1)?)?;
    let start = span.start.col.saturating_sub(1);
    let chars: Vec<char> = line.chars().collect();
    if start >= chars.len() {
        return None;
    }
    let end = if span.end.line == span.start.line && span.end.col > span.start.col {
        (span.end.col - 1).min(chars.len())
    } else {
        chars.len()
    };
    let text: String = chars[start..end].iter().take(80).collect();
    let text = text.trim_end().to_string();
    (!text.is_empty()).then_some(text)
}

/// The closest of `candidates` to `word`, if close enough to be a typo:
/// optimal string alignment distance (Levenshtein plus adjacent
/// transpositions, so `fsat` is one edit from `fast`).
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::osa_distance(word, c), c))
        .filter(|(d, c)| *d <= (c.len().max(word.len()) / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_location_line_and_caret() {
        let src = "steps:\n  - id: a\n    usess: command\n";
        let span = Span {
            start: Pos { line: 3, col: 5 },
            end: Pos { line: 3, col: 10 },
        };
        let d = Diagnostic::at(
            Path::new("w.yaml"),
            src,
            span,
            "unknown-key",
            "unknown key `usess`",
        )
        .with_help("did you mean `uses`?");
        assert_eq!(d.found.as_deref(), Some("usess"));
        let text = d.render(Some(src));
        assert!(text.starts_with("w.yaml:3:5: error[unknown-key]: unknown key `usess`"));
        assert!(
            text.contains("3 |     usess: command\n  |     ^^^^^"),
            "{text}"
        );
    }

    #[test]
    fn the_caret_lines_up_after_tabs_and_wide_characters() {
        let src = "steps:\n\t- id: 模型\n\t  usess: command\n";
        let at = |line, col, len: usize| Span {
            start: Pos { line, col },
            end: Pos {
                line,
                col: col + len,
            },
        };
        let d = Diagnostic::at(Path::new("w.yaml"), src, at(3, 4, 5), "unknown-key", "x");
        assert!(
            d.render(Some(src))
                .contains("3 |       usess: command\n  |       ^^^^^"),
            "{}",
            d.render(Some(src))
        );
        let d = Diagnostic::at(Path::new("w.yaml"), src, at(2, 8, 2), "bad-id", "x");
        assert!(
            d.render(Some(src))
                .contains("2 |     - id: 模型\n  |           ^^^^"),
            "{}",
            d.render(Some(src))
        );
    }

    #[test]
    fn a_node_finding_ends_where_its_text_ends() {
        let src = "steps:\n  - id: a\n    usess: command\n";
        let span = Span {
            start: Pos { line: 3, col: 5 },
            end: Pos { line: 3, col: 10 },
        };
        let d = Diagnostic::at(Path::new("w.yaml"), src, span, "unknown-key", "m");
        assert_eq!((d.end_line, d.end_col), (Some(3), Some(9)));
        assert_eq!(
            (Diagnostic::new(Path::new("w.yaml"), span.start, "x", "m").end_line),
            None
        );
    }

    #[test]
    fn github_annotations_escape_what_the_runner_decodes() {
        let d = Diagnostic {
            file: "w.yaml".into(),
            line: 3,
            col: 5,
            end_line: Some(3),
            end_col: Some(9),
            code: "unknown-key",
            message: "100% bad: a,b\r\nnext::line".into(),
            found: None,
            help: Some("did you mean `uses`?".into()),
        };
        assert_eq!(
            github::annotation(&d, "dir,x/w:1%.yaml"),
            "::error file=dir%2Cx/w%3A1%25.yaml,line=3,col=5,endLine=3,endColumn=9,\
             title=onboard validate%3A unknown-key::100%25 bad: a,b%0D%0Anext::line%0Ahelp: did you mean `uses`?"
        );
        let multi = Diagnostic {
            end_line: Some(4),
            end_col: Some(2),
            help: None,
            ..d
        };
        let line = github::annotation(&multi, "w.yaml");
        assert!(line.contains(",endLine=4,title="), "{line}");
    }

    #[test]
    fn suggests_close_words_only() {
        assert_eq!(
            did_you_mean("usess", ["uses", "needs", "with"]),
            Some("uses")
        );
        assert_eq!(did_you_mean("zzzzzz", ["uses", "needs"]), None);
        assert_eq!(did_you_mean("fsat", ["fast", "slow"]), Some("fast"));
    }
}
