//! Command-line surface (clap). These structs mirror the flags only; each command resolves
//! them once into its own settings before doing any work.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

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
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Parse and check a spec offline; exit 0 when valid, 2 with diagnostics when not.
    Validate(ValidateArgs),
    /// Create the spec's links on Nimriz (or preview them with --dry-run).
    Build(BuildArgs),
    /// Write a build manifest as CSV (for spreadsheets) or JSON.
    Export(ExportArgs),
    /// Mint one short link now (per-recipient links at send time); prints JSON.
    Shorten(ShortenArgs),
    /// Run a local Nimriz-compatible API for trying builds and for tests.
    Sandbox(crate::sandbox::SandboxArgs),
    /// Receive Nimriz webhooks and click events; act on them through rules (Slack, HTTP).
    Listen(crate::listen::ListenArgs),
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The spec file (TOML, or a CSV with one row per link).
    pub spec: PathBuf,
    /// Refuse a matrix that expands to more links than this.
    #[arg(long, default_value_t = 1_000_000, value_name = "N")]
    pub max_links: u64,
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
    pub api: ApiArgs,
    /// Rows per bulk create request.
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub batch_size: usize,
    /// Bulk requests in flight at once.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub concurrency: usize,
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
    Csv,
    Json,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// A manifest written by `build`.
    pub manifest: PathBuf,
    #[arg(long, value_enum, default_value_t = ExportFormat::Csv)]
    pub format: ExportFormat,
    /// Write to FILE instead of stdout (`-` = stdout).
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
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
    #[arg(long, value_name = "V")]
    pub utm_source: Option<String>,
    #[arg(long, value_name = "V")]
    pub utm_medium: Option<String>,
    #[arg(long, value_name = "V")]
    pub utm_campaign: Option<String>,
    #[arg(long, value_name = "V")]
    pub utm_term: Option<String>,
    #[arg(long, value_name = "V")]
    pub utm_content: Option<String>,
    #[arg(long, value_name = "V")]
    pub utm_id: Option<String>,
    /// Redirect status: 301 or 302.
    #[arg(long, default_value_t = 302)]
    pub redirect: u16,
    /// Expiry, RFC 3339 with a time zone and in the future, e.g. 2026-06-30T23:59:59Z.
    #[arg(long, value_name = "TIME")]
    pub expires_at: Option<String>,
    #[command(flatten)]
    pub api: ApiArgs,
}
