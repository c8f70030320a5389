//! The sandbox's resolved settings: flags are parsed by clap into `SandboxArgs`, checked once
//! here into a `SandboxConfig`, and the server only ever sees the config.

use super::SandboxOptions;
use nimriz_matrix_core::{Error, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use uuid::Uuid;

/// The key the sandbox accepts unless `--key` says otherwise. A throwaway local value.
pub const DEFAULT_KEY: &str = "nmz_sandbox_key";
/// The default branded domain and its fixed id.
pub const DEFAULT_BRANDED_HOST: &str = "links.sandbox.test";
pub const DEFAULT_BRANDED_ID: Uuid = Uuid::from_u128(0x5a4d_b0c5_0000_4000_8000_0000_0000_0001);
/// The default shared domain (Nimriz's built-in `nim.lu`) and its fixed id.
pub const DEFAULT_SHARED_HOST: &str = "nim.lu";
pub const DEFAULT_SHARED_ID: Uuid = Uuid::from_u128(0x5a4d_b0c5_0000_4000_8000_0000_0000_0002);

/// Nimriz's built-in short hosts: a destination pointing at one of them is a redirect loop
/// even when the sandbox does not serve that host.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DomainKind {
    Branded,
    Shared,
}

impl DomainKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DomainKind::Branded => "branded",
            DomainKind::Shared => "shared",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Domain {
    pub id: Uuid,
    pub domain_name: String,
    pub kind: DomainKind,
}

/// Id of a `--domain` host: derived from the host alone, so every start (and every machine)
/// gives the same id and a spec or manifest keeps working across sandbox restarts.
pub fn domain_id_for_host(host: &str) -> Uuid {
    let digest = Sha256::digest(format!(
        "nimriz-sandbox/domain/{}",
        host.to_ascii_lowercase()
    ));
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// Everything the server needs; `Default` is an in-memory, fault-free sandbox on a free
/// loopback port (what tests want).
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    pub addr: SocketAddr,
    /// Bind a non-loopback address (otherwise refused).
    pub allow_remote: bool,
    /// The API key clients must send.
    pub key: String,
    /// Every domain served, defaults first.
    pub domains: Vec<Domain>,
    /// Persist state here (atomically, after every mutating request).
    pub state_path: Option<PathBuf>,
    pub allow_http: bool,
    pub min_slug_length: usize,
    pub faults: Faults,
    /// Print one line per answered API request on stderr (`--verbose`).
    pub log_requests: bool,
    /// The `--spec` files whose hosts are served; the banner's "try:" line builds the first.
    pub specs: Vec<PathBuf>,
    /// Lifecycle webhooks and click events sent to a `listen` receiver.
    pub events: super::events::EventsConfig,
}

/// Fault injection. All random choices come from one RNG seeded with `seed`.
#[derive(Debug, Clone, PartialEq)]
pub struct Faults {
    pub seed: u64,
    pub latency: Duration,
    /// Requests per second (token bucket, burst = one second's worth).
    pub rate_limit: Option<f64>,
    /// How the budget is published in response headers (`--rate-headers`).
    pub rate_headers: RateHeaders,
    /// Probability of a 503 before anything is done.
    pub fail_rate: f64,
    /// Probability that a successful create is committed and its connection dropped.
    pub drop_after_commit_rate: f64,
    /// Bulk requests with more rows get 413.
    pub bulk_max: Option<usize>,
    /// The bulk route answers 404.
    pub no_bulk: bool,
    /// Status of a `slug_taken` conflict: 409, 403 or 422.
    pub conflict_status: u16,
    /// How answers are shaped (`--response-shape`): the widest plausible shape by default.
    pub response_shape: ResponseShape,
}

/// The shape of the sandbox's answers (`--response-shape`). Every variant is a plausible
/// reading of the public contract, so the client is tested against more than one server:
/// see `docs/nimriz-api.md`, "Response shapes". `GET /api/v1/links` (not used by `build`)
/// and the `/__sandbox/*` routes always answer in the wide shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResponseShape {
    /// Every alias at once (`id` and `url_id`, `slug` and `short_code`, `domain_name` and
    /// `hostname` ...), all agreeing, plus fields the client does not know.
    #[default]
    Wide,
    /// Only the canonical keys (`url_id`, `short_code`, `long_url`, `domain_name`).
    UrlIdOnly,
    /// Only the aliases (`id`, `slug`, `destination`; domains `domain_id` + `hostname`).
    IdOnly,
    /// A numeric `id` beside the UUID `url_id`; redirect as `"302"`, timestamps as numbers.
    NumericId,
    /// Every body wrapped in `{"data": …}`.
    DataEnvelope,
    /// No envelope: bare link objects, bare arrays of domains and of bulk results.
    Bare,
    /// Bulk row errors flat on the row (`code`, `message`, `error` as a string).
    FlatErrors,
    /// Bulk rows with `status: "success"`/`"ok"`, `ok: true`, `error: false`/`""`/`{}`.
    StatusWords,
    /// Bulk results without `client_row_id` (and in reverse order).
    NoRowIds,
    /// The domain list one entry per page, with `next_cursor`.
    PagedDomains,
    /// Each answer in one of the above, drawn from `--seed` and the answer's subject.
    Mixed,
}

impl ResponseShape {
    /// Every shape but `Mixed`, with its flag value.
    pub const CONCRETE: [(ResponseShape, &'static str); 10] = [
        (ResponseShape::Wide, "wide"),
        (ResponseShape::UrlIdOnly, "url-id-only"),
        (ResponseShape::IdOnly, "id-only"),
        (ResponseShape::NumericId, "numeric-id"),
        (ResponseShape::DataEnvelope, "data-envelope"),
        (ResponseShape::Bare, "bare"),
        (ResponseShape::FlatErrors, "flat-errors"),
        (ResponseShape::StatusWords, "status-words"),
        (ResponseShape::NoRowIds, "no-row-ids"),
        (ResponseShape::PagedDomains, "paged-domains"),
    ];

    pub fn as_str(self) -> &'static str {
        Self::CONCRETE
            .iter()
            .find(|(s, _)| *s == self)
            .map_or("mixed", |(_, name)| name)
    }
}

/// Whether and how a rate-limited sandbox publishes its budget (`--rate-headers`). Nimriz
/// documents no such headers; a client must work with and without them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RateHeaders {
    /// Only `Retry-After` on a 429.
    #[default]
    None,
    /// `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset` (delta seconds) and
    /// `RateLimit-Policy: N;w=W` (the IETF httpapi draft).
    Ietf,
    /// `X-RateLimit-Limit`, `X-RateLimit-Remaining`, `X-RateLimit-Reset` (a Unix time).
    X,
}

/// clap value parser for `--rate-headers`.
pub fn parse_rate_headers(s: &str) -> std::result::Result<RateHeaders, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "none" => Ok(RateHeaders::None),
        "ietf" => Ok(RateHeaders::Ietf),
        "x" => Ok(RateHeaders::X),
        _ => Err(format!("{s:?} is not a header style; use none, ietf or x")),
    }
}

/// clap value parser for `--response-shape`.
pub fn parse_response_shape(s: &str) -> std::result::Result<ResponseShape, String> {
    let want = s.trim().to_ascii_lowercase();
    if want == "mixed" || want == "random" {
        return Ok(ResponseShape::Mixed);
    }
    ResponseShape::CONCRETE
        .iter()
        .find(|(_, name)| *name == want)
        .map(|(shape, _)| *shape)
        .ok_or_else(|| {
            let names: Vec<&str> = ResponseShape::CONCRETE.iter().map(|(_, n)| *n).collect();
            format!(
                "{s:?} is not a response shape; use one of {}, mixed",
                names.join(", ")
            )
        })
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            seed: 0,
            latency: Duration::ZERO,
            rate_limit: None,
            rate_headers: RateHeaders::None,
            fail_rate: 0.0,
            drop_after_commit_rate: 0.0,
            bulk_max: None,
            no_bulk: false,
            conflict_status: 409,
            response_shape: ResponseShape::Wide,
        }
    }
}

impl Faults {
    /// One line for the banner, or `None` when no fault is configured.
    pub fn describe(&self) -> Option<String> {
        let mut parts = Vec::new();
        if !self.latency.is_zero() {
            parts.push(format!("latency {} ms", self.latency.as_millis()));
        }
        if let Some(rate) = self.rate_limit {
            parts.push(match self.rate_headers {
                RateHeaders::None => format!("rate limit {rate}/s"),
                RateHeaders::Ietf => format!("rate limit {rate}/s (RateLimit-* headers)"),
                RateHeaders::X => format!("rate limit {rate}/s (X-RateLimit-* headers)"),
            });
        }
        if self.fail_rate > 0.0 {
            parts.push(format!("fail rate {}", self.fail_rate));
        }
        if self.drop_after_commit_rate > 0.0 {
            parts.push(format!(
                "drop-after-commit rate {}",
                self.drop_after_commit_rate
            ));
        }
        if let Some(max) = self.bulk_max {
            parts.push(format!("bulk max {max} rows"));
        }
        if self.no_bulk {
            parts.push("no bulk route".into());
        }
        if self.conflict_status != 409 {
            parts.push(format!("slug conflicts answer {}", self.conflict_status));
        }
        if self.response_shape != ResponseShape::Wide {
            parts.push(format!("response shape {}", self.response_shape.as_str()));
        }
        if parts.is_empty() {
            None
        } else {
            Some(format!("{} (seed {})", parts.join(", "), self.seed))
        }
    }
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            allow_remote: false,
            key: DEFAULT_KEY.into(),
            domains: default_domains(),
            state_path: None,
            allow_http: false,
            min_slug_length: 4,
            faults: Faults::default(),
            log_requests: false,
            specs: Vec::new(),
            events: super::events::EventsConfig::default(),
        }
    }
}

pub fn default_domains() -> Vec<Domain> {
    vec![
        Domain {
            id: DEFAULT_BRANDED_ID,
            domain_name: DEFAULT_BRANDED_HOST.into(),
            kind: DomainKind::Branded,
        },
        Domain {
            id: DEFAULT_SHARED_ID,
            domain_name: DEFAULT_SHARED_HOST.into(),
            kind: DomainKind::Shared,
        },
    ]
}

impl SandboxConfig {
    /// Add a branded host (no-op when already served). Errors name the expected form.
    pub fn add_domain(&mut self, host: &str) -> Result<()> {
        let host = normalize_host(host)?;
        if !self.domains.iter().any(|d| d.domain_name == host) {
            self.domains.push(Domain {
                id: domain_id_for_host(&host),
                domain_name: host,
                kind: DomainKind::Branded,
            });
        }
        Ok(())
    }

    /// Is `host` a short domain, i.e. would a destination there loop back into a redirect?
    pub fn is_short_host(&self, host: &str) -> bool {
        let host = nimriz::facts::normalize_host(host);
        self.domains.iter().any(|d| d.domain_name == host)
            || nimriz::facts::is_shared_short_host(&host)
    }

    pub fn from_options(args: &SandboxOptions) -> Result<Self> {
        let addr: SocketAddr = args.addr.parse().map_err(|_| {
            Error::Usage(format!(
                "--addr {:?} is not an IP:PORT address; use e.g. 127.0.0.1:8787 (port 0 picks a free port)",
                args.addr
            ))
        })?;
        if !addr.ip().is_loopback() && !args.allow_remote {
            return Err(Error::Usage(format!(
                "--addr {addr} is not a loopback address; the sandbox accepts a fixed, printed key, \
                 so binding it to a network needs --allow-remote"
            )));
        }
        if args.key.is_empty()
            || args
                .key
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(Error::Usage(
                "--key must be non-empty and contain no spaces or control characters".into(),
            ));
        }
        if let Some(rate) = args.rate_limit
            && !(rate.is_finite() && rate > 0.0)
        {
            return Err(Error::Usage(format!(
                "--rate-limit {rate} must be a positive number of requests per second"
            )));
        }
        if args.bulk_max == Some(0) {
            return Err(Error::Usage(
                "--bulk-max 0 would refuse every bulk request; use --no-bulk for that".into(),
            ));
        }
        let mut config = SandboxConfig {
            addr,
            allow_remote: args.allow_remote,
            key: args.key.clone(),
            domains: default_domains(),
            state_path: args.state.clone(),
            allow_http: args.allow_http,
            min_slug_length: args.min_slug_length,
            faults: Faults {
                seed: args.seed,
                latency: Duration::from_millis(args.latency_ms),
                rate_limit: args.rate_limit,
                rate_headers: args.rate_headers,
                fail_rate: args.fail_rate,
                drop_after_commit_rate: args.drop_after_commit_rate,
                bulk_max: args.bulk_max,
                no_bulk: args.no_bulk,
                conflict_status: args.conflict_status,
                response_shape: args.response_shape,
            },
            log_requests: false,
            specs: args.spec.clone(),
            events: events_from_args(args)?,
        };
        for host in &args.domain {
            config.add_domain(host)?;
        }
        for spec in &args.spec {
            for host in spec_hosts(spec)? {
                config.add_domain(&host)?;
            }
        }
        Ok(config)
    }
}

/// The same size guard as `build`'s default `--max-links`.
const SPEC_MAX_LINKS: u64 = 1_000_000;

/// Every short host the links of the spec at `path` use (links given by domain id only
/// need no host). A spec `build` would refuse is refused here too, with the same
/// diagnostics, so the sandbox never starts for a spec that cannot build.
pub fn spec_hosts(path: &std::path::Path) -> Result<std::collections::BTreeSet<String>> {
    use nimriz_matrix_core::plan::{load_spec, walk};
    let (spec, _) = load_spec(path, SPEC_MAX_LINKS)?;
    let mut hosts = std::collections::BTreeSet::new();
    // Walk rather than collect the plan: a big matrix stays flat in memory.
    let result = walk::walk(&spec, |link| {
        if let Some(host) = &link.domain.host
            && !hosts.contains(host)
        {
            hosts.insert(host.clone());
        }
        Ok(())
    })
    .map_err(|walk::SinkError::Io(e)| Error::io("read", path, e))?;
    if let Some(report) = result.report() {
        return Err(report.into());
    }
    Ok(hosts)
}

fn normalize_host(raw: &str) -> Result<String> {
    let host = nimriz::facts::normalize_host(raw);
    let bad = || {
        Error::Usage(format!(
            "--domain {raw:?} is not a bare host name; pass it like go.acme.example (no scheme, path or port)"
        ))
    };
    if host.is_empty() || host.contains(['/', ':', '@', ' ', '?', '#']) {
        return Err(bad());
    }
    match url::Host::parse(&host) {
        Ok(url::Host::Domain(d)) => Ok(d),
        _ => Err(bad()),
    }
}

/// clap value parser for probabilities.
pub fn parse_probability(s: &str) -> std::result::Result<f64, String> {
    let p: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number; give a probability from 0 to 1"))?;
    if (0.0..=1.0).contains(&p) {
        Ok(p)
    } else {
        Err(format!(
            "{p} is outside 0..=1; give a probability such as 0.3"
        ))
    }
}

/// clap value parser for `--conflict-status`.
pub fn parse_conflict_status(s: &str) -> std::result::Result<u16, String> {
    match s.parse::<u16>() {
        Ok(code @ (409 | 403 | 422)) => Ok(code),
        _ => Err(format!("{s:?} is not one of 409, 403, 422")),
    }
}

/// `--webhook-url` / `--click-url` with their secrets, read from the named env vars (a secret
/// is never a flag value).
fn events_from_args(args: &SandboxOptions) -> Result<super::events::EventsConfig> {
    let secret = |url: &Option<String>,
                  var: &str,
                  flag: &str,
                  env_flag: &str|
     -> Result<Option<nimriz::Secret>> {
        let Some(url) = url else { return Ok(None) };
        if !url.starts_with("http://") && !url.starts_with("https://") {
            return Err(Error::Usage(format!(
                "{flag} {url:?} must be an http(s) URL"
            )));
        }
        match std::env::var(var) {
            Ok(v) if !v.trim().is_empty() => Ok(Some(nimriz::Secret::new(v.trim().as_bytes()))),
            _ => Err(Error::Usage(format!(
                "{flag} needs a secret: export {var} (or name another variable with {env_flag})"
            ))),
        }
    };
    Ok(super::events::EventsConfig {
        webhook_secret: secret(
            &args.webhook_url,
            &args.webhook_secret_env,
            "--webhook-url",
            "--webhook-secret-env",
        )?,
        webhook_url: args.webhook_url.clone(),
        click_secret: secret(
            &args.click_url,
            &args.click_header_env,
            "--click-url",
            "--click-header-env",
        )?,
        click_url: args.click_url.clone(),
        click_header: args.click_header.clone(),
        ..super::events::EventsConfig::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_ids_are_stable_and_distinct() {
        let a = domain_id_for_host("go.acme.example");
        assert_eq!(a, domain_id_for_host("GO.acme.example"));
        assert_ne!(a, domain_id_for_host("go.other.example"));
        assert_ne!(DEFAULT_BRANDED_ID, DEFAULT_SHARED_ID);
    }

    #[test]
    fn hosts_are_checked() {
        let mut c = SandboxConfig::default();
        c.add_domain("Go.Acme.Example").unwrap();
        assert!(c.domains.iter().any(|d| d.domain_name == "go.acme.example"));
        c.add_domain("nim.lu").unwrap();
        assert_eq!(
            c.domains.len(),
            3,
            "an already served host is not added twice"
        );
        for bad in [
            "https://x.example",
            "x.example/a",
            "x.example:80",
            "",
            "a b",
        ] {
            assert!(c.add_domain(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(c.is_short_host("GO.ACME.EXAMPLE."));
        assert!(c.is_short_host("rix.to"));
        assert!(!c.is_short_host("example.com"));
    }

    #[test]
    fn probabilities_and_statuses() {
        assert_eq!(parse_probability("0.3"), Ok(0.3));
        assert!(parse_probability("1.5").is_err());
        assert!(parse_probability("x").is_err());
        assert_eq!(parse_conflict_status("422"), Ok(422));
        assert!(parse_conflict_status("400").is_err());
    }
}
