//! Checks a YAML node tree against a JSON Schema derived from the Rust types
//! (schemars), reporting every mismatch at its own position. The same schema
//! is what `onboard schema` hands to editors, so the editor and `validate`
//! never disagree.

use super::diag::{did_you_mean, Diagnostic};
use super::yaml::{Kind, Node};
use serde_json::Value;
use std::path::Path;

pub struct SchemaChecker<'a> {
    root: &'a Value,
    file: &'a Path,
    source: &'a str,
    /// Inside a step's `with`, a string holding `{{ … }}` stands for a value
    /// of any type: its type is known only after rendering.
    templates_allowed: bool,
}

/// Whether a string is (or contains) a minijinja template.
pub fn is_template(s: &str) -> bool {
    s.contains("{{") || s.contains("{%")
}

impl<'a> SchemaChecker<'a> {
    pub fn new(root: &'a Value, file: &'a Path, source: &'a str) -> Self {
        SchemaChecker {
            root,
            file,
            source,
            templates_allowed: false,
        }
    }

    pub fn allow_templates(mut self, yes: bool) -> Self {
        self.templates_allowed = yes;
        self
    }

    /// Checks `node` against the checker's root schema.
    pub fn check_root(&self, node: &Node, context: &str, diags: &mut Vec<Diagnostic>) {
        self.check(self.root, node, context, diags);
    }

    pub fn check(&self, schema: &Value, node: &Node, context: &str, diags: &mut Vec<Diagnostic>) {
        let schema = match schema {
            Value::Bool(true) => return,
            Value::Bool(false) => {
                diags.push(self.diag(
                    node,
                    "not-allowed",
                    format!("{}not allowed here", prefix(context)),
                ));
                return;
            }
            Value::Object(map) => map,
            _ => return,
        };
        if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
            if let Some(target) = self.resolve(reference) {
                self.check(target, node, context, diags);
            }
        }
        if self.templates_allowed {
            if let Kind::Str(s) = &node.kind {
                if is_template(s) {
                    return;
                }
            }
        }
        if let Some(types) = schema.get("type") {
            let allowed: Vec<&str> = match types {
                Value::String(t) => vec![t.as_str()],
                Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
                _ => Vec::new(),
            };
            if !allowed.is_empty() && !allowed.iter().any(|t| matches_type(t, node)) {
                let names: Vec<&str> = allowed
                    .iter()
                    .filter(|t| **t != "null" || allowed.len() == 1)
                    .map(|t| describe_type(t))
                    .collect();
                let expected = match names.split_last() {
                    Some((last, rest)) if !rest.is_empty() => {
                        format!("{}, or {last}", rest.join(", "))
                    }
                    _ => names.join(""),
                };
                diags.push(self.diag(
                    node,
                    "type",
                    format!(
                        "{}expected {expected}, found {}",
                        prefix(context),
                        describe_node(node)
                    ),
                ));
                return;
            }
        }
        if let Some(options) = schema.get("enum").and_then(Value::as_array) {
            self.check_enum(options, node, context, diags);
        }
        if let Some(constant) = schema.get("const") {
            self.check_enum(std::slice::from_ref(constant), node, context, diags);
        }
        for keyword in ["anyOf", "oneOf"] {
            if let Some(branches) = schema.get(keyword).and_then(Value::as_array) {
                self.check_branches(branches, node, context, diags);
            }
        }
        if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
            for branch in all {
                self.check(branch, node, context, diags);
            }
        }
        if let Kind::Int(_) | Kind::Float(_) = node.kind {
            self.check_bounds(schema, node, context, diags);
        }
        match &node.kind {
            Kind::Map(entries)
                if schema.contains_key("properties")
                    || schema.contains_key("additionalProperties") =>
            {
                self.check_object(schema, node, entries, context, diags)
            }
            Kind::Seq(items) => {
                if let Some(item_schema) = schema.get("items") {
                    for (i, item) in items.iter().enumerate() {
                        self.check(item_schema, item, &format!("{context}[{i}]"), diags);
                    }
                }
            }
            _ => {}
        }
    }

    fn check_object(
        &self,
        schema: &serde_json::Map<String, Value>,
        node: &Node,
        entries: &[(Node, Node)],
        context: &str,
        diags: &mut Vec<Diagnostic>,
    ) {
        let empty = serde_json::Map::new();
        let properties = schema
            .get("properties")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let additional = schema.get("additionalProperties");
        let mut seen: Vec<&str> = Vec::new();
        for (key, value) in entries {
            let Some(name) = key.as_str() else {
                diags.push(self.diag(
                    key,
                    "key-type",
                    format!(
                        "{}keys must be strings, found {}",
                        prefix(context),
                        describe_node(key)
                    ),
                ));
                continue;
            };
            if seen.contains(&name) {
                diags.push(
                    self.diag(
                        key,
                        "duplicate-key",
                        format!("{}duplicate key `{name}`", prefix(context)),
                    )
                    .with_help("YAML keeps only one of them; remove the other"),
                );
                continue;
            }
            seen.push(name);
            let child = join(context, name);
            if let Some(prop) = properties.get(name) {
                self.check(prop, value, &child, diags);
            } else {
                match additional {
                    Some(Value::Bool(false)) => {
                        let mut d = self.diag(
                            key,
                            "unknown-key",
                            format!("{}unknown key `{name}`", prefix(context)),
                        );
                        let names: Vec<&str> = properties.keys().map(String::as_str).collect();
                        d = match did_you_mean(name, names.iter().copied()) {
                            Some(s) => d.with_help(format!("did you mean `{s}`?")),
                            None => d.with_help(format!("expected one of: {}", names.join(", "))),
                        };
                        diags.push(d);
                    }
                    Some(extra) => self.check(extra, value, &child, diags),
                    None => {}
                }
            }
        }
        if let Some(required) = schema.get("required").and_then(Value::as_array) {
            for name in required.iter().filter_map(Value::as_str) {
                if !seen.contains(&name) {
                    diags.push(self.diag(
                        node,
                        "missing-key",
                        format!("{}missing required key `{name}`", prefix(context)),
                    ));
                }
            }
        }
    }

    fn check_enum(
        &self,
        options: &[Value],
        node: &Node,
        context: &str,
        diags: &mut Vec<Diagnostic>,
    ) {
        let value = node.to_json();
        if options.contains(&value) {
            return;
        }
        let names: Vec<String> = options.iter().map(display_json).collect();
        let mut d = self.diag(
            node,
            "unknown-value",
            format!(
                "{}`{}` is not one of {}",
                prefix(context),
                display_json(&value),
                names.join(", ")
            ),
        );
        if let Some(s) = value
            .as_str()
            .and_then(|v| did_you_mean(v, names.iter().map(String::as_str)))
        {
            d = d.with_help(format!("did you mean `{s}`?"));
        }
        diags.push(d);
    }

    fn check_branches(
        &self,
        branches: &[Value],
        node: &Node,
        context: &str,
        diags: &mut Vec<Diagnostic>,
    ) {
        let mut best: Option<Vec<Diagnostic>> = None;
        for branch in branches {
            let mut scratch = Vec::new();
            self.check(branch, node, context, &mut scratch);
            if scratch.is_empty() {
                return;
            }
            // Prefer the branch whose type matched: its findings are the
            // precise ones (a wrong key inside the right shape).
            let type_matched = !scratch.iter().any(|d| {
                d.code == "type" && d.line == node.span.start.line && d.col == node.span.start.col
            });
            let better = match &best {
                None => true,
                Some(b) => {
                    type_matched && (scratch.len() < b.len() || b.iter().any(|d| d.code == "type"))
                }
            };
            if better {
                best = Some(scratch);
            }
        }
        let consts: Vec<Value> = branches
            .iter()
            .filter_map(|b| self.deref(b).get("const").cloned())
            .collect();
        if consts.len() == branches.len() {
            self.check_enum(&consts, node, context, diags);
        } else if let Some(found) = best {
            diags.extend(found);
        }
    }

    fn check_bounds(
        &self,
        schema: &serde_json::Map<String, Value>,
        node: &Node,
        context: &str,
        diags: &mut Vec<Diagnostic>,
    ) {
        let value = match node.kind {
            Kind::Int(i) => i as f64,
            Kind::Float(f) => f,
            _ => return,
        };
        if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
            if value < min {
                diags.push(self.diag(
                    node,
                    "range",
                    format!("{}must be at least {min}", prefix(context)),
                ));
            }
        }
        if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
            if value > max {
                diags.push(self.diag(
                    node,
                    "range",
                    format!("{}must be at most {max}", prefix(context)),
                ));
            }
        }
    }

    fn deref<'s>(&'s self, schema: &'s Value) -> &'s Value {
        match schema.get("$ref").and_then(Value::as_str) {
            Some(r) => self.resolve(r).unwrap_or(schema),
            None => schema,
        }
    }

    fn resolve(&self, reference: &str) -> Option<&'a Value> {
        let pointer = reference.strip_prefix('#')?;
        self.root.pointer(pointer)
    }

    fn diag(&self, node: &Node, code: &'static str, message: String) -> Diagnostic {
        Diagnostic::at(self.file, self.source, node.span, code, message)
    }
}

fn join(context: &str, key: &str) -> String {
    if context.is_empty() {
        key.to_string()
    } else {
        format!("{context}.{key}")
    }
}

/// `` `path`: `` before a message, or nothing at the document root.
fn prefix(context: &str) -> String {
    if context.is_empty() {
        String::new()
    } else {
        format!("`{context}`: ")
    }
}

fn matches_type(t: &str, node: &Node) -> bool {
    matches!(
        (t, &node.kind),
        ("null", Kind::Null)
            | ("boolean", Kind::Bool(_))
            | ("integer", Kind::Int(_))
            | ("number", Kind::Int(_) | Kind::Float(_))
            | ("string", Kind::Str(_))
            | ("array", Kind::Seq(_))
            | ("object", Kind::Map(_))
    )
}

fn describe_type(t: &str) -> &'static str {
    match t {
        "null" => "nothing (null)",
        "boolean" => "true or false",
        "integer" => "an integer",
        "number" => "a number",
        "string" => "a string",
        "array" => "a list",
        "object" => "a mapping",
        _ => "a value",
    }
}

fn describe_node(node: &Node) -> String {
    match &node.kind {
        Kind::Null => "nothing (null)".into(),
        Kind::Bool(b) => format!("`{b}`"),
        Kind::Int(i) => format!("the integer `{i}`"),
        Kind::Float(f) => format!("the number `{f}`"),
        Kind::Str(s) => format!("the string `{}`", s.chars().take(40).collect::<String>()),
        Kind::Seq(_) => "a list".into(),
        Kind::Map(_) => "a mapping".into(),
    }
}

fn display_json(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::yaml;
    use schemars::JsonSchema;

    #[allow(dead_code)]
    #[derive(JsonSchema)]
    #[serde(deny_unknown_fields)]
    struct Params {
        argv: Vec<String>,
        timeout: Option<u32>,
        mode: Mode,
    }

    #[allow(dead_code)]
    #[derive(JsonSchema)]
    #[serde(rename_all = "lowercase")]
    enum Mode {
        Fast,
        Slow,
    }

    fn check(src: &str, templates: bool) -> Vec<Diagnostic> {
        let schema = serde_json::to_value(schemars::schema_for!(Params)).unwrap();
        let node = yaml::parse(src).unwrap();
        let mut diags = Vec::new();
        SchemaChecker::new(&schema, Path::new("p.yaml"), src)
            .allow_templates(templates)
            .check_root(&node, "", &mut diags);
        diags
    }

    #[test]
    fn reports_every_mismatch_where_it_is() {
        let d = check("argv: [1, ok]\ntimeout: -1\nmode: fsat\nextra: 1\n", false);
        let summary: Vec<_> = d.iter().map(|d| (d.line, d.col, d.code)).collect();
        assert_eq!(
            summary,
            vec![
                (1, 8, "type"),
                (2, 10, "range"),
                (3, 7, "unknown-value"),
                (4, 1, "unknown-key")
            ],
            "{d:#?}"
        );
        assert_eq!(d[2].help.as_deref(), Some("did you mean `fast`?"));
    }

    #[test]
    fn templates_stand_for_any_type_only_when_allowed() {
        assert!(check("argv: [a]\ntimeout: '{{ x }}'\nmode: fast\n", true).is_empty());
        assert_eq!(
            check("argv: [a]\ntimeout: '{{ x }}'\nmode: fast\n", false).len(),
            1
        );
        let missing = check("argv: [a]\n", false);
        assert_eq!(missing[0].code, "missing-key");
    }
}
