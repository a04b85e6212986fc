//! Phase 1 on the plan's machine and models: headers served by a local Hub
//! mirror (sparse files sized as in the plan), evaluate's decisions and the
//! numbers behind each reason.

#[path = "support/eval_fixtures.rs"]
mod eval_fixtures;

use std::path::Path;

use eval_fixtures::PlanHub;
use onboard::evaluate::{self, EvaluateError, Evaluation, HubSource, Kind, Machine, Request};
use onboard::gguf::memory::{GIB, MIB};
use onboard::hub::{HubClient, HubConfig};
use onboard::tasks::profile::Strategy;
use onboard::workspace::Workspace;

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The plan's machine: this repository's onboard.yaml.
fn plan_machine() -> Machine {
    let ws = Workspace::open(repo_root()).expect("the repo's onboard.yaml");
    Machine::from_hardware(&ws.config.hardware, 1024 * MIB).unwrap()
}

fn request(id: &str) -> Request {
    let ws = Workspace::open(repo_root()).unwrap();
    let m = ws.load_manifest(id).unwrap();
    Request {
        repo: m.hub.repo,
        revision: m.hub.revision,
        quant: m.hub.quant,
        alternatives: m.hub.alternatives,
        files: m.hub.files,
        local_dir: None,
    }
}

fn client(hub: &PlanHub) -> HubClient {
    HubClient::new(HubConfig::for_endpoint(&hub.server.url(), &hub.hf_home()))
}

fn run(hub: &PlanHub, id: &str) -> Evaluation {
    let c = client(hub);
    let src = HubSource {
        client: &c,
        local_dir: None,
    };
    evaluate::evaluate(&src, &request(id), &plan_machine()).unwrap()
}

fn gib(b: u64) -> f64 {
    b as f64 / GIB as f64
}

fn quant<'a>(e: &'a Evaluation, q: &str) -> &'a evaluate::QuantEval {
    e.quants.iter().find(|x| x.candidate.quant == q).unwrap()
}

#[test]
fn print_plan_figures() {
    let hub = PlanHub::start();
    for id in ["qwen3.5-122b-a10b", "qwen3.5-35b-a3b", "qwen3.5-27b"] {
        let e = run(&hub, id);
        println!("{}", evaluate::report::markdown(&e, id));
    }
}
