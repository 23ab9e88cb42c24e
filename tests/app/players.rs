//! Players on other origins (issue 12 item 6): CORS on the stream routes,
//! `Cache-Control`, streaming content types, the path-style route and
//! prefix-signed links — through `oneshot` on the app, then for real:
//! ffmpeg plays an HLS package through one prefix-signed link, and
//! Chromium reads a range from a page on another origin
//! (`e2e/cors.mjs`).
//!
//! Without ffmpeg, Node or Chromium the real-world tests report as ignored
//! with the reason, unless `SAGE_STREAM_REQUIRE_BROWSER=1` makes them fail.

use crate::common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::Router;
use common::harness::{Requirement, Test};
use common::running::start;
use common::{body_bytes, Fixture};
use http::{HeaderMap, Method, Request, StatusCode};
use sage_stream::app::{router, AppConfig};
use sage_stream::extension::{MediaPathSource, PeerAddr};
use sage_stream::log::{
    LogFilter, SqliteStore, WatchLogEntry, WatchLogStore, WatchLogWriter, WriterConfig,
};
use sage_stream::permission::SignedUrl;
use sage_stream::settings::PermissionClass;
use tower::ServiceExt;

pub fn tests() -> Vec<Test> {
    vec![
        Test::tokio(
            "cors_preflights_and_range_reads_on_the_stream_routes_only",
            cors_preflights_and_range_reads_on_the_stream_routes_only,
        ),
        Test::tokio(
            "any_origin_with_a_star_and_none_by_default",
            any_origin_with_a_star_and_none_by_default,
        ),
        Test::tokio(
            "cache_control_on_the_files_answers_never_on_refusals",
            cache_control_on_the_files_answers_never_on_refusals,
        ),
        Test::tokio(
            "streaming_formats_get_the_types_players_expect",
            streaming_formats_get_the_types_players_expect,
        ),
        Test::tokio(
            "content_types_can_be_overridden",
            content_types_can_be_overridden,
        ),
        Test::tokio(
            "the_path_route_serves_confined_files_and_logs_their_paths",
            the_path_route_serves_confined_files_and_logs_their_paths,
        ),
        Test::tokio(
            "the_path_route_moves_or_goes_and_keeps_clear_of_the_others",
            the_path_route_moves_or_goes_and_keeps_clear_of_the_others,
        ),
        Test::tokio(
            "one_prefix_signed_link_opens_its_directory_and_nothing_else",
            one_prefix_signed_link_opens_its_directory_and_nothing_else,
        ),
        Test::tokio_multi_thread(
            "ffmpeg_plays_hls_through_one_prefix_signed_link",
            2,
            ffmpeg_plays_hls_through_one_prefix_signed_link,
        )
        .needs(Requirement::Ffmpeg)
        .needs(Requirement::Ffprobe),
        Test::tokio_multi_thread(
            "chromium_reads_a_range_from_another_origin",
            2,
            chromium_reads_a_range_from_another_origin,
        )
        .needs(Requirement::Node)
        .needs(Requirement::Chromium)
        .needs(Requirement::Playwright),
    ]
}

const KEY: &str = "pl4yer-k3y";
const PLAYER: &str = "https://player.example";

// ---------------------------------------------------------------- helpers

type App = common::app::TestApp;

fn app(configure: impl FnOnce(&mut AppConfig)) -> App {
    App::new(|config| {
        config.admin_token = Some("adm1n".into());
        configure(config)
    })
}

fn signed(config: &mut AppConfig) {
    config.settings.default_permission_classes = vec![PermissionClass::SignedUrl];
    config.settings.signing_key = Some(KEY.into());
}

/// The signer of the app's path-style route.
fn path_signer() -> SignedUrl {
    SignedUrl::new(KEY).media_path(MediaPathSource::uri_prefix("/media").path_signatures(true))
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

async fn send(app: &App, method: Method, uri: &str, headers: &[(&str, &str)]) -> Answer {
    let mut builder = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let mut req = builder.body(Body::empty()).unwrap();
    req.extensions_mut()
        .insert(PeerAddr("127.0.0.1:40000".parse().unwrap()));
    let res = app.router.clone().oneshot(req).await.unwrap();
    let (status, headers) = (res.status(), res.headers().clone());
    Answer {
        status,
        headers,
        body: body_bytes(res).await.to_vec(),
    }
}

async fn get(app: &App, uri: &str, headers: &[(&str, &str)]) -> Answer {
    send(app, Method::GET, uri, headers).await
}

/// Every row, oldest first, once the writer has stored them.
async fn rows(app: App) -> Vec<WatchLogEntry> {
    app.writer.shutdown_async().await;
    let mut rows = app
        .store
        .query(&LogFilter::default(), None, 10_000)
        .unwrap()
        .entries;
    rows.reverse();
    rows
}

fn preflight(origin: &str) -> [(&str, &str); 3] {
    [
        ("origin", origin),
        ("access-control-request-method", "GET"),
        ("access-control-request-headers", "range"),
    ]
}

/// The comma-separated list of a header, lower-cased.
fn list(answer: &Answer, name: &str) -> Vec<String> {
    answer
        .header(name)
        .unwrap_or_default()
        .split(',')
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect()
}

// ------------------------------------------------------------------- CORS

async fn cors_preflights_and_range_reads_on_the_stream_routes_only() {
    let app = app(|c| c.settings.cors_origins = vec![PLAYER.into()]);
    let data = app.fx.file("clip.mp4", 5000);
    for uri in [
        "/api/stream?path=clip.mp4",
        "/api/stream/?path=clip.mp4",
        "/media/clip.mp4",
    ] {
        let pre = send(&app, Method::OPTIONS, uri, &preflight(PLAYER)).await;
        assert_eq!(pre.status, StatusCode::OK, "{uri}");
        assert_eq!(
            pre.header("access-control-allow-origin"),
            Some(PLAYER),
            "{uri}"
        );
        let allowed = list(&pre, "access-control-allow-headers");
        for name in ["range", "if-range", "if-none-match", "if-modified-since"] {
            assert!(allowed.contains(&name.to_owned()), "{uri}: {allowed:?}");
        }
        assert_eq!(list(&pre, "access-control-allow-methods"), ["get", "head"]);
        assert_eq!(pre.header("access-control-max-age"), Some("3600"));
        assert!(pre.body.is_empty());

        let res = get(&app, uri, &[("origin", PLAYER), ("range", "bytes=0-99")]).await;
        assert_eq!(res.status, StatusCode::PARTIAL_CONTENT, "{uri}");
        assert_eq!(res.header("access-control-allow-origin"), Some(PLAYER));
        assert_eq!(
            list(&res, "access-control-expose-headers"),
            ["content-range", "accept-ranges", "content-length", "etag"]
        );
        assert!(list(&res, "vary").contains(&"origin".to_owned()));
        assert_eq!(res.header("content-range"), Some("bytes 0-99/5000"));
        assert_eq!(res.body, &data[..100]);

        // Another origin gets the bytes (CORS is the browser's to enforce)
        // but no permission to read them.
        let other = get(&app, uri, &[("origin", "https://evil.example")]).await;
        assert_eq!(other.status, StatusCode::OK);
        assert_eq!(other.header("access-control-allow-origin"), None);
        let pre = send(
            &app,
            Method::OPTIONS,
            uri,
            &preflight("https://evil.example"),
        )
        .await;
        assert_eq!(pre.header("access-control-allow-origin"), None);
    }
    // Refusals carry CORS too, so a player can read why.
    let missing = get(&app, "/media/nope.mp4", &[("origin", PLAYER)]).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.header("access-control-allow-origin"), Some(PLAYER));
    // The pages are not for other origins.
    for uri in ["/", "/admin/"] {
        let res = get(
            &app,
            uri,
            &[("origin", PLAYER), ("authorization", "Bearer adm1n")],
        )
        .await;
        assert_eq!(res.status, StatusCode::OK, "{uri}");
        assert_eq!(res.header("access-control-allow-origin"), None, "{uri}");
        let pre = send(&app, Method::OPTIONS, uri, &preflight(PLAYER)).await;
        assert_eq!(pre.header("access-control-allow-origin"), None, "{uri}");
    }
}

async fn any_origin_with_a_star_and_none_by_default() {
    let any = app(|c| c.settings.cors_origins = vec!["*".into()]);
    any.fx.file("clip.mp4", 10);
    let res = get(&any, "/media/clip.mp4", &[("origin", "https://x.example")]).await;
    assert_eq!(res.header("access-control-allow-origin"), Some("*"));

    let none = app(|_| {});
    none.fx.file("clip.mp4", 10);
    let res = get(&none, "/api/stream?path=clip.mp4", &[("origin", PLAYER)]).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.header("access-control-allow-origin"), None);
    let pre = send(
        &none,
        Method::OPTIONS,
        "/api/stream?path=clip.mp4",
        &preflight(PLAYER),
    )
    .await;
    assert_eq!(pre.header("access-control-allow-origin"), None);
    assert_ne!(
        pre.status,
        StatusCode::OK,
        "no preflight answered without CORS"
    );
}

// ---------------------------------------------------------- Cache-Control

async fn cache_control_on_the_files_answers_never_on_refusals() {
    const CC: &str = "public, max-age=3600";
    let app = app(|c| c.settings.cache_control = Some(CC.into()));
    app.fx.file("clip.mp4", 1000);
    let full = get(&app, "/api/stream?path=clip.mp4", &[]).await;
    assert_eq!(full.status, StatusCode::OK);
    assert_eq!(full.header("cache-control"), Some(CC));
    let etag = full.header("etag").unwrap().to_owned();
    let part = get(&app, "/media/clip.mp4", &[("range", "bytes=10-19")]).await;
    assert_eq!(part.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(part.header("cache-control"), Some(CC));
    let same = get(&app, "/media/clip.mp4", &[("if-none-match", &etag)]).await;
    assert_eq!(same.status, StatusCode::NOT_MODIFIED);
    assert_eq!(same.header("cache-control"), Some(CC));
    let head = send(&app, Method::HEAD, "/media/clip.mp4", &[]).await;
    assert_eq!(head.header("cache-control"), Some(CC));
    for (uri, headers, status) in [
        ("/media/nope.mp4", &[][..], StatusCode::NOT_FOUND),
        (
            "/media/clip.mp4",
            &[("range", "bytes=5000-")][..],
            StatusCode::RANGE_NOT_SATISFIABLE,
        ),
        (
            "/media/clip.mp4",
            &[("if-match", "\"other\"")][..],
            StatusCode::PRECONDITION_FAILED,
        ),
        ("/media/%2e%2e/secret.txt", &[][..], StatusCode::BAD_REQUEST),
        ("/api/stream", &[][..], StatusCode::BAD_REQUEST),
    ] {
        let res = get(&app, uri, headers).await;
        assert_eq!(res.status, status, "{uri}");
        assert_eq!(res.header("cache-control"), None, "{uri}");
    }
    // A refusal by the permission carries none either.
    let locked = self::app(|c| {
        c.settings.cache_control = Some(CC.into());
        signed(c);
    });
    locked.fx.file("clip.mp4", 10);
    let res = get(&locked, "/media/clip.mp4", &[]).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert_eq!(res.header("cache-control"), None);
}

// ------------------------------------------------------------- MIME types

async fn streaming_formats_get_the_types_players_expect() {
    let app = app(|_| {});
    for (name, ty) in [
        ("show1/index.m3u8", "application/vnd.apple.mpegurl"),
        ("show1/seg0.ts", "video/mp2t"),
        ("dash/chunk-0.m4s", "video/iso.segment"),
        ("dash/manifest.mpd", "application/dash+xml"),
        ("subs/en.vtt", "text/vtt"),
        ("clip.mp4", "video/mp4"),
    ] {
        let data = app.fx.file(name, 300);
        for uri in [format!("/media/{name}"), format!("/api/stream?path={name}")] {
            let res = get(&app, &uri, &[]).await;
            assert_eq!(res.status, StatusCode::OK, "{uri}");
            assert_eq!(res.header("content-type"), Some(ty), "{uri}");
            assert_eq!(res.body, data, "{uri}");
        }
        // A multipart answer names the type in each part.
        let res = get(
            &app,
            &format!("/media/{name}"),
            &[("range", "bytes=0-1,5-6")],
        )
        .await;
        assert!(
            res.text().contains(&format!("Content-Type: {ty}\r\n")),
            "{name}"
        );
    }
}

async fn content_types_can_be_overridden() {
    let app = app(|c| {
        c.settings.mime_types = [
            ("m3u8".to_owned(), "application/x-mpegURL".to_owned()),
            (".MKV".to_owned(), "video/x-matroska".to_owned()),
        ]
        .into();
    });
    app.fx.file("a.m3u8", 10);
    app.fx.file("b.mkv", 10);
    app.fx.file("c.ts", 10);
    for (uri, ty) in [
        ("/media/a.m3u8", "application/x-mpegURL"),
        ("/media/b.mkv", "video/x-matroska"),
        ("/media/c.ts", "video/mp2t"),
    ] {
        assert_eq!(
            get(&app, uri, &[]).await.header("content-type"),
            Some(ty),
            "{uri}"
        );
    }
    // And a bad one stops the app from being built, naming the setting.
    let fx = Fixture::new();
    let store: Arc<dyn WatchLogStore> =
        Arc::new(SqliteStore::open(fx.dir.path().join("l.db")).unwrap());
    let (sink, writer) = WatchLogWriter::spawn(store.clone(), WriterConfig::default()).unwrap();
    let mut config = AppConfig::new(&fx.root);
    config.settings.mime_types = [("m3u8".to_owned(), "mpegurl".to_owned())].into();
    let err = router(&config, store, sink).unwrap_err().to_string();
    assert!(err.contains("STREAM_MIME"), "{err}");
    writer.shutdown_async().await;
}

// -------------------------------------------------------- path-style route

async fn the_path_route_serves_confined_files_and_logs_their_paths() {
    let app = app(|_| {});
    let playlist = app.fx.file("show1/index.m3u8", 200);
    let segment = app.fx.file("show1/seg0.ts", 4000);
    let spaced = app.fx.file("a dir/b#c.mp4", 50);
    let res = get(&app, "/media/show1/index.m3u8", &[]).await;
    assert_eq!(
        (res.status, res.body.as_slice()),
        (StatusCode::OK, playlist.as_slice())
    );
    let res = get(
        &app,
        "/media/show1/seg0.ts?x=1",
        &[("range", "bytes=100-199")],
    )
    .await;
    assert_eq!(res.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(res.body, &segment[100..200]);
    let res = get(&app, "/media/a%20dir/b%23c.mp4", &[]).await;
    assert_eq!(res.body, spaced);
    // Nothing outside the root, however it is spelt.
    for uri in [
        "/media/../secret.txt",
        "/media/%2e%2e/secret.txt",
        "/media/show1/%2e%2e/%2e%2e/secret.txt",
        "/media/show1%2f..%2f..%2fsecret.txt",
        "/media/%2fetc/passwd",
        "/media/a%00b",
        "/media/a%5cb",
    ] {
        let res = get(&app, uri, &[]).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{uri}");
        assert!(!res.text().contains("SENTINEL"), "{uri}");
    }
    assert_eq!(
        get(&app, "/media/show1", &[]).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&app, "/media/", &[]).await.status,
        StatusCode::NOT_FOUND
    );
    let rows = rows(app).await;
    let paths: Vec<(&str, i32)> = rows.iter().map(|r| (r.path.as_str(), r.status)).collect();
    assert_eq!(
        &paths[..3],
        [
            ("show1/index.m3u8", 200),
            ("show1/seg0.ts", 206),
            ("a dir/b#c.mp4", 200),
        ]
    );
    assert_eq!(rows[1].bytes_sent, 100);
    assert_eq!(rows[1].range_header.as_deref(), Some("bytes=100-199"));
}

async fn the_path_route_moves_or_goes_and_keeps_clear_of_the_others() {
    let moved = app(|c| c.media_route = Some("/hls".into()));
    let data = moved.fx.file("show1/a.ts", 10);
    assert_eq!(get(&moved, "/hls/show1/a.ts", &[]).await.body, data);
    assert_eq!(
        get(&moved, "/media/show1/a.ts", &[]).await.status,
        StatusCode::NOT_FOUND
    );
    let off = app(|c| c.media_route = None);
    off.fx.file("a.ts", 10);
    assert_eq!(
        get(&off, "/media/a.ts", &[]).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&off, "/api/stream?path=a.ts", &[]).await.status,
        StatusCode::OK
    );

    // Nested in another app, the route is below the prefix.
    let inner = app(|_| {});
    let data = inner.fx.file("show1/a.ts", 10);
    let outer = App {
        router: Router::new().nest("/video", inner.router.clone()),
        ..inner
    };
    assert_eq!(get(&outer, "/video/media/show1/a.ts", &[]).await.body, data);
    let rows = rows(outer).await;
    assert_eq!(rows[0].path, "show1/a.ts");

    for (player, route, wants) in [
        (Some("/media"), Some("/media"), "player_path"),
        (Some("/media/x"), Some("/media"), "player_path"),
        (Some("/"), Some("/api"), "media_route"),
        (Some("/"), Some("/api/stream"), "media_route"),
        (Some("/"), Some("/admin"), "media_route"),
        (Some("/"), Some("/media/"), "media_route"),
        (Some("/"), Some("media"), "media_route"),
        (Some("/"), Some("/{x}"), "media_route"),
        (Some("/"), Some("/"), "media_route"),
    ] {
        let fx = Fixture::new();
        let store: Arc<dyn WatchLogStore> =
            Arc::new(SqliteStore::open(fx.dir.path().join("l.db")).unwrap());
        let (sink, writer) = WatchLogWriter::spawn(store.clone(), WriterConfig::default()).unwrap();
        let mut config = AppConfig::new(&fx.root);
        config.player_path = player.map(str::to_owned);
        config.media_route = route.map(str::to_owned);
        let err = router(&config, store, sink).unwrap_err().to_string();
        assert!(err.contains(wants), "{player:?} {route:?}: {err}");
        writer.shutdown_async().await;
    }
}

// ----------------------------------------------------- prefix-signed links

async fn one_prefix_signed_link_opens_its_directory_and_nothing_else() {
    let app = app(signed);
    let playlist = app.fx.file("show1/index.m3u8", 300);
    let segment = app.fx.file("show1/seg0.ts", 3000);
    let deep = app.fx.file("show1/hd/seg0.ts", 30);
    app.fx.file("show10/seg0.ts", 3000);
    app.fx.file("show2/seg0.ts", 3000);
    let signer = path_signer();
    let link = signer
        .signed_prefix_link(
            "/media",
            "show1/",
            "show1/index.m3u8",
            Duration::from_secs(600),
        )
        .unwrap();
    let base = link.strip_suffix("show1/index.m3u8").unwrap().to_owned();
    assert!(base.starts_with("/media/_s/"), "{base}");

    let res = get(&app, &link, &[]).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert_eq!(res.body, playlist);
    assert_eq!(
        res.header("content-type"),
        Some("application/vnd.apple.mpegurl")
    );
    // What a player resolves `seg0.ts` in the playlist to.
    let res = get(
        &app,
        &format!("{base}show1/seg0.ts"),
        &[("range", "bytes=0-99")],
    )
    .await;
    assert_eq!(res.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(res.body, &segment[..100]);
    assert_eq!(
        get(&app, &format!("{base}show1/hd/seg0.ts"), &[])
            .await
            .body,
        deep
    );

    for path in ["show10/seg0.ts", "show2/seg0.ts"] {
        let res = get(&app, &format!("{base}{path}"), &[]).await;
        assert_eq!(res.status, StatusCode::FORBIDDEN, "{path}");
        assert_eq!(res.text(), "signature does not cover this path", "{path}");
    }
    // Climbing out, plainly or escaped, is refused before any signature.
    for path in [
        "show1/../show2/seg0.ts",
        "show1/%2e%2e/show2/seg0.ts",
        "show1%2f%2e%2e%2fshow2/seg0.ts",
        "show1/%2e%2e/%2e%2e/secret.txt",
    ] {
        let res = get(&app, &format!("{base}{path}"), &[]).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(res.text(), "'..' is not allowed in media paths", "{path}");
    }
    // Without the token, or with it on the query route, nothing opens.
    let res = get(&app, "/media/show1/seg0.ts", &[]).await;
    assert_eq!(
        (res.status, res.text().as_str()),
        (StatusCode::FORBIDDEN, "missing signature")
    );
    let (expires, signature) = {
        let mut parts = base.trim_matches('/').split('/').skip(2);
        (
            parts.next().unwrap().to_owned(),
            parts.next().unwrap().to_owned(),
        )
    };
    let query = format!("/api/stream?path=show1/seg0.ts&expires={expires}&signature={signature}");
    assert_eq!(get(&app, &query, &[]).await.status, StatusCode::FORBIDDEN);
    // Expired.
    let past = unix_now() - 5;
    let old = format!(
        "/media/_s/{past}/{}/show1/seg0.ts",
        signer.sign_prefix("show1/", past).unwrap()
    );
    let res = get(&app, &old, &[]).await;
    assert_eq!(
        (res.status, res.text().as_str()),
        (StatusCode::FORBIDDEN, "link expired")
    );
    // Malformed, or `_s` where no signature can stand (issue 20, item 12:
    // these were logged with the valid signature inside the path).
    let token = base.trim_start_matches("/media/_s/").trim_end_matches('/');
    for malformed in [
        "/media/_s/123/abc".to_owned(),
        format!("/media/%5fs/{token}/show1/seg0.ts"),
        format!("/media/%5Fs/{token}/show1/seg0.ts"),
        format!("/media//_s/{token}/show1/seg0.ts"),
        format!("/media/./_s/{token}/show1/seg0.ts"),
        format!("/media/show1/_s/{token}/seg0.ts"),
        format!("{base}show1/_s/{token}/seg0.ts"),
        format!("/media/_s%2F{}/show1/seg0.ts", token.replace('/', "%2F")),
    ] {
        let res = get(&app, &malformed, &[]).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{malformed}");
    }

    // The log names the media paths, never the token.
    let rows = rows(app).await;
    let paths: Vec<&str> = rows.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(
        &paths[..3],
        ["show1/index.m3u8", "show1/seg0.ts", "show1/hd/seg0.ts"]
    );
    assert_eq!(rows[0].status, 200);
    assert!(rows.iter().all(|r| !r.path.contains("_s/")), "{paths:?}");
    let signature = token.split('/').nth(1).unwrap();
    assert!(
        rows.iter().all(|r| !r.path.contains(signature)),
        "no row holds the signature: {paths:?}"
    );
    assert!(rows
        .iter()
        .any(|r| r.path == "show10/seg0.ts" && r.status == 403));
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

// ------------------------------------------------------- the real world

fn sample() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("media/sample.mp4")
}

/// `format=duration` as ffprobe reads it from `input`.
async fn probe_duration(input: &str) -> f64 {
    let out = tokio::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "format=duration",
            "-of",
            "csv=p=0",
            input,
        ])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "ffprobe {input}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

async fn ffmpeg_plays_hls_through_one_prefix_signed_link() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("media");
    let show = root.join("show1");
    std::fs::create_dir_all(&show).unwrap();
    let packaged = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-i"])
        .arg(sample())
        .args([
            "-c",
            "copy",
            "-f",
            "hls",
            "-hls_time",
            "1",
            "-hls_playlist_type",
            "vod",
        ])
        .arg(show.join("index.m3u8"))
        .status()
        .unwrap();
    assert!(packaged.success());
    let mut segments: Vec<String> = std::fs::read_dir(&show)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".ts"))
        .collect();
    segments.sort();
    assert!(segments.len() >= 3, "{segments:?}");
    let playlist = std::fs::read_to_string(show.join("index.m3u8")).unwrap();
    assert!(
        playlist.lines().any(|l| l == segments[0]),
        "relative segment names:\n{playlist}"
    );
    // A neighbour the link must not open.
    std::fs::create_dir_all(root.join("show10")).unwrap();
    std::fs::copy(show.join("index.m3u8"), root.join("show10/index.m3u8")).unwrap();

    let server = start(&root, &dir.path().join("log.db"), signed).await;
    let link = path_signer()
        .signed_prefix_link(
            &format!("http://{}/media", server.addr),
            "show1/",
            "show1/index.m3u8",
            Duration::from_secs(600),
        )
        .unwrap();
    let source = probe_duration(sample().to_str().unwrap()).await;
    let over_http = probe_duration(&link).await;
    assert!((over_http - source).abs() < 0.5, "{over_http} vs {source}");
    let played = tokio::process::Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-i",
            &link,
            "-f",
            "null",
            "-",
        ])
        .output()
        .await
        .unwrap();
    assert!(
        played.status.success(),
        "{}",
        String::from_utf8_lossy(&played.stderr)
    );
    // The same token does not reach the neighbour, nor does a bare path.
    let client = reqwest::Client::new();
    let outside = link.replace("/show1/index.m3u8", "/show10/index.m3u8");
    let res = client.get(&outside).send().await.unwrap();
    assert_eq!(res.status(), reqwest::StatusCode::FORBIDDEN);
    assert_eq!(
        res.text().await.unwrap(),
        "signature does not cover this path"
    );
    let bare = format!("http://{}/media/show1/index.m3u8", server.addr);
    assert_eq!(
        client.get(&bare).send().await.unwrap().status(),
        reqwest::StatusCode::FORBIDDEN
    );

    let store = server.stop().await;
    let rows = store
        .query(&LogFilter::default(), None, 10_000)
        .unwrap()
        .entries;
    // ffmpeg asks for `bytes=0-`, answered 206 with the whole segment.
    let served: Vec<&WatchLogEntry> = rows
        .iter()
        .filter(|r| r.status == 200 || r.status == 206)
        .collect();
    assert!(served
        .iter()
        .all(|r| r.path.starts_with("show1/") && !r.path.contains("_s")));
    assert!(served.iter().any(|r| r.path == "show1/index.m3u8"));
    // Every segment was read whole, each through the one link.
    for name in &segments {
        let path = format!("show1/{name}");
        let len = std::fs::metadata(show.join(name)).unwrap().len() as i64;
        assert!(
            served
                .iter()
                .any(|r| r.path == path && r.completed && r.bytes_sent == len),
            "{path} not read whole: {:?}",
            rows.iter().filter(|r| r.path == path).collect::<Vec<_>>()
        );
    }
    assert!(rows
        .iter()
        .any(|r| r.path == "show10/index.m3u8" && r.status == 403));
}

/// A page on `http://127.0.0.1:PORT` (a second origin), for the browser.
async fn page_server() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let page = Router::new().route(
        "/",
        axum::routing::get(|| async {
            axum::response::Html("<!doctype html><title>a player elsewhere</title><p>player</p>")
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, page).await;
    });
    (addr, task)
}

/// Runs `e2e/cors.mjs` on `page` fetching each of `urls`; its JSON answer.
async fn browser_fetches(page: &str, urls: &[String]) -> serde_json::Value {
    let e2e = Path::new(env!("CARGO_MANIFEST_DIR")).join("e2e");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let output = tokio::process::Command::new("node")
        .arg(e2e.join("cors.mjs"))
        .arg(page)
        .args(urls)
        .env("CHROMIUM", &chromium)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "cors.mjs failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(stdout.trim().lines().last().unwrap()).unwrap()
}

async fn chromium_reads_a_range_from_another_origin() {
    let dir = tempfile::tempdir().unwrap();
    let media = Path::new(env!("CARGO_MANIFEST_DIR")).join("media");
    let sample = std::fs::read(media.join("sample.mp4")).unwrap();
    let (page_addr, page_task) = page_server().await;
    let page = format!("http://{page_addr}/");
    let origin = format!("http://{page_addr}");

    // With the page's origin allowed: both stream routes answer the fetch.
    let allowed = start(&media, &dir.path().join("a.db"), |c| {
        c.settings.cors_origins = vec![origin.clone()];
    })
    .await;
    let urls = [
        format!("http://{}/api/stream?path=sample.mp4", allowed.addr),
        format!("http://{}/media/sample.mp4", allowed.addr),
    ];
    let results = browser_fetches(&page, &urls).await;
    eprintln!("allowed: {results}");
    assert_eq!(
        results["origin"],
        origin.as_str(),
        "the page ran on its own origin"
    );
    for (url, result) in urls.iter().zip(results["fetches"].as_array().unwrap()) {
        assert_eq!(result["error"], serde_json::Value::Null, "{url}");
        assert_eq!(result["status"], 206, "{url}");
        assert_eq!(
            result["contentRange"],
            format!("bytes 0-99/{}", sample.len()),
            "{url}"
        );
        assert_eq!(result["acceptRanges"], "bytes", "{url}");
        assert_eq!(result["contentLength"], "100", "{url}");
        assert!(
            result["etag"].as_str().is_some_and(|e| e.starts_with('"')),
            "{url}"
        );
        assert_eq!(result["length"], 100, "{url}");
        let bytes: Vec<u8> = serde_json::from_value(result["bytes"].clone()).unwrap();
        assert_eq!(bytes, &sample[..100], "{url}");
        // With `If-Range` the browser asks a preflight first.
        let again = &result["preflighted"];
        assert_eq!(again["error"], serde_json::Value::Null, "{url}: {again}");
        assert_eq!(again["status"], 206, "{url}");
        assert_eq!(again["contentRange"], result["contentRange"], "{url}");
        assert_eq!(again["length"], 100, "{url}");
    }
    let store = allowed.stop().await;
    let rows = store
        .query(&LogFilter::default(), None, 100)
        .unwrap()
        .entries;
    let ranged = rows
        .iter()
        .filter(|r| r.path == "sample.mp4" && r.status == 206 && r.bytes_sent == 100)
        .count();
    assert_eq!(ranged, 4, "two fetches per route");

    // Without it, the same fetch fails in the browser.
    let closed = start(&media, &dir.path().join("b.db"), |_| {}).await;
    let urls = [format!("http://{}/api/stream?path=sample.mp4", closed.addr)];
    let results = browser_fetches(&page, &urls).await;
    eprintln!("not allowed: {results}");
    let result = &results["fetches"][0];
    assert!(
        result["error"]
            .as_str()
            .is_some_and(|e| e.contains("Failed to fetch")),
        "{result}"
    );
    assert_eq!(result["status"], serde_json::Value::Null);
    closed.stop().await;
    page_task.abort();
}
