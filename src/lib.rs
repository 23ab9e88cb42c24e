//! # sage-stream
//!
//! Stream video files over HTTP with byte ranges, permission checks, a cap
//! on each response and a watch log, as composable [tower] layers around a
//! terminal file service. Any tower-compatible server (hyper, axum) builds
//! the endpoint by stacking them.
//!
//! | piece | what it does |
//! |---|---|
//! | [`media::ServeMedia`] | terminal service: confined paths, RFC 9110 ranges and preconditions, non-blocking file body |
//! | [`client_ip::ResolveClientIpLayer`] | works out once, at the edge, the client IP (the one place trusted proxies are configured) |
//! | [`media_path::ResolveMediaPathLayer`] | decides once, at the edge, which normalised media path a request names |
//! | [`range::ParseRangeLayer`] | parses `Range` into a typed extension |
//! | [`cap::CapVolumeLayer`] | caps bytes per ranged response (default 8 MiB) |
//! | [`permission::RequirePermissionLayer`] | `AllowAny`, `IsAuthenticated`, `SignedUrl`, closures, combinators |
//! | [`auth::BearerAuthLayer`] | maps bearer tokens to a [`extension::Viewer`] |
//! | [`StreamEndpoint`] | all of the above with django-sage-streaming's defaults |
//! | [`limit::ViewerStreamLimitLayer`] | at most N concurrent streams per viewer |
//! | [`extension`] | the typed extensions the layers agree through, and the two shared rules (`MediaPathSource`, `ViewerKey`) |
//! | [`SageStreamExt`] | one `ServiceBuilder` method per layer |
//! | `log::WatchLogLayer` (feature `log`) | one watch-log row per response, usable alone around any service |
//! | `log::WatchLogStore` (feature `log`) | the log's storage: `MemoryStore`, and with features `sqlite` / `postgres` the diesel stores |
//! | `app::router` (feature `server`) | the whole server: endpoint, player page and admin |
//! | `server::serve` (feature `server`) | a hyper server loop with connection budgets and graceful shutdown |
//! | `observe::ObserveLayer` (feature `metrics`) | Prometheus metrics and an access-log line per response |
//!
//! The layers need no Cargo feature, and the default features are none:
//! `log`, `sqlite`, `postgres`, `metrics`, `server` and `cli` add the rest
//! (`full` is the binary with both databases).
//!
//! ```
//! use http::{Request, StatusCode};
//! use sage_stream::StreamEndpoint;
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! # let dir = tempfile::tempdir().unwrap();
//! # std::fs::write(dir.path().join("clip.mp4"), vec![1u8; 1000]).unwrap();
//! let svc = StreamEndpoint::new(dir.path()).into_service();
//! let req = Request::get("/api/stream?path=clip.mp4").header("range", "bytes=0-1").body(()).unwrap();
//! let res = svc.oneshot(req).await.unwrap();
//! assert_eq!(res.status(), StatusCode::PARTIAL_CONTENT);
//! assert_eq!(res.headers()["content-range"], "bytes 0-1/1000");
//! # }
//! ```

#![deny(missing_docs, unreachable_pub)]
#![forbid(unsafe_code)]
#![recursion_limit = "256"]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
pub mod app;
pub mod auth;
pub mod body;
pub mod cap;
pub mod client_ip;
pub mod endpoint;
pub mod error;
pub mod extension;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod limit;
#[cfg(feature = "log")]
#[cfg_attr(docsrs, doc(cfg(feature = "log")))]
pub mod log;
pub mod media;
pub mod media_path;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod observe;
pub mod permission;
mod query;
pub mod range;
mod redact;
#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
pub mod server;
pub mod settings;

pub use endpoint::{SageStreamExt, StreamEndpoint, StreamService};
pub use error::ConfigError;
pub use redact::redact_url;

/// The rule docs/ARCHITECTURE.md states, checked: no middleware module
/// imports another middleware (or the server, the app, the CLI); they share
/// only `extension`, `body`, `error`, `query` and `redact`.
#[cfg(test)]
mod architecture {
    const MIDDLEWARE: &[&str] = &[
        "auth",
        "cap",
        "client_ip",
        "limit",
        "log",
        "media",
        "media_path",
        "observe",
        "permission",
        "range",
    ];
    const SHARED: &[&str] = &["extension", "body", "error", "query", "redact"];

    fn sources(path: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        if path.is_dir() {
            for entry in std::fs::read_dir(path).unwrap() {
                sources(&entry.unwrap().path(), out);
            }
        } else if path.is_file() && path.extension().is_some_and(|e| e == "rs") {
            out.push(path.to_owned());
        }
    }

    #[test]
    fn no_middleware_imports_another() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut found = Vec::new();
        for module in MIDDLEWARE {
            let mut files = Vec::new();
            sources(&src.join(module), &mut files);
            sources(&src.join(format!("{module}.rs")), &mut files);
            assert!(!files.is_empty(), "{module}: no sources");
            for file in files {
                let text = std::fs::read_to_string(&file).unwrap();
                for line in text.lines() {
                    let line = line.trim_start();
                    let Some(path) = line
                        .strip_prefix("use crate::")
                        .or_else(|| line.strip_prefix("pub use crate::"))
                        .or_else(|| line.strip_prefix("pub(crate) use crate::"))
                    else {
                        continue;
                    };
                    let target = path
                        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                        .next()
                        .unwrap_or_default();
                    if target != *module && !SHARED.contains(&target) {
                        found.push(format!("{}: {line}", file.display()));
                    }
                }
            }
        }
        assert!(
            found.is_empty(),
            "imports across middleware:\n{}",
            found.join("\n")
        );
    }
}
