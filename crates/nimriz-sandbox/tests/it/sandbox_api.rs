//! The sandbox's contract, in-process over real HTTP on 127.0.0.1 (one sandbox per test).

use nimriz_sandbox::config::{DEFAULT_BRANDED_ID, DEFAULT_SHARED_ID};
use nimriz_sandbox::{Faults, RunningSandbox, Sandbox, SandboxConfig, domain_id_for_host};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const KEY: &str = "nmz_sandbox_key";

struct Api {
    http: reqwest::Client,
    base: String,
    key: String,
}

struct Reply {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Api {
    fn new(sandbox: &RunningSandbox) -> Self {
        Api {
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
            base: sandbox.base_url(),
            key: sandbox.config().key.clone(),
        }
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Reply {
        let resp = req.send().await.expect("request reaches the sandbox");
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        let body = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("non-JSON body ({e}) with status {status}: {text:?}"));
        Reply {
            status,
            headers,
            body,
        }
    }

    async fn get(&self, path: &str) -> Reply {
        self.send(
            self.http
                .get(format!("{}{path}", self.base))
                .bearer_auth(&self.key),
        )
        .await
    }

    async fn post(&self, path: &str, body: Value) -> Reply {
        self.send(
            self.http
                .post(format!("{}{path}", self.base))
                .bearer_auth(&self.key)
                .json(&body),
        )
        .await
    }

    async fn put(&self, path: &str, body: Value) -> Reply {
        self.send(
            self.http
                .put(format!("{}{path}", self.base))
                .bearer_auth(&self.key)
                .json(&body),
        )
        .await
    }

    async fn create(&self, slug: &str, url: &str) -> Reply {
        self.post(
            "/api/shorten",
            json!({"domain_id": DEFAULT_BRANDED_ID, "long_url": url, "custom_slug": slug}),
        )
        .await
    }
}

async fn start(config: SandboxConfig) -> (RunningSandbox, Api) {
    let sandbox = Sandbox::start(config).await.expect("sandbox starts");
    let api = Api::new(&sandbox);
    (sandbox, api)
}

async fn start_default() -> (RunningSandbox, Api) {
    start(SandboxConfig::default()).await
}

fn with_faults(faults: Faults) -> SandboxConfig {
    SandboxConfig {
        faults,
        ..SandboxConfig::default()
    }
}

fn row(id: &str, slug: &str, url: &str) -> Value {
    json!({
        "client_row_id": id,
        "idempotency_key": format!("key-{id}"),
        "domain_id": DEFAULT_BRANDED_ID,
        "long_url": url,
        "custom_slug": slug,
    })
}

/// Bulk results by `client_row_id` (never by position).
fn by_row_id(body: &Value) -> std::collections::HashMap<String, Value> {
    body["results"]
        .as_array()
        .expect("results array")
        .iter()
        .map(|r| (r["client_row_id"].as_str().unwrap().to_owned(), r.clone()))
        .collect()
}

fn assert_error(reply: &Reply, status: u16, code: &str) {
    assert_eq!(reply.status.as_u16(), status, "body: {}", reply.body);
    assert_eq!(reply.body["code"], code, "body: {}", reply.body);
    assert!(
        reply.body["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
    assert!(
        reply.body["support_reference"]
            .as_str()
            .is_some_and(|r| r.starts_with("sbx-")),
        "body: {}",
        reply.body
    );
}

#[tokio::test]
async fn auth_accepts_both_headers_and_refuses_others() {
    let (sandbox, api) = start(SandboxConfig {
        key: "k_test_123".into(),
        ..SandboxConfig::default()
    })
    .await;
    let url = format!("{}/api/v1/whoami", sandbox.base_url());

    let bearer = api.send(api.http.get(&url).bearer_auth("k_test_123")).await;
    assert_eq!(bearer.status, StatusCode::OK);
    assert!(bearer.body["account_id"].is_string());
    let header = api
        .send(api.http.get(&url).header("X-Nim-Api-Key", "k_test_123"))
        .await;
    assert_eq!(header.status, StatusCode::OK);

    let missing = api.send(api.http.get(&url)).await;
    assert_error(&missing, 401, "unauthorized");
    let wrong = api.send(api.http.get(&url).bearer_auth(KEY)).await;
    assert_error(&wrong, 401, "unauthorized");
    assert_ne!(
        missing.body["support_reference"], wrong.body["support_reference"],
        "support references are unique per error"
    );
}

#[tokio::test]
async fn domains_list_defaults_and_added_hosts() {
    let mut config = SandboxConfig::default();
    config.add_domain("go.acme.example").unwrap();
    let (_sandbox, api) = start(config).await;
    let reply = api.get("/api/v1/domains").await;
    assert_eq!(reply.status, StatusCode::OK);
    let domains = reply.body["domains"].as_array().unwrap();
    let find = |host: &str| {
        domains
            .iter()
            .find(|d| d["domain_name"] == host)
            .unwrap_or_else(|| panic!("{host} listed"))
            .clone()
    };
    assert_eq!(find("links.sandbox.test")["id"], json!(DEFAULT_BRANDED_ID));
    assert_eq!(find("links.sandbox.test")["kind"], "branded");
    assert_eq!(find("nim.lu")["id"], json!(DEFAULT_SHARED_ID));
    assert_eq!(find("nim.lu")["kind"], "shared");
    assert_eq!(
        find("go.acme.example")["id"],
        json!(domain_id_for_host("go.acme.example"))
    );
}

#[tokio::test]
async fn single_create_returns_the_link_and_generates_slugs() {
    let (_sandbox, api) = start_default().await;
    let reply = api
        .post(
            "/api/shorten",
            json!({
                "domain_id": DEFAULT_BRANDED_ID,
                "long_url": "https://example.com/spring?utm_source=x",
                "custom_slug": "spring-sale",
                "expires_at": "2027-01-31T23:59:59Z",
                "redirect_status_code": 301,
                "tags": ["q1"],
                "space": "marketing",
                "some_future_field": {"ignored": true}
            }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    let link = &reply.body;
    assert!(
        link["url_id"]
            .as_str()
            .unwrap()
            .parse::<uuid::Uuid>()
            .is_ok()
    );
    assert_eq!(link["domain_id"], json!(DEFAULT_BRANDED_ID));
    assert_eq!(link["short_code"], "spring-sale");
    assert_eq!(link["short_url"], "https://links.sandbox.test/spring-sale");
    assert_eq!(link["long_url"], "https://example.com/spring?utm_source=x");
    assert_eq!(link["expires_at"], "2027-01-31T23:59:59Z");
    assert_eq!(link["redirect_status_code"], 301);
    assert_eq!(link["tags"], json!(["q1"]));
    assert_eq!(link["space"], "marketing");
    assert!(link["created_at"].is_string());

    let generated = api
        .post(
            "/api/shorten",
            json!({"domain_id": DEFAULT_SHARED_ID, "long_url": "https://example.com/"}),
        )
        .await;
    assert_eq!(generated.status, StatusCode::CREATED);
    let slug = generated.body["short_code"].as_str().unwrap();
    assert_eq!(slug.len(), 7);
    assert!(slug.chars().all(|c| c.is_ascii_alphanumeric()));
    assert_eq!(generated.body["redirect_status_code"], 302);
    assert_eq!(
        generated.body["short_url"],
        format!("https://nim.lu/{slug}")
    );
}

#[tokio::test]
async fn slug_conflicts_use_the_configured_status() {
    let (_sandbox, api) = start_default().await;
    assert_eq!(
        api.create("taken1", "https://a.example/").await.status,
        StatusCode::CREATED
    );
    assert_error(
        &api.create("taken1", "https://b.example/").await,
        409,
        "slug_taken",
    );
    // Same slug on another domain is fine: uniqueness is per domain.
    let other = api
        .post(
            "/api/shorten",
            json!({"domain_id": DEFAULT_SHARED_ID, "long_url": "https://a.example/", "custom_slug": "taken1"}),
        )
        .await;
    assert_eq!(other.status, StatusCode::CREATED);

    for status in [403u16, 422] {
        let (_sandbox, api) = start(with_faults(Faults {
            conflict_status: status,
            ..Faults::default()
        }))
        .await;
        api.create("taken2", "https://a.example/").await;
        assert_error(
            &api.create("taken2", "https://a.example/").await,
            status,
            "slug_taken",
        );
    }
}

#[tokio::test]
async fn every_validation_rule_has_its_code() {
    let mut config = SandboxConfig::default();
    config.add_domain("go.acme.example").unwrap();
    let (_sandbox, api) = start(config).await;
    let cases: [(&str, &str, &str); 13] = [
        ("http-url", "http://example.com/", "invalid_destination"),
        ("js-url", "javascript:alert(1)", "invalid_destination"),
        ("ftp-url", "ftp://example.com/file", "invalid_destination"),
        ("not-url", "example.com/no-scheme", "invalid_destination"),
        (
            "loop-one",
            "https://links.sandbox.test/other",
            "destination_loop",
        ),
        ("loop-two", "https://go.acme.example/x", "destination_loop"),
        ("loop-three", "https://riz.to/x", "destination_loop"),
        ("admin", "https://example.com/", "slug_reserved"),
        (".well-known", "https://example.com/", "slug_reserved"),
        ("abc", "https://example.com/", "slug_reserved"),
        ("a/bcd", "https://example.com/", "slug_invalid"),
        ("with space", "https://example.com/", "slug_invalid"),
        ("émoji", "https://example.com/", "slug_invalid"),
    ];
    for (slug, url, code) in cases {
        let reply = api.create(slug, url).await;
        assert_eq!(reply.body["code"], code, "slug {slug:?} url {url:?}");
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "slug {slug:?}");
    }
    assert_error(
        &api.create(&"x".repeat(101), "https://example.com/").await,
        400,
        "slug_invalid",
    );
    assert_eq!(
        api.create(&"x".repeat(100), "https://example.com/")
            .await
            .status,
        StatusCode::CREATED
    );
    let unknown = api
        .post(
            "/api/shorten",
            json!({"domain_id": uuid::Uuid::nil(), "long_url": "https://example.com/", "custom_slug": "fine"}),
        )
        .await;
    assert_error(&unknown, 400, "unknown_domain");
    let bad_redirect = api
        .post(
            "/api/shorten",
            json!({"domain_id": DEFAULT_BRANDED_ID, "long_url": "https://example.com/", "redirect_status_code": 307}),
        )
        .await;
    assert_error(&bad_redirect, 400, "invalid_redirect_status");
    let malformed = api
        .send(
            api.http
                .post(format!("{}/api/shorten", api.base))
                .bearer_auth(&api.key)
                .body("{not json"),
        )
        .await;
    assert_error(&malformed, 400, "invalid_request");
    let missing_field = api
        .post("/api/shorten", json!({"domain_id": DEFAULT_BRANDED_ID}))
        .await;
    assert_error(&missing_field, 400, "invalid_request");

    // The flags that relax rules.
    let (_sandbox, api) = start(SandboxConfig {
        allow_http: true,
        min_slug_length: 2,
        ..SandboxConfig::default()
    })
    .await;
    assert_eq!(
        api.create("abc", "http://example.com/").await.status,
        StatusCode::CREATED
    );
    assert_error(
        &api.create("xyz1", "ftp://example.com/").await,
        400,
        "invalid_destination",
    );
}

#[tokio::test]
async fn check_slug_answers_403_with_available_false() {
    let (_sandbox, api) = start_default().await;
    api.create("held", "https://example.com/").await;
    let check = |slug: &str| {
        api.post(
            "/api/check-slug",
            json!({"domain_id": DEFAULT_BRANDED_ID, "slug": slug}),
        )
    };
    let free = check("free-one").await;
    assert_eq!(free.status, StatusCode::OK);
    assert_eq!(free.body, json!({"available": true}));
    for (slug, code) in [("held", "slug_taken"), ("login", "slug_reserved")] {
        let reply = check(slug).await;
        assert_error(&reply, 403, code);
        assert_eq!(reply.body["available"], false);
    }
}

#[tokio::test]
async fn bulk_creates_and_replays_idempotently() {
    let (sandbox, api) = start_default().await;
    let rows = json!({"rows": [
        row("r1", "bulk-one", "https://example.com/1"),
        row("r2", "bulk-two", "https://example.com/2"),
        row("r3", "bulk-three", "https://example.com/3"),
    ]});
    let first = api.post("/api/shorten/bulk", rows.clone()).await;
    assert_eq!(first.status, StatusCode::OK);
    let first = by_row_id(&first.body);
    for id in ["r1", "r2", "r3"] {
        assert_eq!(first[id]["status"], "created");
        assert_eq!(first[id]["idempotent"], false);
        assert!(first[id]["error"].is_null());
    }
    assert_eq!(
        first["r2"]["short_url"],
        "https://links.sandbox.test/bulk-two"
    );

    let replay = api.post("/api/shorten/bulk", rows).await;
    let replay = by_row_id(&replay.body);
    for id in ["r1", "r2", "r3"] {
        assert_eq!(replay[id]["status"], "created");
        assert_eq!(replay[id]["idempotent"], true);
        assert_eq!(replay[id]["url_id"], first[id]["url_id"]);
        assert_eq!(replay[id]["short_code"], first[id]["short_code"]);
    }
    let stats = sandbox.stats();
    assert_eq!(stats.links, 3);
    assert_eq!(stats.max_inserts_per_slug, 1, "a replay inserts nothing");
    assert_eq!(stats.inserts.values().sum::<u64>(), 3);
    assert_eq!(stats.idempotent_replays, 3);
    assert_eq!(stats.requests["POST /api/shorten/bulk"], 2);
}

#[tokio::test]
async fn one_bad_bulk_row_does_not_fail_the_others() {
    let (sandbox, api) = start_default().await;
    api.create("already", "https://example.com/").await;
    let body = json!({"rows": [
        row("good1", "fine-one", "https://example.com/1"),
        row("loop", "loops", "https://nim.lu/x"),
        row("reserved", "billing", "https://example.com/"),
        row("taken", "already", "https://example.com/other"),
        {"client_row_id": "nourl", "idempotency_key": "k-nourl", "domain_id": DEFAULT_BRANDED_ID},
        row("good2", "fine-two", "https://example.com/2"),
        // Two rows asking for one slug: the first wins, the second is a conflict.
        row("dup-a", "same-slug", "https://example.com/a"),
        row("dup-b", "same-slug", "https://example.com/b"),
    ]});
    let reply = api.post("/api/shorten/bulk", body.clone()).await;
    assert_eq!(reply.status, StatusCode::OK);
    let results = by_row_id(&reply.body);
    assert_eq!(results.len(), 8);
    for id in ["good1", "good2", "dup-a"] {
        assert_eq!(results[id]["status"], "created", "{id}");
    }
    for (id, code) in [
        ("loop", "destination_loop"),
        ("reserved", "slug_reserved"),
        ("taken", "slug_taken"),
        ("nourl", "invalid_request"),
        ("dup-b", "slug_taken"),
    ] {
        assert_eq!(results[id]["status"], "error", "{id}");
        assert_eq!(results[id]["error"]["code"], code, "{id}");
        assert!(results[id]["url_id"].is_null());
    }
    assert_eq!(sandbox.stats().links, 4);

    // Errors are not remembered: the same rows are re-validated (and still fail), the
    // successes replay.
    let again = by_row_id(&api.post("/api/shorten/bulk", body).await.body);
    assert_eq!(again["good1"]["idempotent"], true);
    assert_eq!(again["taken"]["error"]["code"], "slug_taken");
    assert_eq!(sandbox.stats().max_inserts_per_slug, 1);
}

#[tokio::test]
async fn paging_walks_every_link_once() {
    let (_sandbox, api) = start_default().await;
    let rows: Vec<Value> = (0..120)
        .map(|i| {
            row(
                &format!("p{i}"),
                &format!("page-{i:03}"),
                "https://example.com/",
            )
        })
        .collect();
    let reply = api.post("/api/shorten/bulk", json!({ "rows": rows })).await;
    assert_eq!(reply.status, StatusCode::OK);

    let mut seen = std::collections::BTreeSet::new();
    let mut cursor: Option<String> = None;
    for _page in 0..10 {
        let path = match &cursor {
            Some(c) => format!("/api/v1/links?limit=50&cursor={c}"),
            None => "/api/v1/links?limit=50".into(),
        };
        let page = api.get(&path).await;
        assert_eq!(page.status, StatusCode::OK);
        let links = page.body["links"].as_array().unwrap();
        assert!(links.len() <= 50);
        for link in links {
            assert!(seen.insert(link["short_code"].as_str().unwrap().to_owned()));
        }
        match page.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 120);
    let default = api.get("/api/v1/links").await;
    assert_eq!(default.body["links"].as_array().unwrap().len(), 50);
    assert_error(
        &api.get("/api/v1/links?limit=101").await,
        400,
        "invalid_request",
    );
    assert_error(
        &api.get("/api/v1/links?limit=0").await,
        400,
        "invalid_request",
    );
    assert_error(
        &api.get("/api/v1/links?cursor=bogus").await,
        400,
        "invalid_request",
    );
}

#[tokio::test]
async fn get_and_find_links() {
    let (_sandbox, api) = start_default().await;
    let created = api.create("findme", "https://example.com/f").await.body;
    let url_id = created["url_id"].as_str().unwrap();

    let by_id = api.get(&format!("/api/v1/links/{url_id}")).await;
    assert_eq!(by_id.status, StatusCode::OK);
    assert_eq!(by_id.body["link"]["short_code"], "findme");

    let by_url = api
        .get("/api/v1/links/find?short_url=https%3A%2F%2Flinks.sandbox.test%2Ffindme")
        .await;
    assert_eq!(by_url.body["link"]["url_id"], url_id);
    let by_code = api
        .get(&format!(
            "/api/v1/links/find?domain_id={DEFAULT_BRANDED_ID}&short_code=findme"
        ))
        .await;
    assert_eq!(by_code.body["link"]["url_id"], url_id);

    assert_error(
        &api.get(&format!(
            "/api/v1/links/find?domain_id={DEFAULT_BRANDED_ID}&short_code=nothere"
        ))
        .await,
        404,
        "not_found",
    );
    assert_error(
        &api.get("/api/v1/links/find?short_url=https%3A%2F%2Fnim.lu%2Ffindme")
            .await,
        404,
        "not_found",
    );
    assert_error(
        &api.get(&format!("/api/v1/links/{}", uuid::Uuid::new_v4()))
            .await,
        404,
        "not_found",
    );
    assert_error(&api.get("/api/v1/links/find").await, 400, "invalid_request");
}

#[tokio::test]
async fn updates_delete_and_tombstones() {
    let (_sandbox, api) = start_default().await;
    let url_id = api.create("old-slug", "https://example.com/a").await.body["url_id"].clone();
    // Destinations come back exactly as sent (no trailing slash added, host case kept), so a
    // client can compare them to detect drift.
    let verbatim = api
        .create("verbatim", "https://Example.com?utm_source=a%20b")
        .await;
    assert_eq!(
        verbatim.body["long_url"],
        "https://Example.com?utm_source=a%20b"
    );

    let dest = api
        .put(
            "/api/update-destination",
            json!({"url_id": url_id, "long_url": "https://example.com/b"}),
        )
        .await;
    assert_eq!(dest.status, StatusCode::OK);
    assert_eq!(dest.body["long_url"], "https://example.com/b");
    assert_error(
        &api.put(
            "/api/update-destination",
            json!({"url_id": url_id, "long_url": "https://links.sandbox.test/x"}),
        )
        .await,
        400,
        "destination_loop",
    );

    let renamed = api
        .put(
            "/api/update-slug",
            json!({"url_id": url_id, "new_slug": "new-slug"}),
        )
        .await;
    assert_eq!(renamed.status, StatusCode::OK);
    assert_eq!(renamed.body["short_code"], "new-slug");
    assert_eq!(renamed.body["url_id"], url_id);
    assert_error(
        &api.create("old-slug", "https://example.com/").await,
        409,
        "slug_tombstoned",
    );
    assert_error(
        &api.get(&format!(
            "/api/v1/links/find?domain_id={DEFAULT_BRANDED_ID}&short_code=old-slug"
        ))
        .await,
        404,
        "not_found",
    );

    let expiring = api
        .put(
            "/api/update-expiration",
            json!({"url_id": url_id, "expires_at": "2030-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(expiring.body["expires_at"], "2030-01-01T00:00:00Z");
    let cleared = api
        .put(
            "/api/update-expiration",
            json!({"url_id": url_id, "expires_at": null}),
        )
        .await;
    assert!(cleared.body["expires_at"].is_null());
    assert_error(
        &api.put(
            "/api/update-expiration",
            json!({"url_id": url_id, "expires_at": "next tuesday"}),
        )
        .await,
        400,
        "invalid_expiration",
    );

    let locked = api
        .put(
            "/api/update-password",
            json!({"url_id": url_id, "password": "s3cret"}),
        )
        .await;
    assert_eq!(locked.body["password_protected"], true);
    assert!(!locked.body.to_string().contains("s3cret"));
    let unlocked = api
        .put(
            "/api/update-password",
            json!({"url_id": url_id, "password": null}),
        )
        .await;
    assert_eq!(unlocked.body["password_protected"], false);

    let deleted = api
        .post("/api/delete-link", json!({"url_id": url_id}))
        .await;
    assert_eq!(deleted.status, StatusCode::OK);
    assert_eq!(deleted.body["deleted"], true);
    assert_error(
        &api.get(&format!("/api/v1/links/{}", url_id.as_str().unwrap()))
            .await,
        404,
        "not_found",
    );
    assert_error(
        &api.create("new-slug", "https://example.com/").await,
        409,
        "slug_tombstoned",
    );
    assert_error(
        &api.post("/api/delete-link", json!({"url_id": url_id}))
            .await,
        404,
        "not_found",
    );
    assert_error(
        &api.put(
            "/api/update-slug",
            json!({"url_id": "not-a-uuid", "new_slug": "whatever"}),
        )
        .await,
        400,
        "invalid_request",
    );
}

#[tokio::test]
async fn seeded_links_conflict_but_are_not_client_inserts() {
    let (sandbox, api) = start_default().await;
    // No auth needed on /__sandbox/*; the domain may be given by host.
    let seeded = api
        .send(api.http.post(format!("{}/__sandbox/seed", api.base)).json(&json!({
            "links": [
                {"domain": "links.sandbox.test", "short_code": "preseeded", "long_url": "https://example.com/s"},
                {"domain_id": DEFAULT_SHARED_ID, "short_code": "stranger", "long_url": "https://other.example/"}
            ]
        })))
        .await;
    assert_eq!(seeded.status, StatusCode::CREATED, "{}", seeded.body);
    assert_error(
        &api.create("preseeded", "https://example.com/s").await,
        409,
        "slug_taken",
    );
    // All or nothing: a slug given twice (or already present) seeds nothing.
    let twice = api
        .send(api.http.post(format!("{}/__sandbox/seed", api.base)).json(&json!({
            "links": [
                {"domain": "nim.lu", "short_code": "fresh-one", "long_url": "https://example.com/"},
                {"domain": "nim.lu", "short_code": "fresh-one", "long_url": "https://example.com/"}
            ]
        })))
        .await;
    assert_error(&twice, 409, "slug_taken");
    let stats = sandbox.stats();
    assert_eq!(stats.seeded, 2);
    assert_eq!(stats.links, 2);
    assert!(stats.inserts.is_empty());

    let over_http: Value = api
        .http
        .get(format!("{}/__sandbox/stats", api.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(over_http["seeded"], 2);
    assert_eq!(over_http["faults"]["dropped"], 0);
    assert_eq!(over_http["requests"]["POST /api/shorten"], 1);
}

#[tokio::test]
async fn rate_limit_answers_429_with_retry_after() {
    let (sandbox, api) = start(with_faults(Faults {
        rate_limit: Some(2.0),
        ..Faults::default()
    }))
    .await;
    let mut statuses = Vec::new();
    let mut limited = None;
    for _ in 0..4 {
        let reply = api.get("/api/v1/whoami").await;
        statuses.push(reply.status.as_u16());
        if reply.status == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(reply);
        }
    }
    assert_eq!(&statuses[..2], &[200, 200], "{statuses:?}");
    let limited = limited.expect("a request beyond the rate is refused");
    assert_error(&limited, 429, "RATE_LIMITED");
    let retry_after: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(retry_after, 1, "one token refills within a second at 2/s");
    assert!(sandbox.stats().faults.rate_limited >= 1);

    // Honouring Retry-After works.
    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    assert_eq!(api.get("/api/v1/whoami").await.status, StatusCode::OK);
    // The sandbox's own routes are never limited.
    for _ in 0..5 {
        let stats = api
            .http
            .get(format!("{}/__sandbox/stats", api.base))
            .send()
            .await
            .unwrap();
        assert_eq!(stats.status(), StatusCode::OK);
    }
}

#[tokio::test]
async fn fail_rate_one_refuses_everything_before_acting() {
    let (sandbox, api) = start(with_faults(Faults {
        fail_rate: 1.0,
        ..Faults::default()
    }))
    .await;
    assert_error(
        &api.create("never", "https://example.com/").await,
        503,
        "SERVICE_UNAVAILABLE",
    );
    let bulk = api
        .post(
            "/api/shorten/bulk",
            json!({"rows": [row("x", "never-two", "https://example.com/")]}),
        )
        .await;
    assert_error(&bulk, 503, "SERVICE_UNAVAILABLE");
    let stats = sandbox.stats();
    assert_eq!(stats.links, 0);
    assert_eq!(stats.faults.failed, 2);
}

#[tokio::test]
async fn the_same_seed_gives_the_same_faults() {
    async fn pattern(seed: u64) -> Vec<u16> {
        let (_sandbox, api) = start(with_faults(Faults {
            seed,
            fail_rate: 0.5,
            ..Faults::default()
        }))
        .await;
        let mut out = Vec::new();
        for _ in 0..24 {
            out.push(api.get("/api/v1/whoami").await.status.as_u16());
        }
        out
    }
    let a = pattern(7).await;
    assert!(a.contains(&200) && a.contains(&503), "{a:?}");
    assert_eq!(a, pattern(7).await);
}

#[tokio::test]
async fn drop_after_commit_loses_the_response_but_keeps_the_link() {
    let (sandbox, api) = start(with_faults(Faults {
        drop_after_commit_rate: 1.0,
        ..Faults::default()
    }))
    .await;
    let single = api
        .http
        .post(format!("{}/api/shorten", api.base))
        .bearer_auth(&api.key)
        .json(&json!({"domain_id": DEFAULT_BRANDED_ID, "long_url": "https://example.com/", "custom_slug": "lost-one"}))
        .send()
        .await;
    let err = single.expect_err("no response arrives");
    assert!(
        !err.is_timeout(),
        "the connection is dropped, not hung: {err}"
    );

    let bulk = api
        .http
        .post(format!("{}/api/shorten/bulk", api.base))
        .bearer_auth(&api.key)
        .json(&json!({"rows": [row("b1", "lost-two", "https://example.com/")]}))
        .send()
        .await;
    assert!(bulk.is_err());

    // Both were committed: visible through find, and exactly once in the oracle.
    for slug in ["lost-one", "lost-two"] {
        let found = api
            .get(&format!(
                "/api/v1/links/find?domain_id={DEFAULT_BRANDED_ID}&short_code={slug}"
            ))
            .await;
        assert_eq!(found.status, StatusCode::OK, "{slug}");
    }
    let stats = sandbox.stats();
    assert_eq!(stats.faults.dropped, 2);
    assert_eq!(stats.links, 2);
    assert_eq!(stats.max_inserts_per_slug, 1);

    // Resending with the same idempotency key settles it without a duplicate (the answer is
    // dropped again at rate 1.0, but nothing new is inserted).
    let _ = api
        .http
        .post(format!("{}/api/shorten/bulk", api.base))
        .bearer_auth(&api.key)
        .json(&json!({"rows": [row("b1", "lost-two", "https://example.com/")]}))
        .send()
        .await;
    let stats = sandbox.stats();
    assert_eq!(stats.idempotent_replays, 1);
    assert_eq!(stats.max_inserts_per_slug, 1);
    // A refused create is answered normally: nothing was committed.
    assert_error(
        &api.create("lost-one", "https://example.com/").await,
        409,
        "slug_taken",
    );
}

#[tokio::test]
async fn bulk_limits_and_missing_bulk_route() {
    let (_sandbox, api) = start(with_faults(Faults {
        bulk_max: Some(2),
        ..Faults::default()
    }))
    .await;
    let three = json!({"rows": [
        row("a", "limit-a", "https://example.com/"),
        row("b", "limit-b", "https://example.com/"),
        row("c", "limit-c", "https://example.com/"),
    ]});
    assert_error(
        &api.post("/api/shorten/bulk", three).await,
        413,
        "payload_too_large",
    );
    let two = json!({"rows": [
        row("a", "limit-a", "https://example.com/"),
        row("b", "limit-b", "https://example.com/"),
    ]});
    assert_eq!(
        api.post("/api/shorten/bulk", two).await.status,
        StatusCode::OK
    );

    let (sandbox, api) = start(with_faults(Faults {
        no_bulk: true,
        ..Faults::default()
    }))
    .await;
    let one = json!({"rows": [row("a", "nobulk-a", "https://example.com/")]});
    assert_error(&api.post("/api/shorten/bulk", one).await, 404, "not_found");
    assert_eq!(sandbox.stats().links, 0);
    assert_eq!(
        api.create("single-ok", "https://example.com/").await.status,
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn latency_delays_api_requests_only() {
    let (_sandbox, api) = start(with_faults(Faults {
        latency: Duration::from_millis(150),
        ..Faults::default()
    }))
    .await;
    let t = Instant::now();
    api.get("/api/v1/whoami").await;
    assert!(t.elapsed() >= Duration::from_millis(150));
    let t = Instant::now();
    api.http
        .get(format!("{}/__sandbox/stats", api.base))
        .send()
        .await
        .unwrap();
    assert!(t.elapsed() < Duration::from_millis(150));
}

#[tokio::test]
async fn state_file_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sandbox-state.json");
    let config = SandboxConfig {
        state_path: Some(path.clone()),
        ..SandboxConfig::default()
    };
    let rows = json!({"rows": [
        row("s1", "kept-one", "https://example.com/1"),
        row("s2", "kept-two", "https://example.com/2"),
    ]});

    let (sandbox, api) = start(config.clone()).await;
    let first = by_row_id(&api.post("/api/shorten/bulk", rows.clone()).await.body);
    let doomed = api.create("doomed", "https://example.com/d").await.body["url_id"].clone();
    api.post("/api/delete-link", json!({"url_id": doomed}))
        .await;
    let sandbox_addr = sandbox.addr();
    sandbox.shutdown().await;

    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        leftovers,
        vec![std::ffi::OsString::from("sandbox-state.json")]
    );

    // Same address again: a restart mid-build must not force the client to a new port.
    let config = SandboxConfig {
        addr: sandbox_addr,
        ..config
    };
    let (sandbox, api) = start(config).await;
    assert_eq!(sandbox.addr(), sandbox_addr);
    assert!(sandbox.banner().contains("(2 links)"));
    assert_eq!(sandbox.links().len(), 2);
    let replay = by_row_id(&api.post("/api/shorten/bulk", rows).await.body);
    for id in ["s1", "s2"] {
        assert_eq!(replay[id]["idempotent"], true);
        assert_eq!(replay[id]["url_id"], first[id]["url_id"]);
    }
    assert_error(
        &api.create("doomed", "https://example.com/").await,
        409,
        "slug_tombstoned",
    );
    let stats = sandbox.stats();
    assert_eq!(stats.links, 2);
    assert_eq!(stats.inserts.len(), 3, "insert counts survive the restart");
    assert_eq!(stats.max_inserts_per_slug, 1);
    let listed = api.get("/api/v1/links").await;
    assert_eq!(listed.body["links"].as_array().unwrap().len(), 2);

    // A damaged state file is refused with a message naming the file, not a panic.
    sandbox.shutdown().await;
    std::fs::write(&path, b"{ half a file").unwrap();
    let err = Sandbox::start(SandboxConfig {
        state_path: Some(path.clone()),
        ..SandboxConfig::default()
    })
    .await
    .err()
    .expect("a damaged state file is refused");
    assert!(err.to_string().contains("sandbox-state.json"), "{err}");
}

#[tokio::test]
async fn refuses_non_loopback_without_permission() {
    let config = SandboxConfig {
        addr: "0.0.0.0:0".parse().unwrap(),
        ..SandboxConfig::default()
    };
    assert!(Sandbox::start(config).await.is_err());
}
