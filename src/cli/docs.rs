//! `onboard links` and `onboard retire`.

use super::load;
use super::{error, Format, FormatArg, EXIT_FAILED, EXIT_OK, EXIT_USAGE};
use crate::docs::catalog::Catalog;
use crate::docs::retire::{self, ManifestChange, RetirePlan, Verdict};
use crate::docs::tree::{Change, Changeset, Disk, Scope};
use crate::docs::{check, Report};
use crate::workspace::{markdown, models_conf, Workspace};
use clap::Args;
use std::path::Path;

/// Where the benchmark client config and README live (bench-profile's
/// defaults).
const BENCH_CLIENT: &str = "benchmarks/bench-client.conf";
const BENCH_README: &str = "benchmarks/README.md";

#[derive(Args, Debug)]
pub struct LinksArgs {
    #[command(flatten)]
    format: FormatArg,
}

/// The weights a download kept after the Hub replaced them (workspace
/// path, bytes): disk that only a person can decide to free.
fn replaced_files(ws: &Workspace) -> Vec<(String, u64)> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<(String, u64)>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.filter_map(Result::ok) {
            let path = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => walk(&path, root, out),
                Ok(t) if t.is_file() => {
                    let name = e.file_name();
                    if name.to_string_lossy().contains(crate::hub::REPLACED_INFIX) {
                        let size = e.metadata().map(|m| m.len()).unwrap_or(0);
                        let shown = path.strip_prefix(root).unwrap_or(&path);
                        out.push((shown.to_string_lossy().into_owned(), size));
                    }
                }
                _ => {}
            }
        }
    }
    let mut out = Vec::new();
    walk(&ws.models_dir(), &ws.root, &mut out);
    out.sort();
    out
}

fn disk(ws: &Workspace) -> Disk {
    Disk::new(&ws.root, Scope::from_paths(&ws.config.paths))
}

fn print_report(report: &Report, format: Format) {
    match format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(report).unwrap_or_default()
        ),
        Format::Human => {
            for b in &report.broken {
                println!("{b}");
            }
            println!(
                "{} link(s) checked in {} markdown file(s): {}",
                report.links,
                report.files,
                if report.broken.is_empty() {
                    "all resolve".to_string()
                } else {
                    format!("{} broken", report.broken.len())
                }
            );
        }
    }
}

/// Checks every relative link and anchor in the workspace's markdown.
pub fn links(dir: &Path, args: &LinksArgs) -> i32 {
    let ws = match load::open_workspace(dir) {
        Ok(ws) => ws,
        Err(code) => return code,
    };
    let report = check(&disk(&ws));
    print_report(&report, args.format.get());
    if report.broken.is_empty() {
        EXIT_OK
    } else {
        EXIT_FAILED
    }
}

#[derive(Args, Debug)]
pub struct RetireArgs {
    /// The model to retire (a manifest id). Without --yes, shows what
    /// would change and changes nothing.
    #[arg(conflicts_with = "advise", required_unless_present = "advise")]
    model: Option<String>,
    /// Compare each onboarded model with the models it `replaces` and
    /// recommend what to retire.
    #[arg(long)]
    advise: bool,
    /// Make the changes: delete the weights, remove the profiles, move the
    /// card to RETIRED/, fix links, refresh tables, mark the manifest.
    #[arg(long, requires = "model")]
    yes: bool,
    #[command(flatten)]
    format: FormatArg,
}

fn catalog(ws: &Workspace) -> Result<Catalog, i32> {
    Catalog::load(ws, &disk(ws)).map_err(|e| {
        error(&e.to_string());
        EXIT_FAILED
    })
}

pub fn retire(dir: &Path, args: &RetireArgs) -> i32 {
    let ws = match load::open_workspace(dir) {
        Ok(ws) => ws,
        Err(code) => return code,
    };
    let catalog = match catalog(&ws) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if args.advise {
        let report = retire::advise(&catalog);
        let replaced = replaced_files(&ws);
        match args.format.get() {
            Format::Json => {
                let mut doc = serde_json::to_value(&report).unwrap_or_default();
                if let (Some(map), false) = (doc.as_object_mut(), replaced.is_empty()) {
                    let files = replaced
                        .iter()
                        .map(|(path, size)| serde_json::json!({"path": path, "bytes": size}))
                        .collect();
                    map.insert("replaced_files".into(), serde_json::Value::Array(files));
                }
                println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default())
            }
            Format::Human => {
                print!("{report}");
                if !replaced.is_empty() {
                    println!("\nkept after the Hub replaced them (`defaults.replaced_files: keep`); delete each once its new file serves well:");
                    for (path, size) in &replaced {
                        println!("  {path}  {:.1} GB", *size as f64 / 1e9);
                    }
                }
            }
        }
        return EXIT_OK;
    }
    let Some(id) = args.model.as_deref() else {
        error("name a model to retire, or pass --advise");
        return EXIT_USAGE;
    };
    let client_path = ws.path(BENCH_CLIENT);
    let client = match models_conf::read(&client_path) {
        Ok(c) => c,
        Err(e) => {
            error(&e.to_string());
            return EXIT_FAILED;
        }
    };
    let plan = match retire::plan(&ws, &catalog, Changeset::new(disk(&ws)), id, &client) {
        Ok(p) => p,
        Err(retire::RetireError::Unknown(id, known)) => {
            error(&format!(
                "no model `{id}` in the workspace (known: {known})"
            ));
            return EXIT_USAGE;
        }
        Err(e) => {
            error(&e.to_string());
            return EXIT_FAILED;
        }
    };
    let advice = retire::advise(&catalog);
    let verdicts: Vec<String> = advice
        .advice
        .iter()
        .filter(|a| a.old == id)
        .map(|a| {
            format!(
                "{} ({} compared with {})",
                a.recommendation,
                serde_json::to_value(a.verdict)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                a.replacement_name
            )
        })
        .collect();
    let keeper = advice.keepers.iter().any(|k| k.id == id);
    let advised = advice
        .advice
        .iter()
        .any(|a| a.old == id && a.verdict == Verdict::Retire);

    if args.format == Format::Human {
        print_plan(&ws, &plan, args.yes);
        if keeper {
            println!("note: `{id}` is a likely keeper (no manifest names it in `replaces`); retirement is not advised");
        } else if !advised {
            for v in &verdicts {
                println!("note: the advice for `{id}` is: {v}");
            }
        }
    }
    if !args.yes {
        if args.format == Format::Json {
            println!("{}", plan_json(&plan, false));
        } else {
            println!("\nDry run: nothing was changed. Run `onboard retire {id} --yes` to make these changes.");
        }
        return EXIT_OK;
    }

    // Configuration first, so no profile points at deleted weights.
    let conf_path = ws.path(&ws.config.paths.models_conf);
    let ids: Vec<String> = plan.profiles.iter().map(|p| p.id.clone()).collect();
    if !ids.is_empty() {
        if let Err(e) = models_conf::update(&conf_path, |c| {
            for p in &ids {
                c.remove_section(p);
            }
            Ok(())
        }) {
            error(&format!("{e}; nothing else was changed"));
            return EXIT_FAILED;
        }
    }
    if !plan.bench_client.is_empty() {
        let removed = models_conf::update(&client_path, |c| {
            for p in &plan.bench_client {
                c.remove_section(p);
            }
            Ok(())
        });
        if let Err(e) = removed.and_then(|_| refresh_bench_readme(&ws, &conf_path, &client_path)) {
            error(&e.to_string());
            return EXIT_FAILED;
        }
    }
    if let Err((path, e)) = plan.changes.apply() {
        error(&format!(
            "{}: {e}; the profiles are already removed, rerun `onboard retire {id} --yes` after fixing this",
            path.display()
        ));
        return EXIT_FAILED;
    }
    let report = check(&disk(&ws));
    if args.format == Format::Json {
        println!("{}", plan_json(&plan, true));
    } else {
        println!("\nDone: `{id}` is retired.");
        print_report(&report, Format::Human);
    }
    if report.broken.is_empty() {
        EXIT_OK
    } else {
        EXIT_FAILED
    }
}

fn refresh_bench_readme(
    ws: &Workspace,
    conf_path: &Path,
    client_path: &Path,
) -> Result<(), models_conf::ConfError> {
    let readme = ws.path(BENCH_README);
    let Ok(text) = std::fs::read_to_string(&readme) else {
        return Ok(());
    };
    if !text.contains("<!-- onboard:bench-models -->") {
        return Ok(());
    }
    let table = crate::profile::bench::readme_table(
        &models_conf::read(client_path)?,
        &models_conf::read(conf_path)?,
    );
    let invalid = |message: String| models_conf::ConfError::Invalid {
        path: readme.clone(),
        message,
    };
    let updated = markdown::replace_block(&text, "bench-models", &table).map_err(invalid)?;
    crate::atomic::write_if_changed(&readme, updated.as_bytes()).map_err(|source| {
        models_conf::ConfError::Io {
            path: readme.clone(),
            source,
        }
    })?;
    Ok(())
}

fn print_plan(ws: &Workspace, plan: &RetirePlan, doing: bool) {
    let verb = |now: &str, later: &str| {
        if doing {
            now.to_string()
        } else {
            later.to_string()
        }
    };
    println!(
        "Retiring {} (`{}`){}:",
        plan.name,
        plan.id,
        if doing { "" } else { ", dry run" }
    );
    if let Some((dir, bytes)) = &plan.weights {
        println!(
            "  {} {} ({:.1} GB)",
            verb("delete", "would delete"),
            dir.display(),
            *bytes as f64 / 1e9
        );
    }
    for p in &plan.profiles {
        println!(
            "  {} [{}] from {} (line {})",
            verb("remove", "would remove"),
            p.id,
            ws.config.paths.models_conf,
            p.line
        );
    }
    for p in &plan.bench_client {
        println!(
            "  {} [{p}] from {BENCH_CLIENT}",
            verb("remove", "would remove")
        );
    }
    if let Some((from, to)) = &plan.card_move {
        println!(
            "  {} {} -> {}",
            verb("move", "would move"),
            from.display(),
            to.display()
        );
    }
    for e in &plan.link_edits {
        println!(
            "  {} {}:{}: {} -> {}",
            verb("rewrite link", "would rewrite link"),
            e.file.display(),
            e.line,
            e.old,
            e.new
        );
    }
    for t in &plan.tables {
        println!(
            "  {} the models table in {}",
            verb("refresh", "would refresh"),
            t.display()
        );
    }
    match &plan.manifest {
        ManifestChange::Set { path, line } => println!(
            "  {} `status: retired` in {}:{line}",
            verb("set", "would set"),
            path.display()
        ),
        ManifestChange::AlreadyRetired => println!("  the manifest already says `status: retired`"),
        ManifestChange::Unchanged(why) => println!("  note: {why}"),
    }
    for n in &plan.notes {
        println!("  note: {n}");
    }
    let changes = plan.changes.changes();
    if changes.is_empty() && plan.profiles.is_empty() && plan.bench_client.is_empty() {
        println!("  nothing to change");
    }
}

fn plan_json(plan: &RetirePlan, applied: bool) -> String {
    let changes: Vec<serde_json::Value> = plan
        .changes
        .changes()
        .into_iter()
        .map(|c| match c {
            Change::Create(p) => serde_json::json!({"create": p}),
            Change::Modify(p) => serde_json::json!({"modify": p}),
            Change::Remove(p) => serde_json::json!({"remove": p}),
            Change::RemoveDir(p) => serde_json::json!({"remove_dir": p}),
        })
        .collect();
    let manifest = match &plan.manifest {
        ManifestChange::Set { path, line } => serde_json::json!({"set": path, "line": line}),
        ManifestChange::AlreadyRetired => serde_json::json!("already_retired"),
        ManifestChange::Unchanged(why) => serde_json::json!({"unchanged": why}),
    };
    let value = serde_json::json!({
        "model": plan.id,
        "applied": applied,
        "weights": plan.weights.as_ref().map(|(d, b)| serde_json::json!({"dir": d, "bytes": b})),
        "profiles": plan.profiles.iter().map(|p| &p.id).collect::<Vec<_>>(),
        "bench_client": plan.bench_client,
        "card_move": plan.card_move.as_ref().map(|(f, t)| serde_json::json!({"from": f, "to": t})),
        "link_edits": plan.link_edits,
        "tables": plan.tables,
        "manifest": manifest,
        "changes": changes,
        "notes": plan.notes,
    });
    serde_json::to_string_pretty(&value).unwrap_or_default()
}
