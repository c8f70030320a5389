//! Starting and stopping the sandbox, the shared state, and our own accept loop.
//!
//! We serve each TCP connection ourselves (hyper-util's auto builder) instead of
//! `axum::serve`, so a handler can drop its own connection without writing a byte: that is how
//! `--drop-after-commit-rate` simulates a response lost after the server committed.

use super::config::SandboxConfig;
use super::faults::TokenBucket;
use super::store::Store;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use nimriz_matrix_core::{Error, Result};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, oneshot};
use tokio::task::{JoinHandle, JoinSet};

/// Counters `GET /__sandbox/stats` returns (also `RunningSandbox::stats`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxStats {
    /// API requests per `"METHOD /route"` since this process started (faulted ones included).
    pub requests: BTreeMap<String, u64>,
    /// Links that exist now.
    pub links: u64,
    /// Successful client inserts per `"<domain_id>/<slug>"`, ever (kept in `--state`).
    /// More than 1 for a key means a duplicate was created (or a slug reused after delete).
    pub inserts: BTreeMap<String, u64>,
    pub max_inserts_per_slug: u64,
    pub faults: FaultCounts,
    /// Bulk rows answered from the idempotency store, since this process started.
    pub idempotent_replays: u64,
    /// Links added by `POST /__sandbox/seed` (not counted in `inserts`).
    pub seeded: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultCounts {
    pub rate_limited: u64,
    pub failed: u64,
    pub dropped: u64,
}

/// What the handlers share. One mutex over all mutable state: simple and obviously correct,
/// and fast enough (the sandbox is never the bottleneck of a build).
pub(crate) struct Shared {
    pub config: SandboxConfig,
    inner: Mutex<Inner>,
    /// Sends webhooks / click events when configured (`--webhook-url`, `--click-url`).
    pub events: Option<super::events::Emitter>,
}

pub(crate) struct Inner {
    pub store: Store,
    /// Every fault decision draws from this, so a seed replays the same faults for the same
    /// request order.
    pub rng: StdRng,
    pub bucket: Option<TokenBucket>,
    pub requests: BTreeMap<String, u64>,
    pub faults: FaultCounts,
    pub idempotent_replays: u64,
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere must not wedge the sandbox: the data is still consistent
        // because every mutation completes under the lock before anything can fail.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn stats(&self) -> SandboxStats {
        let inner = self.lock();
        let inserts = inner.store.inserts().clone();
        SandboxStats {
            requests: inner.requests.clone(),
            links: inner.store.link_count() as u64,
            max_inserts_per_slug: inserts.values().copied().max().unwrap_or(0),
            inserts,
            faults: inner.faults.clone(),
            idempotent_replays: inner.idempotent_replays,
            seeded: inner.store.seeded(),
        }
    }
}

/// Lets a handler close its own connection without answering.
#[derive(Clone, Default)]
pub(crate) struct ConnectionKiller(Arc<Notify>);

impl ConnectionKiller {
    pub fn kill(&self) {
        // `notify_one` stores a permit, so the kill lands even if the connection task is
        // not waiting at this instant.
        self.0.notify_one();
    }
}

pub struct Sandbox;

impl Sandbox {
    /// Load state (if `state_path`), bind, and serve in the background on the current runtime.
    pub async fn start(config: SandboxConfig) -> Result<RunningSandbox> {
        check_config(&config)?;
        let store = match &config.state_path {
            Some(path) => {
                let store = Store::load(path)?;
                if store.workspace_is_new() {
                    // Written now, so the identity is the same after a restart even if
                    // nothing changes before it.
                    store
                        .save(path)
                        .map_err(|e| Error::io("write the sandbox state", path, e))?;
                }
                store
            }
            None => Store::fresh(),
        };
        let listener = TcpListener::bind(config.addr).await.map_err(|e| {
            Error::Usage(format!(
                "could not listen on {}: {e}; pick a free port with --addr (port 0 picks one)",
                config.addr
            ))
        })?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::Usage(format!("could not read the listening address: {e}")))?;
        let inner = Inner {
            store,
            rng: StdRng::seed_from_u64(config.faults.seed),
            bucket: config.faults.rate_limit.map(TokenBucket::new),
            requests: BTreeMap::new(),
            faults: FaultCounts::default(),
            idempotent_replays: 0,
        };
        let events = super::events::Emitter::start(&config.events);
        let shared = Arc::new(Shared {
            config,
            inner: Mutex::new(inner),
            events,
        });
        let app = super::api::router(shared.clone());
        let (stop_tx, stop_rx) = oneshot::channel();
        let task = tokio::spawn(accept_loop(listener, app, stop_rx));
        Ok(RunningSandbox {
            addr,
            shared,
            stop: Some(stop_tx),
            task: Some(task),
        })
    }
}

/// Checks the library caller could get wrong (the CLI checks these while parsing flags).
fn check_config(config: &SandboxConfig) -> Result<()> {
    let f = &config.faults;
    for (name, p) in [
        ("fail_rate", f.fail_rate),
        ("drop_after_commit_rate", f.drop_after_commit_rate),
    ] {
        if !(0.0..=1.0).contains(&p) {
            return Err(Error::Usage(format!("{name} {p} must be between 0 and 1")));
        }
    }
    if f.rate_limit.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
        return Err(Error::Usage("rate_limit must be a positive number".into()));
    }
    if ![409, 403, 422].contains(&f.conflict_status) {
        return Err(Error::Usage(
            "conflict_status must be 409, 403 or 422".into(),
        ));
    }
    if !config.addr.ip().is_loopback() && !config.allow_remote {
        return Err(Error::Usage(format!(
            "{} is not a loopback address; allow it explicitly (--allow-remote)",
            config.addr
        )));
    }
    Ok(())
}

/// A sandbox serving in the background. Dropping it stops the server too.
pub struct RunningSandbox {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl RunningSandbox {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://IP:PORT`, what `NIMRIZ_API_BASE` should be.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn config(&self) -> &SandboxConfig {
        &self.shared.config
    }

    pub fn stats(&self) -> SandboxStats {
        self.shared.stats()
    }

    /// Every link that exists now, in creation order (for test assertions).
    pub fn links(&self) -> Vec<super::store::Link> {
        self.shared.lock().store.all_links().cloned().collect()
    }

    /// What `nimriz-matrix sandbox` prints on stdout once listening. The first line is
    /// `nimriz sandbox listening on http://ADDR`; tests parse it.
    pub fn banner(&self) -> String {
        let config = &self.shared.config;
        let mut out = format!("nimriz sandbox listening on {}\n", self.base_url());
        out.push_str(&format!("api key: {}\n", config.key));
        for d in &config.domains {
            out.push_str(&format!(
                "domain: {} id={} kind={}\n",
                d.domain_name,
                d.id,
                d.kind.as_str()
            ));
        }
        let workspace = self.shared.lock().store.workspace_id().to_string();
        out.push_str(&format!(
            "workspace: {workspace} ({})\n",
            if config.state_path.is_some() {
                "kept in the state file"
            } else {
                "new and empty on every start; --state FILE keeps it"
            }
        ));
        if let Some(path) = &config.state_path {
            out.push_str(&format!(
                "state: {} ({} links)\n",
                path.display(),
                self.shared.lock().store.link_count()
            ));
        }
        if let Some(faults) = config.faults.describe() {
            out.push_str(&format!("faults: {faults}\n"));
        }
        let spec = config.specs.first().map_or_else(
            || "matrix.example.toml".to_string(),
            |p| p.display().to_string(),
        );
        out.push_str(&format!(
            "try: NIMRIZ_API_BASE={} NIMRIZ_API_KEY={} nimriz-matrix build {spec}\n",
            self.base_url(),
            config.key
        ));
        out
    }

    /// Stop accepting, close every connection, wait for the server task.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for RunningSandbox {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn accept_loop(listener: TcpListener, app: axum::Router, mut stop: oneshot::Receiver<()>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    connections.spawn(serve_connection(stream, app.clone()));
                }
                // Out of file descriptors and the like: back off instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.abort_all();
    while connections.join_next().await.is_some() {}
}

async fn serve_connection(stream: TcpStream, app: axum::Router) {
    let _ = stream.set_nodelay(true);
    let killer = ConnectionKiller::default();
    let service = TowerToHyperService::new(app.layer(axum::Extension(killer.clone())));
    let builder = auto::Builder::new(TokioExecutor::new());
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        _ = connection => {}
        // Dropping the connection future drops the socket and the pending handler: the
        // client sees the connection close with no response.
        _ = killer.0.notified() => {}
    }
}
