use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use chrono::{SubsecRound, Utc};
use compact_str::CompactString;
use http::{header, Method, Request, Response};
use percent_encoding::percent_decode_str;
use tower_service::Service;

use super::body::Pending;
use super::client_ip::{client_ip, ip_text};
use super::layer::{LogConfig, PathSource};
use super::writer::WatchLogSink;
use super::ResponseFuture;
use crate::query::query_value;
use crate::server::PeerAddr;
use crate::viewer::Viewer;

/// Service that logs each response; built by
/// [`WatchLogLayer`](super::WatchLogLayer).
#[derive(Clone, Debug)]
pub struct WatchLog<S> {
    inner: S,
    sink: WatchLogSink,
    config: Arc<LogConfig>,
}

impl<S> WatchLog<S> {
    pub(super) fn new(inner: S, sink: WatchLogSink, config: Arc<LogConfig>) -> Self {
        Self {
            inner,
            sink,
            config,
        }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }

    fn pending<B>(&self, req: &Request<B>) -> Option<Pending> {
        let config = &self.config;
        let method = req.method();
        if !config.enabled
            || !(*method == Method::GET || (config.log_head && *method == Method::HEAD))
        {
            return None;
        }
        let viewer = req.extensions().get::<Viewer>();
        let peer = PeerAddr::of(req.extensions());
        let bounded = |name: header::HeaderName| {
            req.headers().get(name).map(|v| {
                // Valid UTF-8 (nearly always ASCII) is checked fast; only
                // other bytes take the lossy path.
                match std::str::from_utf8(v.as_bytes()) {
                    Ok(text) => truncate(text, config.max_field_len),
                    Err(_) => {
                        truncate(&String::from_utf8_lossy(v.as_bytes()), config.max_field_len)
                    }
                }
            })
        };
        Some(Pending {
            sink: self.sink.clone(),
            started: Instant::now(),
            // Microseconds: what both databases store.
            created_at: Utc::now().trunc_subsecs(6),
            uri: req.uri().clone(),
            config: Arc::clone(config),
            user_id: viewer
                .and_then(|v| v.user_id.as_deref())
                .map(CompactString::from),
            is_authenticated: viewer.is_some_and(|v| v.authenticated),
            ip: client_ip(peer, req.headers(), &config.trusted_proxies).map(ip_text),
            method: method.as_str().into(),
            range_header: bounded(header::RANGE),
            user_agent: bounded(header::USER_AGENT),
            is_head: *method == Method::HEAD,
        })
    }
}

const MAX_PATH_LEN: usize = 1024;

/// The media path as the request names it, for services that do not report
/// a [`ServedFile`](crate::media::ServedFile).
pub(super) fn requested_path(uri: &http::Uri, source: &PathSource) -> CompactString {
    let raw = match source {
        PathSource::Query(var) => match query_value(uri.query(), var) {
            Some(Ok(value)) => value,
            _ => String::new(),
        },
        PathSource::UriPath(prefix) => {
            let rest = uri
                .path()
                .strip_prefix(prefix.as_str())
                .unwrap_or(uri.path());
            percent_decode_str(rest.trim_start_matches('/'))
                .decode_utf8_lossy()
                .into_owned()
        }
    };
    truncate(&raw, MAX_PATH_LEN)
}

/// Cuts `text` to at most `max` bytes on a character boundary.
pub(super) fn truncate(text: &str, max: usize) -> CompactString {
    if text.len() <= max {
        return text.into();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].into()
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for WatchLog<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: http_body::Body,
{
    type Response = Response<super::LoggedBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let pending = self.pending(&req);
        ResponseFuture::new(self.inner.call(req), pending)
    }
}
