//! The llama-server profiles onboard writes into models.conf: the rules of
//! the production profile, the bench profile derived from it, and how a
//! person's hand edits survive both. Pure functions over models.conf
//! values; the profile tasks only read their inputs and write the file.

pub mod bench;
pub mod hand_edits;

pub use crate::evaluate::strategy::Strategy;
use crate::workflow::template;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What the production profile is made from: the evaluation's decisions.
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

/// A profile line and the rule that produced it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct Entry {
    pub key: String,
    pub value: String,
    /// The rule, in words.
    pub because: String,
}

/// Keys the profile step owns in a production profile; others a person added stay.
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

/// A rendered profile template.
pub struct Rendered {
    /// The `KEY=VALUE`s to write.
    pub entries: Vec<(String, String)>,
    /// The same, each with the rule that produced it.
    pub written: Vec<Entry>,
}

/// The profile `template` (its source) renders for `p`: the `KEY=VALUE`s to
/// write, and each with the rule that produced it (a line the template
/// adds or changes is "set by" it).
pub fn render(p: &ProfileParams, source: &str) -> Result<Rendered, RenderError> {
    let rules = rules(p);
    let values = serde_json::json!({
        "id": p.id,
        "name": p.name,
        "entries": rules,
        "params": p,
    });
    let rendered = template::render_file(&p.template, source, &values)
        .map_err(|e| RenderError(format!("{}: {e}", p.template)))?;
    let entries = parse_entries(&rendered, &p.template)?;
    let written = entries
        .iter()
        .map(|(k, v)| {
            rules
                .iter()
                .find(|r| &r.key == k && &r.value == v)
                .cloned()
                .unwrap_or_else(|| Entry {
                    key: k.clone(),
                    value: v.clone(),
                    because: format!("set by {}", p.template),
                })
        })
        .collect();
    Ok(Rendered { entries, written })
}

/// `written` as the file holds it: a line kept as a hand edit shows the
/// person's value, and onboard's in its reason.
pub fn mark_kept(written: Vec<Entry>, kept: &[hand_edits::HandEdit]) -> Vec<Entry> {
    written
        .into_iter()
        .map(|e| match kept.iter().find(|k| k.key == e.key) {
            Some(k) => Entry {
                key: e.key,
                because: format!("edited by hand, kept (onboard's value: {})", e.value),
                value: k.value.clone(),
            },
            None => e,
        })
        .collect()
}

/// A profile template rendered into something other than `KEY=VALUE`
/// lines; the message names the template and the line.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RenderError(pub String);

/// `KEY=VALUE` lines of a rendered template (blank lines and `#` comments
/// skipped).
pub fn parse_entries(text: &str, template: &str) -> Result<Vec<(String, String)>, RenderError> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') || t.starts_with(';') {
            continue;
        }
        let Some((k, v)) = t.split_once('=') else {
            return Err(RenderError(format!(
                "{template} rendered line {}: `{t}` is not KEY=VALUE",
                i + 1
            )));
        };
        let k = k.trim().to_string();
        if out.iter().any(|(existing, _)| *existing == k) {
            return Err(RenderError(format!("{template} renders `{k}` twice")));
        }
        out.push((k, v.trim().to_string()));
    }
    Ok(out)
}
