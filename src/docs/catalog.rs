//! What the workspace knows about each model, gathered from the files that
//! hold it: the manifest, its profiles in models.conf (`CTX_SIZE=`,
//! `SPEED=`), HumanEval+ results files, the weights on disk and where the
//! card sits. The model tables and retirement advice read only this.

use super::tree::{relative, Kind, Source};
use crate::workspace::manifest::{Manifest, ModelStatus};
use crate::workspace::models_conf::{self, Profile};
use crate::workspace::{ManifestError, Workspace};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where HumanEval+ results live, one file per model: `<dir>/<id>.json`.
pub const RESULTS_DIR: &str = "benchmarks/results";
/// Card subdirectories of the docs directory.
pub const CANDIDATES: &str = "CANDIDATES";
pub const RETIRED: &str = "RETIRED";

/// `benchmarks/results/<model>.json`: the benchmark phase writes it, the
/// tables and retirement advice read it. Scores are pass@1 in percent
/// (0–100), greedy; `plus` counts a task only when base and plus tests pass.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BenchResults {
    /// The model id (the manifest's).
    pub model: String,
    /// e.g. `HumanEval+`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub benchmark: Option<String>,
    /// pass@1 on the base tests, percent.
    pub base: f64,
    /// pass@1 on base and plus tests, percent; none when only the base
    /// tests ran (the offline "HumanEval (base tests only)").
    #[serde(default)]
    pub plus: Option<f64>,
    /// Number of tasks run (164 for HumanEval+).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tasks: Option<u32>,
    /// A chart of the comparison report, relative to the workspace root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chart: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("{}: {message}; run `onboard validate` to see every problem", path.display())]
    Manifest { path: PathBuf, message: String },
    #[error("{}: {message}", path.display())]
    Results { path: PathBuf, message: String },
    #[error(transparent)]
    Conf(#[from] models_conf::ConfError),
}

/// Where a model's card sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Place {
    /// `documentation/CANDIDATES/`
    Candidate,
    /// `documentation/`
    Onboarded,
    /// `documentation/RETIRED/`
    Retired,
}

/// Figures a run measured that may not be in the workspace's files yet
/// (the docs step receives them from upstream steps).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Measured {
    pub speed_tps: Option<f64>,
    pub humaneval_base: Option<f64>,
    pub humaneval_plus: Option<f64>,
    pub chart: Option<String>,
}

/// One model and everything known about it.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    pub manifest: Manifest,
    /// The card's file name (`<name>.md`).
    pub card_name: String,
    /// The card, workspace-relative, wherever it sits.
    pub card: Option<PathBuf>,
    pub place: Option<Place>,
    /// Profiles that belong to the model: its production profile and
    /// `bench-<production>`.
    pub profiles: Vec<Profile>,
    pub production: Option<Profile>,
    /// The weights directory, workspace-relative, when known.
    pub weights_dir: Option<PathBuf>,
    /// Bytes under `weights_dir` on disk.
    pub disk_bytes: Option<u64>,
    pub results: Option<BenchResults>,
    pub measured_speed: Option<f64>,
}

/// The card file name for a manifest: `card.doc` when set, else the
/// display name with spaces as `-` (`GPT-OSS 120B` → `GPT-OSS-120B.md`).
pub fn card_name(manifest: &Manifest) -> String {
    if let Some(doc) = manifest.card.get("doc").and_then(|v| v.as_str()) {
        return doc.to_string();
    }
    format!("{}.md", manifest.name.trim().replace(' ', "-"))
}

fn card_str(m: &Manifest, key: &str) -> Option<String> {
    match m.card.get(key)? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn card_f64(m: &Manifest, key: &str) -> Option<f64> {
    m.card.get(key).and_then(|v| v.as_f64())
}

/// The first number in a text such as `112 t/s (2 GPUs)`.
pub fn leading_number(s: &str) -> Option<f64> {
    let start = s.find(|c: char| c.is_ascii_digit())?;
    let rest = &s[start..];
    let len = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    rest[..len].parse().ok()
}

fn fmt_num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v:.1}")
    }
}

impl ModelInfo {
    pub fn id(&self) -> &str {
        &self.manifest.id
    }

    pub fn retired(&self) -> bool {
        self.manifest.status == ModelStatus::Retired || self.place == Some(Place::Retired)
    }

    /// On the machine and documented: installed, or its card moved out of
    /// `CANDIDATES/`.
    pub fn onboarded(&self) -> bool {
        !self.retired()
            && (self.manifest.status == ModelStatus::Installed
                || self.place == Some(Place::Onboarded))
    }

    pub fn quant(&self) -> Option<String> {
        self.manifest.hub.quant.clone()
    }

    /// Size in GB (10⁹ bytes): the card's figure (evaluate records the
    /// files' sizes), else what the weights take on disk.
    pub fn size_gb(&self) -> Option<f64> {
        card_f64(&self.manifest, "file_size_gb").or_else(|| {
            self.disk_bytes
                .filter(|b| *b > 0)
                .map(|b| (b as f64 / 1e9 * 10.0).round() / 10.0)
        })
    }

    pub fn strategy(&self) -> Option<String> {
        if let Some(s) = card_str(&self.manifest, "strategy") {
            return Some(s);
        }
        let p = self.production.as_ref()?;
        Some(match (p.get("FIT"), p.get("GPU_LAYERS")) {
            (_, Some("0")) => "CPU".into(),
            (Some("off"), _) => "all-GPU".into(),
            (Some("on"), _) => "FIT".into(),
            _ => return None,
        })
    }

    /// Production context: the profile's CTX_SIZE, else the card's.
    pub fn context(&self) -> Option<u64> {
        self.production
            .as_ref()
            .and_then(|p| p.get("CTX_SIZE"))
            .and_then(|v| v.trim().parse().ok())
            .or_else(|| {
                self.manifest
                    .card
                    .get("context")
                    .and_then(serde_json::Value::as_u64)
            })
    }

    /// Measured decode speed in tokens/s, when one was measured.
    pub fn speed_tps(&self) -> Option<f64> {
        self.measured_speed
            .or_else(|| {
                self.production
                    .as_ref()
                    .and_then(|p| p.get("SPEED"))
                    .and_then(leading_number)
            })
            .or_else(|| card_f64(&self.manifest, "measured_speed_tps"))
    }

    /// Speed as shown: measured (`SPEED=` verbatim), else an estimate.
    pub fn speed_text(&self) -> Option<String> {
        if let Some(v) = self.measured_speed {
            return Some(format!("{} t/s", fmt_num(v)));
        }
        if let Some(s) = self.production.as_ref().and_then(|p| p.get("SPEED")) {
            return Some(s.to_string());
        }
        if let Some(v) = card_f64(&self.manifest, "measured_speed_tps") {
            return Some(format!("{} t/s", fmt_num(v)));
        }
        card_str(&self.manifest, "est_speed_tps").map(|e| format!("~{e} t/s (est.)"))
    }

    /// Every score known: the manifest's published benchmarks and the
    /// measured HumanEval+ pass@1 (`HumanEval+ base`, `HumanEval+ plus`).
    pub fn scores(&self) -> BTreeMap<String, f64> {
        let mut out: BTreeMap<String, f64> = self
            .manifest
            .benchmarks
            .iter()
            .filter_map(|(k, v)| v.map(|v| (k.clone(), v)))
            .collect();
        if let Some(r) = &self.results {
            match r.plus {
                Some(plus) => {
                    out.insert("HumanEval+ base".into(), r.base);
                    out.insert("HumanEval+ plus".into(), plus);
                }
                // Base tests only: not comparable with HumanEval+ scores.
                None => {
                    out.insert("HumanEval base".into(), r.base);
                }
            }
        }
        out
    }

    /// Applies figures measured by the current run.
    pub fn apply(&mut self, m: &Measured) {
        if m.speed_tps.is_some() {
            self.measured_speed = m.speed_tps;
        }
        if let (Some(base), Some(plus)) = (m.humaneval_base, m.humaneval_plus) {
            let chart = m
                .chart
                .clone()
                .or_else(|| self.results.as_ref().and_then(|r| r.chart.clone()));
            self.results = Some(BenchResults {
                model: self.manifest.id.clone(),
                benchmark: Some("HumanEval+".into()),
                base,
                plus: Some(plus),
                tasks: None,
                chart,
            });
        } else if let (Some(chart), Some(r)) = (&m.chart, self.results.as_mut()) {
            r.chart = Some(chart.clone());
        }
    }
}

/// Every model in the workspace.
#[derive(Debug, Clone)]
pub struct Catalog {
    pub docs: PathBuf,
    pub models: Vec<ModelInfo>,
    /// Every profile in models.conf.
    pub profiles: Vec<Profile>,
}

impl Catalog {
    /// Reads the workspace through `src` (so pending moves count).
    pub fn load(ws: &Workspace, src: &impl Source) -> Result<Catalog, CatalogError> {
        let paths = &ws.config.paths;
        let docs = PathBuf::from(&paths.docs);
        let models_dir = PathBuf::from(&paths.models);
        let conf = models_conf::read(&ws.path(&paths.models_conf))?;
        let profiles = conf.profiles();
        let mut models = Vec::new();
        for id in ws.manifest_ids() {
            let manifest = ws.load_manifest(&id).map_err(|e| CatalogError::Manifest {
                path: ws.manifest_path(&id),
                message: match e {
                    ManifestError::Invalid(d) => format!("{} problem(s)", d.len()),
                    other => other.to_string(),
                },
            })?;
            let name = card_name(&manifest);
            let (card, place) = [
                (docs.join(&name), Place::Onboarded),
                (docs.join(CANDIDATES).join(&name), Place::Candidate),
                (docs.join(RETIRED).join(&name), Place::Retired),
            ]
            .into_iter()
            .find(|(p, _)| src.kind(p) == Kind::File)
            .map_or((None, None), |(p, place)| (Some(p), Some(place)));
            let production = manifest
                .profile
                .as_ref()
                .and_then(|p| profiles.iter().find(|x| &x.id == p))
                .cloned();
            let weights_dir = manifest
                .path
                .as_ref()
                .map(|p| models_dir.join(p))
                .or_else(|| {
                    let model = production.as_ref()?.get("MODEL")?;
                    let parent = Path::new(model).parent()?;
                    (!parent.as_os_str().is_empty()).then(|| models_dir.join(parent))
                })
                .and_then(|p| super::tree::normalize(&p))
                .filter(|p| p.starts_with(&models_dir) && *p != models_dir);
            let bench_id = manifest.profile.as_ref().map(|p| format!("bench-{p}"));
            let own: Vec<Profile> = profiles
                .iter()
                .filter(|p| {
                    Some(&p.id) == manifest.profile.as_ref() || Some(&p.id) == bench_id.as_ref()
                })
                .cloned()
                .collect();
            let disk_bytes = weights_dir
                .as_ref()
                .and_then(|d| dir_size(&ws.root.join(d)));
            let results = read_results(&ws.root, &id)?;
            models.push(ModelInfo {
                manifest,
                card_name: name,
                card,
                place,
                profiles: own,
                production,
                weights_dir,
                disk_bytes,
                results,
                measured_speed: None,
            });
        }
        Ok(Catalog {
            docs,
            models,
            profiles,
        })
    }

    pub fn get(&self, id: &str) -> Option<&ModelInfo> {
        self.models.iter().find(|m| m.manifest.id == id)
    }

    pub fn get_mut(&mut self, id: &str) -> Option<&mut ModelInfo> {
        self.models.iter_mut().find(|m| m.manifest.id == id)
    }

    /// The models table, with links relative to the page `page` that
    /// holds it. Rows: onboarded models, by name.
    pub fn models_table(&self, page: &Path, src: &impl Source) -> String {
        let base = super::tree::dir_of(page);
        let dash = || "—".to_string();
        let mut rows: Vec<&ModelInfo> = self.models.iter().filter(|m| m.onboarded()).collect();
        rows.sort_by(|a, b| a.manifest.name.cmp(&b.manifest.name));
        let mut charts: Vec<String> = Vec::new();
        let mut out = String::from(
            "| Model | Id | Quant | Size | Strategy | Context | Speed | HumanEval+ base | HumanEval+ plus | Chart |\n\
             |---|---|---|---|---|---|---|---|---|---|\n",
        );
        for m in rows {
            let name = cell(&m.manifest.name);
            let model = match (&m.card, m.place) {
                (Some(card), Some(Place::Onboarded)) => {
                    format!("[{name}]({})", link_path(&relative(&base, card)))
                }
                _ => name,
            };
            let chart = m
                .results
                .as_ref()
                .and_then(|r| r.chart.as_ref())
                .and_then(|c| super::tree::normalize(Path::new(c)))
                .filter(|c| src.kind(c) == Kind::File)
                .map_or_else(dash, |c| {
                    let dest = link_path(&relative(&base, &c));
                    if !charts.contains(&dest) {
                        charts.push(dest.clone());
                    }
                    format!("[chart]({dest})")
                });
            let score = |f: fn(&BenchResults) -> Option<f64>| {
                m.results
                    .as_ref()
                    .and_then(f)
                    .map_or_else(dash, |v| format!("{v:.1}"))
            };
            out.push_str(&format!(
                "| {model} | `{}` | {} | {} | {} | {} | {} | {} | {} | {chart} |\n",
                m.manifest.id,
                m.quant().map_or_else(dash, |q| cell(&q)),
                m.size_gb()
                    .map_or_else(dash, |s| format!("{} GB", fmt_num(s))),
                m.strategy().map_or_else(dash, |s| cell(&s)),
                m.context().map_or_else(dash, |c| c.to_string()),
                m.speed_text().map_or_else(dash, |s| cell(&s)),
                score(|r| Some(r.base)),
                score(|r| r.plus),
            ));
        }
        // The benchmark report's chart(s), embedded once under the table.
        for dest in charts {
            out.push_str(&format!("\n![HumanEval+ pass@1]({dest})\n"));
        }
        out
    }
}

/// A path as a link destination (spaces encoded).
pub fn link_path(p: &str) -> String {
    p.replace(' ', "%20")
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// `benchmarks/results/<id>.json`, if present.
pub fn read_results(root: &Path, id: &str) -> Result<Option<BenchResults>, CatalogError> {
    let path = root.join(RESULTS_DIR).join(format!("{id}.json"));
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(CatalogError::Results {
                path,
                message: e.to_string(),
            })
        }
    };
    let results: BenchResults = match from_benchmark_summary(&text) {
        Some(r) => r,
        None => serde_json::from_str(&text).map_err(|e| CatalogError::Results {
            path: path.clone(),
            message: format!(
                "line {}, column {}: {e}; expected {{\"model\": \"{id}\", \"base\": <pass@1 %>, \"plus\": <pass@1 %>}}",
                e.line(),
                e.column()
            ),
        })?,
    };
    for (field, v) in [("base", Some(results.base)), ("plus", results.plus)] {
        let Some(v) = v else { continue };
        if !(0.0..=100.0).contains(&v) {
            return Err(CatalogError::Results {
                path,
                message: format!("`{field}` is {v}; pass@1 is a percentage from 0 to 100"),
            });
        }
    }
    if results.model != id {
        return Err(CatalogError::Results {
            path,
            message: format!(
                "`model` is `{}` but the file is named for `{id}`; fix one of them",
                results.model
            ),
        });
    }
    Ok(Some(results))
}

/// The summary the benchmark phase writes (fractions, with its dataset's
/// name) as percentages; `None` when `text` is not one.
fn from_benchmark_summary(text: &str) -> Option<BenchResults> {
    let s: crate::bench::score::Summary = serde_json::from_str(text).ok()?;
    let percent = |f: f64| (f * 1000.0).round() / 10.0;
    Some(BenchResults {
        model: s.model,
        benchmark: Some(s.dataset),
        base: percent(s.pass_at_1_base),
        plus: s.pass_at_1_plus.map(percent),
        tasks: u32::try_from(s.tasks).ok(),
        chart: None,
    })
}

/// Total size of the files under `dir` (None when it does not exist).
pub fn dir_size(dir: &Path) -> Option<u64> {
    let meta = std::fs::symlink_metadata(dir).ok()?;
    if !meta.is_dir() {
        return None;
    }
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            match entry.metadata() {
                Ok(m) if m.is_dir() => stack.push(entry.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_from_speed_texts() {
        assert_eq!(leading_number("112 t/s (2 GPUs)"), Some(112.0));
        assert_eq!(leading_number("~15.5-22"), Some(15.5));
        assert_eq!(leading_number("fast"), None);
        assert_eq!(fmt_num(61.0), "61");
        assert_eq!(fmt_num(30.3), "30.3");
    }
}
