//! An Argo `Workflow` (or `WorkflowTemplate`): one DAG task per step, each a
//! container running `onboard -C <mount> run <model> --only <step>` on a
//! PersistentVolumeClaim holding the workspace.
//!
//! Retries: `onboard run` already retries the step with the workflow's
//! policy, and knows which failures are worth it (a full disk or a wrong
//! hash is not). Argo's `retryStrategy` (same limit and backoff) is for what
//! onboard cannot retry from inside: the pod itself lost (`OnError`: node
//! drained, pod evicted or deleted). Retrying failed containers too would
//! multiply the attempts.
//!
//! Resources: a step holding one (`gpu` for the steps that load the model)
//! gets `synchronization` on its template, so that the steps of every
//! onboard workflow in the namespace (other models, other submissions)
//! take turns: a mutex `onboard-<name>` for a resource the machine has one
//! of, else a semaphore whose limit is key `<name>` of the ConfigMap
//! `onboard-resources` (the plural `mutexes`/`semaphores` of Argo 3.6; the
//! singular forms are deprecated).

use super::yaml_out::{self, Yaml};
use super::{
    ceil_secs, dns_label, go_duration, steps, Condition, ExportError, ExportStep, Sharing, Target,
};
use std::collections::BTreeMap;

/// Where the workspace volume is mounted in every container.
pub const MOUNT_PATH: &str = "/workspace";
/// The extended resource NVIDIA's device plugin offers.
pub const GPU_RESOURCE: &str = "nvidia.com/gpu";
/// The ConfigMap holding the limits of resources shared by semaphores.
pub const RESOURCES_CONFIGMAP: &str = "onboard-resources";

/// The Argo mutex standing for a resource the machine has one of: the same
/// name in every export, so that different models' workflows meet on it.
pub fn mutex_name(resource: &str) -> String {
    format!("onboard-{resource}")
}

pub struct ArgoOptions {
    /// The container image: `onboard` on its PATH, plus what the steps run
    /// (Python 3 for the benchmark, llama-server if the workspace uses it).
    pub image: String,
    /// The PersistentVolumeClaim holding the workspace.
    pub pvc: String,
    /// The Kubernetes Secret with the Hub token, and its key.
    pub secret: String,
    pub secret_key: String,
    /// A `WorkflowTemplate` to submit by name, instead of a `Workflow`.
    pub template: bool,
}

/// The manifest, as YAML.
pub fn export(target: &Target<'_>, options: &ArgoOptions) -> Result<String, ExportError> {
    check_options(options)?;
    let steps = steps(target)?;
    let dag_tasks: Vec<Yaml> = steps.iter().map(task).collect();
    let mut templates = vec![Yaml::map([
        ("name", Yaml::str("main")),
        ("dag", Yaml::map([("tasks", Yaml::Seq(dag_tasks))])),
    ])];
    templates.extend(steps.iter().map(|s| template(target, s, options)));

    let model = target.model;
    let metadata = if options.template {
        ("name", Yaml::str(format!("onboard-{}", dns_label(model))))
    } else {
        (
            "generateName",
            Yaml::str(format!("onboard-{}-", dns_label(model))),
        )
    };
    let doc = Yaml::map([
        ("apiVersion", Yaml::str("argoproj.io/v1alpha1")),
        (
            "kind",
            Yaml::str(if options.template {
                "WorkflowTemplate"
            } else {
                "Workflow"
            }),
        ),
        (
            "metadata",
            Yaml::map([
                metadata,
                (
                    "annotations",
                    Yaml::map([
                        ("onboard/model", Yaml::str(model)),
                        ("onboard/workflow", Yaml::str(&target.workflow.name)),
                    ]),
                ),
            ]),
        ),
        (
            "spec",
            Yaml::map([
                ("entrypoint", Yaml::str("main")),
                (
                    "volumes",
                    Yaml::Seq(vec![Yaml::map([
                        ("name", Yaml::str("workspace")),
                        (
                            "persistentVolumeClaim",
                            Yaml::map([("claimName", Yaml::str(&options.pvc))]),
                        ),
                    ])]),
                ),
                ("templates", Yaml::Seq(templates)),
            ]),
        ),
    ]);
    let mut header = format!(
        "`onboard export-workflow --format argo {model}`: workflow `{}` as an Argo {}.\n\
         Each task runs `onboard run {model} --only <step>` on the workspace in PVC `{}`\n\
         (mounted at {MOUNT_PATH}; ReadWriteMany when tasks may land on different nodes).\n\
         Steps of one model take turns on its run lock (--wait-for-lock).\n",
        target.workflow.name,
        if options.template {
            "WorkflowTemplate"
        } else {
            "Workflow"
        },
        options.pvc
    );
    header.push_str(&resources_note(target, &steps));
    header.push_str("Regenerate it after changing the workflow rather than editing it.");
    Ok(yaml_out::to_string(&Yaml::commented(header, doc)))
}

/// The header's lines on how held resources are shared (none when no step
/// holds any), with the command that creates the semaphores' ConfigMap.
fn resources_note(target: &Target<'_>, steps: &[ExportStep<'_>]) -> String {
    let held: BTreeMap<&str, Sharing> = steps
        .iter()
        .flat_map(|s| s.holds.keys())
        .map(|name| (name.as_str(), target.sharing(name)))
        .collect();
    if held.is_empty() {
        return String::new();
    }
    let mut note = String::from(
        "Steps holding a resource take turns with those of every onboard workflow in the\n\
         namespace (`synchronization`, Argo 3.6 or later):\n",
    );
    let mut literals = Vec::new();
    for (name, sharing) in &held {
        match sharing {
            Sharing::Mutex => {
                note.push_str(&format!("  `{name}`: mutex `{}`\n", mutex_name(name)));
            }
            Sharing::Semaphore { capacity } => {
                note.push_str(&format!(
                    "  `{name}`: a semaphore of {capacity}, key `{name}` of ConfigMap \
                     `{RESOURCES_CONFIGMAP}`\n"
                ));
                literals.push(format!("--from-literal={name}={capacity}"));
            }
        }
    }
    if !literals.is_empty() {
        note.push_str(&format!(
            "Create that ConfigMap once, in the namespace the workflows run in:\n  \
             kubectl create configmap {RESOURCES_CONFIGMAP} {}\n",
            literals.join(" ")
        ));
    }
    note
}

/// The template's `synchronization`: one mutex or semaphore per resource
/// the step holds. Argo takes one unit per step, whatever its amount.
fn synchronization(target: &Target<'_>, s: &ExportStep<'_>) -> Option<Yaml> {
    if s.holds.is_empty() {
        return None;
    }
    let mut mutexes = Vec::new();
    let mut semaphores = Vec::new();
    let mut comment = String::from("Takes turns with every onboard workflow's steps for:");
    for (name, amount) in &s.holds {
        match target.sharing(name) {
            Sharing::Mutex => {
                mutexes.push(Yaml::map([("name", Yaml::str(mutex_name(name)))]));
                comment.push_str(&format!("\n  `{name}`: one step at a time"));
            }
            Sharing::Semaphore { capacity } => {
                semaphores.push(Yaml::map([(
                    "configMapKeyRef",
                    Yaml::map([
                        ("name", Yaml::str(RESOURCES_CONFIGMAP)),
                        ("key", Yaml::str(name)),
                    ]),
                )]));
                comment.push_str(&format!("\n  `{name}`: {capacity} steps at a time"));
                if *amount > 1 {
                    comment.push_str(&format!(
                        " (Argo counts this step as 1, though it holds {amount})"
                    ));
                }
            }
        }
    }
    let mut entries = Vec::new();
    if !mutexes.is_empty() {
        entries.push(("mutexes", Yaml::Seq(mutexes)));
    }
    if !semaphores.is_empty() {
        entries.push(("semaphores", Yaml::Seq(semaphores)));
    }
    Some(Yaml::commented(comment, Yaml::map(entries)))
}

fn check_options(options: &ArgoOptions) -> Result<(), ExportError> {
    let dns_subdomain = |what: &'static str, value: &str| {
        let ok = !value.is_empty()
            && value.len() <= 253
            && value
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
            && value.starts_with(|c: char| c.is_ascii_alphanumeric())
            && value.ends_with(|c: char| c.is_ascii_alphanumeric());
        if ok {
            Ok(())
        } else {
            Err(ExportError::Invalid {
                what,
                value: value.to_string(),
                rule: "a Kubernetes name is lowercase letters, digits, `-` and `.`, \
                       starting and ending with a letter or digit",
            })
        }
    };
    dns_subdomain("PVC", &options.pvc)?;
    dns_subdomain("secret", &options.secret)?;
    let key_ok = !options.secret_key.is_empty()
        && options
            .secret_key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !key_ok {
        return Err(ExportError::Invalid {
            what: "secret key",
            value: options.secret_key.clone(),
            rule: "a Secret's key is letters, digits, `-`, `_` and `.`",
        });
    }
    if options.image.is_empty() || options.image.chars().any(char::is_whitespace) {
        return Err(ExportError::Invalid {
            what: "image",
            value: options.image.clone(),
            rule: "an image reference has no spaces, e.g. `registry.example/onboard:0.1`",
        });
    }
    Ok(())
}

fn task(s: &ExportStep<'_>) -> Yaml {
    let mut entries = vec![
        ("name", Yaml::str(dns_label(&s.step.id))),
        ("template", Yaml::str(template_name(s))),
    ];
    if !s.step.needs.is_empty() {
        entries.push((
            "dependencies",
            Yaml::strs(s.step.needs.iter().map(|n| dns_label(n))),
        ));
    }
    let comment = match &s.condition {
        Condition::Always => None,
        Condition::Decided { expr, value } => {
            if !value {
                entries.push(("when", Yaml::str("false")));
            }
            Some(format!(
                "when: {expr} ({value} for this model, decided at export)"
            ))
        }
        Condition::AtRun { expr } => Some(format!(
            "when: {expr} (decided by `onboard run` when the step's turn comes)"
        )),
    };
    let task = Yaml::map(entries);
    match comment {
        Some(c) => Yaml::commented(c, task),
        None => task,
    }
}

fn template_name(s: &ExportStep<'_>) -> String {
    format!("step-{}", dns_label(&s.step.id))
}

fn template(target: &Target<'_>, s: &ExportStep<'_>, options: &ArgoOptions) -> Yaml {
    let mut args = vec!["-C".to_string(), MOUNT_PATH.to_string()];
    args.extend(s.args.iter().cloned());
    let mut container = vec![
        ("image", Yaml::str(&options.image)),
        ("command", Yaml::strs(["onboard"])),
        ("args", Yaml::strs(args)),
        (
            "env",
            Yaml::Seq(vec![Yaml::map([
                ("name", Yaml::str("HF_TOKEN")),
                (
                    "valueFrom",
                    Yaml::map([(
                        "secretKeyRef",
                        Yaml::map([
                            ("name", Yaml::str(&options.secret)),
                            ("key", Yaml::str(&options.secret_key)),
                            // Public repos need no token.
                            ("optional", Yaml::Bool(true)),
                        ]),
                    )]),
                ),
            ])]),
        ),
        (
            "volumeMounts",
            Yaml::Seq(vec![Yaml::map([
                ("name", Yaml::str("workspace")),
                ("mountPath", Yaml::str(MOUNT_PATH)),
            ])]),
        ),
    ];
    if s.gpus > 0 {
        container.push((
            "resources",
            Yaml::map([(
                "limits",
                Yaml::map([(GPU_RESOURCE, Yaml::str(s.gpus.to_string()))]),
            )]),
        ));
    }
    let mut entries = vec![("name", Yaml::str(template_name(s)))];
    if let Some(sync) = synchronization(target, s) {
        entries.push(("synchronization", sync));
    }
    if let Some(deadline) = s.deadline {
        let secs = i64::try_from(ceil_secs(deadline)).unwrap_or(i64::MAX);
        entries.push(("activeDeadlineSeconds", Yaml::Int(secs)));
    }
    let retry = &s.step.retry;
    if retry.attempts > 1 {
        // Argo's factor is an integer; a fractional one is rounded up.
        let factor = retry.factor.ceil().clamp(1.0, i32::MAX as f64) as i64;
        entries.push((
            "retryStrategy",
            Yaml::map([
                ("limit", Yaml::Int(i64::from(retry.attempts - 1))),
                ("retryPolicy", Yaml::str("OnError")),
                (
                    "backoff",
                    Yaml::map([
                        ("duration", Yaml::str(go_duration(retry.backoff))),
                        ("factor", Yaml::Int(factor)),
                        ("cap", Yaml::str(go_duration(retry.max_backoff))),
                    ]),
                ),
            ]),
        ));
    }
    entries.push(("container", Yaml::map(container)));
    let comment = match &s.step.name {
        Some(name) => format!("{}: {name}", s.step.id),
        None => s.step.id.clone(),
    };
    Yaml::commented(comment, Yaml::map(entries))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workflow::spec::{Step, Workflow};
    use serde_json::Map;

    fn step(id: &str, needs: &[&str]) -> Step {
        super::super::tests::step(id, needs, None)
    }

    fn options() -> ArgoOptions {
        ArgoOptions {
            image: "i".into(),
            pvc: "p".into(),
            secret: "s".into(),
            secret_key: "k".into(),
            template: false,
        }
    }

    #[test]
    fn steps_holding_resources_get_a_mutex_or_a_semaphore() {
        let workflow = Workflow {
            name: "w".into(),
            description: None,
            path: "w.yaml".into(),
            steps: vec![step("a", &[]), step("b_1", &["a"]), step("c", &["a"])],
        };
        let resources = BTreeMap::from([
            ("b_1".to_string(), BTreeMap::from([("gpu".to_string(), 1)])),
            (
                "c".to_string(),
                BTreeMap::from([("gpu".to_string(), 1), ("disk".to_string(), 2)]),
            ),
        ]);
        let capacity = BTreeMap::from([("gpu".to_string(), 1), ("disk".to_string(), 3)]);
        let context = Map::new();
        let target = Target {
            workflow: &workflow,
            model: "m",
            workflow_arg: None,
            context: &context,
            resources: &resources,
            capacity: &capacity,
            gpus: 2,
        };
        let text = export(&target, &options()).unwrap();
        let doc = crate::source::yaml::parse(&text).unwrap().to_json();
        let template = |name: &str| {
            doc["spec"]["templates"]
                .as_array()
                .unwrap()
                .iter()
                .find(|t| t["name"] == name)
                .unwrap()
                .clone()
        };
        assert!(template("step-a").get("synchronization").is_none());
        assert_eq!(
            template("step-b-1")["synchronization"],
            serde_json::json!({"mutexes": [{"name": "onboard-gpu"}]})
        );
        assert_eq!(
            template("step-c")["synchronization"],
            serde_json::json!({
                "mutexes": [{"name": "onboard-gpu"}],
                "semaphores": [{"configMapKeyRef": {"name": "onboard-resources", "key": "disk"}}],
            })
        );
        assert_eq!(
            template("step-c")["container"]["resources"]["limits"][GPU_RESOURCE],
            "2"
        );
        assert!(
            text.contains("kubectl create configmap onboard-resources --from-literal=disk=3"),
            "{text}"
        );
        assert!(text.contains("Argo counts this step as 1, though it holds 2"));

        // A machine with one of each: mutexes only, no ConfigMap to create.
        let capacity = BTreeMap::from([("gpu".to_string(), 1), ("disk".to_string(), 1)]);
        let one_each = BTreeMap::from([("gpu".to_string(), 1), ("disk".to_string(), 1)]);
        let resources = BTreeMap::from([("c".to_string(), one_each)]);
        let target = Target {
            resources: &resources,
            capacity: &capacity,
            ..target
        };
        let text = export(&target, &options()).unwrap();
        let doc = crate::source::yaml::parse(&text).unwrap().to_json();
        assert_eq!(
            doc["spec"]["templates"][3]["synchronization"],
            serde_json::json!({"mutexes": [{"name": "onboard-disk"}, {"name": "onboard-gpu"}]})
        );
        assert!(!text.contains("ConfigMap"), "{text}");
    }
}
