//! Run-wide reaction to rate limits.
//!
//! Honouring `Retry-After` per request is not enough: when the server's budget runs out,
//! every request in flight gets a 429, waits the same time and comes back at the same
//! moment — a storm of retries (measured: 24% of requests at concurrency 4). So the client
//! as a whole keeps to the server's budget:
//! 1. **When the server publishes its budget** (`RateLimit-*` / `X-RateLimit-*` headers,
//!    see [`RateHeaders`]), requests start only while the budget has room: a local mirror
//!    of the server's bucket, reset from every answer and refilled at the published rate.
//!    No 429 is needed to learn the limit.
//! 2. Otherwise, a 429 acts on the whole client: everyone waits out the `Retry-After`, not
//!    just the request that got it; until the rate is known, one request at a time. At the
//!    second 429 the client knows the rate the server granted between the two (it paces a
//!    little under it) and the burst it granted before the first (what was answered, less
//!    what the rate refilled meanwhile): from then on it keeps a bucket of that shape
//!    itself, as if the server had published it — concurrency restored, the burst the
//!    server saves up during a wait spent at once instead of lost. A later 429 means the
//!    guess was high: rate and burst are cut (multiplicative decrease), never raised.
//!    The requests in flight when the first 429 comes cannot be helped: with nothing
//!    published, the limit is only learnt by meeting it.

use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::Notify;
use tokio::time::Instant;

/// Pace a little under the measured rate, so the server's budget refills faster than we
/// spend it.
const PACE_MARGIN: f64 = 0.95;

/// What a 429 after the learned bucket leaves of its rate and burst.
const LEARNED_DECREASE: f64 = 0.8;

#[derive(Debug, Default)]
pub struct Throttle {
    state: Mutex<State>,
    changed: Notify,
}

/// What a server said about its budget in one answer's headers. Read in every spelling a
/// server plausibly uses, none documented by Nimriz (docs/nimriz-api.md):
/// - `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset` (delta seconds) and
///   `RateLimit-Policy: 10;w=1` (IETF httpapi drafts up to -06);
/// - `RateLimit: limit=10, remaining=3, reset=2` (draft -07) or
///   `RateLimit: "default";r=3;t=2` with `RateLimit-Policy: "default";q=10;w=1` (-08 on);
/// - `X-RateLimit-Limit`, `X-RateLimit-Remaining`, `X-RateLimit-Reset` (delta seconds, or
///   a Unix time when it is that large, as GitHub sends), `X-RateLimit-Reset-After`.
///
/// A reset may be spelt as delta seconds, a Unix time in seconds or milliseconds, a
/// duration with units (`250ms`, `6m0s`) or an HTTP-date ([`parse_reset`]). Garbage
/// (negative, not a number, absurdly large) is no budget, and every wait a header can ask
/// for is capped at [`MAX_WAIT`], so no header value can panic the client or overflow a
/// clock.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RateHeaders {
    pub limit: Option<f64>,
    pub remaining: Option<f64>,
    /// When the budget is next replenished (or whole again).
    pub reset: Option<Duration>,
    /// The window `limit` applies to.
    pub window: Option<Duration>,
}

/// A reset above this many seconds is a Unix time, not a delta (no window is 30 years).
const EPOCH_RESET_ABOVE: f64 = 1.0e9;

impl RateHeaders {
    /// `get(name)` returns a header's value (names as written above, any case).
    pub fn read<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Option<Self> {
        let mut h = RateHeaders::default();
        for prefix in ["ratelimit-", "x-ratelimit-"] {
            let num = |name: &str| {
                get(&format!("{prefix}{name}"))
                    .and_then(|v| first_number(v.split(',').next().unwrap_or(v)))
            };
            h.limit = h.limit.or_else(|| num("limit"));
            h.remaining = h.remaining.or_else(|| num("remaining"));
            h.reset = h.reset.or_else(|| {
                // An HTTP-date has a comma of its own; a list's first item otherwise.
                get(&format!("{prefix}reset")).and_then(|v| {
                    parse_reset(v).or_else(|| parse_reset(v.split(',').next().unwrap_or(v)))
                })
            });
            // Discord-style: the reset as a delay next to (or instead of) a Unix time.
            h.reset = h.reset.or_else(|| num("reset-after").and_then(secs));
        }
        if let Some(v) = get("ratelimit") {
            // The first (most specific) item of a list; keys of -07 and -08 alike.
            let item = v.split(',').collect::<Vec<_>>();
            for part in item.iter().flat_map(|i| i.split(';')) {
                let Some((k, val)) = part.split_once('=') else {
                    continue;
                };
                let reset = parse_reset(val);
                let val = first_number(val);
                match k.trim() {
                    "limit" => h.limit = h.limit.or(val),
                    "remaining" | "r" => h.remaining = h.remaining.or(val),
                    "reset" | "t" => h.reset = h.reset.or(reset),
                    _ => {}
                }
            }
        }
        if let Some(v) = get("ratelimit-policy") {
            let first = v.split(',').next().unwrap_or(v);
            let mut parts = first.split(';');
            let head = parts.next().unwrap_or_default();
            let mut quota = first_number(head);
            for p in parts {
                match p.split_once('=') {
                    Some((k, val)) if k.trim() == "w" => {
                        h.window = first_number(val).filter(|w| *w > 0.0).and_then(secs);
                    }
                    Some((k, val)) if k.trim() == "q" => quota = first_number(val),
                    _ => {}
                }
            }
            h.limit = h.limit.or(quota);
        }
        (h.remaining.is_some() || h.limit.is_some()).then_some(h)
    }

    /// Budget refill per second, when the window is known.
    fn rate(&self) -> Option<f64> {
        let (limit, window) = (self.limit?, self.window?);
        let r = limit / window.as_secs_f64();
        (r.is_finite() && r > 0.0).then_some(r)
    }
}

/// A reset above this is a Unix time in milliseconds (1e12 ms is 2001; 1e12 s is year 33,000).
const EPOCH_MS_RESET_ABOVE: f64 = 1.0e12;

/// The longest wait a header may ask for; a larger (or garbage) value is read as this, so a
/// run re-reads the budget at least daily and no `Instant` arithmetic can overflow.
const MAX_WAIT: Duration = Duration::from_secs(86_400);

/// Counts above this are garbage (and would make the bucket arithmetic lose precision).
const MAX_COUNT: f64 = 1.0e15;

fn first_number(v: &str) -> Option<f64> {
    let v = v.trim().trim_matches('"').trim();
    v.parse::<f64>()
        .ok()
        .filter(|n| n.is_finite() && *n >= 0.0 && *n <= MAX_COUNT)
}

/// Seconds as a `Duration`, capped at [`MAX_WAIT`]; `None` for negative or not a number.
fn secs(s: f64) -> Option<Duration> {
    (s.is_finite() && s >= 0.0).then(|| Duration::from_secs_f64(s.min(MAX_WAIT.as_secs_f64())))
}

/// A reset, however a server spells it: delta seconds (`2`, `0.5`), a Unix time in seconds
/// (`1733340000`, as GitHub sends) or milliseconds (`1733340000123`), a duration with a unit
/// (`250ms`, `1s`, `6m0s`, as OpenAI sends), or an HTTP-date.
fn parse_reset(v: &str) -> Option<Duration> {
    let v = v.trim().trim_matches('"').trim();
    if let Some(n) = first_number(v) {
        return reset_delay(n);
    }
    parse_unit_duration(v).or_else(|| {
        let when = httpdate::parse_http_date(v).ok()?;
        Some(
            when.duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO)
                .min(MAX_WAIT),
        )
    })
}

/// `250ms`, `1.5s`, `6m0s`, `1h2m3s`: numbers each followed by `ms`, `s`, `m` or `h`.
fn parse_unit_duration(v: &str) -> Option<Duration> {
    let mut total = 0.0;
    let mut rest = v;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .filter(|&i| i > 0)?;
        let n: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        total += match &rest[..unit_len] {
            "ms" => n / 1000.0,
            "s" => n,
            "m" => n * 60.0,
            "h" => n * 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
    }
    secs(total)
}

fn reset_delay(n: f64) -> Option<Duration> {
    if n > EPOCH_RESET_ABOVE {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .ok()?
            .as_secs_f64();
        let at = if n > EPOCH_MS_RESET_ABOVE {
            n / 1000.0
        } else {
            n
        };
        return secs((at - now).max(0.0));
    }
    secs(n)
}

/// A local mirror of the server's bucket, from its headers.
#[derive(Debug, Clone, Copy)]
struct Budget {
    /// Requests we may still start, as of `at`.
    tokens: f64,
    at: Instant,
    capacity: Option<f64>,
    /// Refill per second, when the window is known.
    rate: Option<f64>,
    /// When the budget is whole again, when the server said so and no rate is known.
    reset_at: Option<Instant>,
}

impl Budget {
    /// Bring `tokens` up to `now`.
    fn refill(&mut self, now: Instant) {
        if let Some(r) = self.rate {
            self.tokens += r * now.saturating_duration_since(self.at).as_secs_f64();
        } else if self.reset_at.is_some_and(|t| t <= now) {
            self.tokens = self.capacity.unwrap_or(1.0).max(1.0);
            self.reset_at = None;
        }
        if let Some(c) = self.capacity {
            self.tokens = self.tokens.min(c);
        }
        self.at = now;
    }

    /// How long until one request may start; `None` when one may now.
    fn wait(&self) -> Option<Duration> {
        if self.tokens >= 1.0 {
            return None;
        }
        match (self.rate, self.reset_at) {
            (Some(r), _) => Some(secs((1.0 - self.tokens) / r).unwrap_or(MAX_WAIT)),
            (None, Some(t)) => Some(t.saturating_duration_since(self.at)),
            // Spent, and no word on when it comes back: probe once a second.
            (None, None) => Some(Duration::from_secs(1)),
        }
    }
}

#[derive(Debug, Default)]
struct State {
    /// Set once a server has published its budget (or the client learnt one from 429s);
    /// rules starts while it is known.
    budget: Option<Budget>,
    /// `budget` was learnt from 429s, not heard in headers.
    learned: bool,
    /// When the first request of the run was let go.
    first_start: Option<Instant>,
    /// Answered before the first 429, and how long after `first_start` it came.
    first_burst: Option<(u64, f64)>,
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
    started: Instant,
}

impl Permit<'_> {
    /// When this request was let go (its answer says nothing about a window opened later).
    pub fn started(&self) -> Instant {
        self.started
    }

    /// This request's answer carried budget headers; call before the permit is dropped.
    pub fn on_headers(&self, h: &RateHeaders) {
        self.throttle.on_headers(h);
    }
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
    #[cfg(test)]
    pub async fn acquire(&self) -> Permit<'_> {
        self.acquire_announcing(|_| {}).await
    }

    /// Wait until this request may start; `announce` hears once of a wait for the server's
    /// budget of at least [`crate::ANNOUNCE_WAIT`] (the client says it, so a pause is not taken for a hang).
    pub async fn acquire_announcing(&self, mut announce: impl FnMut(Duration)) -> Permit<'_> {
        let mut announced = false;
        loop {
            let notified = self.changed.notified();
            let wait = {
                let Ok(mut s) = self.state.lock() else {
                    return Permit {
                        throttle: self,
                        started: Instant::now(),
                    };
                };
                let now = Instant::now();
                let not_before = s.paused_until.into_iter().chain(s.next_start).max();
                let budget_wait = s.budget.as_mut().and_then(|b| {
                    b.refill(now);
                    b.wait()
                });
                match not_before {
                    Some(t) if t > now => Some(t - now),
                    Some(_) | None if budget_wait.is_some() => {
                        if let Some(w) =
                            budget_wait.filter(|w| *w >= crate::ANNOUNCE_WAIT && !announced)
                        {
                            announced = true;
                            announce(w);
                        }
                        budget_wait
                    }
                    // Pacing from 429s is for servers that say nothing about their budget.
                    _ if s.budget.is_none() && s.one_at_a_time && s.in_flight > 0 => None,
                    _ => {
                        s.in_flight += 1;
                        s.first_start.get_or_insert(now);
                        if let Some(b) = s.budget.as_mut() {
                            b.tokens -= 1.0;
                        } else if let Some(iv) = s.interval {
                            s.next_start = Some(now + iv);
                        }
                        return Permit {
                            throttle: self,
                            started: now,
                        };
                    }
                }
            };
            match wait {
                Some(d) => tokio::time::sleep(d).await,
                None => notified.await,
            }
        }
    }

    /// An answer (429 or not) carried budget headers.
    ///
    /// Answers only ever lower the mirror (it rises by its own refill, or at the reset):
    /// concurrent requests are counted by the server in an order we cannot see, so an answer
    /// arriving later may carry an older, higher `remaining` (measured: 2 of 53 requests
    /// answered 429 when each answer reset the mirror). Lowering is always safe; the cost
    /// is at most the fraction of a request the server's `remaining` rounds away.
    fn on_headers(&self, h: &RateHeaders) {
        let Ok(mut s) = self.state.lock() else {
            return;
        };
        let now = Instant::now();
        // Requests on the wire besides this one may not be counted in `remaining` yet.
        let others = s.in_flight.saturating_sub(1) as f64;
        let previous = s.budget.map(|mut b| {
            b.refill(now);
            b
        });
        let rate = h.rate().or(previous.and_then(|b| b.rate));
        let capacity = h.limit.or(previous.and_then(|b| b.capacity));
        let heard = h.remaining.map(|r| r - others);
        let tokens = match (heard, previous) {
            (Some(heard), Some(b)) => heard.min(b.tokens),
            (Some(heard), None) => heard,
            (None, Some(b)) => b.tokens,
            (None, None) => capacity.unwrap_or(1.0) - others,
        };
        // The later of the two resets: a budget whole again sooner than the mirror thinks
        // costs a little waiting; later than it thinks, a 429.
        let reset_at = match (h.reset.map(|d| now + d), previous.and_then(|b| b.reset_at)) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        s.budget = Some(Budget {
            tokens,
            at: now,
            capacity,
            rate,
            reset_at: if rate.is_some() { None } else { reset_at },
        });
        s.learned = false;
        drop(s);
        self.changed.notify_waiters();
    }

    /// The server answered with something other than 429, to a request let go at `started`.
    pub fn on_answer(&self, started: Instant) {
        if let Ok(mut s) = self.state.lock() {
            // In flight when the window opened: the server may have counted it before.
            if s.last_429.is_none_or(|l| started >= l) {
                s.answered_since_429 += 1;
            }
        }
    }

    /// The server said 429 to a request let go at `started`; `retry_after` is how long it
    /// asked us to wait.
    pub fn on_rate_limited(&self, retry_after: Duration, started: Instant) {
        if let Ok(mut s) = self.state.lock() {
            let now = Instant::now();
            let until = now + retry_after;
            s.paused_until = Some(s.paused_until.map_or(until, |p| p.max(until)));
            // A request already in flight when the last 429 came: the same burst of 429s,
            // whatever was answered in between (the server counts concurrent requests in
            // an order we cannot see). Measured: an answer and a 429 from that burst, 2 ms
            // apart, taught a rate of 475/s against a limit of 10/s, and 22% of requests
            // then met a 429.
            if s.last_429.is_some_and(|l| started < l) {
                drop(s);
                self.changed.notify_waiters();
                return;
            }
            if let Some(b) = s.budget.as_mut() {
                // Spent, whatever the mirror thought; whole again once the wait is over
                // (the next answer's headers correct it).
                b.tokens = b.tokens.min(0.0);
                b.at = now;
                if b.rate.is_none() {
                    b.reset_at = Some(b.reset_at.map_or(until, |r| r.max(until)));
                }
            }
            // Once per burst of 429s: those in flight with this one say the same thing.
            let learned = s.learned && s.answered_since_429 > 0;
            if let (true, Some(b)) = (learned, s.budget.as_mut()) {
                // The learnt bucket was too generous.
                b.rate = b.rate.map(|r| r * LEARNED_DECREASE);
                b.capacity = b.capacity.map(|c| (c * LEARNED_DECREASE).floor().max(1.0));
            } else if let Some(prev) = s.last_429 {
                let window = now.duration_since(prev).as_secs_f64();
                if s.answered_since_429 > 0 && window > 0.0 {
                    let rate = s.answered_since_429 as f64 / window * PACE_MARGIN;
                    s.interval = Some(secs(1.0 / rate).unwrap_or(MAX_WAIT));
                    s.one_at_a_time = false;
                    if s.budget.is_none() {
                        // The burst: answered before the first 429, less what `rate`
                        // refilled meanwhile (an underestimate, as `rate` is).
                        let burst = s.first_burst.map_or(1.0, |(answered, secs)| {
                            (answered as f64 - rate * secs).floor().max(1.0)
                        });
                        s.budget = Some(Budget {
                            tokens: 0.0,
                            at: now,
                            capacity: Some(burst),
                            rate: Some(rate),
                            reset_at: None,
                        });
                        s.learned = true;
                    }
                }
            } else {
                s.one_at_a_time = true;
                let secs = s
                    .first_start
                    .map_or(0.0, |t| now.saturating_duration_since(t).as_secs_f64());
                s.first_burst = Some((s.answered_since_429, secs));
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

    /// An answer to a request let go just now.
    fn hear(t: &Throttle, h: RateHeaders) {
        t.on_headers(&h);
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_pauses_everyone_then_one_at_a_time() {
        let t = Throttle::default();
        let p1 = t.acquire().await;
        t.on_rate_limited(Duration::from_millis(60), Instant::now());
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

    /// The requests in flight when the first 429 comes are one burst, even when an answer
    /// the server counted earlier arrives between their 429s: no rate is learnt from them.
    #[tokio::test(start_paused = true)]
    async fn answers_and_429s_from_the_first_burst_teach_no_rate() {
        let t = Throttle::default();
        let burst = futures_lite_join(&t, 4).await;
        let started: Vec<Instant> = burst.iter().map(Permit::started).collect();
        drop(burst);
        tokio::time::advance(Duration::from_millis(50)).await;
        t.on_rate_limited(Duration::from_secs(1), started[0]);
        tokio::time::advance(Duration::from_millis(1)).await;
        t.on_answer(started[1]);
        tokio::time::advance(Duration::from_millis(1)).await;
        t.on_rate_limited(Duration::from_secs(1), started[2]);
        {
            let s = t.state.lock().unwrap();
            assert!(
                s.budget.is_none() && s.interval.is_none(),
                "nothing learnt: {s:?}"
            );
            assert!(s.one_at_a_time);
        }
        // After the wait, one at a time: 10 answers over 1 s, then a 429, teach ~10/s.
        tokio::time::advance(Duration::from_secs(1)).await;
        for _ in 0..10 {
            let p = t.acquire().await;
            let at = p.started();
            drop(p);
            tokio::time::advance(Duration::from_millis(100)).await;
            t.on_answer(at);
        }
        let p = t.acquire().await;
        let at = p.started();
        drop(p);
        t.on_rate_limited(Duration::from_secs(1), at);
        let s = t.state.lock().unwrap();
        let rate = s.budget.and_then(|b| b.rate).expect("a rate is learnt");
        assert!(
            rate < 10.0,
            "about 10 answers in 2 s, less the margin: {rate}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn second_429_sets_a_pace_from_the_granted_rate() {
        let t = Throttle::default();
        t.on_rate_limited(Duration::ZERO, Instant::now());
        for _ in 0..10 {
            t.on_answer(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        t.on_rate_limited(Duration::ZERO, Instant::now());
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

    /// Nothing published: two 429s teach a bucket (rate between them, burst before the
    /// first); after the wait its saved-up burst is spent at once, with concurrency, and a
    /// later 429 cuts it.
    #[tokio::test(start_paused = true)]
    async fn two_429s_teach_a_bucket_whose_burst_is_spent_after_a_wait() {
        let t = Throttle::default();
        // 10 answered at once, then the first 429, 100 ms after the first start.
        for _ in 0..10 {
            drop(t.acquire().await);
            t.on_answer(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        t.on_rate_limited(Duration::from_secs(1), Instant::now());
        // One at a time: 20 answers in the 2 s between the two 429s → 10/s.
        tokio::time::sleep(Duration::from_secs(1)).await;
        for _ in 0..20 {
            let p = t.acquire().await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            drop(p);
            t.on_answer(Instant::now());
        }
        t.on_rate_limited(Duration::from_secs(1), Instant::now());
        {
            let s = t.state.lock().unwrap();
            let b = s.budget.expect("a learnt bucket");
            let rate = b.rate.expect("rate");
            assert!((9.0..=9.6).contains(&rate), "{rate}: 10/s less the margin");
            // 10 answered in 0.1 s, less 0.95 refilled: 9.
            assert_eq!(b.capacity, Some(9.0));
        }
        // After the wait: the 9 saved up start together (no longer one at a time).
        let start = Instant::now();
        let mut held = Vec::new();
        for _ in 0..9 {
            held.push(t.acquire().await);
        }
        let burst_at = start.elapsed();
        assert!(
            burst_at >= Duration::from_millis(990) && burst_at < Duration::from_millis(1010),
            "{burst_at:?}"
        );
        let tenth = Instant::now();
        held.push(t.acquire().await);
        assert!(
            tenth.elapsed() >= Duration::from_millis(90),
            "then paced: {:?}",
            tenth.elapsed()
        );
        drop(held);
        // A 429 now means the guess was high: cut, once for the whole burst.
        t.on_answer(Instant::now());
        t.on_rate_limited(Duration::ZERO, Instant::now());
        t.on_rate_limited(Duration::ZERO, Instant::now());
        let b = t.state.lock().unwrap().budget.expect("still learnt");
        assert_eq!(b.capacity, Some(7.0), "9 × 0.8, rounded down, once");
        assert!(b.rate.unwrap() < 7.7, "{:?}", b.rate);
    }

    #[test]
    fn resets_in_every_unit() {
        let x = |reset: &str| {
            read(&[("X-RateLimit-Remaining", "0"), ("X-RateLimit-Reset", reset)])
                .unwrap()
                .reset
        };
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let near = |d: Option<Duration>, secs: u64| {
            let d = d.expect("a reset");
            let want = Duration::from_secs(secs);
            assert!(
                d <= want && d + Duration::from_secs(2) >= want,
                "{d:?} vs {want:?}"
            );
        };
        near(x("30"), 30);
        assert_eq!(x("0.25"), Some(Duration::from_millis(250)));
        near(x(&(now.as_secs() + 30).to_string()), 30);
        near(x(&(now.as_millis() + 30_000).to_string()), 30);
        assert_eq!(x(&(now.as_secs() - 30).to_string()), Some(Duration::ZERO));
        assert_eq!(x("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(x("6m0s"), Some(Duration::from_secs(360)));
        assert_eq!(x("1h2m3.5s"), Some(Duration::from_secs_f64(3723.5)));
        let date = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(30));
        near(x(&date), 30);
        let after = read(&[
            ("X-RateLimit-Remaining", "0"),
            ("X-RateLimit-Reset-After", "1.5"),
        ])
        .unwrap();
        assert_eq!(after.reset, Some(Duration::from_millis(1500)));
        let structured = read(&[
            ("RateLimit", "\"default\";r=0;t=250ms"),
            ("RateLimit-Policy", "\"default\";q=100;w=60"),
        ])
        .unwrap();
        assert_eq!(structured.reset, Some(Duration::from_millis(250)));
        assert_eq!(structured.rate(), Some(100.0 / 60.0));
    }

    /// Garbage is not a budget, and nothing in it can panic or overflow an `Instant`.
    #[tokio::test(start_paused = true)]
    async fn garbage_budget_values_neither_panic_nor_stall() {
        let garbage = [
            "",
            " ",
            "-5",
            "NaN",
            "inf",
            "-inf",
            "1e400",
            "1e300",
            "99999999999999999999999",
            "\"",
            "10;w=0",
            "10;w=-1",
            "10;w=1e300",
            "10;w=NaN",
            ";;;",
            "=,=",
            "1h2x",
            "5m-3s",
            "Mon, 99 Foo 2026",
            "18446744073709551616ms",
            "1e308s",
            "ms",
            "..s",
        ];
        for g in garbage {
            for name in [
                "RateLimit-Limit",
                "RateLimit-Remaining",
                "RateLimit-Reset",
                "RateLimit-Policy",
                "RateLimit",
                "X-RateLimit-Limit",
                "X-RateLimit-Remaining",
                "X-RateLimit-Reset",
                "X-RateLimit-Reset-After",
            ] {
                // Something readable beside the garbage, so the throttle sees it.
                let other = if name.ends_with("Limit") {
                    ("X-RateLimit-Remaining", "0")
                } else {
                    ("RateLimit-Limit", "5")
                };
                let h = read(&[(name, g), other]).unwrap();
                assert!(h.reset.is_none_or(|r| r <= MAX_WAIT), "{name}: {g}");
                assert!(h.window.is_none_or(|w| w <= MAX_WAIT), "{name}: {g}");
                let t = Throttle::default();
                let p = t.acquire().await;
                p.on_headers(&h);
                drop(p);
                // Bounded: the wait is at most a day, and a day is not waited here.
                let waited = tokio::time::timeout(Duration::from_secs(1), t.acquire()).await;
                drop(waited);
            }
        }
        // A window of a nanosecond or a limit of 10^12 per day are numbers, not garbage.
        let t = Throttle::default();
        hear(
            &t,
            RateHeaders {
                limit: Some(MAX_COUNT),
                remaining: Some(0.0),
                reset: Some(MAX_WAIT),
                window: Some(Duration::from_nanos(1)),
            },
        );
        hear(
            &t,
            RateHeaders {
                limit: Some(1.0),
                remaining: Some(0.0),
                reset: None,
                window: Some(MAX_WAIT),
            },
        );
        let waited = tokio::time::timeout(Duration::from_secs(1), t.acquire()).await;
        assert!(waited.is_err(), "one a day: the next waits");
    }

    fn read(pairs: &[(&str, &str)]) -> Option<RateHeaders> {
        RateHeaders::read(|name| {
            pairs
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| *v)
        })
    }

    #[test]
    fn budget_headers_in_every_spelling() {
        let ietf = read(&[
            ("RateLimit-Limit", "10"),
            ("RateLimit-Remaining", "3"),
            ("RateLimit-Reset", "2"),
            ("RateLimit-Policy", "10;w=1, 1000;w=3600"),
        ])
        .unwrap();
        assert_eq!(ietf.limit, Some(10.0));
        assert_eq!(ietf.remaining, Some(3.0));
        assert_eq!(ietf.reset, Some(Duration::from_secs(2)));
        assert_eq!(ietf.window, Some(Duration::from_secs(1)));
        assert_eq!(ietf.rate(), Some(10.0));

        let draft7 = read(&[("RateLimit", "limit=100, remaining=50, reset=30")]).unwrap();
        assert_eq!(
            (draft7.limit, draft7.remaining, draft7.reset),
            (Some(100.0), Some(50.0), Some(Duration::from_secs(30)))
        );
        assert_eq!(draft7.rate(), None, "no window, no rate");

        let draft8 = read(&[
            ("RateLimit", "\"default\";r=7;t=4"),
            ("RateLimit-Policy", "\"default\";q=20;w=2"),
        ])
        .unwrap();
        assert_eq!((draft8.limit, draft8.remaining), (Some(20.0), Some(7.0)));
        assert_eq!(draft8.rate(), Some(10.0));

        let epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 60;
        let epoch = epoch.to_string();
        let x = read(&[
            ("X-RateLimit-Limit", "5000"),
            ("X-RateLimit-Remaining", "4999"),
            ("X-RateLimit-Reset", &epoch),
        ])
        .unwrap();
        let reset = x.reset.unwrap();
        assert!(
            reset <= Duration::from_secs(60) && reset >= Duration::from_secs(58),
            "a Unix time becomes a delay: {reset:?}"
        );

        assert_eq!(read(&[("Retry-After", "1")]), None);
        assert_eq!(
            read(&[("RateLimit-Remaining", "lots")]),
            None,
            "not a number"
        );
        assert_eq!(read(&[("RateLimit-Remaining", "-1")]), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_published_budget_is_kept_without_a_429() {
        let t = Throttle::default();
        let p = t.acquire().await;
        // 2 left, refilled at 5/s (200 ms a request).
        hear(
            &t,
            RateHeaders {
                limit: Some(5.0),
                remaining: Some(2.0),
                reset: None,
                window: Some(Duration::from_secs(1)),
            },
        );
        drop(p);
        let start = Instant::now();
        let _a = t.acquire().await;
        let _b = t.acquire().await;
        assert!(
            start.elapsed() < Duration::from_millis(100),
            "the budget had room"
        );
        let _c = t.acquire().await;
        assert!(
            start.elapsed() >= Duration::from_millis(150),
            "the third waits for the refill: {:?}",
            start.elapsed()
        );
    }

    /// The server counted two concurrent requests in the other order than their answers
    /// arrive: the later answer's higher `remaining` is older news and must not raise the
    /// mirror (it did before, and two requests met a 429).
    #[tokio::test(start_paused = true)]
    async fn an_answer_carrying_older_news_does_not_raise_the_budget() {
        let t = Throttle::default();
        // A slow refill (5 per 1,000 s), so only the headers matter here.
        let budget = |remaining| RateHeaders {
            limit: Some(5.0),
            remaining: Some(remaining),
            reset: None,
            window: Some(Duration::from_secs(1000)),
        };
        let first = t.acquire().await;
        let second = t.acquire().await;
        // The server took `first` after `second`, so `first` knows of both.
        first.on_headers(&budget(2.0));
        drop(first);
        // `second`'s answer arrives last but was counted before `first`.
        second.on_headers(&budget(3.0));
        drop(second);
        let _a = t.acquire().await;
        let _b = t.acquire().await;
        let third = tokio::time::timeout(Duration::from_secs(10), t.acquire()).await;
        assert!(
            third.is_err(),
            "only the 2 the newest answer left may start"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_spent_budget_without_a_rate_waits_for_its_reset() {
        let t = Throttle::default();
        let p = t.acquire().await;
        hear(
            &t,
            RateHeaders {
                limit: Some(5000.0),
                remaining: Some(0.0),
                reset: Some(Duration::from_millis(80)),
                window: None,
            },
        );
        drop(p);
        let mut heard = Vec::new();
        let start = Instant::now();
        let _q = t.acquire_announcing(|w| heard.push(w)).await;
        assert!(
            start.elapsed() >= Duration::from_millis(70),
            "waited for the reset"
        );
        assert!(heard.is_empty(), "short waits are not announced");
        // Whole again: the next ones start at once.
        let again = Instant::now();
        for _ in 0..5 {
            drop(t.acquire().await);
        }
        assert!(
            again.elapsed() < Duration::from_millis(60),
            "{:?}",
            again.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_wait_for_the_budget_is_announced_once() {
        let t = Throttle::default();
        hear(
            &t,
            RateHeaders {
                limit: Some(100.0),
                remaining: Some(0.0),
                reset: Some(Duration::from_secs(3600)),
                window: None,
            },
        );
        let mut heard = Vec::new();
        let waited = tokio::time::timeout(
            Duration::from_millis(50),
            t.acquire_announcing(|w| heard.push(w)),
        )
        .await;
        assert!(waited.is_err(), "an hour's wait is waited");
        assert_eq!(heard.len(), 1);
        assert!(heard[0] > Duration::from_secs(3590));
    }

    #[tokio::test(start_paused = true)]
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
