//! [`ZeroCopy`]: the server's per-request offer to send file chunks with
//! `sendfile(2)`, and [`NoZeroCopyLayer`], which withdraws it.

use std::task::{Context, Poll};

use http::Request;
use tower_layer::Layer;
use tower_service::Service;

/// Request extension: this request's connection writes placeholder file
/// chunks with `sendfile`, so `ServeMedia` may answer with them.
///
/// The offer is the whole contract of the experimental zero-copy path:
/// `ServeMedia` makes a zero-copy body only for a request that carries it,
/// and only this crate's server (`server::serve` with
/// `ServerConfig::zero_copy`, Linux, HTTP/1.x) puts it there. Such a body's
/// file chunks are *placeholders*: `Bytes` of the right length whose memory
/// is not the file's (it reads as zeros); the server's connection writes
/// the file region each one stands for with `sendfile`. Layers that pass
/// chunks on unchanged, or slice them (the volume cap), keep working; a
/// layer that reads or transforms body bytes (compression, a checksum, a
/// rewriting filter) must sit *outside* a [`NoZeroCopyLayer`] (or call
/// [`ZeroCopy::withdraw`]), so the response it sees is the file's real
/// bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ZeroCopy {
    // No public constructor: an offer that no connection honours would
    // send placeholder memory.
    _offer: (),
}

impl ZeroCopy {
    /// The offer, made by `server::serve` on a zero-copy connection.
    #[cfg_attr(not(all(feature = "server", target_os = "linux")), allow(dead_code))]
    pub(crate) const fn offer() -> Self {
        Self { _offer: () }
    }

    /// Whether `req` carries the offer.
    pub fn is_offered<B>(req: &Request<B>) -> bool {
        req.extensions().get::<Self>().is_some()
    }

    /// Withdraws the offer from `req`, so the response to it is made of
    /// the file's real bytes; returns whether it was there. For a layer
    /// that reads or transforms the response body.
    pub fn withdraw<B>(req: &mut Request<B>) -> bool {
        req.extensions_mut().remove::<Self>().is_some()
    }
}

/// Withdraws the [`ZeroCopy`] offer from every request, so the services
/// inside answer with the file's real bytes. Put it inside (below) any layer
/// that reads or transforms response bodies; it costs one extension lookup
/// per request.
///
/// ```
/// use sage_stream::extension::NoZeroCopyLayer;
/// use sage_stream::media::{MediaBody, ServeMedia};
/// use tower::ServiceBuilder;
///
/// let svc = ServiceBuilder::new()
///     // Say, compression: it reads every byte, so it must see real ones.
///     .map_response(|res: http::Response<MediaBody>| res)
///     .layer(NoZeroCopyLayer::new())
///     .service(ServeMedia::new("media"));
/// # drop(svc);
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct NoZeroCopyLayer {
    _private: (),
}

impl NoZeroCopyLayer {
    /// The layer.
    pub const fn new() -> Self {
        Self { _private: () }
    }
}

impl<S> Layer<S> for NoZeroCopyLayer {
    type Service = NoZeroCopy<S>;

    fn layer(&self, inner: S) -> Self::Service {
        NoZeroCopy { inner }
    }
}

/// Service of [`NoZeroCopyLayer`]: passes each request on without the
/// [`ZeroCopy`] offer.
#[derive(Clone, Debug)]
pub struct NoZeroCopy<S> {
    inner: S,
}

impl<S> NoZeroCopy<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B> Service<Request<B>> for NoZeroCopy<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        ZeroCopy::withdraw(&mut req);
        self.inner.call(req)
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use tower::ServiceExt;

    use super::*;

    #[tokio::test]
    async fn the_layer_withdraws_the_offer_and_nothing_else() {
        let seen = tower::service_fn(|req: Request<()>| async move {
            Ok::<_, Infallible>((ZeroCopy::is_offered(&req), req.extensions().len()))
        });
        let mut req = Request::new(());
        req.extensions_mut().insert(ZeroCopy::offer());
        req.extensions_mut().insert(super::super::VolumeCap::new(5));
        assert!(ZeroCopy::is_offered(&req));
        let svc = NoZeroCopyLayer::new().layer(seen);
        assert_eq!(svc.oneshot(req).await.unwrap(), (false, 1));

        let mut req = Request::new(());
        assert!(!ZeroCopy::withdraw(&mut req), "nothing to withdraw");
        req.extensions_mut().insert(ZeroCopy::offer());
        assert!(ZeroCopy::withdraw(&mut req));
        assert!(!ZeroCopy::is_offered(&req));
    }
}
