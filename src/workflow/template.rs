//! minijinja templates in workflow parameters. A string that is exactly one
//! `{{ expression }}` keeps the expression's type (a number stays a number);
//! any other string with `{{`/`{%` renders to text. Undefined values are
//! errors, never silently empty.

use minijinja::{Environment, UndefinedBehavior};
use serde_json::Value;
use std::collections::BTreeSet;

#[derive(Debug, thiserror::Error)]
#[error("{}{message}", line.map(|l| format!("line {l}: ")).unwrap_or_default())]
pub struct TemplateError {
    pub message: String,
    /// 1-based line inside the template text, when known.
    pub line: Option<usize>,
}

fn env() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_keep_trailing_newline(true);
    env
}

fn from_minijinja(e: minijinja::Error) -> TemplateError {
    let mut message = e
        .detail()
        .map(str::to_string)
        .unwrap_or_else(|| e.kind().to_string());
    if e.kind() == minijinja::ErrorKind::UndefinedError {
        message = "a value it reads is undefined (check the names against the step outputs, manifest and workspace; `| default(...)` makes a value optional)".into();
    }
    TemplateError {
        message,
        line: e.line(),
    }
}

/// The expression inside a string that is exactly `{{ … }}`.
fn sole_expression(s: &str) -> Option<&str> {
    let inner = s.trim().strip_prefix("{{")?.strip_suffix("}}")?;
    (!inner.contains("{{") && !inner.contains("}}") && !inner.contains("{%"))
        .then_some(inner.trim())
}

/// Renders every template string inside `value` against `context`.
pub fn render_value(value: &Value, context: &Value) -> Result<Value, TemplateError> {
    let env = env();
    render_with(&env, value, context)
}

fn render_with(
    env: &Environment<'static>,
    value: &Value,
    context: &Value,
) -> Result<Value, TemplateError> {
    Ok(match value {
        Value::String(s) if crate::source::schema_check::is_template(s) => {
            render_string(env, s, context)?
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| render_with(env, v, context))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), render_with(env, v, context)?)))
                .collect::<Result<_, TemplateError>>()?,
        ),
        other => other.clone(),
    })
}

fn render_string(
    env: &Environment<'static>,
    s: &str,
    context: &Value,
) -> Result<Value, TemplateError> {
    if let Some(expr) = sole_expression(s) {
        let compiled = env.compile_expression(expr).map_err(from_minijinja)?;
        let result = compiled.eval(context).map_err(from_minijinja)?;
        if result.is_undefined() {
            return Err(TemplateError {
                message: format!("`{expr}` is undefined"),
                line: None,
            });
        }
        return serde_json::to_value(&result).map_err(|e| TemplateError {
            message: e.to_string(),
            line: None,
        });
    }
    env.render_str(s, context)
        .map(Value::String)
        .map_err(from_minijinja)
}

/// Evaluates a `when:` condition.
pub fn eval_condition(expr: &str, context: &Value) -> Result<bool, TemplateError> {
    let env = env();
    let expr = sole_expression(expr).unwrap_or(expr);
    let compiled = env.compile_expression(expr).map_err(from_minijinja)?;
    compiled
        .eval(context)
        .map(|v| v.is_true())
        .map_err(from_minijinja)
}

/// Renders a whole template file (the `render` task).
pub fn render_file(name: &str, source: &str, context: &Value) -> Result<String, TemplateError> {
    let env = env();
    env.render_named_str(name, source, context)
        .map_err(from_minijinja)
}

/// The variable paths a template string or `when:` expression reads, such
/// as `steps.evaluate.outputs.quant`; a syntax error is returned as such.
pub fn referenced_paths(
    text: &str,
    is_expression: bool,
) -> Result<BTreeSet<String>, TemplateError> {
    let env = env();
    let names = if is_expression || sole_expression(text).is_some() {
        let expr = sole_expression(text).unwrap_or(text);
        env.compile_expression(expr)
            .map_err(from_minijinja)?
            .undeclared_variables(true)
    } else {
        env.template_from_str(text)
            .map_err(from_minijinja)?
            .undeclared_variables(true)
    };
    Ok(names.into_iter().filter(|n| !is_builtin(n)).collect())
}

fn is_builtin(name: &str) -> bool {
    let root = name.split('.').next().unwrap_or(name);
    matches!(
        root,
        "range" | "dict" | "namespace" | "debug" | "loop" | "true" | "false" | "none"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sole_expressions_keep_their_type() {
        let ctx = json!({"steps": {"a": {"outputs": {"n": 3, "q": "Q6_K"}}}});
        let v = json!({"n": "{{ steps.a.outputs.n }}", "s": "x-{{ steps.a.outputs.q }}"});
        assert_eq!(
            render_value(&v, &ctx).unwrap(),
            json!({"n": 3, "s": "x-Q6_K"})
        );
    }

    #[test]
    fn undefined_is_an_error() {
        let ctx = json!({"steps": {}});
        assert!(render_value(&json!("{{ steps.b.outputs.x }}"), &ctx).is_err());
        assert!(render_value(&json!("a {{ nope }}"), &ctx).is_err());
    }

    #[test]
    fn finds_nested_references() {
        let refs = referenced_paths(
            "{{ steps.evaluate.outputs.quant }}-{{ manifest.hub.repo }}",
            false,
        )
        .unwrap();
        assert!(refs.contains("steps.evaluate.outputs.quant"), "{refs:?}");
        assert!(refs.contains("manifest.hub.repo"), "{refs:?}");
        let err = referenced_paths("{{ steps.a. }}", false).unwrap_err();
        assert!(!err.message.is_empty());
    }

    #[test]
    fn conditions() {
        let ctx = json!({"manifest": {"thinking": true}});
        assert!(eval_condition("manifest.thinking", &ctx).unwrap());
        assert!(!eval_condition("{{ not manifest.thinking }}", &ctx).unwrap());
    }
}
