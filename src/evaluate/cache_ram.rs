//! llama-server's prompt cache (`--cache-ram`, MiB; 8192 by default): the
//! saved states of earlier prompts, kept in host RAM so a conversation's
//! next turn does not prefill from zero. A saved state costs the KV cache of
//! its tokens plus, for a hybrid model, the recurrent state, so a long
//! context outgrows the default: past it every turn re-prefills the whole
//! prompt. Sized here from the memory model and the host RAM the placement
//! leaves free.

use crate::gguf::facts::ModelFacts;
use crate::gguf::memory::{kv_bytes_per_token, recurrent_state_bytes, GIB, MIB};
use crate::gguf::types::GgmlType;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// llama-server's `--cache-ram` default, in MiB.
pub const DEFAULT_MIB: u64 = 8192;

/// The prompt cache the production profile gets, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CacheRam {
    /// `--cache-ram` to write; `None` keeps llama-server's default.
    pub mib: Option<u64>,
    /// What a cached prompt costs per token (the KV of every attention
    /// layer, f16).
    pub bytes_per_token: u64,
    /// What a cached prompt costs once (the recurrent state; 0 without).
    pub state_bytes: u64,
    /// The longest prompt the default cache holds, in tokens.
    pub longest_at_default: u64,
    /// The longest prompt the chosen size holds (the default's when none is
    /// written), in tokens.
    pub longest_at_chosen: u64,
    /// The rule and its numbers, for the profile's reason and the report.
    pub reason: String,
}

/// Tokens of the longest prompt whose saved state fits in `cache_mib`, at
/// most the context.
pub fn longest_prompt(cache_mib: u64, bytes_per_token: u64, state_bytes: u64, n_ctx: u64) -> u64 {
    let room = cache_mib.saturating_mul(MIB).saturating_sub(state_bytes);
    room.checked_div(bytes_per_token)
        .unwrap_or(n_ctx)
        .min(n_ctx)
}

/// The cache for a context of `n_ctx` tokens with `host_free` bytes of host
/// RAM left after the placement (weights, KV, compute and the OS reserve):
/// one full-context prompt's state, rounded up to a GiB, when the default
/// cannot hold it and the host has the room; capped at the room otherwise.
/// `None` where the memory model cannot price a token.
pub fn size(f: &ModelFacts, n_ctx: u64, host_free: i64) -> Option<CacheRam> {
    let per_token = *kv_bytes_per_token(f, GgmlType::F16, GgmlType::F16).value()?;
    let state = *recurrent_state_bytes(f, 1).value()?;
    let full = n_ctx.saturating_mul(per_token).saturating_add(state);
    let longest = |mib: u64| longest_prompt(mib, per_token, state, n_ctx);
    let at_default = longest(DEFAULT_MIB);
    let mib = |b: u64| b.div_ceil(MIB);
    let cost = format!(
        "a cached prompt costs {:.1} KiB a token{} ({} MiB at the full {n_ctx})",
        per_token as f64 / 1024.0,
        if state > 0 {
            format!(
                " plus {:.1} MiB of recurrent state",
                state as f64 / MIB as f64
            )
        } else {
            String::new()
        },
        mib(full)
    );
    let free = u64::try_from(host_free).unwrap_or(0);
    let (chosen, reason) = if full <= DEFAULT_MIB * MIB {
        (
            None,
            format!("the default {DEFAULT_MIB} MiB holds a full-context prompt: {cost}"),
        )
    } else {
        let want = full.div_ceil(GIB) * GIB;
        if want <= free {
            let n = want / MIB;
            (
                Some(n),
                format!(
                    "{cost}; the default {DEFAULT_MIB} MiB caches prompts up to {at_default} tokens, so longer \
                     conversations re-prefill every turn; {n} MiB holds one full-context prompt and fits in \
                     the {} MiB of host RAM the placement leaves free",
                    free / MIB
                ),
            )
        } else if free / GIB * 1024 > DEFAULT_MIB {
            let n = free / GIB * 1024;
            (
                Some(n),
                format!(
                    "{cost}; the host has {} MiB free after the placement, so the cache takes {n} MiB \
                     (prompts up to {} tokens) instead of the default's {at_default}",
                    free / MIB,
                    longest(n)
                ),
            )
        } else {
            (
                None,
                format!(
                    "{cost}; the default {DEFAULT_MIB} MiB caches prompts up to {at_default} tokens and the \
                     host has no more free RAM ({} MiB) to give it",
                    free / MIB
                ),
            )
        }
    };
    Some(CacheRam {
        mib: chosen,
        bytes_per_token: per_token,
        state_bytes: state,
        longest_at_default: at_default,
        longest_at_chosen: chosen.map_or(at_default, longest),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_prompt_counts_the_state_once_and_stops_at_the_context() {
        // 100 KiB a token, 50 MiB of state, 8 GiB: (8192 − 50) MiB / 100 KiB.
        assert_eq!(longest_prompt(8192, 100 * 1024, 50 * MIB, 262_144), 83_374);
        assert_eq!(longest_prompt(8192, 1024, 0, 4096), 4096);
        assert_eq!(longest_prompt(1, 1024, 2 * MIB, 4096), 0);
    }
}
