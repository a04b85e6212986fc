//! The evaluate report: tables of model, quant, size, strategy,
//! context and speed; memory per device; strategies; quants and why each
//! was not chosen, in markdown a person can check line by line.

use std::fmt::Write;

use super::strategy::{DeviceLoad, Kind, Placement};
use super::{gb, gib, gib_signed, Evaluation};

fn params(n: u64) -> String {
    if n >= 1_000_000_000 {
        format!("{:.1}B", n as f64 / 1e9)
    } else {
        format!("{:.0}M", n as f64 / 1e6)
    }
}

/// "≤ 245 t/s (≤ 150 at 262144 tokens)" or why it is unknown.
pub fn speed_range(p: &Placement) -> String {
    match (p.tokens_per_second(false), p.tokens_per_second(true)) {
        (Some(a), Some(b)) => format!(
            "≤ {a:.0} t/s (≤ {b:.0} t/s with {} tokens in the cache)",
            p.n_ctx
        ),
        _ => "unknown (add bandwidth_gbs for every GPU and cpu_bandwidth_gbs)".into(),
    }
}

fn device_row(out: &mut String, d: &DeviceLoad, note: &str) {
    let _ = writeln!(
        out,
        "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {}{note} |",
        d.name,
        gib(d.budget),
        d.layers.len(),
        gib(d.weights),
        gib(d.experts),
        gib(d.kv),
        gib(d.recurrent),
        gib(d.compute),
        gib(d.total),
        gib_signed(d.headroom),
    );
}

/// The per-device memory table of a placement.
pub fn memory_table(p: &Placement, fit_margin: u64, os_reserve: u64, min_host: u64) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| Device | Usable | Layers | Weights | of which experts | KV cache | Recurrent state | Compute | Total | Headroom |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|");
    for g in &p.gpus {
        device_row(&mut out, g, "");
    }
    let host_note = if p.host.headroom < min_host as i64 {
        format!(" (below the {} minimum)", gib(min_host))
    } else {
        String::new()
    };
    device_row(&mut out, &p.host, &host_note);
    let _ = writeln!(
        out,
        "\nGPU \"usable\" is VRAM minus llama.cpp's fit margin of {} each; host \"usable\" is RAM minus {} for the OS. \
         The output layer is on {}; the input embedding stays in RAM.",
        gib(fit_margin),
        gib(os_reserve),
        p.gpus
            .iter()
            .find(|g| g.output_layer)
            .map(|g| g.name.as_str())
            .unwrap_or("the host"),
    );
    out
}

/// The whole report.
pub fn markdown(e: &Evaluation, title: &str) -> String {
    let mut out = String::new();
    let f = &e.facts;
    let moe = e.is_moe();
    let q = e.chosen();
    let ngpu = e.machine.gpus.len();
    let _ = writeln!(out, "# Evaluate: {title}\n");
    let _ = writeln!(
        out,
        "From the GGUF header{} of `{}` @ `{}` ({} fetched); nothing downloaded.\n",
        if f.shard_count > 1 { "s" } else { "" },
        e.repo,
        e.revision,
        if e.bytes_fetched > 0 {
            format!("{} KiB of headers", e.bytes_fetched.div_ceil(1024))
        } else {
            "local copies".into()
        },
    );
    let kind = if moe {
        format!("MoE ({} active)", params(e.active_params))
    } else {
        format!("Dense ({} active)", params(e.active_params))
    };
    let (strategy, context, speed) = match e.production() {
        Some((k, p)) => (
            k.describe(moe, p.gpus_used()),
            p.n_ctx.to_string(),
            speed_range(p),
        ),
        None => ("does not fit".into(), "—".into(), "—".into()),
    };
    let _ = writeln!(
        out,
        "| Model | Type | Quant | Size | Strategy | Context | Est. speed (bandwidth bound) |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|");
    let _ = writeln!(
        out,
        "| {} | {kind} | {} | {} | {strategy} | {context} | {speed} |\n",
        f.name.as_deref().unwrap_or(title),
        q.candidate.quant,
        gb(q.candidate.total_size()),
    );
    if e.trained_context > 0 {
        if let Some((_, p)) = e.production() {
            if p.n_ctx < e.trained_context {
                let _ = writeln!(
                    out,
                    "**The trained context ({}) does not fit this machine with any quant asked for; {} is the largest that does.**\n",
                    e.trained_context, p.n_ctx
                );
            }
        }
    }

    let _ = writeln!(out, "## Architecture\n");
    let attn = f.attention_layers().len();
    let rec = f.recurrent_layers().len();
    let layers = match f.layers.result() {
        Ok(_) => format!("{} ({attn} attention, {rec} recurrent)", f.layers_label()),
        Err(why) => format!("{} (layout unknown: {why})", f.layers_label()),
    };
    let _ = writeln!(out, "| | |\n|---|---|");
    let _ = writeln!(out, "| Architecture | `{}` |", f.architecture);
    let _ = writeln!(
        out,
        "| Parameters | {} ({} active per token) |",
        params(f.parameter_count),
        params(e.active_params)
    );
    let _ = writeln!(out, "| Layers | {layers} |");
    let _ = writeln!(out, "| Hidden size | {} |", f.embedding_length);
    let kv = f.head_count_kv.iter().max().copied().unwrap_or(0);
    let _ = writeln!(
        out,
        "| Attention | {} heads, {} KV heads × {}/{} (key/value head dim) |",
        f.head_count, kv, f.key_length, f.value_length
    );
    if let Some(x) = &f.experts {
        let _ = writeln!(
            out,
            "| Experts | {} routed ({} used per token), {} shared, FFN {} |",
            x.total,
            x.used,
            x.shared,
            x.feed_forward_length
                .map(|v| v.to_string())
                .unwrap_or_else(|| "?".into())
        );
    } else if let Some(ff) = f.feed_forward_length {
        let _ = writeln!(out, "| FFN | {ff} |");
    }
    let _ = writeln!(out, "| Trained context | {} |", e.trained_context);
    match crate::gguf::kv_bytes_per_token(f, crate::gguf::GgmlType::F16, crate::gguf::GgmlType::F16)
    {
        crate::gguf::Fact::Known { value } => {
            let _ = writeln!(
                out,
                "| KV cache (f16) | {} KiB per token, {} at {} tokens |",
                value / 1024,
                gib(value * e.trained_context),
                e.trained_context
            );
        }
        crate::gguf::Fact::Unknown { reason } => {
            let _ = writeln!(out, "| KV cache | unknown: {reason} |");
        }
    }
    if rec > 0 {
        match crate::gguf::recurrent_state_bytes(f, 1) {
            crate::gguf::Fact::Known { value } => {
                let _ = writeln!(
                    out,
                    "| Recurrent state | {:.1} MiB per sequence (fixed, f32) |",
                    value as f64 / (1u64 << 20) as f64
                );
            }
            crate::gguf::Fact::Unknown { reason } => {
                let _ = writeln!(out, "| Recurrent state | unknown: {reason} |");
            }
        }
    }
    if !e.projectors.is_empty() {
        let listed = e
            .projectors
            .iter()
            .map(|p| format!("`{}` ({})", p.file, gb(p.size)))
            .collect::<Vec<_>>()
            .join(", ");
        let used = match &e.projector {
            Some(p) => format!(
                "loading `{}` (`--mmproj`), counted on {}",
                p.file,
                e.machine
                    .gpus
                    .first()
                    .map_or("the host (RAM)".to_string(), |g| format!(
                        "{} (llama-server offloads it to the first GPU)",
                        g.name
                    ))
            ),
            None => "text only: `hub.mmproj` in the manifest adds one".into(),
        };
        let _ = writeln!(out, "| Vision projectors | {listed}; {used} |");
    }
    if let Some(cache) = e.cache_ram() {
        let chosen = match cache.mib {
            Some(n) => format!(
                "`--cache-ram {n}`: up to {} tokens",
                cache.longest_at_chosen
            ),
            None => "the default".into(),
        };
        let _ = writeln!(
            out,
            "| Prompt cache (`--cache-ram`) | longest cacheable prompt {} tokens at the default {} MiB; {chosen}. {} |",
            cache.longest_at_default,
            super::cache_ram::DEFAULT_MIB,
            cache.reason
        );
    }
    let _ = writeln!(out);

    if let Some((k, p)) = e.production() {
        let _ = writeln!(
            out,
            "## Memory at {} tokens: {}\n",
            p.n_ctx,
            k.describe(moe, p.gpus_used())
        );
        out.push_str(&memory_table(
            p,
            e.machine.fit_margin,
            e.machine.os_reserve_bytes,
            e.machine.min_host_headroom,
        ));
        let _ = writeln!(out);
        if *k == Kind::Fit && p.experts_on_host > 0 {
            let _ = writeln!(
                out,
                "Layers go to the GPUs whole; {} of experts of the layer at the GPU boundary stay in RAM.\n",
                gib(p.experts_on_host)
            );
        }
        if *k == Kind::AllGpu {
            let _ = writeln!(
                out,
                "Tensor split (`-ts`, layers per GPU): `{}`.\n",
                p.tensor_split()
            );
        }
    }

    let _ = writeln!(out, "## Strategies for {}\n", q.candidate.quant);
    let _ = writeln!(
        out,
        "| Strategy | Largest context that fits | GPU headroom | Host headroom | Est. speed |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|");
    for o in &q.strategies.options {
        let (ctx, gpu, host, tps) = match &o.placement {
            Some(p) => (
                o.max_context.map(|c| c.to_string()).unwrap_or_default(),
                p.gpus
                    .iter()
                    .map(|g| gib_signed(g.headroom))
                    .collect::<Vec<_>>()
                    .join(" / "),
                gib_signed(p.host.headroom),
                speed_range(p),
            ),
            None => (
                "does not fit at any context".into(),
                "—".into(),
                "—".into(),
                "—".into(),
            ),
        };
        let name = o.placement.as_ref().map_or_else(
            || o.kind.describe(moe, ngpu),
            |p| o.kind.describe(moe, p.gpus_used()),
        );
        let _ = writeln!(out, "| {name} | {ctx} | {gpu} | {host} | {tps} |");
    }
    let _ = writeln!(
        out,
        "\nProduction takes the trained context when any strategy gives it (everything on the GPUs with `--fit` first, then `--fit` with CPU offload); \
         otherwise the largest context. The host must keep {} free (10% of usable RAM, at least 4 GiB).\n",
        gib(e.machine.min_host_headroom)
    );

    let _ = writeln!(out, "## Quants\n");
    let _ = writeln!(out, "| Quant | Files | Size | Verdict |");
    let _ = writeln!(out, "|---|---|---|---|");
    for qe in &e.quants {
        let verdict = match &qe.rejected {
            None => "**chosen**".to_string(),
            Some(r) => format!("rejected: {r}"),
        };
        let scaled = qe
            .scaled_from
            .as_ref()
            .map(|s| format!(" (sizes scaled from {s}'s header by file size)"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {verdict}{scaled} |",
            qe.candidate.quant,
            qe.candidate.files.len(),
            gb(qe.candidate.total_size()),
        );
    }
    if !e.missing_quants.is_empty() {
        let _ = writeln!(
            out,
            "\nAsked for but not in the repo: {}.",
            e.missing_quants.join(", ")
        );
    }
    if !e.other_quants.is_empty() {
        let others: Vec<String> = e
            .other_quants
            .iter()
            .map(|c| format!("{} ({})", c.quant, gb(c.total_size())))
            .collect();
        let _ = writeln!(
            out,
            "\nOther quants in the repo (not asked for): {}.",
            others.join(", ")
        );
    }
    let _ = writeln!(
        out,
        "\nSpeeds are bandwidth bounds: the weights each device reads per token over its memory bandwidth (from `onboard.yaml`), times added up; \
         measured decode speed is lower (the context-test phase measures it)."
    );
    out
}

/// The model card's figures (manifest `card:`) held against the header:
/// a card typo or a different model behind the repo shows here.
/// Returns the markdown section and the mismatches in words.
pub fn card_check(
    f: &crate::gguf::ModelFacts,
    card: &serde_json::Map<String, serde_json::Value>,
) -> (String, Vec<String>) {
    let header: Vec<(&str, Option<u64>)> = vec![
        // A card counts the trunk's layers, not a prediction head's.
        ("layers", Some(u64::from(f.trunk_layers()))),
        ("attention_layers", Some(f.attention_layers().len() as u64)),
        ("hidden", Some(f.embedding_length)),
        ("context", f.context_length),
        ("ffn", f.feed_forward_length),
        ("experts", f.experts.as_ref().map(|e| e.total)),
        ("experts_routed", f.experts.as_ref().map(|e| e.used)),
        ("experts_shared", f.experts.as_ref().map(|e| e.shared)),
        (
            "expert_ffn",
            f.experts.as_ref().and_then(|e| e.feed_forward_length),
        ),
    ];
    let mut rows = String::new();
    let mut mismatches = Vec::new();
    for (key, value) in header {
        let Some(said) = card.get(key).and_then(serde_json::Value::as_u64) else {
            continue;
        };
        let (shown, ok) = match value {
            Some(v) => (v.to_string(), v == said),
            None => ("not in the header".to_string(), false),
        };
        if !ok {
            mismatches.push(format!("card `{key}: {said}`, header {shown}"));
        }
        let _ = writeln!(
            rows,
            "| `{key}` | {said} | {shown} | {} |",
            if ok { "✓" } else { "**differs**" }
        );
    }
    if rows.is_empty() {
        return (String::new(), mismatches);
    }
    let mut out = String::from("\n## Model card against the header\n\n");
    out.push_str("| Card key | Card | Header | |\n|---|---|---|---|\n");
    out.push_str(&rows);
    if !mismatches.is_empty() {
        out.push_str("\nThe header is what llama.cpp loads; fix the card (manifest `card:`) or check the repo.\n");
    }
    (out, mismatches)
}
