//! The seam between the receiver and its store: the HTTP side acknowledges through an
//! [`AckStore`], the worker takes its jobs from a [`JobQueue`]. Two stores implement both:
//! the embedded SQLite file (`store`, one process or one host) and a shared PostgreSQL
//! database (`pg`, any number of replicas).

use super::store::{self, Ingest, Job, JobSpec, NewEvent, PendingEvent, Writer, now_ms};
use nimriz_matrix_core::{Error, Result};
use rusqlite::Connection;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

/// A stored event's (source, raw body).
pub type EventBody = (String, Vec<u8>);

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where acknowledgements are made durable.
pub trait AckStore: Send + Sync {
    /// Store one event; resolves once it is durable (or refused: the caller answers 503).
    fn ingest(&self, event: NewEvent) -> BoxFuture<'_, std::result::Result<Ingest, String>>;
    /// For `/healthz`: `Ok` while acknowledging works, else why not.
    fn probe(&self) -> BoxFuture<'_, std::result::Result<(), String>>;
}

pub type Acks = Arc<dyn AckStore>;

impl AckStore for Writer {
    fn ingest(&self, event: NewEvent) -> BoxFuture<'_, std::result::Result<Ingest, String>> {
        Box::pin(Writer::ingest(self, event))
    }

    fn probe(&self) -> BoxFuture<'_, std::result::Result<(), String>> {
        Box::pin(Writer::probe(self))
    }
}

/// Maps a stored event to the jobs its matching rules ask for.
pub type Router<'a> = &'a (dyn Fn(&PendingEvent) -> Vec<JobSpec> + Send + Sync);

/// The worker's view of the queue. Every method is one small transaction.
pub trait JobQueue: Send + Sync {
    /// Route up to `limit` unrouted events through `route` and record their jobs; returns
    /// how many events were routed (0: none waiting).
    fn route<'a>(&'a self, limit: usize, route: Router<'a>) -> BoxFuture<'a, Result<usize>>;
    /// Claim up to `max` ready jobs over `targets` (key, pacing gap in ms), recording
    /// each one's lease and `sending` mark before it is returned.
    fn claim(
        &self,
        owner: String,
        lease_ms: i64,
        targets: Vec<(String, i64)>,
        max: usize,
    ) -> BoxFuture<'_, Result<Vec<Job>>>;
    /// (source, body) of a stored event.
    fn event_body(&self, key: String) -> BoxFuture<'_, Result<Option<EventBody>>>;
    fn mark_delivered(&self, job: Arc<Job>, status: Option<u16>) -> BoxFuture<'_, Result<()>>;
    #[allow(clippy::too_many_arguments)]
    fn retry_later(
        &self,
        job: Arc<Job>,
        owner: String,
        at_ms: i64,
        target_pause_until: Option<i64>,
        status: Option<u16>,
        error: String,
    ) -> BoxFuture<'_, Result<()>>;
    fn dead_letter(
        &self,
        job: Arc<Job>,
        status: Option<u16>,
        reason: String,
    ) -> BoxFuture<'_, Result<()>>;
    /// Forget up to `limit` processed events received before `cutoff_ms`.
    fn prune(&self, cutoff_ms: i64, limit: usize) -> BoxFuture<'_, Result<usize>>;
    /// The targets that have queued jobs.
    fn queued_targets(&self) -> BoxFuture<'_, Result<Vec<String>>>;
    /// Dead-letter up to `limit` queued jobs of `target`.
    fn dead_letter_target(
        &self,
        target: String,
        reason: String,
        limit: usize,
    ) -> BoxFuture<'_, Result<usize>>;
}

/// The SQLite store as a [`JobQueue`]: reads on the worker's own connection, every change
/// through the writer thread (grouped, after acknowledgements).
pub struct SqliteQueue {
    reader: Arc<Mutex<Connection>>,
    writer: Writer,
    path: PathBuf,
}

impl SqliteQueue {
    pub fn new(reader: Connection, writer: Writer, path: PathBuf) -> Self {
        SqliteQueue {
            reader: Arc::new(Mutex::new(reader)),
            writer,
            path,
        }
    }

    /// A read on the worker's own connection (never blocks the writer: WAL).
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T> {
        let reader = self.reader.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let conn = reader.lock().unwrap_or_else(|p| p.into_inner());
            f(&conn).map_err(|e| Error::io("read", path, std::io::Error::other(e)))
        })
        .await
        .map_err(|e| Error::Usage(format!("worker task failed: {e}")))?
    }

    /// A change, through the writer; `label` names it in the writer's profile.
    async fn write<T: Send + 'static>(
        &self,
        label: &'static str,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T> {
        self.writer
            .run_as(label, f)
            .await
            .map_err(|e| Error::Usage(format!("event store: {e}")))
    }
}

impl JobQueue for SqliteQueue {
    fn route<'a>(&'a self, limit: usize, route: Router<'a>) -> BoxFuture<'a, Result<usize>> {
        Box::pin(async move {
            let pending = self.read(move |c| store::unrouted(c, limit)).await?;
            if pending.is_empty() {
                return Ok(0);
            }
            let n = pending.len();
            let routed: Vec<_> = pending
                .into_iter()
                .map(|ev| {
                    let jobs = route(&ev);
                    (ev.seq, ev.event_id, jobs)
                })
                .collect();
            self.write("route", move |c| store::record_routes(c, &routed, now_ms()))
                .await?;
            Ok(n)
        })
    }

    fn claim(
        &self,
        owner: String,
        lease_ms: i64,
        targets: Vec<(String, i64)>,
        max: usize,
    ) -> BoxFuture<'_, Result<Vec<Job>>> {
        Box::pin(self.write("claim", move |c| {
            store::claim(c, &owner, lease_ms, now_ms(), &targets, max)
        }))
    }

    fn event_body(&self, key: String) -> BoxFuture<'_, Result<Option<EventBody>>> {
        Box::pin(self.read(move |c| store::event_body(c, &key)))
    }

    fn mark_delivered(&self, job: Arc<Job>, status: Option<u16>) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.write("delivered", move |c| {
            store::mark_delivered(c, job.id, status, now_ms())
        }))
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
        Box::pin(self.write("retry", move |c| {
            store::retry_later(c, &job, &owner, at_ms, target_pause_until, status, &error)
        }))
    }

    fn dead_letter(
        &self,
        job: Arc<Job>,
        status: Option<u16>,
        reason: String,
    ) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.write("dead", move |c| {
            store::dead_letter(c, &job, status, &reason, now_ms())
        }))
    }

    fn prune(&self, cutoff_ms: i64, limit: usize) -> BoxFuture<'_, Result<usize>> {
        Box::pin(self.write("prune", move |c| store::prune(c, cutoff_ms, limit)))
    }

    fn queued_targets(&self) -> BoxFuture<'_, Result<Vec<String>>> {
        Box::pin(self.read(store::queued_targets))
    }

    fn dead_letter_target(
        &self,
        target: String,
        reason: String,
        limit: usize,
    ) -> BoxFuture<'_, Result<usize>> {
        Box::pin(self.write("retire", move |c| {
            store::dead_letter_target(c, &target, &reason, now_ms(), limit)
        }))
    }
}
