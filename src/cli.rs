//! Command-line surface (clap). These structs mirror the flags only; `settings.rs` resolves
//! them once into each command's settings before any work is done.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

pub use crate::output::diagnostics::MessageFormat;

#[derive(Debug, Parser)]
#[command(
    name = "nimriz-matrix",
    version,
    about = "Turn a campaign matrix spec into Nimriz short links",
    long_about = "Expands a campaign spec (brands × channels × variants × …) into deterministic \
                  slugs and UTM-tagged destinations, creates them on Nimriz in batches, and \
                  records every run in a manifest. Safe to re-run."
)]
pub struct Cli {
    /// Print only errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Print more detail (each retry, each batch).
    #[arg(short, long, global = true)]
    pub verbose: bool,
    /// How spec problems and warnings are reported: `human` (stderr), `json` (our schema),
    /// `github` (workflow-command annotations on the spec's lines), `sarif` (2.1.0). The
    /// document goes to stdout for `validate`, to stderr for commands whose stdout is data.
    #[arg(long, global = true, value_enum, default_value_t = MessageFormat::Human)]
    pub message_format: MessageFormat,
    /// Color messages on stderr: auto (a terminal, unless NO_COLOR is set; CLICOLOR_FORCE
    /// forces it), always or never.
    #[arg(long, global = true, value_enum, default_value_t, value_name = "WHEN")]
    pub color: crate::output::color::ColorChoice,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Parse and check a spec offline; exit 0 when valid, 2 with diagnostics when not.
    Validate(ValidateArgs),
    /// Create the spec's links on Nimriz (or preview them with --dry-run); with --update,
    /// also change live links the spec changed.
    Build(BuildArgs),
    /// Compare the spec with the manifest and say what a build would change (offline).
    Plan(PlanArgs),
    /// Read every recorded link back from Nimriz and record what changed outside the spec.
    Refresh(RefreshArgs),
    /// Adopt the workspace's existing links that the spec plans into the manifest.
    Import(ImportArgs),
    /// End links: point them at a fallback, set an expiry, or delete them (asks first).
    Retire(RetireArgs),
    /// Hand a built campaign off: CSV, JSON or an xlsx workbook, QR codes and print sheets.
    Export(ExportArgs),
    /// Mint one short link now (per-recipient links at send time); prints JSON.
    Shorten(ShortenArgs),
    /// Run a local Nimriz-compatible API for trying builds and for tests.
    Sandbox(SandboxArgs),
    /// Receive Nimriz webhooks and click events; act on them through rules (Slack, HTTP).
    Listen(ListenArgs),
    /// Print a shell completion script on stdout (bash, zsh, fish, powershell, elvish).
    Completions(CompletionsArgs),
    /// Print the man page (roff) on stdout: `nimriz-matrix man > nimriz-matrix.1`.
    Man,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The spec file (TOML, or a CSV with one row per link).
    pub spec: PathBuf,
    /// Refuse a matrix that expands to more links than this.
    #[arg(long, default_value_t = 1_000_000, value_name = "N")]
    pub max_links: u64,
    #[command(flatten)]
    pub inputs: InputArgs,
}

/// What a spec may make the command read. Flags (or the environment) of the person running
/// the command, never spec fields: a spec from a pull request must not widen them.
#[derive(Debug, Clone, Args)]
pub struct InputArgs {
    /// Read `from` files outside the spec's folder (by default such a path is an error and
    /// the file is not opened). Only for specs you trust.
    #[arg(
        long,
        env = "NIMRIZ_MATRIX_ALLOW_OUTSIDE_INPUTS",
        action = clap::ArgAction::SetTrue,
        value_parser = clap::builder::FalseyValueParser::new()
    )]
    pub allow_outside_inputs: bool,
    /// Refuse a spec or input file larger than this (256 MiB by default).
    #[arg(long, default_value_t = nimriz_matrix_core::spec::DEFAULT_MAX_INPUT_BYTES, value_name = "BYTES", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_input_bytes: u64,
    /// Encoding of a CSV given as the spec, and of the CSV files a spec names without an
    /// `encoding` field: a WHATWG label (windows-1252, latin1, utf-16le, shift_jis, ...).
    /// UTF-8 by default; a byte-order mark (UTF-8 or UTF-16) always wins.
    #[arg(long, value_name = "LABEL", value_parser = parse_encoding)]
    pub encoding: Option<&'static nimriz_matrix_core::spec::Encoding>,
}

fn parse_encoding(label: &str) -> Result<&'static nimriz_matrix_core::spec::Encoding, String> {
    nimriz_matrix_core::spec::encoding_for_label(label)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlanFormat {
    Table,
    Csv,
    Json,
    Jsonl,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The spec file (TOML, or a CSV with one row per link).
    pub spec: PathBuf,
    /// Print the plan and exit: no network, no API key needed.
    #[arg(long)]
    pub dry_run: bool,
    /// Output format of the dry-run plan (for a built manifest, see `export`).
    #[arg(long, value_enum, default_value_t = PlanFormat::Table, requires = "dry_run")]
    pub format: PlanFormat,
    /// Write the plan to FILE instead of stdout (`-` = stdout).
    #[arg(short, long, value_name = "FILE", requires = "dry_run")]
    pub output: Option<PathBuf>,
    /// Refuse a matrix that expands to more links than this.
    #[arg(long, default_value_t = 1_000_000, value_name = "N")]
    pub max_links: u64,
    /// Manifest path (default: `<spec stem>.manifest.json` beside the spec).
    #[arg(long, value_name = "PATH")]
    pub manifest: Option<PathBuf>,
    #[command(flatten)]
    pub inputs: InputArgs,
    #[command(flatten)]
    pub api: ApiArgs,
    /// Rows per bulk create request.
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub batch_size: usize,
    /// Bulk requests in flight at once.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub concurrency: usize,
    /// Also change live links whose destination, expiry or slug (`[[moved]]`) the spec
    /// changed, in place (same url_id, clicks kept). Without it they are listed, exit 1.
    #[arg(long, conflicts_with = "dry_run")]
    pub update: bool,
    /// With --update: also set links edited outside the spec (drift) back to the spec.
    #[arg(long, requires = "update")]
    pub force_drift: bool,
    /// Apply a plan saved by `plan --out`, refusing it if the spec, its inputs or the
    /// manifest changed since (implies --update when the plan has updates).
    #[arg(long, value_name = "PLAN.json", conflicts_with = "dry_run")]
    pub plan: Option<PathBuf>,
    /// Allow changing the slug or domain of links whose QR codes were exported for print
    /// (the printed codes then break); refused by default.
    #[arg(long)]
    pub break_printed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlanOutputFormat {
    /// Summary, then the changes, for people.
    Human,
    /// The versioned plan document (format `nimriz-matrix-plan`, version 1).
    Json,
    /// A pull-request comment body.
    Markdown,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Exit codes: as for every command (0 ok, 2 invalid, 4 local I/O …). \
    With --detailed-exitcode: 0 no changes, 2 changes pending, 1 any error."
)]
pub struct PlanArgs {
    /// The spec file (TOML, or a CSV with one row per link).
    pub spec: PathBuf,
    /// Manifest path (default: `<spec stem>.manifest.json` beside the spec).
    #[arg(long, value_name = "PATH")]
    pub manifest: Option<PathBuf>,
    /// Output format on stdout.
    #[arg(long, value_enum, default_value_t = PlanOutputFormat::Human)]
    pub format: PlanOutputFormat,
    /// Exit 0 when there are no changes, 2 when there are, 1 on any error.
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// Also save the plan (JSON) for `build --plan FILE`.
    #[arg(long, value_name = "PLAN.json")]
    pub out: Option<PathBuf>,
    /// Allow a plan that changes the slug or domain of links whose QR codes were printed.
    #[arg(long)]
    pub break_printed: bool,
    /// Run `refresh` first (needs the API key), so the plan sees outside edits.
    #[arg(long)]
    pub refresh: bool,
    /// Refuse a matrix that expands to more links than this.
    #[arg(long, default_value_t = 1_000_000, value_name = "N")]
    pub max_links: u64,
    #[command(flatten)]
    pub inputs: InputArgs,
    #[command(flatten)]
    pub api: ApiArgs,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Exit codes: 0 read everything, 1 some links could not be read, 3 API, \
    4 local. With --detailed-exitcode: 0 no drift, 2 drift or outside changes, 1 any error."
)]
pub struct RefreshArgs {
    /// The spec file the manifest was built from.
    pub spec: PathBuf,
    /// Manifest path (default: `<spec stem>.manifest.json` beside the spec).
    #[arg(long, value_name = "PATH")]
    pub manifest: Option<PathBuf>,
    /// Exit 0 when nothing drifted, 2 when something did, 1 on any error.
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// Reads in flight at once.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub concurrency: usize,
    /// Refuse a matrix that expands to more links than this.
    #[arg(long, default_value_t = 1_000_000, value_name = "N")]
    pub max_links: u64,
    #[command(flatten)]
    pub inputs: InputArgs,
    #[command(flatten)]
    pub api: ApiArgs,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The spec whose planned links to look for in the workspace.
    pub spec: PathBuf,
    /// Manifest path (default: `<spec stem>.manifest.json` beside the spec).
    #[arg(long, value_name = "PATH")]
    pub manifest: Option<PathBuf>,
    /// Refuse a matrix that expands to more links than this.
    #[arg(long, default_value_t = 1_000_000, value_name = "N")]
    pub max_links: u64,
    #[command(flatten)]
    pub inputs: InputArgs,
    #[command(flatten)]
    pub api: ApiArgs,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("how").required(true).args(["fallback", "expire_at", "delete"])))]
pub struct RetireArgs {
    /// The spec the manifest was built from.
    pub spec: PathBuf,
    /// Manifest path (default: `<spec stem>.manifest.json` beside the spec).
    #[arg(long, value_name = "PATH")]
    pub manifest: Option<PathBuf>,
    /// Point the links at this https URL (they keep working, and their clicks).
    #[arg(long, value_name = "URL")]
    pub fallback: Option<String>,
    /// Make the links expire at this time (RFC 3339, e.g. 2099-01-31T23:59:59Z).
    #[arg(long, value_name = "TIME")]
    pub expire_at: Option<String>,
    /// Delete the links on Nimriz (only links this tool created; never adopted ones).
    #[arg(long)]
    pub delete: bool,
    /// Only links no longer in the spec (orphans); default: every live link recorded.
    #[arg(long)]
    pub orphans_only: bool,
    /// Do it without asking (needed when there is no terminal to ask on).
    #[arg(long)]
    pub yes: bool,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub concurrency: usize,
    /// Refuse a matrix that expands to more links than this.
    #[arg(long, default_value_t = 1_000_000, value_name = "N")]
    pub max_links: u64,
    #[command(flatten)]
    pub inputs: InputArgs,
    #[command(flatten)]
    pub api: ApiArgs,
}

/// How to reach the API. The key itself is never a flag value: it comes from
/// `NIMRIZ_API_KEY` or from the file named by `--api-key-file`.
#[derive(Debug, Clone, Args)]
pub struct ApiArgs {
    /// API base URL [env: NIMRIZ_API_BASE] [default: https://api.nimriz.com]
    #[arg(long, value_name = "URL")]
    pub api_base: Option<String>,
    /// Read the API key from this file (instead of NIMRIZ_API_KEY).
    #[arg(long, value_name = "PATH")]
    pub api_key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// One row per link: dimensions, link columns, UTM values, tags.
    Csv,
    /// The manifest with its journal replayed.
    Json,
    /// A workbook: a flat `links` sheet plus one per brand (see --sheet-by); needs -o.
    Xlsx,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum QrCorrection {
    /// ~7 % of a code may be damaged.
    L,
    /// ~15 % (default).
    M,
    /// ~25 %.
    Q,
    /// ~30 %.
    H,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Bom {
    /// With -o FILE (a file someone opens in Excel), not on stdout (a pipe).
    Auto,
    Always,
    Never,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    nimriz-matrix export matrix.example.manifest.json -o links.csv\n  \
    nimriz-matrix export matrix.example.manifest.json --format xlsx -o links.xlsx\n  \
    nimriz-matrix export matrix.example.manifest.json --qr qr --sheets")]
pub struct ExportArgs {
    /// A manifest written by `build`.
    pub manifest: PathBuf,
    /// Output format: csv (one row per link, for spreadsheets) or json.
    #[arg(long, value_enum, default_value_t = ExportFormat::Csv)]
    pub format: ExportFormat,
    /// Write to FILE instead of stdout (`-` = stdout). With --qr alone, no table is written.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Start the CSV with a UTF-8 byte-order mark, so Excel reads accents right.
    #[arg(long, value_enum, default_value_t = Bom::Auto)]
    pub bom: Bom,
    /// Write a QR code (SVG + PNG, encoding the short URL with `?nr=qr`) per live link into DIR.
    #[arg(long, value_name = "DIR")]
    pub qr: Option<PathBuf>,
    /// Code file names: `{dimension}`, `{slug}`, `{domain}`; `/` makes folders
    /// (default: `{first}/{second}-{third}…`, e.g. `acme/email-v1`).
    #[arg(long, value_name = "PATTERN", requires = "qr")]
    pub qr_name: Option<String>,
    /// PNG width and height in pixels.
    #[arg(long, value_name = "PX", default_value_t = 1024, requires = "qr")]
    pub qr_size: u32,
    /// Error-correction level.
    #[arg(long, value_enum, default_value_t = QrCorrection::M, requires = "qr")]
    pub qr_ec: QrCorrection,
    /// Blank margin around each code, in modules (scanners need it; 4 is the standard).
    #[arg(long, value_name = "MODULES", default_value_t = 4, requires = "qr")]
    pub qr_quiet_zone: u32,
    /// Foreground colour, `#rrggbb`.
    #[arg(
        long,
        value_name = "COLOUR",
        default_value = "#000000",
        requires = "qr"
    )]
    pub qr_dark: String,
    /// Background colour, `#rrggbb`.
    #[arg(
        long,
        value_name = "COLOUR",
        default_value = "#ffffff",
        requires = "qr"
    )]
    pub qr_light: String,
    /// Also write A4 print sheets (DIR/sheets/*.svg): every code with its cell and short URL.
    #[arg(long, requires = "qr")]
    pub sheets: bool,
    /// Dimension that groups print sheets and workbook tabs (default: the first, e.g. brand).
    #[arg(long, value_name = "DIMENSION")]
    pub sheet_by: Option<String>,
    /// Replace existing QR and sheet files.
    #[arg(long, requires = "qr")]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct ShortenArgs {
    /// Destination URL (https; plain http only with --allow-http).
    pub url: String,
    /// Accept a plain http:// destination (only if your domain's policy allows it).
    #[arg(long)]
    pub allow_http: bool,
    /// Short domain host (resolved via the API), e.g. `go.acme.example`.
    #[arg(long, value_name = "HOST", conflicts_with = "domain_id")]
    pub domain: Option<String>,
    /// Short domain id (UUID).
    #[arg(long, value_name = "ID")]
    pub domain_id: Option<String>,
    /// Custom slug: lowercase letters, digits and dashes (checked like spec slugs).
    #[arg(long)]
    pub slug: Option<String>,
    /// Add `utm_source=V` to the destination's query (refused if the URL already sets another value).
    #[arg(long, value_name = "V")]
    pub utm_source: Option<String>,
    /// Add `utm_medium=V` to the destination's query (refused if the URL already sets another value).
    #[arg(long, value_name = "V")]
    pub utm_medium: Option<String>,
    /// Add `utm_campaign=V` to the destination's query (refused if the URL already sets another value).
    #[arg(long, value_name = "V")]
    pub utm_campaign: Option<String>,
    /// Add `utm_term=V` to the destination's query (refused if the URL already sets another value).
    #[arg(long, value_name = "V")]
    pub utm_term: Option<String>,
    /// Add `utm_content=V` to the destination's query (refused if the URL already sets another value).
    #[arg(long, value_name = "V")]
    pub utm_content: Option<String>,
    /// Add `utm_id=V` to the destination's query (refused if the URL already sets another value).
    #[arg(long, value_name = "V")]
    pub utm_id: Option<String>,
    /// Redirect status: 301 or 302.
    #[arg(long, default_value_t = 302)]
    pub redirect: u16,
    /// Expiry, RFC 3339 with a time zone and in the future, e.g. 2099-12-31T23:59:59Z.
    #[arg(long, value_name = "TIME")]
    pub expires_at: Option<String>,
    #[command(flatten)]
    pub api: ApiArgs,
}

#[derive(Debug, Args)]
pub struct SandboxArgs {
    /// Address to listen on (loopback by default; port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8787", value_name = "IP:PORT")]
    pub addr: String,
    /// Allow a non-loopback --addr (anyone who can reach it can use the printed key).
    #[arg(long)]
    pub allow_remote: bool,
    /// The API key the sandbox accepts. A local test value, never your real Nimriz key.
    #[arg(long, default_value = nimriz_sandbox::config::DEFAULT_KEY, value_name = "KEY")]
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
    /// With --rate-limit, publish the budget in each answer's headers: none (default: Nimriz
    /// documents none), ietf (RateLimit-Limit/-Remaining/-Reset + RateLimit-Policy), or x
    /// (X-RateLimit-Limit/-Remaining/-Reset, the reset as a Unix time).
    #[arg(long, default_value = "none", value_name = "STYLE", value_parser = nimriz_sandbox::config::parse_rate_headers, help_heading = "Fault injection")]
    pub rate_headers: nimriz_sandbox::config::RateHeaders,
    /// Answer this fraction of API requests with 503 before doing anything.
    #[arg(long, default_value_t = 0.0, value_name = "P", value_parser = nimriz_sandbox::config::parse_probability, help_heading = "Fault injection")]
    pub fail_rate: f64,
    /// Commit this fraction of successful creates, then drop the connection without answering.
    #[arg(long, default_value_t = 0.0, value_name = "P", value_parser = nimriz_sandbox::config::parse_probability, help_heading = "Fault injection")]
    pub drop_after_commit_rate: f64,
    /// Refuse bulk requests with more rows than this (413 payload_too_large).
    #[arg(long, value_name = "N", help_heading = "Fault injection")]
    pub bulk_max: Option<usize>,
    /// Answer 404 on the bulk route (clients must fall back to single creates).
    #[arg(long, help_heading = "Fault injection")]
    pub no_bulk: bool,
    /// Status for a slug conflict (code slug_taken): 409, 403 or 422.
    #[arg(long, default_value_t = 409, value_name = "STATUS", value_parser = nimriz_sandbox::config::parse_conflict_status, help_heading = "Fault injection")]
    pub conflict_status: u16,
    /// Shape of the answers: wide (default: every alias at once), url-id-only, id-only,
    /// numeric-id, data-envelope, bare, flat-errors, status-words, no-row-ids, paged-domains,
    /// or mixed (each answer in one of them, drawn from --seed).
    #[arg(long, default_value = "wide", value_name = "VARIANT", value_parser = nimriz_sandbox::config::parse_response_shape, help_heading = "Fault injection")]
    pub response_shape: nimriz_sandbox::config::ResponseShape,
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
    #[arg(long, default_value = nimriz::facts::DEFAULT_CLICK_HEADER, value_name = "NAME", help_heading = "Events (for `listen`)")]
    pub click_header: String,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ListenArgs {
    #[command(subcommand)]
    pub command: Option<ListenCommand>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum ListenCommand {
    /// Receive events and act on them (the default).
    Serve(ServeArgs),
    /// Print stored events with their raw payload and outcome, one JSON object per line.
    Log(LogArgs),
    /// Re-queue dead-lettered actions (all, or one event's / one action's).
    Replay(ReplayArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// The listen config (TOML); see examples/listen.example.toml.
    #[arg(long, value_name = "PATH", default_value = "listen.toml")]
    pub config: PathBuf,
    /// Override the config's bind address (port 0 picks a free port).
    #[arg(long, value_name = "IP:PORT")]
    pub bind: Option<String>,
    /// Allow a non-loopback bind address.
    #[arg(long)]
    pub allow_remote: bool,
    /// Commit at most this many waiting requests together (1 = no grouping).
    #[arg(long, default_value_t = nimriz_listen::DEFAULT_WRITE_BATCH, value_name = "N", hide = true)]
    pub write_batch: usize,
}

/// Where the store is: `--db`, or the `storage` of `--config` (no secrets needed for this).
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// The listen config whose `storage` to read.
    #[arg(
        long,
        value_name = "PATH",
        default_value = "listen.toml",
        conflicts_with = "db"
    )]
    pub config: PathBuf,
    /// The SQLite store directly.
    #[arg(long, value_name = "PATH")]
    pub db: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct LogArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Only events received within this long ago: `30s`, `15m`, `1h`, `7d`.
    #[arg(long, value_name = "AGE", value_parser = nimriz_listen::parse_age)]
    pub since: Option<Duration>,
    /// Only this event.
    #[arg(long, value_name = "ID")]
    pub event_id: Option<String>,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Only this event's dead letters.
    #[arg(long, value_name = "ID")]
    pub event_id: Option<String>,
    /// Only this action's (`rule/action`).
    #[arg(long, value_name = "ACTION")]
    pub action: Option<String>,
}
