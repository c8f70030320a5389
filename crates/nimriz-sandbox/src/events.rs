//! The sandbox's sending side, so the whole `listen` loop runs locally:
//! - signed lifecycle webhooks (`link.created`, `link.updated`) for its own link changes, to
//!   `--webhook-url`, signed like Nimriz (`X-Nim-Signature: v1=<hex HMAC-SHA256 of
//!   "{timestamp}.{body}">`) with the secret in `--webhook-secret-env`;
//! - click / QR-scan events for `POST /__sandbox/click {"short_url" | "url_id", ...}`, to
//!   `--click-url`, with the shared secret from `--click-header-env` in `--click-header`.
//!
//! Delivery is at-least-once like the real thing: a background task per event retries
//! (bounded: [`EventsConfig::max_attempts`]) on errors and non-2xx, keeping the event id.

use super::server::Shared;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use nimriz::Secret;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use uuid::Uuid;

pub use nimriz::facts::DEFAULT_CLICK_HEADER;

/// Where (and how) the sandbox sends events. `Default`: nowhere.
#[derive(Debug, Clone)]
pub struct EventsConfig {
    pub webhook_url: Option<String>,
    pub webhook_secret: Option<Secret>,
    pub click_url: Option<String>,
    pub click_header: String,
    pub click_secret: Option<Secret>,
    /// Tries per event (first included) before giving up.
    pub max_attempts: u32,
    /// First retry delay; doubles each time.
    pub retry_base: Duration,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            webhook_url: None,
            webhook_secret: None,
            click_url: None,
            click_header: DEFAULT_CLICK_HEADER.into(),
            click_secret: None,
            max_attempts: 6,
            retry_base: Duration::from_millis(250),
        }
    }
}

/// One event to deliver.
struct Outgoing {
    url: String,
    event_id: String,
    event_type: String,
    body: String,
    /// Sign as a lifecycle webhook with this secret; else send `header: secret`.
    webhook_secret: Option<Secret>,
    header: Option<(String, Secret)>,
}

/// Queues events for the background sender. Cheap to clone; sending never blocks a handler.
#[derive(Clone)]
pub(crate) struct Emitter {
    config: EventsConfig,
    tx: mpsc::UnboundedSender<Outgoing>,
}

impl Emitter {
    /// Start the sender task on the current runtime; `None` when nothing is configured.
    pub fn start(config: &EventsConfig) -> Option<Self> {
        if config.webhook_url.is_none() && config.click_url.is_none() {
            return None;
        }
        let (tx, mut rx) = mpsc::unbounded_channel::<Outgoing>();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .ok()?;
        let (attempts, base) = (config.max_attempts.max(1), config.retry_base);
        tokio::spawn(async move {
            while let Some(event) = rx.recv().await {
                tokio::spawn(deliver(client.clone(), event, attempts, base));
            }
        });
        Some(Emitter {
            config: config.clone(),
            tx,
        })
    }

    /// A lifecycle webhook for a link (the link object as the API returns it).
    pub fn link_event(&self, event_type: &str, link: &Value) {
        let (Some(url), Some(secret)) = (&self.config.webhook_url, &self.config.webhook_secret)
        else {
            return;
        };
        let id = format!("evt_{}", Uuid::new_v4().simple());
        let body = json!({
            "id": id,
            "type": event_type,
            "api_version": "2026-01-01",
            "created_at": super::store::now_rfc3339(),
            "organization_id": "org_sandbox",
            "workspace_id": "ws_sandbox",
            "data": {
                "link_id": link.get("url_id"),
                "domain_id": link.get("domain_id"),
                "event_action": event_type.trim_start_matches("link."),
                "changed_fields": [],
                "before": null,
                "after": link,
            }
        });
        let _ = self.tx.send(Outgoing {
            url: url.clone(),
            event_id: id,
            event_type: event_type.into(),
            body: body.to_string(),
            webhook_secret: Some(secret.clone()),
            header: None,
        });
    }
}

async fn deliver(client: reqwest::Client, event: Outgoing, max_attempts: u32, base: Duration) {
    for attempt in 1..=max_attempts {
        let mut req = client
            .post(&event.url)
            .header("content-type", "application/json")
            .body(event.body.clone());
        if let Some(secret) = &event.webhook_secret {
            let ts = chrono::Utc::now().timestamp().to_string();
            req = req
                .header("X-Nim-Event-Id", &event.event_id)
                .header("X-Nim-Event-Type", &event.event_type)
                .header("X-Nim-Timestamp", &ts)
                .header(
                    "X-Nim-Signature",
                    nimriz::webhook::sign(secret.expose(), &ts, event.body.as_bytes()),
                )
                .header("X-Nim-Delivery-Attempt", attempt.to_string())
                .header(
                    "X-Nim-Delivery-Reason",
                    if attempt == 1 { "initial" } else { "retry" },
                );
        }
        if let Some((name, secret)) = &event.header {
            req = req.header(name.as_str(), secret.expose_str());
        }
        if req.send().await.is_ok_and(|r| r.status().is_success()) {
            return;
        }
        if attempt < max_attempts {
            tokio::time::sleep(base.saturating_mul(1 << (attempt - 1).min(10))).await;
        }
    }
}

/// `POST /__sandbox/click {"short_url": "...", "country": "FR", ...}` (or `"url_id"`):
/// sends a click event for that link to `--click-url`. A `?nr=qr` on the short URL (or
/// `"touch_type": "qr_scan"`) makes it a QR scan. Extra fields are passed through.
/// Answers 202 with the event id; delivery happens in the background.
pub(crate) async fn simulate_click(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let refuse = |status: StatusCode, msg: &str| {
        (
            status,
            Json(json!({"error": {"code": "invalid_request", "message": msg}})),
        )
            .into_response()
    };
    let Some(emitter) = &shared.events else {
        return refuse(
            StatusCode::CONFLICT,
            "no click destination: start the sandbox with --click-url URL (and --click-header-env VAR)",
        );
    };
    let (Some(url), Some(secret)) = (&emitter.config.click_url, &emitter.config.click_secret)
    else {
        return refuse(
            StatusCode::CONFLICT,
            "no click destination: start the sandbox with --click-url URL (and --click-header-env VAR)",
        );
    };
    let Ok(Value::Object(req)) = serde_json::from_slice::<Value>(&body) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "body must be a JSON object with short_url or url_id",
        );
    };
    let short = req.get("short_url").and_then(Value::as_str);
    let is_qr = short.is_some_and(|s| s.contains("nr=qr"))
        || req.get("touch_type").and_then(Value::as_str) == Some("qr_scan");
    let link = {
        let inner = shared.lock();
        if let Some(id) = req
            .get("url_id")
            .and_then(Value::as_str)
            .and_then(|s| Uuid::parse_str(s).ok())
        {
            inner.store.get(id).cloned()
        } else if let Some(parsed) = short.and_then(|s| url::Url::parse(s).ok()) {
            let host = parsed.host_str().unwrap_or_default().to_ascii_lowercase();
            let slug = parsed.path().trim_start_matches('/').to_string();
            shared
                .config
                .domains
                .iter()
                .find(|d| d.domain_name == host)
                .and_then(|d| inner.store.find(d.id, &slug).cloned())
        } else {
            None
        }
    };
    let Some(link) = link else {
        return refuse(
            StatusCode::NOT_FOUND,
            "no such link in the sandbox (give short_url or url_id)",
        );
    };
    let id = format!("clk_{}", Uuid::new_v4().simple());
    let mut event = json!({
        "id": id,
        "type": if is_qr { "link.qr_scanned" } else { "link.clicked" },
        "touch_type": if is_qr { "qr_scan" } else { "short_link_click" },
        "clicked_at": super::store::now_rfc3339(),
        "url_id": link.url_id,
        "domain_id": link.domain_id,
        "short_code": link.short_code,
        "short_url": link.short_url(),
        "destination_url_capped": link.long_url,
        "country": "US",
        "device_category": "desktop",
        "bot_flag": false,
    });
    if let Ok(dest) = url::Url::parse(&link.long_url) {
        for (k, v) in dest.query_pairs().filter(|(k, _)| k.starts_with("utm_")) {
            event[k.as_ref()] = Value::String(v.into_owned());
        }
    }
    for (k, v) in req {
        if !matches!(k.as_str(), "url_id" | "short_url" | "id") {
            event[k] = v;
        }
    }
    let _ = emitter.tx.send(Outgoing {
        url: url.clone(),
        event_id: id.clone(),
        event_type: "link.clicked".into(),
        body: event.to_string(),
        webhook_secret: None,
        header: Some((emitter.config.click_header.clone(), secret.clone())),
    });
    (
        StatusCode::ACCEPTED,
        Json(json!({"event_id": id, "event": event})),
    )
        .into_response()
}
