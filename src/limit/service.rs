use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use super::layer::Slots;
use super::{ResponseFuture, SlotBody, ViewerStreamLimitLayer};
use crate::body::ResponseBody;
use crate::extension::{ClientIp, Viewer, ViewerKey};

/// Service that limits concurrent streams per viewer; built by
/// [`ViewerStreamLimitLayer`].
#[derive(Clone, Debug)]
pub struct ViewerStreamLimit<S> {
    pub(super) inner: S,
    pub(super) slots: Arc<Slots>,
}

impl<S> ViewerStreamLimit<S> {
    /// At most `max` concurrent streams per viewer through `inner`.
    pub fn new(inner: S, max: usize) -> Self {
        tower_layer::Layer::layer(&ViewerStreamLimitLayer::new(max), inner)
    }

    /// A [`ViewerStreamLimitLayer`] with this limit.
    pub fn layer(max: usize) -> ViewerStreamLimitLayer {
        ViewerStreamLimitLayer::new(max)
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

    /// Whom `req` counts as (see [`ViewerKey`]); sets [`ClientIp`] for the
    /// layers inside when it had to work it out.
    fn viewer_key<B>(&self, req: &mut Request<B>) -> ViewerKey {
        let user = req
            .extensions()
            .get::<Viewer>()
            .and_then(|v| v.user_id.as_deref());
        if user.is_some() {
            return ViewerKey::new(user, None);
        }
        // Worked out at the edge (`ResolveClientIpLayer`), else the peer.
        ViewerKey::new(None, ClientIp::of(req.extensions()))
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ViewerStreamLimit<S>
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

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        if self.slots.max == usize::MAX {
            return ResponseFuture::new(self.inner.call(req), None);
        }
        let key = self.viewer_key(&mut req);
        // Neither a user id nor an address: nothing to count by.
        let slot = if key.is_anonymous() {
            None
        } else {
            match self.slots.acquire(key) {
                Some(slot) => Some(slot),
                None => return ResponseFuture::refused(self.slots.max),
            }
        };
        ResponseFuture::new(self.inner.call(req), slot)
    }
}
