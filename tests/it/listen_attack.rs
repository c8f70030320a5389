//! `listen` under attack and failure: slow or idle connections, oversize declarations, a
//! connection flood under a low file-descriptor limit, clicks posing as webhooks, a store
//! deleted, locked or corrupted under the receiver, lost outcome writes. Behaviour only:
//! every loop is bounded, no assertion depends on how fast the machine is.

use test_support::listen as listen_support;

use listen_support::*;
use nimriz_listen::store;
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const LIMIT: Duration = Duration::from_secs(15);

/// Read until the server closes the connection (or `limit` passes); returns what was read
/// and whether it closed.
async fn read_until_closed(s: &mut TcpStream, limit: Duration) -> (String, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return (String::from_utf8_lossy(&out).into_owned(), false),
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&out).into_owned(), true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// Write `chunks` one by one, 100 ms apart, until the server closes the connection;
/// returns whether it did before the chunks ran out.
async fn trickle(s: &mut TcpStream, chunks: usize, chunk: &[u8]) -> (String, bool) {
    let mut buf = [0u8; 4096];
    let mut got = Vec::new();
    for _ in 0..chunks {
        if s.write_all(chunk).await.is_err() {
            return (String::from_utf8_lossy(&got).into_owned(), true);
        }
        match tokio::time::timeout(Duration::from_millis(100), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&got).into_owned(), true),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    (String::from_utf8_lossy(&got).into_owned(), false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_slow_bodies_and_idle_connections_are_closed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stand_in = StandIn::start().await;
    // Each timeout is tested with the others out of the way (30 s).
    let l = start_custom(
        dir.path(),
        &stand_in,
        "header_timeout_seconds = 0.5\nbody_timeout_seconds = 30\nidle_timeout_seconds = 30\n",
        "",
        |_| {},
    )
    .await;
    let addr = l.addr();
    // Slow loris: a header line every 100 ms, never finishing. 300 lines = 30 s.
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(b"POST /nimriz/webhook HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    let (_, closed) = trickle(&mut s, 300, b"X-Slow: 1\r\n").await;
    assert!(closed, "a connection trickling headers was left open");
    // A connection that never sends a byte is closed by the same timeout.
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let (_, closed) = read_until_closed(&mut s, Duration::from_secs(30)).await;
    assert!(closed, "a silent connection was left open");
    l.shutdown().await;

    let l = start_custom(
        dir.path(),
        &stand_in,
        "header_timeout_seconds = 30\nbody_timeout_seconds = 0.5\nidle_timeout_seconds = 30\n",
        "",
        |_| {},
    )
    .await;
    // A body trickled a byte every 100 ms: 408 and closed.
    let mut s = TcpStream::connect(l.addr()).await.expect("connect");
    s.write_all(
        b"POST /nimriz/click HTTP/1.1\r\nHost: x\r\nX-Nim-Click-Secret: click-shared-secret\r\nContent-Length: 1000\r\n\r\n",
    )
    .await
    .expect("write");
    let (answer, closed) = trickle(&mut s, 300, b" ").await;
    let (rest, _) = read_until_closed(&mut s, Duration::from_secs(5)).await;
    let answer = answer + &rest;
    assert!(closed || answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    l.shutdown().await;

    let l = start_custom(
        dir.path(),
        &stand_in,
        "header_timeout_seconds = 30\nbody_timeout_seconds = 30\nidle_timeout_seconds = 0.5\n",
        "",
        |_| {},
    )
    .await;
    // Keep-alive: answered, then closed once idle.
    let mut s = TcpStream::connect(l.addr()).await.expect("connect");
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let (answer, closed) = read_until_closed(&mut s, Duration::from_secs(30)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(closed, "an idle keep-alive connection was left open");
    assert!(l.conn_stats.idle_closed.load(Ordering::Relaxed) >= 1);
    l.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_oversize_body_gets_413_before_it_is_sent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stand_in = StandIn::start().await;
    let l = start(dir.path(), &stand_in, None, "").await;
    for path in ["/nimriz/webhook", "/nimriz/click"] {
        let mut s = TcpStream::connect(l.addr()).await.expect("connect");
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 10000000000\r\n\r\n"
        );
        s.write_all(head.as_bytes()).await.expect("write");
        // Not one byte of the body is sent: the answer must come anyway.
        let (answer, closed) = read_until_closed(&mut s, Duration::from_secs(10)).await;
        assert!(answer.starts_with("HTTP/1.1 413"), "{path}: {answer}");
        assert!(closed, "{path}: the connection is closed after the 413");
    }
    l.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_connection_cap_the_longest_idle_connection_goes_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stand_in = StandIn::start().await;
    let l = start_custom(
        dir.path(),
        &stand_in,
        "max_connections = 3\nheader_timeout_seconds = 30\nidle_timeout_seconds = 30\n",
        "",
        |_| {},
    )
    .await;
    assert_eq!(l.max_connections, 3);
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(TcpStream::connect(l.addr()).await.expect("connect"));
        // Accepted in order, so the first is the longest idle.
        wait_until(LIMIT, "the connection accepted", || {
            l.conn_stats.accepted.load(Ordering::Relaxed) as usize == idle.len()
        })
        .await;
    }
    let c = reqwest::Client::builder()
        .timeout(LIMIT)
        .build()
        .expect("client");
    let body = lifecycle_body("evt_cap", "link.created", ACME_URL_ID);
    let url = format!("{}/nimriz/webhook", l.base_url());
    let (s, _) = post_webhook(&c, &url, WEBHOOK_SECRET, now_secs(), None, &body).await;
    assert_eq!(s, 200);
    let (_, closed) = read_until_closed(&mut idle[0], Duration::from_secs(10)).await;
    assert!(closed, "the oldest idle connection was closed to make room");
    assert!(l.conn_stats.evicted.load(Ordering::Relaxed) >= 1);
    l.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_click_cannot_suppress_a_webhook_and_numeric_ids_are_canonical() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stand_in = StandIn::start().await;
    let l = start(dir.path(), &stand_in, None, "").await;
    let c = reqwest::Client::new();
    let click_url = format!("{}/nimriz/click", l.base_url());
    let url = format!("{}/nimriz/webhook", l.base_url());
    // An unsigned click event carrying the id of a takedown webhook that is still to come.
    let (s, v) = post_click(&c, &click_url, &json!({"id": "evt_takedown"})).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("stored")));
    let body = lifecycle_body("evt_takedown", "link.takedown_updated", ACME_URL_ID);
    let (s, v) = post_webhook(&c, &url, WEBHOOK_SECRET, now_secs(), None, &body).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("stored")), "{v}");
    let (s, v) = post_webhook(&c, &url, WEBHOOK_SECRET, now_secs(), None, &body).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("duplicate")), "{v}");
    // 12345, "12345", 12345.0 and 1.2345e4 are one id; 12345.5 is another.
    let raw = [
        r#"{"id": 12345}"#,
        r#"{"id": "12345"}"#,
        r#"{"id": 12345.0}"#,
        r#"{"id": 1.2345e4}"#,
        r#"{"id": 12345.5}"#,
    ];
    let mut statuses = Vec::new();
    for r in raw {
        let v: serde_json::Value = c
            .post(&click_url)
            .header("X-Nim-Click-Secret", CLICK_SECRET)
            .body(r)
            .send()
            .await
            .expect("send")
            .json()
            .await
            .expect("json");
        statuses.push((v["status"].to_string(), v["event_id"].to_string()));
    }
    let st = |s: &str, id: &str| (format!("\"{s}\""), format!("\"{id}\""));
    assert_eq!(
        statuses,
        [
            st("stored", "12345"),
            st("duplicate", "12345"),
            st("duplicate", "12345"),
            st("duplicate", "12345"),
            st("stored", "12345.5")
        ]
    );
    // A webhook with a numeric id, its header written as the body wrote it: one event.
    let numeric = r#"{"id": 777.0, "type": "link.created", "data": {}}"#;
    let (s, v) = post_webhook(&c, &url, WEBHOOK_SECRET, now_secs(), Some("777.0"), numeric).await;
    assert_eq!((s, v["event_id"].as_str()), (200, Some("777")), "{v}");
    let (s, v) = post_webhook(&c, &url, WEBHOOK_SECRET, now_secs(), Some("778"), numeric).await;
    assert_eq!(s, 400, "a header naming another id: {v}");
    l.shutdown().await;
    let log =
        store::log_entries(&dir.path().join("events.db"), 0, Some("evt_takedown")).expect("log");
    let sources: Vec<&str> = log.iter().filter_map(|e| e["source"].as_str()).collect();
    assert_eq!(sources, ["click", "webhook"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_store_stops_acknowledging_and_fails_healthz() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stand_in = StandIn::start().await;
    let l = start(dir.path(), &stand_in, None, "").await;
    let c = reqwest::Client::new();
    let url = format!("{}/nimriz/webhook", l.base_url());
    let health = format!("{}/healthz", l.base_url());
    assert_eq!(
        c.get(&health)
            .send()
            .await
            .expect("healthz")
            .status()
            .as_u16(),
        200
    );
    let body = lifecycle_body("evt_before", "link.created", ACME_URL_ID);
    let (s, _) = post_webhook(&c, &url, WEBHOOK_SECRET, now_secs(), None, &body).await;
    assert_eq!(s, 200);
    let db = dir.path().join("events.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    let body = lifecycle_body("evt_after", "link.created", ACME_URL_ID);
    let ts = now_secs().to_string();
    let resp = c
        .post(&url)
        .header("X-Nim-Timestamp", &ts)
        .header(
            "X-Nim-Signature",
            signature(WEBHOOK_SECRET, &ts, body.as_bytes()),
        )
        .body(body.clone())
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status().as_u16(), 503);
    assert_eq!(
        resp.headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    let resp = c.get(&health).send().await.expect("healthz");
    assert_eq!(resp.status().as_u16(), 503);
    let why = resp.text().await.expect("body");
    assert!(why.contains("deleted or replaced"), "{why}");
    assert!(l.health.fatal().is_some());
    l.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_locked_by_another_process_answers_503_with_retry_after() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stand_in = StandIn::start().await;
    let l = start_custom(
        dir.path(),
        &stand_in,
        "ack_timeout_seconds = 0.3\n",
        "",
        |_| {},
    )
    .await;
    let c = reqwest::Client::new();
    let url = format!("{}/nimriz/webhook", l.base_url());
    let other = rusqlite::Connection::open(dir.path().join("events.db")).expect("open");
    other
        .execute_batch("BEGIN IMMEDIATE")
        .expect("take the write lock");
    let ts = now_secs();
    let body = lifecycle_body("evt_locked", "link.created", ACME_URL_ID);
    let ts_s = ts.to_string();
    let resp = c
        .post(&url)
        .header("X-Nim-Timestamp", &ts_s)
        .header(
            "X-Nim-Signature",
            signature(WEBHOOK_SECRET, &ts_s, body.as_bytes()),
        )
        .body(body.clone())
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status().as_u16(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    other.execute_batch("ROLLBACK").expect("release");
    // The sender's retry is acknowledged (stored, or duplicate if the first write landed
    // after its 503).
    let mut ok = false;
    for _ in 0..50 {
        let (s, _) = post_webhook(&c, &url, WEBHOOK_SECRET, now_secs(), None, &body).await;
        if s == 200 {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "acknowledged once the lock is released");
    l.shutdown().await;
}

const CRM_RULE: &str = r#"[[rules]]
name = "all"
[[rules.actions]]
name = "crm"
type = "http"
url_env = "CRM_URL"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_delivered_write_is_retried_before_the_lease_expires() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stand_in = StandIn::start().await;
    // A 30 s lease: within the test's limit, only a retried write can record the delivery.
    let l = start_custom(dir.path(), &stand_in, "", CRM_RULE, |cfg| {
        cfg.worker.lease = Duration::from_secs(30);
    })
    .await;
    let db = dir.path().join("events.db");
    let other = rusqlite::Connection::open(&db).expect("open");
    other
        .execute_batch(
            "CREATE TRIGGER lose_delivered BEFORE UPDATE OF state ON jobs
             WHEN NEW.state = 'delivered' BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END;",
        )
        .expect("trigger");
    let c = reqwest::Client::new();
    let click_url = format!("{}/nimriz/click", l.base_url());
    assert_eq!(
        post_click(&c, &click_url, &json!({"id": "clk_w"})).await.0,
        200
    );
    wait_until(LIMIT, "the CRM request", || !stand_in.received().is_empty()).await;
    // Let the first write of `delivered` fail, then let writes through again.
    tokio::time::sleep(Duration::from_millis(300)).await;
    other
        .execute_batch("DROP TRIGGER lose_delivered")
        .expect("drop trigger");
    wait_until(LIMIT, "the delivery recorded", || {
        store::log_entries(&db, 0, Some("clk_w"))
            .is_ok_and(|e| e.first().is_some_and(|e| e["outcome"] == "delivered"))
    })
    .await;
    assert_eq!(stand_in.received().len(), 1, "sent once");
    l.shutdown().await;
}

/// Kills the child even when an assertion fails first.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn write_config(dir: &std::path::Path, head: &str) -> std::path::PathBuf {
    let config = dir.join("listen.toml");
    std::fs::write(
        &config,
        format!("{head}\n{}\n{CRM_RULE}", base_config(dir, None)),
    )
    .expect("write config");
    config
}

fn listen_cmd(
    config: &std::path::Path,
    env: &std::collections::HashMap<String, String>,
) -> Command {
    let mut cmd = test_support::command();
    cmd.args(["listen", "--config"])
        .arg(config)
        .envs(env)
        .env("NO_COLOR", "1");
    cmd
}

#[test]
fn a_corrupt_store_stops_the_start_with_exit_4() {
    let dir = tempfile::tempdir().expect("tempdir");
    let env = env_without_stand_in();
    let config = write_config(dir.path(), "");
    let db = dir.path().join("events.db");
    // Not a database at all.
    std::fs::write(&db, vec![0x5a; 8192]).expect("garbage");
    let out = listen_cmd(&config, &env)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(err.contains("corrupt"), "{err}");
    // A real store whose pages were damaged afterwards.
    std::fs::remove_file(&db).expect("remove");
    {
        let mut conn = store::open(&db).expect("create");
        let tx = conn.transaction().expect("tx");
        for i in 0..500 {
            tx.execute(
                "INSERT INTO events (event_id, source, received_at_ms, headers, body) VALUES (?1, 'click', 1, '{}', ?2)",
                rusqlite::params![format!("click:c{i}"), vec![b'x'; 300]],
            )
            .expect("insert");
        }
        tx.commit().expect("commit");
    }
    let mut bytes = std::fs::read(&db).expect("read");
    assert!(bytes.len() > 16 * 4096, "a multi-page store");
    for b in &mut bytes[4096 * 3..4096 * 6] {
        *b = 0xa5;
    }
    std::fs::write(&db, bytes).expect("damage");
    let out = listen_cmd(&config, &env)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(err.contains("corrupt"), "{err}");
}

fn env_without_stand_in() -> std::collections::HashMap<String, String> {
    std::collections::HashMap::from([
        ("WH_SECRET".into(), WEBHOOK_SECRET.into()),
        ("WH_SECRET_NEXT".into(), ROTATED_SECRET.into()),
        ("CLICK_SECRET".into(), CLICK_SECRET.into()),
        ("CRM_URL".into(), "http://127.0.0.1:9/crm".into()),
    ])
}

#[test]
fn replay_of_an_unknown_action_exits_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("events.db");
    drop(store::open(&db).expect("create"));
    let out = assert_cmd::Command::from_std(test_support::command())
        .args(["listen", "replay", "--action", "nope/typo", "--db"])
        .arg(&db)
        .timeout(Duration::from_secs(30))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nope/typo"), "{err}");
    // With --config, the configured actions are known too: one without a delivery yet
    // re-queues nothing (exit 0); a typo is refused naming them.
    let config = write_config(dir.path(), "");
    let replay = |action: &str| {
        assert_cmd::Command::from_std(test_support::command())
            .args(["listen", "replay", "--action", action, "--config"])
            .arg(&config)
            .timeout(Duration::from_secs(30))
            .output()
            .expect("run")
    };
    let out = replay("all/crm");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("re-queued 0"), "{err}");
    let out = replay("all/crn");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("known actions: all/crm"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_idle_connections_under_a_256_fd_limit_do_not_starve_webhooks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let crm = StandIn::start().await;
    // No timeout helps here (30 s): only the cap and the eviction of idle connections do.
    let config = write_config(
        dir.path(),
        "header_timeout_seconds = 30\nidle_timeout_seconds = 30\n",
    );
    let bin = assert_cmd::cargo::cargo_bin!("nimriz-matrix");
    let mut child = Command::new("sh")
        .arg("-c")
        .arg("ulimit -n 256 && exec \"$0\" listen --config \"$1\"")
        .arg(bin)
        .arg(&config)
        .envs(env(&crm))
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    let child = Running(child);
    let (tx, rx) = std::sync::mpsc::channel();
    let tx2 = tx.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx2.send(line);
        }
    });
    let mut base = None;
    let mut cap_line = None;
    while base.is_none() || cap_line.is_none() {
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("listen started");
        if let Some(b) = line.strip_prefix("nimriz listen on ") {
            base = Some(b.to_string());
        }
        if line.contains("connection(s) at once") {
            cap_line = Some(line);
        }
    }
    let base = base.expect("address");
    let cap_line = cap_line.expect("cap reported");
    assert!(cap_line.contains("file-descriptor limit 256"), "{cap_line}");
    let addr: std::net::SocketAddr = base.trim_start_matches("http://").parse().expect("address");
    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(TcpStream::connect(addr).await.expect("connect"));
    }
    let c = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    let url = format!("{base}/nimriz/webhook");
    for i in 0..4 {
        let id = format!("evt_fd_{i}");
        let body = lifecycle_body(&id, "link.created", ACME_URL_ID);
        let (s, v) = post_webhook(&c, &url, WEBHOOK_SECRET, now_secs(), None, &body).await;
        assert_eq!(s, 200, "{id}: {v}");
    }
    drop(idle);
    drop(child);
}

/// Start the `listen` binary on `config`; returns it, its base URL and every later line of
/// its stdout and stderr.
fn spawn_listen(
    config: &std::path::Path,
    env: &std::collections::HashMap<String, String>,
) -> (Running, String, std::sync::mpsc::Receiver<String>) {
    let mut child = listen_cmd(config, env)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    let child = Running(child);
    let (tx, rx) = std::sync::mpsc::channel();
    let tx2 = tx.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx2.send(line);
        }
    });
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("listen started");
        if let Some(b) = line.strip_prefix("nimriz listen on ") {
            return (child, b.to_string(), rx);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_store_stops_acknowledging_and_says_so_on_stderr() {
    let dir = tempfile::tempdir().expect("tempdir");
    let crm = StandIn::start().await;
    let config = write_config(dir.path(), "");
    let (child, base, lines) = spawn_listen(&config, &env(&crm));
    let c = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let url = format!("{base}/nimriz/webhook");
    let body = lifecycle_body("evt_kept", "link.created", ACME_URL_ID);
    let (s, v) = post_webhook(&c, &url, WEBHOOK_SECRET, now_secs(), None, &body).await;
    assert_eq!(s, 200, "{v}");
    // Someone restores "a backup" over the live store: a valid store, another file.
    let db = dir.path().join("events.db");
    let other = dir.path().join("restored.db");
    drop(store::open(&other).expect("another store"));
    std::fs::rename(&other, &db).expect("replace");
    let body = lifecycle_body("evt_lost", "link.created", ACME_URL_ID);
    let ts = now_secs().to_string();
    let resp = c
        .post(&url)
        .header("X-Nim-Timestamp", &ts)
        .header(
            "X-Nim-Signature",
            signature(WEBHOOK_SECRET, &ts, body.as_bytes()),
        )
        .body(body)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status().as_u16(), 503, "not acknowledged");
    assert!(resp.headers().contains_key("retry-after"));
    let resp = c
        .get(format!("{base}/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(resp.status().as_u16(), 503);
    let why = resp.text().await.expect("body");
    assert!(why.contains("deleted or replaced"), "{why}");
    // Said once on stderr, naming the store and what to do.
    let mut said = None;
    while said.is_none() {
        let line = lines
            .recv_timeout(Duration::from_secs(10))
            .expect("the error on stderr");
        if line.starts_with("error: ") {
            said = Some(line);
        }
    }
    let said = said.expect("line");
    assert!(
        said.contains("events.db") && said.contains("replaced") && said.contains("restart"),
        "{said}"
    );
    drop(child);
}
