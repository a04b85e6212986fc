//! llama.cpp's own argument parser, preset loader and `-hf` downloader, as
//! the xllamacpp wheel (PyPI) ships them: `llama_args.cpp` is compiled (once
//! per source and wheel) against the headers of the same llama.cpp version, which
//! `scripts/setup` takes from xllamacpp's source distribution into
//! `.venv/share/llama.cpp-<version>`, and linked to the wheel's library.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use crate::{repo_root, target_tmp_dir};

/// The xllamacpp version `scripts/setup` pins (wheel and headers).
pub const XLLAMACPP: &str = "2026.10.11549";

/// The harness, ready to run: the venv's Python and the built library.
pub struct Harness {
    python: PathBuf,
    library: PathBuf,
}

/// What is missing for the harness, if anything: a skip locally, a
/// failure under CI (`CI` set), where `scripts/setup` has run.
fn missing(what: &str) -> Option<Harness> {
    assert!(
        std::env::var_os("CI").is_none(),
        "{what}: scripts/setup installs it"
    );
    eprintln!("skipped: {what} (run scripts/setup)");
    None
}

/// The harness, built on first use; `None` (a skip, outside CI) when the
/// venv, the wheel, the headers or `g++` are missing.
pub fn harness() -> Option<&'static Harness> {
    static BUILT: OnceLock<Option<Harness>> = OnceLock::new();
    BUILT.get_or_init(build).as_ref()
}

fn build() -> Option<Harness> {
    let python = repo_root().join(".venv/bin/python");
    if !python.exists() {
        return missing("no .venv/bin/python");
    }
    let headers = repo_root().join(format!(".venv/share/llama.cpp-{XLLAMACPP}"));
    if !headers.join("common/arg.h").exists() {
        return missing(&format!("no llama.cpp headers in {}", headers.display()));
    }
    let found = Command::new(&python)
        .args([
            "-c",
            "import importlib.metadata as m, xllamacpp, os; \
             print(m.version('xllamacpp')); print(os.path.dirname(xllamacpp.__file__))",
        ])
        .output()
        .expect("run the venv's python");
    if !found.status.success() {
        return missing("no xllamacpp in .venv");
    }
    let found = String::from_utf8_lossy(&found.stdout).to_string();
    let mut lines = found.lines();
    let (version, dir) = (lines.next().unwrap_or(""), lines.next().unwrap_or(""));
    assert_eq!(
        version, XLLAMACPP,
        "the xllamacpp wheel must match the headers' version; rerun scripts/setup"
    );
    let lib_dir = PathBuf::from(dir);
    assert!(lib_dir.join("xllamacpp.abi3.so").exists(), "{dir}");
    if Command::new("g++").arg("--version").output().is_err() {
        return missing("no g++");
    }
    let source = repo_root().join("tests/support/llama_args.cpp");
    let out_dir = target_tmp_dir().join("llama_args");
    std::fs::create_dir_all(&out_dir).unwrap();
    // Built once per source, headers and wheel; a rename makes it appear
    // whole to test binaries running beside this one.
    let wheel = std::fs::metadata(lib_dir.join("xllamacpp.abi3.so")).unwrap();
    let key = {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(std::fs::read(&source).unwrap());
        h.update(headers.to_string_lossy().as_bytes());
        h.update(lib_dir.to_string_lossy().as_bytes());
        h.update(format!("{:?}{:?}", wheel.len(), wheel.modified().ok()).as_bytes());
        hex::encode(h.finalize())[..16].to_string()
    };
    let library = out_dir.join(format!("libllama_args-{key}.so"));
    if library.exists() {
        return Some(Harness { python, library });
    }
    let partial = out_dir.join(format!(
        "libllama_args-{key}.{}.partial",
        std::process::id()
    ));
    let inc = |sub: &str| format!("-I{}", headers.join(sub).display());
    let out = Command::new("g++")
        .args(["-std=c++17", "-O1", "-shared", "-fPIC"])
        // The wheel is built with the pre-C++11 string ABI (manylinux).
        .arg("-D_GLIBCXX_USE_CXX11_ABI=0")
        .args([inc("common"), inc("include"), inc("ggml/include")])
        .arg(&source)
        .arg("-o")
        .arg(&partial)
        .arg(format!("-L{}", lib_dir.display()))
        .arg("-l:xllamacpp.abi3.so")
        .arg(format!("-Wl,-rpath,{}", lib_dir.display()))
        .output()
        .expect("run g++");
    assert!(
        out.status.success(),
        "building the llama.cpp harness failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::rename(&partial, &library).unwrap();
    Some(Harness { python, library })
}

impl Harness {
    /// The built harness library (what llama_args.py loads).
    pub fn library_path(&self) -> &Path {
        &self.library
    }

    /// `llama_args MODE ARG...` in the venv's Python (see llama_args.cpp).
    pub fn command(&self, mode: &str, args: &[String]) -> Command {
        let mut cmd = Command::new(&self.python);
        cmd.arg(repo_root().join("tests/support/llama_args.py"))
            .arg(&self.library)
            .arg(mode)
            .args(args);
        cmd
    }

    pub fn run(&self, mode: &str, args: &[String]) -> Output {
        self.command(mode, args)
            .env_remove("HF_TOKEN")
            .output()
            .expect("run the llama.cpp harness")
    }
}
