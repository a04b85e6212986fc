//! GGUF header fixtures with the real hyperparameters of the repository's models,
//! written by onboard's own writer. Tensor shapes follow llama.cpp's layout
//! for each architecture so sizes, parameter counts and active bytes are
//! realistic; the data section is never materialised (header bytes, or a
//! sparse file).

use onboard::gguf::reader::{Array, Value};
use onboard::gguf::types::GgmlType;
use onboard::gguf::writer::GgufWriter;

const F32: GgmlType = GgmlType::F32;

/// Common `general.*` and tokenizer keys (a short token list: the header's
/// size is not what these fixtures test).
fn general(w: &mut GgufWriter, arch: &str, name: &str, ftype: u32) {
    w.str("general.architecture", arch)
        .str("general.name", name)
        .u32("general.file_type", ftype)
        .u32("general.quantization_version", 2)
        .str("tokenizer.ggml.model", "gpt2")
        .kv(
            "tokenizer.ggml.tokens",
            Value::Array(Array::String(vec!["<a>".into(), "<b>".into(), "c".into()])),
        );
}

/// Qwen3.5 Gated-DeltaNet hyperparameters.
struct Linear {
    k_heads: u64,
    v_heads: u64,
    head_k: u64,
    head_v: u64,
    conv: u64,
}

fn qwen35_ssm_keys(w: &mut GgufWriter, arch: &str, l: &Linear) {
    let inner = l.v_heads * l.head_v;
    w.u32(&format!("{arch}.ssm.conv_kernel"), l.conv as u32)
        .u32(&format!("{arch}.ssm.state_size"), l.head_k as u32)
        .u32(&format!("{arch}.ssm.group_count"), l.k_heads as u32)
        .u32(&format!("{arch}.ssm.time_step_rank"), l.v_heads as u32)
        .u32(&format!("{arch}.ssm.inner_size"), inner as u32)
        .u32(&format!("{arch}.full_attention_interval"), 4);
}

/// One Qwen3.5 layer's attention or DeltaNet tensors.
#[allow(clippy::too_many_arguments)] // the hyperparameters, spelled out
fn qwen35_mixer(
    w: &mut GgufWriter,
    il: u64,
    embd: u64,
    heads: u64,
    kv: u64,
    hd: u64,
    l: &Linear,
    q: GgmlType,
) {
    let b = format!("blk.{il}");
    w.tensor(format!("{b}.attn_norm.weight"), &[embd], F32);
    if (il + 1).is_multiple_of(4) {
        // Full attention: q carries the output gate (2 × heads × head_dim).
        w.tensor(format!("{b}.attn_q.weight"), &[embd, 2 * heads * hd], q)
            .tensor(format!("{b}.attn_k.weight"), &[embd, kv * hd], q)
            .tensor(format!("{b}.attn_v.weight"), &[embd, kv * hd], q)
            .tensor(format!("{b}.attn_output.weight"), &[heads * hd, embd], q)
            .tensor(format!("{b}.attn_q_norm.weight"), &[hd], F32)
            .tensor(format!("{b}.attn_k_norm.weight"), &[hd], F32);
    } else {
        let inner = l.v_heads * l.head_v;
        let conv_ch = inner + 2 * l.k_heads * l.head_k;
        w.tensor(format!("{b}.attn_qkv.weight"), &[embd, conv_ch], q)
            .tensor(format!("{b}.attn_gate.weight"), &[embd, inner], q)
            .tensor(format!("{b}.ssm_conv1d.weight"), &[l.conv, conv_ch], F32)
            .tensor(format!("{b}.ssm_dt.bias"), &[l.v_heads], F32)
            .tensor(format!("{b}.ssm_a"), &[l.v_heads], F32)
            .tensor(format!("{b}.ssm_alpha.weight"), &[embd, l.v_heads], q)
            .tensor(format!("{b}.ssm_beta.weight"), &[embd, l.v_heads], q)
            .tensor(format!("{b}.ssm_norm.weight"), &[l.head_v], F32)
            .tensor(format!("{b}.ssm_out.weight"), &[inner, embd], q);
    }
    w.tensor(format!("{b}.post_attention_norm.weight"), &[embd], F32);
}

/// Qwen3.5-35B-A3B (`qwen35moe`): 40 layers (every 4th full attention),
/// 16 heads / 2 KV heads × 256, 256 experts (8 used, 1 shared) of 512,
/// hidden 2048, 262144 context. Q6_K weights (file type 18).
pub fn qwen35_35b_a3b() -> GgufWriter {
    let mut w = GgufWriter::new();
    general(&mut w, "qwen35moe", "Qwen3.5-35B-A3B", 18);
    qwen35moe(
        w,
        &MoeDims {
            n_layer: 40,
            embd: 2048,
            heads: 16,
            kv: 2,
            hd: 256,
            n_exp: 256,
            used: 8,
            exp_ff: 512,
            vocab: 248_320,
        },
        &Linear {
            k_heads: 16,
            v_heads: 32,
            head_k: 128,
            head_v: 128,
            conv: 4,
        },
        GgmlType::Q6_K,
    )
}

/// The 35B-A3B as the public GGUFs now ship it, with its
/// multi-token-prediction head: `block_count` 41, `nextn_predict_layers` 1,
/// block 40 a full attention + MoE block with the `nextn` projection and
/// norms. `declared`: whether the header has the key (else only the
/// tensor names tell).
pub fn qwen35_35b_a3b_mtp(declared: bool) -> GgufWriter {
    let mut w = qwen35_35b_a3b();
    let arch = "qwen35moe";
    w.u32(&format!("{arch}.block_count"), 41);
    if declared {
        w.u32(&format!("{arch}.nextn_predict_layers"), 1);
    }
    let (embd, heads, kv, hd, n_exp, exp_ff) = (2048, 16, 2, 256, 256, 512);
    let q = GgmlType::Q6_K;
    mtp_block(&mut w, 40, embd, heads, kv, hd, q);
    moe_ffn(&mut w, 40, embd, n_exp, exp_ff, q);
    w
}

/// The 27B with its prediction head: 65 blocks, block 64 a full attention
/// + dense FFN block with the `nextn` tensors.
pub fn qwen35_27b_mtp() -> GgufWriter {
    let mut w = qwen35_27b();
    let arch = "qwen35";
    w.u32(&format!("{arch}.block_count"), 65)
        .u32(&format!("{arch}.nextn_predict_layers"), 1);
    let (embd, heads, kv, hd, ff) = (5120, 24, 4, 256, 17_408);
    let q = GgmlType::Q8_0;
    mtp_block(&mut w, 64, embd, heads, kv, hd, q);
    let b = "blk.64";
    w.tensor(format!("{b}.ffn_gate.weight"), &[embd, ff], q)
        .tensor(format!("{b}.ffn_up.weight"), &[embd, ff], q)
        .tensor(format!("{b}.ffn_down.weight"), &[ff, embd], q);
    w
}

/// One Qwen3.5 MoE block's FFN: the router, the routed experts and the
/// shared expert.
pub fn moe_ffn(w: &mut GgufWriter, il: u64, embd: u64, n_exp: u64, exp_ff: u64, q: GgmlType) {
    let b = format!("blk.{il}");
    w.tensor(format!("{b}.ffn_gate_inp.weight"), &[embd, n_exp], F32)
        .tensor(
            format!("{b}.ffn_gate_exps.weight"),
            &[embd, exp_ff, n_exp],
            q,
        )
        .tensor(format!("{b}.ffn_up_exps.weight"), &[embd, exp_ff, n_exp], q)
        .tensor(
            format!("{b}.ffn_down_exps.weight"),
            &[exp_ff, embd, n_exp],
            q,
        )
        .tensor(format!("{b}.ffn_gate_inp_shexp.weight"), &[embd], F32)
        .tensor(format!("{b}.ffn_gate_shexp.weight"), &[embd, exp_ff], q)
        .tensor(format!("{b}.ffn_up_shexp.weight"), &[embd, exp_ff], q)
        .tensor(format!("{b}.ffn_down_shexp.weight"), &[exp_ff, embd], q);
}

/// An MTP block's attention and `nextn` tensors (its FFN is the caller's).
/// The bytes of layer `layer`'s tensors (an MTP tail's, say).
pub fn layer_bytes(facts: &onboard::gguf::ModelFacts, layer: u32) -> u64 {
    facts
        .tensors
        .iter()
        .filter(|t| t.layer == Some(layer))
        .map(|t| t.bytes.unwrap())
        .sum()
}

pub fn mtp_block(
    w: &mut GgufWriter,
    il: u64,
    embd: u64,
    heads: u64,
    kv: u64,
    hd: u64,
    q: GgmlType,
) {
    let b = format!("blk.{il}");
    w.tensor(format!("{b}.attn_norm.weight"), &[embd], F32)
        .tensor(format!("{b}.attn_q.weight"), &[embd, 2 * heads * hd], q)
        .tensor(format!("{b}.attn_k.weight"), &[embd, kv * hd], q)
        .tensor(format!("{b}.attn_v.weight"), &[embd, kv * hd], q)
        .tensor(format!("{b}.attn_output.weight"), &[heads * hd, embd], q)
        .tensor(format!("{b}.attn_q_norm.weight"), &[hd], F32)
        .tensor(format!("{b}.attn_k_norm.weight"), &[hd], F32)
        .tensor(format!("{b}.post_attention_norm.weight"), &[embd], F32)
        .tensor(format!("{b}.nextn.eh_proj.weight"), &[2 * embd, embd], q)
        .tensor(format!("{b}.nextn.enorm.weight"), &[embd], F32)
        .tensor(format!("{b}.nextn.hnorm.weight"), &[embd], F32)
        .tensor(format!("{b}.nextn.shared_head_norm.weight"), &[embd], F32);
}

/// A tiny `qwen35moe` (8 layers, 16 experts of 64, 4 used, F32, no
/// tokenizer) that llama.cpp can load.
pub fn qwen35moe_tiny() -> GgufWriter {
    let mut w = GgufWriter::new();
    w.str("general.architecture", "qwen35moe")
        .str("general.name", "qwen35moe-tiny")
        .u32("general.file_type", 0)
        .str("tokenizer.ggml.model", "none");
    let arch = "qwen35moe";
    w.f32(&format!("{arch}.attention.layer_norm_rms_epsilon"), 1e-6)
        .u32(&format!("{arch}.rope.dimension_count"), 16)
        .kv(
            &format!("{arch}.rope.dimension_sections"),
            Value::Array(Array::I32(vec![4, 2, 2, 0])),
        );
    qwen35moe(
        w,
        &MoeDims {
            n_layer: 8,
            embd: 256,
            heads: 4,
            kv: 2,
            hd: 64,
            n_exp: 16,
            used: 4,
            exp_ff: 64,
            vocab: 256,
        },
        &Linear {
            k_heads: 2,
            v_heads: 4,
            head_k: 32,
            head_v: 32,
            conv: 4,
        },
        F32,
    )
}

#[derive(Clone, Copy)]
pub struct MoeDims {
    pub n_layer: u64,
    pub embd: u64,
    pub heads: u64,
    pub kv: u64,
    pub hd: u64,
    pub n_exp: u64,
    pub used: u64,
    pub exp_ff: u64,
    pub vocab: u64,
}

fn qwen35moe(mut w: GgufWriter, d: &MoeDims, l: &Linear, q: GgmlType) -> GgufWriter {
    let arch = "qwen35moe";
    let MoeDims {
        n_layer,
        embd,
        heads,
        kv,
        hd,
        n_exp,
        used,
        exp_ff,
        vocab,
    } = *d;
    w.u32(&format!("{arch}.block_count"), n_layer as u32)
        .u32(&format!("{arch}.context_length"), 262_144)
        .u32(&format!("{arch}.embedding_length"), embd as u32)
        .u32(&format!("{arch}.attention.head_count"), heads as u32)
        .u32(&format!("{arch}.attention.head_count_kv"), kv as u32)
        .u32(&format!("{arch}.attention.key_length"), hd as u32)
        .u32(&format!("{arch}.attention.value_length"), hd as u32)
        .u32(&format!("{arch}.expert_count"), n_exp as u32)
        .u32(&format!("{arch}.expert_used_count"), used as u32)
        .u32(&format!("{arch}.expert_feed_forward_length"), exp_ff as u32)
        .u32(
            &format!("{arch}.expert_shared_feed_forward_length"),
            exp_ff as u32,
        )
        .u32(&format!("{arch}.vocab_size"), vocab as u32)
        .f32(&format!("{arch}.rope.freq_base"), 10_000_000.0);
    qwen35_ssm_keys(&mut w, arch, l);
    w.tensor("token_embd.weight", &[embd, vocab], q);
    for il in 0..n_layer {
        qwen35_mixer(&mut w, il, embd, heads, kv, hd, l, q);
        moe_ffn(&mut w, il, embd, n_exp, exp_ff, q);
    }
    w.tensor("output_norm.weight", &[embd], F32)
        .tensor("output.weight", &[embd, vocab], q);
    w
}

/// Qwen3.5-27B (`qwen35`, dense): 64 layers (16 attention), 24 heads / 4 KV
/// heads × 256, FFN 17408, 262144 context. Q8_0 weights (file type 7).
/// Hidden size 5120 as in the model's config.json (with 4096 the parameter
/// count comes out at 21.5 B, with 5120 at 26.9 B).
pub fn qwen35_27b() -> GgufWriter {
    let (arch, n_layer, embd, heads, kv, hd, ff) =
        ("qwen35", 64u64, 5120u64, 24u64, 4u64, 256u64, 17_408u64);
    let vocab = 248_320u64;
    let l = Linear {
        k_heads: 16,
        v_heads: 48,
        head_k: 128,
        head_v: 128,
        conv: 4,
    };
    let q = GgmlType::Q8_0;
    let mut w = GgufWriter::new();
    general(&mut w, arch, "Qwen3.5-27B", 7);
    w.u32(&format!("{arch}.block_count"), n_layer as u32)
        .u32(&format!("{arch}.context_length"), 262_144)
        .u32(&format!("{arch}.embedding_length"), embd as u32)
        .u32(&format!("{arch}.feed_forward_length"), ff as u32)
        .u32(&format!("{arch}.attention.head_count"), heads as u32)
        .u32(&format!("{arch}.attention.head_count_kv"), kv as u32)
        .u32(&format!("{arch}.attention.key_length"), hd as u32)
        .u32(&format!("{arch}.attention.value_length"), hd as u32)
        .u32(&format!("{arch}.vocab_size"), vocab as u32);
    qwen35_ssm_keys(&mut w, arch, &l);
    w.tensor("token_embd.weight", &[embd, vocab], q);
    for il in 0..n_layer {
        qwen35_mixer(&mut w, il, embd, heads, kv, hd, &l, q);
        let b = format!("blk.{il}");
        w.tensor(format!("{b}.ffn_gate.weight"), &[embd, ff], q)
            .tensor(format!("{b}.ffn_up.weight"), &[embd, ff], q)
            .tensor(format!("{b}.ffn_down.weight"), &[ff, embd], q);
    }
    w.tensor("output_norm.weight", &[embd], F32)
        .tensor("output.weight", &[embd, vocab], q);
    w
}

/// A Llama-3.1-8B-shaped model: 32 layers, 32 heads / 8 KV heads × 128,
/// FFN 14336, hidden 4096, vocab 128256, 131072 context; Q4_K_M (15).
pub fn llama_8b() -> GgufWriter {
    let (arch, n_layer, embd, heads, kv, ff, vocab) =
        ("llama", 32u64, 4096u64, 32u64, 8u64, 14_336u64, 128_256u64);
    let hd = embd / heads;
    let (q4, q6) = (GgmlType::Q4_K, GgmlType::Q6_K);
    let mut w = GgufWriter::new();
    general(&mut w, arch, "Llama 3.1 8B Instruct", 15);
    w.u32(&format!("{arch}.block_count"), n_layer as u32)
        .u32(&format!("{arch}.context_length"), 131_072)
        .u32(&format!("{arch}.embedding_length"), embd as u32)
        .u32(&format!("{arch}.feed_forward_length"), ff as u32)
        .u32(&format!("{arch}.attention.head_count"), heads as u32)
        .u32(&format!("{arch}.attention.head_count_kv"), kv as u32)
        .u32(&format!("{arch}.vocab_size"), vocab as u32);
    w.tensor("token_embd.weight", &[embd, vocab], q4);
    for il in 0..n_layer {
        let b = format!("blk.{il}");
        w.tensor(format!("{b}.attn_norm.weight"), &[embd], F32)
            .tensor(format!("{b}.attn_q.weight"), &[embd, embd], q4)
            .tensor(format!("{b}.attn_k.weight"), &[embd, kv * hd], q4)
            .tensor(format!("{b}.attn_v.weight"), &[embd, kv * hd], q6)
            .tensor(format!("{b}.attn_output.weight"), &[embd, embd], q4)
            .tensor(format!("{b}.ffn_norm.weight"), &[embd], F32)
            .tensor(format!("{b}.ffn_gate.weight"), &[embd, ff], q4)
            .tensor(format!("{b}.ffn_up.weight"), &[embd, ff], q4)
            .tensor(format!("{b}.ffn_down.weight"), &[ff, embd], q6);
    }
    w.tensor("output_norm.weight", &[embd], F32)
        .tensor("output.weight", &[embd, vocab], q6);
    w
}

/// Splits a model into `n` shards the way `llama-gguf-split` does: shard 0
/// keeps every key, the others only `split.*`; tensors are dealt in order.
pub fn split(model: &GgufWriter, n: u16) -> Vec<GgufWriter> {
    let total = model.tensors.len();
    let per = total.div_ceil(n as usize);
    (0..n)
        .map(|i| {
            let mut w = GgufWriter::new();
            if i == 0 {
                w.metadata = model.metadata.clone();
            }
            w.kv("split.no", Value::U16(i))
                .kv("split.count", Value::U16(n))
                .kv("split.tensors.count", Value::I32(total as i32));
            let lo = (i as usize * per).min(total);
            let hi = ((i as usize + 1) * per).min(total);
            w.tensors = model.tensors[lo..hi].to_vec();
            w
        })
        .collect()
}

/// A tiny `qwen35` (8 layers, every 4th attention, F32 weights, no
/// tokenizer) that llama.cpp itself can load: the fixture for holding the
/// KV and recurrent-state sizes against llama.cpp's own figures.
pub fn qwen35_tiny() -> GgufWriter {
    let (arch, n_layer, embd, heads, kv, hd, ff) =
        ("qwen35", 8u64, 256u64, 4u64, 2u64, 64u64, 512u64);
    let vocab = 256u64;
    let l = Linear {
        k_heads: 2,
        v_heads: 4,
        head_k: 32,
        head_v: 32,
        conv: 4,
    };
    let mut w = GgufWriter::new();
    w.str("general.architecture", arch)
        .str("general.name", "qwen35-tiny")
        .u32("general.file_type", 0)
        .str("tokenizer.ggml.model", "none");
    w.u32(&format!("{arch}.block_count"), n_layer as u32)
        .u32(&format!("{arch}.context_length"), 262_144)
        .u32(&format!("{arch}.embedding_length"), embd as u32)
        .u32(&format!("{arch}.feed_forward_length"), ff as u32)
        .u32(&format!("{arch}.attention.head_count"), heads as u32)
        .u32(&format!("{arch}.attention.head_count_kv"), kv as u32)
        .u32(&format!("{arch}.attention.key_length"), hd as u32)
        .u32(&format!("{arch}.attention.value_length"), hd as u32)
        .f32(&format!("{arch}.attention.layer_norm_rms_epsilon"), 1e-6)
        .u32(&format!("{arch}.rope.dimension_count"), 16)
        .kv(
            &format!("{arch}.rope.dimension_sections"),
            Value::Array(Array::I32(vec![4, 2, 2, 0])),
        )
        .f32(&format!("{arch}.rope.freq_base"), 10_000_000.0)
        .u32(&format!("{arch}.vocab_size"), vocab as u32);
    qwen35_ssm_keys(&mut w, arch, &l);
    w.tensor("token_embd.weight", &[embd, vocab], F32);
    for il in 0..n_layer {
        qwen35_mixer(&mut w, il, embd, heads, kv, hd, &l, F32);
        let b = format!("blk.{il}");
        w.tensor(format!("{b}.ffn_gate.weight"), &[embd, ff], F32)
            .tensor(format!("{b}.ffn_up.weight"), &[embd, ff], F32)
            .tensor(format!("{b}.ffn_down.weight"), &[ff, embd], F32);
    }
    w.tensor("output_norm.weight", &[embd], F32)
        .tensor("output.weight", &[embd, vocab], F32);
    w
}

/// A tiny `gemma3` (12 layers, sliding window 512 on 5 of every 6 layers,
/// F32, no tokenizer) that llama.cpp can load: holds the sliding-window KV
/// sizing against llama.cpp.
pub fn gemma3_tiny() -> GgufWriter {
    let (arch, n_layer, embd, heads, kv, hd, ff) =
        ("gemma3", 12u64, 256u64, 4u64, 2u64, 64u64, 512u64);
    let mut w = GgufWriter::new();
    w.str("general.architecture", arch)
        .str("general.name", "gemma3-tiny")
        .u32("general.file_type", 0)
        .str("tokenizer.ggml.model", "none")
        .u32(&format!("{arch}.block_count"), n_layer as u32)
        .u32(&format!("{arch}.context_length"), 131_072)
        .u32(&format!("{arch}.embedding_length"), embd as u32)
        .u32(&format!("{arch}.feed_forward_length"), ff as u32)
        .u32(&format!("{arch}.attention.head_count"), heads as u32)
        .u32(&format!("{arch}.attention.head_count_kv"), kv as u32)
        .u32(&format!("{arch}.attention.key_length"), hd as u32)
        .u32(&format!("{arch}.attention.value_length"), hd as u32)
        .u32(&format!("{arch}.attention.sliding_window"), 512)
        .f32(&format!("{arch}.attention.layer_norm_rms_epsilon"), 1e-6)
        .f32(&format!("{arch}.rope.freq_base"), 1_000_000.0)
        .u32(&format!("{arch}.vocab_size"), 256);
    w.tensor("token_embd.weight", &[embd, 256], F32);
    for il in 0..n_layer {
        let b = format!("blk.{il}");
        w.tensor(format!("{b}.attn_norm.weight"), &[embd], F32)
            .tensor(format!("{b}.attn_q.weight"), &[embd, heads * hd], F32)
            .tensor(format!("{b}.attn_k.weight"), &[embd, kv * hd], F32)
            .tensor(format!("{b}.attn_v.weight"), &[embd, kv * hd], F32)
            .tensor(format!("{b}.attn_q_norm.weight"), &[hd], F32)
            .tensor(format!("{b}.attn_k_norm.weight"), &[hd], F32)
            .tensor(format!("{b}.attn_output.weight"), &[heads * hd, embd], F32)
            .tensor(format!("{b}.post_attention_norm.weight"), &[embd], F32)
            .tensor(format!("{b}.ffn_norm.weight"), &[embd], F32)
            .tensor(format!("{b}.ffn_gate.weight"), &[embd, ff], F32)
            .tensor(format!("{b}.ffn_up.weight"), &[embd, ff], F32)
            .tensor(format!("{b}.ffn_down.weight"), &[ff, embd], F32)
            .tensor(format!("{b}.post_ffw_norm.weight"), &[embd], F32);
    }
    w.tensor("output_norm.weight", &[embd], F32);
    w
}

/// `qwen35_tiny` with its matrices in Q8_0, split in `n` like
/// `llama-gguf-split`, each shard's data section replaced by `noise(len,
/// index)`: the header is what evaluate reads, the bytes what a download
/// verifies.
pub fn tiny_q8_shards(n: u16, noise: impl Fn(usize, u64) -> Vec<u8>) -> Vec<Vec<u8>> {
    let mut model = qwen35_tiny();
    model.u32("general.file_type", 7);
    for t in &mut model.tensors {
        if t.dims.len() == 2 && t.dims[0] % 32 == 0 {
            t.ty = GgmlType::Q8_0;
        }
    }
    split(&model, n)
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let mut data = w.to_bytes();
            let header = w.header_bytes().len();
            let noise = noise(data.len() - header, i as u64);
            data[header..].copy_from_slice(&noise);
            data
        })
        .collect()
}
