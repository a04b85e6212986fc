//! Timing helpers for benches/gguf_header.sh: `cargo run --release --example
//! gguf_bench -- <read_header_timing|write_sparse_copy|write_tiny_model|write_tiny_qwen35|write_type_zoo>`.
//!
//! `read_header_timing` reads `ONBOARD_BENCH_GGUF`'s header
//! `ONBOARD_BENCH_ITERS` times and prints the median; `write_sparse_copy`
//! writes `ONBOARD_BENCH_SRC`'s header again with 10 GB of sparse tensor data
//! behind it to `ONBOARD_BENCH_OUT`.

use std::path::PathBuf;
use std::time::Instant;

use onboard::gguf::reader::read_file;
use onboard::gguf::types::GgmlType;
use onboard::gguf::writer::{Data, GgufWriter, TensorSpec};
use onboard_test_support::{gguf_fixtures, smollm2, tiny_qwen35};

fn env_path(name: &str) -> PathBuf {
    PathBuf::from(std::env::var_os(name).unwrap_or_else(|| panic!("set {name}")))
}

fn read_header_timing() {
    let path = env_path("ONBOARD_BENCH_GGUF");
    let iters: usize = std::env::var("ONBOARD_BENCH_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let mut times = Vec::with_capacity(iters);
    let mut tensors = 0;
    for _ in 0..iters {
        let t = Instant::now();
        let h = read_file(&path).unwrap();
        times.push(t.elapsed().as_secs_f64());
        tensors = h.tensors.len();
    }
    times.sort_by(f64::total_cmp);
    println!(
        "onboard read_file: median {:.3} ms, min {:.3} ms over {iters} reads ({tensors} tensors) {}",
        times[iters / 2] * 1e3,
        times[0] * 1e3,
        path.display()
    );
}

fn write_sparse_copy() {
    let src = read_file(&env_path("ONBOARD_BENCH_SRC")).unwrap();
    let mut w = GgufWriter::new();
    w.version = src.version;
    w.metadata = src.metadata.clone();
    w.tensors = src
        .tensors
        .iter()
        .map(|t| TensorSpec::new(t.name.clone(), &t.dims, t.ty))
        .collect();
    // 10 GB more tensor data, never written: the file is sparse.
    w.tensors.push(TensorSpec::new(
        "blk.bench.weight",
        &[1 << 20, 2500],
        GgmlType::F32,
    ));
    let out = env_path("ONBOARD_BENCH_OUT");
    let len = w.write(&out, Data::Sparse).unwrap();
    println!("wrote {} ({len} bytes, sparse)", out.display());
}

/// Writes the tiny qwen35 fixture (zeroed weights) for
/// benches/gguf_llama_memory.py to load in llama.cpp.
fn write_tiny_model() {
    let out = env_path("ONBOARD_BENCH_OUT");
    // ONBOARD_BENCH_MODEL=qwen35moe | gemma3 picks another tiny fixture.
    let w = match std::env::var("ONBOARD_BENCH_MODEL").as_deref() {
        Ok("qwen35moe") => gguf_fixtures::qwen35moe_tiny(),
        Ok("gemma3") => gguf_fixtures::gemma3_tiny(),
        _ => gguf_fixtures::qwen35_tiny(),
    };
    let len = w.write(&out, Data::Zeros).unwrap();
    println!("wrote {} ({len} bytes)", out.display());
}

/// Writes the tiny Qwen3.5 fixtures with weights and SmolLM2's tokenizer
/// (`tiny-qwen35moe.gguf`, `tiny-qwen35.gguf`) into the directory
/// `ONBOARD_BENCH_OUT`, for llama.cpp to load and generate with.
fn write_tiny_qwen35() {
    let dir = env_path("ONBOARD_BENCH_OUT");
    std::fs::create_dir_all(&dir).unwrap();
    let smollm2 = smollm2::smollm2_gguf();
    for (name, write) in [
        (
            "tiny-qwen35moe.gguf",
            tiny_qwen35::write_tiny_qwen35moe as fn(&std::path::Path, &std::path::Path) -> u64,
        ),
        ("tiny-qwen35.gguf", tiny_qwen35::write_tiny_qwen35),
    ] {
        let path = dir.join(name);
        let t = Instant::now();
        let len = write(&smollm2, &path);
        println!(
            "wrote {} ({len} bytes) in {:.3} s",
            path.display(),
            t.elapsed().as_secs_f64()
        );
    }
}

/// Writes a small Q4_K_M-labelled file with BF16, MXFP4, IQ4_NL, F64 and
/// NVFP4 (type 40) tensors: what benches/gguf_rs_compare.sh shows gguf-rs
/// getting wrong.
fn write_type_zoo() {
    let mut w = GgufWriter::new();
    w.str("general.architecture", "llama")
        .u32("general.file_type", 15)
        .u32("llama.block_count", 1)
        .u32("llama.embedding_length", 256)
        .tensor("blk.0.bf16.weight", &[256, 256], GgmlType::BF16)
        .tensor("blk.0.mxfp4.weight", &[256, 256], GgmlType::MXFP4)
        .tensor("blk.0.iq4_nl.weight", &[256, 256], GgmlType::IQ4_NL)
        .tensor("blk.0.f64.weight", &[256], GgmlType(28));
    // ONBOARD_BENCH_T40=1: add an NVFP4 (type 40) tensor.
    if std::env::var_os("ONBOARD_BENCH_T40").is_some() {
        w.tensor("blk.0.nvfp4.weight", &[256, 256], GgmlType(40));
    }
    let out = env_path("ONBOARD_BENCH_OUT");
    let len = w.write(&out, Data::Zeros).unwrap();
    let h = read_file(&out).unwrap();
    for t in &h.tensors {
        println!("onboard: {} {} {:?} bytes", t.name, t.ty, t.n_bytes());
    }
    println!("wrote {} ({len} bytes)", out.display());
}

fn main() {
    match std::env::args().nth(1).as_deref() {
        Some("read_header_timing") => read_header_timing(),
        Some("write_sparse_copy") => write_sparse_copy(),
        Some("write_tiny_model") => write_tiny_model(),
        Some("write_type_zoo") => write_type_zoo(),
        Some("write_tiny_qwen35") => write_tiny_qwen35(),
        _ => {
            eprintln!("usage: gguf_bench <read_header_timing|write_sparse_copy|write_tiny_model|write_tiny_qwen35|write_type_zoo>");
            std::process::exit(2);
        }
    }
}
