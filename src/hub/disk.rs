//! Where downloaded files land, whether one run's downloads fit the disks
//! they land on together, and what the download step reports of them.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A repo file's name in its quant directory: shards live flat there,
/// whatever the repo's folders.
pub fn flat_name(repo_path: &str) -> &str {
    repo_path.rsplit('/').next().unwrap_or(repo_path)
}

/// One model's downloads in a run: the bytes the Hub states for its files
/// and where they go.
pub struct PlannedDownload<'a> {
    pub model: &'a str,
    pub dest: PathBuf,
    pub files: &'a [String],
    pub expected_bytes: u64,
}

/// What a run's downloads need on one file system.
struct DiskDemand {
    device: u64,
    free: u64,
    /// (model, bytes still to write)
    models: Vec<(String, u64)>,
}

/// Refuses a run whose downloads, added up per file system, do not fit it
/// (with `margin` to spare), before the first byte is fetched. One model
/// alone is the downloader's own check; this catches several models that
/// each fit but not together. `shown_dir` names the disk in the message.
pub fn check_joint_fit(
    planned: &[PlannedDownload<'_>],
    margin: u64,
    shown_dir: &Path,
) -> Result<(), JointDiskError> {
    let mut demand: Vec<DiskDemand> = Vec::new();
    for p in planned {
        let names: Vec<&str> = p.files.iter().map(|f| flat_name(f)).collect();
        let claimed = super::bytes_on_disk(&p.dest, &names);
        let (free, device) =
            super::free_space_for(&p.dest).map_err(|source| JointDiskError::Io {
                path: p.dest.clone(),
                source,
            })?;
        let need = p.expected_bytes.saturating_sub(claimed);
        match demand.iter_mut().find(|d| d.device == device) {
            Some(d) => d.models.push((p.model.to_string(), need)),
            None => demand.push(DiskDemand {
                device,
                free,
                models: vec![(p.model.to_string(), need)],
            }),
        }
    }
    for d in &demand {
        let needed: u64 = d.models.iter().map(|(_, n)| *n).sum();
        if d.models.len() > 1 && needed.saturating_add(margin) > d.free {
            return Err(JointDiskError::TooSmall(refusal(
                d, needed, margin, shown_dir,
            )));
        }
    }
    Ok(())
}

fn refusal(d: &DiskDemand, needed: u64, margin: u64, dir: &Path) -> String {
    let gb = |b: u64| format!("{:.1} GB", b as f64 / 1e9);
    let parts: Vec<String> = d
        .models
        .iter()
        .map(|(m, n)| format!("{m} {}", gb(*n)))
        .collect();
    format!(
        "not enough free disk space for this run's {} downloads on the disk holding {}: {} = {} needed (plus a {} margin), {} available; nothing was downloaded. Free space there, point `paths.models` of onboard.yaml at a larger disk, or onboard fewer models at once",
        d.models.len(),
        dir.display(),
        parts.join(" + "),
        gb(needed),
        gb(margin),
        gb(d.free),
    )
}

#[derive(Debug, thiserror::Error)]
pub enum JointDiskError {
    #[error("{0}")]
    TooSmall(String),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct DownloadedFile {
    /// Relative to the models directory.
    pub path: String,
    pub size: u64,
    pub sha256: String,
    /// `downloaded`, `resumed`, `present` or `hf-cache`.
    pub how: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct DownloadOutputs {
    pub files: Vec<DownloadedFile>,
    /// The first file, relative to the models directory (`MODEL=`).
    pub model_file: String,
    pub total_bytes: u64,
    /// Bytes that came over the network in this run.
    pub fetched_bytes: u64,
}

impl DownloadOutputs {
    /// The report of `results`, paths relative to `models_dir`.
    pub fn new(results: &[super::Downloaded], models_dir: &Path) -> DownloadOutputs {
        let files: Vec<DownloadedFile> = results
            .iter()
            .map(|d| DownloadedFile {
                path: d
                    .path
                    .strip_prefix(models_dir)
                    .unwrap_or(&d.path)
                    .to_string_lossy()
                    .into_owned(),
                size: d.size,
                sha256: d.sha256.clone(),
                how: d.outcome.label().to_string(),
            })
            .collect();
        DownloadOutputs {
            model_file: files.first().map(|f| f.path.clone()).unwrap_or_default(),
            total_bytes: results.iter().map(|d| d.size).sum(),
            fetched_bytes: results.iter().map(|d| d.fetched).sum(),
            files,
        }
    }
}
