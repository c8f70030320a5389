//! Thin binary: parse flags, run, render the error once, map the exit code.

use clap::Parser;
use nimriz_matrix::{cli::Cli, exit};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // clap prints help/version to stdout (exit 0) and usage errors to stderr.
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                exit::INVALID
            } else {
                exit::OK
            });
        }
    };
    match nimriz_matrix::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            nimriz_matrix::output::render_error(&err);
            ExitCode::from(err.exit_code())
        }
    }
}

// Expansion allocates many short strings per link; mimalloc is markedly faster at that
// than glibc malloc (measured: see BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
