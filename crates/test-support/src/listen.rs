//! Shared pieces of the `listen` tests: an independent HMAC signer, a stand-in for Slack /
//! a CRM that counts what it received, a manifest fixture, and bounded waiting.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use nimriz_listen::{Listener, RunningListener, config};
use nimriz_matrix_core::manifest::{LinkRecord, LinkStatus, Manifest};
use nimriz_matrix_core::model::{Cell, DomainRef, PlanSource};
use nimriz_matrix_core::report::{SharedReporter, Silent};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub const WEBHOOK_SECRET: &str = "whsec_test_primary";
pub const ROTATED_SECRET: &str = "whsec_test_next";
pub const CLICK_SECRET: &str = "click-shared-secret";

/// HMAC-SHA256 written out from RFC 2104 on top of plain SHA-256, so the test does not share
/// code with the implementation it checks.
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let ipad: Vec<u8> = block.iter().map(|b| b ^ 0x36).collect();
    let opad: Vec<u8> = block.iter().map(|b| b ^ 0x5c).collect();
    let inner = Sha256::new()
        .chain_update(&ipad)
        .chain_update(msg)
        .finalize();
    Sha256::new()
        .chain_update(&opad)
        .chain_update(inner)
        .finalize()
        .into()
}

pub fn signature(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut msg = format!("{timestamp}.").into_bytes();
    msg.extend_from_slice(body);
    format!("v1={}", hex::encode(hmac_sha256(secret.as_bytes(), &msg)))
}

pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

pub fn lifecycle_body(id: &str, event_type: &str, link_id: &str) -> String {
    serde_json::json!({
        "id": id,
        "type": event_type,
        "api_version": "2026-01-01",
        "created_at": "2026-11-27T10:00:00Z",
        "organization_id": "org_1",
        "workspace_id": "ws_1",
        "data": {"link_id": link_id, "event_action": "created", "changed_fields": [], "before": null, "after": {"tags": ["demo"]}}
    })
    .to_string()
}

/// POST a signed lifecycle webhook; returns (status, JSON answer).
pub async fn post_webhook(
    client: &reqwest::Client,
    url: &str,
    secret: &str,
    timestamp: i64,
    id_header: Option<&str>,
    body: &str,
) -> (u16, Value) {
    let ts = timestamp.to_string();
    let mut req = client
        .post(url)
        .header("content-type", "application/json")
        .header("X-Nim-Timestamp", &ts)
        .header("X-Nim-Signature", signature(secret, &ts, body.as_bytes()))
        .header("X-Nim-Delivery-Attempt", "1")
        .body(body.to_string());
    if let Some(id) = id_header {
        req = req.header("X-Nim-Event-Id", id);
    }
    let resp = req.send().await.expect("listener reachable");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

pub async fn post_click(client: &reqwest::Client, url: &str, body: &Value) -> (u16, Value) {
    let resp = client
        .post(url)
        .header("X-Nim-Click-Secret", CLICK_SECRET)
        .json(body)
        .send()
        .await
        .expect("listener reachable");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// One request the stand-in received.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub idempotency_key: Option<String>,
    pub body: Value,
    pub answered: u16,
    pub at: Instant,
}

#[derive(Default)]
struct StandInState {
    received: Vec<Received>,
    /// Answers to give next, in order (status, Retry-After seconds); then `fallback`.
    script: VecDeque<(u16, Option<u64>)>,
    fallback: Option<(u16, Option<u64>)>,
    /// Wait this long before answering (requests in flight when the receiver is killed).
    delay: Duration,
}

/// A local stand-in for Slack and a CRM: `POST /slack`, `POST /crm` (any path, really).
#[derive(Clone)]
pub struct StandIn {
    pub base: String,
    state: Arc<Mutex<StandInState>>,
}

impl StandIn {
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(StandInState::default()));
        let app = Router::new()
            .route("/{*path}", post(record))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind stand-in");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        StandIn { base, state }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.base)
    }

    /// Answer the next requests with these (status, Retry-After) in order.
    pub fn script(&self, answers: &[(u16, Option<u64>)]) {
        self.state.lock().expect("lock").script.extend(answers);
    }

    /// Answer every request (after the script) with this; `None` = 200.
    pub fn set_fallback(&self, answer: Option<(u16, Option<u64>)>) {
        self.state.lock().expect("lock").fallback = answer;
    }

    pub fn set_delay(&self, delay: Duration) {
        self.state.lock().expect("lock").delay = delay;
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.lock().expect("lock").received.clone()
    }

    /// Requests to `path` that were answered 2xx.
    pub fn accepted(&self, path: &str) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.path == path && (200..300).contains(&r.answered))
            .collect()
    }

    /// For requests to `path` answered 2xx: each body's `event` → the idempotency keys it
    /// came with (exactly once as a downstream sees it = one key per event).
    pub fn keys_per_event(&self, path: &str) -> HashMap<String, BTreeSet<String>> {
        let mut keys: HashMap<String, BTreeSet<String>> = HashMap::new();
        for r in self.accepted(path) {
            let event = r.body["event"].as_str().expect("event id").to_string();
            keys.entry(event)
                .or_default()
                .insert(r.idempotency_key.clone().expect("idempotency key"));
        }
        keys
    }
}

async fn record(
    State(state): State<Arc<Mutex<StandInState>>>,
    axum::extract::Path(path): axum::extract::Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    // Record first, answer after the delay: a receiver killed meanwhile leaves a request the
    // target acted on but whose answer nobody recorded (the crash window).
    let (status, retry_after, delay) = {
        let mut st = state.lock().expect("lock");
        let (status, retry_after) = st.script.pop_front().or(st.fallback).unwrap_or((200, None));
        st.received.push(Received {
            path,
            idempotency_key: headers
                .get("idempotency-key")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
            answered: status,
            at: Instant::now(),
        });
        (status, retry_after, st.delay)
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let mut h = HeaderMap::new();
    if let Some(s) = retry_after {
        h.insert("retry-after", s.to_string().parse().expect("header value"));
    }
    (StatusCode::from_u16(status).expect("valid status"), h, "ok")
}

/// Wait (bounded) until `check` is true; panics with `what` after `limit`.
pub async fn wait_until(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The env the configs read their secrets from.
pub fn env(stand_in: &StandIn) -> HashMap<String, String> {
    HashMap::from([
        ("WH_SECRET".into(), WEBHOOK_SECRET.into()),
        ("WH_SECRET_NEXT".into(), ROTATED_SECRET.into()),
        ("CLICK_SECRET".into(), CLICK_SECRET.into()),
        ("SLACK_URL".into(), stand_in.url("slack")),
        ("CRM_URL".into(), stand_in.url("crm")),
    ])
}

/// The config head every test shares: both endpoints, a fast worker.
pub fn base_config(dir: &Path, manifest: Option<&Path>) -> String {
    format!(
        r#"bind = "127.0.0.1:0"
storage = "{}"
max_body_bytes = 4096
manifests = [{}]

[webhook]
secret_env = ["WH_SECRET", "WH_SECRET_NEXT"]

[click]
secret_env = "CLICK_SECRET"

[worker]
lease_seconds = 2
max_attempts = 5
backoff_base_ms = 20
backoff_max_ms = 200
request_timeout_seconds = 1
"#,
        dir.join("events.db").display(),
        manifest
            .map(|m| format!("\"{}\"", m.display()))
            .unwrap_or_default()
    )
}

/// Start in-process with the shared config head and `extra` (rules) after it.
pub async fn start(
    dir: &Path,
    stand_in: &StandIn,
    manifest: Option<&Path>,
    extra: &str,
) -> RunningListener {
    start_full(dir, stand_in, manifest, "", extra, |_| {}).await
}

/// Like [`start`], with top-level keys `head` before the shared head, and `tweak` applied to
/// the parsed config (e.g. to pin its clock).
pub async fn start_custom(
    dir: &Path,
    stand_in: &StandIn,
    head: &str,
    extra: &str,
    tweak: impl FnOnce(&mut config::ListenConfig),
) -> RunningListener {
    start_full(dir, stand_in, None, head, extra, tweak).await
}

async fn start_full(
    dir: &Path,
    stand_in: &StandIn,
    manifest: Option<&Path>,
    head: &str,
    extra: &str,
    tweak: impl FnOnce(&mut config::ListenConfig),
) -> RunningListener {
    let text = format!("{head}\n{}\n{extra}", base_config(dir, manifest));
    let mut cfg = config::parse("listen.toml", text, dir, &env(stand_in)).expect("valid config");
    tweak(&mut cfg);
    Listener::start(cfg, 256, std::sync::Arc::new(Silent) as SharedReporter)
        .await
        .expect("listener starts")
}

pub const ACME_URL_ID: &str = "11111111-1111-4111-8111-111111111111";
pub const ZETA_URL_ID: &str = "22222222-2222-4222-8222-222222222222";
pub const DOMAIN_ID: &str = "7d0c6a4e-3f5b-4c1e-9a57-2b1d1e0f9a01";

/// A manifest with two created links: acme/email and zeta/social.
pub fn write_manifest(path: &Path) {
    let source = PlanSource {
        spec_path: "spring.toml".into(),
        spec_sha256: "a".repeat(64),
        inputs: vec![],
        campaign: Some("spring-launch-2026".into()),
        resolved_spec: serde_json::json!({}),
    };
    let mut m = Manifest::new(source, None);
    for (brand, channel, url_id) in [
        ("acme", "email", ACME_URL_ID),
        ("zeta", "social", ZETA_URL_ID),
    ] {
        let domain = DomainRef {
            id: Some(DOMAIN_ID.into()),
            host: Some("go.acme.example".into()),
        };
        let slug = format!("{brand}-{channel}");
        m.links.push(LinkRecord {
            key: LinkRecord::key_for(&domain, &slug),
            cell: Cell(vec![
                ("brand".into(), brand.into()),
                ("channel".into(), channel.into()),
            ]),
            slug: slug.clone(),
            domain,
            destination: format!(
                "https://{brand}.example/demo?utm_source={channel}&utm_campaign=spring-launch-2026"
            ),
            utm: [
                ("utm_source".to_string(), channel.to_string()),
                ("utm_campaign".to_string(), "spring-launch-2026".to_string()),
            ]
            .into(),
            idempotency_key: format!("k-{slug}"),
            status: LinkStatus::Created,
            short_url: Some(format!("https://go.acme.example/{slug}")),
            url_id: Some(url_id.into()),
            existing_destination: None,
            tags: Vec::new(),
            printed_at: None,
            expires_at: None,
            redirect: None,
            space: None,
            origin: None,
            outside: None,
            retired: None,
            history: Vec::new(),
            error: None,
            attempts: 1,
            updated_at: "2026-11-27T10:00:00Z".into(),
        });
    }
    std::fs::write(path, serde_json::to_vec_pretty(&m).expect("serialise"))
        .expect("write manifest");
}
