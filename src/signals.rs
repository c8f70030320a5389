//! The shell owns signals: commands that run until stopped get a future from here.

/// Ctrl-C, or SIGTERM on Unix (what `kill` and CI runners send).
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

/// Ctrl-C only (`build` stops sending on it; see the README's exit codes).
pub async fn interrupted() {
    // If the handler cannot be installed, never interrupt rather than interrupt at once.
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}
