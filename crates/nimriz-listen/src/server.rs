//! The HTTP side: authenticate, store durably, answer. Nothing here waits on Slack or a CRM.
//!
//! Answers: 200 `{"status":"stored"}` once committed, 200 `{"status":"duplicate"}` for an
//! event id already stored, 400 malformed / id mismatch, 401 authentication, 413 too large,
//! 503 storage failure (the sender retries; nothing was acknowledged).

use super::config::{ClickEndpoint, ListenConfig, WebhookEndpoint};
use super::store::{Ingest, NewEvent, Writer, now_ms};
use super::verify::{verify_shared_secret, verify_webhook};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use nimriz_matrix_core::report::SharedReporter;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;

struct AppState {
    webhook: Option<WebhookEndpoint>,
    click: Option<ClickEndpoint>,
    tolerance: Duration,
    writer: Writer,
    printer: SharedReporter,
}

type Shared = State<Arc<AppState>>;

pub fn router(config: &ListenConfig, writer: Writer, printer: SharedReporter) -> Router {
    let state = Arc::new(AppState {
        webhook: config.webhook.clone(),
        click: config.click.clone(),
        tolerance: config.tolerance,
        writer,
        printer,
    });
    let mut app = Router::new().route("/healthz", get(|| async { "ok" }));
    if let Some(w) = &config.webhook {
        app = app.route(&w.path, post(webhook));
    }
    if let Some(c) = &config.click {
        app = app.route(&c.path, post(click));
    }
    app.layer(DefaultBodyLimit::max(config.max_body_bytes))
        .with_state(state)
}

fn answer(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

fn refuse(status: StatusCode, message: impl Into<String>) -> Response {
    answer(status, json!({"error": message.into()}))
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
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

async fn webhook(
    State(st): Shared,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(r) => return refuse(r.status(), r.body_text()),
    };
    let Some(endpoint) = &st.webhook else {
        return refuse(StatusCode::NOT_FOUND, "no webhook endpoint");
    };
    let now = now_ms();
    // Authenticate the raw bytes first; nothing is parsed before this passes.
    if let Err(why) = verify_webhook(
        &endpoint.secrets,
        header(&headers, "x-nim-timestamp"),
        header(&headers, "x-nim-signature"),
        &body,
        now / 1000,
        st.tolerance.as_secs(),
    ) {
        st.printer.detail(&format!("webhook refused (401): {why}"));
        return refuse(StatusCode::UNAUTHORIZED, why.to_string());
    }
    let Ok(Value::Object(envelope)) = serde_json::from_slice::<Value>(&body) else {
        return refuse(StatusCode::BAD_REQUEST, "body is not a JSON object");
    };
    let Some(id) = envelope
        .get("id")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    else {
        return refuse(StatusCode::BAD_REQUEST, "the signed body has no `id`");
    };
    // The header is not signed: if it disagrees with the signed id, something rewrote it.
    if let Some(h) = header(&headers, "x-nim-event-id")
        && h != id
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
    store(
        &st,
        id.to_string(),
        "webhook",
        event_type,
        &headers,
        body,
        now,
    )
    .await
}

async fn click(
    State(st): Shared,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(r) => return refuse(r.status(), r.body_text()),
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
    store(&st, id, "click", event_type, &headers, body, now_ms()).await
}

/// The click event's id: `id` or `event_id` from the payload (string or number); when the
/// destination sends neither, `sha256:<hex of the raw body>` — so an identical redelivery
/// dedupes, while two real clicks differ by their `clicked_at`/`timestamp` field.
pub fn click_event_id(event: &serde_json::Map<String, Value>, raw: &[u8]) -> String {
    for key in ["id", "event_id"] {
        match event.get(key) {
            Some(Value::String(s)) if !s.is_empty() => return s.clone(),
            Some(Value::Number(n)) => return n.to_string(),
            _ => {}
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
                "could not store event {event_id}: {e} (answered 503)"
            ));
            refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage unavailable; retry later",
            )
        }
    }
}
