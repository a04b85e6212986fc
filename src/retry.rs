//! How often and how patiently to try again: one policy type for the two
//! places onboard retries.
//!
//! * The workflow engine retries a **step** (`retry:` of a workflow step;
//!   default one attempt, no retry) when its task fails with an error it
//!   calls retryable. A step's attempts share its `timeout`.
//! * The Hub client retries one **request** (429, 5xx, a cut connection, a
//!   stall) within a step, [`RetryPolicy::HUB_REQUEST`] by default; a
//!   download resumes from the bytes already verified, so a retry costs
//!   only what was lost.
//!
//! The two stack on purpose: a request gives up after a burst of failures
//! within a minute or so; a step retry, minutes later, outlasts an outage
//! that long, and resumes the download where the last attempt stopped.

use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// The wait before the second attempt.
    pub backoff: Duration,
    /// Each wait is the last one times this.
    pub factor: f64,
    /// The longest single wait (also caps a server's `Retry-After`).
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    /// A workflow step's: one attempt.
    fn default() -> Self {
        RetryPolicy {
            attempts: 1,
            backoff: Duration::from_secs(1),
            factor: 2.0,
            max_backoff: Duration::from_secs(300),
        }
    }
}

impl RetryPolicy {
    /// A Hub request's: six attempts from half a second, doubling, at most
    /// 30 s apart.
    pub const HUB_REQUEST: RetryPolicy = RetryPolicy {
        attempts: 6,
        backoff: Duration::from_millis(500),
        factor: 2.0,
        max_backoff: Duration::from_secs(30),
    };

    /// The wait before attempt `next` (2 = first retry). Durations and the
    /// factor come from the workflow file unbounded, so the float can exceed
    /// what a `Duration` holds: the cap then applies as written.
    pub fn delay_before(&self, next: u32) -> Duration {
        let exponent = i32::try_from(next.saturating_sub(2)).unwrap_or(i32::MAX);
        let secs = self.backoff.as_secs_f64() * self.factor.powi(exponent);
        // 0 × ∞ (no backoff, a factor grown past f64) is no wait, not the cap.
        let secs = if secs.is_nan() { 0.0 } else { secs };
        let capped = secs.min(self.max_backoff.as_secs_f64());
        Duration::try_from_secs_f64(capped).map_or(self.max_backoff, |d| d.min(self.max_backoff))
    }

    /// [`Self::delay_before`] with up to +25 % jitter, still within the cap,
    /// so parallel workers do not retry in lockstep.
    pub fn jittered_delay_before(&self, next: u32) -> Duration {
        let delay = self.delay_before(next);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let jitter = delay.mul_f64(f64::from(nanos % 1000) / 4000.0);
        (delay + jitter).min(self.max_backoff.max(delay))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy {
            attempts: 5,
            backoff: Duration::from_millis(100),
            factor: 2.0,
            max_backoff: Duration::from_millis(300),
        };
        assert_eq!(p.delay_before(2), Duration::from_millis(100));
        assert_eq!(p.delay_before(3), Duration::from_millis(200));
        assert_eq!(p.delay_before(4), Duration::from_millis(300));
    }

    #[test]
    fn backoff_beyond_what_a_duration_holds_is_capped_not_a_panic() {
        // Found while writing the workflow fuzz target: `validate` accepts
        // these values, and `run` panicked at the first retry.
        let p = RetryPolicy {
            attempts: u32::MAX,
            backoff: Duration::from_secs(1),
            factor: 1e300,
            max_backoff: Duration::from_secs(u64::MAX),
        };
        assert_eq!(p.delay_before(3), Duration::from_secs(u64::MAX));
        assert_eq!(p.delay_before(u32::MAX), Duration::from_secs(u64::MAX));
        let zero = RetryPolicy {
            backoff: Duration::ZERO,
            factor: f64::MAX,
            ..p
        };
        assert_eq!(zero.delay_before(u32::MAX), Duration::ZERO);
    }

    #[test]
    fn jitter_stays_within_a_quarter_and_the_cap() {
        let p = RetryPolicy::HUB_REQUEST;
        for next in 2..12 {
            let (exact, jittered) = (p.delay_before(next), p.jittered_delay_before(next));
            assert!(
                jittered >= exact && jittered <= exact.mul_f64(1.25),
                "{next}"
            );
            assert!(jittered <= p.max_backoff);
        }
    }
}
