//! Everything a person sees on stderr goes through the `Printer`: one place decides
//! quiet / normal / verbose. Data (plans, exports) goes to stdout or `--output`.

pub mod progress;

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
    /// stderr is a terminal (draw progress bars) and NO_COLOR is unset (use colour).
    pub stderr_is_tty: bool,
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
        let stderr_is_tty = std::io::stderr().is_terminal();
        let color = stderr_is_tty && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        Printer {
            verbosity,
            stderr_is_tty,
            color,
        }
    }

    /// A printer that prints nothing (library use, tests).
    pub fn quiet() -> Self {
        Printer {
            verbosity: Verbosity::Quiet,
            stderr_is_tty: false,
            color: false,
        }
    }

    /// Normal progress/status line.
    pub fn info(&self, msg: impl AsRef<str>) {
        if self.verbosity >= Verbosity::Normal {
            eprintln_lossy(msg.as_ref());
        }
    }

    /// Detail shown with `--verbose` only.
    pub fn detail(&self, msg: impl AsRef<str>) {
        if self.verbosity >= Verbosity::Verbose {
            eprintln_lossy(msg.as_ref());
        }
    }

    /// A warning: shown unless `--quiet`.
    pub fn warn(&self, msg: impl AsRef<str>) {
        if self.verbosity >= Verbosity::Normal {
            eprintln_lossy(&format!("warning: {}", msg.as_ref()));
        }
    }
}

fn eprintln_lossy(s: &str) {
    // A closed stderr must not turn into a panic.
    let _ = writeln!(std::io::stderr(), "{s}");
}

/// Render a top-level error on stderr, once.
pub fn render_error(err: &crate::Error) {
    match err {
        crate::Error::Spec(report) => eprintln_lossy(&report.render()),
        other => {
            let mut msg = format!("error: {other}");
            let mut source = std::error::Error::source(other);
            while let Some(s) = source {
                msg.push_str(&format!("\n  caused by: {s}"));
                source = s.source();
            }
            eprintln_lossy(&msg);
        }
    }
}
