//! Load benchmark of `listen` (issue 17); not a test. Run: `sh benches/listen_load.sh`
//! (= `cargo bench --bench listen_load`). Env: `REPS` (default 3), `N` (requests per
//! closed-loop run, default 10000), `BENCH_DIR` (where the stores go), `ONLY` (a comma list
//! of `closed`, `open`, `burst`, `drain`: run only those parts; default all), `BURST` (events
//! in the burst, default 120000), `BURST_REPS` (default `REPS`), `PROFILE` (a folder: run
//! `listen` with `NIMRIZ_LISTEN_PROFILE=1` and keep each one's stderr there), `SENDERS`
//! (closed loop: a comma list, default `1,16,64`), `MODES` (closed loop: a comma list of
//! `idle`, `fast`, `slow`, `down`; default all).
//!
//! One load generator (this process) sends pre-signed, distinct lifecycle webhooks over
//! keep-alive connections to:
//! - the **baseline**: a minimal hyper server (this binary, re-run with `--baseline`) that
//!   reads the body and answers 200 without checking or storing anything;
//! - the real `nimriz-matrix listen` binary (release), with no rule (worker idle) or one rule
//!   sending every event to a stand-in CRM that answers at once (fast), after 2 s (slow), or a
//!   closed port (down).
//!
//! Closed loop: N requests from 1/16/64 senders, acks/s and p50/p99 (median of REPS runs).
//! Open loop: 200 req/s for 10 s while ~20k jobs are queued (downstream down / slow), and
//! right after a burst of 120k events from 64 senders (fast downstream, worker draining).
//! Drain: 20k jobs queued behind a closed gate at the stand-in, then the gate opens: jobs/s.

use hyper_util::rt::{TokioExecutor, TokioIo};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const SECRET: &str = "whsec_bench";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--baseline") {
        baseline();
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run());
}

/// Minimal hyper server: read the body, answer 200 `{"status":"stored"}`.
fn baseline() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        println!(
            "listening on http://{}",
            listener.local_addr().expect("addr")
        );
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    |req: hyper::Request<hyper::body::Incoming>| async move {
                        use http_body_util::BodyExt;
                        let _ = req.into_body().collect().await;
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(
                            http_body_util::Full::new(hyper::body::Bytes::from_static(
                                br#"{"status":"stored"}"#,
                            )),
                        ))
                    },
                );
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .http1_only()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start a child that prints `… http://ADDR` on its first stdout line; its stderr goes to
/// `stderr` (else nowhere).
fn spawn(mut cmd: Command, stderr: Option<std::fs::File>) -> (Proc, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(stderr.map_or(Stdio::null(), Stdio::from))
        .spawn()
        .expect("spawn");
    let out = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(out)
        .read_line(&mut line)
        .expect("address line");
    let base = line.trim().rsplit(' ').next().expect("address").to_string();
    (Proc(child), base)
}

#[derive(Clone, Copy, PartialEq)]
enum Downstream {
    None,
    Fast,
    Slow,
    Down,
}

/// Stand-in CRM: counts requests; answers at once, or after 2 s, or holds every request
/// while `gate` is closed.
struct StandIn {
    url: String,
    received: Arc<AtomicU64>,
    gate: Arc<AtomicBool>,
}

async fn stand_in(delay: Duration) -> StandIn {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/crm", listener.local_addr().expect("addr"));
    let received = Arc::new(AtomicU64::new(0));
    let gate = Arc::new(AtomicBool::new(true));
    let (r, g) = (received.clone(), gate.clone());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (r, g) = (r.clone(), g.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let (r, g) = (r.clone(), g.clone());
                        async move {
                            use http_body_util::BodyExt;
                            let _ = req.into_body().collect().await;
                            while !g.load(Ordering::Relaxed) {
                                tokio::time::sleep(Duration::from_millis(5)).await;
                            }
                            if !delay.is_zero() {
                                tokio::time::sleep(delay).await;
                            }
                            r.fetch_add(1, Ordering::Relaxed);
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(
                                http_body_util::Full::new(hyper::body::Bytes::from_static(b"ok")),
                            ))
                        }
                    },
                );
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .http1_only()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    StandIn {
        url,
        received,
        gate,
    }
}

fn start_listen(dir: &std::path::Path, crm_url: Option<&str>, name: &str) -> (Proc, String) {
    let db = dir.join(format!("bench-{}.db", uuid::Uuid::new_v4()));
    let mut text = format!(
        "bind = \"127.0.0.1:0\"\nstorage = \"{}\"\n[webhook]\nsecret_env = \"BENCH_SECRET\"\n\
         [worker]\nbackoff_base_ms = 1000\nbackoff_max_ms = 30000\n",
        db.display()
    );
    if let Some(url) = crm_url {
        text.push_str(&format!(
            "[[rules]]\nname = \"all\"\n[[rules.actions]]\nname = \"crm\"\ntype = \"http\"\nurl = \"{url}\"\n"
        ));
    }
    let cfg = dir.join(format!("bench-{}.toml", uuid::Uuid::new_v4()));
    std::fs::write(&cfg, text).expect("config");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nimriz-matrix"));
    cmd.args(["--quiet", "listen", "--config"])
        .arg(&cfg)
        .env("BENCH_SECRET", SECRET);
    let mut stderr = None;
    if let Some(profile) = std::env::var_os("PROFILE") {
        let path = std::path::Path::new(&profile).join(format!(
            "{name}-{}.stderr",
            &uuid::Uuid::new_v4().to_string()[..8]
        ));
        std::fs::create_dir_all(&profile).expect("PROFILE folder");
        stderr = Some(std::fs::File::create(&path).expect("profile file"));
        cmd.env("NIMRIZ_LISTEN_PROFILE", "1");
        println!("(profile of {name}: {})", path.display());
    }
    spawn(cmd, stderr)
}

/// Pre-signed distinct webhooks: (timestamp, signature, body).
fn presign(prefix: &str, n: usize) -> Vec<(String, String, String)> {
    let ts = chrono::Utc::now().timestamp().to_string();
    (0..n)
        .map(|i| {
            let body = format!(
                r#"{{"id":"evt_{prefix}_{i}","type":"link.updated","data":{{"link_id":"l{i}"}}}}"#
            );
            let sig = nimriz::webhook::sign(SECRET.as_bytes(), &ts, body.as_bytes());
            (ts.clone(), sig, body)
        })
        .collect()
}

struct Run {
    acks_per_s: f64,
    p50: f64,
    p99: f64,
    non_200: usize,
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    sorted
        .get(((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1)))
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

fn client(senders: usize) -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(senders)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// N requests from `senders` concurrent senders, each waiting for its answer.
async fn closed_loop(url: &str, senders: usize, reqs: Vec<(String, String, String)>) -> Run {
    let client = client(senders);
    let reqs = Arc::new(reqs);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..senders {
        let (client, url, next, reqs) =
            (client.clone(), url.to_string(), next.clone(), reqs.clone());
        tasks.spawn(async move {
            let mut lat = Vec::new();
            let mut bad = 0;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((ts, sig, body)) = reqs.get(i) else {
                    return (lat, bad);
                };
                let t0 = Instant::now();
                let ok = client
                    .post(&url)
                    .header("X-Nim-Timestamp", ts)
                    .header("X-Nim-Signature", sig)
                    .body(body.clone())
                    .send()
                    .await
                    .is_ok_and(|r| r.status().as_u16() == 200);
                lat.push(t0.elapsed());
                if !ok {
                    bad += 1;
                }
            }
        });
    }
    let mut lat = Vec::new();
    let mut bad = 0;
    while let Some(r) = tasks.join_next().await {
        let (l, b) = r.expect("sender");
        lat.extend(l);
        bad += b;
    }
    let elapsed = started.elapsed();
    lat.sort();
    Run {
        acks_per_s: (lat.len() - bad) as f64 / elapsed.as_secs_f64(),
        p50: pct(&lat, 0.5),
        p99: pct(&lat, 0.99),
        non_200: bad,
    }
}

/// `rate` requests per second for `secs` seconds, each on its own task (open loop).
async fn open_loop(url: &str, rate: u64, secs: u64, prefix: &str) -> Run {
    let reqs = presign(prefix, (rate * secs) as usize);
    let client = client(64);
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
    let mut tasks = tokio::task::JoinSet::new();
    let started = Instant::now();
    for (ts, sig, body) in reqs {
        tick.tick().await;
        let (client, url) = (client.clone(), url.to_string());
        tasks.spawn(async move {
            let t0 = Instant::now();
            let ok = client
                .post(&url)
                .header("X-Nim-Timestamp", ts)
                .header("X-Nim-Signature", sig)
                .body(body)
                .send()
                .await
                .is_ok_and(|r| r.status().as_u16() == 200);
            (t0.elapsed(), ok)
        });
    }
    let mut lat = Vec::new();
    let mut bad = 0;
    while let Some(r) = tasks.join_next().await {
        let (d, ok) = r.expect("task");
        lat.push(d);
        bad += usize::from(!ok);
    }
    let elapsed = started.elapsed();
    lat.sort();
    Run {
        acks_per_s: (lat.len() - bad) as f64 / elapsed.as_secs_f64(),
        p50: pct(&lat, 0.5),
        p99: pct(&lat, 0.99),
        non_200: bad,
    }
}

fn median(mut runs: Vec<Run>) -> (Run, String) {
    runs.sort_by(|a, b| a.acks_per_s.total_cmp(&b.acks_per_s));
    let spread = format!(
        "{:.0}–{:.0}",
        runs.first().map_or(0.0, |r| r.acks_per_s),
        runs.last().map_or(0.0, |r| r.acks_per_s)
    );
    let mid = runs.len() / 2;
    (runs.swap_remove(mid), spread)
}

/// For open-loop runs (acks/s is the offered rate in all): the run with the median p99, the
/// range of p99 and the non-200 answers of all runs together.
fn median_p99(mut runs: Vec<Run>) -> (Run, String, usize) {
    runs.sort_by(|a, b| a.p99.total_cmp(&b.p99));
    let spread = format!(
        "{:.1}–{:.1}",
        runs.first().map_or(0.0, |r| r.p99),
        runs.last().map_or(0.0, |r| r.p99)
    );
    let bad = runs.iter().map(|r| r.non_200).sum();
    let mid = runs.len() / 2;
    (runs.swap_remove(mid), spread, bad)
}

fn open_row(name: &str, queued: usize, runs: Vec<Run>) {
    let (r, spread, bad) = median_p99(runs);
    let digits = queued.to_string();
    let queued: String = digits
        .char_indices()
        .flat_map(|(i, c)| {
            let sep = i > 0 && (digits.len() - i).is_multiple_of(3);
            sep.then_some(',').into_iter().chain([c])
        })
        .collect();
    println!(
        "| {name} | {queued} | {:.0} | {:.2} | {:.2} ({spread}) | {bad} |",
        r.acks_per_s, r.p50, r.p99
    );
}

fn row(name: &str, senders: usize, r: &Run, spread: &str, baseline: Option<f64>) {
    let ratio = baseline.map_or(String::new(), |b| format!("{:.2}×", r.acks_per_s / b));
    println!(
        "| {name} | {senders} | {:.0} ({spread}) | {:.2} | {:.2} | {} | {ratio} |",
        r.acks_per_s, r.p50, r.p99, r.non_200
    );
}

async fn run() {
    let reps: usize = std::env::var("REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let n: usize = std::env::var("N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let dir = match std::env::var_os("BENCH_DIR") {
        Some(b) => tempfile::tempdir_in(b),
        None => tempfile::tempdir(),
    }
    .expect("temp dir");
    let only = std::env::var("ONLY").ok();
    let want = |part: &str| {
        only.as_deref()
            .is_none_or(|o| o.split(',').any(|p| p.trim() == part))
    };
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load at start: {}", load.trim());
    if want("closed") {
        closed_rows(reps, n, dir.path()).await;
    }
    if want("open") || want("burst") {
        open_rows(reps, dir.path(), want("open"), want("burst")).await;
    }
    if want("drain") {
        drain_rows(reps, dir.path()).await;
    }
    // Needs PostgreSQL: only when asked for.
    if only
        .as_deref()
        .is_some_and(|o| o.split(',').any(|p| p.trim() == "fleet"))
    {
        fleet_rows(reps, n, dir.path()).await;
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("\nload at end: {}", load.trim());
}

/// A comma list of numbers from the environment, or `default`.
fn list_env(name: &str, default: &[usize]) -> Vec<usize> {
    match std::env::var(name) {
        Ok(v) => v
            .split(',')
            .map(|x| {
                x.trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("{name}: not a number: {x}"))
            })
            .collect(),
        Err(_) => default.to_vec(),
    }
}

async fn closed_rows(reps: usize, n: usize, dir: &std::path::Path) {
    println!(
        "\n| server | senders | acks/s (range of {reps}) | p50 ms | p99 ms | non-200 | vs baseline |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");

    let senders_list = list_env("SENDERS", &[1, 16, 64]);
    let modes = std::env::var("MODES").unwrap_or_else(|_| "idle,fast,slow,down".into());
    let mut cmd = Command::new(std::env::current_exe().expect("exe"));
    cmd.arg("--baseline");
    let (_baseline, base) = spawn(cmd, None);
    let mut baseline_rate = std::collections::HashMap::new();
    for &senders in &senders_list {
        let count = if senders == 1 { n / 5 } else { n };
        let mut runs = Vec::new();
        for rep in 0..reps {
            runs.push(
                closed_loop(&base, senders, presign(&format!("b{senders}_{rep}"), count)).await,
            );
        }
        let (r, spread) = median(runs);
        baseline_rate.insert(senders, r.acks_per_s);
        row("hyper baseline (200, no store)", senders, &r, &spread, None);
    }

    let fast = stand_in(Duration::ZERO).await;
    let slow = stand_in(Duration::from_secs(2)).await;
    for (name, mode) in [
        ("listen, worker idle (no rule)", Downstream::None),
        ("listen, deliveries to a fast downstream", Downstream::Fast),
        ("listen, downstream answering after 2 s", Downstream::Slow),
        ("listen, downstream down (closed port)", Downstream::Down),
    ] {
        let key = match mode {
            Downstream::None => "idle",
            Downstream::Fast => "fast",
            Downstream::Slow => "slow",
            Downstream::Down => "down",
        };
        if !modes.split(',').any(|m| m.trim() == key) {
            continue;
        }
        let crm = match mode {
            Downstream::None => None,
            Downstream::Fast => Some(fast.url.clone()),
            Downstream::Slow => Some(slow.url.clone()),
            Downstream::Down => Some("http://127.0.0.1:9/crm".to_string()),
        };
        for &senders in &senders_list {
            let count = if senders == 1 { n / 5 } else { n };
            let mut runs = Vec::new();
            for rep in 0..reps {
                // A fresh receiver and store per run: the queue grows with each run otherwise.
                let (_l, base) = start_listen(dir, crm.as_deref(), "closed");
                let url = format!("{base}/nimriz/webhook");
                runs.push(
                    closed_loop(&url, senders, presign(&format!("l{senders}_{rep}"), count)).await,
                );
            }
            let (r, spread) = median(runs);
            row(
                name,
                senders,
                &r,
                &spread,
                baseline_rate.get(&senders).copied(),
            );
        }
    }
}

async fn open_rows(reps: usize, dir: &std::path::Path, queued: bool, burst: bool) {
    println!(
        "\n| open loop 200 req/s, 10 s | jobs queued before | acks/s | p50 ms | p99 ms (range of \
         {reps}) | non-200 (all runs) |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    let slow = stand_in(Duration::from_secs(2)).await;
    let cases = [
        ("downstream down", "http://127.0.0.1:9/crm".to_string()),
        ("downstream answering after 2 s", slow.url.clone()),
    ];
    for (name, url) in cases.iter().filter(|_| queued) {
        let mut runs = Vec::new();
        for rep in 0..reps {
            let (_l, base) = start_listen(dir, Some(url), "open");
            let wurl = format!("{base}/nimriz/webhook");
            let fill = closed_loop(&wurl, 64, presign(&format!("q{rep}"), 20_000)).await;
            if fill.non_200 > 0 {
                println!("(fill: {} of 20,000 not acknowledged)", fill.non_200);
            }
            runs.push(open_loop(&wurl, 200, 10, &format!("o{rep}")).await);
        }
        open_row(name, 20_000, runs);
    }
    if burst {
        burst_row(reps, dir).await;
    }
}

/// BURST (120k) distinct events from 64 senders as fast as they go, to a `listen` with one
/// rule posting to a fast stand-in; right after, 200 req/s for 10 s while the worker drains.
async fn burst_row(reps: usize, dir: &std::path::Path) {
    let size: usize = std::env::var("BURST")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(120_000);
    let reps: usize = std::env::var("BURST_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(reps);
    let mut runs = Vec::new();
    let mut notes = Vec::new();
    for rep in 0..reps {
        let crm = stand_in(Duration::ZERO).await;
        let (_l, base) = start_listen(dir, Some(&crm.url), "burst");
        let wurl = format!("{base}/nimriz/webhook");
        let fill = closed_loop(&wurl, 64, presign(&format!("x{rep}"), size)).await;
        let at_open = crm.received.load(Ordering::Relaxed);
        let r = open_loop(&wurl, 200, 10, &format!("y{rep}")).await;
        let after = crm.received.load(Ordering::Relaxed);
        notes.push(format!(
            "burst {:.0} acks/s, p99 {:.2} ms, {} non-200; delivered {} before / {} after the \
             open loop",
            fill.acks_per_s, fill.p99, fill.non_200, at_open, after
        ));
        runs.push(r);
    }
    open_row(
        &format!("fast downstream, right after a {size}-event burst (64 senders; {reps} runs)"),
        size,
        runs,
    );
    for n in notes {
        println!("({n})");
    }
}

async fn drain_rows(reps: usize, dir: &std::path::Path) {
    println!("\n| drain, fast downstream | jobs | jobs/s |");
    println!("|---|---:|---:|");
    let mut rates = Vec::new();
    for rep in 0..reps {
        let gated = stand_in(Duration::ZERO).await;
        gated.gate.store(false, Ordering::Relaxed);
        let (_l, base) = start_listen(dir, Some(&gated.url), "drain");
        let wurl = format!("{base}/nimriz/webhook");
        let fill = closed_loop(&wurl, 64, presign(&format!("d{rep}"), 20_000)).await;
        let jobs = (20_000 - fill.non_200) as u64;
        tokio::time::sleep(Duration::from_millis(500)).await; // let routing finish
        let before = gated.received.load(Ordering::Relaxed);
        let t0 = Instant::now();
        gated.gate.store(true, Ordering::Relaxed);
        while gated.received.load(Ordering::Relaxed) < jobs {
            assert!(t0.elapsed() < Duration::from_secs(300), "drain stalled");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        rates.push((jobs - before) as f64 / t0.elapsed().as_secs_f64());
    }
    rates.sort_by(f64::total_cmp);
    println!(
        "| median of {reps} ({:.0}–{:.0}) | 20,000 | {:.0} |",
        rates[0],
        rates[rates.len() - 1],
        rates[rates.len() / 2]
    );
}

/// `ONLY=fleet` (issue 18): acks/s (worker idle, 16 senders spread over the receivers) and
/// drain rate (20k jobs behind a closed gate, then opened) of 1 receiver on SQLite next to
/// 1, 2 and 3 receivers on one PostgreSQL (a throwaway cluster, a fresh database per run),
/// each with the overhead per event (µs of wall time per acknowledgement / delivered job).
async fn fleet_rows(reps: usize, n: usize, dir: &std::path::Path) {
    let mut cluster = test_support::pg::PgCluster::start().expect("PostgreSQL for ONLY=fleet");
    println!(
        "\n| store | receivers | acks/s (range of {reps}) | µs/ack | drain jobs/s (range) | µs/job | non-200 |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let setups: [(&str, usize); 4] = [
        ("sqlite", 1),
        ("postgres", 1),
        ("postgres", 2),
        ("postgres", 3),
    ];
    for (store, k) in setups {
        let (mut acks, mut drains, mut bad) = (Vec::new(), Vec::new(), 0);
        for rep in 0..reps {
            let url = (store == "postgres").then(|| cluster.create_database().expect("createdb"));
            // Acknowledgements, worker idle (no rule).
            let procs: Vec<(Proc, String)> = (0..k)
                .map(|_| start_fleet_member(dir, url.as_deref(), None))
                .collect();
            let per = n / k;
            let t0 = Instant::now();
            let mut runs = tokio::task::JoinSet::new();
            for (i, (_, base)) in procs.iter().enumerate() {
                let url = format!("{base}/nimriz/webhook");
                let reqs = presign(&format!("f{store}{k}r{rep}m{i}"), per);
                runs.spawn(async move { closed_loop(&url, 16usize.div_ceil(k), reqs).await });
            }
            let mut ok = 0;
            while let Some(r) = runs.join_next().await {
                let r = r.expect("sender");
                bad += r.non_200;
                ok += per - r.non_200;
            }
            acks.push(ok as f64 / t0.elapsed().as_secs_f64());
            drop(procs);
            // Drain: the same store layout, a rule to a gated stand-in.
            let url = (store == "postgres").then(|| cluster.create_database().expect("createdb"));
            let gated = stand_in(Duration::ZERO).await;
            gated.gate.store(false, Ordering::Relaxed);
            let procs: Vec<(Proc, String)> = (0..k)
                .map(|_| start_fleet_member(dir, url.as_deref(), Some(&gated.url)))
                .collect();
            let fill = closed_loop(
                &format!("{}/nimriz/webhook", procs[0].1),
                64,
                presign(&format!("fd{store}{k}r{rep}"), 20_000),
            )
            .await;
            let jobs = (20_000 - fill.non_200) as u64;
            tokio::time::sleep(Duration::from_millis(1500)).await; // let routing finish
            let before = gated.received.load(Ordering::Relaxed);
            let t0 = Instant::now();
            gated.gate.store(true, Ordering::Relaxed);
            while gated.received.load(Ordering::Relaxed) < jobs {
                assert!(t0.elapsed() < Duration::from_secs(600), "drain stalled");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            drains.push((jobs - before) as f64 / t0.elapsed().as_secs_f64());
            drop(procs);
        }
        acks.sort_by(f64::total_cmp);
        drains.sort_by(f64::total_cmp);
        let (a, d) = (acks[acks.len() / 2], drains[drains.len() / 2]);
        println!(
            "| {store} | {k} | {a:.0} ({:.0}–{:.0}) | {:.0} | {d:.0} ({:.0}–{:.0}) | {:.0} | {bad} |",
            acks[0],
            acks[acks.len() - 1],
            1e6 / a,
            drains[0],
            drains[drains.len() - 1],
            1e6 / d
        );
    }
    cluster.stop();
}

/// One receiver of a fleet: SQLite (its own file) when `database` is `None`, else the
/// PostgreSQL database at that URL.
fn start_fleet_member(
    dir: &std::path::Path,
    database: Option<&str>,
    crm_url: Option<&str>,
) -> (Proc, String) {
    let storage = match database {
        Some(_) => "storage = \"postgres\"\ndatabase_url_env = \"BENCH_DATABASE_URL\"".to_string(),
        None => format!(
            "storage = \"{}\"",
            dir.join(format!("fleet-{}.db", uuid::Uuid::new_v4()))
                .display()
        ),
    };
    let mut text = format!(
        "bind = \"127.0.0.1:0\"\n{storage}\n[webhook]\nsecret_env = \"BENCH_SECRET\"\n\
         [worker]\nbackoff_base_ms = 1000\nbackoff_max_ms = 30000\n"
    );
    if let Some(url) = crm_url {
        text.push_str(&format!(
            "[[rules]]\nname = \"all\"\n[[rules.actions]]\nname = \"crm\"\ntype = \"http\"\nurl = \"{url}\"\n"
        ));
    }
    let cfg = dir.join(format!("fleet-{}.toml", uuid::Uuid::new_v4()));
    std::fs::write(&cfg, text).expect("config");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nimriz-matrix"));
    cmd.args(["--quiet", "listen", "--config"])
        .arg(&cfg)
        .env("BENCH_SECRET", SECRET)
        .env("BENCH_DATABASE_URL", database.unwrap_or_default());
    spawn(cmd, None)
}
