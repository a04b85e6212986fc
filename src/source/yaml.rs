//! YAML parsed into a tree that remembers where every node came from, so each
//! finding can point at `file:line:col`. serde-based YAML crates stop at the
//! first error and forget positions; a compiler-style validator needs both.

use saphyr_parser::{Event, Parser, ScalarStyle, Span as YamlSpan};
use serde_json::{Map, Number, Value};
use std::collections::HashMap;

/// A 1-based line and column (in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, serde::Serialize)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

/// Where a node starts and ends in its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    pub start: Pos,
    pub end: Pos,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub kind: Kind,
    pub span: Span,
}

/// A syntax error from the YAML scanner or parser.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntaxError {
    pub pos: Pos,
    pub message: String,
}

/// Deeper nesting is refused: the checks walk the tree recursively, and no
/// real workflow nests more than a handful of levels.
const MAX_DEPTH: usize = 128;

/// Alias expansion is capped so a "billion laughs" file cannot exhaust memory.
const MAX_NODES: usize = 200_000;

impl Node {
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            Kind::Null => "null",
            Kind::Bool(_) => "boolean",
            Kind::Int(_) => "integer",
            Kind::Float(_) => "number",
            Kind::Str(_) => "string",
            Kind::Seq(_) => "sequence",
            Kind::Map(_) => "mapping",
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            Kind::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The value under `key` in a mapping (the first, if duplicated).
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entry(key).map(|(_, v)| v)
    }

    pub fn entry(&self, key: &str) -> Option<(&Node, &Node)> {
        match &self.kind {
            Kind::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(k, v)| (k, v)),
            _ => None,
        }
    }

    /// Follows a JSON-pointer-like path of keys and indexes to a node.
    pub fn at_path(&self, path: &[PathSegment]) -> Option<&Node> {
        let mut node = self;
        for segment in path {
            node = match (segment, &node.kind) {
                (PathSegment::Key(k), Kind::Map(_)) => node.get(k)?,
                (PathSegment::Index(i), Kind::Seq(items)) => items.get(*i)?,
                _ => return None,
            };
        }
        Some(node)
    }

    /// The plain JSON value of this node (keys stringified).
    pub fn to_json(&self) -> Value {
        match &self.kind {
            Kind::Null => Value::Null,
            Kind::Bool(b) => Value::Bool(*b),
            Kind::Int(i) => Value::Number((*i).into()),
            Kind::Float(f) => Number::from_f64(*f).map_or(Value::Null, Value::Number),
            Kind::Str(s) => Value::String(s.clone()),
            Kind::Seq(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            Kind::Map(entries) => {
                let mut map = Map::new();
                for (k, v) in entries {
                    map.entry(k.key_string()).or_insert_with(|| v.to_json());
                }
                Value::Object(map)
            }
        }
    }

    /// A mapping key as text (YAML allows non-string keys; JSON does not).
    pub fn key_string(&self) -> String {
        match &self.kind {
            Kind::Str(s) => s.clone(),
            Kind::Null => "null".into(),
            Kind::Bool(b) => b.to_string(),
            Kind::Int(i) => i.to_string(),
            Kind::Float(f) => f.to_string(),
            Kind::Seq(_) | Kind::Map(_) => "<complex key>".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathSegment {
    Key(String),
    Index(usize),
}

/// Parses one YAML document. An empty file is `null`.
pub fn parse(text: &str) -> Result<Node, SyntaxError> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    loop {
        match parser.next_event() {
            None => break,
            Some(Ok((event, span))) => {
                if matches!(event, Event::StreamEnd) {
                    break;
                }
                builder.on_event(event, span);
                if let Some(err) = builder.error.take() {
                    return Err(err);
                }
            }
            Some(Err(e)) => {
                return Err(SyntaxError {
                    pos: Pos {
                        line: e.marker().line(),
                        col: e.marker().col() + 1,
                    },
                    message: e.info().to_string(),
                })
            }
        }
    }
    if let Some(err) = builder.error {
        return Err(err);
    }
    Ok(builder.root.unwrap_or(Node {
        kind: Kind::Null,
        span: Span {
            start: Pos { line: 1, col: 1 },
            end: Pos { line: 1, col: 1 },
        },
    }))
}

enum Frame {
    Seq(Vec<Node>, Span, usize),
    Map(Vec<(Node, Node)>, Option<Node>, Span, usize),
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    root: Option<Node>,
    anchors: HashMap<usize, Node>,
    documents: usize,
    nodes: usize,
    error: Option<SyntaxError>,
}

fn pos(m: saphyr_parser::Marker) -> Pos {
    Pos {
        line: m.line(),
        col: m.col() + 1,
    }
}

fn span(s: YamlSpan) -> Span {
    Span {
        start: pos(s.start),
        end: pos(s.end),
    }
}

impl Builder {
    fn fail(&mut self, at: Pos, message: impl Into<String>) {
        if self.error.is_none() {
            self.error = Some(SyntaxError {
                pos: at,
                message: message.into(),
            });
        }
    }

    fn count(&mut self, n: usize, at: Pos) {
        self.nodes = self.nodes.saturating_add(n);
        if self.nodes > MAX_NODES {
            self.fail(
                at,
                format!("document expands to more than {MAX_NODES} nodes (alias bomb?)"),
            );
        }
    }

    fn depth_check(&mut self, at: Pos) {
        if self.stack.len() >= MAX_DEPTH {
            self.fail(at, format!("nested more than {MAX_DEPTH} levels deep"));
        }
    }

    fn push_value(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Frame::Seq(items, _, _)) => items.push(node),
            Some(Frame::Map(entries, pending, _, _)) => match pending.take() {
                None => *pending = Some(node),
                Some(key) => entries.push((key, node)),
            },
        }
    }

    fn on_event(&mut self, event: Event<'_>, yspan: YamlSpan) {
        if self.error.is_some() {
            return;
        }
        let sp = span(yspan);
        match event {
            Event::DocumentStart(_) => {
                self.documents += 1;
                if self.documents > 1 {
                    self.fail(
                        sp.start,
                        "expected a single YAML document, found another `---`",
                    );
                }
            }
            Event::Scalar(text, style, anchor, tag) => {
                self.count(1, sp.start);
                let forced_str = tag.as_ref().is_some_and(|t| t.suffix == "str");
                let kind = if style != ScalarStyle::Plain || forced_str {
                    Kind::Str(text.into_owned())
                } else {
                    resolve_plain(&text)
                };
                self.push_value(Node { kind, span: sp }, anchor);
            }
            Event::SequenceStart(anchor, _) => {
                self.count(1, sp.start);
                self.depth_check(sp.start);
                self.stack.push(Frame::Seq(Vec::new(), sp, anchor));
            }
            Event::MappingStart(anchor, _) => {
                self.count(1, sp.start);
                self.depth_check(sp.start);
                self.stack.push(Frame::Map(Vec::new(), None, sp, anchor));
            }
            Event::SequenceEnd => {
                if let Some(Frame::Seq(items, start, anchor)) = self.stack.pop() {
                    let node = Node {
                        kind: Kind::Seq(items),
                        span: Span {
                            start: start.start,
                            end: sp.end,
                        },
                    };
                    self.push_value(node, anchor);
                }
            }
            Event::MappingEnd => {
                if let Some(Frame::Map(entries, _, start, anchor)) = self.stack.pop() {
                    let node = Node {
                        kind: Kind::Map(entries),
                        span: Span {
                            start: start.start,
                            end: sp.end,
                        },
                    };
                    self.push_value(node, anchor);
                }
            }
            Event::Alias(id) => match self.anchors.get(&id).cloned() {
                Some(mut node) => {
                    let size = node_count(&node);
                    self.count(size, sp.start);
                    node.span = sp;
                    self.push_value(node, 0);
                }
                None => self.fail(sp.start, "alias refers to an unknown anchor"),
            },
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {}
        }
    }
}

fn node_count(node: &Node) -> usize {
    match &node.kind {
        Kind::Seq(items) => 1 + items.iter().map(node_count).sum::<usize>(),
        Kind::Map(entries) => {
            1 + entries
                .iter()
                .map(|(k, v)| node_count(k) + node_count(v))
                .sum::<usize>()
        }
        _ => 1,
    }
}

/// YAML 1.2 core schema resolution of a plain scalar.
fn resolve_plain(text: &str) -> Kind {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Kind::Null,
        "true" | "True" | "TRUE" => return Kind::Bool(true),
        "false" | "False" | "FALSE" => return Kind::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Kind::Float(f64::INFINITY)
        }
        "-.inf" | "-.Inf" | "-.INF" => return Kind::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Kind::Float(f64::NAN),
        _ => {}
    }
    if let Some(hex) = text.strip_prefix("0x") {
        if let Ok(i) = i64::from_str_radix(hex, 16) {
            return Kind::Int(i);
        }
    }
    if let Some(oct) = text.strip_prefix("0o") {
        if let Ok(i) = i64::from_str_radix(oct, 8) {
            return Kind::Int(i);
        }
    }
    let looks_numeric = text
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E'))
        && text.bytes().any(|b| b.is_ascii_digit());
    if looks_numeric {
        if let Ok(i) = text.parse::<i64>() {
            return Kind::Int(i);
        }
        if let Ok(f) = text.parse::<f64>() {
            return Kind::Float(f);
        }
    }
    Kind::Str(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based() {
        let node = parse("a: 1\nb:\n  - x\n  - 'y'\n").unwrap();
        let b = node.get("b").unwrap();
        let Kind::Seq(items) = &b.kind else {
            panic!("not a seq")
        };
        assert_eq!(items[1].span.start, Pos { line: 4, col: 5 });
        assert_eq!(items[1].kind, Kind::Str("y".into()));
        assert_eq!(node.get("a").unwrap().kind, Kind::Int(1));
    }

    #[test]
    fn core_schema_scalars() {
        assert_eq!(resolve_plain("~"), Kind::Null);
        assert_eq!(resolve_plain("0x1f"), Kind::Int(31));
        assert_eq!(resolve_plain("1.5"), Kind::Float(1.5));
        assert_eq!(resolve_plain("1.5GB"), Kind::Str("1.5GB".into()));
        assert_eq!(resolve_plain("yes"), Kind::Str("yes".into()));
    }

    #[test]
    fn syntax_errors_have_positions() {
        let err = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(err.pos.line >= 1, "{err:?}");
        let err = parse("a: 1\n---\nb: 2\n").unwrap_err();
        assert_eq!(err.pos.line, 2);
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        for depth in [200, 100_000] {
            let deep = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
            assert!(parse(&deep).is_err(), "depth {depth}");
        }
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(parse(&deep).unwrap_err().message.contains("levels deep"));
        let ok = format!("{}{}", "[".repeat(50), "]".repeat(50));
        assert!(parse(&ok).is_ok());
    }

    #[test]
    fn aliases_expand_and_bombs_are_refused() {
        let node = parse("a: &x [1, 2]\nb: *x\n").unwrap();
        assert_eq!(node.get("b").unwrap().to_json(), serde_json::json!([1, 2]));
        let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 0..8 {
            let prev = if i == 0 {
                "a".to_string()
            } else {
                format!("l{}", i - 1)
            };
            bomb.push_str(&format!(
                "l{i}: &l{i} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
            ));
        }
        assert!(parse(&bomb).unwrap_err().message.contains("alias bomb"));
    }
}
