//! The child process's entry (`__engine-worker`): the named embedded
//! engine's side of the worker protocol, where this build has it.

use super::worker::kind::WorkerEngine;
use std::path::Path;

/// What the parent asked the child to run (the subcommand's arguments).
#[derive(Debug, Clone, Copy)]
pub struct ChildArgs<'a> {
    /// `mistralrs` or `llama-cpp`.
    pub engine: &'a str,
    pub dir: &'a Path,
    pub file: &'a str,
    pub cpu: bool,
    /// Tokens of context to allocate (llama.cpp).
    pub context: Option<u64>,
    pub threads: Option<usize>,
    /// Only check that the engine can load the file, then exit.
    pub check: bool,
    /// Draft this many tokens per round with the model's MTP block (llama.cpp).
    pub mtp_draft: Option<u32>,
}

/// Runs the worker until its stdin closes; its exit status, or why it
/// cannot run at all.
pub fn run(args: &ChildArgs) -> Result<i32, String> {
    match WorkerEngine::from_name(args.engine) {
        Some(WorkerEngine::MistralRs) => mistralrs(args),
        Some(WorkerEngine::LlamaCpp) => llama_cpp(args),
        None => Err(format!("unknown embedded engine `{}`", args.engine)),
    }
}

fn mistralrs(args: &ChildArgs) -> Result<i32, String> {
    #[cfg(feature = "embedded")]
    {
        Ok(super::mistralrs::worker::run(
            args.dir, args.file, args.cpu, args.check,
        ))
    }
    #[cfg(not(feature = "embedded"))]
    {
        let _ = args;
        Err("this build has no mistral.rs engine (built without the `embedded` feature)".into())
    }
}

fn llama_cpp(args: &ChildArgs) -> Result<i32, String> {
    #[cfg(feature = "llama-cpp")]
    {
        let gguf = args.dir.join(args.file);
        Ok(super::llama_cpp::worker::run(
            &super::llama_cpp::worker::Options {
                gguf: &gguf,
                context: args.context,
                threads: args.threads,
                gpu: !args.cpu,
                check_only: args.check,
                mtp_draft: args.mtp_draft,
            },
        ))
    }
    #[cfg(not(feature = "llama-cpp"))]
    {
        let _ = args;
        Err("this build has no llama.cpp engine (built without the `llama-cpp` feature)".into())
    }
}
