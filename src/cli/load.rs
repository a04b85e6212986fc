//! Opening what a model's run needs: the workspace, the manifest, the
//! workflow (checked), and the state store.

use super::{error, EXIT_FAILED, EXIT_USAGE};
use crate::source::{Diagnostic, Document};
use crate::tasks::Registry;
use crate::workflow::resources;
use crate::workflow::spec::Workflow;
use crate::workflow::state::StateStore;
use crate::workflow::validate::{check_resources, check_workflow};
use crate::workspace::{self, Manifest, ManifestError, Workspace};
use serde_json::{Map, Value};
use std::path::Path;

pub struct Loaded {
    pub workspace: Workspace,
    pub model: String,
    pub workflow: Workflow,
    pub registry: Registry,
    pub store: StateStore,
    pub context: Map<String, Value>,
    /// The typed form of `context`'s workspace and manifest, for the tasks.
    pub settings: std::sync::Arc<workspace::RunSettings>,
}

pub fn print_diagnostics(diags: &[Diagnostic]) {
    for d in diags {
        let source = std::fs::read_to_string(&d.file).ok();
        eprintln!("{}\n", d.render(source.as_deref()));
    }
}

pub fn open_workspace(dir: &Path) -> Result<Workspace, i32> {
    Workspace::open(dir).map_err(|diags| {
        print_diagnostics(&diags);
        if diags.iter().all(|d| d.code == "workspace") {
            EXIT_USAGE
        } else {
            EXIT_FAILED
        }
    })
}

/// Loads a workflow by name or path and checks it.
pub fn workflow(ws: &Workspace, registry: &Registry, name: &str) -> Result<Workflow, i32> {
    let path = ws.workflow_path(name);
    if !path.exists() {
        let known: Vec<String> = workspace::yaml_files(&ws.workflows_dir())
            .iter()
            .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
            .collect();
        error(&format!(
            "no workflow `{name}`: {} does not exist (workflows: {})",
            path.display(),
            if known.is_empty() {
                "none".into()
            } else {
                known.join(", ")
            }
        ));
        return Err(EXIT_USAGE);
    }
    let doc = Document::read(&path).map_err(|d| {
        print_diagnostics(&[d]);
        EXIT_FAILED
    })?;
    let (workflow, mut diags) = check_workflow(&doc, registry, &workspace::template_roots().into());
    diags.extend(check_resources(&doc, &capacity(ws)));
    let workflow = workflow.filter(|_| diags.is_empty());
    match workflow {
        Some(w) => Ok(w),
        None => {
            print_diagnostics(&diags);
            error(&format!(
                "{} has {} problem(s); fix them (see `onboard validate`)",
                path.display(),
                diags.len()
            ));
            Err(EXIT_FAILED)
        }
    }
}

pub fn manifest(ws: &Workspace, model: &str) -> Result<Manifest, i32> {
    ws.load_manifest(model).map_err(|e| match e {
        ManifestError::Invalid(diags) => {
            print_diagnostics(&diags);
            EXIT_FAILED
        }
        other @ ManifestError::NotFound { .. } => {
            let hint = super::suggest::model(ws, model)
                .map(|h| format!("; {h}"))
                .unwrap_or_default();
            error(&format!("{other}{hint}"));
            EXIT_USAGE
        }
        other => {
            error(&other.to_string());
            EXIT_USAGE
        }
    })
}

pub fn for_model(dir: &Path, model: &str, workflow_override: Option<&str>) -> Result<Loaded, i32> {
    let ws = open_workspace(dir)?;
    let manifest = manifest(&ws, model)?;
    let registry = Registry::builtin();
    let name = workflow_override
        .map(str::to_string)
        .or_else(|| manifest.workflow.clone())
        .unwrap_or_else(|| ws.config.defaults.workflow.clone());
    let workflow = workflow(&ws, &registry, &name)?;
    let store = StateStore::new(&ws.state_dir(), model);
    let context = ws.template_context(model, &manifest);
    let settings = std::sync::Arc::new(workspace::RunSettings {
        config: ws.config.clone(),
        manifest,
    });
    Ok(Loaded {
        model: model.to_string(),
        workflow,
        registry,
        store,
        context,
        settings,
        workspace: ws,
    })
}

/// The machine's resources as this workspace declares them: the default
/// (`gpu: 1`) with `resources:` of onboard.yaml over it.
pub fn capacity(ws: &Workspace) -> std::collections::BTreeMap<String, u32> {
    capacity_of(&ws.config)
}

/// [`capacity`] of a workspace configuration.
pub fn capacity_of(
    config: &crate::workspace::config::WorkspaceConfig,
) -> std::collections::BTreeMap<String, u32> {
    let mut capacity = resources::default_capacity();
    if let Some(declared) = &config.resources {
        capacity.extend(declared.iter().map(|(k, v)| (k.clone(), *v)));
    }
    capacity
}

/// The machine-wide resource locks (`$ONBOARD_LOCK_DIR` or a per-user
/// default) with this workspace's amounts.
pub fn resource_pool(ws: &Workspace) -> resources::Pool {
    resources::Pool::new(resources::default_lock_dir(), capacity(ws), &ws.root)
}

/// Manifests whose card waits in the docs' `CANDIDATES/` folder, by id.
pub fn candidates(ws: &Workspace) -> Vec<String> {
    let dir = ws
        .path(&ws.config.paths.docs)
        .join(crate::docs::catalog::CANDIDATES);
    let mut ids: Vec<String> = ws
        .manifest_ids()
        .into_iter()
        .filter(|id| {
            ws.load_manifest(id)
                .is_ok_and(|m| dir.join(crate::docs::catalog::card_name(&m)).is_file())
        })
        .collect();
    ids.sort();
    ids
}
