//! Decide who may watch: [`RequirePermissionLayer`] and the [`Permission`]
//! checks it runs.
//!
//! A permission looks at the request head, including the [`Viewer`](crate::extension::Viewer)
//! an authentication layer put into its extensions, and either allows it or
//! returns a [`Denial`]. Refusals are responses: `401` with
//! `WWW-Authenticate` for [`Denial::Unauthenticated`], `403` for
//! [`Denial::Forbidden`], `503` for [`Denial::Unavailable`], each with a
//! short plain-text reason. A request whose media path the edge layer
//! ([`ResolveMediaPathLayer`](crate::media_path::ResolveMediaPathLayer))
//! refused is answered with that refusal (`400`/`404`,
//! [`Denial::InvalidPath`]) before any check runs: a check judges only the
//! normalised path the file service will serve
//! ([`RequestHead::media_path`]).
//!
//! Built in: [`AllowAny`] (the default, as django-sage-streaming's
//! `STREAM_DEFAULT_PERMISSION_CLASSES`), [`IsAuthenticated`] and
//! [`SignedUrl`]. Closures are permissions, and [`PermissionExt`] combines
//! them with `and`, `or` and `not`. Checks that need I/O implement
//! [`AsyncPermission`] and go through [`RequirePermissionLayer::new_async`].
//!
//! # Example
//!
//! ```
//! use http::{Request, Response, StatusCode};
//! use sage_stream::permission::{Denial, IsAuthenticated, PermissionExt, RequestHead, RequirePermissionLayer};
//! use sage_stream::extension::{MediaPathSource, Viewer};
//! use sage_stream::media_path::ResolveMediaPathLayer;
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//! use std::convert::Infallible;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // Judge the normalised media path (`./drafts//a.mp4` is `drafts/a.mp4`),
//! // never the raw query.
//! let not_drafts = |req: &RequestHead<'_>| match req.media_path() {
//!     Some(p) if p.starts_with("drafts/") => Err(Denial::forbidden("drafts are private")),
//!     _ => Ok(()),
//! };
//! let svc = ServiceBuilder::new()
//!     .layer(ResolveMediaPathLayer::new(MediaPathSource::query("path")))
//!     .layer(RequirePermissionLayer::new(IsAuthenticated.and(not_drafts)))
//!     .service(service_fn(|_req: Request<()>| async {
//!         Ok::<_, Infallible>(Response::new(String::from("video")))
//!     }));
//!
//! let anonymous = Request::get("/?path=a.mp4").body(()).unwrap();
//! assert_eq!(svc.clone().oneshot(anonymous).await.unwrap().status(), StatusCode::UNAUTHORIZED);
//!
//! let mut draft = Request::get("/?path=./drafts//a.mp4").body(()).unwrap();
//! draft.extensions_mut().insert(Viewer::user("42"));
//! assert_eq!(svc.oneshot(draft).await.unwrap().status(), StatusCode::FORBIDDEN);
//! # }
//! ```

#[cfg(feature = "auth-request")]
mod auth_request;
mod check;
mod combine;
mod future;
mod layer;
mod route;
mod service;
mod signed_url;
#[cfg(test)]
mod tests;

pub use check::{
    permission_fn, AllOf, AllowAny, AsyncCheck, AsyncPermission, Checked, Decision, Denial,
    IsAuthenticated, Permission, PermissionFn, RequestHead, SyncPermission,
};
pub use combine::{And, AndFuture, Not, NotFuture, Or, OrFuture, PermissionExt};
pub use future::{ResponseFuture, SyncResponseFuture};
pub use layer::RequirePermissionLayer;
pub use route::{RouteFuture, RoutePermission};
pub use service::RequirePermission;
pub use signed_url::{SignedUrl, EXPIRES_VAR, SIGNATURE_VAR};

#[cfg(feature = "auth-request")]
#[cfg_attr(docsrs, doc(cfg(feature = "auth-request")))]
pub use auth_request::{
    AuthRequest, InvalidAuthUrl, AUTHENTICATED_HEADER, PATH_HEADER, USER_HEADER,
};
