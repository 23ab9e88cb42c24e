//! The server people run: the stream endpoint, a player page at `/`, and an
//! admin under `/admin/` — what `sage-stream serve` builds, available to
//! embed in your own axum app too.
//!
//! | route | what |
//! |---|---|
//! | `/api/stream?path=FILE` (and `/api/stream/`) | the stream endpoint, as django-sage-streaming's URL |
//! | `/` | player: the media under the root, paged, and a `<video>` for the chosen file |
//! | `/admin/` | watch-log list: filters, search, keyset pagination |
//! | `/admin/export.csv`, `/admin/export.json` | the filtered rows |
//! | `/admin/analytics` | per-video totals, views per day (SVG), viewing sessions |
//!
//! The admin exists only when [`AppConfig::admin_token`] is set; the token is
//! accepted as a bearer token or as the Basic-auth password (any user name).

mod admin;
mod html;
mod player;

use std::path::PathBuf;
use std::sync::Arc;

use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use tower::ServiceBuilder;

use crate::auth::BearerAuthLayer;
use crate::error::ConfigError;
use crate::extension::IpNet;
use crate::limit::ViewerStreamLimitLayer;
use crate::log::{WatchLogLayer, WatchLogSink, WatchLogStore};
use crate::permission::SignedUrl;
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
        }
    }
}

/// Shared by the page handlers.
pub(crate) struct AppState {
    pub(crate) root: PathBuf,
    pub(crate) store: Arc<dyn WatchLogStore>,
    pub(crate) admin_token: Option<String>,
    pub(crate) signer: Option<SignedUrl>,
    pub(crate) path_var: String,
    pub(crate) session_gap_minutes: u32,
}

/// Builds the app. Rows go to `sink`; the admin reads `store`.
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
    let root = std::fs::canonicalize(&config.root).map_err(|e| ConfigError::InvalidSetting {
        name: "root",
        value: config.root.display().to_string(),
        reason: e.to_string(),
    })?;
    let endpoint = StreamEndpoint::from_settings(&root, settings)?.into_service();
    let watch_log = WatchLogLayer::new(sink)
        .enabled(settings.watch_log_enabled)
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
        path_var: settings.default_video_path_url_var.clone(),
        session_gap_minutes: config.session_gap_minutes.max(1),
    });
    let admin = Router::new()
        .route("/admin/", get(admin::list))
        .route(
            "/admin",
            get(|| async { axum::response::Redirect::permanent("/admin/") }),
        )
        .route("/admin/analytics", get(admin::analytics))
        .route("/admin/export.csv", get(admin::export_csv))
        .route("/admin/export.json", get(admin::export_json))
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            admin::require_admin,
        ));
    Ok(Router::new()
        .route("/", get(player::player))
        .route_service("/api/stream", stream.clone())
        .route_service("/api/stream/", stream)
        .merge(admin)
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found") })
        .with_state(state))
}
