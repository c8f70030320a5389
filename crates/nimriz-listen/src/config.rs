//! `listen.toml`: parsed once into a [`ListenConfig`]; every problem found is reported with
//! `file:line:col` (exit 2), like spec errors. Secrets never live in the file: only the names
//! of environment variables or files that hold them.

use super::rules::{Condition, Filter, Template};
use nimriz_matrix_core::diag::{Problem, Report, SourceFile};
use nimriz_matrix_core::{Error, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

// Reading every key problem in one pass (a child module: it needs `RawConfig`).
#[path = "config_pass.rs"]
mod config_pass;

pub const DEFAULT_BIND: &str = "127.0.0.1:8788";
pub const DEFAULT_WEBHOOK_PATH: &str = "/nimriz/webhook";
pub const DEFAULT_CLICK_PATH: &str = "/nimriz/click";
pub use nimriz::facts::DEFAULT_CLICK_HEADER;
pub const DEFAULT_TOLERANCE_SECS: u64 = 300;
pub const DEFAULT_MAX_BODY_BYTES: usize = 256 * 1024;
pub const DEFAULT_IDEMPOTENCY_HEADER: &str = "Idempotency-Key";
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Upper bound for every configured duration (a day).
const MAX_SECS: u64 = 86_400;

pub use nimriz::Secret;

/// Everything `listen serve` needs, resolved (paths absolute to the config's folder, secrets
/// read).
#[derive(Debug, Clone)]
pub struct ListenConfig {
    pub bind: SocketAddr,
    /// The SQLite file (unused when `database` is set).
    pub storage: PathBuf,
    /// `storage = "postgres"`: the PostgreSQL database shared by every replica (its URL
    /// read from `database_url_env`).
    pub database: Option<DatabaseUrl>,
    pub tolerance: Duration,
    pub max_body_bytes: usize,
    /// How long a processed event (and its dedupe row) is kept.
    pub retention: Duration,
    pub manifests: Vec<PathBuf>,
    pub webhook: Option<WebhookEndpoint>,
    pub click: Option<ClickEndpoint>,
    pub worker: WorkerSettings,
    pub rules: Vec<Rule>,
    pub http: HttpLimits,
    /// Where "now" comes from (tests pin it; the timestamp window is checked against it).
    pub clock: Clock,
}

/// Bounds on what one connection or request may cost the receiver.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// A request's headers must be complete this long after the connection opened or the
    /// previous answer was sent.
    pub header_timeout: Duration,
    /// A request's body must be complete this long after its headers.
    pub body_timeout: Duration,
    /// A connection with no request in progress is closed after this.
    pub idle_timeout: Duration,
    /// Connections open at once (lowered at start to fit the file-descriptor limit). When
    /// it is reached, the connection idle the longest is closed first.
    pub max_connections: usize,
    /// An event not durable within this answers 503 with `Retry-After`.
    pub ack_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            header_timeout: Duration::from_secs(1),
            body_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(1),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            ack_timeout: Duration::from_secs(1),
        }
    }
}

/// Does this look like a database URL (or a libpq `key=value` connection string)?
pub fn is_database_url(s: &str) -> bool {
    let s = s.trim();
    s.starts_with("postgres://") || s.starts_with("postgresql://") || s.contains("host=")
}

/// A PostgreSQL connection string: a URL (`postgres://user:pw@host/db`) or libpq
/// `key=value` pairs. Its password is never shown: [`DatabaseUrl::redacted`] and `Debug`
/// print it as `***`, and [`DatabaseUrl::redact`] takes it out of any message.
#[derive(Clone)]
pub struct DatabaseUrl(Secret);

impl DatabaseUrl {
    pub fn new(url: &str) -> Self {
        DatabaseUrl(Secret::new(url.as_bytes()))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_str()
    }

    /// The password in it, if any (read by hand: a URL that does not parse still hides it).
    fn password(&self) -> Option<String> {
        let s = self.expose();
        if let Some((_, rest)) = s.split_once("://") {
            let authority = rest.split(['/', '?']).next().unwrap_or_default();
            let (userinfo, _) = authority.rsplit_once('@')?;
            return userinfo.split_once(':').map(|(_, p)| p.to_string());
        }
        s.split_whitespace()
            .find_map(|kv| kv.strip_prefix("password="))
            .map(|p| p.trim_matches('\'').to_string())
    }

    /// The URL with its password replaced by `***`.
    pub fn redacted(&self) -> String {
        self.redact(self.expose())
    }

    /// `text` with every occurrence of the password (as written and URL-decoded) replaced.
    pub fn redact(&self, text: &str) -> String {
        let Some(p) = self.password().filter(|p| !p.is_empty()) else {
            return text.to_string();
        };
        let mut out = text.replace(&p, "***");
        // A URL holds it percent-encoded; a driver's message may show it decoded.
        let plain = percent_decode(&p);
        if !plain.is_empty() {
            out = out.replace(&plain, "***");
        }
        out
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(b) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DatabaseUrl({})", self.redacted())
    }
}

/// Milliseconds since the Unix epoch, from the system clock or a test's.
#[derive(Clone)]
pub struct Clock(std::sync::Arc<dyn Fn() -> i64 + Send + Sync>);

impl Clock {
    pub fn system() -> Self {
        Clock(std::sync::Arc::new(super::store::now_ms))
    }

    /// A clock that always reads `ms` (tests: the sender and the receiver agree on "now").
    pub fn fixed(ms: i64) -> Self {
        Clock(std::sync::Arc::new(move || ms))
    }

    pub fn from_fn(f: impl Fn() -> i64 + Send + Sync + 'static) -> Self {
        Clock(std::sync::Arc::new(f))
    }

    pub fn now_ms(&self) -> i64 {
        (self.0)()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Clock")
    }
}

#[derive(Debug, Clone)]
pub struct WebhookEndpoint {
    pub path: String,
    /// Every secret accepted at once (rotation: add the new one, later drop the old one).
    pub secrets: Vec<Secret>,
}

#[derive(Debug, Clone)]
pub struct ClickEndpoint {
    pub path: String,
    pub header: String,
    pub secrets: Vec<Secret>,
}

#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// A claimed job not finished within this is taken again (its worker is presumed dead).
    pub lease: Duration,
    pub max_attempts: u32,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Actions in flight at once, over all targets.
    pub concurrency: usize,
    pub request_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub filter: Filter,
    pub actions: Vec<Action>,
}

#[derive(Debug, Clone)]
pub struct Action {
    /// `"{rule}/{action}"`: the delivery record key, with the event id.
    pub id: String,
    pub kind: ActionKind,
    pub url: Secret,
    /// Requests to the same URL share one pace (minimum gap between two starts).
    pub min_interval: Duration,
}

#[derive(Debug, Clone)]
pub enum ActionKind {
    /// Slack incoming webhook: `{"text": <rendered template>}`.
    Slack { text: Template },
    /// POST JSON; `body` renders to JSON (values JSON-escaped); `None` = the event + its cell.
    Http {
        body: Option<Template>,
        idempotency_header: String,
        headers: Vec<(String, Secret)>,
    },
}

impl ActionKind {
    pub fn name(&self) -> &'static str {
        match self {
            ActionKind::Slack { .. } => "slack",
            ActionKind::Http { .. } => "http",
        }
    }
}

// ---- raw TOML shape ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    bind: Option<Spanned<String>>,
    storage: Option<Spanned<String>>,
    database_url_env: Option<Spanned<String>>,
    database_url: Option<Spanned<toml::Value>>,
    tolerance_seconds: Option<u64>,
    max_body_bytes: Option<usize>,
    retention_days: Option<u64>,
    #[serde(default)]
    manifests: Vec<Spanned<String>>,
    webhook: Option<Spanned<RawWebhook>>,
    click: Option<Spanned<RawClick>>,
    worker: Option<Spanned<RawWorker>>,
    #[serde(default)]
    rules: Vec<Spanned<RawRule>>,
    header_timeout_seconds: Option<f64>,
    body_timeout_seconds: Option<f64>,
    idle_timeout_seconds: Option<f64>,
    ack_timeout_seconds: Option<f64>,
    max_connections: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    path: Option<Spanned<String>>,
    #[serde(default)]
    secret_env: OneOrMany,
    #[serde(default)]
    secret_file: OneOrMany,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClick {
    path: Option<Spanned<String>>,
    header: Option<String>,
    #[serde(default)]
    secret_env: OneOrMany,
    #[serde(default)]
    secret_file: OneOrMany,
}

/// `"NAME"` or `["NAME", "OTHER"]`; kept as a spanned TOML value because serde's untagged
/// enums cannot carry spans.
#[derive(Deserialize, Default)]
#[serde(transparent)]
struct OneOrMany(Option<Spanned<toml::Value>>);

impl OneOrMany {
    /// Each name with the span of the whole value (arrays do not keep element spans).
    fn items(&self) -> Vec<Spanned<String>> {
        let Some(v) = &self.0 else { return vec![] };
        let span = v.span();
        let strings: Vec<String> = match v.get_ref() {
            toml::Value::String(s) => vec![s.clone()],
            toml::Value::Array(a) => a
                .iter()
                .map(|x| x.as_str().map(str::to_string).unwrap_or_default())
                .collect(),
            _ => vec![String::new()],
        };
        strings
            .into_iter()
            .map(|s| Spanned::new(span.clone(), s))
            .collect()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorker {
    lease_seconds: Option<f64>,
    max_attempts: Option<u32>,
    backoff_base_ms: Option<u64>,
    backoff_max_ms: Option<u64>,
    concurrency: Option<usize>,
    request_timeout_seconds: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: Spanned<String>,
    #[serde(default)]
    events: Vec<String>,
    #[serde(default)]
    touch: Vec<Spanned<String>>,
    #[serde(default)]
    domains: Vec<String>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default, rename = "where")]
    where_: BTreeMap<String, Spanned<toml::Value>>,
    #[serde(default)]
    actions: Vec<Spanned<RawAction>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAction {
    name: Option<String>,
    #[serde(rename = "type")]
    kind: Spanned<String>,
    url: Option<Spanned<String>>,
    url_env: Option<Spanned<String>>,
    url_file: Option<Spanned<String>>,
    text: Option<Spanned<String>>,
    body: Option<Spanned<String>>,
    idempotency_header: Option<String>,
    #[serde(default)]
    header_env: BTreeMap<String, Spanned<String>>,
    min_interval_ms: Option<u64>,
}

/// Reads secrets: `env` is injected so tests need not touch the process environment.
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
}

pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl<S: std::hash::BuildHasher> Env for std::collections::HashMap<String, String, S> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// Read and check `path`. Every problem is collected and reported at once (exit 2).
pub fn load(path: &Path, env: &dyn Env) -> Result<ListenConfig> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::Usage(format!(
            "could not read the listen config {}: {e}; pass an existing file with --config \
             (see examples/listen.example.toml)",
            path.display()
        ))
    })?;
    let base = path.parent().unwrap_or(Path::new("")).to_path_buf();
    parse(&path.display().to_string(), text, &base, env)
}

/// Parse config text; relative paths are taken from `base`.
pub fn parse(name: &str, text: String, base: &Path, env: &dyn Env) -> Result<ListenConfig> {
    let source = SourceFile::new(name, text);
    let (raw, mut problems, removed) = config_pass::read_all(&source);
    let by_line = |p: &Problem| if p.line == 0 { usize::MAX } else { p.line };
    let Some(raw) = raw else {
        problems.sort_by_key(by_line);
        return Err(report(problems));
    };
    let mut cx = Cx {
        source: &source,
        base,
        env,
        problems: Vec::new(),
    };
    let config = cx.resolve(raw);
    // A key set aside above is absent now: what that causes is not a second problem.
    problems.extend(
        cx.problems
            .into_iter()
            .filter(|p| !config_pass::follows_from(p, &removed)),
    );
    if problems.is_empty() {
        Ok(config)
    } else {
        problems.sort_by_key(by_line);
        Err(report(problems))
    }
}

fn report(problems: Vec<Problem>) -> Error {
    Error::Spec(Report {
        problems,
        consequence: Some("the receiver did not start"),
        ..Report::default()
    })
}

struct Cx<'a> {
    source: &'a SourceFile,
    base: &'a Path,
    env: &'a dyn Env,
    problems: Vec<Problem>,
}

impl Cx<'_> {
    fn err<T>(&mut self, spanned: &Spanned<T>, message: impl Into<String>, help: &str) {
        let loc = self.source.locate(&spanned.span());
        self.problems
            .push(loc.problem(message, (!help.is_empty()).then(|| help.to_string())));
    }

    /// [`Cx::err`] for a line holding a database URL: the quoted line shows no password.
    fn err_hiding<T>(
        &mut self,
        spanned: &Spanned<T>,
        message: &str,
        help: &str,
        url: &DatabaseUrl,
    ) {
        let loc = self.source.locate(&spanned.span());
        let mut problem = loc.problem(message, Some(help.to_string()));
        problem.snippet = problem.snippet.map(|s| url.redact(&s));
        self.problems.push(problem);
    }

    fn path(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    fn resolve(&mut self, raw: RawConfig) -> ListenConfig {
        let bind = match &raw.bind {
            None => DEFAULT_BIND.parse().expect("constant address parses"),
            Some(b) => match b.get_ref().parse::<SocketAddr>() {
                Ok(a) => a,
                Err(_) => {
                    self.err(
                        b,
                        format!("bind `{}` is not an IP:PORT address", b.get_ref()),
                        "e.g. bind = \"127.0.0.1:8788\" (port 0 picks a free port)",
                    );
                    DEFAULT_BIND.parse().expect("constant address parses")
                }
            },
        };
        let storage = self.path(raw.storage.as_ref().map_or("listen.db", |s| s.get_ref()));
        let database = self.database(&raw);
        let manifests = raw
            .manifests
            .iter()
            .map(|m| self.path(m.get_ref()))
            .collect();
        let webhook = raw.webhook.as_ref().map(|w| {
            let secrets = self.secrets(w, &w.get_ref().secret_env, &w.get_ref().secret_file);
            WebhookEndpoint {
                path: self.endpoint_path(w.get_ref().path.as_ref(), DEFAULT_WEBHOOK_PATH),
                secrets,
            }
        });
        let click = raw.click.as_ref().map(|c| {
            let secrets = self.secrets(c, &c.get_ref().secret_env, &c.get_ref().secret_file);
            ClickEndpoint {
                path: self.endpoint_path(c.get_ref().path.as_ref(), DEFAULT_CLICK_PATH),
                header: c
                    .get_ref()
                    .header
                    .clone()
                    .unwrap_or_else(|| DEFAULT_CLICK_HEADER.into()),
                secrets,
            }
        });
        if webhook.is_none() && click.is_none() {
            self.problems.push(self.source.whole().problem(
                "no endpoint configured",
                Some("add a [webhook] and/or a [click] table".into()),
            ));
        }
        if let (Some(w), Some(c)) = (&webhook, &click)
            && w.path == c.path
        {
            self.problems.push(self.source.whole().problem(
                format!("[webhook] and [click] share the path {}", w.path),
                Some("give each endpoint its own path".into()),
            ));
        }
        let w = raw.worker.as_ref().map(Spanned::get_ref);
        // Every duration is clamped to a day: larger values are typos, and they would
        // overflow the millisecond arithmetic of the queue.
        let secs = |v: Option<f64>, default: f64| {
            Duration::from_secs_f64(
                v.filter(|s| s.is_finite() && *s > 0.0)
                    .unwrap_or(default)
                    .min(MAX_SECS as f64),
            )
        };
        let millis = |v: Option<u64>, default: u64| {
            Duration::from_millis(v.unwrap_or(default).min(MAX_SECS * 1000))
        };
        let worker = WorkerSettings {
            lease: secs(w.and_then(|w| w.lease_seconds), 60.0),
            max_attempts: w.and_then(|w| w.max_attempts).unwrap_or(8).max(1),
            backoff_base: millis(w.and_then(|w| w.backoff_base_ms), 1000),
            backoff_max: millis(w.and_then(|w| w.backoff_max_ms), 300_000),
            concurrency: w.and_then(|w| w.concurrency).unwrap_or(8).clamp(1, 1024),
            request_timeout: secs(w.and_then(|w| w.request_timeout_seconds), 10.0),
        };
        if worker.lease <= worker.request_timeout {
            let problem = format!(
                "worker.lease_seconds ({}) must be longer than request_timeout_seconds ({}): \
                 a job still in flight would be taken again",
                worker.lease.as_secs_f64(),
                worker.request_timeout.as_secs_f64()
            );
            let help = "raise lease_seconds or lower request_timeout_seconds";
            match &raw.worker {
                Some(w) => self.err(w, problem, help),
                None => self
                    .problems
                    .push(self.source.whole().problem(problem, Some(help.into()))),
            }
        }
        let mut rules = Vec::new();
        let mut names = std::collections::HashSet::new();
        for r in &raw.rules {
            if !names.insert(r.get_ref().name.get_ref().clone()) {
                self.err(
                    &r.get_ref().name,
                    format!("two rules are named `{}`", r.get_ref().name.get_ref()),
                    "rule names key the delivery records: make them unique",
                );
            }
            if let Some(rule) = self.rule(r.get_ref()) {
                rules.push(rule);
            }
        }
        let http = HttpLimits {
            header_timeout: secs(raw.header_timeout_seconds, 1.0),
            body_timeout: secs(raw.body_timeout_seconds, 1.0),
            idle_timeout: secs(raw.idle_timeout_seconds, 1.0),
            ack_timeout: secs(raw.ack_timeout_seconds, 1.0),
            max_connections: raw
                .max_connections
                .unwrap_or(DEFAULT_MAX_CONNECTIONS)
                .clamp(1, 1 << 20),
        };
        ListenConfig {
            http,
            clock: Clock::system(),
            bind,
            storage,
            database,
            tolerance: Duration::from_secs(
                raw.tolerance_seconds
                    .unwrap_or(DEFAULT_TOLERANCE_SECS)
                    .min(MAX_SECS),
            ),
            max_body_bytes: raw.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES).max(1),
            retention: Duration::from_secs(raw.retention_days.unwrap_or(7).clamp(1, 3650) * 86_400),
            manifests,
            webhook,
            click,
            worker,
            rules,
        }
    }

    /// `storage = "postgres"` + `database_url_env`: the URL from the environment. A URL in
    /// the file (its password would be in it) or an unset variable is a problem at its line.
    fn database(&mut self, raw: &RawConfig) -> Option<DatabaseUrl> {
        const HELP: &str = "set storage = \"postgres\" and database_url_env = \"LISTEN_DATABASE_URL\", \
                            and export the URL in that variable (never in the file)";
        if let Some(u) = &raw.database_url {
            let url = DatabaseUrl::new(u.get_ref().as_str().unwrap_or_default());
            self.err_hiding(
                u,
                "a database URL does not go in the config file",
                HELP,
                &url,
            );
        }
        let storage = raw.storage.as_ref()?;
        let value = storage.get_ref();
        if is_database_url(value) {
            self.err_hiding(
                storage,
                "storage is a database URL; the URL (and its password) does not go in the config file",
                HELP,
                &DatabaseUrl::new(value),
            );
            return None;
        }
        if value != "postgres" {
            if let Some(e) = &raw.database_url_env {
                self.err(
                    e,
                    "database_url_env is only read with storage = \"postgres\"",
                    HELP,
                );
            }
            return None;
        }
        let Some(name) = &raw.database_url_env else {
            self.err(
                storage,
                "storage = \"postgres\" needs database_url_env",
                HELP,
            );
            return None;
        };
        match self.env.var(name.get_ref()) {
            Some(v) if !v.trim().is_empty() => Some(DatabaseUrl::new(v.trim())),
            _ => {
                self.err(
                    name,
                    format!(
                        "environment variable {} is not set or empty",
                        name.get_ref()
                    ),
                    "export the database URL in it before starting `listen`, e.g. \
                     postgres://listen:PASSWORD@db.internal/listen",
                );
                None
            }
        }
    }

    fn endpoint_path(&mut self, p: Option<&Spanned<String>>, default: &str) -> String {
        match p {
            None => default.to_string(),
            Some(p) if p.get_ref().starts_with('/') && !p.get_ref().contains(['{', '*']) => {
                p.get_ref().clone()
            }
            Some(p) => {
                self.err(
                    p,
                    format!("path `{}` must start with `/`", p.get_ref()),
                    "e.g. path = \"/nimriz/webhook\" (no `{` or `*`)",
                );
                default.to_string()
            }
        }
    }

    fn secrets<T>(
        &mut self,
        table: &Spanned<T>,
        envs: &OneOrMany,
        files: &OneOrMany,
    ) -> Vec<Secret> {
        let mut out = Vec::new();
        for e in envs.items() {
            if let Some(s) = self.env_secret(&e) {
                out.push(s);
            }
        }
        for f in files.items() {
            if let Some(s) = self.file_secret(&f) {
                out.push(s);
            }
        }
        if envs.items().is_empty() && files.items().is_empty() {
            self.err(
                table,
                "this endpoint has no secret",
                "add secret_env = \"NAME\" (an environment variable) or secret_file = \"PATH\"; \
                 list several to accept an old and a new secret while rotating",
            );
        }
        out
    }

    fn env_secret(&mut self, name: &Spanned<String>) -> Option<Secret> {
        match self.env.var(name.get_ref()) {
            Some(v) if !v.trim().is_empty() => Some(Secret::new(v.trim().as_bytes())),
            _ => {
                self.err(
                    name,
                    format!(
                        "environment variable {} is not set or empty",
                        name.get_ref()
                    ),
                    "export it before starting `listen` (secrets never go in the config text)",
                );
                None
            }
        }
    }

    fn file_secret(&mut self, name: &Spanned<String>) -> Option<Secret> {
        let path = self.path(name.get_ref());
        match std::fs::read_to_string(&path) {
            Ok(v) if !v.trim().is_empty() => Some(Secret::new(v.trim().as_bytes())),
            Ok(_) => {
                self.err(name, format!("secret file {} is empty", path.display()), "");
                None
            }
            Err(e) => {
                self.err(
                    name,
                    format!("could not read secret file {}: {e}", path.display()),
                    "the path is relative to the config file's folder",
                );
                None
            }
        }
    }

    fn rule(&mut self, r: &RawRule) -> Option<Rule> {
        let mut touch = Vec::new();
        for t in &r.touch {
            match t.get_ref().as_str() {
                "click" | "qr_scan" => touch.push(t.get_ref().clone()),
                other => self.err(
                    t,
                    format!("unknown touch type `{other}`"),
                    "use \"click\" or \"qr_scan\"",
                ),
            }
        }
        let mut conditions = Vec::new();
        for (field, value) in &r.where_ {
            let values = match value.get_ref() {
                toml::Value::Array(items) => items.iter().map(scalar).collect::<Option<Vec<_>>>(),
                v => scalar(v).map(|s| vec![s]),
            };
            match values {
                Some(values) => conditions.push(Condition {
                    field: field.clone(),
                    any_of: values,
                }),
                None => self.err(
                    value,
                    format!("condition `{field}` must be a string, number, bool or a list of them"),
                    "e.g. utm_campaign = \"spring-launch-2026\" or \"cell.brand\" = [\"acme\", \"zeta\"]",
                ),
            }
        }
        let filter = Filter {
            events: r.events.clone(),
            touch,
            domains: r.domains.iter().map(|d| d.to_ascii_lowercase()).collect(),
            tags: r.tags.clone(),
            conditions,
        };
        if r.actions.is_empty() {
            self.err(
                &r.name,
                format!("rule `{}` has no action", r.name.get_ref()),
                "add a [[rules.actions]] table with type = \"slack\" or \"http\"",
            );
        }
        let mut actions = Vec::new();
        let mut ids = std::collections::HashSet::new();
        for (i, a) in r.actions.iter().enumerate() {
            if let Some(action) = self.action(r.name.get_ref(), i, a) {
                if !ids.insert(action.id.clone()) {
                    self.err(
                        a,
                        format!(
                            "two actions of rule `{}` are named the same",
                            r.name.get_ref()
                        ),
                        "give each action its own name",
                    );
                }
                actions.push(action);
            }
        }
        Some(Rule {
            name: r.name.get_ref().clone(),
            filter,
            actions,
        })
    }

    fn action(&mut self, rule: &str, index: usize, a: &Spanned<RawAction>) -> Option<Action> {
        let raw = a.get_ref();
        let kind_name = raw.kind.get_ref().as_str();
        if !matches!(kind_name, "slack" | "http") {
            self.err(
                &raw.kind,
                format!("unknown action type `{kind_name}`"),
                "use type = \"slack\" or type = \"http\"",
            );
            return None;
        }
        let name = raw
            .name
            .clone()
            .unwrap_or_else(|| format!("{kind_name}{}", index + 1));
        let url = match (&raw.url, &raw.url_env, &raw.url_file) {
            (Some(u), None, None) if kind_name == "slack" => {
                self.err(
                    u,
                    "a Slack webhook URL is a secret: it may not be written in the config",
                    "use url_env = \"SLACK_WEBHOOK_URL\" or url_file = \"PATH\"",
                );
                None
            }
            (Some(u), None, None) => Some(Secret::new(u.get_ref().as_bytes())),
            (None, Some(e), None) => self.env_secret(e),
            (None, None, Some(f)) => self.file_secret(f),
            _ => {
                self.err(
                    a,
                    "an action needs exactly one of url_env, url_file (or url for type = \"http\")",
                    "",
                );
                None
            }
        };
        let url = url?;
        if let Err(e) = url::Url::parse(url.expose_str())
            .map_err(|e| e.to_string())
            .and_then(|u| {
                if matches!(u.scheme(), "http" | "https") {
                    Ok(())
                } else {
                    Err("not http(s)".into())
                }
            })
        {
            // Say where it came from, never the value.
            self.err(
                a,
                format!("the action's URL is not a valid http(s) URL ({e})"),
                "",
            );
            return None;
        }
        let kind = if kind_name == "slack" {
            let Some(text) = &raw.text else {
                self.err(
                    a,
                    "a slack action needs `text` (a message template)",
                    "e.g. text = \"Warm click: {short_url} ({cell.brand}) from {country}\"",
                );
                return None;
            };
            ActionKind::Slack {
                text: Template::parse(text.get_ref()),
            }
        } else {
            let body = raw.body.as_ref().map(|b| Template::parse(b.get_ref()));
            if let (Some(t), Some(b)) = (&body, &raw.body)
                && let Err(e) = t.check_json_shape()
            {
                self.err(
                    b,
                    format!("body does not render to JSON: {e}"),
                    "placeholders like {utm_campaign} are replaced inside JSON strings: \
                         write \"campaign\": \"{utm_campaign}\"",
                );
            }
            let mut headers = Vec::new();
            for (h, env) in &raw.header_env {
                if let Some(v) = self.env_secret(env) {
                    headers.push((h.clone(), v));
                }
            }
            ActionKind::Http {
                body,
                idempotency_header: raw
                    .idempotency_header
                    .clone()
                    .unwrap_or_else(|| DEFAULT_IDEMPOTENCY_HEADER.into()),
                headers,
            }
        };
        let default_interval = if kind_name == "slack" { 1000 } else { 0 };
        Some(Action {
            id: format!("{rule}/{name}"),
            kind,
            url,
            min_interval: Duration::from_millis(
                raw.min_interval_ms
                    .unwrap_or(default_interval)
                    .min(MAX_SECS * 1000),
            ),
        })
    }
}

fn scalar(v: &toml::Value) -> Option<String> {
    match v {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env() -> HashMap<String, String> {
        HashMap::from([
            ("WH".to_string(), "whsec_1".to_string()),
            ("SLACK".to_string(), "http://127.0.0.1:9/hook".to_string()),
        ])
    }

    #[test]
    fn minimal_config_resolves_with_defaults() {
        let text = r#"
[webhook]
secret_env = "WH"
[[rules]]
name = "all"
[[rules.actions]]
type = "slack"
url_env = "SLACK"
text = "hi {event_id}"
"#;
        let c = parse("l.toml", text.into(), Path::new("/x"), &env()).expect("valid");
        assert_eq!(c.bind.to_string(), DEFAULT_BIND);
        assert_eq!(c.tolerance, Duration::from_secs(300));
        assert_eq!(c.storage, Path::new("/x/listen.db"));
        assert_eq!(c.rules[0].actions[0].id, "all/slack1");
        assert_eq!(c.rules[0].actions[0].min_interval, Duration::from_secs(1));
        assert!(format!("{c:?}").contains("redacted"));
        assert!(!format!("{c:?}").contains("whsec_1"));
    }

    #[test]
    fn problems_carry_file_and_line() {
        let text = "[webhook]\nsecret_env = \"MISSING\"\n[[rules]]\nname = \"r\"\n[[rules.actions]]\ntype = \"slack\"\nurl = \"https://hooks.slack.com/x\"\ntext = \"t\"\n";
        let Err(Error::Spec(report)) = parse("l.toml", text.into(), Path::new("."), &env()) else {
            panic!("expected problems");
        };
        let lines: Vec<usize> = report.problems.iter().map(|p| p.line).collect();
        assert_eq!(lines, vec![2, 7], "{}", report.render());
        assert!(report.render().contains("MISSING"));
        assert!(report.render().contains("secret"));
    }

    #[test]
    fn the_example_config_is_valid() {
        let env: HashMap<String, String> = [
            "NIMRIZ_WEBHOOK_SECRET",
            "NIMRIZ_CLICK_SECRET",
            "SLACK_WEBHOOK_URL",
            "CRM_URL",
        ]
        .iter()
        .map(|k| (k.to_string(), "https://example.test/hook".to_string()))
        .collect();
        let text = include_str!("../../../examples/listen.example.toml");
        let c = parse("listen.example.toml", text.into(), Path::new("."), &env)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.rules.len(), 1);
        assert_eq!(c.rules[0].actions.len(), 2);
        assert!(c.worker.lease > c.worker.request_timeout);
    }

    #[test]
    fn every_problem_at_once_without_follow_ons() {
        // Two unknown keys, a value of the wrong type, an unknown table, and a rule problem:
        // one run reports all five; the keys set aside cause nothing more.
        let text = "bindd = \"x\"\n[webhook]\nsecret_env = \"WH\"\nsecrte = 1\n\
                    [worker]\nmax_attempts = \"many\"\n[clik]\npath = \"/c\"\nheader = \"h\"\n\
                    [[rules]]\nname = \"r\"\n[[rules.actions]]\ntype = \"slack\"\n\
                    url = \"https://hooks.slack.com/x\"\ntext = \"t\"\n";
        let Err(Error::Spec(report)) = parse("l.toml", text.into(), Path::new("."), &env()) else {
            panic!("expected problems");
        };
        let lines: Vec<usize> = report.problems.iter().map(|p| p.line).collect();
        assert_eq!(lines, vec![1, 4, 6, 7, 14], "{}", report.render());
        assert!(report.render().contains("5 problems found"));
    }

    #[test]
    fn a_required_key_set_aside_is_not_reported_twice() {
        // `name` has the wrong type: one problem, not also "missing field `name`".
        let text = "[webhook]\nsecret_env = \"WH\"\n[[rules]]\nname = 3\n";
        let Err(Error::Spec(report)) = parse("l.toml", text.into(), Path::new("."), &env()) else {
            panic!("expected problems");
        };
        assert_eq!(report.problems.len(), 1, "{}", report.render());
        assert_eq!(report.problems[0].line, 4);
    }

    #[test]
    fn unknown_key_is_located() {
        let text = "[webhook]\nsecret_env = \"WH\"\nsecrte = 1\n";
        let Err(Error::Spec(report)) = parse("l.toml", text.into(), Path::new("."), &env()) else {
            panic!("expected problems");
        };
        assert_eq!(report.problems[0].line, 3, "{}", report.render());
    }
}
