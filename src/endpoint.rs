//! [`StreamEndpoint`]: the whole stack in one call, and
//! [`ServiceBuilderExt`] to stack the layers yourself.
//!
//! The stack, outermost first: [`RequirePermissionLayer`] →
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

use std::path::Path;

use regex::Regex;
use tower::layer::util::Stack;
use tower::ServiceBuilder;

use crate::cap::{CapVolume, CapVolumeLayer};
use crate::error::ConfigError;
use crate::log::WatchLogLayer;
use crate::media::ServeMedia;
use crate::permission::{
    AllOf, AllowAny, Permission, RequirePermission, RequirePermissionLayer, SyncPermission,
};
use crate::range::{ParseRange, ParseRangeLayer};
use crate::settings::Settings;

/// The service [`StreamEndpoint::into_service`] builds.
pub type StreamService<P> = RequirePermission<ParseRange<CapVolume<ServeMedia>>, SyncPermission<P>>;

/// Builder for the stream endpoint with django-sage-streaming's defaults:
/// query variable `path`, 8 MiB cap, RFC 9110 ranges, [`AllowAny`].
#[derive(Clone, Debug)]
pub struct StreamEndpoint<P = AllowAny> {
    media: ServeMedia,
    range: ParseRangeLayer,
    cap: CapVolumeLayer,
    permission: P,
}

impl StreamEndpoint<AllowAny> {
    /// An endpoint serving files below `root`.
    pub fn new(root: impl AsRef<Path>) -> Self {
        Self {
            media: ServeMedia::new(root),
            range: ParseRangeLayer::new(),
            cap: CapVolumeLayer::default(),
            permission: AllowAny,
        }
    }
}

impl StreamEndpoint<AllOf> {
    /// An endpoint configured by `settings` (path variable, cap, range
    /// grammar and permission classes).
    pub fn from_settings(root: impl AsRef<Path>, settings: &Settings) -> Result<Self, ConfigError> {
        settings.validate()?;
        let mut endpoint = StreamEndpoint::new(root)
            .path_var(settings.default_video_path_url_var.clone())
            .max_load_volume(settings.max_load_volume_bytes())
            .permission(settings.permission()?);
        if let Some(regex) = settings.range_regex()? {
            endpoint = endpoint.range_regex(regex);
        }
        Ok(endpoint)
    }
}

impl<P> StreamEndpoint<P> {
    /// Names the media path with this query variable (default `path`).
    pub fn path_var(mut self, name: impl Into<String>) -> Self {
        self.media = self.media.query_var(name);
        self
    }

    /// Takes the media path from the URI path below `prefix` instead.
    pub fn uri_path(mut self, prefix: impl Into<String>) -> Self {
        self.media = self.media.uri_path(prefix);
        self
    }

    /// Caps each ranged response at `bytes` (default 8 MiB).
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

    /// Lets symlinks under the root point outside it.
    pub fn follow_symlinks_outside_root(mut self, allow: bool) -> Self {
        self.media = self.media.follow_symlinks_outside_root(allow);
        self
    }

    /// Replaces the permission (default [`AllowAny`]).
    pub fn permission<Q: Permission>(self, permission: Q) -> StreamEndpoint<Q> {
        StreamEndpoint {
            media: self.media,
            range: self.range,
            cap: self.cap,
            permission,
        }
    }

    /// Builds the stacked service.
    pub fn into_service(self) -> StreamService<P>
    where
        P: Permission,
    {
        ServiceBuilder::new()
            .require_permission(self.permission)
            .layer(self.range)
            .layer(self.cap)
            .service(self.media)
    }
}

/// Adds sage-stream's layers to [`tower::ServiceBuilder`].
///
/// ```
/// use sage_stream::{media::ServeMedia, permission::AllowAny, ServiceBuilderExt};
/// use tower::ServiceBuilder;
///
/// # let dir = tempfile::tempdir().unwrap();
/// let svc = ServiceBuilder::new()
///     .require_permission(AllowAny)
///     .parse_range()
///     .cap_volume(8 * 1024 * 1024)
///     .service(ServeMedia::new(dir.path()));
/// # let _ = svc;
/// ```
pub trait ServiceBuilderExt<L>: sealed::Sealed {
    /// Adds [`RequirePermissionLayer`] with a synchronous permission.
    fn require_permission<P: Permission>(
        self,
        permission: P,
    ) -> ServiceBuilder<Stack<RequirePermissionLayer<SyncPermission<P>>, L>>;

    /// Adds [`ParseRangeLayer`] with the RFC 9110 grammar.
    fn parse_range(self) -> ServiceBuilder<Stack<ParseRangeLayer, L>>;

    /// Adds [`CapVolumeLayer`] capping at `bytes`.
    fn cap_volume(self, bytes: u64) -> ServiceBuilder<Stack<CapVolumeLayer, L>>;

    /// Adds a [`WatchLogLayer`] (outermost is best: it then also logs refusals).
    fn watch_log(self, layer: WatchLogLayer) -> ServiceBuilder<Stack<WatchLogLayer, L>>;
}

mod sealed {
    pub trait Sealed {}
    impl<L> Sealed for tower::ServiceBuilder<L> {}
}

impl<L> ServiceBuilderExt<L> for ServiceBuilder<L> {
    fn require_permission<P: Permission>(
        self,
        permission: P,
    ) -> ServiceBuilder<Stack<RequirePermissionLayer<SyncPermission<P>>, L>> {
        self.layer(RequirePermissionLayer::new(permission))
    }

    fn parse_range(self) -> ServiceBuilder<Stack<ParseRangeLayer, L>> {
        self.layer(ParseRangeLayer::new())
    }

    fn cap_volume(self, bytes: u64) -> ServiceBuilder<Stack<CapVolumeLayer, L>> {
        self.layer(CapVolumeLayer::new(bytes))
    }

    fn watch_log(self, layer: WatchLogLayer) -> ServiceBuilder<Stack<WatchLogLayer, L>> {
        self.layer(layer)
    }
}
