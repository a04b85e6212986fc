//! `models.conf`: one INI section per llama-server profile (`[qwen35-35b]`)
//! of `KEY=VALUE` lines. onboard edits it next to a person, so the parser
//! keeps every line's exact bytes and the writer touches only the lines it
//! changes: comments, order, spacing and line endings survive.

use crate::atomic;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq)]
enum Line {
    Blank,
    Comment,
    Section(String),
    Entry { key: String, value: String },
}

#[derive(Debug, Clone, PartialEq)]
struct RawLine {
    /// The line exactly as read, including its line ending (if any).
    raw: String,
    kind: Line,
}

/// A parsed models.conf that renders back to the same bytes.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ModelsConf {
    lines: Vec<RawLine>,
}

/// One profile as read.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub id: String,
    /// 1-based line of the `[id]` header.
    pub line: usize,
    pub entries: Vec<(String, String)>,
}

impl Profile {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{}:{line}: {message}", path.display())]
pub struct ParseError {
    pub path: PathBuf,
    pub line: usize,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfError {
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
}

/// An edit the file could not hold: the parser would refuse what the
/// writer wrote, and the next run (or a person's llama-swap) would find the
/// whole file broken instead of one profile.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum EditError {
    #[error("`[{0}]` is not a valid profile id (letters, digits, `-`, `_`, `.`)")]
    ProfileId(String),
    #[error("`{0}` is not a valid key: use letters, digits and `_` (e.g. `CTX_SIZE`)")]
    Key(String),
    #[error("the value of `{key}` spans lines ({value:?}); a models.conf value is one line")]
    Value { key: String, value: String },
}

fn check_edit(id: &str, key: &str, value: &str) -> Result<(), EditError> {
    if !valid_profile_id(id) {
        return Err(EditError::ProfileId(id.to_string()));
    }
    if !valid_key(key) {
        return Err(EditError::Key(key.to_string()));
    }
    if value.contains(['\n', '\r']) {
        return Err(EditError::Value {
            key: key.to_string(),
            value: value.to_string(),
        });
    }
    Ok(())
}

/// Profile ids as llama-swap and llama.cpp presets accept them.
pub fn valid_profile_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn valid_key(key: &str) -> bool {
    key.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl ModelsConf {
    pub fn parse(text: &str, path: &Path) -> Result<ModelsConf, ParseError> {
        let err = |line: usize, message: String| ParseError {
            path: path.to_path_buf(),
            line,
            message,
        };
        let mut lines = Vec::new();
        let mut sections: Vec<(String, usize)> = Vec::new();
        let mut keys_in_section: Vec<(String, usize)> = Vec::new();
        for (i, raw) in text.split_inclusive('\n').enumerate() {
            let n = i + 1;
            let body = raw.trim_end_matches(['\n', '\r']);
            let trimmed = body.trim();
            let kind = if trimmed.is_empty() {
                Line::Blank
            } else if trimmed.starts_with('#') || trimmed.starts_with(';') {
                Line::Comment
            } else if let Some(rest) = trimmed.strip_prefix('[') {
                let Some(id) = rest.strip_suffix(']') else {
                    return Err(err(
                        n,
                        format!("`{trimmed}`: a section header must end with `]`"),
                    ));
                };
                let id = id.trim();
                if !valid_profile_id(id) {
                    return Err(err(
                        n,
                        format!(
                            "`[{id}]` is not a valid profile id (letters, digits, `-`, `_`, `.`)"
                        ),
                    ));
                }
                if let Some((_, first)) = sections.iter().find(|(s, _)| s == id) {
                    return Err(err(
                        n,
                        format!("profile `[{id}]` appears twice (first at line {first}); merge or rename one"),
                    ));
                }
                sections.push((id.to_string(), n));
                keys_in_section.clear();
                Line::Section(id.to_string())
            } else if let Some((key, value)) = body.split_once('=') {
                let key = key.trim();
                if !valid_key(key) {
                    return Err(err(
                        n,
                        format!("`{key}` is not a valid key: use letters, digits and `_` (e.g. `CTX_SIZE`)"),
                    ));
                }
                if let Some((_, first)) = keys_in_section.iter().find(|(k, _)| k == key) {
                    return Err(err(
                        n,
                        format!("`{key}` is set twice in this profile (first at line {first}); keep one"),
                    ));
                }
                keys_in_section.push((key.to_string(), n));
                Line::Entry {
                    key: key.to_string(),
                    value: value.trim().to_string(),
                }
            } else {
                return Err(err(
                    n,
                    format!("`{trimmed}`: expected `[profile-id]`, `KEY=VALUE`, a `#` comment or a blank line"),
                ));
            };
            lines.push(RawLine {
                raw: raw.to_string(),
                kind,
            });
        }
        Ok(ModelsConf { lines })
    }

    /// The exact bytes: unchanged lines are rendered as read.
    pub fn render(&self) -> String {
        self.lines.iter().map(|l| l.raw.as_str()).collect()
    }

    pub fn profiles(&self) -> Vec<Profile> {
        let mut out: Vec<Profile> = Vec::new();
        for (i, line) in self.lines.iter().enumerate() {
            match &line.kind {
                Line::Section(id) => out.push(Profile {
                    id: id.clone(),
                    line: i + 1,
                    entries: Vec::new(),
                }),
                Line::Entry { key, value } => {
                    if let Some(p) = out.last_mut() {
                        p.entries.push((key.clone(), value.clone()));
                    }
                }
                _ => {}
            }
        }
        out
    }

    pub fn profile(&self, id: &str) -> Option<Profile> {
        self.profiles().into_iter().find(|p| p.id == id)
    }

    /// What profile `id` sets, as sorted `KEY=VALUE` lines without the keys
    /// in `except`: comments, blank lines, spacing around `=` and the order
    /// of lines change nothing llama-server sees, so they change nothing
    /// here either. Empty when there is no such profile.
    pub fn canonical(&self, id: &str, except: &[&str]) -> String {
        let mut entries = self.profile(id).map(|p| p.entries).unwrap_or_default();
        entries.retain(|(k, _)| !except.contains(&k.as_str()));
        entries.sort();
        entries.iter().map(|(k, v)| format!("{k}={v}\n")).collect()
    }

    /// The line ending this file uses (kept for inserted lines).
    fn newline(&self) -> &'static str {
        if self.lines.iter().any(|l| l.raw.ends_with("\r\n")) {
            "\r\n"
        } else {
            "\n"
        }
    }

    /// Index range of a section's lines: header .. next header.
    fn section_range(&self, id: &str) -> Option<(usize, usize)> {
        let start = self
            .lines
            .iter()
            .position(|l| matches!(&l.kind, Line::Section(s) if s == id))?;
        let end = self.lines[start + 1..]
            .iter()
            .position(|l| matches!(l.kind, Line::Section(_)))
            .map_or(self.lines.len(), |p| start + 1 + p);
        Ok::<_, ()>((start, end)).ok()
    }

    /// Sets `key` in profile `id`, creating the profile at the end of the
    /// file if needed. An equal value leaves the line untouched. What the
    /// parser would refuse (a bad id or key, a value with a line break) is
    /// refused here, leaving the file as it was.
    pub fn set(&mut self, id: &str, key: &str, value: &str) -> Result<(), EditError> {
        check_edit(id, key, value)?;
        self.set_checked(id, key, value);
        Ok(())
    }

    fn set_checked(&mut self, id: &str, key: &str, value: &str) {
        let nl = self.newline();
        let (start, end) = match self.section_range(id) {
            Some(r) => r,
            None => {
                self.append_section(id, &[]);
                match self.section_range(id) {
                    Some(r) => r,
                    None => return,
                }
            }
        };
        for line in &mut self.lines[start + 1..end] {
            if let Line::Entry { key: k, value: v } = &mut line.kind {
                if k == key {
                    if v != value {
                        // Keep the key as written (spacing before `=`) and the ending.
                        let prefix = line.raw.split_once('=').map_or("", |(p, _)| p).to_string();
                        let ending = if line.raw.ends_with("\r\n") {
                            "\r\n"
                        } else if line.raw.ends_with('\n') {
                            "\n"
                        } else {
                            ""
                        };
                        line.raw = format!("{prefix}={value}{ending}");
                        *v = value.to_string();
                    }
                    return;
                }
            }
        }
        // A new key goes after the section's last entry (before trailing
        // blank lines and comments that belong to the next section).
        let after_header_comments = start
            + 1
            + self.lines[start + 1..end]
                .iter()
                .take_while(|l| l.kind == Line::Comment)
                .count();
        let insert_at = self.lines[start + 1..end]
            .iter()
            .rposition(|l| matches!(l.kind, Line::Entry { .. }))
            .map_or(after_header_comments, |p| start + 2 + p);
        if insert_at > 0 && !self.lines[insert_at - 1].raw.ends_with('\n') {
            self.lines[insert_at - 1].raw.push_str(nl);
        }
        self.lines.insert(
            insert_at,
            RawLine {
                raw: format!("{key}={value}{nl}"),
                kind: Line::Entry {
                    key: key.to_string(),
                    value: value.to_string(),
                },
            },
        );
    }

    /// Removes `key` from profile `id` (if present).
    pub fn remove(&mut self, id: &str, key: &str) {
        if let Some((start, end)) = self.section_range(id) {
            if let Some(pos) = self.lines[start + 1..end]
                .iter()
                .position(|l| matches!(&l.kind, Line::Entry { key: k, .. } if k == key))
            {
                self.lines.remove(start + 1 + pos);
            }
        }
    }

    /// Removes profile `id`: its header, entries, the comment lines directly
    /// above the header (they describe it) and its trailing blank lines.
    /// Comments that directly precede the next header stay with it.
    /// Returns whether the profile existed.
    pub fn remove_section(&mut self, id: &str) -> bool {
        let Some((header, next)) = self.section_range(id) else {
            return false;
        };
        let mut start = header;
        while start > 0 && self.lines[start - 1].kind == Line::Comment {
            start -= 1;
        }
        let mut end = next;
        if next < self.lines.len() {
            while end > header + 1 && self.lines[end - 1].kind == Line::Comment {
                end -= 1;
            }
        }
        // Keep one blank line between what was before and what follows.
        let before_blank = start == 0 || self.lines[start - 1].kind == Line::Blank;
        let range_ends_blank = end > header + 1 && self.lines[end - 1].kind == Line::Blank;
        if !before_blank && range_ends_blank && end < self.lines.len() {
            end -= 1;
        }
        self.lines.drain(start..end);
        if start == self.lines.len() && start > 0 {
            // The profile was last: drop blank lines it leaves at the end.
            while self.lines.last().is_some_and(|l| l.kind == Line::Blank) {
                self.lines.pop();
            }
        }
        true
    }

    /// Appends `[id]` with comment lines above its entries (a comment with
    /// line breaks becomes one `#` line per line, so no part of it can be
    /// read as a header or an entry).
    fn append_section(&mut self, id: &str, comments: &[&str]) {
        let nl = self.newline();
        if let Some(last) = self.lines.last_mut() {
            if !last.raw.ends_with('\n') {
                last.raw.push_str(nl);
            }
        }
        let ends_blank = self.lines.last().is_none_or(|l| l.kind == Line::Blank);
        if !ends_blank {
            self.lines.push(RawLine {
                raw: nl.to_string(),
                kind: Line::Blank,
            });
        }
        self.lines.push(RawLine {
            raw: format!("[{id}]{nl}"),
            kind: Line::Section(id.to_string()),
        });
        for line in comments.iter().flat_map(|c| c.split('\n')) {
            let line = line.trim_end_matches('\r');
            self.lines.push(RawLine {
                raw: format!("# {line}{nl}"),
                kind: Line::Comment,
            });
        }
    }

    /// Makes profile `id` hold `entries` for the keys in `managed`: sets
    /// each given key, removes managed keys not given, leaves other keys a
    /// person added alone. A new profile gets `comment` above its entries.
    /// Every entry is checked before anything changes: a refused upsert
    /// leaves the file as it was.
    pub fn upsert(
        &mut self,
        id: &str,
        managed: &[&str],
        entries: &[(String, String)],
        comment: Option<&str>,
    ) -> Result<(), EditError> {
        if !valid_profile_id(id) {
            return Err(EditError::ProfileId(id.to_string()));
        }
        for (key, value) in entries {
            check_edit(id, key, value)?;
        }
        if self.section_range(id).is_none() {
            self.append_section(id, comment.as_slice());
        }
        for key in managed {
            if !entries.iter().any(|(k, _)| k == key) {
                self.remove(id, key);
            }
        }
        for (key, value) in entries {
            self.set_checked(id, key, value);
        }
        Ok(())
    }
}

/// Reads, edits and atomically rewrites a models.conf under an exclusive
/// lock, so two onboarding runs editing different profiles never lose each
/// other's edits. A missing file starts empty. Returns whether it changed.
pub fn update<F>(path: &Path, edit: F) -> Result<bool, ConfError>
where
    F: FnOnce(&mut ModelsConf) -> Result<(), String>,
{
    let io_err = |source| ConfError::Io {
        path: path.to_path_buf(),
        source,
    };
    let _lock = lock(path).map_err(io_err)?;
    let text = match std::fs::read(path) {
        Ok(bytes) => String::from_utf8(bytes).map_err(|_| ConfError::Invalid {
            path: path.to_path_buf(),
            message: "not valid UTF-8; save it as UTF-8".into(),
        })?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(io_err(e)),
    };
    let mut conf = ModelsConf::parse(&text, path)?;
    edit(&mut conf).map_err(|message| ConfError::Invalid {
        path: path.to_path_buf(),
        message,
    })?;
    atomic::write_if_changed(path, conf.render().as_bytes()).map_err(io_err)
}

/// Reads a models.conf (a missing file is empty).
pub fn read(path: &Path) -> Result<ModelsConf, ConfError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(ModelsConf::parse(&text, path)?),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(ModelsConf::default()),
        Err(e) => Err(ConfError::Io {
            path: path.to_path_buf(),
            source: e,
        }),
    }
}

/// The lock lives in a sidecar file: the config itself is replaced by
/// rename on every write, so a lock on it would guard a stale inode.
fn lock(path: &Path) -> io::Result<File> {
    let name = path
        .file_name()
        .map_or("models.conf".into(), |n| n.to_string_lossy().into_owned());
    let lock_path = path.with_file_name(format!(".{name}.lock"));
    if let Some(dir) = lock_path.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir)?;
        }
    }
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)?;
    file.lock()?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXISTING: &str = "\
# models.conf — llama-server profiles, started by ./start.sh <profile>
#   MODEL is relative to models/

[glm-flash-q8]
MODEL=GLM/MoE/Flash/Q8/GLM-4.7-Flash-Q8_0.gguf
CTX_SIZE = 131072
FLAGS=--jinja -np 1   --fit on
SPEED=112 t/s (2 GPUs)

; GPT-OSS is natively MXFP4
[gpt-oss-120b]
MODEL=GPT-OSS/MoE/120B/gpt-oss-120b-mxfp4-00001-of-00003.gguf
CTX_SIZE=131072
FLAGS=--jinja -np 1 --reasoning-format none


[bench-glm-flash-q8]
MODEL=GLM/MoE/Flash/Q8/GLM-4.7-Flash-Q8_0.gguf
CTX_SIZE=10240";

    fn conf(text: &str) -> ModelsConf {
        ModelsConf::parse(text, Path::new("models.conf")).unwrap()
    }

    #[test]
    fn round_trips_byte_for_byte() {
        assert_eq!(conf(EXISTING).render(), EXISTING);
        let crlf = EXISTING.replace('\n', "\r\n");
        assert_eq!(conf(&crlf).render(), crlf);
        let p = conf(EXISTING).profile("glm-flash-q8").unwrap();
        assert_eq!(p.get("CTX_SIZE"), Some("131072"));
        assert_eq!(p.line, 4);
    }

    #[test]
    fn upsert_is_idempotent_and_touches_only_its_lines() {
        let entries = vec![
            (
                "MODEL".to_string(),
                "Qwen3.5/MoE/35B/UD6_K_XL/Qwen3.5-35B-A3B-UD-Q6_K_XL.gguf".to_string(),
            ),
            ("CTX_SIZE".to_string(), "262144".to_string()),
        ];
        let mut once = conf(EXISTING);
        once.upsert(
            "qwen35-35b",
            &["MODEL", "CTX_SIZE", "FIT"],
            &entries,
            Some("Qwen3.5-35B-A3B, written by onboard"),
        )
        .unwrap();
        let first = once.render();
        assert!(first.starts_with(EXISTING), "existing bytes untouched");
        assert!(first.ends_with("CTX_SIZE=10240\n\n[qwen35-35b]\n# Qwen3.5-35B-A3B, written by onboard\nMODEL=Qwen3.5/MoE/35B/UD6_K_XL/Qwen3.5-35B-A3B-UD-Q6_K_XL.gguf\nCTX_SIZE=262144\n"), "{first}");
        let mut twice = conf(&first);
        twice
            .upsert(
                "qwen35-35b",
                &["MODEL", "CTX_SIZE", "FIT"],
                &entries,
                Some("ignored"),
            )
            .unwrap();
        assert_eq!(twice.render(), first);

        // Updating one value in an existing profile rewrites that line only.
        let mut edited = conf(EXISTING);
        edited.set("glm-flash-q8", "CTX_SIZE", "65536").unwrap();
        edited.set("glm-flash-q8", "FIT_TARGET", "2048").unwrap();
        let text = edited.render();
        assert!(text.contains("CTX_SIZE =65536\nFLAGS=--jinja -np 1   --fit on\nSPEED=112 t/s (2 GPUs)\nFIT_TARGET=2048\n\n; GPT-OSS"), "{text}");
        edited.remove("glm-flash-q8", "FIT_TARGET");
        edited.set("glm-flash-q8", "CTX_SIZE", "131072").unwrap();
        assert_ne!(
            edited.render(),
            EXISTING,
            "spacing around `=` of a rewritten line is normalised after the key"
        );
    }

    #[test]
    fn canonical_form_ignores_what_changes_no_setting() {
        let a = conf(EXISTING).canonical("glm-flash-q8", &["SPEED"]);
        assert_eq!(
            a,
            "CTX_SIZE=131072\nFLAGS=--jinja -np 1   --fit on\nMODEL=GLM/MoE/Flash/Q8/GLM-4.7-Flash-Q8_0.gguf\n"
        );
        let reordered = EXISTING.replace("CTX_SIZE = 131072\n", "").replace(
            "SPEED=112 t/s (2 GPUs)\n",
            "# tuned\nSPEED=90 t/s\n  CTX_SIZE=131072\n",
        );
        assert_eq!(conf(&reordered).canonical("glm-flash-q8", &["SPEED"]), a);
        assert_ne!(
            conf(&reordered).canonical("glm-flash-q8", &[]),
            conf(EXISTING).canonical("glm-flash-q8", &[])
        );
        assert_eq!(conf(EXISTING).canonical("nope", &[]), "");
    }

    #[test]
    fn remove_section_takes_its_comments_and_leaves_the_rest() {
        let mut c = conf(EXISTING);
        assert!(c.remove_section("gpt-oss-120b"));
        assert_eq!(
            c.render(),
            EXISTING.replace("; GPT-OSS is natively MXFP4\n[gpt-oss-120b]\nMODEL=GPT-OSS/MoE/120B/gpt-oss-120b-mxfp4-00001-of-00003.gguf\nCTX_SIZE=131072\nFLAGS=--jinja -np 1 --reasoning-format none\n\n\n", "")
        );
        assert!(c.remove_section("bench-glm-flash-q8"));
        assert!(
            c.render().ends_with("SPEED=112 t/s (2 GPUs)\n"),
            "{}",
            c.render()
        );
        assert!(!c.remove_section("bench-glm-flash-q8"));
        let mut first = conf(EXISTING);
        first.remove_section("glm-flash-q8");
        assert!(first.render().starts_with("# models.conf — llama-server profiles, started by ./start.sh <profile>\n#   MODEL is relative to models/\n\n; GPT-OSS"), "{}", first.render());
    }

    #[test]
    fn malformed_lines_are_reported_with_their_line() {
        let cases = [
            ("[a]\nMODEL x\n", 2, "expected `[profile-id]`, `KEY=VALUE`"),
            ("[a\n", 1, "must end with `]`"),
            ("[a]\n[a]\n", 2, "appears twice (first at line 1)"),
            ("[a]\nK=1\nK=2\n", 3, "set twice"),
            ("[a b]\n", 1, "not a valid profile id"),
            ("[a]\n9X=1\n", 2, "not a valid key"),
        ];
        for (text, line, part) in cases {
            let e = ModelsConf::parse(text, Path::new("models.conf")).unwrap_err();
            assert_eq!(e.line, line, "{text:?}");
            assert!(
                e.to_string().starts_with(&format!("models.conf:{line}: ")),
                "{e}"
            );
            assert!(e.message.contains(part), "{e}");
        }
    }

    #[test]
    fn update_creates_the_file_and_reports_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("models.conf");
        let changed = update(&path, |c| {
            c.set("a", "MODEL", "x.gguf").map_err(|e| e.to_string())
        })
        .unwrap();
        assert!(changed);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "[a]\nMODEL=x.gguf\n"
        );
        let again = update(&path, |c| {
            c.set("a", "MODEL", "x.gguf").map_err(|e| e.to_string())
        })
        .unwrap();
        assert!(!again);
    }

    #[test]
    fn edits_the_parser_would_refuse_are_refused() {
        // Found by the models_conf fuzz target: each of these used to write
        // a file that no longer parsed.
        let mut c = conf(EXISTING);
        assert_eq!(
            c.set("]a", "K", "v"),
            Err(EditError::ProfileId("]a".into()))
        );
        assert_eq!(c.set("a", "9K", "v"), Err(EditError::Key("9K".into())));
        assert!(matches!(
            c.set("a", "NAME", "x\n[b]"),
            Err(EditError::Value { .. })
        ));
        let entries = [
            ("MODEL".to_string(), "m.gguf".to_string()),
            ("NAME".to_string(), "two\nlines".to_string()),
        ];
        assert!(c.upsert("new", &["MODEL"], &entries, None).is_err());
        assert_eq!(c.render(), EXISTING, "a refused edit changes nothing");

        // A comment with line breaks becomes several comment lines.
        let entries = [("MODEL".to_string(), "m.gguf".to_string())];
        c.upsert("new", &["MODEL"], &entries, Some("line one\r\n[evil]\nK=1"))
            .unwrap();
        let text = c.render();
        assert!(
            text.ends_with("[new]\n# line one\n# [evil]\n# K=1\nMODEL=m.gguf\n"),
            "{text}"
        );
        assert_eq!(conf(&text).profile("new").unwrap().entries.len(), 1);
    }
}
