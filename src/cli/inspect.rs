//! `onboard inspect <file.gguf | hf://owner/repo[/file]>` and
//! `onboard hardware [--detect]`: the facts evaluate uses, for any model or
//! machine, without running a workflow.

use super::{error, Format, FormatArg, EXIT_FAILED, EXIT_OK, EXIT_USAGE};
use crate::evaluate::{self, gib, quant, report, strategy, HeaderSource, HubSource, Machine};
use crate::gguf::memory::{compute_buffer_bytes, RunConfig, MIB};
use crate::gguf::{
    facts_from_shards, kv_cache_bytes, read_file, recurrent_state_bytes, Fact, GgmlType, Header,
    ModelFacts,
};
use crate::hub::HubClient;
use crate::workspace::config::{Gpu, Hardware};
use crate::workspace::Workspace;
use clap::Args;
use serde_json::json;
use std::path::Path;

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// A local GGUF (the first shard of a split model) or
    /// `hf://owner/repo[/file]` (read with range requests; `HF_ENDPOINT`).
    target: String,
    /// Contexts for the memory table (default: 8192 and the trained context).
    #[arg(long = "ctx", value_name = "N", num_args = 1..)]
    ctx: Vec<u64>,
    /// Revision for `hf://` targets.
    #[arg(long, default_value = "main")]
    revision: String,
    #[command(flatten)]
    format: FormatArg,
}

#[derive(Args, Debug)]
pub struct HardwareArgs {
    /// Detect GPUs (nvidia-smi) and RAM (/proc/meminfo) and print a
    /// `hardware:` block for onboard.yaml.
    #[arg(long)]
    detect: bool,
    #[command(flatten)]
    format: FormatArg,
}

impl HardwareArgs {
    /// Detection reads this machine, not a workspace.
    pub fn detects(&self) -> bool {
        self.detect
    }
}

/// `hf://owner/name[/path]` → (repo, path).
fn parse_hf(target: &str) -> Option<(String, Option<String>)> {
    let rest = target.strip_prefix("hf://")?;
    let mut parts = rest.splitn(3, '/');
    let (owner, name) = (parts.next()?, parts.next()?);
    if owner.is_empty() || name.is_empty() {
        return None;
    }
    let file = parts.next().filter(|f| !f.is_empty()).map(str::to_string);
    Some((format!("{owner}/{name}"), file))
}

struct Loaded {
    source: String,
    headers: Vec<Header>,
    bytes_fetched: u64,
}

fn load(dir: &Path, args: &InspectArgs) -> Result<Loaded, (i32, String)> {
    let Some((repo, file)) = parse_hf(&args.target) else {
        if args.target.starts_with("hf://") {
            return Err((
                EXIT_USAGE,
                format!("`{}`: expected hf://owner/repo[/file]", args.target),
            ));
        }
        let path = super::relative_to(dir, Path::new(&args.target));
        if !path.exists() {
            return Err((EXIT_USAGE, format!("{}: no such file", path.display())));
        }
        let mut headers = Vec::new();
        for p in crate::gguf::shard_paths(&path) {
            headers.push(read_file(&p).map_err(|e| (EXIT_FAILED, e.to_string()))?);
        }
        return Ok(Loaded {
            source: args.target.clone(),
            headers,
            bytes_fetched: 0,
        });
    };
    let pick = match &file {
        Some(f) => Pick::File(f),
        None => Pick::Only,
    };
    let remote = remote(&repo, &args.revision, pick)?;
    Ok(Loaded {
        source: format!("hf://{repo}/{}", remote.chosen.files[0]),
        headers: remote.headers,
        bytes_fetched: remote.bytes_fetched,
    })
}

/// Which of a repository's GGUF files to read.
pub enum Pick<'a> {
    /// The quant holding this file.
    File(&'a str),
    /// A quant by name (`Q4_K_M`).
    Quant(&'a str),
    /// The repository's one quant; several are a usage error listing them.
    Only,
}

/// A repository's GGUF header, read with range requests, and its quants.
pub struct Remote {
    pub headers: Vec<Header>,
    pub bytes_fetched: u64,
    /// Every quant of the repository.
    pub quants: Vec<quant::Candidate>,
    pub chosen: quant::Candidate,
}

/// Lists `repo` and reads the header of the quant `pick` names (every
/// shard's); the error is an exit code with its message.
pub fn remote(repo: &str, revision: &str, pick: Pick<'_>) -> Result<Remote, (i32, String)> {
    let client = HubClient::from_env();
    let src = HubSource {
        client: &client,
        local_dir: None,
    };
    let fail = |e: evaluate::EvaluateError| (EXIT_FAILED, e.to_string());
    let listing = src.list(repo, revision).map_err(fail)?;
    let all = quant::candidates(&listing);
    let chosen = match pick {
        Pick::File(f) => all
            .iter()
            .find(|c| c.files.iter().any(|x| x == f))
            .cloned()
            .ok_or_else(|| (EXIT_USAGE, format!("`{repo}` has no GGUF file `{f}`")))?,
        Pick::Quant(q) => quant::find(&all, q).cloned().ok_or_else(|| {
            (
                EXIT_USAGE,
                format!(
                    "`{repo}` has no quant `{q}`; it has:\n{}",
                    quant_list(repo, &all)
                ),
            )
        })?,
        Pick::Only if all.len() == 1 => all[0].clone(),
        Pick::Only => {
            return Err((
                EXIT_USAGE,
                format!(
                    "`{repo}` has {} quants; name one:\n{}",
                    all.len(),
                    quant_list(repo, &all)
                ),
            ));
        }
    };
    let files: Vec<(String, u64)> = chosen
        .files
        .iter()
        .cloned()
        .zip(chosen.sizes.iter().copied())
        .collect();
    let (headers, bytes_fetched) = src.headers(repo, revision, &files).map_err(fail)?;
    Ok(Remote {
        headers,
        bytes_fetched,
        quants: all,
        chosen,
    })
}

/// One line per quant: name, size, where.
fn quant_list(repo: &str, all: &[quant::Candidate]) -> String {
    if all.is_empty() {
        return "  (no GGUF files)".into();
    }
    all.iter()
        .map(|c| {
            format!(
                "  {:<14} {:>9}  hf://{repo}/{}",
                c.quant,
                evaluate::gb(c.total_size()),
                c.files[0]
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// One row of the memory table.
fn memory_row(f: &ModelFacts, n_ctx: u64) -> serde_json::Value {
    let kv = kv_cache_bytes(f, n_ctx, GgmlType::F16, GgmlType::F16);
    let rec = recurrent_state_bytes(f, 1);
    let compute = compute_buffer_bytes(f, &RunConfig::server(n_ctx));
    let total = match (kv.value(), rec.value()) {
        (Some(k), Some(r)) => Some(f.total_bytes + k + r + compute),
        _ => None,
    };
    json!({
        "context": n_ctx,
        "weights_bytes": f.total_bytes,
        "kv_bytes": kv,
        "recurrent_bytes": rec,
        "compute_bytes": compute,
        "total_bytes": total,
    })
}

fn fact_text(f: &Fact<u64>) -> String {
    match f {
        Fact::Known { value } => gib(*value),
        Fact::Unknown { reason } => format!("unknown ({reason})"),
    }
}

pub fn inspect(dir: &Path, args: &InspectArgs) -> i32 {
    let loaded = match load(dir, args) {
        Ok(l) => l,
        Err((code, msg)) => {
            error(&msg);
            return code;
        }
    };
    let facts = match facts_from_shards(&loaded.headers) {
        Ok(f) => f,
        Err(e) => {
            error(&e.to_string());
            return EXIT_FAILED;
        }
    };
    let trained = facts.context_length.unwrap_or(4096);
    let mut ctxs = if args.ctx.is_empty() {
        vec![8192.min(trained), trained]
    } else {
        args.ctx.clone()
    };
    ctxs.dedup();
    let rows: Vec<serde_json::Value> = ctxs.iter().map(|c| memory_row(&facts, *c)).collect();
    let active = evaluate::active_params(&loaded.headers, &facts);
    // On this workspace's machine, when onboard.yaml describes one.
    let machine = Workspace::open(dir)
        .ok()
        .and_then(|ws| Machine::from_hardware(&ws.config.hardware, 1024 * MIB).ok());
    let placement = machine
        .as_ref()
        .map(|m| match strategy::Layout::new(&facts, 1.0) {
            Ok(layout) => {
                let r = strategy::evaluate(&layout, m, trained);
                match r.chosen {
                    Some((k, p)) => Ok((k, p)),
                    None => Err("does not fit this machine at any context".to_string()),
                }
            }
            Err(why) => Err(format!("unknown: {why}")),
        });
    if args.format.json() {
        let out = json!({
            "source": loaded.source,
            "header_bytes_fetched": loaded.bytes_fetched,
            "architecture": facts.architecture,
            "name": facts.name,
            "file_type": facts.file_type_label,
            "shards": facts.shard_count,
            "parameters": facts.parameter_count,
            "active_parameters": active,
            "layers": facts.trunk_layers(),
            "mtp_layers": facts.mtp_layers,
            "layer_kinds": facts.layers,
            "attention_layers": facts.attention_layers().len(),
            "recurrent_layers": facts.recurrent_layers().len(),
            "embedding_length": facts.embedding_length,
            "head_count": facts.head_count,
            "head_count_kv": facts.head_count_kv.iter().max(),
            "key_length": facts.key_length,
            "value_length": facts.value_length,
            "feed_forward_length": facts.feed_forward_length,
            "experts": facts.experts,
            "vocab_size": facts.vocab_size,
            "context_length": facts.context_length,
            "tensor_types": facts.tensor_types,
            "total_bytes": facts.total_bytes,
            "active_bytes_per_token": facts.active_bytes_per_token,
            "kv_bytes_per_token": crate::gguf::kv_bytes_per_token(&facts, GgmlType::F16, GgmlType::F16),
            "sampling": evaluate::sampling(&loaded.headers[0]),
            "memory": rows,
            "on_this_machine": placement.as_ref().map(|r| match r {
                Ok((k, p)) => json!({"strategy": k, "context": p.n_ctx, "placement": p}),
                Err(why) => json!({"strategy": null, "reason": why}),
            }),
        });
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        return EXIT_OK;
    }
    println!("{}", loaded.source);
    if loaded.bytes_fetched > 0 {
        println!(
            "  (header read with range requests: {} bytes)",
            loaded.bytes_fetched
        );
    }
    println!("  architecture    {}", facts.architecture);
    if let Some(n) = &facts.name {
        println!("  name            {n}");
    }
    println!(
        "  file type       {}",
        facts.file_type_label.as_deref().unwrap_or("?")
    );
    println!("  shards          {}", facts.shard_count);
    println!(
        "  parameters      {} ({} active per token)",
        facts.parameter_count, active
    );
    let layers = match facts.layers.result() {
        Ok(_) => format!(
            "{} ({} attention, {} recurrent)",
            facts.layers_label(),
            facts.attention_layers().len(),
            facts.recurrent_layers().len()
        ),
        Err(why) => format!("{} (layout unknown: {why})", facts.layers_label()),
    };
    println!("  layers          {layers}");
    println!("  hidden          {}", facts.embedding_length);
    println!(
        "  heads           {} ({} KV, head dim {}/{})",
        facts.head_count,
        facts.head_count_kv.iter().max().copied().unwrap_or(0),
        facts.key_length,
        facts.value_length
    );
    if let Some(e) = &facts.experts {
        println!(
            "  experts         {} ({} used, {} shared)",
            e.total, e.used, e.shared
        );
    }
    println!(
        "  context         {}",
        facts
            .context_length
            .map(|c| c.to_string())
            .unwrap_or_else(|| "unknown".into())
    );
    println!(
        "  weights         {} ({} bytes)",
        gib(facts.total_bytes),
        facts.total_bytes
    );
    let types: Vec<String> = facts
        .tensor_types
        .iter()
        .map(|(t, tally)| format!("{t}×{}", tally.tensors))
        .collect();
    println!("  tensor types    {}", types.join(" "));
    println!();
    println!(
        "  {:>8}  {:>10}  {:>10}  {:>10}  {:>10}  {:>10}",
        "context", "weights", "KV (f16)", "recurrent", "compute", "total"
    );
    for c in &ctxs {
        let kv = kv_cache_bytes(&facts, *c, GgmlType::F16, GgmlType::F16);
        let rec = recurrent_state_bytes(&facts, 1);
        let compute = compute_buffer_bytes(&facts, &RunConfig::server(*c));
        let total = match (kv.value(), rec.value()) {
            (Some(k), Some(r)) => gib(facts.total_bytes + k + r + compute),
            _ => "unknown".into(),
        };
        println!(
            "  {:>8}  {:>10}  {:>10}  {:>10}  {:>10}  {:>10}",
            c,
            gib(facts.total_bytes),
            fact_text(&kv),
            fact_text(&rec),
            gib(compute),
            total
        );
    }
    if let (Some(m), Some(r)) = (&machine, &placement) {
        println!();
        match r {
            Ok((k, p)) => {
                println!(
                    "On this workspace's machine: {} at {} tokens",
                    k.describe(facts.is_moe(), p.gpus_used()),
                    p.n_ctx
                );
                print!(
                    "{}",
                    report::memory_table(p, m.fit_margin, m.os_reserve_bytes, m.min_host_headroom)
                );
            }
            Err(why) => println!("On this workspace's machine: {why}"),
        }
    }
    EXIT_OK
}

/// GPUs from `nvidia-smi --query-gpu=name,memory.total`, `None` when it is
/// not installed or fails.
fn detect_gpus() -> Option<Vec<Gpu>> {
    let out = std::process::Command::new("nvidia-smi")
        .args([
            "--query-gpu=name,memory.total",
            "--format=csv,noheader,nounits",
        ])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Some(parse_nvidia_smi(&text))
}

/// `name, MiB` lines → GPUs (VRAM in GiB).
pub fn parse_nvidia_smi(text: &str) -> Vec<Gpu> {
    text.lines()
        .filter_map(|l| {
            let (name, mib) = l.rsplit_once(',')?;
            let mib: f64 = mib.trim().parse().ok()?;
            Some(Gpu {
                name: name.trim().to_string(),
                vram_gib: (mib / 1024.0 * 10.0).round() / 10.0,
                bandwidth_gbs: None,
            })
        })
        .collect()
}

/// `MemTotal` of /proc/meminfo, GiB.
pub fn parse_meminfo(text: &str) -> Option<f64> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some((kib / (1024.0 * 1024.0) * 10.0).round() / 10.0)
}

pub fn hardware(dir: &Path, args: &HardwareArgs) -> i32 {
    if !args.detect {
        let ws = match super::load::open_workspace(dir) {
            Ok(ws) => ws,
            Err(code) => return code,
        };
        let hw = &ws.config.hardware;
        if args.format == Format::Json {
            println!("{}", serde_json::to_string_pretty(hw).unwrap_or_default());
            return EXIT_OK;
        }
        match Machine::from_hardware(hw, 1024 * MIB) {
            Ok(m) => {
                for g in &m.gpus {
                    println!(
                        "{:<24} {} (usable {} after the fit margin)",
                        g.name,
                        gib(g.bytes),
                        gib(g.bytes.saturating_sub(m.fit_margin))
                    );
                }
                println!(
                    "{:<24} {} RAM, {} for the OS, {} usable; keep {} free",
                    "host",
                    gib(m.ram_bytes),
                    gib(m.os_reserve_bytes),
                    gib(m.host_budget()),
                    gib(m.min_host_headroom)
                );
                EXIT_OK
            }
            Err(why) => {
                error(&why);
                EXIT_FAILED
            }
        }
    } else {
        let (hw, gpus) = detect();
        if args.format == Format::Json {
            println!(
                "{}",
                serde_json::to_string_pretty(
                    &json!({"hardware": hw, "nvidia_smi": gpus.is_some()})
                )
                .unwrap_or_default()
            );
            return EXIT_OK;
        }
        print!("{}", hardware_yaml(&hw, gpus.is_some()));
        EXIT_OK
    }
}

/// This machine: GPUs from nvidia-smi (`None` when it is missing or
/// fails), RAM from /proc/meminfo, 8 GiB kept for the OS.
pub fn detect() -> (Hardware, Option<Vec<Gpu>>) {
    let gpus = detect_gpus();
    let ram = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .as_deref()
        .and_then(parse_meminfo);
    let hw = Hardware {
        gpus: gpus.clone().unwrap_or_default(),
        ram_gib: ram,
        os_reserve_gib: Some(8.0),
        cpu_bandwidth_gbs: None,
    };
    (hw, gpus)
}

/// A ready-to-paste `hardware:` block for onboard.yaml, with comments
/// saying what detection could not know.
pub fn hardware_yaml(hw: &Hardware, nvidia_smi: bool) -> String {
    let mut out = String::new();
    let mut line = |l: String| {
        out.push_str(&l);
        out.push('\n');
    };
    line(match (nvidia_smi, hw.gpus.is_empty()) {
        (false, _) => {
            "# no NVIDIA GPU found (nvidia-smi is not installed or failed): CPU only".into()
        }
        (true, true) => "# nvidia-smi lists no GPU: CPU only".into(),
        (true, false) => {
            "# GPUs from nvidia-smi; add each card's bandwidth_gbs (its published memory bandwidth)"
                .into()
        }
    });
    line("hardware:".into());
    if hw.gpus.is_empty() {
        line("  gpus: []".into());
    } else {
        line("  gpus:".into());
        for g in &hw.gpus {
            line(format!(
                "    - name: {}",
                serde_json::to_string(&g.name).unwrap_or_default()
            ));
            line(format!("      vram_gib: {}", g.vram_gib));
            line("      # bandwidth_gbs: 936".into());
        }
    }
    line(match hw.ram_gib {
        Some(r) => format!("  ram_gib: {r}"),
        None => "  # ram_gib: (could not read /proc/meminfo)".into(),
    });
    line("  os_reserve_gib: 8   # RAM kept for the OS and other programs".into());
    line("  # cpu_bandwidth_gbs: 60   # the RAM's bandwidth (channels × MT/s × 8 bytes)".into());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_detection_output() {
        let g =
            parse_nvidia_smi("NVIDIA GeForce RTX 3090, 24576\nNVIDIA GeForce RTX 3060, 12288\n");
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].name, "NVIDIA GeForce RTX 3090");
        assert_eq!(g[0].vram_gib, 24.0);
        assert_eq!(
            parse_meminfo("MemTotal:       65842628 kB\nMemFree: 1 kB\n"),
            Some(62.8)
        );
        assert_eq!(
            parse_hf("hf://a/b/c/d.gguf"),
            Some(("a/b".into(), Some("c/d.gguf".into())))
        );
        assert_eq!(parse_hf("hf://a/b"), Some(("a/b".into(), None)));
        assert_eq!(parse_hf("hf://a"), None);
    }
}
