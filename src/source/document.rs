//! A user's YAML file read for checking: its text (for excerpts), its tree
//! with positions, and conversion to a typed value with every schema
//! finding at its place.

use super::diag::Diagnostic;
use super::schema_check::SchemaChecker;
use super::yaml::{self, Node, Pos};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// A YAML file read for checking: its text (for excerpts) and its tree.
#[derive(Debug, Clone)]
pub struct Document {
    pub path: PathBuf,
    pub source: String,
    pub root: Node,
}

impl Document {
    // A file yields one diagnostic here at most; boxing it buys nothing.
    #[allow(clippy::result_large_err)]
    pub fn read(path: &Path) -> Result<Document, Diagnostic> {
        let bytes = std::fs::read(path).map_err(|e| {
            Diagnostic::new(
                path,
                Pos { line: 1, col: 1 },
                "io",
                format!("cannot read the file: {e}"),
            )
        })?;
        let source = String::from_utf8(bytes).map_err(|e| {
            let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            let text = String::from_utf8_lossy(valid);
            let line = text.matches('\n').count() + 1;
            let col = text.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            Diagnostic::new(
                path,
                Pos { line, col },
                "encoding",
                "the file is not valid UTF-8",
            )
            .with_help("save it as UTF-8")
        })?;
        Document::parse(path, source)
    }

    #[allow(clippy::result_large_err)]
    pub fn parse(path: &Path, source: String) -> Result<Document, Diagnostic> {
        match yaml::parse(&source) {
            Ok(root) => Ok(Document {
                path: path.to_path_buf(),
                source,
                root,
            }),
            Err(e) => {
                let d = Diagnostic::new(
                    path,
                    e.pos,
                    "syntax",
                    format!("YAML syntax error: {}", e.message),
                );
                Err(match syntax_help(&e.message) {
                    Some(help) => d.with_help(help),
                    None => d,
                })
            }
        }
    }

    /// Schema-checks the document against `T`'s schema, then converts it.
    /// Returns `None` (with findings pushed) when it does not conform.
    pub fn typed<T: DeserializeOwned + JsonSchema>(
        &self,
        diags: &mut Vec<Diagnostic>,
    ) -> Option<T> {
        let schema = serde_json::to_value(schemars::schema_for!(T)).unwrap_or(Value::Bool(true));
        let before = diags.len();
        SchemaChecker::new(&schema, &self.path, &self.source).check_root(&self.root, "", diags);
        if diags.len() > before {
            return None;
        }
        match serde_json::from_value(self.root.to_json()) {
            Ok(v) => Some(v),
            Err(e) => {
                diags.push(Diagnostic::new(
                    &self.path,
                    self.root.span.start,
                    "schema",
                    e.to_string(),
                ));
                None
            }
        }
    }
}

/// The usual cause of the YAML errors people hit most.
fn syntax_help(message: &str) -> Option<&'static str> {
    if message.contains("mapping values are not allowed") {
        Some("check this line's indentation against the lines above, or quote a value that contains `: `")
    } else if message.contains("flow sequence") || message.contains("flow mapping") {
        Some("a `[` or `{` is not closed; check the brackets on this line")
    } else if message.contains("tab") {
        Some("YAML indentation must use spaces, not tabs")
    } else {
        None
    }
}
