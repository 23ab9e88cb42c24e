//! What a page handler answers when it cannot render a page: the status
//! that fits and a short plain-text reason, as every refusal in this crate.

use std::borrow::Cow;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::log::StoreError;

/// Why a request to the player or the admin failed.
///
/// Handlers return `Result<_, AppError>`; the response is the status below
/// with the error's text as a plain-text body. Sources are logged with
/// `tracing`, never shown to the client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppError {
    /// A query parameter is malformed: 400 with the reason.
    #[error("{0}")]
    BadRequest(Cow<'static, str>),
    /// The watch-log store failed: 503.
    #[error("watch log database unavailable")]
    Store(#[source] StoreError),
    /// Nothing to show at this address: 404.
    #[error("not found")]
    NotFound,
    /// The blocking task behind the page panicked or was cancelled: 500.
    #[error("internal error")]
    Internal(#[source] tokio::task::JoinError),
}

impl AppError {
    /// A 400 with this reason.
    pub(crate) fn bad(reason: impl Into<Cow<'static, str>>) -> Self {
        Self::BadRequest(reason.into())
    }

    /// The status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<StoreError> for AppError {
    fn from(source: StoreError) -> Self {
        Self::Store(source)
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        match &self {
            Self::Store(source) => tracing::warn!(error = %source, "watch log query failed"),
            Self::Internal(source) => tracing::error!(error = %source, "page task failed"),
            Self::BadRequest(_) | Self::NotFound => {}
        }
        (self.status(), self.to_string()).into_response()
    }
}

/// Runs store work on a blocking thread (diesel calls block).
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, AppError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(AppError::Internal)?
        .map_err(AppError::Store)
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    async fn answer(err: AppError) -> (StatusCode, String) {
        let res = err.into_response();
        let status = res.status();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn each_error_answers_with_its_status_and_a_short_reason() {
        assert_eq!(
            answer(AppError::bad("page must be a whole number")).await,
            (
                StatusCode::BAD_REQUEST,
                "page must be a whole number".into()
            )
        );
        // The store's own message (which may name hosts) stays in the log.
        assert_eq!(
            answer(
                StoreError::Unavailable {
                    source: "db.internal:5432 refused".into()
                }
                .into()
            )
            .await,
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "watch log database unavailable".into()
            )
        );
        assert_eq!(
            answer(AppError::NotFound).await,
            (StatusCode::NOT_FOUND, "not found".into())
        );
        let panicked = tokio::task::spawn_blocking(|| panic!("boom"))
            .await
            .unwrap_err();
        assert_eq!(
            answer(AppError::Internal(panicked)).await,
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error".into())
        );
    }
}
