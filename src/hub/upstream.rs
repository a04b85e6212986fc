//! Whether the Hub still serves what a model was onboarded from.
//!
//! Community GGUFs are fixed and pushed again under the same file name, so
//! a file name and a branch say nothing about the bytes. What the Hub states
//! in a file's headers (size, sha256 or git blob id, commit) does, and
//! costs no download. `onboard outdated` asks for it and records the
//! answer in the model's state directory ([`RECORD_FILE`]); the steps that
//! copied a file compare that record with what they copied, so `plan` and
//! `run` see a re-upload without asking the Hub themselves.

use super::client::{FileMeta, HubClient};
use super::error::HubError;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The check's record, beside the model's step records.
pub const RECORD_FILE: &str = "upstream.json";

/// A file as the Hub states it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Identity {
    pub size: u64,
    /// LFS files (`X-Linked-Etag`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The git blob id of a file kept in git (no sha256 is stated for those).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// `X-Repo-Commit`: where the file was seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
}

impl Identity {
    pub fn of(meta: &FileMeta) -> Identity {
        Identity {
            size: meta.size,
            sha256: meta.sha256.clone(),
            etag: meta.etag.clone(),
            commit: meta.commit.clone(),
        }
    }

    /// Same bytes. A commit that leaves the file alone is no change: a
    /// repo whose README was edited must not re-download its weights.
    pub fn same_content(&self, other: &Identity) -> bool {
        self.size == other.size
            && match (&self.sha256, &other.sha256) {
                (Some(a), Some(b)) => a == b,
                _ => self.etag.is_some() && self.etag == other.etag,
            }
    }

    /// `sha256 1a2b3c4d…` or `git 1a2b3c4d…`: enough to tell two apart.
    pub fn short(&self) -> String {
        match (&self.sha256, &self.etag) {
            (Some(s), _) => format!("sha256 {}…", prefix(s, 8)),
            (None, Some(e)) => format!("git {}…", prefix(e, 8)),
            (None, None) => "unknown content".into(),
        }
    }

    /// What changed from `self` to `now`, for one line of a report or a
    /// plan reason: `sha256 1a2b3c4d… → 3c4d5e6f…, 4.0 MiB → 4.1 MiB,
    /// commit 0123456 → 89abcde`.
    pub fn change_to(&self, now: &Identity) -> String {
        let (was, is) = (self.short(), now.short());
        let mut parts = match (was.split_once(' '), is.split_once(' ')) {
            (Some((kind_a, a)), Some((kind_b, b))) if kind_a == kind_b => {
                vec![format!("{kind_a} {a} → {b}")]
            }
            _ => vec![format!("{was} → {is}")],
        };
        if self.size != now.size {
            parts.push(format!("{} → {}", size(self.size), size(now.size)));
        } else {
            parts.push(format!("{}, same size", size(now.size)));
        }
        match (&self.commit, &now.commit) {
            (Some(a), Some(b)) if a != b => {
                parts.push(format!("commit {} → {}", prefix(a, 7), prefix(b, 7)))
            }
            (None, Some(b)) => parts.push(format!("commit {}", prefix(b, 7))),
            _ => {}
        }
        parts.join(", ")
    }
}

fn prefix(s: &str, n: usize) -> &str {
    s.get(..n).unwrap_or(s)
}

fn size(bytes: u64) -> String {
    if bytes < 1 << 20 {
        format!("{bytes} B")
    } else if bytes < 1 << 30 {
        format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
    } else {
        format!("{:.1} GiB", bytes as f64 / f64::from(1 << 30))
    }
}

/// A commit id never moves, so a model pinned to one has nothing to check.
pub fn is_pinned(revision: &str) -> bool {
    revision.len() == 40 && revision.bytes().all(|b| b.is_ascii_hexdigit())
}

/// One file as the last check saw it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    pub repo: String,
    pub revision: String,
    pub file: String,
    pub now: Identity,
}

/// `upstream.json`: what the Hub served for a model's files when last asked.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub checked_at: String,
    pub files: Vec<Seen>,
}

impl Record {
    pub fn find(&self, repo: &str, revision: &str, file: &str) -> Option<&Identity> {
        self.files
            .iter()
            .find(|s| s.repo == repo && s.revision == revision && s.file == file)
            .map(|s| &s.now)
    }

    /// Replaces the entries of the same files, keeps the others.
    pub fn merge(&mut self, seen: Vec<Seen>) {
        for s in seen {
            match self
                .files
                .iter_mut()
                .find(|o| o.repo == s.repo && o.revision == s.revision && o.file == s.file)
            {
                Some(old) => *old = s,
                None => self.files.push(s),
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: damaged ({detail}); delete it and run `onboard outdated` to check again", path.display())]
    Damaged { path: PathBuf, detail: String },
}

/// The record in a model's state directory; `None` before the first check.
pub fn read_record(state_dir: &Path) -> Result<Option<Record>, RecordError> {
    let path = state_dir.join(RECORD_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| RecordError::Damaged {
                path,
                detail: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(RecordError::Io { path, source }),
    }
}

/// Written whole or not at all: a reader mid-write sees the last check.
pub fn write_record(state_dir: &Path, record: &Record) -> Result<(), RecordError> {
    let path = state_dir.join(RECORD_FILE);
    let json = serde_json::to_vec_pretty(record).map_err(|e| RecordError::Damaged {
        path: path.clone(),
        detail: e.to_string(),
    })?;
    crate::atomic::write_if_changed(&path, &json)
        .map(|_| ())
        .map_err(|source| RecordError::Io { path, source })
}

/// Folds what a step just verified into an existing record, so a file the
/// Hub changed back (or that a run fetched anew) no longer reads as
/// changed. No record: nothing was checked, nothing to correct.
pub fn note(state_dir: &Path, seen: Vec<Seen>) -> Result<(), RecordError> {
    let Some(mut record) = read_record(state_dir)? else {
        return Ok(());
    };
    let before = record.clone();
    record.merge(seen);
    if record == before {
        return Ok(());
    }
    write_record(state_dir, &record)
}

/// Headers only: what the Hub serves under `file` at `revision` now.
pub fn current(
    client: &HubClient,
    repo: &str,
    revision: &str,
    file: &str,
) -> Result<Identity, HubError> {
    client
        .file_meta(repo, revision, file)
        .map(|m| Identity::of(&m))
}

/// Why a step that copied `sources` (repo path, identity when it was
/// copied) from `repo` at `revision` is out of date, when the last upstream
/// check (`onboard outdated`, its record in `state_dir`) found any of them
/// changed on the Hub. A commit id never moves: a pinned revision is never
/// out of date.
pub fn changed_since(
    state_dir: &Path,
    repo: &str,
    revision: &str,
    sources: &[(String, Identity)],
) -> Result<Option<String>, RecordError> {
    if is_pinned(revision) {
        return Ok(None);
    }
    let Some(record) = read_record(state_dir)? else {
        return Ok(None);
    };
    let changes: Vec<String> = sources
        .iter()
        .filter_map(|(file, had)| {
            let now = record.find(repo, revision, file)?;
            (!had.same_content(now)).then(|| format!("{file} {}", had.change_to(now)))
        })
        .collect();
    Ok((!changes.is_empty()).then(|| format!("upstream changed: {}", changes.join("; "))))
}

/// Tells the record in `state_dir` what the Hub served a download of
/// `files` into `dest` this run, so a file it re-fetched (or that the Hub
/// changed back) no longer reads as changed.
pub fn note_download(
    state_dir: &Path,
    repo: &str,
    revision: &str,
    files: &[String],
    dest: &Path,
) -> Result<(), RecordError> {
    let seen = files
        .iter()
        .filter_map(|f| {
            Some(Seen {
                repo: repo.to_string(),
                revision: revision.to_string(),
                file: f.clone(),
                now: super::verified_identity(dest, super::flat_name(f))?,
            })
        })
        .collect();
    note(state_dir, seen)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(size: u64, sha: Option<&str>, etag: Option<&str>, commit: &str) -> Identity {
        Identity {
            size,
            sha256: sha.map(str::to_string),
            etag: etag.map(str::to_string),
            commit: Some(commit.into()),
        }
    }

    #[test]
    fn a_new_commit_alone_is_no_change() {
        let a = id(10, Some(&"a".repeat(64)), None, &"1".repeat(40));
        let b = id(10, Some(&"a".repeat(64)), None, &"2".repeat(40));
        assert!(a.same_content(&b));
        let c = id(10, Some(&"c".repeat(64)), None, &"2".repeat(40));
        assert!(!a.same_content(&c));
        assert_eq!(
            a.change_to(&c),
            "sha256 aaaaaaaa… → cccccccc…, 10 B, same size, commit 1111111 → 2222222"
        );
        let big = Identity {
            size: 21 << 29,
            ..c.clone()
        };
        assert!(
            c.change_to(&big).contains("10 B → 10.5 GiB"),
            "{}",
            c.change_to(&big)
        );
        // Git files compare by blob id; no id at all is never "the same".
        let g = id(3, None, Some("0123456789"), "x");
        assert!(g.same_content(&g.clone()));
        assert!(!id(3, None, None, "x").same_content(&id(3, None, None, "x")));
    }

    #[test]
    fn only_full_commit_ids_are_pinned() {
        assert!(is_pinned(&"0123abcd".repeat(5)));
        assert!(!is_pinned("main"));
        assert!(!is_pinned("0123abc"));
    }

    #[test]
    fn notes_touch_an_existing_record_only() {
        let dir = tempfile::tempdir().unwrap();
        let seen = |sha: &str| Seen {
            repo: "o/r".into(),
            revision: "main".into(),
            file: "m.gguf".into(),
            now: id(1, Some(sha), None, "c"),
        };
        note(dir.path(), vec![seen("a")]).unwrap();
        assert_eq!(read_record(dir.path()).unwrap(), None);
        write_record(
            dir.path(),
            &Record {
                checked_at: "t".into(),
                files: vec![seen("a")],
            },
        )
        .unwrap();
        note(dir.path(), vec![seen("b")]).unwrap();
        let rec = read_record(dir.path()).unwrap().unwrap();
        assert_eq!(rec.files, vec![seen("b")]);
        std::fs::write(dir.path().join(RECORD_FILE), "{").unwrap();
        let e = read_record(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("upstream.json") && e.contains("onboard outdated"),
            "{e}"
        );
    }
}
