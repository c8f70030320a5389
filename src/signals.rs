//! The shell owns signals: commands that run until stopped get a future from here.
//!
//! `build` stops on Ctrl-C, SIGTERM (what `kill`, CI runners and container stops send) and
//! SIGHUP (a closed terminal or SSH session) alike: it sends nothing new, waits for the
//! requests in flight, writes the manifest, and exits 128 + the signal's number (130, 143,
//! 129), as a shell reports a process killed by it. A second signal exits at once: the
//! journal is appended and fsynced per batch and the manifest only ever replaced
//! atomically, so what is on disk is readable and the next run finishes the job.

use std::sync::atomic::{AtomicU8, Ordering};

/// The exit code of the first stop signal received (0: none yet).
static STOPPED_BY: AtomicU8 = AtomicU8::new(0);

/// The exit code for a run stopped by a signal (`None` when no signal came).
pub fn stop_code() -> Option<u8> {
    match STOPPED_BY.load(Ordering::SeqCst) {
        0 => None,
        c => Some(c),
    }
}

/// A file-size limit (`ulimit -f`) sends SIGXFSZ, whose default action kills the process
/// with no message. Ignored, the write fails with EFBIG instead, which is reported as an
/// I/O error naming the file (exit 4), the journal intact. Called first thing in `main`.
pub fn surface_file_size_limits() {
    #[cfg(unix)]
    {
        // A handler that only sets a flag nobody reads: the signal is consumed, the failing
        // write returns its error. (`register` is signal-hook's safe API.)
        let _ = signal_hook::flag::register(
            signal_hook::consts::SIGXFSZ,
            std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false)),
        );
    }
}

/// Ctrl-C, or SIGTERM on Unix (what `kill` and CI runners send): for servers (`sandbox`,
/// `listen`), which stop the same way on either.
pub async fn stop_requested() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// `build`'s stop: the first of SIGINT, SIGTERM, SIGHUP (recorded for [`stop_code`]); a
/// second one of them exits the process at once with the same code.
///
/// The handlers are installed when this is called (inside the runtime), not when the future
/// is first polled: a build may do seconds of work before it first polls it, and a signal
/// in that gap would otherwise kill the process with the default action.
pub fn interrupted() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut int = signal(SignalKind::interrupt()).ok();
        let mut term = signal(SignalKind::terminate()).ok();
        let mut hup = signal(SignalKind::hangup()).ok();
        async move {
            if int.is_none() && term.is_none() && hup.is_none() {
                // No handler could be installed: never interrupt rather than interrupt at once.
                std::future::pending::<()>().await;
            }
            let (code, _) = next_signal(&mut int, &mut term, &mut hup).await;
            STOPPED_BY.store(code, Ordering::SeqCst);
            tokio::spawn(async move {
                let (_, name) = next_signal(&mut int, &mut term, &mut hup).await;
                eprintln!(
                    "{name} again: exiting now. The manifest and its journal are readable; the \
                     next build finishes the job (same keys and slugs, no duplicate)"
                );
                std::process::exit(i32::from(code));
            });
        }
    }
    #[cfg(not(unix))]
    {
        async {
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
            STOPPED_BY.store(130, Ordering::SeqCst);
        }
    }
}

/// The next of the three signals: its exit code (128 + number) and its name.
#[cfg(unix)]
async fn next_signal(
    int: &mut Option<tokio::signal::unix::Signal>,
    term: &mut Option<tokio::signal::unix::Signal>,
    hup: &mut Option<tokio::signal::unix::Signal>,
) -> (u8, &'static str) {
    async fn recv(s: &mut Option<tokio::signal::unix::Signal>) {
        match s {
            Some(s) => {
                s.recv().await;
            }
            None => std::future::pending().await,
        }
    }
    tokio::select! {
        () = recv(int) => (130, "Ctrl-C"),
        () = recv(term) => (143, "SIGTERM"),
        () = recv(hup) => (129, "SIGHUP"),
    }
}
