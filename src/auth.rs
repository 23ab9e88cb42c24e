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
    token_query: Option<Arc<str>>,
}

impl std::fmt::Debug for BearerAuthLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BearerAuthLayer")
            .field("tokens", &self.users.len())
            .field("token_query", &self.token_query)
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
            token_query: None,
        }
    }

    /// Also reads the token from this query variable, for clients such as a
    /// `<video>` tag that cannot send headers. Such URLs end up in logs; prefer
    /// [`SignedUrl`](crate::permission::SignedUrl) where you can.
    pub fn token_query(mut self, name: impl Into<String>) -> Self {
        self.token_query = Some(name.into().into());
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
            let var = self.token_query.as_deref()?;
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

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use http::{header, Request, Response};
    use tower::{service_fn, ServiceExt};

    use super::*;

    /// Answers with the viewer the layer put on the request.
    async fn whoami(req: Request<()>) -> Result<Response<String>, Infallible> {
        let viewer = req.extensions().get::<Viewer>().cloned();
        let text = match viewer {
            Some(v) if v.authenticated => v.user_id.unwrap_or_default(),
            Some(_) => "anonymous".to_owned(),
            None => "none".to_owned(),
        };
        Ok(Response::new(text))
    }

    async fn who(layer: &BearerAuthLayer, req: Request<()>) -> String {
        let res = layer.layer(service_fn(whoami)).oneshot(req).await.unwrap();
        res.into_body()
    }

    fn tokens() -> BearerAuthLayer {
        BearerAuthLayer::new([("s3cret", "alice"), ("other", "bob")])
    }

    #[tokio::test]
    async fn a_bearer_token_names_its_user_and_anything_else_is_anonymous() {
        let layer = tokens();
        for (value, expected) in [
            ("Bearer s3cret", "alice"),
            ("bearer other", "bob"),
            ("BEARER   s3cret  ", "alice"),
            ("Bearer wrong", "anonymous"),
            ("Basic s3cret", "anonymous"),
            ("s3cret", "anonymous"),
            ("Bearer ", "anonymous"),
        ] {
            let req = Request::get("/")
                .header(header::AUTHORIZATION, value)
                .body(())
                .unwrap();
            assert_eq!(who(&layer, req).await, expected, "{value:?}");
        }
        assert_eq!(who(&layer, Request::new(())).await, "anonymous");
    }

    #[tokio::test]
    async fn a_query_token_counts_only_when_its_variable_is_configured() {
        let req = || {
            Request::get("/?path=a.mp4&access_token=s3cret")
                .body(())
                .unwrap()
        };
        assert_eq!(who(&tokens(), req()).await, "anonymous");
        let layer = tokens().token_query("access_token");
        assert_eq!(who(&layer, req()).await, "alice");
        // The header wins over the query.
        let both = Request::get("/?access_token=s3cret")
            .header(header::AUTHORIZATION, "Bearer other")
            .body(())
            .unwrap();
        assert_eq!(who(&layer, both).await, "bob");
        // Percent-encoded like any query value.
        let encoded = Request::get("/?access_token=s3cr%65t").body(()).unwrap();
        assert_eq!(who(&layer, encoded).await, "alice");
    }

    #[test]
    fn debug_shows_no_token() {
        let text = format!("{:?}", tokens());
        assert!(
            !text.contains("s3cret") && !text.contains("alice"),
            "{text}"
        );
    }
}
