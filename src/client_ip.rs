//! Work out, once and at the edge, which client a request comes from:
//! [`ResolveClientIpLayer`].
//!
//! The layer is the one place trusted proxies are configured. It takes the
//! peer address ([`PeerAddr`](crate::extension::PeerAddr)), and when that
//! peer is a trusted proxy, walks `Forwarded` (else `X-Forwarded-For`) from
//! the nearest hop outwards to the first untrusted address. The answer goes
//! into the [`ClientIp`] extension; an
//! unparsable forwarded value gives no address at all, never a guess.
//!
//! The watch log, the stream limit (through
//! [`ViewerKey`](crate::extension::ViewerKey)) and the metrics only read it
//! ([`ClientIp::of`](crate::extension::ClientIp::of)). Without this layer
//! they count the peer address, so behind a proxy stack it outermost.
//!
//! # Example
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response};
//! use sage_stream::client_ip::ResolveClientIpLayer;
//! use sage_stream::extension::{ClientIp, PeerAddr};
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let svc = ServiceBuilder::new()
//!     .layer(ResolveClientIpLayer::new(["10.0.0.0/8".parse().unwrap()]))
//!     .service(service_fn(|req: Request<()>| async move {
//!         Ok::<_, Infallible>(Response::new(ClientIp::of(req.extensions())))
//!     }));
//!
//! let mut req = Request::get("/").header("x-forwarded-for", "203.0.113.9").body(()).unwrap();
//! req.extensions_mut().insert(PeerAddr("10.1.2.3:40000".parse().unwrap()));
//! let ip = svc.oneshot(req).await.unwrap().into_body();
//! assert_eq!(ip, Some("203.0.113.9".parse().unwrap()));
//! # }
//! ```

use std::sync::Arc;
use std::task::{Context, Poll};

use http::Request;
use tower_layer::Layer;
use tower_service::Service;

use crate::extension::{ClientIp, IpNet};

/// Layer that sets each request's [`ClientIp`] once, believing forwarded
/// headers only from `trusted` proxies; see the [module docs](self).
#[derive(Clone, Debug, Default)]
pub struct ResolveClientIpLayer {
    trusted: Arc<[IpNet]>,
}

impl ResolveClientIpLayer {
    /// Believes `Forwarded` / `X-Forwarded-For` only from these proxies
    /// (none by default: the peer address is the client).
    pub fn new(trusted: impl IntoIterator<Item = IpNet>) -> Self {
        Self {
            trusted: trusted.into_iter().collect(),
        }
    }

    /// The trusted proxies.
    pub fn trusted_proxies(&self) -> &[IpNet] {
        &self.trusted
    }
}

impl<S> Layer<S> for ResolveClientIpLayer {
    type Service = ResolveClientIp<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ResolveClientIp {
            inner,
            trusted: Arc::clone(&self.trusted),
        }
    }
}

/// Service that sets the [`ClientIp`] extension and calls `inner`; built by
/// [`ResolveClientIpLayer`].
#[derive(Clone, Debug)]
pub struct ResolveClientIp<S> {
    inner: S,
    trusted: Arc<[IpNet]>,
}

impl<S> ResolveClientIp<S> {
    /// Sets the client IP of requests to `inner`, believing `trusted`.
    pub fn new(inner: S, trusted: impl IntoIterator<Item = IpNet>) -> Self {
        Self {
            inner,
            trusted: trusted.into_iter().collect(),
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
}

impl<S, B> Service<Request<B>> for ResolveClientIp<S>
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
        ClientIp::insert_into(&mut req, &self.trusted);
        self.inner.call(req)
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::net::IpAddr;

    use http::Response;
    use tower::{service_fn, ServiceExt};

    use super::*;
    use crate::extension::PeerAddr;

    async fn seen(layer: &ResolveClientIpLayer, peer: &str, xff: Option<&str>) -> Option<IpAddr> {
        let svc = layer.layer(service_fn(|req: Request<()>| async move {
            Ok::<_, Infallible>(Response::new(ClientIp::of(req.extensions())))
        }));
        let mut req = Request::get("/");
        if let Some(xff) = xff {
            req = req.header("x-forwarded-for", xff);
        }
        let mut req = req.body(()).unwrap();
        req.extensions_mut().insert(PeerAddr(peer.parse().unwrap()));
        svc.oneshot(req).await.unwrap().into_body()
    }

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[tokio::test]
    async fn believes_only_trusted_proxies() {
        let none = ResolveClientIpLayer::default();
        let proxy = ResolveClientIpLayer::new(["10.0.0.0/8".parse().unwrap()]);
        // Untrusted peers are the client, whatever they forward.
        assert_eq!(
            seen(&none, "10.0.0.1:1", Some("203.0.113.9")).await,
            ip("10.0.0.1")
        );
        assert_eq!(
            seen(&proxy, "192.0.2.1:1", Some("203.0.113.9")).await,
            ip("192.0.2.1")
        );
        // A trusted proxy: the first untrusted hop from the nearest.
        assert_eq!(
            seen(&proxy, "10.0.0.1:1", Some("6.6.6.6, 203.0.113.9, 10.9.9.9")).await,
            ip("203.0.113.9")
        );
        // Unparsable: none, not the proxy's own address.
        assert_eq!(seen(&proxy, "10.0.0.1:1", Some("garbage")).await, None);
    }

    #[tokio::test]
    async fn the_outermost_edge_decides() {
        let outer = ResolveClientIpLayer::new(["10.0.0.0/8".parse().unwrap()]);
        let inner = ResolveClientIpLayer::default();
        let svc = outer.layer(inner.layer(service_fn(|req: Request<()>| async move {
            Ok::<_, Infallible>(Response::new(ClientIp::of(req.extensions())))
        })));
        let mut req = Request::get("/")
            .header("x-forwarded-for", "garbage")
            .body(())
            .unwrap();
        req.extensions_mut()
            .insert(PeerAddr("10.0.0.1:1".parse().unwrap()));
        assert_eq!(svc.oneshot(req).await.unwrap().into_body(), None);
    }
}
