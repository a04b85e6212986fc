//! `uses: context-test` — phase 5: load the model at the profile's full
//! context, confirm it fits, measure prompt and generation speed and memory,
//! and write the measured speed back into the profile, labelled with the
//! engine that measured it.

use super::model_engine::{self, engine_failure, Chosen, Limits, ProfileModel, Running};
use super::{Task, TaskContext, TaskError};
use crate::engine::embedded;
use crate::engine::embedded::WorkerEngine;
use crate::engine::{ChatResponse, Engine};
use crate::gguf::memory::{self, Buffers, RunConfig};
use crate::tasks::WorkspaceContext;
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
    /// `mistralrs`, `llama-cpp` or `llama-server`.
    pub engine: String,
    /// How `SPEED=` names the engine (`llama.cpp (embedded, CPU)`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine_label: Option<String>,
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
    /// What `evaluate`'s memory model predicted for this context beside what
    /// the engine allocated (the in-process llama.cpp reports each buffer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemoryCheck>,
    /// MTP speculative decoding, where the profile turns it on: the draft
    /// acceptance, and the same prompt decoded without the drafter. The
    /// step's `generation_tps` is the figure with it (the profile's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtp: Option<MtpMeasure>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct MtpMeasure {
    /// Tokens drafted a round (`--spec-draft-n-max`).
    pub draft_tokens: u32,
    pub drafted: u64,
    pub accepted: u64,
    /// Accepted over drafted.
    pub acceptance: f64,
    /// Generation speed of the same prompt without the drafter (the
    /// embedded engine; llama-server runs one configuration per start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation_tps_without: Option<f64>,
    /// Whether both runs generated the same text, as greedy decoding with a
    /// drafter should up to a near-tie that batched verification can flip.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub same_text: Option<bool>,
}

/// Predicted vs allocated memory, buffer by buffer.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct MemoryCheck {
    pub rows: Vec<MemoryRow>,
    /// The difference a row may show before it is flagged.
    pub margin: String,
    /// Rows beyond the margin: each is a bug in the memory model.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flagged: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct MemoryRow {
    /// `weights`, `kv_cache`, `recurrent`, `compute`, `output` or `total`.
    pub buffer: String,
    pub predicted_mib: f64,
    pub allocated_mib: f64,
}

/// A buffer may differ from its prediction by this fraction…
pub const MEMORY_MARGIN_FRACTION: f64 = 0.10;
/// …or by this many MiB, whichever is larger (tiny buffers round coarsely).
pub const MEMORY_MARGIN_FLOOR_MIB: f64 = 1.0;

impl MemoryCheck {
    /// Compares a prediction with what the engine reported.
    pub fn new(predicted: &Buffers, allocated: &Buffers) -> MemoryCheck {
        let mib = |b: u64| (b as f64 / (1024.0 * 1024.0) * 100.0).round() / 100.0;
        let (p, a) = (predicted, allocated);
        let rows: Vec<MemoryRow> = [
            ("weights", p.weights, a.weights),
            ("kv_cache", p.kv_cache, a.kv_cache),
            ("recurrent", p.recurrent, a.recurrent),
            ("compute", p.compute, a.compute),
            ("output", p.output, a.output),
            ("total", p.total(), a.total()),
        ]
        .into_iter()
        .map(|(name, p, a)| MemoryRow {
            buffer: name.into(),
            predicted_mib: mib(p),
            allocated_mib: mib(a),
        })
        .collect();
        let flagged = rows
            .iter()
            .filter(|r| !within_margin(r.predicted_mib, r.allocated_mib))
            .map(|r| {
                format!(
                    "{}: predicted {:.2} MiB, llama.cpp allocated {:.2} MiB",
                    r.buffer, r.predicted_mib, r.allocated_mib
                )
            })
            .collect();
        MemoryCheck {
            rows,
            margin: format!(
                "±{:.0} % or ±{MEMORY_MARGIN_FLOOR_MIB} MiB, whichever is larger",
                MEMORY_MARGIN_FRACTION * 100.0
            ),
            flagged,
        }
    }

    /// One line per buffer for the step log.
    pub fn table(&self) -> String {
        let mut out = String::from("memory (MiB)   predicted   allocated");
        for r in &self.rows {
            out.push_str(&format!(
                "\n  {:<12} {:>10.2} {:>11.2}",
                r.buffer, r.predicted_mib, r.allocated_mib
            ));
        }
        out
    }
}

/// Whether `predicted` is within the stated margin of `allocated` (MiB).
pub fn within_margin(predicted: f64, allocated: f64) -> bool {
    let allowed = (allocated * MEMORY_MARGIN_FRACTION).max(MEMORY_MARGIN_FLOOR_MIB);
    (predicted - allocated).abs() <= allowed
}

/// Room for the chat template's own tokens around the filled prompt.
const TEMPLATE_MARGIN: u64 = 64;

impl Task for ContextTest {
    const KIND: &'static str = "context-test";
    const VERSION: u32 = 2;
    const LOADS_MODEL: bool = true;
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
        let generate = params.generate;
        let threads = params.threads;
        let engine_choice = params.engine;
        let limits = Limits {
            load: load_timeout,
            request: request_timeout,
        };
        let log_ctx = ctx.clone();
        // Choosing may start a worker (llama.cpp's preflight): blocking work.
        let measured = tokio::task::spawn_blocking(move || {
            let ctx = log_ctx;
            let chosen = model_engine::choose(engine_choice, &model, cpu, &ctx)?;
            let mtp_draft = match chosen {
                Chosen::Embedded(WorkerEngine::LlamaCpp) => model.mtp_draft().unwrap_or(0),
                _ => 0,
            };
            let predicted = predict(&model, &chosen, wanted, cpu, mtp_draft);
            let profile_mtp = model.mtp_draft().unwrap_or(0);
            if chosen.is_embedded() && cpu {
                let available = mem_available_bytes();
                fits_in_ram(&model.gguf, available)?;
                if let Some(p) = &predicted {
                    context_fits_in_ram(&model.gguf, wanted, p, available)?;
                }
            }
            ctx.log(&format!(
                "{} · {} · context {wanted} (profile {profile_ctx}) · {generate} tokens to generate",
                model.gguf.display(),
                model.architecture,
            ));
            // mistral.rs fixes the context to the GGUF's; the others take ours.
            let context = (chosen != Chosen::Embedded(WorkerEngine::MistralRs)).then_some(wanted);
            let started = std::time::Instant::now();
            let engine = Running::start(&chosen, &model, cpu, threads, context, limits)?;
            let load_ms = started.elapsed().as_millis() as u64;
            let mut measured = measure(&engine, load_ms, cpu, wanted, generate, predicted, &ctx)?;
            if let Some(m) = measured.mtp.as_mut().filter(|m| m.draft_tokens == 0) {
                m.draft_tokens = profile_mtp;
            }
            Ok::<_, TaskError>(measured)
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

/// What `evaluate`'s memory model predicts the embedded llama.cpp allocates
/// at `context` (on one backend). mistral.rs reports no buffers and
/// allocates otherwise.
fn predict(
    model: &ProfileModel,
    chosen: &Chosen,
    context: u64,
    cpu: bool,
    mtp_draft: u32,
) -> Option<Buffers> {
    if *chosen == Chosen::Embedded(WorkerEngine::MistralRs) {
        return None;
    }
    // This build's llama.cpp repacks for AVX2 when it was compiled with it
    // (the native build, `.cargo/config.toml`), and only on the CPU.
    let cpu_repack = cpu && cfg!(target_feature = "avx2");
    memory::single_backend(
        model.facts.as_ref()?,
        &RunConfig::embedded_llama_cpp(context).with_mtp_draft(mtp_draft),
        cpu_repack,
    )
}

/// Refuses, before loading, a context whose predicted buffers (weights, KV
/// cache, recurrent state, compute) exceed the free RAM: llama.cpp would
/// fail to allocate, or the kernel would kill the worker part-way.
fn context_fits_in_ram(
    gguf: &std::path::Path,
    context: u64,
    predicted: &Buffers,
    available: Option<u64>,
) -> Result<(), TaskError> {
    let Some(available) = available else {
        return Ok(());
    };
    let total = predicted.total();
    if total <= available {
        return Ok(());
    }
    let mib = |b: u64| b / (1024 * 1024);
    Err(TaskError::Failed {
        message: format!(
            "{} at {context} tokens of context needs about {} MiB (weights {}, KV cache {}, recurrent state {}, \
             compute {}) and only {} MiB of RAM is free. Lower CTX_SIZE in the profile (or `context:` of the step), \
             free memory, or test it where it fits",
            gguf.display(),
            mib(total),
            mib(predicted.weights),
            mib(predicted.kv_cache),
            mib(predicted.recurrent),
            mib(predicted.compute),
            mib(available)
        ),
        retryable: false,
    })
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
    predicted: Option<Buffers>,
    ctx: &TaskContext,
) -> Result<ContextTestOutputs, TaskError> {
    let (tested, note) = match engine {
        Running::Embedded(e) if e.name() == embedded::NAME => {
            embedded_context(e.max_sequence_length, cpu, wanted)
        }
        Running::Embedded(e) => (e.context.unwrap_or(wanted), None),
        Running::LlamaServer(_) => (wanted, None),
    };
    let memory = match (engine, predicted) {
        (Running::Embedded(e), Some(predicted)) => e
            .allocated
            .as_ref()
            .map(|allocated| MemoryCheck::new(&predicted, allocated)),
        _ => None,
    };
    if let Some(check) = &memory {
        ctx.log(&check.table());
        for flag in &check.flagged {
            ctx.log(&format!(
                "warning: the memory model is off beyond {} ({flag}): a bug in onboard's memory model",
                check.margin
            ));
        }
    }
    let probe = engine
        .chat(&embedded::capital_of_france())
        .map_err(engine_failure)?;
    ctx.log(&format!("probe: {}", probe.text.trim()));
    let prompt = tested
        .saturating_sub(u64::from(generate) + TEMPLATE_MARGIN)
        .max(16);
    let (reply, mtp) = match engine {
        Running::Embedded(e) if e.mtp_draft.is_some() => {
            let with = e
                .fill_speculative(prompt, generate, true)
                .map_err(engine_failure)?;
            let without = e
                .fill_speculative(prompt, generate, false)
                .map_err(engine_failure)?;
            let mtp = with.draft.map(|d| MtpMeasure {
                draft_tokens: e.mtp_draft.unwrap_or(0),
                drafted: d.drafted,
                accepted: d.accepted,
                acceptance: d.acceptance().unwrap_or(0.0),
                generation_tps_without: without.generation_tps,
                same_text: Some(with.text == without.text),
            });
            (with, mtp)
        }
        _ => {
            let reply: ChatResponse = engine.fill(prompt, generate).map_err(engine_failure)?;
            // llama-server reports its drafter's tally in `timings`; the
            // draft length is the profile's (set by the caller).
            let mtp = reply.draft.map(|d| MtpMeasure {
                draft_tokens: 0,
                drafted: d.drafted,
                accepted: d.accepted,
                acceptance: d.acceptance().unwrap_or(0.0),
                generation_tps_without: None,
                same_text: None,
            });
            (reply, mtp)
        }
    };
    if let Some(m) = &mtp {
        ctx.log(&format!(
            "MTP: {} of {} drafted tokens accepted ({:.0} %){}",
            m.accepted,
            m.drafted,
            m.acceptance * 100.0,
            m.generation_tps_without
                .map(|t| format!(
                    "; generation {:.1} t/s with it, {t:.1} t/s without",
                    reply.generation_tps.unwrap_or(0.0)
                ))
                .unwrap_or_default()
        ));
    }
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
    let engine_label = match engine {
        Running::Embedded(e) => e.label.clone(),
        Running::LlamaServer(_) => None,
    };
    Ok(ContextTestOutputs {
        engine: engine.name().to_string(),
        engine_label,
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
        memory,
        mtp,
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
    let generation = match &out.mtp {
        Some(m) => format!(
            "gen {:.1} t/s with MTP (draft {}, acceptance {:.0} %{})",
            out.generation_tps,
            m.draft_tokens,
            m.acceptance * 100.0,
            m.generation_tps_without
                .map(|t| format!("; {t:.1} t/s without"))
                .unwrap_or_default()
        ),
        None => format!("gen {:.1} t/s", out.generation_tps),
    };
    let figures = format!(
        "{generation}, prompt {:.1} t/s at {} ctx",
        out.prompt_tps, out.context_tested
    );
    let conf_path = ctx.path(&ctx.paths().models_conf)?;
    let embedded = out.engine != "llama-server";
    let value = if embedded {
        let label = out
            .engine_label
            .clone()
            .unwrap_or_else(|| format!("{} embedded, {}", embedded::VERSION, out.device));
        format!("{figures} ({label}; not llama-server; {date})")
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
