//! The [`Permission`] and [`AsyncPermission`] traits, refusals and combinators.

use std::borrow::Cow;
use std::future::{ready, Future, Ready};

use std::sync::Arc;

use http::{Extensions, HeaderMap, Method, Request, Uri};

use crate::extension::{MediaPath, MediaPathError, Viewer, ANONYMOUS};
use crate::query::query_value;

/// Why a request was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Denial {
    /// No or unknown credentials: answered `401` with `WWW-Authenticate`.
    Unauthenticated(Cow<'static, str>),
    /// Known viewer, not allowed: answered `403`.
    Forbidden(Cow<'static, str>),
    /// The check could not be made (a policy service is down): answered
    /// `503`. A permission that cannot decide refuses; it never allows.
    Unavailable(Cow<'static, str>),
    /// The request names no usable media path, so there is nothing to
    /// decide about: answered with the refusal's status (`400`, or `404`
    /// outside the prefix) and reason, as the file service would.
    /// [`RequirePermission`](super::RequirePermission) gives it before
    /// running any check when the edge layer refused the path.
    InvalidPath(MediaPathError),
}

impl Denial {
    /// A `401` refusal with a short reason.
    pub fn unauthenticated(reason: impl Into<Cow<'static, str>>) -> Self {
        Self::Unauthenticated(reason.into())
    }

    /// A `403` refusal with a short reason.
    pub fn forbidden(reason: impl Into<Cow<'static, str>>) -> Self {
        Self::Forbidden(reason.into())
    }

    /// A `503` refusal with a short reason: the check could not be made.
    pub fn unavailable(reason: impl Into<Cow<'static, str>>) -> Self {
        Self::Unavailable(reason.into())
    }

    /// The reason given to the client.
    pub fn reason(&self) -> &str {
        match self {
            Self::Unauthenticated(r) | Self::Forbidden(r) | Self::Unavailable(r) => r,
            Self::InvalidPath(refusal) => refusal.reason(),
        }
    }
}

/// Request extension: the viewer a permission check learned (from an
/// authentication endpoint). [`RequirePermission`](super::RequirePermission)
/// moves it onto the response, where the watch log, which runs outside the
/// permission, finds it.
#[derive(Clone, Debug)]
pub(crate) struct LearnedViewer(pub(crate) Viewer);

/// The outcome of a permission check.
pub type Decision = Result<(), Denial>;

/// The parts of a request a permission may look at.
#[derive(Clone, Copy, Debug)]
pub struct RequestHead<'a> {
    /// The request method.
    pub method: &'a Method,
    /// The request URI.
    pub uri: &'a Uri,
    /// The request headers.
    pub headers: &'a HeaderMap,
    /// The request extensions.
    pub extensions: &'a Extensions,
}

impl<'a> RequestHead<'a> {
    /// Borrows the head of `request`.
    pub fn of<B>(request: &'a Request<B>) -> Self {
        Self {
            method: request.method(),
            uri: request.uri(),
            headers: request.headers(),
            extensions: request.extensions(),
        }
    }

    /// The [`Viewer`] an authentication layer set, or an anonymous one.
    pub fn viewer(&self) -> &'a Viewer {
        self.extensions.get::<Viewer>().unwrap_or(&ANONYMOUS)
    }

    /// The media path the request names, decoded and normalised once at
    /// the edge (the [`MediaPath`] extension): what the file service will
    /// serve. Judge paths by this, never by the raw query or URI, which
    /// may spell the same file differently (`./private/a.mp4`). `None`
    /// when no layer decoded one.
    pub fn media_path(&self) -> Option<&'a str> {
        self.extensions.get::<MediaPath>().map(MediaPath::as_str)
    }

    /// A decoded query variable; `None` when absent or not UTF-8. Not for
    /// the media path: see [`media_path`](Self::media_path).
    pub fn query(&self, name: &str) -> Option<String> {
        query_value(self.uri.query(), name).and_then(Result::ok)
    }
}

/// A synchronous check of one request, like a Django REST framework
/// permission class. Closures `Fn(&RequestHead) -> Decision` implement it.
pub trait Permission: Send + Sync + 'static {
    /// Allows the request, or says why not.
    fn check(&self, request: &RequestHead<'_>) -> Decision;
}

impl<F> Permission for F
where
    F: Fn(&RequestHead<'_>) -> Decision + Send + Sync + 'static,
{
    fn check(&self, request: &RequestHead<'_>) -> Decision {
        self(request)
    }
}

/// What an [`AsyncPermission`] check gives back: the request, in every
/// case, and the decision. The request comes back on a refusal too, so that
/// [`or`](super::PermissionExt::or) can hand it to its second check.
#[derive(Debug)]
pub struct Checked<B> {
    /// The request, as the check left it (a check that learns the viewer
    /// puts it into the extensions).
    pub request: Request<B>,
    /// Allowed, or why not.
    pub decision: Decision,
}

impl<B> Checked<B> {
    /// `request` with `decision`.
    pub fn new(request: Request<B>, decision: Decision) -> Self {
        Self { request, decision }
    }

    /// Runs the synchronous `permission` on `request`, ready at once: the
    /// body of an [`AsyncPermission`] impl for a [`Permission`] type of
    /// your own (closures and the built-in checks have one already).
    pub fn now<P: Permission + ?Sized>(permission: &P, request: Request<B>) -> Ready<Self> {
        let decision = permission.check(&RequestHead::of(&request));
        ready(Self::new(request, decision))
    }
}

/// A check that may wait (a database, a remote policy service such as
/// `AuthRequest`, feature `auth-request`). It takes the request and gives it
/// back with the decision ([`Checked`]), so checks chain.
///
/// Closures `Fn(&RequestHead) -> Decision`, [`AllowAny`],
/// [`IsAuthenticated`], [`SignedUrl`](super::SignedUrl), [`AllOf`] and the
/// combinators of synchronous checks are asynchronous checks too (ready at
/// once), so they mix with asynchronous ones under the same `and`, `or` and
/// `not`. A [`Permission`] type of your own joins them with a three-line
/// impl ([`Checked::now`]); an async closure with [`permission_fn`].
pub trait AsyncPermission<B> {
    /// The future of one check.
    type Future: Future<Output = Checked<B>>;

    /// Checks `request`.
    fn check_async(&self, request: Request<B>) -> Self::Future;
}

impl<B, F> AsyncPermission<B> for F
where
    F: Fn(&RequestHead<'_>) -> Decision + Send + Sync + 'static,
{
    type Future = Ready<Checked<B>>;

    fn check_async(&self, request: Request<B>) -> Self::Future {
        Checked::now(self, request)
    }
}

/// `AsyncPermission` for sync types of this crate: ready at once.
macro_rules! async_by_sync {
    ($($ty:ty),*) => {$(
        impl<B> AsyncPermission<B> for $ty {
            type Future = std::future::Ready<Checked<B>>;

            fn check_async(&self, request: http::Request<B>) -> Self::Future {
                Checked::now(self, request)
            }
        }
    )*};
}

pub(super) use async_by_sync;

async_by_sync!(AllowAny, IsAuthenticated, AllOf);

/// An asynchronous check written as a closure
/// `Fn(Request<B>) -> impl Future<Output = Checked<B>>`; see
/// [`permission_fn`].
#[derive(Clone, Copy, Debug)]
pub struct PermissionFn<F>(F);

/// Makes an [`AsyncPermission`] of an async closure, as tower's
/// `service_fn` makes a service.
///
/// ```
/// use http::Request;
/// use sage_stream::permission::{permission_fn, Checked, Denial};
///
/// let policy = permission_fn(|request: Request<()>| async move {
///     let decision = if request.headers().contains_key("x-allowed") {
///         Ok(())
///     } else {
///         Err(Denial::forbidden("policy says no"))
///     };
///     Checked::new(request, decision)
/// });
/// # let _ = policy;
/// ```
pub fn permission_fn<F>(f: F) -> PermissionFn<F> {
    PermissionFn(f)
}

impl<B, F, Fut> AsyncPermission<B> for PermissionFn<F>
where
    F: Fn(Request<B>) -> Fut,
    Fut: Future<Output = Checked<B>>,
{
    type Future = Fut;

    fn check_async(&self, request: Request<B>) -> Self::Future {
        (self.0)(request)
    }
}

/// A synchronous [`Permission`] run by
/// [`RequirePermission`](super::RequirePermission) without awaiting (so
/// the inner service need not be `Clone`); cheap to clone. What
/// [`RequirePermissionLayer::new`](super::RequirePermissionLayer::new)
/// builds.
#[derive(Debug)]
pub struct SyncPermission<P>(Arc<P>);

impl<P> SyncPermission<P> {
    /// Wraps `permission`.
    pub fn new(permission: P) -> Self {
        Self(Arc::new(permission))
    }

    /// The wrapped permission.
    pub fn get_ref(&self) -> &P {
        &self.0
    }
}

impl<P> Clone for SyncPermission<P> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

/// An [`AsyncPermission`] as
/// [`RequirePermission`](super::RequirePermission) runs it: awaited, then
/// the inner service called (which must so be `Clone`); cheap to clone.
/// What [`RequirePermissionLayer::new_async`](super::RequirePermissionLayer::new_async)
/// builds.
#[derive(Debug)]
pub struct AsyncCheck<P>(Arc<P>);

impl<P> AsyncCheck<P> {
    /// Wraps `permission`.
    pub fn new(permission: P) -> Self {
        Self(Arc::new(permission))
    }

    /// The wrapped permission.
    pub fn get_ref(&self) -> &P {
        &self.0
    }
}

impl<P> Clone for AsyncCheck<P> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

/// Allows every request: the default, like Django REST framework's `AllowAny`.
#[derive(Clone, Copy, Debug, Default)]
pub struct AllowAny;

impl Permission for AllowAny {
    fn check(&self, _: &RequestHead<'_>) -> Decision {
        Ok(())
    }
}

/// Allows authenticated viewers only; others get `401`.
#[derive(Clone, Copy, Debug, Default)]
pub struct IsAuthenticated;

impl Permission for IsAuthenticated {
    fn check(&self, request: &RequestHead<'_>) -> Decision {
        if request.viewer().authenticated {
            Ok(())
        } else {
            Err(Denial::unauthenticated("authentication required"))
        }
    }
}

/// A list of permissions that must all allow, as Django REST framework reads
/// `DEFAULT_PERMISSION_CLASSES`; the first refusal wins. Empty allows all.
#[derive(Clone, Default)]
pub struct AllOf(pub Vec<Arc<dyn Permission>>);

impl std::fmt::Debug for AllOf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AllOf({} permissions)", self.0.len())
    }
}

impl Permission for AllOf {
    fn check(&self, request: &RequestHead<'_>) -> Decision {
        self.0.iter().try_for_each(|p| p.check(request))
    }
}
