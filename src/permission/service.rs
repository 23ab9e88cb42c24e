use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use super::check::{AsyncCheck, AsyncPermission, Denial, Permission, RequestHead, SyncPermission};
use super::future::SyncResponseFuture;
use super::{RequirePermissionLayer, ResponseFuture};
use crate::body::ResponseBody;
use crate::extension::MediaPathError;

/// Service that refuses requests a permission does not allow; built by
/// [`RequirePermissionLayer`](super::RequirePermissionLayer).
#[derive(Clone, Debug)]
pub struct RequirePermission<S, P> {
    pub(super) inner: S,
    pub(super) permission: P,
}

impl<S, P: Permission> RequirePermission<S, SyncPermission<P>> {
    /// Checks each request to `inner` with a synchronous [`Permission`].
    pub fn new(inner: S, permission: P) -> Self {
        Self {
            inner,
            permission: SyncPermission::new(permission),
        }
    }

    /// A [`RequirePermissionLayer`] with a synchronous [`Permission`].
    pub fn layer(permission: P) -> RequirePermissionLayer<SyncPermission<P>> {
        RequirePermissionLayer::new(permission)
    }
}

impl<S, P> RequirePermission<S, AsyncCheck<P>> {
    /// Checks each request to `inner` with an [`AsyncPermission`] (or a
    /// combination with one); `inner` must then be `Clone`.
    pub fn new_async(inner: S, permission: P) -> Self {
        Self {
            inner,
            permission: AsyncCheck::new(permission),
        }
    }
}

impl<S, P> RequirePermission<S, P> {
    /// Runs `permission` as it is wrapped (in [`SyncPermission`] or
    /// [`AsyncCheck`]).
    pub(crate) fn from_mode(inner: S, permission: P) -> Self {
        Self { inner, permission }
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

/// A synchronous check: decided in `call`, so the inner service is called
/// at once and need not be `Clone`.
impl<S, P, ReqBody, ResBody> Service<Request<ReqBody>> for RequirePermission<S, SyncPermission<P>>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    P: Permission,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = SyncResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        if let Some(refusal) = req.extensions().get::<MediaPathError>() {
            return SyncResponseFuture::refused(Denial::InvalidPath(*refusal));
        }
        match self.permission.get_ref().check(&RequestHead::of(&req)) {
            Ok(()) => SyncResponseFuture::calling(self.inner.call(req)),
            Err(denial) => SyncResponseFuture::refused(denial),
        }
    }
}

/// An asynchronous check: the inner service is called when it is done, so
/// the future owns the service (a clone stays behind).
impl<S, P, ReqBody, ResBody> Service<Request<ReqBody>> for RequirePermission<S, AsyncCheck<P>>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    P: AsyncPermission<ReqBody>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<P::Future, S, ReqBody>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        // No permission can judge a path the edge refused: answer that
        // refusal, as the file service would, without running the check.
        if let Some(refusal) = req.extensions().get::<MediaPathError>() {
            return ResponseFuture::refused(Denial::InvalidPath(*refusal));
        }
        // The service that was made ready goes into the future; a fresh clone
        // stays behind for the next request (the check may await first).
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        ResponseFuture::new(self.permission.get_ref().check_async(req), inner)
    }
}
