//! `nimriz`: a client for the Nimriz short-link API, and the protocol facts around it.
//! Nothing here knows about campaign matrices. What is documented, seen in Nimriz's n8n
//! node, or assumed is listed in `docs/nimriz-api.md`; every assumption about request and
//! response shapes lives in `contract.rs`, so it is cheap to change when the real answer is
//! known; when to retry and when to give up lives in `retry.rs`.
//!
//! The client is cheap to clone (one connection pool, one run-wide retry brake shared by
//! every clone). Every call retries transient failures itself; what comes back is either
//! the answer or a [`ClientError`] that keeps the server's words.

pub mod contract;
pub mod error;
pub mod facts;
pub mod report;
pub mod retry;
pub mod secret;
mod throttle;
pub mod webhook;

pub use error::{Error, Result};
pub use report::{Reporter, Silent};
pub use secret::Secret;

pub use contract::{
    BulkResult, BulkRow, Domain, Expect, Link, NewLink, RowOutcome, WhoAmI, idempotency_key,
};
pub use retry::RetryPolicy;

use contract::ApiErrorBody;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER};
use retry::{Brake, Disposition};
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use url::Url;

// ---------------------------------------------------------------------------------------
// The key
// ---------------------------------------------------------------------------------------

/// A workspace API key. Never printed: `Debug` and `Display` show `<redacted>`; the only
/// way out is the `Authorization` header, marked sensitive.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl ApiKey {
    /// A key from a string (trimmed). Errors never echo the key.
    pub fn new(raw: &str, origin: &str) -> Result<Self> {
        let key = raw.trim();
        if key.is_empty() {
            return Err(Error::Usage(format!(
                "the API key from {origin} is empty; put the workspace API key from the Nimriz \
                 dashboard there"
            )));
        }
        if !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Error::Usage(format!(
                "the API key from {origin} contains spaces, line breaks or non-ASCII \
                 characters; it must be the key exactly as the Nimriz dashboard shows it"
            )));
        }
        Ok(ApiKey(key.to_string()))
    }

    /// `--api-key-file PATH` when given, else `NIMRIZ_API_KEY`. Never a flag value, so the
    /// key does not land in shell history or `ps` output.
    pub fn load(key_file: Option<&Path>) -> Result<Self> {
        if let Some(path) = key_file {
            // A wrong path is a usage mistake (exit 2), not a local I/O failure.
            let raw = std::fs::read_to_string(path).map_err(|e| {
                Error::Usage(format!(
                    "cannot read the API key file {} given with --api-key-file ({e}); point \
                     --api-key-file at a readable file holding only the key, or set {} instead",
                    path.display(),
                    contract::ENV_API_KEY
                ))
            })?;
            return Self::new(&raw, &format!("--api-key-file {}", path.display()));
        }
        match std::env::var(contract::ENV_API_KEY) {
            Ok(v) => Self::new(&v, contract::ENV_API_KEY),
            Err(std::env::VarError::NotPresent) => Err(Error::Usage(format!(
                "no API key: set {} to your workspace API key, or pass --api-key-file PATH \
                 (a file holding only the key)",
                contract::ENV_API_KEY
            ))),
            Err(std::env::VarError::NotUnicode(_)) => Err(Error::Usage(format!(
                "{} is not valid UTF-8; it must be the key exactly as the Nimriz dashboard \
                 shows it",
                contract::ENV_API_KEY
            ))),
        }
    }

    fn header_value(&self) -> HeaderValue {
        // `new` admits only visible ASCII, which is always a valid header value.
        let mut v = HeaderValue::from_str(&format!("Bearer {}", self.0))
            .unwrap_or_else(|_| HeaderValue::from_static("Bearer invalid"));
        v.set_sensitive(true);
        v
    }

    /// For code that must compare or scan for the key (tests proving it never leaks).
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

// ---------------------------------------------------------------------------------------
// Settings
// ---------------------------------------------------------------------------------------

/// How to reach the API, resolved once: flags > env > defaults.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub base: Url,
    pub key: ApiKey,
    pub retry: RetryPolicy,
    /// Per-attempt limit for a whole request (send + response body).
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
}

impl ApiConfig {
    /// Resolve `--api-base` > `NIMRIZ_API_BASE` > `https://api.nimriz.com`, the key from
    /// `--api-key-file` or `NIMRIZ_API_KEY`, and the retry policy (env hook for tests).
    pub fn resolve(api_base: Option<&str>, api_key_file: Option<&Path>) -> Result<Self> {
        let base = match api_base {
            Some(b) => parse_base_url(b, "--api-base")?,
            None => match std::env::var(contract::ENV_API_BASE) {
                Ok(b) if !b.trim().is_empty() => parse_base_url(&b, contract::ENV_API_BASE)?,
                _ => parse_base_url(contract::DEFAULT_API_BASE, "the default")?,
            },
        };
        Ok(ApiConfig {
            base,
            key: ApiKey::load(api_key_file)?,
            retry: RetryPolicy::from_env()?,
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
        })
    }

    /// Config for a base and key given in code (library use, tests).
    pub fn new(base: &str, key: ApiKey) -> Result<Self> {
        Ok(ApiConfig {
            base: parse_base_url(base, "the API base URL")?,
            key,
            retry: RetryPolicy::default(),
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
        })
    }
}

/// Check an API base URL: `https://`, or `http://` only to a loopback host (the sandbox,
/// tests). No credentials, query or fragment in it.
pub fn parse_base_url(raw: &str, origin: &str) -> Result<Url> {
    let raw = raw.trim();
    let url = Url::parse(raw).map_err(|e| {
        Error::Usage(format!(
            "{origin} is not a valid URL ({e}); expected e.g. https://api.nimriz.com"
        ))
    })?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Error::Usage(format!(
            "{origin} must not contain a user name or password; the API key goes in \
             NIMRIZ_API_KEY or --api-key-file"
        )));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(Error::Usage(format!(
            "{origin} must be a plain base URL without ?query or #fragment, e.g. \
             https://api.nimriz.com"
        )));
    }
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback(&url) => Ok(url),
        "http" => Err(Error::Usage(format!(
            "{origin} uses plain http:// to {}; the API key would travel unencrypted. Use \
             https://, or http:// only to a local server (127.0.0.1, ::1, localhost)",
            url.host_str().unwrap_or("?")
        ))),
        other => Err(Error::Usage(format!(
            "{origin} has scheme {other}://; expected https://"
        ))),
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

// ---------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------

/// A final error answer from the server, in its own words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiFailure {
    pub status: u16,
    pub code: Option<String>,
    pub message: Option<String>,
    pub support_reference: Option<String>,
    /// The body said `available: false` (the slug is taken), check-slug style.
    pub slug_unavailable: bool,
}

impl ApiFailure {
    /// The failure a status and an error body describe (`status` 0 for a bulk row).
    pub fn from_body(status: u16, body: ApiErrorBody) -> Self {
        ApiFailure {
            status,
            code: body.code,
            message: body.message,
            support_reference: body.support_reference,
            slug_unavailable: body.slug_unavailable,
        }
    }

    pub fn is_slug_conflict(&self) -> bool {
        contract::is_slug_conflict(self.status, self.code.as_deref())
            || (self.slug_unavailable
                && !contract::is_permanent_slug_code(self.code.as_deref())
                && matches!(self.status, 0 | 200..=299 | 403 | 409 | 422))
    }
}

impl fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HTTP {}", self.status)?;
        if let Some(c) = &self.code {
            write!(f, " {c}")?;
        }
        if let Some(m) = &self.message {
            write!(f, ": {m}")?;
        }
        if let Some(r) = &self.support_reference {
            write!(f, " (support reference: {r})")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientError {
    /// The server's final "no" to this request (4xx, or a 5xx that is not transient).
    Refused(ApiFailure),
    /// The key was refused (401, or 403 without a slug/policy code). The run stops.
    Auth(ApiFailure),
    /// No usable answer after the allowed attempts. `last` is the last failure.
    Unreachable { attempts: u32, last: String },
    /// The run-wide brake was pulled (by this or another request); the reason is inside.
    Stopped(String),
    /// A 2xx whose body we could not read. The request may have taken effect.
    Malformed { what: &'static str, detail: String },
}

impl ClientError {
    /// Errors that end the whole run (exit 3), as opposed to failing one link.
    pub fn is_fatal_for_run(&self) -> bool {
        matches!(
            self,
            ClientError::Auth(_) | ClientError::Unreachable { .. } | ClientError::Stopped(_)
        )
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Refused(e) => write!(f, "the Nimriz API refused the request: {e}"),
            ClientError::Auth(e) => write!(f, "{}", auth_message(e)),
            ClientError::Unreachable { attempts, last } => write!(
                f,
                "the Nimriz API gave no usable answer after {attempts} attempts (last: {last}); \
                 check that the service is up and reachable, then re-run"
            ),
            ClientError::Stopped(why) => f.write_str(why),
            ClientError::Malformed { what, detail } => write!(
                f,
                "the Nimriz API answered {what} with a body this tool cannot read ({detail})"
            ),
        }
    }
}

impl std::error::Error for ClientError {}

fn auth_message(e: &ApiFailure) -> String {
    format!(
        "the Nimriz API refused the API key ({e}). Check that NIMRIZ_API_KEY (or the file \
         given to --api-key-file) holds a current workspace key from the Nimriz dashboard, \
         and that --api-base / NIMRIZ_API_BASE points at the right server"
    )
}

/// An answer plus how many HTTP attempts it took (the manifest counts them).
#[derive(Debug, Clone, PartialEq)]
pub struct Sent<T> {
    pub value: T,
    pub attempts: u32,
}

// ---------------------------------------------------------------------------------------
// The client
// ---------------------------------------------------------------------------------------

#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base: Url,
    key: ApiKey,
    brake: Brake,
    throttle: throttle::Throttle,
    reporter: Option<Arc<dyn Reporter>>,
    /// `GET /api/v1/whoami` accepted the key during this run (a 403 without a code on a
    /// create is then about the link, not the key).
    key_confirmed: AtomicBool,
    /// Until when a long wait was last announced (requests in flight hit the same
    /// Retry-After together: one line for all of them).
    announced_until: std::sync::Mutex<Option<std::time::Instant>>,
}

/// A wait at least this long is said at default verbosity (shorter ones only with `-v`).
pub const ANNOUNCE_WAIT: Duration = Duration::from_secs(3);

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.inner.base.as_str())
            .field("key", &self.inner.key)
            .finish()
    }
}

/// A response that arrived and was read in full.
struct Answer {
    status: u16,
    body: Vec<u8>,
    attempts: u32,
}

impl Client {
    pub fn new(config: ApiConfig) -> Result<Self> {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        headers.insert(AUTHORIZATION, config.key.header_value());
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .user_agent(concat!("nimriz-matrix/", env!("CARGO_PKG_VERSION")))
            .timeout(config.request_timeout)
            .connect_timeout(config.connect_timeout)
            // A redirect could carry the Authorization header somewhere else.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| Error::Api(format!("could not set up the HTTP client: {e}")))?;
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                base: config.base,
                key: config.key,
                brake: Brake::new(config.retry),
                throttle: throttle::Throttle::default(),
                reporter: None,
                key_confirmed: AtomicBool::new(false),
                announced_until: std::sync::Mutex::new(None),
            }),
        })
    }

    /// Say a long wait once, at default verbosity: what is waited for, how long, and until
    /// when (UTC), so a run that pauses for a minute is not mistaken for a hang.
    fn announce_wait(
        &self,
        wait: Duration,
        method: &reqwest::Method,
        url: &Url,
        reason: &str,
        rate_limited: bool,
        retrying: bool,
    ) {
        let Some(p) = &self.inner.reporter else {
            return;
        };
        let end = std::time::Instant::now() + wait;
        {
            let Ok(mut last) = self.inner.announced_until.lock() else {
                return;
            };
            if last.is_some_and(|l| l + Duration::from_secs(1) >= end) {
                return;
            }
            *last = Some(end);
        }
        let until = chrono::Utc::now()
            + chrono::Duration::from_std(wait).unwrap_or_else(|_| chrono::Duration::zero());
        p.info(&format!(
            "waiting {}s (until {} UTC) before {} {method} {}: {}{reason}",
            wait.as_secs(),
            if retrying { "retrying" } else { "sending" },
            until.format("%H:%M:%S"),
            url.path(),
            if rate_limited {
                "the API is rate limiting (Retry-After); "
            } else {
                ""
            }
        ));
    }

    /// Report each retry through `reporter.detail` (shown with `--verbose`).
    pub fn with_reporter(self, reporter: Arc<dyn Reporter>) -> Self {
        let inner = match Arc::try_unwrap(self.inner) {
            Ok(mut inner) => {
                inner.reporter = Some(reporter);
                inner
            }
            // Already shared: keep it as is (printing retries is a nicety).
            Err(shared) => return Client { inner: shared },
        };
        Client {
            inner: Arc::new(inner),
        }
    }

    /// `host[:port]` of the API base, for the manifest and messages (never the key).
    pub fn api_host(&self) -> String {
        let host = self.inner.base.host_str().unwrap_or("?");
        match self.inner.base.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_string(),
        }
    }

    /// Retries made so far by this client and its clones.
    pub fn retries(&self) -> u64 {
        self.inner.brake.retries()
    }

    /// Stop every request of this run at its next retry step (used on Ctrl-C or fatal errors).
    pub fn stop(&self, why: &str) {
        self.inner.brake.trip(why.to_string());
    }

    /// A `--verbose` line (never carries the key: only server words and our own).
    pub fn note(&self, msg: impl AsRef<str>) {
        if let Some(p) = &self.inner.reporter {
            p.detail(msg.as_ref());
        }
    }

    fn notes(&self, what: &str, notes: &[String]) {
        for n in notes {
            self.note(format!("reading {what}: {n}"));
        }
    }

    /// `GET /api/v1/whoami`.
    pub async fn whoami(&self) -> Result<WhoAmI, ClientError> {
        let ans = self
            .call(
                reqwest::Method::GET,
                &self.url(contract::PATH_WHOAMI, &[]),
                None,
                None,
                false,
            )
            .await?;
        let v = self.json_answer(&ans, "whoami")?;
        let read = contract::parse_whoami(&v).map_err(|detail| ClientError::Malformed {
            what: "whoami",
            detail,
        })?;
        self.notes("whoami", &read.notes);
        self.inner.key_confirmed.store(true, Ordering::Relaxed);
        Ok(read.value)
    }

    /// `GET /api/v1/domains`: the workspace's short domains, every page (`next_cursor` passed
    /// back as `cursor=`, at most [`contract::MAX_DOMAIN_PAGES`] pages).
    pub async fn list_domains(&self) -> Result<Vec<Domain>, ClientError> {
        let mut all: Vec<Domain> = Vec::new();
        let mut cursor: Option<String> = None;
        let mut seen_cursors = std::collections::HashSet::new();
        for _ in 0..contract::MAX_DOMAIN_PAGES {
            let query: Vec<(&str, &str)> = match &cursor {
                Some(c) => vec![("cursor", c.as_str())],
                None => vec![],
            };
            let ans = self
                .call(
                    reqwest::Method::GET,
                    &self.url(contract::PATH_DOMAINS, &query),
                    None,
                    None,
                    false,
                )
                .await?;
            let v = self.json_answer(&ans, "the domain list")?;
            let page = contract::parse_domains(&v).map_err(|detail| ClientError::Malformed {
                what: "the domain list",
                detail,
            })?;
            self.notes("the domain list", &page.notes);
            for d in page.domains {
                if !all.iter().any(|have| have.id == d.id) {
                    all.push(d);
                }
            }
            match page.next_cursor {
                None => return Ok(all),
                Some(next) => {
                    if !seen_cursors.insert(next.clone()) {
                        return Err(ClientError::Malformed {
                            what: "the domain list",
                            detail: format!(
                                "the server sent next_cursor {next:?} twice; the list never ends"
                            ),
                        });
                    }
                    cursor = Some(next);
                }
            }
        }
        Err(ClientError::Malformed {
            what: "the domain list",
            detail: format!(
                "more than {} pages of domains; the list never ends",
                contract::MAX_DOMAIN_PAGES
            ),
        })
    }

    /// A create was refused. A 403 without a code (a WAF page, a check-slug-style body) is
    /// the key's fault only if `whoami` with the same key is refused too; then the run stops
    /// (`Auth`). Otherwise it is this link's refusal.
    async fn create_refused(&self, f: ApiFailure) -> ClientError {
        if f.status != 403 || f.code.is_some() || f.slug_unavailable {
            return ClientError::Refused(f);
        }
        if self.inner.key_confirmed.load(Ordering::Relaxed) {
            return ClientError::Refused(f);
        }
        self.note(format!(
            "a create was refused with {f} and no code; checking the key with {}",
            contract::PATH_WHOAMI
        ));
        match self.whoami().await {
            Ok(_) | Err(ClientError::Malformed { .. }) => ClientError::Refused(f),
            Err(ClientError::Auth(_)) => {
                // `whoami` pulled the brake with its own words; report the create's.
                ClientError::Auth(f)
            }
            Err(other) => other,
        }
    }

    /// `POST /api/shorten`: create one link. A slug conflict comes back as
    /// `Err(Refused(f))` with `f.is_slug_conflict()`; so does a 2xx whose body carries an
    /// error (with the 2xx status). The link returned may lack fields: the caller checks it
    /// against what was sent.
    pub async fn shorten(
        &self,
        link: &NewLink,
        idempotency_key: Option<&str>,
    ) -> Result<Sent<Link>, ClientError> {
        let body = serde_json::to_vec(link).map_err(|e| ClientError::Malformed {
            what: "the create request",
            detail: e.to_string(),
        })?;
        let ans = match self
            .call(
                reqwest::Method::POST,
                &self.url(contract::PATH_SHORTEN, &[]),
                Some(body),
                idempotency_key,
                true,
            )
            .await
        {
            Ok(ans) => ans,
            Err(ClientError::Refused(f)) => return Err(self.create_refused(f).await),
            Err(e) => return Err(e),
        };
        let v = self.json_answer(&ans, "the create request")?;
        if let Some(e) = contract::body_error(&v) {
            return Err(ClientError::Refused(ApiFailure::from_body(ans.status, e)));
        }
        if contract::body_says_exists(&v) {
            return Err(ClientError::Refused(ApiFailure {
                status: ans.status,
                code: None,
                message: Some("the answer said status \"exists\"".into()),
                support_reference: None,
                slug_unavailable: true,
            }));
        }
        let read = contract::parse_link(&v).map_err(|detail| ClientError::Malformed {
            what: "the create request",
            detail,
        })?;
        self.notes("the create answer", &read.notes);
        if !read.value.has_identity() {
            return Err(ClientError::Malformed {
                what: "the create request",
                detail: "the answer names no link (no url_id, id, short_code or short_url)".into(),
            });
        }
        Ok(Sent {
            value: read.value,
            attempts: ans.attempts,
        })
    }

    /// `POST /api/shorten/bulk`. Results are whatever the server returned, in its order;
    /// match them by `client_row_id`. Whole-batch refusals (413, 404/405 ...) come back as
    /// `Err(Refused(f))` for the caller to interpret with `contract::is_*`.
    pub async fn shorten_bulk(
        &self,
        rows: &[BulkRow],
    ) -> Result<Sent<Vec<BulkResult>>, ClientError> {
        let body = serde_json::to_vec(&contract::BulkRequest { rows }).map_err(|e| {
            ClientError::Malformed {
                what: "the bulk request",
                detail: e.to_string(),
            }
        })?;
        let ans = match self
            .call(
                reqwest::Method::POST,
                &self.url(contract::PATH_SHORTEN_BULK, &[]),
                Some(body),
                None,
                true,
            )
            .await
        {
            Ok(ans) => ans,
            Err(ClientError::Refused(f)) => return Err(self.create_refused(f).await),
            Err(e) => return Err(e),
        };
        let v = self.json_answer(&ans, "the bulk request")?;
        let read = contract::parse_bulk_results(&v).map_err(|detail| {
            // A 2xx error body for the whole batch (`{"error": …}`, no results) is a refusal.
            match contract::body_error(&v) {
                Some(e) => ClientError::Refused(ApiFailure::from_body(ans.status, e)),
                None => ClientError::Malformed {
                    what: "the bulk request",
                    detail,
                },
            }
        })?;
        self.notes("the bulk answer", &read.notes);
        Ok(Sent {
            value: read.value,
            attempts: ans.attempts,
        })
    }

    /// `GET /api/v1/links/find?domain_id=&short_code=`: `None` when no link in this
    /// workspace has that slug (404). The link is as the server described it: the caller
    /// checks that it names the slug and domain asked for.
    pub async fn find_link(
        &self,
        domain_id: &str,
        short_code: &str,
    ) -> Result<Option<Link>, ClientError> {
        let url = self.url(
            contract::PATH_FIND_LINK,
            &[("domain_id", domain_id), ("short_code", short_code)],
        );
        match self
            .call(reqwest::Method::GET, &url, None, None, false)
            .await
        {
            Ok(ans) => {
                let v = self.json_answer(&ans, "the link lookup")?;
                let read = contract::parse_link(&v).map_err(|detail| ClientError::Malformed {
                    what: "the link lookup",
                    detail,
                })?;
                self.notes("the lookup answer", &read.notes);
                Ok(Some(read.value))
            }
            Err(ClientError::Refused(f)) if f.status == 404 => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `GET /api/v1/links/{url_id}`.
    pub async fn get_link(&self, url_id: &str) -> Result<Link, ClientError> {
        let mut url = self.url(contract::PATH_LINKS, &[]);
        if let Ok(mut segs) = url.path_segments_mut() {
            segs.push(url_id);
        }
        let ans = self
            .call(reqwest::Method::GET, &url, None, None, false)
            .await?;
        let v = self.json_answer(&ans, "the link")?;
        let read = contract::parse_link(&v).map_err(|detail| ClientError::Malformed {
            what: "the link",
            detail,
        })?;
        self.notes("the link", &read.notes);
        Ok(read.value)
    }

    /// `PUT /api/update-destination`. `Ok(Some(link))` when the answer is a readable link,
    /// `Ok(None)` for a 2xx whose body says nothing usable: the caller reads the link back
    /// before recording the change (never record a change that was not seen).
    pub async fn update_destination(
        &self,
        url_id: &str,
        long_url: &str,
    ) -> Result<Option<Link>, ClientError> {
        let body = serde_json::json!({"url_id": url_id, "long_url": long_url});
        self.change(
            reqwest::Method::PUT,
            contract::PATH_UPDATE_DESTINATION,
            body,
            "the destination update",
        )
        .await
    }

    /// `PUT /api/update-expiration` (`None` clears the expiry). See [`Client::update_destination`].
    pub async fn update_expiration(
        &self,
        url_id: &str,
        expires_at: Option<&str>,
    ) -> Result<Option<Link>, ClientError> {
        let body = serde_json::json!({"url_id": url_id, "expires_at": expires_at});
        self.change(
            reqwest::Method::PUT,
            contract::PATH_UPDATE_EXPIRATION,
            body,
            "the expiry update",
        )
        .await
    }

    /// `PUT /api/update-slug`: the link keeps its `url_id` (and its clicks) under a new slug.
    pub async fn update_slug(
        &self,
        url_id: &str,
        new_slug: &str,
    ) -> Result<Option<Link>, ClientError> {
        let body = serde_json::json!({"url_id": url_id, "new_slug": new_slug});
        self.change(
            reqwest::Method::PUT,
            contract::PATH_UPDATE_SLUG,
            body,
            "the slug update",
        )
        .await
    }

    /// `POST /api/delete-link`. A 404 means it is already gone: `Ok(false)`.
    pub async fn delete_link(&self, url_id: &str) -> Result<bool, ClientError> {
        let body = serde_json::json!({"url_id": url_id});
        let bytes = serde_json::to_vec(&body).map_err(|e| ClientError::Malformed {
            what: "the delete request",
            detail: e.to_string(),
        })?;
        match self
            .call(
                reqwest::Method::POST,
                &self.url(contract::PATH_DELETE_LINK, &[]),
                Some(bytes),
                None,
                false,
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(ClientError::Refused(f)) if f.status == 404 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `GET /api/v1/links/{url_id}` that says `None` for 404 (the link was deleted).
    pub async fn get_link_opt(&self, url_id: &str) -> Result<Option<Link>, ClientError> {
        match self.get_link(url_id).await {
            Ok(l) => Ok(Some(l)),
            Err(ClientError::Refused(f)) if f.status == 404 || f.status == 410 => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// One page of `GET /api/v1/links?limit=&cursor=`: the links and the next cursor.
    pub async fn list_links_page(
        &self,
        cursor: Option<&str>,
    ) -> Result<(Vec<Link>, Option<String>), ClientError> {
        let limit = contract::LINK_PAGE_LIMIT.to_string();
        let mut query = vec![("limit", limit.as_str())];
        if let Some(c) = cursor {
            query.push(("cursor", c));
        }
        let ans = self
            .call(
                reqwest::Method::GET,
                &self.url(contract::PATH_LINKS, &query),
                None,
                None,
                false,
            )
            .await?;
        let v = self.json_answer(&ans, "the link list")?;
        let (read, next) =
            contract::parse_link_page(&v).map_err(|detail| ClientError::Malformed {
                what: "the link list",
                detail,
            })?;
        self.notes("the link list", &read.notes);
        Ok((read.value, next))
    }

    /// Every link of the workspace, page by page (a repeated cursor is an error, not a loop).
    pub async fn list_links(&self) -> Result<Vec<Link>, ClientError> {
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        let mut seen = std::collections::HashSet::new();
        for _ in 0..contract::MAX_LINK_PAGES {
            let (page, next) = self.list_links_page(cursor.as_deref()).await?;
            all.extend(page);
            match next {
                None => return Ok(all),
                Some(next) if !seen.insert(next.clone()) => {
                    return Err(ClientError::Malformed {
                        what: "the link list",
                        detail: format!(
                            "the server sent next_cursor {next:?} twice; the list never ends"
                        ),
                    });
                }
                Some(next) => cursor = Some(next),
            }
        }
        Err(ClientError::Malformed {
            what: "the link list",
            detail: format!(
                "more than {} pages of links; the list never ends",
                contract::MAX_LINK_PAGES
            ),
        })
    }

    /// An update call: 2xx with a readable link → `Some`, 2xx with anything else → `None`.
    async fn change(
        &self,
        method: reqwest::Method,
        path: &str,
        body: serde_json::Value,
        what: &'static str,
    ) -> Result<Option<Link>, ClientError> {
        let bytes = serde_json::to_vec(&body).map_err(|e| ClientError::Malformed {
            what,
            detail: e.to_string(),
        })?;
        let ans = self
            .call(method, &self.url(path, &[]), Some(bytes), None, false)
            .await?;
        let Ok(v) = self.json_answer(&ans, what) else {
            return Ok(None);
        };
        if let Some(err) = contract::body_error(&v) {
            return Err(ClientError::Refused(ApiFailure::from_body(ans.status, err)));
        }
        match contract::parse_link(&v) {
            Ok(read) => {
                self.notes(what, &read.notes);
                Ok(Some(read.value))
            }
            Err(detail) => {
                self.note(format!("reading {what}: {detail}; reading the link back"));
                Ok(None)
            }
        }
    }

    fn url(&self, path: &str, query: &[(&str, &str)]) -> Url {
        // Keep any path prefix of the base (e.g. a proxy at https://host/nimriz/).
        let mut url = self.inner.base.clone();
        let joined = format!("{}{}", url.path().trim_end_matches('/'), path);
        url.set_path(&joined);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }

    fn json_answer(
        &self,
        ans: &Answer,
        what: &'static str,
    ) -> Result<serde_json::Value, ClientError> {
        if ans.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(serde_json::Value::Null);
        }
        serde_json::from_slice(&ans.body).map_err(|e| ClientError::Malformed {
            what,
            detail: format!("HTTP {}: {e}", ans.status),
        })
    }

    /// One request with retries (`create`: a create request, see `create_refused`). `Ok`
    /// only for 2xx; a final non-2xx becomes `Refused` or
    /// `Auth`; transient failures are retried until the per-request limit or the run brake.
    async fn call(
        &self,
        method: reqwest::Method,
        url: &Url,
        body: Option<Vec<u8>>,
        idempotency_key: Option<&str>,
        create: bool,
    ) -> Result<Answer, ClientError> {
        let brake = &self.inner.brake;
        let policy = brake.policy().clone();
        let host = self.api_host();
        let mut attempt: u32 = 0;
        loop {
            brake.check().map_err(ClientError::Stopped)?;
            attempt += 1;
            let mut req = self.inner.http.request(method.clone(), url.clone());
            if let Some(b) = &body {
                req = req.header(CONTENT_TYPE, "application/json").body(b.clone());
            }
            if let Some(k) = idempotency_key {
                req = req.header(contract::HEADER_IDEMPOTENCY_KEY, k);
            }
            // Read the whole body inside the attempt: a reset mid-body is a lost response
            // and is retried like any other transport failure.
            let permit = self
                .inner
                .throttle
                .acquire_announcing(|wait| {
                    self.announce_wait(
                        wait,
                        &method,
                        url,
                        "the API's request budget is spent",
                        false,
                        false,
                    );
                })
                .await;
            let outcome = match req.send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let headers = resp.headers();
                    if let Some(budget) = throttle::RateHeaders::read(|name| {
                        headers.get(name).and_then(|v| v.to_str().ok())
                    }) {
                        permit.on_headers(&budget);
                    }
                    let retry_after = resp
                        .headers()
                        .get(RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    match resp.bytes().await {
                        Ok(b) => Ok((status, retry_after, b.to_vec())),
                        Err(e) => Err(e),
                    }
                }
                Err(e) => Err(e),
            };
            let started = permit.started();
            drop(permit);
            let disposition = match &outcome {
                Ok((status, ra, _)) => retry::classify(Ok((*status, ra.as_deref()))),
                Err(e) => retry::classify(Err(e)),
            };
            match &outcome {
                Ok((429, _, _)) => {}
                Ok(_) => self.inner.throttle.on_answer(started),
                Err(_) => {}
            }
            match (disposition, outcome) {
                (Disposition::Success, Ok((status, _, body))) => {
                    brake.on_answer();
                    return Ok(Answer {
                        status,
                        body,
                        attempts: attempt,
                    });
                }
                (
                    Disposition::Transient {
                        retry_after,
                        reason,
                    },
                    outcome,
                ) => {
                    let reason = match &outcome {
                        Ok((status, _, body)) => {
                            ApiFailure::from_body(*status, contract::parse_error_body(body))
                                .to_string()
                        }
                        Err(_) => reason,
                    };
                    let rate_limited = matches!(&outcome, Ok((429, _, _)));
                    brake
                        .on_transient(&host, &reason, rate_limited)
                        .map_err(ClientError::Stopped)?;
                    if attempt >= policy.max_attempts {
                        return Err(ClientError::Unreachable {
                            attempts: attempt,
                            last: reason,
                        });
                    }
                    let wait = policy.delay(attempt - 1, retry_after);
                    if rate_limited {
                        // Everyone waits, not just this request (see throttle.rs).
                        self.inner.throttle.on_rate_limited(wait, started);
                    }
                    brake.note_retry();
                    if wait >= ANNOUNCE_WAIT {
                        self.announce_wait(wait, &method, url, &reason, rate_limited, true);
                    }
                    if let Some(p) = &self.inner.reporter {
                        p.detail(&format!(
                            "retrying {method} {} in {} ms (attempt {}/{}): {reason}",
                            url.path(),
                            wait.as_millis(),
                            attempt + 1,
                            policy.max_attempts
                        ));
                    }
                    brake.sleep(wait).await.map_err(ClientError::Stopped)?;
                }
                (_, Ok((status, _, body))) => {
                    // The server answered: the service is alive even if it said no.
                    brake.on_answer();
                    let failure = ApiFailure::from_body(status, contract::parse_error_body(&body));
                    // On a create, a 403 without a code may be about the link (see
                    // `create_refused`); the caller decides after asking whoami.
                    let maybe_link = create
                        && status == 403
                        && (failure.code.is_none() || failure.slug_unavailable);
                    if !maybe_link && contract::is_auth_failure(status, failure.code.as_deref()) {
                        brake.trip(auth_message(&failure));
                        return Err(ClientError::Auth(failure));
                    }
                    return Err(ClientError::Refused(failure));
                }
                (_, Err(e)) => {
                    return Err(ClientError::Unreachable {
                        attempts: attempt,
                        last: retry::describe_transport(&e),
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_redacted_and_trimmed() {
        let k = ApiKey::new("  nmz_live_SECRET123\n", "test").unwrap();
        assert_eq!(k.expose_secret(), "nmz_live_SECRET123");
        assert!(!format!("{k:?}").contains("SECRET"));
        assert!(!format!("{k}").contains("SECRET"));
        let cfg = ApiConfig::new("https://api.nimriz.com", k).unwrap();
        assert!(!format!("{cfg:?}").contains("SECRET"));
        let c = Client::new(cfg).unwrap();
        assert!(!format!("{c:?}").contains("SECRET"));
    }

    #[test]
    fn empty_or_spaced_key_is_a_clear_error() {
        let e = ApiKey::new(" \n", "NIMRIZ_API_KEY").unwrap_err();
        assert!(e.to_string().contains("NIMRIZ_API_KEY is empty"), "{e}");
        let e = ApiKey::new("abc def", "x").unwrap_err();
        assert!(!e.to_string().contains("abc"), "{e}");
        assert!(matches!(e, Error::Usage(_)), "{e}");
    }

    #[test]
    fn key_file_is_read_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("key");
        std::fs::write(&p, "k-123\n").unwrap();
        assert_eq!(ApiKey::load(Some(&p)).unwrap().expose_secret(), "k-123");
        std::fs::write(&p, "\n").unwrap();
        assert!(
            ApiKey::load(Some(&p))
                .unwrap_err()
                .to_string()
                .contains("empty")
        );
    }

    #[test]
    fn missing_or_unreadable_key_file_is_a_usage_error_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no-such-key");
        let e = ApiKey::load(Some(&missing)).unwrap_err();
        assert!(matches!(e, Error::Usage(_)), "{e}");
        let msg = e.to_string();
        assert!(msg.contains(&missing.display().to_string()), "{msg}");
        assert!(msg.contains("--api-key-file"), "{msg}");
        // A directory cannot be read as a file either.
        let e = ApiKey::load(Some(dir.path())).unwrap_err();
        assert!(matches!(e, Error::Usage(_)), "{e}");
        // Not UTF-8: refused without echoing the bytes.
        let bad = dir.path().join("bin");
        std::fs::write(&bad, b"k\xff\xfe-secret").unwrap();
        let e = ApiKey::load(Some(&bad)).unwrap_err();
        assert!(matches!(e, Error::Usage(_)), "{e}");
        assert!(!e.to_string().contains("secret"), "{e}");
    }

    #[test]
    fn base_url_rules() {
        assert!(parse_base_url("https://api.nimriz.com", "x").is_ok());
        assert!(parse_base_url("http://127.0.0.1:8080", "x").is_ok());
        assert!(parse_base_url("http://127.5.0.1", "x").is_ok());
        assert!(parse_base_url("http://[::1]:9000/", "x").is_ok());
        assert!(parse_base_url("http://LOCALHOST:1", "x").is_ok());
        let e = parse_base_url("http://api.nimriz.com", "--api-base").unwrap_err();
        assert!(e.to_string().contains("unencrypted"), "{e}");
        assert!(parse_base_url("http://10.0.0.1", "x").is_err());
        assert!(parse_base_url("ftp://x", "x").is_err());
        assert!(parse_base_url("https://u:p@api.nimriz.com", "x").is_err());
        assert!(parse_base_url("not a url", "x").is_err());
    }

    #[test]
    fn urls_keep_base_path_prefix() {
        let key = ApiKey::new("k", "t").unwrap();
        let c = Client::new(ApiConfig::new("https://h.example/prefix/", key).unwrap()).unwrap();
        assert_eq!(
            c.url(
                contract::PATH_FIND_LINK,
                &[("domain_id", "d 1"), ("short_code", "a&b")]
            )
            .as_str(),
            "https://h.example/prefix/api/v1/links/find?domain_id=d+1&short_code=a%26b"
        );
        assert_eq!(c.api_host(), "h.example");
    }
}
