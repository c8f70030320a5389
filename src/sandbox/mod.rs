//! A local Nimriz-compatible API server for trying builds and for end-to-end tests.
//!
//! `nimriz-matrix sandbox` speaks the contract in `shared/nimriz-api.md` (auth, domains,
//! single and bulk creates with idempotency replay, check-slug, links list/get/find, updates,
//! delete with tombstones, the documented validation) and can inject faults, seeded and
//! reproducible. Tests start it in-process with [`Sandbox::start`]; `/__sandbox/stats` is the
//! oracle they read (how many times each `(domain, slug)` was inserted).

mod api;
pub mod config;
mod events;
mod faults;
mod server;
pub mod store;

pub use config::{Domain, DomainKind, Faults, ResponseShape, SandboxConfig, domain_id_for_host};
pub use events::EventsConfig;
pub use server::{FaultCounts, RunningSandbox, Sandbox, SandboxStats};

use crate::output::Printer;
use crate::{Result, exit};
use std::io::Write;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct SandboxArgs {
    /// Address to listen on (loopback by default; port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8787", value_name = "IP:PORT")]
    pub addr: String,
    /// Allow a non-loopback --addr (anyone who can reach it can use the printed key).
    #[arg(long)]
    pub allow_remote: bool,
    /// The API key the sandbox accepts. A local test value, never your real Nimriz key.
    #[arg(long, default_value = config::DEFAULT_KEY, value_name = "KEY")]
    pub key: String,
    /// Add a branded short domain (repeatable or comma-separated); its id is derived from the
    /// host, so it is the same on every start.
    #[arg(long, value_name = "HOST", value_delimiter = ',')]
    pub domain: Vec<String>,
    /// Add every short host this spec's links use as a branded domain (repeatable), so the
    /// spec builds against the sandbox unchanged. Same ids as `--domain`.
    #[arg(long, value_name = "PATH")]
    pub spec: Vec<PathBuf>,
    /// Keep links and idempotency keys in this file (loaded at start, written atomically after
    /// every change) so they survive a restart.
    #[arg(long, value_name = "PATH")]
    pub state: Option<PathBuf>,
    /// Accept http:// destinations too (https only by default).
    #[arg(long)]
    pub allow_http: bool,
    /// Slugs shorter than this are reserved.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub min_slug_length: usize,
    /// Seed for every injected fault (same seed + same request order = same faults).
    #[arg(long, default_value_t = 0, help_heading = "Fault injection")]
    pub seed: u64,
    /// Delay every API request by this many milliseconds.
    #[arg(
        long,
        default_value_t = 0,
        value_name = "MS",
        help_heading = "Fault injection"
    )]
    pub latency_ms: u64,
    /// Allow this many API requests per second; beyond, 429 RATE_LIMITED with Retry-After.
    #[arg(long, value_name = "N", help_heading = "Fault injection")]
    pub rate_limit: Option<f64>,
    /// Answer this fraction of API requests with 503 before doing anything.
    #[arg(long, default_value_t = 0.0, value_name = "P", value_parser = config::parse_probability, help_heading = "Fault injection")]
    pub fail_rate: f64,
    /// Commit this fraction of successful creates, then drop the connection without answering.
    #[arg(long, default_value_t = 0.0, value_name = "P", value_parser = config::parse_probability, help_heading = "Fault injection")]
    pub drop_after_commit_rate: f64,
    /// Refuse bulk requests with more rows than this (413 payload_too_large).
    #[arg(long, value_name = "N", help_heading = "Fault injection")]
    pub bulk_max: Option<usize>,
    /// Answer 404 on the bulk route (clients must fall back to single creates).
    #[arg(long, help_heading = "Fault injection")]
    pub no_bulk: bool,
    /// Status for a slug conflict (code slug_taken): 409, 403 or 422.
    #[arg(long, default_value_t = 409, value_name = "STATUS", value_parser = config::parse_conflict_status, help_heading = "Fault injection")]
    pub conflict_status: u16,
    /// Shape of the answers: wide (default: every alias at once), url-id-only, id-only,
    /// numeric-id, data-envelope, bare, flat-errors, status-words, no-row-ids, paged-domains,
    /// or mixed (each answer in one of them, drawn from --seed).
    #[arg(long, default_value = "wide", value_name = "VARIANT", value_parser = config::parse_response_shape, help_heading = "Fault injection")]
    pub response_shape: config::ResponseShape,
    /// POST signed lifecycle webhooks (link.created, link.updated) for link changes here.
    #[arg(long, value_name = "URL", help_heading = "Events (for `listen`)")]
    pub webhook_url: Option<String>,
    /// Environment variable holding the webhook signing secret.
    #[arg(
        long,
        default_value = "NIMRIZ_WEBHOOK_SECRET",
        value_name = "VAR",
        help_heading = "Events (for `listen`)"
    )]
    pub webhook_secret_env: String,
    /// POST click events for `POST /__sandbox/click` here.
    #[arg(long, value_name = "URL", help_heading = "Events (for `listen`)")]
    pub click_url: Option<String>,
    /// Environment variable holding the click destination's shared secret.
    #[arg(
        long,
        default_value = "NIMRIZ_CLICK_SECRET",
        value_name = "VAR",
        help_heading = "Events (for `listen`)"
    )]
    pub click_header_env: String,
    /// Header that carries the click shared secret.
    #[arg(long, default_value = events::DEFAULT_CLICK_HEADER, value_name = "NAME", help_heading = "Events (for `listen`)")]
    pub click_header: String,
}

pub async fn serve_command(args: SandboxArgs, printer: &Printer) -> Result<u8> {
    let mut config = SandboxConfig::from_args(&args)?;
    config.log_requests = printer.verbosity >= crate::output::Verbosity::Verbose;
    if !config.addr.ip().is_loopback() {
        printer.warn(format!(
            "listening on non-loopback {}: anyone who can reach it can use the printed key",
            config.addr
        ));
    }
    let running = Sandbox::start(config).await?;
    {
        // The banner is data (tests parse its first line), so stdout; a closed stdout is not
        // a reason to stop serving.
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(running.banner().as_bytes());
        let _ = out.flush();
    }
    printer.info("Ctrl-C stops the sandbox.");
    wait_for_stop_signal().await;
    printer.info("sandbox stopped.");
    running.shutdown().await;
    Ok(exit::OK)
}

/// Ctrl-C, or SIGTERM on Unix (also used by `listen`) (what `kill` and CI runners send).
pub async fn wait_for_stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
