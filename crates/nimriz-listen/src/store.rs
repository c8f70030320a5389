//! The durable queue and log: one SQLite file in WAL mode with `synchronous=FULL`, so a
//! commit is on disk before the sender hears 200.
//!
//! Tables:
//! - `events`: every accepted request (raw body, selected headers, receive time), UNIQUE on
//!   `event_id` — the dedupe, kept `retention_days`. `routed = 0` until the rules have run.
//! - `jobs`: one row per (event, matching action), UNIQUE on that pair; `state` is
//!   `queued` → `delivered` | `dead`. A worker claims one with a single `UPDATE … RETURNING`
//!   that sets a lease; a job whose lease expired (its worker died) is claimable again.
//! - `targets`: per-target pacing (`next_at_ms`: no request to that target before then).
//! - `dead_letters`: why a job died; `listen replay` re-queues it.
//!
//! Writes from the HTTP side go through one writer thread ([`Writer`]) that commits
//! everything waiting in its channel in one transaction (group commit): one fsync for many
//! requests.

use nimriz_matrix_core::{Error, Result};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::{Notify, mpsc, oneshot};

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS events (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id       TEXT NOT NULL UNIQUE,
    source         TEXT NOT NULL,
    event_type     TEXT,
    received_at_ms INTEGER NOT NULL,
    headers        TEXT NOT NULL,
    body           BLOB NOT NULL,
    routed         INTEGER NOT NULL DEFAULT 0,
    matched        TEXT
);
CREATE INDEX IF NOT EXISTS events_unrouted ON events(seq) WHERE routed = 0;
CREATE INDEX IF NOT EXISTS events_received ON events(received_at_ms);
CREATE TABLE IF NOT EXISTS jobs (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id        TEXT NOT NULL,
    action          TEXT NOT NULL,
    target          TEXT NOT NULL,
    state           TEXT NOT NULL DEFAULT 'queued',
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_at_ms      INTEGER NOT NULL DEFAULT 0,
    lease_owner     TEXT,
    lease_until_ms  INTEGER,
    last_status     INTEGER,
    last_error      TEXT,
    delivered_at_ms INTEGER,
    UNIQUE (event_id, action)
);
CREATE INDEX IF NOT EXISTS jobs_queued ON jobs(next_at_ms) WHERE state = 'queued';
CREATE TABLE IF NOT EXISTS targets (
    target     TEXT PRIMARY KEY,
    next_at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS dead_letters (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id         INTEGER NOT NULL,
    event_id       TEXT NOT NULL,
    action         TEXT NOT NULL,
    reason         TEXT NOT NULL,
    http_status    INTEGER,
    dead_at_ms     INTEGER NOT NULL,
    replayed_at_ms INTEGER
);
"#;

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn db_err(path: &Path, what: &'static str, e: rusqlite::Error) -> Error {
    Error::io(what, path, std::io::Error::other(e))
}

/// Open (creating if needed) the store with the durability settings every connection needs.
pub fn open(path: &Path) -> Result<Connection> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("create the folder of", path, e))?;
    }
    let conn = Connection::open(path).map_err(|e| db_err(path, "open the event store", e))?;
    let setup = || -> rusqlite::Result<()> {
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(rusqlite::Error::InvalidParameterName(format!(
                "journal_mode stayed {mode} (WAL needs a local file system)"
            )));
        }
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(SCHEMA)?;
        Ok(())
    };
    setup().map_err(|e| db_err(path, "set up the event store", e))?;
    Ok(conn)
}

/// One accepted request, ready to store.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub event_id: String,
    pub source: &'static str,
    pub event_type: Option<String>,
    pub received_at_ms: i64,
    /// JSON object of the headers worth keeping (never a secret header).
    pub headers: String,
    pub body: axum::body::Bytes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ingest {
    Stored,
    Duplicate,
}

type Reply = oneshot::Sender<std::result::Result<Ingest, String>>;

/// Group-commit statistics (for the benchmark and `--verbose`).
#[derive(Debug, Default)]
pub struct WriterStats {
    pub commits: AtomicU64,
    pub events: AtomicU64,
    pub largest_batch: AtomicU64,
}

/// Handle to the single writer thread.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<(NewEvent, Reply)>,
    pub stats: Arc<WriterStats>,
}

impl Writer {
    /// Start the writer thread on its own connection. `max_batch` = 1 turns grouping off
    /// (used to measure what grouping buys). `stored` is notified after each commit.
    pub fn start(
        path: &Path,
        max_batch: usize,
        stored: Arc<Notify>,
    ) -> Result<(Self, std::thread::JoinHandle<()>)> {
        let conn = open(path)?;
        let (tx, rx) = mpsc::channel(4096);
        let stats = Arc::new(WriterStats::default());
        let thread_stats = stats.clone();
        let handle = std::thread::Builder::new()
            .name("listen-writer".into())
            .spawn(move || writer_loop(conn, rx, max_batch.max(1), &thread_stats, &stored))
            .map_err(|e| Error::io("start the writer thread for", path, e))?;
        Ok((Writer { tx, stats }, handle))
    }

    /// Store one event; resolves once it is committed (or refused).
    pub async fn ingest(&self, event: NewEvent) -> std::result::Result<Ingest, String> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((event, reply))
            .await
            .map_err(|_| "the writer has stopped".to_string())?;
        answer
            .await
            .unwrap_or_else(|_| Err("the writer has stopped".to_string()))
    }
}

fn writer_loop(
    mut conn: Connection,
    mut rx: mpsc::Receiver<(NewEvent, Reply)>,
    max_batch: usize,
    stats: &WriterStats,
    stored: &Notify,
) {
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(item) => batch.push(item),
                Err(_) => break,
            }
        }
        match commit_batch(&mut conn, &batch) {
            Ok(outcomes) => {
                stats.commits.fetch_add(1, Ordering::Relaxed);
                stats
                    .events
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                stats
                    .largest_batch
                    .fetch_max(batch.len() as u64, Ordering::Relaxed);
                stored.notify_one();
                for ((_, reply), outcome) in batch.into_iter().zip(outcomes) {
                    let _ = reply.send(Ok(outcome));
                }
            }
            Err(e) => {
                let msg = e.to_string();
                for (_, reply) in batch {
                    let _ = reply.send(Err(msg.clone()));
                }
            }
        }
    }
}

fn commit_batch(
    conn: &mut Connection,
    batch: &[(NewEvent, Reply)],
) -> rusqlite::Result<Vec<Ingest>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut outcomes = Vec::with_capacity(batch.len());
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO events (event_id, source, event_type, received_at_ms, headers, body)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (event_id) DO NOTHING",
        )?;
        for (e, _) in batch {
            let n = insert.execute(params![
                e.event_id,
                e.source,
                e.event_type,
                e.received_at_ms,
                e.headers,
                &e.body[..]
            ])?;
            outcomes.push(if n == 1 {
                Ingest::Stored
            } else {
                Ingest::Duplicate
            });
        }
    }
    tx.commit()?;
    Ok(outcomes)
}

/// An event not yet routed through the rules.
#[derive(Debug, Clone)]
pub struct PendingEvent {
    pub seq: i64,
    pub event_id: String,
    pub source: String,
    pub body: Vec<u8>,
}

/// A job to add for an event: (action id, target key).
pub type JobSpec = (String, String);

/// A claimed job.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: i64,
    pub event_id: String,
    pub action: String,
    pub target: String,
    /// Including this one.
    pub attempts: u32,
}

/// The worker's side of the store (its own connection).
pub struct Queue {
    conn: Connection,
    path: PathBuf,
}

impl Queue {
    pub fn open(path: &Path) -> Result<Self> {
        Ok(Queue {
            conn: open(path)?,
            path: path.to_path_buf(),
        })
    }

    fn err(&self, what: &'static str, e: rusqlite::Error) -> Error {
        db_err(&self.path, what, e)
    }

    pub fn unrouted(&self, limit: usize) -> Result<Vec<PendingEvent>> {
        let run = || -> rusqlite::Result<Vec<PendingEvent>> {
            let mut st = self.conn.prepare_cached(
                "SELECT seq, event_id, source, body FROM events WHERE routed = 0 ORDER BY seq LIMIT ?1",
            )?;
            let rows = st.query_map([limit as i64], |r| {
                Ok(PendingEvent {
                    seq: r.get(0)?,
                    event_id: r.get(1)?,
                    source: r.get(2)?,
                    body: r.get(3)?,
                })
            })?;
            rows.collect()
        };
        run().map_err(|e| self.err("read unrouted events from", e))
    }

    /// Record the jobs for routed events, and mark them routed, in one transaction. Re-running
    /// it for the same event adds nothing (UNIQUE (event_id, action)).
    pub fn record_routes(&mut self, routed: &[(i64, String, Vec<JobSpec>)]) -> Result<()> {
        let run = |conn: &mut Connection| -> rusqlite::Result<()> {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            {
                let mut add = tx.prepare_cached(
                    "INSERT INTO jobs (event_id, action, target) VALUES (?1, ?2, ?3)
                     ON CONFLICT (event_id, action) DO NOTHING",
                )?;
                let mut mark =
                    tx.prepare_cached("UPDATE events SET routed = 1, matched = ?2 WHERE seq = ?1")?;
                for (seq, event_id, jobs) in routed {
                    for (action, target) in jobs {
                        add.execute(params![event_id, action, target])?;
                    }
                    let names: Vec<&str> = jobs.iter().map(|(a, _)| a.as_str()).collect();
                    mark.execute(params![seq, json!(names).to_string()])?;
                }
            }
            tx.commit()
        };
        run(&mut self.conn).map_err(|e| db_err(&self.path, "record routed events in", e))
    }

    /// Claim the oldest ready job whose target is not being paced, with a lease until
    /// `now + lease_ms`; reserve the target's next slot `pace_ms(target)` later.
    pub fn claim(
        &mut self,
        owner: &str,
        lease_ms: i64,
        pace_ms: impl Fn(&str) -> i64,
    ) -> Result<Option<Job>> {
        let now = now_ms();
        let run = |conn: &mut Connection| -> rusqlite::Result<Option<Job>> {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let job = tx
                .prepare_cached(
                    "UPDATE jobs SET lease_owner = ?1, lease_until_ms = ?2, attempts = attempts + 1
                     WHERE id = (
                        SELECT j.id FROM jobs j LEFT JOIN targets t ON t.target = j.target
                        WHERE j.state = 'queued' AND j.next_at_ms <= ?3
                          AND (j.lease_until_ms IS NULL OR j.lease_until_ms < ?3)
                          AND COALESCE(t.next_at_ms, 0) <= ?3
                        ORDER BY j.id LIMIT 1)
                     RETURNING id, event_id, action, target, attempts",
                )?
                .query_row(params![owner, now + lease_ms, now], |r| {
                    Ok(Job {
                        id: r.get(0)?,
                        event_id: r.get(1)?,
                        action: r.get(2)?,
                        target: r.get(3)?,
                        attempts: r.get(4)?,
                    })
                })
                .optional()?;
            if let Some(job) = &job {
                let gap = pace_ms(&job.target);
                if gap > 0 {
                    tx.execute(
                        "INSERT INTO targets (target, next_at_ms) VALUES (?1, ?2)
                         ON CONFLICT (target) DO UPDATE SET next_at_ms = max(next_at_ms, excluded.next_at_ms)",
                        params![job.target, now + gap],
                    )?;
                }
            }
            tx.commit()?;
            Ok(job)
        };
        run(&mut self.conn).map_err(|e| db_err(&self.path, "claim a job in", e))
    }

    /// The stored payload of an event: (source, body).
    pub fn event_body(&self, event_id: &str) -> Result<Option<(String, Vec<u8>)>> {
        self.conn
            .query_row(
                "SELECT source, body FROM events WHERE event_id = ?1",
                [event_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.err("read an event from", e))
    }

    pub fn mark_delivered(&mut self, job: &Job, status: Option<u16>) -> Result<()> {
        self.conn
            .execute(
                "UPDATE jobs SET state = 'delivered', delivered_at_ms = ?2, last_status = ?3,
                        last_error = NULL, lease_owner = NULL, lease_until_ms = NULL
                 WHERE id = ?1 AND state = 'queued'",
                params![job.id, now_ms(), status],
            )
            .map(|_| ())
            .map_err(|e| self.err("record a delivery in", e))
    }

    /// Release the job to be tried again at `at_ms`; `target_pause_until` also holds back
    /// every job of that target (429 Retry-After).
    pub fn retry_later(
        &mut self,
        job: &Job,
        owner: &str,
        at_ms: i64,
        target_pause_until: Option<i64>,
        status: Option<u16>,
        error: &str,
    ) -> Result<()> {
        let run = |conn: &mut Connection| -> rusqlite::Result<()> {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute(
                "UPDATE jobs SET next_at_ms = ?3, lease_owner = NULL, lease_until_ms = NULL,
                        last_status = ?4, last_error = ?5
                 WHERE id = ?1 AND lease_owner = ?2 AND state = 'queued'",
                params![job.id, owner, at_ms, status, error],
            )?;
            if let Some(until) = target_pause_until {
                tx.execute(
                    "INSERT INTO targets (target, next_at_ms) VALUES (?1, ?2)
                     ON CONFLICT (target) DO UPDATE SET next_at_ms = max(next_at_ms, excluded.next_at_ms)",
                    params![job.target, until],
                )?;
            }
            tx.commit()
        };
        run(&mut self.conn).map_err(|e| db_err(&self.path, "reschedule a job in", e))
    }

    pub fn dead_letter(&mut self, job: &Job, status: Option<u16>, reason: &str) -> Result<()> {
        let run = |conn: &mut Connection| -> rusqlite::Result<()> {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let n = tx.execute(
                "UPDATE jobs SET state = 'dead', last_status = ?2, last_error = ?3,
                        lease_owner = NULL, lease_until_ms = NULL
                 WHERE id = ?1 AND state = 'queued'",
                params![job.id, status, reason],
            )?;
            if n == 1 {
                tx.execute(
                    "INSERT INTO dead_letters (job_id, event_id, action, reason, http_status, dead_at_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![job.id, job.event_id, job.action, reason, status, now_ms()],
                )?;
            }
            tx.commit()
        };
        run(&mut self.conn).map_err(|e| db_err(&self.path, "record a dead letter in", e))
    }

    /// Forget processed events older than `cutoff_ms` (their dedupe rows too). Events with a
    /// queued or dead job are kept: their body is still needed.
    pub fn prune(&mut self, cutoff_ms: i64) -> Result<usize> {
        let run = |conn: &mut Connection| -> rusqlite::Result<usize> {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let n = tx.execute(
                "DELETE FROM events WHERE received_at_ms < ?1 AND routed = 1 AND NOT EXISTS (
                    SELECT 1 FROM jobs WHERE jobs.event_id = events.event_id
                      AND jobs.state IN ('queued', 'dead'))",
                [cutoff_ms],
            )?;
            tx.execute(
                "DELETE FROM jobs WHERE NOT EXISTS (SELECT 1 FROM events WHERE events.event_id = jobs.event_id)",
                [],
            )?;
            tx.commit()?;
            Ok(n)
        };
        run(&mut self.conn).map_err(|e| db_err(&self.path, "prune old events in", e))
    }
}

/// Re-queue dead jobs (all, or one event's, or one action's). Returns how many.
pub fn replay(path: &Path, event_id: Option<&str>, action: Option<&str>) -> Result<usize> {
    let mut conn = open(path)?;
    let run = |conn: &mut Connection| -> rusqlite::Result<usize> {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let now = now_ms();
        let n = tx.execute(
            "UPDATE jobs SET state = 'queued', attempts = 0, next_at_ms = 0,
                    lease_owner = NULL, lease_until_ms = NULL
             WHERE state = 'dead' AND (?1 IS NULL OR event_id = ?1) AND (?2 IS NULL OR action = ?2)",
            params![event_id, action],
        )?;
        tx.execute(
            "UPDATE dead_letters SET replayed_at_ms = ?3
             WHERE replayed_at_ms IS NULL AND (?1 IS NULL OR event_id = ?1) AND (?2 IS NULL OR action = ?2)",
            params![event_id, action, now],
        )?;
        tx.commit()?;
        Ok(n)
    };
    run(&mut conn).map_err(|e| db_err(path, "re-queue dead letters in", e))
}

/// event_id, source, event_type, received_at_ms, headers, body, routed
type LogRow = (String, String, Option<String>, i64, String, Vec<u8>, i64);

/// Stored events received at or after `since_ms` (optionally one event id), oldest first,
/// each as a JSON object with its raw payload and the outcome of every action.
pub fn log_entries(path: &Path, since_ms: i64, event_id: Option<&str>) -> Result<Vec<Value>> {
    let conn = open(path)?;
    let run = || -> rusqlite::Result<Vec<Value>> {
        let mut events = conn.prepare(
            "SELECT event_id, source, event_type, received_at_ms, headers, body, routed
             FROM events WHERE received_at_ms >= ?1 AND (?2 IS NULL OR event_id = ?2)
             ORDER BY seq",
        )?;
        let mut jobs = conn.prepare(
            "SELECT action, state, attempts, last_status, last_error, delivered_at_ms
             FROM jobs WHERE event_id = ?1 ORDER BY id",
        )?;
        let rows: Vec<LogRow> = events
            .query_map(params![since_ms, event_id], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                ))
            })?
            .collect::<rusqlite::Result<_>>()?;
        let mut out = Vec::with_capacity(rows.len());
        for (id, source, event_type, received, headers, body, routed) in rows {
            let actions: Vec<Value> = jobs
                .query_map([&id], |r| {
                    Ok(json!({
                        "action": r.get::<_, String>(0)?,
                        "state": r.get::<_, String>(1)?,
                        "attempts": r.get::<_, i64>(2)?,
                        "last_status": r.get::<_, Option<i64>>(3)?,
                        "last_error": r.get::<_, Option<String>>(4)?,
                        "delivered_at": r.get::<_, Option<i64>>(5)?.map(rfc3339_ms),
                    }))
                })?
                .collect::<rusqlite::Result<_>>()?;
            let outcome = if routed == 0 {
                "queued"
            } else if actions.iter().any(|a| a["state"] == "dead") {
                "dead_letter"
            } else if actions.iter().any(|a| a["state"] == "queued") {
                "pending"
            } else if actions.is_empty() {
                "no_match"
            } else {
                "delivered"
            };
            let body_text = String::from_utf8_lossy(&body).into_owned();
            out.push(json!({
                "event_id": id,
                "source": source,
                "event_type": event_type,
                "received_at": rfc3339_ms(received),
                "outcome": outcome,
                "actions": actions,
                "headers": serde_json::from_str::<Value>(&headers).unwrap_or(Value::Null),
                "raw_body": body_text,
            }));
        }
        Ok(out)
    };
    run().map_err(|e| db_err(path, "read the event log from", e))
}

fn rfc3339_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str, received_at_ms: i64) -> NewEvent {
        NewEvent {
            event_id: id.into(),
            source: "click",
            event_type: None,
            received_at_ms,
            headers: "{}".into(),
            body: axum::body::Bytes::from_static(b"{}"),
        }
    }

    /// Store events and route each to the given (action, target) jobs.
    fn setup(dir: &Path, events: &[(&str, i64)], jobs: &[(&str, &str)]) -> Queue {
        let path = dir.join("q.db");
        let mut conn = open(&path).expect("open");
        let batch: Vec<_> = events
            .iter()
            .map(|(id, at)| (event(id, *at), oneshot::channel().0))
            .collect();
        let outcomes = commit_batch(&mut conn, &batch).expect("commit");
        assert!(outcomes.iter().all(|o| *o == Ingest::Stored));
        let mut q = Queue::open(&path).expect("queue");
        let pending = q.unrouted(1000).expect("unrouted");
        let routed: Vec<_> = pending
            .into_iter()
            .map(|p| {
                let specs = jobs
                    .iter()
                    .map(|(a, t)| (a.to_string(), t.to_string()))
                    .collect();
                (p.seq, p.event_id, specs)
            })
            .collect();
        q.record_routes(&routed).expect("route");
        // Routing twice adds nothing (UNIQUE (event_id, action)).
        q.record_routes(&routed).expect("route again");
        q
    }

    #[test]
    fn duplicate_ids_in_one_batch_store_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut conn = open(&dir.path().join("d.db")).expect("open");
        let batch: Vec<_> = ["a", "a", "b"]
            .iter()
            .map(|id| (event(id, 1), oneshot::channel().0))
            .collect();
        let outcomes = commit_batch(&mut conn, &batch).expect("commit");
        assert_eq!(
            outcomes,
            [Ingest::Stored, Ingest::Duplicate, Ingest::Stored]
        );
    }

    #[test]
    fn a_leased_job_is_not_claimed_twice_until_its_lease_expires() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut q = setup(dir.path(), &[("e1", 1)], &[("r/a", "t1")]);
        let mut other = Queue::open(&dir.path().join("q.db")).expect("second worker");
        let first = q.claim("w1", 60_000, |_| 0).expect("claim").expect("a job");
        assert_eq!((first.event_id.as_str(), first.attempts), ("e1", 1));
        assert!(other.claim("w2", 60_000, |_| 0).expect("claim").is_none());
        // w1 "dies": once its lease has run out the job is taken again, attempt counted.
        q.conn
            .execute("UPDATE jobs SET lease_until_ms = 0", [])
            .expect("expire");
        let again = other
            .claim("w2", 60_000, |_| 0)
            .expect("claim")
            .expect("retaken");
        assert_eq!((again.id, again.attempts), (first.id, 2));
        other.mark_delivered(&again, Some(200)).expect("delivered");
        q.conn
            .execute("UPDATE jobs SET lease_until_ms = 0", [])
            .expect("expire");
        assert!(
            q.claim("w1", 60_000, |_| 0).expect("claim").is_none(),
            "delivered is final"
        );
    }

    #[test]
    fn concurrent_workers_claim_disjoint_jobs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ids: Vec<String> = (0..200).map(|i| format!("e{i}")).collect();
        let events: Vec<(&str, i64)> = ids.iter().map(|i| (i.as_str(), 1)).collect();
        drop(setup(dir.path(), &events, &[("r/a", "t")]));
        let path = dir.path().join("q.db");
        let workers: Vec<_> = (0..4)
            .map(|w| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let mut q = Queue::open(&path).expect("queue");
                    let mut mine = Vec::new();
                    while let Some(job) = q.claim(&format!("w{w}"), 60_000, |_| 0).expect("claim") {
                        mine.push(job.id);
                    }
                    mine
                })
            })
            .collect();
        let mut all: Vec<i64> = workers
            .into_iter()
            .flat_map(|h| h.join().expect("worker"))
            .collect();
        all.sort_unstable();
        let claimed = all.len();
        all.dedup();
        assert_eq!(
            (claimed, all.len()),
            (200, 200),
            "every job claimed exactly once"
        );
    }

    #[test]
    fn pacing_holds_back_only_that_target() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut q = setup(
            dir.path(),
            &[("e1", 1), ("e2", 1)],
            &[("r/slack", "slow"), ("r/crm", "fast")],
        );
        let pace = |t: &str| if t == "slow" { 60_000 } else { 0 };
        let mut targets = Vec::new();
        while let Some(job) = q.claim("w", 60_000, pace).expect("claim") {
            targets.push(job.target.clone());
        }
        targets.sort();
        assert_eq!(
            targets,
            ["fast", "fast", "slow"],
            "the second slow job waits"
        );
    }

    #[test]
    fn dead_letters_replay_and_prune() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut q = setup(
            dir.path(),
            &[("old", 1), ("dead", 1), ("new", now_ms())],
            &[("r/a", "t")],
        );
        while let Some(job) = q.claim("w", 60_000, |_| 0).expect("claim") {
            if job.event_id == "dead" {
                q.dead_letter(&job, Some(410), "gone").expect("dead");
            } else {
                q.mark_delivered(&job, Some(200)).expect("delivered");
            }
        }
        // Old and processed: pruned. Old but dead-lettered: kept for replay. New: kept.
        assert_eq!(q.prune(now_ms() - 1000).expect("prune"), 1);
        let path = dir.path().join("q.db");
        let ids: Vec<String> = log_entries(&path, 0, None)
            .expect("log")
            .iter()
            .map(|e| e["event_id"].as_str().unwrap_or_default().to_string())
            .collect();
        assert_eq!(ids, ["dead", "new"]);
        assert_eq!(replay(&path, None, None).expect("replay"), 1);
        let job = q
            .claim("w", 60_000, |_| 0)
            .expect("claim")
            .expect("replayed");
        assert_eq!((job.event_id.as_str(), job.attempts), ("dead", 1));
        assert_eq!(replay(&path, None, None).expect("nothing dead"), 0);
    }
}
