//! Run-wide reaction to rate limits.
//!
//! Honouring `Retry-After` per request is not enough: when the server's budget runs out,
//! every request in flight gets a 429, waits the same time and comes back at the same
//! moment — a storm of retries (measured: 24% of requests at concurrency 4). So a 429 acts
//! on the whole client:
//! 1. everyone waits out the `Retry-After`, not just the request that got it;
//! 2. until the rate is known, one request at a time;
//! 3. from the second 429 on, request starts are paced at the rate the server actually
//!    granted between the last two 429s (a little under it), and concurrency is restored —
//!    the pace, not the number in flight, keeps the run under the limit.

use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Pace a little under the measured rate, so the server's budget refills faster than we
/// spend it.
const PACE_MARGIN: f64 = 0.95;

#[derive(Debug, Default)]
pub struct Throttle {
    state: Mutex<State>,
    changed: Notify,
}

#[derive(Debug, Default)]
struct State {
    in_flight: usize,
    /// No request starts before this.
    paused_until: Option<Instant>,
    /// Set between the first 429 and a known pace.
    one_at_a_time: bool,
    /// Minimum time between request starts, once measured.
    interval: Option<Duration>,
    next_start: Option<Instant>,
    /// Answers (not 429) since the last 429, and when that was.
    answered_since_429: u64,
    last_429: Option<Instant>,
}

/// Held while a request is on the wire.
pub struct Permit<'a> {
    throttle: &'a Throttle,
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if let Ok(mut s) = self.throttle.state.lock() {
            s.in_flight = s.in_flight.saturating_sub(1);
        }
        self.throttle.changed.notify_waiters();
    }
}

impl Throttle {
    /// Wait until this request may start.
    pub async fn acquire(&self) -> Permit<'_> {
        loop {
            let notified = self.changed.notified();
            let wait = {
                let Ok(mut s) = self.state.lock() else {
                    return Permit { throttle: self };
                };
                let now = Instant::now();
                let not_before = s.paused_until.into_iter().chain(s.next_start).max();
                match not_before {
                    Some(t) if t > now => Some(t - now),
                    _ if s.one_at_a_time && s.in_flight > 0 => None,
                    _ => {
                        s.in_flight += 1;
                        if let Some(iv) = s.interval {
                            s.next_start = Some(now + iv);
                        }
                        return Permit { throttle: self };
                    }
                }
            };
            match wait {
                Some(d) => tokio::time::sleep(d).await,
                None => notified.await,
            }
        }
    }

    /// The server answered with something other than 429.
    pub fn on_answer(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.answered_since_429 += 1;
        }
    }

    /// The server said 429; `retry_after` is how long it asked us to wait.
    pub fn on_rate_limited(&self, retry_after: Duration) {
        if let Ok(mut s) = self.state.lock() {
            let now = Instant::now();
            let until = now + retry_after;
            s.paused_until = Some(s.paused_until.map_or(until, |p| p.max(until)));
            if let Some(prev) = s.last_429 {
                let window = now.duration_since(prev).as_secs_f64();
                if s.answered_since_429 > 0 && window > 0.0 {
                    let rate = s.answered_since_429 as f64 / window * PACE_MARGIN;
                    s.interval = Some(Duration::from_secs_f64(1.0 / rate));
                    s.one_at_a_time = false;
                }
            } else {
                s.one_at_a_time = true;
            }
            // Requests already in flight get their 429s too; only the first of a burst
            // starts a new measuring window.
            if s.answered_since_429 > 0 || s.last_429.is_none() {
                s.last_429 = Some(now);
                s.answered_since_429 = 0;
            }
        }
        self.changed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_429_pauses_everyone_then_one_at_a_time() {
        let t = Throttle::default();
        let p1 = t.acquire().await;
        t.on_rate_limited(Duration::from_millis(60));
        drop(p1);
        let start = Instant::now();
        let p2 = t.acquire().await;
        assert!(
            start.elapsed() >= Duration::from_millis(50),
            "waited out Retry-After"
        );
        // One at a time until the pace is known.
        let second = tokio::time::timeout(Duration::from_millis(50), t.acquire()).await;
        assert!(second.is_err(), "a second request must wait for the first");
        drop(p2);
        let _p3 = tokio::time::timeout(Duration::from_millis(50), t.acquire())
            .await
            .expect("free once the first is done");
    }

    #[tokio::test]
    async fn second_429_sets_a_pace_from_the_granted_rate() {
        let t = Throttle::default();
        t.on_rate_limited(Duration::ZERO);
        for _ in 0..10 {
            t.on_answer();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        t.on_rate_limited(Duration::ZERO);
        // 10 answers in ~100 ms → ~100/s → ~10.5 ms between starts.
        let iv = t.state.lock().unwrap().interval.expect("pace known");
        assert!(
            iv >= Duration::from_millis(9) && iv <= Duration::from_millis(13),
            "{iv:?}"
        );
        let start = Instant::now();
        for _ in 0..5 {
            drop(t.acquire().await);
        }
        assert!(start.elapsed() >= Duration::from_millis(4 * 9), "paced");
    }

    #[tokio::test]
    async fn no_429_no_limits() {
        let t = Throttle::default();
        let permits: Vec<_> = futures_lite_join(&t, 16).await;
        assert_eq!(permits.len(), 16);
    }

    async fn futures_lite_join(t: &Throttle, n: usize) -> Vec<Permit<'_>> {
        let mut v = Vec::new();
        for _ in 0..n {
            v.push(
                tokio::time::timeout(Duration::from_millis(20), t.acquire())
                    .await
                    .expect("unthrottled acquire is immediate"),
            );
        }
        v
    }
}
