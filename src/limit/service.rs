use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use super::layer::Slots;
use super::{ResponseFuture, SlotBody};
use crate::body::ResponseBody;
use crate::server::PeerAddr;
use crate::viewer::Viewer;

/// Service that limits concurrent streams per viewer; built by
/// [`ViewerStreamLimitLayer`](super::ViewerStreamLimitLayer).
#[derive(Clone, Debug)]
pub struct ViewerStreamLimit<S> {
    inner: S,
    slots: Arc<Slots>,
}

impl<S> ViewerStreamLimit<S> {
    pub(super) fn new(inner: S, slots: Arc<Slots>) -> Self {
        Self { inner, slots }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

fn viewer_key<B>(req: &Request<B>) -> Option<String> {
    if let Some(user) = req
        .extensions()
        .get::<Viewer>()
        .and_then(|v| v.user_id.as_ref())
    {
        return Some(format!("u:{user}"));
    }
    let peer = PeerAddr::of(req.extensions())?;
    Some(format!("ip:{}", peer.ip()))
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ViewerStreamLimit<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResponseBody<SlotBody<ResBody>>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        if self.slots.max == usize::MAX {
            return ResponseFuture::new(self.inner.call(req), None);
        }
        let slot = match viewer_key(&req) {
            None => None,
            Some(key) => match self.slots.acquire(key) {
                Some(slot) => Some(slot),
                None => return ResponseFuture::refused(self.slots.max),
            },
        };
        ResponseFuture::new(self.inner.call(req), slot)
    }
}
