//! `listen` as a fleet on PostgreSQL, with the real binary and a real (throwaway) database:
//! two and three receivers under concurrent senders with repeated `kill -9` of one of them,
//! and a database restart mid-load. Without PostgreSQL these say they were skipped (and fail
//! under CI). Also the config's rules for the database URL, which need no database.

use test_support::listen as listen_support;
use test_support::pg::PgCluster;

use crate::listen_crash::{Running, spawn_listen};
use listen_support::*;
use nimriz_listen::config::DatabaseUrl;
use nimriz_listen::pg;
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashSet};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SENDERS: usize = 8;

fn fleet_config(dir: &std::path::Path) -> std::path::PathBuf {
    let config = dir.join("listen.toml");
    let head = base_config(dir, None)
        .replace(
            &format!("storage = \"{}\"", dir.join("events.db").display()),
            "storage = \"postgres\"\ndatabase_url_env = \"LISTEN_DATABASE_URL\"",
        )
        .replace("lease_seconds = 2", "lease_seconds = 1")
        .replace(
            "request_timeout_seconds = 1",
            "request_timeout_seconds = 0.5",
        );
    assert!(head.contains("storage = \"postgres\""), "{head}");
    std::fs::write(
        &config,
        format!(
            "{head}\n[[rules]]\nname = \"all-clicks\"\n[[rules.actions]]\nname = \"crm\"\ntype = \"http\"\nurl_env = \"CRM_URL\"\nbody = '{{\"event\": \"{{event_id}}\"}}'\n"
        ),
    )
    .expect("write config");
    config
}

/// The receivers' addresses; `None` while one is down.
type Bases = Arc<Mutex<Vec<Option<String>>>>;

/// Senders spreading `todo` over the live receivers until it is empty or `stop`; returns
/// the acknowledged ids. Anything but a 200 puts the id back (the sender retries it later,
/// perhaps on another receiver), as Nimriz does.
async fn send_all(
    bases: Bases,
    todo: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    deadline: Instant,
) -> (Vec<String>, Vec<u16>) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let acked = Arc::new(Mutex::new(Vec::new()));
    let refused = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = tokio::task::JoinSet::new();
    for s in 0..SENDERS {
        let (client, todo, acked, refused, bases, stop) = (
            client.clone(),
            todo.clone(),
            acked.clone(),
            refused.clone(),
            bases.clone(),
            stop.clone(),
        );
        tasks.spawn(async move {
            let mut turn = s;
            while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
                let Some(id) = todo.lock().expect("lock").pop() else {
                    return;
                };
                turn += 1;
                let base = {
                    let b = bases.lock().expect("lock");
                    b[turn % b.len()].clone()
                };
                let Some(base) = base else {
                    todo.lock().expect("lock").push(id);
                    continue;
                };
                let body =
                    json!({"event_id": id, "touch_type": "short_link_click", "country": "DE"});
                let status = client
                    .post(format!("{base}/nimriz/click"))
                    .header("X-Nim-Click-Secret", CLICK_SECRET)
                    .json(&body)
                    .send()
                    .await
                    .map(|r| r.status().as_u16());
                match status {
                    Ok(200) => {
                        acked.lock().expect("lock").push(id);
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                    other => {
                        if let Ok(code) = other {
                            refused.lock().expect("lock").push(code);
                        }
                        todo.lock().expect("lock").push(id);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let a = acked.lock().expect("lock").clone();
    let r = refused.lock().expect("lock").clone();
    (a, r)
}

async fn log(url: &str) -> Vec<Value> {
    let mut out = Vec::new();
    if let Ok(db) = pg::Db::open(&DatabaseUrl::new(url), 2, Duration::from_secs(5)).await {
        let _ = pg::for_each_log_entry(&db, 0, None, |e| {
            out.push(e);
            true
        })
        .await;
    }
    out
}

/// Every acknowledged event stored once, processed (delivered), one idempotency key per
/// (event, action) at the stand-in, repeats only from the crash window.
async fn check_exactly_once(url: &str, crm: &StandIn, acked: &[String], kills: usize) {
    let all: BTreeSet<&String> = acked.iter().collect();
    let mut last = Vec::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(90) {
        last = log(url).await;
        if last.len() >= all.len() && last.iter().all(|e| e["outcome"] == "delivered") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let stored: Vec<&str> = last
        .iter()
        .map(|e| e["event_id"].as_str().unwrap_or_default())
        .collect();
    let distinct: HashSet<&str> = stored.iter().copied().collect();
    assert_eq!(distinct.len(), stored.len(), "an event stored twice");
    for id in &all {
        assert!(distinct.contains(id.as_str()), "acknowledged {id} was lost");
    }
    for e in &last {
        assert_eq!(e["outcome"], "delivered", "{e}");
        assert_eq!(e["actions"].as_array().map(Vec::len), Some(1), "{e}");
    }
    let keys_per_event = crm.keys_per_event("crm");
    for e in &last {
        let id = e["event_id"].as_str().unwrap_or_default();
        let keys = keys_per_event
            .get(id)
            .unwrap_or_else(|| panic!("{id} never delivered"));
        assert_eq!(keys.len(), 1, "{id}: {keys:?}");
    }
    let keys: HashSet<_> = keys_per_event.values().flatten().collect();
    assert_eq!(keys.len(), last.len(), "one key per (event, action)");
    let resent = crm.accepted("crm").len() - last.len();
    // Only requests in flight at a kill (or a database restart) repeat: at most the
    // worker's concurrency (8) each.
    assert!(
        resent <= kills * 8,
        "{resent} re-sent after {kills} interruptions"
    );
    eprintln!(
        "{} events acknowledged and delivered; {resent} re-sent after {kills} kills",
        last.len()
    );
}

async fn fleet_under_kill_9(receivers: usize, events: usize, kills: usize, test: &str) {
    let Some(db) = PgCluster::start_or_skip(test) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let crm = StandIn::start().await;
    // Slow enough that deliveries are in flight when a receiver dies.
    crm.set_delay(Duration::from_millis(10));
    let config = fleet_config(dir.path());
    let mut env = env(&crm);
    env.insert("LISTEN_DATABASE_URL".into(), db.url());
    let mut procs: Vec<Option<Running>> = Vec::new();
    let mut bases = Vec::new();
    for _ in 0..receivers {
        let (p, b) = spawn_listen(&config, &env);
        procs.push(Some(p));
        bases.push(Some(b));
    }
    let bases: Bases = Arc::new(Mutex::new(bases));
    let all: Vec<String> = (0..events).map(|i| format!("evt-{i:05}")).collect();
    let todo = Arc::new(Mutex::new(all.iter().rev().cloned().collect::<Vec<_>>()));
    let stop = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + Duration::from_secs(120);
    let sender = tokio::spawn(send_all(
        bases.clone(),
        todo.clone(),
        stop.clone(),
        deadline,
    ));
    for k in 0..kills {
        // Let some load through (bounded), then kill one receiver and start it again.
        let left = |t: &Arc<Mutex<Vec<String>>>| t.lock().expect("lock").len();
        let target = events - (k + 1) * events / (kills + 2);
        let start = Instant::now();
        while left(&todo) > target && start.elapsed() < Duration::from_secs(30) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let victim = k % receivers;
        bases.lock().expect("lock")[victim] = None;
        if let Some(p) = procs[victim].take() {
            p.kill_9();
        }
        let (p, b) = spawn_listen(&config, &env);
        procs[victim] = Some(p);
        bases.lock().expect("lock")[victim] = Some(b);
    }
    let (mut acked, _) = sender.await.expect("sender");
    assert!(
        todo.lock().expect("lock").is_empty(),
        "every event acknowledged in time"
    );
    // Redeliveries of acknowledged events (at-least-once senders) are duplicates.
    todo.lock()
        .expect("lock")
        .extend(acked.iter().take(20).cloned());
    let (again, _) = send_all(bases.clone(), todo.clone(), stop, deadline).await;
    acked.extend(again);
    check_exactly_once(&db.url(), &crm, &acked, kills).await;
    drop(procs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_receivers_on_one_database_survive_kill_9() {
    fleet_under_kill_9(2, 600, 2, "two_receivers_on_one_database_survive_kill_9").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_receivers_on_one_database_survive_repeated_kill_9() {
    fleet_under_kill_9(
        3,
        900,
        4,
        "three_receivers_on_one_database_survive_repeated_kill_9",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_database_restart_mid_load_answers_503_then_both_resume() {
    let test = "a_database_restart_mid_load_answers_503_then_both_resume";
    let Some(mut db) = PgCluster::start_or_skip(test) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let crm = StandIn::start().await;
    let config = fleet_config(dir.path());
    let mut env = env(&crm);
    env.insert("LISTEN_DATABASE_URL".into(), db.url());
    let (p1, b1) = spawn_listen(&config, &env);
    let (p2, b2) = spawn_listen(&config, &env);
    let bases: Bases = Arc::new(Mutex::new(vec![Some(b1.clone()), Some(b2.clone())]));
    let events = 400;
    let todo = Arc::new(Mutex::new(
        (0..events)
            .rev()
            .map(|i| format!("r-{i:04}"))
            .collect::<Vec<_>>(),
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + Duration::from_secs(120);
    let sender = tokio::spawn(send_all(
        bases.clone(),
        todo.clone(),
        stop.clone(),
        deadline,
    ));
    let start = Instant::now();
    while todo.lock().expect("lock").len() > events * 2 / 3
        && start.elapsed() < Duration::from_secs(30)
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    db.stop();
    // While it is down: acknowledgements are refused with 503 + Retry-After, /healthz says why.
    let client = reqwest::Client::new();
    for base in [&b1, &b2] {
        let r = client
            .post(format!("{base}/nimriz/click"))
            .header("X-Nim-Click-Secret", CLICK_SECRET)
            .json(&json!({"event_id": "while-down"}))
            .send()
            .await
            .expect("answered");
        assert_eq!(r.status().as_u16(), 503);
        assert!(r.headers().contains_key("retry-after"));
        let h = client
            .get(format!("{base}/healthz"))
            .send()
            .await
            .expect("answered");
        assert_eq!(h.status().as_u16(), 503);
        let why = h.text().await.unwrap_or_default();
        assert!(why.contains("database"), "{why}");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    db.start_server().expect("restart the database");
    assert!(db.wait_ready(Duration::from_secs(30)), "database back");
    // Both receivers resume without a restart.
    for base in [&b1, &b2] {
        let mut ok = false;
        for _ in 0..100 {
            let h = client.get(format!("{base}/healthz")).send().await;
            if h.is_ok_and(|h| h.status().as_u16() == 200) {
                ok = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(ok, "{base} healthy again");
    }
    let (acked, refused) = sender.await.expect("sender");
    assert!(
        todo.lock().expect("lock").is_empty(),
        "everything acknowledged after the restart"
    );
    assert!(
        refused.iter().all(|c| *c == 503),
        "only 503s while the database was down: {refused:?}"
    );
    // A restart cuts both receivers' deliveries in flight: their `delivered` writes fail and
    // those actions repeat after the lease (the documented window), as after a kill of each.
    check_exactly_once(&db.url(), &crm, &acked, 2).await;
    drop((p1, p2));
}

#[test]
fn a_database_url_in_the_file_or_a_missing_variable_is_exit_2_without_the_password() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("listen.toml");
    let run = |text: &str, url: Option<&str>| {
        std::fs::write(&config, text).expect("write");
        let mut cmd = Command::new(assert_cmd::cargo::cargo_bin!("nimriz-matrix"));
        cmd.args(["listen", "--config"])
            .arg(&config)
            .env("CLICK_SECRET", "s")
            .env_remove("LISTEN_DATABASE_URL");
        if let Some(u) = url {
            cmd.env("LISTEN_DATABASE_URL", u);
        }
        let out = cmd.output().expect("run");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let click = "\n[click]\nsecret_env = \"CLICK_SECRET\"\n";
    let (code, err) = run(
        &format!("storage = \"postgres://listen:hunter2@db/listen\"\n{click}"),
        None,
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("listen.toml:1"), "{err}");
    assert!(err.contains("does not go in the config file"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
    let (code, err) = run(
        &format!("storage = \"postgres\"\ndatabase_url = \"postgres://u:hunter2@db/l\"\n{click}"),
        None,
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("listen.toml:2"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
    let text =
        format!("storage = \"postgres\"\ndatabase_url_env = \"LISTEN_DATABASE_URL\"\n{click}");
    for url in [None, Some("  ")] {
        let (code, err) = run(&text, url);
        assert_eq!(code, Some(2), "{err}");
        assert!(err.contains("listen.toml:2"), "{err}");
        assert!(
            err.contains("LISTEN_DATABASE_URL is not set or empty"),
            "{err}"
        );
    }
    // Unreachable: exit 4, the URL shown without its password.
    let (code, err) = run(
        &text,
        Some("postgres://listen:hunter2@127.0.0.1:9/listen?connect_timeout=2"),
    );
    assert_eq!(code, Some(4), "{err}");
    assert!(err.contains("listen:***@127.0.0.1:9"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pacing_holds_across_two_receivers_on_one_database() {
    let test = "pacing_holds_across_two_receivers_on_one_database";
    let Some(db) = PgCluster::start_or_skip(test) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let slack = StandIn::start().await;
    // 200 ms between posts to the target, for the fleet: each receiver alone would also
    // keep it, so only a shared pace keeps two of them from posting twice as often.
    let rules = "[[rules]]\nname = \"clicks\"\n[[rules.actions]]\nname = \"slack\"\ntype = \"slack\"\n\
                 url_env = \"SLACK_URL\"\nmin_interval_ms = 200\ntext = \"click {event_id}\"\n";
    let mut fleet = Vec::new();
    for _ in 0..2 {
        let url = db.url();
        fleet.push(
            start_custom(dir.path(), &slack, "", rules, move |c| {
                c.database = Some(DatabaseUrl::new(&url));
            })
            .await,
        );
    }
    let (b, a) = (fleet.pop().expect("b"), fleet.pop().expect("a"));
    let client = reqwest::Client::new();
    for i in 0..8 {
        let l = if i % 2 == 0 { &a } else { &b };
        let (status, _) = post_click(
            &client,
            &format!("{}/nimriz/click", l.base_url()),
            &json!({"event_id": format!("p{i}")}),
        )
        .await;
        assert_eq!(status, 200);
    }
    wait_until(Duration::from_secs(30), "8 Slack posts", || {
        slack.accepted("slack").len() >= 8
    })
    .await;
    let posts = slack.accepted("slack");
    assert_eq!(posts.len(), 8);
    for pair in posts.windows(2) {
        let gap = pair[1].at.duration_since(pair[0].at);
        // Receipts drift by scheduling jitter; two unshared paces would allow ~0 ms gaps.
        assert!(
            gap >= Duration::from_millis(120),
            "Slack posts {gap:?} apart"
        );
    }
    a.shutdown().await;
    b.shutdown().await;
}
