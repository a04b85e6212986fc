//! Repos of the repository's Qwen3.5 models for evaluate: headers with the real
//! hyperparameters of Qwen3.5-35B-A3B, -27B and -122B-A10B (and a Llama),
//! quant mixes chosen so the tensors add up to the published files' sizes, written
//! as sparse files (a few kilobytes of header each) and served by the mirror
//! with their sha256 registered, so no gigabyte is ever read or hashed.

use std::path::Path;

use onboard::gguf::reader::Value;
use onboard::gguf::types::GgmlType;
use onboard::gguf::writer::{Data, GgufWriter};
use onboard::hub::MirrorServer;
use sha2::{Digest, Sha256};

use crate::faulty_mirror::FaultyMirror;

const F32: GgmlType = GgmlType::F32;
pub const Q3_K: GgmlType = GgmlType(11);
pub const Q4_K: GgmlType = GgmlType::Q4_K;
pub const Q5_K: GgmlType = GgmlType::Q5_K;
pub const Q6_K: GgmlType = GgmlType::Q6_K;
pub const Q8_0: GgmlType = GgmlType::Q8_0;
pub const BF16: GgmlType = GgmlType::BF16;
pub const MXFP4: GgmlType = GgmlType::MXFP4;

/// Qwen3.5 hyperparameters (Hugging Face config names in the comments).
#[derive(Clone, Copy)]
pub struct Qwen35 {
    pub arch: &'static str,
    pub name: &'static str,
    pub n_layer: u64,
    /// hidden_size
    pub embd: u64,
    pub heads: u64,
    pub kv: u64,
    /// head_dim
    pub hd: u64,
    /// intermediate_size (dense)
    pub ff: u64,
    /// (num_experts, num_experts_per_tok, moe_intermediate_size,
    /// shared_expert_intermediate_size)
    pub moe: Option<(u64, u64, u64, u64)>,
    pub vocab: u64,
    /// linear_num_key_heads, linear_num_value_heads, linear_key_head_dim,
    /// linear_value_head_dim, linear_conv_kernel_dim
    pub linear: (u64, u64, u64, u64, u64),
}

pub const QWEN35_35B_A3B: Qwen35 = Qwen35 {
    arch: "qwen35moe",
    name: "Qwen3.5-35B-A3B",
    n_layer: 40,
    embd: 2048,
    heads: 16,
    kv: 2,
    hd: 256,
    ff: 0,
    moe: Some((256, 8, 512, 512)),
    vocab: 248_320,
    linear: (16, 32, 128, 128, 4),
};

pub const QWEN35_122B_A10B: Qwen35 = Qwen35 {
    arch: "qwen35moe",
    name: "Qwen3.5-122B-A10B",
    n_layer: 48,
    embd: 3072,
    heads: 32,
    kv: 2,
    hd: 256,
    ff: 0,
    moe: Some((256, 8, 1024, 1024)),
    vocab: 248_320,
    linear: (16, 64, 128, 128, 4),
};

/// 27B parameters come out only with hidden 5120 (4096 would make it a
/// 21B model).
pub const QWEN35_27B: Qwen35 = Qwen35 {
    arch: "qwen35",
    name: "Qwen3.5-27B",
    n_layer: 64,
    embd: 5120,
    heads: 24,
    kv: 4,
    hd: 256,
    ff: 17_408,
    moe: None,
    vocab: 248_320,
    linear: (16, 48, 128, 128, 4),
};

/// Types of a quant mix: experts and everything else start at their base
/// type; tensors are then raised to the high types (non-experts first, as
/// Unsloth's dynamic quants favour attention, router and shared weights)
/// while the total stays within the target size.
#[derive(Clone, Copy)]
pub struct Mix {
    pub expert_base: GgmlType,
    pub other_base: GgmlType,
    pub expert_high: GgmlType,
    pub other_high: GgmlType,
    /// The published file's size in bytes.
    pub target: u64,
}

fn bytes(ty: GgmlType, dims: &[u64]) -> u64 {
    onboard::gguf::types::tensor_bytes(ty, dims).expect("fixture dims fit the block size")
}

/// The header of one quant of a Qwen3.5 model.
pub fn qwen35(m: &Qwen35, ftype: u32, mix: &Mix) -> GgufWriter {
    let arch = m.arch;
    let (kh, vh, dk, dv, conv) = m.linear;
    let inner = vh * dv;
    let conv_ch = inner + 2 * kh * dk;
    let mut w = GgufWriter::new();
    w.str("general.architecture", arch)
        .str("general.name", m.name)
        .u32("general.file_type", ftype)
        .u32("general.quantization_version", 2)
        .f32("general.sampling.temp", 1.0)
        .f32("general.sampling.top_p", 0.95)
        .u32("general.sampling.top_k", 20)
        .str("tokenizer.ggml.model", "gpt2")
        .kv(
            "tokenizer.ggml.tokens",
            Value::Array(onboard::gguf::reader::Array::String(vec![
                "<a>".into(),
                "<b>".into(),
            ])),
        );
    let k = |s: &str| format!("{arch}.{s}");
    w.u32(&k("block_count"), m.n_layer as u32)
        .u32(&k("context_length"), 262_144)
        .u32(&k("embedding_length"), m.embd as u32)
        .u32(&k("attention.head_count"), m.heads as u32)
        .u32(&k("attention.head_count_kv"), m.kv as u32)
        .u32(&k("attention.key_length"), m.hd as u32)
        .u32(&k("attention.value_length"), m.hd as u32)
        .u32(&k("vocab_size"), m.vocab as u32)
        .u32(&k("ssm.conv_kernel"), conv as u32)
        .u32(&k("ssm.state_size"), dk as u32)
        .u32(&k("ssm.group_count"), kh as u32)
        .u32(&k("ssm.time_step_rank"), vh as u32)
        .u32(&k("ssm.inner_size"), inner as u32)
        .u32(&k("full_attention_interval"), 4);
    if let Some((n, used, eff, sff)) = m.moe {
        w.u32(&k("expert_count"), n as u32)
            .u32(&k("expert_used_count"), used as u32)
            .u32(&k("expert_feed_forward_length"), eff as u32)
            .u32(&k("expert_shared_feed_forward_length"), sff as u32);
    } else {
        w.u32(&k("feed_forward_length"), m.ff as u32);
    }
    let q = mix.other_base;
    let e = mix.expert_base;
    w.tensor("token_embd.weight", &[m.embd, m.vocab], q);
    for il in 0..m.n_layer {
        let b = format!("blk.{il}");
        w.tensor(format!("{b}.attn_norm.weight"), &[m.embd], F32);
        if (il + 1) % 4 == 0 {
            w.tensor(
                format!("{b}.attn_q.weight"),
                &[m.embd, 2 * m.heads * m.hd],
                q,
            )
            .tensor(format!("{b}.attn_k.weight"), &[m.embd, m.kv * m.hd], q)
            .tensor(format!("{b}.attn_v.weight"), &[m.embd, m.kv * m.hd], q)
            .tensor(
                format!("{b}.attn_output.weight"),
                &[m.heads * m.hd, m.embd],
                q,
            )
            .tensor(format!("{b}.attn_q_norm.weight"), &[m.hd], F32)
            .tensor(format!("{b}.attn_k_norm.weight"), &[m.hd], F32);
        } else {
            w.tensor(format!("{b}.attn_qkv.weight"), &[m.embd, conv_ch], q)
                .tensor(format!("{b}.attn_gate.weight"), &[m.embd, inner], q)
                .tensor(format!("{b}.ssm_conv1d.weight"), &[conv, conv_ch], F32)
                .tensor(format!("{b}.ssm_dt.bias"), &[vh], F32)
                .tensor(format!("{b}.ssm_a"), &[vh], F32)
                .tensor(format!("{b}.ssm_alpha.weight"), &[m.embd, vh], q)
                .tensor(format!("{b}.ssm_beta.weight"), &[m.embd, vh], q)
                .tensor(format!("{b}.ssm_norm.weight"), &[dv], F32)
                .tensor(format!("{b}.ssm_out.weight"), &[inner, m.embd], q);
        }
        w.tensor(format!("{b}.post_attention_norm.weight"), &[m.embd], F32);
        match m.moe {
            Some((n, _, eff, sff)) => {
                w.tensor(format!("{b}.ffn_gate_inp.weight"), &[m.embd, n], F32)
                    .tensor(format!("{b}.ffn_gate_exps.weight"), &[m.embd, eff, n], e)
                    .tensor(format!("{b}.ffn_up_exps.weight"), &[m.embd, eff, n], e)
                    .tensor(format!("{b}.ffn_down_exps.weight"), &[eff, m.embd, n], e)
                    .tensor(format!("{b}.ffn_gate_inp_shexp.weight"), &[m.embd], F32)
                    .tensor(format!("{b}.ffn_gate_shexp.weight"), &[m.embd, sff], q)
                    .tensor(format!("{b}.ffn_up_shexp.weight"), &[m.embd, sff], q)
                    .tensor(format!("{b}.ffn_down_shexp.weight"), &[sff, m.embd], q);
            }
            None => {
                w.tensor(format!("{b}.ffn_gate.weight"), &[m.embd, m.ff], q)
                    .tensor(format!("{b}.ffn_up.weight"), &[m.embd, m.ff], q)
                    .tensor(format!("{b}.ffn_down.weight"), &[m.ff, m.embd], q);
            }
        }
    }
    w.tensor("output_norm.weight", &[m.embd], F32)
        .tensor("output.weight", &[m.embd, m.vocab], q);
    raise_to(&mut w, mix);
    w
}

/// Raises tensor types (non-experts first) while the total stays within
/// the target; panics when the base mix is already over it.
fn raise_to(w: &mut GgufWriter, mix: &Mix) {
    let mut total: u64 = w.tensors.iter().map(|t| bytes(t.ty, &t.dims)).sum();
    assert!(
        total <= mix.target,
        "base mix is {total} bytes, over the target {}",
        mix.target
    );
    let is_exp = |n: &str| n.contains("_exps.");
    // Non-experts first, then experts; then small tensors to BF16 or F32 to
    // close the last gap (the published sizes to within a few megabytes).
    let passes = [
        (false, mix.other_high),
        (true, mix.expert_high),
        (false, BF16),
        (false, F32),
    ];
    for (experts, high) in passes {
        for t in w.tensors.iter_mut() {
            if t.ty == F32 || is_exp(&t.name) != experts {
                continue;
            }
            let delta = bytes(high, &t.dims).saturating_sub(bytes(t.ty, &t.dims));
            if delta > 0 && total + delta <= mix.target {
                t.ty = high;
                total += delta;
            }
        }
    }
}

/// The quants the Qwen3.5 manifests weigh: (repo, quant, shards, ftype, mix).
pub fn plan_quants() -> Vec<(&'static Qwen35, &'static str, &'static str, u16, u32, Mix)> {
    let mix = |eb, ob, eh, oh, gb: f64| Mix {
        expert_base: eb,
        other_base: ob,
        expert_high: eh,
        other_high: oh,
        target: (gb * 1e9) as u64,
    };
    vec![
        (
            &QWEN35_35B_A3B,
            "unsloth/Qwen3.5-35B-A3B-GGUF",
            "UD-Q6_K_XL",
            1,
            18,
            mix(Q6_K, Q6_K, Q8_0, Q8_0, 30.3),
        ),
        (
            &QWEN35_35B_A3B,
            "unsloth/Qwen3.5-35B-A3B-GGUF",
            "UD-Q8_K_XL",
            1,
            7,
            mix(Q8_0, Q8_0, BF16, BF16, 42.0),
        ),
        (
            &QWEN35_27B,
            "unsloth/Qwen3.5-27B-GGUF",
            "UD-Q8_K_XL",
            1,
            7,
            mix(Q8_0, Q8_0, BF16, BF16, 32.4),
        ),
        (
            &QWEN35_27B,
            "unsloth/Qwen3.5-27B-GGUF",
            "UD-Q6_K_XL",
            1,
            18,
            mix(Q6_K, Q6_K, Q8_0, Q8_0, 23.1),
        ),
        (
            &QWEN35_122B_A10B,
            "unsloth/Qwen3.5-122B-A10B-GGUF",
            "UD-Q4_K_XL",
            3,
            15,
            mix(Q3_K, Q8_0, Q4_K, Q8_0, 68.4),
        ),
        (
            &QWEN35_122B_A10B,
            "unsloth/Qwen3.5-122B-A10B-GGUF",
            "MXFP4_MOE",
            2,
            38,
            mix(MXFP4, Q8_0, MXFP4, BF16, 68.3),
        ),
        (
            &QWEN35_122B_A10B,
            "unsloth/Qwen3.5-122B-A10B-GGUF",
            "UD-Q5_K_XL",
            2,
            17,
            mix(Q5_K, Q8_0, Q6_K, Q8_0, 87.0),
        ),
    ]
}

/// Splits like `llama-gguf-split`: shard 1 keeps every key, the others
/// only `split.*`; tensors dealt in order.
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

/// Repo paths of a quant's files (split quants in a directory, as Unsloth
/// publishes them).
pub fn file_names(model: &Qwen35, quant: &str, shards: u16) -> Vec<String> {
    if shards == 1 {
        vec![format!("{}-{quant}.gguf", model.name)]
    } else {
        (1..=shards)
            .map(|i| format!("{quant}/{}-{quant}-{i:05}-of-{shards:05}.gguf", model.name))
            .collect()
    }
}

/// Writes every one of those quants under `root` (sparse files); returns
/// `(repo-relative path under root, header bytes)` of each file.
pub fn write_plan_repos(root: &Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for (model, repo, quant, shards, ftype, mix) in plan_quants() {
        let whole = qwen35(model, ftype, &mix);
        let parts = if shards == 1 {
            vec![whole]
        } else {
            split(&whole, shards)
        };
        for (w, name) in parts.iter().zip(file_names(model, quant, shards)) {
            let rel = format!("{repo}/{name}");
            let path = root.join(&rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            w.write(&path, Data::Sparse).unwrap();
            out.push((rel, w.header_bytes().len() as u64));
        }
        std::fs::write(
            root.join(repo).join("README.md"),
            format!("# {}\n", model.name),
        )
        .unwrap();
        // The vision projector the real repos ship beside the quants (sparse;
        // only its listed size matters to evaluate).
        let mmproj = format!("{repo}/mmproj-F16.gguf");
        let file = std::fs::File::create(root.join(&mmproj)).unwrap();
        file.set_len(PROJECTOR_BYTES).unwrap();
        if !out.iter().any(|(rel, _)| *rel == mmproj) {
            out.push((mmproj, 0));
        }
    }
    out
}

/// The size of the fixture repos' `mmproj-F16.gguf` (about the real
/// Qwen3.5 projectors').
pub const PROJECTOR_BYTES: u64 = 900_000_000;

/// Registers a made-up sha256 for every fixture file so the mirror never
/// reads the sparse gigabytes.
pub fn assume_hashes(server: &MirrorServer, files: &[(String, u64)]) {
    for (rel, _) in files {
        let sha = hex::encode(Sha256::digest(rel.as_bytes()));
        server.assume_sha256(rel, &sha).unwrap();
    }
}

/// A mirror serving those repos from a temp dir.
pub struct PlanHub {
    pub tmp: tempfile::TempDir,
    pub server: FaultyMirror,
    pub files: Vec<(String, u64)>,
}

impl PlanHub {
    pub fn start() -> PlanHub {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("mirror");
        let files = write_plan_repos(&root);
        let server = FaultyMirror::start(&root, "127.0.0.1:0").unwrap();
        assume_hashes(&server, &files);
        PlanHub { tmp, server, files }
    }

    pub fn hf_home(&self) -> std::path::PathBuf {
        self.tmp.path().join("hf")
    }
}
