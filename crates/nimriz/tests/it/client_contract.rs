//! Contract tests: every request the client sends (method, path, headers, body) and how it
//! reads each response shape, against a wiremock server on 127.0.0.1.

use nimriz::{ApiConfig, ApiKey, Client, ClientError, NewLink, RetryPolicy};
use nimriz::{BulkRow, idempotency_key};
use serde_json::json;
use std::time::{Duration, Instant};
use wiremock::matchers::{body_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const KEY: &str = "nmz_test_k3y_CONTRACT";

fn client(server: &MockServer, base_ms: u64) -> Client {
    let mut cfg = ApiConfig::new(&server.uri(), ApiKey::new(KEY, "test").unwrap()).unwrap();
    cfg.retry = RetryPolicy::with_base(Duration::from_millis(base_ms));
    cfg.request_timeout = Duration::from_secs(5);
    Client::new(cfg).unwrap()
}

fn new_link() -> NewLink {
    NewLink {
        domain_id: "dom-1".into(),
        long_url: "https://shop.example/spring?utm_source=google".into(),
        custom_slug: Some("spring-google".into()),
        expires_at: None,
        redirect_status_code: Some(302),
        tags: vec![],
        space: None,
    }
}

#[tokio::test]
async fn whoami_and_domains_send_bearer_and_read_shapes() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v1/whoami"))
        .and(header("authorization", format!("Bearer {KEY}").as_str()))
        .and(header("accept", "application/json"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(
                json!({"account_id": "acc-1", "workspace_name": "Acme", "plan": "pro"}),
            ),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v1/domains"))
        .and(header("authorization", format!("Bearer {KEY}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"domains": [
            {"id": "dom-1", "domain_name": "go.acme.example", "verified": true},
            {"id": 42, "domain_name": "rix.to"}
        ]})))
        .expect(1)
        .mount(&server)
        .await;
    let c = client(&server, 1);
    let me = c.whoami().await.unwrap();
    assert_eq!(me.account_id.as_deref(), Some("acc-1"));
    assert_eq!(me.workspace_name.as_deref(), Some("Acme"));
    let domains = c.list_domains().await.unwrap();
    assert_eq!(domains.len(), 2);
    assert_eq!(domains[1].id, "42");
    assert_eq!(domains[1].domain_name, "rix.to");
}

#[tokio::test]
async fn single_shorten_sends_documented_fields_and_idempotency_header() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/shorten"))
        .and(header("authorization", format!("Bearer {KEY}").as_str()))
        .and(header("content-type", "application/json"))
        .and(header("idempotency-key", "abc123"))
        .and(body_json(json!({
            "domain_id": "dom-1",
            "long_url": "https://shop.example/spring?utm_source=google",
            "custom_slug": "spring-google",
            "redirect_status_code": 302
        })))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "url_id": "u-1", "short_url": "https://go.acme.example/spring-google",
            "short_code": "spring-google", "extra": {"ignored": true}
        })))
        .expect(1)
        .mount(&server)
        .await;
    let sent = client(&server, 1)
        .shorten(&new_link(), Some("abc123"))
        .await
        .unwrap();
    assert_eq!(sent.attempts, 1);
    assert_eq!(sent.value.url_id.as_deref(), Some("u-1"));
    assert_eq!(sent.value.short_code.as_deref(), Some("spring-google"));
}

#[tokio::test]
async fn extras_are_sent_only_when_set() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/shorten"))
        .and(body_json(json!({
            "domain_id": "dom-1",
            "long_url": "https://shop.example/spring?utm_source=google",
            "custom_slug": "spring-google",
            "redirect_status_code": 301,
            "expires_at": "2027-01-01T00:00:00Z",
            "tags": ["spring", "paid"],
            "space": "emea"
        })))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"link": {"id": "u-9", "short_url": "s"}})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let mut link = new_link();
    link.redirect_status_code = Some(301);
    link.expires_at = Some("2027-01-01T00:00:00Z".into());
    link.tags = vec!["spring".into(), "paid".into()];
    link.space = Some("emea".into());
    let sent = client(&server, 1).shorten(&link, None).await.unwrap();
    // `id` is accepted for `url_id`, and `{"link": {...}}` nesting is read.
    assert_eq!(sent.value.url_id.as_deref(), Some("u-9"));
}

#[tokio::test]
async fn bulk_sends_rows_envelope_and_reads_results() {
    let server = MockServer::start().await;
    let key = idempotency_key("dom-1", "spring-google", &new_link().long_url);
    Mock::given(method("POST"))
        .and(path("/api/shorten/bulk"))
        .and(header("authorization", format!("Bearer {KEY}").as_str()))
        .and(body_json(json!({"rows": [{
            "client_row_id": "dom-1/spring-google",
            "idempotency_key": key,
            "domain_id": "dom-1",
            "long_url": "https://shop.example/spring?utm_source=google",
            "custom_slug": "spring-google",
            "redirect_status_code": 302
        }]})))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"results": [{
                "client_row_id": "dom-1/spring-google", "status": "created", "url_id": "u-1",
                "short_url": "https://go.acme.example/spring-google", "short_code": "spring-google",
                "idempotent": false, "error": null
            }]})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let rows = vec![BulkRow {
        client_row_id: "dom-1/spring-google".into(),
        idempotency_key: key.clone(),
        link: new_link(),
    }];
    let sent = client(&server, 1).shorten_bulk(&rows).await.unwrap();
    assert_eq!(sent.value.len(), 1);
    assert_eq!(sent.value[0].link.url_id.as_deref(), Some("u-1"));
    assert!(sent.value[0].row_error().is_none());
}

#[tokio::test]
async fn find_reads_link_and_maps_404_to_none_and_get_link_escapes_id() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v1/links/find"))
        .and(query_param("domain_id", "dom-1"))
        .and(query_param("short_code", "spring-google"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"link": {
            "url_id": "u-1", "domain_id": "dom-1", "short_code": "spring-google",
            "short_url": "https://go.acme.example/spring-google", "long_url": "https://x.example/"
        }})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v1/links/find"))
        .and(query_param("short_code", "nobody"))
        .respond_with(
            ResponseTemplate::new(404)
                .set_body_json(json!({"code": "not_found", "message": "no link"})),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v1/links/u-1"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"link": {"id": "u-1", "long_url": "https://x.example/"}})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let c = client(&server, 1);
    let found = c
        .find_link("dom-1", "spring-google")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.long_url.as_deref(), Some("https://x.example/"));
    assert_eq!(c.find_link("dom-1", "nobody").await.unwrap(), None);
    assert_eq!(
        c.get_link("u-1").await.unwrap().url_id.as_deref(),
        Some("u-1")
    );
}

#[tokio::test]
async fn transient_503_twice_then_200_is_retried() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v1/domains"))
        .respond_with(
            ResponseTemplate::new(503).set_body_json(
                json!({"error": {"code": "SERVICE_UNAVAILABLE", "message": "busy"}}),
            ),
        )
        .up_to_n_times(2)
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v1/domains"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"domains": []})))
        .expect(1)
        .mount(&server)
        .await;
    let c = client(&server, 1);
    assert!(c.list_domains().await.unwrap().is_empty());
    assert_eq!(c.retries(), 2);
}

#[tokio::test]
async fn retry_after_is_honoured_within_its_cap() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v1/whoami"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "1"))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v1/whoami"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"account_id": "a"})))
        .expect(1)
        .mount(&server)
        .await;
    // Base 2 ms: backoff alone would be ≤ 2 ms; Retry-After: 1 s is honoured up to the
    // scaled cap (2 ms × 120 = 240 ms).
    let c = client(&server, 2);
    let start = Instant::now();
    c.whoami().await.unwrap();
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(230), "waited only {took:?}");
    assert!(took < Duration::from_secs(1), "cap not applied: {took:?}");
}

#[tokio::test]
async fn unauthorized_stops_at_once_with_servers_words() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v1/domains"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "code": "INVALID_API_KEY", "message": "key revoked", "support_reference": "sr-77"
        })))
        .expect(1)
        .mount(&server)
        .await;
    let c = client(&server, 1);
    let err = c.list_domains().await.unwrap_err();
    assert!(matches!(err, ClientError::Auth(_)), "{err:?}");
    let msg = err.to_string();
    for part in [
        "401",
        "INVALID_API_KEY",
        "key revoked",
        "sr-77",
        "NIMRIZ_API_KEY",
    ] {
        assert!(msg.contains(part), "missing {part}: {msg}");
    }
    assert!(!msg.contains(KEY));
    // The run is stopped: a further call is refused without touching the server.
    assert!(matches!(c.whoami().await, Err(ClientError::Stopped(_))));
}

#[tokio::test]
async fn validation_error_is_not_retried() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/shorten"))
        .respond_with(ResponseTemplate::new(422).set_body_json(json!({
            "error": {"code": "slug_reserved", "message": "reserved", "support_reference": "r1"}
        })))
        .expect(1)
        .mount(&server)
        .await;
    let err = client(&server, 1)
        .shorten(&new_link(), None)
        .await
        .unwrap_err();
    match err {
        ClientError::Refused(f) => {
            assert_eq!(f.status, 422);
            assert_eq!(f.code.as_deref(), Some("slug_reserved"));
            assert_eq!(f.support_reference.as_deref(), Some("r1"));
            assert!(!f.is_slug_conflict());
        }
        other => panic!("expected Refused, got {other:?}"),
    }
}

#[tokio::test]
async fn dead_server_gives_up_in_bounded_attempts_and_time() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v1/whoami"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&server)
        .await;
    let c = client(&server, 1);
    let start = Instant::now();
    let err = c.whoami().await.unwrap_err();
    assert!(
        matches!(err, ClientError::Unreachable { attempts: 5, .. }),
        "{err:?}"
    );
    assert!(start.elapsed() < Duration::from_secs(2));
    assert_eq!(server.received_requests().await.unwrap().len(), 5);
    assert!(err.to_string().contains("HTTP 503"));
}

#[tokio::test]
async fn connection_refused_is_transient_then_unreachable() {
    // Bind and drop a listener to get a port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cfg = ApiConfig::new(
        &format!("http://127.0.0.1:{port}"),
        ApiKey::new(KEY, "t").unwrap(),
    )
    .unwrap();
    cfg.retry = RetryPolicy::with_base(Duration::from_millis(1));
    let c = Client::new(cfg).unwrap();
    let err = c.whoami().await.unwrap_err();
    assert!(err.is_fatal_for_run(), "{err:?}");
    assert_eq!(c.retries(), 4);
}

/// Collects what the client says at default verbosity (`info`) and with `-v` (`detail`).
#[derive(Default)]
struct Said {
    info: std::sync::Mutex<Vec<String>>,
    detail: std::sync::Mutex<Vec<String>>,
}

impl nimriz::report::Reporter for Said {
    fn info(&self, msg: &str) {
        self.info.lock().unwrap().push(msg.to_string());
    }
    fn detail(&self, msg: &str) {
        self.detail.lock().unwrap().push(msg.to_string());
    }
}

/// A wait of seconds is said once at default verbosity (why, how long, until when), not
/// only with `-v`; requests waiting out the same Retry-After share the one line.
#[tokio::test]
async fn a_long_retry_after_is_announced_once() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v1/domains"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "3")
                .set_body_json(json!({"code": "RATE_LIMITED", "message": "slow down"})),
        )
        .up_to_n_times(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v1/domains"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(
                json!({"domains": [{"id": "dom-1", "domain_name": "go.acme.example"}]}),
            ),
        )
        .mount(&server)
        .await;
    let said = std::sync::Arc::new(Said::default());
    // Base 25 ms: Retry-After is honoured up to 120 × base = 3 s.
    let c = client(&server, 25).with_reporter(said.clone());
    let started = Instant::now();
    let (a, b) = tokio::join!(c.list_domains(), c.list_domains());
    assert!(a.is_ok() && b.is_ok());
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "Retry-After honoured"
    );
    let info = said.info.lock().unwrap().clone();
    assert_eq!(info.len(), 1, "{info:?}");
    assert!(
        info[0].starts_with("waiting 3s (until ") && info[0].contains("rate limiting"),
        "{}",
        info[0]
    );
    assert!(
        info[0].contains("/api/v1/domains") && info[0].contains("RATE_LIMITED"),
        "{}",
        info[0]
    );
    assert_eq!(
        said.detail
            .lock()
            .unwrap()
            .iter()
            .filter(|d| d.starts_with("retrying"))
            .count(),
        2
    );
}
