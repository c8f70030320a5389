//! `nimriz-matrix shorten` run as a real binary against wiremock on 127.0.0.1: JSON on
//! stdout, exit codes, conflict handling, and the API key never in any output.

use assert_cmd::Command;
use serde_json::{Value, json};
use wiremock::matchers::{body_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const KEY: &str = "nmz_live_SHORTEN_s3cret_77";
/// A domain id as Nimriz writes them (`--domain-id` must be a UUID).
const DOMAIN_ID: &str = "7d0c6a4e-3f5b-4c1e-9a57-2b1d1e0f9a01";

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Run the binary off the async runtime (wiremock keeps serving on its workers). The
/// environment is cleared of our variables so the developer's own settings cannot leak in.
async fn run(args: Vec<String>, key_env: Option<&'static str>) -> Run {
    tokio::task::spawn_blocking(move || {
        let mut cmd = Command::from_std(test_support::command());
        cmd.env("NIMRIZ_MATRIX_RETRY_BASE_MS", "1")
            .timeout(std::time::Duration::from_secs(20))
            .args(&args);
        if let Some(k) = key_env {
            cmd.env("NIMRIZ_API_KEY", k);
        }
        let out = cmd.output().unwrap();
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    })
    .await
    .unwrap()
}

fn args(server: &MockServer, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = vec!["shorten".into()];
    v.extend(extra.iter().map(|s| s.to_string()));
    v.push("--api-base".into());
    v.push(server.uri());
    v
}

async fn domains(server: &MockServer) {
    Mock::given(method("GET"))
        .and(path("/api/v1/domains"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"domains": [
            {"id": "dom-1", "domain_name": "go.acme.example"}, {"id": "dom-2", "domain_name": "rix.to"}
        ]})))
        .mount(server)
        .await;
}

fn no_key_anywhere(r: &Run) {
    assert!(!r.stdout.contains(KEY), "key on stdout: {}", r.stdout);
    assert!(!r.stderr.contains(KEY), "key on stderr: {}", r.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mints_a_link_with_utms_and_prints_json_after_a_retry() {
    let server = MockServer::start().await;
    domains(&server).await;
    let dest = "https://shop.example/loyalty?member=a%20b&utm_source=news&utm_medium=email#perks";
    // One 503 first (retried, reported with --verbose), then the real answer.
    Mock::given(method("POST"))
        .and(path("/api/shorten"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/shorten"))
        .and(header("authorization", format!("Bearer {KEY}").as_str()))
        .and(body_json(json!({
            "domain_id": "dom-1", "long_url": dest, "custom_slug": "vip-123",
            "redirect_status_code": 302
        })))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "url_id": "u-1", "short_url": "https://go.acme.example/vip-123", "short_code": "vip-123"
        })))
        .expect(1)
        .mount(&server)
        .await;
    let r = run(
        args(
            &server,
            &[
                "--verbose",
                "https://shop.example/loyalty?member=a%20b#perks",
                "--domain",
                "go.acme.example",
                "--slug",
                "vip-123",
                "--utm-source",
                "news",
                "--utm-medium",
                "email",
            ],
        ),
        Some(KEY),
    )
    .await;
    assert_eq!(r.code, 0, "stderr: {}", r.stderr);
    let v: Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert_eq!(
        v,
        json!({"url_id": "u-1", "short_url": "https://go.acme.example/vip-123",
               "short_code": "vip-123", "destination": dest, "status": "created"})
    );
    assert!(
        r.stderr.contains("retrying POST /api/shorten"),
        "{}",
        r.stderr
    );
    no_key_anywhere(&r);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taken_slug_is_looked_up_same_destination_exists_other_is_drift() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/shorten"))
        .respond_with(
            ResponseTemplate::new(409)
                .set_body_json(json!({"error": {"code": "SLUG_TAKEN", "message": "in use"}})),
        )
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v1/links/find"))
        .and(query_param("domain_id", DOMAIN_ID))
        .and(query_param("short_code", "vip-1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"link": {
            "id": "u-7", "short_url": "https://go.acme.example/vip-1", "short_code": "vip-1",
            "long_url": "https://shop.example/a"
        }})))
        .expect(2)
        .mount(&server)
        .await;
    let same = run(
        args(
            &server,
            &[
                "https://shop.example/a",
                "--domain-id",
                DOMAIN_ID,
                "--slug",
                "vip-1",
            ],
        ),
        Some(KEY),
    )
    .await;
    assert_eq!(same.code, 0, "{}", same.stderr);
    let v: Value = serde_json::from_str(same.stdout.trim()).unwrap();
    assert_eq!(v["status"], "exists");
    assert_eq!(v["url_id"], "u-7");

    let other = run(
        args(
            &server,
            &[
                "https://shop.example/b",
                "--domain-id",
                DOMAIN_ID,
                "--slug",
                "vip-1",
            ],
        ),
        Some(KEY),
    )
    .await;
    assert_eq!(other.code, 1, "{}", other.stderr);
    let v: Value = serde_json::from_str(other.stdout.trim()).unwrap();
    assert_eq!(v["status"], "drift");
    assert_eq!(v["existing_destination"], "https://shop.example/a");
    assert!(other.stderr.contains("left unchanged"), "{}", other.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthorized_exits_3_with_one_message_and_no_key() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v1/domains"))
        .respond_with(ResponseTemplate::new(401).set_body_json(
            json!({"code": "invalid_api_key", "message": "unknown key", "support_reference": "sr-1"}),
        ))
        .expect(1)
        .mount(&server)
        .await;
    let r = run(
        args(
            &server,
            &["https://shop.example/", "--domain", "go.acme.example"],
        ),
        Some(KEY),
    )
    .await;
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stdout.is_empty());
    assert_eq!(r.stderr.matches("error:").count(), 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("unknown key") && r.stderr.contains("sr-1"),
        "{}",
        r.stderr
    );
    no_key_anywhere(&r);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_link_exits_1_with_servers_words() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/shorten"))
        .respond_with(ResponseTemplate::new(422).set_body_json(
            json!({"code": "slug_reserved", "message": "reserved word", "support_reference": "sr-2"}),
        ))
        .expect(1)
        .mount(&server)
        .await;
    let r = run(
        args(
            &server,
            &[
                "https://shop.example/",
                "--domain-id",
                DOMAIN_ID,
                "--slug",
                "promo-blocked",
            ],
        ),
        Some(KEY),
    )
    .await;
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stdout.is_empty());
    for part in [
        "slug_reserved",
        "reserved word",
        "sr-2",
        "choose another slug",
    ] {
        assert!(r.stderr.contains(part), "missing {part}: {}", r.stderr);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_file_works_and_bad_settings_are_usage_errors() {
    let server = MockServer::start().await;
    domains(&server).await;
    Mock::given(method("POST"))
        .and(path("/api/shorten"))
        .and(header("authorization", format!("Bearer {KEY}").as_str()))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "url_id": "u-2", "short_url": "https://rix.to/Ab3", "short_code": "Ab3"
        })))
        .expect(1)
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("key");
    std::fs::write(&key_file, format!("{KEY}\n")).unwrap();
    let key_arg = key_file.display().to_string();
    let ok = run(
        args(
            &server,
            &[
                "https://shop.example/",
                "--domain",
                "rix.to",
                "--api-key-file",
                &key_arg,
            ],
        ),
        None,
    )
    .await;
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    no_key_anywhere(&ok);

    // A key file that is not there is a usage mistake (exit 2) naming the path.
    let missing_file = dir.path().join("missing-key");
    let missing_arg = missing_file.display().to_string();
    let missing = run(
        args(
            &server,
            &[
                "https://shop.example/",
                "--domain",
                "rix.to",
                "--api-key-file",
                &missing_arg,
            ],
        ),
        Some(KEY),
    )
    .await;
    assert_eq!(missing.code, 2, "{}", missing.stderr);
    assert!(missing.stderr.contains(&missing_arg), "{}", missing.stderr);
    assert!(missing.stdout.is_empty());

    let no_key = run(
        args(
            &server,
            &["https://shop.example/", "--domain-id", DOMAIN_ID],
        ),
        None,
    )
    .await;
    assert_eq!(no_key.code, 2);
    assert!(
        no_key.stderr.contains("NIMRIZ_API_KEY"),
        "{}",
        no_key.stderr
    );

    let plain_http = run(
        vec![
            "shorten".into(),
            "https://shop.example/".into(),
            "--domain-id".into(),
            DOMAIN_ID.into(),
            "--api-base".into(),
            "http://api.nimriz.com".into(),
        ],
        Some(KEY),
    )
    .await;
    assert_eq!(plain_http.code, 2);
    assert!(
        plain_http.stderr.contains("unencrypted"),
        "{}",
        plain_http.stderr
    );

    let which_domain = run(args(&server, &["https://shop.example/"]), Some(KEY)).await;
    assert_eq!(which_domain.code, 2);
    assert!(
        which_domain.stderr.contains("go.acme.example, rix.to"),
        "{}",
        which_domain.stderr
    );
}

/// Every mistake `build` would catch offline is caught by `shorten` too: exit 2, a message
/// naming the fix, and not a single request (the server fails the test on any).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_mistakes_exit_2_before_any_request() {
    let server = MockServer::start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&server)
        .await;
    let id = ["--domain-id", DOMAIN_ID];
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (
            vec!["http://shop.example/", id[0], id[1]],
            vec!["plain http://", "--allow-http"],
        ),
        (
            vec!["https://go.acme.example/x", "--domain", "go.acme.example"],
            vec!["redirect loop", "go.acme.example"],
        ),
        (
            vec!["https://riz.to/abc", id[0], id[1]],
            vec!["redirect loop", "riz.to"],
        ),
        (
            vec!["https://shop.example/", "--domain-id", "dom-1"],
            vec!["--domain-id \"dom-1\" is not a UUID", "--domain HOST"],
        ),
        (
            vec![
                "https://shop.example/",
                id[0],
                id[1],
                "--expires-at",
                "2020-01-01T00:00:00Z",
            ],
            vec!["in the past"],
        ),
        (
            vec![
                "https://shop.example/",
                id[0],
                id[1],
                "--expires-at",
                "next week",
            ],
            vec!["not an RFC 3339 date-time", "2026-06-30T23:59:59Z"],
        ),
        (
            vec![
                "https://shop.example/",
                id[0],
                id[1],
                "--utm-source",
                "News",
            ],
            vec!["utm_source `News` is not lowercase", "use `news`"],
        ),
        (
            vec![
                "https://shop.example/",
                id[0],
                id[1],
                "--utm-campaign",
                "spring sale",
            ],
            vec!["contains a space", "spring-sale"],
        ),
        (
            vec![
                "https://shop.example/?utm_source=news",
                id[0],
                id[1],
                "--utm-source",
                "mail",
            ],
            vec!["already has utm_source=news", "leave out --utm-source"],
        ),
        // Nothing silently rewritten (issue 12).
        (
            vec!["https://user:pass@shop.example/", id[0], id[1]],
            vec!["carries a user name or password"],
        ),
        (vec!["https:///landing", id[0], id[1]], vec!["has no host"]),
        (
            vec!["https://shop.example/p\nX-Injected: 1", id[0], id[1]],
            vec!["contains a control character (U+000A)"],
        ),
        (
            vec!["https://RIZ.TO./abc", id[0], id[1]],
            vec!["redirect loop"],
        ),
        (
            vec![
                "https://shop.example/",
                id[0],
                id[1],
                "--utm-campaign",
                "Spring\nSale",
            ],
            vec!["utm_campaign `Spring\\nSale` contains a control character (U+000A)"],
        ),
    ];
    for (extra, expected) in cases {
        let r = run(args(&server, &extra), Some(KEY)).await;
        assert_eq!(r.code, 2, "{extra:?}: {}", r.stderr);
        assert!(r.stdout.is_empty(), "{extra:?}: {}", r.stdout);
        for part in expected {
            assert!(
                r.stderr.contains(part),
                "{extra:?}: missing {part}: {}",
                r.stderr
            );
        }
        no_key_anywhere(&r);
    }
}

/// The workspace's only domain, picked for the user, is checked for a loop too: one
/// domain listing, no create.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loop_to_the_only_domain_is_refused_before_the_create() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v1/domains"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"domains": [{"id": DOMAIN_ID, "domain_name": "go.acme.example"}]}),
        ))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&server)
        .await;
    let r = run(
        args(&server, &["https://GO.acme.example/spring"]),
        Some(KEY),
    )
    .await;
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("redirect loop"), "{}", r.stderr);
}

/// `--allow-http` lets a plain http destination through; a `utm_*` the destination already
/// has with the same value is no conflict; the expiry is sent in UTC.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_http_same_utm_value_and_expiry_reach_the_api() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/shorten"))
        .and(body_json(json!({
            "domain_id": DOMAIN_ID,
            "long_url": "http://shop.example/?utm_source=news&utm_medium=email",
            "expires_at": "2099-06-30T21:59:59Z",
            "redirect_status_code": 302
        })))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "url_id": "u-9", "short_url": "https://go.acme.example/Xy1", "short_code": "Xy1"
        })))
        .expect(1)
        .mount(&server)
        .await;
    let r = run(
        args(
            &server,
            &[
                "http://shop.example/?utm_source=news",
                "--allow-http",
                "--domain-id",
                DOMAIN_ID,
                "--utm-source",
                "news",
                "--utm-medium",
                "email",
                "--expires-at",
                "2099-06-30T23:59:59+02:00",
            ],
        ),
        Some(KEY),
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert_eq!(v["status"], "created");
}

/// A refusal that names no slug problem gets advice for this command, not for `build`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_destination_advice_speaks_of_shorten_not_the_build() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/shorten"))
        .respond_with(
            ResponseTemplate::new(422).set_body_json(
                json!({"code": "destination_blocked", "message": "blocked by policy"}),
            ),
        )
        .expect(1)
        .mount(&server)
        .await;
    let r = run(
        args(
            &server,
            &["https://shop.example/", "--domain-id", DOMAIN_ID],
        ),
        Some(KEY),
    )
    .await;
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stdout.is_empty());
    for part in [
        "destination_blocked",
        "blocked by policy",
        "run shorten again",
    ] {
        assert!(r.stderr.contains(part), "missing {part}: {}", r.stderr);
    }
    for wrong in ["spec", "re-run the build", "links already done"] {
        assert!(!r.stderr.contains(wrong), "says {wrong}: {}", r.stderr);
    }
}
