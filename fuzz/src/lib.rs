//! The checks behind onboard's fuzz targets.
//!
//! The main crate's `tests/fuzz_corpus.rs` includes this file by path, so
//! the corpus replay on stable runs exactly what the fuzzer ran: one place
//! decides which library calls a target makes and which invariants it
//! asserts. Every check takes the raw input, must not panic on any input,
//! and panics (the fuzzer's "crash") only when the library breaks a promise.
//!
//! Only `onboard`, `serde_json` and std are used here: the replay test
//! builds this file without libFuzzer.

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use onboard::evaluate::strategy::{self, Machine};
use onboard::evaluate::{self, report, EvaluateError, HeaderSource, Request};
use onboard::gguf::memory::{
    self, DeviceBudget, Goal, HostBudget, PlacementOptions, RunConfig, DEFAULT_FIT_MARGIN, GIB,
};
use onboard::gguf::reader::{read_header_bytes, read_header_incremental, GgufError, Header};
use onboard::gguf::writer::{GgufWriter, TensorSpec};
use onboard::gguf::{facts_from_shards, Fact, GgmlType, ModelFacts};
use onboard::hub::RepoFile;
use onboard::source::Diagnostic;
use onboard::source::Document;
use onboard::tasks::Registry;
use onboard::workflow::graph::{to_dot, to_mermaid, Dag};
use onboard::workflow::spec::Workflow;
use onboard::workflow::validate::{check_workflow, TemplateRoots};
use onboard::workspace::config::{Gpu, Hardware};
use onboard::workspace::models_conf::ModelsConf;
use onboard::workspace::{
    check_config, check_manifest, resolve_inside, template_roots, valid_model_id, Manifest,
    Workspace, WorkspaceConfig,
};

/// Runs a closure and reports the peak heap bytes it allocated above the
/// starting point; `None` where the caller cannot measure (the stable
/// replay test shares its allocator with other threads).
pub type PeakMeter = fn(&mut dyn FnMut()) -> Option<usize>;

/// A meter that measures nothing.
pub fn no_meter(f: &mut dyn FnMut()) -> Option<usize> {
    f();
    None
}

/// What reading a header may allocate regardless of its input: the 256 KiB
/// read buffer, one 64 KiB string chunk, and slack (tests/gguf_alloc.rs
/// holds the reader to the same bound).
pub const ALLOC_FIXED: usize = 512 * 1024;
/// Per input byte: typed vectors, strings and tensor infos grow with the
/// bytes really read, never with a claimed length.
pub const ALLOC_PER_BYTE: usize = 16;

// ---------------------------------------------------------------------------
// gguf_header

/// Bytes → GGUF header reader (whole and incremental), writer round trip,
/// then facts, the memory model and the whole `evaluate` phase on whatever
/// parses. Shards: when the header says `split.count`, the next shard's
/// header is read from the bytes after this one's data offset.
pub fn gguf_header(data: &[u8], peak: PeakMeter) {
    let mut parsed = None;
    let used = peak(&mut || parsed = Some(read_header_bytes(data, "fuzz.gguf")));
    let Some(parsed) = parsed else {
        panic!("the meter did not run the read");
    };
    if let Some(bytes) = used {
        assert!(
            bytes < ALLOC_FIXED + ALLOC_PER_BYTE * data.len(),
            "reading a {}-byte input allocated {bytes} bytes at peak",
            data.len()
        );
    }
    incremental_agrees(data, &parsed);
    let header = match parsed {
        Ok(h) => h,
        Err(e) => {
            let _ = e.to_string();
            if let GgufError::UnexpectedEof { needed, .. } = e {
                assert!(
                    needed > data.len() as u64,
                    "an incomplete header must need more than the {} bytes it had, not {needed}",
                    data.len()
                );
            }
            return;
        }
    };
    header_invariants(data, &header);
    writer_round_trip(&header);

    let headers = shards(data, header);
    let _ = serde_json::to_string(&headers[0]);
    match facts_from_shards(&headers) {
        Ok(f) => {
            facts_invariants(&f, &headers);
            memory_model(&f);
            evaluate_phase(data, &headers);
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

/// The range-fetching reader must agree with the whole-buffer reader, and
/// fetch less than twice the header (or the first request) doing so.
fn incremental_agrees(data: &[u8], whole: &Result<Header, GgufError>) {
    let initial = (data.len() / 3) as u64;
    let mut have = 0u64;
    let inc = read_header_incremental("fuzz.gguf", initial, Some(data.len() as u64), |s, e| {
        assert_eq!(s, have, "fetches must continue where the last one ended");
        assert!(s < e, "empty or backwards fetch {s}..{e}");
        let end = usize::try_from(e).map_or(data.len(), |e| e.min(data.len()));
        let start = usize::try_from(s).map_or(data.len(), |s| s.min(end));
        have += (end - start) as u64;
        Ok(data[start..end].to_vec())
    });
    match (whole, &inc) {
        (Ok(a), Ok((b, fetched))) => {
            assert_eq!(
                format!("{a:?}"),
                format!("{b:?}"),
                "incremental header differs"
            );
            assert!(*fetched <= data.len() as u64);
            let first = initial.max(64);
            assert!(
                *fetched <= first.max(2 * a.header_len),
                "fetched {fetched} bytes for a {}-byte header (first request {first})",
                a.header_len
            );
        }
        (Err(_), Err(_)) => {}
        (a, b) => panic!(
            "whole and incremental readers disagree: {:?} vs {:?}",
            a.as_ref().map(|h| h.header_len),
            b.as_ref().map(|(h, _)| h.header_len)
        ),
    }
}

fn header_invariants(data: &[u8], h: &Header) {
    assert!(h.header_len <= data.len() as u64);
    assert!(h.alignment.is_power_of_two());
    assert!(h.data_offset >= h.header_len);
    assert!(h.data_offset.is_multiple_of(h.alignment));
    for t in &h.tensors {
        assert!(t.dims.len() <= 4, "{t:?}");
        assert!(t.n_elements().is_some(), "{t:?}");
        let _ = t.n_bytes();
    }
    for (i, (k, _)) in h.metadata.iter().enumerate() {
        assert!(
            h.metadata[..i].iter().all(|(other, _)| other != k),
            "duplicate key '{k}' accepted"
        );
    }
    let (end, _) = h.data_end();
    assert!(end >= h.data_offset);
    match h.check_file_len(data.len() as u64) {
        Ok(()) => assert!(end <= data.len() as u64),
        Err(GgufError::Truncated {
            needed,
            actual,
            missing,
            ..
        }) => {
            assert!(needed > actual);
            assert_eq!(missing, needed - actual);
        }
        Err(e) => panic!("check_file_len gave {e}"),
    }
}

/// What the reader read, the writer writes back to the same header. The
/// writer pads the header in memory, so an absurd alignment is skipped;
/// tensors are written with no data so their offsets cannot overflow.
fn writer_round_trip(h: &Header) {
    if h.alignment > 1 << 16 {
        return;
    }
    let mut w = GgufWriter::new();
    w.version = h.version;
    w.metadata = h.metadata.clone();
    w.tensors = h
        .tensors
        .iter()
        .map(|t| TensorSpec {
            bytes: Some(0),
            ..TensorSpec::new(t.name.clone(), &t.dims, t.ty)
        })
        .collect();
    let bytes = w.header_bytes();
    let back = match read_header_bytes(&bytes, "round-trip.gguf") {
        Ok(b) => b,
        Err(e) => panic!("the writer's output does not read back: {e}"),
    };
    // Debug, not PartialEq: a NaN metadata value is still the same value.
    assert_eq!(format!("{:?}", back.metadata), format!("{:?}", h.metadata));
    assert_eq!(back.tensors.len(), h.tensors.len());
    for (a, b) in back.tensors.iter().zip(&h.tensors) {
        assert_eq!((&a.name, &a.dims, a.ty), (&b.name, &b.dims, b.ty));
    }
}

/// The header and, for a split model, the shards that follow it in the
/// input (each header starts at the previous one's data offset).
fn shards(data: &[u8], first: Header) -> Vec<Header> {
    let count = first.get_u64("split.count").unwrap_or(1).clamp(1, 4);
    let name = |n: u64| format!("fuzz-{n:05}-of-{count:05}.gguf");
    let mut at = first.data_offset;
    let mut headers = vec![first];
    if count > 1 {
        headers[0].source = name(1);
    }
    while (headers.len() as u64) < count {
        let Some(rest) = usize::try_from(at).ok().and_then(|a| data.get(a..)) else {
            break;
        };
        match read_header_bytes(rest, &name(headers.len() as u64 + 1)) {
            Ok(h) if h.data_offset > 0 => {
                at = at.saturating_add(h.data_offset);
                headers.push(h);
            }
            _ => break,
        }
    }
    headers
}

fn facts_invariants(f: &ModelFacts, headers: &[Header]) {
    let n = f.block_count as usize;
    assert_eq!(f.head_count_kv.len(), n);
    assert_eq!(f.sliding_window_layers.len(), n);
    if let Fact::Known { value } = &f.layers {
        assert_eq!(value.len(), n);
    }
    let tensors: usize = headers.iter().map(|h| h.tensors.len()).sum();
    assert_eq!(f.tensors.len(), tensors);
    for il in 0..f.block_count.min(4) {
        let (all, experts) = f.layer_bytes(il);
        assert!(experts <= all);
    }
    let _ = f.attention_layers();
    let _ = f.recurrent_layers();
    let _ = f.is_moe();
    let _ = serde_json::to_string(f);
}

/// The memory model at a few run configurations, on two GPUs.
fn memory_model(f: &ModelFacts) {
    let trained = f.context_length.unwrap_or(4096);
    let quantised = RunConfig {
        n_seq: 4,
        n_ubatch: 2048,
        n_outputs: 4,
        flash_attn: false,
        swa_full: true,
        ..RunConfig::server(131_072).with_cache_type(GgmlType::Q8_0)
    };
    let devices = [
        DeviceBudget {
            name: "GPU 0".into(),
            bytes: 24 * GIB,
        },
        DeviceBudget {
            name: "GPU 1".into(),
            bytes: 12 * GIB,
        },
    ];
    let host = HostBudget {
        ram_bytes: 64 * GIB,
        os_reserve_bytes: 8 * GIB,
    };
    for cfg in [
        RunConfig::server(4096),
        RunConfig::server(trained),
        quantised,
    ] {
        let _ = memory::kv_cache_bytes_for(f, &cfg);
        let _ = memory::compute_buffer_bytes(f, &cfg);
        for experts_on_host in [false, true] {
            let opt = PlacementOptions {
                experts_on_host,
                ..PlacementOptions::new(cfg)
            };
            if let Fact::Known { value: p } = memory::place(f, &devices, host, &opt) {
                assert_eq!(p.devices.len(), devices.len());
                assert!(p.gpu_layers <= p.block_count);
                let on_devices: usize = p.devices.iter().map(|d| d.layers.len()).sum();
                assert_eq!(on_devices + p.host.layers.len(), f.block_count as usize);
            }
        }
    }
    let _ = memory::kv_cache_bytes(f, 4096, GgmlType::F16, GgmlType::F16);
    let _ = memory::kv_bytes_per_token(f, GgmlType::Q8_0, GgmlType::Q4_0);
    let _ = memory::recurrent_state_bytes(f, 4);
    let opt = PlacementOptions::new(RunConfig::server(4096));
    for goal in [Goal::AllOnGpu, Goal::Fits] {
        if let Fact::Known { value: Some(ctx) } =
            memory::largest_context(f, &devices, host, &opt, goal, trained)
        {
            assert!(ctx <= trained && ctx.is_multiple_of(memory::CTX_STEP));
        }
    }
}

/// Headers served as if from the Hub: one quant whose files are the input's
/// shards, and a second quant twice its size (sizes scaled from the first).
struct FuzzSource<'a> {
    headers: &'a [Header],
    listing: Vec<RepoFile>,
}

impl HeaderSource for FuzzSource<'_> {
    fn list(&self, _repo: &str, _revision: &str) -> Result<Vec<RepoFile>, EvaluateError> {
        Ok(self.listing.clone())
    }

    fn headers(
        &self,
        _repo: &str,
        _revision: &str,
        files: &[(String, u64)],
    ) -> Result<(Vec<Header>, u64), EvaluateError> {
        let mut out = self.headers.to_vec();
        out.truncate(files.len());
        let fetched = out.iter().map(|h| h.header_len).sum();
        Ok((out, fetched))
    }
}

/// `onboard evaluate` on the input's headers, then its markdown report. A
/// machine with two GPUs or none, chosen by the input's length.
fn evaluate_phase(data: &[u8], headers: &[Header]) {
    let n = headers.len();
    let file = |quant: &str, i: usize, size: u64| RepoFile {
        path: if n > 1 {
            format!("{quant}/Fuzz-{quant}-{:05}-of-{n:05}.gguf", i + 1)
        } else {
            format!("Fuzz-{quant}.gguf")
        },
        size,
        sha256: None,
        blob_id: String::new(),
    };
    let size = (data.len() as u64).max(1) << 20;
    let mut listing: Vec<RepoFile> = (0..n).map(|i| file("Q4_K_M", i, size)).collect();
    listing.extend((0..n).map(|i| file("Q8_0", i, 2 * size)));
    let source = FuzzSource { headers, listing };
    let gpus = if data.len().is_multiple_of(2) {
        vec![
            Gpu {
                name: "GPU 0".into(),
                vram_gib: 24.0,
                bandwidth_gbs: Some(936.0),
            },
            Gpu {
                name: "GPU 1".into(),
                vram_gib: 12.0,
                bandwidth_gbs: Some(360.0),
            },
        ]
    } else {
        Vec::new()
    };
    let hw = Hardware {
        gpus,
        ram_gib: Some(64.0),
        os_reserve_gib: Some(8.0),
        cpu_bandwidth_gbs: Some(60.0),
    };
    let Ok(machine) = Machine::from_hardware(&hw, DEFAULT_FIT_MARGIN) else {
        panic!("a machine with RAM must be accepted");
    };
    let req = Request {
        repo: "fuzz/Fuzz-GGUF".into(),
        revision: "main".into(),
        quant: Some("Q8_0".into()),
        alternatives: vec!["Q4_K_M".into()],
        ..Request::default()
    };
    match evaluate::evaluate(&source, &req, &machine) {
        Ok(e) => {
            assert!(e.chosen < e.quants.len());
            let _ = report::markdown(&e, "fuzz");
            if let Some((_, p)) = e.production() {
                let _ = report::speed_range(p);
                let _ = report::memory_table(
                    p,
                    machine.fit_margin,
                    machine.os_reserve_bytes,
                    machine.min_host_headroom,
                );
                let _ = p.tensor_split();
                assert!(p.n_ctx <= e.trained_context);
            }
            let _ = serde_json::to_string(&e);
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    if let Ok(f) = facts_from_shards(headers) {
        if let Ok(layout) = strategy::Layout::new(&f, 0.37) {
            let _ = layout.total_weights();
            let _ = strategy::place_fit(&layout, &machine, 4096);
            let _ = strategy::place_all_gpu(&layout, &machine, 4096);
        }
        let _ = evaluate::active_params(headers, &f);
    }
    let _ = evaluate::sampling(&headers[0]);
}

// ---------------------------------------------------------------------------
// workflow

thread_local! {
    static REGISTRY: Registry = Registry::builtin();
    static ROOTS: RefCell<Option<TemplateRoots>> = const { RefCell::new(None) };
}

fn with_roots<T>(f: impl FnOnce(&TemplateRoots) -> T) -> T {
    ROOTS.with(|r| {
        f(r.borrow_mut()
            .get_or_insert_with(|| template_roots().into()))
    })
}

/// Every finding renders (as `onboard validate` prints it) and serialises
/// (as `--format json` does).
fn render_all(diags: &[Diagnostic], source: &str) {
    for d in diags {
        assert!(d.line >= 1 && d.col >= 1, "{d:?}");
        let _ = d.render(Some(source));
        let _ = d.render(None);
    }
    let _ = serde_json::to_string(diags);
}

/// UTF-8 → the spanned YAML parser, schema check and semantic validation
/// of a workflow, as `onboard validate` does; then what `plan`/`run` do
/// with a workflow that validated: its DAG, order and retry delays.
pub fn workflow(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let doc = match Document::parse(Path::new("workflows/fuzz.yaml"), text.to_string()) {
        Ok(doc) => doc,
        Err(d) => {
            render_all(&[d], text);
            return;
        }
    };
    let (checked, diags) =
        REGISTRY.with(|registry| with_roots(|roots| check_workflow(&doc, registry, roots)));
    render_all(&diags, text);
    assert_eq!(
        checked.is_some(),
        diags.is_empty(),
        "a workflow is runnable exactly when validation found nothing"
    );
    if let Some(w) = checked {
        validated_workflow(&w);
    }
}

fn validated_workflow(w: &Workflow) {
    let dag = Dag::new(w);
    let order = dag.order();
    assert_eq!(
        order.len(),
        w.steps.len(),
        "a validated workflow has a cycle"
    );
    let at = |id: &str| order.iter().position(|o| o == id);
    for s in &w.steps {
        for need in &s.needs {
            assert!(at(need) < at(&s.id), "`{need}` ordered after `{}`", s.id);
        }
        assert!(!dag.ancestors(&s.id).contains(&s.id));
        let _ = dag.descendants(&s.id);
        for attempt in 2..=s.retry.attempts.min(8) {
            let _ = s.retry.delay_before(attempt);
        }
        let _ = s.retry.delay_before(s.retry.attempts);
    }
    let _ = to_dot(w);
    let _ = to_mermaid(w);
}

// ---------------------------------------------------------------------------
// manifest

/// UTF-8 → a model manifest and `onboard.yaml`, each parsed, schema-checked
/// and checked as `validate` does; what checks clean serialises back to
/// itself (templates read it as JSON).
pub fn manifest(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The manifest's id must match its file name: name the file after it.
    let id = onboard::source::yaml::parse(text)
        .ok()
        .and_then(|root| root.get("id").and_then(|n| n.as_str().map(str::to_string)))
        .filter(|id| valid_model_id(id).is_ok())
        .unwrap_or_else(|| "fuzz".into());
    let path = PathBuf::from(format!("models/{id}.yaml"));
    let doc = match Document::parse(&path, text.to_string()) {
        Ok(doc) => doc,
        Err(d) => {
            render_all(&[d], text);
            return;
        }
    };

    let (m, diags) = check_manifest(&doc);
    render_all(&diags, text);
    assert_eq!(m.is_some(), diags.is_empty());
    if let Some(m) = m {
        let json = serde_json::to_value(&m).unwrap_or_default();
        let back: Result<Manifest, _> = serde_json::from_value(json);
        assert_eq!(back.ok().as_ref(), Some(&m), "manifest JSON round trip");
        let ws = Workspace {
            root: PathBuf::from("/fuzz"),
            config: WorkspaceConfig::default(),
        };
        let _ = ws.template_context(&m.id, &m);
        let _ = ws.manifest_path(&m.id);
    }

    let (c, diags) = check_config(&doc);
    render_all(&diags, text);
    assert_eq!(c.is_some(), diags.is_empty());
    if let Some(c) = c {
        let json = serde_json::to_value(&c).unwrap_or_default();
        let back: Result<WorkspaceConfig, _> = serde_json::from_value(json);
        assert_eq!(back.ok().as_ref(), Some(&c), "onboard.yaml JSON round trip");
        for p in [&c.paths.models, &c.paths.workflows, &c.paths.state] {
            assert!(resolve_inside(Path::new("/fuzz"), p).is_ok());
        }
        if let Ok(machine) = Machine::from_hardware(&c.hardware, DEFAULT_FIT_MARGIN) {
            let _ = machine.host_budget();
        }
    }
}

// ---------------------------------------------------------------------------
// models_conf

/// The edit a models.conf input asks for: the text up to the first NUL is
/// the file; NUL-separated fields after it are the profile id, key, value
/// and comment the edits use.
pub struct ConfInput<'a> {
    pub text: &'a str,
    pub id: &'a str,
    pub key: &'a str,
    pub value: &'a str,
    pub comment: Option<&'a str>,
}

impl<'a> ConfInput<'a> {
    pub fn split(input: &'a str) -> ConfInput<'a> {
        let (text, edit) = input.split_once('\0').unwrap_or((input, ""));
        let mut fields = edit.split('\0');
        let mut next =
            |default: &'a str| fields.next().filter(|s| !s.is_empty()).unwrap_or(default);
        ConfInput {
            text,
            id: next("fuzz"),
            key: next("MODEL"),
            value: next("model.gguf"),
            comment: fields.next(),
        }
    }
}

fn conf(text: &str, what: &str) -> ModelsConf {
    match ModelsConf::parse(text, Path::new("models.conf")) {
        Ok(c) => c,
        Err(e) => panic!("{what} wrote a models.conf that does not parse: {e}\n{text:?}"),
    }
}

/// Profiles other than `id`, which an edit of `id` must leave alone.
fn others(c: &ModelsConf, id: &str) -> Vec<(String, Vec<(String, String)>)> {
    c.profiles()
        .into_iter()
        .filter(|p| p.id != id)
        .map(|p| (p.id, p.entries))
        .collect()
}

/// UTF-8 → `ModelsConf::parse`; what parses renders back to the same bytes,
/// and every edit (set, upsert, remove, remove_section) either refuses or
/// writes a file that parses, holds the edit, and is a fixed point of the
/// same edit.
pub fn models_conf(data: &[u8]) {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let ConfInput {
        text,
        id,
        key,
        value,
        comment,
    } = ConfInput::split(input);
    let original = match ModelsConf::parse(text, Path::new("models.conf")) {
        Ok(c) => c,
        Err(e) => {
            assert!(e.line >= 1 && e.line <= text.split_inclusive('\n').count());
            let _ = e.to_string();
            return;
        }
    };
    assert_eq!(original.render(), text, "render is not byte-preserving");
    let rest = others(&original, id);
    for p in original.profiles() {
        assert!(onboard::workspace::models_conf::valid_profile_id(&p.id));
        assert!(original.profile(&p.id).is_some());
    }

    // set
    let mut c = original.clone();
    if c.set(id, key, value).is_err() {
        assert_eq!(c.render(), text, "a refused set changed the file");
    } else {
        let written = c.render();
        let mut re = conf(&written, "set");
        let got = re.profile(id).and_then(|p| p.get(key).map(str::to_string));
        assert_eq!(got.as_deref(), Some(value.trim()), "set did not hold");
        assert_eq!(others(&re, id), rest, "set changed another profile");
        assert!(re.set(id, key, value).is_ok());
        assert_eq!(re.render(), written, "set twice is not set once");
    }

    // upsert (a managed key that is not given is removed)
    let managed = [key, "CTX_SIZE"];
    let entries = [(key.to_string(), value.to_string())];
    let mut c = original.clone();
    if c.upsert(id, &managed, &entries, comment).is_err() {
        assert_eq!(c.render(), text, "a refused upsert changed the file");
    } else {
        let written = c.render();
        let mut re = conf(&written, "upsert");
        let p = re.profile(id);
        assert_eq!(
            p.as_ref().and_then(|p| p.get(key)),
            Some(value.trim()),
            "upsert did not hold"
        );
        if key != "CTX_SIZE" {
            assert_eq!(p.as_ref().and_then(|p| p.get("CTX_SIZE")), None);
        }
        assert_eq!(others(&re, id), rest, "upsert changed another profile");
        assert!(re.upsert(id, &managed, &entries, comment).is_ok());
        assert_eq!(re.render(), written, "upsert twice is not upsert once");
    }

    // remove
    let mut c = original.clone();
    c.remove(id, key);
    let re = conf(&c.render(), "remove");
    assert_eq!(
        re.profile(id).and_then(|p| p.get(key).map(str::to_string)),
        None
    );
    assert_eq!(others(&re, id), rest, "remove changed another profile");

    // remove_section
    let mut c = original.clone();
    let existed = c.remove_section(id);
    assert_eq!(existed, original.profile(id).is_some());
    let re = conf(&c.render(), "remove_section");
    assert!(re.profile(id).is_none());
    assert_eq!(
        others(&re, id),
        rest,
        "remove_section changed another profile"
    );
}
