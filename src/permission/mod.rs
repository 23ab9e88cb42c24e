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
//! `STREAM_DEFAULT_PERMISSION_CLASSES`), [`IsAuthenticated`],
//! [`SignedUrl`] and, with the `auth-request` feature, `AuthRequest`
//! (asks another web application). Closures are permissions.
//!
//! # One model, synchronous and asynchronous
//!
//! A [`Permission`] decides from the request head at once. An
//! [`AsyncPermission`] may wait (I/O): it takes the request and hands it
//! back with the decision, a [`Checked`], whether it allowed or not. Every
//! built-in synchronous check and every closure is both, so [`PermissionExt`]'s
//! `and`, `or` and `not` combine any of them, with one refusal rule (a
//! `401` beats a `403` in `or`, in either order; the table is on
//! [`PermissionExt`]):
//!
//! | combination of | is | stack it with |
//! |---|---|---|
//! | synchronous checks only | a [`Permission`] | [`RequirePermissionLayer::new`]: decided in `call`, any inner service |
//! | at least one asynchronous check | an [`AsyncPermission`] | [`RequirePermissionLayer::new_async`]: awaited, the inner service must be `Clone` |
//!
//! The layer wraps the check it runs in [`SyncPermission`] or
//! [`AsyncCheck`], which is what names the stack's type. The settings'
//! classes come as one [`RoutePermission`]
//! ([`Settings::permission`](crate::settings::Settings::permission)),
//! `AuthRequest` included. An async closure is a check through
//! [`permission_fn`]; a [`Permission`] type of your own joins asynchronous
//! combinations with an [`AsyncPermission`] impl of three lines
//! ([`Checked::now`]).
//!
//! ```
//! use http::{Request, Response, StatusCode};
//! use sage_stream::extension::Viewer;
//! use sage_stream::permission::{
//!     permission_fn, Checked, Denial, IsAuthenticated, PermissionExt, RequirePermissionLayer,
//!     SignedUrl,
//! };
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//! use std::convert::Infallible;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // A check that asks a policy service (here: a header and a pause).
//! let policy = permission_fn(|request: Request<()>| async move {
//!     tokio::task::yield_now().await;
//!     let decision = match request.headers().contains_key("x-ticket") {
//!         true => Ok(()),
//!         false => Err(Denial::forbidden("no ticket")),
//!     };
//!     Checked::new(request, decision)
//! });
//! // Signed-in viewers, or a valid link and the policy's yes.
//! let check = IsAuthenticated.or(SignedUrl::new("key").and(policy));
//! let svc = ServiceBuilder::new()
//!     .layer(RequirePermissionLayer::new_async(check))
//!     .service(service_fn(|_req: Request<()>| async {
//!         Ok::<_, Infallible>(Response::new(String::from("video")))
//!     }));
//!
//! // Anonymous, no link: IsAuthenticated's 401 beats SignedUrl's 403.
//! let anonymous = Request::get("/?path=a.mp4").body(()).unwrap();
//! assert_eq!(svc.clone().oneshot(anonymous).await.unwrap().status(), StatusCode::UNAUTHORIZED);
//!
//! let mut signed_in = Request::get("/?path=a.mp4").body(()).unwrap();
//! signed_in.extensions_mut().insert(Viewer::user("42"));
//! assert_eq!(svc.clone().oneshot(signed_in).await.unwrap().status(), StatusCode::OK);
//!
//! // A valid link and the policy's yes: allowed. Without the ticket both
//! // branches refuse, and the 401 (signing in would help) is the answer.
//! let link = SignedUrl::new("key").signed_link("/", "a.mp4", std::time::Duration::from_secs(60));
//! let ticket = Request::get(&link).header("x-ticket", "1").body(()).unwrap();
//! assert_eq!(svc.clone().oneshot(ticket).await.unwrap().status(), StatusCode::OK);
//! let no_ticket = Request::get(&link).body(()).unwrap();
//! assert_eq!(svc.oneshot(no_ticket).await.unwrap().status(), StatusCode::UNAUTHORIZED);
//! # }
//! ```
//!
//! # A synchronous check
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
