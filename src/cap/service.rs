use std::task::{Context, Poll};

use http::{header, Request, Response};
use tower_service::Service;

use super::{CapVolumeLayer, CappedBody, ResponseFuture, VolumeCap};

/// Service that caps the bytes of each ranged response; built by
/// [`CapVolumeLayer`](super::CapVolumeLayer).
#[derive(Clone, Copy, Debug)]
pub struct CapVolume<S> {
    inner: S,
    cap: VolumeCap,
}

impl<S> CapVolume<S> {
    /// Caps each ranged response of `inner` at `bytes` (at least 1).
    pub const fn new(inner: S, bytes: u64) -> Self {
        Self {
            inner,
            cap: VolumeCap::new(bytes),
        }
    }

    /// A [`CapVolumeLayer`] capping at `bytes`.
    pub const fn layer(bytes: u64) -> CapVolumeLayer {
        CapVolumeLayer::new(bytes)
    }

    /// The cap in bytes.
    pub const fn bytes(&self) -> u64 {
        self.cap.bytes()
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

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for CapVolume<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<CappedBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let ranged = req.headers().contains_key(header::RANGE);
        // An inner cap set by an outer layer is kept if it is smaller.
        let cap = match req.extensions().get::<VolumeCap>() {
            Some(existing) if existing.bytes() <= self.cap.bytes() => *existing,
            _ => self.cap,
        };
        req.extensions_mut().insert(cap);
        ResponseFuture::new(self.inner.call(req), ranged.then_some(cap))
    }
}
