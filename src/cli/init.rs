//! `onboard init [DIR]`: a new workspace, ready for its first model.
//! `onboard new <id> --hub owner/repo`: that model's manifest, from the
//! repository's own GGUF header rather than typed by hand.
//!
//! The binary carries the default workflow and templates, so a workspace
//! can be made wherever onboard is installed, without this repository.

use super::inspect::{self, Pick};
use super::load;
use super::{error, EXIT_FAILED, EXIT_OK, EXIT_USAGE};
use crate::gguf::facts_from_shards;
use crate::source::Document;
use crate::workspace::{self, CONFIG_FILE};
use clap::Args;
use std::path::{Path, PathBuf};

/// The files `init` writes besides onboard.yaml: workspace-relative path
/// and contents, the repository's own at build time.
const FILES: [(&str, &str); 4] = [
    (
        "workflows/add-model.yaml",
        include_str!("../../workflows/add-model.yaml"),
    ),
    (
        "templates/card.md.j2",
        include_str!("../../templates/card.md.j2"),
    ),
    (
        "templates/onboarding-summary.md.j2",
        include_str!("../../templates/onboarding-summary.md.j2"),
    ),
    (
        "templates/profile.conf.j2",
        include_str!("../../templates/profile.conf.j2"),
    ),
];

/// Directories a workspace starts with: manifests, and the docs' waiting
/// room for cards of models not yet onboarded.
const DIRS: [&str; 2] = ["models", "documentation/CANDIDATES"];

const GITIGNORE: &str =
    "# Run state and weights: rebuilt or downloaded, never committed.\n.onboard/\n*.gguf\n";

#[derive(Args, Debug)]
pub struct InitArgs {
    /// The directory to make a workspace of (relative to -C; default: -C's
    /// directory). Created when missing.
    dir: Option<PathBuf>,
    /// Write onboard.yaml, the workflow and the templates over an existing
    /// workspace's (models and documentation are kept).
    #[arg(long)]
    force: bool,
}

#[derive(Args, Debug)]
pub struct NewArgs {
    /// The model id: the manifest's file name and what `onboard <id>` takes.
    id: String,
    /// The Hub repository holding the GGUF files.
    #[arg(long, value_name = "OWNER/REPO")]
    hub: String,
    /// The quant to onboard (required when the repository has several; the
    /// error lists them).
    #[arg(long, value_name = "QUANT")]
    quant: Option<String>,
    /// A model of this workspace the new one may replace (repeatable).
    #[arg(long, value_name = "ID")]
    replaces: Vec<String>,
    /// The repository's revision.
    #[arg(long, default_value = "main")]
    revision: String,
    /// Display name (default: the repository's name without `-GGUF`).
    #[arg(long)]
    name: Option<String>,
    /// Write over an existing manifest of the same id.
    #[arg(long)]
    force: bool,
}

pub fn init(workspace_dir: &Path, args: &InitArgs) -> i32 {
    let root = match &args.dir {
        Some(d) => super::relative_to(workspace_dir, d),
        None => workspace_dir.to_path_buf(),
    };
    let (hardware, gpus) = inspect::detect();
    let config = onboard_yaml(&inspect::hardware_yaml(&hardware, gpus.is_some()));
    if let Err(diags) = check(
        &root.join(CONFIG_FILE),
        config.clone(),
        workspace::check_config,
    ) {
        load::print_diagnostics(&diags);
        error("the onboard.yaml init would write does not pass its own checks");
        return EXIT_FAILED;
    }
    let mut files: Vec<(&str, &str)> = vec![(CONFIG_FILE, config.as_str())];
    files.extend(FILES);
    if !args.force {
        let existing: Vec<&str> = files
            .iter()
            .map(|(p, _)| *p)
            .filter(|p| root.join(p).exists())
            .collect();
        if !existing.is_empty() {
            let what = if existing.contains(&CONFIG_FILE) {
                format!("{} is already a workspace", root.display())
            } else {
                format!("{} already has {}", root.display(), existing.join(", "))
            };
            error(&format!(
                "{what}; nothing written (--force writes onboard.yaml, the workflow and the templates over it, keeping models and documentation)"
            ));
            return EXIT_USAGE;
        }
    }
    let gitignore = (".gitignore", GITIGNORE);
    let write_ignore = !root.join(gitignore.0).exists();
    for (rel, text) in files.iter().chain(write_ignore.then_some(&gitignore)) {
        if let Err(e) = crate::atomic::write(&root.join(rel), text.as_bytes()) {
            error(&format!("cannot write {}: {e}", root.join(rel).display()));
            return EXIT_FAILED;
        }
    }
    for d in DIRS {
        if let Err(e) = std::fs::create_dir_all(root.join(d)) {
            error(&format!("cannot create {}: {e}", root.join(d).display()));
            return EXIT_FAILED;
        }
    }
    let machine = match (&hardware.gpus[..], hardware.ram_gib) {
        ([], Some(ram)) => format!("no GPU, {ram} GiB RAM"),
        (g, Some(ram)) => format!("{} GPU(s), {ram} GiB RAM", g.len()),
        (g, None) => format!("{} GPU(s), RAM unknown", g.len()),
    };
    println!("wrote a workspace in {}:", root.display());
    println!("  {CONFIG_FILE:<36} this machine ({machine}): check it, add bandwidths");
    for (rel, _) in FILES {
        println!("  {rel}");
    }
    for d in DIRS {
        println!("  {d}/");
    }
    if write_ignore {
        println!("  .gitignore                           run state and weights");
    }
    println!(
        "next: onboard -C {} new <id> --hub <owner/repo> [--quant Q], then onboard -C {} <id>",
        root.display(),
        root.display()
    );
    EXIT_OK
}

/// onboard.yaml around a detected `hardware:` block.
fn onboard_yaml(hardware: &str) -> String {
    format!(
        "# The machine models are onboarded onto, and where things live.\n\
         # `onboard init` wrote the hardware from this machine (`onboard hardware\n\
         # --detect`); check it, and add the bandwidths detection cannot know.\n\
         {hardware}\
         paths:\n  models: models\n  workflows: workflows\n  docs: documentation\n  \
         models_conf: models.conf\n  state: .onboard\n\
         defaults:\n  workflow: add-model\n  jobs: 4\n\
         # Engines for the context test and the benchmark (`engine: auto` takes the\n\
         # first in this order that can run the model here):\n\
         # engines:\n\
         #   order: [mistralrs, llama-cpp, llama-server]\n\
         #   llama_server: llama-server\n\
         # What this machine has of each resource steps hold while they run (the\n\
         # steps that load a model hold `gpu: 1`: one model loaded at a time):\n\
         # resources:\n\
         #   gpu: 1\n"
    )
}

/// Parses `text` as the file at `path` would be and runs `checker` on it.
fn check<T>(
    path: &Path,
    text: String,
    checker: fn(&Document) -> (Option<T>, Vec<crate::source::Diagnostic>),
) -> Result<T, Vec<crate::source::Diagnostic>> {
    let doc = Document::parse(path, text).map_err(|d| vec![d])?;
    match checker(&doc) {
        (Some(v), diags) if diags.is_empty() => Ok(v),
        (_, diags) => Err(diags),
    }
}

pub fn new(workspace_dir: &Path, args: &NewArgs) -> i32 {
    if let Err(e) = workspace::valid_model_id(&args.id) {
        error(&e);
        return EXIT_USAGE;
    }
    let valid_repo = args
        .hub
        .split_once('/')
        .is_some_and(|(o, n)| !o.is_empty() && !n.is_empty() && !n.contains('/'));
    if !valid_repo {
        error(&format!(
            "--hub `{}`: expected owner/repo (e.g. HuggingFaceTB/SmolLM2-135M-Instruct-GGUF)",
            args.hub
        ));
        return EXIT_USAGE;
    }
    let ws = match load::open_workspace(workspace_dir) {
        Ok(ws) => ws,
        Err(code) => return code,
    };
    let path = ws.manifest_path(&args.id);
    if path.exists() && !args.force {
        error(&format!(
            "{} exists; nothing written (--force writes over it)",
            path.display()
        ));
        return EXIT_USAGE;
    }
    for r in &args.replaces {
        if !ws.manifest_path(r).is_file() {
            let hint = super::suggest::model(&ws, r)
                .map(|h| format!("; {h}"))
                .unwrap_or_default();
            error(&format!(
                "--replaces `{r}`: the workspace has no manifest {}{hint}",
                ws.manifest_path(r).display()
            ));
            return EXIT_USAGE;
        }
    }
    let pick = match &args.quant {
        Some(q) => Pick::Quant(q),
        None => Pick::Only,
    };
    let remote = match inspect::remote(&args.hub, &args.revision, pick) {
        Ok(r) => r,
        Err((code, message)) => {
            error(&message);
            if code == EXIT_USAGE && args.quant.is_none() {
                eprintln!("  = help: pick one with --quant");
            }
            return code;
        }
    };
    let text = match manifest_yaml(args, &remote) {
        Ok(t) => t,
        Err(e) => {
            error(&format!("{}: {e}", args.hub));
            return EXIT_FAILED;
        }
    };
    let manifest = match check(&path, text.clone(), workspace::check_manifest) {
        Ok(m) => m,
        Err(diags) => {
            load::print_diagnostics(&diags);
            error(&format!(
                "the manifest for {} does not pass `onboard validate`; nothing written",
                args.hub
            ));
            return EXIT_FAILED;
        }
    };
    if let Err(e) = crate::atomic::write(&path, text.as_bytes()) {
        error(&format!("cannot write {}: {e}", path.display()));
        return EXIT_FAILED;
    }
    println!(
        "wrote {} ({}: {} {}, {} of {} quant(s))",
        ws.manifest_path(&args.id)
            .strip_prefix(&ws.root)
            .unwrap_or(&path)
            .display(),
        manifest.name,
        manifest.size,
        match manifest.model_type {
            workspace::manifest::ModelType::Dense => "dense",
            workspace::manifest::ModelType::Moe => "MoE",
        },
        remote.chosen.quant,
        remote.quants.len()
    );
    println!(
        "next: check it, then `onboard plan {}` and `onboard {}`",
        args.id, args.id
    );
    EXIT_OK
}

/// The manifest's text: what the header tells, the rest left to a person
/// (with comments saying what).
fn manifest_yaml(args: &NewArgs, remote: &inspect::Remote) -> Result<String, String> {
    let facts = facts_from_shards(&remote.headers).map_err(|e| e.to_string())?;
    let first = remote.headers.first().ok_or("no GGUF header was read")?;
    let repo_name = args.hub.rsplit('/').next().unwrap_or(&args.hub);
    let name = args.name.clone().unwrap_or_else(|| {
        strip_suffix_ignore_case(repo_name, "-GGUF")
            .unwrap_or(repo_name)
            .to_string()
    });
    // The header's basename, spelt as the repository spells it when they
    // agree (`smollm2` in the header, `SmolLM2` in the repository's name).
    let lead = name.split('-').next().filter(|s| !s.is_empty());
    let family = match (first.get_str("general.basename"), lead) {
        (Some(b), Some(l)) if l.eq_ignore_ascii_case(b.trim()) => l.to_string(),
        (Some(b), _) if !b.trim().is_empty() => b.trim().to_string(),
        (_, Some(l)) => l.to_string(),
        _ => facts.architecture.clone(),
    };
    let size = first
        .get_str("general.size_label")
        .and_then(|s| s.split('-').next())
        .filter(|s| !s.trim().is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| params_label(facts.parameter_count));
    let moe = facts.is_moe();
    let mut y = String::new();
    let mut line = |l: String| {
        y.push_str(&l);
        y.push('\n');
    };
    line(format!(
        "# {name}: written by `onboard new` from the GGUF header of {} ({}).",
        args.hub, remote.chosen.files[0]
    ));
    line("# Check name, family and size (they name the weights' directory), then add".into());
    line("# what the model card says: `thinking`, `samplers`, `benchmarks`.".into());
    line(format!("id: {}", scalar(&args.id)));
    line(format!("name: {}", scalar(&name)));
    line(format!("family: {}", scalar(&family)));
    line(format!("type: {}", if moe { "moe" } else { "dense" }));
    line(format!("size: {}", scalar(&size)));
    line("hub:".into());
    line(format!("  repo: {}", scalar(&args.hub)));
    if args.revision != "main" {
        line(format!("  revision: {}", scalar(&args.revision)));
    }
    line(format!("  quant: {}", scalar(&remote.chosen.quant)));
    line("  # The repository's quants (`alternatives: [...]` lists fallbacks, in order):".into());
    for q in &remote.quants {
        line(format!(
            "  #   {:<14} {:>9}",
            q.quant,
            crate::evaluate::gb(q.total_size())
        ));
    }
    if !args.replaces.is_empty() {
        let list: Vec<String> = args.replaces.iter().map(|r| scalar(r)).collect();
        line(format!("replaces: [{}]", list.join(", ")));
    }
    line("card:".into());
    line(format!("  architecture: {}", scalar(&facts.architecture)));
    line(format!(
        "  total_params: {}",
        scalar(&params_label(facts.parameter_count))
    ));
    if moe {
        let active = crate::evaluate::active_params(&remote.headers, &facts);
        line(format!(
            "  active_params: {}",
            scalar(&params_label(active))
        ));
    }
    line(format!("  layers: {}", facts.trunk_layers()));
    if let Some(ctx) = facts.context_length {
        line(format!("  context: {ctx}"));
    }
    line(format!(
        "  file_size_gb: {}",
        (remote.chosen.total_size() as f64 / 1e8).round() / 10.0
    ));
    Ok(y)
}

fn strip_suffix_ignore_case<'a>(s: &'a str, suffix: &str) -> Option<&'a str> {
    let cut = s.len().checked_sub(suffix.len())?;
    (s.is_char_boundary(cut) && s[cut..].eq_ignore_ascii_case(suffix)).then(|| &s[..cut])
}

/// `135M`, `1.5B`, `27B`: the way model names count parameters.
fn params_label(n: u64) -> String {
    let (value, unit) = if n >= 1_000_000_000 {
        (n as f64 / 1e9, "B")
    } else {
        (n as f64 / 1e6, "M")
    };
    let text = if value < 10.0 {
        format!("{:.1}", value)
    } else {
        format!("{:.0}", value)
    };
    format!("{}{unit}", text.trim_end_matches(".0"))
}

/// A YAML scalar for `s`: plain when it cannot be read as anything but
/// that string, else double-quoted (a JSON string is valid YAML).
fn scalar(s: &str) -> String {
    let plain = s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '/' | ' '))
        && !s.ends_with(' ')
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "true" | "false" | "yes" | "no" | "on" | "off" | "null" | "y" | "n"
        );
    if plain {
        s.to_string()
    } else {
        serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_counts_read_as_model_names_count_them() {
        assert_eq!(params_label(134_515_008), "135M");
        assert_eq!(params_label(1_544_000_000), "1.5B");
        assert_eq!(params_label(27_300_000_000), "27B");
        assert_eq!(params_label(7_000_000_000), "7B");
    }

    #[test]
    fn scalars_that_yaml_would_read_otherwise_are_quoted() {
        assert_eq!(scalar("SmolLM2"), "SmolLM2");
        assert_eq!(scalar("135M"), "\"135M\"");
        assert_eq!(scalar("no"), "\"no\"");
        assert_eq!(scalar("a: b"), "\"a: b\"");
        assert_eq!(strip_suffix_ignore_case("X-gguf", "-GGUF"), Some("X"));
    }
}
