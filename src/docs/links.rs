//! Checking relative links and anchors, and rewriting links when a file
//! moves (links *to* it from everywhere, and links *inside* it whose base
//! directory changed). Rewrites replace destination bytes only.

use super::scan::{self, Link, LinkKind};
use super::tree::{dir_of, normalize, relative, Changeset, Kind, Source};
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A destination split into its path and the `?query#fragment` after it.
pub fn split_dest(dest: &str) -> (&str, &str) {
    match dest.find(['#', '?']) {
        Some(i) => (&dest[..i], &dest[i..]),
        None => (dest, ""),
    }
}

/// `https:`, `mailto:`, `//host`: not a file in the workspace.
pub fn is_external(dest: &str) -> bool {
    if dest.starts_with("//") {
        return true;
    }
    match dest.split_once(':') {
        Some((scheme, _)) => {
            scheme.len() >= 2
                && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '.' | '-'))
        }
        None => false,
    }
}

/// `%20` and friends decoded (invalid sequences kept as written).
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && b[i + 1].is_ascii_hexdigit()
            && b[i + 2].is_ascii_hexdigit()
        {
            let hex = |c: u8| (c as char).to_digit(16).unwrap_or(0) as u8;
            out.push(hex(b[i + 1]) * 16 + hex(b[i + 2]));
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|_| s.to_string())
}

/// The workspace path a link path in `file` points at; `None` when it
/// climbs out of the workspace.
pub fn resolve(file: &Path, path: &str) -> Option<PathBuf> {
    let decoded = percent_decode(path);
    match decoded.strip_prefix('/') {
        Some(rooted) => normalize(Path::new(rooted)),
        None => normalize(&dir_of(file).join(decoded)),
    }
}

/// Why a link is broken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Problem {
    /// The file (or directory) does not exist.
    MissingFile,
    /// The page exists but has no such heading or anchor.
    MissingAnchor,
    /// The path climbs above the workspace root.
    OutsideWorkspace,
}

/// A broken link, where it is, and how to fix it.
#[derive(Debug, Clone, Serialize)]
pub struct Broken {
    pub file: PathBuf,
    pub line: usize,
    pub col: usize,
    pub dest: String,
    pub problem: Problem,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
}

impl std::fmt::Display for Broken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:{}: broken link `{}`: {}",
            self.file.display(),
            self.line,
            self.col,
            self.dest,
            self.message
        )?;
        if let Some(help) = &self.help {
            write!(f, "\n  = help: {help}")?;
        }
        Ok(())
    }
}

/// What a link check found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub files: usize,
    pub links: usize,
    pub broken: Vec<Broken>,
}

/// Checks every relative link and anchor in the tree's markdown.
pub fn check(src: &impl Source) -> Report {
    let files = src.markdown_files();
    let mut anchors: HashMap<PathBuf, Vec<String>> = HashMap::new();
    let mut report = Report {
        files: files.len(),
        ..Report::default()
    };
    for file in &files {
        let Some(text) = src.read(file) else { continue };
        let scanned = scan::scan(&text);
        anchors
            .entry(file.clone())
            .or_insert_with(|| scanned.anchors());
        for link in &scanned.links {
            if link.dest.is_empty() || is_external(&link.dest) {
                continue;
            }
            report.links += 1;
            if let Some(b) = check_link(src, &files, &mut anchors, file, link) {
                report.broken.push(b);
            }
        }
    }
    report
}

fn check_link(
    src: &impl Source,
    files: &[PathBuf],
    anchors: &mut HashMap<PathBuf, Vec<String>>,
    file: &Path,
    link: &Link,
) -> Option<Broken> {
    let (path, suffix) = split_dest(&link.dest);
    let fragment = suffix.split_once('#').map(|(_, f)| percent_decode(f));
    let broken = |problem, message: String, help: Option<String>| Broken {
        file: file.to_path_buf(),
        line: link.line,
        col: link.col,
        dest: link.dest.clone(),
        problem,
        message,
        help,
    };
    let target = if path.is_empty() {
        file.to_path_buf()
    } else {
        match resolve(file, path) {
            Some(t) => t,
            None => {
                return Some(broken(
                    Problem::OutsideWorkspace,
                    "the path climbs above the workspace root".into(),
                    Some("remove a `../`".into()),
                ))
            }
        }
    };
    match src.kind(&target) {
        Kind::Missing => {
            let name = target.file_name().map(|n| n.to_os_string());
            let same_name: Vec<&PathBuf> = files
                .iter()
                .filter(|f| name.is_some() && f.file_name() == name.as_deref())
                .collect();
            let help = match same_name.as_slice() {
                [one] => Some(format!(
                    "`{}` exists; link to `{}{}`",
                    one.display(),
                    relative(&dir_of(file), one),
                    suffix
                )),
                _ => Some(format!(
                    "create `{}` or correct the path (it is relative to `{}`)",
                    target.display(),
                    if dir_of(file).as_os_str().is_empty() {
                        ".".to_string()
                    } else {
                        dir_of(file).display().to_string()
                    }
                )),
            };
            Some(broken(
                Problem::MissingFile,
                format!("`{}` does not exist", target.display()),
                help,
            ))
        }
        Kind::Dir => None,
        Kind::File => {
            let fragment = fragment.filter(|f| !f.is_empty())?;
            if !super::tree::is_markdown(&target) {
                return None;
            }
            let list = anchors.entry(target.clone()).or_insert_with(|| {
                src.read(&target)
                    .map(|t| scan::scan(&t).anchors())
                    .unwrap_or_default()
            });
            if list.contains(&fragment) {
                return None;
            }
            let suggestion = crate::source::diag::did_you_mean(
                &fragment.to_lowercase(),
                list.iter().map(String::as_str),
            )
            .map(|s| format!("did you mean `#{s}`?"))
            .or_else(|| {
                (!list.is_empty()).then(|| {
                    let shown: Vec<String> =
                        list.iter().take(8).map(|a| format!("`#{a}`")).collect();
                    format!("anchors in `{}`: {}", target.display(), shown.join(", "))
                })
            });
            Some(broken(
                Problem::MissingAnchor,
                format!("`{}` has no heading `#{fragment}`", target.display()),
                suggestion,
            ))
        }
    }
}

/// One rewritten link destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LinkEdit {
    /// The file as it is after the move.
    pub file: PathBuf,
    pub line: usize,
    pub old: String,
    pub new: String,
}

#[derive(Debug, thiserror::Error)]
pub enum MoveError {
    #[error("{}: cannot move it: the file does not exist", .0.display())]
    Missing(PathBuf),
    #[error("cannot move {} to {}: the destination exists with other content; keep one of the two (delete the other) and run again", from.display(), to.display())]
    Exists { from: PathBuf, to: PathBuf },
}

/// Writes a destination in the style of the one it replaces.
/// Root-relative (`/docs/a.md`) links stay root-relative.
fn format_dest(original: &Link, base: &Path, target: &Path, suffix: &str) -> String {
    let mut path = if original.dest.starts_with('/') {
        format!("/{}", relative(Path::new(""), target))
    } else {
        relative(base, target)
    };
    if !original.angle {
        path = path.replace(' ', "%20");
    }
    format!("{path}{suffix}")
}

fn apply_edits(text: &str, edits: &[(usize, usize, String)]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (s, e, new) in edits {
        out.push_str(&text[at..*s]);
        out.push_str(new);
        at = *e;
    }
    out.push_str(&text[at..]);
    out
}

fn is_rewritable(link: &Link) -> bool {
    matches!(
        link.kind,
        LinkKind::Inline | LinkKind::Image | LinkKind::Definition
    ) && !link.dest.is_empty()
        && !is_external(&link.dest)
}

/// Moves markdown file `from` to `to` in the change set and rewrites every
/// link that pointed at `from`, and every relative link inside it whose
/// base changed. All other bytes stay as they were. Returns the edits.
pub fn move_file(cs: &mut Changeset, from: &Path, to: &Path) -> Result<Vec<LinkEdit>, MoveError> {
    let text = cs
        .read(from)
        .ok_or_else(|| MoveError::Missing(from.to_path_buf()))?;
    let mut log = Vec::new();

    // Links inside the moved file: same targets, new base.
    let mut edits = Vec::new();
    for link in scan::scan(&text).links.iter().filter(|l| is_rewritable(l)) {
        let (path, suffix) = split_dest(&link.dest);
        if path.is_empty() || path.starts_with('/') {
            continue;
        }
        let Some(target) = resolve(from, path) else {
            continue;
        };
        let target = if target == from {
            to.to_path_buf()
        } else {
            target
        };
        if resolve(to, path).as_deref() == Some(target.as_path()) {
            continue;
        }
        let new = format_dest(link, &dir_of(to), &target, suffix);
        log.push(LinkEdit {
            file: to.to_path_buf(),
            line: link.line,
            old: link.dest.clone(),
            new: new.clone(),
        });
        edits.push((link.start, link.end, new));
    }
    let moved = apply_edits(&text, &edits);
    if to != from && cs.kind(to) == Kind::File && cs.read(to).as_deref() != Some(moved.as_str()) {
        return Err(MoveError::Exists {
            from: from.to_path_buf(),
            to: to.to_path_buf(),
        });
    }

    // Links to the moved file from every other page.
    for file in cs.markdown_files() {
        if file == from || file == to {
            continue;
        }
        let Some(page) = cs.read(&file) else { continue };
        let mut edits = Vec::new();
        for link in scan::scan(&page).links.iter().filter(|l| is_rewritable(l)) {
            let (path, suffix) = split_dest(&link.dest);
            if path.is_empty() || resolve(&file, path).as_deref() != Some(from) {
                continue;
            }
            let new = format_dest(link, &dir_of(&file), to, suffix);
            log.push(LinkEdit {
                file: file.clone(),
                line: link.line,
                old: link.dest.clone(),
                new: new.clone(),
            });
            edits.push((link.start, link.end, new));
        }
        if !edits.is_empty() {
            cs.write(&file, apply_edits(&page, &edits));
        }
    }
    cs.write(to, moved);
    if to != from {
        cs.remove(from);
    }
    Ok(log)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docs::tree::{Disk, Scope};

    fn tree(files: &[(&str, &str)]) -> (tempfile::TempDir, Changeset) {
        let dir = tempfile::tempdir().unwrap();
        for (p, t) in files {
            let abs = dir.path().join(p);
            std::fs::create_dir_all(abs.parent().unwrap()).unwrap();
            std::fs::write(abs, t).unwrap();
        }
        let scope = Scope {
            skip: vec![PathBuf::from(".onboard")],
            models: PathBuf::from("models"),
            docs: PathBuf::from("documentation"),
        };
        let disk = Disk::new(dir.path(), scope);
        (dir, Changeset::new(disk))
    }

    #[test]
    fn dest_helpers() {
        assert_eq!(split_dest("a.md#x"), ("a.md", "#x"));
        assert_eq!(split_dest("a.md?raw=1#x"), ("a.md", "?raw=1#x"));
        assert!(is_external("https://x.org/a.md"));
        assert!(is_external("mailto:me@x.org"));
        assert!(is_external("//cdn/x.png"));
        assert!(!is_external("docs/a.md"));
        assert!(!is_external("C.md"));
        assert_eq!(percent_decode("My%20Card.md"), "My Card.md");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(
            resolve(Path::new("documentation/guides/g.md"), "../../README.md"),
            Some(PathBuf::from("README.md"))
        );
        assert_eq!(
            resolve(Path::new("documentation/g.md"), "/models/x.yaml"),
            Some(PathBuf::from("models/x.yaml"))
        );
        assert_eq!(resolve(Path::new("a.md"), "../x.md"), None);
    }

    #[test]
    fn check_reports_missing_files_and_anchors_with_positions_and_fixes() {
        let (_d, cs) = tree(&[
            ("README.md", "# Top\n\n[ok](documentation/a.md#usage)\n[bad](documentation/a.md#usage-2)\n[gone](documentation/b.md)\n[self](#top) [up](../x.md)\n[dir](documentation/)\n"),
            ("documentation/a.md", "# A\n## Usage\n## Usage\n[back](../README.md#top)\n[web](https://example.com)\n"),
            ("documentation/sub/b.md", "# B\n"),
            (".onboard/x/notes.md", "[ignored](nowhere.md)\n"),
        ]);
        let report = check(&cs);
        assert_eq!(report.files, 3);
        let lines: Vec<String> = report.broken.iter().map(|b| b.to_string()).collect();
        assert_eq!(report.broken.len(), 3, "{lines:#?}");
        assert!(lines[0].starts_with("README.md:4:7: broken link `documentation/a.md#usage-2`: `documentation/a.md` has no heading `#usage-2`\n  = help: did you mean `#usage-1`?"), "{}", lines[0]);
        assert!(lines[1].starts_with("README.md:5:8: broken link `documentation/b.md`: `documentation/b.md` does not exist\n  = help: `documentation/sub/b.md` exists; link to `documentation/sub/b.md`"), "{}", lines[1]);
        assert_eq!(report.broken[2].problem, Problem::OutsideWorkspace);
    }

    #[test]
    fn moving_a_file_rewrites_links_at_every_depth_and_nothing_else() {
        let readme = "# R\n\nSee [card](documentation/CANDIDATES/Q.md#facts), `[code](documentation/CANDIDATES/Q.md)`.\n\n```\n[fenced](documentation/CANDIDATES/Q.md)\n```\n\n[q]: documentation/CANDIDATES/Q.md \"title\"\n";
        let deep = "[card](../../CANDIDATES/Q.md) [rooted](/documentation/CANDIDATES/Q.md) [other](../../other.md)\n";
        let card = "# Q\n## Facts\n[guide](../guide.md) [self](#facts) [me](Q.md#facts) [sibling](R.md) [img](<../img/a b.png>)\n";
        let (_d, mut cs) = tree(&[
            ("README.md", readme),
            ("documentation/guides/deep/g.md", deep),
            ("documentation/CANDIDATES/Q.md", card),
            ("documentation/CANDIDATES/R.md", "# R\n"),
            ("documentation/guide.md", "# G\n[q](CANDIDATES/Q.md)\n"),
            ("documentation/other.md", "# O\n"),
            ("documentation/img/a b.png", "png"),
        ]);
        let edits = move_file(
            &mut cs,
            Path::new("documentation/CANDIDATES/Q.md"),
            Path::new("documentation/Q.md"),
        )
        .unwrap();
        assert_eq!(edits.len(), 8, "{edits:#?}");
        assert_eq!(
            cs.read(Path::new("README.md")).unwrap(),
            readme
                .replacen(
                    "(documentation/CANDIDATES/Q.md#facts)",
                    "(documentation/Q.md#facts)",
                    1
                )
                .replace(
                    "[q]: documentation/CANDIDATES/Q.md",
                    "[q]: documentation/Q.md"
                )
        );
        assert_eq!(
            cs.read(Path::new("documentation/guides/deep/g.md"))
                .unwrap(),
            "[card](../../Q.md) [rooted](/documentation/Q.md) [other](../../other.md)\n"
        );
        assert_eq!(
            cs.read(Path::new("documentation/Q.md")).unwrap(),
            "# Q\n## Facts\n[guide](guide.md) [self](#facts) [me](Q.md#facts) [sibling](CANDIDATES/R.md) [img](<img/a b.png>)\n"
        );
        assert_eq!(
            cs.kind(Path::new("documentation/CANDIDATES/Q.md")),
            Kind::Missing
        );
        assert!(check(&cs).broken.is_empty(), "{:#?}", check(&cs).broken);
        // Moving back restores every byte.
        move_file(
            &mut cs,
            Path::new("documentation/Q.md"),
            Path::new("documentation/CANDIDATES/Q.md"),
        )
        .unwrap();
        assert_eq!(cs.read(Path::new("README.md")).unwrap(), readme);
        assert_eq!(
            cs.read(Path::new("documentation/CANDIDATES/Q.md")).unwrap(),
            card
        );
        assert!(cs.changes().is_empty(), "{:?}", cs.changes());
    }
}
