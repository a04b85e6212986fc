//! A small markdown scanner: where the links, reference definitions and
//! headings are, as byte ranges into the original text, so that a rewrite
//! can replace a link destination and leave every other byte alone.
//!
//! It is not a full CommonMark parser; it knows what decides whether a
//! bracket is a link: fenced and indented code blocks, code spans,
//! backslash escapes, HTML comments and autolinks (none of which hold
//! links), nested brackets, `<…>` destinations, titles and balanced
//! parentheses, and links whose text is wrapped over several lines.

/// What kind of link a destination belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkKind {
    /// `[text](dest)`
    Inline,
    /// `![alt](dest)`
    Image,
    /// `[label]: dest`
    Definition,
}

/// One link destination as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub kind: LinkKind,
    /// The destination exactly as written (without `<` `>`).
    pub dest: String,
    /// Byte range of `dest` in the text (inside any angle brackets).
    pub start: usize,
    pub end: usize,
    /// Whether the destination is written `<like this>`.
    pub angle: bool,
    /// 1-based line and column (in characters) of the destination.
    pub line: usize,
    pub col: usize,
}

/// A heading and the text a renderer shows for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heading {
    pub level: u8,
    pub text: String,
    pub line: usize,
}

/// Everything the link checker and the rewriter need from one file.
#[derive(Debug, Default, Clone)]
pub struct Scan {
    pub links: Vec<Link>,
    pub headings: Vec<Heading>,
    /// `id`/`name` attributes of HTML anchors (`<a id="x">`).
    pub html_anchors: Vec<String>,
}

impl Scan {
    /// The anchors a page offers: GitHub heading slugs (duplicates get
    /// `-1`, `-2`, …) and explicit HTML ids.
    pub fn anchors(&self) -> Vec<String> {
        let mut slugger = super::slug::Slugger::default();
        let mut out: Vec<String> = self
            .headings
            .iter()
            .map(|h| slugger.slug(&h.text))
            .collect();
        out.extend(self.html_anchors.iter().cloned());
        out
    }
}

/// Scans a markdown document.
pub fn scan(text: &str) -> Scan {
    let mut s = Scanner {
        text,
        bytes: text.as_bytes(),
        line_starts: line_starts(text),
        out: Scan::default(),
    };
    s.blocks();
    s.out.links.sort_by_key(|l| l.start);
    s.out
}

fn line_starts(text: &str) -> Vec<usize> {
    std::iter::once(0)
        .chain(text.match_indices('\n').map(|(i, _)| i + 1))
        .collect()
}

struct Scanner<'a> {
    text: &'a str,
    bytes: &'a [u8],
    line_starts: Vec<usize>,
    out: Scan,
}

/// A fenced code block being skipped: its fence character and length.
struct Fence {
    ch: u8,
    len: usize,
}

fn indent_of(line: &str) -> usize {
    let mut n = 0;
    for c in line.chars() {
        match c {
            ' ' => n += 1,
            '\t' => n += 4 - n % 4,
            _ => break,
        }
    }
    n
}

/// `- `, `* `, `+ `, `1. `, `1) ` at the start of a (trimmed) line.
fn is_list_item(trimmed: &str) -> bool {
    let b = trimmed.as_bytes();
    if b.len() >= 2 && matches!(b[0], b'-' | b'*' | b'+') && matches!(b[1], b' ' | b'\t') {
        return true;
    }
    if b.len() == 1 && matches!(b[0], b'-' | b'*' | b'+') {
        return true;
    }
    let digits = b.iter().take_while(|c| c.is_ascii_digit()).count();
    (1..=9).contains(&digits)
        && b.get(digits).is_some_and(|c| matches!(c, b'.' | b')'))
        && b.get(digits + 1).is_none_or(|c| matches!(c, b' ' | b'\t'))
}

fn fence_open(trimmed: &str) -> Option<Fence> {
    let b = trimmed.as_bytes();
    let ch = *b.first()?;
    if ch != b'`' && ch != b'~' {
        return None;
    }
    let len = b.iter().take_while(|&&c| c == ch).count();
    if len < 3 {
        return None;
    }
    // A backtick fence's info string may not contain backticks.
    if ch == b'`' && trimmed[len..].contains('`') {
        return None;
    }
    Some(Fence { ch, len })
}

fn fence_closes(trimmed: &str, fence: &Fence) -> bool {
    let b = trimmed.as_bytes();
    let len = b.iter().take_while(|&&c| c == fence.ch).count();
    len >= fence.len && trimmed[len..].trim().is_empty()
}

/// `***`, `---`, `___`, spaces allowed between.
fn is_thematic_break(trimmed: &str) -> bool {
    let mut chars = trimmed.chars().filter(|c| !c.is_whitespace());
    let Some(first) = chars.next() else {
        return false;
    };
    matches!(first, '*' | '-' | '_')
        && trimmed.chars().filter(|c| *c == first).count() >= 3
        && chars.all(|c| c == first)
}

impl Scanner<'_> {
    fn position(&self, offset: usize) -> (usize, usize) {
        let line = self.line_starts.partition_point(|&s| s <= offset);
        let start = self.line_starts[line - 1];
        let col = self.text[start..offset].chars().count() + 1;
        (line, col)
    }

    /// Line by line: code blocks, headings, reference definitions, and
    /// paragraphs whose inline content is scanned as one piece.
    fn blocks(&mut self) {
        let mut fence: Option<Fence> = None;
        // Byte range of the paragraph being collected.
        let mut para: Option<(usize, usize)> = None;
        let mut para_is_item = false;
        let mut in_list = false;
        let mut in_indented_code = false;
        let starts = self.line_starts.clone();
        for (i, &start) in starts.iter().enumerate() {
            let end_with_nl = starts.get(i + 1).copied().unwrap_or(self.text.len());
            if start >= self.text.len() && i > 0 {
                break;
            }
            let line = self.text[start..end_with_nl].trim_end_matches(['\n', '\r']);
            let end = start + line.len();
            let indent = indent_of(line);
            let trimmed = line.trim();
            if let Some(f) = &fence {
                if indent < 4 && fence_closes(trimmed, f) {
                    fence = None;
                }
                continue;
            }
            if trimmed.is_empty() {
                self.flush(&mut para);
                continue;
            }
            if in_indented_code && indent >= 4 {
                continue;
            }
            in_indented_code = false;
            if indent >= 4 && para.is_none() && !in_list {
                in_indented_code = true;
                continue;
            }
            if indent < 4 {
                if let Some(f) = fence_open(trimmed) {
                    self.flush(&mut para);
                    fence = Some(f);
                    continue;
                }
                if let Some((level, text_start, text_end)) = atx_heading(line) {
                    self.flush(&mut para);
                    let body = &line[text_start..text_end];
                    self.out.headings.push(Heading {
                        level,
                        text: plain_text(body),
                        line: i + 1,
                    });
                    self.inline(start + text_start, start + text_end);
                    continue;
                }
                let setext = if !trimmed.is_empty() && trimmed.bytes().all(|c| c == b'=') {
                    Some(1)
                } else if !trimmed.is_empty() && trimmed.bytes().all(|c| c == b'-') {
                    Some(2)
                } else {
                    None
                };
                if let (Some(level), Some((ps, pe))) = (setext, para) {
                    if !para_is_item {
                        let (line_no, _) = self.position(ps);
                        let text = self.text[ps..pe]
                            .lines()
                            .map(str::trim)
                            .collect::<Vec<_>>()
                            .join(" ");
                        self.out.headings.push(Heading {
                            level,
                            text: plain_text(&text),
                            line: line_no,
                        });
                        self.flush(&mut para);
                        continue;
                    }
                }
                if is_thematic_break(trimmed) {
                    self.flush(&mut para);
                    continue;
                }
                if para.is_none() {
                    if let Some(def) = self.definition(start, line) {
                        self.out.links.push(def);
                        continue;
                    }
                }
                if is_list_item(trimmed) {
                    self.flush(&mut para);
                    in_list = true;
                    para_is_item = true;
                    para = Some((start, end));
                    continue;
                }
                if indent == 0 && para.is_none() {
                    in_list = false;
                }
            }
            match &mut para {
                Some((_, pe)) => *pe = end,
                None => {
                    para_is_item = false;
                    para = Some((start, end));
                }
            }
        }
        self.flush(&mut para);
    }

    fn flush(&mut self, para: &mut Option<(usize, usize)>) {
        if let Some((s, e)) = para.take() {
            self.inline(s, e);
        }
    }

    /// `[label]: destination "title"` on one line.
    fn definition(&self, start: usize, line: &str) -> Option<Link> {
        let lead = line.len() - line.trim_start().len();
        let rest = &line[lead..];
        if !rest.starts_with('[') {
            return None;
        }
        let close = find_bracket_close(rest.as_bytes(), 0, rest.len())?;
        if close == 1 || rest.as_bytes().get(close + 1) != Some(&b':') {
            return None;
        }
        let after = &rest[close + 2..];
        let ws = after.len() - after.trim_start().len();
        let dest_at = lead + close + 2 + ws;
        let tail = &line[dest_at..];
        let (d0, d1, angle) = if let Some(inner) = tail.strip_prefix('<') {
            let gt = inner.find('>')?;
            (dest_at + 1, dest_at + 1 + gt, true)
        } else {
            let len = tail.find(char::is_whitespace).unwrap_or(tail.len());
            if len == 0 {
                return None;
            }
            (dest_at, dest_at + len, false)
        };
        let (line_no, col) = self.position(start + d0);
        Some(Link {
            kind: LinkKind::Definition,
            dest: line[d0..d1].to_string(),
            start: start + d0,
            end: start + d1,
            angle,
            line: line_no,
            col,
        })
    }

    /// Inline content between byte offsets `s` and `e`.
    fn inline(&mut self, s: usize, e: usize) {
        let b = self.bytes;
        let mut i = s;
        while i < e {
            match b[i] {
                b'\\' => {
                    i += if i + 1 < e && b[i + 1].is_ascii_punctuation() {
                        2
                    } else {
                        1
                    }
                }
                b'`' => i = skip_code_span(b, i, e),
                b'<' => i = self.angle(i, e),
                b'!' if i + 1 < e && b[i + 1] == b'[' => i = self.bracket(i + 1, e, true),
                b'[' => i = self.bracket(i, e, false),
                _ => i += 1,
            }
        }
    }

    /// `<!-- comments -->`, `<autolinks>` and HTML tags; records the ids of
    /// `<a id=…>`/`<a name=…>`. Returns where scanning resumes.
    fn angle(&mut self, i: usize, e: usize) -> usize {
        let rest = &self.text[i..e];
        if rest.starts_with("<!--") {
            return rest.find("-->").map_or(i + 4, |p| i + p + 3);
        }
        let Some(gt) = rest.find('>') else {
            return i + 1;
        };
        let inner = &rest[1..gt];
        if inner.is_empty() || inner.contains('<') {
            return i + 1;
        }
        // An autolink: `<scheme:…>` without spaces; nothing to check.
        if let Some((scheme, _)) = inner.split_once(':') {
            if is_scheme(scheme) && !inner.contains(char::is_whitespace) {
                return i + gt + 1;
            }
        }
        let lower = inner.to_ascii_lowercase();
        if lower.starts_with("a ") || lower.starts_with("a\n") {
            for attr in ["id", "name"] {
                if let Some(v) = attribute(inner, attr) {
                    self.out.html_anchors.push(v);
                }
            }
        }
        i + gt + 1
    }

    /// A `[` at `open`: an inline link, a reference link or plain text.
    fn bracket(&mut self, open: usize, e: usize, image: bool) -> usize {
        let b = self.bytes;
        let Some(close) = find_bracket_close(b, open, e) else {
            return open + 1;
        };
        if close + 1 < e && b[close + 1] == b'(' {
            if let Some((d0, d1, angle, after)) = parse_destination(b, close + 2, e) {
                let (line, col) = self.position(d0);
                self.out.links.push(Link {
                    kind: if image {
                        LinkKind::Image
                    } else {
                        LinkKind::Inline
                    },
                    dest: self.text[d0..d1].to_string(),
                    start: d0,
                    end: d1,
                    angle,
                    line,
                    col,
                });
                if !image {
                    // The text may hold an image: `[![badge](b.svg)](page.md)`.
                    self.inline(open + 1, close);
                }
                return after;
            }
        }
        // Not an inline link: the text itself may still hold links.
        open + 1
    }
}

fn is_scheme(s: &str) -> bool {
    let b = s.as_bytes();
    (2..=32).contains(&b.len())
        && b[0].is_ascii_alphabetic()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'.' | b'-'))
}

/// The value of `attr="…"` (or `'…'`) inside an HTML tag.
fn attribute(tag: &str, attr: &str) -> Option<String> {
    let lower = tag.to_ascii_lowercase();
    let mut from = 0;
    while let Some(p) = lower[from..].find(attr) {
        let at = from + p;
        from = at + attr.len();
        let before_ok = at > 0 && lower.as_bytes()[at - 1].is_ascii_whitespace();
        let rest = tag[at + attr.len()..].trim_start();
        if !before_ok {
            continue;
        }
        let Some(rest) = rest.strip_prefix('=') else {
            continue;
        };
        let rest = rest.trim_start();
        let quote = rest.chars().next()?;
        if quote == '"' || quote == '\'' {
            let inner = &rest[1..];
            return inner.find(quote).map(|q| inner[..q].to_string());
        }
        let len = rest
            .find(|c: char| c.is_whitespace() || c == '>' || c == '/')
            .unwrap_or(rest.len());
        return Some(rest[..len].to_string());
    }
    None
}

/// Skips a code span opening at `i` (a run of backticks); an unmatched run
/// is literal text.
fn skip_code_span(b: &[u8], i: usize, e: usize) -> usize {
    let n = b[i..e].iter().take_while(|&&c| c == b'`').count();
    let mut j = i + n;
    while j < e {
        if b[j] == b'`' {
            let m = b[j..e].iter().take_while(|&&c| c == b'`').count();
            if m == n {
                return j + m;
            }
            j += m;
        } else {
            j += 1;
        }
    }
    i + n
}

/// The `]` matching the `[` at `open`, skipping escapes and code spans.
fn find_bracket_close(b: &[u8], open: usize, e: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = open;
    while i < e {
        match b[i] {
            b'\\' => {
                i += 2;
                continue;
            }
            b'`' => {
                i = skip_code_span(b, i, e);
                continue;
            }
            b'[' => depth += 1,
            b']' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// After `(`: the destination's byte range, whether it is in `<>`, and
/// the offset after the closing `)`. `None` when this is no inline link.
fn parse_destination(b: &[u8], mut i: usize, e: usize) -> Option<(usize, usize, bool, usize)> {
    let skip_ws = |mut i: usize| {
        while i < e && matches!(b[i], b' ' | b'\t' | b'\n' | b'\r') {
            i += 1;
        }
        i
    };
    i = skip_ws(i);
    let (d0, d1, angle);
    if i < e && b[i] == b'<' {
        let mut j = i + 1;
        while j < e && b[j] != b'>' && b[j] != b'\n' && b[j] != b'<' {
            if b[j] == b'\\' {
                j += 1;
            }
            j += 1;
        }
        if j >= e || b[j] != b'>' {
            return None;
        }
        (d0, d1, angle) = (i + 1, j, true);
        i = j + 1;
    } else {
        let mut j = i;
        let mut depth = 0usize;
        while j < e {
            match b[j] {
                b'\\' => j += 1,
                b'(' => depth += 1,
                b')' if depth == 0 => break,
                b')' => depth -= 1,
                c if c.is_ascii_whitespace() || c.is_ascii_control() => break,
                _ => {}
            }
            j += 1;
        }
        if depth != 0 {
            return None;
        }
        (d0, d1, angle) = (i, j.min(e), false);
        i = j.min(e);
    }
    let before_title = i;
    i = skip_ws(i);
    if i < e && matches!(b[i], b'"' | b'\'' | b'(') {
        if i == before_title {
            return None;
        }
        let close = if b[i] == b'(' { b')' } else { b[i] };
        let mut j = i + 1;
        while j < e && b[j] != close {
            if b[j] == b'\\' {
                j += 1;
            }
            j += 1;
        }
        if j >= e {
            return None;
        }
        i = skip_ws(j + 1);
    }
    (i < e && b[i] == b')').then_some((d0, d1, angle, i + 1))
}

/// `# Heading #`: level and the byte range of its text within `line`.
fn atx_heading(line: &str) -> Option<(u8, usize, usize)> {
    let lead = line.len() - line.trim_start_matches(' ').len();
    if lead > 3 {
        return None;
    }
    let rest = &line[lead..];
    let hashes = rest.bytes().take_while(|&c| c == b'#').count();
    if !(1..=6).contains(&hashes) {
        return None;
    }
    let after = &rest[hashes..];
    if !after.is_empty() && !after.starts_with([' ', '\t']) {
        return None;
    }
    let text_start = lead + hashes + (after.len() - after.trim_start().len());
    let mut body = line[text_start..].trim_end();
    // A closing sequence of `#` preceded by a space is not part of the text.
    let without = body.trim_end_matches('#');
    if without.len() != body.len() && (without.is_empty() || without.ends_with([' ', '\t'])) {
        body = without.trim_end();
    }
    Some((hashes as u8, text_start, text_start + body.len()))
}

/// The text a renderer shows for inline markdown: link text without the
/// destination, code without backticks, no emphasis markers, no HTML tags,
/// no images.
pub fn plain_text(s: &str) -> String {
    let b = s.as_bytes();
    let chars: Vec<(usize, char)> = s.char_indices().collect();
    let mut out = String::new();
    let mut k = 0;
    while k < chars.len() {
        let (i, c) = chars[k];
        let next_k = |byte: usize| chars.partition_point(|&(p, _)| p < byte);
        match c {
            '\\' if i + 1 < s.len() && b[i + 1].is_ascii_punctuation() => {
                out.push(b[i + 1] as char);
                k += 2;
            }
            '`' => {
                let end = skip_code_span(b, i, s.len());
                let n = b[i..].iter().take_while(|&&c| c == b'`').count();
                if end > i + n {
                    out.push_str(s[i + n..end - n].trim());
                }
                k = next_k(end);
            }
            '!' if b.get(i + 1) == Some(&b'[') => {
                match find_bracket_close(b, i + 1, s.len()).and_then(|close| {
                    (b.get(close + 1) == Some(&b'('))
                        .then(|| parse_destination(b, close + 2, s.len()))
                        .flatten()
                }) {
                    Some((_, _, _, after)) => k = next_k(after),
                    None => {
                        out.push('!');
                        k += 1;
                    }
                }
            }
            '[' => {
                let link = find_bracket_close(b, i, s.len()).and_then(|close| {
                    (b.get(close + 1) == Some(&b'('))
                        .then(|| parse_destination(b, close + 2, s.len()))
                        .flatten()
                        .map(|(_, _, _, after)| (close, after))
                });
                match link {
                    Some((close, after)) => {
                        out.push_str(&plain_text(&s[i + 1..close]));
                        k = next_k(after);
                    }
                    None => {
                        out.push('[');
                        k += 1;
                    }
                }
            }
            '<' => match s[i..].find('>') {
                Some(gt)
                    if s[i + 1..].starts_with(|c: char| c.is_ascii_alphabetic() || c == '/') =>
                {
                    k = next_k(i + gt + 1);
                }
                _ => {
                    out.push('<');
                    k += 1;
                }
            },
            '*' | '~' => k += 1,
            '_' => {
                let prev = k.checked_sub(1).map(|p| chars[p].1);
                let next = chars.get(k + 1).map(|x| x.1);
                let inner = prev.is_some_and(char::is_alphanumeric)
                    && next.is_some_and(char::is_alphanumeric);
                if inner {
                    out.push('_');
                }
                k += 1;
            }
            _ => {
                out.push(c);
                k += 1;
            }
        }
    }
    out.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dests(text: &str) -> Vec<(LinkKind, String)> {
        scan(text)
            .links
            .into_iter()
            .map(|l| (l.kind, l.dest))
            .collect()
    }

    #[test]
    fn finds_inline_image_and_reference_links() {
        let text = "See [the guide](guide.md#setup \"Setup\") and ![chart](img/c.png).\n\n[ref]: ../cards/a.md#top\n[other]: <with space.md>\n";
        assert_eq!(
            dests(text),
            vec![
                (LinkKind::Inline, "guide.md#setup".into()),
                (LinkKind::Image, "img/c.png".into()),
                (LinkKind::Definition, "../cards/a.md#top".into()),
                (LinkKind::Definition, "with space.md".into()),
            ]
        );
        let links = scan(text).links;
        assert_eq!(&text[links[0].start..links[0].end], "guide.md#setup");
        assert_eq!((links[0].line, links[0].col), (1, 17));
        assert_eq!((links[2].line, links[2].col), (3, 8));
        assert!(links[3].angle);
    }

    #[test]
    fn code_fences_spans_comments_and_autolinks_hold_no_links() {
        let text = "\
```md
[in fence](a.md)
```

~~~~
[tilde](b.md)
~~~~

Inline `[code](c.md)` and ``[double `tick`](d.md)``.
<!-- [comment](e.md) --> <https://example.com/x.md> \\[escaped](f.md)

    [indented code](g.md)

[real](h.md)
";
        assert_eq!(dests(text), vec![(LinkKind::Inline, "h.md".into())]);
    }

    #[test]
    fn links_wrapped_over_lines_nested_images_and_parentheses() {
        let text = "A [long link\ntext](wrapped.md) and [![badge](b.svg)](page.md)\nand [p](a_(b).md) [angle](<x y.md>) [empty]() [not a link] (x.md)\n";
        assert_eq!(
            dests(text),
            vec![
                (LinkKind::Inline, "wrapped.md".into()),
                (LinkKind::Image, "b.svg".into()),
                (LinkKind::Inline, "page.md".into()),
                (LinkKind::Inline, "a_(b).md".into()),
                (LinkKind::Inline, "x y.md".into()),
                (LinkKind::Inline, "".into()),
            ]
        );
        let l = &scan(text).links[0];
        assert_eq!((l.line, l.col), (2, 7));
    }

    #[test]
    fn list_items_keep_their_links_and_indented_continuations() {
        let text = "- [one](1.md)\n- item\n\n    [continued](2.md)\n\ntext\n\n    [code](3.md)\n";
        assert_eq!(
            dests(text),
            vec![
                (LinkKind::Inline, "1.md".into()),
                (LinkKind::Inline, "2.md".into())
            ]
        );
    }

    #[test]
    fn headings_atx_setext_and_html_anchors() {
        let text = "# Title #\n\nSub *title*\n---------\n\n## `code` and [link](x.md)\n\n<a id=\"custom\"></a>\n\n- item\n---\n";
        let s = scan(text);
        let texts: Vec<&str> = s.headings.iter().map(|h| h.text.as_str()).collect();
        assert_eq!(texts, vec!["Title", "Sub title", "code and link"]);
        assert_eq!(s.headings[1].line, 3);
        assert_eq!(s.html_anchors, vec!["custom"]);
        assert_eq!(s.links.len(), 1);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(600))]
        /// Any text scans without panicking, and every link's byte range
        /// holds exactly its destination (what a rewrite replaces).
        #[test]
        fn any_text_scans_and_ranges_hold_the_destination(
            text in "([\\[\\]()<>`!#*_~\\\\ \n\t:\"'a-z./é→-]|\\[a\\]\\(b\\.md\\)|```\n){0,80}"
        ) {
            let s = scan(&text);
            for l in &s.links {
                proptest::prop_assert_eq!(&text[l.start..l.end], l.dest.as_str());
            }
            let _ = s.anchors();
        }
    }

    #[test]
    fn plain_text_keeps_inner_underscores() {
        assert_eq!(
            plain_text("snake_case _emph_ **bold**"),
            "snake_case emph bold"
        );
        assert_eq!(plain_text("a ![img](i.png) b"), "a  b");
        assert_eq!(plain_text("Qwen3.5 <sup>new</sup>"), "Qwen3.5 new");
    }
}
