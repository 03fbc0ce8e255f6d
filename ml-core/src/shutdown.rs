//! Waiting for the operator to stop a long-running process (feature `signal`).
//!
//! ```no_run
//! # async fn serve(stop: impl std::future::Future<Output = ()>) {}
//! # async fn demo() {
//! // `docker stop`, Kubernetes and systemd send SIGTERM; a terminal sends SIGINT.
//! serve(ml_core::shutdown::signal()).await;
//! # }
//! ```

/// Completes on Ctrl-C (SIGINT) or, on Unix, SIGTERM (what `docker stop`, Kubernetes and
/// systemd send to stop a service), so a service stops the same graceful way under a
/// supervisor as in a terminal instead of being killed mid-send. Where SIGTERM cannot be
/// handled (a warning says so), Ctrl-C alone.
pub async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "SIGTERM cannot be handled; stop with Ctrl-C");
            }
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
