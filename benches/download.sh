#!/usr/bin/env bash
# Download benchmark over loopback from the local Hub mirror:
#   onboard's downloader (examples/hub_download: parallel ranges, sha256 while
#   writing, fsync + rename) against `curl -o`, `curl -o` + `sha256sum`, and
#   `hf download --local-dir` (PyPI huggingface_hub, HF_ENDPOINT -> mirror);
#   then a SIGKILL at about half-way and a rerun, counting the bytes the
#   mirror sent in both runs beyond the file size.
#
# Usage: benches/download.sh [SIZE_MIB=2048] [REPS=3]
# Env:   BENCH_DIR (scratch, default /tmp/onboard-download-bench), PORT,
#        HF_VENV (a venv with huggingface_hub; made in BENCH_DIR if absent).
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MIB=${1:-${SIZE_MIB:-2048}}
REPS=${2:-${REPS:-3}}
WORK=${BENCH_DIR:-/tmp/onboard-download-bench}
PORT=${PORT:-18090}
SIZE=$((SIZE_MIB * 1024 * 1024))
BIN=target/release/examples

# The examples build with the default features, so llama.cpp's bindgen needs
# a libclang: scripts/setup puts PyPI's in .venv, scripts/build-env finds it.
scripts/setup main
. scripts/build-env
cargo build --release --locked --quiet --example hub_mirror --example hub_download

mkdir -p "$WORK/mirror/bench/big"
F=$WORK/mirror/bench/big/big.gguf
if [ "$(stat -c %s "$F" 2>/dev/null || echo 0)" != "$SIZE" ]; then
  echo "writing a ${SIZE_MIB} MiB random file" >&2
  head -c "$SIZE" /dev/urandom > "$F"
fi
VENV=${HF_VENV:-$WORK/venv}
if [ ! -x "$VENV/bin/hf" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check huggingface_hub
fi

HUB_MIRROR_LOG=1 "$BIN/hub_mirror" "$WORK/mirror" "127.0.0.1:$PORT" >/dev/null 2>"$WORK/mirror.log" &
MPID=$!
trap 'kill $MPID 2>/dev/null || true' EXIT
URL=http://127.0.0.1:$PORT
FILE_URL=$URL/bench/big/resolve/main/big.gguf
for _ in $(seq 50); do curl -sfI "$FILE_URL" >/dev/null && break; sleep 0.1; done
curl -sfI "$FILE_URL" >/dev/null # the mirror hashes the file once, here
cat "$F" >/dev/null              # and it is in the page cache for everyone

export HF_ENDPOINT=$URL HF_HUB_DISABLE_TELEMETRY=1 HF_HUB_DISABLE_PROGRESS_BARS=1
OUT=$WORK/out
RESULTS=$WORK/results.txt
: >"$RESULTS"
now() { date +%s.%N; }
fresh() { rm -rf "$OUT" "$WORK/hf-home"; mkdir -p "$OUT" "$WORK/hf-home"; sync; }
timed() { # name command...
  local name=$1 t0 t1
  shift
  fresh
  t0=$(now)
  "$@" >/dev/null 2>"$WORK/last.err" || { echo "$name failed:" >&2; cat "$WORK/last.err" >&2; exit 1; }
  t1=$(now)
  echo "$name $(awk "BEGIN{print $t1 - $t0}")" | tee -a "$RESULTS"
}
onboard_dl() { HF_HOME=$WORK/hf-home "$BIN/hub_download" bench/big big.gguf "$OUT"; }
curl_dl() { curl -sf -o "$OUT/big.gguf" "$FILE_URL"; }
curl_sha() { curl_dl && sha256sum "$OUT/big.gguf"; }
hf_dl() { HF_HOME=$WORK/hf-home "$VENV/bin/hf" download bench/big big.gguf --local-dir "$OUT"; }

for i in $(seq "$REPS"); do
  timed onboard onboard_dl
  timed curl curl_dl
  timed curl+sha256sum curl_sha
  timed hf-download hf_dl
done

# SIGKILL at ~50 % and a rerun: bytes the mirror sent beyond the file size.
fresh
mark=$(wc -l <"$WORK/mirror.log")
HF_HOME=$WORK/hf-home "$BIN/hub_download" bench/big big.gguf "$OUT" >/dev/null 2>&1 &
DPID=$!
state=$OUT/big.gguf.part.state
done_bytes() {
  python3 - "$state" <<'PY'
import struct, sys
try:
    b = open(sys.argv[1], "rb").read()[4096:]
    print(sum(struct.unpack("<%dQ" % (len(b) // 8), b[: len(b) // 8 * 8])))
except OSError:
    print(0)
PY
}
while [ "$(done_bytes)" -lt $((SIZE / 2)) ]; do sleep 0.01; done
kill -9 "$DPID"
wait "$DPID" 2>/dev/null || true
at_kill=$(done_bytes)
sleep 0.5
HF_HOME=$WORK/hf-home "$BIN/hub_download" bench/big big.gguf "$OUT" >"$WORK/rerun.json"
sleep 0.5
sent=$(tail -n +"$((mark + 1))" "$WORK/mirror.log" | awk '/^GET .*resolve/ { sub("bytes=", "", $NF); s += $NF } END { printf "%.0f\n", s }')
echo "kill-at-bytes $at_kill" | tee -a "$RESULTS"
echo "sent-both-runs $sent" | tee -a "$RESULTS"
echo "extra-bytes $((sent - SIZE))" | tee -a "$RESULTS"
rerun=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["fetched"])' "$WORK/rerun.json")
echo "rerun-fetched $rerun" | tee -a "$RESULTS"
echo "remainder-at-kill $((SIZE - at_kill))" | tee -a "$RESULTS"

python3 - "$RESULTS" "$SIZE" <<'PY'
import statistics, sys
times, other = {}, {}
for line in open(sys.argv[1]):
    k, v = line.split()
    (times.setdefault(k, []) if "-" not in k or k == "hf-download" else other.setdefault(k, [])).append(float(v))
size = int(sys.argv[2])
med = {k: statistics.median(v) for k, v in times.items()}
print(f"\nmedians over {len(times['onboard'])} runs, {size / 2**20:.0f} MiB:")
for k, v in med.items():
    print(f"  {k:16s} {v:7.2f} s  {size / v / 1e6:7.0f} MB/s  {v / med['onboard']:.2f}x onboard's time")
print(f"  onboard / curl            = {med['onboard'] / med['curl']:.3f}")
print(f"  onboard / curl+sha256sum  = {med['onboard'] / med['curl+sha256sum']:.3f}")
print(f"  onboard / hf download     = {med['onboard'] / med['hf-download']:.3f}")
extra = other["extra-bytes"][0]
print(f"  after SIGKILL at {other['kill-at-bytes'][0] / size:.0%}: the mirror sent {extra:.0f} bytes beyond the file size"
      f" ({extra / size:.3%}; includes what sat in the killed process's socket buffers)")
print(f"  the rerun fetched {other['rerun-fetched'][0]:.0f} bytes; {other['remainder-at-kill'][0]:.0f} were missing on disk")
PY
