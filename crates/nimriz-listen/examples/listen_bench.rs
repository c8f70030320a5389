//! Acknowledgement throughput and latency of `listen` on loopback, with the durable queue
//! (SQLite WAL, synchronous=FULL) on a temp folder. Not a test: run it by hand, e.g.
//!
//! ```sh
//! cargo run --release --example listen_bench -- [EVENTS] [CONCURRENCY] [WRITE_BATCH]
//! cargo run --release --example listen_bench -- 20000 64 256   # group commit (default)
//! cargo run --release --example listen_bench -- 5000 64 1      # one commit per request
//! ```
//!
//! Every request is a distinct, correctly signed lifecycle webhook; no rules, so the worker
//! only routes. Latency = client send → 200 received. Set `BENCH_DIR` to put the store on a
//! particular disk (fsync cost differs a lot between tmpfs, SSD and network disks).

use nimriz_listen::{Listener, config};
use nimriz_matrix_core::report::{SharedReporter, Silent};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const SECRET: &str = "whsec_bench";

fn arg(n: usize, default: usize) -> usize {
    std::env::args()
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let events = arg(1, 20_000);
    let concurrency = arg(2, 64).max(1);
    let write_batch = arg(3, 256).max(1);
    let base = std::env::var_os("BENCH_DIR").map(std::path::PathBuf::from);
    let dir = match &base {
        Some(b) => tempfile::tempdir_in(b),
        None => tempfile::tempdir(),
    }
    .expect("temp dir");
    let text = format!(
        "bind = \"127.0.0.1:0\"\nstorage = \"{}\"\n[webhook]\nsecret_env = \"BENCH_SECRET\"\n",
        dir.path().join("bench.db").display()
    );
    let env = HashMap::from([("BENCH_SECRET".to_string(), SECRET.to_string())]);
    let cfg = config::parse("bench.toml", text, dir.path(), &env).expect("config");
    let running = Listener::start(
        cfg,
        write_batch,
        std::sync::Arc::new(Silent) as SharedReporter,
    )
    .await
    .expect("listener");
    let url = format!("{}/nimriz/webhook", running.base_url());
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .expect("client");

    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (client, url, next) = (client.clone(), url.clone(), next.clone());
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            let mut failures = 0usize;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= events {
                    return (latencies, failures);
                }
                let body = format!(
                    r#"{{"id":"evt_bench_{i}","type":"link.updated","data":{{"link_id":"l{i}"}}}}"#
                );
                let ts = chrono::Utc::now().timestamp().to_string();
                let sig = nimriz::webhook::sign(SECRET.as_bytes(), &ts, body.as_bytes());
                let t0 = Instant::now();
                let ok = client
                    .post(&url)
                    .header("X-Nim-Timestamp", &ts)
                    .header("X-Nim-Signature", sig)
                    .body(body)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().as_u16() == 200);
                if ok {
                    latencies.push(t0.elapsed());
                } else {
                    failures += 1;
                }
            }
        });
    }
    let mut latencies: Vec<Duration> = Vec::with_capacity(events);
    let mut failures = 0;
    while let Some(r) = tasks.join_next().await {
        let (l, f) = r.expect("sender task");
        latencies.extend(l);
        failures += f;
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    let stats = &running.writer_stats;
    let commits = stats.commits.load(Ordering::Relaxed).max(1);
    println!(
        "events={events} concurrency={concurrency} write_batch={write_batch} failures={failures}"
    );
    println!(
        "acks/s={:.0} p50={:.2}ms p99={:.2}ms max={:.2}ms",
        latencies.len() as f64 / elapsed.as_secs_f64(),
        pct(0.50),
        pct(0.99),
        latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    );
    println!(
        "commits={commits} events/commit={:.1} largest batch={}",
        stats.events.load(Ordering::Relaxed) as f64 / commits as f64,
        stats.largest_batch.load(Ordering::Relaxed)
    );
    running.shutdown().await;
}
