//! Results: one record per finished task, kept as it completes, and the
//! summary the report and the docs phase read.
//!
//! Files, under the workspace's `benchmarks/results/`:
//!
//! - `<model>/run.json` — what the records were made with (dataset label and
//!   sha256, prompt version, generation budget, served model). Records made
//!   with anything else are set aside (`tasks.<unix-time>.superseded.jsonl`)
//!   and the benchmark starts over.
//! - `<model>/tasks.jsonl` — one [`TaskRecord`] per line, appended and
//!   fsync'd when the task's tests finish. A benchmark killed at any point
//!   resumes with the tasks that are not in this file; a torn last line is
//!   cut off on open.
//! - `<model>.json` — the [`Summary`], written atomically at the end of
//!   every run (also a partial one: `complete` says whether every selected
//!   task has a record). Fields:
//!
//! ```json
//! {"format": 1, "model": "qwen3.5-27b", "dataset": "HumanEval+",
//!  "dataset_sha256": "…", "tasks": 164, "completed": 164, "complete": true,
//!  "passed_base": 140, "passed_plus": 128,
//!  "pass_at_1_base": 0.8537, "pass_at_1_plus": 0.7805,
//!  "engine": "llama-server", "endpoint": "http://127.0.0.1:8080",
//!  "served_model": "bench-qwen35-27b", "max_tokens": 4096,
//!  "wall_seconds": 5123.4, "resumed_tasks": 0,
//!  "date": "2026-11-26T09:00:00Z", "records": "benchmarks/results/qwen3.5-27b/tasks.jsonl"}
//! ```
//!
//! `dataset` is `HumanEval+` or `HumanEval (base tests only)`; for the
//! latter `passed_plus` and `pass_at_1_plus` are `null`. pass@1 is greedy:
//! passed / tasks. A plus pass needs the base and the plus tests to pass.

use super::sandbox::{Status, Verdict};
use crate::atomic;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

pub const SUMMARY_FORMAT: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ResultsError + '_ {
    move |source| ResultsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The result of one task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    pub task_id: String,
    pub base: Status,
    /// None on base-tests-only datasets.
    pub plus: Option<Status>,
    pub pass_base: bool,
    /// Base and plus both passed.
    pub pass_plus: Option<bool>,
    /// The model's reply, thinking included.
    pub reply: String,
    /// The code that ran (fenced block, then sanitised).
    pub solution: String,
    pub finish_reason: Option<String>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub generation_seconds: f64,
    pub test_seconds: f64,
    /// Why the tests could not run normally (killed, crashed, engine error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl TaskRecord {
    pub fn from_verdict(task_id: &str, verdict: Verdict, reply: Reply) -> TaskRecord {
        let pass_base = verdict.base.status == Status::Pass;
        let plus = verdict.plus.as_ref().map(|p| p.status);
        TaskRecord {
            task_id: task_id.to_string(),
            base: verdict.base.status,
            plus,
            pass_base,
            pass_plus: plus.map(|p| pass_base && p == Status::Pass),
            reply: reply.text,
            solution: verdict.solution,
            finish_reason: reply.finish_reason,
            prompt_tokens: reply.prompt_tokens,
            completion_tokens: reply.completion_tokens,
            generation_seconds: reply.seconds,
            test_seconds: verdict.seconds,
            note: verdict.note,
        }
    }
}

/// What generation produced for a task.
#[derive(Debug, Clone, Default)]
pub struct Reply {
    pub text: String,
    pub finish_reason: Option<String>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub seconds: f64,
}

/// What the records of a results directory were made with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunMeta {
    pub dataset: String,
    pub dataset_sha256: String,
    pub prompt_version: u32,
    pub max_tokens: u32,
    pub served_model: Option<String>,
    /// sha256 of the bench profile's settings: records made with another
    /// profile (a hand edit of `[bench-<id>]`) are another model's answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile_settings: Option<String>,
}

/// An opened store, the records already in it, and a note when earlier
/// records were set aside.
pub type Opened = (ResultsStore, BTreeMap<String, TaskRecord>, Option<String>);

/// The per-task records of one model, open for appending.
pub struct ResultsStore {
    path: PathBuf,
    file: File,
}

impl ResultsStore {
    /// Opens `dir` for `meta`, returning the records already there.
    pub fn open(dir: &Path, meta: &RunMeta) -> Result<Opened, ResultsError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let meta_path = dir.join("run.json");
        let path = dir.join("tasks.jsonl");
        let mut note = None;
        let old: Option<RunMeta> = match std::fs::read(&meta_path) {
            Ok(bytes) => serde_json::from_slice(&bytes).ok(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err(&meta_path)(e)),
        };
        if old.as_ref() != Some(meta) {
            if path.exists() {
                let secs = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                let aside = dir.join(format!("tasks.{secs}.superseded.jsonl"));
                std::fs::rename(&path, &aside).map_err(io_err(&path))?;
                note = Some(format!(
                    "earlier results were made with other settings; set aside as {}",
                    aside.display()
                ));
            }
            let json = serde_json::to_vec_pretty(meta).map_err(|e| ResultsError::Invalid {
                path: meta_path.clone(),
                message: e.to_string(),
            })?;
            atomic::write(&meta_path, &json).map_err(io_err(&meta_path))?;
        }
        let records = read_records(&path)?;
        let existed = path.exists();
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        if !existed {
            // The new file's directory entry must survive a crash too.
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io_err(dir))?;
        }
        Ok((ResultsStore { path, file }, records, note))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record and makes it durable before returning.
    pub fn append(&mut self, record: &TaskRecord) -> Result<(), ResultsError> {
        let mut line = serde_json::to_string(record).map_err(|e| ResultsError::Invalid {
            path: self.path.clone(),
            message: e.to_string(),
        })?;
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .and_then(|()| self.file.sync_data())
            .map_err(io_err(&self.path))?;
        crate::crashpoint::point("benchmark: task recorded");
        Ok(())
    }
}

/// Records in a tasks.jsonl; a torn last line (killed mid-write) is cut off
/// (atomically) so the next append starts on a fresh line.
pub fn read_records(path: &Path) -> Result<BTreeMap<String, TaskRecord>, ResultsError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(io_err(path)(e)),
    };
    let complete = match bytes.iter().rposition(|&b| b == b'\n') {
        Some(i) => i + 1,
        None => 0,
    };
    if complete != bytes.len() {
        atomic::write(path, &bytes[..complete]).map_err(io_err(path))?;
    }
    let mut records = BTreeMap::new();
    for (i, line) in bytes[..complete].split(|&b| b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let r: TaskRecord = serde_json::from_slice(line).map_err(|e| ResultsError::Invalid {
            path: path.to_path_buf(),
            message: format!(
                "line {}: not a task record ({e}); delete the line or the file to rerun those tasks",
                i + 1
            ),
        })?;
        records.insert(r.task_id.clone(), r);
    }
    Ok(records)
}

/// `benchmarks/results/<model>.json`; see the module documentation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub format: u32,
    pub model: String,
    pub dataset: String,
    pub dataset_sha256: String,
    pub tasks: usize,
    pub completed: usize,
    pub complete: bool,
    pub passed_base: usize,
    pub passed_plus: Option<usize>,
    pub pass_at_1_base: f64,
    pub pass_at_1_plus: Option<f64>,
    pub engine: String,
    pub endpoint: Option<String>,
    pub served_model: Option<String>,
    pub max_tokens: u32,
    pub wall_seconds: f64,
    pub resumed_tasks: usize,
    pub date: String,
    pub records: String,
}

/// Scores the records of the selected `task_ids`.
pub fn pass_counts(
    records: &BTreeMap<String, TaskRecord>,
    task_ids: &[String],
) -> (usize, usize, Option<usize>) {
    let chosen: Vec<&TaskRecord> = task_ids.iter().filter_map(|t| records.get(t)).collect();
    let base = chosen.iter().filter(|r| r.pass_base).count();
    let plus = if chosen.iter().all(|r| r.pass_plus.is_some()) {
        Some(chosen.iter().filter(|r| r.pass_plus == Some(true)).count())
    } else {
        None
    };
    (chosen.len(), base, plus)
}

/// Rounds a fraction to 4 places for the summary.
pub fn ratio(n: usize, of: usize) -> f64 {
    if of == 0 {
        0.0
    } else {
        ((n as f64 / of as f64) * 10000.0).round() / 10000.0
    }
}

impl Summary {
    pub fn read(path: &Path) -> Result<Summary, ResultsError> {
        let bytes = std::fs::read(path).map_err(io_err(path))?;
        serde_json::from_slice(&bytes).map_err(|e| ResultsError::Invalid {
            path: path.to_path_buf(),
            message: format!("not a benchmark summary ({e}); rerun the benchmark step"),
        })
    }

    pub fn write(&self, path: &Path) -> Result<(), ResultsError> {
        let mut json = serde_json::to_vec_pretty(self).map_err(|e| ResultsError::Invalid {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        json.push(b'\n');
        atomic::write(path, &json).map_err(io_err(path))
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` for now (UTC).
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    utc_date(secs)
}

/// Civil date from Unix seconds (Howard Hinnant's days-from-civil inverse).
pub fn utc_date(secs: i64) -> String {
    let days = secs.div_euclid(86400);
    let rem = secs.rem_euclid(86400);
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, base: bool, plus: Option<bool>) -> TaskRecord {
        TaskRecord {
            task_id: id.into(),
            base: if base { Status::Pass } else { Status::Fail },
            plus: plus.map(|p| if p { Status::Pass } else { Status::Fail }),
            pass_base: base,
            pass_plus: plus.map(|p| p && base),
            reply: String::new(),
            solution: String::new(),
            finish_reason: None,
            prompt_tokens: 0,
            completion_tokens: 0,
            generation_seconds: 0.0,
            test_seconds: 0.0,
            note: None,
        }
    }

    #[test]
    fn dates_are_utc() {
        assert_eq!(utc_date(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_date(1_795_000_000), "2026-11-18T11:06:40Z");
        assert_eq!(utc_date(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn torn_lines_are_cut_and_settings_changes_set_records_aside() {
        let dir = tempfile::tempdir().unwrap();
        let meta = RunMeta {
            dataset: "HumanEval+".into(),
            dataset_sha256: "a".into(),
            prompt_version: 1,
            max_tokens: 10,
            served_model: None,
            profile_settings: None,
        };
        let (mut store, recs, note) = ResultsStore::open(dir.path(), &meta).unwrap();
        assert!(recs.is_empty() && note.is_none());
        store
            .append(&record("HumanEval/0", true, Some(false)))
            .unwrap();
        drop(store);
        let path = dir.path().join("tasks.jsonl");
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"task_id\":\"HumanEval/1\",\"ba").unwrap();
        let (mut store, recs, _) = ResultsStore::open(dir.path(), &meta).unwrap();
        assert_eq!(recs.len(), 1);
        store
            .append(&record("HumanEval/1", true, Some(true)))
            .unwrap();
        let recs = read_records(&path).unwrap();
        assert_eq!(recs.len(), 2);
        let ids: Vec<String> = vec!["HumanEval/0".into(), "HumanEval/1".into()];
        assert_eq!(pass_counts(&recs, &ids), (2, 2, Some(1)));

        let other = RunMeta {
            max_tokens: 20,
            ..meta
        };
        let (_, recs, note) = ResultsStore::open(dir.path(), &other).unwrap();
        assert!(recs.is_empty());
        assert!(note.unwrap().contains("superseded"));
    }
}
