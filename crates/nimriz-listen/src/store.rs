//! The durable queue and log: one SQLite file in WAL mode with `synchronous=FULL`, so a
//! commit is on disk before the sender hears 200.
//!
//! Tables:
//! - `events`: every accepted request (raw body, selected headers, receive time), UNIQUE on
//!   `event_id` — the dedupe, kept `retention_days`. The stored key is namespaced by source
//!   (`webhook:<id>`, `click:<id>`, see [`event_key`]), so a click can never suppress a
//!   webhook. `routed = 0` until the rules have run.
//! - `jobs`: one row per (event, matching action), UNIQUE on that pair; `state` is
//!   `queued` → `delivered` | `dead`. A job is *ready* when `state = 'queued'` and
//!   `next_at_ms <= now`; claiming it sets `next_at_ms` to the end of its lease, so an
//!   expired lease makes it ready again without a second condition. Claims read the partial
//!   index `jobs_ready (target, next_at_ms, id) WHERE state = 'queued'`: O(log n) per target.
//!   The claim also records `sending_at_ms`: the request leaves right after it commits.
//! - `targets`: per-target pacing (`next_at_ms`: no request to that target before then).
//! - `dead_letters`: why a job died; `listen replay` re-queues it.
//!
//! Every write of a running `listen` goes through one writer thread ([`Writer`]), on one
//! connection, so SQLite's write lock is never contended inside the process. The writer
//! takes acknowledgements first: everything waiting from the HTTP side is committed in one
//! transaction (group commit: one fsync for many requests) before any worker change, and the
//! worker's changes (claims, outcomes, routing) are themselves grouped, a bounded number per
//! transaction, so an acknowledgement waits behind at most one small worker commit. When
//! another process holds the write lock, a worker transaction gives up after
//! [`WORKER_BUSY_TIMEOUT`] (the worker tries again later); only acknowledgements and
//! `/healthz`'s test write (which stands for them) wait for it, up to the ack timeout.

use nimriz_matrix_core::{Error, Result};
use rusqlite::{Connection, ErrorCode, OptionalExtension, TransactionBehavior, params};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{Notify, mpsc, oneshot};

pub mod profile;

/// `PRAGMA user_version` of the current layout, migrated to on open: 0 = the first layout
/// (un-namespaced event ids, leases outside `next_at_ms`); 2 = namespaced ids, but click ids
/// that were numbers may still be in their old form (`12345.0`); 3 = every id canonical.
pub const SCHEMA_VERSION: i64 = 3;

/// Worker changes committed together at most (bounds how long an ack can wait behind them).
const MAX_OPS_PER_COMMIT: usize = 128;

/// The longest an acknowledgement waits for others to join its group commit
/// (`WriterThread::fill_group`), and the step it waits in.
const MAX_GROUP_WAIT: Duration = Duration::from_millis(1);
const GROUP_WAIT_STEP: Duration = Duration::from_micros(100);

/// Worker changes that ride in an acknowledgement's transaction: each touches a few rows by
/// key or index, or (routing) at most `worker::ROUTE_BATCH` events by key, so one costs well
/// under a millisecond — less than the fsync its own transaction would add while acks wait.
/// Pruning and retiring work through up to hundreds of rows and get their own transaction.
/// At most [`FOLD_BUDGET`] of them per group (the first always rides).
const FOLDABLE: &[&str] = &["claim", "delivered", "retry", "dead", "route"];
const FOLD_BUDGET: Duration = Duration::from_micros(500);

/// How long a worker transaction waits for a write lock held by another process (`listen
/// replay`, a second `listen` on the same file) before it is refused and tried again later.
/// Short, so acknowledgements queued behind it get their turn: only an acknowledgement may
/// wait up to the ack timeout.
pub const WORKER_BUSY_TIMEOUT: Duration = Duration::from_millis(100);

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
    sending_at_ms   INTEGER,
    UNIQUE (event_id, action)
);
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
CREATE TABLE IF NOT EXISTS health (
    id    INTEGER PRIMARY KEY,
    at_ms INTEGER NOT NULL
);
"#;

const INDEXES: &str = r#"
CREATE INDEX IF NOT EXISTS events_unrouted ON events(seq) WHERE routed = 0;
CREATE INDEX IF NOT EXISTS events_received ON events(received_at_ms);
DROP INDEX IF EXISTS jobs_queued;
CREATE INDEX IF NOT EXISTS jobs_ready ON jobs(target, next_at_ms, id) WHERE state = 'queued';
"#;

/// Version 0 → 2: namespace the event ids by source (in events, jobs and dead letters), fold
/// leases into `next_at_ms`, add `sending_at_ms`. One transaction, once per store.
const MIGRATE_0_TO_2: &str = r#"
UPDATE jobs SET event_id = COALESCE(
    (SELECT source FROM events WHERE events.event_id = jobs.event_id), 'webhook') || ':' || event_id;
UPDATE dead_letters SET event_id = COALESCE(
    (SELECT source FROM events WHERE events.event_id = dead_letters.event_id), 'webhook') || ':' || event_id;
UPDATE events SET event_id = source || ':' || event_id;
UPDATE jobs SET next_at_ms = max(next_at_ms, COALESCE(lease_until_ms, 0)) WHERE state = 'queued';
"#;

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The stored dedupe key of an event: `"{source}:{id}"`. Webhook ids and click ids live in
/// separate namespaces, so an (unsigned) click event can never shadow a signed webhook.
pub fn event_key(source: &str, id: &str) -> String {
    format!("{source}:{id}")
}

/// The event id (as the sender gave it, canonicalised) of a stored key.
pub fn key_id(key: &str) -> &str {
    key.split_once(':').map_or(key, |(_, id)| id)
}

fn db_err(path: &Path, what: &'static str, e: rusqlite::Error) -> Error {
    Error::io(what, path, std::io::Error::other(e))
}

/// SQLite says the file is damaged (or not a database at all).
pub fn is_corruption(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase)
    )
}

fn corrupt_err(path: &Path, detail: String) -> Error {
    Error::io(
        "use the event store (it is corrupt; move it aside to start a new one, or restore a \
         backup)",
        path,
        std::io::Error::other(detail),
    )
}

/// Open (creating if needed) the store with the durability settings every connection needs,
/// migrating an older layout. `busy` is how long to wait for another connection's write lock.
pub fn open_with(path: &Path, busy: Duration) -> Result<Connection> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("create the folder of", path, e))?;
    }
    let mut conn = Connection::open(path).map_err(|e| db_err(path, "open the event store", e))?;
    let mut setup = || -> rusqlite::Result<()> {
        conn.busy_timeout(busy)?;
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(rusqlite::Error::InvalidParameterName(format!(
                "journal_mode stayed {mode} (WAL needs a local file system)"
            )));
        }
        conn.pragma_update(None, "synchronous", "FULL")?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version >= SCHEMA_VERSION {
            return Ok(());
        }
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Re-read under the write lock: another process may have migrated meanwhile.
        let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version < SCHEMA_VERSION {
            let existed: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'events')",
                [],
                |r| r.get(0),
            )?;
            tx.execute_batch(SCHEMA)?;
            if existed && version < 2 {
                let has_sending: bool = tx.query_row(
                    "SELECT EXISTS (SELECT 1 FROM pragma_table_info('jobs') WHERE name = 'sending_at_ms')",
                    [],
                    |r| r.get(0),
                )?;
                if !has_sending {
                    tx.execute_batch("ALTER TABLE jobs ADD COLUMN sending_at_ms INTEGER;")?;
                }
                tx.execute_batch(MIGRATE_0_TO_2)?;
            }
            if existed {
                canonicalize_click_ids(&tx)?;
            }
            tx.execute_batch(INDEXES)?;
            tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        }
        tx.commit()
    };
    setup().map_err(|e| {
        if is_corruption(&e) {
            corrupt_err(path, e.to_string())
        } else {
            db_err(path, "set up the event store", e)
        }
    })?;
    Ok(conn)
}

/// Version 2 → 3: a click id an earlier version stored from a JSON number in its old form
/// (`click:12345.0`, `click:1.2345e4`) is rewritten to the canonical one (`click:12345`,
/// see `server::canonical_id`), in events, jobs and dead letters, so a redelivery after
/// the upgrade still answers `duplicate`. The id is recomputed from the stored body, so a
/// string id (`"12345.0"`) is left as it is. Only keys with `.`, `e` or `E` can be in the
/// old form, so the other rows are not read. When the canonical key is already taken (the
/// old version stored `12345` and `12345.0` as two events) the row keeps its key. Returns
/// how many events were rewritten.
fn canonicalize_click_ids(tx: &Connection) -> rusqlite::Result<usize> {
    let candidates: Vec<(i64, String, Vec<u8>)> = tx
        .prepare(
            "SELECT seq, event_id, body FROM events
             WHERE source = 'click' AND event_id GLOB 'click:*[.eE]*'",
        )?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut rewritten = 0;
    for (seq, old, body) in candidates {
        let Ok(Value::Object(event)) = serde_json::from_slice::<Value>(&body) else {
            continue;
        };
        let new = event_key("click", &super::server::click_event_id(&event, &body));
        if new == old {
            continue;
        }
        let taken: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM events WHERE event_id = ?1)",
            [&new],
            |r| r.get(0),
        )?;
        if taken {
            continue;
        }
        tx.execute(
            "UPDATE events SET event_id = ?2 WHERE seq = ?1",
            params![seq, new],
        )?;
        tx.execute(
            "UPDATE jobs SET event_id = ?2 WHERE event_id = ?1",
            params![old, new],
        )?;
        tx.execute(
            "UPDATE dead_letters SET event_id = ?2 WHERE event_id = ?1",
            params![old, new],
        )?;
        rewritten += 1;
    }
    Ok(rewritten)
}

/// [`open_with`] for the commands (`log`, `replay`): they may wait a while for the lock.
pub fn open(path: &Path) -> Result<Connection> {
    open_with(path, Duration::from_secs(5))
}

/// `PRAGMA quick_check` (a full read of the file): run once at start, so a damaged store
/// stops `listen` with exit 4 instead of answering 503 to everything.
pub fn check_integrity(conn: &Connection, path: &Path) -> Result<()> {
    let run = || -> rusqlite::Result<Vec<String>> {
        let mut st = conn.prepare("PRAGMA quick_check(5)")?;
        let rows = st.query_map([], |r| r.get::<_, String>(0))?;
        rows.collect()
    };
    match run() {
        Ok(lines) if lines.len() == 1 && lines[0] == "ok" => Ok(()),
        Ok(lines) => Err(corrupt_err(path, lines.join("; "))),
        Err(e) => Err(corrupt_err(path, e.to_string())),
    }
}

/// The identity of a file (device + inode), to notice that the store was deleted or replaced
/// under a running `listen`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId(u64, u64);

#[cfg(unix)]
pub fn file_id(path: &Path) -> Option<FileId> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path)
        .ok()
        .map(|m| FileId(m.dev(), m.ino()))
}

#[cfg(not(unix))]
pub fn file_id(path: &Path) -> Option<FileId> {
    std::fs::metadata(path).ok().map(|_| FileId(0, 0))
}

/// What the receiver knows about its store's health; shared by the writer, the HTTP side and
/// `/healthz`.
#[derive(Debug, Default)]
pub struct Health {
    /// Sticky: the store was deleted, replaced or found corrupt. Nothing is acknowledged
    /// any more; a supervisor should restart `listen`.
    fatal: Mutex<Option<String>>,
    /// The last commit failed (disk full, lock held by another process): clears on success.
    last_error: Mutex<Option<String>>,
}

impl Health {
    pub fn fatal(&self) -> Option<String> {
        self.fatal.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Record a fatal condition; says so on stderr the first time (even with `--quiet`).
    pub fn set_fatal(&self, why: String) {
        let mut f = self.fatal.lock().unwrap_or_else(|p| p.into_inner());
        if f.is_none() {
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                format!(
                    "error: {why}; no event is acknowledged any more (503): restart `listen`\n"
                )
                .as_bytes(),
            );
            *f = Some(why);
        }
    }

    fn set_last(&self, e: Option<String>) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = e;
    }

    /// `Ok` when acknowledging works, else why not.
    pub fn status(&self) -> std::result::Result<(), String> {
        if let Some(f) = self.fatal() {
            return Err(f);
        }
        match self
            .last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            Some(e) => Err(format!("the last commit failed: {e}")),
            None => Ok(()),
        }
    }
}

/// One accepted request, ready to store.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// The canonical event id (see `server::canonical_id`), without the source prefix.
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

/// An acknowledgement waiting for the writer, with the time it was queued.
type PendingAck = (NewEvent, Reply, std::time::Instant);

/// How often the checkpointer copies the WAL back into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);

/// A WAL longer than this (frames of 4 KiB: 16 MiB) is restarted by the writer: a busy
/// writer keeps appending while the checkpointer copies, so the WAL would otherwise never
/// be fully copied at the moment a transaction begins, and never start over.
const WAL_RESTART_FRAMES: i64 = 4096;

/// After a restart the WAL file is cut back to this size (bytes).
const WAL_SIZE_LIMIT: i64 = 32 << 20;

/// Called once the transaction an op ran in is committed (`Ok`) or not (`Err`).
type Done = Box<dyn FnOnce(std::result::Result<(), String>) + Send>;

/// A worker change: runs inside the writer's transaction (in its own savepoint), or is
/// refused without running when no transaction could be started.
trait WorkerOp: Send {
    fn run(self: Box<Self>, conn: &Connection) -> Done;
    fn refuse(self: Box<Self>, why: String);
    /// What it is (`claim`, `route`, …), for the profile.
    fn label(&self) -> &'static str;
}

type Op = Box<dyn WorkerOp>;

struct OpImpl<T, F> {
    label: &'static str,
    f: F,
    tx: oneshot::Sender<std::result::Result<T, String>>,
}

impl<T, F> WorkerOp for OpImpl<T, F>
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
{
    fn run(self: Box<Self>, conn: &Connection) -> Done {
        let OpImpl { f, tx, .. } = *self;
        let result = in_savepoint(conn, f);
        Box::new(move |commit: std::result::Result<(), String>| {
            let out = match (result, commit) {
                (Err(e), _) => Err(e.to_string()),
                (Ok(_), Err(c)) => Err(c),
                (Ok(v), Ok(())) => Ok(v),
            };
            let _ = tx.send(out);
        })
    }

    fn refuse(self: Box<Self>, why: String) {
        let _ = self.tx.send(Err(why));
    }

    fn label(&self) -> &'static str {
        self.label
    }
}

enum Msg {
    /// With the time it was queued (for the profile).
    Ack(NewEvent, Reply, std::time::Instant),
    Op(Op),
    /// `/healthz`'s test write: after acknowledgements, before worker changes, and allowed
    /// to wait for a foreign lock as long as an acknowledgement may (it tests exactly that).
    Probe(Op),
}

/// Group-commit statistics (for the benchmark and `--verbose`).
#[derive(Debug, Default)]
pub struct WriterStats {
    pub commits: AtomicU64,
    pub events: AtomicU64,
    pub largest_batch: AtomicU64,
    /// Worker transactions and the changes in them.
    pub op_commits: AtomicU64,
    pub ops: AtomicU64,
    /// Worker changes committed inside an acknowledgement's transaction.
    pub folded: AtomicU64,
}

/// Handle to the single writer thread.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Msg>,
    pub stats: Arc<WriterStats>,
    pub health: Arc<Health>,
    /// An acknowledgement not durable within this answers 503.
    pub ack_timeout: Duration,
}

impl Writer {
    /// Start the writer thread on its own connection. `max_batch` = 1 turns grouping off
    /// (used to measure what grouping buys). `stored` is notified after each commit of new
    /// events. `ack_timeout` bounds how long an acknowledgement (and the lock wait) may take.
    pub fn start(
        path: &Path,
        max_batch: usize,
        stored: Arc<Notify>,
        ack_timeout: Duration,
    ) -> Result<(Self, std::thread::JoinHandle<()>)> {
        Self::start_with(path, max_batch, stored, ack_timeout, WAL_RESTART_FRAMES)
    }

    /// [`Writer::start`] with another WAL length (frames) past which the writer restarts it.
    fn start_with(
        path: &Path,
        max_batch: usize,
        stored: Arc<Notify>,
        ack_timeout: Duration,
        restart_frames: i64,
    ) -> Result<(Self, std::thread::JoinHandle<()>)> {
        let conn = open_with(path, ack_timeout)?;
        check_integrity(&conn, path)?;
        // No checkpoint inside this connection's commits (SQLite's default runs one in the
        // commit that passes 1,000 WAL pages, and an acknowledgement would wait for it): the
        // checkpointer thread copies the WAL back on its own connection instead.
        conn.pragma_update(None, "wal_autocheckpoint", 0)
            .and_then(|()| conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT))
            .map_err(|e| db_err(path, "set up the event store", e))?;
        // Every statement the writer runs stays prepared: they are ~20 (acks, claims,
        // outcomes, routing, savepoints), more than rusqlite's default cache of 16.
        conn.set_prepared_statement_cache_capacity(64);
        let checkpointer = Checkpointer::start(path)?;
        let id = file_id(path);
        let (tx, rx) = mpsc::channel(8192);
        let stats = Arc::new(WriterStats::default());
        let health = Arc::new(Health::default());
        let thread = WriterThread {
            conn,
            path: path.to_path_buf(),
            id,
            max_batch: max_batch.max(1),
            stats: stats.clone(),
            health: health.clone(),
            stored,
            ack_timeout,
            busy: ack_timeout,
            profile: profile::Profile::new(profile::enabled()),
            wal_frames: checkpointer.wal_frames.clone(),
            restart_frames,
            last_ack_commit: Duration::ZERO,
            checkpointer: Some(checkpointer),
        };
        let handle = std::thread::Builder::new()
            .name("listen-writer".into())
            .spawn(move || thread.run(rx))
            .map_err(|e| Error::io("start the writer thread for", path, e))?;
        Ok((
            Writer {
                tx,
                stats,
                health,
                ack_timeout,
            },
            handle,
        ))
    }

    /// Store one event; resolves once it is committed (or refused). Refused without waiting
    /// when the store is known to be gone; after `ack_timeout` when it cannot be made durable
    /// in time (it may still be committed later: the sender's retry then reads `duplicate`).
    pub async fn ingest(&self, event: NewEvent) -> std::result::Result<Ingest, String> {
        if let Some(f) = self.health.fatal() {
            return Err(f);
        }
        let (reply, answer) = oneshot::channel();
        let wait = async {
            self.tx
                .send(Msg::Ack(event, reply, std::time::Instant::now()))
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
                    "not durable within {} ms (the store is busy or locked by another process)",
                    self.ack_timeout.as_millis()
                ))
            })
    }

    /// Run `f` in the writer's next worker transaction (grouped with other worker changes,
    /// after every waiting acknowledgement). Its result arrives once that transaction is
    /// committed; an error in `f` rolls back only `f`'s own changes.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> std::result::Result<T, String> {
        self.run_as("op", f).await
    }

    /// [`Writer::run`], named `label` in the profile.
    pub async fn run_as<T: Send + 'static>(
        &self,
        label: &'static str,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> std::result::Result<T, String> {
        self.send_op(label, f, Msg::Op).await
    }

    async fn send_op<T: Send + 'static>(
        &self,
        label: &'static str,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
        msg: fn(Op) -> Msg,
    ) -> std::result::Result<T, String> {
        let (tx, rx) = oneshot::channel();
        let op: Op = Box::new(OpImpl { label, f, tx });
        self.tx
            .send(msg(op))
            .await
            .map_err(|_| "the writer has stopped".to_string())?;
        rx.await
            .unwrap_or_else(|_| Err("the writer has stopped".to_string()))
    }

    /// For `/healthz`: the store is still the file opened, and a small write commits.
    pub async fn probe(&self) -> std::result::Result<(), String> {
        if let Some(f) = self.health.fatal() {
            return Err(f);
        }
        let probe = self.send_op(
            "probe",
            |conn| {
                conn.execute(
                    "INSERT INTO health (id, at_ms) VALUES (1, ?1)
                     ON CONFLICT (id) DO UPDATE SET at_ms = excluded.at_ms",
                    [now_ms()],
                )?;
                conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
                    r.get::<_, i64>(0)
                })
            },
            Msg::Probe,
        );
        match tokio::time::timeout(self.ack_timeout, probe).await {
            Err(_) => Err(format!(
                "a test write did not commit within {} ms",
                self.ack_timeout.as_millis()
            )),
            Ok(Err(e)) => Err(self.health.fatal().unwrap_or(e)),
            Ok(Ok(_)) => self.health.fatal().map_or(Ok(()), Err),
        }
    }
}

fn in_savepoint<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    // Cached: every worker change runs one, thousands a second under load.
    conn.prepare_cached("SAVEPOINT op")?.execute([])?;
    match f(conn) {
        Ok(v) => {
            conn.prepare_cached("RELEASE op")?.execute([])?;
            Ok(v)
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK TO op; RELEASE op");
            Err(e)
        }
    }
}

struct WriterThread {
    conn: Connection,
    path: PathBuf,
    id: Option<FileId>,
    max_batch: usize,
    stats: Arc<WriterStats>,
    health: Arc<Health>,
    stored: Arc<Notify>,
    ack_timeout: Duration,
    /// The busy timeout the connection has now (acks and worker changes differ).
    busy: Duration,
    profile: profile::Profile,
    /// Stopped (and waited for) when the writer ends.
    checkpointer: Option<Checkpointer>,
    /// The WAL's length in frames at the checkpointer's last look.
    wal_frames: Arc<std::sync::atomic::AtomicI64>,
    /// Past this length the writer restarts the WAL ([`WAL_RESTART_FRAMES`]).
    restart_frames: i64,
    /// How long the last acknowledgement commit took (bounds the wait to fill a group).
    last_ack_commit: Duration,
}

/// A thread with its own connection that runs a PASSIVE checkpoint every
/// [`CHECKPOINT_EVERY`]: it copies committed WAL pages into the database file beside the
/// writer (a passive checkpoint takes no write lock, so neither waits for the other), and
/// the writer's commits only ever append to the WAL and fsync it.
struct Checkpointer {
    stop: std::sync::mpsc::SyncSender<()>,
    thread: std::thread::JoinHandle<()>,
    /// The WAL's length after the last checkpoint, in frames.
    wal_frames: Arc<std::sync::atomic::AtomicI64>,
}

impl Checkpointer {
    fn start(path: &Path) -> Result<Self> {
        let conn = open_with(path, Duration::from_millis(100))?;
        let (stop, stopped) = std::sync::mpsc::sync_channel::<()>(1);
        let wal_frames = Arc::new(std::sync::atomic::AtomicI64::new(0));
        let frames = wal_frames.clone();
        let thread = std::thread::Builder::new()
            .name("listen-checkpoint".into())
            .spawn(move || {
                let mut profile = profile::CheckpointProfile::new(profile::enabled());
                let mut backfilled = 0i64;
                loop {
                    match stopped.recv_timeout(CHECKPOINT_EVERY) {
                        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                        _ => return,
                    }
                    let t0 = std::time::Instant::now();
                    // (busy, frames in the WAL, frames copied so far); an error (the store
                    // gone or damaged) is the writer's to report.
                    let r: rusqlite::Result<(i64, i64, i64)> =
                        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                        });
                    if let Ok((_, wal, done)) = r {
                        let copied = if done >= backfilled {
                            done - backfilled
                        } else {
                            done
                        };
                        backfilled = done;
                        frames.store(wal, Ordering::Relaxed);
                        profile.run(t0.elapsed(), copied, wal);
                    }
                }
            })
            .map_err(|e| Error::io("start the checkpoint thread for", path, e))?;
        Ok(Checkpointer {
            stop,
            thread,
            wal_frames,
        })
    }

    fn stop(self) {
        drop(self.stop);
        let _ = self.thread.join();
    }
}

impl WriterThread {
    /// Wait at most `d` for another process's write lock from now on.
    fn set_busy(&mut self, d: Duration) {
        if self.busy != d && self.conn.busy_timeout(d).is_ok() {
            self.busy = d;
        }
    }

    fn run(mut self, rx: mpsc::Receiver<Msg>) {
        self.serve(rx);
        if let Some(c) = self.checkpointer.take() {
            c.stop();
        }
    }

    fn serve(&mut self, mut rx: mpsc::Receiver<Msg>) {
        let mut acks: Vec<PendingAck> = Vec::new();
        let mut probes: Vec<Op> = Vec::new();
        let mut ops: std::collections::VecDeque<Op> = std::collections::VecDeque::new();
        let mut open = true;
        loop {
            if acks.is_empty() && probes.is_empty() && ops.is_empty() {
                if !open {
                    return;
                }
                match rx.blocking_recv() {
                    Some(m) => sort(m, &mut acks, &mut probes, &mut ops),
                    None => return,
                }
            }
            // Take everything waiting, so acknowledgements that arrived meanwhile go first.
            loop {
                match rx.try_recv() {
                    Ok(m) => sort(m, &mut acks, &mut probes, &mut ops),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => {
                        open = false;
                        break;
                    }
                }
            }
            if !acks.is_empty() {
                self.fill_group(&mut rx, &mut acks, &mut probes, &mut ops, &mut open);
                // A request that gave up (503 after the timeout) is not written.
                acks.retain(|(_, reply, _)| !reply.is_closed());
                while !acks.is_empty() {
                    let n = acks.len().min(self.max_batch);
                    let batch: Vec<_> = acks.drain(..n).collect();
                    self.commit_acks(batch, &mut ops);
                }
                continue;
            }
            if !probes.is_empty() {
                let batch = std::mem::take(&mut probes);
                self.commit_ops(batch, self.ack_timeout);
                continue;
            }
            if self.wal_frames.load(Ordering::Relaxed) > self.restart_frames {
                self.restart_wal();
                continue;
            }
            let n = ops.len().min(MAX_OPS_PER_COMMIT);
            let batch: Vec<Op> = ops.drain(..n).collect();
            self.commit_ops(batch, WORKER_BUSY_TIMEOUT.min(self.ack_timeout));
        }
    }

    /// Concurrent senders come back in waves: while one group commits, the senders answered
    /// by the previous commit send again, so without waiting the groups settle at about half
    /// the senders each, and every group pays a whole fsync. When more than one
    /// acknowledgement is waiting (so others are likely on their way), wait in short steps
    /// for more while each step brings some, at most half the last commit's time and
    /// [`MAX_GROUP_WAIT`]. A lone sender never waits.
    fn fill_group(
        &self,
        rx: &mut mpsc::Receiver<Msg>,
        acks: &mut Vec<PendingAck>,
        probes: &mut Vec<Op>,
        ops: &mut std::collections::VecDeque<Op>,
        open: &mut bool,
    ) {
        if acks.len() < 2 || acks.len() >= self.max_batch || !*open {
            return;
        }
        let deadline = std::time::Instant::now() + (self.last_ack_commit / 2).min(MAX_GROUP_WAIT);
        while std::time::Instant::now() < deadline && acks.len() < self.max_batch {
            std::thread::sleep(GROUP_WAIT_STEP);
            let before = acks.len();
            loop {
                match rx.try_recv() {
                    Ok(m) => sort(m, acks, probes, ops),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => {
                        *open = false;
                        return;
                    }
                }
            }
            if acks.len() == before {
                return;
            }
        }
    }

    /// A passive checkpoint on the writer's own connection, between two transactions and
    /// only when no acknowledgement is waiting: it copies what the checkpointer has not yet
    /// (about [`CHECKPOINT_EVERY`] of commits), so the writer's next transaction starts the
    /// WAL over from its beginning.
    fn restart_wal(&mut self) {
        let t0 = std::time::Instant::now();
        let _ = self
            .conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
        // Wait for the checkpointer's next look before trying again.
        self.wal_frames.store(0, Ordering::Relaxed);
        self.profile
            .ops(&[("wal restart", t0.elapsed())], t0.elapsed());
    }

    /// After a commit: is the file at the path still the one this connection writes to?
    fn check_identity(&self) -> std::result::Result<(), String> {
        if let Some(f) = self.health.fatal() {
            return Err(f);
        }
        if file_id(&self.path) != self.id {
            let why = format!(
                "the event store {} was deleted or replaced after `listen` opened it",
                self.path.display()
            );
            self.health.set_fatal(why.clone());
            return Err(why);
        }
        Ok(())
    }

    fn failed(&self, e: &rusqlite::Error) -> String {
        if is_corruption(e) {
            let why = format!("the event store {} is corrupt: {e}", self.path.display());
            self.health.set_fatal(why.clone());
            return why;
        }
        let msg = e.to_string();
        self.health.set_last(Some(msg.clone()));
        msg
    }

    /// Commit a group of acknowledgements, and in the same transaction (after the events,
    /// each in its own savepoint) the cheap worker changes at the head of `ops` — as many
    /// as fit in [`FOLD_BUDGET`]: they share the fsync the group pays anyway instead of
    /// each paying its own after it. An op that fails rolls back only itself; a commit
    /// that fails fails the group and the folded ops alike (both are retried).
    fn commit_acks(&mut self, batch: Vec<PendingAck>, ops: &mut std::collections::VecDeque<Op>) {
        if let Some(f) = self.health.fatal() {
            for (_, reply, _) in batch {
                let _ = reply.send(Err(f.clone()));
            }
            return;
        }
        self.set_busy(self.ack_timeout);
        let t0 = std::time::Instant::now();
        let events: Vec<&NewEvent> = batch.iter().map(|(e, _, _)| e).collect();
        let mut done: Vec<Done> = Vec::new();
        let mut timed = Vec::new();
        let result = (|| {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            let outcomes = insert_events(&tx, &events)?;
            let folding = std::time::Instant::now();
            // The first always fits: the budget bounds the rest.
            while (done.is_empty() || folding.elapsed() < FOLD_BUDGET)
                && ops.front().is_some_and(|op| FOLDABLE.contains(&op.label()))
            {
                let Some(op) = ops.pop_front() else { break };
                let (label, t) = (op.label(), std::time::Instant::now());
                done.push(op.run(&tx));
                timed.push((label, t.elapsed()));
            }
            tx.commit()?;
            Ok(outcomes)
        })()
        .map_err(|e: rusqlite::Error| self.failed(&e))
        .and_then(|outcomes| self.check_identity().map(|()| outcomes));
        self.last_ack_commit = t0.elapsed();
        if self.profile.on() {
            let oldest = batch.iter().map(|(_, _, q)| *q).min().unwrap_or(t0);
            self.profile
                .acks(batch.len(), t0.elapsed(), oldest.elapsed());
            if !timed.is_empty() {
                self.profile.folded(&timed);
            }
        }
        let commit = result.as_ref().map(|_| ()).map_err(Clone::clone);
        match result {
            Ok(outcomes) => {
                self.health.set_last(None);
                let s = &self.stats;
                s.commits.fetch_add(1, Ordering::Relaxed);
                s.events.fetch_add(batch.len() as u64, Ordering::Relaxed);
                s.largest_batch
                    .fetch_max(batch.len() as u64, Ordering::Relaxed);
                s.ops.fetch_add(done.len() as u64, Ordering::Relaxed);
                s.folded.fetch_add(done.len() as u64, Ordering::Relaxed);
                self.stored.notify_one();
                for ((_, reply, _), outcome) in batch.into_iter().zip(outcomes) {
                    let _ = reply.send(Ok(outcome));
                }
            }
            Err(msg) => {
                for (_, reply, _) in batch {
                    let _ = reply.send(Err(msg.clone()));
                }
            }
        }
        for d in done {
            d(commit.clone());
        }
    }

    /// Run `batch` in one transaction, waiting at most `busy` for another process's lock.
    fn commit_ops(&mut self, batch: Vec<Op>, busy: Duration) {
        let n = batch.len() as u64;
        self.set_busy(busy);
        let t0 = std::time::Instant::now();
        let begun = self
            .conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(|e| self.failed(&e));
        if let Err(msg) = begun {
            // Nothing ran: tell every op (the worker tries again later).
            for op in batch {
                op.refuse(msg.clone());
            }
            return;
        }
        let mut timed = Vec::with_capacity(batch.len());
        let done: Vec<Done> = batch
            .into_iter()
            .map(|op| {
                let (label, t) = (op.label(), std::time::Instant::now());
                let d = op.run(&self.conn);
                timed.push((label, t.elapsed()));
                d
            })
            .collect();
        let commit = match self.conn.execute_batch("COMMIT") {
            Ok(()) => self.check_identity(),
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                Err(self.failed(&e))
            }
        };
        self.profile.ops(&timed, t0.elapsed());
        if commit.is_ok() {
            self.health.set_last(None);
            self.stats.op_commits.fetch_add(1, Ordering::Relaxed);
            self.stats.ops.fetch_add(n, Ordering::Relaxed);
        }
        for d in done {
            d(commit.clone());
        }
    }
}

fn sort(
    m: Msg,
    acks: &mut Vec<PendingAck>,
    probes: &mut Vec<Op>,
    ops: &mut std::collections::VecDeque<Op>,
) {
    match m {
        Msg::Ack(e, r, q) => acks.push((e, r, q)),
        Msg::Probe(op) => probes.push(op),
        Msg::Op(op) => ops.push_back(op),
    }
}

/// Insert a batch of new events in one transaction (tests).
#[cfg(test)]
fn commit_events(conn: &mut Connection, batch: &[&NewEvent]) -> rusqlite::Result<Vec<Ingest>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let outcomes = insert_events(&tx, batch)?;
    tx.commit()?;
    Ok(outcomes)
}

/// Insert a batch of new events inside the caller's transaction; an id already stored (or
/// twice in the batch) is a duplicate.
fn insert_events(tx: &Connection, batch: &[&NewEvent]) -> rusqlite::Result<Vec<Ingest>> {
    let mut outcomes = Vec::with_capacity(batch.len());
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO events (event_id, source, event_type, received_at_ms, headers, body)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (event_id) DO NOTHING",
        )?;
        for e in batch {
            let n = insert.execute(params![
                event_key(e.source, &e.event_id),
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
    Ok(outcomes)
}

/// An event not yet routed through the rules.
#[derive(Debug, Clone)]
pub struct PendingEvent {
    pub seq: i64,
    /// The stored key (`source:id`).
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
    /// The stored key of its event (`source:id`).
    pub event_id: String,
    pub action: String,
    pub target: String,
    /// Including this one.
    pub attempts: u32,
    /// An earlier attempt's request left (`sending_at_ms` set) and its outcome was never
    /// recorded (a crash, or a lost write): this attempt may repeat it.
    pub maybe_sent_before: bool,
}

/// The events still to route, oldest first.
pub fn unrouted(conn: &Connection, limit: usize) -> rusqlite::Result<Vec<PendingEvent>> {
    let mut st = conn.prepare_cached(
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
}

/// Record the jobs for routed events and mark them routed. Re-running it for the same event
/// adds nothing (UNIQUE (event_id, action)).
pub fn record_routes(
    conn: &Connection,
    routed: &[(i64, String, Vec<JobSpec>)],
    now: i64,
) -> rusqlite::Result<()> {
    let mut add = conn.prepare_cached(
        "INSERT INTO jobs (event_id, action, target, next_at_ms) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (event_id, action) DO NOTHING",
    )?;
    let mut mark =
        conn.prepare_cached("UPDATE events SET routed = 1, matched = ?2 WHERE seq = ?1")?;
    for (seq, event_id, jobs) in routed {
        for (action, target) in jobs {
            add.execute(params![event_id, action, target, now])?;
        }
        let names: Vec<&str> = jobs.iter().map(|(a, _)| a.as_str()).collect();
        mark.execute(params![seq, json!(names).to_string()])?;
    }
    Ok(())
}

/// The query a claim runs per target; `EXPLAIN QUERY PLAN` of it is tested to read the
/// `jobs_ready` index (no scan of the queue).
pub const CLAIM_SELECT: &str = "SELECT id, event_id, action, attempts, sending_at_ms IS NOT NULL
     FROM jobs WHERE state = 'queued' AND target = ?1 AND next_at_ms <= ?2
     ORDER BY next_at_ms, id LIMIT ?3";

/// Claim up to `max` ready jobs, visiting `targets` (key, pacing gap in ms) in order: a
/// target paced until later is skipped, a paced target gives one job and reserves its next
/// slot `gap` later. Each claimed job gets a lease until `now + lease_ms` (it is ready again
/// then: its worker is presumed dead) and its `sending_at_ms` mark.
pub fn claim(
    conn: &Connection,
    owner: &str,
    lease_ms: i64,
    now: i64,
    targets: &[(String, i64)],
    max: usize,
) -> rusqlite::Result<Vec<Job>> {
    let mut out = Vec::new();
    let mut paused = conn.prepare_cached("SELECT next_at_ms FROM targets WHERE target = ?1")?;
    let mut select = conn.prepare_cached(CLAIM_SELECT)?;
    let mut lease = conn.prepare_cached(
        "UPDATE jobs SET lease_owner = ?2, lease_until_ms = ?3, next_at_ms = ?3,
                attempts = attempts + 1, sending_at_ms = ?4
         WHERE id = ?1",
    )?;
    let mut reserve = conn.prepare_cached(
        "INSERT INTO targets (target, next_at_ms) VALUES (?1, ?2)
         ON CONFLICT (target) DO UPDATE SET next_at_ms = max(next_at_ms, excluded.next_at_ms)",
    )?;
    for (target, gap) in targets {
        if out.len() >= max {
            break;
        }
        let until: Option<i64> = paused.query_row([target], |r| r.get(0)).optional()?;
        if until.is_some_and(|u| u > now) {
            continue;
        }
        let want = if *gap > 0 { 1 } else { max - out.len() };
        let rows: Vec<(i64, String, String, u32, bool)> = select
            .query_map(params![target, now, want as i64], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })?
            .collect::<rusqlite::Result<_>>()?;
        for (id, event_id, action, attempts, maybe_sent_before) in rows {
            lease.execute(params![id, owner, now + lease_ms, now])?;
            out.push(Job {
                id,
                event_id,
                action,
                target: target.clone(),
                attempts: attempts + 1,
                maybe_sent_before,
            });
        }
        if *gap > 0 && out.last().is_some_and(|j| &j.target == target) {
            reserve.execute(params![target, now + gap])?;
        }
    }
    Ok(out)
}

/// The targets that have queued jobs (read once at start, to find jobs no configured action
/// can claim any more).
pub fn queued_targets(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut st = conn.prepare("SELECT DISTINCT target FROM jobs WHERE state = 'queued'")?;
    let rows = st.query_map([], |r| r.get(0))?;
    rows.collect()
}

/// Dead-letter up to `limit` queued jobs of `target` (no configured action posts there any
/// more); returns how many. Bounded, so one call never holds the writer for long: call it
/// again until it returns less than `limit`.
pub fn dead_letter_target(
    conn: &Connection,
    target: &str,
    reason: &str,
    now: i64,
    limit: usize,
) -> rusqlite::Result<usize> {
    let ids: Vec<i64> = conn
        .prepare_cached(
            "SELECT id FROM jobs WHERE state = 'queued' AND target = ?1 ORDER BY id LIMIT ?2",
        )?
        .query_map(params![target, limit as i64], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut record = conn.prepare_cached(
        "INSERT INTO dead_letters (job_id, event_id, action, reason, http_status, dead_at_ms)
         SELECT id, event_id, action, ?2, NULL, ?3 FROM jobs WHERE id = ?1",
    )?;
    let mut kill = conn.prepare_cached(
        "UPDATE jobs SET state = 'dead', last_error = ?2, lease_owner = NULL, lease_until_ms = NULL
         WHERE id = ?1",
    )?;
    for id in &ids {
        record.execute(params![id, reason, now])?;
        kill.execute(params![id, reason])?;
    }
    Ok(ids.len())
}

/// The stored payload of an event: (source, body).
pub fn event_body(conn: &Connection, key: &str) -> rusqlite::Result<Option<(String, Vec<u8>)>> {
    conn.prepare_cached("SELECT source, body FROM events WHERE event_id = ?1")?
        .query_row([key], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
}

pub fn mark_delivered(
    conn: &Connection,
    job_id: i64,
    status: Option<u16>,
    now: i64,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE jobs SET state = 'delivered', delivered_at_ms = ?2, last_status = ?3,
                last_error = NULL, lease_owner = NULL, lease_until_ms = NULL
         WHERE id = ?1 AND state = 'queued'",
    )?
    .execute(params![job_id, now, status])?;
    Ok(())
}

/// Release the job to be tried again at `at_ms` (its request's outcome is known: the
/// `sending` mark is cleared); `target_pause_until` also holds back every job of that target
/// (429 Retry-After).
pub fn retry_later(
    conn: &Connection,
    job: &Job,
    owner: &str,
    at_ms: i64,
    target_pause_until: Option<i64>,
    status: Option<u16>,
    error: &str,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE jobs SET next_at_ms = ?3, lease_owner = NULL, lease_until_ms = NULL,
                last_status = ?4, last_error = ?5, sending_at_ms = NULL
         WHERE id = ?1 AND lease_owner = ?2 AND state = 'queued'",
    )?
    .execute(params![job.id, owner, at_ms, status, error])?;
    if let Some(until) = target_pause_until {
        conn.prepare_cached(
            "INSERT INTO targets (target, next_at_ms) VALUES (?1, ?2)
             ON CONFLICT (target) DO UPDATE SET next_at_ms = max(next_at_ms, excluded.next_at_ms)",
        )?
        .execute(params![job.target, until])?;
    }
    Ok(())
}

pub fn dead_letter(
    conn: &Connection,
    job: &Job,
    status: Option<u16>,
    reason: &str,
    now: i64,
) -> rusqlite::Result<()> {
    let n = conn
        .prepare_cached(
            "UPDATE jobs SET state = 'dead', last_status = ?2, last_error = ?3,
                    lease_owner = NULL, lease_until_ms = NULL
             WHERE id = ?1 AND state = 'queued'",
        )?
        .execute(params![job.id, status, reason])?;
    if n == 1 {
        conn.prepare_cached(
            "INSERT INTO dead_letters (job_id, event_id, action, reason, http_status, dead_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![
            job.id,
            job.event_id,
            job.action,
            reason,
            status,
            now
        ])?;
    }
    Ok(())
}

/// Forget up to `limit` processed events older than `cutoff_ms` (their dedupe rows and jobs
/// too). Events with a queued or dead job are kept: their body is still needed. Small
/// batches, so the writer is never held for long; returns how many were removed.
pub fn prune(conn: &Connection, cutoff_ms: i64, limit: usize) -> rusqlite::Result<usize> {
    let keys: Vec<String> = conn
        .prepare_cached(
            "SELECT event_id FROM events WHERE received_at_ms < ?1 AND routed = 1 AND NOT EXISTS (
                SELECT 1 FROM jobs WHERE jobs.event_id = events.event_id
                  AND jobs.state IN ('queued', 'dead'))
             LIMIT ?2",
        )?
        .query_map(params![cutoff_ms, limit as i64], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut del_jobs = conn.prepare_cached("DELETE FROM jobs WHERE event_id = ?1")?;
    let mut del_event = conn.prepare_cached("DELETE FROM events WHERE event_id = ?1")?;
    for k in &keys {
        del_jobs.execute([k])?;
        del_event.execute([k])?;
    }
    Ok(keys.len())
}

/// Direct access to the store on its own connection, outside a running `listen` (tests,
/// tools): each call is its own transaction.
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

    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    fn write<T>(
        &mut self,
        what: &'static str,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T> {
        let run = |conn: &mut Connection| -> rusqlite::Result<T> {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let v = f(&tx)?;
            tx.commit()?;
            Ok(v)
        };
        run(&mut self.conn).map_err(|e| db_err(&self.path, what, e))
    }

    pub fn unrouted(&self, limit: usize) -> Result<Vec<PendingEvent>> {
        unrouted(&self.conn, limit).map_err(|e| db_err(&self.path, "read unrouted events from", e))
    }

    pub fn record_routes(&mut self, routed: &[(i64, String, Vec<JobSpec>)]) -> Result<()> {
        self.write("record routed events in", |c| {
            record_routes(c, routed, now_ms())
        })
    }

    pub fn claim(
        &mut self,
        owner: &str,
        lease_ms: i64,
        targets: &[(String, i64)],
        max: usize,
    ) -> Result<Vec<Job>> {
        self.write("claim a job in", |c| {
            claim(c, owner, lease_ms, now_ms(), targets, max)
        })
    }

    pub fn mark_delivered(&mut self, job: &Job, status: Option<u16>) -> Result<()> {
        self.write("record a delivery in", |c| {
            mark_delivered(c, job.id, status, now_ms())
        })
    }

    pub fn dead_letter(&mut self, job: &Job, status: Option<u16>, reason: &str) -> Result<()> {
        self.write("record a dead letter in", |c| {
            dead_letter(c, job, status, reason, now_ms())
        })
    }

    pub fn prune(&mut self, cutoff_ms: i64) -> Result<usize> {
        let mut total = 0;
        loop {
            let n = self.write("prune old events in", |c| prune(c, cutoff_ms, 500))?;
            total += n;
            if n < 500 {
                return Ok(total);
            }
        }
    }
}

/// The actions the store has jobs for (any state), sorted.
pub fn known_actions(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut st = conn.prepare("SELECT DISTINCT action FROM jobs ORDER BY action")?;
    let rows = st.query_map([], |r| r.get(0))?;
    rows.collect()
}

/// Re-queue dead jobs (all, or one event's, or one action's). Returns how many. An action
/// the store has never had a job for is refused (exit 2): it is a typo, not "nothing to do".
pub fn replay(path: &Path, event_id: Option<&str>, action: Option<&str>) -> Result<usize> {
    replay_with(path, event_id, action, &[])
}

/// [`replay`], where the `configured` actions (`rule/action`, from the listen config) are
/// known too: one without a delivery yet re-queues nothing instead of being refused.
pub fn replay_with(
    path: &Path,
    event_id: Option<&str>,
    action: Option<&str>,
    configured: &[String],
) -> Result<usize> {
    let mut conn = open(path)?;
    if let Some(a) = action {
        let mut known = known_actions(&conn).map_err(|e| db_err(path, "read the actions in", e))?;
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
                format!("{}", path.display())
            } else {
                format!("the config or {}", path.display())
            };
            return Err(Error::Usage(format!(
                "no action `{a}` in {place}; known actions: {list} (write it as rule/action, \
                 as `listen log` shows it)"
            )));
        }
    }
    let run = |conn: &mut Connection| -> rusqlite::Result<usize> {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let now = now_ms();
        let n = tx.execute(
            "UPDATE jobs SET state = 'queued', attempts = 0, next_at_ms = 0,
                    lease_owner = NULL, lease_until_ms = NULL, sending_at_ms = NULL
             WHERE state = 'dead' AND (?1 IS NULL OR event_id IN ('webhook:' || ?1, 'click:' || ?1))
               AND (?2 IS NULL OR action = ?2)",
            params![event_id, action],
        )?;
        tx.execute(
            "UPDATE dead_letters SET replayed_at_ms = ?3
             WHERE replayed_at_ms IS NULL AND (?1 IS NULL OR event_id IN ('webhook:' || ?1, 'click:' || ?1))
               AND (?2 IS NULL OR action = ?2)",
            params![event_id, action, now],
        )?;
        tx.commit()?;
        Ok(n)
    };
    run(&mut conn).map_err(|e| db_err(path, "re-queue dead letters in", e))
}

/// The log of every event: a walk of the table in `seq` order (no sort, so rows stream).
pub const LOG_ALL_SELECT: &str =
    "SELECT event_id, source, event_type, received_at_ms, headers, body, routed
     FROM events WHERE received_at_ms >= ?1 AND ?2 IS NULL ORDER BY seq";

/// The log of one event id (both namespaces): two lookups in the `event_id` index, not a
/// walk of the table (tested by `EXPLAIN QUERY PLAN`).
pub const LOG_ONE_SELECT: &str =
    "SELECT event_id, source, event_type, received_at_ms, headers, body, routed
     FROM events WHERE event_id IN ('webhook:' || ?2, 'click:' || ?2) AND received_at_ms >= ?1
     ORDER BY seq";

/// Stream the stored events received at or after `since_ms` (optionally one event id, in
/// either namespace), oldest first, each as a JSON object with its raw payload and the
/// outcome of every action, to `each` (which returns `false` to stop). One row at a time:
/// memory does not grow with the store.
pub fn for_each_log_entry(
    path: &Path,
    since_ms: i64,
    event_id: Option<&str>,
    mut each: impl FnMut(Value) -> bool,
) -> Result<()> {
    let conn = open(path)?;
    let mut run = || -> rusqlite::Result<()> {
        let mut events = conn.prepare(if event_id.is_some() {
            LOG_ONE_SELECT
        } else {
            LOG_ALL_SELECT
        })?;
        let mut jobs = conn.prepare(
            "SELECT action, state, attempts, last_status, last_error, delivered_at_ms, sending_at_ms
             FROM jobs WHERE event_id = ?1 ORDER BY id",
        )?;
        let mut rows = events.query(params![since_ms, event_id])?;
        while let Some(r) = rows.next()? {
            let key: String = r.get(0)?;
            let source: String = r.get(1)?;
            let event_type: Option<String> = r.get(2)?;
            let received: i64 = r.get(3)?;
            let headers: String = r.get(4)?;
            let body: Vec<u8> = r.get(5)?;
            let routed: i64 = r.get(6)?;
            let actions: Vec<Value> = jobs
                .query_map([&key], |r| {
                    let state: String = r.get(1)?;
                    let sending: Option<i64> = r.get(6)?;
                    // A queued job whose request left and whose outcome is not recorded yet.
                    let state = if state == "queued" && sending.is_some() {
                        "sending".to_string()
                    } else {
                        state
                    };
                    Ok(json!({
                        "action": r.get::<_, String>(0)?,
                        "state": state,
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
            let entry = json!({
                "event_id": key_id(&key),
                "source": source,
                "event_type": event_type,
                "received_at": rfc3339_ms(received),
                "outcome": outcome,
                "actions": actions,
                "headers": serde_json::from_str::<Value>(&headers).unwrap_or(Value::Null),
                "raw_body": String::from_utf8_lossy(&body),
            });
            if !each(entry) {
                break;
            }
        }
        Ok(())
    };
    run().map_err(|e| db_err(path, "read the event log from", e))
}

/// [`for_each_log_entry`], collected (tests and small stores).
pub fn log_entries(path: &Path, since_ms: i64, event_id: Option<&str>) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    for_each_log_entry(path, since_ms, event_id, |e| {
        out.push(e);
        true
    })?;
    Ok(out)
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

    fn t(name: &str, gap: i64) -> (String, i64) {
        (name.to_string(), gap)
    }

    fn claim1(q: &mut Queue, owner: &str, targets: &[(String, i64)]) -> Option<Job> {
        q.claim(owner, 60_000, targets, 1).expect("claim").pop()
    }

    /// Store events and route each to the given (action, target) jobs.
    fn setup(dir: &Path, events: &[(&str, i64)], jobs: &[(&str, &str)]) -> Queue {
        let path = dir.join("q.db");
        let mut conn = open(&path).expect("open");
        let batch: Vec<NewEvent> = events.iter().map(|(id, at)| event(id, *at)).collect();
        let refs: Vec<&NewEvent> = batch.iter().collect();
        let outcomes = commit_events(&mut conn, &refs).expect("commit");
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
    fn duplicate_ids_in_one_batch_store_once_and_sources_are_separate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut conn = open(&dir.path().join("d.db")).expect("open");
        let mut webhook = event("a", 1);
        webhook.source = "webhook";
        let batch = [event("a", 1), event("a", 1), event("b", 1), webhook];
        let refs: Vec<&NewEvent> = batch.iter().collect();
        let outcomes = commit_events(&mut conn, &refs).expect("commit");
        assert_eq!(
            outcomes,
            [
                Ingest::Stored,
                Ingest::Duplicate,
                Ingest::Stored,
                Ingest::Stored
            ],
            "a webhook `a` is not a duplicate of a click `a`"
        );
    }

    #[test]
    fn a_leased_job_is_not_claimed_twice_until_its_lease_expires() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut q = setup(dir.path(), &[("e1", 1)], &[("r/a", "t1")]);
        let mut other = Queue::open(&dir.path().join("q.db")).expect("second worker");
        let ts = [t("t1", 0)];
        let first = claim1(&mut q, "w1", &ts).expect("a job");
        assert_eq!((first.event_id.as_str(), first.attempts), ("click:e1", 1));
        assert!(!first.maybe_sent_before);
        assert!(claim1(&mut other, "w2", &ts).is_none());
        // w1 "dies": once its lease has run out the job is taken again, attempt counted, and
        // flagged as possibly sent already (its `sending` mark has no outcome).
        q.conn
            .execute("UPDATE jobs SET next_at_ms = 0", [])
            .expect("expire");
        let again = claim1(&mut other, "w2", &ts).expect("retaken");
        assert_eq!((again.id, again.attempts), (first.id, 2));
        assert!(again.maybe_sent_before);
        other.mark_delivered(&again, Some(200)).expect("delivered");
        q.conn
            .execute("UPDATE jobs SET next_at_ms = 0", [])
            .expect("expire");
        assert!(claim1(&mut q, "w1", &ts).is_none(), "delivered is final");
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
                    loop {
                        let jobs = q
                            .claim(&format!("w{w}"), 60_000, &[t("t", 0)], 3)
                            .expect("claim");
                        if jobs.is_empty() {
                            return mine;
                        }
                        mine.extend(jobs.iter().map(|j| j.id));
                    }
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
        let ts = [t("slow", 60_000), t("fast", 0)];
        let mut targets = Vec::new();
        while let Some(job) = claim1(&mut q, "w", &ts) {
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
    fn claim_reads_the_ready_index_even_with_a_large_queue() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ids: Vec<String> = (0..1000).map(|i| format!("e{i}")).collect();
        let events: Vec<(&str, i64)> = ids.iter().map(|i| (i.as_str(), 1)).collect();
        let mut q = setup(dir.path(), &events, &[("r/a", "down"), ("r/b", "up")]);
        q.conn.execute_batch("ANALYZE").expect("analyze");
        let plan: Vec<String> = q
            .conn
            .prepare(&format!("EXPLAIN QUERY PLAN {CLAIM_SELECT}"))
            .expect("explain")
            .query_map(params!["up", now_ms(), 8], |r| r.get::<_, String>(3))
            .expect("plan")
            .collect::<rusqlite::Result<_>>()
            .expect("rows");
        let plan = plan.join(" | ");
        assert!(
            plan.contains("USING") && plan.contains("jobs_ready"),
            "{plan}"
        );
        assert!(!plan.contains("SCAN"), "{plan}");
        assert!(!plan.contains("TEMP B-TREE"), "no sort: {plan}");
        // 1,000 leased jobs of a target that is down do not hide the other target's.
        let down: Vec<Job> = q.claim("w", 60_000, &[t("down", 0)], 5000).expect("claim");
        assert_eq!(down.len(), 1000);
        let up = q
            .claim("w", 60_000, &[t("down", 0), t("up", 0)], 8)
            .expect("claim");
        assert_eq!(up.len(), 8);
        assert!(up.iter().all(|j| j.target == "up"));
    }

    #[test]
    fn an_old_store_is_migrated_on_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("old.db");
        {
            // The first layout: un-namespaced ids, no version, no sending mark.
            let c = Connection::open(&path).expect("create");
            c.execute_batch(
                "PRAGMA journal_mode=WAL;
                 CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL UNIQUE,
                   source TEXT NOT NULL, event_type TEXT, received_at_ms INTEGER NOT NULL,
                   headers TEXT NOT NULL, body BLOB NOT NULL, routed INTEGER NOT NULL DEFAULT 0, matched TEXT);
                 CREATE INDEX events_unrouted ON events(seq) WHERE routed = 0;
                 CREATE TABLE jobs (id INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL,
                   action TEXT NOT NULL, target TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'queued',
                   attempts INTEGER NOT NULL DEFAULT 0, next_at_ms INTEGER NOT NULL DEFAULT 0,
                   lease_owner TEXT, lease_until_ms INTEGER, last_status INTEGER, last_error TEXT,
                   delivered_at_ms INTEGER, UNIQUE (event_id, action));
                 CREATE INDEX jobs_queued ON jobs(next_at_ms) WHERE state = 'queued';
                 CREATE TABLE targets (target TEXT PRIMARY KEY, next_at_ms INTEGER NOT NULL);
                 CREATE TABLE dead_letters (id INTEGER PRIMARY KEY AUTOINCREMENT, job_id INTEGER NOT NULL,
                   event_id TEXT NOT NULL, action TEXT NOT NULL, reason TEXT NOT NULL, http_status INTEGER,
                   dead_at_ms INTEGER NOT NULL, replayed_at_ms INTEGER);
                 INSERT INTO events (event_id, source, received_at_ms, headers, body, routed)
                   VALUES ('evt_1', 'webhook', 1, '{}', x'7b7d', 1), ('clk_1', 'click', 1, '{}', x'7b7d', 1);
                 INSERT INTO jobs (event_id, action, target, lease_until_ms) VALUES ('clk_1', 'r/a', 't', 99999999999999);",
            )
            .expect("old layout");
        }
        let mut q = Queue::open(&path).expect("migrated");
        let v: i64 = q
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .expect("version");
        assert_eq!(v, SCHEMA_VERSION);
        let ids: Vec<(String, String)> = log_entries(&path, 0, None)
            .expect("log")
            .iter()
            .map(|e| (e["source"].to_string(), e["event_id"].to_string()))
            .collect();
        assert_eq!(
            ids,
            [
                ("\"webhook\"".into(), "\"evt_1\"".into()),
                ("\"click\"".into(), "\"clk_1\"".into())
            ]
        );
        // The old lease still holds (folded into next_at_ms): not claimable yet.
        assert!(claim1(&mut q, "w", &[t("t", 0)]).is_none());
        // A webhook with the click's id is now a different event.
        let mut conn = open(&path).expect("reopen");
        let mut w = event("clk_1", 2);
        w.source = "webhook";
        assert_eq!(
            commit_events(&mut conn, &[&w]).expect("insert"),
            [Ingest::Stored]
        );
        drop(q);
        // Opening again does not migrate twice.
        drop(Queue::open(&path).expect("again"));
        assert_eq!(log_entries(&path, 0, Some("clk_1")).expect("log").len(), 2);
    }

    #[test]
    fn legacy_numeric_click_ids_become_canonical_on_upgrade() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("v2.db");
        {
            // A version-2 store holding click ids an earlier version kept in a number's old
            // form, next to a string id that only looks like one and an id already taken.
            let c = open(&path).expect("create");
            c.execute_batch(
                r#"INSERT INTO events (event_id, source, received_at_ms, headers, body, routed) VALUES
                     ('click:12345.0', 'click', 1, '{}', CAST('{"id": 12345.0}' AS BLOB), 1),
                     ('click:1.5e3', 'click', 1, '{}', CAST('{"event_id": 1.5e3}' AS BLOB), 1),
                     ('click:7.25', 'click', 1, '{}', CAST('{"id": "7.25"}' AS BLOB), 1),
                     ('click:7', 'click', 1, '{}', CAST('{"id": 7}' AS BLOB), 1),
                     ('click:7.0', 'click', 1, '{}', CAST('{"id": 7.0}' AS BLOB), 1);
                   INSERT INTO jobs (event_id, action, target, state) VALUES ('click:12345.0', 'r/a', 't', 'dead');
                   INSERT INTO dead_letters (job_id, event_id, action, reason, dead_at_ms)
                     VALUES (1, 'click:12345.0', 'r/a', 'gone', 1);
                   PRAGMA user_version = 2;"#,
            )
            .expect("legacy rows");
        }
        let mut conn = open(&path).expect("upgraded");
        let v: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .expect("version");
        assert_eq!(v, SCHEMA_VERSION);
        let keys: Vec<String> = conn
            .prepare("SELECT event_id FROM events ORDER BY seq")
            .expect("select")
            .query_map([], |r| r.get(0))
            .expect("rows")
            .collect::<rusqlite::Result<_>>()
            .expect("keys");
        assert_eq!(
            keys,
            [
                "click:12345",
                "click:1500",
                "click:7.25",
                "click:7",
                "click:7.0"
            ],
            "numbers canonical; a string id kept; a taken key left alone"
        );
        let job_key: String = conn
            .query_row("SELECT event_id FROM jobs", [], |r| r.get(0))
            .expect("job");
        let dead_key: String = conn
            .query_row("SELECT event_id FROM dead_letters", [], |r| r.get(0))
            .expect("dead letter");
        assert_eq!(
            (job_key.as_str(), dead_key.as_str()),
            ("click:12345", "click:12345")
        );
        // A redelivery after the upgrade is a duplicate.
        let outcomes = commit_events(&mut conn, &[&event("12345", 2)]).expect("insert");
        assert_eq!(outcomes, [Ingest::Duplicate]);
        assert_eq!(replay(&path, Some("12345"), None).expect("replay"), 1);
    }

    /// A writer with the default batch and `ack_timeout`.
    fn start_writer(path: &Path, ack_timeout: Duration) -> (Writer, std::thread::JoinHandle<()>) {
        Writer::start(
            path,
            crate::DEFAULT_WRITE_BATCH,
            Arc::new(Notify::new()),
            ack_timeout,
        )
        .expect("writer")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_worker_change_does_not_wait_out_the_ack_timeout_on_a_foreign_lock() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("w.db");
        // A long ack timeout: a worker change that waited for it would outlive the bound.
        let (writer, thread) = start_writer(&path, Duration::from_secs(60));
        let other = Connection::open(&path).expect("open");
        other
            .execute_batch("BEGIN IMMEDIATE")
            .expect("take the write lock");
        let op = writer.run(|c| c.execute("DELETE FROM targets", []));
        let refused = tokio::time::timeout(Duration::from_secs(20), op)
            .await
            .expect("refused long before the ack timeout");
        assert!(refused.is_err(), "locked: {refused:?}");
        // `/healthz`'s test write waits like an acknowledgement: released after 300 ms (longer
        // than a worker change waits), it commits.
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            other.execute_batch("ROLLBACK").expect("release");
        });
        let probed = tokio::time::timeout(Duration::from_secs(20), writer.probe())
            .await
            .expect("bounded");
        assert_eq!(probed, Ok(()));
        release.join().expect("released");
        let stored = tokio::time::timeout(Duration::from_secs(20), writer.ingest(event("x", 1)))
            .await
            .expect("bounded");
        assert_eq!(stored, Ok(Ingest::Stored));
        assert!(
            tokio::time::timeout(
                Duration::from_secs(20),
                writer.run(|c| c.execute("DELETE FROM targets", []))
            )
            .await
            .expect("bounded")
            .is_ok(),
            "worker changes go through again once the lock is free"
        );
        drop(writer);
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn routing_rides_in_a_waiting_acknowledgements_commit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("r.db");
        let (writer, thread) = start_writer(&path, Duration::from_secs(60));
        let bounded = Duration::from_secs(30);
        assert_eq!(writer.ingest(event("a", 1)).await, Ok(Ingest::Stored));
        let seq: i64 = Connection::open(&path)
            .expect("open")
            .query_row(
                "SELECT seq FROM events WHERE event_id = 'click:a'",
                [],
                |r| r.get(0),
            )
            .expect("seq");
        // Hold the write lock so that an acknowledgement and the routing queue up together.
        let other = Connection::open(&path).expect("open");
        other.execute_batch("BEGIN IMMEDIATE").expect("lock");
        let first = tokio::spawn({
            let w = writer.clone();
            async move { w.ingest(event("first", 1)).await }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        let second = tokio::spawn({
            let w = writer.clone();
            async move { w.ingest(event("second", 1)).await }
        });
        let route = tokio::spawn({
            let w = writer.clone();
            async move {
                w.run_as("route", move |c| {
                    let jobs = vec![("crm".to_string(), "http:t".to_string())];
                    record_routes(c, &[(seq, "click:a".to_string(), jobs)], 5)
                })
                .await
            }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        let op_commits = writer.stats.op_commits.load(Ordering::Relaxed);
        other.execute_batch("ROLLBACK").expect("release");
        for a in [first, second] {
            let got = tokio::time::timeout(bounded, a).await.expect("bounded");
            assert_eq!(got.expect("task"), Ok(Ingest::Stored));
        }
        let got = tokio::time::timeout(bounded, route).await.expect("bounded");
        assert_eq!(got.expect("task"), Ok(()));
        assert_eq!(
            writer.stats.op_commits.load(Ordering::Relaxed),
            op_commits,
            "the routing got no transaction (and fsync) of its own"
        );
        assert!(writer.stats.folded.load(Ordering::Relaxed) >= 1);
        let (routed, jobs): (i64, i64) = Connection::open(&path)
            .expect("open")
            .query_row(
                "SELECT (SELECT routed FROM events WHERE event_id = 'click:a'),
                        (SELECT count(*) FROM jobs WHERE event_id = 'click:a')",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .expect("read");
        assert_eq!((routed, jobs), (1, 1), "the routing was committed");
        drop(writer);
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cheap_worker_changes_commit_with_waiting_acks_and_fail_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f.db");
        let (writer, thread) = start_writer(&path, Duration::from_secs(60));
        writer
            .run(|c| c.execute("CREATE TABLE done_marks (x INTEGER)", []))
            .await
            .expect("table");
        // Hold the write lock so that acknowledgements and worker changes queue up together.
        let other = Connection::open(&path).expect("open");
        other.execute_batch("BEGIN IMMEDIATE").expect("lock");
        let first = tokio::spawn({
            let w = writer.clone();
            async move { w.ingest(event("first", 1)).await }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut acks = Vec::new();
        let mut ops = Vec::new();
        for i in 0..10 {
            let w = writer.clone();
            acks.push(tokio::spawn(async move {
                w.ingest(event(&format!("e{i}"), 1)).await
            }));
            let w = writer.clone();
            ops.push(tokio::spawn(async move {
                w.run_as("delivered", move |c| {
                    c.execute("INSERT INTO done_marks (x) VALUES (?1)", [i])
                })
                .await
            }));
        }
        let w = writer.clone();
        let bad = tokio::spawn(async move {
            w.run_as("retry", |c| {
                c.execute("INSERT INTO no_such_table VALUES (1)", [])
            })
            .await
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        other.execute_batch("ROLLBACK").expect("release");
        let bounded = Duration::from_secs(30);
        let got = tokio::time::timeout(bounded, first).await.expect("bounded");
        assert_eq!(got.expect("task"), Ok(Ingest::Stored));
        for a in acks {
            let got = tokio::time::timeout(bounded, a).await.expect("bounded");
            assert_eq!(got.expect("task"), Ok(Ingest::Stored));
        }
        for o in ops {
            let got = tokio::time::timeout(bounded, o).await.expect("bounded");
            assert_eq!(got.expect("task"), Ok(1));
        }
        let got = tokio::time::timeout(bounded, bad).await.expect("bounded");
        assert!(
            got.expect("task").is_err(),
            "the failing change fails alone"
        );
        let marks: i64 = Connection::open(&path)
            .expect("open")
            .query_row("SELECT count(*) FROM done_marks", [], |r| r.get(0))
            .expect("count");
        assert_eq!(marks, 10);
        assert!(
            writer.stats.folded.load(Ordering::Relaxed) >= 1,
            "at least one worker change rode in an acknowledgement's commit"
        );
        drop(writer);
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn commits_never_checkpoint_the_checkpointer_copies_the_wal_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.db");
        let (writer, thread) = start_writer(&path, Duration::from_secs(5));
        // No commit of the writer's connection runs a checkpoint (an ack would wait for it).
        let auto = writer
            .run(|c| c.query_row("PRAGMA wal_autocheckpoint", [], |r| r.get::<_, i64>(0)))
            .await
            .expect("pragma");
        assert_eq!(auto, 0);
        let size = || std::fs::metadata(&path).map_or(0, |m| m.len());
        let before = size();
        for i in 0..300 {
            let stored = writer.ingest(event(&format!("e{i}"), 1)).await;
            assert_eq!(stored, Ok(Ingest::Stored));
        }
        // The database file grows only when WAL pages are copied into it: the checkpointer's
        // doing, on its own connection.
        let mut grew = false;
        for _ in 0..400 {
            if size() > before {
                grew = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert!(grew, "nothing was checkpointed ({before} bytes)");
        drop(writer);
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_wal_starts_over_under_a_constant_stream_of_worker_writes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("r.db");
        // Restart past 256 frames (1 MiB) instead of 4,096.
        let (writer, thread) = Writer::start_with(
            &path,
            crate::DEFAULT_WRITE_BATCH,
            Arc::new(Notify::new()),
            Duration::from_secs(5),
            256,
        )
        .expect("writer");
        writer
            .run(|c| {
                c.execute_batch("CREATE TABLE filler (x BLOB); INSERT INTO filler VALUES (x'00');")
            })
            .await
            .expect("filler");
        // 2,000 back-to-back commits of about 5 pages each: ~40 MiB through the WAL, with no
        // pause in which the checkpointer could catch up on its own.
        for _ in 0..2000 {
            writer
                .run(|c| c.execute("UPDATE filler SET x = randomblob(16000)", []))
                .await
                .expect("update");
        }
        let wal = std::fs::metadata(dir.path().join("r.db-wal")).map_or(0, |m| m.len());
        assert!(wal < 16 << 20, "the WAL grew to {wal} bytes");
        drop(writer);
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }

    #[test]
    fn jobs_of_a_removed_target_are_dead_lettered_in_bounded_steps() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ids: Vec<String> = (0..5).map(|i| format!("e{i}")).collect();
        let events: Vec<(&str, i64)> = ids.iter().map(|i| (i.as_str(), 1)).collect();
        let mut q = setup(dir.path(), &events, &[("r/gone", "old"), ("r/kept", "new")]);
        let steps: Vec<usize> = (0..4)
            .map(|_| {
                q.write("dead-letter", |c| {
                    dead_letter_target(c, "old", "removed", now_ms(), 2)
                })
                .expect("step")
            })
            .collect();
        assert_eq!(steps, [2, 2, 1, 0]);
        let dead: i64 = q
            .conn
            .query_row(
                "SELECT count(*) FROM dead_letters WHERE reason = 'removed'",
                [],
                |r| r.get(0),
            )
            .expect("count");
        assert_eq!(dead, 5);
        let kept = q.claim("w", 60_000, &[t("new", 0)], 10).expect("claim");
        assert_eq!(kept.len(), 5, "the other target's jobs stay queued");
    }

    #[test]
    fn log_streams_and_stops_when_asked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ids: Vec<String> = (0..50).map(|i| format!("e{i:02}")).collect();
        let events: Vec<(&str, i64)> = ids.iter().map(|i| (i.as_str(), 1)).collect();
        drop(setup(dir.path(), &events, &[]));
        let mut seen = Vec::new();
        for_each_log_entry(&dir.path().join("q.db"), 0, None, |e| {
            seen.push(e["event_id"].as_str().unwrap_or_default().to_string());
            seen.len() < 3
        })
        .expect("log");
        assert_eq!(seen, ["e00", "e01", "e02"]);
        let conn = open(&dir.path().join("q.db")).expect("open");
        let plan = |sql: &str, id: Option<&str>| -> String {
            conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .expect("explain")
                .query_map(params![0, id], |r| r.get::<_, String>(3))
                .expect("plan")
                .collect::<rusqlite::Result<Vec<_>>>()
                .expect("rows")
                .join(" | ")
        };
        let one = plan(LOG_ONE_SELECT, Some("e01"));
        assert!(one.contains("INDEX") && !one.contains("SCAN"), "{one}");
        let all = plan(LOG_ALL_SELECT, None);
        assert!(
            !all.contains("TEMP B-TREE"),
            "streams without a sort: {all}"
        );
        let found = log_entries(&dir.path().join("q.db"), 0, Some("e01")).expect("log");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0]["event_id"], "e01");
    }

    #[test]
    fn dead_letters_replay_and_prune() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut q = setup(
            dir.path(),
            &[("old", 1), ("dead", 1), ("new", now_ms())],
            &[("r/a", "t")],
        );
        while let Some(job) = claim1(&mut q, "w", &[t("t", 0)]) {
            if job.event_id == "click:dead" {
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
        assert!(matches!(
            replay(&path, None, Some("r/typo")),
            Err(Error::Usage(m)) if m.contains("r/a") && m.contains("r/typo")
        ));
        // A configured action without a delivery yet is known: nothing to re-queue.
        let configured = ["r/new".to_string()];
        assert_eq!(
            replay_with(&path, None, Some("r/new"), &configured).expect("known"),
            0
        );
        assert!(matches!(
            replay_with(&path, None, Some("r/typo"), &configured),
            Err(Error::Usage(m)) if m.contains("r/a, r/new") && m.contains("the config")
        ));
        assert_eq!(replay(&path, None, None).expect("replay"), 1);
        let job = claim1(&mut q, "w", &[t("t", 0)]).expect("replayed");
        assert_eq!((job.event_id.as_str(), job.attempts), ("click:dead", 1));
        assert_eq!(replay(&path, None, None).expect("nothing dead"), 0);
    }
}
