//! The Hugging Face token never lands in what onboard writes or prints,
//! whichever of huggingface_hub's sources it comes from (`HF_TOKEN`,
//! `HUGGING_FACE_HUB_TOKEN`, `HF_TOKEN_PATH`, `$HF_HOME/token`,
//! `$XDG_CACHE_HOME/huggingface/token`, `~/.cache/huggingface/token`).
//!
//! For each source, the real binary runs a workflow against a local Hub that
//! only answers with that token, and fails at every phase in turn: evaluate
//! (the Hub refuses), download (the Hub loses the files), profile (a broken
//! models.conf), the context test (a llama-server that prints the token and
//! dies) and a command that prints it and fails. Steps that echo the token
//! feed a report and the models.conf comment. Then every file under the
//! workspace, and every stdout and stderr, is searched for the token's
//! bytes: zero hits. The Hub serving evaluate proves the token was sent;
//! the `***` in the report, models.conf and the failures prove it passed
//! through and was hidden.

use onboard_test_support::{gguf_fixtures, hub_fixture, walk_files, Run, TestWorkspace};
use std::path::{Path, PathBuf};
use std::process::Command;

use hub_fixture::FaultyMirror;

const REPO: &str = "test/tiny-GGUF";
const QUANT: &str = "Q8_0";

/// Prints the token from whichever source the environment names, the way a
/// program onboard starts could (a script step, a llama-server's log).
const PRINT_TOKEN: &str = r#"t="${HF_TOKEN:-$HUGGING_FACE_HUB_TOKEN}"
for f in "$HF_TOKEN_PATH" "$HF_HOME/token" "$XDG_CACHE_HOME/huggingface/token" "$HOME/.cache/huggingface/token"; do
  if [ -z "$t" ] && [ -f "$f" ]; then t="$(cat "$f")"; fi
done
"#;

fn workflow() -> String {
    let echo = format!("{PRINT_TOKEN}echo \"token=$t\"; echo \"stderr token=$t\" >&2");
    let q = |s: &str| serde_json::to_string(s).unwrap();
    format!(
        r#"name: add-model
steps:
  - id: echo_token
    uses: command
    with:
      argv: [sh, -c, {echo}]
  - id: token_note
    uses: render
    needs: [echo_token]
    with:
      content: "note: {{{{ steps.echo_token.outputs.stdout }}}}\n"
      to: reports/token-note.md
  - id: evaluate
    uses: evaluate
    needs: [token_note]
    with:
      repo: '{{{{ manifest.hub.repo }}}}'
      quant: '{{{{ manifest.hub.quant }}}}'
      type: '{{{{ manifest.type }}}}'
      family: '{{{{ manifest.family }}}}'
      size: '{{{{ manifest.size }}}}'
      name: '{{{{ manifest.name }}}}'
      hardware: '{{{{ workspace.hardware }}}}'
      report: 'reports/{{{{ model }}}}-evaluate.md'
  - id: download
    uses: download
    needs: [evaluate]
    with:
      repo: '{{{{ manifest.hub.repo }}}}'
      files: '{{{{ steps.evaluate.outputs.files }}}}'
      dest: '{{{{ steps.evaluate.outputs.path }}}}'
  - id: profile
    uses: profile
    needs: [evaluate, echo_token]
    with:
      id: '{{{{ model }}}}'
      name: '{{{{ manifest.name }}}} {{{{ steps.echo_token.outputs.stdout }}}}'
      model: '{{{{ steps.evaluate.outputs.model_file }}}}'
      architecture: '{{{{ steps.evaluate.outputs.architecture }}}}'
      recurrent: '{{{{ steps.evaluate.outputs.recurrent }}}}'
      context: '{{{{ steps.evaluate.outputs.context }}}}'
      strategy: '{{{{ steps.evaluate.outputs.strategy }}}}'
      fit_target_mib: '{{{{ steps.evaluate.outputs.fit_target_mib }}}}'
      tensor_split: '{{{{ steps.evaluate.outputs.tensor_split }}}}'
  - id: samplers
    uses: samplers
    needs: [evaluate, profile]
    with:
      profile: '{{{{ model }}}}'
      gguf_sampling: '{{{{ steps.evaluate.outputs.sampling }}}}'
      hub_repo: '{{{{ manifest.hub.repo }}}}'
  - id: context_test
    uses: context-test
    needs: [download, samplers]
    with:
      profile: '{{{{ model }}}}'
      engine: llama-server
      load_timeout: 1m
"#,
        echo = q(&echo),
    )
}

/// A second workflow: one command that prints the token and fails.
fn leak_workflow() -> String {
    let fail =
        format!("{PRINT_TOKEN}echo \"token=$t\"; echo \"failing with token=$t\" >&2; exit 3");
    format!(
        "name: leak\nsteps:\n  - id: leak_fail\n    uses: command\n    with:\n      argv: [sh, -c, {}]\n",
        serde_json::to_string(&fail).unwrap()
    )
}

/// A llama-server that prints the token in its log and dies at start.
fn fake_llama_server() -> String {
    format!("#!/bin/sh\n{PRINT_TOKEN}echo \"llama-server: loading with token $t\" >&2\nexit 1\n")
}

/// `qwen35_tiny` in Q8_0, split in three; random bytes after the headers.
fn shards() -> Vec<(String, Vec<u8>)> {
    gguf_fixtures::tiny_q8_shards(3, |len, i| hub_fixture::bytes(len, 2000 + i))
        .into_iter()
        .enumerate()
        .map(|(i, data)| (format!("Tiny-{QUANT}-{:05}-of-00003.gguf", i + 1), data))
        .collect()
}

#[derive(Clone, Copy, Debug)]
enum Source {
    HfToken,
    HuggingFaceHubToken,
    HfTokenPath,
    HfHome,
    XdgCacheHome,
    Home,
}

struct Case {
    source: Source,
    token: String,
    tmp: tempfile::TempDir,
    ws: TestWorkspace,
    server: FaultyMirror,
    /// Where the token was found: `run label: file or stream`.
    hits: Vec<String>,
    searched: usize,
    runs: usize,
}

impl Case {
    fn new(source: Source, shards: &[(String, Vec<u8>)]) -> Case {
        // Conspicuous, unique per source, and long enough to be redacted.
        let token = format!("hf_LEAKCANARY_{source:?}_9f3c1a7e52d4b806");
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("mirror");
        for (name, data) in shards {
            let p = root.join(REPO).join(QUANT).join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, data).unwrap();
        }
        let server = FaultyMirror::start(&root, "127.0.0.1:0").unwrap();
        server.require_token(Some(&token));
        let ws = TestWorkspace::new(&workflow());
        let machine =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("onboard.yaml"))
                .unwrap();
        ws.write(
            "onboard.yaml",
            &format!("{machine}engines:\n  llama_server: bin/llama-server\n"),
        );
        ws.write("workflows/leak.yaml", &leak_workflow());
        ws.write("bin/llama-server", &fake_llama_server());
        make_executable(&ws.path("bin/llama-server"));
        ws.write(
            "models/tiny.yaml",
            &format!(
                "id: tiny\nname: Tiny\nfamily: Test\ntype: dense\nsize: 1M\nhub:\n  repo: {REPO}\n  quant: {QUANT}\n"
            ),
        );
        let case = Case {
            source,
            token,
            tmp,
            ws,
            server,
            hits: Vec::new(),
            searched: 0,
            runs: 0,
        };
        case.write_token_source();
        case
    }

    fn home(&self) -> PathBuf {
        self.tmp.path().join("home")
    }

    fn hf_home(&self) -> PathBuf {
        self.tmp.path().join("hf")
    }

    /// Puts the token where this source says; every other source is empty.
    fn write_token_source(&self) {
        let file = match self.source {
            Source::HfToken | Source::HuggingFaceHubToken => return,
            Source::HfTokenPath => self.tmp.path().join("secret/token-file"),
            Source::HfHome => self.hf_home().join("token"),
            Source::XdgCacheHome => self.ws.cache.path().join("huggingface/token"),
            Source::Home => self.home().join(".cache/huggingface/token"),
        };
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, format!("{}\n", self.token)).unwrap();
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = self.ws.command(args);
        for v in [
            "HF_TOKEN",
            "HUGGING_FACE_HUB_TOKEN",
            "HF_API_TOKEN",
            "HF_TOKEN_PATH",
            "HF_HOME",
            "HF_HUB_OFFLINE",
        ] {
            cmd.env_remove(v);
        }
        cmd.env("HF_ENDPOINT", self.server.url())
            .env("HOME", self.home());
        match self.source {
            Source::HfToken => {
                cmd.env("HF_TOKEN", &self.token)
                    .env("HF_HOME", self.hf_home());
            }
            Source::HuggingFaceHubToken => {
                cmd.env("HUGGING_FACE_HUB_TOKEN", &self.token)
                    .env("HF_HOME", self.hf_home());
            }
            Source::HfTokenPath => {
                cmd.env("HF_TOKEN_PATH", self.tmp.path().join("secret/token-file"))
                    .env("HF_HOME", self.hf_home());
            }
            Source::HfHome => {
                cmd.env("HF_HOME", self.hf_home());
            }
            // The workspace's own XDG_CACHE_HOME (outside the workspace).
            Source::XdgCacheHome => {}
            Source::Home => {
                cmd.env_remove("XDG_CACHE_HOME");
            }
        }
        cmd
    }

    /// Runs onboard, then searches its stdout, stderr and every file under
    /// the workspace for the token, after each run: a later run may rewrite
    /// a file that an earlier one leaked into.
    fn onboard(&mut self, label: &str, args: &[&str]) -> Run {
        let run = Run::from(self.command(args).output().unwrap());
        let needle = self.token.as_bytes();
        for (stream, text) in [("stdout", &run.stdout), ("stderr", &run.stderr)] {
            self.searched += 1;
            if contains(text.as_bytes(), needle) {
                self.hits.push(format!("{label}: {stream}"));
            }
        }
        for path in walk_files(self.ws.root()) {
            self.searched += 1;
            if contains(&std::fs::read(&path).unwrap(), needle) {
                self.hits.push(format!("{label}: {}", path.display()));
            }
        }
        self.runs += 1;
        run
    }

    fn record(&self, step: &str) -> serde_json::Value {
        let text = self.ws.read(&format!(".onboard/tiny/steps/{step}.json"));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{step} record: {e}: {text}"))
    }

    fn failed_with(&self, step: &str, run: &Run) -> String {
        let why = || format!("{:?} {step}: {}\n{}", self.source, run.stdout, run.stderr);
        assert_eq!(run.code, 1, "{}", why());
        let text = self.ws.read(&format!(".onboard/tiny/steps/{step}.json"));
        let rec: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("no record ({e}): {}", why()));
        assert_eq!(rec["status"], "failed", "{rec}: {}", why());
        rec["error"].as_str().unwrap_or_default().to_string()
    }

    /// Fails every phase in turn, then searches everything for the token.
    fn check(mut self) {
        let src = self.source;
        // 1. evaluate: the Hub refuses (it wants another token for now).
        self.server.require_token(Some("hf_someoneElsesToken000"));
        let run = self.onboard("evaluate refused", &["run", "tiny", "--json"]);
        let err = self.failed_with("evaluate", &run);
        assert!(err.contains("refused"), "{src:?}: {err}");
        assert!(
            self.ws.read("reports/token-note.md").contains("token=***"),
            "{src:?}: the echoed token did not reach the report, redacted"
        );
        self.server.require_token(Some(&self.token.clone()));

        // 2. download: the Hub lists the files but loses them (after
        // evaluate has read their headers).
        let run = self.onboard(
            "evaluate",
            &["run", "tiny", "--json", "--until", "evaluate"],
        );
        assert_eq!(run.code, 0, "{src:?}: {}\n{}", run.stdout, run.stderr);
        self.server.not_found_on_get(1000);
        let run = self.onboard(
            "download lost",
            &["run", "tiny", "--json", "--until", "download"],
        );
        let err = self.failed_with("download", &run);
        assert!(err.contains("not found"), "{src:?}: {err}");
        // Evaluate passed: the Hub only answers this token, so it was sent.
        assert_eq!(self.record("evaluate")["status"], "done");
        self.server.clear_faults();

        // 3. profile: models.conf is broken.
        self.ws.write("models.conf", "[broken\nMODEL=x\n");
        let run = self.onboard(
            "profile broken conf",
            &["run", "tiny", "--json", "--until", "profile"],
        );
        let err = self.failed_with("profile", &run);
        assert!(err.contains("models.conf:1"), "{src:?}: {err}");
        std::fs::remove_file(self.ws.path("models.conf")).unwrap();

        // 4. the context test: llama-server prints the token and dies.
        let run = self.onboard("context test", &["run", "tiny", "--json"]);
        let err = self.failed_with("context_test", &run);
        assert!(err.contains("token ***"), "{src:?}: {err}");
        assert!(
            self.ws
                .read("models.conf")
                .contains("# Tiny token=***: production profile"),
            "{src:?}: {}",
            self.ws.read("models.conf")
        );

        // 5. a command that prints it and fails; then the read-only views.
        let run = self.onboard(
            "command fails",
            &["run", "tiny", "--json", "--workflow", "leak"],
        );
        let err = self.failed_with("leak_fail", &run);
        assert!(err.contains("failing with token=***"), "{src:?}: {err}");
        self.onboard("plain run", &["run", "tiny", "--workflow", "leak"]);
        self.onboard("status", &["status", "tiny", "--format", "json"]);
        self.onboard("status text", &["status", "tiny"]);
        self.onboard("plan", &["plan", "tiny"]);

        let hits = &self.hits;
        assert!(
            self.searched > 100,
            "{src:?}: only {} searched",
            self.searched
        );
        assert!(hits.is_empty(), "{src:?}: the token leaked into {hits:#?}");
        eprintln!(
            "{src:?}: token sent and hidden; {} runs, {} files and streams searched",
            self.runs, self.searched
        );
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn make_executable(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn token_from_every_source_is_sent_and_never_written_or_printed() {
    let shards = shards();
    for source in [
        Source::HfToken,
        Source::HuggingFaceHubToken,
        Source::HfTokenPath,
        Source::HfHome,
        Source::XdgCacheHome,
        Source::Home,
    ] {
        Case::new(source, &shards).check();
    }
}
