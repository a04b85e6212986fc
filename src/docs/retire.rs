//! Retirement: advice comparing each onboarded model with the models its
//! manifest `replaces`, and the exact set of changes that retiring one
//! model makes (computed first, shown in a dry run, applied only on
//! request). Nothing here ever touches a model it was not named.

use super::catalog::{Catalog, ModelInfo, Place, RETIRED};
use super::links::{move_file, LinkEdit};
use super::tree::Changeset;
use crate::source::Document;
use crate::workspace::manifest::ModelStatus;
use crate::workspace::models_conf::Profile;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// What the advice says about an old model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The replacement is at least as good on every shared benchmark and
    /// better on one or more: removing the old model loses nothing measured.
    Retire,
    /// The replacement leads overall but the old model still wins some
    /// benchmarks: keep it until hands-on use decides.
    Review,
    /// The old model is as good or better: keep it.
    Keep,
    /// The replacement is not onboarded yet.
    Wait,
    /// No benchmark both models have a score for.
    Undecided,
}

/// One benchmark both models have a score for.
#[derive(Debug, Clone, Serialize)]
pub struct Score {
    pub benchmark: String,
    pub new: f64,
    pub old: f64,
}

/// Advice on one (replacement, old model) pair.
#[derive(Debug, Clone, Serialize)]
pub struct Advice {
    pub old: String,
    pub old_name: String,
    pub replacement: String,
    pub replacement_name: String,
    pub verdict: Verdict,
    pub wins: Vec<Score>,
    pub losses: Vec<Score>,
    pub ties: Vec<Score>,
    /// GB retiring the old model frees.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frees_gb: Option<f64>,
    pub reasons: Vec<String>,
    pub recommendation: String,
}

/// A model no manifest names in `replaces`.
#[derive(Debug, Clone, Serialize)]
pub struct Keeper {
    pub id: String,
    pub name: String,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct AdviceReport {
    pub advice: Vec<Advice>,
    pub keepers: Vec<Keeper>,
}

fn fmt(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{}", v as i64)
    } else {
        format!("{v:.1}")
    }
}

fn list(scores: &[Score]) -> String {
    scores
        .iter()
        .map(|s| format!("{} {} vs {}", s.benchmark, fmt(s.new), fmt(s.old)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Compares every onboarded replacement with each model it `replaces`.
pub fn advise(catalog: &Catalog) -> AdviceReport {
    let mut advice = Vec::new();
    for new in &catalog.models {
        if new.retired() || new.manifest.replaces.is_empty() {
            continue;
        }
        for old_id in &new.manifest.replaces {
            let Some(old) = catalog.get(old_id) else {
                continue;
            };
            if old.retired() {
                continue;
            }
            advice.push(compare(new, old));
        }
    }
    let named: Vec<&String> = catalog
        .models
        .iter()
        .flat_map(|m| m.manifest.replaces.iter())
        .collect();
    let keepers = catalog
        .models
        .iter()
        .filter(|m| !m.retired() && !named.contains(&&m.manifest.id))
        .map(|m| Keeper {
            id: m.manifest.id.clone(),
            name: m.manifest.name.clone(),
            reason: "no manifest names it in `replaces`: never advised for removal".into(),
        })
        .collect();
    AdviceReport { advice, keepers }
}

fn compare(new: &ModelInfo, old: &ModelInfo) -> Advice {
    let (ns, os) = (new.scores(), old.scores());
    let (mut wins, mut losses, mut ties) = (Vec::new(), Vec::new(), Vec::new());
    for (benchmark, &n) in &ns {
        let Some(&o) = os.get(benchmark) else {
            continue;
        };
        let s = Score {
            benchmark: benchmark.clone(),
            new: n,
            old: o,
        };
        if n > o {
            wins.push(s);
        } else if n < o {
            losses.push(s);
        } else {
            ties.push(s);
        }
    }
    let shared = wins.len() + losses.len() + ties.len();
    let (nn, on) = (&new.manifest.name, &old.manifest.name);
    let mut reasons = Vec::new();
    let verdict = if !new.onboarded() {
        reasons.push(format!(
            "{nn} is not onboarded yet (its card is not in documentation/ and its manifest says `status: {}`)",
            serde_json::to_value(new.manifest.status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default()
        ));
        Verdict::Wait
    } else if shared == 0 {
        reasons.push(
            "no benchmark has a score for both; run the benchmark phase for both models (results in benchmarks/results/)".into(),
        );
        Verdict::Undecided
    } else if losses.is_empty() && !wins.is_empty() {
        reasons.push(format!(
            "{nn} beats {on} on {} of {shared} shared benchmarks and loses none: {}",
            wins.len(),
            list(&wins)
        ));
        Verdict::Retire
    } else if wins.len() > losses.len() {
        reasons.push(format!(
            "{nn} leads on {} of {shared} shared benchmarks: {}",
            wins.len(),
            list(&wins)
        ));
        reasons.push(format!(
            "{on} still leads on {}: {}",
            losses.len(),
            list(&losses)
        ));
        Verdict::Review
    } else {
        reasons.push(format!(
            "{on} is as good or better on {} of {shared} shared benchmarks: {}",
            losses.len() + ties.len(),
            list(&[losses.clone(), ties.clone()].concat())
        ));
        Verdict::Keep
    };
    if !ties.is_empty() && verdict != Verdict::Keep {
        reasons.push(format!("tied: {}", list(&ties)));
    }
    if let (Some(a), Some(b)) = (new.speed_tps(), old.speed_tps()) {
        reasons.push(format!(
            "measured speed: {nn} {} t/s, {on} {} t/s",
            fmt(a),
            fmt(b)
        ));
    }
    if let (Some(a), Some(b)) = (new.context(), old.context()) {
        if a != b {
            reasons.push(format!("context: {nn} {a}, {on} {b}"));
        }
    }
    let frees_gb = old.size_gb();
    if let Some(gb) = frees_gb {
        reasons.push(format!("retiring {on} frees {} GB", fmt(gb)));
    }
    let recommendation = match verdict {
        Verdict::Retire => format!(
            "retire {on}: `onboard retire {}` shows the changes, `--yes` makes them",
            old.manifest.id
        ),
        Verdict::Review => format!("keep {on} for now; decide with hands-on use"),
        Verdict::Keep => format!("keep {on}"),
        Verdict::Wait => format!("onboard {nn} first (`onboard {}`)", new.manifest.id),
        Verdict::Undecided => format!("benchmark both before deciding about {on}"),
    };
    Advice {
        old: old.manifest.id.clone(),
        old_name: on.clone(),
        replacement: new.manifest.id.clone(),
        replacement_name: nn.clone(),
        verdict,
        wins,
        losses,
        ties,
        frees_gb,
        reasons,
        recommendation,
    }
}

impl AdviceReport {
    /// The advice file the `compare` step writes after every model of a run.
    pub fn markdown(&self) -> String {
        format!(
            "# Retirement advice\n\nEach onboarded model compared with the models it `replaces` \
             (written by the `compare` step after every model of the run; nothing is retired \
             until `onboard retire <id> --yes`).\n\n```text\n{self}```\n"
        )
    }
}

impl std::fmt::Display for AdviceReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.advice.is_empty() {
            writeln!(f, "No onboarded model names another in `replaces`.")?;
        }
        for a in &self.advice {
            writeln!(
                f,
                "{} ({}): {}, compared with {} ({})",
                a.old_name,
                a.old,
                serde_json::to_value(a.verdict)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                a.replacement_name,
                a.replacement
            )?;
            for r in &a.reasons {
                writeln!(f, "  - {r}")?;
            }
            writeln!(f, "  => {}\n", a.recommendation)?;
        }
        if !self.keepers.is_empty() {
            writeln!(f, "Likely keepers (not named in any `replaces`):")?;
            for k in &self.keepers {
                writeln!(f, "  - {} ({})", k.name, k.id)?;
            }
        }
        Ok(())
    }
}

/// What retiring one model changes.
#[derive(Debug)]
pub struct RetirePlan {
    pub id: String,
    pub name: String,
    /// The weights directory and its size in bytes.
    pub weights: Option<(PathBuf, u64)>,
    pub profiles: Vec<Profile>,
    /// Sections of the benchmark client configuration to remove.
    pub bench_client: Vec<String>,
    pub card_move: Option<(PathBuf, PathBuf)>,
    pub link_edits: Vec<LinkEdit>,
    pub tables: Vec<PathBuf>,
    pub manifest: ManifestChange,
    pub notes: Vec<String>,
    /// The documentation, manifest and weights changes.
    pub changes: Changeset,
}

/// The manifest's `status` edit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestChange {
    Set {
        path: PathBuf,
        line: usize,
    },
    AlreadyRetired,
    /// Left alone, with the reason.
    Unchanged(String),
}

#[derive(Debug, thiserror::Error)]
pub enum RetireError {
    #[error("no model `{0}` in the workspace (known: {1})")]
    Unknown(String, String),
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Move(#[from] super::links::MoveError),
    #[error(transparent)]
    Block(#[from] super::blocks::BlockError),
}

/// Sets the manifest's top-level `status:` to `retired`, changing only
/// that value (or inserting one line after `id:`); `Err` with the reason
/// when the file is not written in a way this can do safely.
pub fn set_status_retired(path: &Path, text: &str) -> Result<(String, usize), String> {
    let mut out = String::with_capacity(text.len() + 20);
    let mut done = None;
    let mut id_line_end = None;
    let mut offset = 0;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        if done.is_none() {
            if let Some(rest) = line.strip_prefix("status:") {
                let value_start = rest.len() - rest.trim_start().len();
                let value = &rest[value_start..];
                let value_len = value
                    .find(|c: char| c.is_whitespace() || c == '#')
                    .unwrap_or(value.len());
                let prefix_len = "status:".len() + value_start;
                let replaced = format!(
                    "{}{}{}",
                    &line[..prefix_len],
                    if value_start == 0 {
                        " retired"
                    } else {
                        "retired"
                    },
                    &line[prefix_len + value_len..]
                );
                out.push_str(&replaced);
                done = Some(i + 1);
                offset += line.len();
                continue;
            }
            if line.starts_with("id:") {
                id_line_end = Some((offset + line.len(), i + 1));
            }
        }
        out.push_str(line);
        offset += line.len();
    }
    let (result, line) = match (done, id_line_end) {
        (Some(line), _) => (out, line),
        (None, Some((at, line))) => {
            let nl = if text.contains("\r\n") { "\r\n" } else { "\n" };
            let mut t = text.to_string();
            if !text[..at].ends_with('\n') {
                t.insert_str(at, nl);
                t.push_str(&format!("status: retired{nl}"));
            } else {
                t.insert_str(at, &format!("status: retired{nl}"));
            }
            (t, line + 1)
        }
        (None, None) => {
            return Err("it has no top-level `id:` or `status:` line to edit".into());
        }
    };
    // Only keep the edit when the result still reads as the same manifest,
    // now retired.
    let doc = Document::parse(path, result.clone())
        .map_err(|d| format!("the edit would not parse: {}", d.message))?;
    let (manifest, diags) = crate::workspace::check_manifest(&doc);
    match manifest {
        Some(m) if diags.is_empty() && m.status == ModelStatus::Retired => Ok((result, line)),
        _ => Err("the edited file would not read as a retired manifest".into()),
    }
}

/// Computes everything `onboard retire <id>` changes, without writing.
pub fn plan(
    ws: &crate::workspace::Workspace,
    catalog: &Catalog,
    mut cs: Changeset,
    id: &str,
    bench_client: &crate::workspace::models_conf::ModelsConf,
) -> Result<RetirePlan, RetireError> {
    let Some(model) = catalog.get(id) else {
        let known: Vec<&str> = catalog.models.iter().map(|m| m.id()).collect();
        return Err(RetireError::Unknown(id.to_string(), known.join(", ")));
    };
    let mut notes = Vec::new();
    let models_dir = PathBuf::from(&ws.config.paths.models);

    // The weights: only this model's directory, and only if no other
    // model's profile or manifest uses anything inside it.
    let weights = match &model.weights_dir {
        Some(dir) => {
            let own: Vec<&str> = model.profiles.iter().map(|p| p.id.as_str()).collect();
            for other in catalog.models.iter().filter(|m| m.id() != id) {
                if other
                    .weights_dir
                    .as_ref()
                    .is_some_and(|d| d.starts_with(dir) || dir.starts_with(d))
                {
                    return Err(RetireError::Refused(format!(
                        "{} overlaps the weights directory of `{}`; retiring `{id}` would delete its files. Give each model its own directory (manifest `path:`) first",
                        dir.display(),
                        other.id()
                    )));
                }
            }
            for p in catalog
                .profiles
                .iter()
                .filter(|p| !own.contains(&p.id.as_str()))
            {
                let inside = p.get("MODEL").is_some_and(|m| {
                    super::tree::normalize(&models_dir.join(m)).is_some_and(|m| m.starts_with(dir))
                });
                if inside {
                    return Err(RetireError::Refused(format!(
                        "profile `[{}]` (models.conf line {}) uses weights in {}, and it is not `{id}`'s; retiring `{id}` would break it. Remove that profile or move its weights first",
                        p.id,
                        p.line,
                        dir.display()
                    )));
                }
            }
            if dir.starts_with(&catalog.docs) || catalog.docs.starts_with(dir) {
                return Err(RetireError::Refused(format!(
                    "{} holds the documentation; refusing to delete it",
                    dir.display()
                )));
            }
            match model.disk_bytes {
                Some(bytes) => {
                    cs.remove_dir(dir);
                    Some((dir.clone(), bytes))
                }
                None => {
                    notes.push(format!(
                        "no weights to delete: {} does not exist",
                        dir.display()
                    ));
                    None
                }
            }
        }
        None => {
            notes.push(format!(
                "no weights directory known for `{id}`: set `path:` in its manifest, or `profile:` naming a models.conf profile whose MODEL= is in it; none deleted"
            ));
            None
        }
    };

    // Tables first, without the retired model (its rows and their links go).
    let mut after = catalog.clone();
    if let Some(m) = after.get_mut(id) {
        m.manifest.status = ModelStatus::Retired;
        m.place = Some(Place::Retired);
    }
    let tables = super::blocks::refresh_models(&mut cs, &after, &[])?;

    // The card: to RETIRED/, links following it.
    let (card_move, link_edits) = match (&model.card, model.place) {
        (Some(card), Some(Place::Onboarded | Place::Candidate)) => {
            let to = catalog.docs.join(RETIRED).join(&model.card_name);
            let edits = move_file(&mut cs, card, &to)?;
            (Some((card.clone(), to)), edits)
        }
        (Some(_), Some(Place::Retired)) => {
            notes.push("the card is already in RETIRED/".into());
            (None, Vec::new())
        }
        _ => {
            notes.push(format!(
                "`{id}` has no card ({}); nothing to move",
                model.card_name
            ));
            (None, Vec::new())
        }
    };

    // The manifest's status, only when it can be edited byte-preservingly.
    let manifest_path = ws.manifest_path(id);
    let manifest_rel = manifest_path
        .strip_prefix(&ws.root)
        .map(Path::to_path_buf)
        .unwrap_or_else(|_| manifest_path.clone());
    let manifest = if model.manifest.status == ModelStatus::Retired {
        ManifestChange::AlreadyRetired
    } else {
        match std::fs::read_to_string(&manifest_path) {
            Ok(text) => match set_status_retired(&manifest_path, &text) {
                Ok((new, line)) => {
                    cs.write(&manifest_rel, new);
                    ManifestChange::Set {
                        path: manifest_rel,
                        line,
                    }
                }
                Err(reason) => ManifestChange::Unchanged(format!(
                    "{} left alone: {reason}; set `status: retired` by hand",
                    manifest_rel.display()
                )),
            },
            Err(e) => ManifestChange::Unchanged(format!("{}: {e}", manifest_rel.display())),
        }
    };

    let profile_ids: Vec<&str> = model.profiles.iter().map(|p| p.id.as_str()).collect();
    let bench_client: Vec<String> = bench_client
        .profiles()
        .iter()
        .filter(|p| profile_ids.contains(&p.id.as_str()) || p.get("MODEL_ID") == Some(id))
        .map(|p| p.id.clone())
        .collect();
    Ok(RetirePlan {
        id: id.to_string(),
        name: model.manifest.name.clone(),
        weights,
        profiles: model.profiles.clone(),
        bench_client,
        card_move,
        link_edits,
        tables,
        manifest,
        notes,
        changes: cs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_is_set_in_place_or_inserted_after_id() {
        let p = Path::new("models/old.yaml");
        let base =
            "# comment\nid: old\nname: Old\nfamily: F\ntype: moe\nsize: 1B\nhub:\n  repo: a/b\n";
        let with = base.replace("size: 1B\n", "size: 1B\nstatus: installed   # on disk\n");
        let (out, line) = set_status_retired(p, &with).unwrap();
        assert_eq!(out, with.replace("status: installed", "status: retired"));
        assert_eq!(line, 7);
        let (out, line) = set_status_retired(p, base).unwrap();
        assert_eq!(out, base.replace("id: old\n", "id: old\nstatus: retired\n"));
        assert_eq!(line, 3);
        let flow = "{id: old, name: Old, family: F, type: moe, size: 1B, hub: {repo: a/b}}\n";
        assert!(set_status_retired(p, flow).is_err());
    }
}
