//! Replays the fuzz corpora (`fuzz/corpus/<target>/`) and the kept crash
//! reproducers (`fuzz/regressions/<target>/`) through the same checks the
//! fuzz targets run, on stable and in every `cargo test`: CI never fuzzes,
//! but everything the fuzzer once found stays fixed.
//!
//! The checks live in `fuzz/src/lib.rs`, included here by path, so the
//! replay cannot drift from the targets.

#[path = "../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod checks;

use std::path::{Path, PathBuf};

/// A target's check: panics on a broken promise.
type Check = fn(&[u8]);

const TARGETS: [(&str, Check); 4] = [
    ("gguf_header", |data| {
        checks::gguf_header(data, checks::no_meter)
    }),
    ("workflow", checks::workflow),
    ("manifest", checks::manifest),
    ("models_conf", checks::models_conf),
];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Runs every file of `dir` through `check`; a panic names the file.
fn replay(dir: &Path, check: Check) -> usize {
    let files = files(dir);
    for path in &files {
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if let Err(panic) = std::panic::catch_unwind(|| check(&data)) {
            let msg = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("(no message)");
            panic!("{}: {msg}", path.display());
        }
    }
    files.len()
}

#[test]
fn corpora_replay_clean() {
    for (target, check) in TARGETS {
        let dir = fuzz_dir().join("corpus").join(target);
        assert!(dir.is_dir(), "{} is missing", dir.display());
        let n = replay(&dir, check);
        assert!(n > 0, "{} is empty", dir.display());
    }
}

#[test]
fn regressions_stay_fixed() {
    for (target, check) in TARGETS {
        // A target without findings has no regressions directory.
        replay(&fuzz_dir().join("regressions").join(target), check);
    }
    // Every regressions directory belongs to a target (no typo hides one).
    for dir in files_and_dirs(&fuzz_dir().join("regressions")) {
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned());
        assert!(
            TARGETS.iter().any(|(t, _)| Some(*t) == name.as_deref()),
            "{} is not a fuzz target's regressions",
            dir.display()
        );
    }
}

fn files_and_dirs(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect()
}
