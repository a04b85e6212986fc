//! The memory model against the machine: a prediction beside what an engine
//! allocated, buffer by buffer, and the refusals of a load that cannot fit
//! in the RAM that is free.

use super::memory::Buffers;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Predicted vs allocated memory, buffer by buffer.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct MemoryCheck {
    pub rows: Vec<MemoryRow>,
    /// The difference a row may show before it is flagged.
    pub margin: String,
    /// Rows beyond the margin: each is a bug in the memory model.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flagged: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct MemoryRow {
    /// `weights`, `kv_cache`, `recurrent`, `compute`, `output` or `total`.
    pub buffer: String,
    pub predicted_mib: f64,
    pub allocated_mib: f64,
}

/// A buffer may differ from its prediction by this fraction…
pub const MEMORY_MARGIN_FRACTION: f64 = 0.10;
/// …or by this many MiB, whichever is larger (tiny buffers round coarsely).
pub const MEMORY_MARGIN_FLOOR_MIB: f64 = 1.0;

impl MemoryCheck {
    /// Compares a prediction with what the engine reported.
    pub fn new(predicted: &Buffers, allocated: &Buffers) -> MemoryCheck {
        let mib = |b: u64| (b as f64 / (1024.0 * 1024.0) * 100.0).round() / 100.0;
        let (p, a) = (predicted, allocated);
        let rows: Vec<MemoryRow> = [
            ("weights", p.weights, a.weights),
            ("kv_cache", p.kv_cache, a.kv_cache),
            ("recurrent", p.recurrent, a.recurrent),
            ("compute", p.compute, a.compute),
            ("output", p.output, a.output),
            ("total", p.total(), a.total()),
        ]
        .into_iter()
        .map(|(name, p, a)| MemoryRow {
            buffer: name.into(),
            predicted_mib: mib(p),
            allocated_mib: mib(a),
        })
        .collect();
        let flagged = rows
            .iter()
            .filter(|r| !within_margin(r.predicted_mib, r.allocated_mib))
            .map(|r| {
                format!(
                    "{}: predicted {:.2} MiB, llama.cpp allocated {:.2} MiB",
                    r.buffer, r.predicted_mib, r.allocated_mib
                )
            })
            .collect();
        MemoryCheck {
            rows,
            margin: format!(
                "±{:.0} % or ±{MEMORY_MARGIN_FLOOR_MIB} MiB, whichever is larger",
                MEMORY_MARGIN_FRACTION * 100.0
            ),
            flagged,
        }
    }

    /// One line per buffer for the step log.
    pub fn table(&self) -> String {
        let mut out = String::from("memory (MiB)   predicted   allocated");
        for r in &self.rows {
            out.push_str(&format!(
                "\n  {:<12} {:>10.2} {:>11.2}",
                r.buffer, r.predicted_mib, r.allocated_mib
            ));
        }
        out
    }
}

/// Whether `predicted` is within the stated margin of `allocated` (MiB).
pub fn within_margin(predicted: f64, allocated: f64) -> bool {
    let allowed = (allocated * MEMORY_MARGIN_FRACTION).max(MEMORY_MARGIN_FLOOR_MIB);
    (predicted - allocated).abs() <= allowed
}

/// A load refused before it starts: it would end in a failed allocation or
/// the kernel's out-of-memory killer.
#[derive(Debug, thiserror::Error)]
pub enum DoesNotFit {
    #[error(
        "{gguf} cannot fit: its weights are {:.1} GiB and only {:.1} GiB of RAM is free, so the \
         embedded engine (CPU) would be killed loading it. Free memory, choose a smaller quant \
         in the manifest, or test it where it fits (a CUDA build, or `engine: llama-server` \
         with GPU offload)",
        gib(*weights),
        gib(*available)
    )]
    Weights {
        gguf: String,
        weights: u64,
        available: u64,
    },
    #[error(
        "{gguf} at {context} tokens of context needs about {} MiB (weights {}, KV cache {}, recurrent state {}, \
         compute {}) and only {} MiB of RAM is free. Lower CTX_SIZE in the profile (or `context:` of the step), \
         free memory, or test it where it fits",
        mib(predicted.total()),
        mib(predicted.weights),
        mib(predicted.kv_cache),
        mib(predicted.recurrent),
        mib(predicted.compute),
        mib(*available)
    )]
    Context {
        gguf: String,
        context: u64,
        predicted: Box<Buffers>,
        available: u64,
    },
}

fn gib(b: u64) -> f64 {
    b as f64 / f64::from(1u32 << 30)
}

fn mib(b: u64) -> u64 {
    b / (1024 * 1024)
}

/// Refuses a model whose weights alone exceed the RAM that is free
/// (`available`; `None`: unknown, nothing refused).
pub fn weights_fit_in_ram(gguf: &Path, available: Option<u64>) -> Result<(), DoesNotFit> {
    let (Ok(meta), Some(available)) = (std::fs::metadata(gguf), available) else {
        return Ok(());
    };
    if meta.len() > available {
        return Err(DoesNotFit::Weights {
            gguf: gguf.display().to_string(),
            weights: meta.len(),
            available,
        });
    }
    Ok(())
}

/// Refuses a context whose predicted buffers (weights, KV cache, recurrent
/// state, compute) exceed the free RAM: llama.cpp would fail to allocate,
/// or the kernel would kill the worker part-way.
pub fn context_fits_in_ram(
    gguf: &Path,
    context: u64,
    predicted: &Buffers,
    available: Option<u64>,
) -> Result<(), DoesNotFit> {
    let Some(available) = available else {
        return Ok(());
    };
    if predicted.total() <= available {
        return Ok(());
    }
    Err(DoesNotFit::Context {
        gguf: gguf.display().to_string(),
        context,
        predicted: Box::new(predicted.clone()),
        available,
    })
}
