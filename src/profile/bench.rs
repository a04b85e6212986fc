//! The bench profile, `[bench-<id>]`: the production placement with a
//! fixed context, no sampler flags (the benchmark client sends temperature
//! 0), no drafter, and for thinking models `--reasoning-format none` so the
//! reasoning stays in the reply.

use crate::engine::words;
use crate::workspace::{markdown, models_conf};
use std::path::{Path, PathBuf};

/// Placement keys copied from the production profile.
const PLACEMENT: &[&str] = &[
    "FIT",
    "FIT_TARGET",
    "FIT_CTX",
    "GPU_LAYERS",
    "TENSOR_SPLIT",
    "OVERRIDE_TENSOR",
    "N_CPU_MOE",
    "CACHE_TYPE_K",
    "CACHE_TYPE_V",
];

/// Keys the bench-profile step owns in a bench profile: what it writes,
/// and `SAMPLERS`, which it leaves out.
pub fn managed() -> Vec<&'static str> {
    let mut keys = vec!["MODEL", "CTX_SIZE", "FLAGS", "SAMPLERS"];
    keys.extend_from_slice(PLACEMENT);
    keys
}

/// A bench profile derived from its production profile.
pub struct Derived {
    /// `KEY=VALUE`s in the order they are written.
    pub entries: Vec<(String, String)>,
    pub flags: String,
    pub context: u64,
    /// The production context, when it is shorter than the bench context
    /// asked for (SmolLM2: 8192 < 10240) and the bench profile takes it.
    pub capped_at: Option<u64>,
    /// The production profile drafts ([`NO_SPECULATIVE_REASON`]).
    pub drops_speculative: bool,
}

/// The bench profile of `production` at `context` tokens.
pub fn derive(
    production: &models_conf::Profile,
    context: u64,
    thinking: bool,
) -> Result<Derived, String> {
    let model = production.get("MODEL").unwrap_or_default().to_string();
    let capped_at = production
        .get("CTX_SIZE")
        .and_then(|c| c.parse::<u64>().ok())
        .filter(|max| *max < context);
    let context = capped_at.unwrap_or(context);
    let production_flags = production.get("FLAGS").unwrap_or_default();
    let flags = bench_flags(production_flags, thinking)?;
    let mut entries = vec![
        ("MODEL".to_string(), model),
        ("CTX_SIZE".to_string(), context.to_string()),
    ];
    for key in PLACEMENT {
        if let Some(v) = production.get(key) {
            entries.push((key.to_string(), v.to_string()));
        }
    }
    entries.push(("FLAGS".to_string(), flags.clone()));
    Ok(Derived {
        entries,
        flags,
        context,
        capped_at,
        drops_speculative: production_flags.contains("--spec-"),
    })
}

/// Flags that set sampling; a bench profile has none.
pub const SAMPLER_FLAGS: &[&str] = &[
    "--temp",
    "--top-p",
    "--top-k",
    "--min-p",
    "--presence-penalty",
    "--frequency-penalty",
    "--repeat-penalty",
    "--typical",
    "--mirostat",
    "--seed",
];

/// Why a bench profile drafts nothing, though its production profile may.
pub const NO_SPECULATIVE_REASON: &str =
    "speculative decoding (--spec-*) off: a score measures the model alone, and verifying drafts \
     in batches can flip a near-tie of greedy decoding (seen with the MTP fixture in this \
     repository's tests), so the same model would score differently with and without its drafter";

/// The production FLAGS without sampler flags, without speculative decoding
/// ([`NO_SPECULATIVE_REASON`]) and with the reasoning format a benchmark
/// needs.
pub fn bench_flags(production: &str, thinking: bool) -> Result<String, String> {
    let words = words::split(production)?;
    let mut out = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let w = &words[i];
        let takes_value = |next: Option<&String>| next.is_some_and(|n| !n.starts_with("--"));
        if SAMPLER_FLAGS.contains(&w.as_str())
            || w == "--reasoning-format"
            || w.starts_with("--spec-")
        {
            i += if takes_value(words.get(i + 1)) { 2 } else { 1 };
            continue;
        }
        out.push(w.clone());
        i += 1;
    }
    if thinking {
        out.push("--reasoning-format".into());
        out.push("none".into());
    }
    Ok(words::join(&out))
}

/// The benchmarks README's `bench-models` table: every model registered
/// with the benchmark client, with its bench profile's context.
pub fn readme_table(client: &models_conf::ModelsConf, conf: &models_conf::ModelsConf) -> String {
    let mut table =
        String::from("| Bench profile | Model | Thinking | Context |\n|---|---|---|---|\n");
    for p in client.profiles() {
        let context = conf
            .profile(&p.id)
            .and_then(|b| b.get("CTX_SIZE").map(str::to_string))
            .unwrap_or_else(|| "?".into());
        table.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            p.id,
            p.get("NAME").unwrap_or(&p.id),
            if p.get("THINKING") == Some("true") {
                "yes"
            } else {
                "no"
            },
            context
        ));
    }
    table
}

/// A model as the benchmark client knows it.
pub struct Registration<'a> {
    /// The bench profile.
    pub id: &'a str,
    /// Display name.
    pub name: &'a str,
    /// The model's manifest id.
    pub model_id: &'a str,
    pub thinking: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error(transparent)]
    Conf(#[from] models_conf::ConfError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The README's generated block is malformed; the message says where.
    #[error("{0}")]
    Readme(String),
}

/// Registers a bench profile with the benchmark client (`client`, INI),
/// then regenerates the `bench-models` table of the benchmarks README from
/// every registration and the bench profiles in `conf`. True when either
/// file changed.
pub fn register(
    model: &Registration<'_>,
    client: &Path,
    conf: &Path,
    readme: &Path,
) -> Result<bool, RegisterError> {
    let entries = vec![
        ("NAME".to_string(), model.name.to_string()),
        ("PROFILE".to_string(), model.id.to_string()),
        ("MODEL_ID".to_string(), model.model_id.to_string()),
        ("THINKING".to_string(), model.thinking.to_string()),
        ("TEMPERATURE".to_string(), "0".to_string()),
    ];
    let mut changed = models_conf::update(client, |c| {
        c.upsert(
            model.id,
            &["NAME", "PROFILE", "MODEL_ID", "THINKING", "TEMPERATURE"],
            &entries,
            None,
        )
        .map_err(|e| e.to_string())
    })?;
    let table = readme_table(&models_conf::read(client)?, &models_conf::read(conf)?);
    let existing = match std::fs::read_to_string(readme) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            "# Benchmarks\n\nHumanEval+ (EvalPlus) pass@1, greedy, run against each model's bench profile.\n".to_string()
        }
        Err(source) => {
            return Err(RegisterError::Io {
                path: readme.to_path_buf(),
                source,
            })
        }
    };
    let updated = markdown::replace_block(&existing, "bench-models", &table)
        .map_err(|e| RegisterError::Readme(format!("{}: {e}", readme.display())))?;
    changed |= crate::atomic::write_if_changed(readme, updated.as_bytes()).map_err(|source| {
        RegisterError::Io {
            path: readme.to_path_buf(),
            source,
        }
    })?;
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_flags_drop_samplers_and_set_the_reasoning_format() {
        assert_eq!(
            bench_flags(
                "--jinja -np 1 --no-context-shift --temp 0.6 --reasoning-format deepseek",
                true
            )
            .unwrap(),
            "--jinja -np 1 --no-context-shift --reasoning-format none"
        );
        assert_eq!(
            bench_flags("--jinja -np 1", false).unwrap(),
            "--jinja -np 1"
        );
    }
}
