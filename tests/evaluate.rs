//! Phase 1 on the workstation of this repository's onboard.yaml and its
//! Qwen3.5 manifests: headers served by a local Hub mirror (sparse files of
//! the published files' sizes), evaluate's decisions and the numbers behind
//! each reason.

use onboard_test_support::{eval_fixtures, repo_root};

use eval_fixtures::PlanHub;
use onboard::evaluate::{self, EvaluateError, Evaluation, HubSource, Kind, Machine, Request};
use onboard::gguf::memory::{GIB, MIB};
use onboard::hub::{HubClient, HubConfig};
use onboard::tasks::profile::Strategy;
use onboard::workspace::Workspace;

/// The workstation of this repository's onboard.yaml.
fn plan_machine() -> Machine {
    let ws = Workspace::open(repo_root()).expect("the repo's onboard.yaml");
    Machine::from_hardware(&ws.config.hardware, 1024 * MIB).unwrap()
}

fn request(id: &str) -> Request {
    let ws = Workspace::open(repo_root()).unwrap();
    let m = ws.load_manifest(id).unwrap();
    Request {
        repo: m.hub.repo,
        revision: m.hub.revision,
        quant: m.hub.quant,
        alternatives: m.hub.alternatives,
        files: m.hub.files,
        mmproj: m.hub.mmproj,
        local_dir: None,
    }
}

fn client(hub: &PlanHub) -> HubClient {
    HubClient::new(HubConfig::for_endpoint(&hub.server.url(), &hub.hf_home()))
}

fn run(hub: &PlanHub, id: &str) -> Evaluation {
    let c = client(hub);
    let src = HubSource {
        client: &c,
        local_dir: None,
    };
    evaluate::evaluate(&src, &request(id), &plan_machine()).unwrap()
}

fn gib(b: u64) -> f64 {
    b as f64 / GIB as f64
}

fn quant<'a>(e: &'a Evaluation, q: &str) -> &'a evaluate::QuantEval {
    e.quants.iter().find(|x| x.candidate.quant == q).unwrap()
}

/// The three reports (printed with `cargo test --test evaluate --
/// --nocapture`) name the chosen quant for each model, its strategy, and
/// every quant with its verdict and the reason for a rejection.
#[test]
fn plan_reports_name_the_choice_and_every_quants_verdict() {
    let hub = PlanHub::start();
    for (id, want) in [
        ("qwen3.5-122b-a10b", "UD-Q4_K_XL"),
        ("qwen3.5-35b-a3b", "UD-Q6_K_XL"),
        ("qwen3.5-27b", "UD-Q8_K_XL"),
    ] {
        let e = run(&hub, id);
        let report = evaluate::report::markdown(&e, id);
        println!("{report}");
        assert!(
            report.starts_with(&format!("# Evaluate: {id}\n")),
            "{report}"
        );
        assert_eq!(e.chosen().candidate.quant, want, "{id}");
        for section in [
            "## Architecture".to_string(),
            "## Memory at 262144 tokens: ".to_string(),
            format!("## Strategies for {want}"),
            "## Quants".to_string(),
        ] {
            assert!(report.contains(&section), "{id}: no `{section}`");
        }
        for q in &e.quants {
            let quant = &q.candidate.quant;
            let row = report
                .lines()
                .find(|l| l.starts_with(&format!("| {quant} | {} |", q.candidate.files.len())))
                .unwrap_or_else(|| panic!("{id}: no row for {quant}:\n{report}"));
            match &q.rejected {
                None => assert!(row.ends_with("| **chosen** |"), "{row}"),
                Some(reason) => assert!(
                    row.contains(&format!("rejected: {reason}")),
                    "{id} {quant}: {row}"
                ),
            }
        }
    }
}

/// The fixtures' tensors add up to the published files' sizes.
#[test]
fn fixtures_have_the_plan_sizes() {
    for (model, _, quant, _, ftype, mix) in eval_fixtures::plan_quants() {
        let w = eval_fixtures::qwen35(model, ftype, &mix);
        let total = w.data_len_tensors();
        let off = mix.target as f64 - total as f64;
        assert!(
            (0.0..20e6).contains(&off),
            "{} {quant}: {total} bytes for {}",
            model.name,
            mix.target
        );
    }
}

/// 122B-A10B: UD-Q5_K_XL (87 GB) rejected for too little RAM at 262K,
/// UD-Q4_K_XL (68.4 GB, 3 shards) chosen with fit + CPU offload of experts.
#[test]
fn plan_122b_q4_with_cpu_offload_q5_rejected_for_ram() {
    let hub = PlanHub::start();
    let m = plan_machine();
    assert_eq!(m.host_budget(), 56 * GIB, "64 GiB RAM minus 8 for the OS");
    let e = run(&hub, "qwen3.5-122b-a10b");
    let chosen = e.chosen();
    assert_eq!(chosen.candidate.quant, "UD-Q4_K_XL");
    assert_eq!(chosen.candidate.files.len(), 3);
    assert!(chosen.candidate.files[0].ends_with("UD-Q4_K_XL-00001-of-00003.gguf"));
    assert!((68.3e9..68.5e9).contains(&(chosen.candidate.total_size() as f64)));
    let (kind, p) = e.production().unwrap();
    assert_eq!(*kind, Kind::FitOffload);
    assert_eq!(kind.profile_strategy(true), Strategy::FitCpuMoe);
    assert_eq!(p.n_ctx, 262_144);
    assert!(p
        .gpus
        .iter()
        .all(|g| !g.layers.is_empty() && g.headroom >= 0));
    // The plan: "The Q4 at 68.4 GB leaves ~24 GB CPU headroom" (before the
    // KV cache and compute buffers, which onboard counts).
    let h = gib(p.host.headroom as u64);
    assert!((15.0..24.0).contains(&h), "host headroom {h} GiB");
    assert!(gib(p.experts_on_host) > 30.0);

    let q5 = quant(&e, "UD-Q5_K_XL");
    let reason = q5.rejected.as_deref().unwrap();
    let at = &q5.strategies.at_trained;
    assert_eq!(at.n_ctx, 262_144);
    // The plan: ~51 GB on the CPU of ~56 GB, "only ~5 GB left ... too tight".
    assert!(gib(at.host.weights) > 50.0, "{}", gib(at.host.weights));
    assert!(at.host.headroom < m.min_host_headroom as i64);
    assert!(at.host.headroom < 5 * GIB as i64);
    for needle in [
        "262144 tokens",
        "too little headroom",
        "56.0 GiB usable",
        "5.6 GiB minimum",
        &format!("leaving {}", evaluate::gib_signed(at.host.headroom)),
        "it would need the context cut to",
    ] {
        assert!(reason.contains(needle), "`{needle}` not in: {reason}");
    }
    // Smaller contexts free GPU memory for experts: Q5 fits, but not at 262K.
    let q5_ctx = q5.strategies.chosen.as_ref().map(|(_, p)| p.n_ctx).unwrap();
    assert!(q5_ctx < 262_144);

    let mx = quant(&e, "MXFP4_MOE");
    assert!(mx
        .rejected
        .as_deref()
        .unwrap()
        .contains("UD-Q4_K_XL comes first in the manifest's order"));

    // Decode bound: GPU bandwidth for the GPU part, CPU bandwidth for the
    // experts in RAM (15-22 t/s by a hand estimate).
    let tps = p.tokens_per_second(false).unwrap();
    assert!((15.0..40.0).contains(&tps), "{tps}");
    assert!(p.tokens_per_second(true).unwrap() < tps);
    let active = e.active_params as f64 / 1e9;
    assert!((9.0..11.0).contains(&active), "{active}B active");
}

/// 35B-A3B: UD-Q6_K_XL across both GPUs with fit at 262K; UD-Q8_K_XL
/// would need CPU offload.
#[test]
fn plan_35b_q6_fit_across_both_gpus() {
    let hub = PlanHub::start();
    let e = run(&hub, "qwen3.5-35b-a3b");
    assert_eq!(e.chosen().candidate.quant, "UD-Q6_K_XL");
    let (kind, p) = e.production().unwrap();
    assert_eq!(*kind, Kind::Fit);
    assert_eq!(kind.profile_strategy(true), Strategy::Fit);
    assert_eq!(p.n_ctx, 262_144);
    assert_eq!(p.gpus.len(), 2);
    assert!(p
        .gpus
        .iter()
        .all(|g| !g.layers.is_empty() && g.headroom >= 0));
    assert_eq!(p.layers_on_host, 0);
    // Whole layers per GPU: at most the boundary layer's experts in RAM.
    assert!(p.experts_on_host < GIB);
    // 20 KiB of KV per token: 5 GiB at 262144.
    let kv: u64 = p.gpus.iter().map(|g| g.kv).sum();
    assert_eq!(kv, 5 * GIB);
    // Strategy A (explicit split, no RAM at all) gives a little less.
    let a = &e.chosen().strategies.options[0];
    assert_eq!(a.kind, Kind::AllGpu);
    let a_ctx = a.max_context.unwrap();
    assert!((200_000..262_144).contains(&a_ctx), "{a_ctx}");

    let q8 = quant(&e, "UD-Q8_K_XL");
    let reason = q8.rejected.as_deref().unwrap();
    assert!(reason.contains("needs CPU offload"), "{reason}");
    assert!(reason.contains("UD-Q6_K_XL comes first"), "{reason}");
    let (q8_kind, q8_p) = q8.strategies.chosen.as_ref().unwrap();
    assert_eq!(*q8_kind, Kind::FitOffload);
    assert!(gib(q8_p.experts_on_host) > 5.0);
    assert!(q8_p.tokens_per_second(false).unwrap() < p.tokens_per_second(false).unwrap() * 0.6);

    // general.sampling.* without the prefix, f32 noise rounded away.
    assert_eq!(e.sampling["temp"], 1.0);
    assert_eq!(e.sampling["top_p"], 0.95);
    assert_eq!(e.sampling["top_k"], 20);
}

/// 27B dense: UD-Q8_K_XL with fit across both GPUs at 262K (its 16 GiB of
/// KV cache push some layers to RAM); UD-Q6_K_XL not chosen.
#[test]
fn plan_27b_q8_fit_across_both_gpus() {
    let hub = PlanHub::start();
    let e = run(&hub, "qwen3.5-27b");
    assert_eq!(e.chosen().candidate.quant, "UD-Q8_K_XL");
    assert!(!e.is_moe() && e.recurrent());
    let (kind, p) = e.production().unwrap();
    assert_eq!(kind.profile_strategy(false), Strategy::Fit);
    assert_eq!(p.n_ctx, 262_144);
    assert!(p.gpus.iter().all(|g| !g.layers.is_empty()));
    let kv: u64 = p.gpus.iter().chain([&p.host]).map(|g| g.kv).sum();
    assert_eq!(kv, 16 * GIB, "64 KiB per token at 262144");
    assert!(p.host.headroom >= plan_machine().min_host_headroom as i64);
    let q6 = quant(&e, "UD-Q6_K_XL");
    assert!(q6
        .rejected
        .as_deref()
        .unwrap()
        .contains("UD-Q8_K_XL comes first in the manifest's order"));
}

/// A remote three-shard evaluation reads only the chosen quant's headers,
/// and fetches less than twice their bytes.
#[test]
fn three_shard_evaluation_fetches_under_twice_the_headers() {
    let hub = PlanHub::start();
    hub.server.clear_log();
    let e = run(&hub, "qwen3.5-122b-a10b");
    let gets = hub.server.content_gets();
    assert!(gets.len() >= 3);
    assert!(
        gets.iter().all(|g| g.path.contains("UD-Q4_K_XL")),
        "{gets:?}"
    );
    let fetched: u64 = gets.iter().map(|g| g.bytes).sum();
    let headers: u64 = hub
        .files
        .iter()
        .filter(|(rel, _)| rel.contains("UD-Q4_K_XL"))
        .map(|(_, h)| h)
        .sum();
    assert_eq!(fetched, e.bytes_fetched);
    assert!(
        fetched <= 2 * headers,
        "{fetched} bytes for {headers} of headers"
    );
    println!(
        "fetched {fetched} bytes for {headers} bytes of headers ({:.2}x)",
        fetched as f64 / headers as f64
    );
}

/// A Llama (all attention): everything on the GPUs at its 131072 context.
#[test]
fn llama_fits_on_the_gpus() {
    use onboard_test_support::gguf_fixtures;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("mirror");
    let rel = "meta/Llama-3.1-8B-GGUF/Llama-3.1-8B-Instruct-Q4_K_M.gguf";
    std::fs::create_dir_all(root.join("meta/Llama-3.1-8B-GGUF")).unwrap();
    gguf_fixtures::llama_8b()
        .write(&root.join(rel), onboard::gguf::writer::Data::Sparse)
        .unwrap();
    let server = onboard::hub::MirrorServer::start(&root, "127.0.0.1:0").unwrap();
    server.assume_sha256(rel, &"ab".repeat(32)).unwrap();
    let c = HubClient::new(HubConfig::for_endpoint(
        &server.url(),
        &tmp.path().join("hf"),
    ));
    let src = HubSource {
        client: &c,
        local_dir: None,
    };
    let req = Request {
        repo: "meta/Llama-3.1-8B-GGUF".into(),
        revision: "main".into(),
        ..Request::default()
    };
    let e = evaluate::evaluate(&src, &req, &plan_machine()).unwrap();
    assert_eq!(e.chosen().candidate.quant, "Q4_K_M");
    let (kind, p) = e.production().unwrap();
    assert_eq!(*kind, Kind::Fit);
    assert_eq!(p.n_ctx, 131_072);
    assert!(p.all_on_gpu);
    assert!(!e.recurrent());
}

/// An architecture onboard does not know: "unknown", never a guess.
#[test]
fn unknown_layout_is_an_error_not_a_guess() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("mirror");
    let rel = "x/Mystery-GGUF/Mystery-Q8_0.gguf";
    std::fs::create_dir_all(root.join("x/Mystery-GGUF")).unwrap();
    let mut w = onboard::gguf::writer::GgufWriter::new();
    w.str("general.architecture", "mystery")
        .u32("mystery.block_count", 2)
        .u32("mystery.embedding_length", 256)
        .u32("mystery.context_length", 4096)
        .u32("mystery.attention.head_count", 4)
        .tensor(
            "blk.0.attn_q.weight",
            &[256, 256],
            onboard::gguf::GgmlType::Q8_0,
        )
        .tensor(
            "blk.1.attn_q.weight",
            &[256, 256],
            onboard::gguf::GgmlType::Q8_0,
        );
    w.write(&root.join(rel), onboard::gguf::writer::Data::Zeros)
        .unwrap();
    let server = onboard::hub::MirrorServer::start(&root, "127.0.0.1:0").unwrap();
    let c = HubClient::new(HubConfig::for_endpoint(
        &server.url(),
        &tmp.path().join("hf"),
    ));
    let src = HubSource {
        client: &c,
        local_dir: None,
    };
    let req = Request {
        repo: "x/Mystery-GGUF".into(),
        revision: "main".into(),
        ..Request::default()
    };
    match evaluate::evaluate(&src, &req, &plan_machine()) {
        Err(EvaluateError::UnknownLayout { reason, .. }) => {
            assert!(
                reason.contains("'mystery' is not in onboard's table"),
                "{reason}"
            )
        }
        other => panic!("expected UnknownLayout, got {other:?}"),
    }
}

/// A quant the repo lacks names what it has.
#[test]
fn missing_quant_names_the_alternatives() {
    let hub = PlanHub::start();
    let c = client(&hub);
    let src = HubSource {
        client: &c,
        local_dir: None,
    };
    let mut req = request("qwen3.5-27b");
    req.quant = Some("Q2_K".into());
    req.alternatives.clear();
    let err = evaluate::evaluate(&src, &req, &plan_machine()).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("Q2_K") && msg.contains("UD-Q8_K_XL, UD-Q6_K_XL"),
        "{msg}"
    );
}

/// `hub.files` picks exact files (shards put in order); weights already in
/// the workspace are read locally, with no range request at all.
#[test]
fn exact_files_and_local_copies() {
    let hub = PlanHub::start();
    let c = client(&hub);
    let mut req = request("qwen3.5-122b-a10b");
    req.files = vec![
        "MXFP4_MOE/Qwen3.5-122B-A10B-MXFP4_MOE-00002-of-00002.gguf".into(),
        "MXFP4_MOE/Qwen3.5-122B-A10B-MXFP4_MOE-00001-of-00002.gguf".into(),
    ];
    let src = HubSource {
        client: &c,
        local_dir: None,
    };
    let e = evaluate::evaluate(&src, &req, &plan_machine()).unwrap();
    assert_eq!(e.quants.len(), 1);
    assert_eq!(e.chosen().candidate.quant, "MXFP4_MOE");
    assert!(e.chosen().candidate.files[0].ends_with("00001-of-00002.gguf"));

    // The 35B's file, already downloaded into the workspace layout.
    let local = hub.tmp.path().join("models/Qwen3.5/MoE/35B/UD6_K_XL");
    std::fs::create_dir_all(&local).unwrap();
    let (model, _, q, _, ftype, mix) = eval_fixtures::plan_quants().remove(0);
    assert_eq!(q, "UD-Q6_K_XL");
    eval_fixtures::qwen35(model, ftype, &mix)
        .write(
            &local.join("Qwen3.5-35B-A3B-UD-Q6_K_XL.gguf"),
            onboard::gguf::writer::Data::Sparse,
        )
        .unwrap();
    hub.server.clear_log();
    let src = HubSource {
        client: &c,
        local_dir: Some(local),
    };
    let e = evaluate::evaluate(&src, &request("qwen3.5-35b-a3b"), &plan_machine()).unwrap();
    assert_eq!(e.chosen().candidate.quant, "UD-Q6_K_XL");
    assert_eq!(e.bytes_fetched, 0);
    assert!(hub.server.content_gets().is_empty());
}

/// No GPU: everything in RAM, at the largest context RAM allows.
#[test]
fn cpu_only_machine() {
    let hub = PlanHub::start();
    let mut m = plan_machine();
    m.gpus.clear();
    let c = client(&hub);
    let src = HubSource {
        client: &c,
        local_dir: None,
    };
    let e = evaluate::evaluate(&src, &request("qwen3.5-35b-a3b"), &m).unwrap();
    let (kind, p) = e.production().unwrap();
    assert_eq!(*kind, Kind::Cpu);
    assert_eq!(kind.profile_strategy(true), Strategy::Cpu);
    assert_eq!(p.n_ctx, 262_144);
    assert_eq!(p.host.layers.len(), 40);
    // Only the CPU's bandwidth counts.
    let tps = p.tokens_per_second(false).unwrap();
    let expect = 60e9 / p.host.active as f64;
    assert!((tps - expect).abs() < 0.01, "{tps} vs {expect}");
}

/// A header that cannot be fetched: the error names the repo and the file.
#[test]
fn failed_range_request_names_repo_and_file() {
    let hub = PlanHub::start();
    hub.server.not_found_on_get(100);
    let c = client(&hub);
    let src = HubSource {
        client: &c,
        local_dir: None,
    };
    let err = evaluate::evaluate(&src, &request("qwen3.5-27b"), &plan_machine()).unwrap_err();
    assert!(matches!(err, EvaluateError::Range { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("Qwen3.5-27B-UD-Q8_K_XL.gguf") && msg.contains("unsloth/Qwen3.5-27B-GGUF"),
        "{msg}"
    );
}

/// `hub.mmproj` is opt-in: every evaluation lists the repo's projector,
/// only one that asks loads it; the projector takes its room on the first
/// GPU (where llama-server offloads it) before the layers are placed; a
/// projector the repo lacks is refused with what it has.
#[test]
fn a_vision_projector_is_listed_and_counted_on_the_first_gpu_when_asked_for() {
    let hub = PlanHub::start();
    let c = client(&hub);
    let src = HubSource {
        client: &c,
        local_dir: None,
    };
    let text = run(&hub, "qwen3.5-35b-a3b");
    assert_eq!(text.projectors.len(), 1, "{:?}", text.projectors);
    assert_eq!(text.projectors[0].kind, "F16");
    assert!(text.projector.is_none(), "off by default");

    let mut req = request("qwen3.5-35b-a3b");
    req.mmproj = Some("f16".into());
    let vision = evaluate::evaluate(&src, &req, &plan_machine()).unwrap();
    let p = vision.projector.as_ref().unwrap();
    assert_eq!(
        (p.file.as_str(), p.size),
        ("mmproj-F16.gguf", eval_fixtures::PROJECTOR_BYTES)
    );
    let gpu0 = |e: &Evaluation| e.production().unwrap().1.gpus[0].memory;
    assert_eq!(
        gpu0(&text) - gpu0(&vision),
        eval_fixtures::PROJECTOR_BYTES,
        "the first GPU holds the projector"
    );
    let report = onboard::evaluate::report::markdown(&vision, "vision");
    assert!(
        report.contains("loading `mmproj-F16.gguf` (`--mmproj`)"),
        "{report}"
    );

    req.mmproj = Some("Q8_0".into());
    let err = evaluate::evaluate(&src, &req, &plan_machine()).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("no vision projector `Q8_0` (available: F16)") && msg.contains("hub.mmproj"),
        "{msg}"
    );
}

/// The prompt cache at the real widths: the 35B-A3B's full 262K prompt
/// (20 KiB a token) fits llama-server's default 8 GiB; the 27B's (64 KiB a
/// token, 16 GiB at 262K) does not, so its profile gets a larger
/// `--cache-ram` from the RAM the placement leaves, with the numbers.
#[test]
fn the_prompt_cache_is_sized_where_the_default_cannot_hold_a_full_prompt() {
    let hub = PlanHub::start();
    let moe = run(&hub, "qwen3.5-35b-a3b").cache_ram().unwrap();
    assert_eq!(moe.bytes_per_token, 20 * 1024);
    assert_eq!(moe.mib, None, "{}", moe.reason);
    assert_eq!(moe.longest_at_default, 262_144);
    assert!(
        moe.reason.contains("the default 8192 MiB holds"),
        "{}",
        moe.reason
    );

    let dense = run(&hub, "qwen3.5-27b").cache_ram().unwrap();
    assert_eq!(dense.bytes_per_token, 64 * 1024);
    assert!(dense.longest_at_default < 131_072, "{dense:?}");
    // 16534 MiB for a full prompt, rounded up to 17 GiB; the 64 GiB
    // workstation of onboard.yaml has that to spare after the placement.
    assert_eq!(dense.mib, Some(17_408), "{dense:?}");
    assert_eq!(dense.longest_at_chosen, 262_144);
    assert!(
        dense.reason.contains("caches prompts up to 128678 tokens")
            && dense.reason.contains("re-prefill every turn"),
        "{}",
        dense.reason
    );
}
