//! Decide, once and at the edge, which media path a request names:
//! [`ResolveMediaPathLayer`].
//!
//! The layer decodes and normalises the path with one
//! [`MediaPathSource`] and stores the answer as a request extension: a
//! [`MediaPath`](crate::extension::MediaPath) (`./private//a.mp4` becomes `private/a.mp4`), or the
//! [`MediaPathError`](crate::extension::MediaPathError) it was refused with. It never answers itself, so a
//! watch log stacked inside it still records the refused attempt; the
//! permission layer and `ServeMedia` answer the refusal (`400`, `404`
//! outside the prefix) with its short reason.
//!
//! Every layer inside reads that answer instead of decoding again: forward
//! authentication asks about the path that will be served, `SignedUrl`
//! verifies it, your own [`Permission`](crate::permission::Permission)
//! reads it with [`RequestHead::media_path`](crate::permission::RequestHead::media_path),
//! the watch log records it. Stack it outermost; an answer an outer layer
//! already gave is kept, so [`StreamEndpoint`](crate::StreamEndpoint),
//! which has one of its own, follows yours. Without it each of those layers
//! decodes the path itself by the same rule from its own source, which is
//! correct as long as every source is configured alike.
//!
//! # Example
//!
//! ```
//! use http::{Request, StatusCode};
//! use sage_stream::extension::MediaPathSource;
//! use sage_stream::media::ServeMedia;
//! use sage_stream::media_path::ResolveMediaPathLayer;
//! use sage_stream::permission::{Denial, RequestHead, RequirePermissionLayer};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! # let dir = tempfile::tempdir().unwrap();
//! # std::fs::create_dir(dir.path().join("private")).unwrap();
//! # std::fs::write(dir.path().join("private/a.mp4"), b"secret").unwrap();
//! let no_private = |req: &RequestHead<'_>| match req.media_path() {
//!     Some(path) if path.starts_with("private/") => Err(Denial::forbidden("private")),
//!     _ => Ok(()),
//! };
//! let svc = ServiceBuilder::new()
//!     .layer(ResolveMediaPathLayer::new(MediaPathSource::query("path")))
//!     .layer(RequirePermissionLayer::new(no_private))
//!     .service(ServeMedia::new(dir.path()));
//!
//! // Another spelling of the same file is judged as the file it names.
//! let sneaky = Request::get("/s?path=.%2Fprivate//a.mp4").body(()).unwrap();
//! assert_eq!(svc.clone().oneshot(sneaky).await.unwrap().status(), StatusCode::FORBIDDEN);
//! // A refused path is answered before any check, as the file service would.
//! let escape = Request::get("/s?path=../etc/passwd").body(()).unwrap();
//! assert_eq!(svc.oneshot(escape).await.unwrap().status(), StatusCode::BAD_REQUEST);
//! # }
//! ```

use std::task::{Context, Poll};

use http::Request;
use tower_layer::Layer;
use tower_service::Service;

use crate::extension::MediaPathSource;

/// Layer that decodes each request's media path once, with one
/// [`MediaPathSource`], into a [`MediaPath`](crate::extension::MediaPath) (or
/// [`MediaPathError`](crate::extension::MediaPathError))
/// request extension; see the [module docs](self).
#[derive(Clone, Debug, Default)]
pub struct ResolveMediaPathLayer {
    source: MediaPathSource,
}

impl ResolveMediaPathLayer {
    /// Reads media paths through `source`.
    pub fn new(source: MediaPathSource) -> Self {
        Self { source }
    }

    /// The source paths are read through.
    pub fn source(&self) -> &MediaPathSource {
        &self.source
    }
}

impl<S> Layer<S> for ResolveMediaPathLayer {
    type Service = ResolveMediaPath<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ResolveMediaPath {
            inner,
            source: self.source.clone(),
        }
    }
}

/// Service that sets the [`MediaPath`](crate::extension::MediaPath) (or
/// [`MediaPathError`](crate::extension::MediaPathError)) extension and
/// calls `inner`; built by [`ResolveMediaPathLayer`].
#[derive(Clone, Debug)]
pub struct ResolveMediaPath<S> {
    inner: S,
    source: MediaPathSource,
}

impl<S> ResolveMediaPath<S> {
    /// Reads the media paths of requests to `inner` through `source`.
    pub fn new(inner: S, source: MediaPathSource) -> Self {
        Self { inner, source }
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

impl<S, B> Service<Request<B>> for ResolveMediaPath<S>
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
        // Keeps an answer an outer layer gave (extensions never come from
        // the wire): the outermost edge decides, once.
        self.source.insert_into(&mut req);
        self.inner.call(req)
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use http::Response;
    use tower::{service_fn, ServiceExt};

    use super::*;
    use crate::extension::{MediaPath, MediaPathError};

    async fn seen(layer: &ResolveMediaPathLayer, uri: &str) -> Result<String, MediaPathError> {
        let svc = layer.layer(service_fn(|req: Request<()>| async move {
            let ext = req.extensions();
            let answer = match (ext.get::<MediaPath>(), ext.get::<MediaPathError>()) {
                (Some(path), None) => Ok(path.as_str().to_owned()),
                (None, Some(refusal)) => Err(*refusal),
                other => panic!("exactly one answer, got {other:?}"),
            };
            Ok::<_, Infallible>(Response::new(answer))
        }));
        let req = Request::get(uri).body(()).unwrap();
        svc.oneshot(req).await.unwrap().into_body()
    }

    #[tokio::test]
    async fn sets_one_normalised_answer() {
        let layer = ResolveMediaPathLayer::new(MediaPathSource::query("path"));
        assert_eq!(
            seen(&layer, "/s?path=./private//a.mp4").await.as_deref(),
            Ok("private/a.mp4")
        );
        assert_eq!(
            seen(&layer, "/s?path=a/../../b").await,
            Err(MediaPathError::ParentComponent)
        );
        assert_eq!(seen(&layer, "/s").await, Err(MediaPathError::Missing));
        let by_uri = ResolveMediaPathLayer::new(MediaPathSource::uri_prefix("/media"));
        assert_eq!(
            seen(&by_uri, "/media/%2e/x.mp4").await.as_deref(),
            Ok("x.mp4")
        );
        assert_eq!(
            seen(&by_uri, "/other/x.mp4").await,
            Err(MediaPathError::OutsidePrefix)
        );
    }

    #[tokio::test]
    async fn the_outermost_edge_decides() {
        let outer = ResolveMediaPathLayer::new(MediaPathSource::query("path"));
        let inner = ResolveMediaPathLayer::new(MediaPathSource::query("other"));
        let svc = outer.layer(inner.layer(service_fn(|req: Request<()>| async move {
            let path = req.extensions().get::<MediaPath>().cloned();
            assert!(req.extensions().get::<MediaPathError>().is_none());
            Ok::<_, Infallible>(Response::new(path))
        })));
        let req = Request::get("/s?path=a.mp4").body(()).unwrap();
        let path = svc.oneshot(req).await.unwrap().into_body();
        assert_eq!(path.as_ref().map(MediaPath::as_str), Some("a.mp4"));
    }
}
