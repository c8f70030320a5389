//! The HTTP side: authenticate, store durably, answer. Nothing here waits on Slack or a CRM.
//!
//! Answers: 200 `{"status":"stored"}` once committed, 200 `{"status":"duplicate"}` for an
//! event id already stored, 400 malformed / id mismatch, 401 authentication, 408 a body that
//! does not arrive in time, 413 too large (before the body is read when `Content-Length`
//! says so), 503 + `Retry-After` when the event cannot be made durable within the ack
//! timeout (the sender retries; nothing was acknowledged).
//!
//! Connections are bounded (see [`serve`]): header, body and idle timeouts, and a cap on
//! open connections below the file-descriptor limit, closing the longest-idle one first.

use super::backend::Acks;
use super::config::{ClickEndpoint, Clock, HttpLimits, ListenConfig, WebhookEndpoint};
use super::store::{Ingest, NewEvent};
use super::verify::{verify_shared_secret, verify_webhook};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use nimriz_matrix_core::report::SharedReporter;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};

struct AppState {
    webhook: Option<WebhookEndpoint>,
    click: Option<ClickEndpoint>,
    tolerance: Duration,
    max_body: usize,
    body_timeout: Duration,
    clock: Clock,
    writer: Acks,
    printer: SharedReporter,
}

type Shared = State<Arc<AppState>>;

pub fn router(config: &ListenConfig, writer: Acks, printer: SharedReporter) -> Router {
    let state = Arc::new(AppState {
        webhook: config.webhook.clone(),
        click: config.click.clone(),
        tolerance: config.tolerance,
        max_body: config.max_body_bytes,
        body_timeout: config.http.body_timeout,
        clock: config.clock.clone(),
        writer,
        printer,
    });
    let mut app = Router::new().route("/healthz", get(healthz));
    if let Some(w) = &config.webhook {
        app = app.route(&w.path, post(webhook));
    }
    if let Some(c) = &config.click {
        app = app.route(&c.path, post(click));
    }
    app.with_state(state)
}

fn answer(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

fn refuse(status: StatusCode, message: impl Into<String>) -> Response {
    answer(status, json!({"error": message.into()}))
}

/// Answer and close the connection (the rest of the request is not read).
fn refuse_and_close(status: StatusCode, message: impl Into<String>) -> Response {
    let mut r = refuse(status, message);
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

fn unavailable(message: impl Into<String>) -> Response {
    let mut r = refuse(StatusCode::SERVICE_UNAVAILABLE, message);
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// `/healthz`: 200 `ok` while the store is the file `listen` opened, a test write commits
/// within the ack timeout and SQLite has reported no corruption; else 503 with the reason.
async fn healthz(State(st): Shared) -> Response {
    match st.writer.probe().await {
        Ok(()) => "ok".into_response(),
        Err(why) => refuse(StatusCode::SERVICE_UNAVAILABLE, why),
    }
}

/// Read the body within the body timeout and the size limit. A declared `Content-Length`
/// over the limit is refused before a byte of the body is read.
async fn read_body(st: &AppState, headers: &HeaderMap, body: Body) -> Result<Bytes, Response> {
    let too_large = || {
        refuse_and_close(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than {} bytes", st.max_body),
        )
    };
    if let Some(len) = header(headers, "content-length") {
        match len.trim().parse::<u64>() {
            Ok(n) if n > st.max_body as u64 => return Err(too_large()),
            Ok(_) => {}
            // hyper refuses a malformed Content-Length before we get here; be safe anyway.
            Err(_) => {
                return Err(refuse_and_close(
                    StatusCode::BAD_REQUEST,
                    "bad Content-Length",
                ));
            }
        }
    }
    let limited = http_body_util::Limited::new(body, st.max_body);
    match tokio::time::timeout(st.body_timeout, limited.collect()).await {
        Err(_) => Err(refuse_and_close(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the body did not arrive within {} ms",
                st.body_timeout.as_millis()
            ),
        )),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Ok(Err(_)) => Err(refuse_and_close(
            StatusCode::BAD_REQUEST,
            "the body could not be read",
        )),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}

/// Headers kept with the raw body for the log: Nimriz's own and content metadata. Never
/// `Authorization` or the click secret header (which may itself be an `X-Nim-…` name).
fn kept_headers(headers: &HeaderMap, secret_header: Option<&str>) -> String {
    let mut kept = serde_json::Map::new();
    for (name, value) in headers {
        let n = name.as_str();
        if secret_header.is_some_and(|h| h.eq_ignore_ascii_case(n)) {
            continue;
        }
        if (n.starts_with("x-nim-") || matches!(n, "content-type" | "user-agent"))
            && let Ok(v) = value.to_str()
        {
            kept.insert(n.to_string(), Value::String(v.to_string()));
        }
    }
    Value::Object(kept).to_string()
}

/// An event id as a canonical string: a JSON string is taken as it is; a number is its
/// value in decimal without exponent or trailing `.0`, so `12345`, `12345.0`, `1.2345e4`
/// and `"12345"` are one id, `12345.5` is `"12345.5"`. Anything else (or `""`) is no id.
pub fn canonical_id(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(if let Some(i) = n.as_i64() {
            i.to_string()
        } else if let Some(u) = n.as_u64() {
            u.to_string()
        } else {
            let f = n.as_f64().unwrap_or(0.0);
            if f == 0.0 {
                "0".to_string()
            } else if f.fract() == 0.0 && f.abs() < 1e21 {
                format!("{f:.0}")
            } else {
                format!("{f}")
            }
        }),
        _ => None,
    }
}

/// Does the `X-Nim-Event-Id` header name this (canonical) id? Exactly, or as a number whose
/// canonical form it is: a sender may write a numeric id `12345.0` in the header as it wrote
/// it in the body, and that is the same event, not a rewritten header.
fn header_names_id(header: &str, id: &str) -> bool {
    let h = header.trim();
    h == id
        || serde_json::from_str::<Value>(h)
            .ok()
            .filter(Value::is_number)
            .and_then(|v| canonical_id(&v))
            .is_some_and(|c| c == id)
}

async fn webhook(State(st): Shared, headers: HeaderMap, body: Body) -> Response {
    let body = match read_body(&st, &headers, body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Some(endpoint) = &st.webhook else {
        return refuse(StatusCode::NOT_FOUND, "no webhook endpoint");
    };
    let now = st.clock.now_ms();
    // Authenticate the raw bytes first; nothing is parsed before this passes.
    if let Err(why) = verify_webhook(
        &endpoint.secrets,
        header(&headers, "x-nim-timestamp"),
        header(&headers, "x-nim-signature"),
        &body,
        now.div_euclid(1000),
        st.tolerance.as_secs(),
    ) {
        st.printer.detail(&format!("webhook refused (401): {why}"));
        return refuse(StatusCode::UNAUTHORIZED, why.to_string());
    }
    let Ok(Value::Object(envelope)) = serde_json::from_slice::<Value>(&body) else {
        return refuse(StatusCode::BAD_REQUEST, "body is not a JSON object");
    };
    let Some(id) = envelope.get("id").and_then(canonical_id) else {
        return refuse(StatusCode::BAD_REQUEST, "the signed body has no `id`");
    };
    // The header is not signed: if it disagrees with the signed id, something rewrote it.
    if let Some(h) = header(&headers, "x-nim-event-id")
        && !header_names_id(h, &id)
    {
        return refuse(
            StatusCode::BAD_REQUEST,
            "X-Nim-Event-Id does not match the `id` in the signed body",
        );
    }
    let event_type = envelope
        .get("type")
        .and_then(Value::as_str)
        .map(str::to_string);
    store(&st, id, "webhook", event_type, &headers, body, now).await
}

async fn click(State(st): Shared, headers: HeaderMap, body: Body) -> Response {
    let body = match read_body(&st, &headers, body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Some(endpoint) = &st.click else {
        return refuse(StatusCode::NOT_FOUND, "no click endpoint");
    };
    if let Err(why) = verify_shared_secret(&endpoint.secrets, header(&headers, &endpoint.header)) {
        st.printer.detail(&format!("click refused (401): {why}"));
        return refuse(
            StatusCode::UNAUTHORIZED,
            format!("missing or wrong {} header", endpoint.header),
        );
    }
    let Ok(Value::Object(event)) = serde_json::from_slice::<Value>(&body) else {
        return refuse(StatusCode::BAD_REQUEST, "body is not a JSON object");
    };
    let id = click_event_id(&event, &body);
    let event_type = ["type", "event_type"]
        .iter()
        .find_map(|k| event.get(*k).and_then(Value::as_str))
        .map(str::to_string);
    let now = st.clock.now_ms();
    store(&st, id, "click", event_type, &headers, body, now).await
}

/// The click event's id: `id` or `event_id` from the payload (see [`canonical_id`]); when
/// the destination sends neither, `sha256:<hex of the raw body>` — so an identical
/// redelivery dedupes, while two real clicks differ by their `clicked_at`/`timestamp` field.
pub fn click_event_id(event: &serde_json::Map<String, Value>, raw: &[u8]) -> String {
    for key in ["id", "event_id"] {
        if let Some(id) = event.get(key).and_then(canonical_id) {
            return id;
        }
    }
    format!("sha256:{}", hex::encode(Sha256::digest(raw)))
}

async fn store(
    st: &AppState,
    event_id: String,
    source: &'static str,
    event_type: Option<String>,
    headers: &HeaderMap,
    body: Bytes,
    received_at_ms: i64,
) -> Response {
    let event = NewEvent {
        event_id: event_id.clone(),
        source,
        event_type,
        received_at_ms,
        headers: kept_headers(headers, st.click.as_ref().map(|c| c.header.as_str())),
        body,
    };
    match st.writer.ingest(event).await {
        Ok(Ingest::Stored) => answer(
            StatusCode::OK,
            json!({"status": "stored", "event_id": event_id}),
        ),
        Ok(Ingest::Duplicate) => answer(
            StatusCode::OK,
            json!({"status": "duplicate", "event_id": event_id}),
        ),
        Err(e) => {
            st.printer.warn(&format!(
                "could not store {source} event {event_id}: {e} (answered 503)"
            ));
            unavailable("storage unavailable; retry later")
        }
    }
}

// ---- connections ----

/// The soft limit on open file descriptors, from `/proc/self/limits` (Linux); `None` when
/// it cannot be read.
pub fn fd_soft_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line
        .trim_start_matches("Max open files")
        .split_whitespace()
        .next()?;
    if soft == "unlimited" {
        return Some(u64::MAX);
    }
    soft.parse().ok()
}

/// Descriptors kept free for everything that is not an incoming connection: the store's
/// files (three per connection), the listening socket, the runtime, and the worker's
/// outgoing requests (one per concurrent delivery).
pub fn reserved_fds(worker_concurrency: usize) -> usize {
    64 + worker_concurrency
}

/// Connections accepted at once: the configured cap, lowered to fit under the limit.
pub fn connection_cap(configured: usize, fd_limit: Option<u64>, reserved: usize) -> usize {
    let fit = fd_limit.map_or(usize::MAX, |l| {
        usize::try_from(l)
            .unwrap_or(usize::MAX)
            .saturating_sub(reserved)
    });
    configured.min(fit).max(1)
}

/// Connection counters (for the benchmark and tests).
#[derive(Debug, Default)]
pub struct ConnStats {
    pub accepted: AtomicU64,
    /// Closed to make room under the cap (the longest idle first).
    pub evicted: AtomicU64,
    /// Closed after `idle_timeout` without a request.
    pub idle_closed: AtomicU64,
}

struct ConnState {
    /// Requests being handled on it (HTTP/1: 0 or 1).
    busy: usize,
    /// When it last became idle (opened, or its last answer went out).
    idle_since: Instant,
    close: Arc<Notify>,
}

#[derive(Default)]
struct Registry {
    conns: Mutex<HashMap<u64, ConnState>>,
    freed: Notify,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, ConnState>> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn len(&self) -> usize {
        self.lock().len()
    }

    fn add(&self, id: u64) -> Arc<Notify> {
        let close = Arc::new(Notify::new());
        self.lock().insert(
            id,
            ConnState {
                busy: 0,
                idle_since: Instant::now(),
                close: close.clone(),
            },
        );
        close
    }

    fn remove(&self, id: u64) {
        self.lock().remove(&id);
        self.freed.notify_one();
    }

    fn set_busy(&self, id: u64, busy: bool) {
        if let Some(c) = self.lock().get_mut(&id) {
            if busy {
                c.busy += 1;
            } else {
                c.busy = c.busy.saturating_sub(1);
                if c.busy == 0 {
                    c.idle_since = Instant::now();
                }
            }
        }
    }

    /// How long it has been idle; `None` while it is handling a request.
    fn idle_for(&self, id: u64) -> Option<Duration> {
        self.lock()
            .get(&id)
            .filter(|c| c.busy == 0)
            .map(|c| c.idle_since.elapsed())
    }

    /// Ask the connection idle the longest to close; false when every one is busy.
    fn evict_oldest_idle(&self) -> bool {
        let conns = self.lock();
        let oldest = conns
            .values()
            .filter(|c| c.busy == 0)
            .min_by_key(|c| c.idle_since);
        match oldest {
            Some(c) => {
                c.close.notify_one();
                true
            }
            None => false,
        }
    }

    fn close_all(&self) {
        for c in self.lock().values() {
            c.close.notify_one();
        }
    }
}

/// Marks a connection busy for as long as a request is being handled.
struct BusyGuard(Arc<Registry>, u64);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.set_busy(self.1, false);
    }
}

/// Accept and serve connections until `stop` turns true, then let in-flight requests finish.
///
/// Never more than `cap` connections are open: at the cap, the connection idle the longest
/// is closed and the next one accepted only then (waiting ones queue in the kernel's
/// backlog). Each connection has hyper's header read timeout, the handlers' body timeout,
/// and is closed after `idle_timeout` without a request.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    cap: usize,
    stats: Arc<ConnStats>,
    mut stop: watch::Receiver<bool>,
) {
    let registry = Arc::new(Registry::default());
    let mut tasks = tokio::task::JoinSet::new();
    let mut next_id = 0u64;
    'accept: loop {
        while registry.len() >= cap {
            if registry.evict_oldest_idle() {
                stats.evicted.fetch_add(1, Ordering::Relaxed);
            }
            tokio::select! {
                _ = registry.freed.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                _ = stopped(&mut stop) => break 'accept,
            }
        }
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    next_id += 1;
                    stats.accepted.fetch_add(1, Ordering::Relaxed);
                    let close = registry.add(next_id);
                    tasks.spawn(serve_connection(
                        stream,
                        app.clone(),
                        registry.clone(),
                        next_id,
                        close,
                        limits.clone(),
                        stats.clone(),
                    ));
                }
                // Out of file descriptors and the like: back off instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            _ = stopped(&mut stop) => break,
        }
    }
    drop(listener);
    // Idle connections close now, busy ones after their answer (bounded by the timeouts).
    registry.close_all();
    let grace = limits.header_timeout + limits.body_timeout + limits.ack_timeout;
    let drained = tokio::time::timeout(grace + Duration::from_secs(1), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
}

/// Resolves once `stop` is true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await.map(|_| ());
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    app: Router,
    registry: Arc<Registry>,
    id: u64,
    close: Arc<Notify>,
    limits: HttpLimits,
    stats: Arc<ConnStats>,
) {
    let _ = stream.set_nodelay(true);
    let hyper_app = hyper_util::service::TowerToHyperService::new(app);
    let reg = registry.clone();
    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        reg.set_busy(id, true);
        let guard = BusyGuard(reg.clone(), id);
        let call = hyper::service::Service::call(&hyper_app, req);
        async move {
            let response = call.await;
            drop(guard);
            response
        }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new()).http1_only();
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let tick =
        (limits.idle_timeout / 4).clamp(Duration::from_millis(10), Duration::from_millis(250));
    let mut closing = false;
    loop {
        tokio::select! {
            _ = connection.as_mut() => break,
            _ = close.notified(), if !closing => {
                if registry.idle_for(id).is_some() {
                    break; // idle: drop the socket
                }
                // Busy: answer the request in flight, then close.
                connection.as_mut().graceful_shutdown();
                closing = true;
            }
            _ = tokio::time::sleep(tick) => {
                if registry.idle_for(id).is_some_and(|d| d >= limits.idle_timeout) {
                    stats.idle_closed.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
        }
    }
    registry.remove(id);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_canonical_strings() {
        let ids: Vec<Option<String>> = [
            json!(12345),
            json!(12345.0),
            json!(1.2345e4),
            json!("12345"),
            json!(12345.5),
            json!("12345.0"),
            json!(-0.0),
            json!(""),
            json!(null),
            json!([1]),
        ]
        .iter()
        .map(canonical_id)
        .collect();
        let s = |v: &str| Some(v.to_string());
        assert_eq!(
            ids,
            [
                s("12345"),
                s("12345"),
                s("12345"),
                s("12345"),
                s("12345.5"),
                s("12345.0"),
                s("0"),
                None,
                None,
                None
            ]
        );
    }

    #[test]
    fn the_event_id_header_may_write_a_number_as_the_body_did() {
        let id = canonical_id(&json!(12345.0)).expect("id");
        assert!(header_names_id("12345", &id));
        assert!(header_names_id("12345.0", &id));
        assert!(header_names_id("1.2345e4", &id));
        assert!(!header_names_id("12346", &id));
        assert!(
            !header_names_id("\"12345\"", &id),
            "a JSON string is not a number"
        );
        assert!(header_names_id("evt_1", "evt_1"));
        assert!(!header_names_id("evt_2", "evt_1"));
    }

    #[test]
    fn the_cap_fits_under_the_fd_limit() {
        assert_eq!(connection_cap(1024, Some(256), reserved_fds(8)), 184);
        assert_eq!(connection_cap(100, Some(256), reserved_fds(8)), 100);
        assert_eq!(connection_cap(1024, None, 72), 1024);
        assert_eq!(connection_cap(1024, Some(10), 72), 1);
        assert!(fd_soft_limit().is_none_or(|l| l > 0));
    }
}
