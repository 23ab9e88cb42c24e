//! Limit how many streams one viewer holds at once.
//!
//! [`ViewerStreamLimitLayer`] counts open responses per viewer — by
//! [`ViewerKey`](crate::extension::ViewerKey), the rule the watch log groups
//! by too: the user id when the [`Viewer`](crate::extension::Viewer) has
//! one, else the [`ClientIp`](crate::extension::ClientIp) that
//! [`ResolveClientIpLayer`](crate::client_ip::ResolveClientIpLayer) worked
//! out at the edge (behind a proxy, stack it outermost, or everyone behind
//! the proxy shares its slots; without it, the peer address) — and
//! answers `429 Too Many Requests` with a short reason and `Retry-After`
//! once the limit is reached. A stream's slot is held until its body ends or
//! is dropped (the client went away), so the count follows real streams.
//! Requests with neither a user id nor an address are not limited.
//!
//! This answers the long-standing request of django-sage-streaming users to
//! stop one account from running many parallel streams.
//!
//! The count lives in this process by default ([`NodeSlots`]), so behind a
//! load balancer each node allows `max`. With the `redis` feature,
//! `ViewerStreamLimitLayer::redis` counts across every node sharing one
//! Redis (`RedisSlots`: leases with an expiry, renewed while the stream
//! runs, so a dead node's slots come free within the lease time; bounded
//! calls, and `WhenRedisFails` to count per node or refuse with `503`
//! while Redis is away). That store keeps the request across a Redis round
//! trip, so the inner service must be `Clone`, as for any async tower
//! middleware.
//!
//! ```no_run
//! # #[cfg(feature = "redis")]
//! # async fn fleet() -> Result<(), Box<dyn std::error::Error>> {
//! use sage_stream::limit::{RedisSlots, RedisSlotsConfig, ViewerStreamLimitLayer};
//! use sage_stream::StreamEndpoint;
//! use tower::ServiceBuilder;
//!
//! let slots = RedisSlots::new("redis://127.0.0.1:6379/0", 2, RedisSlotsConfig::default())?;
//! let svc = ServiceBuilder::new()
//!     .layer(ViewerStreamLimitLayer::redis(slots))
//!     .service(StreamEndpoint::new("media").into_service());
//! # let _ = svc;
//! # Ok(())
//! # }
//! ```
//!
//! ```
//! use http::{Request, StatusCode};
//! use sage_stream::{limit::ViewerStreamLimitLayer, extension::Viewer, StreamEndpoint};
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! # let dir = tempfile::tempdir().unwrap();
//! # std::fs::write(dir.path().join("a.mp4"), vec![0u8; 10]).unwrap();
//! let mut svc = ServiceBuilder::new()
//!     .layer(ViewerStreamLimitLayer::new(1))
//!     .service(StreamEndpoint::new(dir.path()).into_service());
//! let request = || {
//!     let mut req = Request::get("/?path=a.mp4").body(()).unwrap();
//!     req.extensions_mut().insert(Viewer::user("alice"));
//!     req
//! };
//! let first = ServiceExt::<Request<()>>::ready(&mut svc).await.unwrap().call(request()).await.unwrap();
//! let second = ServiceExt::<Request<()>>::ready(&mut svc).await.unwrap().call(request()).await.unwrap();
//! assert_eq!(second.status(), StatusCode::TOO_MANY_REQUESTS);
//! drop(first); // the first stream ends: its slot is free again
//! let third = ServiceExt::<Request<()>>::ready(&mut svc).await.unwrap().call(request()).await.unwrap();
//! assert_eq!(third.status(), StatusCode::OK);
//! # }
//! ```

mod body;
mod future;
mod layer;
#[cfg(feature = "redis")]
mod redis;
mod service;

pub use body::SlotBody;
pub use future::ResponseFuture;
pub use layer::{NodeSlots, ViewerStreamLimitLayer};
pub use service::ViewerStreamLimit;

#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use self::redis::{
    RedisSlots, RedisSlotsConfig, RedisSlotsError, WhenRedisFails, DEFAULT_LEASE, DEFAULT_PREFIX,
    DEFAULT_TIMEOUT,
};

/// What a stream holds while it runs: a slot of this process's count or a
/// lease of the fleet's. Dropping it frees it.
#[derive(Debug)]
enum Held {
    Node(layer::Slot),
    #[cfg(feature = "redis")]
    Fleet(self::redis::Lease),
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};

    use bytes::Bytes;
    use http::{header, Request, Response, StatusCode};
    use http_body_util::{BodyExt, Full};
    use tower::{service_fn, Layer, Service, ServiceExt};

    use super::*;
    use crate::extension::{ClientIp, PeerAddr, Viewer};

    fn stub(
    ) -> impl Service<Request<()>, Response = Response<Full<Bytes>>, Error = Infallible> + Clone
    {
        service_fn(|_req: Request<()>| async {
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"video"))))
        })
    }

    fn as_user(id: &str) -> Request<()> {
        let mut req = Request::new(());
        req.extensions_mut().insert(Viewer::user(id));
        req
    }

    fn from_peer(ip: [u8; 4]) -> Request<()> {
        let mut req = Request::new(());
        let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), 40000);
        req.extensions_mut().insert(PeerAddr(addr));
        req
    }

    #[tokio::test]
    async fn the_limit_refuses_with_429_and_retry_after_until_a_stream_ends() {
        let svc = ViewerStreamLimitLayer::new(2).layer(stub());
        let a = svc.clone().oneshot(as_user("alice")).await.unwrap();
        let b = svc.clone().oneshot(as_user("alice")).await.unwrap();
        let refused = svc.clone().oneshot(as_user("alice")).await.unwrap();
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(refused.headers().contains_key(header::RETRY_AFTER));
        // Another viewer has slots of their own.
        let bob = svc.clone().oneshot(as_user("bob")).await.unwrap();
        assert_eq!(bob.status(), StatusCode::OK);
        // Reading a body to its end frees its slot, before the body drops.
        let mut a_body = a.into_body();
        let data = a_body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(data, "video");
        assert!(a_body.frame().await.is_none());
        let again = svc.clone().oneshot(as_user("alice")).await.unwrap();
        assert_eq!(again.status(), StatusCode::OK);
        drop((b, bob, a_body));
    }

    #[tokio::test]
    async fn a_dropped_body_or_future_frees_its_slot() {
        let svc = ViewerStreamLimitLayer::new(1).layer(stub());
        let first = svc.clone().oneshot(as_user("alice")).await.unwrap();
        drop(first); // the client went away mid-stream
        let second = svc.clone().oneshot(as_user("alice")).await.unwrap();
        assert_eq!(second.status(), StatusCode::OK);
        drop(second);
        // A future dropped before it answered holds no slot either.
        let pending = svc.clone().oneshot(as_user("alice"));
        drop(pending);
        let mut svc2 = svc.clone();
        let future = ServiceExt::<Request<()>>::ready(&mut svc2)
            .await
            .unwrap()
            .call(as_user("alice"));
        drop(future);
        let third = svc.oneshot(as_user("alice")).await.unwrap();
        assert_eq!(third.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn an_inner_error_frees_its_slot() {
        let failing = service_fn(|_req: Request<()>| async {
            Err::<Response<Full<Bytes>>, _>(std::io::Error::other("down"))
        });
        let svc = ViewerStreamLimitLayer::new(1).layer(failing);
        assert!(svc.clone().oneshot(as_user("alice")).await.is_err());
        assert!(svc.clone().oneshot(as_user("alice")).await.is_err());
    }

    #[tokio::test]
    async fn without_a_user_the_client_ip_counts_and_else_the_peer() {
        let svc = ViewerStreamLimitLayer::new(1).layer(stub());
        // By peer address when no edge layer resolved a client IP.
        let held = svc.clone().oneshot(from_peer([10, 0, 0, 1])).await.unwrap();
        let refused = svc.clone().oneshot(from_peer([10, 0, 0, 1])).await.unwrap();
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        let other = svc.clone().oneshot(from_peer([10, 0, 0, 2])).await.unwrap();
        assert_eq!(other.status(), StatusCode::OK);
        // A resolved `ClientIp` wins over the peer: two clients behind one
        // proxy are two viewers.
        let mut behind = from_peer([10, 0, 0, 1]);
        behind
            .extensions_mut()
            .insert(ClientIp(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9))));
        let behind = svc.clone().oneshot(behind).await.unwrap();
        assert_eq!(behind.status(), StatusCode::OK);
        drop((held, other, behind));
    }

    #[tokio::test]
    async fn a_request_with_neither_user_nor_address_is_not_limited() {
        let svc = ViewerStreamLimitLayer::new(1).layer(stub());
        let a = svc.clone().oneshot(Request::new(())).await.unwrap();
        let b = svc.clone().oneshot(Request::new(())).await.unwrap();
        assert_eq!((a.status(), b.status()), (StatusCode::OK, StatusCode::OK));
    }

    #[tokio::test]
    async fn unlimited_counts_nothing() {
        let svc = ViewerStreamLimitLayer::unlimited().layer(stub());
        let mut held = Vec::new();
        for _ in 0..50 {
            held.push(svc.clone().oneshot(as_user("alice")).await.unwrap());
        }
        assert!(held.iter().all(|r| r.status() == StatusCode::OK));
    }
}
