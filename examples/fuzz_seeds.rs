//! Writes the fuzz targets' seed corpora into `fuzz/corpus/<target>/`:
//! tiny GGUF headers from onboard's own writer (one per layer layout the
//! facts distinguish, every metadata type, shards, truncations), the repo's
//! workflows, manifests and `onboard.yaml`, the `tests/invalid` files, and
//! models.conf samples with edits.
//!
//! ```text
//! cargo run --no-default-features --example fuzz_seeds
//! ```
//!
//! Seeds are named `seed-*`, so a rerun overwrites its own files and never
//! the entries the fuzzer added (named by their hash).

use std::path::{Path, PathBuf};

use onboard::gguf::reader::{Array, Value};
use onboard::gguf::types::GgmlType;
use onboard::gguf::writer::GgufWriter;

const F32: GgmlType = GgmlType::F32;
const Q4K: GgmlType = GgmlType::Q4_K;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = root().join("fuzz/corpus").join(target);
    std::fs::create_dir_all(&dir).expect("create the corpus directory");
    std::fs::write(dir.join(format!("seed-{name}")), bytes).expect("write a seed");
}

/// Copies every file of `dir` (relative to the repo) whose name passes `keep`.
fn copy_dir(target: &str, dir: &str, keep: impl Fn(&str) -> bool) {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(root().join(dir))
        .expect("read a seed source directory")
        .flatten()
        .map(|e| e.path())
        .collect();
    paths.sort();
    for p in paths {
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
        if let Some(name) = name.filter(|n| keep(n)) {
            let bytes = std::fs::read(&p).expect("read a seed source");
            write(target, &format!("{}-{name}", dir.replace('/', "-")), &bytes);
        }
    }
}

/// The keys every architecture below shares.
fn model(arch: &str, layers: u32) -> GgufWriter {
    let mut w = GgufWriter::new();
    let k = |s: &str| format!("{arch}.{s}");
    w.str("general.architecture", arch)
        .str("general.name", &format!("tiny-{arch}"))
        .u32("general.file_type", 15)
        .u32(&k("block_count"), layers)
        .u32(&k("context_length"), 8192)
        .u32(&k("embedding_length"), 64)
        .u32(&k("feed_forward_length"), 128)
        .u32(&k("attention.head_count"), 4)
        .u32(&k("attention.head_count_kv"), 2)
        .f32("general.sampling.temp", 0.7)
        .kv(
            "tokenizer.ggml.tokens",
            Value::Array(Array::String(vec!["<s>".into(), "a".into(), "b".into()])),
        );
    w.tensor("token_embd.weight", &[64, 256], Q4K);
    w
}

fn attention_layer(w: &mut GgufWriter, il: u32) {
    let b = format!("blk.{il}");
    w.tensor(format!("{b}.attn_norm.weight"), &[64], F32)
        .tensor(format!("{b}.attn_q.weight"), &[64, 64], GgmlType::F16)
        .tensor(format!("{b}.attn_k.weight"), &[64, 32], GgmlType::F16)
        .tensor(format!("{b}.attn_v.weight"), &[64, 32], GgmlType::F16)
        .tensor(format!("{b}.ffn_up.weight"), &[64, 128], GgmlType::Q8_0);
}

fn recurrent_layer(w: &mut GgufWriter, il: u32) {
    let b = format!("blk.{il}");
    w.tensor(format!("{b}.ssm_in.weight"), &[64, 256], GgmlType::F16)
        .tensor(format!("{b}.ssm_conv1d.weight"), &[4, 128], F32)
        .tensor(format!("{b}.ssm_out.weight"), &[128, 64], GgmlType::F16);
}

fn ssm_keys(w: &mut GgufWriter, arch: &str) {
    let k = |s: &str| format!("{arch}.{s}");
    w.u32(&k("ssm.conv_kernel"), 4)
        .u32(&k("ssm.inner_size"), 128)
        .u32(&k("ssm.state_size"), 16)
        .u32(&k("ssm.group_count"), 1)
        .u32(&k("ssm.time_step_rank"), 8);
}

fn output(w: &mut GgufWriter) {
    w.tensor("output_norm.weight", &[64], F32)
        .tensor("output.weight", &[64, 256], GgmlType::Q6_K);
}

fn gguf_seeds() {
    let mut seeds: Vec<(&str, Vec<u8>)> = Vec::new();

    let mut llama = model("llama", 2);
    (0..2).for_each(|il| attention_layer(&mut llama, il));
    output(&mut llama);
    let header = llama.header_bytes();
    seeds.push(("llama-truncated", header[..header.len() / 2].to_vec()));
    seeds.push(("llama", header));

    // A whole file, data included: kept tiny, since the largest seed sets
    // the longest input libFuzzer tries.
    let mut whole = GgufWriter::new();
    whole
        .str("general.architecture", "llama")
        .u32("llama.block_count", 1)
        .u32("llama.context_length", 512)
        .u32("llama.embedding_length", 8);
    whole.tensor("blk.0.attn_norm.weight", &[8], F32);
    seeds.push(("llama-with-data", whole.to_bytes()));

    let mut v2 = model("qwen3", 1);
    v2.version = 2;
    attention_layer(&mut v2, 0);
    seeds.push(("qwen3-v2", v2.header_bytes()));

    let mut hybrid = model("qwen35", 4);
    ssm_keys(&mut hybrid, "qwen35");
    hybrid.u32("qwen35.full_attention_interval", 4);
    for il in 0..4 {
        if il == 3 {
            attention_layer(&mut hybrid, il);
        } else {
            recurrent_layer(&mut hybrid, il);
        }
    }
    output(&mut hybrid);
    seeds.push(("qwen35-hybrid", hybrid.header_bytes()));

    let mut mamba = model("mamba", 2);
    ssm_keys(&mut mamba, "mamba");
    (0..2).for_each(|il| recurrent_layer(&mut mamba, il));
    seeds.push(("mamba", mamba.header_bytes()));

    let mut granite = model("granitehybrid", 3);
    ssm_keys(&mut granite, "granitehybrid");
    granite.kv(
        "granitehybrid.attention.head_count_kv",
        Value::Array(Array::U32(vec![0, 2, 0])),
    );
    seeds.push(("granitehybrid", granite.header_bytes()));

    let mut flags = model("qwen3next", 2);
    ssm_keys(&mut flags, "qwen3next");
    flags.kv(
        "qwen3next.attention.recurrent_layers",
        Value::Array(Array::Bool(vec![true, false])),
    );
    seeds.push(("qwen3next-flags", flags.header_bytes()));

    let mut gemma = model("gemma2", 4);
    gemma.u32("gemma2.attention.sliding_window", 1024);
    gemma.kv(
        "gemma2.attention.sliding_window_pattern",
        Value::Array(Array::Bool(vec![true, false, true, false])),
    );
    (0..4).for_each(|il| attention_layer(&mut gemma, il));
    seeds.push(("gemma2-swa", gemma.header_bytes()));

    let mut moe = model("qwen3moe", 2);
    moe.u32("qwen3moe.expert_count", 8)
        .u32("qwen3moe.expert_used_count", 2)
        .u32("qwen3moe.expert_feed_forward_length", 32);
    for il in 0..2 {
        attention_layer(&mut moe, il);
        moe.tensor(format!("blk.{il}.ffn_gate_exps.weight"), &[64, 32, 8], Q4K)
            .tensor(format!("blk.{il}.ffn_up_shexp.weight"), &[64, 32], Q4K);
    }
    output(&mut moe);
    seeds.push(("qwen3moe", moe.header_bytes()));

    // Every metadata type, nested arrays, an alignment, an unknown type.
    let mut types = GgufWriter::new();
    types
        .str("general.architecture", "llama")
        .kv("general.alignment", Value::U64(64))
        .kv("t.u8", Value::U8(1))
        .kv("t.i8", Value::I8(-1))
        .kv("t.u16", Value::U16(2))
        .kv("t.i16", Value::I16(-2))
        .kv("t.i32", Value::I32(-3))
        .kv("t.f64", Value::F64(0.5))
        .kv("t.i64", Value::I64(-4))
        .kv("t.bool", Value::Bool(true))
        .kv(
            "t.nested",
            Value::Array(Array::Array(vec![
                Array::U8(vec![1, 2]),
                Array::String(vec!["x".into()]),
                Array::Array(vec![Array::F64(vec![1.5])]),
            ])),
        )
        .kv("t.i16s", Value::Array(Array::I16(vec![-1, 1])))
        .kv("t.u64s", Value::Array(Array::U64(vec![1 << 40])))
        .kv("llama.block_count", Value::U64(1))
        .kv("llama.embedding_length", Value::I32(64));
    types.tensor("blk.0.unknown", &[32], GgmlType(99));
    seeds.push(("all-types", types.header_bytes()));

    // A split model: two shards, each header at the previous data offset.
    let mut shards = Vec::new();
    for no in 0..2u32 {
        let mut s = if no == 0 {
            model("llama", 2)
        } else {
            GgufWriter::new()
        };
        s.kv("split.no", Value::U16(no as u16))
            .kv("split.count", Value::U16(2))
            .kv("split.tensors.count", Value::I32(11));
        if no == 0 {
            attention_layer(&mut s, 0);
        } else {
            attention_layer(&mut s, 1);
        }
        shards.extend(s.header_bytes());
    }
    seeds.push(("split-2", shards));

    for (name, bytes) in seeds {
        write("gguf_header", name, &bytes);
    }
}

const MODELS_CONF: &str = "\
# models.conf — llama-server profiles, started by ./start.sh <profile>
#   MODEL is relative to models/

[glm-flash-q8]
MODEL=GLM/MoE/Flash/Q8/GLM-4.7-Flash-Q8_0.gguf
CTX_SIZE = 131072
FLAGS=--jinja -np 1   --fit on

; GPT-OSS is natively MXFP4
[gpt-oss-120b]
MODEL=GPT-OSS/MoE/120B/gpt-oss-120b-mxfp4-00001-of-00003.gguf
CTX_SIZE=131072


[bench-glm-flash-q8]
MODEL=GLM/MoE/Flash/Q8/GLM-4.7-Flash-Q8_0.gguf
CTX_SIZE=10240";

fn models_conf_seeds() {
    let crlf = MODELS_CONF.replace('\n', "\r\n");
    let seeds = [
        ("plain", MODELS_CONF.to_string()),
        ("crlf", crlf.clone()),
        (
            "edit-existing",
            format!("{MODELS_CONF}\0glm-flash-q8\0CTX_SIZE\065536\0a comment"),
        ),
        (
            "edit-new",
            format!("{crlf}\0qwen35-35b\0FLAGS\0--jinja -np 1\0Qwen3.5, written by onboard"),
        ),
        (
            "remove-last",
            format!("{MODELS_CONF}\0bench-glm-flash-q8\0CTX_SIZE\0"),
        ),
        ("empty-edit", "\0a\0K\0v\0c".to_string()),
        ("global-keys", "K=1\n\n[a]\n# c\nK=2".to_string()),
        ("malformed", "[a]\nMODEL x\n".to_string()),
    ];
    for (name, text) in seeds {
        write("models_conf", name, text.as_bytes());
    }
}

fn main() {
    gguf_seeds();
    copy_dir("workflow", "workflows", |_| true);
    copy_dir("workflow", "tests/invalid", |n| {
        !n.starts_with("manifest-") && !n.starts_with("config-")
    });
    copy_dir("manifest", "models", |_| true);
    copy_dir("manifest", "tests/invalid", |n| {
        n.starts_with("manifest-") || n.starts_with("config-")
    });
    write(
        "manifest",
        "onboard.yaml",
        &std::fs::read(root().join("onboard.yaml")).expect("read onboard.yaml"),
    );
    models_conf_seeds();
    for target in ["gguf_header", "workflow", "manifest", "models_conf"] {
        let dir = root().join("fuzz/corpus").join(target);
        let n = std::fs::read_dir(&dir).map_or(0, |d| d.count());
        println!(
            "{}: {n} files",
            Path::new("fuzz/corpus").join(target).display()
        );
    }
}
