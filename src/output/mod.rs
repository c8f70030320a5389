//! Everything a person sees on stderr goes through the `Printer`: one place decides
//! quiet / normal / verbose. Data (plans, exports) goes to stdout or `--output`.

pub mod color;
pub mod diagnostics;
pub mod progress;

use nimriz_matrix_core::report::{ProgressSink, Reporter, RetryCounter};
use std::io::{IsTerminal, Write};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verbosity {
    Quiet,
    Normal,
    Verbose,
}

#[derive(Debug, Clone)]
pub struct Printer {
    pub verbosity: Verbosity,
    /// stderr is a terminal (draw progress bars).
    pub stderr_is_tty: bool,
    /// Set for `--message-format json|github|sarif`: warnings are collected here and
    /// reported in the document (see `diagnostics.rs`) instead of as `warning:` lines.
    pub collected_warnings: Option<std::sync::Arc<std::sync::Mutex<Vec<String>>>>,
    /// Color the `error`/`warning` markers (`--color`, NO_COLOR, CLICOLOR_FORCE).
    pub color: bool,
}

impl Printer {
    pub fn new(quiet: bool, verbose: bool) -> Self {
        let verbosity = if quiet {
            Verbosity::Quiet
        } else if verbose {
            Verbosity::Verbose
        } else {
            Verbosity::Normal
        };
        Printer {
            verbosity,
            stderr_is_tty: std::io::stderr().is_terminal(),
            collected_warnings: None,
            color: false,
        }
    }

    pub fn with_color(mut self, color: bool) -> Self {
        self.color = color;
        self
    }
}

impl Reporter for Printer {
    fn info(&self, msg: &str) {
        if self.verbosity >= Verbosity::Normal {
            eprintln_lossy(msg);
        }
    }

    fn detail(&self, msg: &str) {
        if self.verbosity >= Verbosity::Verbose {
            eprintln_lossy(msg);
        }
    }

    fn warn(&self, msg: &str) {
        if let Some(collected) = &self.collected_warnings {
            collected
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(msg.to_string());
        } else if self.verbosity >= Verbosity::Normal {
            let line = format!("warning: {msg}");
            eprintln_lossy(&if self.color {
                color::paint(&line)
            } else {
                line
            });
        }
    }

    fn is_verbose(&self) -> bool {
        self.verbosity >= Verbosity::Verbose
    }

    fn is_quiet(&self) -> bool {
        self.verbosity == Verbosity::Quiet
    }

    /// Must be called inside a tokio runtime (a small task refreshes the line).
    fn progress(&self, total: u64, retries: RetryCounter) -> Box<dyn ProgressSink> {
        Box::new(progress::Progress::start(self, total, retries))
    }
}

/// Print a build's summary on stderr. With `--quiet` only the failed/drifted links are
/// shown (they are errors the user must act on).
pub fn print_build_report(report: &nimriz_matrix_core::apply::BuildReport, printer: &Printer) {
    let lines = if printer.verbosity == Verbosity::Quiet {
        report.problem_lines()
    } else {
        report.summary_lines()
    };
    let mut err = std::io::stderr().lock();
    for l in lines {
        let _ = writeln!(err, "{l}");
    }
}

fn eprintln_lossy(s: &str) {
    // A closed stderr must not turn into a panic.
    let _ = writeln!(std::io::stderr(), "{s}");
}

/// Render a top-level error on stderr, once.
pub fn render_error(err: &nimriz_matrix_core::Error, use_color: bool) {
    let paint = |s: String| if use_color { color::paint(&s) } else { s };
    match err {
        nimriz_matrix_core::Error::Spec(report) => eprintln_lossy(&paint(report.render())),
        other => {
            let mut msg = format!("error: {other}");
            let mut source = std::error::Error::source(other);
            while let Some(s) = source {
                msg.push_str(&format!("\n  caused by: {s}"));
                source = s.source();
            }
            eprintln_lossy(&paint(msg));
        }
    }
}
