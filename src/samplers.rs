//! The recommended sampling settings of a model, each with where it came
//! from. Precedence, per value: the manifest (curated from the model card,
//! for the chosen mode) > the GGUF's `general.sampling.*` > the repo's
//! `generation_config.json` > llama.cpp's defaults.

use crate::hub::upstream::Identity;
use crate::workspace::manifest::SamplerCard;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// What the values are resolved from, besides the repo's generation config.
#[derive(Debug, Clone, Default)]
pub struct SamplerInputs {
    /// The model card's recommendations (the manifest's `samplers:`).
    pub recommended: Option<SamplerCard>,
    /// Which of the card's modes to use; default: the card's `use`, else
    /// `thinking-general` for thinking models, else `non-thinking-general`.
    pub mode: Option<String>,
    /// Whether the model thinks before answering (picks the default mode).
    pub thinking: bool,
    /// The GGUF's `general.sampling.*` values, keyed without the prefix.
    pub gguf_sampling: Map<String, Value>,
}

/// Why the values could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum SamplerError {
    #[error("the manifest's samplers have no mode `{mode}` (modes: {known})")]
    UnknownMode { mode: String, known: String },
    #[error("the manifest's samplers have no modes")]
    NoModes,
    #[error("the manifest's samplers do not read as settings ({0})")]
    Settings(String),
    #[error("not valid JSON ({0})")]
    NotJson(String),
    #[error("expected a JSON object")]
    NotObject,
}

/// A `generation_config.json` read from a file.
pub fn parse_generation_config(text: &str) -> Result<Map<String, Value>, SamplerError> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| SamplerError::NotJson(e.to_string()))?;
    value.as_object().cloned().ok_or(SamplerError::NotObject)
}

pub const GENERATION_CONFIG: &str = "generation_config.json";
/// The model card: the manifest's `samplers:` are curated from it.
pub const CARD: &str = "README.md";

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
pub fn hub_sources(
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
fn chosen_mode(
    params: &SamplerInputs,
) -> Result<(Option<String>, Map<String, Value>), SamplerError> {
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
            let value = settings_value(settings)?;
            Ok((Some(mode), value.as_object().cloned().unwrap_or_default()))
        }
        None if params.mode.is_none() && card.use_mode.is_none() && card.modes.len() == 1 => {
            let (name, settings) = card.modes.iter().next().ok_or(SamplerError::NoModes)?;
            let value = settings_value(settings)?;
            Ok((
                Some(name.clone()),
                value.as_object().cloned().unwrap_or_default(),
            ))
        }
        None => Err(SamplerError::UnknownMode {
            known: card.modes.keys().cloned().collect::<Vec<_>>().join(", "),
            mode,
        }),
    }
}

fn settings_value(settings: &impl Serialize) -> Result<Value, SamplerError> {
    serde_json::to_value(settings).map_err(|e| SamplerError::Settings(e.to_string()))
}

/// Resolves every value with its provenance. Pure: the tests feed each source.
pub fn resolve(
    params: &SamplerInputs,
    generation_config: Option<&Map<String, Value>>,
) -> Result<(Option<String>, Vec<Resolved>), SamplerError> {
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

/// The values as llama-server flags: what `SAMPLERS=` holds.
pub fn flag_line(values: &[Resolved]) -> String {
    values
        .iter()
        .map(|r| format!("{} {}", r.flag, r.value))
        .collect::<Vec<_>>()
        .join(" ")
}

/// An upstream change as the reason to rerun, pointing at the manifest
/// when the model card is what changed.
pub fn upstream_note(why: String) -> String {
    if why.contains(CARD) {
        format!("{why} (the model card: compare the manifest's `samplers:` with it)")
    } else {
        why
    }
}

/// A line for each source whose content changed since `before` was read,
/// so a rerun that derives the same flags still tells why it ran.
pub fn changed_sources(before: &[SamplerSource], now: &[SamplerSource]) -> Vec<String> {
    now.iter()
        .filter_map(|n| {
            let b = before.iter().find(|b| b.file == n.file)?;
            (!b.identity.same_content(&n.identity)).then(|| {
                format!(
                    "{} changed upstream ({}): samplers derived again",
                    n.file,
                    b.identity.change_to(&n.identity)
                )
            })
        })
        .collect()
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

    fn params() -> SamplerInputs {
        SamplerInputs::default()
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
        let e = resolve(&p, None).unwrap_err().to_string();
        assert!(
            e.contains("no mode `creative`") && e.contains("thinking-coding"),
            "{e}"
        );
    }
}
