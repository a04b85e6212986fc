//! `uses: download` — phase 2: the chosen files from the Hub into the
//! workspace layout (`models/<Family>/<Dense|MoE>/<size>/<quant>/`),
//! resumable across restarts, verified (size and sha256) before each file
//! gets its final name, with a free-disk check first.

use super::{Task, TaskContext, TaskError, TransferProgress, WorkspaceContext};
use crate::hub::disk::{check_joint_fit, JointDiskError, PlannedDownload};
pub use crate::hub::disk::{DownloadOutputs, DownloadedFile};
use crate::hub::{
    self, flat_name, DownloadOptions, FileRequest, HubClient, Progress, ProgressEvent,
};
use crate::workspace::config::ReplacedFiles;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

pub struct Download;

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DownloadParams {
    /// `owner/name` on the Hub (or the mirror `HF_ENDPOINT` points at).
    pub repo: String,
    #[serde(default = "crate::hub::default_revision")]
    pub revision: String,
    /// Repo paths of the files, e.g. every shard of the chosen quant.
    pub files: Vec<String>,
    /// Destination directory under the workspace's models directory.
    pub dest: String,
    /// Range requests in flight per file.
    #[serde(default = "default_parallel")]
    #[schemars(range(min = 1, max = 32))]
    pub parallel: usize,
    /// The files' total size as the Hub states it (evaluate's
    /// `total_bytes`): the disk check of a run over several models adds
    /// these up before the first byte is fetched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_bytes: Option<u64>,
}

fn default_parallel() -> usize {
    4
}

/// Hands the downloader's progress to the engine, which passes it to the
/// CLI (a bar on a terminal, periodic lines otherwise, JSON with `--json`).
struct StepProgress {
    ctx: TaskContext,
}

impl Progress for StepProgress {
    fn event(&self, event: &ProgressEvent<'_>) {
        self.ctx.progress(&TransferProgress::from(event));
    }
}

/// The downloader's error as the step's: transient trouble (network, 429,
/// 5xx) may pass on a retry of the step; a full disk, a missing file or a
/// wrong hash will not, so the step fails at once with the message.
fn task_error(e: &hub::HubError) -> TaskError {
    let mut message = crate::secrets::redact(&e.to_string());
    if matches!(
        e,
        hub::HubError::DiskFull { .. } | hub::HubError::NoSpace { .. }
    ) {
        message.push_str(
            " (the weights go under `paths.models` of onboard.yaml: point it at a larger disk if this one cannot be freed)",
        );
    }
    TaskError::Failed {
        message,
        retryable: e.is_transient(),
    }
}

impl Task for Download {
    const KIND: &'static str = "download";
    const VERSION: u32 = 1;
    const SUMMARY: &'static str = "Download and verify the model's files into the workspace layout";
    // Every model's download waits for every model's evaluation, then the
    // sizes are summed against the disk.
    const CHECKS_BATCH: bool = true;
    type Params = DownloadParams;
    type Outputs = DownloadOutputs;

    fn check_batch(
        &self,
        batch: &[(String, DownloadParams)],
        ctx: &TaskContext,
    ) -> Result<(), TaskError> {
        let models_dir = ctx.path(&ctx.paths().models)?;
        let mut planned = Vec::new();
        for (model, params) in batch {
            let Some(expected_bytes) = params.expected_bytes else {
                continue;
            };
            planned.push(PlannedDownload {
                model,
                dest: crate::workspace::resolve_inside(&models_dir, &params.dest)
                    .map_err(TaskError::Params)?,
                files: &params.files,
                expected_bytes,
            });
        }
        let margin = DownloadOptions::default().disk_margin;
        check_joint_fit(&planned, margin, &models_dir).map_err(|e| match e {
            JointDiskError::Io { path, source } => TaskError::io(&path, source),
            e => TaskError::Failed {
                message: e.to_string(),
                retryable: false,
            },
        })
    }

    fn output_files(
        &self,
        params: &DownloadParams,
        ctx: &TaskContext,
    ) -> Result<Vec<PathBuf>, TaskError> {
        let dest = ctx.path(&ctx.paths().models)?.join(&params.dest);
        params
            .files
            .iter()
            .map(|f| {
                crate::workspace::resolve_inside(&dest, flat_name(f)).map_err(TaskError::Params)
            })
            .collect()
    }

    fn out_of_date(
        &self,
        params: &DownloadParams,
        ctx: &TaskContext,
    ) -> Result<Option<String>, TaskError> {
        let dest = crate::workspace::resolve_inside(&ctx.path(&ctx.paths().models)?, &params.dest)
            .map_err(TaskError::Params)?;
        // A file that is gone or edited since is the output check's to
        // report; only files still as verified are compared.
        let had: Vec<(String, hub::upstream::Identity)> = params
            .files
            .iter()
            .filter_map(|f| Some((f.clone(), hub::verified_identity(&dest, flat_name(f))?)))
            .collect();
        super::upstream_changed(ctx, &params.repo, &params.revision, &had)
    }

    async fn run(
        &self,
        params: DownloadParams,
        ctx: TaskContext,
    ) -> Result<DownloadOutputs, TaskError> {
        if params.files.is_empty() {
            return Err(TaskError::Params("no files to download".into()));
        }
        let models_dir = ctx.path(&ctx.paths().models)?;
        let dest_dir = crate::workspace::resolve_inside(&models_dir, &params.dest)
            .map_err(TaskError::Params)?;
        let requests: Vec<FileRequest> = params
            .files
            .iter()
            .map(|f| {
                let mut r = FileRequest::new(&params.repo, &params.revision, f, &dest_dir);
                // Shards live flat in the quant directory, whatever the repo's folders.
                r.dest_name = Some(flat_name(f).to_string());
                r
            })
            .collect();
        let keep_replaced =
            ctx.run_settings()?.config.defaults.replaced_files == ReplacedFiles::Keep;
        let options = DownloadOptions {
            parallel: params.parallel,
            cancel: ctx.cancel.clone(),
            keep_replaced,
            ..DownloadOptions::default()
        };
        let progress = StepProgress { ctx: ctx.clone() };
        let results = tokio::task::spawn_blocking(move || {
            let client = HubClient::from_env();
            hub::download_files(&client, &requests, &options, &progress)
        })
        .await
        .map_err(|e| TaskError::failed(format!("the download thread failed: {e}")))?
        .map_err(|e| task_error(&e))?;
        // Only a note: the files are verified whatever it says, so a record
        // that cannot be written is logged, not fatal.
        let noted = ctx.state_dir().map_err(|e| e.to_string()).and_then(|dir| {
            hub::upstream::note_download(
                &dir,
                &params.repo,
                &params.revision,
                &params.files,
                &dest_dir,
            )
            .map_err(|e| e.to_string())
        });
        if let Err(e) = noted {
            ctx.log(&format!("the upstream record was not updated: {e}"));
        }
        for kept in results.iter().filter_map(|d| d.kept.as_ref()) {
            ctx.log(&format!(
                "the replaced file stays as {} (`defaults.replaced_files: keep`); `onboard retire --advise` lists it",
                kept.strip_prefix(&models_dir).unwrap_or(kept).display()
            ));
        }
        Ok(DownloadOutputs::new(&results, &models_dir))
    }
}
