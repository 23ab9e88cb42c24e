use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use super::layer::NodeSlots;
use super::{Held, ResponseFuture, SlotBody, ViewerStreamLimitLayer};
use crate::body::ResponseBody;
use crate::extension::{ClientIp, Viewer, ViewerKey};

/// Service that limits concurrent streams per viewer; built by
/// [`ViewerStreamLimitLayer`]. `K` is where the count lives (see the layer).
#[derive(Clone, Debug)]
pub struct ViewerStreamLimit<S, K = NodeSlots> {
    pub(super) inner: S,
    pub(super) store: K,
}

impl<S> ViewerStreamLimit<S> {
    /// At most `max` concurrent streams per viewer through `inner`, counted
    /// in this process.
    pub fn new(inner: S, max: usize) -> Self {
        tower_layer::Layer::layer(&ViewerStreamLimitLayer::new(max), inner)
    }

    /// A [`ViewerStreamLimitLayer`] with this limit.
    pub fn layer(max: usize) -> ViewerStreamLimitLayer {
        ViewerStreamLimitLayer::new(max)
    }
}

impl<S, K> ViewerStreamLimit<S, K> {
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

/// Whom `req` counts as (see [`ViewerKey`]): the user id, else the client IP
/// worked out at the edge (`ResolveClientIpLayer`), else the peer.
pub(super) fn viewer_key<B>(req: &Request<B>) -> ViewerKey {
    let user = req
        .extensions()
        .get::<Viewer>()
        .and_then(|v| v.user_id.as_deref());
    if user.is_some() {
        return ViewerKey::new(user, None);
    }
    ViewerKey::new(None, ClientIp::of(req.extensions()))
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ViewerStreamLimit<S, NodeSlots>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: http_body::Body,
{
    type Response = Response<ResponseBody<SlotBody<ResBody>>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let slots = &self.store.0;
        if slots.max == usize::MAX {
            return ResponseFuture::new(self.inner.call(req), None);
        }
        let key = viewer_key(&req);
        // Neither a user id nor an address: nothing to count by.
        let slot = if key.is_anonymous() {
            None
        } else {
            match slots.acquire(key) {
                Some(slot) => Some(Held::Node(slot)),
                None => return ResponseFuture::refused(slots.max),
            }
        };
        ResponseFuture::new(self.inner.call(req), slot)
    }
}

/// Counting in Redis takes a round trip before the inner service is called,
/// so this service keeps the request (and a ready clone of `inner`) across
/// it, as tower's async middleware does; the future is boxed: one
/// allocation beside a network round trip.
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ViewerStreamLimit<S, super::RedisSlots>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    ReqBody: Send + 'static,
    ResBody: http_body::Body,
{
    type Response = Response<ResponseBody<SlotBody<ResBody>>>;
    type Error = S::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, S::Error>> + Send>,
    >;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        use super::future::{too_many, unavailable};
        use super::redis::Acquired;

        // The clone is not ready; the original (polled ready) goes with the
        // request.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let store = self.store.clone();
        Box::pin(async move {
            let key = viewer_key(&req);
            if key.is_anonymous() {
                let response = inner.call(req).await?;
                return Ok(response.map(|b| ResponseBody::inner(SlotBody::new(b, None))));
            }
            let lease = match store.acquire(&key).await {
                Acquired::Held(lease) => lease,
                Acquired::Full => return Ok(too_many(store.max())),
                Acquired::Unavailable => return Ok(unavailable()),
            };
            // An error or a dropped future drops the lease: released.
            let response = inner.call(req).await?;
            Ok(response.map(|b| ResponseBody::inner(SlotBody::new(b, Some(Held::Fleet(lease))))))
        })
    }
}
