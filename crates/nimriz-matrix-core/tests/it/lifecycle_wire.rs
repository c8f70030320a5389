//! Links as code against a server in shapes the sandbox does not serve: a stateful wiremock
//! fake whose update, get and list answers are numeric ids, envelopes, `destination_url`,
//! empty successes, lost responses and 5xx. Each case asserts what was recorded and what
//! the fake holds: a change is recorded only when the live link shows it.

use nimriz::{ApiConfig, ApiKey, RetryPolicy};
use nimriz_matrix_core::apply::{
    BuildSettings, LiveSettings, import_command, run_build, run_refresh,
};
use nimriz_matrix_core::manifest::{self, LinkStatus, Manifest};
use nimriz_matrix_core::report::{SharedReporter, Silent};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const KEY: &str = "nmz_test_LIFECYCLE_k3y";
const HOST: &str = "go.acme.example";
const DOM: &str = "dom-1";

/// How the fake answers an update call.
#[derive(Clone, Copy, Debug, PartialEq)]
enum UpdateAnswer {
    /// `{"data": {"link": {...}}}` with a numeric id and `destination_url`.
    Envelope,
    /// `200 {"success": true}`: nothing to read the change from.
    EmptySuccess,
    /// Applies the change, then answers 500 every time (the response is lost).
    AppliedThen500,
    /// 500 every time, nothing applied.
    Always500,
    /// Applies nothing; answers with another link (id + 100) showing the new destination.
    OtherLink,
}

#[derive(Default)]
struct Fake {
    /// url_id (numeric) → (slug, destination, expires_at).
    links: BTreeMap<u64, (String, String, Option<String>)>,
    next: u64,
    update_calls: u32,
    /// Links Nimriz blocked (answered with `takedown_status`).
    taken_down: std::collections::BTreeSet<u64>,
    /// `GET /api/v1/links/{id}` answers with id + 100 (a server mixing up rows).
    get_other_id: bool,
}

fn shared() -> SharedReporter {
    Arc::new(Silent)
}

/// The link as a numeric-id object under `link`, with `destination_url`.
fn wire_link(id: u64, l: &(String, String, Option<String>)) -> Value {
    json!({"id": id, "domain_id": DOM, "slug": l.0, "short_url": format!("https://{HOST}/{}", l.0),
           "destination_url": l.1, "expires_at": l.2})
}

async fn fake(answer: UpdateAnswer, page_size: usize) -> (MockServer, Arc<Mutex<Fake>>) {
    let server = MockServer::start().await;
    let state = Arc::new(Mutex::new(Fake {
        next: 41,
        ..Fake::default()
    }));
    Mock::given(method("GET"))
        .and(path("/api/v1/domains"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"data": [{"id": DOM, "domain_name": HOST}]})),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v1/whoami"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"account_id": "acct-1", "workspace_name": "Acme"})),
        )
        .mount(&server)
        .await;
    let st = state.clone();
    Mock::given(method("POST"))
        .and(path("/api/shorten/bulk"))
        .respond_with(move |req: &Request| {
            let body: Value = serde_json::from_slice(&req.body).unwrap();
            let mut s = st.lock().unwrap();
            let mut results = Vec::new();
            for r in body["rows"].as_array().unwrap() {
                s.next += 1;
                let id = s.next;
                let l = (
                    r["custom_slug"].as_str().unwrap().to_string(),
                    r["long_url"].as_str().unwrap().to_string(),
                    r["expires_at"].as_str().map(str::to_string),
                );
                let mut v = wire_link(id, &l);
                v["client_row_id"] = r["client_row_id"].clone();
                v["status"] = json!("created");
                s.links.insert(id, l);
                results.push(v);
            }
            ResponseTemplate::new(200).set_body_json(json!({"data": {"results": results}}))
        })
        .mount(&server)
        .await;
    let st = state.clone();
    Mock::given(method("GET"))
        .and(path_regex(r"^/api/v1/links/\d+$"))
        .respond_with(move |req: &Request| {
            let id: u64 = req.url.path().rsplit('/').next().unwrap().parse().unwrap();
            let s = st.lock().unwrap();
            match s.links.get(&id) {
                Some(l) => {
                    let shown = if s.get_other_id { id + 100 } else { id };
                    let mut v = wire_link(shown, l);
                    if s.taken_down.contains(&id) {
                        v["takedown_status"] = json!("blocked");
                    }
                    ResponseTemplate::new(200).set_body_json(json!({"data": v}))
                }
                None => ResponseTemplate::new(404)
                    .set_body_json(json!({"error": {"code": "not_found"}})),
            }
        })
        .mount(&server)
        .await;
    let st = state.clone();
    Mock::given(method("PUT"))
        .and(path("/api/update-destination"))
        .respond_with(move |req: &Request| {
            let body: Value = serde_json::from_slice(&req.body).unwrap();
            let id: u64 = body["url_id"].as_str().unwrap().parse().unwrap();
            let mut s = st.lock().unwrap();
            s.update_calls += 1;
            if answer == UpdateAnswer::Always500 {
                return ResponseTemplate::new(500).set_body_json(json!({"error": "boom"}));
            }
            if answer == UpdateAnswer::OtherLink {
                let l = s.links.get(&id).cloned().unwrap_or_default();
                let other = (l.0, body["long_url"].as_str().unwrap().to_string(), l.2);
                return ResponseTemplate::new(200)
                    .set_body_json(json!({"link": wire_link(id + 100, &other)}));
            }
            let Some(l) = s.links.get_mut(&id) else {
                return ResponseTemplate::new(404).set_body_json(json!({"error": "not_found"}));
            };
            l.1 = body["long_url"].as_str().unwrap().to_string();
            let l = l.clone();
            match answer {
                UpdateAnswer::Envelope => ResponseTemplate::new(200)
                    .set_body_json(json!({"data": {"link": wire_link(id, &l)}})),
                UpdateAnswer::EmptySuccess => {
                    ResponseTemplate::new(200).set_body_json(json!({"success": true}))
                }
                _ => ResponseTemplate::new(500).set_body_json(json!({"error": "lost"})),
            }
        })
        .mount(&server)
        .await;
    let st = state.clone();
    Mock::given(method("GET"))
        .and(path("/api/v1/links"))
        .respond_with(move |req: &Request| {
            let start: usize = req
                .url
                .query_pairs()
                .find(|(k, _)| k == "cursor")
                .and_then(|(_, v)| v.strip_prefix("at-").and_then(|n| n.parse().ok()))
                .unwrap_or(0);
            let s = st.lock().unwrap();
            let all: Vec<Value> = s.links.iter().map(|(id, l)| wire_link(*id, l)).collect();
            let page: Vec<Value> = all.iter().skip(start).take(page_size).cloned().collect();
            let next = (start + page_size < all.len()).then(|| format!("at-{}", start + page_size));
            ResponseTemplate::new(200)
                .set_body_json(json!({"items": page, "pagination": {"next_cursor": next}}))
        })
        .mount(&server)
        .await;
    (server, state)
}

fn api(server: &MockServer) -> ApiConfig {
    let mut api = ApiConfig::new(&server.uri(), ApiKey::new(KEY, "test").unwrap()).unwrap();
    api.retry = RetryPolicy::with_base(Duration::from_millis(1));
    api.request_timeout = Duration::from_secs(5);
    api
}

fn write_spec(dir: &Path, dest_v1: &str) -> PathBuf {
    let p = dir.join("spec.toml");
    std::fs::write(
        &p,
        format!(
            r#"[campaign]
name = "spring"

[link]
domain = "{HOST}"
destination = "https://acme.example/{{variant}}"
slug = "spring-{{variant}}"

[utm]
source = "newsletter"
medium = "email"
campaign = "spring"

[[dimension]]
name = "variant"
values = ["v1", "v2", "v3"]

[[override]]
match = {{ variant = "v1" }}
destination = "{dest_v1}"
"#
        ),
    )
    .unwrap();
    p
}

async fn build(
    server: &MockServer,
    spec: &Path,
    update: bool,
) -> nimriz_matrix_core::apply::BuildReport {
    let plan = nimriz_matrix_core::plan::load(spec, 1000, &Silent).unwrap();
    let mut settings = BuildSettings::new(api(server), spec.with_file_name("spec.manifest.json"));
    settings.update = update;
    tokio::time::timeout(
        Duration::from_secs(20),
        run_build(plan, &settings, &shared(), std::future::pending()),
    )
    .await
    .expect("bounded")
    .expect("build runs")
}

fn record(dir: &Path) -> Manifest {
    manifest::load(&dir.join("spec.manifest.json")).unwrap()
}

fn v1(m: &Manifest) -> &manifest::LinkRecord {
    m.links.iter().find(|l| l.slug == "spring-v1").unwrap()
}

/// Build three links, change v1's destination, `build --update` with `answer`.
async fn update_case(
    answer: UpdateAnswer,
) -> (
    Manifest,
    Arc<Mutex<Fake>>,
    nimriz_matrix_core::apply::BuildReport,
) {
    let (server, state) = fake(answer, 100).await;
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(dir.path(), "https://acme.example/spring");
    let first = build(&server, &spec, false).await;
    assert_eq!(first.counts.created, 3);
    write_spec(dir.path(), "https://acme.example/summer");
    let report = build(&server, &spec, true).await;
    let m = record(dir.path());
    (m, state, report)
}

#[tokio::test]
async fn an_update_answered_in_an_envelope_with_a_numeric_id_is_recorded() {
    let (m, state, report) = update_case(UpdateAnswer::Envelope).await;
    assert_eq!(report.counts.updated, 1);
    let rec = v1(&m);
    assert!(rec.destination.starts_with("https://acme.example/summer?"));
    assert_eq!(rec.url_id.as_deref(), Some("42"), "numeric id read as text");
    assert_eq!(rec.history.len(), 1);
    let s = state.lock().unwrap();
    assert_eq!(s.links.len(), 3, "no new link");
    assert_eq!(s.update_calls, 1);
}

#[tokio::test]
async fn an_empty_success_is_confirmed_by_reading_the_link_back() {
    let (m, _state, report) = update_case(UpdateAnswer::EmptySuccess).await;
    assert_eq!(report.counts.updated, 1);
    assert!(
        v1(&m)
            .destination
            .starts_with("https://acme.example/summer?")
    );
    assert_eq!(v1(&m).history[0].action, "update-destination");
}

#[tokio::test]
async fn a_lost_response_of_an_applied_update_is_confirmed_by_reading_back() {
    let (m, state, report) = update_case(UpdateAnswer::AppliedThen500).await;
    assert_eq!(report.counts.updated, 1, "{:?}", report.problems);
    assert!(
        v1(&m)
            .destination
            .starts_with("https://acme.example/summer?")
    );
    assert!(state.lock().unwrap().update_calls >= 2, "retried first");
}

#[tokio::test]
async fn an_update_that_never_lands_is_a_failure_and_the_record_keeps_the_live_value() {
    let (m, state, report) = update_case(UpdateAnswer::Always500).await;
    assert_eq!(report.counts.updated, 0);
    assert_eq!(report.counts.failed, 1);
    assert_eq!(report.exit_code(), 1);
    let rec = v1(&m);
    assert!(
        rec.destination.starts_with("https://acme.example/spring?"),
        "not a lie"
    );
    assert_eq!(rec.status, LinkStatus::Created, "still live as it was");
    assert!(rec.history.is_empty());
    let err = rec.error.as_ref().expect("the reason is recorded");
    assert_eq!(err.code.as_deref(), Some("update_failed"));
    assert!(
        err.message.contains("Nimriz still shows"),
        "{}",
        err.message
    );
    let s = state.lock().unwrap();
    assert!(s.links[&42].1.starts_with("https://acme.example/spring?"));
}

#[tokio::test]
async fn refresh_records_outside_edits_and_deletes_read_in_another_shape() {
    let (server, state) = fake(UpdateAnswer::Envelope, 100).await;
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(dir.path(), "https://acme.example/spring");
    build(&server, &spec, false).await;
    {
        let mut s = state.lock().unwrap();
        s.links.get_mut(&42).unwrap().1 = "https://acme.example/edited".into();
        let v2 = s.links.get_mut(&43).unwrap();
        v2.2 = Some("2027-01-01T00:00:00Z".into());
        v2.0 = "spring-v2-renamed".into();
        s.taken_down.insert(43);
        s.links.remove(&44);
    }
    let live = LiveSettings {
        api: api(&server),
        spec: spec.clone(),
        manifest_path: dir.path().join("spec.manifest.json"),
        max_links: 1000,
        concurrency: 2,
        inputs: Default::default(),
    };
    let report = run_refresh(&live, &shared()).await.unwrap();
    assert_eq!(
        (report.read, report.changed, report.deleted),
        (3, 2, 1),
        "{report:?}"
    );
    assert_eq!(report.exit_code(true), 2);
    let m = record(dir.path());
    let by = |slug: &str| m.links.iter().find(|l| l.slug == slug).unwrap().clone();
    let edited = by("spring-v1");
    assert_eq!(edited.status, LinkStatus::Drift);
    assert_eq!(
        edited.existing_destination.as_deref(),
        Some("https://acme.example/edited")
    );
    let expiring = by("spring-v2");
    assert_eq!(
        expiring
            .outside
            .as_ref()
            .and_then(|o| o.expires_at.as_deref()),
        Some("2027-01-01T00:00:00Z")
    );
    assert_eq!(by("spring-v3").status, LinkStatus::Deleted);
    // Refresh changes nothing on the server.
    let s = state.lock().unwrap();
    assert_eq!(s.links.len(), 2);
    assert_eq!(s.update_calls, 0);
}

#[tokio::test]
async fn import_reads_every_page_and_adopts_only_planned_slugs() {
    let (server, state) = fake(UpdateAnswer::Envelope, 2).await;
    {
        let mut s = state.lock().unwrap();
        for (id, slug, dest) in [
            (
                7,
                "spring-v1",
                "https://acme.example/v1?utm_source=newsletter&utm_medium=email&utm_campaign=spring",
            ),
            (8, "other-a", "https://acme.example/a"),
            (9, "other-b", "https://acme.example/b"),
            (10, "spring-v3", "https://acme.example/somewhere-else"),
            (11, "other-c", "https://acme.example/c"),
        ] {
            s.links.insert(id, (slug.into(), dest.into(), None));
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(dir.path(), "https://acme.example/v1");
    let live = LiveSettings {
        api: api(&server),
        spec,
        manifest_path: dir.path().join("spec.manifest.json"),
        max_links: 1000,
        concurrency: 2,
        inputs: Default::default(),
    };
    let code = import_command(&live, &shared()).await.unwrap();
    assert_eq!(code, 0);
    let m = record(dir.path());
    assert_eq!(
        m.links.len(),
        2,
        "{:?}",
        m.links.iter().map(|l| &l.slug).collect::<Vec<_>>()
    );
    let a = v1(&m);
    assert_eq!(a.status, LinkStatus::Exists);
    assert_eq!(a.url_id.as_deref(), Some("7"));
    assert_eq!(a.origin, Some(manifest::model::Origin::Adopted));
    let c = m.links.iter().find(|l| l.slug == "spring-v3").unwrap();
    assert_eq!(c.status, LinkStatus::Drift, "found on a later page");
    assert_eq!(
        state.lock().unwrap().links.len(),
        5,
        "nothing created or changed"
    );
}

#[tokio::test]
async fn an_update_answered_about_another_link_is_not_recorded() {
    let (m, state, report) = update_case(UpdateAnswer::OtherLink).await;
    assert_eq!(report.counts.updated, 0, "{:?}", report.problems);
    assert_eq!(report.counts.failed, 1);
    let rec = v1(&m);
    assert!(
        rec.destination.starts_with("https://acme.example/spring?"),
        "not a lie"
    );
    assert!(rec.history.is_empty());
    let msg = &rec.error.as_ref().unwrap().message;
    assert!(
        msg.contains("another link") && msg.contains("Nimriz still shows"),
        "{msg}"
    );
    assert!(
        state.lock().unwrap().links[&42]
            .1
            .starts_with("https://acme.example/spring?")
    );
}

#[tokio::test]
async fn refresh_keeps_the_record_when_the_answer_is_about_another_link() {
    let (server, state) = fake(UpdateAnswer::Envelope, 100).await;
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(dir.path(), "https://acme.example/spring");
    build(&server, &spec, false).await;
    {
        let mut s = state.lock().unwrap();
        s.links.get_mut(&42).unwrap().1 = "https://acme.example/edited".into();
        s.get_other_id = true;
    }
    let before = record(dir.path());
    let live = LiveSettings {
        api: api(&server),
        spec: spec.clone(),
        manifest_path: dir.path().join("spec.manifest.json"),
        max_links: 1000,
        concurrency: 2,
        inputs: Default::default(),
    };
    let report = run_refresh(&live, &shared()).await.unwrap();
    assert_eq!(report.unreadable.len(), 3, "{report:?}");
    assert!(report.unreadable[0].contains("another link"));
    assert_eq!(report.exit_code(true), 1, "an error, not 'drift'");
    assert_eq!(record(dir.path()).links, before.links, "nothing recorded");
}
