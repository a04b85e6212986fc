//! The GGUF header reader against a real file (SmolLM2), written fixtures,
//! truncated and hostile inputs.

use onboard_test_support::{gguf_fixtures, smollm2};
use std::io::Read;

use onboard::gguf::reader::{read_file, read_header, read_header_bytes, Array, GgufError, Value};
use onboard::gguf::types::{FileType, GgmlType};
use onboard::gguf::writer::{Data, GgufWriter};
use proptest::prelude::*;

#[test]
fn smollm2_header_matches_the_file() {
    let path = smollm2::smollm2_gguf();
    let len = std::fs::metadata(&path).unwrap().len();
    assert_eq!(len, smollm2::FILE_LEN);
    let h = read_file(&path).unwrap();
    assert_eq!(h.version, 3);
    assert_eq!(h.architecture(), Some("llama"));
    assert_eq!(h.metadata.len(), 33);
    assert_eq!(h.tensors.len(), 272);
    assert_eq!(h.alignment, 32);
    assert_eq!(h.data_offset, 1_785_664);
    assert_eq!(h.get_u64("llama.block_count"), Some(30));
    assert_eq!(h.get_u64("llama.context_length"), Some(8192));
    assert_eq!(
        h.get_u64("general.file_type")
            .map(|v| FileType(v as u32).label()),
        Some("Q4_1".into())
    );
    // Token arrays are read in full, not capped.
    let tokens = h.get_array("tokenizer.ggml.tokens").unwrap();
    assert_eq!(tokens.len(), 49_152);
    assert!(matches!(tokens, Array::String(v) if v[1] == "<|im_start|>"));
    assert_eq!(h.get_array("tokenizer.ggml.merges").unwrap().len(), 48_900);
    assert_eq!(
        h.get_array("tokenizer.ggml.token_type").unwrap().len(),
        49_152
    );
    assert!(h
        .get_str("tokenizer.chat_template")
        .unwrap()
        .contains("<|im_start|>"));
    // Data offset + every tensor's size add up to the file size exactly.
    let sum: u64 = h.tensors.iter().map(|t| t.n_bytes().unwrap()).sum();
    let (end, last) = h.data_end();
    assert_eq!(end, len);
    assert_eq!(
        h.data_offset + sum,
        len,
        "tensors are packed back to back here"
    );
    assert_eq!(last.unwrap().name, h.tensors.last().unwrap().name);
    let embd = &h.tensors[0];
    assert_eq!(
        (embd.name.as_str(), embd.ty, embd.dims.as_slice()),
        ("token_embd.weight", GgmlType::Q8_0, &[576u64, 49_152][..])
    );
    assert_eq!(embd.n_bytes(), Some(30_081_024));
}

#[test]
fn smollm2_prefix_read_asks_for_more_then_succeeds() {
    let path = smollm2::smollm2_gguf();
    let mut f = std::fs::File::open(&path).unwrap();
    let mut prefix = vec![0u8; 64 * 1024];
    f.read_exact(&mut prefix).unwrap();
    let err = read_header_bytes(&prefix, "hf://smollm2").unwrap_err();
    let need = err
        .needed_bytes()
        .expect("an incomplete header says how much it needs");
    assert!(need > prefix.len() as u64, "{err}");
    assert!(err.to_string().contains("hf://smollm2"), "{err}");
    // Fetch-more loop as a remote caller would run it.
    let mut have = prefix.len() as u64;
    let mut rounds = 0;
    let h = loop {
        rounds += 1;
        let mut buf = vec![0u8; have as usize];
        let mut f = std::fs::File::open(&path).unwrap();
        f.read_exact(&mut buf).unwrap();
        match read_header_bytes(&buf, "hf://smollm2") {
            Ok(h) => break h,
            Err(e) => have = e.needed_bytes().unwrap().max(have * 2),
        }
        assert!(rounds < 10);
    };
    assert_eq!(h.data_offset, 1_785_664);
    assert!(
        have <= 2 * h.data_offset,
        "fetched {have} for a {}-byte header",
        h.data_offset
    );
}

fn tiny() -> GgufWriter {
    let mut w = GgufWriter::new();
    w.str("general.architecture", "llama")
        .u32("llama.block_count", 1)
        .u32("llama.embedding_length", 64)
        .tensor("blk.0.ffn_up.weight", &[64, 32], GgmlType::F16)
        .tensor("blk.0.ffn_down.weight", &[32, 64], GgmlType::Q8_0);
    w
}

#[test]
fn truncated_file_names_the_file_and_the_missing_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model-trunc.gguf");
    let w = tiny();
    let full = w.to_bytes();
    std::fs::write(&path, &full[..full.len() - 100]).unwrap();
    let err = read_file(&path).unwrap_err();
    match &err {
        GgufError::Truncated {
            file,
            missing,
            tensor,
            ..
        } => {
            assert_eq!(*missing, 100);
            assert!(file.ends_with("model-trunc.gguf"));
            assert_eq!(tensor, "blk.0.ffn_down.weight");
        }
        other => panic!("expected Truncated, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("model-trunc.gguf") && msg.contains("100 bytes missing"),
        "{msg}"
    );

    // Header only (download stopped early): still named, still counted.
    w.write(&path, Data::None).unwrap();
    let err = read_file(&path).unwrap_err();
    assert!(
        matches!(err, GgufError::Truncated { missing, .. } if missing == w.data_len()),
        "{err}"
    );

    // Cut inside the header: the offset and what was being read.
    std::fs::write(&path, &full[..40]).unwrap();
    let err = read_file(&path).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, GgufError::UnexpectedEof { .. }), "{msg}");
    assert!(
        msg.contains("model-trunc.gguf") && msg.contains("byte"),
        "{msg}"
    );
}

#[test]
fn sparse_file_with_full_length_passes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sparse.gguf");
    let w = tiny();
    let len = w.write(&path, Data::Sparse).unwrap();
    assert_eq!(len, w.header_bytes().len() as u64 + w.data_len());
    let h = read_file(&path).unwrap();
    assert_eq!(h.data_end().0, len);
}

#[test]
fn unknown_tensor_types_are_kept_as_raw_ids() {
    let mut w = tiny();
    w.tensor("blk.0.future.weight", &[256, 4], GgmlType(77));
    w.tensor("blk.0.gone.weight", &[256, 4], GgmlType(31));
    let h = read_header_bytes(&w.header_bytes(), "mem").unwrap();
    assert_eq!(h.tensors[2].ty, GgmlType(77));
    assert_eq!(h.tensors[2].n_bytes(), None);
    assert_eq!(h.tensors[3].ty.name(), "type31");
    let f = onboard::gguf::facts(&h).unwrap();
    assert_eq!(
        f.unknown_type_tensors,
        vec!["blk.0.future.weight", "blk.0.gone.weight"]
    );
    assert!(f.tensor_types["type77"].bytes.is_none());
    assert!(f.active_bytes_per_token.value().is_none());
}

#[test]
fn bf16_mxfp4_iq4nl_tensor_sizes() {
    let mut w = GgufWriter::new();
    w.str("general.architecture", "gpt-oss")
        .u32("gpt-oss.block_count", 1)
        .tensor(
            "blk.0.ffn_up_exps.weight",
            &[2880, 2880, 32],
            GgmlType::MXFP4,
        )
        .tensor("blk.0.attn_q.weight", &[2880, 4096], GgmlType::BF16)
        .tensor("blk.0.ffn_down.weight", &[4096, 1024], GgmlType::IQ4_NL)
        .tensor("blk.0.f64", &[3], GgmlType(28))
        .tensor("blk.0.i8", &[3], GgmlType(24));
    let h = read_header_bytes(&w.header_bytes(), "mem").unwrap();
    let sizes: Vec<_> = h.tensors.iter().map(|t| t.n_bytes().unwrap()).collect();
    assert_eq!(
        sizes,
        vec![
            2880 * 2880 * 32 / 32 * 17,
            2880 * 4096 * 2,
            4096 * 1024 / 32 * 18,
            24,
            3
        ]
    );
}

#[test]
fn version_2_nested_arrays_and_all_value_types() {
    let mut w = GgufWriter::new();
    w.version = 2;
    w.str("general.architecture", "llama")
        .kv("u8", Value::U8(7))
        .kv("i8", Value::I8(-7))
        .kv("u16", Value::U16(700))
        .kv("i16", Value::I16(-700))
        .kv("i32", Value::I32(-70_000))
        .kv("u64", Value::U64(1 << 40))
        .kv("i64", Value::I64(-(1 << 40)))
        .kv("f64", Value::F64(0.25))
        .kv("bool", Value::Bool(true))
        .kv("general.alignment", Value::U32(64))
        .kv(
            "nested",
            Value::Array(Array::Array(vec![
                Array::I32(vec![1, 2]),
                Array::String(vec!["x".into()]),
                Array::Array(vec![Array::Bool(vec![true, false])]),
            ])),
        )
        .tensor("t", &[10], GgmlType::F32);
    let bytes = w.to_bytes();
    let h = read_header_bytes(&bytes, "mem").unwrap();
    assert_eq!(h.version, 2);
    assert_eq!(h.alignment, 64);
    assert_eq!(h.data_offset % 64, 0);
    assert_eq!(h.metadata, w.metadata);
    assert_eq!(h.get_u64("i32"), None, "negative is not a count");
    assert_eq!(h.get_f64("f64"), Some(0.25));
    // A reader on a stream (no known length) gets the same.
    let h2 = read_header(&bytes[..], "stream", None).unwrap();
    assert_eq!(h2.metadata, h.metadata);
}

#[test]
fn hostile_lengths_are_rejected_without_allocating() {
    // Magic, version 3, 1 tensor, 1 kv, key "k", type string, length 2^62.
    let mut b = b"GGUF".to_vec();
    b.extend(3u32.to_le_bytes());
    b.extend(0u64.to_le_bytes());
    b.extend(1u64.to_le_bytes());
    b.extend(1u64.to_le_bytes());
    b.push(b'k');
    b.extend(8u32.to_le_bytes());
    b.extend((1u64 << 62).to_le_bytes());
    let err = read_header_bytes(&b, "evil").unwrap_err();
    assert!(matches!(err, GgufError::UnexpectedEof { .. }), "{err}");
    // Same on a stream: fails at the end of input, having read what is there.
    let err = read_header(&b[..], "evil", None).unwrap_err();
    assert!(matches!(err, GgufError::UnexpectedEof { .. }), "{err}");
    // An array claiming 2^60 u64 elements.
    let mut a = b[..b.len() - 12].to_vec();
    a.extend(9u32.to_le_bytes());
    a.extend(10u32.to_le_bytes());
    a.extend((1u64 << 60).to_le_bytes());
    assert!(read_header_bytes(&a, "evil").is_err());
    assert!(read_header(&a[..], "evil", None).is_err());
    // Bad magic / version.
    assert!(matches!(
        read_header_bytes(b"GGML\x03\0\0\0", "x"),
        Err(GgufError::BadMagic { .. })
    ));
    let mut v = b"GGUF".to_vec();
    v.extend(9u32.to_le_bytes());
    assert!(matches!(
        read_header_bytes(&v, "x"),
        Err(GgufError::UnsupportedVersion { version: 9, .. })
    ));
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let mut b = b"GGUF".to_vec();
    b.extend(3u32.to_le_bytes());
    b.extend(0u64.to_le_bytes());
    b.extend(1u64.to_le_bytes());
    b.extend(1u64.to_le_bytes());
    b.push(b'k');
    b.extend(9u32.to_le_bytes());
    for _ in 0..100_000 {
        b.extend(9u32.to_le_bytes());
        b.extend(1u64.to_le_bytes());
    }
    let err = read_header_bytes(&b, "deep").unwrap_err();
    assert!(matches!(err, GgufError::Invalid { .. }), "{err}");
}

/// Valid headers to mutate: a small model with strings, arrays, tensors.
fn seed() -> Vec<u8> {
    let mut w = tiny();
    w.kv(
        "tokenizer.ggml.tokens",
        Value::Array(Array::String(vec!["a".into(), "bc".into()])),
    )
    .kv(
        "n",
        Value::Array(Array::Array(vec![Array::U8(vec![1, 2, 3])])),
    );
    w.header_bytes()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = read_header_bytes(&bytes, "fuzz");
        let _ = read_header(&bytes[..], "fuzz", None);
        let mut with_magic = b"GGUF\x03\0\0\0".to_vec();
        with_magic.extend(&bytes);
        let _ = read_header_bytes(&with_magic, "fuzz");
        let _ = read_header(&with_magic[..], "fuzz", None);
    }

    #[test]
    fn mutated_headers_never_panic(
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        cut in any::<usize>(),
    ) {
        let mut b = seed();
        for (at, byte) in edits {
            let i = at % b.len();
            b[i] = byte;
        }
        let cut = cut % (b.len() + 1);
        if let Ok(h) = read_header_bytes(&b[..cut], "fuzz") {
            // Whatever parsed is bounded by the input.
            prop_assert!(h.header_len <= cut as u64);
            prop_assert!(h.tensors.len() <= cut / 24 + 1);
            let _ = onboard::gguf::facts(&h);
        }
        let _ = read_header(&b[..cut], "fuzz", None);
    }
}

/// Bytes served and calls made by a fetcher.
#[derive(Default, Clone)]
struct Served(std::rc::Rc<std::cell::Cell<(u64, u32)>>);

impl Served {
    fn bytes(&self) -> u64 {
        self.0.get().0
    }
    fn calls(&self) -> u32 {
        self.0.get().1
    }
}

/// A range fetcher over bytes in memory that counts what it serves.
fn counting_fetcher(
    bytes: &[u8],
    served: &Served,
) -> impl FnMut(u64, u64) -> std::io::Result<Vec<u8>> {
    let bytes = bytes.to_vec();
    let served = served.clone();
    move |start, end| {
        let s = (start as usize).min(bytes.len());
        let e = (end as usize).min(bytes.len());
        let (b, c) = served.0.get();
        served.0.set((b + (e - s) as u64, c + 1));
        Ok(bytes[s..e].to_vec())
    }
}

#[test]
fn incremental_fetch_reads_smollm2_with_less_than_twice_the_header() {
    let path = smollm2::smollm2_gguf();
    let bytes = std::fs::read(&path).unwrap();
    let served = Served::default();
    let (h, fetched) = onboard::gguf::read_header_incremental(
        "hf://HuggingFaceTB/SmolLM2",
        64 * 1024,
        Some(bytes.len() as u64),
        counting_fetcher(&bytes, &served),
    )
    .unwrap();
    assert_eq!(fetched, served.bytes());
    assert_eq!(h.data_offset, 1_785_664);
    let (bytes, calls) = (served.bytes(), served.calls());
    println!(
        "SmolLM2: {bytes} bytes in {calls} requests for a {}-byte header",
        h.header_len
    );
    assert!(
        bytes <= 2 * h.header_len,
        "{bytes} bytes for a {}-byte header",
        h.header_len
    );
    assert!(calls <= 6, "{calls} round trips");
}

#[test]
fn incremental_fetch_of_three_shards_stays_under_twice_the_headers() {
    let shards = gguf_fixtures::split(&gguf_fixtures::qwen35_35b_a3b(), 3);
    let served = Served::default();
    let mut header_total = 0u64;
    let mut headers = Vec::new();
    for (i, w) in shards.iter().enumerate() {
        // Header bytes followed by (a little of) the data: what a server has.
        let mut file = w.header_bytes();
        file.extend(std::iter::repeat_n(0u8, 4096));
        let (h, _) = onboard::gguf::read_header_incremental(
            &format!("hf://Qwen/Qwen3.5-35B-A3B-{:05}-of-00003.gguf", i + 1),
            4096,
            None,
            counting_fetcher(&file, &served),
        )
        .unwrap();
        header_total += h.header_len;
        headers.push(h);
    }
    let (bytes, calls) = (served.bytes(), served.calls());
    println!("3 shards: {bytes} bytes in {calls} requests for {header_total} bytes of headers");
    assert!(
        bytes <= 2 * header_total,
        "{bytes} bytes fetched for {header_total} bytes of headers"
    );
    let f = onboard::gguf::facts_from_shards(&headers).unwrap();
    assert_eq!(f.shard_count, 3);
    assert_eq!(f.attention_layers().len(), 10);
}
