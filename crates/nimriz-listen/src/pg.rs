//! The PostgreSQL store (`storage = "postgres"`): the same queue, log and dedupe as the
//! SQLite file, shared by any number of `listen` replicas.
//!
//! Tables (prefixed `listen_`, so the database may hold other things): `listen_events`
//! UNIQUE on the namespaced key (`webhook:<id>`, `click:<id>`, as in SQLite), `listen_jobs`
//! UNIQUE on (event, action) with the partial index `listen_jobs_ready (target, next_at_ms,
//! id) WHERE state = 'queued'`, `listen_targets` (per-target pacing, one row per target),
//! `listen_dead_letters`, and `listen_schema` (the applied migrations).
//!
//! - **Acknowledgements**: waiting events are grouped into one transaction (`INSERT … SELECT
//!   FROM unnest(…) ON CONFLICT (event_id) DO NOTHING RETURNING event_id`), committed with
//!   `synchronous_commit = on` before any of them hears 200; the same transaction runs
//!   `NOTIFY nimriz_listen` when it stored something (at most every 10 ms per receiver:
//!   PostgreSQL serialises notifying commits; the receiver's own worker is woken in-process).
//! - **Claims**: `FOR UPDATE SKIP LOCKED` over the ready index, a batch per target, lease and
//!   `sending_at_ms` set in the same statement. A paced target's row is locked (`SKIP
//!   LOCKED`: a replica claiming for it makes the others pass it by) and moved on in the
//!   claiming transaction, so pacing holds across replicas.
//! - **Wake-ups**: a dedicated connection `LISTEN`s; the worker's 100 ms poll stays as the
//!   fallback (retries coming due, expired leases, a lost listening connection).
//! - **Migrations** run at start under `pg_advisory_lock`, each version once.
//! - **Pruning** runs on one replica at a time (`pg_try_advisory_xact_lock`).
//!
//! While the database is unreachable, acknowledgements answer 503 within the ack timeout and
//! `/healthz` says why; both recover on their own when it is back (the pool reconnects).

use super::backend::{AckStore, BoxFuture, EventBody, JobQueue, Router};
use super::config::DatabaseUrl;
use super::store::{
    Ingest, Job, JobSpec, NewEvent, PendingEvent, WriterStats, event_key, key_id, now_ms,
};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use nimriz_matrix_core::{Error, Result};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio_postgres::NoTls;

/// The channel `NOTIFY` wakes the workers on.
pub const CHANNEL: &str = "nimriz_listen";

/// Advisory lock keys (arbitrary, fixed): migrations, pruning.
const MIGRATE_LOCK: i64 = 0x6e6d_785f_6d69_6772;
const PRUNE_LOCK: i64 = 0x6e6d_785f_7072_756e;

/// Events one acknowledgement transaction takes at most.
const MAX_ACK_BATCH: usize = 256;

/// A receiver sends `NOTIFY` at most this often (ms): PostgreSQL serialises every committing
/// transaction that notifies, and each notification wakes every receiver's worker. Its own
/// worker is woken in-process after every commit.
const NOTIFY_EVERY_MS: i64 = 10;

/// Tasks committing acknowledgements side by side (each one transaction at a time).
const ACK_TASKS: usize = 4;

/// The migrations, in order; `listen_schema` records which ran. Never edit one that has
/// shipped: add the next.
pub const MIGRATIONS: &[(i32, &str)] = &[(
    1,
    r#"
CREATE TABLE listen_events (
    seq            BIGSERIAL PRIMARY KEY,
    event_id       TEXT NOT NULL UNIQUE,
    source         TEXT NOT NULL,
    event_type     TEXT,
    received_at_ms BIGINT NOT NULL,
    headers        TEXT NOT NULL,
    body           BYTEA NOT NULL,
    routed         BOOLEAN NOT NULL DEFAULT FALSE,
    matched        TEXT
);
CREATE INDEX listen_events_unrouted ON listen_events (seq) WHERE NOT routed;
CREATE INDEX listen_events_received ON listen_events (received_at_ms);
CREATE TABLE listen_jobs (
    id              BIGSERIAL PRIMARY KEY,
    event_id        TEXT NOT NULL,
    action          TEXT NOT NULL,
    target          TEXT NOT NULL,
    state           TEXT NOT NULL DEFAULT 'queued',
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_at_ms      BIGINT NOT NULL DEFAULT 0,
    lease_owner     TEXT,
    lease_until_ms  BIGINT,
    last_status     INTEGER,
    last_error      TEXT,
    delivered_at_ms BIGINT,
    sending_at_ms   BIGINT,
    UNIQUE (event_id, action)
);
CREATE INDEX listen_jobs_ready ON listen_jobs (target, next_at_ms, id) WHERE state = 'queued';
CREATE TABLE listen_targets (
    target     TEXT PRIMARY KEY,
    next_at_ms BIGINT NOT NULL
);
CREATE TABLE listen_dead_letters (
    id             BIGSERIAL PRIMARY KEY,
    job_id         BIGINT NOT NULL,
    event_id       TEXT NOT NULL,
    action         TEXT NOT NULL,
    reason         TEXT NOT NULL,
    http_status    INTEGER,
    dead_at_ms     BIGINT NOT NULL,
    replayed_at_ms BIGINT
);
CREATE INDEX listen_dead_letters_event ON listen_dead_letters (event_id);
"#,
)];

/// The version the last migration brings the database to.
pub fn schema_version() -> i32 {
    MIGRATIONS.last().map_or(0, |m| m.0)
}

fn pg_config(url: &DatabaseUrl) -> Result<tokio_postgres::Config> {
    let mut config: tokio_postgres::Config =
        url.expose().parse().map_err(|e: tokio_postgres::Error| {
            Error::Usage(format!(
                "the database URL ({}) does not parse: {}",
                url.redacted(),
                url.redact(&e.to_string())
            ))
        })?;
    // A 200 means the commit is on the primary's disk, whatever the server's default.
    config.options("-c synchronous_commit=on");
    config.connect_timeout(Duration::from_secs(5));
    if config.get_application_name().is_none() {
        config.application_name("nimriz-listen");
    }
    Ok(config)
}

/// A database error as a message that never shows the password.
fn describe(url: &DatabaseUrl, e: &dyn std::fmt::Display) -> String {
    // tokio-postgres' Display of a server error is just "db error"; the source has more.
    url.redact(&e.to_string())
}

fn pg_err(url: &DatabaseUrl, e: tokio_postgres::Error) -> String {
    let detail = e
        .as_db_error()
        .map(|d| format!("{}: {}", d.severity(), d.message()))
        .unwrap_or_else(|| {
            let mut s = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(inner) = src {
                s.push_str(": ");
                s.push_str(&inner.to_string());
                src = inner.source();
            }
            s
        });
    describe(url, &detail)
}

fn pool_err(url: &DatabaseUrl, e: deadpool_postgres::PoolError) -> String {
    match e {
        deadpool_postgres::PoolError::Backend(e) => pg_err(url, e),
        other => describe(url, &other),
    }
}

/// Connections to one database, with its URL for messages.
#[derive(Clone)]
pub struct Db {
    pub pool: Pool,
    pub url: DatabaseUrl,
    config: tokio_postgres::Config,
}

impl Db {
    /// Connect (once, to check the database is there), then apply the migrations not yet
    /// applied under an advisory lock (several replicas starting at once migrate once).
    pub async fn open(url: &DatabaseUrl, pool_size: usize, timeout: Duration) -> Result<Db> {
        let config = pg_config(url)?;
        let mgr = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(mgr)
            .max_size(pool_size.max(2))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(timeout))
            .create_timeout(Some(timeout.max(Duration::from_secs(1))))
            .recycle_timeout(Some(timeout))
            .build()
            .map_err(|e| Error::Usage(format!("could not set up the database pool: {e}")))?;
        let db = Db {
            pool,
            url: url.clone(),
            config,
        };
        db.migrate().await?;
        Ok(db)
    }

    fn fail(&self, what: &'static str, detail: String) -> Error {
        Error::io(what, self.url.redacted(), std::io::Error::other(detail))
    }

    /// A connection of its own (not pooled): migrations, `LISTEN`.
    async fn connect(&self) -> std::result::Result<tokio_postgres::Client, String> {
        let (client, conn) = self
            .config
            .connect(NoTls)
            .await
            .map_err(|e| pg_err(&self.url, e))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(client)
    }

    async fn migrate(&self) -> Result<()> {
        let mut client = self
            .connect()
            .await
            .map_err(|e| self.fail("connect to the database", e))?;
        let run = async {
            client
                .execute("SELECT pg_advisory_lock($1)", &[&MIGRATE_LOCK])
                .await?;
            client
                .batch_execute(
                    "CREATE TABLE IF NOT EXISTS listen_schema (
                         version    INTEGER PRIMARY KEY,
                         applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
                )
                .await?;
            let current: i32 = client
                .query_one("SELECT COALESCE(max(version), 0) FROM listen_schema", &[])
                .await?
                .get(0);
            for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
                let tx = client.transaction().await?;
                tx.batch_execute(sql).await?;
                tx.execute(
                    "INSERT INTO listen_schema (version) VALUES ($1)",
                    &[version],
                )
                .await?;
                tx.commit().await?;
            }
            client
                .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATE_LOCK])
                .await?;
            Ok::<i32, tokio_postgres::Error>(current)
        };
        let current = run.await.map_err(|e| {
            self.fail(
                "set up the event store in the database",
                pg_err(&self.url, e),
            )
        })?;
        if current > schema_version() {
            return Err(self.fail(
                "use the event store in the database",
                format!(
                    "its schema is version {current}, newer than this `listen` knows ({}); \
                     upgrade `listen`",
                    schema_version()
                ),
            ));
        }
        Ok(())
    }

    async fn client(&self) -> std::result::Result<deadpool_postgres::Client, String> {
        self.pool.get().await.map_err(|e| pool_err(&self.url, e))
    }
}

// ---- acknowledgements ----

type Reply = oneshot::Sender<std::result::Result<Ingest, String>>;

/// What `/healthz` and the 503s know about the database.
#[derive(Debug, Default)]
pub struct PgHealth {
    last_error: Mutex<Option<String>>,
}

impl PgHealth {
    fn set(&self, e: Option<String>) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = e;
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// The receiving side on PostgreSQL: group-commits waiting acknowledgements.
pub struct PgAcks {
    db: Db,
    tx: mpsc::Sender<(NewEvent, Reply)>,
    ack_timeout: Duration,
    pub health: Arc<PgHealth>,
    pub stats: Arc<WriterStats>,
}

impl PgAcks {
    /// Start the committing tasks; they end when the last handle is dropped.
    pub fn start(db: Db, ack_timeout: Duration, wake: Arc<Notify>) -> Arc<PgAcks> {
        let last_notify = Arc::new(AtomicI64::new(0));
        let (tx, rx) = mpsc::channel::<(NewEvent, Reply)>(8192);
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        let health = Arc::new(PgHealth::default());
        let stats = Arc::new(WriterStats::default());
        for _ in 0..ACK_TASKS {
            let (db, rx, health, stats) = (db.clone(), rx.clone(), health.clone(), stats.clone());
            let (wake, last_notify) = (wake.clone(), last_notify.clone());
            tokio::spawn(async move {
                loop {
                    let mut batch = Vec::new();
                    {
                        let mut rx = rx.lock().await;
                        match rx.recv().await {
                            Some(m) => batch.push(m),
                            None => return,
                        }
                        while batch.len() < MAX_ACK_BATCH {
                            match rx.try_recv() {
                                Ok(m) => batch.push(m),
                                Err(_) => break,
                            }
                        }
                    }
                    // A request that gave up (503 after the timeout) is not written.
                    batch.retain(|(_, reply)| !reply.is_closed());
                    if batch.is_empty() {
                        continue;
                    }
                    let events: Vec<&NewEvent> = batch.iter().map(|(e, _)| e).collect();
                    let now = now_ms();
                    let notify = last_notify.load(Ordering::Relaxed) + NOTIFY_EVERY_MS <= now;
                    match commit_events(&db, &events, notify).await {
                        Ok(outcomes) => {
                            if notify {
                                last_notify.store(now, Ordering::Relaxed);
                            }
                            wake.notify_one();
                            health.set(None);
                            stats.commits.fetch_add(1, Ordering::Relaxed);
                            stats
                                .events
                                .fetch_add(batch.len() as u64, Ordering::Relaxed);
                            stats
                                .largest_batch
                                .fetch_max(batch.len() as u64, Ordering::Relaxed);
                            for ((_, reply), o) in batch.into_iter().zip(outcomes) {
                                let _ = reply.send(Ok(o));
                            }
                        }
                        Err(e) => {
                            let why =
                                format!("the database is unreachable or refused the write: {e}");
                            health.set(Some(why.clone()));
                            for (_, reply) in batch {
                                let _ = reply.send(Err(why.clone()));
                            }
                        }
                    }
                }
            });
        }
        Arc::new(PgAcks {
            db,
            tx,
            ack_timeout,
            health,
            stats,
        })
    }

    pub async fn ingest(&self, event: NewEvent) -> std::result::Result<Ingest, String> {
        let (reply, answer) = oneshot::channel();
        let wait = async {
            self.tx
                .send((event, reply))
                .await
                .map_err(|_| "the writer has stopped".to_string())?;
            answer
                .await
                .unwrap_or_else(|_| Err("the writer has stopped".to_string()))
        };
        tokio::time::timeout(self.ack_timeout, wait)
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "not durable within {} ms (the database is slow or unreachable)",
                    self.ack_timeout.as_millis()
                ))
            })
    }

    /// A round trip to the database within the ack timeout.
    pub async fn probe(&self) -> std::result::Result<(), String> {
        let check = async {
            let c = self.db.client().await?;
            c.query_one("SELECT 1", &[])
                .await
                .map_err(|e| pg_err(&self.db.url, e))?;
            Ok::<(), String>(())
        };
        match tokio::time::timeout(self.ack_timeout, check).await {
            Err(_) => Err(format!(
                "the database ({}) did not answer within {} ms",
                self.db.url.redacted(),
                self.ack_timeout.as_millis()
            )),
            Ok(Err(e)) => {
                let why = format!(
                    "the database ({}) is unreachable: {e}",
                    self.db.url.redacted()
                );
                self.health.set(Some(why.clone()));
                Err(why)
            }
            Ok(Ok(())) => {
                self.health.set(None);
                Ok(())
            }
        }
    }
}

impl AckStore for PgAcks {
    fn ingest(&self, event: NewEvent) -> BoxFuture<'_, std::result::Result<Ingest, String>> {
        Box::pin(PgAcks::ingest(self, event))
    }

    fn probe(&self) -> BoxFuture<'_, std::result::Result<(), String>> {
        Box::pin(PgAcks::probe(self))
    }
}

/// One transaction for a batch; an id already stored (or twice in the batch) is a
/// duplicate.
async fn commit_events(
    db: &Db,
    batch: &[&NewEvent],
    notify: bool,
) -> std::result::Result<Vec<Ingest>, String> {
    let keys: Vec<String> = batch
        .iter()
        .map(|e| event_key(e.source, &e.event_id))
        .collect();
    let sources: Vec<&str> = batch.iter().map(|e| e.source).collect();
    let types: Vec<Option<&str>> = batch.iter().map(|e| e.event_type.as_deref()).collect();
    let received: Vec<i64> = batch.iter().map(|e| e.received_at_ms).collect();
    let headers: Vec<&str> = batch.iter().map(|e| e.headers.as_str()).collect();
    let bodies: Vec<&[u8]> = batch.iter().map(|e| &e.body[..]).collect();
    let mut client = db.client().await?;
    let run = async {
        let tx = client.transaction().await?;
        let insert = tx
            .prepare_cached(
                "INSERT INTO listen_events (event_id, source, event_type, received_at_ms, headers, body)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[], $5::text[], $6::bytea[])
                 ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
            )
            .await?;
        let rows = tx
            .query(
                &insert,
                &[&keys, &sources, &types, &received, &headers, &bodies],
            )
            .await?;
        if notify && !rows.is_empty() {
            tx.execute("SELECT pg_notify($1, '')", &[&CHANNEL]).await?;
        }
        tx.commit().await?;
        Ok::<_, tokio_postgres::Error>(rows)
    };
    let rows = run.await.map_err(|e| pg_err(&db.url, e))?;
    let mut stored: HashMap<String, usize> = HashMap::new();
    for r in rows {
        *stored.entry(r.get::<_, String>(0)).or_default() += 1;
    }
    Ok(keys
        .iter()
        .map(|k| match stored.get_mut(k) {
            Some(n) if *n > 0 => {
                *n -= 1;
                Ingest::Stored
            }
            _ => Ingest::Duplicate,
        })
        .collect())
}

// ---- the worker's queue ----

/// The worker's side on PostgreSQL.
pub struct PgQueue {
    db: Db,
    /// The configured targets have their pacing row (inserted once).
    targets_ready: AtomicBool,
}

impl PgQueue {
    pub fn new(db: Db) -> Self {
        PgQueue {
            db,
            targets_ready: AtomicBool::new(false),
        }
    }

    fn err(&self, what: &str, e: tokio_postgres::Error) -> Error {
        Error::Usage(format!("database: {what}: {}", pg_err(&self.db.url, e)))
    }

    async fn client(&self) -> Result<deadpool_postgres::Client> {
        self.db
            .client()
            .await
            .map_err(|e| Error::Usage(format!("database: {e}")))
    }

    /// Run one statement in autocommit.
    async fn exec(
        &self,
        what: &str,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<u64> {
        let c = self.client().await?;
        let st = c.prepare_cached(sql).await.map_err(|e| self.err(what, e))?;
        c.execute(&st, params).await.map_err(|e| self.err(what, e))
    }

    /// Wake this process's worker on every `NOTIFY` (a dedicated connection, re-opened
    /// after a loss) until `stop`.
    pub fn listen(&self, wake: Arc<Notify>, mut stop: watch::Receiver<bool>) {
        let db = self.db.clone();
        tokio::spawn(async move {
            for attempt in 0u64.. {
                if *stop.borrow() {
                    return;
                }
                if attempt > 0 {
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = stop.changed() => return,
                    }
                }
                let Ok((client, mut conn)) = db.config.connect(NoTls).await else {
                    continue;
                };
                let messages = async {
                    loop {
                        match std::future::poll_fn(|cx| conn.poll_message(cx)).await {
                            Some(Ok(tokio_postgres::AsyncMessage::Notification(_))) => {
                                wake.notify_one()
                            }
                            Some(Ok(_)) => {}
                            _ => return,
                        }
                    }
                };
                let subscribe = async {
                    if client
                        .batch_execute(&format!("LISTEN {CHANNEL}"))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    // Anything stored while no one listened is found by this poll.
                    wake.notify_one();
                    std::future::pending::<()>().await
                };
                tokio::select! {
                    _ = messages => {}
                    _ = subscribe => {}
                    _ = stop.changed() => return,
                }
            }
        });
    }
}

impl JobQueue for PgQueue {
    fn route<'a>(&'a self, limit: usize, route: Router<'a>) -> BoxFuture<'a, Result<usize>> {
        Box::pin(async move {
            let mut c = self.client().await?;
            let run = async {
                let tx = c.transaction().await?;
                // Another replica routing at the same moment takes other events.
                let rows = tx
                    .query(
                        "SELECT seq, event_id, source, body FROM listen_events
                         WHERE NOT routed ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED",
                        &[&(limit as i64)],
                    )
                    .await?;
                if rows.is_empty() {
                    return Ok(0);
                }
                let (mut seqs, mut matched) = (Vec::new(), Vec::new());
                let (mut j_event, mut j_action, mut j_target) =
                    (Vec::new(), Vec::new(), Vec::new());
                for r in &rows {
                    let ev = PendingEvent {
                        seq: r.get(0),
                        event_id: r.get(1),
                        source: r.get(2),
                        body: r.get(3),
                    };
                    let jobs: Vec<JobSpec> = route(&ev);
                    let names: Vec<&str> = jobs.iter().map(|(a, _)| a.as_str()).collect();
                    matched.push(json!(names).to_string());
                    seqs.push(ev.seq);
                    for (action, target) in jobs {
                        j_event.push(ev.event_id.clone());
                        j_action.push(action);
                        j_target.push(target);
                    }
                }
                if !j_event.is_empty() {
                    tx.execute(
                        "INSERT INTO listen_jobs (event_id, action, target, next_at_ms)
                         SELECT e, a, t, $4 FROM unnest($1::text[], $2::text[], $3::text[]) AS x(e, a, t)
                         ON CONFLICT (event_id, action) DO NOTHING",
                        &[&j_event, &j_action, &j_target, &now_ms()],
                    )
                    .await?;
                }
                tx.execute(
                    "UPDATE listen_events e SET routed = TRUE, matched = x.m
                     FROM unnest($1::int8[], $2::text[]) AS x(s, m) WHERE e.seq = x.s",
                    &[&seqs, &matched],
                )
                .await?;
                tx.commit().await?;
                Ok::<usize, tokio_postgres::Error>(rows.len())
            };
            run.await.map_err(|e| self.err("route events", e))
        })
    }

    fn claim(
        &self,
        owner: String,
        lease_ms: i64,
        targets: Vec<(String, i64)>,
        max: usize,
    ) -> BoxFuture<'_, Result<Vec<Job>>> {
        Box::pin(async move {
            let mut c = self.client().await?;
            if !self.targets_ready.load(Ordering::Relaxed) {
                let keys: Vec<&str> = targets.iter().map(|(t, _)| t.as_str()).collect();
                c.execute(
                    "INSERT INTO listen_targets (target, next_at_ms)
                     SELECT unnest($1::text[]), 0 ON CONFLICT (target) DO NOTHING",
                    &[&keys],
                )
                .await
                .map_err(|e| self.err("record the targets", e))?;
                self.targets_ready.store(true, Ordering::Relaxed);
            }
            let run = async {
                let tx = c.transaction().await?;
                let now = now_ms();
                let until = now + lease_ms;
                let paced = tx
                    .prepare_cached(
                        "SELECT next_at_ms FROM listen_targets WHERE target = $1 FOR UPDATE SKIP LOCKED",
                    )
                    .await?;
                let unpaced = tx
                    .prepare_cached("SELECT next_at_ms FROM listen_targets WHERE target = $1")
                    .await?;
                let take = tx
                    .prepare_cached(
                        "WITH c AS (
                             SELECT id, sending_at_ms IS NOT NULL AS sent FROM listen_jobs
                             WHERE state = 'queued' AND target = $1 AND next_at_ms <= $2
                             ORDER BY next_at_ms, id LIMIT $3 FOR UPDATE SKIP LOCKED)
                         UPDATE listen_jobs j SET lease_owner = $4, lease_until_ms = $5,
                                next_at_ms = $5, attempts = j.attempts + 1, sending_at_ms = $2
                         FROM c WHERE j.id = c.id
                         RETURNING j.id, j.event_id, j.action, j.attempts, c.sent",
                    )
                    .await?;
                let mut out: Vec<Job> = Vec::new();
                for (target, gap) in &targets {
                    if out.len() >= max {
                        break;
                    }
                    let row = tx
                        .query_opt(if *gap > 0 { &paced } else { &unpaced }, &[target])
                        .await?;
                    match row {
                        // Paced, and another replica is claiming for it right now.
                        None if *gap > 0 => continue,
                        Some(r) if r.get::<_, i64>(0) > now => continue,
                        _ => {}
                    }
                    let want = if *gap > 0 { 1 } else { max - out.len() } as i64;
                    let mut rows = tx
                        .query(&take, &[target, &now, &want, &owner, &until])
                        .await?;
                    rows.sort_by_key(|r| r.get::<_, i64>(0));
                    let got = !rows.is_empty();
                    for r in rows {
                        out.push(Job {
                            id: r.get(0),
                            event_id: r.get(1),
                            action: r.get(2),
                            target: target.clone(),
                            attempts: r.get::<_, i32>(3).max(0) as u32,
                            maybe_sent_before: r.get(4),
                        });
                    }
                    if *gap > 0 && got {
                        tx.execute(
                            "UPDATE listen_targets SET next_at_ms = GREATEST(next_at_ms, $2)
                             WHERE target = $1",
                            &[target, &(now + gap)],
                        )
                        .await?;
                    }
                }
                tx.commit().await?;
                Ok::<_, tokio_postgres::Error>(out)
            };
            run.await.map_err(|e| self.err("claim jobs", e))
        })
    }

    fn event_body(&self, key: String) -> BoxFuture<'_, Result<Option<EventBody>>> {
        Box::pin(async move {
            let c = self.client().await?;
            let st = c
                .prepare_cached("SELECT source, body FROM listen_events WHERE event_id = $1")
                .await
                .map_err(|e| self.err("read an event", e))?;
            let row = c
                .query_opt(&st, &[&key])
                .await
                .map_err(|e| self.err("read an event", e))?;
            Ok(row.map(|r| (r.get(0), r.get(1))))
        })
    }

    fn mark_delivered(&self, job: Arc<Job>, status: Option<u16>) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let status = status.map(i32::from);
            self.exec(
                "record a delivery",
                "UPDATE listen_jobs SET state = 'delivered', delivered_at_ms = $2, last_status = $3,
                        last_error = NULL, lease_owner = NULL, lease_until_ms = NULL
                 WHERE id = $1 AND state = 'queued'",
                &[&job.id, &now_ms(), &status],
            )
            .await
            .map(|_| ())
        })
    }

    fn retry_later(
        &self,
        job: Arc<Job>,
        owner: String,
        at_ms: i64,
        target_pause_until: Option<i64>,
        status: Option<u16>,
        error: String,
    ) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let status = status.map(i32::from);
            let mut c = self.client().await?;
            let run = async {
                let tx = c.transaction().await?;
                tx.execute(
                    "UPDATE listen_jobs SET next_at_ms = $3, lease_owner = NULL, lease_until_ms = NULL,
                            last_status = $4, last_error = $5, sending_at_ms = NULL
                     WHERE id = $1 AND lease_owner = $2 AND state = 'queued'",
                    &[&job.id, &owner, &at_ms, &status, &error],
                )
                .await?;
                if let Some(until) = target_pause_until {
                    tx.execute(
                        "INSERT INTO listen_targets (target, next_at_ms) VALUES ($1, $2)
                         ON CONFLICT (target) DO UPDATE
                         SET next_at_ms = GREATEST(listen_targets.next_at_ms, excluded.next_at_ms)",
                        &[&job.target, &until],
                    )
                    .await?;
                }
                tx.commit().await
            };
            run.await.map_err(|e| self.err("record a retry", e))
        })
    }

    fn dead_letter(
        &self,
        job: Arc<Job>,
        status: Option<u16>,
        reason: String,
    ) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let status = status.map(i32::from);
            let mut c = self.client().await?;
            let run = async {
                let tx = c.transaction().await?;
                let n = tx
                    .execute(
                        "UPDATE listen_jobs SET state = 'dead', last_status = $2, last_error = $3,
                                lease_owner = NULL, lease_until_ms = NULL
                         WHERE id = $1 AND state = 'queued'",
                        &[&job.id, &status, &reason],
                    )
                    .await?;
                if n == 1 {
                    tx.execute(
                        "INSERT INTO listen_dead_letters
                           (job_id, event_id, action, reason, http_status, dead_at_ms)
                         VALUES ($1, $2, $3, $4, $5, $6)",
                        &[
                            &job.id,
                            &job.event_id,
                            &job.action,
                            &reason,
                            &status,
                            &now_ms(),
                        ],
                    )
                    .await?;
                }
                tx.commit().await
            };
            run.await.map_err(|e| self.err("record a dead letter", e))
        })
    }

    fn prune(&self, cutoff_ms: i64, limit: usize) -> BoxFuture<'_, Result<usize>> {
        Box::pin(async move {
            let mut c = self.client().await?;
            let run = async {
                let tx = c.transaction().await?;
                // One replica prunes at a time; the others skip this round.
                let mine: bool = tx
                    .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&PRUNE_LOCK])
                    .await?
                    .get(0);
                if !mine {
                    return Ok(0);
                }
                let keys: Vec<String> = tx
                    .query(
                        "SELECT event_id FROM listen_events e
                         WHERE received_at_ms < $1 AND routed AND NOT EXISTS (
                           SELECT 1 FROM listen_jobs j WHERE j.event_id = e.event_id
                             AND j.state IN ('queued', 'dead'))
                         LIMIT $2",
                        &[&cutoff_ms, &(limit as i64)],
                    )
                    .await?
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
                tx.execute("DELETE FROM listen_jobs WHERE event_id = ANY($1)", &[&keys])
                    .await?;
                tx.execute(
                    "DELETE FROM listen_events WHERE event_id = ANY($1)",
                    &[&keys],
                )
                .await?;
                tx.commit().await?;
                Ok::<usize, tokio_postgres::Error>(keys.len())
            };
            run.await.map_err(|e| self.err("prune old events", e))
        })
    }

    fn queued_targets(&self) -> BoxFuture<'_, Result<Vec<String>>> {
        Box::pin(async move {
            let c = self.client().await?;
            let rows = c
                .query(
                    "SELECT DISTINCT target FROM listen_jobs WHERE state = 'queued'",
                    &[],
                )
                .await
                .map_err(|e| self.err("read the queued targets", e))?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })
    }

    fn dead_letter_target(
        &self,
        target: String,
        reason: String,
        limit: usize,
    ) -> BoxFuture<'_, Result<usize>> {
        Box::pin(async move {
            let mut c = self.client().await?;
            let run = async {
                let tx = c.transaction().await?;
                let ids: Vec<i64> = tx
                    .query(
                        "UPDATE listen_jobs SET state = 'dead', last_error = $2,
                                lease_owner = NULL, lease_until_ms = NULL
                         WHERE id IN (SELECT id FROM listen_jobs WHERE state = 'queued'
                                      AND target = $1 ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED)
                         RETURNING id",
                        &[&target, &reason, &(limit as i64)],
                    )
                    .await?
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
                tx.execute(
                    "INSERT INTO listen_dead_letters (job_id, event_id, action, reason, dead_at_ms)
                     SELECT id, event_id, action, $2, $3 FROM listen_jobs WHERE id = ANY($1)",
                    &[&ids, &reason, &now_ms()],
                )
                .await?;
                tx.commit().await?;
                Ok::<usize, tokio_postgres::Error>(ids.len())
            };
            run.await
                .map_err(|e| self.err("dead-letter a removed target's jobs", e))
        })
    }
}

// ---- `listen log` and `listen replay` ----

/// Stream the stored events (as [`super::store::for_each_log_entry`] does for SQLite)
/// through a portal, 500 rows at a time: memory stays flat however large the table is.
pub async fn for_each_log_entry(
    db: &Db,
    since_ms: i64,
    event_id: Option<&str>,
    mut each: impl FnMut(Value) -> bool,
) -> Result<()> {
    let mut c = db
        .client()
        .await
        .map_err(|e| db.fail("read the event log from", e))?;
    let keys: Vec<String> = event_id
        .map(|id| vec![event_key("webhook", id), event_key("click", id)])
        .unwrap_or_default();
    let all = event_id.is_none();
    let run = async {
        let tx = c.build_transaction().read_only(true).start().await?;
        let st = tx
            .prepare(
                "SELECT e.event_id, e.source, e.event_type, e.received_at_ms, e.headers, e.body, e.routed,
                   COALESCE((SELECT json_agg(json_build_object(
                        'action', j.action, 'state', j.state, 'attempts', j.attempts,
                        'last_status', j.last_status, 'last_error', j.last_error,
                        'delivered_at_ms', j.delivered_at_ms, 'sending', j.sending_at_ms IS NOT NULL)
                      ORDER BY j.id) FROM listen_jobs j WHERE j.event_id = e.event_id)::text, '[]')
                 FROM listen_events e
                 WHERE e.received_at_ms >= $1 AND ($2 OR e.event_id = ANY($3))
                 ORDER BY e.seq",
            )
            .await?;
        let portal = tx.bind(&st, &[&since_ms, &all, &keys]).await?;
        'rows: loop {
            let rows = tx.query_portal(&portal, 500).await?;
            if rows.is_empty() {
                break;
            }
            for r in rows {
                if !each(log_entry(&r)) {
                    break 'rows;
                }
            }
        }
        tx.commit().await
    };
    run.await
        .map_err(|e| db.fail("read the event log from", pg_err(&db.url, e)))
}

fn log_entry(r: &tokio_postgres::Row) -> Value {
    let key: String = r.get(0);
    let body: Vec<u8> = r.get(5);
    let routed: bool = r.get(6);
    let jobs: Vec<Value> = serde_json::from_str(r.get::<_, &str>(7)).unwrap_or_default();
    let actions: Vec<Value> = jobs
        .into_iter()
        .map(|j| {
            let state = match (j["state"].as_str(), j["sending"].as_bool()) {
                (Some("queued"), Some(true)) => "sending".to_string(),
                (s, _) => s.unwrap_or_default().to_string(),
            };
            json!({
                "action": j["action"],
                "state": state,
                "attempts": j["attempts"],
                "last_status": j["last_status"],
                "last_error": j["last_error"],
                "delivered_at": j["delivered_at_ms"].as_i64().map(rfc3339_ms),
            })
        })
        .collect();
    let outcome = if !routed {
        "queued"
    } else if actions.iter().any(|a| a["state"] == "dead") {
        "dead_letter"
    } else if actions
        .iter()
        .any(|a| a["state"] == "queued" || a["state"] == "sending")
    {
        "pending"
    } else if actions.is_empty() {
        "no_match"
    } else {
        "delivered"
    };
    json!({
        "event_id": key_id(&key),
        "source": r.get::<_, String>(1),
        "event_type": r.get::<_, Option<String>>(2),
        "received_at": rfc3339_ms(r.get(3)),
        "outcome": outcome,
        "actions": actions,
        "headers": serde_json::from_str::<Value>(r.get::<_, &str>(4)).unwrap_or(Value::Null),
        "raw_body": String::from_utf8_lossy(&body),
    })
}

fn rfc3339_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// Re-queue dead jobs (all, one event's, one action's); an action neither the database nor
/// `configured` knows is refused (exit 2), as with SQLite.
pub async fn replay(
    db: &Db,
    event_id: Option<&str>,
    action: Option<&str>,
    configured: &[String],
) -> Result<usize> {
    let mut c = db
        .client()
        .await
        .map_err(|e| db.fail("re-queue dead letters in", e))?;
    if let Some(a) = action {
        let rows = c
            .query(
                "SELECT DISTINCT action FROM listen_jobs ORDER BY action",
                &[],
            )
            .await
            .map_err(|e| db.fail("read the actions in", pg_err(&db.url, e)))?;
        let mut known: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        known.extend(configured.iter().cloned());
        known.sort();
        known.dedup();
        if !known.iter().any(|k| k == a) {
            let list = if known.is_empty() {
                "none yet".to_string()
            } else {
                known.join(", ")
            };
            let place = if configured.is_empty() {
                "the database".to_string()
            } else {
                "the config or the database".to_string()
            };
            return Err(Error::Usage(format!(
                "no action `{a}` in {place}; known actions: {list} (write it as rule/action, \
                 as `listen log` shows it)"
            )));
        }
    }
    let keys: Option<Vec<String>> =
        event_id.map(|id| vec![event_key("webhook", id), event_key("click", id)]);
    let run = async {
        let tx = c.transaction().await?;
        let n = tx
            .execute(
                "UPDATE listen_jobs SET state = 'queued', attempts = 0, next_at_ms = 0,
                        lease_owner = NULL, lease_until_ms = NULL, sending_at_ms = NULL
                 WHERE state = 'dead' AND ($1::text[] IS NULL OR event_id = ANY($1))
                   AND ($2::text IS NULL OR action = $2)",
                &[&keys, &action],
            )
            .await?;
        tx.execute(
            "UPDATE listen_dead_letters SET replayed_at_ms = $3
             WHERE replayed_at_ms IS NULL AND ($1::text[] IS NULL OR event_id = ANY($1))
               AND ($2::text IS NULL OR action = $2)",
            &[&keys, &action, &now_ms()],
        )
        .await?;
        if n > 0 {
            tx.execute("SELECT pg_notify($1, '')", &[&CHANNEL]).await?;
        }
        tx.commit().await?;
        Ok::<u64, tokio_postgres::Error>(n)
    };
    run.await
        .map(|n| n as usize)
        .map_err(|e| db.fail("re-queue dead letters in", pg_err(&db.url, e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_never_shows() {
        let url = DatabaseUrl::new("postgres://listen:s3cr%40t@db.internal:5432/listen");
        assert_eq!(
            url.redacted(),
            "postgres://listen:***@db.internal:5432/listen"
        );
        assert_eq!(url.redact("auth failed for s3cr@t"), "auth failed for ***");
        assert!(!format!("{url:?}").contains("s3cr"));
        let kv = DatabaseUrl::new("host=/tmp/x user=listen password=hunter2 dbname=l");
        assert_eq!(
            kv.redacted(),
            "host=/tmp/x user=listen password=*** dbname=l"
        );
        let bad = pg_config(&DatabaseUrl::new("postgres://u:hunter2@h:port/x"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            bad.contains("does not parse") && bad.contains("u:***@h") && !bad.contains("hunter2"),
            "{bad}"
        );
    }
}
