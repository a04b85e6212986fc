//! `onboard schema` — JSON Schemas derived from the Rust types, for editors
//! (e.g. `# yaml-language-server: $schema=…`).

use super::EXIT_OK;
use crate::tasks::Registry;
use crate::workflow::spec::WorkflowFile;
use crate::workspace::{Manifest, WorkspaceConfig};
use clap::{Args, ValueEnum};
use serde_json::{json, Value};

#[derive(Args, Debug)]
pub struct SchemaArgs {
    /// Which file kind.
    #[arg(value_enum, default_value_t = Which::Workflow)]
    which: Which,
}

#[derive(ValueEnum, Debug, Clone, Copy)]
enum Which {
    Workflow,
    Manifest,
    Workspace,
}

pub fn execute(args: &SchemaArgs) -> i32 {
    let schema = match args.which {
        Which::Workflow => workflow_schema(&Registry::builtin()),
        Which::Manifest => {
            serde_json::to_value(schemars::schema_for!(Manifest)).unwrap_or_default()
        }
        Which::Workspace => {
            serde_json::to_value(schemars::schema_for!(WorkspaceConfig)).unwrap_or_default()
        }
    };
    println!(
        "{}",
        serde_json::to_string_pretty(&schema).unwrap_or_default()
    );
    EXIT_OK
}

/// The workflow schema with each task kind's parameters attached to `with`
/// (if `uses` is K then `with` follows K's parameter schema).
pub fn workflow_schema(registry: &Registry) -> Value {
    let mut schema = serde_json::to_value(schemars::schema_for!(WorkflowFile)).unwrap_or_default();
    let kinds: Vec<&str> = registry.kinds().collect();
    let mut rules = Vec::new();
    for task in registry.iter() {
        let mut params = task.params_schema();
        let defs = params.as_object_mut().and_then(|p| p.remove("$defs"));
        if let Some(Value::Object(defs)) = defs {
            if let Some(all) = schema.get_mut("$defs").and_then(Value::as_object_mut) {
                for (k, v) in defs {
                    all.insert(k, v);
                }
            }
        }
        if let Some(p) = params.as_object_mut() {
            p.remove("$schema");
            p.insert("description".into(), Value::String(task.summary().into()));
        }
        rules.push(json!({
            "if": {"properties": {"uses": {"const": task.kind()}}, "required": ["uses"]},
            "then": {"properties": {"with": params}},
        }));
    }
    if let Some(step) = schema
        .pointer_mut("/$defs/StepFile")
        .and_then(Value::as_object_mut)
    {
        step.insert("allOf".into(), Value::Array(rules));
        if let Some(uses) = step
            .get_mut("properties")
            .and_then(|p| p.get_mut("uses"))
            .and_then(Value::as_object_mut)
        {
            uses.insert("enum".into(), json!(kinds));
        }
    }
    schema
}
