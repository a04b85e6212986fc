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

use super::yaml_out::{self, Yaml};
use super::{ceil_secs, dns_label, go_duration, steps, Condition, ExportError, ExportStep, Target};

/// Where the workspace volume is mounted in every container.
pub const MOUNT_PATH: &str = "/workspace";
/// The extended resource NVIDIA's device plugin offers.
pub const GPU_RESOURCE: &str = "nvidia.com/gpu";

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
    templates.extend(steps.iter().map(|s| template(s, options)));

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
    let header = format!(
        "`onboard export-workflow --format argo {model}`: workflow `{}` as an Argo {}.\n\
         Each task runs `onboard run {model} --only <step>` on the workspace in PVC `{}`\n\
         (mounted at {MOUNT_PATH}; ReadWriteMany when tasks may land on different nodes).\n\
         Steps of one model take turns on its run lock (--wait-for-lock).\n\
         Regenerate it after changing the workflow rather than editing it.",
        target.workflow.name,
        if options.template {
            "WorkflowTemplate"
        } else {
            "Workflow"
        },
        options.pvc
    );
    Ok(yaml_out::to_string(&Yaml::commented(header, doc)))
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

fn template(s: &ExportStep<'_>, options: &ArgoOptions) -> Yaml {
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
