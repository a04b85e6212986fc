//! Generated blocks in markdown pages: the lines between a
//! `<!-- onboard:NAME -->` line and a `<!-- /onboard:NAME -->` line belong
//! to onboard. Markers count only on lines of their own, so a page may
//! mention them in running text or code without being rewritten there.

use super::catalog::Catalog;
use super::tree::{Changeset, Source};
use std::path::{Path, PathBuf};

/// The block that holds the models table.
pub const MODELS: &str = "models";

#[derive(Debug, thiserror::Error)]
#[error("{}:{line}: {message}", file.display())]
pub struct BlockError {
    pub file: PathBuf,
    pub line: usize,
    pub message: String,
}

fn open_marker(name: &str) -> String {
    format!("<!-- onboard:{name} -->")
}

fn close_marker(name: &str) -> String {
    format!("<!-- /onboard:{name} -->")
}

/// Whether `text` has block `name` (its opening marker on a line of its own).
pub fn has_block(text: &str, name: &str) -> bool {
    let open = open_marker(name);
    text.lines().any(|l| l.trim() == open)
}

/// Replaces the body of block `name`; `Ok(None)` when the page has no
/// such block. The marker lines and everything outside stay as they are.
pub fn replace(text: &str, name: &str, body: &str) -> Result<Option<String>, (usize, String)> {
    let open = open_marker(name);
    let close = close_marker(name);
    let mut offset = 0;
    let mut open_end = None;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let trimmed = line.trim();
        if trimmed == open && open_end.is_none() {
            open_end = Some((i + 1, offset + line.len()));
        } else if trimmed == close {
            let Some((_, body_start)) = open_end else {
                return Err((
                    i + 1,
                    format!("`{close}` comes before any `{open}`; put `{open}` on a line above it"),
                ));
            };
            let mut body = body.to_string();
            if !body.is_empty() && !body.ends_with('\n') {
                body.push('\n');
            }
            let mut out = String::with_capacity(text.len() + body.len());
            out.push_str(&text[..body_start]);
            if !text[..body_start].ends_with('\n') {
                out.push('\n');
            }
            out.push_str(&body);
            out.push_str(&text[offset..]);
            return Ok(Some(out));
        }
        offset += line.len();
    }
    match open_end {
        Some((line, _)) => Err((
            line,
            format!(
                "`{open}` has no closing `{close}`; add it on a line of its own after the block"
            ),
        )),
        None => Ok(None),
    }
}

/// Refreshes the models table in every page that has a models block, and
/// appends one to each page in `add` that has none. Returns the pages
/// whose bytes change.
pub fn refresh_models(
    cs: &mut Changeset,
    catalog: &Catalog,
    add: &[PathBuf],
) -> Result<Vec<PathBuf>, BlockError> {
    let mut changed = Vec::new();
    let mut pages: Vec<PathBuf> = cs.markdown_files();
    for extra in add {
        if !pages.contains(extra) {
            pages.push(extra.clone());
        }
    }
    for page in pages {
        let text = cs.read(&page).unwrap_or_default();
        let table = catalog.models_table(&page, cs);
        let updated = match replace(&text, MODELS, &table) {
            Ok(Some(t)) => t,
            Ok(None) if add.contains(&page) => {
                let mut t = text.clone();
                if !t.is_empty() && !t.ends_with('\n') {
                    t.push('\n');
                }
                if !t.is_empty() {
                    t.push('\n');
                }
                format!(
                    "{t}{}\n{table}{}\n",
                    open_marker(MODELS),
                    close_marker(MODELS)
                )
            }
            Ok(None) => continue,
            Err((line, message)) => {
                return Err(BlockError {
                    file: page,
                    line,
                    message,
                })
            }
        };
        if updated != text {
            changed.push(page.clone());
            cs.write(Path::new(&page), updated);
        }
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_between_marker_lines_only() {
        let text = "Mention `<!-- onboard:t -->` inline.\n\n<!-- onboard:t -->\nold\nrows\n<!-- /onboard:t -->\nafter\n";
        let once = replace(text, "t", "| a |").unwrap().unwrap();
        assert_eq!(
            once,
            "Mention `<!-- onboard:t -->` inline.\n\n<!-- onboard:t -->\n| a |\n<!-- /onboard:t -->\nafter\n"
        );
        assert_eq!(replace(&once, "t", "| a |\n").unwrap().unwrap(), once);
        assert_eq!(replace("no block\n", "t", "x").unwrap(), None);
        assert_eq!(
            replace("a\n<!-- onboard:t -->\nb\n", "t", "x")
                .unwrap_err()
                .0,
            2
        );
        assert_eq!(replace("<!-- /onboard:t -->\n", "t", "x").unwrap_err().0, 1);
    }
}
