//! `uses: context-test` — phase 5: load the model at the profile's full
//! context, confirm it fits, measure prompt and generation speed and memory,
//! and write the measured speed back into the profile, labelled with the
//! engine that measured it.

use super::{Task, TaskContext, TaskError};
use crate::engine::embedded::{self, EmbeddedEngine, WorkerOptions};
use crate::engine::launch::{self, Listen};
use crate::engine::llama_server::LlamaServer;
use crate::engine::{ChatResponse, Engine, EngineError};
use crate::workflow::{duration, state};
use crate::workspace::models_conf::{self, Profile};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub struct ContextTest;

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum EngineChoice {
    /// The embedded engine when it can load the model, else llama-server
    /// when one is configured.
    #[default]
    Auto,
    Embedded,
    LlamaServer,
}

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
        let (profile, models_dir) = read_profile(&params.profile, ctx)?;
        Ok(vec![gguf_path(&profile, &models_dir)?])
    }

    async fn run(
        &self,
        params: ContextTestParams,
        ctx: TaskContext,
    ) -> Result<ContextTestOutputs, TaskError> {
        let load_timeout = duration::parse(&params.load_timeout).map_err(TaskError::Params)?;
        let request_timeout =
            duration::parse(&params.request_timeout).map_err(TaskError::Params)?;
        let (profile, models_dir) = read_profile(&params.profile, &ctx)?;
        let gguf = gguf_path(&profile, &models_dir)?;
        let header = crate::gguf::read_file(&gguf).map_err(|e| TaskError::Failed {
            message: e.to_string(),
            retryable: false,
        })?;
        // Read straight from the header: the engine check must work for any
        // architecture, including ones whose layout onboard does not model.
        let architecture = header.architecture().unwrap_or("unknown").to_string();
        let trained_ctx = header.get_u64(&format!("{architecture}.context_length"));
        let mut types: Vec<String> = header.tensors.iter().map(|t| t.ty.name()).collect();
        types.sort();
        types.dedup();
        let profile_ctx = profile
            .get("CTX_SIZE")
            .and_then(|c| c.parse::<u64>().ok())
            .or(trained_ctx)
            .unwrap_or(4096);
        let wanted = params.context.unwrap_or(profile_ctx);
        let cpu = params.cpu.unwrap_or(!cfg!(feature = "cuda"));
        let preflight =
            embedded_available().and_then(|()| embedded::preflight(&architecture, &types, cpu));
        let server_binary = llama_server_binary(&ctx);
        let engine = match (params.engine, &preflight, &server_binary) {
            (EngineChoice::Embedded, Err(e), _) => return Err(TaskError::Failed { message: e.clone(), retryable: false }),
            (EngineChoice::Embedded, Ok(()), _) | (EngineChoice::Auto, Ok(()), _) => EngineChoice::Embedded,
            (EngineChoice::LlamaServer, _, None) => {
                return Err(TaskError::Failed {
                    message: "no llama-server: install llama.cpp and put llama-server on PATH, or set `engines.llama_server` in onboard.yaml (scripts/llama-server-xllamacpp is one from PyPI)".into(),
                    retryable: false,
                })
            }
            (_, _, Some(_)) => EngineChoice::LlamaServer,
            (EngineChoice::Auto, Err(e), None) => {
                return Err(TaskError::Failed {
                    message: format!("{e}\nand no llama-server is configured, so this model cannot be tested here"),
                    retryable: false,
                })
            }
        };
        ctx.log(&format!(
            "{} · {} · context {wanted} (profile {profile_ctx}) · {} tokens to generate",
            gguf.display(),
            architecture,
            params.generate
        ));
        let generate = params.generate;
        let threads = params.threads;
        let log_ctx = ctx.clone();
        let measured = tokio::task::spawn_blocking(move || match engine {
            EngineChoice::LlamaServer => {
                let binary = server_binary.unwrap_or_else(|| "llama-server".into());
                measure_server(
                    &profile,
                    &binary,
                    &models_dir,
                    wanted,
                    generate,
                    load_timeout,
                    request_timeout,
                )
            }
            _ => measure_embedded(
                &gguf,
                cpu,
                threads,
                wanted,
                generate,
                load_timeout,
                request_timeout,
                &log_ctx,
            ),
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

fn embedded_available() -> Result<(), String> {
    if cfg!(feature = "embedded") {
        Ok(())
    } else {
        Err(
            "this build of onboard has no embedded engine (built without the `embedded` feature)"
                .into(),
        )
    }
}

fn read_profile(id: &str, ctx: &TaskContext) -> Result<(Profile, PathBuf), TaskError> {
    let paths = ctx.paths();
    let conf_path = ctx.path(&paths.models_conf)?;
    let conf = models_conf::read(&conf_path).map_err(|e| TaskError::failed(e.to_string()))?;
    let profile = conf.profile(id).ok_or_else(|| TaskError::Failed {
        message: format!(
            "{} has no profile `[{id}]`; run the profile step first",
            conf_path.display()
        ),
        retryable: false,
    })?;
    Ok((profile, ctx.path(&paths.models)?))
}

fn gguf_path(profile: &Profile, models_dir: &Path) -> Result<PathBuf, TaskError> {
    let model = profile
        .get("MODEL")
        .filter(|m| !m.is_empty())
        .ok_or_else(|| TaskError::Failed {
            message: format!("profile `[{}]` has no MODEL= line", profile.id),
            retryable: false,
        })?;
    crate::workspace::resolve_inside(models_dir, model).map_err(TaskError::Params)
}

fn llama_server_binary(ctx: &TaskContext) -> Option<String> {
    let configured = ctx
        .template_context
        .get("workspace")
        .and_then(|w| w.get("engines"))
        .and_then(|e| e.get("llama_server"))
        .and_then(|b| b.as_str())
        .map(str::to_string);
    match configured {
        Some(b) if b.contains('/') => {
            // Relative paths are relative to the workspace.
            let p = ctx.workspace.join(&b);
            Some(p.to_string_lossy().into_owned())
        }
        Some(b) => Some(b),
        None => on_path("llama-server").then(|| "llama-server".to_string()),
    }
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

fn engine_failure(e: EngineError) -> TaskError {
    let retryable = matches!(e, EngineError::Request(_));
    TaskError::Failed {
        message: e.to_string(),
        retryable,
    }
}

/// Available RAM now, from /proc/meminfo.
fn mem_available_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
}

#[allow(clippy::too_many_arguments)]
fn measure_embedded(
    gguf: &Path,
    cpu: bool,
    threads: Option<usize>,
    wanted: u64,
    generate: u32,
    load_timeout: Duration,
    request_timeout: Duration,
    ctx: &TaskContext,
) -> Result<ContextTestOutputs, TaskError> {
    let program = std::env::current_exe()
        .map_err(|e| TaskError::failed(format!("cannot find the onboard binary: {e}")))?;
    let opts = WorkerOptions {
        program,
        gguf: gguf.to_path_buf(),
        cpu,
        load_timeout,
        request_timeout,
        threads,
    };
    let engine = EmbeddedEngine::start(&opts).map_err(engine_failure)?;
    let max = engine.max_sequence_length.unwrap_or(wanted);
    let mut tested = wanted.min(max);
    let mut note = (tested < wanted).then(|| {
        format!("mistral.rs fixes the context to the GGUF's trained context ({max} tokens); tested at {tested}")
    });
    // A CPU prefill materialises T×T attention scores: keep their estimate
    // under half the RAM that is free, and say so when that shrinks the test.
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
    let probe = engine
        .chat(&embedded::capital_of_france())
        .map_err(engine_failure)?;
    ctx.log(&format!("probe: {}", probe.text.trim()));
    let prompt = tested
        .saturating_sub(u64::from(generate) + TEMPLATE_MARGIN)
        .max(16);
    let reply: ChatResponse = engine.fill(prompt, generate).map_err(engine_failure)?;
    Ok(ContextTestOutputs {
        engine: engine.name().to_string(),
        device: if cpu { "cpu".into() } else { "gpu".into() },
        context_profile: wanted,
        context_tested: tested,
        context_note: note,
        prompt_tokens: reply.prompt_tokens,
        generated_tokens: reply.completion_tokens,
        prompt_tps: reply.prompt_tps.unwrap_or(0.0),
        generation_tps: reply.generation_tps.unwrap_or(0.0),
        load_ms: engine.load_ms,
        peak_rss_mib: engine.peak_rss_bytes().map(|b| b / (1024 * 1024)),
        graph_splits: None,
        speed_key: String::new(),
        speed: String::new(),
        probe_answer: probe.text,
    })
}

fn measure_server(
    profile: &Profile,
    binary: &str,
    models_dir: &Path,
    wanted: u64,
    generate: u32,
    load_timeout: Duration,
    request_timeout: Duration,
) -> Result<ContextTestOutputs, TaskError> {
    let mut profile = profile.clone();
    profile.entries.retain(|(k, _)| k != "CTX_SIZE");
    profile
        .entries
        .push(("CTX_SIZE".into(), wanted.to_string()));
    let launch = launch::command(&profile, binary, models_dir, &Listen::default())
        .map_err(TaskError::Params)?;
    let started = std::time::Instant::now();
    let server =
        LlamaServer::start(&launch, load_timeout, request_timeout).map_err(engine_failure)?;
    let load_ms = started.elapsed().as_millis() as u64;
    let probe = server
        .chat(&embedded::capital_of_france())
        .map_err(engine_failure)?;
    let prompt = wanted
        .saturating_sub(u64::from(generate) + TEMPLATE_MARGIN)
        .max(16);
    let reply = server.fill(prompt, generate).map_err(engine_failure)?;
    let log = server.log();
    if let Some(oom) = log.out_of_memory {
        return Err(TaskError::Failed {
            message: format!("llama-server ran out of memory at {wanted} tokens: {oom}"),
            retryable: false,
        });
    }
    Ok(ContextTestOutputs {
        engine: server.name().to_string(),
        device: "llama-server".into(),
        context_profile: wanted,
        context_tested: wanted,
        context_note: None,
        prompt_tokens: reply.prompt_tokens,
        generated_tokens: reply.completion_tokens,
        prompt_tps: reply.prompt_tps.unwrap_or(0.0),
        generation_tps: reply.generation_tps.unwrap_or(0.0),
        load_ms,
        peak_rss_mib: server.peak_rss_bytes().map(|b| b / (1024 * 1024)),
        graph_splits: log.graph_splits,
        speed_key: String::new(),
        speed: String::new(),
        probe_answer: probe.text,
    })
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
