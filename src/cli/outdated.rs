//! `onboard outdated [MODEL…]`: whether the Hub still serves what each
//! onboarded model was made from (the files its download verified, the
//! sampler sources), asked by headers only. The answer is recorded in the
//! model's state directory, where `plan` and `run` see it: a changed file
//! reruns the step that copied it, and everything after.

use super::load;
use super::{error, FormatArg, EXIT_FAILED, EXIT_OK, EXIT_USAGE};
use crate::hub::flat_name;
use crate::hub::upstream::{self, Identity, Seen};
use crate::hub::{HubClient, HubError};
use crate::tasks::download::{DownloadParams, DownloadedFile};
use crate::tasks::samplers::{SamplerSource, SamplersParams};
use crate::workflow::state::{RecordStatus, StateStore, StepRecord};
use crate::workspace::Workspace;
use clap::Args;
use serde::Serialize;
use std::path::Path;

/// Some file could not be checked (offline, the Hub unreachable) and none
/// was found changed: neither "current" nor "changed" can be said.
pub const EXIT_UNCHECKED: i32 = 3;

#[derive(Args, Debug)]
pub struct OutdatedArgs {
    /// The models to check (default: every model with a recorded download).
    #[arg(value_name = "MODEL")]
    models: Vec<String>,
    #[command(flatten)]
    format: FormatArg,
}

/// A file one of a model's steps copied from the Hub.
struct Source {
    step: String,
    repo: String,
    revision: String,
    file: String,
    had: Identity,
}

#[derive(Debug, Serialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum Status {
    Current,
    Changed,
    /// Gone from the repo at that revision.
    Gone,
    /// A commit id: it never moves, so nothing is asked.
    Pinned,
    Unchecked,
}

#[derive(Debug, Serialize)]
struct FileReport {
    step: String,
    repo: String,
    revision: String,
    file: String,
    status: Status,
    was: Identity,
    #[serde(skip_serializing_if = "Option::is_none")]
    now: Option<Identity>,
    /// `sha256 1a2b… → 3c4d…, …` when it changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    change: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Debug, Serialize)]
struct ModelReport {
    model: String,
    /// The worst of its files: changed or gone > unchecked > current >
    /// pinned.
    status: Status,
    files: Vec<FileReport>,
}

pub fn execute(dir: &Path, args: &OutdatedArgs) -> i32 {
    let ws = match load::open_workspace(dir) {
        Ok(ws) => ws,
        Err(code) => return code,
    };
    let models = match models(&ws, &args.models) {
        Ok(m) => m,
        Err(code) => return code,
    };
    let client = HubClient::from_env();
    let reports: Vec<ModelReport> = models
        .iter()
        .map(|(model, sources)| check_model(&ws, &client, model, sources))
        .collect();
    let changed = reports
        .iter()
        .filter(|r| matches!(r.status, Status::Changed | Status::Gone))
        .count();
    let unchecked = reports
        .iter()
        .filter(|r| r.status == Status::Unchecked)
        .count();
    if args.format.json() {
        let doc = serde_json::json!({
            "models": reports,
            "changed": changed,
            "unchecked": unchecked,
        });
        println!(
            "{}",
            crate::secrets::redact(&serde_json::to_string_pretty(&doc).unwrap_or_default())
        );
    } else {
        for r in &reports {
            print!("{}", crate::secrets::redact(&human(r)));
        }
        if models.is_empty() {
            println!("no model has a recorded download yet: nothing to check");
        }
    }
    if changed > 0 {
        EXIT_FAILED
    } else if unchecked > 0 {
        EXIT_UNCHECKED
    } else {
        EXIT_OK
    }
}

/// Checks `models` before `plan` or `run` (`--refresh`), so they see what
/// changed; says on stderr what was found, and never stops the command: a
/// Hub that cannot be asked leaves the last check standing.
pub fn refresh(dir: &Path, models: &[String]) {
    let Ok(ws) = Workspace::open(dir) else {
        return;
    };
    let client = HubClient::from_env();
    for model in models {
        let sources = match sources(&ws, model) {
            Ok(s) if !s.is_empty() => s,
            _ => continue,
        };
        let r = check_model(&ws, &client, model, &sources);
        let line = match r.status {
            Status::Changed | Status::Gone => {
                let names: Vec<&str> = r
                    .files
                    .iter()
                    .filter(|f| matches!(f.status, Status::Changed | Status::Gone))
                    .map(|f| f.file.as_str())
                    .collect();
                format!("changed upstream: {}", names.join(", "))
            }
            Status::Unchecked => format!(
                "cannot check upstream ({}); the last check stands",
                first_error(&r)
            ),
            Status::Current => "current upstream".into(),
            Status::Pinned => "pinned to a commit: nothing to check".into(),
        };
        eprintln!("{}", crate::secrets::redact(&format!("{model}: {line}")));
    }
}

/// The models to check and what each copied: the named ones (each must
/// have a recorded download), else every model with one.
fn models(ws: &Workspace, named: &[String]) -> Result<Vec<(String, Vec<Source>)>, i32> {
    if named.is_empty() {
        let mut ids: Vec<String> = std::fs::read_dir(ws.state_dir())
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .filter(|e| e.path().is_dir())
                    .filter_map(|e| e.file_name().to_str().map(str::to_string))
                    .filter(|n| !n.starts_with('.'))
                    .collect()
            })
            .unwrap_or_default();
        ids.sort();
        let mut out = Vec::new();
        for id in ids {
            match sources(ws, &id) {
                Ok(s) if s.is_empty() => {}
                Ok(s) => out.push((id, s)),
                Err(e) => {
                    error(&e);
                    return Err(EXIT_FAILED);
                }
            }
        }
        return Ok(out);
    }
    let mut out = Vec::new();
    for id in named {
        match sources(ws, id) {
            Ok(s) if s.is_empty() => {
                let hint = if ws.manifest_path(id).is_file() {
                    format!("run `onboard {id}` first")
                } else {
                    super::suggest::model(ws, id)
                        .unwrap_or_else(|| "`onboard status` lists the models".into())
                };
                error(&format!(
                    "`{id}` has no recorded download to compare with the Hub; {hint}"
                ));
                return Err(EXIT_USAGE);
            }
            Ok(s) => out.push((id.clone(), s)),
            Err(e) => {
                error(&e);
                return Err(EXIT_FAILED);
            }
        }
    }
    Ok(out)
}

/// What a model's finished steps copied from the Hub, from their records
/// (by task kind, whatever the workflow names the steps). A model without
/// a finished download has nothing to compare.
fn sources(ws: &Workspace, model: &str) -> Result<Vec<Source>, String> {
    let store = StateStore::new(&ws.state_dir(), model);
    let steps_dir = store.dir().join("steps");
    let mut names: Vec<String> = match std::fs::read_dir(&steps_dir) {
        Ok(rd) => rd
            .filter_map(Result::ok)
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.strip_suffix(".json"))
                    .map(str::to_string)
            })
            .collect(),
        Err(_) => return Ok(Vec::new()),
    };
    names.sort();
    let mut records = Vec::new();
    for name in names {
        match store.record(&name) {
            Ok(Some(rec)) if rec.status == RecordStatus::Done => records.push(rec),
            Ok(_) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    let mut out = Vec::new();
    for rec in records.iter().filter(|r| r.kind == "download") {
        out.extend(download_sources(ws, rec)?);
    }
    if out.is_empty() {
        return Ok(out);
    }
    for rec in records.iter().filter(|r| r.kind == "samplers") {
        out.extend(sampler_sources(rec));
    }
    Ok(out)
}

fn download_sources(ws: &Workspace, rec: &StepRecord) -> Result<Vec<Source>, String> {
    let params: DownloadParams = serde_json::from_value(rec.params.clone()).map_err(|e| {
        format!(
            "the record of step `{}` has unreadable parameters ({e}); rerun the step",
            rec.step
        )
    })?;
    let dest = crate::workspace::resolve_inside(&ws.models_dir(), &params.dest)?;
    let outputs: Vec<DownloadedFile> = rec
        .outputs
        .get("files")
        .and_then(|f| serde_json::from_value(f.clone()).ok())
        .unwrap_or_default();
    Ok(params
        .files
        .iter()
        .filter_map(|file| {
            let name = flat_name(file);
            // What the Hub stated when it was verified; else what the step
            // recorded (a file edited since is the step's to redo anyway).
            let had = crate::hub::verified_identity(&dest, name).or_else(|| {
                outputs
                    .iter()
                    .find(|o| flat_name(&o.path) == name)
                    .map(|o| Identity {
                        size: o.size,
                        sha256: Some(o.sha256.clone()),
                        etag: None,
                        commit: None,
                    })
            })?;
            Some(Source {
                step: rec.step.clone(),
                repo: params.repo.clone(),
                revision: params.revision.clone(),
                file: file.clone(),
                had,
            })
        })
        .collect())
}

fn sampler_sources(rec: &StepRecord) -> Vec<Source> {
    let Ok(params) = serde_json::from_value::<SamplersParams>(rec.params.clone()) else {
        return Vec::new();
    };
    let (Some(repo), None) = (params.hub_repo, params.generation_config) else {
        return Vec::new();
    };
    let read: Vec<SamplerSource> = rec
        .outputs
        .get("sources")
        .and_then(|s| serde_json::from_value(s.clone()).ok())
        .unwrap_or_default();
    read.into_iter()
        .map(|s| Source {
            step: rec.step.clone(),
            repo: repo.clone(),
            revision: params.hub_revision.clone(),
            file: s.file,
            had: s.identity,
        })
        .collect()
}

/// Asks the Hub for each file's headers, records what it said, and
/// reports. After a network failure nothing more is asked: each request
/// would wait for the same connect timeout.
fn check_model(ws: &Workspace, client: &HubClient, model: &str, sources: &[Source]) -> ModelReport {
    let mut files = Vec::new();
    let mut seen = Vec::new();
    let mut unreachable: Option<String> = client.config().offline.then(|| {
        "HF_HUB_OFFLINE is set: the Hub is not asked (unset it, or point HF_ENDPOINT at a mirror)"
            .to_string()
    });
    for s in sources {
        let mut report = FileReport {
            step: s.step.clone(),
            repo: s.repo.clone(),
            revision: s.revision.clone(),
            file: s.file.clone(),
            status: Status::Pinned,
            was: s.had.clone(),
            now: None,
            change: None,
            error: None,
        };
        if upstream::is_pinned(&s.revision) {
            files.push(report);
            continue;
        }
        if let Some(why) = &unreachable {
            report.status = Status::Unchecked;
            report.error = Some(why.clone());
            files.push(report);
            continue;
        }
        match upstream::current(client, &s.repo, &s.revision, &s.file) {
            Ok(now) => {
                if now.same_content(&s.had) {
                    report.status = Status::Current;
                } else {
                    report.status = Status::Changed;
                    report.change = Some(s.had.change_to(&now));
                }
                seen.push(Seen {
                    repo: s.repo.clone(),
                    revision: s.revision.clone(),
                    file: s.file.clone(),
                    now: now.clone(),
                });
                report.now = Some(now);
            }
            Err(HubError::FileNotFound { .. }) => {
                report.status = Status::Gone;
                report.change = Some(format!("gone from {} at `{}`", s.repo, s.revision));
            }
            Err(e) => {
                let message = crate::secrets::redact(&e.to_string());
                if matches!(e, HubError::Network { .. } | HubError::Offline { .. }) {
                    unreachable = Some(message.clone());
                }
                report.status = Status::Unchecked;
                report.error = Some(message);
            }
        }
        files.push(report);
    }
    if !seen.is_empty() {
        let dir = StateStore::new(&ws.state_dir(), model).dir().to_path_buf();
        let mut record = match upstream::read_record(&dir) {
            Ok(r) => r.unwrap_or_default(),
            // A damaged record is replaced by this check.
            Err(_) => upstream::Record::default(),
        };
        record.checked_at = crate::workflow::state::now_rfc3339();
        record.merge(seen);
        if let Err(e) = upstream::write_record(&dir, &record) {
            error(&format!(
                "{e}: this check is not recorded, so `plan` cannot see it"
            ));
        }
    }
    let rank = |s: Status| match s {
        Status::Changed | Status::Gone => 3,
        Status::Unchecked => 2,
        Status::Current => 1,
        Status::Pinned => 0,
    };
    let status = files
        .iter()
        .map(|f| f.status)
        .max_by_key(|s| rank(*s))
        .unwrap_or(Status::Pinned);
    ModelReport {
        model: model.to_string(),
        status,
        files,
    }
}

fn first_error(r: &ModelReport) -> &str {
    r.files
        .iter()
        .find_map(|f| f.error.as_deref())
        .unwrap_or("no answer")
}

/// One model's lines: a heading, then each file that is not current.
fn human(r: &ModelReport) -> String {
    let Some(first) = r.files.first() else {
        return String::new();
    };
    let at = format!("{}@{}", first.repo, first.revision);
    let count = |s: Status| r.files.iter().filter(|f| f.status == s).count();
    let mut out = match r.status {
        Status::Pinned => format!(
            "{}: pinned to commit {} ({}), which never moves: not checked\n",
            r.model,
            first.revision.get(..12).unwrap_or(&first.revision),
            first.repo
        ),
        Status::Current => {
            let commit = r
                .files
                .iter()
                .find_map(|f| f.now.as_ref()?.commit.as_deref())
                .map(|c| format!(", commit {}", c.get(..7).unwrap_or(c)))
                .unwrap_or_default();
            format!(
                "{} ({at}): current ({} file(s){commit})\n",
                r.model,
                count(Status::Current)
            )
        }
        Status::Unchecked => format!("{} ({at}): cannot check: {}\n", r.model, first_error(r)),
        Status::Changed | Status::Gone => format!(
            "{} ({at}): {} of {} file(s) changed upstream\n",
            r.model,
            count(Status::Changed) + count(Status::Gone),
            r.files.len()
        ),
    };
    for f in &r.files {
        match f.status {
            Status::Changed | Status::Gone => out.push_str(&format!(
                "  {}  {}: {}\n",
                f.step,
                f.file,
                f.change.as_deref().unwrap_or("")
            )),
            Status::Unchecked if r.status != Status::Unchecked => out.push_str(&format!(
                "  {}  {}: cannot check: {}\n",
                f.step,
                f.file,
                f.error.as_deref().unwrap_or("")
            )),
            _ => {}
        }
    }
    if matches!(r.status, Status::Changed | Status::Gone) {
        out.push_str(&format!(
            "  `onboard plan {m}` shows what reruns; `onboard run {m}` fetches only the changed files\n",
            m = r.model
        ));
    }
    out
}
