//! `uses: profile` — phase 3: the production llama-server profile in
//! models.conf, from rules a person can read and a template they can edit.

use super::hand_edits::{self, HandEdit};
use super::{Task, TaskContext, TaskError};
use crate::engine::launch::{self, Listen};
use crate::tasks::WorkspaceContext;
use crate::workflow::template;
use crate::workspace::models_conf;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

pub struct ProfileTask;

/// How the weights are placed: the evaluation's decision, which the
/// profile turns into flags.
pub use crate::evaluate::strategy::Strategy;

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfileParams {
    /// Profile id in models.conf, e.g. `qwen35-35b`.
    pub id: String,
    /// Display name, written as a comment above a new profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The GGUF, relative to the workspace's models directory (the first
    /// shard of a split model).
    pub model: String,
    /// GGUF `general.architecture`, e.g. `qwen35moe`.
    pub architecture: String,
    /// The model has recurrent layers (Gated DeltaNet, SSM).
    #[serde(default)]
    pub recurrent: bool,
    /// Tokens a round to draft with the model's MTP block (0: no
    /// speculative decoding).
    #[serde(default)]
    pub mtp_draft: u32,
    /// The vision projector, relative to the models directory (`MMPROJ=`,
    /// `--mmproj`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mmproj: Option<String>,
    /// llama-server's prompt cache as evaluate sized it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_ram: Option<crate::evaluate::cache_ram::CacheRam>,
    /// Context size in tokens.
    #[schemars(range(min = 1))]
    pub context: u64,
    pub strategy: Strategy,
    /// MiB `--fit` leaves free per device (llama.cpp's default is 1024).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fit_target_mib: Option<u32>,
    /// Strategy A: `-ts`, e.g. `24,12`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tensor_split: Option<String>,
    /// More llama-server flags, appended to FLAGS.
    #[serde(default)]
    pub extra_flags: Vec<String>,
    /// The profile template, relative to the workspace.
    #[serde(default = "default_template")]
    pub template: String,
}

fn default_template() -> String {
    "templates/profile.conf.j2".into()
}

/// Used when the workspace has no template of its own.
pub const BUILTIN_TEMPLATE: &str = include_str!("../../templates/profile.conf.j2");

/// A profile line and the rule that produced it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct Entry {
    pub key: String,
    pub value: String,
    /// The rule, in words.
    pub because: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ProfileOutputs {
    pub profile: String,
    /// The lines written, each with the rule that produced it (a value
    /// kept as a hand edit, with that said instead).
    pub entries: Vec<Entry>,
    /// The llama-server command this profile starts.
    pub command: String,
    /// False when models.conf already held exactly this profile.
    pub changed: bool,
    /// Values set by hand in the profile since this step last wrote it,
    /// kept instead of the generated ones (`entries` shows them as kept).
    pub kept: Vec<HandEdit>,
}

/// Keys this task owns in a production profile; others a person added stay.
pub const MANAGED: &[&str] = &[
    "MODEL",
    "MMPROJ",
    "CTX_SIZE",
    "FIT",
    "FIT_TARGET",
    "GPU_LAYERS",
    "TENSOR_SPLIT",
    "FLAGS",
];

/// The rules, in order. Pure, so the golden tests can read them.
pub fn rules(p: &ProfileParams) -> Vec<Entry> {
    let entry = |key: &str, value: String, because: &str| Entry {
        key: key.into(),
        value,
        because: because.into(),
    };
    let mut out = vec![
        entry("MODEL", p.model.clone(), "the GGUF, relative to models/"),
        entry(
            "CTX_SIZE",
            p.context.to_string(),
            "context chosen by evaluate",
        ),
    ];
    if let Some(mmproj) = &p.mmproj {
        out.push(entry(
            "MMPROJ",
            mmproj.clone(),
            "the vision projector the manifest asked for (`hub.mmproj`), relative to models/",
        ));
    }
    let fit_target = p.fit_target_mib.unwrap_or(1024).to_string();
    match p.strategy {
        Strategy::AllGpu => {
            out.push(entry(
                "FIT",
                "off".into(),
                "Strategy A: placement is explicit, so fitting is off",
            ));
            out.push(entry(
                "GPU_LAYERS",
                "999".into(),
                "Strategy A: every layer on the GPUs",
            ));
            if let Some(ts) = &p.tensor_split {
                out.push(entry(
                    "TENSOR_SPLIT",
                    ts.clone(),
                    "Strategy A: split by each GPU's free VRAM",
                ));
            }
        }
        Strategy::Fit => {
            out.push(entry(
                "FIT",
                "on".into(),
                "llama.cpp --fit spreads the layers over the GPUs",
            ));
            out.push(entry(
                "FIT_TARGET",
                fit_target,
                "MiB --fit leaves free on each GPU",
            ));
        }
        Strategy::FitCpuMoe => {
            out.push(entry(
                "FIT",
                "on".into(),
                "llama.cpp --fit fills the GPUs and keeps the remaining expert tensors in RAM",
            ));
            out.push(entry(
                "FIT_TARGET",
                fit_target,
                "MiB --fit leaves free on each GPU",
            ));
        }
        Strategy::Cpu => {
            out.push(entry(
                "GPU_LAYERS",
                "0".into(),
                "no GPU: every layer in RAM",
            ));
        }
    }
    let mut flags = vec!["--jinja".to_string(), "-np".into(), "1".into()];
    let mut why = vec![
        "--jinja: the GGUF's chat template (tools, reasoning)",
        "-np 1: one slot gets the whole context",
    ];
    if p.recurrent {
        flags.push("--no-context-shift".into());
        why.push("--no-context-shift: recurrent (DeltaNet/SSM) layers cannot shift their state");
    }
    if p.mtp_draft > 0 {
        flags.extend([
            "--spec-type".to_string(),
            "draft-mtp".into(),
            "--spec-draft-n-max".into(),
            p.mtp_draft.to_string(),
        ]);
        why.push(
            "--spec-type draft-mtp --spec-draft-n-max: the GGUF carries an MTP block; llama.cpp drafts \
             tokens with it and the model keeps those it would have generated (same output, fewer \
             passes when drafts are accepted)",
        );
    }
    let cache_why;
    if let Some(cache) = &p.cache_ram {
        cache_why = match cache.mib {
            Some(n) => {
                flags.extend(["--cache-ram".to_string(), n.to_string()]);
                format!("--cache-ram {n}: {}", cache.reason)
            }
            None => format!("no --cache-ram: {}", cache.reason),
        };
        why.push(&cache_why);
    }
    flags.extend(p.extra_flags.iter().cloned());
    if !p.extra_flags.is_empty() {
        why.push("extra flags from the workflow");
    }
    out.push(Entry {
        key: "FLAGS".into(),
        value: crate::engine::words::join(&flags),
        because: why.join("; "),
    });
    out
}

impl Task for ProfileTask {
    const KIND: &'static str = "profile";
    const VERSION: u32 = 1;
    const SUMMARY: &'static str = "Write the production llama-server profile into models.conf";
    type Params = ProfileParams;
    type Outputs = ProfileOutputs;

    fn input_files(
        &self,
        params: &ProfileParams,
        ctx: &TaskContext,
    ) -> Result<Vec<PathBuf>, TaskError> {
        let template = ctx.path(&params.template)?;
        Ok(if template.exists() {
            vec![template]
        } else {
            Vec::new()
        })
    }

    /// The profile deleted from models.conf: written again, not left for
    /// the context test to find missing.
    fn missing_outputs(
        &self,
        params: &ProfileParams,
        ctx: &TaskContext,
    ) -> Result<Vec<String>, TaskError> {
        let file = ctx.paths().models_conf;
        let conf =
            models_conf::read(&ctx.path(&file)?).map_err(|e| TaskError::failed(e.to_string()))?;
        Ok(match conf.profile(&params.id) {
            Some(_) => Vec::new(),
            None => vec![format!("{file} [{}]", params.id)],
        })
    }

    async fn run(
        &self,
        params: ProfileParams,
        ctx: TaskContext,
    ) -> Result<ProfileOutputs, TaskError> {
        if !models_conf::valid_profile_id(&params.id) {
            return Err(TaskError::Params(format!(
                "`{}` is not a valid profile id (letters, digits, `-`, `_`, `.`)",
                params.id
            )));
        }
        let rules = rules(&params);
        let template_path = ctx.path(&params.template)?;
        let source = match std::fs::read_to_string(&template_path) {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BUILTIN_TEMPLATE.to_string(),
            Err(e) => return Err(TaskError::io(&template_path, e)),
        };
        let values = serde_json::json!({
            "id": params.id,
            "name": params.name,
            "entries": rules,
            "params": params,
        });
        let rendered = template::render_file(&params.template, &source, &values)
            .map_err(|e| TaskError::Params(format!("{}: {e}", params.template)))?;
        let entries = parse_entries(&rendered, &params.template)?;
        let written: Vec<Entry> = entries
            .iter()
            .map(|(k, v)| {
                rules
                    .iter()
                    .find(|r| &r.key == k && &r.value == v)
                    .cloned()
                    .unwrap_or_else(|| Entry {
                        key: k.clone(),
                        value: v.clone(),
                        because: format!("set by {}", params.template),
                    })
            })
            .collect();
        let mut managed: Vec<&str> = MANAGED.to_vec();
        managed.extend(entries.iter().map(|(k, _)| k.as_str()));
        let paths = ctx.paths();
        let conf_path = ctx.path(&paths.models_conf)?;
        let comment = params
            .name
            .as_ref()
            .map(|n| format!("{n}: production profile, written by onboard"));
        // What this step wrote last time tells its own lines from a person's.
        let last = hand_edits::last_written(ctx.previous_outputs.as_ref(), "entries");
        let mut kept = Vec::new();
        let changed = models_conf::update(&conf_path, |conf| {
            let merge = hand_edits::merge(
                conf.profile(&params.id).as_ref(),
                last.as_deref(),
                &managed,
                &entries,
            );
            kept = merge.kept.clone();
            conf.upsert(
                &params.id,
                &merge.managed(),
                &merge.entries,
                comment.as_deref(),
            )
            .map_err(|e| e.to_string())
        })
        .map_err(|e| TaskError::failed(e.to_string()))?;
        let written: Vec<Entry> = written
            .into_iter()
            .map(|e| match kept.iter().find(|k| k.key == e.key) {
                Some(k) => Entry {
                    key: e.key,
                    because: format!("edited by hand, kept (onboard's value: {})", e.value),
                    value: k.value.clone(),
                },
                None => e,
            })
            .collect();
        let conf = models_conf::read(&conf_path).map_err(|e| TaskError::failed(e.to_string()))?;
        let profile = conf.profile(&params.id).ok_or_else(|| {
            TaskError::failed(format!(
                "profile `[{}]` vanished from {}",
                params.id, paths.models_conf
            ))
        })?;
        let launch = launch::command(
            &profile,
            "llama-server",
            &ctx.path(&paths.models)?,
            &Listen::default(),
        )
        .map_err(TaskError::failed)?;
        for e in &written {
            ctx.log(&format!("{}={}  ({})", e.key, e.value, e.because));
        }
        let section = format!("{} [{}]", paths.models_conf, params.id);
        for edit in &kept {
            ctx.log(&hand_edits::describe(edit, &section, &ctx.model, &ctx.step));
        }
        Ok(ProfileOutputs {
            profile: params.id,
            entries: written,
            command: launch.command_line(),
            changed,
            kept,
        })
    }
}

/// `KEY=VALUE` lines of a rendered template (blank lines and `#` comments
/// skipped).
fn parse_entries(text: &str, template: &str) -> Result<Vec<(String, String)>, TaskError> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') || t.starts_with(';') {
            continue;
        }
        let Some((k, v)) = t.split_once('=') else {
            return Err(TaskError::Params(format!(
                "{template} rendered line {}: `{t}` is not KEY=VALUE",
                i + 1
            )));
        };
        let k = k.trim().to_string();
        if out.iter().any(|(existing, _)| *existing == k) {
            return Err(TaskError::Params(format!("{template} renders `{k}` twice")));
        }
        out.push((k, v.trim().to_string()));
    }
    Ok(out)
}
