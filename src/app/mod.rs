//! The server people run: the stream endpoint, a player page at `/`, and an
//! admin under `/admin/` — what `sage-stream serve` builds, available to
//! embed in your own axum app too.
//!
//! | route | what |
//! |---|---|
//! | `/api/stream?path=FILE` (and `/api/stream/`) | the stream endpoint, as django-sage-streaming's URL |
//! | `/` ([`AppConfig::player_path`]) | player: the media under the root, paged, and a `<video>` for the chosen file |
//! | `/admin/` | watch-log list: filters, search, keyset pagination |
//! | `/admin/export.csv`, `/admin/export.json` | the filtered rows |
//! | `/admin/analytics` | per-video totals, views per day (SVG), viewing sessions |
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
mod links;
mod player;
mod templates;

pub use error::AppError;

use std::path::PathBuf;
use std::sync::Arc;

use axum::routing::get;
use axum::Router;
use http::Request;
use tower::ServiceBuilder;

use crate::auth::BearerAuthLayer;
use crate::error::ConfigError;
use crate::extension::IpNet;
use crate::limit::ViewerStreamLimitLayer;
use crate::log::{WatchLogLayer, WatchLogSink, WatchLogStore};
use crate::permission::{AsyncPermission, AuthRequest, Denial, RequirePermissionLayer, SignedUrl};
use crate::settings::{PermissionClass, Settings};
use crate::StreamEndpoint;

/// Everything the app needs besides the log store.
#[derive(Clone, Debug)]
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
    /// A pause longer than this many minutes starts a new viewing session.
    pub session_gap_minutes: u32,
    /// Where the player page is, `Some("/")` by default; `None` leaves it
    /// out, e.g. when the app is merged into one that has its own `/`.
    /// Must start with `/` and not be one of the other routes.
    pub player_path: Option<String>,
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
            session_gap_minutes: 30,
            player_path: Some("/".to_owned()),
        }
    }
}

/// Shared by the page handlers.
pub(crate) struct AppState {
    pub(crate) root: PathBuf,
    pub(crate) store: Arc<dyn WatchLogStore>,
    pub(crate) admin_token: Option<String>,
    pub(crate) signer: Option<SignedUrl>,
    pub(crate) media_path: crate::extension::MediaPathSource,
    pub(crate) session_gap_minutes: u32,
    pub(crate) player_path: Option<String>,
}

/// The routes besides the player, which the player must not take.
const ROUTES: [&str; 7] = [
    "/api/stream",
    "/api/stream/",
    "/admin",
    "/admin/",
    "/admin/analytics",
    "/admin/export.csv",
    "/admin/export.json",
];

/// A player path axum can route and that does not clash with ours.
fn check_player_path(path: &str) -> Result<(), ConfigError> {
    let reason = if !path.starts_with('/') {
        "must start with /"
    } else if path.contains(['{', '}', '*', '?', '#']) {
        "must be a plain path, without parameters or query"
    } else if ROUTES.contains(&path) {
        "is taken by the stream endpoint or the admin"
    } else {
        return Ok(());
    };
    Err(ConfigError::InvalidSetting {
        name: "player_path",
        value: path.to_owned(),
        reason: reason.to_owned(),
    })
}

/// Builds the app. Rows go to `sink`; the admin reads `store`.
///
/// The router has no fallback (unknown paths get axum's empty 404, or the
/// fallback of the app it is merged into) and works nested under a prefix;
/// see [the module docs](self#embedding).
///
/// Stream stack, outermost first: bearer authentication (also from an
/// `access_token` query variable, for `<video>` tags), the watch log, the
/// per-viewer stream limit, then the endpoint (permission, range, cap,
/// file). The log sits outside the limit and the permission so refused
/// attempts are logged too.
pub fn router(
    config: &AppConfig,
    store: Arc<dyn WatchLogStore>,
    sink: WatchLogSink,
) -> Result<Router, ConfigError> {
    let settings = &config.settings;
    if let Some(path) = &config.player_path {
        check_player_path(path)?;
    }
    let root = std::fs::canonicalize(&config.root).map_err(|source| ConfigError::MediaRoot {
        path: config.root.clone(),
        source,
    })?;
    // AuthRequest is asynchronous: it runs as a layer of its own, before the
    // stream limit (which then counts the viewer it names); the endpoint
    // checks the other classes.
    let auth = ForwardAuth(settings.auth_request()?);
    let mut endpoint_settings = settings.clone();
    endpoint_settings
        .default_permission_classes
        .retain(|c| *c != PermissionClass::AuthRequest);
    let endpoint = StreamEndpoint::from_settings(&root, &endpoint_settings)?.into_service();
    let watch_log = WatchLogLayer::new(sink)
        .enabled(settings.watch_log_enabled)
        .anonymize_ip(settings.anonymize_ip)
        .media_path(settings.media_path_source())
        .trusted_proxies(config.trusted_proxies.clone());
    let limit = config
        .max_streams_per_viewer
        .map_or_else(
            ViewerStreamLimitLayer::unlimited,
            ViewerStreamLimitLayer::new,
        )
        .trusted_proxies(config.trusted_proxies.clone());
    let stream = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(config.tokens.clone()).query_var("access_token"))
        .layer(watch_log)
        .layer(RequirePermissionLayer::new_async(auth))
        .layer(limit)
        .service(endpoint);
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
    let pages = pages.layer(axum::middleware::map_response(secure_page));
    let app = Router::new()
        .route_service("/api/stream", stream.clone())
        .route_service("/api/stream/", stream)
        .merge(pages);
    Ok(app.with_state(state))
}

/// The `AuthRequest` class when configured, else a check that allows (one
/// stack type either way).
#[derive(Clone, Debug)]
struct ForwardAuth(Option<AuthRequest>);

impl<B: Send + Unpin + 'static> AsyncPermission<B> for ForwardAuth {
    type Future = ForwardAuthFuture<B>;

    fn check(&self, request: Request<B>) -> Self::Future {
        match &self.0 {
            Some(auth) => ForwardAuthFuture::Asking(auth.check(request)),
            None => ForwardAuthFuture::Open(Some(request)),
        }
    }
}

type AuthCheck<B> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Request<B>, Denial>> + Send>>;

/// Future of [`ForwardAuth`]: ready at once when there is nothing to ask.
// The request only passes through; boxing it would cost an allocation per
// request on the path that asks nothing.
#[allow(clippy::large_enum_variant)]
enum ForwardAuthFuture<B> {
    Open(Option<Request<B>>),
    Asking(AuthCheck<B>),
}

impl<B: Unpin> std::future::Future for ForwardAuthFuture<B> {
    type Output = Result<Request<B>, Denial>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        // Both variants are Unpin (a request, a boxed future).
        match self.get_mut() {
            Self::Open(request) => std::task::Poll::Ready(
                request
                    .take()
                    .ok_or_else(|| Denial::unavailable("polled after completion")),
            ),
            Self::Asking(future) => future.as_mut().poll(cx),
        }
    }
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
