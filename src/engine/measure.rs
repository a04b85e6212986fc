//! The context measurement: a model loaded at a context, checked against the
//! memory model and the free RAM first, asked a question with a known
//! answer, then a prompt that fills the context, timed — and the `SPEED=`
//! line that reports it, labelled with the engine that measured it.

use super::choice::{ChoiceError, Chosen, ProfileModel};
use super::running::{Limits, Running};
use super::{capital_of_france, mistralrs, proc_stats, Engine, EngineError, FillRequest};
use crate::gguf::memory::{self, Buffers, RunConfig};
use crate::gguf::memory_check::{self, DoesNotFit, MemoryCheck};
use crate::workspace::models_conf::ModelsConf;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Room for the chat template's own tokens around the filled prompt.
const TEMPLATE_MARGIN: u64 = 64;

/// Why a measurement stopped.
#[derive(Debug, thiserror::Error)]
pub enum MeasureError {
    #[error(transparent)]
    Choice(#[from] ChoiceError),
    #[error(transparent)]
    DoesNotFit(#[from] DoesNotFit),
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The engine's log reported a failed allocation.
    #[error("llama-server ran out of memory at {context} tokens: {line}")]
    OutOfMemory { context: u64, line: String },
}

impl MeasureError {
    /// A setting to fix, not a failure of the machine.
    pub fn is_setting(&self) -> bool {
        matches!(self, MeasureError::Choice(e) if e.is_setting())
    }

    pub fn retryable(&self) -> bool {
        match self {
            MeasureError::Choice(e) => e.retryable(),
            MeasureError::Engine(e) => e.retryable(),
            MeasureError::DoesNotFit(_) | MeasureError::OutOfMemory { .. } => false,
        }
    }
}

/// What to measure.
#[derive(Debug, Clone)]
pub struct MeasurePlan {
    /// Tokens of context to test.
    pub context: u64,
    /// Tokens to generate after the prompt.
    pub generate: u32,
    pub cpu: bool,
    pub threads: Option<usize>,
    pub limits: Limits,
    /// The day of the measurement (`YYYY-MM-DD`), for `SPEED=`.
    pub date: String,
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

/// Loads `model` in `chosen` at the plan's context and measures it, with
/// the `SPEED=` line the measurement makes. Refused before loading when the
/// embedded engine on the CPU would not fit in the free RAM.
pub fn measure_context(
    chosen: &Chosen,
    model: &ProfileModel,
    plan: &MeasurePlan,
    log: &dyn Fn(&str),
) -> Result<(ContextTestOutputs, SpeedLine), MeasureError> {
    let context_profile = model.context().unwrap_or(4096);
    let wanted = plan.context;
    let predicted = predict(model, chosen, wanted, plan.cpu);
    if chosen.is_embedded() && plan.cpu {
        let available = proc_stats::mem_available_bytes();
        memory_check::weights_fit_in_ram(&model.gguf, available)?;
        if let Some(p) = &predicted {
            memory_check::context_fits_in_ram(&model.gguf, wanted, p, available)?;
        }
    }
    log(&format!(
        "{} · {} · context {wanted} (profile {}) · {} tokens to generate",
        model.gguf.display(),
        model.architecture,
        context_profile,
        plan.generate,
    ));
    let context = chosen.takes_context().then_some(wanted);
    let started = std::time::Instant::now();
    let engine = Running::start(chosen, model, plan.cpu, plan.threads, context, plan.limits)?;
    let load_ms = started.elapsed().as_millis() as u64;
    let mut measured = measure(&engine, load_ms, plan, context_profile, predicted, log)?;
    if let Some(m) = measured.mtp.as_mut().filter(|m| m.draft_tokens == 0) {
        // llama-server's tally comes without the draft length: the profile's.
        m.draft_tokens = model.mtp_draft().unwrap_or(0);
    }
    if measured.context_tested < context_profile && measured.context_note.is_none() {
        measured.context_note = Some(format!(
            "tested at {} tokens, not the profile's {context_profile}",
            measured.context_tested
        ));
    }
    let speed = SpeedLine::new(&measured, &plan.date);
    measured.speed_key = speed.key.to_string();
    measured.speed = speed.value.clone();
    Ok((measured, speed))
}

/// What the memory model predicts the embedded llama.cpp allocates at
/// `context` (on one backend), where it reports what it allocated.
fn predict(model: &ProfileModel, chosen: &Chosen, context: u64, cpu: bool) -> Option<Buffers> {
    if !chosen.takes_context() {
        return None;
    }
    // This build's llama.cpp repacks for AVX2 when it was compiled with it
    // (the native build, `.cargo/config.toml`), and only on the CPU.
    let cpu_repack = cpu && cfg!(target_feature = "avx2");
    memory::single_backend(
        model.facts.as_ref()?,
        &RunConfig::embedded_llama_cpp(context).with_mtp_draft(chosen.mtp_draft(model)),
        cpu_repack,
    )
}

/// The probe question, then a prompt that fills the tested context.
fn measure(
    engine: &dyn Engine,
    load_ms: u64,
    plan: &MeasurePlan,
    context_profile: u64,
    predicted: Option<Buffers>,
    log: &dyn Fn(&str),
) -> Result<ContextTestOutputs, MeasureError> {
    let (wanted, generate) = (plan.context, plan.generate);
    let (tested, note) = engine.fill_context(wanted);
    let facts = engine.facts();
    let memory = predicted.and_then(|predicted| {
        let allocated = engine.memory().allocated?;
        Some(MemoryCheck::new(&predicted, &allocated))
    });
    if let Some(check) = &memory {
        log(&check.table());
        for flag in &check.flagged {
            log(&format!(
                "warning: the memory model is off beyond {} ({flag}): a bug in onboard's memory model",
                check.margin
            ));
        }
    }
    let probe = engine.chat(&capital_of_france())?;
    log(&format!("probe: {}", probe.text.trim()));
    let prompt = tested
        .saturating_sub(u64::from(generate) + TEMPLATE_MARGIN)
        .max(16);
    let fill = FillRequest::new(prompt, generate);
    let (reply, mtp) = match facts.mtp_draft {
        Some(draft_tokens) => {
            let with = engine.fill(&FillRequest {
                speculative: Some(true),
                ..fill
            })?;
            let without = engine.fill(&FillRequest {
                speculative: Some(false),
                ..fill
            })?;
            let mtp = with.draft.map(|d| MtpMeasure {
                draft_tokens,
                drafted: d.drafted,
                accepted: d.accepted,
                acceptance: d.acceptance().unwrap_or(0.0),
                generation_tps_without: without.generation_tps,
                same_text: Some(with.text == without.text),
            });
            (with, mtp)
        }
        None => {
            let reply = engine.fill(&fill)?;
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
        log(&format!(
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
    let perf = engine.perf();
    if let Some(line) = perf.out_of_memory {
        return Err(MeasureError::OutOfMemory {
            context: wanted,
            line,
        });
    }
    let device = facts
        .device
        .unwrap_or_else(|| if plan.cpu { "cpu" } else { "gpu" }.to_string());
    Ok(ContextTestOutputs {
        engine: engine.name().to_string(),
        engine_label: facts.label,
        device,
        context_profile,
        // Made from this report by the caller.
        speed_key: String::new(),
        speed: String::new(),
        context_tested: tested,
        context_note: note,
        prompt_tokens: reply.prompt_tokens,
        generated_tokens: reply.completion_tokens,
        prompt_tps: reply.prompt_tps.unwrap_or(0.0),
        generation_tps: reply.generation_tps.unwrap_or(0.0),
        load_ms: perf.load_ms.unwrap_or(load_ms),
        peak_rss_mib: engine.memory().peak_rss_bytes.map(|b| b / (1024 * 1024)),
        graph_splits: perf.graph_splits,
        probe_answer: probe.text,
        memory,
        mtp,
    })
}

/// The `SPEED=` figures of a measurement: which key they go to and the
/// value. `SPEED` always names its engine: llama-server's figure is the
/// production speed; an embedded engine's goes to `SPEED_EMBEDDED` (and
/// fills `SPEED` only while no llama-server figure is there, labelled).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpeedLine {
    /// `SPEED` or `SPEED_EMBEDDED`.
    pub key: &'static str,
    pub value: String,
    /// Whether an embedded engine measured it.
    embedded: bool,
}

impl SpeedLine {
    /// `date`: the day of the measurement (`YYYY-MM-DD`).
    pub fn new(m: &ContextTestOutputs, date: &str) -> SpeedLine {
        let generation = match &m.mtp {
            Some(mtp) => format!(
                "gen {:.1} t/s with MTP (draft {}, acceptance {:.0} %{})",
                m.generation_tps,
                mtp.draft_tokens,
                mtp.acceptance * 100.0,
                mtp.generation_tps_without
                    .map(|t| format!("; {t:.1} t/s without"))
                    .unwrap_or_default()
            ),
            None => format!("gen {:.1} t/s", m.generation_tps),
        };
        let figures = format!(
            "{generation}, prompt {:.1} t/s at {} ctx",
            m.prompt_tps, m.context_tested
        );
        let embedded = m.engine != super::llama_server::NAME;
        let value = if embedded {
            let label = m
                .engine_label
                .clone()
                .unwrap_or_else(|| format!("{} embedded, {}", mistralrs::VERSION, m.device));
            format!("{figures} ({label}; not llama-server; {date})")
        } else {
            format!("{figures} (llama-server, {date})")
        };
        SpeedLine {
            key: if embedded { "SPEED_EMBEDDED" } else { "SPEED" },
            value,
            embedded,
        }
    }

    /// Sets the line in profile `id`: an embedded figure goes to
    /// `SPEED_EMBEDDED`, and to `SPEED` only while no llama-server figure is
    /// there.
    pub fn write_into(&self, conf: &mut ModelsConf, id: &str) -> Result<(), String> {
        let current = conf
            .profile(id)
            .ok_or_else(|| format!("has no profile `[{id}]`"))?;
        let speed_from_server = current
            .get("SPEED")
            .is_some_and(|s| s.contains("(llama-server"));
        if self.embedded {
            conf.set(id, "SPEED_EMBEDDED", &self.value)
                .map_err(|e| e.to_string())?;
        }
        if !self.embedded || !speed_from_server {
            conf.set(id, "SPEED", &self.value)
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

/// What the context test reports: the measurement, the profile's context
/// beside the one tested, and the `SPEED=` line it wrote.
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
