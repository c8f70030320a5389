//! `nimriz-matrix listen`: receive Nimriz events safely and act on them.
//!
//! Flow: `server` authenticates a request and hands it to the `store` writer thread, which
//! commits it (grouped with whatever else is waiting) before the 200 goes out. The `worker`
//! then routes stored events through the `rules` (with `campaign` knowledge from manifests)
//! into jobs, and delivers those to Slack / HTTP targets with pacing, retries and a
//! dead-letter store. `listen log` and `listen replay` read and fix the store afterwards.
//!
//! Tests start everything in-process with [`Listener::start`].

pub mod backend;
pub mod campaign;
pub mod config;
pub mod pg;
pub mod rules;
pub mod server;
pub mod store;
pub mod verify;
pub mod worker;

pub use config::ListenConfig;
pub use nimriz::Secret;

use nimriz_matrix_core::report::SharedReporter;
use nimriz_matrix_core::{Error, Result, exit};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, watch};

/// Writes waiting in the channel that one commit may take (group commit).
pub const DEFAULT_WRITE_BATCH: usize = 256;

/// `listen`'s options as the user gave them (the binary's flags map onto these).
#[derive(Debug)]
pub struct ListenOptions {
    pub command: Option<ListenCommand>,
    pub serve: ServeOptions,
}

#[derive(Debug)]
pub enum ListenCommand {
    /// Receive events and act on them (the default).
    Serve(ServeOptions),
    /// Print stored events with their raw payload and outcome, one JSON object per line.
    Log(LogOptions),
    /// Re-queue dead-lettered actions (all, or one event's / one action's).
    Replay(ReplayOptions),
}

#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The listen config (TOML); see examples/listen.example.toml.
    pub config: PathBuf,
    /// Override the config's bind address (port 0 picks a free port).
    pub bind: Option<String>,
    /// Allow a non-loopback bind address.
    pub allow_remote: bool,
    /// Commit at most this many waiting requests together (1 = no grouping).
    pub write_batch: usize,
}

/// Where the store is: `--db`, or the `storage` of `--config` (no secrets needed for this).
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// The listen config whose `storage` to read.
    pub config: PathBuf,
    /// The SQLite store directly.
    pub db: Option<PathBuf>,
}

#[derive(Debug)]
pub struct LogOptions {
    pub store: StoreOptions,
    /// Only events received within this long ago: `30s`, `15m`, `1h`, `7d`.
    pub since: Option<Duration>,
    /// Only this event.
    pub event_id: Option<String>,
}

#[derive(Debug)]
pub struct ReplayOptions {
    pub store: StoreOptions,
    /// Only this event's dead letters.
    pub event_id: Option<String>,
    /// Only this action's (`rule/action`).
    pub action: Option<String>,
}

/// `30s`, `15m`, `1h`, `7d` (a bare number is seconds).
pub fn parse_age(s: &str) -> std::result::Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not an age; use e.g. 30s, 15m, 1h, 7d"))?;
    let secs = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("unknown unit in `{s}`; use s, m, h or d")),
    };
    Ok(Duration::from_secs(n.saturating_mul(secs)))
}

impl StoreOptions {
    /// The actions (`rule/action`) the config's rules name, read without resolving secrets;
    /// empty with `--db` (the config may not be this store's) or when it cannot be read
    /// (`path` reports that).
    pub fn configured_actions(&self) -> Vec<String> {
        if self.db.is_some() {
            return Vec::new();
        }
        let Some(table) = std::fs::read_to_string(&self.config)
            .ok()
            .and_then(|t| toml::from_str::<toml::Table>(&t).ok())
        else {
            return Vec::new();
        };
        let name = |v: &toml::Value| v.get("name").and_then(|n| n.as_str()).map(str::to_string);
        let list =
            |v: Option<&toml::Value>| v.and_then(|v| v.as_array()).cloned().unwrap_or_default();
        let mut out = Vec::new();
        for rule in list(table.get("rules")) {
            let Some(r) = name(&rule) else { continue };
            for action in list(rule.get("actions")) {
                if let Some(a) = name(&action) {
                    out.push(format!("{r}/{a}"));
                }
            }
        }
        out
    }

    /// `storage = "postgres"` in the config: the database URL from its `database_url_env`
    /// (read from the environment); `None` for a SQLite store (or with `--db`).
    pub fn database(&self) -> Result<Option<config::DatabaseUrl>> {
        if self.db.is_some() {
            return Ok(None);
        }
        let Some(table) = std::fs::read_to_string(&self.config)
            .ok()
            .and_then(|t| toml::from_str::<toml::Table>(&t).ok())
        else {
            return Ok(None); // `path` says what is wrong with the file
        };
        if table.get("storage").and_then(|v| v.as_str()) != Some("postgres") {
            return Ok(None);
        }
        let Some(name) = table.get("database_url_env").and_then(|v| v.as_str()) else {
            return Err(Error::Usage(format!(
                "{}: storage = \"postgres\" needs database_url_env = \"NAME\" (the variable \
                 holding the database URL)",
                self.config.display()
            )));
        };
        match std::env::var(name) {
            Ok(v) if !v.trim().is_empty() => Ok(Some(config::DatabaseUrl::new(v.trim()))),
            _ => Err(Error::Usage(format!(
                "environment variable {name} (database_url_env in {}) is not set or empty; \
                 export the database URL in it",
                self.config.display()
            ))),
        }
    }

    /// The store's path; it must exist (log and replay never create one).
    pub fn path(&self) -> Result<PathBuf> {
        if let Some(db) = &self.db {
            if !db.exists() {
                return Err(Error::Usage(format!(
                    "no event store at {}; pass the `storage` file of your listen config",
                    db.display()
                )));
            }
            return Ok(db.clone());
        }
        let text = std::fs::read_to_string(&self.config).map_err(|e| {
            Error::Usage(format!(
                "could not read {}: {e}; pass --config listen.toml or --db PATH",
                self.config.display()
            ))
        })?;
        let table: toml::Table = toml::from_str(&text).map_err(|e| {
            Error::Usage(format!(
                "{} is not valid TOML: {}",
                self.config.display(),
                e.message()
            ))
        })?;
        let storage = table
            .get("storage")
            .and_then(|v| v.as_str())
            .unwrap_or("listen.db");
        let base = self.config.parent().unwrap_or(Path::new(""));
        let path = base.join(storage);
        if !path.exists() {
            return Err(Error::Usage(format!(
                "no event store at {} yet; start `listen` first or pass --db",
                path.display()
            )));
        }
        Ok(path)
    }
}

/// `nimriz-matrix listen [serve|log|replay]`. `stop` ends `serve` (the binary passes
/// Ctrl-C/SIGTERM).
pub fn listen_command(
    args: ListenOptions,
    printer: &SharedReporter,
    stop: impl std::future::Future<Output = ()>,
) -> Result<u8> {
    match args.command {
        Some(ListenCommand::Log(a)) => log_command(&a),
        Some(ListenCommand::Replay(a)) => {
            let configured = a.store.configured_actions();
            let n = match a.store.database()? {
                Some(url) => on_database(&url, async |db| {
                    pg::replay(db, a.event_id.as_deref(), a.action.as_deref(), &configured).await
                })?,
                None => store::replay_with(
                    &a.store.path()?,
                    a.event_id.as_deref(),
                    a.action.as_deref(),
                    &configured,
                )?,
            };
            printer.info(&format!(
                "re-queued {n} dead-lettered action(s); a running `listen` delivers them"
            ));
            Ok(exit::OK)
        }
        Some(ListenCommand::Serve(a)) => serve_command(a, printer, stop),
        None => serve_command(args.serve, printer, stop),
    }
}

fn log_command(args: &LogOptions) -> Result<u8> {
    let since = args.since.map_or(0, |d| {
        store::now_ms().saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    });
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    // A closed pipe (`| head`): stop quietly.
    let mut print = |e: serde_json::Value| writeln!(out, "{e}").is_ok();
    match args.store.database()? {
        // Through a portal, 500 rows at a time.
        Some(url) => on_database(&url, async |db| {
            pg::for_each_log_entry(db, since, args.event_id.as_deref(), &mut print).await
        })?,
        // One row at a time: memory stays flat however large the store is.
        None => store::for_each_log_entry(
            &args.store.path()?,
            since,
            args.event_id.as_deref(),
            &mut print,
        )?,
    }
    let _ = out.flush();
    Ok(exit::OK)
}

/// Run `f` on the database (migrated first) in a small runtime of its own.
fn on_database<T>(
    url: &config::DatabaseUrl,
    f: impl AsyncFnOnce(&pg::Db) -> Result<T>,
) -> Result<T> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("start", "the async runtime", e))?;
    runtime.block_on(async {
        let db = pg::Db::open(url, 2, Duration::from_secs(10)).await?;
        f(&db).await
    })
}

fn serve_command(
    args: ServeOptions,
    printer: &SharedReporter,
    stop: impl std::future::Future<Output = ()>,
) -> Result<u8> {
    let mut config = config::load(&args.config, &config::ProcessEnv)?;
    if let Some(bind) = &args.bind {
        config.bind = bind
            .parse()
            .map_err(|_| Error::Usage(format!("--bind {bind} is not an IP:PORT address")))?;
    }
    if !config.bind.ip().is_loopback() && !args.allow_remote {
        return Err(Error::Usage(format!(
            "{} is not a loopback address; allow it explicitly (--allow-remote), and put TLS \
             in front of it",
            config.bind
        )));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("start", "the async runtime", e))?;
    runtime.block_on(async {
        let running = Listener::start(config, args.write_batch, printer.clone()).await?;
        {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "nimriz listen on http://{}", running.addr());
            let _ = out.flush();
        }
        printer.info(&format!(
            "{} rule(s), {} campaign link(s), store {}; Ctrl-C stops.",
            running.config.rules.len(),
            running.campaign_links,
            running.store_name()
        ));
        printer.info(&format!(
            "at most {} connection(s) at once (file-descriptor limit {}); header/body/idle \
             timeouts {}/{}/{} ms",
            running.max_connections,
            running
                .fd_limit
                .map_or("unknown".to_string(), |l| l.to_string()),
            running.config.http.header_timeout.as_millis(),
            running.config.http.body_timeout.as_millis(),
            running.config.http.idle_timeout.as_millis()
        ));
        stop.await;
        printer.info("stopping: finishing in-flight requests and deliveries");
        let stats = running.writer_stats.clone();
        running.shutdown().await;
        let (events, commits) = (
            stats.events.load(std::sync::atomic::Ordering::Relaxed),
            stats.commits.load(std::sync::atomic::Ordering::Relaxed),
        );
        printer.detail(&format!(
            "stored {events} request(s) in {commits} commit(s) (largest group {})",
            stats
                .largest_batch
                .load(std::sync::atomic::Ordering::Relaxed)
        ));
        Ok(exit::OK)
    })
}

/// A receiver + worker running in the background of the current runtime.
pub struct Listener;

pub struct RunningListener {
    addr: SocketAddr,
    pub config: Arc<ListenConfig>,
    pub campaign_links: usize,
    pub writer_stats: Arc<store::WriterStats>,
    pub conn_stats: Arc<server::ConnStats>,
    pub health: Arc<store::Health>,
    /// Connections accepted at once, after fitting under `fd_limit`.
    pub max_connections: usize,
    pub fd_limit: Option<u64>,
    stop: watch::Sender<bool>,
    server: tokio::task::JoinHandle<()>,
    worker: tokio::task::JoinHandle<()>,
    writer_thread: Option<std::thread::JoinHandle<()>>,
}

impl Listener {
    pub async fn start(
        config: ListenConfig,
        write_batch: usize,
        printer: SharedReporter,
    ) -> Result<RunningListener> {
        let campaign = Arc::new(campaign::CampaignSource::new(config.manifests.clone()));
        let (loaded, problems) = campaign.refresh();
        for p in problems {
            printer.warn(&p);
        }
        let config = Arc::new(config);
        let wake = Arc::new(Notify::new());
        let (stop, stop_rx) = watch::channel(false);
        let (acks, queue, writer_stats, health, writer_thread): (
            backend::Acks,
            Arc<dyn backend::JobQueue>,
            _,
            _,
            _,
        ) = match &config.database {
            None => {
                let (writer, thread) = store::Writer::start(
                    &config.storage,
                    write_batch,
                    wake.clone(),
                    config.http.ack_timeout,
                )?;
                let reader = store::open_with(&config.storage, Duration::from_secs(1))?;
                let queue =
                    backend::SqliteQueue::new(reader, writer.clone(), config.storage.clone());
                let (stats, health) = (writer.stats.clone(), writer.health.clone());
                (
                    Arc::new(writer),
                    Arc::new(queue),
                    stats,
                    health,
                    Some(thread),
                )
            }
            Some(url) => {
                let pool = config.worker.concurrency + 8;
                let db = pg::Db::open(url, pool, config.http.ack_timeout).await?;
                let acks = pg::PgAcks::start(db.clone(), config.http.ack_timeout, wake.clone());
                let queue = pg::PgQueue::new(db);
                queue.listen(wake.clone(), stop_rx.clone());
                let stats = acks.stats.clone();
                (acks, Arc::new(queue), stats, Arc::default(), None)
            }
        };
        let worker = Arc::new(worker::Worker::new(
            config.clone(),
            campaign.clone(),
            wake,
            printer.clone(),
            queue,
        )?);
        let listener = tokio::net::TcpListener::bind(config.bind)
            .await
            .map_err(|e| {
                Error::Usage(format!(
                    "could not listen on {}: {e}; pick a free port with --bind (port 0 picks one)",
                    config.bind
                ))
            })?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::Usage(format!("could not read the listening address: {e}")))?;
        let app = server::router(&config, acks, printer);
        let fd_limit = server::fd_soft_limit();
        let max_connections = server::connection_cap(
            config.http.max_connections,
            fd_limit,
            server::reserved_fds(config.worker.concurrency),
        );
        let conn_stats = Arc::new(server::ConnStats::default());
        let server = tokio::spawn(server::serve(
            listener,
            app,
            config.http.clone(),
            max_connections,
            conn_stats.clone(),
            stop_rx.clone(),
        ));
        let worker = tokio::spawn(worker.run(stop_rx));
        Ok(RunningListener {
            conn_stats,
            health,
            max_connections,
            fd_limit,
            addr,
            campaign_links: loaded.len(),
            config,
            writer_stats,
            stop,
            server,
            worker,
            writer_thread,
        })
    }
}

impl RunningListener {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The store as the messages name it (a database URL without its password).
    pub fn store_name(&self) -> String {
        match &self.config.database {
            Some(url) => url.redacted(),
            None => self.config.storage.display().to_string(),
        }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stop accepting, answer what is in flight, finish deliveries in flight, stop.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        let _ = (&mut self.server).await;
        let _ = (&mut self.worker).await;
        // The router (and with it the last writer handle) is gone: the writer thread drains
        // its channel and ends.
        if let Some(t) = self.writer_thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}
