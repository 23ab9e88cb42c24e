//! [`ParseRangeLayer`] and its service.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{header, Method, Request};
use regex::Regex;
use tower_layer::Layer;
use tower_service::Service;

use super::spec::parse_digits;
use crate::extension::{ByteRangeSpec, RangeRequest};

/// The default of django-sage-streaming's `STREAM_RANGE_HEADER_REGEX_PATTERN`.
pub const DJANGO_RANGE_PATTERN: &str = r"bytes\s*=\s*(\d+)\s*-\s*(\d*)";

/// The default limit on specs in one `Range` header.
pub const DEFAULT_MAX_RANGES: usize = 32;

#[derive(Clone, Debug)]
enum Grammar {
    Rfc9110,
    // Compiled once, shared by every clone of the layer and its services.
    Regex(Arc<Regex>),
}

/// Layer that parses `Range` into a [`RangeRequest`] extension.
///
/// See the [module docs](crate::range) for the grammar and what is ignored.
#[derive(Clone, Debug)]
pub struct ParseRangeLayer {
    grammar: Grammar,
    max_ranges: usize,
}

impl Default for ParseRangeLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl ParseRangeLayer {
    /// RFC 9110 grammar, at most 32 specs per header.
    pub fn new() -> Self {
        Self {
            grammar: Grammar::Rfc9110,
            max_ranges: DEFAULT_MAX_RANGES,
        }
    }

    /// Replaces the RFC grammar with a regular expression whose first capture
    /// group is the first byte and whose optional second group is the last
    /// byte, as django-sage-streaming's `STREAM_RANGE_HEADER_REGEX_PATTERN`.
    ///
    /// Such a pattern yields at most one range per request.
    pub fn regex(mut self, pattern: Regex) -> Self {
        self.grammar = Grammar::Regex(Arc::new(pattern));
        self
    }

    /// Headers with more specs than this are ignored (the full file is sent).
    /// Values below 1 are treated as 1.
    pub fn max_ranges(mut self, max: usize) -> Self {
        self.max_ranges = max.max(1);
        self
    }
}

impl<S> Layer<S> for ParseRangeLayer {
    type Service = ParseRange<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ParseRange {
            inner,
            layer: self.clone(),
        }
    }
}

/// Service that parses `Range` into a [`RangeRequest`] extension; built by
/// [`ParseRangeLayer`].
#[derive(Clone, Debug)]
pub struct ParseRange<S> {
    inner: S,
    layer: ParseRangeLayer,
}

impl<S> ParseRange<S> {
    /// Parses `Range` for `inner` with the RFC 9110 grammar (configure a
    /// [`ParseRangeLayer`] for a regex or another range limit).
    pub fn new(inner: S) -> Self {
        ParseRangeLayer::new().layer(inner)
    }

    /// A [`ParseRangeLayer`] with the defaults.
    pub fn layer() -> ParseRangeLayer {
        ParseRangeLayer::new()
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

    fn parse(&self, value: &str) -> Option<RangeRequest> {
        match &self.layer.grammar {
            Grammar::Rfc9110 => RangeRequest::parse(value, self.layer.max_ranges),
            Grammar::Regex(regex) => {
                let captures = regex.captures(value)?;
                let first = parse_digits(captures.get(1)?.as_str())?;
                let spec = match captures.get(2).map(|m| m.as_str()) {
                    None | Some("") => ByteRangeSpec::From(first),
                    Some(last) => {
                        let last = parse_digits(last)?;
                        if last < first {
                            return None;
                        }
                        ByteRangeSpec::FromTo(first, last)
                    }
                };
                RangeRequest::new(vec![spec])
            }
        }
    }
}

impl<S, B> Service<Request<B>> for ParseRange<S>
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
        // A stale extension set by an outer layer must not survive re-parsing.
        req.extensions_mut().remove::<RangeRequest>();
        // RFC 9110 §14.2: Range is only defined for GET (HEAD mirrors GET).
        if matches!(*req.method(), Method::GET | Method::HEAD) {
            let parsed = req
                .headers()
                .get(header::RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| self.parse(v));
            if let Some(parsed) = parsed {
                req.extensions_mut().insert(parsed);
            }
        }
        self.inner.call(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use tower::{service_fn, ServiceExt};

    async fn parsed(
        layer: ParseRangeLayer,
        method: Method,
        range: &str,
    ) -> Option<Vec<ByteRangeSpec>> {
        let svc = layer.layer(service_fn(|req: Request<()>| async move {
            Ok::<_, Infallible>(
                req.extensions()
                    .get::<RangeRequest>()
                    .map(|r| r.specs().to_vec()),
            )
        }));
        let req = Request::builder()
            .method(method)
            .header("range", range)
            .body(())
            .unwrap();
        svc.oneshot(req).await.unwrap()
    }

    #[tokio::test]
    async fn rfc_grammar_on_get_and_head_only() {
        use ByteRangeSpec::*;
        assert_eq!(
            parsed(ParseRangeLayer::new(), Method::GET, "bytes=0-1").await,
            Some(vec![FromTo(0, 1)])
        );
        assert_eq!(
            parsed(ParseRangeLayer::new(), Method::HEAD, "bytes=-3").await,
            Some(vec![Last(3)])
        );
        assert_eq!(
            parsed(ParseRangeLayer::new(), Method::POST, "bytes=0-1").await,
            None
        );
        assert_eq!(
            parsed(ParseRangeLayer::new(), Method::GET, "bytes=x").await,
            None
        );
        assert_eq!(
            parsed(
                ParseRangeLayer::new().max_ranges(1),
                Method::GET,
                "bytes=0-1,3-4"
            )
            .await,
            None
        );
    }

    #[tokio::test]
    async fn django_regex_mode() {
        use ByteRangeSpec::*;
        let layer = || ParseRangeLayer::new().regex(Regex::new(DJANGO_RANGE_PATTERN).unwrap());
        assert_eq!(
            parsed(layer(), Method::GET, "bytes=0-1").await,
            Some(vec![FromTo(0, 1)])
        );
        assert_eq!(
            parsed(layer(), Method::GET, "bytes = 100 -").await,
            Some(vec![From(100)])
        );
        assert_eq!(parsed(layer(), Method::GET, "bytes=5-1").await, None);
        // The Django pattern knows no suffix ranges.
        assert_eq!(parsed(layer(), Method::GET, "bytes=-5").await, None);
    }
}
