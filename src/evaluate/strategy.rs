//! Placement of a model on the workspace's GPUs and RAM at a context, the
//! largest context each strategy allows, and the production choice.
//!
//! The three placements llama.cpp users choose between:
//! - Strategy A: every layer on the GPUs (`-ngl 999 -ts …`, fit off);
//! - `--fit` across the GPUs: the same when everything fits;
//! - `--fit` with CPU offload: routed experts of some layers in RAM (MoE),
//!   or whole layers in RAM (dense), the GPUs filled first.
//!
//! Whole layers go to one device (as `-ts` places them); a layer's KV cache
//! lives with the layer; every GPU keeps the fit margin free and holds one
//! compute buffer; the input embedding stays in RAM (llama.cpp keeps it on
//! the CPU).

use serde::Serialize;

use crate::gguf::facts::{GlobalGroup, LayerKind, ModelFacts};
use crate::gguf::memory::{compute_buffer_bytes, recurrent_layer_bytes, RunConfig, GIB};
use crate::workspace::config::Hardware;

/// Contexts are searched in steps of this many tokens.
pub const CONTEXT_STEP: u64 = 1024;

/// One GPU and its memory.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Gpu {
    pub name: String,
    pub bytes: u64,
    /// GB/s, for the speed estimate.
    pub bandwidth_gbs: Option<f64>,
}

/// The machine as evaluate sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Machine {
    pub gpus: Vec<Gpu>,
    pub ram_bytes: u64,
    pub os_reserve_bytes: u64,
    pub cpu_bandwidth_gbs: Option<f64>,
    /// Free memory llama.cpp's `--fit` keeps on each GPU (`--fit-target`).
    pub fit_margin: u64,
    /// RAM that must stay free after the model is loaded; less is "too
    /// little headroom" (the page cache, the OS's own growth, a browser).
    pub min_host_headroom: u64,
}

fn gib(x: f64) -> u64 {
    (x * GIB as f64).round().max(0.0) as u64
}

impl Machine {
    /// The machine with `bytes` already taken where llama.cpp loads a
    /// vision projector: the first GPU (`--mmproj-offload`, llama-server's
    /// default), else RAM.
    pub fn reserving(&self, bytes: u64) -> Machine {
        let mut m = self.clone();
        match m.gpus.first_mut() {
            Some(gpu) => gpu.bytes = gpu.bytes.saturating_sub(bytes),
            None => m.ram_bytes = m.ram_bytes.saturating_sub(bytes),
        }
        m
    }

    /// From `onboard.yaml`'s `hardware:`. RAM must be given; the OS reserve
    /// defaults to 0, the headroom minimum to 10% of usable RAM (at least
    /// 4 GiB).
    pub fn from_hardware(hw: &Hardware, fit_margin: u64) -> Result<Machine, String> {
        let ram = hw.ram_gib.ok_or(
            "onboard.yaml has no `hardware.ram_gib`: add the machine (see `onboard hardware --detect`)",
        )?;
        let mut m = Machine {
            gpus: hw
                .gpus
                .iter()
                .map(|g| Gpu {
                    name: g.name.clone(),
                    bytes: gib(g.vram_gib),
                    bandwidth_gbs: g.bandwidth_gbs,
                })
                .collect(),
            ram_bytes: gib(ram),
            os_reserve_bytes: gib(hw.os_reserve_gib.unwrap_or(0.0)),
            cpu_bandwidth_gbs: hw.cpu_bandwidth_gbs,
            fit_margin,
            min_host_headroom: 0,
        };
        m.min_host_headroom = (m.host_budget() / 10).max(4 * GIB);
        Ok(m)
    }

    /// RAM minus the OS reserve.
    pub fn host_budget(&self) -> u64 {
        self.ram_bytes.saturating_sub(self.os_reserve_bytes)
    }

    /// Each GPU's memory minus the fit margin.
    fn caps(&self) -> Vec<u64> {
        self.gpus
            .iter()
            .map(|g| g.bytes.saturating_sub(self.fit_margin))
            .collect()
    }
}

/// One repeating layer's costs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LayerCost {
    pub kind: LayerKind,
    /// Weights other than routed experts (attention, norms, shared expert).
    pub weights: u64,
    /// Routed-expert weights (`ffn_*_exps`).
    pub experts: u64,
    /// f16 KV bytes per token (attention layers).
    pub kv_per_token: u64,
}

/// A model's sizes, possibly scaled to another quant of the same model.
#[derive(Debug, Clone)]
pub struct Layout<'a> {
    pub facts: &'a ModelFacts,
    pub layers: Vec<LayerCost>,
    pub token_embd: u64,
    pub output: u64,
    /// What the output layer costs a GPU: `output` plus, for a tied model,
    /// the copy of `token_embd` llama.cpp puts there for the logits.
    pub output_gpu: u64,
    pub other: u64,
    pub recurrent_per_layer: u64,
    /// (used, total) routed experts.
    pub experts_used: Option<(u64, u64)>,
}

impl<'a> Layout<'a> {
    /// The layout of `facts`, weights multiplied by `scale` (a quant of the
    /// same model whose header was not read: its file size over this one's).
    /// Errors say why the layout is unknown.
    pub fn new(facts: &'a ModelFacts, scale: f64) -> Result<Layout<'a>, String> {
        let kinds = facts.layers.result()?;
        if let Some(name) = facts.unknown_type_tensors.first() {
            return Err(format!("tensor '{name}' has a type of unknown size"));
        }
        let s = |b: u64| (b as f64 * scale).round() as u64;
        let recurrent_per_layer = if kinds.contains(&LayerKind::Recurrent) {
            recurrent_layer_bytes(facts).ok_or_else(|| {
                format!(
                    "recurrent layers but no '{}.ssm.*' sizes in the header",
                    facts.architecture
                )
            })?
        } else {
            0
        };
        let layers = kinds
            .iter()
            .enumerate()
            .map(|(il, kind)| {
                let (all, experts) = facts.layer_bytes(il as u32);
                let kv_heads = facts.head_count_kv.get(il).copied().unwrap_or(0);
                LayerCost {
                    kind: *kind,
                    weights: s(all - experts),
                    experts: s(experts),
                    kv_per_token: if *kind == LayerKind::Attention {
                        kv_heads
                            .saturating_mul(facts.key_length.saturating_add(facts.value_length))
                            .saturating_mul(2)
                    } else {
                        0
                    },
                }
            })
            .collect();
        Ok(Layout {
            facts,
            layers,
            token_embd: s(facts.global_bytes(GlobalGroup::TokenEmbd)),
            output: s(facts.global_bytes(GlobalGroup::Output)),
            output_gpu: s(facts.global_bytes(GlobalGroup::Output).saturating_add(
                if facts.output_tied() {
                    facts.global_bytes(GlobalGroup::TokenEmbd)
                } else {
                    0
                },
            )),
            other: s(facts.global_bytes(GlobalGroup::Other)),
            recurrent_per_layer,
            experts_used: facts
                .experts
                .as_ref()
                .filter(|e| e.total > 0 && e.used <= e.total)
                .map(|e| (e.used, e.total)),
        })
    }

    pub fn total_weights(&self) -> u64 {
        self.layers
            .iter()
            .map(|l| l.weights.saturating_add(l.experts))
            .fold(self.token_embd, u64::saturating_add)
            .saturating_add(self.output)
            .saturating_add(self.other)
    }

    pub fn is_moe(&self) -> bool {
        self.layers.iter().any(|l| l.experts > 0)
    }

    fn cache(&self, l: &LayerCost, n_ctx: u64) -> u64 {
        match l.kind {
            LayerKind::Attention => l.kv_per_token.saturating_mul(n_ctx),
            LayerKind::Recurrent => self.recurrent_per_layer,
            // Its draft context's cache is apart from the trunk's.
            LayerKind::Mtp => 0,
        }
    }

    fn compute(&self, n_ctx: u64) -> u64 {
        compute_buffer_bytes(self.facts, &RunConfig::server(n_ctx))
    }

    /// Expert bytes read per token out of `bytes` of expert weights.
    fn active_experts(&self, bytes: u64) -> u64 {
        match self.experts_used {
            Some((used, total)) => {
                (u128::from(bytes) * u128::from(used) / u128::from(total)) as u64
            }
            None => bytes,
        }
    }
}

/// What one device (a GPU or the host) holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DeviceLoad {
    pub name: String,
    /// Installed memory (GPU VRAM, or RAM minus the OS reserve for the host).
    pub memory: u64,
    /// What may be used: memory minus the fit margin (GPUs).
    pub budget: u64,
    pub layers: Vec<u32>,
    pub output_layer: bool,
    /// Weights here, routed experts included.
    pub weights: u64,
    /// Of which routed experts.
    pub experts: u64,
    pub kv: u64,
    pub recurrent: u64,
    pub compute: u64,
    pub total: u64,
    /// budget − total; negative: over.
    pub headroom: i64,
    /// Weight bytes read per generated token.
    pub active: u64,
    pub bandwidth_gbs: Option<f64>,
}

impl DeviceLoad {
    fn finish(&mut self) {
        self.total = [self.kv, self.recurrent, self.compute]
            .into_iter()
            .fold(self.weights, u64::saturating_add);
        self.headroom = signed_difference(self.budget, self.total);
    }
}

/// `a − b` as i64, saturating: a header can claim more bytes than i64 holds.
fn signed_difference(a: u64, b: u64) -> i64 {
    if a >= b {
        i64::try_from(a - b).unwrap_or(i64::MAX)
    } else {
        i64::try_from(b - a).map_or(i64::MIN, |d| -d)
    }
}

/// A placement at one context.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Placement {
    pub n_ctx: u64,
    pub gpus: Vec<DeviceLoad>,
    pub host: DeviceLoad,
    /// Every layer, expert and the output layer on a GPU.
    pub all_on_gpu: bool,
    /// Routed-expert bytes kept in RAM.
    pub experts_on_host: u64,
    /// Layers kept in RAM entirely.
    pub layers_on_host: u32,
    /// The host keeps at least the machine's minimum headroom.
    pub host_ok: bool,
}

impl Placement {
    /// Decode tokens/s from bandwidth: the bytes each device reads per token
    /// over its bandwidth, times added up. `with_kv`: also read the whole
    /// KV cache (a conversation at this context's end). `None` without
    /// bandwidth figures.
    pub fn tokens_per_second(&self, with_kv: bool) -> Option<f64> {
        let mut seconds = 0.0;
        for d in self.gpus.iter().chain(std::iter::once(&self.host)) {
            // In f64: the three byte counts may each be near u64::MAX.
            let mut bytes = d.active as f64;
            if with_kv {
                bytes += d.kv as f64 + d.recurrent as f64;
            }
            if bytes == 0.0 {
                continue;
            }
            let bw = d.bandwidth_gbs.filter(|b| *b > 0.0)?;
            seconds += bytes / (bw * 1e9);
        }
        (seconds > 0.0).then(|| 1.0 / seconds)
    }

    /// GPUs holding at least one layer.
    pub fn gpus_used(&self) -> usize {
        self.gpus.iter().filter(|g| !g.layers.is_empty()).count()
    }

    /// `-ts` for Strategy A: layers per GPU.
    pub fn tensor_split(&self) -> String {
        self.gpus
            .iter()
            .map(|g| g.layers.len().to_string())
            .collect::<Vec<_>>()
            .join(",")
    }
}

fn new_gpu_loads(machine: &Machine) -> Vec<DeviceLoad> {
    machine
        .gpus
        .iter()
        .zip(machine.caps())
        .map(|(g, cap)| DeviceLoad {
            name: g.name.clone(),
            memory: g.bytes,
            budget: cap,
            bandwidth_gbs: g.bandwidth_gbs,
            ..DeviceLoad::default()
        })
        .collect()
}

fn host_load(layout: &Layout, machine: &Machine, output_on_host: bool) -> DeviceLoad {
    let mut h = DeviceLoad {
        name: "host".into(),
        memory: machine.host_budget(),
        budget: machine.host_budget(),
        bandwidth_gbs: machine.cpu_bandwidth_gbs,
        ..DeviceLoad::default()
    };
    // The input embedding is read one row per token: not counted as active.
    h.weights = layout.token_embd.saturating_add(layout.other);
    h.active = layout.other;
    if output_on_host {
        h.weights = h.weights.saturating_add(layout.output);
        h.active = h.active.saturating_add(layout.output);
        h.output_layer = true;
    }
    h
}

fn finish(
    layout: &Layout,
    machine: &Machine,
    n_ctx: u64,
    mut gpus: Vec<DeviceLoad>,
    mut host: DeviceLoad,
) -> Placement {
    let compute = layout.compute(n_ctx);
    for g in gpus.iter_mut() {
        if !g.layers.is_empty() {
            g.compute = compute;
        }
        g.finish();
    }
    host.compute = if host.layers.is_empty() && host.experts == 0 && !machine.gpus.is_empty() {
        // Input embedding and graph inputs only.
        layout.facts.embedding_length.saturating_mul(512 * 8)
    } else {
        compute
    };
    host.finish();
    let layers_on_host = host.layers.len() as u32;
    let experts_on_host = host.experts;
    Placement {
        n_ctx,
        all_on_gpu: layers_on_host == 0 && experts_on_host == 0 && !host.output_layer,
        host_ok: host.headroom >= i64::try_from(machine.min_host_headroom).unwrap_or(i64::MAX),
        gpus,
        host,
        experts_on_host,
        layers_on_host,
    }
}

fn add_layer(d: &mut DeviceLoad, layout: &Layout, il: usize, n_ctx: u64, experts: u64) {
    let l = &layout.layers[il];
    d.layers.push(il as u32);
    d.weights = d.weights.saturating_add(l.weights).saturating_add(experts);
    d.experts = d.experts.saturating_add(experts);
    // An MTP block is read only when it drafts: not per token.
    if l.kind != LayerKind::Mtp {
        d.active = d
            .active
            .saturating_add(l.weights)
            .saturating_add(layout.active_experts(experts));
    }
    let cache = layout.cache(l, n_ctx);
    match l.kind {
        LayerKind::Attention => d.kv = d.kv.saturating_add(cache),
        LayerKind::Recurrent => d.recurrent = d.recurrent.saturating_add(cache),
        LayerKind::Mtp => {}
    }
}

/// Strategy A: every layer (experts included) and the output layer on the
/// GPUs, whole layers filled in order. `None` when they do not all fit.
pub fn place_all_gpu(layout: &Layout, machine: &Machine, n_ctx: u64) -> Option<Placement> {
    if machine.gpus.is_empty() {
        return None;
    }
    let compute = layout.compute(n_ctx);
    let mut gpus = new_gpu_loads(machine);
    let mut used = vec![0u64; gpus.len()];
    let mut d = 0;
    for (il, l) in layout.layers.iter().enumerate() {
        let need = l
            .weights
            .saturating_add(l.experts)
            .saturating_add(layout.cache(l, n_ctx));
        loop {
            let base = if gpus[d].layers.is_empty() {
                compute
            } else {
                0
            };
            let next = used[d].saturating_add(base).saturating_add(need);
            if next <= gpus[d].budget {
                used[d] = next;
                add_layer(&mut gpus[d], layout, il, n_ctx, l.experts);
                break;
            }
            d += 1;
            if d == gpus.len() {
                return None;
            }
        }
    }
    // The output layer follows the last layer.
    if used[d].saturating_add(layout.output_gpu) > gpus[d].budget {
        return None;
    }
    gpus[d].output_layer = true;
    gpus[d].weights = gpus[d].weights.saturating_add(layout.output_gpu);
    gpus[d].active = gpus[d].active.saturating_add(layout.output_gpu);
    let host = host_load(layout, machine, false);
    Some(finish(layout, machine, n_ctx, gpus, host))
}

/// `--fit` with CPU offload. Whole layers go to the GPUs in order, each GPU
/// taking its share of the model (in proportion to its memory); a layer's
/// routed experts stay with it where they fit, in thirds (gate, up, down),
/// and the rest stay in RAM; dense layers that do not fit stay in RAM whole.
/// At each GPU boundary the layer either goes whole to the next GPU or
/// stays, its experts partly in RAM: both are tried, the one with less in
/// RAM wins.
pub fn place_fit(layout: &Layout, machine: &Machine, n_ctx: u64) -> Placement {
    let floor = place_fit_with(layout, machine, n_ctx, false);
    if !layout.is_moe() || machine.gpus.len() < 2 {
        return floor;
    }
    let ceil = place_fit_with(layout, machine, n_ctx, true);
    if ceil.host.weights < floor.host.weights {
        ceil
    } else {
        floor
    }
}

fn place_fit_with(layout: &Layout, machine: &Machine, n_ctx: u64, ceil: bool) -> Placement {
    let compute = layout.compute(n_ctx);
    let mut gpus = new_gpu_loads(machine);
    let caps: Vec<u64> = gpus
        .iter()
        .map(|g| g.budget.saturating_sub(compute))
        .collect();
    let cores: Vec<u64> = layout
        .layers
        .iter()
        .map(|l| l.weights.saturating_add(layout.cache(l, n_ctx)))
        .collect();
    let fulls: Vec<u64> = layout
        .layers
        .iter()
        .zip(&cores)
        .map(|(l, c)| c.saturating_add(l.experts))
        .collect();
    let full_total = fulls
        .iter()
        .fold(layout.output_gpu, |a, &b| a.saturating_add(b));
    let cap_total = caps.iter().fold(0u64, |a, &b| a.saturating_add(b));
    let shares: Vec<u64> = if full_total <= cap_total && cap_total > 0 {
        caps.iter()
            .map(|c| (u128::from(*c) * u128::from(full_total) / u128::from(cap_total)) as u64)
            .collect()
    } else {
        caps.clone()
    };
    let mut core_used = vec![0u64; gpus.len()];
    let mut full_used = vec![0u64; gpus.len()];
    let mut on_gpu: Vec<Option<usize>> = vec![None; layout.layers.len()];
    let mut d = 0;
    for il in 0..layout.layers.len() {
        while d < gpus.len() {
            let last = d + 1 == gpus.len();
            let core_fits = core_used[d].saturating_add(cores[il]) <= caps[d];
            let take = if last {
                core_fits
            } else if ceil {
                core_fits && full_used[d] < shares[d]
            } else {
                core_fits
                    && full_used[d].saturating_add(fulls[il])
                        <= shares[d].max(fulls[il].min(caps[d]))
            };
            if take {
                core_used[d] = core_used[d].saturating_add(cores[il]);
                full_used[d] = full_used[d].saturating_add(fulls[il]);
                on_gpu[il] = Some(d);
                break;
            }
            d += 1;
        }
    }
    let mut used = core_used;
    // The output layer on the last GPU holding layers, if every layer is on
    // a GPU and it has room.
    let all_layers = on_gpu.iter().all(Option::is_some);
    let last_used = on_gpu.iter().flatten().max().copied();
    let mut output_on_gpu = None;
    if let (true, Some(ld)) = (all_layers, last_used) {
        if used[ld].saturating_add(layout.output_gpu) <= caps[ld] {
            used[ld] = used[ld].saturating_add(layout.output_gpu);
            output_on_gpu = Some(ld);
        }
    }
    // Experts: each GPU takes its own layers' experts while they fit.
    let mut host = host_load(layout, machine, output_on_gpu.is_none());
    for (il, l) in layout.layers.iter().enumerate() {
        match on_gpu[il] {
            Some(dev) => {
                let third = l.experts / 3;
                let mut here = 0;
                for part in [third, third, l.experts - 2 * third] {
                    if part > 0 && used[dev].saturating_add(part) <= caps[dev] {
                        used[dev] = used[dev].saturating_add(part);
                        here += part;
                    }
                }
                add_layer(&mut gpus[dev], layout, il, n_ctx, here);
                let away = l.experts - here;
                host.weights = host.weights.saturating_add(away);
                host.experts = host.experts.saturating_add(away);
                host.active = host.active.saturating_add(layout.active_experts(away));
            }
            None => add_layer(&mut host, layout, il, n_ctx, l.experts),
        }
    }
    if let Some(ld) = output_on_gpu {
        gpus[ld].output_layer = true;
        gpus[ld].weights = gpus[ld].weights.saturating_add(layout.output_gpu);
        gpus[ld].active = gpus[ld].active.saturating_add(layout.output_gpu);
    }
    finish(layout, machine, n_ctx, gpus, host)
}

/// Largest multiple of [`CONTEXT_STEP`] up to `max` (or `max` itself) for
/// which `ok` holds, assuming `ok` only fails more as the context grows.
pub fn largest_context(max: u64, ok: impl Fn(u64) -> bool) -> Option<u64> {
    if max == 0 {
        return None;
    }
    if ok(max) {
        return Some(max);
    }
    let (mut lo, mut hi) = (0u64, max / CONTEXT_STEP);
    if hi == 0 || !ok(CONTEXT_STEP) {
        return None;
    }
    lo += 1;
    // Invariant: ok(lo × step), and not ok(hi × step) or hi × step ≥ max.
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if ok(mid * CONTEXT_STEP) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    if hi * CONTEXT_STEP < max && ok(hi * CONTEXT_STEP) {
        lo = hi;
    }
    Some(lo * CONTEXT_STEP)
}

/// How the weights are placed, as the profile step names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Strategy A: every layer on the GPUs, explicit split, fit off.
    AllGpu,
    /// `--fit` across the GPUs, everything on them.
    Fit,
    /// `--fit` with routed experts (MoE) or whole layers (dense) in RAM.
    FitOffload,
    /// No GPU.
    Cpu,
}

impl Kind {
    /// In words, for reports.
    pub fn describe(self, moe: bool, gpus: usize) -> String {
        let across = match gpus {
            0 => "no GPU".to_string(),
            1 => "one GPU".to_string(),
            2 => "both GPUs".to_string(),
            n => format!("{n} GPUs"),
        };
        match self {
            Kind::AllGpu => {
                format!("Strategy A: all layers on the GPUs ({across}), explicit split")
            }
            Kind::Fit => format!("FIT ({across})"),
            Kind::FitOffload if moe => "FIT + CPU offload of experts".into(),
            Kind::FitOffload => "FIT + CPU offload of layers".into(),
            Kind::Cpu => "CPU only".into(),
        }
    }

    /// The [`Strategy`] a profile is written for.
    pub fn profile_strategy(self, moe: bool) -> Strategy {
        match self {
            Kind::AllGpu => Strategy::AllGpu,
            Kind::Fit => Strategy::Fit,
            // Dense layer offload is plain `--fit` in llama.cpp's terms.
            Kind::FitOffload if moe => Strategy::FitCpuMoe,
            Kind::FitOffload => Strategy::Fit,
            Kind::Cpu => Strategy::Cpu,
        }
    }
}

/// How the weights are placed, as the profile step takes it (`strategy:`).
#[derive(
    Debug, Clone, Copy, Serialize, serde::Deserialize, schemars::JsonSchema, PartialEq, Eq,
)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Strategy A: every layer on the GPUs, at a context that fits.
    AllGpu,
    /// llama.cpp `--fit` spreads layers over the GPUs.
    Fit,
    /// `--fit`, with expert tensors spilling to CPU RAM.
    FitCpuMoe,
    /// No GPU: everything in RAM.
    Cpu,
}

/// One strategy's best: its largest context and the placement there.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StrategyOption {
    pub kind: Kind,
    pub max_context: Option<u64>,
    pub placement: Option<Placement>,
}

/// Every strategy for one quant, and the production choice.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StrategyReport {
    pub trained_context: u64,
    pub options: Vec<StrategyOption>,
    /// The production strategy and its placement; `None`: nothing fits.
    pub chosen: Option<(Kind, Placement)>,
    /// At the trained context with fit + offload (for the reasons a quant
    /// is rejected).
    pub at_trained: Placement,
}

/// `--fit` across the GPUs, or fit with CPU offload. Layers are split
/// between GPUs whole, so the layer at a GPU boundary may leave some of its
/// experts in RAM: up to one layer's experts per boundary still counts as
/// fit across the GPUs; more (or any whole layer in RAM) is CPU offload.
pub fn fit_kind(layout: &Layout, machine: &Machine, p: &Placement) -> Kind {
    if p.all_on_gpu {
        return Kind::Fit;
    }
    let max_experts = layout.layers.iter().map(|l| l.experts).max().unwrap_or(0);
    let boundaries = machine.gpus.len().saturating_sub(1) as u64;
    if p.layers_on_host == 0
        && !p.host.output_layer
        && p.experts_on_host <= boundaries * max_experts
    {
        Kind::Fit
    } else {
        Kind::FitOffload
    }
}

/// Evaluates every strategy and picks the production one: the trained
/// context when any strategy gives it (everything on the GPUs first, then
/// fit with offload); otherwise the strategy with the largest context.
pub fn evaluate(layout: &Layout, machine: &Machine, trained_context: u64) -> StrategyReport {
    let at_trained = place_fit(layout, machine, trained_context);
    let mut options = Vec::new();
    if machine.gpus.is_empty() {
        let ctx = largest_context(trained_context, |c| place_fit(layout, machine, c).host_ok);
        let placement = ctx.map(|c| place_fit(layout, machine, c));
        let chosen = placement.clone().map(|p| (Kind::Cpu, p));
        options.push(StrategyOption {
            kind: Kind::Cpu,
            max_context: ctx,
            placement,
        });
        return StrategyReport {
            trained_context,
            options,
            chosen,
            at_trained,
        };
    }
    let all_ok = |c| place_all_gpu(layout, machine, c).is_some_and(|p| p.host_ok);
    let a_ctx = largest_context(trained_context, all_ok);
    let a = a_ctx.and_then(|c| place_all_gpu(layout, machine, c));
    let fit_ctx = largest_context(trained_context, |c| place_fit(layout, machine, c).host_ok);
    let fit = fit_ctx.map(|c| place_fit(layout, machine, c));
    options.push(StrategyOption {
        kind: Kind::AllGpu,
        max_context: a_ctx,
        placement: a.clone(),
    });
    options.push(StrategyOption {
        kind: fit
            .as_ref()
            .map_or(Kind::FitOffload, |p| fit_kind(layout, machine, p)),
        max_context: fit_ctx,
        placement: fit.clone(),
    });
    let chosen = match (a_ctx, fit_ctx) {
        (Some(c), _) if c == trained_context => a.map(|p| (Kind::Fit, p)),
        (_, Some(c)) if c == trained_context => fit.map(|p| (fit_kind(layout, machine, &p), p)),
        (Some(ac), Some(fc)) if ac >= fc => a.map(|p| (Kind::AllGpu, p)),
        (_, Some(_)) => fit.map(|p| (fit_kind(layout, machine, &p), p)),
        (Some(_), None) => a.map(|p| (Kind::AllGpu, p)),
        (None, None) => None,
    };
    StrategyReport {
        trained_context,
        options,
        chosen,
        at_trained,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn largest_context_search() {
        assert_eq!(largest_context(262_144, |c| c <= 100_000), Some(99_328));
        assert_eq!(largest_context(262_144, |_| true), Some(262_144));
        assert_eq!(largest_context(262_144, |_| false), None);
        assert_eq!(largest_context(4096, |c| c <= 3000), Some(2048));
        assert_eq!(largest_context(5000, |c| c <= 4999), Some(4096));
    }
}

#[cfg(test)]
mod machine_tests {
    use super::*;
    use crate::workspace::config::Gpu as GpuConfig;

    #[test]
    fn machine_from_hardware() {
        let hw = Hardware {
            gpus: vec![GpuConfig {
                name: "GPU 0".into(),
                vram_gib: 24.0,
                bandwidth_gbs: Some(936.0),
            }],
            ram_gib: Some(64.0),
            os_reserve_gib: Some(8.0),
            cpu_bandwidth_gbs: Some(60.0),
        };
        let m = Machine::from_hardware(&hw, 1024 << 20).unwrap();
        assert_eq!(m.host_budget(), 56 * GIB);
        assert_eq!(m.caps(), vec![23 * GIB]);
        // 10% of 56 GiB.
        assert_eq!(m.min_host_headroom, 56 * GIB / 10);
        let small = Hardware {
            ram_gib: Some(16.0),
            ..Hardware::default()
        };
        assert_eq!(
            Machine::from_hardware(&small, 0).unwrap().min_host_headroom,
            4 * GIB
        );
        let err = Machine::from_hardware(&Hardware::default(), 0).unwrap_err();
        assert!(err.contains("hardware.ram_gib") && err.contains("--detect"));
    }
}
