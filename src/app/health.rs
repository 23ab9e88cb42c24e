//! `/healthz` and `/readyz`: what a load balancer or Kubernetes asks.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{header, StatusCode};

use super::AppState;

/// Longest a readiness check waits for the store: longer than the pools'
/// own connection timeouts (2 s PostgreSQL, 5 s SQLite), so a store that is
/// down logs its reason first; this catches one that hangs.
const STORE_TIMEOUT: Duration = Duration::from_secs(6);

/// Liveness: the process is up and serving requests.
pub(super) async fn live() -> Response {
    plain(StatusCode::OK, "ok\n")
}

/// What `/readyz` says while the store cannot be reached: the probe is
/// public, so it names no host, port, database or user; the driver's
/// error goes to the server's log.
const STORE_UNAVAILABLE: &str = "not ready: watch-log store unavailable\n";

/// Readiness: the log store answers and the writer is not failing to
/// store rows; 503 with a generic reason otherwise (the details are logged
/// at `warn`, target `sage_stream::app::health`).
pub(super) async fn ready(State(state): State<Arc<AppState>>) -> Response {
    let store = Arc::clone(&state.store);
    let ping = tokio::task::spawn_blocking(move || store.ping());
    match tokio::time::timeout(STORE_TIMEOUT, ping).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(err))) => {
            tracing::warn!(%err, "readiness check: the watch-log store is unavailable");
            return plain(StatusCode::SERVICE_UNAVAILABLE, STORE_UNAVAILABLE);
        }
        Ok(Err(err)) => {
            tracing::error!(%err, "readiness check: the store check panicked");
            return plain(StatusCode::SERVICE_UNAVAILABLE, STORE_UNAVAILABLE);
        }
        Err(_) => {
            tracing::warn!(
                "readiness check: the watch-log store did not answer within {} s",
                STORE_TIMEOUT.as_secs()
            );
            return plain(StatusCode::SERVICE_UNAVAILABLE, STORE_UNAVAILABLE);
        }
    }
    #[cfg(feature = "redis")]
    if let Some(slots) = &state.fleet_slots {
        // Counting per node keeps the node serving; refusing does not.
        if !slots.reachable()
            && slots.config().when_redis_fails == crate::limit::WhenRedisFails::Refuse
        {
            return plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "not ready: the stream-limit store is unavailable and new streams are refused\n",
            );
        }
    }
    if state.sink.store_failing() {
        return plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the watch-log writer cannot store rows (retrying; rows are kept)\n",
        );
    }
    #[cfg(feature = "redis")]
    if state.fleet_slots.as_ref().is_some_and(|s| !s.reachable()) {
        return plain(
            StatusCode::OK,
            "ready (the stream-limit store is unavailable: counting per node)\n",
        );
    }
    plain(StatusCode::OK, "ready\n")
}

fn plain(status: StatusCode, text: impl Into<String>) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        text.into(),
    )
        .into_response()
}
