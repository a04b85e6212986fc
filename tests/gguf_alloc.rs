//! The reader never allocates more than its input justifies: measured with a
//! counting global allocator (one test in this binary, so nothing else
//! allocates concurrently).

use counting_alloc::peak_during;
use onboard::gguf::reader::{read_file, read_header, read_header_bytes};
use onboard_test_support::{counting_alloc, smollm2};

#[global_allocator]
static GLOBAL: counting_alloc::Counting = counting_alloc::Counting;

/// Read buffer (256 KiB) plus one string chunk (64 KiB) plus slack.
const FIXED: usize = 512 * 1024;

fn header_start(n_tensors: u64, n_kv: u64) -> Vec<u8> {
    let mut b = b"GGUF".to_vec();
    b.extend(3u32.to_le_bytes());
    b.extend(n_tensors.to_le_bytes());
    b.extend(n_kv.to_le_bytes());
    b
}

#[test]
fn allocation_is_bounded_by_the_input() {
    // A string claiming 1 TiB, 8 real bytes: on a stream (length unknown).
    let mut s = header_start(0, 1);
    s.extend(1u64.to_le_bytes());
    s.push(b'k');
    s.extend(8u32.to_le_bytes());
    s.extend((1u64 << 40).to_le_bytes());
    s.extend(b"12345678");
    let p = peak_during(|| assert!(read_header(&s[..], "s", None).is_err()));
    assert!(p < FIXED, "1 TiB string claim: {p} bytes allocated");
    let p = peak_during(|| assert!(read_header_bytes(&s, "s").is_err()));
    assert!(p < FIXED, "{p}");

    // Arrays claiming 2^60 elements of each kind.
    for ty in [0u32, 6, 8, 9, 10] {
        let mut a = header_start(0, 1);
        a.extend(1u64.to_le_bytes());
        a.push(b'k');
        a.extend(9u32.to_le_bytes());
        a.extend(ty.to_le_bytes());
        a.extend((1u64 << 60).to_le_bytes());
        a.extend([0u8; 64]);
        let p = peak_during(|| assert!(read_header(&a[..], "a", None).is_err()));
        assert!(p < FIXED, "array of type {ty}: {p}");
    }

    // 2^60 tensors and 2^60 keys claimed by a 24-byte file.
    let t = header_start(1 << 60, 1 << 60);
    let p = peak_during(|| assert!(read_header(&t[..], "t", None).is_err()));
    assert!(p < FIXED, "{p}");

    // Random mutations of a valid header: allocation stays within a small
    // multiple of the input (typed arrays; ≤ 3× for string tables).
    let mut w = onboard::gguf::writer::GgufWriter::new();
    w.str("general.architecture", "llama").kv(
        "tokenizer.ggml.tokens",
        onboard::gguf::reader::Value::Array(onboard::gguf::reader::Array::String(
            (0..200).map(|i| format!("tok{i}")).collect(),
        )),
    );
    w.tensor("blk.0.w", &[32, 32], onboard::gguf::types::GgmlType::F16);
    let seed = w.header_bytes();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..2000 {
        let mut b = seed.clone();
        for _ in 0..(next() % 6 + 1) {
            let i = (next() as usize) % b.len();
            b[i] = next() as u8;
        }
        let cut = (next() as usize) % (b.len() + 1);
        let input = &b[..cut];
        let p = peak_during(|| {
            let _ = read_header(input, "m", None);
        });
        assert!(
            p < FIXED + 16 * input.len(),
            "{p} bytes for {} input bytes",
            input.len()
        );
    }

    // The real file: what a full tokenizer costs against the header's size.
    let path = smollm2::smollm2_gguf();
    let mut header_len = 0;
    let p = peak_during(|| header_len = read_file(&path).unwrap().header_len as usize);
    println!(
        "SmolLM2: peak {p} bytes allocated for a {header_len}-byte header ({:.2}x)",
        p as f64 / header_len as f64
    );
    assert!(p < FIXED + 4 * header_len, "{p}");
}
