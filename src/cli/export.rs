//! `onboard export-workflow --format argo|github-actions <model>`: the
//! model's workflow for a cluster's or a CI's scheduler.

use super::load;
use super::{error, EXIT_FAILED, EXIT_OK, EXIT_USAGE};
use crate::workflow::export::argo::{self, ArgoOptions};
use crate::workflow::export::github_actions::{self, GithubOptions};
use crate::workflow::export::{ExportError, Target};
use crate::workflow::resources;
use clap::{Args, ValueEnum};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkflowFormat {
    /// An Argo Workflow (or WorkflowTemplate, --template).
    Argo,
    /// A GitHub Actions workflow file for self-hosted runners.
    GithubActions,
}

#[derive(Args, Debug)]
pub struct ExportWorkflowArgs {
    /// The model (a manifest id under models/).
    model: String,
    #[arg(long, value_enum)]
    format: WorkflowFormat,
    /// Export this workflow (a name under workflows/ or a path) instead of
    /// the manifest's or the workspace default; every step's run gets it too.
    #[arg(long, value_name = "NAME|PATH")]
    workflow: Option<String>,
    /// Write the file here (atomically) instead of to stdout.
    #[arg(long, short = 'o', value_name = "FILE")]
    output: Option<PathBuf>,
    /// Argo: the container image, with `onboard` on its PATH.
    #[arg(long, value_name = "IMAGE")]
    image: Option<String>,
    /// Argo: the PersistentVolumeClaim holding the workspace.
    #[arg(long, value_name = "NAME")]
    pvc: Option<String>,
    /// Argo: a WorkflowTemplate (submit it by name) instead of a Workflow.
    #[arg(long)]
    template: bool,
    /// Where the Hub token is: a Kubernetes Secret (Argo, default `hf-token`)
    /// or a repository secret (GitHub Actions, default `HF_TOKEN`). Only its
    /// name is written, never the token.
    #[arg(long, value_name = "NAME")]
    hf_token_secret: Option<String>,
    /// Argo: the key of the token in that Secret.
    #[arg(long, value_name = "KEY", default_value = "token")]
    hf_token_key: String,
    /// GitHub Actions: the workspace directory on the runners' machine.
    #[arg(long, value_name = "DIR")]
    workspace_dir: Option<String>,
    /// GitHub Actions: the labels every job runs on (repeatable).
    #[arg(long, value_name = "LABEL", default_values = ["self-hosted", "linux"])]
    runs_on: Vec<String>,
    /// GitHub Actions: the label added for steps that hold `gpu` (by
    /// default, those that load the model).
    #[arg(long, value_name = "LABEL", default_value = "gpu")]
    gpu_label: String,
}

pub fn execute(dir: &Path, args: &ExportWorkflowArgs) -> i32 {
    let missing = match args.format {
        WorkflowFormat::Argo if args.image.is_none() => Some("--image"),
        WorkflowFormat::Argo if args.pvc.is_none() => Some("--pvc"),
        WorkflowFormat::GithubActions if args.workspace_dir.is_none() => Some("--workspace-dir"),
        _ => None,
    };
    if let Some(flag) = missing {
        error(&format!(
            "--format {} needs {flag}",
            match args.format {
                WorkflowFormat::Argo => "argo",
                WorkflowFormat::GithubActions => "github-actions",
            }
        ));
        return EXIT_USAGE;
    }
    let loaded = match load::for_model(dir, &args.model, args.workflow.as_deref()) {
        Ok(l) => l,
        Err(code) => return code,
    };
    // What each step holds (by default, `gpu` for the kinds that load the
    // model) is the task kinds' knowledge, handed to the engine's exporters
    // as data; so is the machine's capacity, from onboard.yaml.
    let resources: BTreeMap<String, BTreeMap<String, u32>> = loaded
        .workflow
        .steps
        .iter()
        .map(|s| (s.id.clone(), resources::held_by(s, &loaded.registry)))
        .filter(|(_, held)| !held.is_empty())
        .collect();
    let capacity = load::capacity(&loaded.workspace);
    let target = Target {
        workflow: &loaded.workflow,
        model: &loaded.model,
        workflow_arg: args.workflow.as_deref(),
        context: &loaded.context,
        resources: &resources,
        capacity: &capacity,
        gpus: u32::try_from(loaded.workspace.config.hardware.gpus.len()).unwrap_or(u32::MAX),
    };
    let text = match args.format {
        WorkflowFormat::Argo => argo::export(
            &target,
            &ArgoOptions {
                image: args.image.clone().unwrap_or_default(),
                pvc: args.pvc.clone().unwrap_or_default(),
                secret: args
                    .hf_token_secret
                    .clone()
                    .unwrap_or_else(|| "hf-token".into()),
                secret_key: args.hf_token_key.clone(),
                template: args.template,
            },
        ),
        WorkflowFormat::GithubActions => github_actions::export(
            &target,
            &GithubOptions {
                workspace_dir: args.workspace_dir.clone().unwrap_or_default(),
                runs_on: args.runs_on.clone(),
                gpu_label: args.gpu_label.clone(),
                secret: args
                    .hf_token_secret
                    .clone()
                    .unwrap_or_else(|| "HF_TOKEN".into()),
            },
        ),
    };
    let text = match text {
        Ok(t) => t,
        Err(e @ ExportError::Invalid { .. }) => {
            error(&e.to_string());
            return EXIT_USAGE;
        }
        Err(e) => {
            error(&e.to_string());
            return EXIT_FAILED;
        }
    };
    match &args.output {
        None => {
            print!("{text}");
            EXIT_OK
        }
        Some(path) => {
            let path = &super::relative_to(dir, path);
            let written = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|()| crate::atomic::write(path, text.as_bytes()));
            match written {
                Ok(()) => EXIT_OK,
                Err(e) => {
                    error(&format!("cannot write {}: {e}", path.display()));
                    EXIT_FAILED
                }
            }
        }
    }
}
