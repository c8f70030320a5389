//! `run_build` in-process against a scripted fake Nimriz (wiremock on 127.0.0.1): every fault
//! the build must survive, each checked against the manifest it leaves and the number of
//! create calls the server saw (no duplicates).

use nimriz::{ApiConfig, ApiKey, RetryPolicy};
use nimriz_matrix_core::apply::{BuildOutcome, BuildSettings, run_build};
use nimriz_matrix_core::exit;
use nimriz_matrix_core::manifest::{self, LinkStatus, Manifest};
use nimriz_matrix_core::plan::{Cell, DomainRef, Plan, PlanSource, PlannedLink};
use nimriz_matrix_core::report::{SharedReporter, Silent};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const KEY: &str = "nmz_live_TEST_k3y_do_not_leak_42";
const HOST: &str = "go.acme.example";
const DOMAIN_ID: &str = "dom-1";

// ------------------------------------------------------------------------------------
// A small stateful fake of the Nimriz create/find API.
// ------------------------------------------------------------------------------------

#[derive(Default)]
struct State {
    /// (domain_id, slug) → (url_id, long_url), links of this workspace.
    links: HashMap<(String, String), (String, String)>,
    /// idempotency key → url_id.
    keys: HashMap<String, String>,
    /// Slugs held by another account (find says 404).
    foreign: HashSet<String>,
    /// Links actually created (a duplicate would show up here twice).
    created: Vec<String>,
    bulk_calls: usize,
    single_calls: usize,
    find_calls: usize,
    /// Rows carried by each bulk call, by client_row_id.
    bulk_rows: Vec<Vec<String>>,
}

#[derive(Clone, Default)]
struct Script {
    /// Destinations containing this are refused per row with `invalid_url`.
    reject_containing: Option<String>,
    /// The first bulk answer leaves these client_row_ids out (they are still created).
    drop_on_first: Vec<String>,
    /// Results come back in reverse order.
    reverse: bool,
    /// Batches larger than this get 413.
    max_rows: Option<usize>,
    /// The first N bulk calls get this status (+ Retry-After) before anything is created.
    fail_first: Option<(usize, u16, Option<&'static str>)>,
    /// The first bulk call creates its rows, then answers this late (a lost response).
    delay_first: Option<Duration>,
    /// Every bulk answer is this late.
    delay_all: Option<Duration>,
}

#[derive(Clone)]
struct Fake {
    state: Arc<Mutex<State>>,
    script: Script,
}

impl Fake {
    fn new(script: Script) -> Self {
        Fake {
            state: Arc::new(Mutex::new(State::default())),
            script,
        }
    }

    fn st(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    /// Create or settle one row; `Ok(result json)` or `Err((status, code))`.
    fn create(&self, row: &Value) -> Result<Value, (u16, &'static str, String)> {
        let domain = row["domain_id"].as_str().unwrap_or_default().to_string();
        let slug = row["custom_slug"].as_str().unwrap_or_default().to_string();
        let long_url = row["long_url"].as_str().unwrap_or_default().to_string();
        let key = row["idempotency_key"].as_str().map(str::to_string);
        if let Some(bad) = &self.script.reject_containing
            && long_url.contains(bad.as_str())
        {
            return Err((422, "invalid_url", "destination is not allowed".into()));
        }
        let mut st = self.st();
        if let Some(url_id) = key.as_ref().and_then(|k| st.keys.get(k)).cloned() {
            return Ok(
                json!({"status": "created", "url_id": url_id, "idempotent": true,
                "short_url": format!("https://{HOST}/{slug}"), "short_code": slug}),
            );
        }
        if st.foreign.contains(&slug) || st.links.contains_key(&(domain.clone(), slug.clone())) {
            return Err((409, "slug_taken", format!("slug {slug} is taken")));
        }
        let url_id = format!("u-{}", st.created.len() + 1);
        st.created.push(url_id.clone());
        st.links
            .insert((domain, slug.clone()), (url_id.clone(), long_url));
        if let Some(k) = key {
            st.keys.insert(k, url_id.clone());
        }
        Ok(
            json!({"status": "created", "url_id": url_id, "idempotent": false,
            "short_url": format!("https://{HOST}/{slug}"), "short_code": slug}),
        )
    }
}

struct Bulk(Fake);
impl Respond for Bulk {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let fake = &self.0;
        let body: Value = req.body_json().unwrap_or(Value::Null);
        let rows = body["rows"].as_array().cloned().unwrap_or_default();
        let call = {
            let mut st = fake.st();
            st.bulk_calls += 1;
            st.bulk_rows.push(
                rows.iter()
                    .map(|r| r["client_row_id"].as_str().unwrap_or_default().to_string())
                    .collect(),
            );
            st.bulk_calls
        };
        if let Some((n, status, retry_after)) = fake.script.fail_first
            && call <= n
        {
            let mut t = ResponseTemplate::new(status).set_body_json(
                json!({"error": {"code": "SERVICE_UNAVAILABLE", "message": "try later"}}),
            );
            if let Some(ra) = retry_after {
                t = t.insert_header("retry-after", ra);
            }
            return t;
        }
        if let Some(max) = fake.script.max_rows
            && rows.len() > max
        {
            return ResponseTemplate::new(413)
                .set_body_json(json!({"code": "payload_too_large", "message": "too many rows"}));
        }
        let mut results = Vec::new();
        for row in &rows {
            let id = row["client_row_id"].clone();
            let mut r = match fake.create(row) {
                Ok(v) => v,
                Err((_, code, message)) => {
                    json!({"status": "error", "error": {"code": code, "message": message}})
                }
            };
            r["client_row_id"] = id.clone();
            if call == 1 && fake.script.drop_on_first.iter().any(|d| id == *d.as_str()) {
                continue;
            }
            results.push(r);
        }
        if fake.script.reverse {
            results.reverse();
        }
        let mut t = ResponseTemplate::new(200).set_body_json(json!({"results": results}));
        if let (1, Some(d)) = (call, fake.script.delay_first) {
            t = t.set_delay(d);
        }
        if let Some(d) = fake.script.delay_all {
            t = t.set_delay(d);
        }
        t
    }
}

struct Single(Fake);
impl Respond for Single {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        self.0.st().single_calls += 1;
        let mut row: Value = req.body_json().unwrap_or(Value::Null);
        if let Some(k) = req
            .headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
        {
            row["idempotency_key"] = json!(k);
        }
        match self.0.create(&row) {
            Ok(v) => ResponseTemplate::new(201).set_body_json(v),
            Err((status, code, message)) => ResponseTemplate::new(status)
                .set_body_json(json!({"code": code, "message": message})),
        }
    }
}

struct Find(Fake);
impl Respond for Find {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let mut st = self.0.st();
        st.find_calls += 1;
        let q: HashMap<String, String> = req.url.query_pairs().into_owned().collect();
        let k = (
            q.get("domain_id").cloned().unwrap_or_default(),
            q.get("short_code").cloned().unwrap_or_default(),
        );
        match st.links.get(&k) {
            Some((url_id, long_url)) => ResponseTemplate::new(200).set_body_json(json!({"link": {
                "url_id": url_id, "domain_id": k.0, "short_code": k.1,
                "short_url": format!("https://{HOST}/{}", k.1), "long_url": long_url
            }})),
            None => ResponseTemplate::new(404)
                .set_body_json(json!({"code": "not_found", "message": "no such link"})),
        }
    }
}

async fn mount(server: &MockServer, fake: &Fake) {
    Mock::given(method("GET"))
        .and(path("/api/v1/domains"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"domains": [
            {"id": DOMAIN_ID, "domain_name": HOST}, {"id": "dom-2", "domain_name": "rix.to"}
        ]})))
        .mount(server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/shorten/bulk"))
        .respond_with(Bulk(fake.clone()))
        .mount(server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/shorten"))
        .respond_with(Single(fake.clone()))
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v1/links/find"))
        .respond_with(Find(fake.clone()))
        .mount(server)
        .await;
}

// ------------------------------------------------------------------------------------
// Plans and settings
// ------------------------------------------------------------------------------------

fn link(i: usize) -> PlannedLink {
    PlannedLink {
        cell: Cell(vec![("variant".into(), format!("v{i}"))]),
        slug: format!("spring-v{i}"),
        domain: DomainRef {
            id: None,
            host: Some(HOST.into()),
        },
        short_url: Some(format!("https://{HOST}/spring-v{i}")),
        destination: format!("https://shop.example/spring?utm_source=news&utm_content=v{i}"),
        utm: BTreeMap::from([("utm_source".into(), "news".into())]),
        redirect: 302,
        expires_at: None,
        tags: vec![],
        space: None,
    }
}

fn plan(n: usize) -> Plan {
    Plan {
        source: PlanSource {
            spec_path: "spring.toml".into(),
            spec_sha256: "0".repeat(64),
            inputs: vec![],
            campaign: Some("spring".into()),
            resolved_spec: json!({}),
        },
        links: (0..n).map(link).collect(),
        warnings: vec![],
        moved: Vec::new(),
    }
}

fn settings(server: &MockServer, dir: &Path, batch: usize, conc: usize) -> BuildSettings {
    let mut api = ApiConfig::new(&server.uri(), ApiKey::new(KEY, "test").unwrap()).unwrap();
    api.retry = RetryPolicy::with_base(Duration::from_millis(1));
    api.request_timeout = Duration::from_secs(5);
    let mut s = BuildSettings::new(api, dir.join("spring.manifest.json"));
    s.batch_size = batch;
    s.concurrency = conc;
    s
}

/// The manifest as written, checked against the committed JSON Schema first.
fn load(s: &BuildSettings) -> Manifest {
    let raw: Value = serde_json::from_slice(&std::fs::read(&s.manifest_path).unwrap()).unwrap();
    let schema: Value =
        serde_json::from_str(include_str!("../../../../schema/manifest.schema.json")).unwrap();
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&raw)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert_eq!(errors, Vec::<String>::new(), "manifest violates the schema");
    manifest::load(&s.manifest_path).unwrap()
}

fn statuses(m: &Manifest) -> Vec<LinkStatus> {
    m.links.iter().map(|l| l.status).collect()
}

fn key_of(i: usize) -> String {
    format!("{DOMAIN_ID}/spring-v{i}")
}

fn assert_all_created_once(fake: &Fake, m: &Manifest, n: usize) {
    assert_eq!(fake.st().created.len(), n, "links created on the server");
    assert_eq!(m.links.len(), n);
    let mut ids = HashSet::new();
    for (i, l) in m.links.iter().enumerate() {
        assert_eq!(l.key, key_of(i), "plan order kept");
        assert_eq!(l.status, LinkStatus::Created, "{}", l.key);
        assert!(ids.insert(l.url_id.clone().unwrap()), "url_id reused");
        assert_eq!(
            l.short_url.as_deref(),
            Some(&*format!("https://{HOST}/spring-v{i}"))
        );
        assert_eq!(l.domain.id.as_deref(), Some(DOMAIN_ID));
        assert!(l.error.is_none());
    }
}

// ------------------------------------------------------------------------------------
// Tests
// ------------------------------------------------------------------------------------

#[tokio::test]
async fn happy_path_then_rerun_makes_zero_create_calls() {
    let server = MockServer::start().await;
    let fake = Fake::new(Script::default());
    mount(&server, &fake).await;
    let dir = tempfile::tempdir().unwrap();
    let s = settings(&server, dir.path(), 2, 2);

    let report = run_build(plan(5), &s, &silent(), std::future::pending())
        .await
        .unwrap();
    assert_eq!(report.exit_code(), exit::OK);
    assert_eq!(report.counts.created, 5);
    assert_eq!(report.create_requests, 3);
    let m = load(&s);
    assert_all_created_once(&fake, &m, 5);
    assert!(m.links.iter().all(|l| l.attempts == 1));
    assert_eq!(fake.st().bulk_calls, 3);
    assert_eq!(m.runs.last().unwrap().outcome.as_deref(), Some("completed"));
    assert_eq!(m.api_host.as_deref(), Some(&*server.address().to_string()));

    // Re-run: nothing to do, no create call of any kind.
    let again = run_build(plan(5), &s, &silent(), std::future::pending())
        .await
        .unwrap();
    assert_eq!(again.exit_code(), exit::OK);
    assert_eq!(again.counts.skipped_done, 5);
    assert_eq!(again.summary_lines().len(), 1);
    assert!(again.summary_lines()[0].starts_with("nothing to do: all 5 links are already done"));
    assert_eq!(again.create_requests, 0);
    assert_eq!(fake.st().bulk_calls, 3);
    assert_eq!(fake.st().single_calls, 0);
    let m2 = load(&s);
    assert_eq!(m2.runs.len(), 2);
    assert_eq!(m2.links, m.links);
}

#[tokio::test]
async fn transient_503_twice_then_success() {
    let server = MockServer::start().await;
    let fake = Fake::new(Script {
        fail_first: Some((2, 503, None)),
        ..Script::default()
    });
    mount(&server, &fake).await;
    let dir = tempfile::tempdir().unwrap();
    let s = settings(&server, dir.path(), 10, 1);
    let report = run_build(plan(3), &s, &silent(), std::future::pending())
        .await
        .unwrap();
    assert_eq!(report.exit_code(), exit::OK);
    assert_eq!(report.retries, 2);
    let m = load(&s);
    assert_all_created_once(&fake, &m, 3);
    assert_eq!(fake.st().bulk_calls, 3);
    // Every HTTP attempt that carried a row is counted.
    assert!(m.links.iter().all(|l| l.attempts == 3), "{:?}", m.links);
}

#[tokio::test]
async fn rate_limited_429_honours_retry_after() {
    let server = MockServer::start().await;
    let fake = Fake::new(Script {
        fail_first: Some((1, 429, Some("1"))),
        ..Script::default()
    });
    mount(&server, &fake).await;
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(&server, dir.path(), 10, 1);
    // Base 2 ms: Retry-After 1 s is honoured up to 240 ms on this scale.
    s.api.retry = RetryPolicy::with_base(Duration::from_millis(2));
    let start = Instant::now();
    let report = run_build(plan(2), &s, &silent(), std::future::pending())
        .await
        .unwrap();
    assert!(
        start.elapsed() >= Duration::from_millis(230),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(report.exit_code(), exit::OK);
    assert_all_created_once(&fake, &load(&s), 2);
    assert_eq!(fake.st().bulk_calls, 2);
}

#[tokio::test]
async fn rows_missing_and_out_of_order_are_matched_by_id_and_resent() {
    let server = MockServer::start().await;
    let fake = Fake::new(Script {
        drop_on_first: vec![key_of(1), key_of(3)],
        reverse: true,
        ..Script::default()
    });
    mount(&server, &fake).await;
    let dir = tempfile::tempdir().unwrap();
    let s = settings(&server, dir.path(), 10, 1);
    let report = run_build(plan(5), &s, &silent(), std::future::pending())
        .await
        .unwrap();
    assert_eq!(report.exit_code(), exit::OK);
    let m = load(&s);
    // The dropped rows were created by the first call; the resend is a replay, not a
    // second link.
    assert_all_created_once(&fake, &m, 5);
    let st = fake.st();
    assert_eq!(st.bulk_calls, 2);
    assert_eq!(
        st.bulk_rows[1],
        vec![key_of(1), key_of(3)],
        "only missing rows resent"
    );
    let attempts: Vec<u32> = m.links.iter().map(|l| l.attempts).collect();
    assert_eq!(attempts, vec![1, 2, 1, 2, 1]);
    // Matched by id despite the reversed order: each url_id belongs to its own slug.
    for l in &m.links {
        let (url_id, _) = &st.links[&(DOMAIN_ID.to_string(), l.slug.clone())];
        assert_eq!(l.url_id.as_ref(), Some(url_id));
    }
}

#[tokio::test]
async fn one_invalid_row_fails_alone() {
    let server = MockServer::start().await;
    let fake = Fake::new(Script {
        reject_containing: Some("utm_content=v2".into()),
        ..Script::default()
    });
    mount(&server, &fake).await;
    let dir = tempfile::tempdir().unwrap();
    let s = settings(&server, dir.path(), 10, 1);
    let report = run_build(plan(4), &s, &silent(), std::future::pending())
        .await
        .unwrap();
    assert_eq!(report.exit_code(), exit::PARTIAL);
    assert_eq!(report.outcome, BuildOutcome::Partial);
    assert_eq!((report.counts.created, report.counts.failed), (3, 1));
    let m = load(&s);
    use LinkStatus::*;
    assert_eq!(statuses(&m), vec![Created, Created, Failed, Created]);
    let err = m.links[2].error.as_ref().unwrap();
    assert_eq!(err.code.as_deref(), Some("invalid_url"));
    assert!(
        err.message.contains("destination is not allowed"),
        "{}",
        err.message
    );
    assert_eq!(fake.st().bulk_calls, 1, "a row refusal is not retried");
    assert_eq!(report.problems.len(), 1);
    assert!(
        report
            .summary_lines()
            .iter()
            .any(|l| l.contains("invalid_url"))
    );
    assert_eq!(m.runs.last().unwrap().outcome.as_deref(), Some("partial"));

    // Re-run after the partial failure sends only the failed row.
    let again = run_build(plan(4), &s, &silent(), std::future::pending())
        .await
        .unwrap();
    assert_eq!(again.counts.skipped_done, 3);
    assert_eq!(fake.st().bulk_rows[1], vec![key_of(2)]);
}

#[tokio::test]
async fn slug_taken_same_different_and_foreign_destination() {
    let server = MockServer::start().await;
    let fake = Fake::new(Script::default());
    {
        let mut st = fake.st();
        // v0: already there with our destination (made outside this manifest).
        st.links.insert(
            (DOMAIN_ID.into(), "spring-v0".into()),
            ("u-old-0".into(), link(0).destination),
        );
        // v1: someone in the workspace points it elsewhere.
        st.links.insert(
            (DOMAIN_ID.into(), "spring-v1".into()),
            ("u-old-1".into(), "https://elsewhere.example/".into()),
        );
        // v2: held by another account on a shared domain.
        st.foreign.insert("spring-v2".into());
    }
    mount(&server, &fake).await;
    let dir = tempfile::tempdir().unwrap();
    let s = settings(&server, dir.path(), 10, 1);
    let report = run_build(plan(4), &s, &silent(), std::future::pending())
        .await
        .unwrap();
    assert_eq!(report.exit_code(), exit::PARTIAL);
    let m = load(&s);
    use LinkStatus::*;
    assert_eq!(statuses(&m), vec![Exists, Drift, Failed, Created]);
    assert_eq!(m.links[0].url_id.as_deref(), Some("u-old-0"));
    assert_eq!(
        m.links[0].short_url.as_deref(),
        Some(&*format!("https://{HOST}/spring-v0"))
    );
    assert_eq!(m.links[1].url_id.as_deref(), Some("u-old-1"));
    assert_eq!(
        m.links[1].existing_destination.as_deref(),
        Some("https://elsewhere.example/")
    );
    assert_eq!(
        m.links[1].destination,
        link(1).destination,
        "planned destination kept"
    );
    let e = m.links[2].error.as_ref().unwrap();
    assert_eq!(e.code.as_deref(), Some("slug_taken_elsewhere"));
    assert!(e.message.contains("pick another slug"), "{}", e.message);
    let st = fake.st();
    assert_eq!(st.bulk_calls, 1);
    assert_eq!(st.find_calls, 3);
    assert_eq!(st.created.len(), 1, "nothing overwritten or duplicated");
    assert_eq!(
        st.links[&(DOMAIN_ID.to_string(), "spring-v1".to_string())].1,
        "https://elsewhere.example/"
    );
}

#[tokio::test]
async fn unauthorized_stops_the_run_with_exit_3() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v1/domains"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"domains": [{"id": DOMAIN_ID, "domain_name": HOST}]})),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/shorten/bulk"))
        .respond_with(ResponseTemplate::new(401).set_body_json(
            json!({"code": "invalid_api_key", "message": "API key revoked", "support_reference": "sr-9"}),
        ))
        .expect(1)
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let s = settings(&server, dir.path(), 2, 1);
    let err = run_build(plan(6), &s, &silent(), std::future::pending())
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), exit::API);
    let msg = err.to_string();
    assert!(
        msg.contains("API key revoked") && msg.contains("sr-9"),
        "{msg}"
    );
    assert_eq!(
        msg.matches("API key revoked").count(),
        1,
        "one message: {msg}"
    );
    let m = load(&s);
    assert!(m.links.iter().all(|l| l.status == LinkStatus::Pending));
    assert!(
        m.runs
            .last()
            .unwrap()
            .outcome
            .as_deref()
            .unwrap()
            .starts_with("aborted:"),
        "{:?}",
        m.runs
    );
}

#[tokio::test]
async fn payload_too_large_halves_the_batch() {
    let server = MockServer::start().await;
    let fake = Fake::new(Script {
        max_rows: Some(2),
        ..Script::default()
    });
    mount(&server, &fake).await;
    let dir = tempfile::tempdir().unwrap();
    let s = settings(&server, dir.path(), 8, 1);
    let report = run_build(plan(7), &s, &silent(), std::future::pending())
        .await
        .unwrap();
    assert_eq!(report.exit_code(), exit::OK);
    let m = load(&s);
    assert_all_created_once(&fake, &m, 7);
    let st = fake.st();
    let sizes: Vec<usize> = st.bulk_rows.iter().map(Vec::len).collect();
    // 7 → 413; halve to 3 → 413; halve to 1... then every later batch stays small.
    assert_eq!(sizes[0], 7);
    assert!(sizes[1..].iter().all(|&n| n <= 3), "{sizes:?}");
    let accepted: usize = sizes.iter().filter(|&&n| n <= 2).sum();
    assert_eq!(accepted, 7, "each row accepted exactly once: {sizes:?}");
}

#[tokio::test]
async fn missing_bulk_route_falls_back_to_single_creates() {
    let server = MockServer::start().await;
    let fake = Fake::new(Script::default());
    Mock::given(method("POST"))
        .and(path("/api/shorten/bulk"))
        .respond_with(ResponseTemplate::new(404).set_body_string("Not Found"))
        .mount(&server)
        .await;
    mount(&server, &fake).await; // its bulk mock is shadowed by the 404 above
    let dir = tempfile::tempdir().unwrap();
    let s = settings(&server, dir.path(), 3, 2);
    let report = run_build(plan(5), &s, &silent(), std::future::pending())
        .await
        .unwrap();
    assert_eq!(report.exit_code(), exit::OK);
    let m = load(&s);
    assert_all_created_once(&fake, &m, 5);
    assert_eq!(fake.st().single_calls, 5);
    assert_eq!(fake.st().bulk_calls, 0);
    let bulk_404s = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == "/api/shorten/bulk")
        .count();
    assert!((1..=2).contains(&bulk_404s), "{bulk_404s}");
}

#[tokio::test]
async fn dead_server_fails_fast_with_exit_3() {
    let server = MockServer::start().await;
    let fake = Fake::new(Script {
        fail_first: Some((usize::MAX, 503, None)),
        ..Script::default()
    });
    mount(&server, &fake).await;
    let dir = tempfile::tempdir().unwrap();
    let s = settings(&server, dir.path(), 2, 4);
    let start = Instant::now();
    let err = run_build(plan(40), &s, &silent(), std::future::pending())
        .await
        .unwrap_err();
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(err.exit_code(), exit::API);
    assert!(err.to_string().contains("503"), "{err}");
    let calls = fake.st().bulk_calls;
    // The run-wide brake (10 failures in a row) stops all 4 in-flight requests.
    assert!(calls <= 10 + 4, "{calls} calls");
    assert_eq!(fake.st().created.len(), 0);
    let m = load(&s);
    assert_eq!(m.links.len(), 40);
    assert!(m.links.iter().all(|l| l.status == LinkStatus::Pending));
}

#[tokio::test]
async fn lost_response_is_resent_with_the_same_key_and_slug() {
    let server = MockServer::start().await;
    let fake = Fake::new(Script {
        delay_first: Some(Duration::from_secs(2)),
        ..Script::default()
    });
    mount(&server, &fake).await;
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(&server, dir.path(), 10, 1);
    s.api.request_timeout = Duration::from_millis(300);
    let report = run_build(plan(3), &s, &silent(), std::future::pending())
        .await
        .unwrap();
    assert_eq!(report.exit_code(), exit::OK);
    let m = load(&s);
    assert_all_created_once(&fake, &m, 3);
    {
        let st = fake.st();
        assert_eq!(st.bulk_calls, 2);
        assert_eq!(st.bulk_rows[0], st.bulk_rows[1], "same rows resent");
    }
    let reqs = server.received_requests().await.unwrap();
    let bodies: Vec<&Vec<u8>> = reqs
        .iter()
        .filter(|r| r.url.path() == "/api/shorten/bulk")
        .map(|r| &r.body)
        .collect();
    assert_eq!(
        bodies[0], bodies[1],
        "byte-identical resend: same keys and slugs"
    );
}

#[tokio::test]
async fn unknown_domain_is_a_usage_error_before_anything_is_created() {
    let server = MockServer::start().await;
    let fake = Fake::new(Script::default());
    mount(&server, &fake).await;
    let dir = tempfile::tempdir().unwrap();
    let s = settings(&server, dir.path(), 10, 1);
    let mut p = plan(2);
    p.links[1].domain.host = Some("www.go.acme.example".into());
    let err = run_build(p, &s, &silent(), std::future::pending())
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), exit::INVALID);
    let msg = err.to_string();
    assert!(
        msg.contains("www.go.acme.example") && msg.contains("go.acme.example, rix.to"),
        "{msg}"
    );
    assert_eq!(fake.st().bulk_calls, 0);
    assert!(!s.manifest_path.exists());
}

#[tokio::test]
async fn ctrl_c_waits_for_in_flight_and_records_interrupted() {
    let server = MockServer::start().await;
    let fake = Fake::new(Script {
        delay_all: Some(Duration::from_millis(300)),
        ..Script::default()
    });
    mount(&server, &fake).await;
    let dir = tempfile::tempdir().unwrap();
    let s = settings(&server, dir.path(), 1, 1);
    let report = run_build(plan(5), &s, &silent(), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
    })
    .await
    .unwrap();
    assert_eq!(report.exit_code(), exit::INTERRUPTED);
    assert_eq!((report.counts.created, report.counts.pending), (1, 4));
    let m = load(&s);
    use LinkStatus::*;
    assert_eq!(
        statuses(&m),
        vec![Created, Pending, Pending, Pending, Pending]
    );
    // Rows never sent are recorded when the run stops, still in plan order.
    let keys: Vec<&str> = m.links.iter().map(|l| l.key.as_str()).collect();
    assert_eq!(keys, (0..5).map(key_of).collect::<Vec<_>>());
    assert_eq!(
        m.links.iter().map(|l| l.attempts).collect::<Vec<_>>(),
        vec![1, 0, 0, 0, 0]
    );
    assert_eq!(
        m.runs.last().unwrap().outcome.as_deref(),
        Some("interrupted")
    );
    assert_eq!(
        fake.st().bulk_calls,
        1,
        "nothing new sent after the interrupt"
    );

    // The next run finishes the rest, creating nothing twice.
    let mut s2 = s.clone();
    s2.batch_size = 10;
    let done = run_build(plan(5), &s2, &silent(), std::future::pending())
        .await
        .unwrap();
    assert_eq!(done.exit_code(), exit::OK);
    assert_eq!(done.counts.skipped_done, 1);
    assert_all_created_once(&fake, &load(&s2), 5);
}

#[tokio::test]
async fn api_key_never_reaches_manifest_or_journal() {
    let server = MockServer::start().await;
    let fake = Fake::new(Script {
        delay_all: Some(Duration::from_millis(400)),
        reject_containing: Some("utm_content=v1".into()),
        ..Script::default()
    });
    mount(&server, &fake).await;
    let dir = tempfile::tempdir().unwrap();
    let s = settings(&server, dir.path(), 1, 1);
    let journal = PathBuf::from(format!("{}.journal", s.manifest_path.display()));
    let task = {
        let s = s.clone();
        tokio::spawn(async move { run_build(plan(3), &s, &silent(), std::future::pending()).await })
    };
    // Look at the journal while the build is in flight (it is removed at the end).
    let mut seen_journal = String::new();
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(40)).await;
        if let Ok(text) = std::fs::read_to_string(&journal)
            && text.contains("pending")
        {
            seen_journal = text;
            break;
        }
    }
    assert!(!seen_journal.is_empty(), "journal never seen");
    assert!(!seen_journal.contains(KEY));
    let report = task.await.unwrap().unwrap();
    assert_eq!(report.exit_code(), exit::PARTIAL);
    assert!(!format!("{report:?}").contains(KEY));
    assert!(!report.summary_lines().join("\n").contains(KEY));
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let p = entry.unwrap().path();
        let bytes = std::fs::read(&p).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains(KEY), "key found in {}", p.display());
    }
    // …while it was really sent, as a Bearer token.
    let reqs = server.received_requests().await.unwrap();
    assert!(
        reqs.iter()
            .all(|r| r.headers.get("authorization").unwrap() == format!("Bearer {KEY}").as_str())
    );
}

#[tokio::test]
async fn ctrl_c_cuts_a_long_retry_wait_short() {
    let server = MockServer::start().await;
    let fake = Fake::new(Script {
        fail_first: Some((usize::MAX, 429, Some("2"))),
        ..Script::default()
    });
    mount(&server, &fake).await;
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(&server, dir.path(), 10, 1);
    // Base 20 ms: Retry-After 2 s is honoured in full (cap 2.4 s).
    s.api.retry = RetryPolicy::with_base(Duration::from_millis(20));
    let start = Instant::now();
    let report = run_build(plan(3), &s, &silent(), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
    })
    .await
    .unwrap();
    assert!(
        start.elapsed() < Duration::from_millis(1000),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(report.exit_code(), exit::INTERRUPTED);
    assert_eq!(report.counts.pending, 3);
    assert_eq!(fake.st().bulk_calls, 1, "no retry after the interrupt");
    let m = load(&s);
    assert!(m.links.iter().all(|l| l.status == LinkStatus::Pending));
    assert_eq!(
        m.runs.last().unwrap().outcome.as_deref(),
        Some("interrupted")
    );
}

#[tokio::test]
async fn rows_left_pending_by_a_crash_are_resent_with_the_same_key() {
    let server = MockServer::start().await;
    let fake = Fake::new(Script::default());
    mount(&server, &fake).await;
    let dir = tempfile::tempdir().unwrap();
    let s = settings(&server, dir.path(), 10, 1);
    let p = plan(3);
    // A first run sent links 0 and 1 (journaled as pending) and died before any answer was
    // recorded; the server had committed link 0 only.
    {
        let mut store =
            manifest::ManifestStore::open(&s.manifest_path, &p.source, Some("x")).unwrap();
        let pending: Vec<manifest::LinkRecord> = (0..2)
            .map(|i| {
                let l = link(i);
                let domain = DomainRef {
                    id: Some(DOMAIN_ID.into()),
                    host: l.domain.host.clone(),
                };
                manifest::LinkRecord {
                    key: key_of(i),
                    cell: l.cell,
                    slug: l.slug.clone(),
                    domain,
                    idempotency_key: nimriz::idempotency_key(DOMAIN_ID, &l.slug, &l.destination),
                    destination: l.destination,
                    utm: Default::default(),
                    status: LinkStatus::Pending,
                    short_url: None,
                    url_id: None,
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
                    updated_at: manifest::now_rfc3339(),
                }
            })
            .collect();
        store.record(&pending).unwrap();
        fake.create(&json!({
            "domain_id": DOMAIN_ID, "custom_slug": "spring-v0",
            "long_url": link(0).destination, "idempotency_key": pending[0].idempotency_key
        }))
        .unwrap();
        // Dropped without `finish`: what a kill -9 leaves behind (manifest + journal).
    }
    let report = run_build(p, &s, &silent(), std::future::pending())
        .await
        .unwrap();
    assert_eq!(report.exit_code(), exit::OK);
    let m = load(&s);
    assert_all_created_once(&fake, &m, 3);
    assert_eq!(
        m.links[0].url_id.as_deref(),
        Some("u-1"),
        "replayed, not re-created"
    );
    let attempts: Vec<u32> = m.links.iter().map(|l| l.attempts).collect();
    assert_eq!(attempts, vec![2, 2, 1]);
}

#[tokio::test]
async fn a_locked_manifest_is_exit_4_and_sends_nothing() {
    let server = MockServer::start().await;
    let fake = Fake::new(Script::default());
    mount(&server, &fake).await;
    let dir = tempfile::tempdir().unwrap();
    let s = settings(&server, dir.path(), 10, 1);
    let p = plan(2);
    let _held = manifest::ManifestStore::open(&s.manifest_path, &p.source, None).unwrap();
    let err = run_build(p, &s, &silent(), std::future::pending())
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), exit::LOCAL, "{err}");
    assert_eq!(fake.st().bulk_calls, 0);
}

fn silent() -> SharedReporter {
    std::sync::Arc::new(Silent)
}

// ------------------------------------------------------------------------------------
// A spec walked while sending (what the binary does): `plan::prepare_with`
// ------------------------------------------------------------------------------------

/// A spec of `n` links `spring-v0 … spring-v{n-1}` on `HOST`, checked and ready to walk.
fn spec_plan(dir: &Path, n: usize) -> nimriz_matrix_core::plan::SpecPlan {
    let values: Vec<String> = (0..n).map(|i| format!("\"v{i}\"")).collect();
    let path = dir.join("spring.toml");
    std::fs::write(
        &path,
        format!(
            "[campaign]\nname = \"spring\"\n\n[link]\ndomain = \"{HOST}\"\n\
             destination = \"https://shop.example/spring\"\nslug = \"spring-{{variant}}\"\n\n\
             [utm]\nsource = \"news\"\ncontent = \"{{variant}}\"\n\n\
             [[dimension]]\nname = \"variant\"\nvalues = [{}]\n",
            values.join(", ")
        ),
    )
    .unwrap();
    nimriz_matrix_core::plan::prepare_with(&path, 10_000, &Default::default(), &Silent).unwrap()
}

#[tokio::test]
async fn a_walked_spec_longer_than_the_send_window_is_created_once_in_plan_order() {
    let server = MockServer::start().await;
    let fake = Fake::new(Script::default());
    mount(&server, &fake).await;
    let dir = tempfile::tempdir().unwrap();
    // A window of 2 × 3 rows against 250 links: rows are made while batches fly.
    let s = settings(&server, dir.path(), 3, 2);
    let report = run_build(
        spec_plan(dir.path(), 250),
        &s,
        &silent(),
        std::future::pending(),
    )
    .await
    .unwrap();
    assert_eq!(report.exit_code(), exit::OK);
    assert_eq!((report.counts.planned, report.counts.created), (250, 250));
    assert_eq!(report.create_requests, 84, "⌈250 / 3⌉ batches");
    assert_all_created_once(&fake, &load(&s), 250);

    // The re-run walks the spec against the record: nothing sent.
    let again = run_build(
        spec_plan(dir.path(), 250),
        &s,
        &silent(),
        std::future::pending(),
    )
    .await
    .unwrap();
    assert_eq!(again.counts.skipped_done, 250);
    assert_eq!(again.create_requests, 0);
    assert_eq!(fake.st().bulk_calls, 84);
}

#[tokio::test]
async fn a_walked_build_stopped_early_records_every_planned_row_and_the_next_run_converges() {
    let server = MockServer::start().await;
    let fake = Fake::new(Script {
        delay_all: Some(Duration::from_millis(300)),
        ..Script::default()
    });
    mount(&server, &fake).await;
    let dir = tempfile::tempdir().unwrap();
    let s = settings(&server, dir.path(), 2, 1);
    let report = run_build(spec_plan(dir.path(), 40), &s, &silent(), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
    })
    .await
    .unwrap();
    assert_eq!(report.exit_code(), exit::INTERRUPTED);
    assert_eq!((report.counts.created, report.counts.pending), (2, 38));
    let m = load(&s);
    // The rows the walk had not yet made when the run stopped are recorded too.
    let keys: Vec<String> = m.links.iter().map(|l| l.key.clone()).collect();
    assert_eq!(keys, (0..40).map(key_of).collect::<Vec<_>>());
    let attempts: Vec<u32> = m.links.iter().map(|l| l.attempts).collect();
    assert_eq!(attempts[..3], [1, 1, 0]);
    assert!(attempts[2..].iter().all(|&a| a == 0));
    assert_eq!(
        fake.st().bulk_calls,
        1,
        "nothing new sent after the interrupt"
    );

    let mut s2 = s.clone();
    s2.batch_size = 10;
    let done = run_build(
        spec_plan(dir.path(), 40),
        &s2,
        &silent(),
        std::future::pending(),
    )
    .await
    .unwrap();
    assert_eq!(done.exit_code(), exit::OK);
    assert_eq!(done.counts.skipped_done, 2);
    assert_all_created_once(&fake, &load(&s2), 40);
}
