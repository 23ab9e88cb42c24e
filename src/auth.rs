//! [`BearerAuthLayer`]: a small authenticator that maps static bearer tokens
//! to user ids and sets the [`Viewer`] extension.
//!
//! It never refuses a request: an absent or unknown token makes an anonymous
//! viewer, and the permission layer decides. Any layer of yours that inserts
//! a [`Viewer`] can take its place.
//!
//! ```
//! use http::Request;
//! use sage_stream::{auth::BearerAuthLayer, extension::Viewer};
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//! use std::convert::Infallible;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let svc = ServiceBuilder::new()
//!     .layer(BearerAuthLayer::new([("s3cret", "alice")]))
//!     .service(service_fn(|req: Request<()>| async move {
//!         Ok::<_, Infallible>(req.extensions().get::<Viewer>().cloned())
//!     }));
//! let req = Request::get("/").header("authorization", "Bearer s3cret").body(()).unwrap();
//! assert_eq!(svc.oneshot(req).await.unwrap(), Some(Viewer::user("alice")));
//! # }
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{header, Request};
use sha2::{Digest, Sha256};
use tower_layer::Layer;
use tower_service::Service;

use crate::extension::Viewer;
use crate::query::query_value;

type TokenDigest = [u8; 32];

/// Layer that turns `Authorization: Bearer TOKEN` into a [`Viewer`].
#[derive(Clone)]
pub struct BearerAuthLayer {
    // Keyed by digest so a lookup's timing says nothing about the tokens.
    users: Arc<HashMap<TokenDigest, String>>,
    query_var: Option<Arc<str>>,
}

impl std::fmt::Debug for BearerAuthLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BearerAuthLayer")
            .field("tokens", &self.users.len())
            .field("query_var", &self.query_var)
            .finish()
    }
}

fn digest(token: &str) -> TokenDigest {
    Sha256::digest(token.as_bytes()).into()
}

impl BearerAuthLayer {
    /// Accepts these `(token, user id)` pairs.
    pub fn new<T, U>(tokens: impl IntoIterator<Item = (T, U)>) -> Self
    where
        T: AsRef<str>,
        U: Into<String>,
    {
        Self {
            users: Arc::new(
                tokens
                    .into_iter()
                    .map(|(t, u)| (digest(t.as_ref()), u.into()))
                    .collect(),
            ),
            query_var: None,
        }
    }

    /// Also reads the token from this query variable, for clients such as a
    /// `<video>` tag that cannot send headers. Such URLs end up in logs; prefer
    /// [`SignedUrl`](crate::permission::SignedUrl) where you can.
    pub fn query_var(mut self, name: impl Into<String>) -> Self {
        self.query_var = Some(name.into().into());
        self
    }

    fn viewer<B>(&self, req: &Request<B>) -> Viewer {
        let from_header = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, token) = v.trim().split_once(' ')?;
                scheme
                    .eq_ignore_ascii_case("bearer")
                    .then(|| token.trim().to_owned())
            });
        let token = from_header.or_else(|| {
            let var = self.query_var.as_deref()?;
            query_value(req.uri().query(), var)?.ok()
        });
        token
            .and_then(|t| self.users.get(&digest(&t)))
            .map_or_else(Viewer::anonymous, |user| Viewer::user(user.clone()))
    }
}

impl<S> Layer<S> for BearerAuthLayer {
    type Service = BearerAuth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BearerAuth {
            inner,
            layer: self.clone(),
        }
    }
}

/// Service that sets the [`Viewer`] from a bearer token; built by
/// [`BearerAuthLayer`].
#[derive(Clone, Debug)]
pub struct BearerAuth<S> {
    inner: S,
    layer: BearerAuthLayer,
}

impl<S> BearerAuth<S> {
    /// Sets the [`Viewer`] of requests to `inner` from these `(token, user
    /// id)` pairs.
    pub fn new<T, U>(inner: S, tokens: impl IntoIterator<Item = (T, U)>) -> Self
    where
        T: AsRef<str>,
        U: Into<String>,
    {
        BearerAuthLayer::new(tokens).layer(inner)
    }

    /// A [`BearerAuthLayer`] for these `(token, user id)` pairs.
    pub fn layer<T, U>(tokens: impl IntoIterator<Item = (T, U)>) -> BearerAuthLayer
    where
        T: AsRef<str>,
        U: Into<String>,
    {
        BearerAuthLayer::new(tokens)
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

impl<S, B> Service<Request<B>> for BearerAuth<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let viewer = self.layer.viewer(&req);
        req.extensions_mut().insert(viewer);
        self.inner.call(req)
    }
}
