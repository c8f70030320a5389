//! The response-shape catalogue of `docs/nimriz-api.md`, one case per variant per endpoint
//! (domains, bulk, single, find, get): a wiremock server on 127.0.0.1 answers a one-link
//! build in that shape, and the case asserts what `build` recorded in the manifest and what
//! `shorten` (the library's `mint_link`, whose result `shorten` prints as JSON) returns.
//! Answers are fixed per case, so a resend meets the same answer: every run is bounded by
//! `max_resends` (3) and the retry policy (1 ms base).

use nimriz::{ApiConfig, ApiKey, Client, RetryPolicy};
use nimriz_matrix_core::apply::{BuildSettings, MintRequest, Minted, mint_link, run_build};
use nimriz_matrix_core::manifest::{self, LinkStatus};
use nimriz_matrix_core::plan::{Cell, DomainRef, Plan, PlanSource, PlannedLink};
use nimriz_matrix_core::report::{SharedReporter, Silent};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const KEY: &str = "nmz_test_SHAPES_k3y";
const HOST: &str = "go.acme.example";
const DOM: &str = "dom-1";
const SLUG: &str = "spring-v0";
const DEST: &str = "https://shop.example/spring?utm_source=news";
const U1: &str = "7f1c0e2a-0000-4000-8000-000000000001";
const U2: &str = "7f1c0e2a-0000-4000-8000-000000000002";
const ROW: &str = "dom-1/spring-v0";

fn short_url() -> String {
    format!("https://{HOST}/{SLUG}")
}

/// The canonical link object for the row.
fn link() -> Value {
    json!({"url_id": U1, "domain_id": DOM, "short_code": SLUG, "short_url": short_url(),
           "long_url": DEST})
}

fn with(mut v: Value, extra: Value) -> Value {
    if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        for (k, x) in e {
            o.insert(k.clone(), x.clone());
        }
    }
    v
}

fn without(mut v: Value, keys: &[&str]) -> Value {
    if let Some(o) = v.as_object_mut() {
        for k in keys {
            o.remove(*k);
        }
    }
    v
}

fn row_ok(extra: Value) -> Value {
    with(
        with(
            link(),
            json!({"client_row_id": ROW, "status": "created", "idempotent": false}),
        ),
        extra,
    )
}

fn domains_ok() -> Value {
    json!({"domains": [{"id": DOM, "domain_name": HOST}, {"id": "dom-2", "domain_name": "rix.to"}]})
}

/// What one case expects `build` to record (`None`: the run stops with an error).
#[derive(Debug, Clone, Copy)]
struct Want {
    status: Option<LinkStatus>,
    url_id: Option<&'static str>,
    /// A substring of the recorded error code or message.
    error: Option<&'static str>,
}

const fn want(status: LinkStatus, url_id: Option<&'static str>) -> Want {
    Want {
        status: Some(status),
        url_id,
        error: None,
    }
}

const fn failed(error: &'static str) -> Want {
    Want {
        status: Some(LinkStatus::Failed),
        url_id: None,
        error: Some(error),
    }
}

struct Case {
    name: &'static str,
    /// Pages of the domain list: the first is served without `cursor`, page `n` for
    /// `cursor=p{n}`.
    domains: Vec<Value>,
    /// `None`: the bulk route answers 404 (single creates).
    bulk: Option<(u16, Value)>,
    single: (u16, Value),
    find: (u16, Value),
    whoami: (u16, Value),
    want: Want,
}

fn case(name: &'static str, want: Want) -> Case {
    Case {
        name,
        domains: vec![domains_ok()],
        bulk: None,
        single: (201, link()),
        find: (404, json!({"code": "not_found", "message": "no link"})),
        whoami: (200, json!({"account_id": "acc-1"})),
        want,
    }
}

impl Case {
    fn bulk(mut self, status: u16, body: Value) -> Self {
        self.bulk = Some((status, body));
        self
    }
    fn single(mut self, status: u16, body: Value) -> Self {
        self.single = (status, body);
        self
    }
    fn find(mut self, status: u16, body: Value) -> Self {
        self.find = (status, body);
        self
    }
    fn whoami(mut self, status: u16, body: Value) -> Self {
        self.whoami = (status, body);
        self
    }
    fn domains(mut self, pages: Vec<Value>) -> Self {
        self.domains = pages;
        self
    }
}

fn found(long_url: &str, id: &str) -> Value {
    json!({"link": with(link(), json!({"url_id": id, "long_url": long_url}))})
}

fn conflict_error(code: &str) -> Value {
    json!({"code": code, "message": "slug taken", "support_reference": "sr-1"})
}

/// The catalogue. Names match `docs/nimriz-api.md`.
fn cases() -> Vec<Case> {
    use LinkStatus::*;
    let created_u1 = want(Created, Some(U1));
    let exists_u2 = want(Exists, Some(U2));
    vec![
        // ---- domains ------------------------------------------------------------------
        case("domains/envelope", created_u1),
        case("domains/data-envelope", created_u1)
            .domains(vec![json!({"data": [{"id": DOM, "domain_name": HOST}]})]),
        case("domains/bare-array", created_u1)
            .domains(vec![json!([{"id": DOM, "domain_name": HOST}])]),
        case("domains/alias-pairs", created_u1).domains(vec![json!({"domains": [
            {"id": DOM, "domain_id": DOM, "domain_name": HOST, "hostname": HOST, "verified": true}
        ]})]),
        case("domains/aliases-only", created_u1)
            .domains(vec![json!({"domains": [{"domain_id": DOM, "hostname": HOST}]})]),
        case("domains/host-case-and-dot", created_u1)
            .domains(vec![json!({"domains": [{"id": DOM, "domain_name": "GO.Acme.Example."}]})]),
        case("domains/unreadable-entry-skipped", created_u1).domains(vec![json!({"domains": [
            {"id": DOM, "domain_name": HOST}, {"id": {"x": 1}}, "junk"
        ]})]),
        case("domains/paged-next-cursor", created_u1).domains(vec![
            json!({"domains": [{"id": "dom-2", "domain_name": "rix.to"}], "next_cursor": "p1"}),
            json!({"domains": [{"id": DOM, "domain_name": HOST}], "next_cursor": null}),
        ]),
        // ---- bulk: accepted shapes ------------------------------------------------------
        case("bulk/canonical", created_u1).bulk(200, json!({"results": [row_ok(json!({}))]})),
        case("bulk/id-and-url-id-agree", created_u1)
            .bulk(200, json!({"results": [row_ok(json!({"id": U1, "slug": SLUG}))]})),
        case("bulk/numeric-id-beside-uuid", created_u1)
            .bulk(200, json!({"results": [row_ok(json!({"id": 17}))]})),
        case("bulk/id-only", created_u1).bulk(
            200,
            json!({"results": [without(row_ok(json!({"id": U1, "slug": SLUG})), &["url_id", "short_code"])]}),
        ),
        case("bulk/numeric-client-row-id-and-ids", want(Created, Some("42"))).bulk(
            200,
            json!({"results": [row_ok(json!({"url_id": 42}))]}),
        ),
        case("bulk/data-envelope", created_u1).bulk(200, json!({"data": [row_ok(json!({}))]})),
        case("bulk/bare-array", created_u1).bulk(200, json!([row_ok(json!({}))])),
        case("bulk/status-success", created_u1)
            .bulk(200, json!({"results": [row_ok(json!({"status": "SUCCESS"}))]})),
        case("bulk/ok-true", created_u1).bulk(
            200,
            json!({"results": [without(row_ok(json!({"ok": true})), &["status"])]}),
        ),
        case("bulk/error-false", created_u1)
            .bulk(200, json!({"results": [row_ok(json!({"error": false}))]})),
        case("bulk/error-empty-string", created_u1)
            .bulk(200, json!({"results": [row_ok(json!({"error": ""}))]})),
        case("bulk/error-empty-object", created_u1)
            .bulk(200, json!({"results": [row_ok(json!({"error": {}}))]})),
        case("bulk/informative-fields-odd-types", created_u1).bulk(
            200,
            json!({"results": [row_ok(json!({"redirect_status_code": "302", "expires_at": 1_900_000_000,
                "created_at": 1_700_000_000_000_u64, "tags": "x", "extra": {"nested": [1]}}))]}),
        ),
        case("bulk/no-client-row-id", created_u1).bulk(
            200,
            json!({"results": [without(row_ok(json!({})), &["client_row_id"])]}),
        ),
        case("bulk/idempotent-replay-status-exists", created_u1).bulk(
            200,
            json!({"results": [row_ok(json!({"status": "exists", "idempotent": true}))]}),
        ),
        case("bulk/duplicate-and-unasked-rows-ignored", created_u1).bulk(
            200,
            json!({"results": [
                row_ok(json!({})),
                row_ok(json!({"url_id": U2, "status": "error", "error": {"code": "invalid_url"}})),
                row_ok(json!({"client_row_id": "dom-1/someone-else", "url_id": U2}))
            ]}),
        ),
        // ---- bulk: errors ---------------------------------------------------------------
        case("bulk/nested-error-slug-taken", exists_u2)
            .bulk(200, json!({"results": [{"client_row_id": ROW, "status": "error",
                "error": {"code": "slug_taken", "message": "taken"}}]}))
            .find(200, found(DEST, U2)),
        case("bulk/flat-error-code", exists_u2)
            .bulk(200, json!({"results": [{"client_row_id": ROW, "status": "failed",
                "code": "SLUG_ALREADY_EXISTS", "message": "taken"}]}))
            .find(200, found(DEST, U2)),
        case("bulk/flat-error-no-status", exists_u2)
            .bulk(200, json!({"results": [{"client_row_id": ROW, "code": "duplicate_slug"}]}))
            .find(200, found(DEST, U2)),
        case("bulk/string-error-code", exists_u2)
            .bulk(200, json!({"results": [{"client_row_id": ROW, "status": "error", "error": "slug_taken"}]}))
            .find(200, found(DEST, U2)),
        case("bulk/status-exists-looked-up", want(Drift, Some(U2)))
            .bulk(200, json!({"results": [row_ok(json!({"status": "exists", "url_id": U2}))]}))
            .find(200, found("https://elsewhere.example/", U2)),
        case("bulk/ok-false-permanent", failed("slug_reserved")).bulk(
            200,
            json!({"results": [{"client_row_id": ROW, "ok": false, "error": {"code": "slug_reserved"}}]}),
        ),
        case("bulk/string-error-message", failed("destination not allowed")).bulk(
            200,
            json!({"results": [{"client_row_id": ROW, "status": "error", "error": "destination not allowed"}]}),
        ),
        // ---- bulk: lies -----------------------------------------------------------------
        case("lie/bulk-2xx-created-with-error", failed("invalid_url")).bulk(
            200,
            json!({"results": [row_ok(json!({"error": {"code": "invalid_url", "message": "no"}}))]}),
        ),
        case("lie/bulk-other-rows-short-code", failed("not in the workspace")).bulk(
            200,
            json!({"results": [row_ok(json!({"short_code": "spring-v9",
                "short_url": format!("https://{HOST}/spring-v9")}))]}),
        ),
        case("lie/bulk-other-rows-short-code-found", want(Created, Some(U2)))
            .bulk(
                200,
                json!({"results": [row_ok(json!({"short_code": "spring-v9", "url_id": U1}))]}),
            )
            .find(200, found(DEST, U2)),
        case("lie/bulk-short-url-of-other-row", failed("spring-v9")).bulk(
            200,
            json!({"results": [row_ok(json!({"short_url": format!("https://{HOST}/spring-v9")}))]}),
        ),
        case("lie/bulk-other-domain-id", failed("dom-9"))
            .bulk(200, json!({"results": [row_ok(json!({"domain_id": "dom-9"}))]})),
        case("lie/bulk-short-url-other-host", failed("rix.to")).bulk(
            200,
            json!({"results": [row_ok(json!({"short_url": format!("https://rix.to/{SLUG}")}))]}),
        ),
        case("lie/bulk-created-without-url-id", want(Created, Some(U2)))
            .bulk(200, json!({"results": [without(row_ok(json!({})), &["url_id"])]}))
            .find(200, found(DEST, U2)),
        case("lie/bulk-only-unasked-rows", failed("no_result")).bulk(
            200,
            json!({"results": [row_ok(json!({"client_row_id": "dom-1/spring-v9"}))]}),
        ),
        case("lie/bulk-unknown-status-word", failed("queued")).bulk(
            200,
            json!({"results": [without(row_ok(json!({"status": "queued"})), &["url_id", "short_url", "short_code"])]}),
        ),
        // ---- single creates -------------------------------------------------------------
        case("single/bare-object", created_u1),
        case("single/link-envelope", created_u1).single(201, json!({"link": link()})),
        case("single/data-envelope", created_u1).single(200, json!({"data": link()})),
        case("single/data-link-envelope", created_u1)
            .single(200, json!({"data": {"link": link()}})),
        case("single/id-and-url-id-and-aliases", created_u1).single(
            201,
            with(link(), json!({"id": U1, "slug": SLUG, "destination_url": DEST,
                "domain_name": HOST, "hostname": HOST, "status": "active"})),
        ),
        case("single/nested-domain-object", created_u1).single(
            201,
            with(without(link(), &["domain_id"]), json!({"domain": {"id": DOM, "domain_name": HOST}})),
        ),
        case("single/409-slug-taken-same", exists_u2)
            .single(409, conflict_error("slug_taken"))
            .find(200, found(DEST, U2)),
        case("single/409-slug-taken-drift", want(Drift, Some(U2)))
            .single(409, conflict_error("slug_taken"))
            .find(200, found("https://elsewhere.example/", U2)),
        case("single/409-foreign", failed("slug_taken_elsewhere"))
            .single(409, conflict_error("slug_taken")),
        case("single/422-SLUG_ALREADY_EXISTS", exists_u2)
            .single(422, conflict_error("SLUG_ALREADY_EXISTS"))
            .find(200, found(DEST, U2)),
        case("single/403-duplicate_slug", exists_u2)
            .single(403, conflict_error("duplicate_slug"))
            .find(200, found(DEST, U2)),
        case("single/422-already_exists", exists_u2)
            .single(422, json!({"error": {"code": "already_exists"}}))
            .find(200, found(DEST, U2)),
        case("single/409-Conflict", exists_u2)
            .single(409, conflict_error("Conflict"))
            .find(200, found(DEST, U2)),
        case("single/403-available-false", exists_u2)
            .single(403, json!({"available": false}))
            .find(200, found(DEST, U2)),
        case("single/403-no-code-key-fine", failed("no error code"))
            .single(403, json!({"message": "Forbidden"})),
        case("single/403-no-code-key-fine-found", exists_u2)
            .single(403, json!({"message": "Forbidden"}))
            .find(200, found(DEST, U2)),
        case(
            "single/403-no-code-key-refused",
            Want {
                status: None,
                url_id: None,
                error: None,
            },
        )
        .single(403, json!({"message": "Forbidden"}))
        .whoami(401, json!({"code": "unauthorized"})),
        case("single/422-slug-reserved", failed("slug_reserved"))
            .single(422, json!({"error": {"code": "slug_reserved", "message": "reserved"}})),
        case("single/status-exists", exists_u2)
            .single(200, with(link(), json!({"status": "exists", "url_id": U2})))
            .find(200, found(DEST, U2)),
        // ---- single: lies ---------------------------------------------------------------
        case("lie/single-2xx-with-error", failed("quota_exceeded")).single(
            201,
            with(link(), json!({"error": {"code": "quota_exceeded", "message": "no quota"}})),
        ),
        case("lie/single-2xx-with-conflict-error", exists_u2)
            .single(200, with(link(), json!({"error": "slug_taken"})))
            .find(200, found(DEST, U2)),
        case("lie/single-created-without-url-id", want(Created, Some(U2)))
            .single(201, without(link(), &["url_id"]))
            .find(200, found(DEST, U2)),
        case("lie/single-created-without-url-id-not-found", failed("no_result"))
            .single(201, without(link(), &["url_id"])),
        case("lie/single-other-slug", failed("spring-v9"))
            .single(201, with(link(), json!({"short_code": "spring-v9"}))),
        case("lie/single-empty-object", failed("an empty object")).single(201, json!({})),
        // ---- find ----------------------------------------------------------------------
        case("find/data-envelope", exists_u2)
            .single(409, conflict_error("slug_taken"))
            .find(200, json!({"data": with(link(), json!({"url_id": U2}))})),
        case("find/bare", exists_u2)
            .single(409, conflict_error("slug_taken"))
            .find(200, with(link(), json!({"url_id": U2}))),
        case("find/id-only-aliases", exists_u2)
            .single(409, conflict_error("slug_taken"))
            .find(200, json!({"link": {"id": U2, "slug": SLUG, "destination": DEST, "domain_id": DOM}})),
        case("find/numeric-id-beside-uuid", exists_u2)
            .single(409, conflict_error("slug_taken"))
            .find(200, json!({"link": with(link(), json!({"url_id": U2, "id": 99,
                "redirect_status_code": "301", "expires_at": 1_900_000_000}))})),
        case("find/short-url-names-slug", exists_u2)
            .single(409, conflict_error("slug_taken"))
            .find(200, json!({"link": {"url_id": U2, "short_url": short_url(), "long_url": DEST}})),
        // ---- find: lies ----------------------------------------------------------------
        case("lie/find-other-slug", failed("not about this link"))
            .single(409, conflict_error("slug_taken"))
            .find(200, json!({"link": with(link(), json!({"url_id": U2, "short_code": "other",
                "long_url": "https://elsewhere.example/"}))})),
        case("lie/find-other-domain", failed("not about this link"))
            .single(409, conflict_error("slug_taken"))
            .find(200, json!({"link": with(link(), json!({"url_id": U2, "domain_id": "dom-2",
                "long_url": "https://elsewhere.example/"}))})),
        case("lie/find-200-empty-object", failed("an empty object"))
            .single(409, conflict_error("slug_taken"))
            .find(200, json!({})),
        case("lie/find-200-unreadable", failed("cannot read"))
            .single(409, conflict_error("slug_taken"))
            .find(200, json!(["not", "a", "link"])),
        case("lie/find-no-destination", failed("does not report the link's destination"))
            .single(409, conflict_error("slug_taken"))
            .find(200, json!({"link": without(with(link(), json!({"url_id": U2})), &["long_url"])})),
        case("lie/find-names-no-slug", failed("does not say which slug"))
            .single(409, conflict_error("slug_taken"))
            .find(200, json!({"link": {"url_id": U2, "long_url": DEST}})),
        // A "created" that names another destination (an idempotent replay of an earlier
        // create whose link has changed since) is looked up, not believed.
        case("lie/created-other-destination", want(Drift, Some(U1)))
            .bulk(
                200,
                json!({"results": [row_ok(json!({"long_url": "https://shop.example/edited"}))]}),
            )
            .single(201, with(link(), json!({"long_url": "https://shop.example/edited"})))
            .find(200, found("https://shop.example/edited", U1)),
        case("lie/find-no-url-id", failed("carries no url_id"))
            .single(409, conflict_error("slug_taken"))
            .find(200, json!({"link": without(link(), &["url_id"])})),
    ]
}

async fn mount(server: &MockServer, c: &Case) {
    let pages = c.domains.clone();
    Mock::given(method("GET"))
        .and(path("/api/v1/domains"))
        .respond_with(move |req: &Request| {
            let cursor: Option<String> = req
                .url
                .query_pairs()
                .find(|(k, _)| k == "cursor")
                .map(|(_, v)| v.into_owned());
            let n = match cursor {
                None => 0,
                Some(c) => c
                    .strip_prefix('p')
                    .and_then(|n| n.parse::<usize>().ok())
                    .unwrap_or(usize::MAX),
            };
            match pages.get(n) {
                Some(page) => ResponseTemplate::new(200).set_body_json(page.clone()),
                None => ResponseTemplate::new(400).set_body_json(json!({"code": "bad_cursor"})),
            }
        })
        .mount(server)
        .await;
    let bulk = match &c.bulk {
        Some((s, b)) => ResponseTemplate::new(*s).set_body_json(b.clone()),
        None => ResponseTemplate::new(404).set_body_json(json!({"code": "not_found"})),
    };
    Mock::given(method("POST"))
        .and(path("/api/shorten/bulk"))
        .respond_with(bulk)
        .mount(server)
        .await;
    for (route, m, (s, b)) in [
        ("/api/shorten", "POST", &c.single),
        ("/api/v1/links/find", "GET", &c.find),
        ("/api/v1/whoami", "GET", &c.whoami),
    ] {
        Mock::given(method(m))
            .and(path(route))
            .respond_with(ResponseTemplate::new(*s).set_body_json(b.clone()))
            .mount(server)
            .await;
    }
}

fn plan() -> Plan {
    Plan {
        source: PlanSource {
            spec_path: "spring.toml".into(),
            spec_sha256: "0".repeat(64),
            inputs: vec![],
            campaign: Some("spring".into()),
            resolved_spec: json!({}),
        },
        links: vec![PlannedLink {
            cell: Cell(vec![("variant".into(), "v0".into())]),
            slug: SLUG.into(),
            domain: DomainRef {
                id: None,
                host: Some(HOST.into()),
            },
            short_url: Some(short_url()),
            destination: DEST.into(),
            utm: BTreeMap::new(),
            redirect: 302,
            expires_at: None,
            tags: vec![],
            space: None,
        }],
        warnings: vec![],
        moved: Vec::new(),
    }
}

fn api(server: &MockServer) -> ApiConfig {
    let mut api = ApiConfig::new(&server.uri(), ApiKey::new(KEY, "test").unwrap()).unwrap();
    api.retry = RetryPolicy::with_base(Duration::from_millis(1));
    api.request_timeout = Duration::from_secs(5);
    api
}

/// Run one case through `build`; returns a description of any mismatch.
async fn check_build(c: &Case) -> Result<(), String> {
    let server = MockServer::start().await;
    mount(&server, c).await;
    let dir = tempfile::tempdir().unwrap();
    let settings = BuildSettings::new(api(&server), dir.path().join("m.json"));
    let result = tokio::time::timeout(
        Duration::from_secs(20),
        run_build(
            plan(),
            &settings,
            &(std::sync::Arc::new(Silent) as SharedReporter),
            std::future::pending(),
        ),
    )
    .await
    .map_err(|_| "the build took more than 20 s".to_string())?;
    let m = manifest::load(&settings.manifest_path).map_err(|e| format!("manifest: {e}"))?;
    let rec = m.links.first().ok_or("no record")?;
    let text = serde_json::to_string(&m).unwrap_or_default();
    if text.contains(KEY) {
        return Err("the API key is in the manifest".into());
    }
    match (c.want.status, &result) {
        (None, Err(_)) => {
            return if rec.status == LinkStatus::Pending {
                Ok(())
            } else {
                Err(format!("run stopped but the link is {}", rec.status))
            };
        }
        (None, Ok(r)) => return Err(format!("the run should have stopped: {:?}", r.counts)),
        (Some(_), Err(e)) => return Err(format!("the run stopped: {e}")),
        (Some(_), Ok(_)) => {}
    }
    let want = c.want;
    let mut problems = Vec::new();
    if Some(rec.status) != want.status {
        problems.push(format!(
            "status {} (want {:?}), error {:?}",
            rec.status, want.status, rec.error
        ));
    }
    if rec.url_id.as_deref() != want.url_id {
        problems.push(format!("url_id {:?} (want {:?})", rec.url_id, want.url_id));
    }
    if rec.status.is_done() && rec.short_url.as_deref() != Some(short_url().as_str()) {
        problems.push(format!("short_url {:?}", rec.short_url));
    }
    if let Some(needle) = want.error {
        let e = rec.error.as_ref();
        let hay = format!(
            "{} {}",
            e.and_then(|e| e.code.clone()).unwrap_or_default(),
            e.map(|e| e.message.clone()).unwrap_or_default()
        );
        if !hay.contains(needle) {
            problems.push(format!("error {hay:?} lacks {needle:?}"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// Run one case through `mint_link` (what `shorten` prints), for cases on the single route.
async fn check_shorten(c: &Case) -> Result<(), String> {
    let server = MockServer::start().await;
    mount(&server, c).await;
    let client = Client::new(api(&server)).unwrap();
    let req = MintRequest {
        destination: DEST.into(),
        domain_id: DOM.into(),
        slug: Some(SLUG.into()),
        redirect: Some(302),
        expires_at: None,
    };
    let got = tokio::time::timeout(Duration::from_secs(20), mint_link(&client, &req))
        .await
        .map_err(|_| "shorten took more than 20 s".to_string())?;
    let ok = match (c.want.status, &got) {
        (None, Err(_)) => true,
        (Some(LinkStatus::Created | LinkStatus::Exists), Ok(Minted::Ok(l))) => {
            Some(l.status.as_str()) == c.want.status.map(|s| s.as_str())
                && l.url_id.as_deref() == c.want.url_id
                && l.short_code.as_deref() == Some(SLUG)
        }
        (Some(LinkStatus::Drift), Ok(Minted::Drift(l))) => l.url_id.as_deref() == c.want.url_id,
        (Some(LinkStatus::Failed), Ok(Minted::Rejected(_)) | Err(_)) => true,
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("shorten: want {:?}, got {got:?}", c.want))
    }
}

#[tokio::test]
async fn every_catalogued_shape_is_recorded_truthfully_by_build_and_shorten() {
    let cases = cases();
    assert!(cases.len() >= 60, "the catalogue shrank: {}", cases.len());
    let mut failures = Vec::new();
    for c in &cases {
        if let Err(e) = check_build(c).await {
            failures.push(format!("{} (build): {e}", c.name));
        }
        // The domain list is not used by `mint_link` (it is given the id), and bulk answers
        // never reach it.
        if c.bulk.is_none()
            && !c.name.starts_with("domains/")
            && let Err(e) = check_shorten(c).await
        {
            failures.push(format!("{}: {e}", c.name));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// `GET /api/v1/links/{url_id}` in each envelope and alias shape; a body without a link
/// says what was wrong.
#[tokio::test]
async fn get_link_reads_every_envelope_and_explains_unreadable_bodies() {
    let bodies = [
        ("get/link-envelope", json!({"link": link()})),
        ("get/data-envelope", json!({"data": link()})),
        ("get/bare", link()),
        (
            "get/id-only",
            json!({"id": U1, "slug": SLUG, "destination": DEST}),
        ),
        (
            "get/id-and-url-id",
            json!({"link": with(link(), json!({"id": 5}))}),
        ),
    ];
    for (name, body) in bodies {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path(format!("/api/v1/links/{U1}")))
            .respond_with(ResponseTemplate::new(200).set_body_json(body))
            .mount(&server)
            .await;
        let got = Client::new(api(&server)).unwrap().get_link(U1).await;
        let got = got.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(got.url_id.as_deref(), Some(U1), "{name}");
        assert_eq!(got.short_code.as_deref(), Some(SLUG), "{name}");
        assert_eq!(got.long_url.as_deref(), Some(DEST), "{name}");
    }
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(format!("/api/v1/links/{U1}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"result": 3, "ok": true})))
        .mount(&server)
        .await;
    let err = Client::new(api(&server))
        .unwrap()
        .get_link(U1)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("$: expected a link object") && err.contains("result"),
        "{err}"
    );
}

/// A domain list whose cursor never ends is refused, not followed forever.
#[tokio::test]
async fn a_repeating_domain_cursor_is_refused() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v1/domains"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"domains": [{"id": DOM, "domain_name": HOST}], "next_cursor": "same"}),
        ))
        .mount(&server)
        .await;
    let err = Client::new(api(&server))
        .unwrap()
        .list_domains()
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("twice"), "{err}");
    assert!(server.received_requests().await.unwrap().len() <= 3);
}
