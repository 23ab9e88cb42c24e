//! [`StreamEndpoint`]: the whole stack in one call, and
//! [`SageStreamExt`] to stack the layers yourself.
//!
//! The stack, outermost first: [`ResolveMediaPathLayer`] (the media path,
//! decided once) → [`RequirePermissionLayer`] →
//! [`ParseRangeLayer`] → [`CapVolumeLayer`] → [`ServeMedia`]. A refused
//! request never reaches the disk; the range is parsed before the cap is set,
//! and the terminal service applies both.
//!
//! ```
//! use http::{Request, StatusCode};
//! use sage_stream::{permission::IsAuthenticated, StreamEndpoint};
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! # let dir = tempfile::tempdir().unwrap();
//! let svc = StreamEndpoint::new(dir.path())
//!     .max_load_volume(4 * 1024 * 1024)
//!     .permission(IsAuthenticated)
//!     .into_service();
//! let res = svc.oneshot(Request::get("/?path=a.mp4").body(()).unwrap()).await.unwrap();
//! assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
//! # }
//! ```

//! # Naming a stack you built
//!
//! A hand-stacked service has a long type. Return it from a function as
//! `impl Service<…> + Clone`, or spell it with the exported types
//! (outermost first):
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response};
//! use sage_stream::cap::{CapVolume, CappedBody};
//! use sage_stream::media::{MediaBody, ServeMedia};
//! use sage_stream::media_path::ResolveMediaPath;
//! use sage_stream::permission::{IsAuthenticated, Or, RequirePermission, SignedUrl, SyncPermission};
//! use sage_stream::range::ParseRange;
//! use sage_stream::{extension::MediaPathSource, permission::PermissionExt, SageStreamExt};
//! use tower::{Service, ServiceBuilder};
//!
//! /// `require_permission` wraps a synchronous check in `SyncPermission`.
//! type Stream = ResolveMediaPath<
//!     RequirePermission<ParseRange<CapVolume<ServeMedia>>, SyncPermission<Or<IsAuthenticated, SignedUrl>>>,
//! >;
//!
//! fn stream(root: &str) -> Stream {
//!     ServiceBuilder::new()
//!         .resolve_media_path(MediaPathSource::query("path"))
//!         .require_permission(IsAuthenticated.or(SignedUrl::new("key")))
//!         .parse_range()
//!         .cap_volume(8 << 20)
//!         .service(ServeMedia::new(root))
//! }
//!
//! // Or hide it: any caller sees a cloneable Service.
//! fn hidden(root: &str) -> impl Service<
//!     Request<()>,
//!     Response = Response<sage_stream::body::ResponseBody<CappedBody<MediaBody>>>,
//!     Error = Infallible,
//! > + Clone {
//!     stream(root)
//! }
//! # let _ = hidden(".");
//! ```
//!
//! To store stacks of different shapes in one place, box them with
//! `tower::util::BoxCloneService` (tower's `util` feature), mapping the
//! body to your server's (`axum::body::Body::new`) first.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Request, Response};
use pin_project::pin_project;
use regex::Regex;
use tower::layer::util::Stack;
use tower::ServiceBuilder;
use tower_service::Service;

use crate::auth::BearerAuthLayer;
use crate::body::ResponseBody;
use crate::cap::{CapVolume, CapVolumeLayer, CappedBody};
use crate::client_ip::ResolveClientIpLayer;
use crate::error::ConfigError;
use crate::extension::{IpNet, MediaPathSource};
use crate::limit::ViewerStreamLimitLayer;
#[cfg(feature = "log")]
use crate::log::WatchLogLayer;
use crate::media::{MediaBody, ServeMedia};
use crate::media_path::{ResolveMediaPath, ResolveMediaPathLayer};
use crate::permission::{
    AllowAny, AsyncCheck, Permission, RequirePermission, RequirePermissionLayer, RoutePermission,
    SyncPermission,
};
use crate::range::{ParseRange, ParseRangeLayer};
use crate::settings::Settings;

type Stacked<P> = ResolveMediaPath<RequirePermission<ParseRange<CapVolume<ServeMedia>>, P>>;

/// The body of [`StreamService`]'s responses.
pub type StreamBody = ResponseBody<CappedBody<MediaBody>>;

/// The service [`StreamEndpoint::into_service`] builds: permission, range,
/// cap and file, outermost first. `P` is the permission as
/// [`RequirePermission`] runs it: [`SyncPermission`] for a synchronous one
/// ([`StreamEndpoint::permission`]), else the
/// [`AsyncPermission`](crate::permission::AsyncPermission) itself
/// ([`StreamEndpoint::permission_async`]). Its layers are an implementation
/// detail; stack them yourself with [`SageStreamExt`] to reach one.
#[derive(Clone, Debug)]
pub struct StreamService<P = SyncPermission<AllowAny>> {
    inner: Stacked<P>,
}

impl<P, B> Service<Request<B>> for StreamService<P>
where
    Stacked<P>:
        Service<Request<B>, Response = Response<StreamBody>, Error = std::convert::Infallible>,
{
    type Response = Response<StreamBody>;
    type Error = std::convert::Infallible;
    type Future = StreamFuture<P, B>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Service::<Request<B>>::poll_ready(&mut self.inner, cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        StreamFuture {
            inner: self.inner.call(req),
        }
    }
}

/// Response future of [`StreamService`].
#[pin_project]
pub struct StreamFuture<P, B>
where
    Stacked<P>: Service<Request<B>>,
{
    #[pin]
    inner: <Stacked<P> as Service<Request<B>>>::Future,
}

impl<P, B> std::fmt::Debug for StreamFuture<P, B>
where
    Stacked<P>: Service<Request<B>>,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamFuture").finish_non_exhaustive()
    }
}

impl<P, B> Future for StreamFuture<P, B>
where
    Stacked<P>:
        Service<Request<B>, Response = Response<StreamBody>, Error = std::convert::Infallible>,
{
    type Output = Result<Response<StreamBody>, std::convert::Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().inner.poll(cx)
    }
}

/// Builder for the stream endpoint with django-sage-streaming's defaults:
/// query variable `path`, 8 MiB cap, RFC 9110 ranges, [`AllowAny`].
#[derive(Clone, Debug)]
pub struct StreamEndpoint<P = SyncPermission<AllowAny>> {
    source: MediaPathSource,
    media: ServeMedia,
    range: ParseRangeLayer,
    cap: CapVolumeLayer,
    permission: P,
}

impl StreamEndpoint {
    /// An endpoint serving files below `root`.
    pub fn new(root: impl AsRef<Path>) -> Self {
        Self {
            source: MediaPathSource::default(),
            media: ServeMedia::new(root),
            range: ParseRangeLayer::new(),
            cap: CapVolumeLayer::default(),
            permission: SyncPermission::new(AllowAny),
        }
    }
}

impl StreamEndpoint<AsyncCheck<RoutePermission>> {
    /// An endpoint configured by `settings` (media-path source, cap, range
    /// grammar and permission classes, `AuthRequest` included:
    /// [`Settings::permission`]).
    pub fn from_settings(root: impl AsRef<Path>, settings: &Settings) -> Result<Self, ConfigError> {
        settings.validate()?;
        let mut endpoint = StreamEndpoint::new(root)
            .media_path(settings.media_path_source())
            .max_load_volume(settings.max_load_volume)
            .permission_async(settings.permission()?);
        if let Some(regex) = settings.range_regex()? {
            endpoint = endpoint.range_regex(regex);
        }
        for (extension, content_type) in &settings.mime_types {
            endpoint = endpoint.mime_type(extension, content_type)?;
        }
        if let Some(value) = settings.cache_control_value()? {
            endpoint = endpoint.cache_control(value);
        }
        Ok(endpoint)
    }
}

impl<P> StreamEndpoint<P> {
    /// Where requests name the media path (default: query variable `path`).
    /// Give a `SignedUrl` permission and a watch log the same source.
    pub fn media_path(mut self, source: MediaPathSource) -> Self {
        self.media = self.media.media_path(source.clone());
        self.source = source;
        self
    }

    /// Where requests name the media path.
    pub fn source(&self) -> &MediaPathSource {
        &self.source
    }

    /// Caps each ranged response at `bytes` (default 8 MiB; see
    /// [`CapVolumeLayer::mebibytes`] for the settings' unit).
    pub fn max_load_volume(mut self, bytes: u64) -> Self {
        self.cap = CapVolumeLayer::new(bytes);
        self
    }

    /// Removes the cap.
    pub fn unlimited_volume(self) -> Self {
        self.max_load_volume(u64::MAX)
    }

    /// Parses `Range` with a two-group regex instead of RFC 9110.
    pub fn range_regex(mut self, regex: Regex) -> Self {
        self.range = self.range.regex(regex);
        self
    }

    /// Most specs honoured in one `Range` header (default 32).
    pub fn max_ranges(mut self, max: usize) -> Self {
        self.range = self.range.max_ranges(max);
        self
    }

    /// Bytes per disk read (default 128 KiB).
    pub fn chunk_size(mut self, bytes: usize) -> Self {
        self.media = self.media.chunk_size(bytes);
        self
    }

    /// Keeps up to `files` recently served files open (default 256; 0: off);
    /// see [`ServeMedia::open_file_cache`].
    pub fn open_file_cache(mut self, files: usize) -> Self {
        self.media = self.media.open_file_cache(files);
        self
    }

    /// Trusts a cached file this long without a `stat` (default zero: check
    /// every hit); see [`ServeMedia::open_file_cache_valid`].
    pub fn open_file_cache_valid(mut self, valid: std::time::Duration) -> Self {
        self.media = self.media.open_file_cache_valid(valid);
        self
    }

    /// Lets symlinks under the root point outside it.
    pub fn follow_symlinks_outside_root(mut self, allow: bool) -> Self {
        self.media = self.media.follow_symlinks_outside_root(allow);
        self
    }

    /// Serves `.EXTENSION` files as `content_type`; see
    /// [`ServeMedia::mime_type`].
    pub fn mime_type(mut self, extension: &str, content_type: &str) -> Result<Self, ConfigError> {
        self.media = self.media.mime_type(extension, content_type)?;
        Ok(self)
    }

    /// Sends `Cache-Control: value` with the file's answers; see
    /// [`ServeMedia::cache_control`].
    pub fn cache_control(mut self, value: http::HeaderValue) -> Self {
        self.media = self.media.cache_control(value);
        self
    }

    /// Replaces the permission (default [`AllowAny`]) with a synchronous
    /// one, decided without awaiting.
    pub fn permission<Q: Permission>(self, permission: Q) -> StreamEndpoint<SyncPermission<Q>> {
        self.with_permission(SyncPermission::new(permission))
    }

    /// Replaces the permission with an
    /// [`AsyncPermission`](crate::permission::AsyncPermission), such as a
    /// combination with `AuthRequest` or [`Settings::permission`]'s.
    pub fn permission_async<Q>(self, permission: Q) -> StreamEndpoint<AsyncCheck<Q>> {
        self.with_permission(AsyncCheck::new(permission))
    }

    fn with_permission<Q>(self, permission: Q) -> StreamEndpoint<Q> {
        StreamEndpoint {
            source: self.source,
            media: self.media,
            range: self.range,
            cap: self.cap,
            permission,
        }
    }

    /// Builds the stacked service.
    pub fn into_service(self) -> StreamService<P> {
        StreamService {
            inner: self.into_service_with(tower::layer::util::Identity::new()),
        }
    }

    /// The stack with `layer` between the permission and the range (the
    /// app puts the stream limit there: a refused request takes no slot,
    /// and the limit counts the viewer a forward-auth check named).
    pub(crate) fn into_service_with<L>(
        self,
        layer: L,
    ) -> ResolveMediaPath<RequirePermission<L::Service, P>>
    where
        L: tower::Layer<ParseRange<CapVolume<ServeMedia>>>,
    {
        let inner = ServiceBuilder::new()
            .layer(layer)
            .layer(self.range)
            .layer(self.cap)
            .service(self.media);
        ResolveMediaPath::new(
            RequirePermission::from_mode(inner, self.permission),
            self.source,
        )
    }
}

/// Adds sage-stream's layers to [`tower::ServiceBuilder`], one method per
/// layer (named for this crate, so it sits beside
/// `tower_http::ServiceBuilderExt` without a clash).
///
/// ```
/// use sage_stream::{media::ServeMedia, permission::AllowAny, SageStreamExt};
/// use tower::ServiceBuilder;
///
/// # let dir = tempfile::tempdir().unwrap();
/// let svc = ServiceBuilder::new()
///     .bearer_auth([("secret-token", "alice")])
///     .viewer_stream_limit(2)
///     .require_permission(AllowAny)
///     .parse_range()
///     .cap_volume(8 * 1024 * 1024)
///     .service(ServeMedia::new(dir.path()));
/// # let _ = svc;
/// ```
pub trait SageStreamExt<L>: sealed::Sealed {
    /// Adds [`BearerAuthLayer`] for these `(token, user id)` pairs.
    fn bearer_auth<T, U>(
        self,
        tokens: impl IntoIterator<Item = (T, U)>,
    ) -> ServiceBuilder<Stack<BearerAuthLayer, L>>
    where
        T: AsRef<str>,
        U: Into<String>;

    /// Adds [`ResolveMediaPathLayer`]: the media path decided once, through
    /// `source`, for every layer inside (stack it outermost).
    fn resolve_media_path(
        self,
        source: MediaPathSource,
    ) -> ServiceBuilder<Stack<ResolveMediaPathLayer, L>>;

    /// Adds [`ResolveClientIpLayer`]: the client IP worked out once,
    /// believing forwarded headers only from `trusted` proxies, for every
    /// layer inside (stack it outermost).
    fn resolve_client_ip(
        self,
        trusted: impl IntoIterator<Item = IpNet>,
    ) -> ServiceBuilder<Stack<ResolveClientIpLayer, L>>;

    /// Adds [`RequirePermissionLayer`] with a synchronous permission,
    /// wrapped in [`SyncPermission`] (decided in `call`; any inner service).
    fn require_permission<P: Permission>(
        self,
        permission: P,
    ) -> ServiceBuilder<Stack<RequirePermissionLayer<SyncPermission<P>>, L>>;

    /// Adds [`RequirePermissionLayer`] with an
    /// [`AsyncPermission`](crate::permission::AsyncPermission) (or a
    /// combination with one), wrapped in [`AsyncCheck`]; the inner service
    /// must be `Clone`.
    fn require_permission_async<P>(
        self,
        permission: P,
    ) -> ServiceBuilder<Stack<RequirePermissionLayer<AsyncCheck<P>>, L>>;

    /// Adds [`ParseRangeLayer`] with the RFC 9110 grammar.
    fn parse_range(self) -> ServiceBuilder<Stack<ParseRangeLayer, L>>;

    /// Adds [`CapVolumeLayer`] capping at `bytes`.
    fn cap_volume(self, bytes: u64) -> ServiceBuilder<Stack<CapVolumeLayer, L>>;

    /// Adds [`ViewerStreamLimitLayer`]: at most `max` concurrent streams per
    /// viewer.
    fn viewer_stream_limit(self, max: usize) -> ServiceBuilder<Stack<ViewerStreamLimitLayer, L>>;

    /// Adds a [`WatchLogLayer`] (outermost is best: it then also logs refusals).
    #[cfg(feature = "log")]
    #[cfg_attr(docsrs, doc(cfg(feature = "log")))]
    fn watch_log(self, layer: WatchLogLayer) -> ServiceBuilder<Stack<WatchLogLayer, L>>;
}

mod sealed {
    pub trait Sealed {}
    impl<L> Sealed for tower::ServiceBuilder<L> {}
}

impl<L> SageStreamExt<L> for ServiceBuilder<L> {
    fn bearer_auth<T, U>(
        self,
        tokens: impl IntoIterator<Item = (T, U)>,
    ) -> ServiceBuilder<Stack<BearerAuthLayer, L>>
    where
        T: AsRef<str>,
        U: Into<String>,
    {
        self.layer(BearerAuthLayer::new(tokens))
    }

    fn resolve_media_path(
        self,
        source: MediaPathSource,
    ) -> ServiceBuilder<Stack<ResolveMediaPathLayer, L>> {
        self.layer(ResolveMediaPathLayer::new(source))
    }

    fn resolve_client_ip(
        self,
        trusted: impl IntoIterator<Item = IpNet>,
    ) -> ServiceBuilder<Stack<ResolveClientIpLayer, L>> {
        self.layer(ResolveClientIpLayer::new(trusted))
    }

    fn require_permission<P: Permission>(
        self,
        permission: P,
    ) -> ServiceBuilder<Stack<RequirePermissionLayer<SyncPermission<P>>, L>> {
        self.layer(RequirePermissionLayer::new(permission))
    }

    fn require_permission_async<P>(
        self,
        permission: P,
    ) -> ServiceBuilder<Stack<RequirePermissionLayer<AsyncCheck<P>>, L>> {
        self.layer(RequirePermissionLayer::new_async(permission))
    }

    fn parse_range(self) -> ServiceBuilder<Stack<ParseRangeLayer, L>> {
        self.layer(ParseRangeLayer::new())
    }

    fn cap_volume(self, bytes: u64) -> ServiceBuilder<Stack<CapVolumeLayer, L>> {
        self.layer(CapVolumeLayer::new(bytes))
    }

    fn viewer_stream_limit(self, max: usize) -> ServiceBuilder<Stack<ViewerStreamLimitLayer, L>> {
        self.layer(ViewerStreamLimitLayer::new(max))
    }

    #[cfg(feature = "log")]
    fn watch_log(self, layer: WatchLogLayer) -> ServiceBuilder<Stack<WatchLogLayer, L>> {
        self.layer(layer)
    }
}
