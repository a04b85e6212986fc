//! Phase 1, evaluate: which quant of a repo to take, how to place it on this
//! machine, at what context, and how fast it will decode — from GGUF
//! headers alone (range requests), before a byte of weights is downloaded.
//!
//! * [`quant`]: the repo's quants from file names, shards grouped.
//! * [`strategy`]: placements on GPUs and RAM, the largest context of each
//!   strategy, the production choice.
//! * [`report`]: the markdown a person reads.
//!
//! Only the headers of the quant tried first (and of the one chosen, when
//! that differs) are read: the architecture, KV cache and recurrent state
//! are the same across quants of one model, and weights scale with file
//! size.

pub mod cache_ram;
pub mod decision;
pub mod quant;
pub mod report;
pub mod strategy;

use std::path::PathBuf;

use serde::Serialize;

use crate::gguf::{
    facts_from_shards, read_file, read_header_incremental, FactsError, GgufError, Header,
    ModelFacts,
};
use crate::hub::{HubClient, HubError, RepoFile};
pub use quant::Candidate;
pub use strategy::{Kind, Machine, Placement, StrategyReport};

/// First bytes asked of each file; the reader doubles from there, so the
/// bytes fetched stay under twice the header (shards after the first carry
/// only a few kilobytes of header).
pub const INITIAL_FETCH: u64 = 4096;

#[derive(Debug, thiserror::Error)]
pub enum EvaluateError {
    #[error("listing the files of `{repo}`: {source}")]
    Listing {
        repo: String,
        #[source]
        source: Box<HubError>,
    },
    #[error("`{repo}` has no GGUF weights (only: {files}); check `hub.repo` in the manifest")]
    NoGguf { repo: String, files: String },
    #[error("`{repo}` has no file for quant{s} {wanted}; it has: {available}. Fix `hub.quant`/`hub.alternatives` in the manifest", s = if wanted.contains(',') { "s" } else { "" })]
    QuantNotFound {
        repo: String,
        wanted: String,
        available: String,
    },
    #[error("`{repo}` has no file `{file}` (from `hub.files` in the manifest)")]
    FileNotFound { repo: String, file: String },
    #[error("`{repo}`: shards of {quant} are missing from the listing ({files}); the upload may be incomplete, or name the files in `hub.files`")]
    Incomplete {
        repo: String,
        quant: String,
        files: String,
    },
    #[error("reading the header of `{file}` in `{repo}`: {source}")]
    Range {
        repo: String,
        file: String,
        #[source]
        source: Box<HubError>,
    },
    #[error(transparent)]
    Header(#[from] GgufError),
    #[error(transparent)]
    Facts(#[from] FactsError),
    #[error("{file}: the header has no '{arch}.context_length'; onboard cannot choose a context")]
    NoContext { file: String, arch: String },
    #[error("cannot place `{model}`: {reason}. Set the strategy by hand in the profile step")]
    UnknownLayout { model: String, reason: String },
    #[error("`{repo}` has no vision projector `{wanted}` (available: {available}). Set `hub.mmproj` in the manifest to one of them, or remove it for a text-only profile")]
    ProjectorNotFound {
        repo: String,
        wanted: String,
        available: String,
    },
    #[error("no quant of `{repo}` fits this machine: {reasons}. Add a smaller quant to `hub.alternatives`, or check `hardware:` in onboard.yaml")]
    NothingFits { repo: String, reasons: String },
}

impl EvaluateError {
    /// The Hub's trouble (listing, range reads), which may pass on a retry.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            EvaluateError::Listing { .. } | EvaluateError::Range { .. }
        )
    }
}

/// What to evaluate.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub repo: String,
    pub revision: String,
    /// Preferred quant, then alternatives, in order.
    pub quant: Option<String>,
    pub alternatives: Vec<String>,
    /// Exact files (overrides the quants).
    pub files: Vec<String>,
    /// The vision projector to add (`F16`, a file name); `None`: text only.
    pub mmproj: Option<String>,
    /// A directory whose files, when present with the listed size, are read
    /// instead of the Hub's (weights already downloaded).
    pub local_dir: Option<PathBuf>,
}

/// Where headers come from: the Hub (range requests), or local copies.
pub trait HeaderSource {
    fn list(&self, repo: &str, revision: &str) -> Result<Vec<RepoFile>, EvaluateError>;
    /// Headers of `files` (repo paths with listed sizes), and the bytes fetched.
    fn headers(
        &self,
        repo: &str,
        revision: &str,
        files: &[(String, u64)],
    ) -> Result<(Vec<Header>, u64), EvaluateError>;
}

/// The Hub through [`HubClient`] (honours `HF_ENDPOINT`, `HF_TOKEN`), with
/// local copies preferred.
pub struct HubSource<'a> {
    pub client: &'a HubClient,
    pub local_dir: Option<PathBuf>,
}

impl HeaderSource for HubSource<'_> {
    fn list(&self, repo: &str, revision: &str) -> Result<Vec<RepoFile>, EvaluateError> {
        self.client
            .list_files(repo, revision)
            .map_err(|source| EvaluateError::Listing {
                repo: repo.to_string(),
                source: Box::new(source),
            })
    }

    fn headers(
        &self,
        repo: &str,
        revision: &str,
        files: &[(String, u64)],
    ) -> Result<(Vec<Header>, u64), EvaluateError> {
        let mut out = Vec::new();
        let mut fetched = 0;
        for (file, size) in files {
            if let Some(local) = self.local_copy(file, *size) {
                out.push(read_file(&local)?);
                continue;
            }
            let source = format!("hf://{repo}/{file}");
            let mut failure = None;
            let result =
                read_header_incremental(&source, INITIAL_FETCH, Some(*size), |start, end| {
                    self.client
                        .read_range(repo, revision, file, start, end - start)
                        .map_err(|e| {
                            let msg = e.to_string();
                            failure = Some(e);
                            std::io::Error::other(msg)
                        })
                });
            match (result, failure) {
                (Ok((h, n)), _) => {
                    fetched += n;
                    out.push(h);
                }
                (Err(_), Some(source)) => {
                    return Err(EvaluateError::Range {
                        repo: repo.to_string(),
                        file: file.clone(),
                        source: Box::new(source),
                    })
                }
                (Err(e), None) => return Err(e.into()),
            }
        }
        Ok((out, fetched))
    }
}

impl HubSource<'_> {
    fn local_copy(&self, file: &str, size: u64) -> Option<PathBuf> {
        let dir = self.local_dir.as_ref()?;
        let base = file.rsplit('/').next()?;
        let p = dir.join(base);
        let meta = std::fs::metadata(&p).ok()?;
        (meta.len() == size).then_some(p)
    }
}

/// What one quant came to.
#[derive(Debug, Clone, Serialize)]
pub struct QuantEval {
    pub candidate: Candidate,
    /// The quant whose header the sizes were scaled from (`None`: its own).
    pub scaled_from: Option<String>,
    pub strategies: StrategyReport,
    /// `None` for the chosen quant.
    pub rejected: Option<String>,
}

impl QuantEval {
    fn context(&self) -> Option<u64> {
        self.strategies.chosen.as_ref().map(|(_, p)| p.n_ctx)
    }
}

/// The outcome of evaluate.
#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    pub repo: String,
    pub revision: String,
    pub machine: Machine,
    pub facts: ModelFacts,
    /// Parameters read per token (dense: all).
    pub active_params: u64,
    pub trained_context: u64,
    /// The GGUF's `general.sampling.*`, keyed without the prefix.
    pub sampling: serde_json::Map<String, serde_json::Value>,
    /// In the order tried; the chosen one has `rejected: None`.
    pub quants: Vec<QuantEval>,
    pub chosen: usize,
    /// Quants in the repo the manifest did not ask for.
    pub other_quants: Vec<Candidate>,
    /// Quants the manifest asked for that the repo lacks.
    pub missing_quants: Vec<String>,
    /// Header bytes fetched over the network.
    pub bytes_fetched: u64,
    /// The repo's vision projectors.
    pub projectors: Vec<quant::Projector>,
    /// The one the manifest asked for, counted on the device llama.cpp
    /// loads it on.
    pub projector: Option<quant::Projector>,
}

impl Evaluation {
    /// What the manifest's `type:` (`moe` or `dense`) gets wrong about the
    /// header, if anything.
    pub fn type_mismatch(&self, declared: &str) -> Option<String> {
        let moe = self.is_moe();
        (declared.eq_ignore_ascii_case("moe") != moe).then(|| {
            format!(
                "the manifest says `type: {declared}` but the header says {}",
                if moe { "MoE (routed experts)" } else { "dense" }
            )
        })
    }
}

impl Evaluation {
    pub fn chosen(&self) -> &QuantEval {
        &self.quants[self.chosen]
    }

    /// The production strategy and placement of the chosen quant.
    pub fn production(&self) -> Option<&(Kind, Placement)> {
        self.chosen().strategies.chosen.as_ref()
    }

    pub fn is_moe(&self) -> bool {
        self.facts.is_moe()
    }

    pub fn recurrent(&self) -> bool {
        !self.facts.recurrent_layers().is_empty()
    }

    /// Tokens a round the production profile drafts with the model's MTP
    /// block (0: none): where the file carries the block and llama.cpp runs
    /// it for this architecture.
    pub fn mtp_draft(&self) -> u32 {
        mtp_draft(&self.facts)
    }

    /// The production profile's prompt cache, sized for its context and the
    /// host RAM its placement leaves free beyond the headroom the host keeps.
    pub fn cache_ram(&self) -> Option<cache_ram::CacheRam> {
        let (_, p) = self.production()?;
        let keep = i64::try_from(self.machine.min_host_headroom).unwrap_or(i64::MAX);
        cache_ram::size(&self.facts, p.n_ctx, p.host.headroom.saturating_sub(keep))
    }
}

/// Architectures whose MTP block the llama.cpp onboard pins runs as a
/// drafter (`--spec-type draft-mtp`; its `graph_mtp` for each), among those
/// onboard's memory model knows.
pub const MTP_DRAFT_ARCHITECTURES: &[&str] = &["qwen35", "qwen35moe", "qwen3next"];

/// llama-server's default draft length (`--spec-draft-n-max`): also the
/// recurrent-state snapshots it keeps for rolling a rejected draft back.
pub const MTP_DRAFT_TOKENS: u32 = 3;

/// See [`Evaluation::mtp_draft`].
pub fn mtp_draft(facts: &ModelFacts) -> u32 {
    if facts.mtp_layers > 0 && MTP_DRAFT_ARCHITECTURES.contains(&facts.architecture.as_str()) {
        MTP_DRAFT_TOKENS
    } else {
        0
    }
}

/// The candidates in the order the manifest prefers, the repo's others,
/// and the quants asked for but absent.
type Ordered = (Vec<Candidate>, Vec<Candidate>, Vec<String>);

fn order(req: &Request, listing: &[RepoFile]) -> Result<Ordered, EvaluateError> {
    let all = quant::candidates(listing);
    if all.is_empty() {
        let files: Vec<&str> = listing.iter().map(|f| f.path.as_str()).take(8).collect();
        return Err(EvaluateError::NoGguf {
            repo: req.repo.clone(),
            files: if files.is_empty() {
                "nothing".into()
            } else {
                files.join(", ")
            },
        });
    }
    if !req.files.is_empty() {
        let c =
            quant::from_files(listing, &req.files).map_err(|file| EvaluateError::FileNotFound {
                repo: req.repo.clone(),
                file,
            })?;
        let others = all.into_iter().filter(|o| o.files != c.files).collect();
        return Ok((vec![c], others, Vec::new()));
    }
    let wanted: Vec<String> = req
        .quant
        .iter()
        .chain(req.alternatives.iter())
        .cloned()
        .collect();
    if wanted.is_empty() {
        // No preference: the largest quant that fits is the best one.
        return Ok((all, Vec::new(), Vec::new()));
    }
    let mut ordered: Vec<Candidate> = Vec::new();
    let mut missing = Vec::new();
    for q in &wanted {
        match quant::find(&all, q) {
            Some(c) if !ordered.iter().any(|o| o.files == c.files) => ordered.push(c.clone()),
            Some(_) => {}
            None => missing.push(q.clone()),
        }
    }
    if ordered.is_empty() {
        return Err(EvaluateError::QuantNotFound {
            repo: req.repo.clone(),
            wanted: wanted.join(", "),
            available: all
                .iter()
                .map(|c| c.quant.clone())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    let others = all
        .into_iter()
        .filter(|c| !ordered.iter().any(|o| o.files == c.files))
        .collect();
    Ok((ordered, others, missing))
}

fn sized(c: &Candidate) -> Vec<(String, u64)> {
    c.files
        .iter()
        .cloned()
        .zip(c.sizes.iter().copied())
        .collect()
}

/// Parameters read per token: all but the unused share of routed experts.
pub fn active_params(headers: &[Header], facts: &ModelFacts) -> u64 {
    let (mut dense, mut experts) = (0u128, 0u128);
    for t in headers.iter().flat_map(|h| &h.tensors) {
        let n = u128::from(t.n_elements().unwrap_or(0));
        if crate::gguf::facts::is_expert_tensor(&t.name) {
            experts += n;
        } else {
            dense += n;
        }
    }
    let used = match &facts.experts {
        Some(e) if e.total > 0 && e.used <= e.total => {
            experts * u128::from(e.used) / u128::from(e.total)
        }
        _ => experts,
    };
    u64::try_from(dense + used).unwrap_or(u64::MAX)
}

/// `general.sampling.*` keys without the prefix.
pub fn sampling(header: &Header) -> serde_json::Map<String, serde_json::Value> {
    let mut out = serde_json::Map::new();
    for (k, v) in &header.metadata {
        if let Some(key) = k.strip_prefix("general.sampling.") {
            let json = if let Some(x) = v.as_u64() {
                serde_json::Value::from(x)
            } else if let Some(x) = v.as_f64() {
                // f32 values: round away the binary noise (0.95 not 0.949999988).
                serde_json::Value::from((x * 1e6).round() / 1e6)
            } else if let Some(s) = v.as_str() {
                serde_json::Value::from(s)
            } else {
                continue;
            };
            out.insert(key.to_string(), json);
        }
    }
    out
}

fn evaluate_one(
    facts: &ModelFacts,
    from: &Candidate,
    c: &Candidate,
    machine: &Machine,
    trained: u64,
) -> Result<QuantEval, String> {
    let own = c.files == from.files;
    let scale = if own || from.total_size() == 0 {
        1.0
    } else {
        c.total_size() as f64 / from.total_size() as f64
    };
    let layout = strategy::Layout::new(facts, scale)?;
    Ok(QuantEval {
        candidate: c.clone(),
        scaled_from: (!own).then(|| from.quant.clone()),
        strategies: strategy::evaluate(&layout, machine, trained),
        rejected: None,
    })
}

/// Evaluates a repo's quants on a machine and picks one.
pub fn evaluate(
    source: &dyn HeaderSource,
    req: &Request,
    machine: &Machine,
) -> Result<Evaluation, EvaluateError> {
    let listing = source.list(&req.repo, &req.revision)?;
    let (ordered, other_quants, missing_quants) = order(req, &listing)?;
    let projectors = quant::projectors(&listing);
    let projector = match &req.mmproj {
        None => None,
        Some(wanted) => Some(
            quant::find_projector(&projectors, wanted)
                .cloned()
                .ok_or_else(|| EvaluateError::ProjectorNotFound {
                    repo: req.repo.clone(),
                    wanted: wanted.clone(),
                    available: if projectors.is_empty() {
                        "none".into()
                    } else {
                        projectors
                            .iter()
                            .map(|p| p.kind.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    },
                })?,
        ),
    };
    // The placement sees the machine less the projector, where it goes.
    let with_projector;
    let machine = match &projector {
        Some(p) => {
            with_projector = machine.reserving(p.size);
            &with_projector
        }
        None => machine,
    };
    for c in &ordered {
        if !c.complete {
            return Err(EvaluateError::Incomplete {
                repo: req.repo.clone(),
                quant: c.quant.clone(),
                files: c.files.join(", "),
            });
        }
    }
    let first = &ordered[0];
    let (mut headers, mut fetched) = source.headers(&req.repo, &req.revision, &sized(first))?;
    let mut facts = facts_from_shards(&headers)?;
    let trained = facts
        .context_length
        .ok_or_else(|| EvaluateError::NoContext {
            file: headers[0].source.clone(),
            arch: facts.architecture.clone(),
        })?;
    let unknown = |reason: String| EvaluateError::UnknownLayout {
        model: req.repo.clone(),
        reason,
    };
    let mut quants = ordered
        .iter()
        .map(|c| evaluate_one(&facts, first, c, machine, trained))
        .collect::<Result<Vec<_>, _>>()
        .map_err(unknown)?;
    let pick = |quants: &[QuantEval]| -> Option<usize> {
        if let Some(i) = quants.iter().position(|q| q.context() == Some(trained)) {
            return Some(i);
        }
        // The largest context; the earlier (preferred) one on a tie.
        let mut best: Option<(usize, u64)> = None;
        for (i, q) in quants.iter().enumerate() {
            if let Some(c) = q.context() {
                if best.is_none_or(|(_, b)| c > b) {
                    best = Some((i, c));
                }
            }
        }
        best.map(|(i, _)| i)
    };
    let Some(mut chosen) = pick(&quants) else {
        let reasons = quants
            .iter()
            .map(|q| format!("{}: {}", q.candidate.quant, headroom_reason(q, machine)))
            .collect::<Vec<_>>()
            .join("; ");
        return Err(EvaluateError::NothingFits {
            repo: req.repo.clone(),
            reasons,
        });
    };
    if chosen != 0 {
        // Exact figures for the chosen quant from its own header.
        let c = &ordered[chosen];
        let (h, n) = source.headers(&req.repo, &req.revision, &sized(c))?;
        fetched += n;
        headers = h;
        facts = facts_from_shards(&headers)?;
        quants = ordered
            .iter()
            .map(|q| evaluate_one(&facts, c, q, machine, trained))
            .collect::<Result<Vec<_>, _>>()
            .map_err(unknown)?;
        chosen = pick(&quants).unwrap_or(chosen);
    }
    let reasons: Vec<Option<String>> = (0..quants.len())
        .map(|i| (i != chosen).then(|| rejection(&quants[i], &quants[chosen], machine, trained)))
        .collect();
    for (q, r) in quants.iter_mut().zip(reasons) {
        q.rejected = r;
    }
    Ok(Evaluation {
        repo: req.repo.clone(),
        revision: req.revision.clone(),
        machine: machine.clone(),
        active_params: active_params(&headers, &facts),
        sampling: sampling(&headers[0]),
        facts,
        trained_context: trained,
        quants,
        chosen,
        other_quants,
        missing_quants,
        bytes_fetched: fetched,
        projectors,
        projector,
    })
}

/// GiB with one decimal (MiB below 1 GiB, where 0.1 GiB would hide it).
pub fn gib(bytes: u64) -> String {
    gib_signed(i64::try_from(bytes).unwrap_or(i64::MAX))
}

/// [`gib`] of a signed headroom.
pub fn gib_signed(bytes: i64) -> String {
    let b = bytes as f64;
    if bytes != 0 && bytes.unsigned_abs() < 1 << 30 {
        format!("{:.1} MiB", b / (1u64 << 20) as f64)
    } else {
        format!("{:.1} GiB", b / (1u64 << 30) as f64)
    }
}

/// Decimal GB, as the Hub writes file sizes.
pub fn gb(bytes: u64) -> String {
    format!("{:.1} GB", bytes as f64 / 1e9)
}

/// Why a quant does not give the trained context: the RAM it leaves.
fn headroom_reason(q: &QuantEval, machine: &Machine) -> String {
    let p = &q.strategies.at_trained;
    let ctx = p.n_ctx;
    let what = if p.experts_on_host > 0 && p.layers_on_host == 0 {
        format!("{} of experts in RAM", gib(p.experts_on_host))
    } else if p.layers_on_host > 0 {
        format!(
            "{} of {} layers in RAM",
            p.layers_on_host,
            q.strategies
                .at_trained
                .gpus
                .iter()
                .map(|g| g.layers.len())
                .sum::<usize>()
                + p.layers_on_host as usize
        )
    } else {
        "everything on the GPUs".to_string()
    };
    let mut s = format!(
        "{} ({}) at {ctx} tokens: with fit + CPU offload ({what}) the host holds {} of its {} usable ({} RAM − {} for the OS), leaving {} — below the {} minimum: too little headroom, risk of OOM or a forced context reduction",
        q.candidate.quant,
        gb(q.candidate.total_size()),
        gib(p.host.total),
        gib(machine.host_budget()),
        gib(machine.ram_bytes),
        gib(machine.os_reserve_bytes),
        gib_signed(p.host.headroom),
        gib(machine.min_host_headroom),
    );
    match q.context() {
        Some(c) => s.push_str(&format!("; it would need the context cut to {c} tokens")),
        None => s.push_str("; it does not fit at any context"),
    }
    s
}

fn speed(p: &Placement) -> String {
    match p.tokens_per_second(false) {
        Some(t) => format!("≤ {t:.0} t/s"),
        None => "speed unknown (no bandwidth figures)".into(),
    }
}

/// The reason a quant was not chosen, in words with its numbers.
fn rejection(q: &QuantEval, chosen: &QuantEval, machine: &Machine, trained: u64) -> String {
    if q.context() != Some(trained) {
        return headroom_reason(q, machine);
    }
    let moe = q.strategies.at_trained.gpus.iter().any(|g| g.experts > 0)
        || q.strategies.at_trained.host.experts > 0;
    let Some((kind, p)) = &q.strategies.chosen else {
        return "does not fit".into();
    };
    let mut s = format!(
        "fits at {trained} tokens with {} ({}), but {} comes first in the manifest's order",
        kind.describe(moe, p.gpus_used()),
        speed(p),
        chosen.candidate.quant
    );
    if let Some((ck, cp)) = &chosen.strategies.chosen {
        if *kind == Kind::FitOffload && *ck != Kind::FitOffload {
            s = format!(
                "at {trained} tokens it needs CPU offload ({} of weights in RAM): {} against {} for {} with {}; {} comes first in the manifest's order",
                gib(p.host.weights),
                speed(p),
                speed(cp),
                chosen.candidate.quant,
                ck.describe(moe, cp.gpus_used()),
                chosen.candidate.quant,
            );
        }
    }
    s
}
