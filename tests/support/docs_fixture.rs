//! A realistic documentation workspace for the docs and retirement tests:
//! the repository's models (two onboarded candidates' replacements, a keeper),
//! models.conf with production and bench profiles, the benchmark client,
//! results files, fake weights, and markdown that cross-links the cards
//! (anchors, reference-style links, a link in a code block, deep guides).

use crate::TestWorkspace;
use std::collections::BTreeMap;
use std::path::Path;

pub const MODELS_CONF: &str = "\
# models.conf: llama-server profiles, started by ./start.sh <profile>

[glm-flash-q8]
MODEL=GLM/MoE/Flash/Q8/GLM-4.7-Flash-Q8_0.gguf
CTX_SIZE=131072
FLAGS=--jinja -np 1
SPEED=112 t/s (2 GPUs)

; Qwen3-Next: the 35B-A3B may replace it
[qwen3-next]
MODEL=Qwen3-Next/MoE/80B/Q4_K_M/Qwen3-Next-80B-A3B-Instruct-Q4_K_M.gguf
CTX_SIZE=262144
FLAGS=--jinja -np 1 --no-context-shift
SPEED=41 t/s

[gpt-oss-120b]
MODEL=GPT-OSS/MoE/120B/gpt-oss-120b-mxfp4-00001-of-00003.gguf
CTX_SIZE=131072
FLAGS=--jinja -np 1 --reasoning-format none
SPEED=24 t/s

[qwen35-35b]
# Qwen3.5-35B-A3B UD-Q6_K_XL: production profile, written by onboard
MODEL=Qwen3.5/MoE/35B/UD6_K_XL/Qwen3.5-35B-A3B-UD-Q6_K_XL.gguf
CTX_SIZE=262144
FIT=on
FLAGS=--jinja -np 1 --no-context-shift
SPEED=96 t/s

[qwen35-122b]
MODEL=Qwen3.5/MoE/122B/US_Q4_K_XL/Qwen3.5-122B-A10B-UD-Q4_K_XL-00001-of-00003.gguf
CTX_SIZE=262144
FLAGS=--jinja -np 1 --no-context-shift
SPEED=19 t/s

[bench-qwen3-next]
MODEL=Qwen3-Next/MoE/80B/Q4_K_M/Qwen3-Next-80B-A3B-Instruct-Q4_K_M.gguf
CTX_SIZE=10240

[bench-qwen35-35b]
MODEL=Qwen3.5/MoE/35B/UD6_K_XL/Qwen3.5-35B-A3B-UD-Q6_K_XL.gguf
CTX_SIZE=10240
";

pub const BENCH_CLIENT: &str = "\
[bench-qwen3-next]
NAME=Qwen3-Next-80B-A3B
PROFILE=bench-qwen3-next
MODEL_ID=qwen3-next-80b-a3b
THINKING=false
TEMPERATURE=0

[bench-qwen35-35b]
NAME=Qwen3.5-35B-A3B
PROFILE=bench-qwen35-35b
MODEL_ID=qwen3.5-35b-a3b
THINKING=true
TEMPERATURE=0
";

pub const README: &str = "\
# Local LLM workstation

Start with the [GPU strategy guide](documentation/gpu-strategy-guide.md#strategies)
and the new [Qwen3.5-35B-A3B card][35b] (see its
[memory figures](documentation/CANDIDATES/Qwen3.5-35B-A3B.md#memory)).

## Models

<!-- onboard:models -->
(generated)
<!-- /onboard:models -->

## Starting a model

```sh
# cat documentation/CANDIDATES/Qwen3.5-35B-A3B.md
./start.sh qwen35-35b   # see [card](documentation/CANDIDATES/Qwen3.5-35B-A3B.md)
```

Inline code keeps its text: `[card](documentation/CANDIDATES/Qwen3.5-35B-A3B.md)`.

[35b]: documentation/CANDIDATES/Qwen3.5-35B-A3B.md \"Qwen3.5-35B-A3B\"
[guide]: documentation/gpu-strategy-guide.md
";

pub const GUIDE: &str = "\
# GPU strategy guide

Back to the [README](../README.md).

## Strategies

- **Strategy A**, all on the GPUs: [GLM-4.7 Flash](GLM-4.7-Flash.md#speed).
- **FIT**: [Qwen3.5-35B-A3B](CANDIDATES/Qwen3.5-35B-A3B.md#strategy) and
  [Qwen3.5-27B](CANDIDATES/Qwen3.5-27B.md).
- **FIT + CPU offload**: [GPT-OSS 120B](GPT-OSS-120B.md),
  [Qwen3-Next-80B-A3B](Qwen3-Next-80B-A3B.md#memory).

## Memory

Hybrid DeltaNet models keep KV only for attention layers
([details](CANDIDATES/Qwen3.5-35B-A3B.md#memory)).

## Models

<!-- onboard:models -->
<!-- /onboard:models -->
";

pub const BENCH_GUIDE: &str = "\
# Benchmarking

HumanEval+ runs against bench profiles ([35B-A3B](../../CANDIDATES/Qwen3.5-35B-A3B.md#benchmarks),
[Qwen3-Next](../../Qwen3-Next-80B-A3B.md)); see the [strategy guide](../../gpu-strategy-guide.md#memory).
";

pub const CARD_35B: &str = "\
# Qwen3.5-35B-A3B

MoE, 35B total, 3B active; a candidate to replace [Qwen3-Next-80B-A3B](../Qwen3-Next-80B-A3B.md).
Its dense sibling is [Qwen3.5-27B](Qwen3.5-27B.md); the [README](../../README.md#models) lists all.

## Strategy

FIT over both GPUs ([how FIT works](../gpu-strategy-guide.md#strategies)).

## Memory

![layers](../img/layers.png)

40 layers, 10 of them attention: 20 KiB/token of KV ([back to strategy](#strategy)).

## Benchmarks

<!-- onboard:measured -->
<!-- /onboard:measured -->
";

pub const CARD_27B: &str = "\
# Qwen3.5-27B

Dense; see the [35B-A3B](Qwen3.5-35B-A3B.md#memory) for the MoE sibling.
";

pub const CARD_QWEN3_NEXT: &str = "\
# Qwen3-Next-80B-A3B

## Memory

53 GB; its replacement candidate is [Qwen3.5-35B-A3B](CANDIDATES/Qwen3.5-35B-A3B.md).
";

pub const CARD_GLM: &str =
    "# GLM-4.7 Flash\n\n## Speed\n\n112 t/s; compare [Qwen3-Next](Qwen3-Next-80B-A3B.md#memory).\n";
pub const CARD_GPT_OSS: &str =
    "# GPT-OSS 120B\n\nNatively MXFP4. See the [guide](gpu-strategy-guide.md).\n";
pub const CARD_122B: &str = "# Qwen3.5-122B-A10B\n\nMay replace [GPT-OSS 120B](GPT-OSS-120B.md).\n";

pub const MANIFEST_QWEN3_NEXT: &str = "\
# Qwen3-Next-80B-A3B: installed; the 35B-A3B may replace it.
id: qwen3-next-80b-a3b
name: Qwen3-Next-80B-A3B
family: Qwen3-Next
type: moe
size: 80B
hub:
  repo: unsloth/Qwen3-Next-80B-A3B-Instruct-GGUF
  quant: Q4_K_M
profile: qwen3-next
status: installed   # on disk since spring
card:
  file_size_gb: 53
  strategy: FIT + CPU offload
benchmarks:
  MMLU-Pro: 80.6
  LiveCodeBench v6: 56.6
";

pub fn manifest_35b() -> String {
    "\
id: qwen3.5-35b-a3b
name: Qwen3.5-35B-A3B
family: Qwen3.5
type: moe
size: 35B
hub:
  repo: unsloth/Qwen3.5-35B-A3B-GGUF
  quant: UD-Q6_K_XL
path: Qwen3.5/MoE/35B/UD6_K_XL
profile: qwen35-35b
thinking: true
replaces: [qwen3-next-80b-a3b]
card:
  file_size_gb: 30.3
  strategy: FIT (both GPUs)
  context: 262144
benchmarks:
  MMLU-Pro: 85.3
  LiveCodeBench v6: 74.6
"
    .to_string()
}

/// The workspace, before the docs step of `qwen3.5-35b-a3b`.
pub fn workspace() -> TestWorkspace {
    let ws = TestWorkspace::new("name: add-model\nsteps: []\n");
    std::fs::remove_file(ws.path("models/tiny.yaml")).unwrap();
    let repo = crate::repo_root();
    for id in ["gpt-oss-120b", "glm-4.7-flash", "qwen3.5-122b-a10b"] {
        let mut text = std::fs::read_to_string(repo.join(format!("models/{id}.yaml"))).unwrap();
        // The fixture's installed models name their profiles.
        match id {
            "gpt-oss-120b" => text.push_str("profile: gpt-oss-120b\n"),
            "glm-4.7-flash" => text.push_str("profile: glm-flash-q8\n"),
            _ => text = text.replace("thinking: true\n", "thinking: true\nstatus: installed\n"),
        }
        ws.write(&format!("models/{id}.yaml"), &text);
    }
    ws.write("models/qwen3.5-35b-a3b.yaml", &manifest_35b());
    ws.write("models/qwen3-next-80b-a3b.yaml", MANIFEST_QWEN3_NEXT);
    ws.write("models.conf", MODELS_CONF);
    ws.write("benchmarks/bench-client.conf", BENCH_CLIENT);
    ws.write(
        "benchmarks/README.md",
        "# Benchmarks\n\n<!-- onboard:bench-models -->\n| Bench profile | Model | Thinking | Context |\n|---|---|---|---|\n| `bench-qwen3-next` | Qwen3-Next-80B-A3B | no | 10240 |\n| `bench-qwen35-35b` | Qwen3.5-35B-A3B | yes | 10240 |\n<!-- /onboard:bench-models -->\n",
    );
    ws.write(
        "benchmarks/results/qwen3-next-80b-a3b.json",
        r#"{"model": "qwen3-next-80b-a3b", "benchmark": "HumanEval+", "base": 79.3, "plus": 73.8, "tasks": 164}"#,
    );
    ws.write(
        "benchmarks/results/glm-4.7-flash.json",
        r#"{"model": "glm-4.7-flash", "benchmark": "HumanEval+", "base": 84.1, "plus": 78.7, "tasks": 164, "chart": "benchmarks/report/humaneval.svg"}"#,
    );
    ws.write("benchmarks/report/humaneval.svg", "<svg/>");
    // Fake weights: the retire test deletes one model's directory only.
    for (dir, file) in [
        (
            "Qwen3-Next/MoE/80B/Q4_K_M",
            "Qwen3-Next-80B-A3B-Instruct-Q4_K_M.gguf",
        ),
        (
            "Qwen3.5/MoE/35B/UD6_K_XL",
            "Qwen3.5-35B-A3B-UD-Q6_K_XL.gguf",
        ),
        ("GLM/MoE/Flash/Q8", "GLM-4.7-Flash-Q8_0.gguf"),
        ("GPT-OSS/MoE/120B", "gpt-oss-120b-mxfp4-00001-of-00003.gguf"),
    ] {
        ws.write(&format!("models/{dir}/{file}"), "GGUF fake weights");
    }
    ws.write(
        "models/Qwen3-Next/MoE/80B/Q4_K_M/README.md",
        "[broken but skipped](nowhere.md)\n",
    );
    ws.write("README.md", README);
    ws.write("documentation/gpu-strategy-guide.md", GUIDE);
    ws.write("documentation/guides/bench/benchmarking.md", BENCH_GUIDE);
    ws.write("documentation/CANDIDATES/Qwen3.5-35B-A3B.md", CARD_35B);
    ws.write("documentation/CANDIDATES/Qwen3.5-27B.md", CARD_27B);
    ws.write("documentation/Qwen3-Next-80B-A3B.md", CARD_QWEN3_NEXT);
    ws.write("documentation/GLM-4.7-Flash.md", CARD_GLM);
    ws.write("documentation/GPT-OSS-120B.md", CARD_GPT_OSS);
    ws.write("documentation/Qwen3.5-122B-A10B.md", CARD_122B);
    ws.write("documentation/img/layers.png", "png");
    ws.write(".onboard/notes.md", "[state is skipped](nowhere.md)\n");
    ws.write("workflows/docs.yaml", DOCS_WORKFLOW);
    ws
}

/// The docs step with the figures upstream steps would pass.
pub const DOCS_WORKFLOW: &str = "\
name: docs
steps:
  - id: docs
    uses: docs
    with:
      measured_speed_tps: 96
      humaneval_base: 87.2
      humaneval_plus: 81.7
      chart: benchmarks/report/humaneval.svg
      facts:
        architecture: qwen35moe
        attention_layers: 10
";

/// Every file under the workspace (except run state) and its bytes.
pub fn snapshot(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for path in crate::walk(root) {
        let rel = path
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if rel == ".onboard" || rel.starts_with(".onboard/") {
            continue;
        }
        if path.is_dir() {
            out.insert(format!("{rel}/"), Vec::new());
        } else {
            out.insert(rel, std::fs::read(&path).unwrap());
        }
    }
    out
}

/// Paths whose bytes differ between two snapshots.
pub fn diff(a: &BTreeMap<String, Vec<u8>>, b: &BTreeMap<String, Vec<u8>>) -> Vec<String> {
    a.keys()
        .chain(b.keys())
        .filter(|k| a.get(*k) != b.get(*k))
        .cloned()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect()
}
