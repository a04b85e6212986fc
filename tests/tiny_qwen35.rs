//! The tiny Qwen3.5 fixtures (tests/support/tiny_qwen35.rs), written to disk
//! as the engine tests use them: onboard reads back the facts the fixtures
//! mean to carry, the files are byte-for-byte reproducible, and the data
//! section holds every tensor. No engine needed.

use onboard::gguf::facts::{facts, LayerKind, ModelFacts, Ssm};
use onboard::gguf::reader::{read_file, Value};
use onboard_test_support::gguf_fixtures::layer_bytes;
use onboard_test_support::{smollm2, tiny_qwen35};
use std::path::Path;
use tiny_qwen35::{ARCH_DENSE, ARCH_MOE, CONTEXT};

fn written(name: &str, write: fn(&Path, &Path) -> u64) -> (tempfile::TempDir, ModelFacts, u64) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    let len = write(&smollm2::smollm2_gguf(), &path);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), len);
    let f = facts(&read_file(&path).unwrap()).unwrap();
    (dir, f, len)
}

/// Layers 3 and 7 are full attention, the other six Gated DeltaNet.
fn assert_hybrid_layout(f: &ModelFacts) {
    assert_eq!(f.block_count, 8);
    assert_eq!(f.attention_layers(), vec![3, 7]);
    assert_eq!(f.recurrent_layers(), vec![0, 1, 2, 4, 5, 6]);
    let kinds = f.layers.value().unwrap();
    assert_eq!(kinds[3], LayerKind::Attention);
    assert_eq!(kinds[0], LayerKind::Recurrent);
    assert_eq!(f.context_length, Some(u64::from(CONTEXT)));
    assert_eq!(f.embedding_length, 64);
    assert_eq!((f.key_length, f.value_length), (32, 32));
    // SmolLM2's vocabulary, read from the copied token list.
    assert_eq!(f.vocab_size, Some(49_152));
    assert_eq!(
        f.ssm,
        Some(Ssm {
            conv_kernel: 4,
            inner_size: 128,
            state_size: 16,
            group_count: 4,
            time_step_rank: 8,
        })
    );
    assert!(f.unknown_type_tensors.is_empty());
}

#[test]
fn tiny_qwen35moe_facts() {
    let (_dir, f, len) = written("tiny-qwen35moe.gguf", tiny_qwen35::write_tiny_qwen35moe);
    assert_eq!(f.architecture, ARCH_MOE);
    assert_hybrid_layout(&f);
    assert_eq!(f.head_count, 4);
    assert_eq!(f.head_count_kv, vec![2; 8]);
    assert!(f.is_moe());
    let e = f.experts.as_ref().unwrap();
    assert_eq!((e.total, e.used, e.shared), (16, 2, 1));
    assert_eq!(e.feed_forward_length, Some(16));
    assert_eq!(e.shared_feed_forward_length, Some(16));
    assert_eq!(f.feed_forward_length, None, "no dense FFN key");
    // Untied output: token_embd and output.weight, both Q4_0.
    assert_eq!(f.tensor_types["Q4_0"].tensors, 2);
    assert!(f.tensors.iter().any(|t| t.name == "output.weight"));
    // 3 expert tensors per layer; 2 of 16 experts active per token.
    assert_eq!(f.tensors.iter().filter(|t| t.expert).count(), 24);
    let experts: u64 = f
        .tensors
        .iter()
        .filter(|t| t.expert)
        .map(|t| t.bytes.unwrap())
        .sum();
    assert_eq!(experts, 8 * 3 * 64 * 16 * 16 * 2);
    assert_eq!(
        f.active_bytes_per_token.value(),
        Some(&(f.total_bytes - experts + experts / 8))
    );
    // Small enough to load in a blink: the tokenizer is a third of it.
    assert!(len < 7_000_000, "{len} bytes");
}

/// The MTP variant: the same trunk with one more block; onboard reads the
/// trunk as before, the block as MTP, and the memory model charges it only
/// where speculative decoding is on.
#[test]
fn tiny_qwen35moe_mtp_facts() {
    use onboard::gguf::memory::{mtp_draft_bytes, single_backend, RunConfig};
    let (_d1, plain, _) = written("tiny-qwen35moe.gguf", tiny_qwen35::write_tiny_qwen35moe);
    let (_d2, f, len) = written("tiny-mtp.gguf", tiny_qwen35::write_tiny_qwen35moe_mtp);
    assert_eq!((f.block_count, f.mtp_layers, f.trunk_layers()), (9, 1, 8));
    assert_eq!(f.layers_label(), "8 + 1 MTP");
    assert_eq!(f.attention_layers(), plain.attention_layers());
    assert_eq!(f.recurrent_layers(), plain.recurrent_layers());
    assert_eq!(f.layers.value().unwrap()[8], LayerKind::Mtp);
    let tail = layer_bytes(&f, 8);
    assert!(tail > 0);
    assert_eq!(
        f.total_bytes,
        plain.total_bytes + tail,
        "weights include the tail"
    );
    let cfg = RunConfig::embedded_llama_cpp(4096);
    let (with, without) = (
        single_backend(&f, &cfg, false).unwrap(),
        single_backend(&plain, &cfg, false).unwrap(),
    );
    assert_eq!(
        with.kv_cache, without.kv_cache,
        "no draft context, no MTP KV"
    );
    assert_eq!(with.recurrent, without.recurrent);
    // Drafting 3 a round: the MTP block's KV at full context, 3 snapshots.
    let draft = mtp_draft_bytes(&f, &cfg.with_mtp_draft(3))
        .value()
        .unwrap()
        .clone();
    assert_eq!(draft.kv_cache, 2 * (2 * 32) * 4096 * 2);
    assert_eq!(draft.recurrent, 3 * without.recurrent);
    assert_eq!(
        mtp_draft_bytes(&plain, &cfg.with_mtp_draft(3))
            .value()
            .unwrap()
            .total(),
        0
    );
    assert_eq!(onboard::evaluate::mtp_draft(&f), 3);
    assert_eq!(onboard::evaluate::mtp_draft(&plain), 0);
    assert!(len < 7_200_000, "{len} bytes");
}

#[test]
fn tiny_qwen35_dense_facts() {
    let (_dir, f, len) = written("tiny-qwen35.gguf", tiny_qwen35::write_tiny_qwen35);
    assert_eq!(f.architecture, ARCH_DENSE);
    assert_hybrid_layout(&f);
    assert_eq!(f.head_count, 8);
    assert_eq!(f.head_count_kv, vec![4; 8]);
    assert_eq!(f.feed_forward_length, Some(192));
    assert!(f.experts.is_none() && !f.is_moe());
    assert_eq!(f.active_bytes_per_token.value(), Some(&f.total_bytes));
    // Tied output: llama.cpp reuses token_embd for the logits.
    assert!(!f.tensors.iter().any(|t| t.name == "output.weight"));
    assert_eq!(f.tensor_types["Q4_0"].tensors, 1);
    assert!(len < 5_000_000, "{len} bytes");
}

#[test]
fn fixtures_are_deterministic_and_complete() {
    let dir = tempfile::tempdir().unwrap();
    let smollm2 = smollm2::smollm2_gguf();
    for write in [
        tiny_qwen35::write_tiny_qwen35moe as fn(&Path, &Path) -> u64,
        tiny_qwen35::write_tiny_qwen35moe_mtp,
        tiny_qwen35::write_tiny_qwen35,
    ] {
        let (a, b) = (dir.path().join("a.gguf"), dir.path().join("b.gguf"));
        write(&smollm2, &a);
        write(&smollm2, &b);
        let bytes = std::fs::read(&a).unwrap();
        assert!(bytes == std::fs::read(&b).unwrap(), "same bytes every run");
        // The data section ends with the last tensor: nothing truncated,
        // nothing left over.
        let h = read_file(&a).unwrap();
        let last = h.tensors.iter().max_by_key(|t| t.offset).unwrap();
        assert_eq!(
            h.data_offset + last.offset + last.n_bytes().unwrap(),
            bytes.len() as u64
        );
        // Weights are not all zero (a zeroed model would not test a forward pass).
        let data = &bytes[h.data_offset as usize..];
        assert!(data.iter().filter(|b| **b != 0).count() > data.len() / 2);
    }
}

#[test]
fn fixtures_carry_smollm2s_tokenizer_and_template() {
    let src = read_file(&smollm2::smollm2_gguf()).unwrap();
    let w = tiny_qwen35::tiny_qwen35moe(&smollm2::smollm2_gguf());
    let tokenizer = |m: &[(String, Value)]| -> Vec<(String, Value)> {
        m.iter()
            .filter(|(k, _)| k.starts_with("tokenizer."))
            .cloned()
            .collect()
    };
    let copied = tokenizer(&w.metadata);
    assert_eq!(copied, tokenizer(&src.metadata));
    let template = copied
        .iter()
        .find(|(k, _)| k == "tokenizer.chat_template")
        .and_then(|(_, v)| v.as_str())
        .unwrap();
    assert!(template.contains("<|im_start|>"), "ChatML");
}

#[test]
fn evaluate_gives_a_gpu_holding_a_tied_output_the_embedding_copy() {
    use onboard::evaluate::strategy::Layout;
    use onboard::gguf::facts::GlobalGroup;
    let (_d1, tied, _) = written("tiny-qwen35.gguf", tiny_qwen35::write_tiny_qwen35);
    let (_d2, untied, _) = written("tiny-qwen35moe.gguf", tiny_qwen35::write_tiny_qwen35moe);
    let l = Layout::new(&tied, 1.0).unwrap();
    assert_eq!(
        l.output_gpu,
        l.output + tied.global_bytes(GlobalGroup::TokenEmbd)
    );
    assert_eq!(l.output, tied.global_bytes(GlobalGroup::Output));
    let l = Layout::new(&untied, 1.0).unwrap();
    assert_eq!(l.output_gpu, l.output);
}
