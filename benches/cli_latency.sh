#!/usr/bin/env bash
# Wall time of `onboard validate`, `plan` and `graph` on this repository's
# own workspace (release build, 30 runs each, median and max).
# Usage: benches/cli_latency.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
for args in "validate" "plan qwen3.5-35b-a3b" "graph"; do
  python3 - "$args" <<'PY'
import subprocess, sys, time
args = sys.argv[1].split()
times = []
for _ in range(30):
    t = time.perf_counter()
    subprocess.run(["./target/release/onboard", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    times.append(time.perf_counter() - t)
times.sort()
print(f"onboard {sys.argv[1]}: median {times[15]*1000:.1f} ms, max {times[-1]*1000:.1f} ms")
PY
done
