//! The workflow file format (`workflows/*.yaml`) as Rust types, and the
//! checked, ready-to-run form the rest of the engine uses.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A workflow: a named list of steps forming a DAG through `needs`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkflowFile {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub steps: Vec<StepFile>,
}

/// One step: a task kind with parameters, placed in the DAG by `needs`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StepFile {
    /// Unique within the workflow; lowercase letters, digits and `_`
    /// (templates read it as `steps.<id>`).
    pub id: String,
    /// The task kind, e.g. `command`, `render`, `evaluate`.
    pub uses: String,
    /// A human-readable name for output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Parameters of the task kind; strings may hold minijinja templates
    /// reading `model`, `manifest`, `workspace` and `steps.<id>.outputs`.
    #[serde(default)]
    pub with: Map<String, Value>,
    /// Steps that must finish first.
    #[serde(default)]
    pub needs: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryFile>,
    /// Give up on an attempt after this long, e.g. `10m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// A minijinja expression; the step is skipped when it is false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    /// What the step holds while it runs, by name and amount, e.g.
    /// `{gpu: 1}`; steps of every `onboard` process on the machine take
    /// turns for them (`resources:` in onboard.yaml says how much there
    /// is). Default: the task kind's (the kinds that load a model hold
    /// `gpu: 1`); `{}` holds nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<BTreeMap<String, u32>>,
    /// Run once for all the targets of a run (a comparison over every
    /// model), after each target has finished what the step `needs`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub once: bool,
}

/// Retry a failed attempt with exponential backoff.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryFile {
    /// Total attempts, including the first.
    #[schemars(range(min = 1))]
    pub attempts: u32,
    /// Wait before the first retry, e.g. `1s` (default `1s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<String>,
    /// Multiplier applied to the wait after each retry (default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1.0))]
    pub factor: Option<f64>,
    /// Upper bound on the wait, e.g. `1m` (default `5m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_backoff: Option<String>,
}

/// Who retries what: `crate::retry`.
pub use crate::retry::RetryPolicy;

/// A validated workflow, ready to plan and run.
#[derive(Debug, Clone)]
pub struct Workflow {
    pub name: String,
    pub description: Option<String>,
    pub path: PathBuf,
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone)]
pub struct Step {
    pub id: String,
    pub uses: String,
    pub name: Option<String>,
    pub with: Value,
    pub needs: Vec<String>,
    pub retry: RetryPolicy,
    pub timeout: Option<Duration>,
    pub when: Option<String>,
    /// As written; `None` takes the task kind's default
    /// ([`super::resources::held_by`]).
    pub resources: Option<BTreeMap<String, u32>>,
    pub once: bool,
}

impl Workflow {
    pub fn step(&self, id: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.id == id)
    }

    /// Builds the runnable form; only called once validation found nothing.
    pub fn from_file(file: WorkflowFile, path: &Path) -> Result<Workflow, String> {
        let mut steps = Vec::new();
        for s in file.steps {
            let retry = match s.retry {
                None => RetryPolicy::default(),
                Some(r) => {
                    let defaults = RetryPolicy::default();
                    RetryPolicy {
                        attempts: r.attempts.max(1),
                        backoff: r
                            .backoff
                            .as_deref()
                            .map(super::duration::parse)
                            .transpose()?
                            .unwrap_or(defaults.backoff),
                        factor: r.factor.unwrap_or(defaults.factor).max(1.0),
                        max_backoff: r
                            .max_backoff
                            .as_deref()
                            .map(super::duration::parse)
                            .transpose()?
                            .unwrap_or(defaults.max_backoff),
                    }
                }
            };
            steps.push(Step {
                timeout: s
                    .timeout
                    .as_deref()
                    .map(super::duration::parse)
                    .transpose()?,
                id: s.id,
                uses: s.uses,
                name: s.name,
                with: Value::Object(s.with),
                needs: s.needs,
                retry,
                when: s.when,
                resources: s.resources,
                once: s.once,
            });
        }
        Ok(Workflow {
            name: file.name,
            description: file.description,
            path: path.to_path_buf(),
            steps,
        })
    }
}
