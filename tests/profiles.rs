//! Phases 3, 4 and 6 on the repository's three Qwen3.5 models: production
//! profiles, samplers with provenance and bench profiles in a realistic
//! models.conf, plus launch and the exports.

use onboard_test_support::TestWorkspace;
use std::path::Path;

/// An existing workspace's models.conf: other profiles, comments, odd spacing.
const EXISTING: &str = "\
# models.conf: llama-server profiles, started by ./start.sh <profile>
#   MODEL is relative to models/

[glm-flash-q8]
MODEL=GLM/MoE/Flash/Q8/GLM-4.7-Flash-Q8_0.gguf
CTX_SIZE = 131072
FLAGS=--jinja -np 1   --fit on
SPEED=112 t/s (2 GPUs)

; GPT-OSS is natively MXFP4
[gpt-oss-120b]
MODEL=GPT-OSS/MoE/120B/gpt-oss-120b-mxfp4-00001-of-00003.gguf
CTX_SIZE=131072
FLAGS=--jinja -np 1 --reasoning-format none
";

/// What evaluate chooses for each model on the workstation of onboard.yaml:
/// file, architecture, strategy.
const MODELS: &[(&str, &str, &str, &str)] = &[
    (
        "qwen3.5-35b-a3b",
        "Qwen3.5-35B-A3B-UD-Q6_K_XL.gguf",
        "qwen35moe",
        "fit",
    ),
    (
        "qwen3.5-27b",
        "Qwen3.5-27B-UD-Q8_K_XL.gguf",
        "qwen35",
        "fit",
    ),
    (
        "qwen3.5-122b-a10b",
        "Qwen3.5-122B-A10B-UD-Q4_K_XL-00001-of-00003.gguf",
        "qwen35moe",
        "fit_cpu_moe",
    ),
];

fn workflow(file: &str, arch: &str, strategy: &str) -> String {
    r#"name: profiles
steps:
  - id: profile
    uses: profile
    with:
      id: '{{ manifest.profile }}'
      name: '{{ manifest.name }} {{ manifest.hub.quant }}'
      model: '{{ manifest.path }}/FILE'
      architecture: ARCH
      recurrent: true
      context: 262144
      strategy: STRATEGY
  - id: samplers
    uses: samplers
    needs: [profile]
    with:
      profile: '{{ manifest.profile }}'
      recommended: '{{ manifest.samplers }}'
      thinking: '{{ manifest.thinking }}'
  - id: bench_profile
    uses: bench-profile
    needs: [samplers]
    with:
      profile: '{{ manifest.profile }}'
      name: '{{ manifest.name }}'
      thinking: '{{ manifest.thinking }}'
"#
    .replace("FILE", file)
    .replace("ARCH", arch)
    .replace("STRATEGY", strategy)
}

fn repo_workspace() -> TestWorkspace {
    let ws = TestWorkspace::new("name: add-model\nsteps: []\n");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (id, ..) in MODELS {
        let text = std::fs::read_to_string(repo.join(format!("models/{id}.yaml"))).unwrap();
        ws.write(&format!("models/{id}.yaml"), &text);
    }
    ws.write(
        "onboard.yaml",
        &std::fs::read_to_string(repo.join("onboard.yaml")).unwrap(),
    );
    ws.write(
        "templates/profile.conf.j2",
        &std::fs::read_to_string(repo.join("templates/profile.conf.j2")).unwrap(),
    );
    ws.write("models.conf", EXISTING);
    for (id, file, arch, strategy) in MODELS {
        ws.write(
            &format!("workflows/{id}.yaml"),
            &workflow(file, arch, strategy),
        );
    }
    ws
}

fn onboard_all(ws: &TestWorkspace, extra: &[&str]) {
    for (id, ..) in MODELS {
        let mut args = vec!["run", id, "--json", "--workflow", id];
        args.extend_from_slice(extra);
        ws.onboard(&args).assert_ok();
    }
}

const GOLDEN_TAIL: &str = "
[qwen35-35b]
# Qwen3.5-35B-A3B UD-Q6_K_XL: production profile, written by onboard
MODEL=Qwen3.5/MoE/35B/UD6_K_XL/Qwen3.5-35B-A3B-UD-Q6_K_XL.gguf
CTX_SIZE=262144
FIT=on
FIT_TARGET=1024
FLAGS=--jinja -np 1 --no-context-shift
SAMPLERS=--temp 1 --top-p 0.95 --top-k 20 --min-p 0 --presence-penalty 1.5

[bench-qwen35-35b]
# Qwen3.5-35B-A3B: HumanEval+ bench profile (greedy, no samplers), written by onboard
MODEL=Qwen3.5/MoE/35B/UD6_K_XL/Qwen3.5-35B-A3B-UD-Q6_K_XL.gguf
CTX_SIZE=10240
FIT=on
FIT_TARGET=1024
FLAGS=--jinja -np 1 --no-context-shift --reasoning-format none

[qwen35-27b]
# Qwen3.5-27B UD-Q8_K_XL: production profile, written by onboard
MODEL=Qwen3.5/Dense/27B-UD-Q8_K_XL/Qwen3.5-27B-UD-Q8_K_XL.gguf
CTX_SIZE=262144
FIT=on
FIT_TARGET=1024
FLAGS=--jinja -np 1 --no-context-shift
SAMPLERS=--temp 0.6 --top-p 0.95 --top-k 20 --min-p 0 --presence-penalty 0

[bench-qwen35-27b]
# Qwen3.5-27B: HumanEval+ bench profile (greedy, no samplers), written by onboard
MODEL=Qwen3.5/Dense/27B-UD-Q8_K_XL/Qwen3.5-27B-UD-Q8_K_XL.gguf
CTX_SIZE=10240
FIT=on
FIT_TARGET=1024
FLAGS=--jinja -np 1 --no-context-shift --reasoning-format none

[qwen35-122b]
# Qwen3.5-122B-A10B UD-Q4_K_XL: production profile, written by onboard
MODEL=Qwen3.5/MoE/122B/US_Q4_K_XL/Qwen3.5-122B-A10B-UD-Q4_K_XL-00001-of-00003.gguf
CTX_SIZE=262144
FIT=on
FIT_TARGET=1024
FLAGS=--jinja -np 1 --no-context-shift
SAMPLERS=--temp 1 --top-p 0.95 --top-k 20 --min-p 0 --presence-penalty 1.5

[bench-qwen35-122b]
# Qwen3.5-122B-A10B: HumanEval+ bench profile (greedy, no samplers), written by onboard
MODEL=Qwen3.5/MoE/122B/US_Q4_K_XL/Qwen3.5-122B-A10B-UD-Q4_K_XL-00001-of-00003.gguf
CTX_SIZE=10240
FIT=on
FIT_TARGET=1024
FLAGS=--jinja -np 1 --no-context-shift --reasoning-format none
";

#[test]
fn the_plans_three_models_get_their_profiles_in_an_existing_models_conf() {
    let ws = repo_workspace();
    onboard_all(&ws, &[]);
    let conf = ws.read("models.conf");
    assert_eq!(conf, format!("{EXISTING}{GOLDEN_TAIL}"), "got:\n{conf}");

    // Rerunning every step (forced) changes no byte.
    onboard_all(
        &ws,
        &[
            "--force",
            "profile",
            "--force",
            "samplers",
            "--force",
            "bench_profile",
        ],
    );
    assert_eq!(ws.read("models.conf"), format!("{EXISTING}{GOLDEN_TAIL}"));

    // The samplers' provenance is in the step's record.
    let record: serde_json::Value =
        serde_json::from_str(&ws.read(".onboard/qwen3.5-27b/steps/samplers.json")).unwrap();
    assert_eq!(record["outputs"]["mode"], "thinking-coding");
    assert_eq!(
        record["outputs"]["values"][3],
        serde_json::json!({"flag": "--min-p", "value": "0", "source": "manifest: Qwen3.5 model card (recommended sampling parameters) (thinking-coding)"})
    );
    // Which rule made which flag is in the profile step's outputs.
    let record: serde_json::Value =
        serde_json::from_str(&ws.read(".onboard/qwen3.5-122b-a10b/steps/profile.json")).unwrap();
    let entries = record["outputs"]["entries"].as_array().unwrap();
    let fit = entries.iter().find(|e| e["key"] == "FIT").unwrap();
    assert!(
        fit["because"]
            .as_str()
            .unwrap()
            .contains("expert tensors in RAM"),
        "{fit}"
    );
    let flags = entries.iter().find(|e| e["key"] == "FLAGS").unwrap();
    assert!(
        flags["because"]
            .as_str()
            .unwrap()
            .contains("--no-context-shift: recurrent"),
        "{flags}"
    );

    // Benchmark client registration and README table.
    let client = ws.read("benchmarks/bench-client.conf");
    assert!(client.contains("[bench-qwen35-27b]\nNAME=Qwen3.5-27B\nPROFILE=bench-qwen35-27b\nMODEL_ID=qwen3.5-27b\nTHINKING=true\nTEMPERATURE=0\n"), "{client}");
    let readme = ws.read("benchmarks/README.md");
    assert!(readme.contains("| `bench-qwen35-35b` | Qwen3.5-35B-A3B | yes | 10240 |\n| `bench-qwen35-27b` | Qwen3.5-27B | yes | 10240 |\n| `bench-qwen35-122b` | Qwen3.5-122B-A10B | yes | 10240 |\n"), "{readme}");
}

#[test]
fn a_template_edit_in_the_workspace_lands_in_the_profile() {
    let ws = repo_workspace();
    let mut template = ws.read("templates/profile.conf.j2");
    template.push_str("CACHE_TYPE_K=q8_0\n");
    ws.write("templates/profile.conf.j2", &template);
    let (id, ..) = MODELS[0];
    ws.onboard(&["run", id, "--json", "--workflow", id, "--until", "profile"])
        .assert_ok();
    let conf = ws.read("models.conf");
    assert!(
        conf.contains("FLAGS=--jinja -np 1 --no-context-shift\nCACHE_TYPE_K=q8_0\n"),
        "{conf}"
    );
    let print = ws.onboard(&["launch", "qwen35-35b", "--print"]);
    print.assert_ok();
    assert!(print.stdout.contains(" -ctk q8_0 "), "{}", print.stdout);
}

#[test]
fn two_processes_editing_models_conf_at_once_both_land() {
    for _ in 0..5 {
        let ws = repo_workspace();
        let spawn = |id: &str| {
            ws.command(&["run", id, "--json", "--workflow", id, "--until", "profile"])
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        };
        let mut a = spawn(MODELS[0].0);
        let mut b = spawn(MODELS[1].0);
        assert!(a.wait().unwrap().success() && b.wait().unwrap().success());
        let conf = ws.read("models.conf");
        assert!(conf.starts_with(EXISTING));
        assert!(
            conf.contains("[qwen35-35b]") && conf.contains("[qwen35-27b]"),
            "{conf}"
        );
        assert_eq!(conf.matches("MODEL=").count(), 4, "{conf}");
    }
}

#[test]
fn launch_and_exports_carry_the_same_command_lines() {
    let ws = repo_workspace();
    onboard_all(&ws, &[]);
    let launch = ws.onboard(&["launch", "qwen35-35b", "--print"]);
    launch.assert_ok();
    let models = ws.root().canonicalize().unwrap().join("models");
    assert_eq!(
        launch.stdout.trim(),
        format!(
            "llama-server -m {}/Qwen3.5/MoE/35B/UD6_K_XL/Qwen3.5-35B-A3B-UD-Q6_K_XL.gguf --alias qwen35-35b -c 262144 --fit on --fit-target 1024 --jinja -np 1 --no-context-shift --temp 1 --top-p 0.95 --top-k 20 --min-p 0 --presence-penalty 1.5",
            models.display()
        )
    );

    // llama-swap: valid YAML whose cmd is the launch line plus ${PORT}.
    let swap = ws.onboard(&["export", "--format", "llama-swap"]);
    swap.assert_ok();
    let doc = onboard::source::yaml::parse(&swap.stdout)
        .unwrap()
        .to_json();
    let profiles = onboard::workspace::models_conf::read(&ws.path("models.conf"))
        .unwrap()
        .profiles();
    assert_eq!(doc["models"].as_object().unwrap().len(), profiles.len());
    for p in &profiles {
        let line = ws
            .onboard(&["launch", &p.id, "--print"])
            .stdout
            .trim()
            .to_string();
        assert_eq!(
            doc["models"][&p.id]["cmd"],
            format!("{line} --port ${{PORT}}"),
            "{}",
            p.id
        );
    }

    // The preset INI: every section maps back to the same arguments.
    let preset = ws.onboard(&[
        "export",
        "--format",
        "llama-preset",
        "--profile",
        "qwen35-122b",
    ]);
    preset.assert_ok();
    let mut options = Vec::new();
    for line in preset
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with('['))
        .skip(1)
    {
        let (k, v) = line
            .split_once(" = ")
            .unwrap_or_else(|| panic!("not `key = value`: {line}"));
        options.push((k.to_string(), v.to_string()));
    }
    let launch = ws.onboard(&["launch", "qwen35-122b", "--print"]);
    let mut expected = onboard::engine::words::split(launch.stdout.trim()).unwrap();
    expected.remove(0);
    let alias = expected.iter().position(|w| w == "--alias").unwrap();
    expected.drain(alias..alias + 2);
    assert_eq!(onboard::engine::export::preset_to_args(&options), expected);
}

#[test]
fn samplers_need_the_profile_and_say_so() {
    let ws = repo_workspace();
    let (id, ..) = MODELS[0];
    let run = ws.onboard(&["run", id, "--json", "--workflow", id, "--only", "samplers"]);
    assert_eq!(run.code, 1);
    assert!(
        run.why("samplers")
            .contains("needs `profile`, which has not run"),
        "{}",
        run.stdout
    );
}

#[test]
fn samplers_read_generation_config_json_through_the_hub() {
    use onboard::hub::MirrorServer;
    let hub_root = tempfile::tempdir().unwrap();
    let repo_dir = hub_root.path().join("test/gen-GGUF");
    std::fs::create_dir_all(&repo_dir).unwrap();
    std::fs::write(
        repo_dir.join("generation_config.json"),
        r#"{"temperature": 0.3, "top_p": 0.9, "top_k": 50}"#,
    )
    .unwrap();
    std::fs::write(repo_dir.join("model.gguf"), b"GGUF").unwrap();
    let server = MirrorServer::start(hub_root.path(), "127.0.0.1:0").unwrap();

    let ws = TestWorkspace::new(
        "name: add-model\nsteps:\n  - id: samplers\n    uses: samplers\n    with:\n      profile: p\n      hub_repo: test/gen-GGUF\n      gguf_sampling: {min_p: 0.1}\n",
    );
    ws.write("models.conf", "[p]\nMODEL=x.gguf\n");
    let out = ws
        .command(&["run", "tiny", "--json"])
        .env("HF_ENDPOINT", server.url())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        ws.read("models.conf"),
        "[p]\nMODEL=x.gguf\nSAMPLERS=--temp 0.3 --top-p 0.9 --top-k 50 --min-p 0.1 --presence-penalty 0\n"
    );
    let record: serde_json::Value =
        serde_json::from_str(&ws.read(".onboard/tiny/steps/samplers.json")).unwrap();
    let sources: Vec<&str> = record["outputs"]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["source"].as_str().unwrap())
        .collect();
    assert_eq!(
        sources,
        [
            "generation_config.json temperature",
            "generation_config.json top_p",
            "generation_config.json top_k",
            "GGUF general.sampling.min_p",
            "llama.cpp default"
        ]
    );

    // A repo without the file is no error: that source is simply absent.
    std::fs::remove_file(repo_dir.join("generation_config.json")).unwrap();
    let server = MirrorServer::start(hub_root.path(), "127.0.0.1:0").unwrap();
    let out = ws
        .command(&["run", "tiny", "--json", "--force", "samplers"])
        .env("HF_ENDPOINT", server.url())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(ws
        .read("models.conf")
        .contains("SAMPLERS=--temp 0.8 --top-p 0.95 --top-k 40 --min-p 0.1"));
}
