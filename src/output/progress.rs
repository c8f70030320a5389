//! Build progress on stderr: an indicatif bar when stderr is a terminal (links done/total,
//! rate, ETA, retries so far), a plain line every couple of seconds otherwise (CI logs),
//! nothing with `--quiet`.

use super::{Printer, Verbosity};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use nimriz_matrix_core::report::{ProgressSink, Reporter};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often a plain (non-TTY) progress line is printed.
pub const PLAIN_INTERVAL: Duration = Duration::from_secs(2);

const BAR_TEMPLATE: &str =
    "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} links  {msg}  ETA {eta}";

pub use nimriz_matrix_core::report::RetryCounter;

pub struct Progress {
    mode: Mode,
    done: Arc<AtomicU64>,
    ticker: Mutex<Option<tokio::task::JoinHandle<()>>>,
    printer: Printer,
}

enum Mode {
    Hidden,
    Bar(ProgressBar),
    Plain,
}

impl Progress {
    /// Start showing progress for `total` links. Must be called inside a tokio runtime
    /// (a small task refreshes the retry count / prints plain lines).
    pub fn start(printer: &Printer, total: u64, retries: RetryCounter) -> Self {
        let done = Arc::new(AtomicU64::new(0));
        if printer.verbosity == Verbosity::Quiet || total == 0 {
            return Progress {
                mode: Mode::Hidden,
                done,
                ticker: Mutex::new(None),
                printer: printer.clone(),
            };
        }
        // Verbose mode prints a line per retry/batch; a bar would fight with those lines.
        if printer.stderr_is_tty && printer.verbosity == Verbosity::Normal {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template(BAR_TEMPLATE)
                .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar.set_message("0.0/s, 0 retries");
            let ticker_bar = bar.clone();
            let started = Instant::now();
            let ticker = tokio::spawn(async move {
                let mut every = tokio::time::interval(Duration::from_millis(250));
                loop {
                    every.tick().await;
                    // indicatif's own {per_sec} prints four decimals; one is plenty.
                    let secs = started.elapsed().as_secs_f64();
                    let rate = if secs > 0.0 {
                        ticker_bar.position() as f64 / secs
                    } else {
                        0.0
                    };
                    ticker_bar.set_message(format!("{rate:.1}/s, {} retries", retries()));
                    ticker_bar.tick();
                }
            });
            return Progress {
                mode: Mode::Bar(bar),
                done,
                ticker: Mutex::new(Some(ticker)),
                printer: printer.clone(),
            };
        }
        let started = Instant::now();
        let ticker_done = done.clone();
        let ticker = tokio::spawn(async move {
            let mut every = tokio::time::interval(PLAIN_INTERVAL);
            every.tick().await; // the first tick is immediate; nothing to say yet
            loop {
                every.tick().await;
                let line = plain_line(
                    ticker_done.load(Ordering::Relaxed),
                    total,
                    started.elapsed(),
                    retries(),
                );
                let _ = writeln!(std::io::stderr(), "{line}");
            }
        });
        Progress {
            mode: Mode::Plain,
            done,
            ticker: Mutex::new(Some(ticker)),
            printer: printer.clone(),
        }
    }

    fn stop(&self) {
        let ticker = self.ticker.lock().map(|mut t| t.take()).unwrap_or_default();
        if let Some(t) = ticker {
            t.abort();
        }
        if let Mode::Bar(bar) = &self.mode {
            bar.finish_and_clear();
        }
    }
}

impl ProgressSink for Progress {
    /// `n` more links settled (created, exists, drift or failed).
    fn inc(&self, n: u64) {
        self.done.fetch_add(n, Ordering::Relaxed);
        if let Mode::Bar(bar) = &self.mode {
            bar.inc(n);
        }
    }

    /// Print a line without tearing the bar.
    fn note(&self, msg: &str) {
        match &self.mode {
            Mode::Bar(bar) => bar.suspend(|| self.printer.warn(msg)),
            _ => self.printer.warn(msg),
        }
    }

    fn finish(&self) {
        self.stop();
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `progress: 120/1000 links (12%), 35.2/s, ETA 25s, 2 retries`
pub fn plain_line(done: u64, total: u64, elapsed: Duration, retries: u64) -> String {
    let pct = (done * 100).checked_div(total).unwrap_or(100);
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
    let eta = if rate > 0.0 && done < total {
        format!("{}s", ((total - done) as f64 / rate).ceil() as u64)
    } else {
        "?".to_string()
    };
    format!("progress: {done}/{total} links ({pct}%), {rate:.1}/s, ETA {eta}, {retries} retries")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bar_template_parses() {
        assert!(ProgressStyle::with_template(BAR_TEMPLATE).is_ok());
    }

    #[test]
    fn plain_line_shape() {
        assert_eq!(
            plain_line(50, 100, Duration::from_secs(10), 3),
            "progress: 50/100 links (50%), 5.0/s, ETA 10s, 3 retries"
        );
        assert_eq!(
            plain_line(0, 100, Duration::ZERO, 0),
            "progress: 0/100 links (0%), 0.0/s, ETA ?, 0 retries"
        );
        assert!(plain_line(0, 0, Duration::ZERO, 0).contains("(100%)"));
    }
}
