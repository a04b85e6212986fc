//! Model facts from written fixtures (the repository's Qwen3.5 models, a llama),
//! from split shards, and from the real SmolLM2 file.

use onboard::gguf::facts::{facts, facts_from_shards, Fact, FactsError, LayerKind};
use onboard::gguf::reader::{read_file, read_header_bytes, Header, Value};
use onboard::gguf::writer::Data;
use onboard_test_support::{eval_fixtures, gguf_fixtures, smollm2};

fn header(w: &onboard::gguf::writer::GgufWriter, name: &str) -> Header {
    read_header_bytes(&w.header_bytes(), name).unwrap()
}

#[test]
fn qwen35_35b_a3b_facts() {
    let f = facts(&header(&gguf_fixtures::qwen35_35b_a3b(), "35b.gguf")).unwrap();
    assert_eq!(f.architecture, "qwen35moe");
    assert_eq!(f.block_count, 40);
    assert_eq!(f.file_type_label.as_deref(), Some("Q6_K"));
    let attn = f.attention_layers();
    assert_eq!(attn, vec![3, 7, 11, 15, 19, 23, 27, 31, 35, 39]);
    assert_eq!(f.recurrent_layers().len(), 30);
    assert_eq!(f.head_count_kv, vec![2; 40]);
    assert_eq!((f.key_length, f.value_length), (256, 256));
    let e = f.experts.as_ref().unwrap();
    assert_eq!((e.total, e.used, e.shared), (256, 8, 1));
    assert_eq!(e.feed_forward_length, Some(512));
    assert_eq!(f.embedding_length, 2048);
    assert_eq!(f.context_length, Some(262_144));
    assert_eq!(f.vocab_size, Some(248_320));
    // ~35B parameters, ~3B of them active per token.
    let b = f.parameter_count as f64 / 1e9;
    assert!((34.0..36.5).contains(&b), "{b} B parameters");
    let active = *f.active_bytes_per_token.value().unwrap();
    // Q6_K is 0.82 bytes per weight; "A3B" counts about 3.3 B with embeddings.
    let gb = active as f64 / 1e9;
    assert!((2.5..3.2).contains(&gb), "{gb} GB active per token");
    assert!(f.total_bytes > 25 * (1 << 30));
    assert_eq!(
        f.tensor_types["Q6_K"].tensors + f.tensor_types["F32"].tensors,
        f.tensors.len() as u64
    );
}

#[test]
fn qwen35_27b_facts() {
    let f = facts(&header(&gguf_fixtures::qwen35_27b(), "27b.gguf")).unwrap();
    assert_eq!(f.architecture, "qwen35");
    assert_eq!(f.block_count, 64);
    assert_eq!(f.attention_layers().len(), 16);
    assert!(f.attention_layers().iter().all(|i| (i + 1) % 4 == 0));
    assert_eq!(f.head_count_kv, vec![4; 64]);
    assert_eq!(f.feed_forward_length, Some(17_408));
    assert!(f.experts.is_none());
    assert_eq!(
        f.active_bytes_per_token.value(),
        Some(&f.total_bytes),
        "dense: all weights"
    );
    assert_eq!(f.ssm.unwrap().inner_size, 6144);
}

#[test]
fn recurrent_layers_array_overrides_the_interval() {
    let mut w = gguf_fixtures::qwen35_27b();
    let flags: Vec<bool> = (0..64).map(|i| i % 2 == 0).collect();
    w.kv(
        "qwen35.attention.recurrent_layers",
        Value::Array(onboard::gguf::reader::Array::Bool(flags)),
    );
    let f = facts(&header(&w, "x")).unwrap();
    assert_eq!(f.attention_layers().len(), 32);
    assert_eq!(f.layers.value().unwrap()[0], LayerKind::Recurrent);
}

#[test]
fn hybrid_without_layout_keys_is_unknown_not_guessed() {
    let mut w = gguf_fixtures::qwen35_27b();
    w.metadata
        .retain(|(k, _)| k != "qwen35.full_attention_interval");
    let f = facts(&header(&w, "x")).unwrap();
    assert!(
        matches!(&f.layers, Fact::Unknown { reason } if reason.contains("full_attention_interval"))
    );
    // An architecture onboard does not know.
    let mut w = gguf_fixtures::llama_8b();
    w.str("general.architecture", "mystery");
    for (k, _) in w.metadata.iter_mut() {
        if let Some(rest) = k.strip_prefix("llama.") {
            *k = format!("mystery.{rest}");
        }
    }
    let f = facts(&header(&w, "x")).unwrap();
    assert!(matches!(&f.layers, Fact::Unknown { reason } if reason.contains("mystery")));
}

#[test]
fn llama_facts() {
    let f = facts(&header(&gguf_fixtures::llama_8b(), "llama.gguf")).unwrap();
    assert_eq!(f.architecture, "llama");
    assert_eq!(f.attention_layers().len(), 32);
    assert_eq!((f.head_count, f.key_length, f.value_length), (32, 128, 128));
    assert_eq!(f.file_type_label.as_deref(), Some("Q4_K_M"));
    let b = f.parameter_count as f64 / 1e9;
    assert!((7.9..8.1).contains(&b), "{b}");
}

#[test]
fn three_shards_in_any_order() {
    let model = gguf_fixtures::qwen35_35b_a3b();
    let whole = facts(&header(&model, "whole")).unwrap();
    let shards = gguf_fixtures::split(&model, 3);
    let mut hs: Vec<Header> = shards
        .iter()
        .enumerate()
        .map(|(i, w)| {
            header(
                w,
                &format!("Qwen3.5-35B-A3B-Q6_K-{:05}-of-00003.gguf", i + 1),
            )
        })
        .collect();
    let counts: Vec<usize> = hs.iter().map(|h| h.tensors.len()).collect();
    assert_eq!(
        counts.iter().sum::<usize>(),
        model.tensors.len(),
        "{counts:?}"
    );
    hs.reverse();
    let f = facts_from_shards(&hs).unwrap();
    assert_eq!(f.shard_count, 3);
    assert_eq!(f.parameter_count, whole.parameter_count);
    assert_eq!(f.total_bytes, whole.total_bytes);
    assert_eq!(f.active_bytes_per_token, whole.active_bytes_per_token);
    assert_eq!(f.layers, whole.layers);
    assert_eq!(f.tensors.iter().map(|t| t.shard).max(), Some(2));

    // A missing shard, a foreign shard, a duplicate.
    let err = facts_from_shards(&hs[..2]).unwrap_err();
    assert!(matches!(err, FactsError::ShardMismatch { .. }), "{err}");
    let mut other = gguf_fixtures::split(&gguf_fixtures::qwen35_27b(), 3);
    let foreign = header(&other.remove(1), "Qwen3.5-27B-Q8_0-00002-of-00003.gguf");
    let mixed = vec![hs[2].clone(), foreign, hs[0].clone()];
    let err = facts_from_shards(&mixed).unwrap_err();
    assert!(
        err.to_string()
            .contains("Qwen3.5-27B-Q8_0-00002-of-00003.gguf"),
        "{err}"
    );
    let dup = vec![hs[0].clone(), hs[0].clone(), hs[2].clone()];
    assert!(facts_from_shards(&dup).is_err());
}

#[test]
fn sparse_35b_file_on_disk_reads_like_its_header() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("Qwen3.5-35B-A3B-Q6_K.gguf");
    let w = gguf_fixtures::qwen35_35b_a3b();
    let len = w.write(&path, Data::Sparse).unwrap();
    let h = read_file(&path).unwrap();
    assert_eq!(h.data_end().0, len);
    assert_eq!(facts(&h).unwrap().total_bytes, w.data_len_tensors());
}

#[test]
fn smollm2_facts_match_the_file() {
    let h = read_file(&smollm2::smollm2_gguf()).unwrap();
    let f = facts(&h).unwrap();
    assert_eq!(f.architecture, "llama");
    assert_eq!(f.block_count, 30);
    assert_eq!(f.attention_layers().len(), 30);
    assert_eq!((f.head_count, f.head_count_kv[0], f.key_length), (9, 3, 64));
    assert_eq!(
        (f.embedding_length, f.feed_forward_length),
        (576, Some(1536))
    );
    assert_eq!(f.vocab_size, Some(49_152));
    assert_eq!(f.context_length, Some(8192));
    assert_eq!(f.file_type_label.as_deref(), Some("Q4_1"));
    assert_eq!(f.tensor_types["Q4_1"].tensors, 210);
    assert_eq!(f.tensor_types["F32"].tensors, 61);
    assert_eq!(f.tensor_types["Q8_0"].tensors, 1);
    assert_eq!(f.parameter_count, 134_515_008);
    // llama.cpp: "CPU_Mapped model buffer size = 92.10 MiB".
    assert_eq!(f.total_bytes, smollm2::FILE_LEN - h.data_offset);
    assert_eq!(format!("{:.2}", f.total_bytes as f64 / 1048576.0), "92.10");
    assert_eq!(f.active_bytes_per_token.value(), Some(&f.total_bytes));
    assert!(f.experts.is_none() && f.ssm.is_none());
}

#[test]
fn shards_on_disk_from_any_one_path() {
    let dir = tempfile::tempdir().unwrap();
    let shards = gguf_fixtures::split(&gguf_fixtures::qwen35_27b(), 3);
    for (i, w) in shards.iter().enumerate() {
        let p = dir
            .path()
            .join(format!("Qwen3.5-27B-Q8_0-{:05}-of-00003.gguf", i + 1));
        w.write(&p, Data::Sparse).unwrap();
    }
    let second = dir.path().join("Qwen3.5-27B-Q8_0-00002-of-00003.gguf");
    let paths = onboard::gguf::shard_paths(&second);
    assert_eq!(paths.len(), 3);
    assert!(paths[0].ends_with("Qwen3.5-27B-Q8_0-00001-of-00003.gguf"));
    let f = onboard::gguf::facts_from_files(&paths).unwrap();
    assert_eq!((f.shard_count, f.block_count), (3, 64));
    // A missing shard is an I/O error naming it.
    std::fs::remove_file(&paths[2]).unwrap();
    let err = onboard::gguf::facts_from_files(&paths).unwrap_err();
    assert!(err.to_string().contains("00003-of-00003"), "{err}");
    assert_eq!(
        onboard::gguf::shard_paths(std::path::Path::new("/m/x.gguf")),
        vec![std::path::PathBuf::from("/m/x.gguf")]
    );
}

/// Each fixture is the model its name says: parameters (in billions), the
/// bytes per weight of its quant, and how much of it a token reads.
#[test]
fn fixture_sizes_match_their_names_and_quants() {
    for (name, w, billions, bytes_per_weight, moe) in [
        // Q6_K: 6.5625 bits per weight; "A3B" reads ~3 B parameters a token.
        (
            "35B-A3B",
            gguf_fixtures::qwen35_35b_a3b(),
            34.0..36.5,
            0.80..0.84,
            true,
        ),
        // Q8_0: 8.5 bits per weight.
        (
            "27B",
            gguf_fixtures::qwen35_27b(),
            26.5..27.5,
            1.05..1.07,
            false,
        ),
        // Q4_K_M: 4.5 to 6.5625 bits per weight over its tensor mix.
        (
            "llama-8B",
            gguf_fixtures::llama_8b(),
            7.9..8.1,
            0.56..0.7,
            false,
        ),
    ] {
        let f = facts(&header(&w, name)).unwrap();
        let active = *f.active_bytes_per_token.value().unwrap();
        println!(
            "{name}: {:.2} B parameters, {:.2} GB, active {:.2} GB/token",
            f.parameter_count as f64 / 1e9,
            f.total_bytes as f64 / 1e9,
            active as f64 / 1e9
        );
        let b = f.parameter_count as f64 / 1e9;
        assert!(billions.contains(&b), "{name}: {b} B parameters");
        let per_weight = f.total_bytes as f64 / f.parameter_count as f64;
        assert!(
            bytes_per_weight.contains(&per_weight),
            "{name}: {per_weight} bytes per weight"
        );
        if moe {
            // "A3B": about 3.5 B of the parameters are read per token.
            let active_b = active as f64 / per_weight / 1e9;
            assert!(
                (3.0..4.0).contains(&active_b),
                "{name}: {active_b} B active"
            );
        } else {
            assert_eq!(active, f.total_bytes, "{name}: dense reads it all");
        }
    }
}

/// The 35B-A3B and the 27B as they ship with a multi-token-prediction head:
/// the trunk's layers and kinds are those of the file without it, the tail
/// is its own kind, its weights count in the file's size but not in a
/// token's pass; the header key and the `nextn` tensor names both tell.
#[test]
fn an_mtp_tail_is_counted_apart_from_the_trunk() {
    let plain = facts(&header(&gguf_fixtures::qwen35_35b_a3b(), "35b.gguf")).unwrap();
    for (declared, what) in [(true, "the key"), (false, "the tensor names")] {
        let w = gguf_fixtures::qwen35_35b_a3b_mtp(declared);
        let f = facts(&header(&w, "35b-mtp.gguf")).unwrap();
        assert_eq!(
            (f.block_count, f.mtp_layers, f.trunk_layers()),
            (41, 1, 40),
            "{what}"
        );
        assert_eq!(f.layers_label(), "40 + 1 MTP");
        assert_eq!(f.attention_layers(), plain.attention_layers(), "{what}");
        assert_eq!(f.recurrent_layers(), plain.recurrent_layers(), "{what}");
        assert_eq!(f.layers.value().unwrap()[40], LayerKind::Mtp);
        let tail = gguf_fixtures::layer_bytes(&f, 40);
        assert!(tail > 0);
        assert_eq!(
            f.total_bytes,
            plain.total_bytes + tail,
            "weights include the tail"
        );
        assert_eq!(
            f.active_bytes_per_token, plain.active_bytes_per_token,
            "a token's pass does not read the tail"
        );
    }
    let dense = facts(&header(&gguf_fixtures::qwen35_27b(), "27b.gguf")).unwrap();
    let f = facts(&header(&gguf_fixtures::qwen35_27b_mtp(), "27b-mtp.gguf")).unwrap();
    assert_eq!(f.layers_label(), "64 + 1 MTP");
    assert_eq!(f.attention_layers().len(), 16);
    assert_eq!(f.attention_layers(), dense.attention_layers());
    assert_eq!(f.recurrent_layers(), dense.recurrent_layers());
    // The 122B-A10B at its real widths (its UD-Q4_K_XL header), with
    // the tail the public files carry: 48 + 1, the same 12 attention layers.
    let (model, _, _, _, ftype, mix) = eval_fixtures::plan_quants()
        .into_iter()
        .find(|(m, _, q, ..)| m.name == "Qwen3.5-122B-A10B" && *q == "UD-Q4_K_XL")
        .unwrap();
    let plain_122b = eval_fixtures::qwen35(model, ftype, &mix);
    let mut w = eval_fixtures::qwen35(model, ftype, &mix);
    w.u32("qwen35moe.block_count", 49)
        .u32("qwen35moe.nextn_predict_layers", 1);
    let q = onboard::gguf::types::GgmlType::Q4_K;
    gguf_fixtures::mtp_block(&mut w, 48, 3072, 32, 2, 256, q);
    gguf_fixtures::moe_ffn(&mut w, 48, 3072, 256, 1024, q);
    let (plain_122b, f) = (
        facts(&header(&plain_122b, "122b.gguf")).unwrap(),
        facts(&header(&w, "122b-mtp.gguf")).unwrap(),
    );
    assert_eq!(f.layers_label(), "48 + 1 MTP");
    assert_eq!(f.attention_layers().len(), 12);
    assert_eq!(f.attention_layers(), plain_122b.attention_layers());
    assert_eq!(f.recurrent_layers(), plain_122b.recurrent_layers());
    let cfg = onboard::gguf::memory::RunConfig::server(262_144);
    assert_eq!(
        onboard::gguf::memory::kv_cache_bytes_for(&f, &cfg).value(),
        onboard::gguf::memory::kv_cache_bytes_for(&plain_122b, &cfg).value()
    );
    assert_eq!(
        onboard::gguf::memory::recurrent_state_bytes(&f, 1).value(),
        onboard::gguf::memory::recurrent_state_bytes(&plain_122b, 1).value()
    );
    assert!(
        f.total_bytes > plain_122b.total_bytes,
        "weights include the tail"
    );
    // Without a tail, nothing changes.
    assert_eq!(
        (plain.mtp_layers, plain.layers_label()),
        (0, "40".to_string())
    );
}
