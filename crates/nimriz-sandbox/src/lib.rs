//! A local Nimriz-compatible API server for trying builds and for end-to-end tests.
//!
//! `nimriz-matrix sandbox` speaks the contract in `docs/nimriz-api.md` (auth, domains,
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

use nimriz::Reporter;
use nimriz_matrix_core::{Result, exit};
use std::io::Write;
use std::path::PathBuf;

/// The sandbox's options as the user gave them (the binary's flags map onto these);
/// checked and resolved by [`SandboxConfig::from_options`].
#[derive(Debug, Clone)]
pub struct SandboxOptions {
    /// Address to listen on (loopback by default; port 0 picks a free port).
    pub addr: String,
    /// Allow a non-loopback --addr (anyone who can reach it can use the printed key).
    pub allow_remote: bool,
    /// The API key the sandbox accepts. A local test value, never your real Nimriz key.
    pub key: String,
    /// Add a branded short domain (repeatable or comma-separated); its id is derived from the
    /// host, so it is the same on every start.
    pub domain: Vec<String>,
    /// Add every short host this spec's links use as a branded domain (repeatable), so the
    /// spec builds against the sandbox unchanged. Same ids as `--domain`.
    pub spec: Vec<PathBuf>,
    /// Keep links and idempotency keys in this file (loaded at start, written atomically after
    /// every change) so they survive a restart.
    pub state: Option<PathBuf>,
    /// Accept http:// destinations too (https only by default).
    pub allow_http: bool,
    /// Slugs shorter than this are reserved.
    pub min_slug_length: usize,
    /// Seed for every injected fault (same seed + same request order = same faults).
    pub seed: u64,
    /// Delay every API request by this many milliseconds.
    pub latency_ms: u64,
    /// Allow this many API requests per second; beyond, 429 RATE_LIMITED with Retry-After.
    pub rate_limit: Option<f64>,
    /// With `rate_limit`: publish the budget in response headers, in this style.
    pub rate_headers: config::RateHeaders,
    /// Answer this fraction of API requests with 503 before doing anything.
    pub fail_rate: f64,
    /// Commit this fraction of successful creates, then drop the connection without answering.
    pub drop_after_commit_rate: f64,
    /// Refuse bulk requests with more rows than this (413 payload_too_large).
    pub bulk_max: Option<usize>,
    /// Answer 404 on the bulk route (clients must fall back to single creates).
    pub no_bulk: bool,
    /// Status for a slug conflict (code slug_taken): 409, 403 or 422.
    pub conflict_status: u16,
    /// Shape of the answers: wide (default: every alias at once), url-id-only, id-only,
    /// numeric-id, data-envelope, bare, flat-errors, status-words, no-row-ids, paged-domains,
    /// or mixed (each answer in one of them, drawn from --seed).
    pub response_shape: config::ResponseShape,
    /// POST signed lifecycle webhooks (link.created, link.updated) for link changes here.
    pub webhook_url: Option<String>,
    /// Environment variable holding the webhook signing secret.
    pub webhook_secret_env: String,
    /// POST click events for `POST /__sandbox/click` here.
    pub click_url: Option<String>,
    /// Environment variable holding the click destination's shared secret.
    pub click_header_env: String,
    /// Header that carries the click shared secret.
    pub click_header: String,
}

/// `nimriz-matrix sandbox`: serve until `stop` completes (the binary passes Ctrl-C/SIGTERM).
pub async fn serve_command(
    args: SandboxOptions,
    printer: &dyn Reporter,
    stop: impl std::future::Future<Output = ()>,
) -> Result<u8> {
    let mut config = SandboxConfig::from_options(&args)?;
    config.log_requests = printer.is_verbose();
    if !config.addr.ip().is_loopback() {
        printer.warn(&format!(
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
    stop.await;
    printer.info("sandbox stopped.");
    running.shutdown().await;
    Ok(exit::OK)
}
