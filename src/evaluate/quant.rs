//! Which GGUF files of a repo form which quant, and the order to try them.
//!
//! Quant names come from file names (`Qwen3.5-35B-A3B-UD-Q6_K_XL.gguf`,
//! `UD-Q4_K_XL/…-UD-Q4_K_XL-00001-of-00003.gguf`): the Hub has no other
//! place that says which file is which quant.

use serde::Serialize;

use crate::gguf::ShardName;
use crate::hub::{group_shards, RepoFile};

/// One quant of a repo: a file, or the shards of a split file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Candidate {
    /// The quant as the file name spells it (`UD-Q4_K_XL`), or the stem.
    pub quant: String,
    /// Repo paths, in shard order.
    pub files: Vec<String>,
    /// Bytes of each file, as the listing reports them.
    pub sizes: Vec<u64>,
    /// False when shards of a split file are missing from the listing.
    pub complete: bool,
}

impl Candidate {
    pub fn total_size(&self) -> u64 {
        self.sizes.iter().sum()
    }
}

/// The file name without directories, `.gguf` and the shard suffix.
pub fn stem(path: &str) -> &str {
    let base = path.rsplit('/').next().unwrap_or(path);
    match ShardName::parse(base) {
        Some(shard) => shard.prefix,
        None => base.strip_suffix(".gguf").unwrap_or(base),
    }
}

/// Whether a `-`/`.`-separated piece of a file name starts a quant label.
fn starts_quant(piece: &str) -> bool {
    let p = piece.to_ascii_uppercase();
    let digit_after = |prefix: &str| {
        p.strip_prefix(prefix)
            .and_then(|r| r.chars().next())
            .is_some_and(|c| c.is_ascii_digit())
    };
    digit_after("Q")
        || digit_after("IQ")
        || digit_after("TQ")
        || p.starts_with("MXFP4")
        || p.starts_with("NVFP4")
        || matches!(p.as_str(), "F16" | "BF16" | "F32" | "FP16" | "FP32")
}

/// The quant label of a GGUF file name: from the first piece that looks
/// like a quant (an `UD` right before it included) to the end of the stem.
/// `Qwen3.5-122B-A10B-UD-Q4_K_XL-00001-of-00003.gguf` → `UD-Q4_K_XL`.
pub fn quant_of(path: &str) -> Option<String> {
    let stem = stem(path);
    let pieces: Vec<&str> = stem.split(['-', '.']).collect();
    let i = pieces.iter().position(|p| starts_quant(p))?;
    let from = if i > 0 && pieces[i - 1].eq_ignore_ascii_case("UD") {
        i - 1
    } else {
        i
    };
    // Byte offset of piece `from` in the stem.
    let offset: usize = pieces[..from].iter().map(|p| p.len() + 1).sum();
    stem.get(offset..).map(str::to_string)
}

/// Whether a file is model weights (not a vision projector or imatrix).
fn is_weights(path: &str) -> bool {
    let base = path.rsplit('/').next().unwrap_or(path).to_ascii_lowercase();
    base.ends_with(".gguf") && !base.starts_with("mmproj") && !base.contains("imatrix")
}

/// A vision projector in a repo (`mmproj-F16.gguf`): the image encoder
/// llama-server loads beside the weights with `--mmproj`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Projector {
    /// Repo path.
    pub file: String,
    pub size: u64,
    /// The file name after `mmproj-`, without `.gguf` (`F16`, `BF16`).
    pub kind: String,
}

/// The vision projectors of a listing, smallest first.
pub fn projectors(files: &[RepoFile]) -> Vec<Projector> {
    let mut out: Vec<Projector> = files
        .iter()
        .filter_map(|f| {
            let base = f.path.rsplit('/').next().unwrap_or(&f.path);
            let lower = base.to_ascii_lowercase();
            if !(lower.starts_with("mmproj") && lower.ends_with(".gguf")) {
                return None;
            }
            let kind = base[..base.len() - ".gguf".len()]
                .get("mmproj".len()..)
                .unwrap_or("")
                .trim_start_matches(['-', '_', '.'])
                .to_string();
            Some(Projector {
                file: f.path.clone(),
                size: f.size,
                kind,
            })
        })
        .collect();
    out.sort_by(|a, b| a.size.cmp(&b.size).then(a.file.cmp(&b.file)));
    out
}

/// The projector `wanted` names: its repo path or file name, its kind
/// (`F16`), or a kind ending in `-F16`; case does not matter.
pub fn find_projector<'a>(all: &'a [Projector], wanted: &str) -> Option<&'a Projector> {
    let w = wanted.to_ascii_lowercase();
    let base = |p: &Projector| p.file.rsplit('/').next().unwrap_or("").to_ascii_lowercase();
    all.iter()
        .find(|p| p.file.to_ascii_lowercase() == w || base(p) == w)
        .or_else(|| all.iter().find(|p| p.kind.to_ascii_lowercase() == w))
        .or_else(|| {
            all.iter()
                .find(|p| p.kind.to_ascii_lowercase().ends_with(&format!("-{w}")))
        })
}

/// Every quant of a listing, shards grouped, largest first.
pub fn candidates(files: &[RepoFile]) -> Vec<Candidate> {
    let weights: Vec<RepoFile> = files
        .iter()
        .filter(|f| is_weights(&f.path))
        .cloned()
        .collect();
    let mut out: Vec<Candidate> = group_shards(&weights)
        .into_iter()
        .map(|g| {
            let first = g.files.first().map(|f| f.path.as_str()).unwrap_or("");
            Candidate {
                quant: quant_of(first).unwrap_or_else(|| stem(first).to_string()),
                files: g.files.iter().map(|f| f.path.clone()).collect(),
                sizes: g.files.iter().map(|f| f.size).collect(),
                complete: g.complete,
            }
        })
        .collect();
    out.sort_by(|a, b| {
        b.total_size()
            .cmp(&a.total_size())
            .then(a.quant.cmp(&b.quant))
    });
    out
}

/// The candidate for a quant name: the label equal to it (case
/// insensitive), else a stem ending in it.
pub fn find<'a>(all: &'a [Candidate], quant: &str) -> Option<&'a Candidate> {
    all.iter()
        .find(|c| c.quant.eq_ignore_ascii_case(quant))
        .or_else(|| {
            let q = quant.to_ascii_lowercase();
            all.iter().find(|c| {
                c.files
                    .first()
                    .map(|f| stem(f).to_ascii_lowercase())
                    .is_some_and(|s| s.ends_with(&format!("-{q}")) || s.ends_with(&format!(".{q}")))
            })
        })
}

/// Exact files given by the manifest, as one candidate (shards ordered).
pub fn from_files(listing: &[RepoFile], files: &[String]) -> Result<Candidate, String> {
    let mut chosen = Vec::new();
    for want in files {
        match listing.iter().find(|f| &f.path == want) {
            Some(f) => chosen.push(f.clone()),
            None => return Err(want.clone()),
        }
    }
    chosen.sort_by_key(|f| ShardName::parse_valid(&f.path).map(|s| s.index));
    let first = chosen.first().map(|f| f.path.clone()).unwrap_or_default();
    Ok(Candidate {
        quant: quant_of(&first).unwrap_or_else(|| stem(&first).to_string()),
        files: chosen.iter().map(|f| f.path.clone()).collect(),
        sizes: chosen.iter().map(|f| f.size).collect(),
        complete: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quant_labels_from_names() {
        assert_eq!(
            quant_of("Qwen3.5-35B-A3B-UD-Q6_K_XL.gguf").as_deref(),
            Some("UD-Q6_K_XL")
        );
        assert_eq!(
            quant_of("UD-Q4_K_XL/Qwen3.5-122B-A10B-UD-Q4_K_XL-00001-of-00003.gguf").as_deref(),
            Some("UD-Q4_K_XL")
        );
        assert_eq!(
            quant_of("Qwen3.5-122B-A10B-MXFP4_MOE.gguf").as_deref(),
            Some("MXFP4_MOE")
        );
        assert_eq!(
            quant_of("SmolLM2-135M-Instruct.Q4_1.gguf").as_deref(),
            Some("Q4_1")
        );
        assert_eq!(
            quant_of("Llama-3.1-8B-Instruct-BF16.gguf").as_deref(),
            Some("BF16")
        );
        assert_eq!(quant_of("model.gguf"), None);
    }

    fn file(path: &str, size: u64) -> RepoFile {
        RepoFile {
            path: path.into(),
            size,
            sha256: None,
            blob_id: String::new(),
        }
    }

    #[test]
    fn projectors_are_listed_and_found_by_kind_or_name() {
        let listing = vec![
            file("M-Q8_0.gguf", 200),
            file("mmproj-F32.gguf", 1800),
            file("mmproj-BF16.gguf", 900),
            file("mmproj-F16.gguf", 900),
        ];
        let p = projectors(&listing);
        let kinds: Vec<&str> = p.iter().map(|p| p.kind.as_str()).collect();
        assert_eq!(kinds, ["BF16", "F16", "F32"]);
        assert_eq!(find_projector(&p, "f16").unwrap().file, "mmproj-F16.gguf");
        assert_eq!(find_projector(&p, "BF16").unwrap().file, "mmproj-BF16.gguf");
        assert_eq!(
            find_projector(&p, "mmproj-F32.gguf").unwrap().file,
            "mmproj-F32.gguf"
        );
        assert!(find_projector(&p, "Q8_0").is_none());
        let named = projectors(&[file("v/mmproj-Model-F16.gguf", 5)]);
        assert_eq!(find_projector(&named, "F16").unwrap().kind, "Model-F16");
    }

    #[test]
    fn shards_grouped_and_projectors_skipped() {
        let listing = vec![
            file("README.md", 10),
            file("mmproj-F16.gguf", 900),
            file("Q4/M-Q4_K_M-00002-of-00002.gguf", 50),
            file("Q4/M-Q4_K_M-00001-of-00002.gguf", 40),
            file("M-Q8_0.gguf", 200),
        ];
        let c = candidates(&listing);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].quant, "Q8_0");
        assert_eq!(c[1].quant, "Q4_K_M");
        assert_eq!(
            c[1].files,
            vec![
                "Q4/M-Q4_K_M-00001-of-00002.gguf",
                "Q4/M-Q4_K_M-00002-of-00002.gguf"
            ]
        );
        assert_eq!(c[1].total_size(), 90);
        assert!(find(&c, "q4_k_m").is_some());
        assert!(find(&c, "Q5_K_M").is_none());
    }
}
