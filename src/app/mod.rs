//! The server people run: the stream endpoint, a player page at `/`, and an
//! admin under `/admin/` — what `sage-stream serve` builds, available to
//! embed in your own axum app too.
//!
//! | route | what |
//! |---|---|
//! | `/api/stream?path=FILE` (and `/api/stream/`) | the stream endpoint, as django-sage-streaming's URL |
//! | `/media/FILE` ([`AppConfig::media_route`]) | the same stack, the path in the URI: HLS/DASH playlists resolve their segments against it; `/media/_s/EXPIRES/SIGNATURE/DIR/FILE` carries a prefix signature ([`SignedUrl`]) |
//! | `/` ([`AppConfig::player_path`]) | player: the media under the root, paged, and a `<video>` for the chosen file |
//! | `/admin/` | watch-log list: filters, search, keyset pagination |
//! | `/admin/export.csv`, `/admin/export.json` | the filtered rows |
//! | `/admin/analytics` | per-video totals, views per day (SVG), viewing sessions |
//! | `/healthz` | 200 while the process serves (liveness) |
//! | `/readyz` | 200 when the log store answers and the writer is storing rows, else 503 with the reason (readiness) |
//!
//! Prometheus metrics ([`AppConfig::metrics`], [`metrics_router`]) are not on
//! these routes: they tell traffic volumes, so `sage-stream serve` serves
//! them only on a listener of their own (`--metrics-bind`).
//!
//! With [`Settings::cors_origins`] the stream routes (not the pages) answer
//! CORS preflights and let those origins send `Range`, `If-Range`,
//! `If-None-Match`, `If-Modified-Since` and `Authorization` and read
//! `Content-Range`, `Accept-Ranges`, `Content-Length` and `ETag`.
//!
//! The admin exists only when [`AppConfig::admin_token`] is set; the token is
//! accepted as a bearer token or as the Basic-auth password (any user name).
//!
//! Pages are [maud] templates, so everything a request or the log puts on
//! a page is escaped. Handlers answer failures with [`AppError`]: a status
//! and a short plain-text reason.
//!
//! # Embedding
//!
//! [`router`] has no fallback, so it can be merged into an app that has
//! one, and every link and redirect its pages print carries the prefix the
//! app is nested at. Move the player off `/` (or turn it off) when your app
//! has its own `/`:
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use axum::{routing::get, Router};
//! use sage_stream::app::{router, AppConfig};
//! use sage_stream::log::{SqliteStore, WatchLogStore, WatchLogWriter, WriterConfig};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store: Arc<dyn WatchLogStore> = Arc::new(SqliteStore::open("watch-log.db")?);
//! let (sink, _writer) = WatchLogWriter::spawn(store.clone(), WriterConfig::default())?;
//! let mut config = AppConfig::new("/srv/media");
//! config.player_path = Some("/watch".into());
//! let videos = router(&config, store, sink)?;
//! let app: Router = Router::new()
//!     .route("/", get(|| async { "my home page" }))
//!     // The player is at /video/watch, the admin at /video/admin/.
//!     .nest("/video", videos)
//!     .fallback(|| async { "my 404" });
//! # Ok(()) }
//! ```
//!
//! Links use the prefix axum records for `Router::nest`, so nest at a
//! literal path: under a path with parameters (`/{tenant}`) the links would
//! carry the pattern.

mod admin;
mod error;
mod health;
mod links;
mod player;
mod templates;

pub use error::AppError;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use tower::ServiceBuilder;

use crate::auth::BearerAuthLayer;
use crate::client_ip::ResolveClientIpLayer;
use crate::error::ConfigError;
use crate::extension::{IpNet, MediaPathSource};
use crate::limit::ViewerStreamLimitLayer;
use crate::log::{WatchLogLayer, WatchLogSink, WatchLogStore};
use crate::media_path::ResolveMediaPathLayer;
use crate::observe::{Metrics, ObserveLayer, Route, WatchLogCounters, METRICS_CONTENT_TYPE};
use crate::permission::{AsyncCheck, RoutePermission, SignedUrl};
use crate::settings::{PermissionClass, Settings};
use crate::StreamEndpoint;

/// Everything the app needs besides the log store.
///
/// Its `Debug` shows no token: each bearer token as `"***"` beside its
/// user id, the admin token as `Some("***")`.
///
/// Built with [`AppConfig::new`] and the setters, each named after its
/// field (`#[non_exhaustive]`: a new field is not a breaking change).
#[derive(Clone)]
#[non_exhaustive]
pub struct AppConfig {
    /// The media root.
    pub root: PathBuf,
    /// The `STREAM_*` settings.
    pub settings: Settings,
    /// Bearer tokens and the user ids they stand for.
    pub tokens: Vec<(String, String)>,
    /// Proxies whose forwarded headers are believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Turns the admin on; `None` (the default) leaves it off.
    pub admin_token: Option<String>,
    /// At most this many concurrent streams per viewer; `None`: no limit.
    pub max_streams_per_viewer: Option<usize>,
    /// Where that limit counts: this process (the default) or, with the
    /// `redis` feature, Redis across a fleet of nodes.
    pub limit_store: LimitStore,
    /// A pause longer than this many minutes starts a new viewing session.
    pub session_gap_minutes: u32,
    /// Where the player page is, `Some("/")` by default; `None` leaves it
    /// out, e.g. when the app is merged into one that has its own `/`.
    /// Must start with `/` and not be one of the other routes.
    pub player_path: Option<String>,
    /// Counts requests and exports the writer's counters here; `None` (the
    /// default) counts nothing. Serve them with [`metrics_router`].
    pub metrics: Option<Metrics>,
    /// One `info` event per response (target `sage_stream::access`); off
    /// by default, on in `sage-stream serve`.
    pub access_log: bool,
    /// Where the path-style stream route is mounted, `Some("/media")` by
    /// default: `/media/show1/index.m3u8` names `show1/index.m3u8`, and
    /// `/media/_s/EXPIRES/SIGNATURE/show1/index.m3u8` carries a prefix
    /// signature. `None` leaves it out. A plain path, without a trailing `/`.
    pub media_route: Option<String>,
    /// Files kept open between requests (default
    /// [`DEFAULT_OPEN_FILE_CACHE`](crate::media::DEFAULT_OPEN_FILE_CACHE);
    /// 0: none), shared by the stream routes; see
    /// [`ServeMedia::open_file_cache`](crate::media::ServeMedia::open_file_cache).
    pub open_file_cache: usize,
    /// How long a cached file is trusted without a `stat` (default zero:
    /// checked on every request); see
    /// [`ServeMedia::open_file_cache_valid`](crate::media::ServeMedia::open_file_cache_valid).
    pub open_file_cache_valid: std::time::Duration,
    /// Bytes per read from disk (default 128 KiB); see
    /// [`ServeMedia::chunk_size`](crate::media::ServeMedia::chunk_size). A
    /// client that stops reading pins about one chunk under strict
    /// backpressure, so `serve --strict-backpressure` uses 32 KiB.
    pub chunk_size: usize,
}

impl AppConfig {
    /// The defaults for `root`: Django settings, no tokens, admin off.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            settings: Settings::default(),
            tokens: Vec::new(),
            trusted_proxies: Vec::new(),
            admin_token: None,
            max_streams_per_viewer: None,
            limit_store: LimitStore::Node,
            session_gap_minutes: 30,
            player_path: Some("/".to_owned()),
            metrics: None,
            access_log: false,
            media_route: Some(DEFAULT_MEDIA_ROUTE.to_owned()),
            open_file_cache: crate::media::DEFAULT_OPEN_FILE_CACHE,
            open_file_cache_valid: std::time::Duration::ZERO,
            chunk_size: crate::media::DEFAULT_CHUNK_SIZE,
        }
    }

    // Setters, builder style: each replaces one field.

    /// Sets the media root.
    pub fn root(mut self, root: impl Into<PathBuf>) -> Self {
        self.root = root.into();
        self
    }

    /// Sets the `STREAM_*` settings.
    pub fn settings(mut self, settings: Settings) -> Self {
        self.settings = settings;
        self
    }

    /// Sets the bearer tokens and the user ids they stand for.
    pub fn tokens(mut self, tokens: Vec<(String, String)>) -> Self {
        self.tokens = tokens;
        self
    }

    /// Sets the proxies whose forwarded headers are believed.
    pub fn trusted_proxies(mut self, trusted_proxies: impl IntoIterator<Item = IpNet>) -> Self {
        self.trusted_proxies = trusted_proxies.into_iter().collect();
        self
    }

    /// Sets the admin token; `None` leaves the admin off.
    pub fn admin_token(mut self, admin_token: Option<String>) -> Self {
        self.admin_token = admin_token;
        self
    }

    /// Sets the most concurrent streams per viewer.
    pub fn max_streams_per_viewer(mut self, max_streams_per_viewer: Option<usize>) -> Self {
        self.max_streams_per_viewer = max_streams_per_viewer;
        self
    }

    /// Sets where the stream limit counts.
    pub fn limit_store(mut self, limit_store: LimitStore) -> Self {
        self.limit_store = limit_store;
        self
    }

    /// Sets the pause, in minutes, that starts a new viewing session.
    pub fn session_gap_minutes(mut self, session_gap_minutes: u32) -> Self {
        self.session_gap_minutes = session_gap_minutes;
        self
    }

    /// Sets where the player page is.
    pub fn player_path(mut self, player_path: Option<String>) -> Self {
        self.player_path = player_path;
        self
    }

    /// Sets the metrics the app counts into.
    pub fn metrics(mut self, metrics: Option<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Sets whether each response writes an access-log event.
    pub fn access_log(mut self, access_log: bool) -> Self {
        self.access_log = access_log;
        self
    }

    /// Sets where the path-style stream route is mounted.
    pub fn media_route(mut self, media_route: Option<String>) -> Self {
        self.media_route = media_route;
        self
    }

    /// Sets the files kept open between requests.
    pub fn open_file_cache(mut self, open_file_cache: usize) -> Self {
        self.open_file_cache = open_file_cache;
        self
    }

    /// Sets how long a cached file is trusted without a `stat`.
    pub fn open_file_cache_valid(mut self, open_file_cache_valid: std::time::Duration) -> Self {
        self.open_file_cache_valid = open_file_cache_valid;
        self
    }

    /// Sets the bytes per read from disk.
    pub fn chunk_size(mut self, chunk_size: usize) -> Self {
        self.chunk_size = chunk_size;
        self
    }

    fn observe(&self, route: Route, sink: &WatchLogSink) -> ObserveLayer {
        let mut layer = ObserveLayer::new(route)
            .access_log(self.access_log)
            .anonymize_ip(self.settings.anonymize_ip);
        if let Some(metrics) = &self.metrics {
            layer = layer.metrics(metrics.clone().watch_log(watch_log_counters(sink.clone())));
        }
        layer
    }
}

/// The writer's counters behind `sink`, as the metrics export them (observe
/// knows nothing of the log: the app joins the two).
fn watch_log_counters(sink: WatchLogSink) -> impl Fn() -> WatchLogCounters + Send + Sync {
    move || {
        let stats = sink.stats();
        WatchLogCounters {
            recorded: stats.recorded,
            written: stats.written,
            spooled: stats.spooled,
            journaled: stats.journaled,
            replayed: stats.replayed,
            quarantined: stats.quarantined,
            rows_dropped: stats.rows_dropped,
            pruned: stats.pruned,
            failures: stats.failures,
            queued: stats.queued,
            spool_bytes: sink.spool_bytes(),
            store_failing: sink.store_failing(),
        }
    }
}

impl std::fmt::Debug for AppConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Every field named, so that a new one is a decision here.
        let Self {
            root,
            settings,
            tokens,
            trusted_proxies,
            admin_token,
            max_streams_per_viewer,
            limit_store,
            session_gap_minutes,
            player_path,
            metrics,
            access_log,
            media_route,
            open_file_cache,
            open_file_cache_valid,
            chunk_size,
        } = self;
        let tokens: Vec<(&str, &str)> = tokens
            .iter()
            .map(|(_, user)| (crate::redact::HIDDEN, user.as_str()))
            .collect();
        f.debug_struct("AppConfig")
            .field("root", root)
            .field("settings", settings)
            .field("tokens", &tokens)
            .field("trusted_proxies", trusted_proxies)
            .field("admin_token", &crate::redact::hidden(admin_token))
            .field("max_streams_per_viewer", max_streams_per_viewer)
            .field("limit_store", limit_store)
            .field("session_gap_minutes", session_gap_minutes)
            .field("player_path", player_path)
            .field("metrics", metrics)
            .field("access_log", access_log)
            .field("media_route", media_route)
            .field("open_file_cache", open_file_cache)
            .field("open_file_cache_valid", open_file_cache_valid)
            .field("chunk_size", chunk_size)
            .finish()
    }
}

/// Where the per-viewer stream limit counts ([`AppConfig::limit_store`]).
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum LimitStore {
    /// In this process (the default): each node counts its own streams.
    #[default]
    Node,
    /// In Redis, across every node using the same Redis and key prefix
    /// (feature `redis`; see [`RedisSlots`](crate::limit::RedisSlots)).
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    Redis {
        /// `redis://[:PASSWORD@]HOST[:PORT][/DB]`; its password is never
        /// shown in `Debug`.
        url: String,
        /// Lease, timeout, key prefix, and what to do when Redis is away.
        config: crate::limit::RedisSlotsConfig,
    },
}

impl std::fmt::Debug for LimitStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Node => f.write_str("Node"),
            #[cfg(feature = "redis")]
            Self::Redis { url, config } => f
                .debug_struct("Redis")
                .field("url", &crate::redact::redact_url(url))
                .field("config", config)
                .finish(),
        }
    }
}

/// The stream limit layer the routes share: one type whichever store counts.
#[cfg(feature = "redis")]
type StreamLimit =
    tower::util::Either<ViewerStreamLimitLayer, ViewerStreamLimitLayer<crate::limit::RedisSlots>>;
#[cfg(not(feature = "redis"))]
type StreamLimit = ViewerStreamLimitLayer;

/// The Redis store behind the limit, when there is one (for `/readyz` and
/// the metrics).
#[cfg(feature = "redis")]
type FleetSlots = Option<crate::limit::RedisSlots>;
#[cfg(not(feature = "redis"))]
type FleetSlots = ();

/// Builds the limit `config` asks for. The Redis store connects lazily (a
/// node starts while Redis is down and counts per node meanwhile) and needs
/// a Tokio runtime.
fn stream_limit(config: &AppConfig) -> Result<(StreamLimit, FleetSlots), ConfigError> {
    let Some(max) = config.max_streams_per_viewer else {
        return Ok((node_limit(ViewerStreamLimitLayer::unlimited()), no_fleet()));
    };
    match &config.limit_store {
        LimitStore::Node => Ok((node_limit(ViewerStreamLimitLayer::new(max)), no_fleet())),
        #[cfg(feature = "redis")]
        LimitStore::Redis { url, config } => {
            let slots = crate::limit::RedisSlots::new(url, max, config.clone()).map_err(|e| {
                ConfigError::InvalidSetting {
                    name: "STREAM_LIMIT_STORE",
                    value: url.clone(),
                    reason: e.to_string(),
                }
            })?;
            let layer = ViewerStreamLimitLayer::redis(slots.clone());
            Ok((tower::util::Either::Right(layer), Some(slots)))
        }
    }
}

#[cfg(feature = "redis")]
fn no_fleet() -> FleetSlots {
    None
}

#[cfg(not(feature = "redis"))]
fn no_fleet() -> FleetSlots {}

#[cfg(feature = "redis")]
fn node_limit(layer: ViewerStreamLimitLayer) -> StreamLimit {
    tower::util::Either::Left(layer)
}

#[cfg(not(feature = "redis"))]
fn node_limit(layer: ViewerStreamLimitLayer) -> StreamLimit {
    layer
}

/// The default [`AppConfig::media_route`].
pub const DEFAULT_MEDIA_ROUTE: &str = "/media";

/// Shared by the page handlers.
pub(crate) struct AppState {
    pub(crate) root: PathBuf,
    pub(crate) store: Arc<dyn WatchLogStore>,
    pub(crate) admin_token: Option<String>,
    pub(crate) signer: Option<SignedUrl>,
    pub(crate) media_path: crate::extension::MediaPathSource,
    pub(crate) session_gap_minutes: u32,
    pub(crate) player_path: Option<String>,
    pub(crate) sink: WatchLogSink,
    #[cfg(feature = "redis")]
    pub(crate) fleet_slots: FleetSlots,
}

/// The routes besides the player, which the player must not take.
const ROUTES: [&str; 9] = [
    "/api/stream",
    "/api/stream/",
    "/healthz",
    "/readyz",
    "/admin",
    "/admin/",
    "/admin/analytics",
    "/admin/export.csv",
    "/admin/export.json",
];

/// Whether `path` is `route` or below it.
fn within(path: &str, route: &str) -> bool {
    path.strip_prefix(route)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// A player path axum can route and that does not clash with ours.
fn check_player_path(path: &str, media_route: Option<&str>) -> Result<(), ConfigError> {
    let reason = if !path.starts_with('/') {
        "must start with /"
    } else if path.contains(['{', '}', '*', '?', '#']) {
        "must be a plain path, without parameters or query"
    } else if ROUTES.contains(&path) {
        "is taken by the stream endpoint or the admin"
    } else if media_route.is_some_and(|route| within(path, route)) {
        "is taken by the path-style stream route (media_route)"
    } else {
        return Ok(());
    };
    Err(ConfigError::InvalidSetting {
        name: "player_path",
        value: path.to_owned(),
        reason: reason.to_owned(),
    })
}

/// A media route axum can route below, clear of the other routes.
fn check_media_route(route: &str) -> Result<(), ConfigError> {
    let reason = if !route.starts_with('/') || route.len() < 2 {
        "must start with / and name a path below it"
    } else if route.ends_with('/') {
        "must not end with /"
    } else if route.contains(['{', '}', '*', '?', '#']) {
        "must be a plain path, without parameters or query"
    } else if ["/api", "/admin"]
        .iter()
        .any(|taken| within(route, taken) || within(taken, route))
    {
        "clashes with the stream endpoint or the admin"
    } else {
        return Ok(());
    };
    Err(ConfigError::InvalidSetting {
        name: "media_route",
        value: route.to_owned(),
        reason: reason.to_owned(),
    })
}

/// CORS for the stream routes: what a player on another origin needs to
/// ask for ranges and revalidate, and to read the answer's range headers.
fn cors_layer(origins: &[String]) -> Option<tower_http::cors::CorsLayer> {
    use http::{header, Method};
    use tower_http::cors::{AllowOrigin, CorsLayer};
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        // Checked by `Settings::validate`.
        AllowOrigin::list(
            origins
                .iter()
                .filter_map(|o| http::HeaderValue::from_str(o).ok()),
        )
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::HEAD])
            .allow_headers([
                header::RANGE,
                header::IF_RANGE,
                header::IF_NONE_MATCH,
                header::IF_MODIFIED_SINCE,
                header::AUTHORIZATION,
            ])
            .expose_headers([
                header::CONTENT_RANGE,
                header::ACCEPT_RANGES,
                header::CONTENT_LENGTH,
                header::ETAG,
            ])
            // Players range-request every few seconds; one preflight an hour.
            .max_age(Duration::from_secs(3600)),
    )
}

/// The stream stack of `endpoint` at `paths`.
///
/// Stack, outermost first: the media path decided once
/// ([`ResolveMediaPathLayer`], by the endpoint's source), bearer
/// authentication (also from an `access_token` query variable, for
/// `<video>` tags), metrics and the access log, the watch log, then the
/// endpoint: the route's permission (every class, `AuthRequest` first),
/// the per-viewer stream limit, range, cap, file. The log sits outside the
/// permission and the limit so refused attempts are logged too; the limit
/// sits inside the permission, so a refused request takes no slot and the
/// limit counts the viewer `AuthRequest` named.
///
/// Every route shares `limit` (one count of streams per viewer), `sink`
/// and the endpoint's open-file cache.
fn stream_routes(
    config: &AppConfig,
    endpoint: StreamEndpoint<AsyncCheck<RoutePermission>>,
    (sink, limit): (&WatchLogSink, &StreamLimit),
    paths: &[&str],
) -> Router<Arc<AppState>> {
    let settings = &config.settings;
    // The watch log reads the media path the edge layer decided.
    let watch_log = WatchLogLayer::new(sink.clone())
        .enabled(settings.watch_log_enabled)
        .anonymize_ip(settings.anonymize_ip);
    let stream = ServiceBuilder::new()
        // First: every layer inside, the permission included, judges and
        // logs the one normalised path the file service serves.
        .layer(ResolveMediaPathLayer::new(endpoint.source().clone()))
        .layer(BearerAuthLayer::new(config.tokens.clone()).token_query("access_token"))
        .layer(config.observe(Route::Stream, sink))
        .layer(watch_log)
        .service(endpoint.into_service_with(limit.clone()));
    let mut routes = Router::new();
    for path in paths {
        routes = routes.route_service(path, stream.clone());
    }
    routes
}

/// Builds the app. Rows go to `sink`; the admin reads `store`.
///
/// The router has no fallback (unknown paths get axum's empty 404, or the
/// fallback of the app it is merged into) and works nested under a prefix;
/// see [the module docs](self#embedding).
///
/// Stream stack, outermost first: CORS (when origins are configured),
/// bearer authentication (also from an `access_token` query variable, for
/// `<video>` tags), metrics and the access log (when configured), the watch
/// log, then the endpoint: the permission ([`Settings::permission`]: every
/// class, `AuthRequest` first), the per-viewer stream limit, range, cap,
/// file. The log sits outside the permission and the limit so refused
/// attempts are logged too; a refused request takes no stream slot. The path-style
/// route has the same stack; only where it reads the media path differs.
pub fn router(
    config: &AppConfig,
    store: Arc<dyn WatchLogStore>,
    sink: WatchLogSink,
) -> Result<Router, ConfigError> {
    let settings = &config.settings;
    settings.validate()?;
    if let Some(route) = &config.media_route {
        check_media_route(route)?;
    }
    if let Some(path) = &config.player_path {
        check_player_path(path, config.media_route.as_deref())?;
    }
    let root = std::fs::canonicalize(&config.root).map_err(|source| ConfigError::MediaRoot {
        path: config.root.clone(),
        source,
    })?;
    #[cfg_attr(
        not(feature = "redis"),
        allow(clippy::let_unit_value, unused_variables)
    )]
    let (limit, fleet_slots) = stream_limit(config)?;
    #[cfg(feature = "redis")]
    if let (Some(metrics), Some(slots)) = (&config.metrics, &fleet_slots) {
        let slots = slots.clone();
        let _ = metrics
            .clone()
            .limit_store(move || crate::observe::LimitStoreStatus {
                reachable: slots.reachable(),
                fallbacks: slots.fallbacks(),
            });
    }
    let shared = (&sink, &limit);
    // The endpoint from the settings, with the permission the query route
    // runs (AuthRequest included).
    let endpoint = StreamEndpoint::from_settings(&root, settings)?
        .open_file_cache(config.open_file_cache)
        .open_file_cache_valid(config.open_file_cache_valid)
        .chunk_size(config.chunk_size);
    let mut streams = stream_routes(
        config,
        endpoint.clone(),
        shared,
        &["/api/stream", "/api/stream/"],
    );
    if let Some(route) = &config.media_route {
        // The same endpoint (and open-file cache) reading paths from the
        // URI: its permission reads path signatures by that rule.
        let source = MediaPathSource::uri_prefix(route.clone()).path_signatures(true);
        let pattern = format!("{route}/{{*path}}");
        let endpoint = endpoint
            .media_path(source.clone())
            .permission_async(settings.permission_for(&source)?);
        streams = streams.merge(stream_routes(config, endpoint, shared, &[&pattern]));
    }
    if let Some(cors) = cors_layer(&settings.cors_origins) {
        streams = streams.layer(cors);
    }
    // Links from the player carry a signature when the permission wants one.
    let signer = settings
        .default_permission_classes
        .contains(&PermissionClass::SignedUrl)
        .then(|| settings.signing_key.clone())
        .flatten()
        .map(|key| SignedUrl::new(key).media_path(settings.media_path_source()));
    let state = Arc::new(AppState {
        root,
        store,
        admin_token: config.admin_token.clone().filter(|t| !t.is_empty()),
        signer,
        media_path: settings.media_path_source(),
        session_gap_minutes: config.session_gap_minutes.max(1),
        player_path: config.player_path.clone(),
        sink: sink.clone(),
        #[cfg(feature = "redis")]
        fleet_slots: fleet_slots.clone(),
    });
    let admin = Router::new()
        .route("/admin/", get(admin::list))
        .route("/admin", get(admin::to_list))
        .route("/admin/analytics", get(admin::analytics))
        .route("/admin/export.csv", get(admin::export_csv))
        .route("/admin/export.json", get(admin::export_json))
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            admin::require_admin,
        ));
    let mut pages = admin;
    if let Some(path) = &config.player_path {
        pages = pages.route(path, get(player::player));
    }
    // The stream endpoint sets its own, stricter headers on media.
    let pages = pages
        .layer(axum::middleware::map_response(secure_page))
        .layer(config.observe(Route::Page, &sink));
    let app = streams
        .route("/healthz", get(health::live))
        .route("/readyz", get(health::ready))
        .merge(pages)
        // Outermost on every route: the one place trusted proxies are
        // configured; the log, the limit and the metrics read its answer.
        .layer(ResolveClientIpLayer::new(config.trusted_proxies.clone()));
    Ok(app.with_state(state))
}

/// The Prometheus endpoint: `GET /metrics` renders `metrics` (serve it on
/// a listener of its own, or behind your own access rule).
pub fn metrics_router(metrics: Metrics) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let metrics = metrics.clone();
            async move {
                (
                    [(http::header::CONTENT_TYPE, METRICS_CONTENT_TYPE)],
                    metrics.render(),
                )
            }
        }),
    )
}

/// Headers of every page: a strict CSP, no type sniffing, no framing, and no
/// `Referer` (a player URL may carry an `access_token`) to other origins.
async fn secure_page(mut response: axum::response::Response) -> axum::response::Response {
    use axum::http::{header, HeaderValue};
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, templates::page_csp());
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}
