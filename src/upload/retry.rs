//! When to try a request again, and how long to wait.
//!
//! Retried: 408, 429, 500, 502, 503, 504 and transport failures (connection refused or reset,
//! timeouts), and a transactional checksum mismatch (the bytes were damaged on the way). Waits
//! grow exponentially from [`Policy::base_delay`] to [`Policy::max_delay`] with full jitter
//! (a uniform draw below the cap, as the AWS and Azure SDKs do, so that N threads hit by the
//! same 503 do not come back together); a `Retry-After` from the service is a floor. Each
//! attempt has a timeout ([`Policy::attempt_timeout`]), each request a budget for all its
//! attempts and waits ([`Policy::request_budget`]), and the whole upload a budget for the time
//! spent retrying ([`Policy::total_budget`], measured by a [`RetryClock`]: a service that lets
//! every request through on its second attempt keeps each within its own budget, yet the
//! upload crawls); the whole upload stops when one is exhausted. Everything else (401, 403,
//! 404, 409, 412, other 4xx) is final.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Retry and timeout settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// One HTTP exchange (connect, send, receive): past this it is abandoned and retried.
    pub attempt_timeout: Duration,
    /// All attempts of one request and the waits between them.
    pub request_budget: Duration,
    /// First wait.
    pub base_delay: Duration,
    /// Longest wait drawn by the backoff (a `Retry-After` may ask for more, up to the budget).
    pub max_delay: Duration,
    /// The whole upload's time spent retrying: wall-clock time during which at least one
    /// request was between a failed attempt and its end.
    pub total_budget: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            // a 4 MiB Put Page at 1 Mbit/s takes ~35 s
            attempt_timeout: Duration::from_secs(120),
            request_budget: Duration::from_secs(15 * 60),
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            total_budget: Duration::from_secs(3600),
        }
    }
}

/// HTTP statuses worth another attempt (Azure Storage's retry guidance).
pub fn retryable_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
}

impl Policy {
    /// The wait before attempt `attempt` (1 = the first retry): a jittered exponential draw,
    /// at least `retry_after`.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>, rng: &mut Rng) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        let cap = exp.min(self.max_delay);
        let cap_ms = u64::try_from(cap.as_millis()).unwrap_or(u64::MAX);
        // full jitter, but never below half the base: no hot loop
        let floor_ms = u64::try_from(self.base_delay.as_millis() / 2).unwrap_or(0);
        let drawn = Duration::from_millis(floor_ms.max(rng.below(cap_ms.saturating_add(1))));
        match retry_after {
            Some(r) if r > drawn => r,
            _ => drawn,
        }
    }
}

/// The wall-clock time during which at least one request was retrying, over a whole upload
/// (the union of the requests' retry intervals: 8 requests retrying together for a minute
/// spend one minute, not eight).
#[derive(Debug, Default)]
pub struct RetryClock(Mutex<ClockState>);

#[derive(Debug, Default)]
struct ClockState {
    /// Requests retrying now.
    active: usize,
    /// When `active` last went from 0 to 1.
    since: Option<Instant>,
    /// Closed intervals so far.
    spent: Duration,
}

impl RetryClock {
    /// A request failed an attempt for the first time, at `now`.
    pub fn enter(&self, now: Instant) {
        if let Ok(mut c) = self.0.lock() {
            if c.active == 0 {
                c.since = Some(now);
            }
            c.active = c.active.saturating_add(1);
        }
    }

    /// A request that had entered ended (success or not), at `now`.
    pub fn leave(&self, now: Instant) {
        if let Ok(mut c) = self.0.lock() {
            c.active = c.active.saturating_sub(1);
            if c.active == 0 {
                if let Some(since) = c.since.take() {
                    c.spent = c.spent.saturating_add(now.saturating_duration_since(since));
                }
            }
        }
    }

    /// Time spent retrying up to `now`.
    pub fn spent(&self, now: Instant) -> Duration {
        self.0.lock().map_or(Duration::ZERO, |c| {
            let open = c
                .since
                .map_or(Duration::ZERO, |s| now.saturating_duration_since(s));
            c.spent.saturating_add(open)
        })
    }
}

/// `Retry-After`: seconds (the form Azure Storage sends). An HTTP date is not parsed: the
/// backoff's own delay applies then. Capped at an hour.
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    let secs: u64 = v.trim().parse().ok()?;
    Some(Duration::from_secs(secs.min(3600)))
}

/// A small generator (xorshift64*) for jitter and request ids; seeded from the clock, the
/// process id and a per-thread counter, so threads and runs differ.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    /// A generator seeded from the time, the process and `salt`.
    ///
    /// The nanoseconds are cut to their low 64 bits, as a seed needs no more.
    pub fn seeded(salt: u64) -> Rng {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| low_bits(d.as_nanos()));
        Rng::new(nanos ^ (u64::from(std::process::id()) << 32) ^ salt.rotate_left(17))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// In `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        // checked_rem is None only for n == 0.
        self.next_u64().checked_rem(n).unwrap_or(0)
    }

    /// A random (version 4) UUID, for `x-ms-client-request-id`.
    pub fn uuid(&mut self) -> String {
        let a = self.next_u64();
        let b = self.next_u64();
        let time_hi = ((a >> 16) & 0x0fff) | 0x4000;
        let clock = ((b >> 48) & 0x3fff) | 0x8000;
        format!(
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            a >> 32,
            a & 0xffff,
            time_hi,
            clock,
            b & 0xffff_ffff_ffff
        )
    }
}

/// The low 64 bits of `v` (what `as u64` would keep), without a silent cast.
fn low_bits(v: u128) -> u64 {
    u64::try_from(v & u128::from(u64::MAX)).unwrap_or(0)
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, clippy::as_conversions)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(retryable_status(s), "{s}");
        }
        for s in [200, 201, 400, 401, 403, 404, 409, 412, 416, 501] {
            assert!(!retryable_status(s), "{s}");
        }
    }

    #[test]
    fn backoff_grows_is_capped_and_honours_retry_after() {
        let p = Policy {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(2),
            ..Policy::default()
        };
        let mut rng = Rng::new(1);
        for attempt in 1..40 {
            let cap = Duration::from_millis(100u64 << (attempt - 1).min(16)).min(p.max_delay);
            for _ in 0..50 {
                let d = p.delay(attempt, None, &mut rng);
                assert!(
                    d >= Duration::from_millis(50) && d <= cap,
                    "{attempt}: {d:?}"
                );
            }
        }
        // jitter: the draws of one attempt are not all equal
        let draws: std::collections::BTreeSet<Duration> =
            (0..20).map(|_| p.delay(6, None, &mut rng)).collect();
        assert!(draws.len() > 10);
        // Retry-After is a floor, even past max_delay
        let d = p.delay(1, Some(Duration::from_secs(5)), &mut rng);
        assert_eq!(d, Duration::from_secs(5));
        assert_eq!(parse_retry_after(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("99999"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }

    #[test]
    fn retry_clock_counts_overlaps_once() {
        let c = RetryClock::default();
        let t = Instant::now();
        let at = |s: u64| t + Duration::from_secs(s);
        c.enter(at(0));
        c.enter(at(5)); // overlaps the first
        assert_eq!(c.spent(at(7)), Duration::from_secs(7));
        c.leave(at(10));
        c.leave(at(12));
        assert_eq!(c.spent(at(100)), Duration::from_secs(12));
        c.enter(at(200));
        assert_eq!(c.spent(at(203)), Duration::from_secs(15));
        c.leave(at(204));
        assert_eq!(c.spent(at(300)), Duration::from_secs(16));
    }

    #[test]
    fn uuids() {
        let mut rng = Rng::new(5);
        let a = rng.uuid();
        let b = rng.uuid();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"), "{a}");
    }
}
