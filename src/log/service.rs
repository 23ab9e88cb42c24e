use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use chrono::{SubsecRound, Utc};
use compact_str::CompactString;

use http::{header, Method, Request, Response};
use tower_service::Service;

use super::body::Pending;
use super::layer::LogConfig;
use super::sink::RecordSink;
use super::text::ip_text;
use super::writer::WatchLogSink;
use super::{ResponseFuture, WatchLogLayer};
use crate::extension::{anonymize_ip, ClientIp, MediaPath, Viewer};

/// Service that logs each response; built by
/// [`WatchLogLayer`](super::WatchLogLayer).
#[derive(Clone, Debug)]
pub struct WatchLog<S, K = WatchLogSink> {
    pub(super) inner: S,
    pub(super) sink: K,
    pub(super) config: Arc<LogConfig>,
}

impl<S, K: RecordSink> WatchLog<S, K> {
    /// Logs the responses of `inner` into `sink` with
    /// [`WatchLogLayer::new`]'s defaults.
    pub fn new(inner: S, sink: K) -> Self {
        tower_layer::Layer::layer(&WatchLogLayer::new(sink), inner)
    }

    /// A [`WatchLogLayer`] logging into `sink`, to configure and stack.
    pub fn layer(sink: K) -> WatchLogLayer<K> {
        WatchLogLayer::new(sink)
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

    /// What the row will say about `req`. Also sets the [`MediaPath`]
    /// extension when no edge layer did, so the layers inside read this
    /// answer.
    fn pending<B>(&self, req: &mut Request<B>) -> Option<Pending<K>> {
        let config = &self.config;
        let method = req.method();
        if !config.enabled
            || !(*method == Method::GET || (config.log_head && *method == Method::HEAD))
        {
            return None;
        }
        config.path.insert_into(req);
        // Worked out at the edge (`ResolveClientIpLayer`), else the peer.
        let ip = ClientIp::of(req.extensions());
        let req = &*req;
        let method = req.method();
        let viewer = req.extensions().get::<Viewer>();
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
            requested_path: req
                .extensions()
                .get::<MediaPath>()
                .map(|p| truncate(p.as_str(), MAX_PATH_LEN)),
            config: Arc::clone(config),
            user_id: viewer
                .and_then(|v| v.user_id.as_deref())
                .map(|id| truncate(id, MAX_PATH_LEN)),
            is_authenticated: viewer.is_some_and(|v| v.authenticated),
            ip: ip
                .map(|ip| {
                    if config.anonymize_ip {
                        anonymize_ip(ip)
                    } else {
                        ip
                    }
                })
                .map(ip_text),
            method: method.as_str().into(),
            range_header: bounded(header::RANGE),
            user_agent: bounded(header::USER_AGENT),
            is_head: *method == Method::HEAD,
            range_start: None,
        })
    }
}

pub(super) const MAX_PATH_LEN: usize = 1024;

/// `text` as every backend can store it: cut to at most `max` bytes on a
/// character boundary, each NUL replaced by U+FFFD (PostgreSQL refuses NUL
/// in text, so one `?path=a%00b` used to stall its log for good). Invalid
/// UTF-8 is replaced the same way where it is read, so both backends store
/// the same row.
pub(super) fn truncate(text: &str, max: usize) -> CompactString {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let text = &text[..end];
    if text.contains('\0') {
        return text.replace('\0', "\u{fffd}").into();
    }
    text.into()
}

impl<S, K, ReqBody, ResBody> Service<Request<ReqBody>> for WatchLog<S, K>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: http_body::Body,
    K: RecordSink,
{
    type Response = Response<super::LoggedBody<ResBody, K>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, K>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let pending = self.pending(&mut req);
        ResponseFuture::new(self.inner.call(req), pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_made_storable() {
        assert_eq!(truncate("a\0b", 10), "a\u{fffd}b");
        assert_eq!(truncate("abcdef", 3), "abc");
        assert_eq!(truncate("aé", 2), "a");
        assert_eq!(truncate(&"x".repeat(1 << 20), 1024).len(), 1024);
    }
}
