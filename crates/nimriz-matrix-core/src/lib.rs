//! nimriz-matrix: a campaign matrix → Nimriz short links.
//!
//! The pipeline, one folder per stage:
//! `spec` (parse TOML/CSV, with locations) → `expand` (cells, templates, slugs, UTMs, rules)
//! → `plan` (the list of links; dry-run output) → `apply` (create them through `client`)
//! → `manifest` (the crash-safe record). `sandbox` is a local Nimriz-compatible API.
//!
//! `run` is what the binary calls; tests call it too.

pub mod apply;
pub mod cli;
pub mod client;
pub mod error;
pub mod expand;
pub mod listen;
pub mod manifest;
pub mod output;
pub mod plan;
pub mod sandbox;
pub mod spec;

pub use error::{Error, Result, exit};

use cli::{Cli, Command};
use output::Printer;

/// Run one command to completion; returns the process exit code.
pub fn run(cli: Cli) -> Result<u8> {
    let printer = Printer::new(cli.quiet, cli.verbose);
    match cli.command {
        Command::Validate(args) => plan::validate_command(&args, &printer),
        Command::Build(args) if args.dry_run => plan::dry_run_command(&args, &printer),
        Command::Build(args) => {
            let plan = plan::load(&args.spec, args.max_links, &printer)?;
            runtime()?.block_on(apply::build_command(plan, &args, &printer))
        }
        Command::Export(args) => manifest::export_command(&args),
        Command::Shorten(args) => runtime()?.block_on(apply::shorten_command(&args, &printer)),
        Command::Sandbox(args) => runtime()?.block_on(sandbox::serve_command(args, &printer)),
        Command::Listen(args) => listen::listen_command(args, &printer),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("start", "the async runtime", e))
}
