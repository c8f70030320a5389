//! When to retry, how long to wait, and when to give up on the whole run.
//!
//! - [`classify`] is the one place that decides transient vs final: 429, 500, 502, 503, 504,
//!   timeouts and connection errors/resets are transient; every other outcome is final
//!   (a 4xx is the server's verdict and is never retried blindly).
//! - [`RetryPolicy`]: capped exponential backoff with full jitter, `Retry-After` honoured
//!   (seconds or HTTP date, capped), a bounded number of attempts per request.
//! - [`Brake`]: shared by every request of a run. N transient failures in a row with no
//!   success in between, or no success at all for a while, stops the run, so a dead server
//!   fails a build in seconds rather than hours. Auth failures pull it too ("stop at once").

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// Test hook: the backoff base in milliseconds (default 500). Tests set it to 1–5 so retry
/// paths run in milliseconds; `Retry-After` is then capped on the same scale.
pub const ENV_RETRY_BASE_MS: &str = "NIMRIZ_MATRIX_RETRY_BASE_MS";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// First backoff ceiling; doubles per retry (Nimriz's own example: 500 ms, doubling).
    pub base: Duration,
    /// Backoff ceiling.
    pub max_backoff: Duration,
    /// Longest `Retry-After` we honour; longer asks are shortened to this.
    pub max_retry_after: Duration,
    /// Attempts per request, first one included.
    pub max_attempts: u32,
    /// Run-wide: this many transient failures in a row (any request) stops the run.
    pub brake_after: u32,
    /// Run-wide: no success for this long, while failing, stops the run.
    pub brake_window: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self::with_base(Duration::from_millis(500))
    }
}

impl RetryPolicy {
    /// Every limit scales with `base`, so one knob makes tests fast and keeps their shape.
    /// Production (500 ms): backoff ≤ 8 s, `Retry-After` ≤ 60 s, 5 attempts, brake after 10
    /// failures in a row or 3 min without a success.
    pub fn with_base(base: Duration) -> Self {
        RetryPolicy {
            base,
            max_backoff: base * 16,
            max_retry_after: base * 120,
            max_attempts: 5,
            brake_after: 10,
            // Longer than two capped Retry-After waits, so a rate-limited (but alive)
            // server is waited out rather than declared dead.
            brake_window: base * 360,
        }
    }

    /// Default policy, with the base from `NIMRIZ_MATRIX_RETRY_BASE_MS` when set (for tests).
    pub fn from_env() -> crate::Result<Self> {
        match std::env::var(ENV_RETRY_BASE_MS) {
            Err(_) => Ok(Self::default()),
            Ok(v) => v
                .trim()
                .parse::<u64>()
                .map(|ms| Self::with_base(Duration::from_millis(ms)))
                .map_err(|_| {
                    crate::Error::Usage(format!(
                        "{ENV_RETRY_BASE_MS} must be a whole number of milliseconds, got {v:?}"
                    ))
                }),
        }
    }

    /// Full-jitter backoff before retry number `retry` (0 = first retry):
    /// uniform in `[0, min(max_backoff, base · 2^retry)]`.
    pub fn backoff(&self, retry: u32) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1u32 << retry.min(20))
            .min(self.max_backoff);
        let ms = ceiling.as_millis() as u64;
        if ms == 0 {
            return Duration::ZERO;
        }
        Duration::from_millis(rand::random_range(0..=ms))
    }

    /// The wait before retry number `retry`: the server's `Retry-After` when it gave one
    /// (capped), else the jittered backoff.
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        match retry_after {
            Some(d) => d.min(self.max_retry_after),
            None => self.backoff(retry),
        }
    }
}

/// Parse a `Retry-After` header: delta-seconds or an HTTP date (RFC 9110 §10.2.3).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    // Fractional seconds are not in the RFC but are common enough to accept.
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(1e6)));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// The verdict on one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// 2xx: done.
    Success,
    /// Worth another attempt (after `retry_after` if the server said so).
    Transient {
        retry_after: Option<Duration>,
        reason: String,
    },
    /// The server's final answer (or a local fault); never retried.
    Final,
}

/// Status codes that mean "not now" rather than "no".
pub fn is_transient_status(status: u16) -> bool {
    matches!(status, 429 | 500 | 502 | 503 | 504)
}

/// The one classification function. `Ok` is a response that arrived (status + headers),
/// `Err` a transport failure before a full response was read.
pub fn classify(outcome: Result<(u16, Option<&str>), &reqwest::Error>) -> Disposition {
    match outcome {
        Ok((status, _)) if (200..300).contains(&status) => Disposition::Success,
        Ok((status, retry_after)) if is_transient_status(status) => Disposition::Transient {
            retry_after: retry_after.and_then(parse_retry_after),
            reason: format!("HTTP {status}"),
        },
        Ok(_) => Disposition::Final,
        Err(e) if is_transient_transport(e) => Disposition::Transient {
            retry_after: None,
            reason: describe_transport(e),
        },
        Err(_) => Disposition::Final,
    }
}

/// Timeouts, refused/reset connections and bodies cut short are transient. A request we
/// could not even build, or a redirect loop, is not.
fn is_transient_transport(e: &reqwest::Error) -> bool {
    if e.is_builder() || e.is_redirect() {
        return false;
    }
    if e.is_timeout() || e.is_connect() || e.is_request() || e.is_body() {
        return true;
    }
    // Walk the chain for the io error underneath (reset, aborted, EOF mid-response).
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            return matches!(
                io.kind(),
                ConnectionReset
                    | ConnectionAborted
                    | ConnectionRefused
                    | BrokenPipe
                    | UnexpectedEof
                    | TimedOut
                    | Interrupted
            );
        }
        source = s.source();
    }
    false
}

/// A short description of a transport failure, without the URL (which is fine, but noisy).
pub fn describe_transport(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "connection failed"
    };
    let mut detail = String::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() {
        kind.to_string()
    } else {
        format!("{kind} ({detail})")
    }
}

/// The run-wide brake: shared by all requests of one client.
#[derive(Debug)]
pub struct Brake {
    policy: RetryPolicy,
    /// Transient failures in a row that say "down" (5xx, timeouts, connection errors).
    consecutive_failures: AtomicU32,
    /// Every transient failure since the last answer, 429s included.
    since_answer: AtomicU32,
    last_success: Mutex<Instant>,
    tripped: Mutex<Option<String>>,
    retries: AtomicU64,
}

impl Brake {
    pub fn new(policy: RetryPolicy) -> Self {
        Brake {
            policy,
            consecutive_failures: AtomicU32::new(0),
            since_answer: AtomicU32::new(0),
            last_success: Mutex::new(Instant::now()),
            tripped: Mutex::new(None),
            retries: AtomicU64::new(0),
        }
    }

    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    /// Retries made so far by the whole run (shown in progress).
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    pub(crate) fn note_retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    /// The server answered properly (any non-transient response): reset the streak.
    pub fn on_answer(&self) {
        self.consecutive_failures.store(0, Ordering::Relaxed);
        self.since_answer.store(0, Ordering::Relaxed);
        if let Ok(mut t) = self.last_success.lock() {
            *t = Instant::now();
        }
    }

    /// Count a transient failure; pulls the brake (and returns why) when the run should stop.
    /// A 429 (`rate_limited`) is a live server asking us to slow down: it does not count
    /// towards the "N in a row" streak, only towards the time window (and each request's
    /// own attempt limit still applies).
    pub fn on_transient(&self, host: &str, reason: &str, rate_limited: bool) -> Result<(), String> {
        let streak = if rate_limited {
            self.consecutive_failures.load(Ordering::Relaxed)
        } else {
            self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1
        };
        let failures = self.since_answer.fetch_add(1, Ordering::Relaxed) + 1;
        let quiet_for = self
            .last_success
            .lock()
            .map(|t| t.elapsed())
            .unwrap_or_default();
        if streak >= self.policy.brake_after {
            self.trip(format!(
                "the Nimriz API at {host} failed {streak} requests in a row (last: {reason}); \
                 giving up. Check that the service is up and reachable, then re-run: links \
                 already created are recorded and will not be created twice"
            ));
        } else if failures >= 2 && quiet_for >= self.policy.brake_window {
            self.trip(format!(
                "the Nimriz API at {host} has not answered successfully for {}s \
                 (last: {reason}); giving up. Check that the service is up and reachable, then \
                 re-run: links already created are recorded and will not be created twice",
                quiet_for.as_secs()
            ));
        }
        self.check()
    }

    /// Stop the run: every request still retrying gives up at its next step.
    pub fn trip(&self, why: String) {
        if let Ok(mut t) = self.tripped.lock() {
            t.get_or_insert(why);
        }
    }

    /// Wait before a retry, giving up early (with why) if the brake is pulled meanwhile,
    /// so Ctrl-C or a fatal error elsewhere does not wait out a long `Retry-After`.
    pub async fn sleep(&self, wait: Duration) -> Result<(), String> {
        const SLICE: Duration = Duration::from_millis(50);
        let until = tokio::time::Instant::now() + wait;
        loop {
            self.check()?;
            let now = tokio::time::Instant::now();
            if now >= until {
                return Ok(());
            }
            tokio::time::sleep((until - now).min(SLICE)).await;
        }
    }

    /// `Err(why)` once the brake is pulled.
    pub fn check(&self) -> Result<(), String> {
        match self.tripped.lock() {
            Ok(t) => t.as_ref().map_or(Ok(()), |why| Err(why.clone())),
            Err(_) => Err("internal error: retry state poisoned".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_capped_and_jittered() {
        let p = RetryPolicy::with_base(Duration::from_millis(100));
        for retry in 0..30 {
            let d = p.backoff(retry);
            assert!(d <= p.max_backoff, "retry {retry}: {d:?}");
            assert!(d <= Duration::from_millis(100) * (1 << retry.min(20)));
        }
        let zero = RetryPolicy::with_base(Duration::ZERO);
        assert_eq!(zero.backoff(3), Duration::ZERO);
    }

    #[test]
    fn retry_after_seconds_and_date_and_cap() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after(" 0 "), Some(Duration::ZERO));
        let future = SystemTime::now() + Duration::from_secs(30);
        let d = parse_retry_after(&httpdate::fmt_http_date(future)).unwrap();
        assert!(
            d > Duration::from_secs(27) && d <= Duration::from_secs(30),
            "{d:?}"
        );
        let past = SystemTime::now() - Duration::from_secs(30);
        assert_eq!(
            parse_retry_after(&httpdate::fmt_http_date(past)),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
        let p = RetryPolicy::default();
        assert_eq!(
            p.delay(0, Some(Duration::from_secs(3600))),
            Duration::from_secs(60)
        );
        assert_eq!(
            p.delay(0, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
    }

    #[test]
    fn classify_statuses() {
        for s in [429, 500, 502, 503, 504] {
            assert!(matches!(
                classify(Ok((s, None))),
                Disposition::Transient { .. }
            ));
        }
        for s in [400, 401, 403, 404, 409, 413, 422, 501] {
            assert_eq!(classify(Ok((s, None))), Disposition::Final, "{s}");
        }
        assert_eq!(classify(Ok((201, None))), Disposition::Success);
        assert_eq!(
            classify(Ok((429, Some("3")))),
            Disposition::Transient {
                retry_after: Some(Duration::from_secs(3)),
                reason: "HTTP 429".into()
            }
        );
    }

    #[test]
    fn brake_trips_after_streak_and_resets_on_answer() {
        let p = RetryPolicy::with_base(Duration::from_secs(10));
        let b = Brake::new(p.clone());
        for _ in 0..p.brake_after - 1 {
            assert!(b.on_transient("h", "HTTP 503", false).is_ok());
        }
        b.on_answer();
        for _ in 0..p.brake_after - 1 {
            assert!(b.on_transient("h", "HTTP 503", false).is_ok());
        }
        let why = b.on_transient("h", "HTTP 503", false).unwrap_err();
        assert!(why.contains("failed 10 requests in a row"), "{why}");
        assert!(b.check().is_err());
    }

    #[test]
    fn rate_limits_do_not_count_as_down() {
        let b = Brake::new(RetryPolicy::with_base(Duration::from_secs(10)));
        for _ in 0..50 {
            assert!(b.on_transient("h", "HTTP 429", true).is_ok());
        }
    }

    #[tokio::test]
    async fn sleep_is_cut_short_by_the_brake() {
        let b = std::sync::Arc::new(Brake::new(RetryPolicy::default()));
        let b2 = b.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(30)).await;
            b2.trip("stop".into());
        });
        let start = Instant::now();
        assert!(b.sleep(Duration::from_secs(10)).await.is_err());
        assert!(start.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn brake_trips_on_long_silence() {
        let b = Brake::new(RetryPolicy::with_base(Duration::ZERO));
        assert!(b.on_transient("h", "x", true).is_ok());
        assert!(b.on_transient("h", "x", true).is_err());
    }
}
