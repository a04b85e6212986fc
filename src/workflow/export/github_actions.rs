//! A GitHub Actions workflow: one job per step (`needs:` = the DAG), each
//! running `onboard -C "$ONBOARD_WORKSPACE" run <model> --only <step>` on a
//! self-hosted runner. The workspace is a directory on the runners' machine
//! (or a filesystem they all mount), kept between jobs and runs: weights of
//! tens of gigabytes do not travel as artifacts, and `.onboard/` there is
//! what lets a rerun resume.
//!
//! Retries and timeouts: `onboard run` retries the step itself, with the
//! workflow's policy; the job's `timeout-minutes` covers all its attempts.

use super::yaml_out::{self, Yaml};
use super::{ceil_secs, shell_word, steps, Condition, ExportError, ExportStep, Target};

/// The variable every job's command reads the workspace from.
pub const WORKSPACE_ENV: &str = "ONBOARD_WORKSPACE";

pub struct GithubOptions {
    /// The workspace directory on the runners' machine.
    pub workspace_dir: String,
    /// Labels every job runs on.
    pub runs_on: Vec<String>,
    /// The extra label of runners with the GPUs, for steps that load the
    /// model.
    pub gpu_label: String,
    /// The repository secret holding the Hub token.
    pub secret: String,
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
    let header = format!(
        "`onboard export-workflow --format github-actions {model}`: workflow `{}`,\n\
         one job per step. Every job runs on a self-hosted runner that sees the workspace\n\
         at ${WORKSPACE_ENV} ({}): a clone of the workspace repository that stays\n\
         between jobs and runs, where `.onboard/` lets each step read what the steps\n\
         before it left. Steps of one model take turns on its run lock (--wait-for-lock).\n\
         Regenerate it after changing the workflow rather than editing it.",
        target.workflow.name, options.workspace_dir
    );
    Ok(yaml_out::to_string(&Yaml::commented(header, doc)))
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
    let mut entries = vec![("name", Yaml::str(title)), ("runs-on", Yaml::strs(runs_on))];
    if !s.step.needs.is_empty() {
        entries.push(("needs", Yaml::strs(s.step.needs.iter().cloned())));
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
    use std::collections::BTreeSet;

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
            }],
        };
        let (context, gpu) = (Map::new(), BTreeSet::new());
        let mut target = Target {
            workflow: &workflow,
            model: "m",
            workflow_arg: None,
            context: &context,
            gpu_steps: &gpu,
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
