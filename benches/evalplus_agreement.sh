#!/usr/bin/env bash
# Scores the fixture replies (tests/fixtures/bench) with onboard and with
# EvalPlus's own evaluator (PyPI evalplus, in a scratch venv) and prints the
# task-by-task comparison. Not part of CI: evalplus pulls in a lot.
#
#   benches/evalplus_agreement.sh            # needs root (the sandbox) and PyPI
#   EVALPLUS_VENV=/path/venv benches/...     # reuse a venv with evalplus
#
# Two EvalPlus runs: (A) on the code onboard ran (scoring agreement) and
# (B) on EvalPlus's own sanitize of the raw replies (extraction + scoring).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${EVALPLUS_VENV:-target/evalplus-venv}
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "evalplus==0.3.1"
fi
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
DATA=tests/fixtures/bench/humaneval-plus-mini.jsonl
cargo run --quiet --example bench_judge -- "$DATA" tests/fixtures/bench/completions.jsonl > "$WORK/onboard.jsonl"
export HUMANEVAL_OVERRIDE_PATH="$PWD/$DATA"
export EVALPLUS_CACHE_DIR="$WORK/cache" XDG_CACHE_HOME="$WORK/cache"
"$VENV/bin/python" - "$WORK" <<'PY'
import json, subprocess, sys, os
from evalplus.sanitize import sanitize
work = sys.argv[1]
rows = [json.loads(l) for l in open(os.path.join(work, "onboard.jsonl"))]
data = {json.loads(l)["task_id"]: json.loads(l) for l in open(os.environ["HUMANEVAL_OVERRIDE_PATH"])}
def evaluate(name, solutions):
    path = os.path.join(work, name + ".jsonl")
    with open(path, "w") as f:
        for r, s in zip(rows, solutions):
            f.write(json.dumps({"task_id": r["task_id"], "solution": s}) + "\n")
    subprocess.run([sys.executable, "-m", "evalplus.evaluate", "--dataset", "humaneval",
                    "--samples", path, "--i_just_wanna_run", "--parallel", "2"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for suffix in ("_eval_results.json", ".eval_results.json"):
        if os.path.exists(path.replace(".jsonl", suffix)):
            res = json.load(open(path.replace(".jsonl", suffix)))["eval"]
    seen, out = {}, []
    for r in rows:
        k = seen.get(r["task_id"], 0); seen[r["task_id"]] = k + 1
        e = res[r["task_id"]][k]
        out.append((e["base_status"], e["plus_status"]))
    return out
a = evaluate("onboard_code", [r["solution"] for r in rows])
b = evaluate("evalplus_sanitized",
             [sanitize(r["reply"], data[r["task_id"]]["entry_point"]) for r in rows])
print("| task | reply | onboard base/plus | EvalPlus on onboard's code | EvalPlus on its own sanitize | agree |")
print("|---|---|---|---|---|---|")
agree = 0
for r, x, y in zip(rows, a, b):
    mine = (r["base"], r["plus"])
    ok = mine == x == y
    agree += ok
    print(f"| {r['task_id']} | {r['name']} | {mine[0]}/{mine[1]} | {x[0]}/{x[1]} | {y[0]}/{y[1]} | {'yes' if ok else 'NO'} |")
print(f"\n{agree}/{len(rows)} replies agree")
sys.exit(0 if agree == len(rows) else 1)
PY
