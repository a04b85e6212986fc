//! `uses: samplers` — phase 4: the recommended sampling settings, each with
//! where it came from, written into the production profile.
//!
//! Precedence, per value: the manifest (curated from the model card, for the
//! chosen mode) > the GGUF's `general.sampling.*` > the repo's
//! `generation_config.json` > llama.cpp's defaults.

use super::hand_edits::{self, HandEdit};
use super::{Task, TaskContext, TaskError};
use crate::hub::upstream::Identity;
use crate::tasks::WorkspaceContext;
use crate::workspace::manifest::SamplerCard;
use crate::workspace::models_conf;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::path::PathBuf;

pub struct Samplers;

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SamplersParams {
    /// The production profile to write `SAMPLERS=` into.
    pub profile: String,
    /// The model card's recommendations (`{{ manifest.samplers }}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recommended: Option<SamplerCard>,
    /// Which of the card's modes to use; default: the card's `use`, else
    /// `thinking-general` for thinking models, else `non-thinking-general`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Whether the model thinks before answering (picks the default mode).
    #[serde(default)]
    pub thinking: bool,
    /// The GGUF's `general.sampling.*` values, keyed without the prefix
    /// (`temp`, `top_p`, …), as evaluate read them.
    #[serde(default)]
    pub gguf_sampling: Map<String, Value>,
    /// The repo's `generation_config.json`, as a workspace path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation_config: Option<String>,
    /// Fetch `generation_config.json` from this Hub repo (`HF_ENDPOINT`
    /// honoured) when no local copy is given; a repo without one is fine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hub_repo: Option<String>,
    #[serde(default = "default_revision")]
    pub hub_revision: String,
}

fn default_revision() -> String {
    "main".into()
}

const GENERATION_CONFIG: &str = "generation_config.json";
/// The model card: the manifest's `samplers:` are curated from it.
const CARD: &str = "README.md";

/// The repo's generation_config.json through the Hub client, if it has
/// one, with the identity the Hub stated for it.
fn fetch_generation_config(
    client: &crate::hub::HubClient,
    repo: &str,
    revision: &str,
) -> Result<Option<(Value, Identity)>, String> {
    use crate::hub::HubError;
    const FILE: &str = GENERATION_CONFIG;
    let meta = match client.file_meta(repo, revision, FILE) {
        Ok(m) => m,
        Err(HubError::FileNotFound { .. }) => return Ok(None),
        Err(e) => return Err(crate::secrets::redact(&e.to_string())),
    };
    if meta.size > 1 << 20 {
        return Err(format!(
            "{repo}/{FILE} is {} bytes; not a generation config",
            meta.size
        ));
    }
    // Read at the commit the HEAD named, so the identity is the bytes'.
    let at = meta.commit.as_deref().unwrap_or(revision);
    let bytes = client
        .read_range(repo, at, FILE, 0, meta.size)
        .map_err(|e| crate::secrets::redact(&e.to_string()))?;
    serde_json::from_slice(&bytes)
        .map(|v| Some((v, Identity::of(&meta))))
        .map_err(|e| format!("{repo}/{FILE} is not valid JSON ({e})"))
}

/// The sources read from the Hub, as it stated them: what an upstream
/// check compares with. The card is not read (its recommendations are
/// curated into the manifest), only its identity noted, so a new card
/// shows as a reason to look at the manifest again.
fn hub_sources(
    repo: &str,
    revision: &str,
    log: &dyn Fn(&str),
) -> (Option<Map<String, Value>>, Vec<SamplerSource>) {
    let client = crate::hub::HubClient::from_env();
    let mut sources = Vec::new();
    let generation_config = match fetch_generation_config(&client, repo, revision) {
        Ok(Some((value, identity))) => {
            sources.push(SamplerSource {
                file: GENERATION_CONFIG.into(),
                identity,
            });
            value.as_object().cloned()
        }
        Ok(None) => None,
        Err(e) => {
            // The Hub did not answer: asking again for the card would only
            // wait as long once more.
            log(&format!("{GENERATION_CONFIG} not used: {e}"));
            return (None, sources);
        }
    };
    if let Ok(identity) = crate::hub::upstream::current(&client, repo, revision, CARD) {
        sources.push(SamplerSource {
            file: CARD.into(),
            identity,
        });
    }
    (generation_config, sources)
}

/// A source read from the Hub and how the Hub stated it then.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct SamplerSource {
    /// The repo path: `generation_config.json`, `README.md`.
    pub file: String,
    pub identity: Identity,
}

/// One resolved value and its source.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct Resolved {
    /// llama-server's flag, e.g. `--top-p`.
    pub flag: String,
    pub value: String,
    pub source: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct SamplersOutputs {
    pub profile: String,
    pub mode: Option<String>,
    /// The flags written as `SAMPLERS=`.
    pub samplers: String,
    pub values: Vec<Resolved>,
    pub changed: bool,
    /// `SAMPLERS=` as set by hand since this step last wrote it: kept.
    pub kept: Vec<HandEdit>,
    /// What was read from the Hub (generation config, card), as it was:
    /// `onboard outdated` compares these with the Hub now.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<SamplerSource>,
}

/// (flag, manifest/GGUF key, generation_config key, llama.cpp default)
const PARAMS: &[(&str, &str, &str, f64)] = &[
    ("--temp", "temp", "temperature", 0.8),
    ("--top-p", "top_p", "top_p", 0.95),
    ("--top-k", "top_k", "top_k", 40.0),
    ("--min-p", "min_p", "min_p", 0.05),
    (
        "--presence-penalty",
        "presence_penalty",
        "presence_penalty",
        0.0,
    ),
];

/// Numbers as llama-server takes them: `1`, `0.95`, never `1.0000001`.
fn format_number(v: f64) -> String {
    let rounded = (v * 1e6).round() / 1e6;
    if rounded.fract() == 0.0 && rounded.abs() < 1e15 {
        format!("{}", rounded as i64)
    } else {
        format!("{rounded}")
    }
}

/// The mode to use and its settings as a JSON object.
fn chosen_mode(params: &SamplersParams) -> Result<(Option<String>, Map<String, Value>), String> {
    let Some(card) = &params.recommended else {
        return Ok((None, Map::new()));
    };
    let default = if params.thinking {
        "thinking-general"
    } else {
        "non-thinking-general"
    };
    let mode = params
        .mode
        .clone()
        .or_else(|| card.use_mode.clone())
        .unwrap_or_else(|| default.to_string());
    match card.modes.get(&mode) {
        Some(settings) => {
            let value = serde_json::to_value(settings).map_err(|e| e.to_string())?;
            Ok((Some(mode), value.as_object().cloned().unwrap_or_default()))
        }
        None if params.mode.is_none() && card.use_mode.is_none() && card.modes.len() == 1 => {
            let (name, settings) = card.modes.iter().next().ok_or("no modes")?;
            let value = serde_json::to_value(settings).map_err(|e| e.to_string())?;
            Ok((
                Some(name.clone()),
                value.as_object().cloned().unwrap_or_default(),
            ))
        }
        None => Err(format!(
            "the manifest's samplers have no mode `{mode}` (modes: {})",
            card.modes.keys().cloned().collect::<Vec<_>>().join(", ")
        )),
    }
}

/// Resolves every value with its provenance. Pure: the tests feed each source.
pub fn resolve(
    params: &SamplersParams,
    generation_config: Option<&Map<String, Value>>,
) -> Result<(Option<String>, Vec<Resolved>), String> {
    let (mode, manifest) = chosen_mode(params)?;
    let card_source = params
        .recommended
        .as_ref()
        .map(|c| format!("manifest: {} ({})", c.source, mode.as_deref().unwrap_or("")))
        .unwrap_or_default();
    let mut out = Vec::new();
    for (flag, key, gen_key, default) in PARAMS {
        let found = manifest
            .get(*key)
            .and_then(Value::as_f64)
            .map(|v| (v, card_source.clone()))
            .or_else(|| {
                params
                    .gguf_sampling
                    .get(*key)
                    .and_then(Value::as_f64)
                    .map(|v| (v, format!("GGUF general.sampling.{key}")))
            })
            .or_else(|| {
                generation_config
                    .and_then(|g| g.get(*gen_key))
                    .and_then(Value::as_f64)
                    .map(|v| (v, format!("generation_config.json {gen_key}")))
            })
            .unwrap_or((*default, "llama.cpp default".to_string()));
        out.push(Resolved {
            flag: flag.to_string(),
            value: format_number(found.0),
            source: found.1,
        });
    }
    Ok((mode, out))
}

impl Task for Samplers {
    const KIND: &'static str = "samplers";
    const VERSION: u32 = 1;
    const SUMMARY: &'static str =
        "Resolve recommended samplers with provenance and write them into the profile";
    type Params = SamplersParams;
    type Outputs = SamplersOutputs;

    fn input_files(
        &self,
        params: &SamplersParams,
        ctx: &TaskContext,
    ) -> Result<Vec<PathBuf>, TaskError> {
        params
            .generation_config
            .iter()
            .map(|p| ctx.path(p))
            .collect()
    }

    fn out_of_date(
        &self,
        params: &SamplersParams,
        ctx: &TaskContext,
    ) -> Result<Option<String>, TaskError> {
        let (Some(repo), None) = (&params.hub_repo, &params.generation_config) else {
            return Ok(None);
        };
        let had: Vec<(String, Identity)> = previous_sources(ctx)
            .into_iter()
            .map(|s| (s.file, s.identity))
            .collect();
        let why = super::upstream_changed(ctx, repo, &params.hub_revision, &had)?;
        Ok(why.map(|why| {
            if why.contains(CARD) {
                format!("{why} (the model card: compare the manifest's `samplers:` with it)")
            } else {
                why
            }
        }))
    }

    async fn run(
        &self,
        params: SamplersParams,
        ctx: TaskContext,
    ) -> Result<SamplersOutputs, TaskError> {
        let mut sources = Vec::new();
        let generation_config = match &params.generation_config {
            None => match params.hub_repo.clone() {
                None => None,
                Some(repo) => {
                    let revision = params.hub_revision.clone();
                    let log_ctx = ctx.clone();
                    let (config, read) = tokio::task::spawn_blocking(move || {
                        hub_sources(&repo, &revision, &|line| log_ctx.log(line))
                    })
                    .await
                    .map_err(|e| TaskError::failed(e.to_string()))?;
                    sources = read;
                    note_changed_sources(&ctx, &previous_sources(&ctx), &sources);
                    config
                }
            },
            Some(rel) => {
                let path = ctx.path(rel)?;
                let text = std::fs::read_to_string(&path).map_err(|e| TaskError::io(&path, e))?;
                let value: Value = serde_json::from_str(&text).map_err(|e| {
                    TaskError::Params(format!("{}: not valid JSON ({e})", path.display()))
                })?;
                Some(value.as_object().cloned().ok_or_else(|| {
                    TaskError::Params(format!("{}: expected a JSON object", path.display()))
                })?)
            }
        };
        let (mode, values) =
            resolve(&params, generation_config.as_ref()).map_err(TaskError::Params)?;
        let samplers = values
            .iter()
            .map(|r| format!("{} {}", r.flag, r.value))
            .collect::<Vec<_>>()
            .join(" ");
        let conf_path = ctx.path(&ctx.paths().models_conf)?;
        let profile = params.profile.clone();
        let value = samplers.clone();
        // What this step wrote last time (unless that was a kept hand edit).
        let last = ctx.previous_outputs.as_ref().map(|prev| {
            let kept = prev
                .get("kept")
                .and_then(Value::as_array)
                .is_some_and(|k| !k.is_empty());
            match prev.get("samplers").and_then(Value::as_str) {
                Some(s) if !kept => vec![("SAMPLERS".to_string(), s.to_string())],
                _ => Vec::new(),
            }
        });
        let mut kept = Vec::new();
        let changed = models_conf::update(&conf_path, |conf| {
            let Some(current) = conf.profile(&profile) else {
                return Err(format!(
                    "has no profile `[{profile}]`; run the profile step first"
                ));
            };
            let merge = hand_edits::merge(
                Some(&current),
                last.as_deref(),
                &["SAMPLERS"],
                &[("SAMPLERS".to_string(), value.clone())],
            );
            kept = merge.kept;
            if !kept.is_empty() {
                return Ok(());
            }
            conf.set(&profile, "SAMPLERS", &value)
                .map_err(|e| e.to_string())
        })
        .map_err(|e| TaskError::Failed {
            message: e.to_string(),
            retryable: false,
        })?;
        let width = values.iter().map(|r| r.flag.len()).max().unwrap_or(0);
        for r in &values {
            ctx.log(&format!("{:<width$} {:>6}  {}", r.flag, r.value, r.source));
        }
        let section = format!("{} [{}]", ctx.paths().models_conf, params.profile);
        for edit in &kept {
            ctx.log(&hand_edits::describe(edit, &section, &ctx.model, &ctx.step));
        }
        Ok(SamplersOutputs {
            profile: params.profile,
            mode,
            samplers,
            values,
            changed,
            kept,
            sources,
        })
    }
}

/// The sources the last finished run recorded (none before they were).
fn previous_sources(ctx: &TaskContext) -> Vec<SamplerSource> {
    ctx.previous_outputs
        .as_ref()
        .and_then(|o| o.get("sources"))
        .and_then(|s| serde_json::from_value(s.clone()).ok())
        .unwrap_or_default()
}

/// Says which source changed since the last run, so a rerun that derives
/// the same flags still tells why it ran.
fn note_changed_sources(ctx: &TaskContext, before: &[SamplerSource], now: &[SamplerSource]) {
    for n in now {
        if let Some(b) = before.iter().find(|b| b.file == n.file) {
            if !b.identity.same_content(&n.identity) {
                ctx.log(&format!(
                    "{} changed upstream ({}): samplers derived again",
                    n.file,
                    b.identity.change_to(&n.identity)
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workspace::manifest::SamplerSettings;
    use std::collections::BTreeMap;

    fn qwen_card() -> SamplerCard {
        let mode = |t, p, k, m, pp| SamplerSettings {
            temp: Some(t),
            top_p: Some(p),
            top_k: Some(k),
            min_p: Some(m),
            presence_penalty: Some(pp),
        };
        SamplerCard {
            source: "Qwen3.5 model card".into(),
            use_mode: None,
            modes: BTreeMap::from([
                (
                    "thinking-general".to_string(),
                    mode(1.0, 0.95, 20, 0.0, 1.5),
                ),
                ("thinking-coding".to_string(), mode(0.6, 0.95, 20, 0.0, 0.0)),
                (
                    "non-thinking-general".to_string(),
                    mode(0.7, 0.8, 20, 0.0, 1.5),
                ),
            ]),
        }
    }

    fn params() -> SamplersParams {
        SamplersParams {
            profile: "p".into(),
            recommended: None,
            mode: None,
            thinking: false,
            gguf_sampling: Map::new(),
            generation_config: None,
            hub_repo: None,
            hub_revision: "main".into(),
        }
    }

    fn flags(values: &[Resolved]) -> String {
        values
            .iter()
            .map(|r| format!("{} {}", r.flag, r.value))
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn the_manifest_wins_and_min_p_zero_is_explicit() {
        let mut p = params();
        p.recommended = Some(qwen_card());
        p.thinking = true;
        p.mode = Some("thinking-coding".into());
        let (mode, values) = resolve(&p, None).unwrap();
        assert_eq!(mode.as_deref(), Some("thinking-coding"));
        assert_eq!(
            flags(&values),
            "--temp 0.6 --top-p 0.95 --top-k 20 --min-p 0 --presence-penalty 0"
        );
        assert!(values
            .iter()
            .all(|r| r.source == "manifest: Qwen3.5 model card (thinking-coding)"));
        p.mode = None;
        let (mode, values) = resolve(&p, None).unwrap();
        assert_eq!(mode.as_deref(), Some("thinking-general"));
        assert_eq!(
            flags(&values),
            "--temp 1 --top-p 0.95 --top-k 20 --min-p 0 --presence-penalty 1.5"
        );
    }

    #[test]
    fn each_source_fills_what_the_ones_above_lack() {
        let mut p = params();
        p.gguf_sampling
            .insert("temp".into(), serde_json::json!(0.7));
        p.gguf_sampling
            .insert("top_k".into(), serde_json::json!(30));
        let gen = serde_json::json!({"temperature": 0.1, "top_p": 0.8, "top_k": 5})
            .as_object()
            .cloned()
            .unwrap();
        let (_, values) = resolve(&p, Some(&gen)).unwrap();
        let sources: Vec<(&str, &str, &str)> = values
            .iter()
            .map(|r| (r.flag.as_str(), r.value.as_str(), r.source.as_str()))
            .collect();
        assert_eq!(
            sources,
            vec![
                ("--temp", "0.7", "GGUF general.sampling.temp"),
                ("--top-p", "0.8", "generation_config.json top_p"),
                ("--top-k", "30", "GGUF general.sampling.top_k"),
                ("--min-p", "0.05", "llama.cpp default"),
                ("--presence-penalty", "0", "llama.cpp default"),
            ]
        );
    }

    #[test]
    fn an_unknown_mode_names_the_known_ones() {
        let mut p = params();
        p.recommended = Some(qwen_card());
        p.mode = Some("creative".into());
        let e = resolve(&p, None).unwrap_err();
        assert!(
            e.contains("no mode `creative`") && e.contains("thinking-coding"),
            "{e}"
        );
    }
}
