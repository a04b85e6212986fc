//! A unified line diff for previews (`onboard plan --diff`): what a step
//! would change, in the format `git diff` and `patch` read. `similar` does
//! the diffing (Myers, linear space), so a file of any size gets a real diff.

use similar::TextDiff;

/// Lines of context around each change.
const CONTEXT: usize = 3;

/// A unified diff of `before` → `after` for `path` (`None` on one side: the
/// file is created or removed). Empty when nothing changes.
pub fn unified(path: &str, before: Option<&str>, after: Option<&str>) -> String {
    if before == after {
        return String::new();
    }
    let old_name = before.map_or_else(|| "/dev/null".to_string(), |_| format!("a/{path}"));
    let new_name = after.map_or_else(|| "/dev/null".to_string(), |_| format!("b/{path}"));
    let diff = TextDiff::from_lines(before.unwrap_or(""), after.unwrap_or(""));
    let mut out = format!("--- {old_name}\n+++ {new_name}\n");
    for hunk in diff.unified_diff().context_radius(CONTEXT).iter_hunks() {
        out.push_str(&hunk.to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hunks_with_context() {
        let before = "a\nb\nc\nd\ne\nf\ng\nh\ni\nj\n";
        let after = "a\nB\nc\nd\ne\nf\ng\nh\ni\nj\nk\n";
        assert_eq!(
            unified("x.md", Some(before), Some(after)),
            "--- a/x.md\n+++ b/x.md\n@@ -1,5 +1,5 @@\n a\n-b\n+B\n c\n d\n e\n@@ -8,3 +8,4 @@\n h\n i\n j\n+k\n"
        );
        assert_eq!(
            unified("n.md", None, Some("x\n")),
            "--- /dev/null\n+++ b/n.md\n@@ -0,0 +1 @@\n+x\n"
        );
        assert_eq!(
            unified("o.md", Some("x"), None),
            "--- a/o.md\n+++ /dev/null\n@@ -1 +0,0 @@\n-x\n\\ No newline at end of file\n"
        );
        assert_eq!(unified("s.md", Some("same\n"), Some("same\n")), "");
    }
}
