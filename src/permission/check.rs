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

/// A check that needs I/O (a database, a remote policy service). It takes
/// the request and gives it back when allowed. Closures
/// `Fn(Request<B>) -> impl Future<Output = Result<Request<B>, Denial>>`
/// implement it.
pub trait AsyncPermission<B> {
    /// The future of one check.
    type Future: Future<Output = Result<Request<B>, Denial>>;

    /// Checks `request`.
    fn check(&self, request: Request<B>) -> Self::Future;
}

impl<B, F, Fut> AsyncPermission<B> for F
where
    F: Fn(Request<B>) -> Fut,
    Fut: Future<Output = Result<Request<B>, Denial>>,
{
    type Future = Fut;

    fn check(&self, request: Request<B>) -> Self::Future {
        self(request)
    }
}

/// Runs a [`Permission`] where an [`AsyncPermission`] is expected; cheap to
/// clone.
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

impl<B, P: Permission> AsyncPermission<B> for SyncPermission<P> {
    type Future = Ready<Result<Request<B>, Denial>>;

    fn check(&self, request: Request<B>) -> Self::Future {
        ready(self.0.check(&RequestHead::of(&request)).map(|()| request))
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

/// Combinators for [`Permission`]s.
pub trait PermissionExt: Permission + Sized {
    /// Allows when both allow; the first refusal wins.
    fn and<Q: Permission>(self, other: Q) -> And<Self, Q> {
        And(self, other)
    }

    /// Allows when either allows. When both refuse, a `401` is preferred over
    /// a `403` (credentials might help), else the first refusal is given. So
    /// `IsAuthenticated.or(SignedUrl::new(key))` answers an anonymous
    /// request with a tampered or expired link `401` (from
    /// `IsAuthenticated`), not `SignedUrl`'s `403`, in either order.
    fn or<Q: Permission>(self, other: Q) -> Or<Self, Q> {
        Or(self, other)
    }

    /// Allows what `self` refuses and refuses (`403`) what it allows.
    fn not(self) -> Not<Self> {
        Not(self)
    }
}

impl<P: Permission> PermissionExt for P {}

/// Both must allow; see [`PermissionExt::and`].
#[derive(Clone, Copy, Debug)]
pub struct And<A, B>(A, B);

/// Either must allow; see [`PermissionExt::or`].
#[derive(Clone, Copy, Debug)]
pub struct Or<A, B>(A, B);

/// The inverse; see [`PermissionExt::not`].
#[derive(Clone, Copy, Debug)]
pub struct Not<A>(A);

impl<A: Permission, B: Permission> Permission for And<A, B> {
    fn check(&self, request: &RequestHead<'_>) -> Decision {
        self.0.check(request)?;
        self.1.check(request)
    }
}

impl<A: Permission, B: Permission> Permission for Or<A, B> {
    fn check(&self, request: &RequestHead<'_>) -> Decision {
        let first = match self.0.check(request) {
            Ok(()) => return Ok(()),
            Err(denial) => denial,
        };
        match self.1.check(request) {
            Ok(()) => Ok(()),
            Err(second @ Denial::Unauthenticated(_)) if matches!(first, Denial::Forbidden(_)) => {
                Err(second)
            }
            Err(_) => Err(first),
        }
    }
}

impl<A: Permission> Permission for Not<A> {
    fn check(&self, request: &RequestHead<'_>) -> Decision {
        match self.0.check(request) {
            Ok(()) => Err(Denial::forbidden("forbidden")),
            Err(_) => Ok(()),
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
