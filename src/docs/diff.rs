//! A unified line diff for previews (`onboard plan --diff`): what a step
//! would change, in the format `git diff` and `patch` read.

/// Lines of context around each change.
const CONTEXT: usize = 3;
/// Beyond this many lines on each side the LCS table is too large for a
/// preview; the diff then shows the whole file replaced.
const MAX_LINES: usize = 4000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Keep,
    Delete,
    Insert,
}

/// The edit script from `a` to `b` (longest common subsequence).
fn script(a: &[&str], b: &[&str]) -> Vec<(Op, usize)> {
    if a.len() > MAX_LINES || b.len() > MAX_LINES {
        let mut out: Vec<(Op, usize)> = (0..a.len()).map(|i| (Op::Delete, i)).collect();
        out.extend((0..b.len()).map(|j| (Op::Insert, j)));
        return out;
    }
    let (n, m) = (a.len(), b.len());
    // lcs[i][j]: LCS length of a[i..] and b[j..].
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::with_capacity(n + m);
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            out.push((Op::Keep, i));
            i += 1;
            j += 1;
        } else if i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1]) {
            out.push((Op::Delete, i));
            i += 1;
        } else {
            out.push((Op::Insert, j));
            j += 1;
        }
    }
    out
}

/// A unified diff of `before` → `after` for `path` (`None` on one side: the
/// file is created or removed). Empty when nothing changes.
pub fn unified(path: &str, before: Option<&str>, after: Option<&str>) -> String {
    if before == after {
        return String::new();
    }
    let a: Vec<&str> = before.map_or_else(Vec::new, |t| t.split_inclusive('\n').collect());
    let b: Vec<&str> = after.map_or_else(Vec::new, |t| t.split_inclusive('\n').collect());
    let ops = script(&a, &b);
    let mut out = format!(
        "--- {}\n+++ {}\n",
        if before.is_some() {
            format!("a/{path}")
        } else {
            "/dev/null".into()
        },
        if after.is_some() {
            format!("b/{path}")
        } else {
            "/dev/null".into()
        }
    );
    // Positions (in ops) of changes, grouped into hunks with context.
    let changed: Vec<usize> = ops
        .iter()
        .enumerate()
        .filter(|(_, (op, _))| *op != Op::Keep)
        .map(|(k, _)| k)
        .collect();
    let mut k = 0;
    while k < changed.len() {
        let start = changed[k].saturating_sub(CONTEXT);
        let mut end = changed[k];
        while k < changed.len() && changed[k] <= end + 2 * CONTEXT + 1 {
            end = changed[k];
            k += 1;
        }
        let end = (end + CONTEXT + 1).min(ops.len());
        let hunk = &ops[start..end];
        // 1-based starting lines on each side.
        let a_start = ops[..start]
            .iter()
            .filter(|(o, _)| *o != Op::Insert)
            .count();
        let b_start = ops[..start]
            .iter()
            .filter(|(o, _)| *o != Op::Delete)
            .count();
        let a_len = hunk.iter().filter(|(o, _)| *o != Op::Insert).count();
        let b_len = hunk.iter().filter(|(o, _)| *o != Op::Delete).count();
        let first = |s: usize, len: usize| if len == 0 { s } else { s + 1 };
        out.push_str(&format!(
            "@@ -{},{a_len} +{},{b_len} @@\n",
            first(a_start, a_len),
            first(b_start, b_len)
        ));
        for (op, idx) in hunk {
            let (sign, line) = match op {
                Op::Keep => (' ', a[*idx]),
                Op::Delete => ('-', a[*idx]),
                Op::Insert => ('+', b[*idx]),
            };
            out.push(sign);
            out.push_str(line);
            if !line.ends_with('\n') {
                out.push_str("\n\\ No newline at end of file\n");
            }
        }
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
            "--- /dev/null\n+++ b/n.md\n@@ -0,0 +1,1 @@\n+x\n"
        );
        assert_eq!(
            unified("o.md", Some("x"), None),
            "--- a/o.md\n+++ /dev/null\n@@ -1,1 +0,0 @@\n-x\n\\ No newline at end of file\n"
        );
        assert_eq!(unified("s.md", Some("same\n"), Some("same\n")), "");
    }
}
