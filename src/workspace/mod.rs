//! The user's workspace: `onboard.yaml` (the machine and the layout) and the
//! model manifests under `models/`. Workflows read these; they never write them.

pub mod config;
pub mod manifest;
pub mod markdown;
pub mod models_conf;

pub use config::WorkspaceConfig;
pub use manifest::Manifest;

use std::path::{Component, Path, PathBuf};

/// Joins a user-supplied relative path to `root`, refusing absolute paths and
/// `..` components so that nothing lands outside the workspace.
pub fn resolve_inside(root: &Path, relative: &str) -> Result<PathBuf, String> {
    let rel = Path::new(relative);
    if relative.is_empty() {
        return Err("the path is empty".into());
    }
    if rel.is_absolute() {
        return Err(format!(
            "`{relative}` is absolute; give a path relative to the workspace"
        ));
    }
    for component in rel.components() {
        match component {
            Component::Normal(_) | Component::CurDir => {}
            _ => {
                return Err(format!(
                    "`{relative}` leaves the workspace (`..` is not allowed)"
                ))
            }
        }
    }
    Ok(root.join(rel))
}

use crate::source::yaml::Pos;
use crate::source::Diagnostic;
use crate::source::Document;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The name of the workspace configuration file at the workspace root.
pub const CONFIG_FILE: &str = "onboard.yaml";

/// An opened workspace: its root and configuration.
#[derive(Debug, Clone)]
pub struct Workspace {
    /// Absolute.
    pub root: PathBuf,
    pub config: WorkspaceConfig,
}

/// Locks the files every model shares (the docs tables, the benchmarks
/// README) under the state directory `state`, until the returned file is
/// dropped. Each step that rewrites them regenerates them from the whole
/// workspace, so two models onboarding at once must take turns, or the
/// slower one writes back a table that lacks the faster one. The error
/// names the lock file.
pub fn lock_shared_files(state: &Path) -> Result<std::fs::File, (PathBuf, std::io::Error)> {
    let path = state.join(".shared-files.lock");
    let open = || -> std::io::Result<std::fs::File> {
        std::fs::create_dir_all(state)?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        file.lock()?;
        Ok(file)
    };
    open().map_err(|e| (path.clone(), e))
}

/// The typed settings of one model's run, parsed once when the run is
/// loaded (errors reported there, with their place in the file), so a task
/// reads fields instead of digging through template values.
#[derive(Debug, Clone)]
pub struct RunSettings {
    pub config: WorkspaceConfig,
    pub manifest: Manifest,
}

impl Workspace {
    /// Opens `root`; a missing `onboard.yaml` means all defaults.
    pub fn open(root: &Path) -> Result<Workspace, Vec<Diagnostic>> {
        let root = std::fs::canonicalize(root).map_err(|e| {
            vec![Diagnostic::new(
                root,
                Pos { line: 1, col: 1 },
                "workspace",
                format!("cannot open the workspace directory: {e}"),
            )]
        })?;
        let path = root.join(CONFIG_FILE);
        let config = if path.exists() {
            let doc = Document::read(&path).map_err(|d| vec![d])?;
            let (config, diags) = check_config(&doc);
            match config {
                Some(c) if diags.is_empty() => c,
                _ => return Err(diags),
            }
        } else {
            WorkspaceConfig::default()
        };
        Ok(Workspace { root, config })
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.root.join(relative)
    }

    pub fn models_dir(&self) -> PathBuf {
        self.path(&self.config.paths.models)
    }

    pub fn workflows_dir(&self) -> PathBuf {
        self.path(&self.config.paths.workflows)
    }

    pub fn state_dir(&self) -> PathBuf {
        self.path(&self.config.paths.state)
    }

    pub fn manifest_path(&self, id: &str) -> PathBuf {
        self.models_dir().join(format!("{id}.yaml"))
    }

    /// Ids of every manifest in the workspace, sorted.
    pub fn manifest_ids(&self) -> Vec<String> {
        yaml_files(&self.models_dir())
            .iter()
            .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
            .collect()
    }

    /// A workflow by name (`workflows/<name>.yaml`) or by path.
    pub fn workflow_path(&self, name_or_path: &str) -> PathBuf {
        if name_or_path.ends_with(".yaml")
            || name_or_path.ends_with(".yml")
            || name_or_path.contains('/')
        {
            self.root.join(name_or_path)
        } else {
            self.workflows_dir().join(format!("{name_or_path}.yaml"))
        }
    }

    /// Loads and checks the manifest of model `id`.
    pub fn load_manifest(&self, id: &str) -> Result<Manifest, ManifestError> {
        valid_model_id(id).map_err(ManifestError::BadId)?;
        let path = self.manifest_path(id);
        if !path.exists() {
            return Err(ManifestError::NotFound {
                id: id.to_string(),
                path,
                known: self.manifest_ids(),
            });
        }
        let doc = Document::read(&path).map_err(|d| ManifestError::Invalid(vec![d]))?;
        let (manifest, diags) = check_manifest(&doc);
        match manifest {
            Some(m) if diags.is_empty() => Ok(m),
            _ => Err(ManifestError::Invalid(diags)),
        }
    }

    /// The values templates read besides `steps`.
    pub fn template_context(&self, model: &str, manifest: &Manifest) -> Map<String, Value> {
        let mut workspace = serde_json::to_value(&self.config).unwrap_or(Value::Null);
        if let Value::Object(map) = &mut workspace {
            map.insert(
                "root".into(),
                Value::String(self.root.to_string_lossy().into_owned()),
            );
        }
        let mut ctx = Map::new();
        ctx.insert("model".into(), Value::String(model.to_string()));
        ctx.insert(
            "manifest".into(),
            serde_json::to_value(manifest).unwrap_or(Value::Null),
        );
        ctx.insert("workspace".into(), workspace);
        ctx
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{0}")]
    BadId(String),
    #[error("no manifest for `{id}`: {} does not exist{}", path.display(), known_list(known))]
    NotFound {
        id: String,
        path: PathBuf,
        known: Vec<String>,
    },
    #[error("the manifest has {} problem(s)", .0.len())]
    Invalid(Vec<Diagnostic>),
}

fn known_list(known: &[String]) -> String {
    if known.is_empty() {
        "; the workspace has no manifests yet".into()
    } else {
        format!("; known models: {}", known.join(", "))
    }
}

/// Model ids name files and state directories: keep them plain.
pub fn valid_model_id(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{id}` is not a model id: use letters, digits, `.`, `-` and `_` (e.g. `qwen3.5-35b-a3b`)"
        ))
    }
}

/// What workflow templates may read (`model`, `manifest.*`, `workspace.*`)
/// and the schema of each, for `validate` to check references against.
pub fn template_roots() -> BTreeMap<String, Option<Value>> {
    let manifest = serde_json::to_value(schemars::schema_for!(Manifest)).ok();
    let mut workspace = serde_json::to_value(schemars::schema_for!(WorkspaceConfig)).ok();
    if let Some(props) = workspace
        .as_mut()
        .and_then(|w| w.get_mut("properties"))
        .and_then(Value::as_object_mut)
    {
        props.insert("root".into(), serde_json::json!({"type": "string"}));
    }
    BTreeMap::from([
        (
            "model".to_string(),
            Some(serde_json::json!({"type": "string"})),
        ),
        ("manifest".to_string(), manifest),
        ("workspace".to_string(), workspace),
    ])
}

/// `*.yaml` / `*.yml` files directly in `dir`, sorted.
pub fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.is_file() && matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
        })
        .collect();
    files.sort();
    files
}

/// Checks a manifest document: its schema, and that its id matches its
/// file name (the id on the command line finds the file).
pub fn check_manifest(doc: &Document) -> (Option<Manifest>, Vec<Diagnostic>) {
    let mut diags = Vec::new();
    let manifest: Option<Manifest> = doc.typed(&mut diags);
    if let Some(m) = &manifest {
        let stem = doc
            .path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let id_node = doc.root.get("id");
        let span = id_node.map_or(doc.root.span, |n| n.span);
        if let Err(e) = valid_model_id(&m.id) {
            diags.push(Diagnostic::at(&doc.path, &doc.source, span, "model-id", e));
        } else if m.id != stem {
            diags.push(
                Diagnostic::at(
                    &doc.path,
                    &doc.source,
                    span,
                    "model-id",
                    format!(
                        "manifest id `{}` does not match its file name `{stem}.yaml`",
                        m.id
                    ),
                )
                .with_help(format!(
                    "rename the file to `{}.yaml` or set `id: {stem}`",
                    m.id
                )),
            );
        }
        if !m.hub.repo.contains('/') || m.hub.repo.split('/').count() != 2 {
            let span = doc
                .root
                .get("hub")
                .and_then(|h| h.get("repo"))
                .map_or(doc.root.span, |n| n.span);
            diags.push(
                Diagnostic::at(
                    &doc.path,
                    &doc.source,
                    span,
                    "hub-repo",
                    format!("`{}` is not a Hub repo id", m.hub.repo),
                )
                .with_help("write it as `owner/name`, e.g. `unsloth/Qwen3.5-35B-A3B-GGUF`"),
            );
        }
    }
    (manifest.filter(|_| diags.is_empty()), diags)
}

pub fn check_config(doc: &Document) -> (Option<WorkspaceConfig>, Vec<Diagnostic>) {
    let mut diags = Vec::new();
    let config: Option<WorkspaceConfig> = doc.typed(&mut diags);
    if let Some(c) = &config {
        for (key, value) in [
            ("models", &c.paths.models),
            ("workflows", &c.paths.workflows),
            ("docs", &c.paths.docs),
            ("models_conf", &c.paths.models_conf),
            ("state", &c.paths.state),
        ] {
            if let Err(e) = resolve_inside(Path::new("."), value) {
                let span = doc
                    .root
                    .get("paths")
                    .and_then(|p| p.get(key))
                    .map_or(doc.root.span, |n| n.span);
                diags.push(Diagnostic::at(
                    &doc.path,
                    &doc.source,
                    span,
                    "path",
                    format!("`paths.{key}`: {e}"),
                ));
            }
        }
    }
    (config.filter(|_| diags.is_empty()), diags)
}
