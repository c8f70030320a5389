//! The local loop: the sandbox sends signed lifecycle webhooks for its link changes and click
//! events for `POST /__sandbox/click`; `listen` receives them and messages a stand-in Slack.
//! Also: the sandbox's sender retries until the receiver answers 2xx, keeping the event id.

use test_support::listen as listen_support;

use listen_support::*;
use nimriz_listen::{Secret, store};
use nimriz_sandbox::{EventsConfig, Sandbox, SandboxConfig, config::DEFAULT_BRANDED_ID};
use serde_json::json;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_link_change_and_click_reach_slack() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stand_in = StandIn::start().await;
    let rules = r#"
[[rules]]
name = "created"
events = ["link.created"]
[[rules.actions]]
type = "http"
url_env = "CRM_URL"

[[rules]]
name = "warm"
touch = ["click"]
[rules.where]
utm_campaign = "spring"
[[rules.actions]]
type = "slack"
url_env = "SLACK_URL"
text = "{short_url} clicked from {country} ({utm_campaign})"
"#;
    let l = start(dir.path(), &stand_in, None, rules).await;
    let sandbox = Sandbox::start(SandboxConfig {
        events: EventsConfig {
            webhook_url: Some(format!("{}/nimriz/webhook", l.base_url())),
            webhook_secret: Some(Secret::new(WEBHOOK_SECRET)),
            click_url: Some(format!("{}/nimriz/click", l.base_url())),
            click_secret: Some(Secret::new(CLICK_SECRET)),
            retry_base: Duration::from_millis(10),
            ..EventsConfig::default()
        },
        ..SandboxConfig::default()
    })
    .await
    .expect("sandbox");
    let c = reqwest::Client::new();
    let created: serde_json::Value = c
        .post(format!("{}/api/shorten", sandbox.base_url()))
        .bearer_auth(&sandbox.config().key)
        .json(
            &json!({"domain_id": DEFAULT_BRANDED_ID.to_string(), "custom_slug": "spring-demo",
                      "long_url": "https://acme.example/demo?utm_campaign=spring"}),
        )
        .send()
        .await
        .expect("shorten")
        .json()
        .await
        .expect("json");
    let short_url = created["short_url"]
        .as_str()
        .expect("short_url")
        .to_string();

    wait_until(LIMIT, "the link.created webhook at the CRM", || {
        !stand_in.accepted("crm").is_empty()
    })
    .await;
    let crm = &stand_in.accepted("crm")[0];
    assert_eq!(crm.body["event_type"], "link.created");
    assert_eq!(
        crm.body["event"]["data"]["after"]["short_url"],
        short_url.as_str()
    );

    let resp = c
        .post(format!("{}/__sandbox/click", sandbox.base_url()))
        .json(&json!({"short_url": short_url, "country": "FR"}))
        .send()
        .await
        .expect("click");
    assert_eq!(resp.status().as_u16(), 202);
    wait_until(LIMIT, "the Slack message", || {
        !stand_in.accepted("slack").is_empty()
    })
    .await;
    assert_eq!(
        stand_in.accepted("slack")[0].body["text"],
        format!("{short_url} clicked from FR (spring)")
    );
    // A QR scan does not match the click-only rule.
    let resp = c
        .post(format!("{}/__sandbox/click", sandbox.base_url()))
        .json(&json!({"short_url": format!("{short_url}?nr=qr")}))
        .send()
        .await
        .expect("scan");
    assert_eq!(resp.status().as_u16(), 202);
    let db = dir.path().join("events.db");
    wait_until(LIMIT, "the QR scan stored", || {
        store::log_entries(&db, 0, None).is_ok_and(|log| {
            log.iter()
                .any(|e| e["event_type"] == "link.qr_scanned" && e["outcome"] == "no_match")
        })
    })
    .await;
    assert_eq!(stand_in.accepted("slack").len(), 1);
    sandbox.shutdown().await;
    l.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_sender_retries_with_the_same_event_id() {
    let receiver = StandIn::start().await;
    receiver.script(&[(503, None), (500, None)]);
    let sandbox = Sandbox::start(SandboxConfig {
        events: EventsConfig {
            click_url: Some(receiver.url("click")),
            click_secret: Some(Secret::new(CLICK_SECRET)),
            retry_base: Duration::from_millis(10),
            ..EventsConfig::default()
        },
        ..SandboxConfig::default()
    })
    .await
    .expect("sandbox");
    let c = reqwest::Client::new();
    let created: serde_json::Value = c
        .post(format!("{}/api/shorten", sandbox.base_url()))
        .bearer_auth(&sandbox.config().key)
        .json(&json!({"domain_id": DEFAULT_BRANDED_ID.to_string(), "long_url": "https://acme.example/x"}))
        .send()
        .await
        .expect("shorten")
        .json()
        .await
        .expect("json");
    let resp = c
        .post(format!("{}/__sandbox/click", sandbox.base_url()))
        .json(&json!({"url_id": created["url_id"]}))
        .send()
        .await
        .expect("click");
    assert_eq!(resp.status().as_u16(), 202);
    wait_until(LIMIT, "the click delivered", || {
        !receiver.accepted("click").is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let all = receiver.received();
    assert_eq!(
        all.len(),
        3,
        "two failures, then one success, then nothing more"
    );
    assert!(all.iter().all(|r| r.body["id"] == all[0].body["id"]));
    // Unknown link, and no click destination configured: clear refusals.
    let resp = c
        .post(format!("{}/__sandbox/click", sandbox.base_url()))
        .json(&json!({"short_url": "https://links.sandbox.test/nope"}))
        .send()
        .await
        .expect("click");
    assert_eq!(resp.status().as_u16(), 404);
    sandbox.shutdown().await;
}
