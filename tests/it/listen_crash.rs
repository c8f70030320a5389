//! `kill -9` of the real `listen` binary under load, then a restart: every acknowledged event
//! is processed, exactly once as the CRM sees it (one idempotency key per event), and nothing
//! acknowledged is lost.

use test_support::listen as listen_support;

use listen_support::*;
use nimriz_listen::store;
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const EVENTS: usize = 300;
const SENDERS: usize = 6;

/// Kills the child even when an assertion fails first.
pub(crate) struct Running(Child);

impl Running {
    pub(crate) fn kill_9(mut self) {
        self.0.kill().expect("kill -9"); // SIGKILL on Unix
        let _ = self.0.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start `listen --config CONFIG` with `env`; its first stdout line gives the address.
pub(crate) fn spawn_listen(
    config: &std::path::Path,
    env: &HashMap<String, String>,
) -> (Running, String) {
    let mut child = Command::new(assert_cmd::cargo::cargo_bin!("nimriz-matrix"))
        .args(["--quiet", "listen", "--config"])
        .arg(config)
        .envs(env)
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn listen");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("listen printed its address");
    let base = line
        .trim()
        .strip_prefix("nimriz listen on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    (Running(child), base)
}

/// Send every id in `todo` (shared by `SENDERS` tasks); return the acknowledged ones. Stops a
/// task at its first connection failure (the receiver died), putting that id back.
async fn send_all(base: String, todo: Arc<Mutex<Vec<String>>>) -> Vec<String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let acked = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..SENDERS {
        let (client, todo, acked) = (client.clone(), todo.clone(), acked.clone());
        let url = format!("{base}/nimriz/click");
        tasks.spawn(async move {
            loop {
                let Some(id) = todo.lock().expect("lock").pop() else {
                    return;
                };
                let body =
                    json!({"event_id": id, "touch_type": "short_link_click", "country": "DE"});
                let ok = client
                    .post(&url)
                    .header("X-Nim-Click-Secret", CLICK_SECRET)
                    .json(&body)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().as_u16() == 200);
                if ok {
                    acked.lock().expect("lock").push(id);
                    // Spread the load so the kill lands mid-stream.
                    tokio::time::sleep(Duration::from_millis(3)).await;
                } else {
                    todo.lock().expect("lock").push(id);
                    return;
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    acked.lock().expect("lock").clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_under_load_then_restart_processes_every_acked_event_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let crm = StandIn::start().await;
    // Slow enough that deliveries are in flight when the receiver dies.
    crm.set_delay(Duration::from_millis(15));
    let config = dir.path().join("listen.toml");
    std::fs::write(
        &config,
        format!(
            "{}\n[[rules]]\nname = \"all-clicks\"\n[[rules.actions]]\nname = \"crm\"\ntype = \"http\"\nurl_env = \"CRM_URL\"\nbody = '{{\"event\": \"{{event_id}}\"}}'\n",
            base_config(dir.path(), None)
                .replace("lease_seconds = 2", "lease_seconds = 1")
                .replace("request_timeout_seconds = 1", "request_timeout_seconds = 0.5")
        ),
    )
    .expect("write config");
    let env = env(&crm);
    let all: Vec<String> = (0..EVENTS).map(|i| format!("evt-{i:04}")).collect();
    let todo = Arc::new(Mutex::new(all.iter().rev().cloned().collect::<Vec<_>>()));

    // Phase 1: load, and kill -9 once some events are acknowledged and some delivered.
    let (first, base) = spawn_listen(&config, &env);
    let sender = tokio::spawn(send_all(base, todo.clone()));
    let start = Instant::now();
    while crm.received().len() < 20 || todo.lock().expect("lock").len() > EVENTS / 2 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "load did not build up"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    first.kill_9();
    let mut acked: Vec<String> = sender.await.expect("sender");
    let acked_before_crash = acked.len();
    assert!(acked_before_crash > 0 && acked_before_crash < EVENTS);

    // Phase 2: restart on the same store; the sender redelivers what was not acknowledged
    // and, as at-least-once senders do, some that were.
    let (_second, base) = spawn_listen(&config, &env);
    todo.lock()
        .expect("lock")
        .extend(acked.iter().take(25).cloned());
    acked.extend(send_all(base, todo.clone()).await);
    assert!(
        todo.lock().expect("lock").is_empty(),
        "every event acknowledged after restart"
    );

    // Done when the store says so: a job in flight at the kill is taken again only once its
    // lease (1 s here) has expired, even if the CRM already saw it.
    let db = dir.path().join("events.db");
    wait_until(Duration::from_secs(20), "every event delivered", || {
        store::log_entries(&db, 0, None)
            .is_ok_and(|log| log.len() == EVENTS && log.iter().all(|e| e["outcome"] == "delivered"))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Exactly once as the CRM sees it: one idempotency key per event, every event present.
    let keys_per_event = crm.keys_per_event("crm");
    for id in &acked {
        let keys = keys_per_event
            .get(id)
            .unwrap_or_else(|| panic!("acked {id} never delivered"));
        assert_eq!(keys.len(), 1, "{id}: {keys:?}");
    }
    let distinct_keys: HashSet<_> = keys_per_event.values().flatten().collect();
    assert_eq!(distinct_keys.len(), EVENTS);
    let resent = crm.accepted("crm").len() - EVENTS;
    // Only jobs in flight at the kill can be resent (at most the worker's concurrency, 8).
    assert!(resent <= 8, "{resent} re-sent deliveries");

    // The store agrees: one delivered job per event, nothing queued or dead.
    let log = store::log_entries(&db, 0, None).expect("log");
    assert_eq!(log.len(), EVENTS);
    for e in &log {
        assert_eq!(e["outcome"], "delivered", "{e}");
        assert_eq!(e["actions"].as_array().map(Vec::len), Some(1), "{e}");
    }
    eprintln!(
        "acked before kill: {acked_before_crash}; re-sent after restart: {resent}; total acks {}",
        acked.len()
    );
}
