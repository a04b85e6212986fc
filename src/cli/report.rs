//! `onboard report`: the HumanEval comparison over every benchmarked model.

use super::load;
use super::{error, Format, FormatArg, EXIT_FAILED, EXIT_OK};
use crate::bench::report;
use clap::Args;
use std::path::Path;

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// Where the benchmark summaries are (workspace-relative).
    #[arg(long, default_value = "benchmarks/results", value_name = "DIR")]
    results: String,
    /// Where report.md and report.svg go (workspace-relative).
    #[arg(long, default_value = "benchmarks", value_name = "DIR")]
    out: String,
    #[command(flatten)]
    format: FormatArg,
}

pub fn execute(dir: &Path, args: &ReportArgs) -> i32 {
    let ws = match load::open_workspace(dir) {
        Ok(ws) => ws,
        Err(code) => return code,
    };
    let paths = crate::workspace::resolve_inside(&ws.root, &args.results)
        .and_then(|r| crate::workspace::resolve_inside(&ws.root, &args.out).map(|o| (r, o)));
    let (results, out) = match paths {
        Ok(p) => p,
        Err(e) => {
            error(&e);
            return super::EXIT_USAGE;
        }
    };
    let rows = match report::rows(&ws, &results) {
        Ok(r) => r,
        Err(e) => {
            error(&e.to_string());
            return EXIT_FAILED;
        }
    };
    let changed = match report::write(&rows, &out) {
        Ok(c) => c,
        Err(e) => {
            error(&e.to_string());
            return EXIT_FAILED;
        }
    };
    match args.format.get() {
        Format::Json => println!(
            "{}",
            serde_json::json!({
                "report": format!("{}/report.md", args.out),
                "chart": format!("{}/report.svg", args.out),
                "changed": changed,
                "models": rows,
            })
        ),
        Format::Human => {
            print!("{}", report::markdown(&rows, "report.svg"));
            eprintln!(
                "{} {}/report.md and {}/report.svg ({} models)",
                if changed { "wrote" } else { "unchanged:" },
                args.out,
                args.out,
                rows.len()
            );
        }
    }
    EXIT_OK
}
