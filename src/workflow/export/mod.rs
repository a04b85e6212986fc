//! The same workflow on another scheduler: Argo Workflows on Kubernetes, or
//! GitHub Actions. Each step becomes one task (or job) running
//! `onboard run <model> --only <step>` on a workspace the tasks share, so
//! every step reads the state the steps before it left in `.onboard/`,
//! exactly as on a workstation; the DAG (`needs`), `when`, retries and
//! timeouts map to the scheduler's own.
//!
//! What the engine cannot know about step kinds (which ones load a model
//! and so need GPUs) comes in as data, from the caller.
//!
//! A step's `resources:` (what it holds while it runs, `gpu: 1` for the
//! kinds that load a model) become the scheduler's own way of making
//! different workflows take turns: an Argo mutex or semaphore, a GitHub
//! concurrency group. Without them, two models' exports would load their
//! models onto the same GPUs at once.

pub mod argo;
pub mod github_actions;
mod yaml_out;

use super::graph::Dag;
use super::resources::GPU;
use super::spec::{Step, Workflow};
use super::template;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::time::Duration;

/// What an export is of: one model's run of one workflow.
pub struct Target<'a> {
    pub workflow: &'a Workflow,
    pub model: &'a str,
    /// `--workflow` as given to the export, passed on to every step's run
    /// (else the step's run picks the workflow as `onboard <model>` does).
    pub workflow_arg: Option<&'a str>,
    /// The template values known before any step runs (`model`,
    /// `manifest`, `workspace`): `when` conditions that read only these are
    /// decided at export.
    pub context: &'a Map<String, Value>,
    /// What each step holds while it runs, by step id (absent: nothing).
    /// A step holding `gpu` also gets the machine's GPUs.
    pub resources: &'a BTreeMap<String, BTreeMap<String, u32>>,
    /// How much of each resource the machine has (`onboard.yaml`): one
    /// unit is a mutex, more a counted semaphore where the scheduler has
    /// one.
    pub capacity: &'a BTreeMap<String, u32>,
    /// How many GPUs a step holding `gpu` requests (`onboard.yaml`).
    pub gpus: u32,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ExportError {
    #[error("step `{step}`: `when: {expr}` cannot be evaluated for `{model}`: {message}")]
    Condition {
        step: String,
        model: String,
        expr: String,
        message: String,
    },
    #[error("{what} `{value}` is not usable: {rule}")]
    Invalid {
        what: &'static str,
        value: String,
        rule: &'static str,
    },
    /// Refused at export as `onboard run` would refuse it in the task.
    #[error("step `{step}` holds {amount} `{name}` but the machine has {capacity} (`resources:` in onboard.yaml); lower the step's amount or raise the machine's")]
    TooMuch {
        step: String,
        name: String,
        amount: u32,
        capacity: u32,
    },
}

/// A step's `when`, as far as the export can decide it.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    Always,
    /// Reads only what is known at export: decided now, so the scheduler
    /// itself skips the step (no pod, no runner).
    Decided {
        expr: String,
        value: bool,
    },
    /// Reads step outputs: the step's `onboard run` decides it when its
    /// turn comes (and skips the step, successfully, when it is false).
    AtRun {
        expr: String,
    },
}

/// One step as every export writes it.
#[derive(Debug, Clone)]
pub struct ExportStep<'a> {
    pub step: &'a Step,
    /// `onboard`'s arguments after `-C <workspace>`.
    pub args: Vec<String>,
    pub condition: Condition,
    /// Needs (directly or not) a step decided false at export: runs even
    /// though that step is skipped (as `onboard <model>` would), unless a
    /// step failed.
    pub after_skipped: bool,
    /// The longest the step's run may take: every attempt at its timeout,
    /// the waits between them, and a minute to record the result. `None`
    /// when the step has no timeout.
    pub deadline: Option<Duration>,
    /// What the step holds while it runs, by resource (amounts above 0).
    pub holds: BTreeMap<String, u32>,
    /// GPUs to request (0 for steps that do not hold `gpu`).
    pub gpus: u32,
}

/// How one exported workflow's step takes turns for a resource with the
/// steps of every other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sharing {
    /// One unit: one holder at a time.
    Mutex,
    /// Several units: as many holders at a time.
    Semaphore { capacity: u32 },
}

impl Target<'_> {
    /// How much of `name` the machine has (0 when onboard.yaml names none).
    pub fn capacity_of(&self, name: &str) -> u32 {
        self.capacity.get(name).copied().unwrap_or(0)
    }

    pub fn sharing(&self, name: &str) -> Sharing {
        match self.capacity_of(name) {
            0 | 1 => Sharing::Mutex,
            capacity => Sharing::Semaphore { capacity },
        }
    }
}

/// Time `onboard run` gets, after its last attempt timed out, to record the
/// failure before the scheduler kills it.
const RECORD_GRACE: Duration = Duration::from_secs(60);

/// The workflow's steps in DAG order, ready to write.
pub fn steps<'a>(target: &Target<'a>) -> Result<Vec<ExportStep<'a>>, ExportError> {
    let dag = Dag::new(target.workflow);
    let context = Value::Object(target.context.clone());
    let mut skipped_upstream: BTreeMap<&str, bool> = BTreeMap::new();
    let mut out = Vec::new();
    for id in dag.order() {
        let Some(step) = target.workflow.step(id) else {
            continue;
        };
        let condition = condition(target, step, &context)?;
        let after_skipped = step.needs.iter().any(|n| {
            skipped_upstream.get(n.as_str()).copied().unwrap_or(false)
                || target.workflow.step(n).is_some_and(|s| {
                    matches!(
                        condition_of(&out, &s.id),
                        Some(Condition::Decided { value: false, .. })
                    )
                })
        });
        skipped_upstream.insert(step.id.as_str(), after_skipped);
        let mut args = vec!["run".to_string(), target.model.to_string()];
        args.extend(["--only".to_string(), step.id.clone()]);
        if let Some(w) = target.workflow_arg {
            args.extend(["--workflow".to_string(), w.to_string()]);
        }
        args.push("--wait-for-lock".into());
        let holds = holds(target, step)?;
        out.push(ExportStep {
            step,
            args,
            condition,
            after_skipped,
            deadline: deadline(step),
            gpus: if holds.contains_key(GPU) {
                target.gpus
            } else {
                0
            },
            holds,
        });
    }
    Ok(out)
}

/// What `step` holds, refused when the machine has less than that (the
/// step's run would fail on it).
fn holds(target: &Target<'_>, step: &Step) -> Result<BTreeMap<String, u32>, ExportError> {
    let holds: BTreeMap<String, u32> = target
        .resources
        .get(&step.id)
        .into_iter()
        .flatten()
        .filter(|(_, amount)| **amount > 0)
        .map(|(name, amount)| (name.clone(), *amount))
        .collect();
    for (name, amount) in &holds {
        let capacity = target.capacity_of(name);
        if *amount > capacity {
            return Err(ExportError::TooMuch {
                step: step.id.clone(),
                name: name.clone(),
                amount: *amount,
                capacity,
            });
        }
    }
    Ok(holds)
}

fn condition_of<'a>(steps: &'a [ExportStep<'_>], id: &str) -> Option<&'a Condition> {
    steps.iter().find(|s| s.step.id == id).map(|s| &s.condition)
}

fn condition(target: &Target<'_>, step: &Step, context: &Value) -> Result<Condition, ExportError> {
    let Some(expr) = &step.when else {
        return Ok(Condition::Always);
    };
    let error = |message: String| ExportError::Condition {
        step: step.id.clone(),
        model: target.model.to_string(),
        expr: expr.clone(),
        message,
    };
    let reads = template::referenced_paths(expr, true).map_err(|e| error(e.message))?;
    if reads
        .iter()
        .any(|r| r == "steps" || r.starts_with("steps."))
    {
        return Ok(Condition::AtRun { expr: expr.clone() });
    }
    let value = template::eval_condition(expr, context).map_err(|e| error(e.message))?;
    Ok(Condition::Decided {
        expr: expr.clone(),
        value,
    })
}

fn deadline(step: &Step) -> Option<Duration> {
    let timeout = step.timeout?;
    let attempts = step.retry.attempts.max(1);
    let waits: Duration = (2..=attempts).map(|n| step.retry.delay_before(n)).sum();
    Some(
        timeout
            .saturating_mul(attempts)
            .saturating_add(waits)
            .saturating_add(RECORD_GRACE),
    )
}

/// Whole seconds, rounded up (a deadline is never shortened).
fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// A Go duration (`5s`, `1500ms`), as Argo reads them.
fn go_duration(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// A name Kubernetes and Argo accept (lowercase letters, digits, `-`; a
/// letter or digit at each end), made from a step or model id.
fn dns_label(id: &str) -> String {
    let mut s: String = id
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9') => c,
            _ => '-',
        })
        .collect();
    while s.ends_with('-') {
        s.pop();
    }
    while s.starts_with('-') {
        s.remove(0);
    }
    if s.is_empty() {
        s.push('x');
    }
    s
}

/// `'…'`-quoted for a POSIX shell when it is not a plain word.
fn shell_word(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/' | ':' | '=' | '+' | ',')
        });
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::workflow::spec::RetryPolicy;

    /// A `command` step for the exporters' tests.
    pub(in crate::workflow::export) fn step(id: &str, needs: &[&str], when: Option<&str>) -> Step {
        Step {
            id: id.into(),
            uses: "command".into(),
            name: None,
            with: Value::Null,
            needs: needs.iter().map(|s| s.to_string()).collect(),
            retry: RetryPolicy::default(),
            timeout: None,
            when: when.map(str::to_string),
            resources: None,
            once: false,
        }
    }

    fn held(entries: &[(&str, &[(&str, u32)])]) -> BTreeMap<String, BTreeMap<String, u32>> {
        entries
            .iter()
            .map(|(step, held)| {
                let held = held.iter().map(|(n, a)| (n.to_string(), *a)).collect();
                (step.to_string(), held)
            })
            .collect()
    }

    #[test]
    fn conditions_known_at_export_are_decided_and_the_rest_left_to_the_run() {
        let workflow = Workflow {
            name: "w".into(),
            description: None,
            path: "w.yaml".into(),
            steps: vec![
                step("a", &[], None),
                step("b", &["a"], Some("manifest.type == 'moe'")),
                step("c", &["b"], None),
                step("d", &["c"], Some("steps.a.outputs.exit_code == 0")),
                step("e", &["a"], Some("{{ model == 'm' }}")),
            ],
        };
        let mut context = Map::new();
        context.insert("model".into(), "m".into());
        context.insert("manifest".into(), serde_json::json!({"type": "dense"}));
        let resources = held(&[("c", &[("gpu", 1)]), ("d", &[("disk", 2), ("gpu", 0)])]);
        let capacity = BTreeMap::from([("gpu".to_string(), 1), ("disk".to_string(), 3)]);
        let target = Target {
            workflow: &workflow,
            model: "m",
            workflow_arg: None,
            context: &context,
            resources: &resources,
            capacity: &capacity,
            gpus: 2,
        };
        let steps = steps(&target).unwrap();
        let by = |id: &str| steps.iter().find(|s| s.step.id == id).unwrap();
        assert_eq!(by("a").condition, Condition::Always);
        assert!(matches!(
            by("b").condition,
            Condition::Decided { value: false, .. }
        ));
        assert!(matches!(
            by("e").condition,
            Condition::Decided { value: true, .. }
        ));
        assert!(matches!(by("d").condition, Condition::AtRun { .. }));
        assert!(!by("b").after_skipped);
        assert!(by("c").after_skipped && by("d").after_skipped);
        assert!(!by("e").after_skipped);
        assert_eq!((by("c").gpus, by("d").gpus), (2, 0));
        // A zero amount holds nothing (and requests no GPU).
        assert_eq!(by("d").holds, BTreeMap::from([("disk".to_string(), 2)]));
        assert!(by("a").holds.is_empty());
        assert_eq!(target.sharing("gpu"), Sharing::Mutex);
        assert_eq!(target.sharing("disk"), Sharing::Semaphore { capacity: 3 });
        assert_eq!(by("a").args, ["run", "m", "--only", "a", "--wait-for-lock"]);
    }

    #[test]
    fn a_condition_that_cannot_be_evaluated_is_an_error_naming_the_step() {
        let workflow = Workflow {
            name: "w".into(),
            description: None,
            path: "w.yaml".into(),
            steps: vec![step("a", &[], Some("manifest.missing.deeper"))],
        };
        let target = Target {
            workflow: &workflow,
            model: "m",
            workflow_arg: None,
            context: &Map::new(),
            resources: &BTreeMap::new(),
            capacity: &BTreeMap::new(),
            gpus: 0,
        };
        let err = steps(&target).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("step `a`: `when: manifest.missing.deeper`"),
            "{err}"
        );
    }

    #[test]
    fn holding_more_than_the_machine_has_is_refused_as_the_run_would() {
        let workflow = Workflow {
            name: "w".into(),
            description: None,
            path: "w.yaml".into(),
            steps: vec![step("a", &[], None), step("b", &["a"], None)],
        };
        let resources = held(&[("b", &[("gpu", 2)])]);
        let capacity = BTreeMap::from([("gpu".to_string(), 1)]);
        let target = Target {
            workflow: &workflow,
            model: "m",
            workflow_arg: None,
            context: &Map::new(),
            resources: &resources,
            capacity: &capacity,
            gpus: 1,
        };
        assert_eq!(
            steps(&target).unwrap_err(),
            ExportError::TooMuch {
                step: "b".into(),
                name: "gpu".into(),
                amount: 2,
                capacity: 1
            }
        );
    }

    #[test]
    fn the_deadline_covers_every_attempt_and_wait() {
        let mut s = step("a", &[], None);
        assert_eq!(deadline(&s), None);
        s.timeout = Some(Duration::from_secs(600));
        s.retry = RetryPolicy {
            attempts: 3,
            backoff: Duration::from_secs(5),
            factor: 2.0,
            max_backoff: Duration::from_secs(300),
        };
        // 3 × 600 s + 5 s + 10 s + 60 s to record the result.
        assert_eq!(deadline(&s), Some(Duration::from_secs(1875)));
    }

    #[test]
    fn names_and_words() {
        assert_eq!(dns_label("context_test"), "context-test");
        assert_eq!(dns_label("Qwen3.5_27B"), "qwen3-5-27b");
        assert_eq!(dns_label("_"), "x");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(go_duration(Duration::from_secs(5)), "5s");
        assert_eq!(ceil_secs(Duration::from_millis(1001)), 2);
        assert_eq!(shell_word("qwen3.5-27b"), "qwen3.5-27b");
        assert_eq!(shell_word("a b'c"), r"'a b'\''c'");
        assert_eq!(shell_word(""), "''");
    }
}
