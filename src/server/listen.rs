//! The accept loop: HTTP/1.1 over hyper with a timer, so a connection that sends no complete
//! headers within the header timeout (idle keep-alive included) is closed, and a cap on the
//! connections served at once, so idle clients cannot exhaust file descriptors. At shutdown the
//! listener closes first (new connections are refused), then requests in flight finish.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::metrics::Metrics;
use super::Connections;

/// Pause after a failed accept (out of file descriptors, say) before the next one.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves `app` on `listener` until `stop` resolves, then refuses new connections and lets
/// open requests finish, for at most `limits.shutdown_grace`; true when they all did.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Connections,
    metrics: &Arc<Metrics>,
    stop: impl Future<Output = ()>,
) -> bool {
    let slots = Arc::new(Semaphore::new(limits.max.max(1)));
    let graceful = GracefulShutdown::new();
    let mut stop = std::pin::pin!(stop);
    loop {
        let slot = tokio::select! {
            () = &mut stop => break,
            slot = Arc::clone(&slots).acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
        };
        let stream = tokio::select! {
            () = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    log::warn!("tidelog server: accepting a connection: {e}");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        // Small responses go out at once instead of waiting for Nagle's timer.
        let _ = stream.set_nodelay(true);
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let conn = graceful.watch(conn);
        let metrics = Arc::clone(metrics);
        tokio::spawn(async move {
            let _open = metrics.connection();
            if let Err(e) = conn.await {
                log::debug!("tidelog server: connection closed: {e}");
            }
            drop(slot);
        });
    }
    // Closed before waiting, so a new client is refused at once rather than left in the backlog.
    drop(listener);
    log::info!("tidelog server: stopping; waiting for requests in flight");
    let drained = tokio::time::timeout(limits.shutdown_grace, graceful.shutdown())
        .await
        .is_ok();
    if !drained {
        log::warn!(
            "tidelog server: requests still in flight after {:?}; stopping anyway",
            limits.shutdown_grace
        );
    }
    drained
}
