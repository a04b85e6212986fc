//! Checks a workflow file the way a compiler checks a program: every finding
//! at once, each at its own `file:line:col`.

use super::duration;
use super::graph::find_cycles;
use super::spec::{Workflow, WorkflowFile};
use super::task::Registry;
use super::template::referenced_paths;
use crate::source::diag::{did_you_mean, Diagnostic};
use crate::source::schema_check::{is_template, SchemaChecker};
use crate::source::yaml::{Kind, Node, Span};
use crate::source::Document;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// What templates may read besides `steps`: each root variable with the
/// JSON Schema of its value (`None` = any value, not checked inside).
#[derive(Debug, Clone, Default)]
pub struct TemplateRoots {
    pub roots: BTreeMap<String, Option<Value>>,
}

impl From<BTreeMap<String, Option<Value>>> for TemplateRoots {
    fn from(roots: BTreeMap<String, Option<Value>>) -> Self {
        TemplateRoots { roots }
    }
}

impl TemplateRoots {
    pub fn add(mut self, name: &str, schema: Option<Value>) -> Self {
        self.roots.insert(name.to_string(), schema);
        self
    }
}

struct StepView<'a> {
    node: &'a Node,
    id: Option<(String, Span)>,
    uses: Option<(String, Span)>,
    needs: Vec<(String, Span)>,
    with: Option<&'a Node>,
    when: Option<&'a Node>,
}

/// Validates one workflow document. Returns the runnable workflow when
/// there were no findings.
pub fn check_workflow(
    doc: &Document,
    registry: &Registry,
    roots: &TemplateRoots,
) -> (Option<Workflow>, Vec<Diagnostic>) {
    let mut diags = Vec::new();
    let schema =
        serde_json::to_value(schemars::schema_for!(WorkflowFile)).unwrap_or(Value::Bool(true));
    SchemaChecker::new(&schema, &doc.path, &doc.source).check_root(&doc.root, "", &mut diags);

    let d = |node_span: Span, code: &'static str, msg: String| {
        Diagnostic::at(&doc.path, &doc.source, node_span, code, msg)
    };

    let steps: Vec<StepView> = match doc.root.get("steps").map(|n| &n.kind) {
        Some(Kind::Seq(items)) => items.iter().map(view).collect(),
        _ => Vec::new(),
    };

    // Ids: well-formed and unique.
    let mut first_seen: BTreeMap<&str, Span> = BTreeMap::new();
    for step in &steps {
        let Some((id, span)) = &step.id else { continue };
        if !valid_id(id) {
            let suggestion = id.to_ascii_lowercase().replace(['-', ' ', '.'], "_");
            diags.push(
                d(*span, "step-id", format!("step id `{id}` is not usable in templates (`steps.{id}`)"))
                    .with_help(format!(
                        "use lowercase letters, digits and `_`, starting with a letter, e.g. `{suggestion}`"
                    )),
            );
        }
        if let Some(first) = first_seen.get(id.as_str()) {
            diags.push(
                d(*span, "duplicate-step", format!("duplicate step id `{id}`")).with_help(format!(
                    "first defined at line {}; rename one of them",
                    first.start.line
                )),
            );
        } else {
            first_seen.insert(id, *span);
        }
    }
    let ids: BTreeSet<&str> = first_seen.keys().copied().collect();

    // Task kinds and their parameters.
    for step in &steps {
        let Some((uses, span)) = &step.uses else {
            continue;
        };
        match registry.get(uses) {
            None => {
                let kinds: Vec<&str> = registry.kinds().collect();
                let help = match did_you_mean(uses, kinds.iter().copied()) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!("known task kinds: {}", kinds.join(", ")),
                };
                diags.push(
                    d(*span, "unknown-task", format!("unknown task kind `{uses}`")).with_help(help),
                );
            }
            Some(task) => {
                if let Some(with) = step.with {
                    let params_schema = task.params_schema();
                    SchemaChecker::new(&params_schema, &doc.path, &doc.source)
                        .allow_templates(true)
                        .check_root(with, "with", &mut diags);
                } else {
                    let params_schema = task.params_schema();
                    let required: Vec<&str> = params_schema
                        .get("required")
                        .and_then(Value::as_array)
                        .map(|r| r.iter().filter_map(Value::as_str).collect())
                        .unwrap_or_default();
                    if !required.is_empty() {
                        diags.push(d(
                            step.node.span,
                            "missing-key",
                            format!(
                                "step needs `with` for task `{uses}` (required: {})",
                                required.join(", ")
                            ),
                        ));
                    }
                }
            }
        }
    }

    // Durations.
    for step in &steps {
        for (node, what) in [
            (step.node.get("timeout"), "timeout"),
            (
                step.node.get("retry").and_then(|r| r.get("backoff")),
                "retry.backoff",
            ),
            (
                step.node.get("retry").and_then(|r| r.get("max_backoff")),
                "retry.max_backoff",
            ),
        ] {
            if let Some(Node {
                kind: Kind::Str(s),
                span,
            }) = node
            {
                if let Err(e) = duration::parse(s) {
                    diags.push(d(*span, "duration", format!("`{what}`: {e}")));
                }
            }
        }
    }

    // needs: known steps, no self-reference, no repeats; then cycles.
    let mut edges: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut need_span: BTreeMap<(String, String), Span> = BTreeMap::new();
    for step in &steps {
        let Some((id, _)) = &step.id else { continue };
        let mut listed = BTreeSet::new();
        let entry = edges.entry(id.clone()).or_default();
        for (need, span) in &step.needs {
            if need == id {
                diags.push(d(*span, "cycle", format!("step `{id}` needs itself")));
                continue;
            }
            if !listed.insert(need.as_str()) {
                diags.push(d(
                    *span,
                    "duplicate-need",
                    format!("`{need}` is listed twice in `needs`"),
                ));
                continue;
            }
            if !ids.contains(need.as_str()) {
                let help = match did_you_mean(need, ids.iter().copied()) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!(
                        "steps in this workflow: {}",
                        ids.iter().copied().collect::<Vec<_>>().join(", ")
                    ),
                };
                diags.push(
                    d(
                        *span,
                        "unknown-step",
                        format!("`needs` names no step: `{need}`"),
                    )
                    .with_help(help),
                );
                continue;
            }
            entry.push(need.clone());
            need_span.insert((id.clone(), need.clone()), *span);
        }
    }
    for cycle in find_cycles(&edges) {
        // Point at the `needs` entry that closes the loop.
        let n = cycle.len();
        let span = need_span
            .get(&(cycle[n - 2].clone(), cycle[n - 1].clone()))
            .copied()
            .unwrap_or(doc.root.span);
        // Printed in execution order (a runs before b): reverse the needs chain.
        let path: Vec<&str> = cycle.iter().rev().map(String::as_str).collect();
        diags.push(
            d(
                span,
                "cycle",
                format!("dependency cycle: {}", path.join(" -> ")),
            )
            .with_help("remove one of these `needs` entries"),
        );
    }

    // Templates: syntax, and every variable they read.
    let ancestors = ancestor_sets(&edges);
    let uses_of: BTreeMap<&str, &str> = steps
        .iter()
        .filter_map(|s| Some((s.id.as_ref()?.0.as_str(), s.uses.as_ref()?.0.as_str())))
        .collect();
    for step in &steps {
        let Some((id, _)) = &step.id else { continue };
        let mut strings = Vec::new();
        if let Some(with) = step.with {
            collect_strings(with, &mut strings);
        }
        let mut checks: Vec<(&Node, bool)> = strings
            .into_iter()
            .filter(|n| n.as_str().is_some_and(is_template))
            .map(|n| (n, false))
            .collect();
        if let Some(when) = step.when {
            if when.as_str().is_some() {
                checks.push((when, true));
            }
        }
        let empty = BTreeSet::new();
        let reachable = ancestors.get(id.as_str()).unwrap_or(&empty);
        for (node, is_expr) in checks {
            let text = node.as_str().unwrap_or_default();
            match referenced_paths(text, is_expr) {
                Err(e) => diags.push(d(
                    node.span,
                    "template",
                    format!("template syntax error: {}", e.message),
                )),
                Ok(paths) => {
                    for path in paths {
                        if let Some(problem) =
                            check_reference(&path, id, reachable, &ids, &uses_of, registry, roots)
                        {
                            diags.push(d(node.span, problem.0, problem.1).with_help(problem.2));
                        }
                    }
                }
            }
        }
    }

    diags.sort_by_key(|d| (d.line, d.col));
    diags.dedup();
    if !diags.is_empty() {
        return (None, diags);
    }
    let file: WorkflowFile = match serde_json::from_value(doc.root.to_json()) {
        Ok(f) => f,
        Err(e) => {
            diags.push(d(doc.root.span, "schema", e.to_string()));
            return (None, diags);
        }
    };
    match Workflow::from_file(file, &doc.path) {
        Ok(w) => (Some(w), diags),
        Err(e) => {
            diags.push(d(doc.root.span, "schema", e));
            (None, diags)
        }
    }
}

fn view(node: &Node) -> StepView<'_> {
    let string = |key: &str| {
        node.get(key)
            .and_then(|n| n.as_str().map(|s| (s.to_string(), n.span)))
    };
    let needs = match node.get("needs").map(|n| &n.kind) {
        Some(Kind::Seq(items)) => items
            .iter()
            .filter_map(|n| n.as_str().map(|s| (s.to_string(), n.span)))
            .collect(),
        _ => Vec::new(),
    };
    StepView {
        node,
        id: string("id"),
        uses: string("uses"),
        needs,
        with: node.get("with").filter(|n| matches!(n.kind, Kind::Map(_))),
        when: node.get("when"),
    }
}

fn valid_id(id: &str) -> bool {
    let mut chars = id.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn collect_strings<'a>(node: &'a Node, out: &mut Vec<&'a Node>) {
    match &node.kind {
        Kind::Str(_) => out.push(node),
        Kind::Seq(items) => items.iter().for_each(|n| collect_strings(n, out)),
        Kind::Map(entries) => entries.iter().for_each(|(_, v)| collect_strings(v, out)),
        _ => {}
    }
}

fn ancestor_sets(edges: &BTreeMap<String, Vec<String>>) -> BTreeMap<&str, BTreeSet<String>> {
    let mut out = BTreeMap::new();
    for id in edges.keys() {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<&str> = vec![id];
        while let Some(n) = stack.pop() {
            for next in edges.get(n).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    stack.push(next);
                }
            }
        }
        out.insert(id.as_str(), seen);
    }
    out
}

/// Returns `(code, message, help)` when a template reads something that
/// will not exist when the step runs.
fn check_reference(
    path: &str,
    step: &str,
    reachable: &BTreeSet<String>,
    ids: &BTreeSet<&str>,
    uses_of: &BTreeMap<&str, &str>,
    registry: &Registry,
    roots: &TemplateRoots,
) -> Option<(&'static str, String, String)> {
    let parts: Vec<&str> = path.split('.').collect();
    let root = parts[0];
    if root == "steps" {
        let target = parts.get(1)?;
        if !ids.contains(target) {
            let help = did_you_mean(target, ids.iter().copied())
                .map(|s| format!("did you mean `steps.{s}`?"))
                .unwrap_or_else(|| "reference a step listed in `needs`".into());
            return Some((
                "undefined-step",
                format!("template reads `{path}`, but there is no step `{target}`"),
                help,
            ));
        }
        if !reachable.contains(*target) {
            return Some((
                "not-needed",
                format!("template reads `{path}`, but step `{step}` does not need `{target}`"),
                format!("add `{target}` to the `needs` of `{step}` so it runs first"),
            ));
        }
        match parts.get(2) {
            None => None,
            Some(&"outputs") => {
                let output = parts.get(3)?;
                let task = registry.get(uses_of.get(target)?)?;
                let names = task.output_names();
                if names.iter().any(|n| n == output) {
                    None
                } else {
                    let help = match did_you_mean(output, names.iter().map(String::as_str)) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => format!("`{}` outputs: {}", task.kind(), names.join(", ")),
                    };
                    Some((
                        "undefined-output",
                        format!(
                            "template reads `{path}`, but task `{}` has no output `{output}`",
                            task.kind()
                        ),
                        help,
                    ))
                }
            }
            Some(other) => Some((
                "undefined-variable",
                format!("template reads `{path}`: a step has only `outputs`, not `{other}`"),
                format!("write `steps.{target}.outputs.<name>`"),
            )),
        }
    } else if let Some(schema) = roots.roots.get(root) {
        let schema = schema.as_ref()?;
        check_schema_path(schema, schema, &parts[1..]).map(|(known, missing)| {
            let shown = std::iter::once(root)
                .chain(parts[1..].iter().copied().take(known))
                .collect::<Vec<_>>()
                .join(".");
            let props = properties(
                schema,
                resolve_path(schema, schema, &parts[1..known + 1]).unwrap_or(schema),
            );
            let help = match did_you_mean(missing, props.iter().map(String::as_str)) {
                Some(s) => format!("did you mean `{shown}.{s}`?"),
                None if props.is_empty() => format!("`{shown}` has no fields"),
                None => format!("`{shown}` has: {}", props.join(", ")),
            };
            (
                "undefined-variable",
                format!("template reads `{path}`, but `{shown}` has no `{missing}`"),
                help,
            )
        })
    } else {
        let mut known: Vec<&str> = roots.roots.keys().map(String::as_str).collect();
        known.push("steps");
        let help = match did_you_mean(root, known.iter().copied()) {
            Some(s) => format!("did you mean `{s}`?"),
            None => format!("templates can read: {}", known.join(", ")),
        };
        Some((
            "undefined-variable",
            format!("template reads undefined variable `{root}`"),
            help,
        ))
    }
}

fn deref<'a>(root: &'a Value, schema: &'a Value) -> &'a Value {
    match schema
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix('#'))
    {
        Some(pointer) => root.pointer(pointer).unwrap_or(schema),
        None => {
            // `Option<Struct>` is an anyOf of the struct and null.
            if let Some(branches) = schema.get("anyOf").and_then(Value::as_array) {
                if let Some(b) = branches.iter().find(|b| b.get("$ref").is_some()) {
                    return deref(root, b);
                }
            }
            schema
        }
    }
}

fn properties(root: &Value, schema: &Value) -> Vec<String> {
    deref(root, schema)
        .get("properties")
        .and_then(Value::as_object)
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default()
}

fn resolve_path<'a>(root: &'a Value, schema: &'a Value, parts: &[&str]) -> Option<&'a Value> {
    let mut current = deref(root, schema);
    for part in parts {
        current = deref(root, current.get("properties")?.get(*part)?);
    }
    Some(current)
}

/// Walks `parts` through object properties. Returns how many parts were
/// known and the first unknown one; stops quietly at free-form values.
fn check_schema_path<'a>(
    root: &Value,
    schema: &Value,
    parts: &[&'a str],
) -> Option<(usize, &'a str)> {
    let mut current = deref(root, schema);
    for (i, part) in parts.iter().enumerate() {
        let props = current.get("properties").and_then(Value::as_object);
        match props.and_then(|p| p.get(*part)) {
            Some(next) => current = deref(root, next),
            None => {
                let closed = current.get("additionalProperties") == Some(&Value::Bool(false));
                return (props.is_some() && closed).then_some((i, part));
            }
        }
    }
    None
}

/// Checks every step's `resources:` against what the machine has
/// (`capacity`, from onboard.yaml): names that are usable as lock, mutex
/// and group names, declared, and amounts a step can ever get.
pub fn check_resources(doc: &Document, capacity: &BTreeMap<String, u32>) -> Vec<Diagnostic> {
    let mut diags = Vec::new();
    let Some(Kind::Seq(steps)) = doc.root.get("steps").map(|n| &n.kind) else {
        return diags;
    };
    for step in steps {
        let Some(Node {
            kind: Kind::Map(entries),
            ..
        }) = step.get("resources")
        else {
            continue;
        };
        for (key, value) in entries {
            let Some(name) = key.as_str() else { continue };
            let d = |code, msg: String| Diagnostic::at(&doc.path, &doc.source, key.span, code, msg);
            if !super::resources::valid_name(name) {
                diags.push(
                    d("resource", format!("resource name `{name}` is not usable"))
                        .with_help("use lowercase letters, digits, `_` and `-`, starting with a letter (it names a lock file, an Argo mutex and a GitHub concurrency group)"),
                );
                continue;
            }
            let Some(have) = capacity.get(name) else {
                let help = match did_you_mean(name, capacity.keys().map(String::as_str)) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!(
                        "declare it in onboard.yaml: `resources: {{{name}: 1}}` (declared: {})",
                        capacity.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                };
                diags.push(
                    d("unknown-resource", format!("unknown resource `{name}`")).with_help(help),
                );
                continue;
            };
            if let Some(amount) = value.to_json().as_u64() {
                if amount > u64::from(*have) {
                    diags.push(
                        Diagnostic::at(
                            &doc.path,
                            &doc.source,
                            value.span,
                            "resource",
                            format!("the step holds {amount} `{name}` but the machine has {have}: it could never run"),
                        )
                        .with_help(format!(
                            "lower it to at most {have}, or raise `resources: {{{name}: …}}` in onboard.yaml"
                        )),
                    );
                }
            }
        }
    }
    diags
}
