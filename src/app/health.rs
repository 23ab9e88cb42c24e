//! `/healthz` and `/readyz`: what a load balancer or Kubernetes asks.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{header, StatusCode};

use super::AppState;

/// Longest a readiness check waits for the store: longer than the pools'
/// own connection timeouts (2 s PostgreSQL, 5 s SQLite), so a store that is
/// down answers with its reason first; this catches one that hangs.
const STORE_TIMEOUT: Duration = Duration::from_secs(6);

/// Liveness: the process is up and serving requests.
pub(super) async fn live() -> Response {
    plain(StatusCode::OK, "ok\n")
}

/// Readiness: the log store answers and the writer is not failing to
/// store rows; 503 with the reason otherwise.
pub(super) async fn ready(State(state): State<Arc<AppState>>) -> Response {
    let store = Arc::clone(&state.store);
    let ping = tokio::task::spawn_blocking(move || store.ping());
    match tokio::time::timeout(STORE_TIMEOUT, ping).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(err))) => {
            return plain(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {err}\n"),
            )
        }
        Ok(Err(_)) => {
            return plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "not ready: the store check panicked\n",
            )
        }
        Err(_) => {
            return plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "not ready: the watch-log store did not answer within 6 s\n",
            )
        }
    }
    if state.sink.store_failing() {
        return plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the watch-log writer cannot store rows (retrying; rows are kept)\n",
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
