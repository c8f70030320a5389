//! How library code tells a person what it is doing without printing itself: the command-line
//! shell implements [`Reporter`] (quiet / normal / verbose, colour, progress bars); a library
//! user passes [`Silent`] or their own.

/// Where messages for a person go. Every method has a silent default.
pub trait Reporter: Send + Sync {
    /// A normal status line (hidden by `--quiet`).
    fn info(&self, _msg: &str) {}
    /// Detail shown with `--verbose` only.
    fn detail(&self, _msg: &str) {}
    /// A warning (hidden by `--quiet` only).
    fn warn(&self, _msg: &str) {}
    /// `--verbose` is on (for callers that would otherwise build costly detail lines).
    fn is_verbose(&self) -> bool {
        false
    }
    /// `--quiet` is on.
    fn is_quiet(&self) -> bool {
        false
    }
    /// Start showing progress for `total` items; `retries` reads the retries so far.
    fn progress(&self, _total: u64, _retries: RetryCounter) -> Box<dyn ProgressSink> {
        Box::new(NoProgress)
    }
}

/// Prints nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl Reporter for Silent {
    fn is_quiet(&self) -> bool {
        true
    }
}

/// A source for "retries so far" (the client's run-wide counter), shown beside progress.
pub type RetryCounter = std::sync::Arc<dyn Fn() -> u64 + Send + Sync>;

/// Progress of a long run (links settled of a total). The CLI draws a bar or prints a line
/// every few seconds; a library user may ignore it.
pub trait ProgressSink: Send + Sync {
    /// `n` more items settled.
    fn inc(&self, _n: u64) {}
    /// A message printed without tearing a progress bar.
    fn note(&self, _msg: &str) {}
    /// The run is over: remove the bar.
    fn finish(&self) {}
}

/// A progress sink that shows nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl ProgressSink for NoProgress {}
