//! `listen`'s processing side against a local stand-in for Slack and a CRM: rules with
//! campaign knowledge, one action per event despite duplicates and reordering, targets down
//! for a while, 410 → dead letter → replay.

use test_support::listen as listen_support;

use listen_support::*;
use nimriz_listen::store;
use serde_json::json;
use std::collections::HashSet;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(15);

const RULES: &str = r#"[[rules]]
name = "acme-clicks"
touch = ["click"]
[rules.where]
"cell.brand" = "acme"
utm_campaign = "spring-launch-2026"

[[rules.actions]]
name = "slack"
type = "slack"
url_env = "SLACK_URL"
min_interval_ms = 50
text = "Warm click on {short_url} ({cell.brand}/{cell.channel}) from {country}"

[[rules.actions]]
name = "crm"
type = "http"
url_env = "CRM_URL"
body = '{"event": "{event_id}", "campaign": "{utm_campaign}", "brand": "{cell.brand}"}'
"#;

fn click(id: &str, url_id: &str, touch: &str) -> serde_json::Value {
    json!({"event_id": id, "url_id": url_id, "touch_type": touch, "country": "FR",
           "clicked_at": "2026-11-27T10:00:00Z"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_templates_duplicates_and_reordering() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = dir.path().join("spring.manifest.json");
    write_manifest(&manifest);
    let stand_in = StandIn::start().await;
    // A 200 ms pace: wide enough that the check below has room for scheduling jitter on a
    // loaded machine (the pacer spaces the sends; receipts can drift by a connect or two).
    let rules = RULES.replace("min_interval_ms = 50", "min_interval_ms = 200");
    let l = start(dir.path(), &stand_in, Some(&manifest), &rules).await;
    let url = format!("{}/nimriz/click", l.base_url());
    let c = reqwest::Client::new();

    // Out of order and redelivered; plus events the rule must not match.
    for id in ["c3", "c1", "c2", "c1", "c3", "c3"] {
        assert_eq!(
            post_click(&c, &url, &click(id, ACME_URL_ID, "short_link_click"))
                .await
                .0,
            200
        );
    }
    assert_eq!(
        post_click(&c, &url, &click("z1", ZETA_URL_ID, "short_link_click"))
            .await
            .0,
        200
    );
    assert_eq!(
        post_click(&c, &url, &click("q1", ACME_URL_ID, "qr_scan"))
            .await
            .0,
        200
    );

    wait_until(LIMIT, "3 CRM updates", || {
        stand_in.accepted("crm").len() >= 3
    })
    .await;
    wait_until(LIMIT, "3 Slack messages", || {
        stand_in.accepted("slack").len() >= 3
    })
    .await;
    // Give a wrongly queued extra delivery the chance to show up.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let crm = stand_in.accepted("crm");
    let slack = stand_in.accepted("slack");
    assert_eq!(crm.len(), 3, "{crm:?}");
    assert_eq!(slack.len(), 3, "{slack:?}");
    let events: HashSet<_> = crm
        .iter()
        .map(|r| r.body["event"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(
        events,
        HashSet::from(["c1".into(), "c2".into(), "c3".into()])
    );
    let keys: HashSet<_> = crm
        .iter()
        .map(|r| r.idempotency_key.clone().expect("key"))
        .collect();
    assert_eq!(keys.len(), 3, "one idempotency key per event");
    assert_eq!(crm[0].body["campaign"], "spring-launch-2026");
    assert_eq!(crm[0].body["brand"], "acme");
    assert_eq!(
        slack[0].body["text"],
        "Warm click on https://go.acme.example/acme-email (acme/email) from FR"
    );
    // Slack is paced per webhook (200 ms here). Unpaced, the three would arrive within a
    // few milliseconds of each other; 120 ms leaves 80 ms for receipt-side jitter.
    for pair in slack.windows(2) {
        let gap = pair[1].at.duration_since(pair[0].at);
        assert!(
            gap >= Duration::from_millis(120),
            "Slack posts {gap:?} apart"
        );
    }
    l.shutdown().await;
    let log = store::log_entries(&dir.path().join("events.db"), 0, None).expect("log");
    let outcome = |id: &str| {
        log.iter()
            .find(|e| e["event_id"] == id)
            .map(|e| e["outcome"].as_str().unwrap_or("").to_string())
    };
    assert_eq!(outcome("c1").as_deref(), Some("delivered"));
    assert_eq!(outcome("z1").as_deref(), Some("no_match"));
    assert_eq!(outcome("q1").as_deref(), Some("no_match"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_down_then_rate_limited_delivers_later_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = dir.path().join("spring.manifest.json");
    write_manifest(&manifest);
    let stand_in = StandIn::start().await;
    // Every request fails for a while (503s), then one 429 asks for a 1 s pause.
    stand_in.script(&[(503, None), (503, None), (503, None), (429, Some(1))]);
    let l = start(dir.path(), &stand_in, Some(&manifest), RULES).await;
    let url = format!("{}/nimriz/click", l.base_url());
    let c = reqwest::Client::new();
    let started = Instant::now();
    for id in ["d1", "d2"] {
        assert_eq!(
            post_click(&c, &url, &click(id, ACME_URL_ID, "short_link_click"))
                .await
                .0,
            200
        );
    }
    wait_until(LIMIT, "both events at Slack and CRM", || {
        stand_in.accepted("slack").len() >= 2 && stand_in.accepted("crm").len() >= 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(stand_in.accepted("slack").len(), 2);
    assert_eq!(stand_in.accepted("crm").len(), 2);
    let refused = stand_in
        .received()
        .iter()
        .filter(|r| r.answered != 200)
        .count();
    assert_eq!(refused, 4, "the scripted failures were all seen");
    // The 429's Retry-After held back the target it came from. (A request to it already in
    // flight when the 429 came back may land just after it; nothing new starts for ~1 s.)
    let received = stand_in.received();
    let rate_limited = received.iter().find(|r| r.answered == 429).expect("a 429");
    let later: Vec<Duration> = received
        .iter()
        .filter(|r| r.path == rate_limited.path && r.at > rate_limited.at)
        .map(|r| r.at.duration_since(rate_limited.at))
        .filter(|d| *d > Duration::from_millis(100))
        .collect();
    assert!(!later.is_empty(), "the target was tried again");
    assert!(
        later.iter().all(|d| *d >= Duration::from_millis(950)),
        "{later:?}"
    );
    assert!(started.elapsed() < LIMIT);
    l.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_is_dead_lettered_and_replay_delivers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = dir.path().join("spring.manifest.json");
    write_manifest(&manifest);
    let stand_in = StandIn::start().await;
    stand_in.set_fallback(Some((410, None)));
    let l = start(dir.path(), &stand_in, Some(&manifest), RULES).await;
    let url = format!("{}/nimriz/click", l.base_url());
    let c = reqwest::Client::new();
    assert_eq!(
        post_click(&c, &url, &click("g1", ACME_URL_ID, "short_link_click"))
            .await
            .0,
        200
    );
    let db = dir.path().join("events.db");
    wait_until(LIMIT, "a dead letter", || {
        store::log_entries(&db, 0, Some("g1"))
            .ok()
            .and_then(|e| e.first().cloned())
            .is_some_and(|e| {
                e["outcome"] == "dead_letter"
                    && e["actions"]
                        .as_array()
                        .is_some_and(|a| a.iter().all(|a| a["state"] == "dead"))
            })
    })
    .await;
    // 410 is permanent: one attempt per action, no retries.
    assert_eq!(stand_in.received().len(), 2);
    stand_in.set_fallback(None);
    assert_eq!(
        store::replay(&db, Some("g1"), Some("acme-clicks/slack")).expect("replay"),
        1
    );
    wait_until(LIMIT, "the replayed Slack message", || {
        stand_in.accepted("slack").len() == 1
    })
    .await;
    assert_eq!(store::replay(&db, None, None).expect("replay rest"), 1);
    wait_until(LIMIT, "the replayed CRM update", || {
        stand_in.accepted("crm").len() == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(stand_in.received().len(), 4);
    assert_eq!(store::replay(&db, None, None).expect("nothing left"), 0);
    l.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_rule_by_event_type_domain_and_tag() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = dir.path().join("spring.manifest.json");
    write_manifest(&manifest);
    let stand_in = StandIn::start().await;
    let extra = r#"[[rules]]
name = "created"
events = ["link.created"]
domains = ["go.acme.example"]
tags = ["demo"]
[[rules.actions]]
type = "http"
url_env = "CRM_URL"
"#;
    let l = start(dir.path(), &stand_in, Some(&manifest), extra).await;
    let url = format!("{}/nimriz/webhook", l.base_url());
    let c = reqwest::Client::new();
    let now = now_secs();
    for (id, ty) in [("l1", "link.created"), ("l2", "link.updated")] {
        let body = lifecycle_body(id, ty, ZETA_URL_ID);
        assert_eq!(
            post_webhook(&c, &url, WEBHOOK_SECRET, now, Some(id), &body)
                .await
                .0,
            200
        );
    }
    wait_until(LIMIT, "the CRM update", || {
        !stand_in.accepted("crm").is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let crm = stand_in.accepted("crm");
    assert_eq!(crm.len(), 1);
    // Default body: the event plus what the manifest knows.
    assert_eq!(crm[0].body["event_id"], "l1");
    assert_eq!(crm[0].body["cell"]["brand"], "zeta");
    assert_eq!(
        crm[0].body["short_url"],
        "https://go.acme.example/zeta-social"
    );
    l.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_written_after_start_is_picked_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = dir.path().join("later.manifest.json");
    let stand_in = StandIn::start().await;
    let l = start(dir.path(), &stand_in, Some(&manifest), RULES).await;
    let url = format!("{}/nimriz/click", l.base_url());
    let c = reqwest::Client::new();
    let db = dir.path().join("events.db");
    assert_eq!(
        post_click(&c, &url, &click("before", ACME_URL_ID, "short_link_click"))
            .await
            .0,
        200
    );
    wait_until(LIMIT, "the first event routed", || {
        store::log_entries(&db, 0, Some("before"))
            .is_ok_and(|e| e.first().is_some_and(|e| e["outcome"] == "no_match"))
    })
    .await;
    write_manifest(&manifest);
    assert_eq!(
        post_click(&c, &url, &click("after", ACME_URL_ID, "short_link_click"))
            .await
            .0,
        200
    );
    wait_until(LIMIT, "the CRM update for the second event", || {
        stand_in
            .accepted("crm")
            .iter()
            .any(|r| r.body["event"] == "after")
    })
    .await;
    l.shutdown().await;
}
