//! A GitHub Actions workflow: one job per step (`needs:` = the DAG), each
//! running `onboard -C "$ONBOARD_WORKSPACE" run <model> --only <step>` on a
//! self-hosted runner. The workspace is a directory on the runners' machine
//! (or a filesystem they all mount), kept between jobs and runs: weights of
//! tens of gigabytes do not travel as artifacts, and `.onboard/` there is
//! what lets a rerun resume.
//!
//! Retries and timeouts: `onboard run` retries the step itself, with the
//! workflow's policy; the job's `timeout-minutes` covers all its attempts.
//!
//! Resources: the job of a step holding one (`gpu` for the steps that load
//! the model) joins the concurrency group `onboard-<names>@<labels>`, so
//! the jobs of every onboard workflow and run on the same runner labels
//! queue for it, never cancelled in progress. GitHub has one group per job
//! (several resources share one group), runs one job of a group at a time
//! whatever the machine's capacity, and keeps one job pending per group: a
//! newer pending job cancels the older one. `onboard run` on the runner
//! still takes turns for the machine's units itself.

use super::yaml_out::{self, Yaml};
use super::{ceil_secs, shell_word, steps, Condition, ExportError, ExportStep, Target};
use std::collections::BTreeMap;

/// The variable every job's command reads the workspace from.
pub const WORKSPACE_ENV: &str = "ONBOARD_WORKSPACE";

pub struct GithubOptions {
    /// The workspace directory on the runners' machine.
    pub workspace_dir: String,
    /// Labels every job runs on.
    pub runs_on: Vec<String>,
    /// The extra label of runners with the GPUs, for steps holding `gpu`
    /// (by default, those that load the model).
    pub gpu_label: String,
    /// The repository secret holding the Hub token.
    pub secret: String,
}

/// The concurrency group of the jobs holding `resources` on runners with
/// `labels`: `onboard-gpu@self-hosted,linux,gpu`. `@` and `,` appear in no
/// model id, so it never meets the workflow's own group (`onboard-<model>`),
/// which would deadlock the job.
pub fn resource_group<'a>(
    resources: impl IntoIterator<Item = &'a str>,
    labels: &[String],
) -> String {
    let names: Vec<&str> = resources.into_iter().collect();
    format!("onboard-{}@{}", names.join("+"), labels.join(","))
}

/// The workflow file, as YAML.
pub fn export(target: &Target<'_>, options: &GithubOptions) -> Result<String, ExportError> {
    check_options(options)?;
    if let Some(w) = target.workflow_arg.filter(|w| w.contains("${{")) {
        return Err(ExportError::Invalid {
            what: "workflow",
            value: w.to_string(),
            rule: "GitHub would evaluate `${{ … }}` in the command line",
        });
    }
    let steps = steps(target)?;
    let model = target.model;
    let jobs: Vec<(String, Yaml)> = steps
        .iter()
        .map(|s| (s.step.id.clone(), job(s, model, options)))
        .collect();
    let doc = Yaml::map([
        ("name", Yaml::str(format!("onboard {model}"))),
        (
            "on",
            Yaml::map([("workflow_dispatch", Yaml::Map(Vec::new()))]),
        ),
        // The jobs only run onboard on the runner's workspace: no token
        // scope is needed.
        ("permissions", Yaml::Map(Vec::new())),
        // One onboarding of this model at a time; a second waits.
        (
            "concurrency",
            Yaml::map([
                ("group", Yaml::str(format!("onboard-{model}"))),
                ("cancel-in-progress", Yaml::Bool(false)),
            ]),
        ),
        (
            "env",
            Yaml::map([(WORKSPACE_ENV, Yaml::str(&options.workspace_dir))]),
        ),
        (
            "defaults",
            Yaml::map([("run", Yaml::map([("shell", Yaml::str("bash"))]))]),
        ),
        ("jobs", Yaml::Map(jobs)),
    ]);
    let mut header = format!(
        "`onboard export-workflow --format github-actions {model}`: workflow `{}`,\n\
         one job per step. Every job runs on a self-hosted runner that sees the workspace\n\
         at ${WORKSPACE_ENV} ({}): a clone of the workspace repository that stays\n\
         between jobs and runs, where `.onboard/` lets each step read what the steps\n\
         before it left. Steps of one model take turns on its run lock (--wait-for-lock).\n",
        target.workflow.name, options.workspace_dir
    );
    header.push_str(&resources_note(target, &steps));
    header.push_str("Regenerate it after changing the workflow rather than editing it.");
    Ok(yaml_out::to_string(&Yaml::commented(header, doc)))
}

/// The header's lines on the resource groups (none when no step holds a
/// resource), with GitHub's limits on them.
fn resources_note(target: &Target<'_>, steps: &[ExportStep<'_>]) -> String {
    let held: BTreeMap<&str, u32> = steps
        .iter()
        .flat_map(|s| s.holds.keys())
        .map(|name| (name.as_str(), target.capacity_of(name)))
        .collect();
    if held.is_empty() {
        return String::new();
    }
    let names: Vec<String> = held.keys().map(|n| format!("`{n}`")).collect();
    let mut note = format!(
        "Jobs holding {} join a concurrency group named after what they hold and their\n\
         runner labels, shared by every onboard workflow: they queue, never cancelled in\n\
         progress. But GitHub keeps one pending job per group: when a third job queues,\n\
         the one pending before it is cancelled (rerun it).",
        names.join(", ")
    );
    let several: Vec<String> = held
        .iter()
        .filter(|(_, c)| **c > 1)
        .map(|(n, c)| format!("`{n}` ({c} on the machine)"))
        .collect();
    if !several.is_empty() {
        note.push_str(&format!(
            "\nA group runs one job at a time: {} serves one job at a time.",
            several.join(", ")
        ));
    }
    note.push('\n');
    note
}

fn check_options(options: &GithubOptions) -> Result<(), ExportError> {
    let invalid = |what, value: &str, rule| ExportError::Invalid {
        what,
        value: value.to_string(),
        rule,
    };
    if options.workspace_dir.trim().is_empty() || options.workspace_dir.contains("${{") {
        return Err(invalid(
            "workspace directory",
            &options.workspace_dir,
            "give the directory on the runners' machine, e.g. /srv/onboard",
        ));
    }
    for label in options.runs_on.iter().chain([&options.gpu_label]) {
        if label.trim().is_empty() || label.contains("${{") || label.contains(',') {
            return Err(invalid(
                "runner label",
                label,
                "a label is a plain word, e.g. self-hosted, linux, gpu",
            ));
        }
    }
    let secret_ok = options
        .secret
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && options
            .secret
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !options.secret.to_ascii_uppercase().starts_with("GITHUB_");
    if !secret_ok {
        return Err(invalid(
            "secret",
            &options.secret,
            "a GitHub secret's name is letters, digits and `_`, not starting with GITHUB_",
        ));
    }
    Ok(())
}

/// The job's command line, as its `run:` writes it.
pub fn command_line(args: &[String]) -> String {
    let mut words = vec![
        "onboard".to_string(),
        "-C".to_string(),
        format!("\"${WORKSPACE_ENV}\""),
    ];
    words.extend(args.iter().map(|a| shell_word(a)));
    words.join(" ")
}

fn job(s: &ExportStep<'_>, model: &str, options: &GithubOptions) -> Yaml {
    let mut runs_on = options.runs_on.clone();
    if s.gpus > 0 {
        runs_on.push(options.gpu_label.clone());
    }
    // GitHub evaluates `${{ … }}` in a job's name: a step's name is text.
    let title = match &s.step.name {
        Some(name) => format!("{}: {}", s.step.id, name.replace("${{", "$ {{")),
        None => s.step.id.clone(),
    };
    let group =
        (!s.holds.is_empty()).then(|| resource_group(s.holds.keys().map(String::as_str), &runs_on));
    let mut entries = vec![("name", Yaml::str(title)), ("runs-on", Yaml::strs(runs_on))];
    if !s.step.needs.is_empty() {
        entries.push(("needs", Yaml::strs(s.step.needs.iter().cloned())));
    }
    if let Some(group) = group {
        // Queue behind other workflows' jobs holding the same resources on
        // these runners; cancelling one in progress would lose its work.
        entries.push((
            "concurrency",
            Yaml::map([
                ("group", Yaml::str(group)),
                ("cancel-in-progress", Yaml::Bool(false)),
            ]),
        ));
    }
    let mut comment = None;
    match &s.condition {
        Condition::Always => {}
        Condition::Decided { expr, value } => {
            if !value {
                entries.push(("if", Yaml::str("${{ false }}")));
            }
            comment = Some(format!(
                "when: {expr} ({value} for this model, decided at export)"
            ));
        }
        Condition::AtRun { expr } => {
            comment = Some(format!(
                "when: {expr} (decided by `onboard run` when the step's turn comes)"
            ));
        }
    }
    let skipped = matches!(s.condition, Condition::Decided { value: false, .. });
    if s.after_skipped && !skipped {
        // A needed job skipped by its condition would skip this one too
        // (GitHub's implicit `success()`); onboard runs it.
        entries.push(("if", Yaml::str("${{ !cancelled() && !failure() }}")));
    }
    if let Some(deadline) = s.deadline {
        let minutes = ceil_secs(deadline).div_ceil(60);
        entries.push((
            "timeout-minutes",
            Yaml::Int(i64::try_from(minutes).unwrap_or(i64::MAX)),
        ));
    }
    entries.push((
        "env",
        Yaml::map([(
            "HF_TOKEN",
            Yaml::str(format!("${{{{ secrets.{} }}}}", options.secret)),
        )]),
    ));
    entries.push((
        "steps",
        Yaml::Seq(vec![Yaml::map([
            (
                "name",
                Yaml::str(format!("onboard run {model} --only {}", s.step.id)),
            ),
            ("run", Yaml::str(command_line(&s.args))),
        ])]),
    ));
    let job = Yaml::map(entries);
    match comment {
        Some(c) => Yaml::commented(c, job),
        None => job,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workflow::spec::{RetryPolicy, Step, Workflow};
    use serde_json::{Map, Value};

    fn options() -> GithubOptions {
        GithubOptions {
            workspace_dir: "/srv/onboard".into(),
            runs_on: vec!["self-hosted".into()],
            gpu_label: "gpu".into(),
            secret: "HF_TOKEN".into(),
        }
    }

    #[test]
    fn text_github_would_evaluate_is_defused_or_refused() {
        let workflow = Workflow {
            name: "w".into(),
            description: None,
            path: "w.yaml".into(),
            steps: vec![Step {
                id: "a".into(),
                uses: "command".into(),
                name: Some("uses ${{ secrets.X }}".into()),
                with: Value::Null,
                needs: Vec::new(),
                retry: RetryPolicy::default(),
                timeout: None,
                when: None,
                resources: None,
                once: false,
            }],
        };
        let (context, none, capacity) = (Map::new(), BTreeMap::new(), BTreeMap::new());
        let mut target = Target {
            workflow: &workflow,
            model: "m",
            workflow_arg: None,
            context: &context,
            resources: &none,
            capacity: &capacity,
            gpus: 0,
        };
        let text = export(&target, &options()).unwrap();
        assert!(
            text.contains("name: \"a: uses $ {{ secrets.X }}\""),
            "{text}"
        );
        target.workflow_arg = Some("${{ github.event.x }}");
        assert!(matches!(
            export(&target, &options()),
            Err(ExportError::Invalid {
                what: "workflow",
                ..
            })
        ));
        let mut bad = options();
        bad.secret = "GITHUB_TOKEN".into();
        target.workflow_arg = None;
        assert!(export(&target, &bad).is_err());
    }

    fn step(id: &str, needs: &[&str]) -> Step {
        super::super::tests::step(id, needs, None)
    }

    #[test]
    fn jobs_holding_resources_queue_in_one_group_per_runner_labels() {
        let workflow = Workflow {
            name: "w".into(),
            description: None,
            path: "w.yaml".into(),
            steps: vec![step("a", &[]), step("b", &["a"]), step("c", &["a"])],
        };
        let resources = BTreeMap::from([
            ("b".to_string(), BTreeMap::from([("gpu".to_string(), 1)])),
            (
                "c".to_string(),
                BTreeMap::from([("gpu".to_string(), 1), ("disk".to_string(), 1)]),
            ),
        ]);
        let capacity = BTreeMap::from([("gpu".to_string(), 1), ("disk".to_string(), 2)]);
        let context = Map::new();
        let target = Target {
            workflow: &workflow,
            model: "m",
            workflow_arg: None,
            context: &context,
            resources: &resources,
            capacity: &capacity,
            gpus: 1,
        };
        let text = export(&target, &options()).unwrap();
        let doc: Value = crate::source::yaml::parse(&text).unwrap().to_json();
        assert!(doc["jobs"]["a"].get("concurrency").is_none(), "{text}");
        assert_eq!(
            doc["jobs"]["b"]["concurrency"],
            serde_json::json!({"group": "onboard-gpu@self-hosted,gpu", "cancel-in-progress": false})
        );
        // One group per job: both resources in its name.
        assert_eq!(
            doc["jobs"]["c"]["concurrency"]["group"],
            "onboard-disk+gpu@self-hosted,gpu"
        );
        // The workflow's own group is another.
        assert_eq!(doc["concurrency"]["group"], "onboard-m");
        assert!(text.contains("keeps one pending job per group"), "{text}");
        assert!(text.contains("`disk` (2 on the machine) serves one job at a time"));

        let none = BTreeMap::new();
        let plain = Target {
            resources: &none,
            ..target
        };
        let text = export(&plain, &options()).unwrap();
        assert_eq!(text.matches("concurrency:").count(), 1, "{text}");
        assert!(!text.contains("pending"), "{text}");
    }

    #[test]
    fn the_command_line_quotes_what_the_shell_would_split() {
        let args: Vec<String> = ["run", "m", "--workflow", "my flow"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            command_line(&args),
            "onboard -C \"$ONBOARD_WORKSPACE\" run m --workflow 'my flow'"
        );
    }
}
