//! `listen`'s receiving side: authentication (signature vectors computed here, independently),
//! dedupe, size and shape limits, and 503 when the store cannot commit.

use test_support::listen as listen_support;

use listen_support::*;
use nimriz_listen::store;
use serde_json::json;
use std::time::Duration;

#[test]
fn independent_hmac_matches_rfc_4231_case_2() {
    assert_eq!(
        hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}

fn stored_ids(db: &std::path::Path) -> Vec<String> {
    store::log_entries(db, 0, None)
        .expect("log")
        .into_iter()
        .map(|e| e["event_id"].as_str().expect("id").to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signature_vectors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stand_in = StandIn::start().await;
    // The receiver's clock is pinned to the test's "now": a second ticking over between the
    // two under load cannot move the window's edges.
    let now = now_secs();
    let l = start_custom(dir.path(), &stand_in, "", "", |cfg| {
        cfg.clock = nimriz_listen::config::Clock::fixed(now * 1000 + 999);
    })
    .await;
    let url = format!("{}/nimriz/webhook", l.base_url());
    let c = reqwest::Client::new();
    let body = lifecycle_body("evt_ok", "link.created", ACME_URL_ID);

    // Right secret.
    let (s, v) = post_webhook(&c, &url, WEBHOOK_SECRET, now, Some("evt_ok"), &body).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("stored")));
    // Rotated second secret is accepted too.
    let body2 = lifecycle_body("evt_rotated", "link.updated", ACME_URL_ID);
    let (s, _) = post_webhook(&c, &url, ROTATED_SECRET, now, None, &body2).await;
    assert_eq!(s, 200);
    // Wrong secret.
    let body3 = lifecycle_body("evt_wrong", "link.created", ACME_URL_ID);
    let (s, _) = post_webhook(&c, &url, "whsec_wrong", now, None, &body3).await;
    assert_eq!(s, 401);
    // Tampered body: signed one body, sent another.
    let ts = now.to_string();
    let sig = signature(WEBHOOK_SECRET, &ts, body3.as_bytes());
    let tampered = body3.replace("link.created", "link.updated");
    let resp = c
        .post(&url)
        .header("X-Nim-Timestamp", &ts)
        .header("X-Nim-Signature", &sig)
        .body(tampered)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status().as_u16(), 401);
    // Timestamp moved (signature made for another timestamp).
    let resp = c
        .post(&url)
        .header("X-Nim-Timestamp", (now + 1).to_string())
        .header("X-Nim-Signature", &sig)
        .body(body3.clone())
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status().as_u16(), 401);
    // Stale and future timestamps, correctly signed: outside 300 s.
    for ts in [now - 301, now + 301] {
        let (s, v) = post_webhook(&c, &url, WEBHOOK_SECRET, ts, None, &body3).await;
        assert_eq!(s, 401, "{ts}: {v}");
    }
    // Exactly on both edges of the window: inside.
    let body4 = lifecycle_body("evt_edge", "link.created", ACME_URL_ID);
    let (s, _) = post_webhook(&c, &url, WEBHOOK_SECRET, now - 300, None, &body4).await;
    assert_eq!(s, 200);
    let body5 = lifecycle_body("evt_edge_future", "link.created", ACME_URL_ID);
    let (s, _) = post_webhook(&c, &url, WEBHOOK_SECRET, now + 300, None, &body5).await;
    assert_eq!(s, 200);
    // Missing headers, and a signature without `v1=`.
    let sig = signature(WEBHOOK_SECRET, &ts, body3.as_bytes());
    for (ts_h, sig_h) in [
        (None, Some(sig.clone())),
        (Some(ts.clone()), None),
        (None, None),
        (
            Some(ts.clone()),
            Some(sig.trim_start_matches("v1=").to_string()),
        ),
    ] {
        let mut req = c.post(&url).body(body3.clone());
        if let Some(t) = &ts_h {
            req = req.header("X-Nim-Timestamp", t);
        }
        if let Some(s) = &sig_h {
            req = req.header("X-Nim-Signature", s);
        }
        let resp = req.send().await.expect("send");
        assert_eq!(resp.status().as_u16(), 401, "{ts_h:?} {sig_h:?}");
    }
    l.shutdown().await;
    let mut ids = stored_ids(&dir.path().join("events.db"));
    ids.sort();
    assert_eq!(
        ids,
        ["evt_edge", "evt_edge_future", "evt_ok", "evt_rotated"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedupe_id_mismatch_size_and_shape() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stand_in = StandIn::start().await;
    let l = start(dir.path(), &stand_in, None, "").await;
    let url = format!("{}/nimriz/webhook", l.base_url());
    let click_url = format!("{}/nimriz/click", l.base_url());
    let c = reqwest::Client::new();
    let now = now_secs();

    let body = lifecycle_body("evt_1", "link.created", ACME_URL_ID);
    assert_eq!(
        post_webhook(&c, &url, WEBHOOK_SECRET, now, Some("evt_1"), &body)
            .await
            .0,
        200
    );
    // Redelivery (later attempt, new timestamp, same id): 200, duplicate.
    let (s, v) = post_webhook(&c, &url, WEBHOOK_SECRET, now + 5, Some("evt_1"), &body).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("duplicate")));
    // Header disagrees with the signed id.
    let body2 = lifecycle_body("evt_2", "link.created", ACME_URL_ID);
    let (s, v) = post_webhook(&c, &url, WEBHOOK_SECRET, now, Some("evt_other"), &body2).await;
    assert_eq!(s, 400, "{v}");
    // Signed but not JSON / not an object / no id.
    for bad in [
        "{not json",
        "[1,2]",
        r#"{"type":"link.created"}"#,
        r#"{"id":""}"#,
    ] {
        let (s, _) = post_webhook(&c, &url, WEBHOOK_SECRET, now, None, bad).await;
        assert_eq!(s, 400, "{bad}");
    }
    // Oversize (limit 4096 in the test config).
    let big = json!({"id": "evt_big", "type": "link.created", "pad": "x".repeat(5000)}).to_string();
    let (s, _) = post_webhook(&c, &url, WEBHOOK_SECRET, now, None, &big).await;
    assert_eq!(s, 413);

    // Clicks: header secret, id from the payload, else a hash of the body.
    let click = json!({"event_id": "clk_1", "url_id": ACME_URL_ID, "country": "FR"});
    assert_eq!(post_click(&c, &click_url, &click).await.0, 200);
    let (s, v) = post_click(&c, &click_url, &click).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("duplicate")));
    let no_id = json!({"url_id": ACME_URL_ID, "clicked_at": "2026-11-27T10:00:01Z"});
    let (s, v) = post_click(&c, &click_url, &no_id).await;
    assert_eq!(s, 200);
    assert!(
        v["event_id"]
            .as_str()
            .is_some_and(|id| id.starts_with("sha256:")),
        "{v}"
    );
    assert_eq!(
        post_click(&c, &click_url, &no_id).await.1["status"],
        "duplicate"
    );
    let resp = c.post(&click_url).json(&click).send().await.expect("send");
    assert_eq!(resp.status().as_u16(), 401, "no secret header");
    let resp = c
        .post(&click_url)
        .header("X-Nim-Click-Secret", "nope")
        .json(&json!({"event_id": "clk_x"}))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status().as_u16(), 401, "wrong secret");
    let resp = c
        .post(&click_url)
        .header("X-Nim-Click-Secret", format!("Bearer {CLICK_SECRET}"))
        .body("not json")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status().as_u16(), 400);
    let resp = c
        .post(&click_url)
        .header("X-Nim-Click-Secret", CLICK_SECRET)
        .body(format!(
            "{{\"event_id\":\"clk_big\",\"pad\":\"{}\"}}",
            "y".repeat(5000)
        ))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status().as_u16(), 413);

    l.shutdown().await;
    let db = dir.path().join("events.db");
    let ids = stored_ids(&db);
    assert_eq!(ids.len(), 3, "{ids:?}");
    assert!(ids.contains(&"evt_1".to_string()) && ids.contains(&"clk_1".to_string()));
    // The click secret header is never stored with the payload.
    let log = store::log_entries(&db, 0, Some("clk_1")).expect("log");
    assert!(!log[0].to_string().contains(CLICK_SECRET));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_failure_answers_503_then_recovers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stand_in = StandIn::start().await;
    let l = start(dir.path(), &stand_in, None, "").await;
    let url = format!("{}/nimriz/webhook", l.base_url());
    let c = reqwest::Client::new();
    let db = dir.path().join("events.db");
    // Make every insert fail, as a full disk would.
    let conn = rusqlite::Connection::open(&db).expect("open");
    conn.execute_batch(
        "CREATE TRIGGER no_space BEFORE INSERT ON events BEGIN SELECT RAISE(ABORT, 'disk full'); END;",
    )
    .expect("trigger");
    let body = lifecycle_body("evt_503", "link.created", ACME_URL_ID);
    let (s, _) = post_webhook(&c, &url, WEBHOOK_SECRET, now_secs(), None, &body).await;
    assert_eq!(s, 503);
    conn.execute_batch("DROP TRIGGER no_space;")
        .expect("drop trigger");
    let (s, v) = post_webhook(&c, &url, WEBHOOK_SECRET, now_secs(), None, &body).await;
    assert_eq!(
        (s, v["status"].as_str()),
        (200, Some("stored")),
        "the retry is stored, not a duplicate"
    );
    tokio::time::timeout(Duration::from_secs(10), l.shutdown())
        .await
        .expect("shutdown");
}

#[test]
fn bad_config_exits_2_with_location() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("listen.toml");
    std::fs::write(
        &cfg,
        "[webhook]\nsecret_env = \"NMX_TEST_UNSET_SECRET\"\n\n[[rules]]\nname = \"r\"\n[[rules.actions]]\ntype = \"fax\"\n",
    )
    .expect("write");
    let out = assert_cmd::Command::cargo_bin("nimriz-matrix")
        .expect("binary")
        .args(["listen", "--config"])
        .arg(&cfg)
        .env_remove("NMX_TEST_UNSET_SECRET")
        .env("NO_COLOR", "1")
        .timeout(Duration::from_secs(30))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("listen.toml:2:"), "{err}");
    assert!(err.contains("NMX_TEST_UNSET_SECRET"), "{err}");
    assert!(
        err.contains("listen.toml:7:") && err.contains("fax"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_and_replay_commands() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stand_in = StandIn::start().await;
    let l = start(dir.path(), &stand_in, None, "").await;
    let url = format!("{}/nimriz/webhook", l.base_url());
    let c = reqwest::Client::new();
    for id in ["evt_a", "evt_b"] {
        let body = lifecycle_body(id, "link.created", ACME_URL_ID);
        assert_eq!(
            post_webhook(&c, &url, WEBHOOK_SECRET, now_secs(), Some(id), &body)
                .await
                .0,
            200
        );
    }
    let db = dir.path().join("events.db");
    wait_until(Duration::from_secs(10), "both events routed", || {
        store::log_entries(&db, 0, None)
            .is_ok_and(|log| log.len() == 2 && log.iter().all(|e| e["outcome"] == "no_match"))
    })
    .await;
    l.shutdown().await;
    // The config only needs `storage` for log/replay: no secrets in the environment.
    std::fs::write(dir.path().join("listen.toml"), "storage = \"events.db\"\n").expect("write");
    let run = |args: &[&str]| {
        assert_cmd::Command::cargo_bin("nimriz-matrix")
            .expect("binary")
            .current_dir(dir.path())
            .env("NO_COLOR", "1")
            .args(args)
            .timeout(Duration::from_secs(30))
            .output()
            .expect("run")
    };
    let out = run(&["listen", "log", "--since", "1h", "--event-id", "evt_b"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["event_id"], "evt_b");
    assert_eq!(lines[0]["outcome"], "no_match");
    assert_eq!(lines[0]["headers"]["x-nim-event-id"], "evt_b");
    let raw: serde_json::Value =
        serde_json::from_str(lines[0]["raw_body"].as_str().expect("raw body")).expect("raw JSON");
    assert_eq!(raw["id"], "evt_b");
    let out = run(&["listen", "log", "--db", db.to_str().expect("utf-8 path")]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 2);
    let out = run(&["listen", "replay"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("re-queued 0"));
    let out = run(&["listen", "log", "--since", "5x"]);
    assert_eq!(out.status.code(), Some(2));
    let out = run(&["listen", "log", "--db", "missing.db"]);
    assert_ne!(out.status.code(), Some(0));
}
