//! Decide who may watch: [`RequirePermissionLayer`] and the [`Permission`]
//! checks it runs.
//!
//! A permission looks at the request head, including the [`Viewer`](crate::extension::Viewer)
//! an authentication layer put into its extensions, and either allows it or
//! returns a [`Denial`]. Refusals are responses: `401` with
//! `WWW-Authenticate` for [`Denial::Unauthenticated`], `403` for
//! [`Denial::Forbidden`], each with a short plain-text reason.
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
//! use sage_stream::extension::Viewer;
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//! use std::convert::Infallible;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let not_drafts = |req: &RequestHead<'_>| match req.query("path") {
//!     Some(p) if p.starts_with("drafts/") => Err(Denial::forbidden("drafts are private")),
//!     _ => Ok(()),
//! };
//! let svc = ServiceBuilder::new()
//!     .layer(RequirePermissionLayer::new(IsAuthenticated.and(not_drafts)))
//!     .service(service_fn(|_req: Request<()>| async {
//!         Ok::<_, Infallible>(Response::new(String::from("video")))
//!     }));
//!
//! let anonymous = Request::get("/?path=a.mp4").body(()).unwrap();
//! assert_eq!(svc.clone().oneshot(anonymous).await.unwrap().status(), StatusCode::UNAUTHORIZED);
//!
//! let mut draft = Request::get("/?path=drafts/a.mp4").body(()).unwrap();
//! draft.extensions_mut().insert(Viewer::user("42"));
//! assert_eq!(svc.oneshot(draft).await.unwrap().status(), StatusCode::FORBIDDEN);
//! # }
//! ```

#[cfg(feature = "auth-request")]
mod auth_request;
mod check;
mod future;
mod layer;
mod service;
mod signed_url;

pub use check::{
    AllOf, AllowAny, And, AsyncPermission, Decision, Denial, IsAuthenticated, Not, Or, Permission,
    PermissionExt, RequestHead, SyncPermission,
};
pub use future::ResponseFuture;
pub use layer::RequirePermissionLayer;
pub use service::RequirePermission;
pub use signed_url::{SignedUrl, EXPIRES_VAR, SIGNATURE_VAR};

#[cfg(feature = "auth-request")]
#[cfg_attr(docsrs, doc(cfg(feature = "auth-request")))]
pub use auth_request::{
    AuthRequest, InvalidAuthUrl, AUTHENTICATED_HEADER, PATH_HEADER, USER_HEADER,
};
