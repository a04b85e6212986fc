//! Model facts derived from GGUF header(s): what the memory model, the
//! strategy and the report need, with "unknown, because …" where the file or
//! onboard's knowledge of the architecture does not say.

use super::shard::ShardName;
use std::collections::BTreeMap;

use serde::Serialize;

use super::reader::{Array, Header, Value};
use super::types::{FileType, GgmlType};

/// A fact that may be unknown; the reason says why instead of guessing.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum Fact<T> {
    Known { value: T },
    Unknown { reason: String },
}

impl<T> Fact<T> {
    pub fn known(value: T) -> Fact<T> {
        Fact::Known { value }
    }

    pub fn unknown(reason: impl Into<String>) -> Fact<T> {
        Fact::Unknown {
            reason: reason.into(),
        }
    }

    pub fn value(&self) -> Option<&T> {
        match self {
            Fact::Known { value } => Some(value),
            Fact::Unknown { .. } => None,
        }
    }

    /// The value or the reason it is unknown.
    pub fn result(&self) -> Result<&T, String> {
        match self {
            Fact::Known { value } => Ok(value),
            Fact::Unknown { reason } => Err(reason.clone()),
        }
    }
}

/// What a layer keeps per sequence: a KV cache that grows with the context,
/// or a fixed-size recurrent state (Gated DeltaNet, Mamba).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LayerKind {
    Attention,
    Recurrent,
    /// A multi-token-prediction block after the trunk (`nextn`): weights for
    /// speculative decoding, no part of the trunk's caches.
    Mtp,
}

/// Mixture-of-experts hyperparameters.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Experts {
    pub total: u64,
    pub used: u64,
    pub shared: u64,
    /// Intermediate size of one routed expert.
    pub feed_forward_length: Option<u64>,
    /// Intermediate size of the shared expert.
    pub shared_feed_forward_length: Option<u64>,
}

/// `{arch}.ssm.*`: sizes of the recurrent state (llama.cpp's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Ssm {
    pub conv_kernel: u64,
    pub inner_size: u64,
    pub state_size: u64,
    pub group_count: u64,
    pub time_step_rank: u64,
}

/// Tensors of one ggml type.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TypeTally {
    pub tensors: u64,
    pub elements: u64,
    /// `None` when the type's size is unknown.
    pub bytes: Option<u64>,
}

/// One tensor's size and where it belongs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TensorSize {
    pub name: String,
    pub ty: GgmlType,
    pub bytes: Option<u64>,
    /// `blk.N.` layer, if any.
    pub layer: Option<u32>,
    /// A routed-expert tensor (`ffn_*_exps`).
    pub expert: bool,
    /// Index of the shard holding it (0-based).
    pub shard: u32,
}

/// Everything the later phases need to know about a model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelFacts {
    pub architecture: String,
    pub name: Option<String>,
    pub file_type: Option<FileType>,
    pub file_type_label: Option<String>,
    pub shard_count: u32,
    pub parameter_count: u64,
    /// Every block of the file, MTP blocks included (llama.cpp places them
    /// by this index, after the trunk).
    pub block_count: u32,
    /// Multi-token-prediction blocks at the end (`{arch}.nextn_predict_layers`,
    /// or the blocks holding `blk.N.nextn.*` tensors); 0 for most models.
    pub mtp_layers: u32,
    /// Kind of each layer, in order.
    pub layers: Fact<Vec<LayerKind>>,
    pub embedding_length: u64,
    pub head_count: u64,
    /// KV heads per layer (a scalar key is repeated).
    pub head_count_kv: Vec<u64>,
    pub key_length: u64,
    pub value_length: u64,
    /// Dense FFN intermediate size (largest layer's, if per layer).
    pub feed_forward_length: Option<u64>,
    pub experts: Option<Experts>,
    pub ssm: Option<Ssm>,
    pub vocab_size: Option<u64>,
    pub context_length: Option<u64>,
    pub sliding_window: Option<u64>,
    /// Per layer: attention limited to the sliding window (its KV cache holds
    /// only the window). All false when the model has no window.
    pub sliding_window_layers: Vec<bool>,
    /// By type name.
    pub tensor_types: BTreeMap<String, TypeTally>,
    pub tensors: Vec<TensorSize>,
    /// Sum of known tensor sizes.
    pub total_bytes: u64,
    /// Tensors whose type this build does not know.
    pub unknown_type_tensors: Vec<String>,
    /// Weight bytes read to produce one token.
    pub active_bytes_per_token: Fact<u64>,
}

impl ModelFacts {
    /// The layers that run every token: all blocks but the MTP tail.
    pub fn trunk_layers(&self) -> u32 {
        self.block_count.saturating_sub(self.mtp_layers)
    }

    /// `40`, or `40 + 1 MTP` when the file carries a prediction tail.
    pub fn layers_label(&self) -> String {
        match self.mtp_layers {
            0 => self.block_count.to_string(),
            n => format!("{} + {n} MTP", self.trunk_layers()),
        }
    }

    /// Indices of attention layers (empty when the layout is unknown).
    pub fn attention_layers(&self) -> Vec<u32> {
        self.layers_of(LayerKind::Attention)
    }

    /// Indices of recurrent layers (empty when the layout is unknown).
    pub fn recurrent_layers(&self) -> Vec<u32> {
        self.layers_of(LayerKind::Recurrent)
    }

    fn layers_of(&self, kind: LayerKind) -> Vec<u32> {
        match &self.layers {
            Fact::Known { value } => value
                .iter()
                .enumerate()
                .filter(|(_, k)| **k == kind)
                .map(|(i, _)| i as u32)
                .collect(),
            Fact::Unknown { .. } => Vec::new(),
        }
    }

    /// Bytes of layer `il`'s tensors: (all, of which routed experts).
    pub fn layer_bytes(&self, il: u32) -> (u64, u64) {
        self.tensors
            .iter()
            .filter(|t| t.layer == Some(il))
            .fold((0, 0), |(all, exp), t| {
                let b = t.bytes.unwrap_or(0);
                let e = if t.expert { b } else { 0 };
                (all.saturating_add(b), exp.saturating_add(e))
            })
    }

    /// Bytes of a non-layer tensor group: `token_embd`, `output` (output and
    /// output_norm), or anything else outside `blk.N`.
    pub fn global_bytes(&self, group: GlobalGroup) -> u64 {
        self.tensors
            .iter()
            .filter(|t| t.layer.is_none() && GlobalGroup::of(&t.name) == group)
            .fold(0u64, |acc, t| acc.saturating_add(t.bytes.unwrap_or(0)))
    }

    /// No `output.weight`: llama.cpp computes the logits with `token_embd`
    /// (tied embeddings), and duplicates it onto the output layer's device.
    pub fn output_tied(&self) -> bool {
        let has = |name: &str| self.tensors.iter().any(|t| t.name == name);
        !has("output.weight") && has("token_embd.weight")
    }

    pub fn is_moe(&self) -> bool {
        self.experts.is_some() || self.tensors.iter().any(|t| t.expert)
    }
}

/// Tensors outside the repeating layers, grouped the way llama.cpp places them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GlobalGroup {
    /// The input embedding: always on the CPU in llama.cpp.
    TokenEmbd,
    /// `output.weight`, `output_norm.*`: on the last GPU when all layers are.
    Output,
    Other,
}

impl GlobalGroup {
    pub fn of(name: &str) -> GlobalGroup {
        if name.starts_with("token_embd") {
            GlobalGroup::TokenEmbd
        } else if name.starts_with("output") {
            GlobalGroup::Output
        } else {
            GlobalGroup::Other
        }
    }
}

/// Why facts could not be derived.
#[derive(Debug, thiserror::Error)]
pub enum FactsError {
    #[error("{file}: metadata key '{key}' is missing or not {expected}")]
    MissingKey {
        file: String,
        key: String,
        expected: &'static str,
    },
    #[error("{file}: shards do not belong together: {problem}")]
    ShardMismatch { file: String, problem: String },
    #[error("{file}: metadata key '{key}' is {value}, more than the {max} onboard accepts")]
    Implausible {
        file: String,
        key: String,
        value: u64,
        max: u64,
    },
    #[error("no GGUF headers given")]
    NoHeaders,
}

/// Most layers a model may claim (the largest today have a few hundred).
pub const MAX_LAYERS: u64 = 1 << 16;
/// Largest hyperparameter accepted (llama.cpp keeps them in `uint32_t`).
pub const MAX_DIM: u64 = u32::MAX as u64;

/// Architectures where every layer is an attention layer (a KV cache per layer).
const ALL_ATTENTION: &[&str] = &[
    "llama",
    "llama4",
    "mistral3",
    "qwen2",
    "qwen2moe",
    "qwen3",
    "qwen3moe",
    "phi2",
    "phi3",
    "starcoder2",
    "gemma",
    "gemma2",
    "gemma3",
    "command-r",
    "cohere2",
    "olmo2",
    "glm4",
    "glm4moe",
    "gpt-oss",
    "deepseek2",
    "granite",
    "granitemoe",
    "ernie4_5",
    "ernie4_5-moe",
    "smollm3",
    "exaone4",
    "hunyuan-moe",
];

/// Architectures made only of recurrent layers.
const ALL_RECURRENT: &[&str] = &["mamba", "mamba2", "rwkv6", "rwkv7"];

/// Hybrids whose layout comes from `full_attention_interval` or
/// `attention.recurrent_layers`.
const INTERVAL_HYBRIDS: &[&str] = &["qwen35", "qwen35moe", "qwen3next"];

/// Facts from one complete (unsplit) file's header.
pub fn facts(header: &Header) -> Result<ModelFacts, FactsError> {
    facts_from_shards(std::slice::from_ref(header))
}

/// Facts from every shard of a split model (or one header). Shard order does
/// not matter; `split.no` decides. Only the first shard carries the full key
/// set; the others contribute tensors.
pub fn facts_from_shards(headers: &[Header]) -> Result<ModelFacts, FactsError> {
    let ordered = order_shards(headers)?;
    let first = ordered[0];
    let file = first.source.as_str();
    let arch = first
        .architecture()
        .ok_or_else(|| missing(file, "general.architecture", "a string"))?
        .to_string();
    let k = |suffix: &str| format!("{arch}.{suffix}");

    // Bounds first: every later product of hyperparameters fits u128, and
    // per-layer vectors are sized by a checked block count.
    for (key, v) in &first.metadata {
        if key.starts_with(&format!("{arch}.")) {
            let vals = match v {
                Value::Array(a) => a.as_integers().unwrap_or_default(),
                other => other.as_u64().map(i128::from).into_iter().collect(),
            };
            if let Some(&big) = vals.iter().find(|x| **x > i128::from(MAX_DIM)) {
                return Err(FactsError::Implausible {
                    file: file.to_string(),
                    key: key.clone(),
                    value: u64::try_from(big).unwrap_or(u64::MAX),
                    max: MAX_DIM,
                });
            }
        }
    }
    let block_count = first
        .get_u64(&k("block_count"))
        .ok_or_else(|| missing(file, &k("block_count"), "an integer"))?;
    if block_count > MAX_LAYERS {
        return Err(FactsError::Implausible {
            file: file.to_string(),
            key: k("block_count"),
            value: block_count,
            max: MAX_LAYERS,
        });
    }
    let block_count = block_count as u32;
    let embedding_length = first
        .get_u64(&k("embedding_length"))
        .ok_or_else(|| missing(file, &k("embedding_length"), "an integer"))?;
    let head_count = per_layer(first, &k("attention.head_count"), block_count)
        .and_then(|v| v.into_iter().max())
        .unwrap_or(0);
    let head_count_kv = per_layer(first, &k("attention.head_count_kv"), block_count)
        .unwrap_or_else(|| vec![head_count; block_count as usize]);
    let default_head_dim = embedding_length.checked_div(head_count).unwrap_or(0);
    let key_length = first
        .get_u64(&k("attention.key_length"))
        .unwrap_or(default_head_dim);
    let value_length = first
        .get_u64(&k("attention.value_length"))
        .unwrap_or(default_head_dim);
    let feed_forward_length = per_layer(first, &k("feed_forward_length"), block_count)
        .and_then(|v| v.into_iter().max())
        .filter(|v| *v > 0);

    // Tensors from every shard.
    let mut tensors = Vec::new();
    for (shard, h) in ordered.iter().enumerate() {
        for t in &h.tensors {
            tensors.push(TensorSize {
                name: t.name.clone(),
                ty: t.ty,
                bytes: t.n_bytes(),
                layer: layer_of(&t.name),
                expert: is_expert_tensor(&t.name),
                shard: shard as u32,
            });
        }
    }
    let has_shexp = ordered
        .iter()
        .flat_map(|h| &h.tensors)
        .any(|t| t.name.contains("_shexp"));

    let experts = first
        .get_u64(&k("expert_count"))
        .filter(|n| *n > 0)
        .map(|total| Experts {
            total,
            used: first.get_u64(&k("expert_used_count")).unwrap_or(0),
            shared: first
                .get_u64(&k("expert_shared_count"))
                .unwrap_or(u64::from(has_shexp)),
            feed_forward_length: first.get_u64(&k("expert_feed_forward_length")),
            shared_feed_forward_length: first.get_u64(&k("expert_shared_feed_forward_length")),
        });

    let ssm = match (
        first.get_u64(&k("ssm.conv_kernel")),
        first.get_u64(&k("ssm.inner_size")),
        first.get_u64(&k("ssm.state_size")),
    ) {
        (Some(conv_kernel), Some(inner_size), Some(state_size)) => Some(Ssm {
            conv_kernel,
            inner_size,
            state_size,
            group_count: first.get_u64(&k("ssm.group_count")).unwrap_or(0),
            time_step_rank: first.get_u64(&k("ssm.time_step_rank")).unwrap_or(0),
        }),
        _ => None,
    };

    let mtp_layers = mtp_tail(first, &ordered, &arch, block_count);
    let layers = match layer_layout(first, &arch, block_count, mtp_layers, &head_count_kv) {
        Fact::Known { value } => {
            // The tail is no trunk layer, whatever the interval rule says
            // of its index.
            let trunk = (block_count - mtp_layers) as usize;
            Fact::known(
                value
                    .into_iter()
                    .enumerate()
                    .map(|(i, k)| if i < trunk { k } else { LayerKind::Mtp })
                    .collect(),
            )
        }
        unknown => unknown,
    };
    let sliding_window = first
        .get_u64(&k("attention.sliding_window"))
        .filter(|w| *w > 0);
    let sliding_window_layers = match sliding_window {
        Some(_) => swa_layers(first, &arch, block_count),
        None => vec![false; block_count as usize],
    };

    let mut tensor_types: BTreeMap<String, TypeTally> = BTreeMap::new();
    let mut parameter_count = 0u64;
    let mut total_bytes = 0u64;
    let mut unknown_type_tensors = Vec::new();
    for h in &ordered {
        for t in &h.tensors {
            let n = t.n_elements().unwrap_or(0);
            parameter_count = parameter_count.saturating_add(n);
            let e = tensor_types
                .entry(t.ty.name())
                .or_insert_with(|| TypeTally {
                    bytes: Some(0),
                    ..TypeTally::default()
                });
            e.tensors += 1;
            e.elements = e.elements.saturating_add(n);
            match t.n_bytes() {
                Some(b) => {
                    total_bytes = total_bytes.saturating_add(b);
                    e.bytes = e.bytes.map(|x| x.saturating_add(b));
                }
                None => {
                    e.bytes = None;
                    unknown_type_tensors.push(t.name.clone());
                }
            }
        }
    }

    // The MTP tail runs only when it drafts tokens: no part of a token's
    // trunk pass.
    let trunk = block_count - mtp_layers;
    let tail_bytes: u64 = tensors
        .iter()
        .filter(|t| t.layer.is_some_and(|il| il >= trunk))
        .filter_map(|t| t.bytes)
        .sum();
    let trunk_tensors: Vec<TensorSize> = tensors
        .iter()
        .filter(|t| t.layer.is_none_or(|il| il < trunk))
        .cloned()
        .collect();
    let active_bytes_per_token = active_bytes(
        &trunk_tensors,
        experts.as_ref(),
        &unknown_type_tensors,
        total_bytes.saturating_sub(tail_bytes),
    );

    let vocab_size = first.get_u64(&k("vocab_size")).or_else(|| {
        first
            .get_array("tokenizer.ggml.tokens")
            .map(|a| a.len() as u64)
    });

    Ok(ModelFacts {
        name: first.get_str("general.name").map(str::to_string),
        file_type: first
            .get_u64("general.file_type")
            .and_then(|v| u32::try_from(v).ok())
            .map(FileType),
        file_type_label: first
            .get_u64("general.file_type")
            .and_then(|v| u32::try_from(v).ok())
            .map(|v| FileType(v).label()),
        shard_count: ordered.len() as u32,
        parameter_count,
        block_count,
        mtp_layers,
        layers,
        embedding_length,
        head_count,
        head_count_kv,
        key_length,
        value_length,
        feed_forward_length,
        experts,
        ssm,
        vocab_size,
        context_length: first.get_u64(&k("context_length")),
        sliding_window,
        sliding_window_layers,
        tensor_types,
        tensors,
        total_bytes,
        unknown_type_tensors,
        active_bytes_per_token,
        architecture: arch,
    })
}

fn missing(file: &str, key: &str, expected: &'static str) -> FactsError {
    FactsError::MissingKey {
        file: file.to_string(),
        key: key.to_string(),
        expected,
    }
}

/// Sorts shards by `split.no` and checks they belong together.
fn order_shards(headers: &[Header]) -> Result<Vec<&Header>, FactsError> {
    let first = headers.first().ok_or(FactsError::NoHeaders)?;
    let count = first.get_u64("split.count");
    if headers.len() == 1 && count.unwrap_or(1) <= 1 {
        return Ok(vec![first]);
    }
    let mismatch = |file: &str, problem: String| FactsError::ShardMismatch {
        file: file.to_string(),
        problem,
    };
    let count = count.ok_or_else(|| {
        mismatch(
            &first.source,
            format!(
                "{} headers given but 'split.count' is missing",
                headers.len()
            ),
        )
    })?;
    if count != headers.len() as u64 {
        return Err(mismatch(
            &first.source,
            format!(
                "split.count is {count} but {} shards were given",
                headers.len()
            ),
        ));
    }
    let mut slots: Vec<Option<&Header>> = vec![None; headers.len()];
    for h in headers {
        let no = h
            .get_u64("split.no")
            .ok_or_else(|| mismatch(&h.source, "'split.no' is missing".into()))?;
        if h.get_u64("split.count") != Some(count) {
            return Err(mismatch(
                &h.source,
                format!("split.count differs from {count}"),
            ));
        }
        let slot = usize::try_from(no)
            .ok()
            .and_then(|i| slots.get_mut(i))
            .ok_or_else(|| mismatch(&h.source, format!("split.no {no} is not below {count}")))?;
        if slot.is_some() {
            return Err(mismatch(&h.source, format!("split.no {no} appears twice")));
        }
        *slot = Some(h);
    }
    let ordered: Vec<&Header> = slots.into_iter().flatten().collect();
    let lead = ordered[0];
    if lead.architecture().is_none() {
        return Err(mismatch(
            &lead.source,
            "shard 1 (split.no 0) carries no general.architecture".into(),
        ));
    }
    for h in &ordered[1..] {
        if let Some(a) = h.architecture() {
            if Some(a) != lead.architecture() {
                return Err(mismatch(
                    &h.source,
                    format!("architecture '{a}' differs from shard 1's"),
                ));
            }
        }
    }
    // Names `{prefix}-{n:05}-of-{count:05}.gguf` must agree with split.no
    // and share one prefix: the clearest sign of a foreign shard.
    if let Some(lead_name) = ShardName::parse(file_part(&lead.source)) {
        for (i, h) in ordered.iter().enumerate() {
            if let Some(name) = ShardName::parse(file_part(&h.source)) {
                let (prefix, n, c) = (name.prefix, u64::from(name.index), u64::from(name.count));
                let lead_prefix = lead_name.prefix;
                if prefix != lead_prefix || n != i as u64 + 1 || c != count {
                    return Err(mismatch(
                        &h.source,
                        format!(
                            "its name says shard {n} of {c} of '{prefix}', its header says \
                             shard {} of {count} of '{lead_prefix}'",
                            i + 1
                        ),
                    ));
                }
            }
        }
    }
    let total: usize = ordered.iter().map(|h| h.tensors.len()).sum();
    for h in &ordered {
        if let Some(n) = h.get_u64("split.tensors.count") {
            if n != total as u64 {
                let held: Vec<String> = ordered
                    .iter()
                    .map(|h| format!("{}: {}", h.source, h.tensors.len()))
                    .collect();
                return Err(mismatch(
                    &h.source,
                    format!(
                        "split.tensors.count is {n} but the shards hold {total} tensors ({})",
                        held.join(", ")
                    ),
                ));
            }
        }
    }
    Ok(ordered)
}

/// The file name of a header's source path.
fn file_part(source: &str) -> &str {
    source.rsplit(['/', '\\']).next().unwrap_or(source)
}

/// A scalar key repeated per layer, or a per-layer array of `n` entries.
fn per_layer(h: &Header, key: &str, n: u32) -> Option<Vec<u64>> {
    let v = h.get(key)?;
    if let Some(x) = v.as_u64() {
        return Some(vec![x; n as usize]);
    }
    let ints = v.as_array()?.as_integers()?;
    if ints.len() != n as usize {
        return None;
    }
    ints.into_iter().map(|x| u64::try_from(x).ok()).collect()
}

fn layer_of(name: &str) -> Option<u32> {
    let rest = name.strip_prefix("blk.")?;
    rest.split('.').next()?.parse().ok()
}

/// Routed-expert weights: `blk.N.ffn_{gate,up,down,gate_up}_exps.*`.
pub fn is_expert_tensor(name: &str) -> bool {
    name.contains("_exps.") || name.ends_with("_exps")
}

fn layer_layout(
    h: &Header,
    arch: &str,
    n_layer: u32,
    mtp_layers: u32,
    head_count_kv: &[u64],
) -> Fact<Vec<LayerKind>> {
    let n = n_layer as usize;
    let trunk = n - mtp_layers as usize;
    let key = format!("{arch}.attention.recurrent_layers");
    if let Some(v) = h.get(&key) {
        let Some(ints) = v.as_array().and_then(Array::as_integers) else {
            return Fact::unknown(format!("'{key}' is not an integer or bool array"));
        };
        // Flags for every block, or for the trunk alone.
        let flag_count = ints.len() == n || ints.len() == trunk;
        let is_flags = v.as_array().map(Array::element_type) == Some(super::ValueType::Bool)
            || (flag_count && ints.iter().all(|x| *x == 0 || *x == 1));
        let mut kinds = vec![LayerKind::Attention; n];
        if is_flags {
            if !flag_count {
                return Fact::unknown(format!("'{key}' has {} entries for {n} layers", ints.len()));
            }
            for (i, f) in ints.iter().enumerate() {
                if *f != 0 {
                    kinds[i] = LayerKind::Recurrent;
                }
            }
        } else {
            for idx in ints {
                match usize::try_from(idx).ok().filter(|i| *i < n) {
                    Some(i) => kinds[i] = LayerKind::Recurrent,
                    None => return Fact::unknown(format!("'{key}' names layer {idx} of {n}")),
                }
            }
        }
        return Fact::known(kinds);
    }
    let key = format!("{arch}.full_attention_interval");
    if let Some(interval) = h.get_u64(&key) {
        if interval == 0 {
            return Fact::unknown(format!("'{key}' is 0"));
        }
        return Fact::known(
            (0..n as u64)
                .map(|i| {
                    if (i + 1) % interval == 0 {
                        LayerKind::Attention
                    } else {
                        LayerKind::Recurrent
                    }
                })
                .collect(),
        );
    }
    if INTERVAL_HYBRIDS.contains(&arch) {
        return Fact::unknown(format!(
            "'{arch}' is a hybrid but neither '{arch}.full_attention_interval' nor \
             '{arch}.attention.recurrent_layers' is present"
        ));
    }
    if ALL_RECURRENT.contains(&arch) {
        return Fact::known(vec![LayerKind::Recurrent; n]);
    }
    if ALL_ATTENTION.contains(&arch) {
        return Fact::known(vec![LayerKind::Attention; n]);
    }
    // Hybrids such as granitehybrid / nemotron_h mark recurrent layers with
    // zero KV heads, as llama.cpp reads them.
    let has_ssm = h.get(&format!("{arch}.ssm.state_size")).is_some();
    if has_ssm && head_count_kv.len() == n && head_count_kv.contains(&0) {
        return Fact::known(
            head_count_kv
                .iter()
                .map(|&kv| {
                    if kv == 0 {
                        LayerKind::Recurrent
                    } else {
                        LayerKind::Attention
                    }
                })
                .collect(),
        );
    }
    Fact::unknown(format!(
        "architecture '{arch}' is not in onboard's table and its header does not say which \
         layers are attention and which recurrent"
    ))
}

/// How many blocks at the end are multi-token-prediction blocks: the
/// header's `{arch}.nextn_predict_layers`, else the blocks whose tensors
/// are named `blk.N.nextn.*` (at the end: a prediction head follows the
/// trunk). Never the whole model.
fn mtp_tail(first: &Header, shards: &[&Header], arch: &str, block_count: u32) -> u32 {
    let declared = first
        .get_u64(&format!("{arch}.nextn_predict_layers"))
        .and_then(|n| u32::try_from(n).ok());
    let n = declared.unwrap_or_else(|| {
        let mut nextn: Vec<u32> = shards
            .iter()
            .flat_map(|h| &h.tensors)
            .filter(|t| t.name.contains(".nextn."))
            .filter_map(|t| layer_of(&t.name))
            .collect();
        nextn.sort_unstable();
        nextn.dedup();
        // Only a run of blocks that ends the model counts as its tail.
        let mut tail = 0;
        for il in nextn.iter().rev() {
            if *il + 1 + tail == block_count {
                tail += 1;
            }
        }
        tail
    });
    n.min(block_count.saturating_sub(1))
}

/// Which layers use the sliding window: `{arch}.attention.sliding_window_pattern`
/// when the file has it, else llama.cpp's fixed pattern for the architecture
/// (every n-th layer full attention, the others windowed). An architecture
/// with a window but no known pattern counts all layers as full: the KV
/// figure is then an upper bound, never an underestimate.
fn swa_layers(h: &Header, arch: &str, n_layer: u32) -> Vec<bool> {
    let n = n_layer as usize;
    if let Some(ints) = h
        .get_array(&format!("{arch}.attention.sliding_window_pattern"))
        .and_then(Array::as_integers)
    {
        if ints.len() == n {
            return ints.iter().map(|x| *x != 0).collect();
        }
    }
    let pattern = match arch {
        "gpt-oss" | "gemma2" => 2,
        "cohere2" => 4,
        "gemma3" => 6,
        _ => return vec![false; n],
    };
    (0..n).map(|il| il % pattern < pattern - 1).collect()
}

fn active_bytes(
    tensors: &[TensorSize],
    experts: Option<&Experts>,
    unknown: &[String],
    total: u64,
) -> Fact<u64> {
    if let Some(name) = unknown.first() {
        return Fact::unknown(format!("tensor '{name}' has a type of unknown size"));
    }
    let expert_bytes: u64 = tensors
        .iter()
        .filter(|t| t.expert)
        .filter_map(|t| t.bytes)
        .sum();
    if expert_bytes == 0 {
        return Fact::known(total);
    }
    match experts {
        Some(e) if e.total > 0 && e.used > 0 && e.used <= e.total => {
            let shared = total.saturating_sub(expert_bytes);
            // u128: 100 GB × 256 does not fit u64.
            let used = (u128::from(expert_bytes) * u128::from(e.used) / u128::from(e.total)) as u64;
            Fact::known(shared.saturating_add(used))
        }
        _ => Fact::unknown(
            "the file has routed-expert tensors but no valid expert_count/expert_used_count",
        ),
    }
}
