use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use http::{Request, Response};
use tower_service::Service;

use super::body::ObservedBody;
use super::future::{ResponseFuture, Started};
use super::layer::{ObserveConfig, ObserveLayer};
use super::metrics::Route;
use crate::extension::{ClientIp, Viewer};

/// Middleware that counts responses and writes the access log; built by
/// [`ObserveLayer`].
#[derive(Clone, Debug)]
pub struct Observe<S> {
    pub(super) inner: S,
    pub(super) config: Arc<ObserveConfig>,
}

impl<S> Observe<S> {
    /// Observes `inner`'s responses of `route` (nothing on until configured,
    /// as [`ObserveLayer::new`]).
    pub fn new(inner: S, route: Route) -> Self {
        Self {
            inner,
            config: ObserveLayer::new(route).config,
        }
    }

    /// A layer with this service's configuration.
    pub fn layer(route: Route) -> ObserveLayer {
        ObserveLayer::new(route)
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
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Observe<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: http_body::Body,
{
    type Response = Response<ObservedBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let config = &self.config;
        if config.metrics.is_none() && !config.access_log {
            return ResponseFuture::new(self.inner.call(req), None);
        }
        let access = config.access_log.then(|| {
            // Worked out at the edge (`ResolveClientIpLayer`), else the peer.
            let ip = ClientIp::of(req.extensions());
            super::body::AccessLine {
                method: req.method().clone(),
                path: req.uri().path().into(),
                user_id: req
                    .extensions()
                    .get::<Viewer>()
                    .and_then(|v| v.user_id.clone()),
                ip: if config.anonymize_ip {
                    ip.map(crate::extension::anonymize_ip)
                } else {
                    ip
                },
                media: None,
            }
        });
        let started = Started {
            at: Instant::now(),
            config: Arc::clone(config),
            access,
        };
        ResponseFuture::new(self.inner.call(req), Some(started))
    }
}
