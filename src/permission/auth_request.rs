//! [`AuthRequest`]: ask another web application whether a viewer may watch,
//! as nginx's `auth_request` does.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, HeaderMap, HeaderName, HeaderValue, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha2::{Digest, Sha256};

use super::check::{AsyncPermission, Checked, Decision, Denial, LearnedViewer};
use crate::extension::{ClientIp, MediaPathSource, Viewer};

/// The header the authentication endpoint names the user in.
pub const USER_HEADER: &str = "x-stream-user";
/// The header that says whether the user is authenticated (`true`/`false`);
/// without it, a named user counts as authenticated.
pub const AUTHENTICATED_HEADER: &str = "x-stream-authenticated";
/// The header carrying the requested media path to the endpoint
/// (percent-encoded; also sent as the `path` query variable).
pub const PATH_HEADER: &str = "x-stream-path";

// Escaped in the media path sent on: all but RFC 3986's unreserved
// characters and `/`.
const PATH_ESCAPES: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

/// Longest an answer body is read (then dropped) before the connection is
/// given back to the pool.
const MAX_ANSWER_BODY: usize = 64 * 1024;

/// Asks an HTTP endpoint (say a Django view at `/stream-auth/`) whether each
/// request may stream: the pattern of nginx's `auth_request`.
///
/// Before streaming, a `GET` goes to the configured URL with the viewer's
/// `Cookie` and `Authorization` headers, the requested media path (as the
/// `path` query variable and the `X-Stream-Path` header, percent-encoded),
/// `X-Original-URI`, `X-Original-Method` and, when known, `X-Real-IP`. The
/// answer decides:
///
/// | answer | outcome |
/// |---|---|
/// | 2xx | allowed; `X-Stream-User` (and `X-Stream-Authenticated`) become the request's [`Viewer`], which the watch log records |
/// | 401 | refused with 401 |
/// | 403 | refused with 403 |
/// | anything else, no answer, or no answer within the timeout | refused with 503 and a reason: a broken endpoint never lets anyone in |
///
/// Decisions (allowed with its viewer, 401, 403; never a failure) are cached
/// per credentials and media path for [`cache_ttl`](Self::cache_ttl)
/// (default 30 s, zero turns the cache off), in at most
/// [`cache_capacity`](Self::cache_capacity) entries. Cache keys are SHA-256
/// digests, so the cache holds no cookie.
///
/// Only `http://` URLs are accepted: the endpoint is meant to sit on the
/// same host or a private network (HTTPS to it would be the job of a proxy).
///
/// An [`AsyncPermission`]: run it, alone or combined with other checks by
/// [`and`, `or` and `not`](super::PermissionExt) (`IsAuthenticated.or(auth)`:
/// bearer-token viewers pass without asking), with
/// [`RequirePermissionLayer::new_async`](super::RequirePermissionLayer::new_async)
/// or [`SageStreamExt::require_permission_async`](crate::SageStreamExt::require_permission_async).
/// In `or`, its `401` is preferred to the other branch's `403`. An allowed
/// request carries the viewer the endpoint named, for the checks after it
/// in an `and` and for the layers inside.
///
/// ```
/// use std::time::Duration;
/// use sage_stream::permission::{AuthRequest, RequirePermissionLayer};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let auth = AuthRequest::new("http://127.0.0.1:8001/stream-auth/")
///     .unwrap()
///     .timeout(Duration::from_secs(2))
///     .cache_ttl(Duration::from_secs(30));
/// let layer = RequirePermissionLayer::new_async(auth);
/// # let _ = layer;
/// # }
/// ```
#[derive(Clone)]
pub struct AuthRequest {
    url: Uri,
    client: Client<HttpConnector, Empty<Bytes>>,
    timeout: Duration,
    cache_ttl: Duration,
    source: MediaPathSource,
    cache: Arc<Mutex<Cache>>,
}

impl fmt::Debug for AuthRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthRequest")
            // The URL may carry a password.
            .field("url", &crate::redact_url(&self.url.to_string()))
            .field("timeout", &self.timeout)
            .field("cache_ttl", &self.cache_ttl)
            .finish_non_exhaustive()
    }
}

/// Why an [`AuthRequest`] URL cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid authentication URL {url:?}: {reason}")]
pub struct InvalidAuthUrl {
    url: String,
    reason: &'static str,
}

impl AuthRequest {
    /// Asks `url` (an absolute `http://` URL); 5 s timeout, 30 s cache of
    /// at most 10 000 decisions, media paths read from the `path` query
    /// variable.
    pub fn new(url: &str) -> Result<Self, InvalidAuthUrl> {
        let invalid = |reason| InvalidAuthUrl {
            url: crate::redact_url(url),
            reason,
        };
        let parsed: Uri = url.parse().map_err(|_| invalid("not a URL"))?;
        match parsed.scheme_str() {
            Some("http") => {}
            Some(_) => return Err(invalid("only http:// is supported")),
            None => return Err(invalid("expected an absolute http:// URL")),
        }
        if parsed.host().is_none() {
            return Err(invalid("no host"));
        }
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        Ok(Self {
            url: parsed,
            client: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(connector),
            timeout: Duration::from_secs(5),
            cache_ttl: Duration::from_secs(30),
            source: MediaPathSource::default(),
            cache: Arc::new(Mutex::new(Cache::new(10_000))),
        })
    }

    /// Longest wait for the endpoint's answer (default 5 s); past it the
    /// request is refused with 503.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long a decision is reused for the same credentials and path
    /// (default 30 s; zero: ask every time).
    pub fn cache_ttl(mut self, ttl: Duration) -> Self {
        self.cache_ttl = ttl;
        self
    }

    /// Most decisions cached at once (default 10 000); the oldest go first.
    pub fn cache_capacity(self, capacity: usize) -> Self {
        let cache = Arc::new(Mutex::new(Cache::new(capacity.max(1))));
        Self { cache, ..self }
    }

    /// Where requests name their media path (default: the `path` query
    /// variable), as the endpoint reads it.
    pub fn media_path(mut self, source: MediaPathSource) -> Self {
        self.source = source;
        self
    }

    /// The endpoint asked.
    pub fn url(&self) -> &Uri {
        &self.url
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The sub-request for a request with these parts.
    fn sub_request(
        &self,
        headers: &HeaderMap,
        original: &Uri,
        method: &http::Method,
        path: &str,
        client_ip: Option<std::net::IpAddr>,
    ) -> Option<Request<Empty<Bytes>>> {
        let encoded = utf8_percent_encode(path, PATH_ESCAPES).to_string();
        let target = match self.url.query() {
            Some(q) => format!("{}?{q}&path={encoded}", self.url.path()),
            None => format!("{}?path={encoded}", self.url.path()),
        };
        let authority = self.url.authority()?.clone();
        let uri = Uri::builder()
            .scheme("http")
            .authority(authority)
            .path_and_query(target)
            .build()
            .ok()?;
        let mut request = Request::get(uri).body(Empty::new()).ok()?;
        let out = request.headers_mut();
        for name in [header::COOKIE, header::AUTHORIZATION] {
            for value in headers.get_all(&name) {
                out.append(name.clone(), value.clone());
            }
        }
        let set = |out: &mut HeaderMap, name: &'static str, value: &str| {
            if let Ok(value) = HeaderValue::from_str(value) {
                out.insert(HeaderName::from_static(name), value);
            }
        };
        set(out, PATH_HEADER, &encoded);
        set(
            out,
            "x-original-uri",
            original.path_and_query().map_or("/", |p| p.as_str()),
        );
        set(out, "x-original-method", method.as_str());
        if let Some(ip) = client_ip {
            set(out, "x-real-ip", &ip.to_string());
        }
        Some(request)
    }
}

/// What the endpoint said, as cached.
#[derive(Clone, Debug)]
enum Verdict {
    Allow(Option<Viewer>),
    Deny(StatusCode),
}

/// The decisions of the last `ttl`, oldest first in `order`.
struct Cache {
    entries: HashMap<[u8; 32], (Instant, Verdict)>,
    order: VecDeque<([u8; 32], Instant)>,
    capacity: usize,
}

impl Cache {
    fn new(capacity: usize) -> Self {
        Self {
            entries: HashMap::new(),
            order: VecDeque::new(),
            capacity,
        }
    }

    fn get(&self, key: &[u8; 32], ttl: Duration) -> Option<Verdict> {
        let (at, verdict) = self.entries.get(key)?;
        (at.elapsed() < ttl).then(|| verdict.clone())
    }

    fn insert(&mut self, key: [u8; 32], verdict: Verdict, ttl: Duration) {
        let now = Instant::now();
        // Every entry lives as long, so the oldest are the first to expire:
        // drop expired ones, then the oldest while full.
        while let Some((old, at)) = self.order.front().copied() {
            let expired = now.duration_since(at) >= ttl;
            if !expired && self.entries.len() < self.capacity {
                break;
            }
            self.order.pop_front();
            // A key inserted again later has a newer time: keep that one.
            if self.entries.get(&old).is_some_and(|(t, _)| *t == at) {
                self.entries.remove(&old);
            }
        }
        self.entries.insert(key, (now, verdict));
        self.order.push_back((key, now));
    }
}

fn cache_key(headers: &HeaderMap, path: &str) -> [u8; 32] {
    let mut digest = Sha256::new();
    for name in [header::COOKIE, header::AUTHORIZATION] {
        for value in headers.get_all(&name) {
            digest.update(value.as_bytes());
            digest.update([0]);
        }
        digest.update([1]);
    }
    digest.update(path.as_bytes());
    digest.finalize().into()
}

fn viewer_of(headers: &HeaderMap) -> Option<Viewer> {
    let user = headers
        .get(USER_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|u| !u.is_empty());
    let authenticated = headers
        .get(AUTHENTICATED_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "true" | "1" | "yes"));
    match (user, authenticated) {
        (Some(user), authenticated) => Some(Viewer {
            user_id: Some(user.to_owned()),
            authenticated: authenticated.unwrap_or(true),
        }),
        (None, Some(authenticated)) => Some(Viewer {
            user_id: None,
            authenticated,
        }),
        (None, None) => None,
    }
}

impl<B: Send + 'static> AsyncPermission<B> for AuthRequest {
    type Future = Pin<Box<dyn Future<Output = Checked<B>> + Send>>;

    fn check_async(&self, mut request: Request<B>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let decision = this.decide(&mut request).await;
            Checked::new(request, decision)
        })
    }
}

impl AuthRequest {
    /// Asks (or reads the cache) about `request`; an allowed request gets
    /// the viewer the endpoint named.
    async fn decide<B>(&self, request: &mut Request<B>) -> Decision {
        // The normalised path the file service will serve: the endpoint
        // must judge that file, not another spelling of it.
        let path = self
            .source
            .resolve(request.extensions(), request.uri())
            .map_err(Denial::InvalidPath)?
            .into_owned();
        let caching = !self.cache_ttl.is_zero();
        let key = cache_key(request.headers(), &path);
        let cached = caching
            .then(|| self.lock().get(&key, self.cache_ttl))
            .flatten();
        let verdict = match cached {
            Some(verdict) => verdict,
            None => {
                let client_ip = request.extensions().get::<ClientIp>().map(|ip| ip.0);
                let verdict = self
                    .ask(
                        request.headers(),
                        request.uri(),
                        request.method(),
                        &path,
                        client_ip,
                    )
                    .await?;
                if caching {
                    self.lock().insert(key, verdict.clone(), self.cache_ttl);
                }
                verdict
            }
        };
        match verdict {
            Verdict::Allow(viewer) => {
                if let Some(viewer) = viewer {
                    request.extensions_mut().insert(viewer.clone());
                    request.extensions_mut().insert(LearnedViewer(viewer));
                }
                Ok(())
            }
            Verdict::Deny(StatusCode::UNAUTHORIZED) => {
                Err(Denial::unauthenticated("not signed in"))
            }
            Verdict::Deny(_) => Err(Denial::forbidden("not allowed to watch this")),
        }
    }
}

impl AuthRequest {
    /// One sub-request; a failure is a 503 denial, never a verdict.
    async fn ask(
        &self,
        headers: &HeaderMap,
        uri: &Uri,
        method: &http::Method,
        path: &str,
        client_ip: Option<std::net::IpAddr>,
    ) -> Result<Verdict, Denial> {
        let unavailable = |why: &str| {
            tracing::warn!(url = %self.url, why, "authentication endpoint failed; refusing");
            Denial::unavailable("authentication service unavailable")
        };
        let sub = self
            .sub_request(headers, uri, method, path, client_ip)
            .ok_or_else(|| unavailable("cannot build the sub-request"))?;
        let answer = tokio::time::timeout(self.timeout, async {
            let response = self.client.request(sub).await.map_err(|_| "no answer")?;
            let (parts, body) = response.into_parts();
            // Read the (small) body so the connection goes back to the pool.
            let _ = Limited::new(body, MAX_ANSWER_BODY).collect().await;
            Ok::<_, &str>(parts)
        })
        .await
        .map_err(|_| unavailable("timed out"))?
        .map_err(unavailable)?;
        match answer.status {
            s if s.is_success() => Ok(Verdict::Allow(viewer_of(&answer.headers))),
            s @ (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) => Ok(Verdict::Deny(s)),
            _ => Err(unavailable("unexpected status")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_must_be_absolute_http() {
        assert!(AuthRequest::new("http://127.0.0.1:1/auth").is_ok());
        for bad in ["https://x/auth", "/auth", "not a url", "ftp://x/"] {
            assert!(AuthRequest::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_cache_expires_and_stays_bounded() {
        let ttl = Duration::from_secs(60);
        let mut cache = Cache::new(3);
        for i in 0..10u8 {
            cache.insert([i; 32], Verdict::Deny(StatusCode::FORBIDDEN), ttl);
        }
        assert_eq!(cache.entries.len(), 3);
        assert!(cache.get(&[9; 32], ttl).is_some());
        assert!(cache.get(&[0; 32], ttl).is_none(), "the oldest went first");
        assert!(cache.get(&[9; 32], Duration::ZERO).is_none(), "expired");
    }

    #[test]
    fn the_answer_names_the_viewer() {
        let mut h = HeaderMap::new();
        assert_eq!(viewer_of(&h), None);
        h.insert(USER_HEADER, HeaderValue::from_static("42"));
        assert_eq!(viewer_of(&h), Some(Viewer::user("42")));
        h.insert(AUTHENTICATED_HEADER, HeaderValue::from_static("false"));
        assert!(!viewer_of(&h).unwrap().authenticated);
    }
}
