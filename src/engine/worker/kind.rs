//! The embedded engines a worker can run.

/// Which embedded engine a worker runs. The one list of them: each
/// engine's module takes its name and version from here, so the worker
/// layer names neither engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerEngine {
    MistralRs,
    LlamaCpp,
}

impl WorkerEngine {
    /// The name results, logs and `--engine` use.
    pub const fn name(self) -> &'static str {
        match self {
            WorkerEngine::MistralRs => "mistralrs",
            WorkerEngine::LlamaCpp => "llama-cpp",
        }
    }

    pub fn from_name(name: &str) -> Option<WorkerEngine> {
        [WorkerEngine::MistralRs, WorkerEngine::LlamaCpp]
            .into_iter()
            .find(|e| e.name() == name)
    }

    /// Whether this build has it.
    pub fn built(self) -> bool {
        match self {
            WorkerEngine::MistralRs => cfg!(feature = "embedded"),
            WorkerEngine::LlamaCpp => cfg!(feature = "llama-cpp"),
        }
    }

    /// The engine and version this build embeds, for reports.
    pub const fn version(self) -> &'static str {
        match self {
            WorkerEngine::MistralRs => "mistralrs 0.8.1",
            WorkerEngine::LlamaCpp => "llama.cpp (llama-cpp-sys-2 0.1.161)",
        }
    }

    /// The cargo feature that builds it.
    pub fn feature(self) -> &'static str {
        match self {
            WorkerEngine::MistralRs => "embedded",
            WorkerEngine::LlamaCpp => "llama-cpp",
        }
    }
}
