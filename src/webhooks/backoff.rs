//! When to try a failed delivery again: exponential backoff with jitter, at least what the
//! receiver's `Retry-After` asks for, and never past the event's deadline. Pure functions of
//! their inputs (the random jitter and the clock are arguments).

use std::time::{Duration, SystemTime};

/// Exponential backoff: the n-th retry (0-based) waits between half and all of
/// `min(max, initial * 2^n)` ("equal jitter"), so retries of many events spread out but a
/// retry never comes much sooner than planned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffPolicy {
    pub initial: Duration,
    pub max: Duration,
}

impl BackoffPolicy {
    /// The wait before retry number `retry` (0 = the first retry). `jitter` is in `0.0..=1.0`.
    pub fn delay(&self, retry: u32, jitter: f64) -> Duration {
        let factor = 2u32.saturating_pow(retry.min(31));
        let base = self.initial.saturating_mul(factor).min(self.max);
        let half = base / 2;
        half + half.mul_f64(jitter.clamp(0.0, 1.0))
    }
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextStep {
    /// Wait this long, then try again.
    RetryAfter(Duration),
    /// The next attempt would come after the deadline (or the receiver asked for a wait past
    /// it): give the event up.
    GiveUp,
}

/// The next step after a failure, `remaining` before the deadline: wait the backoff (or the
/// receiver's `Retry-After`, when longer), cut short so a last attempt lands at the deadline.
pub fn next_step(backoff: Duration, retry_after: Option<Duration>, remaining: Duration) -> NextStep {
    if remaining.is_zero() || retry_after.is_some_and(|r| r > remaining) {
        return NextStep::GiveUp;
    }
    let wait = backoff.max(retry_after.unwrap_or(Duration::ZERO));
    NextStep::RetryAfter(wait.min(remaining))
}

/// A `Retry-After` header value: delay-seconds or an HTTP date (RFC 9110 §10.2.3).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn doubles_up_to_the_cap_with_jitter_in_the_upper_half() {
        let p = BackoffPolicy { initial: MS(100), max: MS(1000) };
        assert_eq!(p.delay(0, 1.0), MS(100));
        assert_eq!(p.delay(0, 0.0), MS(50));
        assert_eq!(p.delay(1, 1.0), MS(200));
        assert_eq!(p.delay(3, 1.0), MS(800));
        assert_eq!(p.delay(4, 1.0), MS(1000));
        assert_eq!(p.delay(4, 0.0), MS(500));
        assert_eq!(p.delay(u32::MAX, 1.0), MS(1000), "no overflow");
        assert_eq!(p.delay(2, 7.0), MS(400), "jitter is clamped");
    }

    #[test]
    fn retry_after_is_respected_and_the_deadline_is_kept() {
        assert_eq!(next_step(MS(100), None, MS(10_000)), NextStep::RetryAfter(MS(100)));
        assert_eq!(next_step(MS(100), Some(MS(2000)), MS(10_000)), NextStep::RetryAfter(MS(2000)));
        assert_eq!(next_step(MS(3000), Some(MS(2000)), MS(10_000)), NextStep::RetryAfter(MS(3000)));
        assert_eq!(next_step(MS(3000), None, MS(500)), NextStep::RetryAfter(MS(500)), "a last try at the deadline");
        assert_eq!(next_step(MS(100), Some(MS(2000)), MS(1000)), NextStep::GiveUp);
        assert_eq!(next_step(MS(100), None, Duration::ZERO), NextStep::GiveUp);
    }

    #[test]
    fn parses_both_retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(parse_retry_after(&later, now), Some(Duration::from_secs(30)));
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(parse_retry_after(&earlier, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }
}
