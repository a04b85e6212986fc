//! `uses: context-test` — phase 5: load the model at the profile's full
//! context, confirm it fits, measure prompt and generation speed and memory,
//! and write the measured speed back into the profile, labelled with the
//! engine that measured it.

use super::model_engine::{self, engine_failure, Chosen, Limits, ProfileModel, Running};
use super::{Task, TaskContext, TaskError};
use crate::engine::embedded;
use crate::engine::{ChatResponse, Engine};
use crate::workflow::{duration, state};
use crate::workspace::models_conf;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

pub use super::model_engine::EngineChoice;

pub struct ContextTest;

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ContextTestParams {
    /// The production profile in models.conf.
    pub profile: String,
    #[serde(default)]
    pub engine: EngineChoice,
    /// Tokens of context to test (default: the profile's CTX_SIZE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 256))]
    pub context: Option<u64>,
    /// Tokens to generate after the prompt.
    #[serde(default = "default_generate")]
    #[schemars(range(min = 1))]
    pub generate: u32,
    /// Embedded engine: run on the CPU (default: yes unless built with CUDA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<bool>,
    /// Embedded engine: worker threads (default: all cores).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<usize>,
    /// Give up loading after this long.
    #[serde(default = "default_load_timeout")]
    pub load_timeout: String,
    /// Give up on the measurement after this long.
    #[serde(default = "default_request_timeout")]
    pub request_timeout: String,
}

fn default_generate() -> u32 {
    64
}
fn default_load_timeout() -> String {
    "10m".into()
}
fn default_request_timeout() -> String {
    "30m".into()
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ContextTestOutputs {
    /// `mistralrs` or `llama-server`.
    pub engine: String,
    pub device: String,
    /// The profile's context.
    pub context_profile: u64,
    /// The context actually tested.
    pub context_tested: u64,
    /// Why the tested context is smaller than the profile's, if it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_note: Option<String>,
    pub prompt_tokens: u64,
    pub generated_tokens: u64,
    pub prompt_tps: f64,
    pub generation_tps: f64,
    pub load_ms: u64,
    pub peak_rss_mib: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graph_splits: Option<u64>,
    /// The key written into the profile (`SPEED` or `SPEED_EMBEDDED`) and its value.
    pub speed_key: String,
    pub speed: String,
    /// The model's answer to a question with a known answer (a sanity check).
    pub probe_answer: String,
}

/// Room for the chat template's own tokens around the filled prompt.
const TEMPLATE_MARGIN: u64 = 64;

impl Task for ContextTest {
    const KIND: &'static str = "context-test";
    const VERSION: u32 = 1;
    const SUMMARY: &'static str =
        "Load the model at full context, measure speed and memory, write SPEED";
    type Params = ContextTestParams;
    type Outputs = ContextTestOutputs;

    fn input_files(
        &self,
        params: &ContextTestParams,
        ctx: &TaskContext,
    ) -> Result<Vec<PathBuf>, TaskError> {
        // The weights: a different file means a different measurement.
        Ok(vec![model_engine::profile_gguf(&params.profile, ctx)?])
    }

    /// The profile's settings: a hand edit (CTX_SIZE, FIT_TARGET, …) means
    /// a different measurement. Not the keys this step writes itself.
    fn input_values(
        &self,
        params: &ContextTestParams,
        ctx: &TaskContext,
    ) -> Result<Vec<super::InputValue>, TaskError> {
        Ok(vec![super::profile_input(
            ctx,
            &params.profile,
            &["SPEED", "SPEED_EMBEDDED"],
        )?])
    }

    async fn run(
        &self,
        params: ContextTestParams,
        ctx: TaskContext,
    ) -> Result<ContextTestOutputs, TaskError> {
        let load_timeout = duration::parse(&params.load_timeout).map_err(TaskError::Params)?;
        let request_timeout =
            duration::parse(&params.request_timeout).map_err(TaskError::Params)?;
        let model = ProfileModel::load(&params.profile, &ctx)?;
        let profile_ctx = model.context().unwrap_or(4096);
        let wanted = params.context.unwrap_or(profile_ctx);
        let cpu = params.cpu.unwrap_or(!cfg!(feature = "cuda"));
        let chosen = model_engine::choose(params.engine, &model, cpu, &ctx)?;
        if chosen == Chosen::Embedded && cpu {
            fits_in_ram(&model.gguf, mem_available_bytes())?;
        }
        ctx.log(&format!(
            "{} · {} · context {wanted} (profile {profile_ctx}) · {} tokens to generate",
            model.gguf.display(),
            model.architecture,
            params.generate
        ));
        let generate = params.generate;
        let threads = params.threads;
        let limits = Limits {
            load: load_timeout,
            request: request_timeout,
        };
        let log_ctx = ctx.clone();
        let measured = tokio::task::spawn_blocking(move || {
            let context = matches!(chosen, Chosen::LlamaServer(_)).then_some(wanted);
            let started = std::time::Instant::now();
            let engine = Running::start(&chosen, &model, cpu, threads, context, limits)?;
            let load_ms = started.elapsed().as_millis() as u64;
            measure(&engine, load_ms, cpu, wanted, generate, &log_ctx)
        })
        .await
        .map_err(|e| TaskError::failed(format!("the measurement thread failed: {e}")))??;

        let mut outputs = measured;
        outputs.context_profile = profile_ctx;
        if outputs.context_tested < profile_ctx && outputs.context_note.is_none() {
            outputs.context_note = Some(format!(
                "tested at {} tokens, not the profile's {profile_ctx}",
                outputs.context_tested
            ));
        }
        write_speed(&ctx, &params.profile, &mut outputs)?;
        if let Some(note) = &outputs.context_note {
            ctx.log(note);
        }
        ctx.log(&format!("{}={}", outputs.speed_key, outputs.speed));
        Ok(outputs)
    }
}

/// Available RAM now, from /proc/meminfo.
fn mem_available_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
}

/// Refuses, before loading, a model whose weights alone exceed the RAM that
/// is free: the load would only end in the kernel's out-of-memory killer.
fn fits_in_ram(gguf: &std::path::Path, available: Option<u64>) -> Result<(), TaskError> {
    let (Ok(meta), Some(available)) = (std::fs::metadata(gguf), available) else {
        return Ok(());
    };
    let gib = |b: u64| b as f64 / f64::from(1u32 << 30);
    if meta.len() > available {
        return Err(TaskError::Failed {
            message: format!(
                "{} cannot fit: its weights are {:.1} GiB and only {:.1} GiB of RAM is free, so the \
                 embedded engine (CPU) would be killed loading it. Free memory, choose a smaller quant \
                 in the manifest, or test it where it fits (a CUDA build, or `engine: llama-server` \
                 with GPU offload)",
                gguf.display(),
                gib(meta.len()),
                gib(available)
            ),
            retryable: false,
        });
    }
    Ok(())
}

/// The probe question, then a prompt that fills the tested context.
fn measure(
    engine: &Running,
    load_ms: u64,
    cpu: bool,
    wanted: u64,
    generate: u32,
    ctx: &TaskContext,
) -> Result<ContextTestOutputs, TaskError> {
    let (tested, note) = match engine {
        Running::Embedded(embedded) => embedded_context(embedded.max_sequence_length, cpu, wanted),
        Running::LlamaServer(_) => (wanted, None),
    };
    let probe = engine
        .chat(&embedded::capital_of_france())
        .map_err(engine_failure)?;
    ctx.log(&format!("probe: {}", probe.text.trim()));
    let prompt = tested
        .saturating_sub(u64::from(generate) + TEMPLATE_MARGIN)
        .max(16);
    let reply: ChatResponse = engine.fill(prompt, generate).map_err(engine_failure)?;
    let (device, load_ms, graph_splits) = match engine {
        Running::Embedded(e) => (if cpu { "cpu" } else { "gpu" }, e.load_ms, None),
        Running::LlamaServer(server) => {
            let log = server.log();
            if let Some(oom) = log.out_of_memory {
                return Err(TaskError::Failed {
                    message: format!("llama-server ran out of memory at {wanted} tokens: {oom}"),
                    retryable: false,
                });
            }
            ("llama-server", load_ms, log.graph_splits)
        }
    };
    Ok(ContextTestOutputs {
        engine: engine.name().to_string(),
        device: device.into(),
        context_profile: wanted,
        context_tested: tested,
        context_note: note,
        prompt_tokens: reply.prompt_tokens,
        generated_tokens: reply.completion_tokens,
        prompt_tps: reply.prompt_tps.unwrap_or(0.0),
        generation_tps: reply.generation_tps.unwrap_or(0.0),
        load_ms,
        peak_rss_mib: engine.peak_rss_bytes().map(|b| b / (1024 * 1024)),
        graph_splits,
        speed_key: String::new(),
        speed: String::new(),
        probe_answer: probe.text,
    })
}

/// The context the embedded engine can test: mistral.rs fixes it to the
/// GGUF's trained context, and a CPU prefill materialises T×T attention
/// scores, so their estimate stays under half the free RAM — said, not hidden.
fn embedded_context(max: Option<u64>, cpu: bool, wanted: u64) -> (u64, Option<String>) {
    let max = max.unwrap_or(wanted);
    let mut tested = wanted.min(max);
    let mut note = (tested < wanted).then(|| {
        format!("mistral.rs fixes the context to the GGUF's trained context ({max} tokens); tested at {tested}")
    });
    if cpu {
        if let Some(free) = mem_available_bytes() {
            let before = tested;
            while tested > 1024 && tested.saturating_mul(tested).saturating_mul(4 * 48) > free / 2 {
                tested /= 2;
            }
            if tested < before {
                note = Some(format!(
                    "a {before}-token CPU prefill would need more RAM than is free ({} MiB); tested at {tested}",
                    free / (1024 * 1024)
                ));
            }
        }
    }
    (tested, note)
}

/// `SPEED` always names its engine. llama-server's figure is the production
/// speed; the embedded engine's goes to `SPEED_EMBEDDED`, and fills `SPEED`
/// only while no llama-server figure is there, labelled as such.
fn write_speed(
    ctx: &TaskContext,
    profile: &str,
    out: &mut ContextTestOutputs,
) -> Result<(), TaskError> {
    let date = &state::now_rfc3339()[..10];
    let figures = format!(
        "gen {:.1} t/s, prompt {:.1} t/s at {} ctx",
        out.generation_tps, out.prompt_tps, out.context_tested
    );
    let conf_path = ctx.path(&ctx.paths().models_conf)?;
    let embedded = out.engine != "llama-server";
    let value = if embedded {
        format!(
            "{figures} ({} embedded, {}; not llama-server; {date})",
            embedded::VERSION,
            out.device
        )
    } else {
        format!("{figures} (llama-server, {date})")
    };
    let key = if embedded { "SPEED_EMBEDDED" } else { "SPEED" };
    let id = profile.to_string();
    let v = value.clone();
    models_conf::update(&conf_path, move |conf| {
        let current = conf
            .profile(&id)
            .ok_or_else(|| format!("has no profile `[{id}]`"))?;
        let set = |conf: &mut models_conf::ModelsConf, key: &str| {
            conf.set(&id, key, &v).map_err(|e| e.to_string())
        };
        if embedded {
            set(conf, "SPEED_EMBEDDED")?;
            let speed_from_server = current
                .get("SPEED")
                .is_some_and(|s| s.contains("(llama-server"));
            if !speed_from_server {
                set(conf, "SPEED")?;
            }
        } else {
            set(conf, "SPEED")?;
        }
        Ok(())
    })
    .map_err(|e| TaskError::failed(e.to_string()))?;
    out.speed_key = key.to_string();
    out.speed = value;
    Ok(())
}
