//! Scores model replies with onboard's benchmark path (extraction, sandbox,
//! EvalPlus-style comparison) without an engine; used by
//! `benches/evalplus_agreement.sh` to compare with EvalPlus's own evaluator.
//!
//! `cargo run --example bench_judge -- DATASET REPLIES.jsonl > verdicts.jsonl`
//! REPLIES lines: `{"task_id": …, "reply": …}` (other fields are kept).
//! Needs root, like the sandbox.

use onboard::bench::dataset::Dataset;
use onboard::bench::prompt;
use onboard::bench::sandbox::{Sandbox, SandboxConfig};
use std::path::Path;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dataset, replies] = args.as_slice() else {
        return Err("usage: bench_judge DATASET REPLIES.jsonl".into());
    };
    let dataset = Dataset::read(Path::new(dataset))?;
    let sandbox = Sandbox::new(SandboxConfig::new(2))?;
    let text = std::fs::read_to_string(replies)?;
    let cases: Vec<serde_json::Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let outputs: Vec<Result<serde_json::Value, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = cases
            .iter()
            .map(|case| {
                let (dataset, sandbox) = (&dataset, &sandbox);
                s.spawn(move || {
                    let id = case["task_id"].as_str().unwrap_or_default();
                    let problem = dataset
                        .problems
                        .iter()
                        .find(|p| p.task_id == id)
                        .ok_or_else(|| format!("no task {id}"))?;
                    let reply = case["reply"].as_str().unwrap_or_default();
                    let code = prompt::code_from_reply(reply, &problem.entry_point);
                    let v = sandbox.judge(problem, &code).map_err(|e| e.to_string())?;
                    let mut out = case.clone();
                    out["solution"] = v.solution.into();
                    out["base"] = serde_json::to_value(v.base.status).unwrap_or_default();
                    out["plus"] =
                        serde_json::to_value(v.plus.map(|p| p.status)).unwrap_or_default();
                    Ok(out)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("panicked".into())))
            .collect()
    });
    for o in outputs {
        println!("{}", o?);
    }
    Ok(())
}
