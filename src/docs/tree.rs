//! The workspace's markdown as a tree of files, and a change set laid over
//! it: edits are computed against the change set (which reads its own
//! pending writes), checked, shown in a dry run, and only then applied.

use crate::atomic;
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Component, Path, PathBuf};

/// What is at a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Missing,
}

/// Read access to a tree of files, by workspace-relative path.
pub trait Source {
    /// A file's text (`None` when missing or not UTF-8).
    fn read(&self, rel: &Path) -> Option<String>;
    fn kind(&self, rel: &Path) -> Kind;
    /// Every markdown file in scope, sorted.
    fn markdown_files(&self) -> Vec<PathBuf>;
}

/// Which directories hold the workspace's documentation.
#[derive(Debug, Clone)]
pub struct Scope {
    /// Directories never read: run state, build output, weights.
    pub skip: Vec<PathBuf>,
    /// The weights root (`models/`): its subdirectories are skipped unless
    /// they hold `docs`.
    pub models: PathBuf,
    pub docs: PathBuf,
}

impl Scope {
    pub fn from_paths(paths: &crate::workspace::config::Paths) -> Scope {
        Scope {
            skip: vec![
                PathBuf::from(&paths.state),
                PathBuf::from("target"),
                PathBuf::from("node_modules"),
            ],
            models: PathBuf::from(&paths.models),
            docs: PathBuf::from(&paths.docs),
        }
    }

    fn skips(&self, rel: &Path) -> bool {
        let hidden = rel
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if hidden || self.skip.iter().any(|s| rel == s) {
            return true;
        }
        rel.starts_with(&self.models)
            && rel != self.models
            && !self.docs.starts_with(rel)
            && !rel.starts_with(&self.docs)
    }
}

/// The files on disk under a workspace root.
#[derive(Debug, Clone)]
pub struct Disk {
    pub root: PathBuf,
    pub scope: Scope,
}

impl Disk {
    pub fn new(root: &Path, scope: Scope) -> Disk {
        Disk {
            root: root.to_path_buf(),
            scope,
        }
    }

    fn walk(&self, rel: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(self.root.join(rel)) else {
            return;
        };
        for entry in entries.flatten() {
            let child = rel.join(entry.file_name());
            let Ok(ft) = entry.file_type() else { continue };
            if ft.is_dir() {
                if !self.scope.skips(&child) {
                    self.walk(&child, out);
                }
            } else if ft.is_file() && is_markdown(&child) {
                out.push(child);
            }
        }
    }
}

pub fn is_markdown(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("md" | "markdown")
    )
}

impl Source for Disk {
    fn read(&self, rel: &Path) -> Option<String> {
        std::fs::read_to_string(self.root.join(rel)).ok()
    }
    fn kind(&self, rel: &Path) -> Kind {
        match std::fs::metadata(self.root.join(rel)) {
            Ok(m) if m.is_dir() => Kind::Dir,
            Ok(_) => Kind::File,
            Err(_) => Kind::Missing,
        }
    }
    fn markdown_files(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        self.walk(Path::new(""), &mut out);
        out.sort();
        out
    }
}

/// Pending edits over a [`Disk`]. Reads see the pending state.
#[derive(Debug, Clone)]
pub struct Changeset {
    pub disk: Disk,
    writes: BTreeMap<PathBuf, String>,
    removes: BTreeSet<PathBuf>,
    remove_dirs: BTreeSet<PathBuf>,
}

/// One pending change, for a dry run or a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Create(PathBuf),
    Modify(PathBuf),
    Remove(PathBuf),
    RemoveDir(PathBuf),
}

impl Changeset {
    pub fn new(disk: Disk) -> Changeset {
        Changeset {
            disk,
            writes: BTreeMap::new(),
            removes: BTreeSet::new(),
            remove_dirs: BTreeSet::new(),
        }
    }

    pub fn write(&mut self, rel: &Path, text: String) {
        self.removes.remove(rel);
        self.writes.insert(rel.to_path_buf(), text);
    }

    pub fn remove(&mut self, rel: &Path) {
        self.writes.remove(rel);
        self.removes.insert(rel.to_path_buf());
    }

    /// Removes a whole directory (weights) when applied.
    pub fn remove_dir(&mut self, rel: &Path) {
        self.remove_dirs.insert(rel.to_path_buf());
    }

    fn under_removed_dir(&self, rel: &Path) -> bool {
        self.remove_dirs.iter().any(|d| rel.starts_with(d))
    }

    /// The changes that differ from disk, in path order.
    pub fn changes(&self) -> Vec<Change> {
        let mut out = Vec::new();
        for d in &self.remove_dirs {
            out.push(Change::RemoveDir(d.clone()));
        }
        for (path, text) in &self.writes {
            match self.disk.kind(path) {
                Kind::File => {
                    if self.disk.read(path).as_deref() != Some(text.as_str()) {
                        out.push(Change::Modify(path.clone()));
                    }
                }
                _ => out.push(Change::Create(path.clone())),
            }
        }
        for path in &self.removes {
            if self.disk.kind(path) == Kind::File {
                out.push(Change::Remove(path.clone()));
            }
        }
        out
    }

    /// Paths written or removed (including unchanged writes).
    pub fn touched(&self) -> BTreeSet<PathBuf> {
        self.writes
            .keys()
            .chain(self.removes.iter())
            .cloned()
            .collect()
    }

    /// Writes (atomically, only changed bytes), then removals. Returns the
    /// changes made.
    pub fn apply(&self) -> Result<Vec<Change>, (PathBuf, io::Error)> {
        let changes = self.changes();
        let root = &self.disk.root;
        for (path, text) in &self.writes {
            let abs = root.join(path);
            atomic::write_if_changed(&abs, text.as_bytes()).map_err(|e| (abs.clone(), e))?;
        }
        for path in &self.removes {
            let abs = root.join(path);
            atomic::remove(&abs).map_err(|e| (abs.clone(), e))?;
        }
        for dir in &self.remove_dirs {
            let abs = root.join(dir);
            match std::fs::remove_dir_all(&abs) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err((abs, e)),
            }
        }
        Ok(changes)
    }
}

impl Source for Changeset {
    fn read(&self, rel: &Path) -> Option<String> {
        if let Some(text) = self.writes.get(rel) {
            return Some(text.clone());
        }
        if self.removes.contains(rel) || self.under_removed_dir(rel) {
            return None;
        }
        self.disk.read(rel)
    }
    fn kind(&self, rel: &Path) -> Kind {
        if self.writes.contains_key(rel) {
            return Kind::File;
        }
        if self.writes.keys().any(|w| w.starts_with(rel)) {
            return Kind::Dir;
        }
        if self.removes.contains(rel) || self.under_removed_dir(rel) {
            return Kind::Missing;
        }
        self.disk.kind(rel)
    }
    fn markdown_files(&self) -> Vec<PathBuf> {
        let mut files: BTreeSet<PathBuf> = self
            .disk
            .markdown_files()
            .into_iter()
            .filter(|p| !self.removes.contains(p) && !self.under_removed_dir(p))
            .collect();
        files.extend(self.writes.keys().filter(|p| is_markdown(p)).cloned());
        files.into_iter().collect()
    }
}

/// `..`/`.` resolved; `None` when the path climbs above the root.
pub fn normalize(path: &Path) -> Option<PathBuf> {
    let mut out: Vec<&std::ffi::OsStr> = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                out.pop()?;
            }
        }
    }
    Some(out.iter().collect())
}

/// The relative path from directory `from_dir` to `to` (both relative to
/// the same root, normalised), e.g. `../CANDIDATES/a.md`.
pub fn relative(from_dir: &Path, to: &Path) -> String {
    let from: Vec<_> = from_dir.components().collect();
    let target: Vec<_> = to.components().collect();
    let common = from.iter().zip(&target).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<String> = vec!["..".to_string(); from.len() - common];
    parts.extend(
        target[common..]
            .iter()
            .map(|c| c.as_os_str().to_string_lossy().into_owned()),
    );
    parts.join("/")
}

/// The directory a file's relative links start from.
pub fn dir_of(file: &Path) -> PathBuf {
    file.parent().map(Path::to_path_buf).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_climb_as_needed() {
        assert_eq!(
            relative(Path::new("documentation"), Path::new("documentation/a.md")),
            "a.md"
        );
        assert_eq!(
            relative(
                Path::new("documentation/guides/deep"),
                Path::new("documentation/CANDIDATES/a.md")
            ),
            "../../CANDIDATES/a.md"
        );
        assert_eq!(relative(Path::new(""), Path::new("docs/a.md")), "docs/a.md");
        assert_eq!(
            relative(Path::new("a/b"), Path::new("README.md")),
            "../../README.md"
        );
        assert_eq!(
            normalize(Path::new("a/../b/./c")),
            Some(PathBuf::from("b/c"))
        );
        assert_eq!(normalize(Path::new("../x")), None);
    }
}
