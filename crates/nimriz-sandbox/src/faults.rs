//! The gate every API request passes: count it, then the injected faults in a fixed order
//! (latency, rate limit, failure), then auth; after the handler, maybe drop the connection.
//! `/__sandbox/*` routes never pass here, so tests can always read the stats.

use super::api::ApiError;
use super::config::RateHeaders;
use super::server::{ConnectionKiller, Shared};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rand::RngExt;
use std::sync::Arc;
use std::time::Instant;

/// Token bucket: `rate` tokens per second, holding at most one second's worth (at least one).
#[derive(Debug)]
pub(crate) struct TokenBucket {
    rate: f64,
    capacity: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(rate: f64) -> Self {
        let capacity = rate.max(1.0);
        TokenBucket {
            rate,
            capacity,
            tokens: capacity,
            last: Instant::now(),
        }
    }

    /// The budget's headers as of now, in `style` (after `try_take`).
    fn headers(&self, style: RateHeaders) -> Vec<(&'static str, String)> {
        let remaining = self.tokens.max(0.0).floor();
        // Seconds until the bucket is whole again.
        let full = ((self.capacity - self.tokens).max(0.0) / self.rate).ceil();
        let limit = format!("{}", self.capacity.floor());
        match style {
            RateHeaders::None => Vec::new(),
            RateHeaders::Ietf => vec![
                ("ratelimit-limit", limit.clone()),
                ("ratelimit-remaining", format!("{remaining}")),
                ("ratelimit-reset", format!("{full}")),
                (
                    "ratelimit-policy",
                    format!("{limit};w={}", format_secs(self.capacity / self.rate)),
                ),
            ],
            RateHeaders::X => {
                // The Unix second at or after the moment the bucket is whole (rounding
                // down would promise tokens a second early).
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0.0, |d| d.as_secs_f64());
                let whole = (self.capacity - self.tokens).max(0.0) / self.rate;
                vec![
                    ("x-ratelimit-limit", limit),
                    ("x-ratelimit-remaining", format!("{remaining}")),
                    (
                        "x-ratelimit-reset",
                        format!("{}", (now + whole).ceil() as u64),
                    ),
                ]
            }
        }
    }

    /// Take a token, or say how many whole seconds (≥ 1) until one is available.
    pub fn try_take(&mut self, now: Instant) -> Result<(), u64> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            let wait = ((1.0 - self.tokens) / self.rate).ceil();
            // `as` saturates; the max keeps the header meaningful for fast buckets.
            Err((wait as u64).max(1))
        }
    }
}

pub(crate) async fn api_gate(
    State(shared): State<Arc<Shared>>,
    matched: Option<MatchedPath>,
    request: Request,
    next: Next,
) -> Response {
    let log_line = shared
        .config
        .log_requests
        .then(|| format!("{} {}", request.method(), request.uri()));
    match gate(&shared, matched, request, next).await {
        Outcome::Answer(response) => {
            if let Some(line) = &log_line {
                eprintln!("sandbox: {line} -> {}", response.status().as_u16());
            }
            response
        }
        Outcome::Drop(killer) => {
            if let Some(line) = &log_line {
                eprintln!("sandbox: {line} -> committed, connection dropped");
            }
            // The create is committed (and persisted); now vanish. The connection task drops
            // this future together with the socket, so this never resumes.
            killer.kill();
            std::future::pending().await
        }
    }
}

enum Outcome {
    Answer(Response),
    /// Close the connection without a response.
    Drop(ConnectionKiller),
}

async fn gate(
    shared: &Shared,
    matched: Option<MatchedPath>,
    request: Request,
    next: Next,
) -> Outcome {
    let route_path = matched
        .as_ref()
        .map_or(request.uri().path(), |m| m.as_str());
    let route = format!("{} {route_path}", request.method());
    let is_create = request.method() == Method::POST
        && matches!(route_path, "/api/shorten" | "/api/shorten/bulk");
    let faults = &shared.config.faults;

    *shared.lock().requests.entry(route).or_insert(0) += 1;
    if !faults.latency.is_zero() {
        tokio::time::sleep(faults.latency).await;
    }
    let budget;
    {
        let mut inner = shared.lock();
        let taken = inner.bucket.as_mut().map(|bucket| {
            let taken = bucket.try_take(Instant::now());
            (taken, bucket.headers(faults.rate_headers))
        });
        let (taken, headers) = taken.unwrap_or((Ok(()), Vec::new()));
        budget = headers;
        if let Err(retry_after) = taken {
            inner.faults.rate_limited += 1;
            let answer = ApiError::rate_limited(retry_after).into_response();
            return Outcome::Answer(with_budget(answer, &budget));
        }
        if faults.fail_rate > 0.0 && inner.rng.random_bool(faults.fail_rate) {
            inner.faults.failed += 1;
            return Outcome::Answer(with_budget(
                ApiError::unavailable().into_response(),
                &budget,
            ));
        }
    }
    if !authorized(request.headers(), &shared.config.key) {
        return Outcome::Answer(with_budget(
            ApiError::unauthorized().into_response(),
            &budget,
        ));
    }

    let killer = request.extensions().get::<ConnectionKiller>().cloned();
    let response = next.run(request).await;

    if is_create
        && response.status().is_success()
        && faults.drop_after_commit_rate > 0.0
        && let Some(killer) = killer
    {
        let mut inner = shared.lock();
        if inner.rng.random_bool(faults.drop_after_commit_rate) {
            inner.faults.dropped += 1;
            return Outcome::Drop(killer);
        }
    }
    Outcome::Answer(with_budget(response, &budget))
}

/// `response` with the budget's headers (none unless `--rate-headers`).
fn with_budget(mut response: Response, budget: &[(&'static str, String)]) -> Response {
    for (name, value) in budget {
        if let Ok(v) = header::HeaderValue::from_str(value) {
            response.headers_mut().insert(*name, v);
        }
    }
    response
}

/// Seconds for a header: whole when whole, else to the millisecond.
fn format_secs(s: f64) -> String {
    if s.fract() == 0.0 {
        format!("{s}")
    } else {
        format!("{s:.3}")
    }
}

/// `Authorization: Bearer KEY` or `X-Nim-Api-Key: KEY`.
fn authorized(headers: &HeaderMap, key: &str) -> bool {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
    let api_key = headers
        .get("x-nim-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim);
    [bearer, api_key]
        .into_iter()
        .flatten()
        .any(|given| constant_time_eq(given.as_bytes(), key.as_bytes()))
}

/// Compare without an early exit on the first differing byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bucket_refuses_beyond_rate_and_refills() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(2.0);
        bucket.last = start;
        assert!(bucket.try_take(start).is_ok());
        assert!(bucket.try_take(start).is_ok());
        assert_eq!(bucket.try_take(start), Err(1));
        assert!(bucket.try_take(start + Duration::from_millis(500)).is_ok());
        // A slow bucket asks for a longer wait, in whole seconds.
        let mut slow = TokenBucket::new(0.25);
        slow.last = start;
        assert!(slow.try_take(start).is_ok());
        assert_eq!(slow.try_take(start), Err(4));
    }

    #[test]
    fn auth_headers() {
        let mut h = HeaderMap::new();
        assert!(!authorized(&h, "k1"));
        h.insert(header::AUTHORIZATION, "bearer k1".parse().unwrap());
        assert!(authorized(&h, "k1"));
        assert!(!authorized(&h, "k2"));
        let mut h = HeaderMap::new();
        h.insert("X-Nim-Api-Key", "k2".parse().unwrap());
        assert!(authorized(&h, "k2"));
        assert!(!authorized(&h, "k22"));
    }
}
