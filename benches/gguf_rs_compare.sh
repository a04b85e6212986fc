#!/usr/bin/env bash
# Times gguf-rs 0.1.8 (a GGUF reader crate on the Rust crate registry) on the same files as
# benches/gguf_header.sh, and prints what it reports for file type and
# tensor sizes. Built in a throw-away project outside this crate: gguf-rs
# turns on serde_json's `arbitrary_precision` for everything it is linked
# with, which is one reason onboard does not depend on it.
# Usage: benches/gguf_rs_compare.sh FILE.gguf... (ITERS=20)
set -euo pipefail
ITERS=${ITERS:-20}
DIR=${GGUF_RS_BENCH_DIR:-/tmp/onboard-gguf-rs-bench}
mkdir -p "$DIR/src"
cat > "$DIR/Cargo.toml" <<'TOML'
[package]
name = "gguf-rs-bench"
version = "0.0.0"
edition = "2021"
publish = false
[dependencies]
gguf-rs = "=0.1.8"
[workspace]
TOML
cat > "$DIR/src/main.rs" <<'RS'
use std::time::Instant;
fn main() {
    std::panic::set_hook(Box::new(|_| {}));
    let iters: usize = std::env::var("ITERS").ok().and_then(|s| s.parse().ok()).unwrap_or(20);
    for path in std::env::args().skip(1) {
        for (label, cap) in [("default (arrays capped at 3)", 3u64), ("full arrays", u64::MAX)] {
            let mut ts = Vec::new();
            let mut summary = String::new();
            for _ in 0..iters {
                let t = Instant::now();
                let r = std::panic::catch_unwind(|| {
                    gguf_rs::get_gguf_container_array_size(&path, cap).and_then(|mut c| c.decode())
                });
                ts.push(t.elapsed().as_secs_f64());
                summary = match r {
                    Ok(Ok(m)) => {
                        let n = if m.num_tensor() <= 10 { 10 } else { 2 };
                        let big: Vec<String> = m.tensors().iter().take(n)
                            .map(|t| format!("{} kind {} size {}", t.name, t.kind, t.size)).collect();
                        format!("file_type {:?}; {} tensors; {}", m.file_type(), m.num_tensor(), big.join("; "))
                    }
                    Ok(Err(e)) => format!("error: {e}"),
                    Err(_) => "PANIC".to_string(),
                };
                if summary == "PANIC" {
                    break;
                }
            }
            ts.sort_by(f64::total_cmp);
            println!("gguf-rs {label}: median {:.3} ms, min {:.3} ms over {} reads of {path}\n  -> {summary}",
                ts[ts.len() / 2] * 1e3, ts[0] * 1e3, ts.len());
        }
    }
}
RS
(cd "$DIR" && cargo build --release -q 2>&1 | tail -5)
ITERS=$ITERS "$DIR/target/release/gguf-rs-bench" "$@"
