//! Run state under `<state>/<target>/`: one record per step (written
//! atomically, and only once the step is done), a marker written before a
//! step starts (so a killed run is seen as interrupted), and a lock so two
//! runs of the same target cannot interleave.

use crate::atomic;
use crate::secrets;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordStatus {
    Done,
    Failed,
    /// Stopped by Ctrl-C or SIGTERM; reruns next time.
    Interrupted,
}

/// A file as it was when a step ran: a cheap identity (size, mtime) and
/// its digest, so unchanged files need not be hashed again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStamp {
    pub size: u64,
    pub mtime_ns: i128,
    /// sha256 in hex, or `missing`.
    pub sha256: String,
}

/// A named input value (one models.conf profile) as it was when a step
/// ran: its digest, and its content while it is small, so `plan` can say
/// which lines changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValueStamp {
    pub sha256: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub content: String,
}

/// Content above this size is recorded by digest only.
const VALUE_CONTENT_LIMIT: usize = 16 << 10;

impl ValueStamp {
    pub fn of(content: &str) -> ValueStamp {
        ValueStamp {
            sha256: hex::encode(Sha256::digest(content.as_bytes())),
            content: if content.len() <= VALUE_CONTENT_LIMIT {
                content.to_string()
            } else {
                String::new()
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub step: String,
    pub kind: String,
    pub version: u32,
    pub status: RecordStatus,
    /// sha256 over kind, version, parameters and input digests.
    pub fingerprint: String,
    /// sha256 of the resolved parameters alone (to tell why a step reruns).
    pub params_digest: String,
    pub params: Value,
    pub inputs: BTreeMap<String, FileStamp>,
    /// Inputs that are part of a file, by label (`models.conf [id]`).
    /// Absent in records of steps that declare none, and in records
    /// written before onboard tracked them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub input_values: BTreeMap<String, ValueStamp>,
    pub output_files: BTreeMap<String, FileStamp>,
    pub outputs: Value,
    pub started_at: String,
    pub finished_at: String,
    pub duration_ms: u64,
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Written before a step starts, removed when its record is written.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunningMarker {
    pub pid: u32,
    pub started_at: String,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: the state record is damaged ({detail}); delete it to rerun that step", path.display())]
    Corrupt { path: PathBuf, detail: String },
    #[error("`{target}` is already being onboarded by another run{holder}; wait for it to finish or stop it")]
    Locked { target: String, holder: String },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The state of one target (a model) in one workspace.
#[derive(Debug, Clone)]
pub struct StateStore {
    dir: PathBuf,
    target: String,
}

/// Held for the whole run; the kernel releases it if the process dies, so a
/// crashed run never leaves a lock that blocks the next one.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
    pub path: PathBuf,
}

impl StateStore {
    pub fn new(state_root: &Path, target: &str) -> StateStore {
        StateStore {
            dir: state_root.join(target),
            target: target.to_string(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn steps_dir(&self) -> PathBuf {
        self.dir.join("steps")
    }

    fn record_path(&self, step: &str) -> PathBuf {
        self.steps_dir().join(format!("{step}.json"))
    }

    fn marker_path(&self, step: &str) -> PathBuf {
        self.steps_dir().join(format!("{step}.running"))
    }

    /// Takes the per-target lock, or explains who holds it.
    pub fn lock(&self) -> Result<RunLock, StateError> {
        fs::create_dir_all(&self.dir).map_err(io_err(&self.dir))?;
        let path = self.dir.join("lock");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_err(&path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(StateError::Locked {
                    target: self.target.clone(),
                    holder: if holder.is_empty() {
                        String::new()
                    } else {
                        format!(" ({holder})")
                    },
                });
            }
            Err(fs::TryLockError::Error(e)) => return Err(io_err(&path)(e)),
        }
        let info = format!("pid {}, started {}", std::process::id(), now_rfc3339());
        file.set_len(0).map_err(io_err(&path))?;
        file.write_all(info.as_bytes()).map_err(io_err(&path))?;
        let _ = atomic::sweep_temporaries(&self.steps_dir());
        Ok(RunLock { _file: file, path })
    }

    /// [`lock`](Self::lock), but while another run holds it, waits for it
    /// instead of refusing: the parallel steps of an exported workflow
    /// (`onboard run <model> --only <step>` each) share one workspace and
    /// may start together. `waiting` hears of the holder once.
    pub fn lock_waiting(
        &self,
        poll: std::time::Duration,
        mut waiting: impl FnMut(&StateError),
    ) -> Result<RunLock, StateError> {
        let mut told = false;
        loop {
            match self.lock() {
                Err(e @ StateError::Locked { .. }) => {
                    if !told {
                        waiting(&e);
                        told = true;
                    }
                    std::thread::sleep(poll);
                }
                other => return other,
            }
        }
    }

    pub fn record(&self, step: &str) -> Result<Option<StepRecord>, StateError> {
        let path = self.record_path(step);
        match fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| StateError::Corrupt {
                        path,
                        detail: e.to_string(),
                    })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    pub fn write_record(&self, record: &StepRecord) -> Result<(), StateError> {
        let path = self.record_path(&record.step);
        let value = serde_json::to_value(record).map_err(|e| StateError::Corrupt {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        let bytes = serde_json::to_vec_pretty(&secrets::redact_json(&value)).unwrap_or_default();
        atomic::write(&path, &bytes).map_err(io_err(&path))
    }

    pub fn marker(&self, step: &str) -> Option<RunningMarker> {
        let bytes = fs::read(self.marker_path(step)).ok()?;
        serde_json::from_slice(&bytes).ok().or(Some(RunningMarker {
            pid: 0,
            started_at: String::new(),
        }))
    }

    pub fn mark_running(&self, step: &str) -> Result<(), StateError> {
        let marker = RunningMarker {
            pid: std::process::id(),
            started_at: now_rfc3339(),
        };
        let path = self.marker_path(step);
        let bytes = serde_json::to_vec(&marker).unwrap_or_default();
        atomic::write(&path, &bytes).map_err(io_err(&path))
    }

    pub fn clear_running(&self, step: &str) -> Result<(), StateError> {
        let path = self.marker_path(step);
        atomic::remove(&path).map_err(io_err(&path))
    }
}

/// Files above this size are not hashed for fingerprints.
pub const LARGE_FILE: u64 = 256 << 20;

/// The stamp of a file now, reusing `previous`'s digest when the size and
/// mtime are unchanged.
pub fn stamp(path: &Path, previous: Option<&FileStamp>) -> FileStamp {
    let Ok(meta) = fs::metadata(path) else {
        return FileStamp {
            size: 0,
            mtime_ns: 0,
            sha256: "missing".into(),
        };
    };
    let mtime_ns = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as i128);
    if let Some(prev) = previous {
        if prev.size == meta.len() && prev.mtime_ns == mtime_ns && prev.sha256 != "missing" {
            return prev.clone();
        }
    }
    // Weights run to tens of GB: their identity is size and mtime (as for
    // make), and the download step verifies their sha256 against the Hub.
    if meta.len() > LARGE_FILE {
        return FileStamp {
            size: meta.len(),
            mtime_ns,
            sha256: format!("size-mtime:{}:{mtime_ns}", meta.len()),
        };
    }
    let sha256 = crate::digest::sha256_file(path).unwrap_or_else(|_| "unreadable".into());
    FileStamp {
        size: meta.len(),
        mtime_ns,
        sha256,
    }
}

/// sha256 of a JSON value in canonical form (object keys sorted).
pub fn digest_json(value: &Value) -> String {
    hex::encode(Sha256::digest(
        serde_json::to_vec(value).unwrap_or_default(),
    ))
}

/// What makes a step's result reusable: if this is unchanged, so is the result.
pub fn fingerprint(
    kind: &str,
    version: u32,
    params: &Value,
    inputs: &BTreeMap<String, FileStamp>,
    values: &BTreeMap<String, ValueStamp>,
) -> String {
    let digests: BTreeMap<&String, &String> = inputs.iter().map(|(k, v)| (k, &v.sha256)).collect();
    let mut doc = serde_json::json!({
        "kind": kind,
        "version": version,
        "params": params,
        "inputs": digests,
    });
    // Only when there are some: fingerprints of steps without stay as they were.
    if !values.is_empty() {
        let values: BTreeMap<&String, &String> =
            values.iter().map(|(k, v)| (k, &v.sha256)).collect();
        doc["values"] = serde_json::json!(values);
    }
    digest_json(&doc)
}

pub fn now_rfc3339() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    format_rfc3339(secs)
}

/// UTC `YYYY-MM-DDTHH:MM:SSZ` from unix seconds (civil-from-days).
pub fn format_rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_rfc3339(1_795_000_000), "2026-11-18T11:06:40Z");
        assert_eq!(format_rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn second_lock_refuses_and_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::new(dir.path(), "m");
        let held = store.lock().unwrap();
        let err = store.lock().unwrap_err().to_string();
        assert!(
            err.contains("already being onboarded")
                && err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        drop(held);
        store.lock().unwrap();
    }

    #[test]
    fn stamps_reuse_digests_of_unchanged_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs::write(&path, b"abc").unwrap();
        let first = stamp(&path, None);
        assert_eq!(
            first.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let fake = FileStamp {
            sha256: "cached".into(),
            ..first.clone()
        };
        assert_eq!(stamp(&path, Some(&fake)).sha256, "cached");
        assert_eq!(stamp(&dir.path().join("nope"), None).sha256, "missing");
    }
}
