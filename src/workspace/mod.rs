//! The user's workspace: `onboard.yaml` (the machine and the layout) and the
//! model manifests under `models/`. Workflows read these; they never write them.

pub mod config;
pub mod manifest;

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
        return Err(format!("`{relative}` is absolute; give a path relative to the workspace"));
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
