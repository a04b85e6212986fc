//! Memory model: what llama.cpp will allocate for a model at a context, and
//! where (which GPU, which part on the host).
//!
//! - KV cache: only attention layers have one; per layer a K tensor of
//!   `n_head_kv × key_length` by `n_ctx` and a V tensor likewise, in the cache
//!   type (`ggml_row_size`, so q8_0 costs 34/32 bytes per element).
//!   Sliding-window layers (gemma2/3, gpt-oss, cohere2) hold only
//!   `window × n_seq + n_ubatch` cells, padded to 256, unless `--swa-full`.
//! - Recurrent state (Mamba / Gated DeltaNet layers): fixed per sequence, f32,
//!   a conv state of `(conv_kernel − 1) × (inner + 2 × groups × state)` and a
//!   recurrent state of `state × inner` values per layer (llama.cpp's
//!   `n_embd_r()` / `n_embd_s()`).
//! - Compute buffer: the peak of the graph allocator for one micro-batch.
//!   Modelled per micro-batch token as the largest phase (FFN, attention,
//!   output) plus the KQ mask, calibrated on llama.cpp's CPU backend (see
//!   tests/gguf_memory.rs for the measured figures it is held against).
//! - MTP speculative decoding (`--spec-type draft-mtp`, a model with an MTP
//!   tail): a second context runs the MTP block with its own KV cache over
//!   the same context, its own compute and output buffers, and the target
//!   keeps one recurrent-state snapshot per draft token so a rejected draft
//!   rolls back (llama.cpp's `n_rs_seq`); see [`mtp_draft_bytes`].
//! - Placement: whole layers on the GPUs in order (as `--fit` does), the input
//!   embedding on the host, the output layer on the last GPU when every layer
//!   fits (for a tied output, a copy of the embedding goes with it), routed experts optionally on the host (`-ot exps=CPU`), a margin
//!   left free on every GPU (`--fit-target`, 1024 MiB by default).

use serde::Serialize;

use super::facts::{Fact, GlobalGroup, LayerKind, ModelFacts};
use super::types::{tensor_bytes, GgmlType};

pub const MIB: u64 = 1024 * 1024;
pub const GIB: u64 = 1024 * MIB;
/// llama.cpp's `--fit-target` default: free memory kept on each device.
pub const DEFAULT_FIT_MARGIN: u64 = 1024 * MIB;

/// The runtime settings that change memory use.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RunConfig {
    /// Context length (`-c`), in tokens, for all sequences together.
    pub n_ctx: u64,
    /// Parallel sequences (`-np`): one recurrent state each.
    pub n_seq: u64,
    /// Micro-batch (`-ub`, default 512).
    pub n_ubatch: u64,
    /// Logit rows kept per micro-batch (llama-server: one per sequence).
    pub n_outputs: u64,
    pub cache_type_k: GgmlType,
    pub cache_type_v: GgmlType,
    /// Flash attention (llama-server's `auto` turns it on where supported).
    pub flash_attn: bool,
    /// `--swa-full`: sliding-window layers keep a full-context cache.
    pub swa_full: bool,
    /// Tokens drafted per round by the MTP block (`--spec-draft-n-max`
    /// with `--spec-type draft-mtp`); 0: no speculative decoding.
    pub mtp_draft: u32,
}

impl RunConfig {
    /// llama-server's defaults at a context: f16 cache, `-np 1`, `-ub 512`, FA on.
    pub fn server(n_ctx: u64) -> RunConfig {
        RunConfig {
            n_ctx,
            n_seq: 1,
            n_ubatch: 512,
            n_outputs: 1,
            cache_type_k: GgmlType::F16,
            cache_type_v: GgmlType::F16,
            flash_attn: true,
            swa_full: false,
            mtp_draft: 0,
        }
    }

    /// The llama.cpp onboard embeds (llama-cpp-sys-2 0.1.161) at a context:
    /// as [`RunConfig::server`], but its graph reserve keeps logits for a whole
    /// micro-batch (`n_outputs_max` defaults to the batch), so the output
    /// phase of the compute buffer holds `n_vocab × n_ubatch` values.
    pub fn embedded_llama_cpp(n_ctx: u64) -> RunConfig {
        let server = RunConfig::server(n_ctx);
        RunConfig {
            n_outputs: server.n_ubatch,
            ..server
        }
    }

    pub fn with_cache_type(mut self, ty: GgmlType) -> RunConfig {
        self.cache_type_k = ty;
        self.cache_type_v = ty;
        self
    }

    /// MTP speculative decoding drafting `n` tokens a round (0: off).
    pub fn with_mtp_draft(mut self, n: u32) -> RunConfig {
        self.mtp_draft = n;
        self
    }
}

/// What MTP speculative decoding adds to a run, as llama.cpp allocates it:
/// the draft context's KV cache (the MTP blocks at full context), its
/// compute buffer (modelled as the target's: both are dominated by the
/// output phase on small models and by the attention phase at long
/// context), its output buffer, and `mtp_draft` extra recurrent-state
/// snapshots in the target. Zero when `cfg.mtp_draft` is 0 or the file has
/// no MTP tail.
pub fn mtp_draft_bytes(f: &ModelFacts, cfg: &RunConfig) -> Fact<Buffers> {
    if cfg.mtp_draft == 0 || f.mtp_layers == 0 {
        return Fact::known(Buffers::default());
    }
    let mut kv = 0u64;
    for il in f.trunk_layers()..f.block_count {
        let il = il as usize;
        // A per-layer head_count_kv array may stop at the trunk; the MTP
        // block is a full-attention block like the trunk's.
        let kv_heads = f
            .head_count_kv
            .get(il)
            .or_else(|| f.head_count_kv.iter().rev().find(|h| **h > 0))
            .copied()
            .unwrap_or(0);
        match kv_bytes_for_heads(f, kv_heads, cfg.n_ctx, cfg.cache_type_k, cfg.cache_type_v) {
            Some(b) => kv = kv.saturating_add(b),
            None => {
                return Fact::unknown(format!(
                    "cache types {}/{} do not divide the MTP block's KV rows",
                    cfg.cache_type_k, cfg.cache_type_v
                ))
            }
        }
    }
    let snapshots = match recurrent_state_bytes(f, cfg.n_seq) {
        Fact::Known { value } => value.saturating_mul(u64::from(cfg.mtp_draft)),
        Fact::Unknown { reason } => return Fact::unknown(reason),
    };
    let output = f
        .vocab_size
        .unwrap_or(0)
        .saturating_mul(cfg.n_seq.max(1))
        .saturating_mul(4);
    Fact::known(Buffers {
        weights: 0,
        kv_cache: kv,
        recurrent: snapshots,
        compute: compute_buffer_bytes(f, cfg),
        output,
    })
}

/// KV cells a layer gets: the context, or for a sliding-window layer the
/// window per sequence plus a micro-batch, padded to 256 (llama.cpp's iSWA
/// cache), unless `--swa-full`.
pub fn kv_cells(f: &ModelFacts, il: usize, cfg: &RunConfig) -> u64 {
    match f.sliding_window {
        Some(w) if !cfg.swa_full && f.sliding_window_layers.get(il) == Some(&true) => {
            let swa = w
                .saturating_mul(cfg.n_seq.max(1))
                .saturating_add(cfg.n_ubatch)
                .div_ceil(256)
                .saturating_mul(256);
            swa.min(cfg.n_ctx)
        }
        _ => cfg.n_ctx,
    }
}

/// KV cache bytes of one attention layer holding `n_ctx` cells.
fn kv_layer_bytes(f: &ModelFacts, il: usize, n_ctx: u64, k: GgmlType, v: GgmlType) -> Option<u64> {
    kv_bytes_for_heads(f, *f.head_count_kv.get(il)?, n_ctx, k, v)
}

/// KV cache bytes of an attention layer with `kv_heads` heads.
fn kv_bytes_for_heads(
    f: &ModelFacts,
    kv_heads: u64,
    n_ctx: u64,
    k: GgmlType,
    v: GgmlType,
) -> Option<u64> {
    let kb = tensor_bytes(k, &[kv_heads.checked_mul(f.key_length)?, n_ctx])?;
    let vb = tensor_bytes(v, &[kv_heads.checked_mul(f.value_length)?, n_ctx])?;
    kb.checked_add(vb)
}

/// KV cache bytes over the attention layers only, at `n_ctx` tokens, every
/// attention layer at full context (see [`kv_cache_bytes_for`] for windows).
pub fn kv_cache_bytes(f: &ModelFacts, n_ctx: u64, k: GgmlType, v: GgmlType) -> Fact<u64> {
    let kinds = match f.layers.result() {
        Ok(k) => k,
        Err(reason) => return Fact::unknown(reason),
    };
    let mut total = 0u64;
    for (il, kind) in kinds.iter().enumerate() {
        if *kind != LayerKind::Attention {
            continue;
        }
        match kv_layer_bytes(f, il, n_ctx, k, v) {
            Some(b) => total = total.saturating_add(b),
            None => {
                return Fact::unknown(format!(
                    "cache types {k}/{v} do not divide layer {il}'s KV rows"
                ))
            }
        }
    }
    Fact::known(total)
}

/// KV cache bytes for a run: like [`kv_cache_bytes`] but sliding-window
/// layers hold only their window (see [`kv_cells`]).
pub fn kv_cache_bytes_for(f: &ModelFacts, cfg: &RunConfig) -> Fact<u64> {
    let kinds = match f.layers.result() {
        Ok(k) => k,
        Err(reason) => return Fact::unknown(reason),
    };
    let mut total = 0u64;
    for (il, kind) in kinds.iter().enumerate() {
        if *kind != LayerKind::Attention {
            continue;
        }
        let cells = kv_cells(f, il, cfg);
        match kv_layer_bytes(f, il, cells, cfg.cache_type_k, cfg.cache_type_v) {
            Some(b) => total = total.saturating_add(b),
            None => {
                return Fact::unknown(format!(
                    "cache types {}/{} do not divide layer {il}'s KV rows",
                    cfg.cache_type_k, cfg.cache_type_v
                ))
            }
        }
    }
    Fact::known(total)
}

/// KV cache bytes per token of context (every attention layer at full
/// context: the growth rate for models without a sliding window).
pub fn kv_bytes_per_token(f: &ModelFacts, k: GgmlType, v: GgmlType) -> Fact<u64> {
    // One block-sized context makes quantised cache types exact.
    let probe = 256;
    match kv_cache_bytes(f, probe, k, v) {
        Fact::Known { value } => Fact::known(value / probe),
        Fact::Unknown { reason } => Fact::unknown(reason),
    }
}

/// Recurrent state bytes of one recurrent layer for one sequence (f32).
pub fn recurrent_layer_bytes(f: &ModelFacts) -> Option<u64> {
    let s = f.ssm?;
    let w = |x: u64| u128::from(x);
    let conv = w(s.conv_kernel.saturating_sub(1))
        * (w(s.inner_size) + 2 * w(s.group_count) * w(s.state_size));
    let state = w(s.state_size) * w(s.inner_size);
    u64::try_from((conv + state) * 4).ok()
}

/// Recurrent state bytes over all recurrent layers for `n_seq` sequences.
pub fn recurrent_state_bytes(f: &ModelFacts, n_seq: u64) -> Fact<u64> {
    let n = match f.layers.result() {
        Ok(k) => k.iter().filter(|k| **k == LayerKind::Recurrent).count() as u64,
        Err(reason) => return Fact::unknown(reason),
    };
    if n == 0 {
        return Fact::known(0);
    }
    match recurrent_layer_bytes(f) {
        Some(b) => Fact::known(b.saturating_mul(n).saturating_mul(n_seq.max(1))),
        None => Fact::unknown(format!(
            "{n} recurrent layers but no '{}.ssm.*' sizes in the header",
            f.architecture
        )),
    }
}

/// Architectures whose attention query projection also yields an output
/// gate of the same width (`attn_q` is 2 × heads × head_dim wide).
const GATED_ATTENTION: &[&str] = &["qwen35", "qwen35moe", "qwen3next"];

/// Compute buffer estimate for one backend holding the whole graph.
///
/// Per micro-batch token, the allocator's peak is the largest of three
/// phases, each counted in f32 values alive at once:
/// - FFN: the residual stream and norm (about 5 × n_embd with the inputs
///   and views) plus gate, up and the activation (3 × n_ff); for MoE the
///   selected experts' gate/up/act (3 × used × n_ff_exp), their outputs and
///   the router's logits/probabilities (3 × n_expert);
/// - attention: Q/K/V and their roped copies (5 × n_embd + 5 × n_embd_kv);
///   without flash attention also the n_head × n_ctx KQ matrix; Qwen3.5's
///   gated attention one more query width (the gate half of its joint
///   query projection);
/// - recurrent (Gated DeltaNet, llama.cpp's fused kernel): 4.5 × n_embd
///   plus 2.25 × the conv channels (inner + 2 × groups × state), fitted on
///   real-width probes (within 2%, see tests/gguf_memory.rs);
///
/// plus the KQ mask (n_ctx × f16 with flash attention, f32 without; a second
/// one over the window's cells for sliding-window models); or the
/// output phase (n_vocab × n_outputs logits) when that is larger. Held
/// against llama.cpp's CPU backend on SmolLM2 (tests/gguf_memory.rs).
pub fn compute_buffer_bytes(f: &ModelFacts, cfg: &RunConfig) -> u64 {
    // u128: facts bound every hyperparameter to u32, so no product overflows.
    let w = |x: u64| u128::from(x);
    let embd = w(f.embedding_length);
    let n_ff = w(f.feed_forward_length.unwrap_or(0));
    let kv_max = w(f.head_count_kv.iter().copied().max().unwrap_or(0));
    let embd_kv = kv_max * w(f.key_length.max(f.value_length));
    let (n_ctx, heads) = (w(cfg.n_ctx), w(f.head_count));
    let mut ffn = 5 * embd + 3 * n_ff;
    if let Some(e) = &f.experts {
        let exp_ff = w(e.feed_forward_length.unwrap_or(0));
        let shared_ff = w(e.shared_feed_forward_length.unwrap_or(0)) * w(e.shared);
        let used = w(e.used);
        // Routed and shared experts run one after the other: the larger counts.
        let moe =
            (5 * embd + 3 * used * exp_ff + used * embd + w(e.total)).max(5 * embd + 3 * shared_ff);
        ffn = ffn.max(moe);
    }
    let q_width = heads * w(f.value_length);
    let mut attn = 5 * embd + 5 * embd_kv + q_width;
    if GATED_ATTENTION.contains(&f.architecture.as_str()) {
        attn += q_width;
    }
    if !cfg.flash_attn {
        attn += heads * n_ctx;
    }
    let recurrent = match (f.ssm, f.recurrent_layers().is_empty()) {
        (Some(s), false) => {
            let conv_ch = w(s.inner_size) + 2 * w(s.group_count) * w(s.state_size);
            (18 * embd + 9 * conv_ch) / 4
        }
        _ => 0,
    };
    let per_token_values = ffn.max(attn).max(recurrent);
    let mask_elem = if cfg.flash_attn { 2 } else { 4 };
    let t = w(cfg.n_ubatch.min(cfg.n_ctx.max(1)));
    let vocab = w(f.vocab_size.unwrap_or(0));
    // Sliding-window models carry a second mask over the window's cells.
    let swa_cells = f
        .sliding_window_layers
        .iter()
        .position(|s| *s)
        .map_or(0, |il| w(kv_cells(f, il, cfg)));
    let layers = t * (4 * per_token_values + mask_elem * (n_ctx + swa_cells));
    // The output phase runs after the layers' buffers are free: logits for
    // the kept rows plus the final norm's input and output.
    let output = 4 * vocab * w(cfg.n_outputs).min(t) + t * 4 * 2 * embd;
    u64::try_from(layers.max(output)).unwrap_or(u64::MAX)
}

/// What llama.cpp allocates for a model held by one backend (the CPU, or one
/// GPU with every layer), buffer by buffer: both what the memory model
/// predicts and what the embedded llama.cpp reports, so the two compare
/// field by field.
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct Buffers {
    pub weights: u64,
    pub kv_cache: u64,
    pub recurrent: u64,
    pub compute: u64,
    /// Logits kept between calls: one row per sequence (`n_vocab × n_seq` f32).
    pub output: u64,
}

impl Buffers {
    pub fn total(&self) -> u64 {
        [
            self.weights,
            self.kv_cache,
            self.recurrent,
            self.compute,
            self.output,
        ]
        .iter()
        .fold(0u64, |acc, b| acc.saturating_add(*b))
    }

    /// Field by field sum (a target and its draft context).
    pub fn plus(&self, other: &Buffers) -> Buffers {
        Buffers {
            weights: self.weights.saturating_add(other.weights),
            kv_cache: self.kv_cache.saturating_add(other.kv_cache),
            recurrent: self.recurrent.saturating_add(other.recurrent),
            compute: self.compute.saturating_add(other.compute),
            output: self.output.saturating_add(other.output),
        }
    }
}

/// [`Buffers`] for `cfg`; `None` where a part cannot be known from the header.
/// `cpu_repack`: the backend is a CPU whose llama.cpp repacks Q4_0 and Q4_K
/// matrices for its matmul kernels (x86 with AVX2): an output layer tied to
/// the embedding then gets a repacked copy of it, since the embedding itself
/// stays in the mapped file for its row lookups.
pub fn single_backend(f: &ModelFacts, cfg: &RunConfig, cpu_repack: bool) -> Option<Buffers> {
    let tied_copy = if cpu_repack && f.output_tied() {
        f.tensors
            .iter()
            .find(|t| t.name == "token_embd.weight")
            .filter(|t| matches!(t.ty, GgmlType::Q4_0 | GgmlType::Q4_K))
            .and_then(|t| t.bytes)
            .unwrap_or(0)
    } else {
        0
    };
    let target = Buffers {
        weights: f.total_bytes.saturating_add(tied_copy),
        kv_cache: *kv_cache_bytes_for(f, cfg).value()?,
        recurrent: *recurrent_state_bytes(f, cfg.n_seq).value()?,
        compute: compute_buffer_bytes(f, cfg),
        output: f
            .vocab_size?
            .saturating_mul(cfg.n_seq.max(1))
            .saturating_mul(4),
    };
    let draft = mtp_draft_bytes(f, cfg).value()?.clone();
    Some(target.plus(&draft))
}

/// A GPU (or any device) and its memory.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeviceBudget {
    pub name: String,
    /// Total memory of the device.
    pub bytes: u64,
}

/// The host: its RAM and what the OS and other programs keep.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct HostBudget {
    pub ram_bytes: u64,
    pub os_reserve_bytes: u64,
}

/// How to place the model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PlacementOptions {
    pub run: RunConfig,
    /// Free memory kept on every device (`--fit-target`).
    pub fit_margin: u64,
    /// Keep routed experts on the host (`-ot exps=CPU` / fit's CPU offload).
    pub experts_on_host: bool,
}

impl PlacementOptions {
    pub fn new(run: RunConfig) -> PlacementOptions {
        PlacementOptions {
            run,
            fit_margin: DEFAULT_FIT_MARGIN,
            experts_on_host: false,
        }
    }
}

/// What one device holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DeviceUse {
    pub name: String,
    pub budget: u64,
    /// Layer indices placed here.
    pub layers: Vec<u32>,
    pub output_layer: bool,
    pub weight_bytes: u64,
    pub kv_bytes: u64,
    pub recurrent_bytes: u64,
    pub compute_bytes: u64,
    /// weights + KV + recurrent + compute.
    pub total_bytes: u64,
    /// budget − margin − total (negative: over).
    pub headroom_bytes: i64,
}

/// Where everything goes, and whether it fits.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Placement {
    pub devices: Vec<DeviceUse>,
    /// The host's share (name "host"); its budget is RAM minus the OS reserve.
    pub host: DeviceUse,
    pub gpu_layers: u32,
    pub block_count: u32,
    /// Every device and the host within budget.
    pub fits: bool,
}

/// Places the model over `devices` (in order) and the host.
pub fn place(
    f: &ModelFacts,
    devices: &[DeviceBudget],
    host: HostBudget,
    opt: &PlacementOptions,
) -> Fact<Placement> {
    let kinds = match f.layers.result() {
        Ok(k) => k.clone(),
        Err(reason) => return Fact::unknown(reason),
    };
    if let Some(name) = f.unknown_type_tensors.first() {
        return Fact::unknown(format!("tensor '{name}' has a type of unknown size"));
    }
    let run = &opt.run;
    let rec_layer = if kinds.contains(&LayerKind::Recurrent) {
        match recurrent_layer_bytes(f) {
            Some(b) => b.saturating_mul(run.n_seq.max(1)),
            None => {
                return Fact::unknown(format!(
                    "recurrent layers but no '{}.ssm.*' sizes in the header",
                    f.architecture
                ))
            }
        }
    } else {
        0
    };
    let compute = compute_buffer_bytes(f, run);
    // A GPU holding the output layer of a tied model gets its own copy of
    // the embedding (llama.cpp duplicates token_embd there); on the host the
    // copy shares the mapped file.
    let output_bytes = f
        .global_bytes(GlobalGroup::Output)
        .saturating_add(if f.output_tied() {
            f.global_bytes(GlobalGroup::TokenEmbd)
        } else {
            0
        });
    let output_host_bytes = f.global_bytes(GlobalGroup::Output);

    // Per layer: bytes that go to the device, and to the host.
    let mut layer_dev = Vec::with_capacity(kinds.len());
    for (il, kind) in kinds.iter().enumerate() {
        let (all, experts) = f.layer_bytes(il as u32);
        let weights = if opt.experts_on_host {
            all - experts
        } else {
            all
        };
        let cache = match kind {
            LayerKind::Attention => {
                let cells = kv_cells(f, il, run);
                match kv_layer_bytes(f, il, cells, run.cache_type_k, run.cache_type_v) {
                    Some(b) => b,
                    None => {
                        return Fact::unknown(format!(
                            "cache types do not divide layer {il}'s KV rows"
                        ))
                    }
                }
            }
            LayerKind::Recurrent => rec_layer,
            // Weights only: the draft context's cache is apart.
            LayerKind::Mtp => 0,
        };
        layer_dev.push((weights, experts, cache, *kind));
    }

    let mut used: Vec<DeviceUse> = devices
        .iter()
        .map(|d| DeviceUse {
            name: d.name.clone(),
            budget: d.bytes,
            ..DeviceUse::default()
        })
        .collect();
    let mut next_layer = 0usize;
    for dev in used.iter_mut() {
        let cap = dev.budget.saturating_sub(opt.fit_margin);
        // A device with any layer also holds a compute buffer.
        let mut total = compute;
        let mut took = false;
        while next_layer < layer_dev.len() {
            let (w, _, c, _) = layer_dev[next_layer];
            let next = total.saturating_add(w).saturating_add(c);
            if next > cap {
                break;
            }
            total = next;
            dev.layers.push(next_layer as u32);
            took = true;
            next_layer = next_layer.saturating_add(1);
        }
        if took {
            dev.compute_bytes = compute;
        }
    }
    let gpu_layers = next_layer as u32;
    // The output layer follows the last layer onto the last used GPU if room.
    let all_on_gpu = gpu_layers as usize == layer_dev.len() && !devices.is_empty();
    let mut output_on_gpu = false;
    if all_on_gpu {
        if let Some(dev) = used.iter_mut().rev().find(|d| !d.layers.is_empty()) {
            let cur: u64 = dev.compute_bytes.saturating_add(
                dev.layers
                    .iter()
                    .map(|&il| {
                        layer_dev[il as usize]
                            .0
                            .saturating_add(layer_dev[il as usize].2)
                    })
                    .fold(0u64, u64::saturating_add),
            );
            if cur.saturating_add(output_bytes) <= dev.budget.saturating_sub(opt.fit_margin) {
                dev.output_layer = true;
                output_on_gpu = true;
            }
        }
    }
    for dev in used.iter_mut() {
        for &il in &dev.layers {
            let (w, _, c, kind) = layer_dev[il as usize];
            dev.weight_bytes = dev.weight_bytes.saturating_add(w);
            match kind {
                LayerKind::Attention => dev.kv_bytes = dev.kv_bytes.saturating_add(c),
                LayerKind::Recurrent => dev.recurrent_bytes = dev.recurrent_bytes.saturating_add(c),
                LayerKind::Mtp => {}
            }
        }
        if dev.output_layer {
            dev.weight_bytes = dev.weight_bytes.saturating_add(output_bytes);
        }
        dev.total_bytes = sum(&[
            dev.weight_bytes,
            dev.kv_bytes,
            dev.recurrent_bytes,
            dev.compute_bytes,
        ]);
        dev.headroom_bytes = signed(dev.budget.saturating_sub(opt.fit_margin), dev.total_bytes);
    }

    // Host: input embedding, other globals, layers left over, experts kept
    // on the host, the output layer if no GPU took it.
    let mut h = DeviceUse {
        name: "host".into(),
        budget: host.ram_bytes.saturating_sub(host.os_reserve_bytes),
        ..DeviceUse::default()
    };
    h.weight_bytes = f
        .global_bytes(GlobalGroup::TokenEmbd)
        .saturating_add(f.global_bytes(GlobalGroup::Other));
    if !output_on_gpu {
        h.weight_bytes = h.weight_bytes.saturating_add(output_host_bytes);
    }
    for (il, &(w, experts, c, kind)) in layer_dev.iter().enumerate() {
        if opt.experts_on_host {
            h.weight_bytes = h.weight_bytes.saturating_add(experts);
        }
        if il >= gpu_layers as usize {
            h.layers.push(il as u32);
            h.weight_bytes = h.weight_bytes.saturating_add(w);
            match kind {
                LayerKind::Attention => h.kv_bytes = h.kv_bytes.saturating_add(c),
                LayerKind::Recurrent => h.recurrent_bytes = h.recurrent_bytes.saturating_add(c),
                LayerKind::Mtp => {}
            }
        }
    }
    // The host always runs part of the graph (input embedding, and anything
    // not offloaded): a full buffer when it holds layers, else a small one.
    h.compute_bytes = if h.layers.is_empty() && !devices.is_empty() {
        run.n_ubatch
            .saturating_mul(f.embedding_length)
            .saturating_mul(8)
    } else {
        compute
    };
    h.output_layer = !output_on_gpu;
    h.total_bytes = sum(&[
        h.weight_bytes,
        h.kv_bytes,
        h.recurrent_bytes,
        h.compute_bytes,
    ]);
    h.headroom_bytes = signed(h.budget, h.total_bytes);

    let fits = used.iter().all(|d| d.headroom_bytes >= 0) && h.headroom_bytes >= 0;
    Fact::known(Placement {
        devices: used,
        host: h,
        gpu_layers,
        block_count: f.block_count,
        fits,
    })
}

fn sum(parts: &[u64]) -> u64 {
    parts.iter().fold(0, |a, &b| a.saturating_add(b))
}

fn signed(budget: u64, used: u64) -> i64 {
    if budget >= used {
        i64::try_from(budget - used).unwrap_or(i64::MAX)
    } else {
        i64::try_from(used - budget).map(|x| -x).unwrap_or(i64::MIN)
    }
}

/// What a context must achieve to count as fitting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Goal {
    /// Every layer and the output on the GPUs ("Strategy A").
    AllOnGpu,
    /// Every device and the host within budget, layers wherever they go.
    Fits,
}

/// Context granularity of the search: llama.cpp pads the KV cache to 256.
pub const CTX_STEP: u64 = 256;

/// The largest context (a multiple of 256, at most `max_ctx`) at which the
/// placement meets `goal`; `Known(None)` when not even 256 tokens do.
/// Memory grows with the context, so a binary search finds it.
pub fn largest_context(
    f: &ModelFacts,
    devices: &[DeviceBudget],
    host: HostBudget,
    opt: &PlacementOptions,
    goal: Goal,
    max_ctx: u64,
) -> Fact<Option<u64>> {
    let ok = |n_ctx: u64| -> Result<bool, String> {
        let mut o = *opt;
        o.run.n_ctx = n_ctx;
        let p = place(f, devices, host, &o).result()?.clone();
        Ok(match goal {
            Goal::Fits => p.fits,
            Goal::AllOnGpu => {
                p.fits && p.gpu_layers == p.block_count && p.devices.iter().any(|d| d.output_layer)
            }
        })
    };
    let (mut lo, mut hi) = (0u64, max_ctx / CTX_STEP);
    // Invariant: lo steps fit (0 = none known), anything above hi does not.
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        match ok(mid * CTX_STEP) {
            Ok(true) => lo = mid,
            Ok(false) => hi = mid - 1,
            Err(reason) => return Fact::unknown(reason),
        }
    }
    Fact::known((lo > 0).then_some(lo * CTX_STEP))
}
