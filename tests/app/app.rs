//! The server's pages through `oneshot` on the router: player, admin
//! (auth, search, filters, pagination, exports, analytics), the
//! per-viewer stream limit, embedding (nested under a prefix, merged into
//! an app with its own `/` and fallback) and escaping of everything a
//! request or the log puts on a page.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::routing::get as route_get;
use axum::Router;
use base64::Engine as _;
use chrono::{TimeZone, Utc};
use common::harness::Test;
use common::{body_bytes, Fixture};
use http::{Request, StatusCode};
use sage_stream::app::{router, AppConfig};
use sage_stream::error::ConfigError;
use sage_stream::extension::PeerAddr;
use sage_stream::log::{
    LogFilter, SqliteStore, WatchBatch, WatchLogStore, WatchLogWriter, WatchRecord, WriterConfig,
};
use tower::ServiceExt;

pub fn tests() -> Vec<Test> {
    vec![
        Test::tokio(
            "admin_is_off_without_a_token_and_needs_it_when_on",
            admin_is_off_without_a_token_and_needs_it_when_on,
        ),
        Test::tokio(
            "list_search_filters_and_pagination",
            list_search_filters_and_pagination,
        ),
        #[cfg(feature = "postgres")]
        Test::tokio(
            "postgres_admin_filters_with_nul_are_400",
            postgres_admin_filters_with_nul_are_400,
        )
        .needs(common::harness::Requirement::Postgres),
        Test::tokio(
            "exports_carry_the_filtered_set",
            exports_carry_the_filtered_set,
        ),
        Test::tokio(
            "streams_are_logged_and_analytics_show_sessions",
            streams_are_logged_and_analytics_show_sessions,
        ),
        Test::tokio(
            "player_lists_media_and_plays_the_chosen_file",
            player_lists_media_and_plays_the_chosen_file,
        ),
        Test::tokio(
            "player_signs_links_when_the_permission_wants_it",
            player_signs_links_when_the_permission_wants_it,
        ),
        Test::tokio(
            "concurrent_streams_per_viewer_are_limited",
            concurrent_streams_per_viewer_are_limited,
        ),
        Test::tokio(
            "nested_under_a_prefix_every_link_works",
            nested_under_a_prefix_every_link_works,
        ),
        Test::tokio(
            "nested_with_a_trailing_slash_links_keep_it",
            nested_with_a_trailing_slash_links_keep_it,
        ),
        Test::tokio(
            "nested_as_a_service_both_video_and_video_slash_work",
            nested_as_a_service_both_video_and_video_slash_work,
        ),
        Test::tokio(
            "merges_into_an_app_with_its_own_root_and_fallback",
            merges_into_an_app_with_its_own_root_and_fallback,
        ),
        Test::sync(
            "a_player_path_must_be_a_free_plain_path",
            a_player_path_must_be_a_free_plain_path,
        ),
        Test::tokio(
            "what_requests_and_the_log_hold_is_escaped_on_every_page",
            what_requests_and_the_log_hold_is_escaped_on_every_page,
        ),
        Test::tokio(
            "the_stream_limit_and_the_log_see_clients_behind_a_trusted_proxy",
            the_stream_limit_and_the_log_see_clients_behind_a_trusted_proxy,
        ),
        Test::tokio(
            "pages_have_a_strict_content_security_policy",
            pages_have_a_strict_content_security_policy,
        ),
        Test::tokio(
            "sqlite_anonymized_ips_are_all_the_log_keeps",
            sqlite_anonymized_ips_are_all_the_log_keeps,
        ),
        #[cfg(feature = "postgres")]
        Test::tokio(
            "postgres_anonymized_ips_are_all_the_log_keeps",
            postgres_anonymized_ips_are_all_the_log_keeps,
        )
        .needs(common::harness::Requirement::Postgres),
        Test::tokio_multi_thread(
            "sqlite_exports_stream_the_whole_filtered_set",
            2,
            sqlite_exports_stream_the_whole_filtered_set,
        ),
        #[cfg(feature = "postgres")]
        Test::tokio_multi_thread(
            "postgres_exports_stream_the_whole_filtered_set",
            2,
            postgres_exports_stream_the_whole_filtered_set,
        )
        .needs(common::harness::Requirement::Postgres),
        Test::sync(
            "debug_and_display_never_show_secrets",
            debug_and_display_never_show_secrets,
        ),
    ]
}

const TOKEN: &str = "adm1n-token";

type App = common::app::TestApp;

fn app(configure: impl FnOnce(&mut AppConfig)) -> App {
    app_with(Fixture::new(), None, configure)
}

fn app_with(
    fx: Fixture,
    store: Option<Arc<dyn WatchLogStore>>,
    configure: impl FnOnce(&mut AppConfig),
) -> App {
    App::with(fx, store, (), |config| {
        config.admin_token = Some(TOKEN.to_owned());
        configure(config)
    })
}

async fn get(app: &App, uri: &str, auth: Option<&str>) -> (StatusCode, http::HeaderMap, String) {
    let mut builder = Request::get(uri);
    if let Some(auth) = auth {
        builder = builder.header("authorization", auth);
    }
    let mut req = builder.body(Body::empty()).unwrap();
    req.extensions_mut()
        .insert(PeerAddr("127.0.0.1:40000".parse().unwrap()));
    let res = app.router.clone().oneshot(req).await.unwrap();
    let (status, headers) = (res.status(), res.headers().clone());
    (
        status,
        headers,
        String::from_utf8_lossy(&body_bytes(res).await).into_owned(),
    )
}

fn basic(password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("admin:{password}"))
    )
}

fn row(i: u32, path: &str, user: Option<&str>, ip: &str, status: u16, minute: i64) -> WatchRecord {
    WatchRecord {
        created_at: Utc.with_ymd_and_hms(2026, 11, 20, 12, 0, 0).unwrap()
            + chrono::Duration::minutes(minute),
        path: path.into(),
        user_id: user.map(Into::into),
        is_authenticated: user.is_some(),
        ip: Some(ip.into()),
        method: "GET".into(),
        status,
        range_header: Some(format!("bytes={}-", i * 100).into()),
        bytes_sent: 100,
        duration_ms: 3,
        user_agent: Some("ua".into()),
        completed: true,
        range_start: None,
    }
}

/// Rows in `<tbody>` of the table with this id.
fn table_rows(html: &str, id: &str) -> usize {
    let start = html.find(&format!("<table id=\"{id}\"")).expect("table");
    let body = &html[start..];
    let body = &body[body.find("<tbody>").unwrap()..body.find("</tbody>").unwrap()];
    body.matches("<tr>").count() - usize::from(body.contains("class=\"muted\""))
}

async fn admin_is_off_without_a_token_and_needs_it_when_on() {
    let off = app(|c| c.admin_token = None);
    assert_eq!(
        get(&off, "/admin/", Some(&basic(TOKEN))).await.0,
        StatusCode::NOT_FOUND
    );

    let on = app(|_| {});
    let (status, headers, body) = get(&on, "/admin/", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(headers["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Basic"));
    assert_eq!(body, "admin token required");
    assert_eq!(
        get(&on, "/admin/", Some(&basic("wrong"))).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get(&on, "/admin/export.csv", Some("Bearer wrong")).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get(&on, "/admin/", Some(&basic(TOKEN))).await.0,
        StatusCode::OK
    );
    assert_eq!(
        get(&on, "/admin/analytics", Some(&format!("Bearer {TOKEN}")))
            .await
            .0,
        StatusCode::OK
    );
}

async fn list_search_filters_and_pagination() {
    let a = app(|_| {});
    let mut rows = Vec::new();
    for i in 0..120 {
        let user = if i % 2 == 0 { Some("alice") } else { None };
        let status = if i % 10 == 0 { 403 } else { 206 };
        rows.push(row(
            i,
            if i % 3 == 0 {
                "movies/<b>x</b>.mp4"
            } else {
                "clip.mp4"
            },
            user,
            "10.0.0.9",
            status,
            i64::from(i),
        ));
    }
    rows.push(row(500, "other.webm", None, "192.0.2.77", 200, 3 * 24 * 60));
    a.store.insert_batch(&WatchBatch::new(rows)).unwrap();
    let auth = basic(TOKEN);

    let (_, _, html) = get(&a, "/admin/", Some(&auth)).await;
    assert!(html.contains("121 matching rows"));
    assert_eq!(table_rows(&html, "log"), 50);
    assert!(
        html.contains("movies/&lt;b&gt;x&lt;/b&gt;.mp4"),
        "paths are escaped"
    );
    assert!(!html.contains("<b>x</b>"));

    // Follow "older" links to the end: every row once, newest first.
    let mut seen = 0;
    let mut uri = "/admin/?q=clip".to_owned();
    loop {
        let (status, _, html) = get(&a, &uri, Some(&auth)).await;
        assert_eq!(status, StatusCode::OK);
        seen += table_rows(&html, "log");
        let Some(at) = html.find("id=\"older\" href=\"") else {
            break;
        };
        let rest = &html[at + 17..];
        uri = rest[..rest.find('"').unwrap()].replace("&amp;", "&");
    }
    assert_eq!(seen, 80, "search 'clip' matches the 80 clip.mp4 rows");

    let cases = [
        ("/admin/?q=192.0.2", 1),
        ("/admin/?q=alice", 50),
        ("/admin/?authenticated=no", 50),
        ("/admin/?status=403", 12),
        ("/admin/?since=2026-11-23&until=2026-11-23", 1),
        ("/admin/?until=2026-11-20", 50),
        ("/admin/?authenticated=yes&status=403&q=clip", 8),
    ];
    for (uri, want) in cases {
        let (status, _, html) = get(&a, uri, Some(&auth)).await;
        assert_eq!(status, StatusCode::OK, "{uri}");
        assert_eq!(table_rows(&html, "log"), want, "{uri}");
    }
    for bad in [
        "/admin/?status=abc",
        "/admin/?since=yesterday",
        "/admin/?authenticated=maybe",
        "/admin/?after=zzz",
        "/admin/analytics?gap=0",
        // NUL matched every row on SQLite and failed (503) on PostgreSQL.
        "/admin/?q=%00",
        "/admin/?path=a%00b",
        "/admin/?user=%00",
        "/admin/export.csv?ip=%00",
        "/admin/analytics?q=x%00",
    ] {
        let (status, _, body) = get(&a, bad, Some(&auth)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(!body.is_empty());
    }
    let (_, _, body) = get(&a, "/admin/?q=%00", Some(&auth)).await;
    assert_eq!(body, "filters must not contain NUL");
}

/// The same refusals with the PostgreSQL store, which used to answer 503
/// for a NUL in a filter (the check runs before any query).
#[cfg(feature = "postgres")]
async fn postgres_admin_filters_with_nul_are_400() {
    let db = common::pg::TestDb::create();
    let store: Arc<dyn WatchLogStore> =
        Arc::new(sage_stream::log::PgStore::connect(&db.url).unwrap());
    let a = app_with(Fixture::new(), Some(store), |_| {});
    let auth = basic(TOKEN);
    for bad in [
        "/admin/?q=%00",
        "/admin/?path=a%00b",
        "/admin/?user=%00",
        "/admin/export.csv?ip=%00",
        "/admin/analytics?q=x%00",
    ] {
        let (status, _, body) = get(&a, bad, Some(&auth)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(body.contains("NUL"), "{bad}: {body}");
    }
    let (status, _, _) = get(&a, "/admin/?q=clip", Some(&auth)).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "PostgreSQL answers the same filter without NUL"
    );
}

async fn exports_carry_the_filtered_set() {
    let a = app(|_| {});
    let rows: Vec<WatchRecord> = (0..30)
        .map(|i| {
            row(
                i,
                "a,b.mp4",
                Some("bob"),
                "10.0.0.1",
                if i < 20 { 206 } else { 404 },
                i64::from(i),
            )
        })
        .collect();
    a.store.insert_batch(&WatchBatch::new(rows)).unwrap();
    let auth = basic(TOKEN);
    let (status, headers, csv) = get(&a, "/admin/export.csv?status=206", Some(&auth)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "text/csv; charset=utf-8");
    assert!(headers["content-disposition"]
        .to_str()
        .unwrap()
        .contains("watch-log.csv"));
    let lines: Vec<&str> = csv.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 21);
    assert!(lines[0].starts_with("id,created_at,path"));
    assert!(lines[1].contains(",\"a,b.mp4\",bob,true,10.0.0.1,GET,206,"));
    let (_, _, json) = get(&a, "/admin/export.json?status=404", Some(&auth)).await;
    let parsed: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
    assert_eq!(parsed.len(), 10);
    assert!(parsed
        .iter()
        .all(|r| r["status"] == 404 && r["path"] == "a,b.mp4"));
}

async fn streams_are_logged_and_analytics_show_sessions() {
    let a = app(|_| {});
    let data = a.fx.file("movie.mp4", 10_000);
    // A viewer plays the first half in ranged requests, then jumps ahead.
    for range in ["bytes=0-", "bytes=2000-4999", "bytes=9000-"] {
        let (status, _, _) = get_range(&a, "/api/stream?path=movie.mp4", range).await;
        assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    }
    assert!(a.writer.wait_idle(Duration::from_secs(5)));
    assert_eq!(a.store.count(&LogFilter::default()).unwrap(), 3);
    let (_, _, html) = get(&a, "/admin/analytics", Some(&basic(TOKEN))).await;
    assert!(
        html.contains("<svg") && html.contains("class=\"bar\""),
        "chart drawn"
    );
    assert_eq!(table_rows(&html, "sessions"), 1);
    // 0..10000 was sent by the first request (no cap at 8 MiB): 100 %.
    assert!(
        html.contains("<td class=\"num watched\">100.0 %</td>"),
        "{html}"
    );
    assert_eq!(table_rows(&html, "videos"), 1);
    assert!(data.len() == 10_000);
}

async fn get_range(a: &App, uri: &str, range: &str) -> (StatusCode, http::HeaderMap, Vec<u8>) {
    let mut req = Request::get(uri)
        .header("range", range)
        .body(Body::empty())
        .unwrap();
    req.extensions_mut()
        .insert(PeerAddr("127.0.0.1:40000".parse().unwrap()));
    let res = a.router.clone().oneshot(req).await.unwrap();
    let (status, headers) = (res.status(), res.headers().clone());
    (status, headers, body_bytes(res).await.to_vec())
}

async fn player_lists_media_and_plays_the_chosen_file() {
    let a = app(|c| c.admin_token = None);
    for i in 0..60 {
        a.fx.file(&format!("clips/c{i:02}.mp4"), 2048);
    }
    a.fx.file(".hidden.mp4", 10);
    let (status, _, html) = get(&a, "/", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Files (60)"));
    assert_eq!(html.matches("<li>").count(), 50);
    assert!(html.contains("2.0 KiB"));
    assert!(!html.contains(".hidden"));
    assert!(
        !html.contains("/admin/"),
        "no admin link when the admin is off"
    );
    let (_, _, page2) = get(&a, "/?page=2", None).await;
    assert_eq!(page2.matches("<li>").count(), 10);
    let (_, _, playing) = get(&a, "/?play=clips%2Fc07.mp4", None).await;
    assert!(playing.contains("<video id=\"player\" controls"));
    assert!(playing.contains("src=\"/api/stream?path=clips/c07.mp4\""));
    // Files outside the listing are not offered.
    let (status, _, nothing) = get(&a, "/?play=..%2Fsecret.txt", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(!nothing.contains("<video"));
    assert_eq!(get(&a, "/?page=two", None).await.0, StatusCode::BAD_REQUEST);
    // Out of range clamps to the last page.
    let (_, _, last) = get(&a, "/?page=99", None).await;
    assert!(last.contains("page 2 of 2"));
}

async fn player_signs_links_when_the_permission_wants_it() {
    let a = app(|c| {
        c.settings.default_permission_classes =
            vec![sage_stream::settings::PermissionClass::SignedUrl];
        c.settings.signing_key = Some("k".into());
    });
    a.fx.file("s.mp4", 500);
    let (_, _, html) = get(&a, "/?play=s.mp4", None).await;
    let at = html
        .find("<video id=\"player\" controls preload=\"metadata\" src=\"")
        .unwrap();
    let rest = &html[at..];
    let src = rest[rest.find("src=\"").unwrap() + 5..]
        .split('"')
        .next()
        .unwrap()
        .replace("&amp;", "&");
    assert!(src.contains("signature="));
    let (status, _, body) = get_range(&a, &src, "bytes=0-").await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(body.len(), 500);
    assert_eq!(
        get_range(&a, "/api/stream?path=s.mp4", "bytes=0-").await.0,
        StatusCode::FORBIDDEN
    );
}

async fn concurrent_streams_per_viewer_are_limited() {
    let a = app(|c| {
        c.max_streams_per_viewer = Some(1);
        c.tokens = vec![
            ("t-alice".into(), "alice".into()),
            ("t-bob".into(), "bob".into()),
        ];
    });
    a.fx.file("v.mp4", 1 << 20);
    let request = |token: &str| {
        let mut req = Request::get("/api/stream?path=v.mp4")
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap();
        req.extensions_mut()
            .insert(PeerAddr("127.0.0.1:40000".parse().unwrap()));
        req
    };
    let held = a.router.clone().oneshot(request("t-alice")).await.unwrap();
    assert_eq!(held.status(), StatusCode::OK);
    let refused = a.router.clone().oneshot(request("t-alice")).await.unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.headers()["retry-after"], "1");
    assert_eq!(
        body_bytes(refused).await.as_ref(),
        b"too many concurrent streams (at most 1 per viewer)"
    );
    // Another viewer is not affected.
    assert_eq!(
        a.router
            .clone()
            .oneshot(request("t-bob"))
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    // The held stream ends: alice may stream again.
    body_bytes(held).await;
    assert_eq!(
        a.router
            .clone()
            .oneshot(request("t-alice"))
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    // The refusal is in the log.
    assert!(a.writer.wait_idle(Duration::from_secs(5)));
    let refusals = a
        .store
        .count(&LogFilter {
            status: Some(429),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(refusals, 1);
}

/// One request to any router, with optional `authorization` and `range`.
async fn send(
    router: &Router,
    uri: &str,
    auth: Option<&str>,
    range: Option<&str>,
) -> (StatusCode, http::HeaderMap, Vec<u8>) {
    let mut builder = Request::get(uri);
    if let Some(auth) = auth {
        builder = builder.header("authorization", auth);
    }
    if let Some(range) = range {
        builder = builder.header("range", range);
    }
    let mut req = builder.body(Body::empty()).unwrap();
    req.extensions_mut()
        .insert(PeerAddr("127.0.0.1:40000".parse().unwrap()));
    let res = router.clone().oneshot(req).await.unwrap();
    let (status, headers) = (res.status(), res.headers().clone());
    (status, headers, body_bytes(res).await.to_vec())
}

async fn page(router: &Router, uri: &str, auth: Option<&str>) -> String {
    let (status, _, body) = send(router, uri, auth, None).await;
    assert_eq!(status, StatusCode::OK, "{uri}");
    String::from_utf8(body).unwrap()
}

/// The values of `attr` (`href`, `src`, `action`) in a page, unescaped.
fn attrs(html: &str, attr: &str) -> Vec<String> {
    let needle = format!(" {attr}=\"");
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(at) = rest.find(&needle) {
        rest = &rest[at + needle.len()..];
        let end = rest.find('"').unwrap();
        out.push(rest[..end].replace("&amp;", "&"));
        rest = &rest[end..];
    }
    out
}

/// Where a link goes: admin pages need the token, the player and the
/// stream must not get it.
fn auth_for(link: &str) -> Option<String> {
    link.contains("/admin").then(|| basic(TOKEN))
}

/// A media file's path relative to the root, from its player link.
fn played(link: &str) -> String {
    let query = link.split_once('?').unwrap().1;
    let play = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("play="))
        .unwrap();
    percent_encoding::percent_decode_str(play)
        .decode_utf8()
        .unwrap()
        .into_owned()
}

async fn nested_under_a_prefix_every_link_works() {
    let a = app(|c| c.tokens = vec![("tok".into(), "alice".into())]);
    let clip = a.fx.file("clip one.mp4", 3000);
    for i in 0..55 {
        a.fx.file(&format!("more/m{i:02}.mp4"), 100 + i);
    }
    let outer = Router::new().nest("/video", a.router.clone());

    let html = page(&outer, "/video?access_token=tok", None).await;
    assert!(html.contains("Files (56)") && html.contains("page 1 of 2"));
    let links = attrs(&html, "href");
    assert!(links.len() > 50);
    for link in &links {
        assert!(link.starts_with("/video"), "{link} is under the prefix");
    }
    let mut played_files = 0;
    for link in &links {
        let html = page(&outer, link, auth_for(link).as_deref()).await;
        if link.contains("play=") {
            assert!(link.contains("access_token=tok"), "{link} keeps the token");
            // The <video> and the direct link both stream the file.
            let srcs = attrs(&html, "src");
            assert_eq!(srcs.len(), 1);
            assert!(attrs(&html, "href").contains(&srcs[0]), "direct link");
            let want = std::fs::read(a.fx.path(&played(link))).unwrap();
            let (status, _, body) = send(&outer, &srcs[0], None, Some("bytes=0-")).await;
            assert_eq!(status, StatusCode::PARTIAL_CONTENT, "{}", srcs[0]);
            assert_eq!(body, want, "{}", srcs[0]);
            if played(link) == "clip one.mp4" {
                let (status, headers, body) =
                    send(&outer, &srcs[0], None, Some("bytes=100-1099")).await;
                assert_eq!(status, StatusCode::PARTIAL_CONTENT);
                assert_eq!(headers["content-range"], "bytes 100-1099/3000");
                assert_eq!(body, clip[100..1100]);
            }
            played_files += 1;
        } else if link.contains("page=2") {
            assert!(html.contains("page 2 of 2"), "{link}");
            assert_eq!(html.matches("<li>").count(), 6);
            assert!(attrs(&html, "href").iter().all(|l| l.starts_with("/video")));
        }
    }
    assert_eq!(played_files, 50);
    // The token in the stream links made the viewer alice.
    assert!(a.writer.wait_idle(Duration::from_secs(5)));
    let alice = LogFilter {
        user_id: Some("alice".into()),
        ..LogFilter::default()
    };
    assert_eq!(a.store.count(&alice).unwrap(), 51);

    // The admin under the prefix: the redirect, then every link and the
    // filter form, on the list (with an "older" page) and on analytics.
    let auth = basic(TOKEN);
    let (status, headers, _) = send(&outer, "/video/admin", Some(&auth), None).await;
    assert_eq!(status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(headers["location"], "/video/admin/");
    let html = page(&outer, "/video/admin/?status=206", Some(&auth)).await;
    assert_eq!(attrs(&html, "action"), ["/video/admin/"]);
    let links = attrs(&html, "href");
    for want in [
        "/video",
        "/video/admin/",
        "/video/admin/analytics",
        "/video/admin/export.csv?status=206",
        "/video/admin/export.json?status=206",
    ] {
        assert!(links.iter().any(|l| l == want), "{want} in {links:?}");
    }
    let older = links.iter().find(|l| l.contains("after=")).unwrap();
    assert!(older.starts_with("/video/admin/?status=206&after="));
    for link in &links {
        assert!(link.starts_with("/video"), "{link}");
        let (status, _, body) = send(&outer, link, auth_for(link).as_deref(), None).await;
        assert_eq!(status, StatusCode::OK, "{link}");
        if link.contains("export.csv") {
            let text = String::from_utf8(body).unwrap();
            assert_eq!(text.lines().count(), 1 + 51, "{link}");
        }
    }
    let newest = page(&outer, older, Some(&auth)).await;
    assert!(attrs(&newest, "href")
        .iter()
        .any(|l| l == "/video/admin/?status=206"));

    let html = page(&outer, "/video/admin/analytics", Some(&auth)).await;
    let links = attrs(&html, "href");
    assert!(links
        .iter()
        .any(|l| l == "/video/admin/?path=clip%20one%2Emp4"));
    for link in &links {
        assert!(link.starts_with("/video"), "{link}");
        let (status, _, _) = send(&outer, link, auth_for(link).as_deref(), None).await;
        assert_eq!(status, StatusCode::OK, "{link}");
    }
}

async fn nested_with_a_trailing_slash_links_keep_it() {
    let a = app(|_| {});
    let data = a.fx.file("a.mp4", 700);
    let outer = Router::new().nest("/video/", a.router.clone());
    let html = page(&outer, "/video/?play=a.mp4", None).await;
    let src = &attrs(&html, "src")[0];
    assert_eq!(src, "/video/api/stream?path=a.mp4");
    let (status, _, body) = send(&outer, src, None, Some("bytes=0-")).await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(body, data);
    let links = attrs(&html, "href");
    assert!(links.iter().any(|l| l == "/video/?play=a%2Emp4&page=1"));
    assert!(links.iter().any(|l| l == "/video/admin/"));
    let auth = basic(TOKEN);
    let (status, headers, _) = send(&outer, "/video/admin", Some(&auth), None).await;
    assert_eq!(status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(headers["location"], "/video/admin/");
    page(&outer, "/video/admin/", Some(&auth)).await;
}

async fn nested_as_a_service_both_video_and_video_slash_work() {
    let a = app(|_| {});
    let data = a.fx.file("a.mp4", 500);
    let outer = Router::new().nest_service("/video", a.router.clone());
    for uri in ["/video?play=a.mp4", "/video/?play=a.mp4"] {
        let html = page(&outer, uri, None).await;
        let src = &attrs(&html, "src")[0];
        assert_eq!(src, "/video/api/stream?path=a.mp4", "{uri}");
        let (status, _, body) = send(&outer, src, None, Some("bytes=0-")).await;
        assert_eq!(
            (status, body.as_slice()),
            (StatusCode::PARTIAL_CONTENT, &data[..])
        );
        for link in attrs(&html, "href") {
            let (status, _, _) = send(&outer, &link, auth_for(&link).as_deref(), None).await;
            assert_eq!(status, StatusCode::OK, "{uri}: {link}");
        }
    }
}

async fn merges_into_an_app_with_its_own_root_and_fallback() {
    let host = || {
        Router::new()
            .route("/", route_get(|| async { "host home" }))
            .fallback(|| async { (StatusCode::NOT_FOUND, "host fallback") })
    };
    let a = app(|c| c.player_path = Some("/watch".into()));
    let data = a.fx.file("m.mp4", 1234);
    let merged = host().merge(a.router.clone());
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap();

    let (status, _, body) = send(&merged, "/", None, None).await;
    assert_eq!((status, text(body).as_str()), (StatusCode::OK, "host home"));
    let (status, _, body) = send(&merged, "/nowhere", None, None).await;
    assert_eq!(
        (status, text(body).as_str()),
        (StatusCode::NOT_FOUND, "host fallback")
    );
    let html = page(&merged, "/watch", None).await;
    assert!(attrs(&html, "href")
        .iter()
        .any(|l| l == "/watch?play=m%2Emp4&page=1"));
    let html = page(&merged, "/watch?play=m.mp4", None).await;
    let (status, _, body) = send(&merged, &attrs(&html, "src")[0], None, Some("bytes=0-")).await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(body, data);
    let admin = page(&merged, "/admin/", Some(&basic(TOKEN))).await;
    assert!(attrs(&admin, "href").iter().any(|l| l == "/watch"));

    // Without a player: the host's fallback answers there, the admin
    // links no player.
    let off = app(|c| c.player_path = None);
    let merged = host().merge(off.router.clone());
    let (status, _, body) = send(&merged, "/watch", None, None).await;
    assert_eq!(
        (status, text(body).as_str()),
        (StatusCode::NOT_FOUND, "host fallback")
    );
    let admin = page(&merged, "/admin/", Some(&basic(TOKEN))).await;
    assert!(!admin.contains(">Player</a>"));
    let (_, _, body) = send(&merged, "/", None, None).await;
    assert_eq!(text(body), "host home");

    // Standalone, unknown paths are a plain 404.
    let (status, _, _) = send(&a.router, "/nowhere", None, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

fn a_player_path_must_be_a_free_plain_path() {
    for bad in ["watch", "/admin/", "/api/stream", "/{x}", "/p?x"] {
        let fx = Fixture::new();
        let store: Arc<dyn WatchLogStore> =
            Arc::new(SqliteStore::open(fx.dir.path().join("log.db")).unwrap());
        let (sink, writer) = WatchLogWriter::spawn(store.clone(), WriterConfig::default()).unwrap();
        let mut config = AppConfig::new(&fx.root);
        config.player_path = Some(bad.into());
        let err = router(&config, store, sink).unwrap_err();
        assert!(
            matches!(
                err,
                ConfigError::InvalidSetting {
                    name: "player_path",
                    ..
                }
            ),
            "{bad}: {err}"
        );
        writer.shutdown();
    }
}

const SCRIPT: &str = "<script>alert(1)</script>";
const ATTR: &str = "\"onmouseover=alert(1) x=\"";

/// Neither payload raw, and each escaped form that `want` names present.
fn assert_escaped(html: &str, what: &str, want_script: bool, want_attr: bool) {
    assert!(!html.contains("<script"), "{what}: raw <script>");
    assert!(
        !html.contains("\"onmouseover="),
        "{what}: raw attribute break-out"
    );
    if want_script {
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{what}: escaped <script>"
        );
    }
    if want_attr {
        assert!(
            html.contains("&quot;onmouseover=alert(1) x=&quot;"),
            "{what}: escaped attribute payload"
        );
    }
}

async fn what_requests_and_the_log_hold_is_escaped_on_every_page() {
    let a = app(|_| {});
    // As file names: the first is a directory "<script>alert(1)<" holding
    // "script>.mp4", so the listing shows the payload as the path.
    let script_file = format!("{SCRIPT}.mp4");
    let attr_file = format!("{ATTR}.mp4");
    a.fx.file(&script_file, 64);
    a.fx.file(&attr_file, 64);
    let mut rows = Vec::new();
    for (i, payload) in [SCRIPT, ATTR].into_iter().enumerate() {
        for (j, path) in [payload.to_owned(), format!("{payload}.mp4")]
            .into_iter()
            .enumerate()
        {
            let mut r = row(0, &path, Some(payload), payload, 206, (i * 10 + j) as i64);
            r.user_agent = Some(payload.into());
            r.range_header = Some(payload.into());
            rows.push(r);
            // The same as an anonymous viewer: sessions keyed by the IP text.
            let mut r = row(0, &path, None, payload, 206, (i * 10 + j) as i64);
            r.user_agent = Some(payload.into());
            rows.push(r);
        }
    }
    a.store.insert_batch(&WatchBatch::new(rows)).unwrap();
    let auth = basic(TOKEN);
    let enc = |t: &str| {
        percent_encoding::utf8_percent_encode(t, percent_encoding::NON_ALPHANUMERIC).to_string()
    };

    let player = page(&a.router, "/", None).await;
    assert_escaped(&player, "player", true, true);
    for file in [&script_file, &attr_file] {
        let uri = format!("/?play={}", enc(file));
        let playing = page(&a.router, &uri, None).await;
        assert!(playing.contains("<video"), "{uri}");
        assert_escaped(&playing, &uri, file == &script_file, file == &attr_file);
    }
    let list = page(&a.router, "/admin/", Some(&auth)).await;
    assert_eq!(table_rows(&list, "log"), 8);
    assert_escaped(&list, "admin list", true, true);
    let analytics = page(&a.router, "/admin/analytics", Some(&auth)).await;
    assert_eq!(table_rows(&analytics, "videos"), 4);
    assert_escaped(&analytics, "analytics", true, true);
    for payload in [SCRIPT, ATTR] {
        for var in ["q", "path", "user", "ip"] {
            let uri = format!("/admin/?{var}={}", enc(payload));
            let found = page(&a.router, &uri, Some(&auth)).await;
            assert!(table_rows(&found, "log") >= 1, "{uri}");
            assert_escaped(&found, &uri, payload == SCRIPT, payload == ATTR);
            let uri = format!("/admin/analytics?{var}={}", enc(payload));
            let found = page(&a.router, &uri, Some(&auth)).await;
            assert_escaped(&found, &uri, payload == SCRIPT, payload == ATTR);
        }
    }
    // The search box echoes q in its value attribute, escaped.
    let found = page(&a.router, &format!("/admin/?q={}", enc(ATTR)), Some(&auth)).await;
    assert!(found.contains("value=\"&quot;onmouseover=alert(1) x=&quot;\""));
    // Refusals are plain text and do not echo the input.
    let (status, headers, body) = send(
        &a.router,
        &format!("/admin/?status={}", enc(SCRIPT)),
        Some(&auth),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    assert!(!String::from_utf8(body).unwrap().contains("script"));
}

/// Behind a trusted proxy (nginx on 127.0.0.1) each anonymous client gets
/// its own streams, and the log and the limit agree on who it is.
async fn the_stream_limit_and_the_log_see_clients_behind_a_trusted_proxy() {
    let a = app(|c| {
        c.max_streams_per_viewer = Some(1);
        c.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    });
    a.fx.file("p.mp4", 1 << 20);
    let request = |client: &str| {
        let mut req = Request::get("/api/stream?path=p.mp4")
            .header("x-forwarded-for", client)
            .body(Body::empty())
            .unwrap();
        req.extensions_mut()
            .insert(PeerAddr("127.0.0.1:40000".parse().unwrap()));
        req
    };
    let one = a
        .router
        .clone()
        .oneshot(request("203.0.113.1"))
        .await
        .unwrap();
    let two = a
        .router
        .clone()
        .oneshot(request("203.0.113.2"))
        .await
        .unwrap();
    let again = a
        .router
        .clone()
        .oneshot(request("203.0.113.1"))
        .await
        .unwrap();
    assert_eq!(one.status(), StatusCode::OK);
    assert_eq!(
        two.status(),
        StatusCode::OK,
        "another client behind the proxy"
    );
    assert_eq!(again.status(), StatusCode::TOO_MANY_REQUESTS);
    body_bytes(again).await;
    body_bytes(one).await;
    body_bytes(two).await;
    assert!(a.writer.wait_idle(Duration::from_secs(10)));
    let rows = a
        .store
        .query(&LogFilter::default(), None, 10)
        .unwrap()
        .entries;
    let mut seen: Vec<(String, i32)> = rows
        .iter()
        .map(|r| (r.viewer_key.clone(), r.status))
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("ip:203.0.113.1".to_owned(), 200),
            ("ip:203.0.113.1".to_owned(), 429),
            ("ip:203.0.113.2".to_owned(), 200),
        ]
    );
}

/// Every page carries a strict CSP with no script and no framing, and the
/// one inline style sheet is allowed by its hash (so the page still looks
/// right); the stream keeps its own sandboxing policy.
async fn pages_have_a_strict_content_security_policy() {
    use base64::Engine as _;
    use sha2::Digest as _;
    let a = app(|_| {});
    a.fx.file("c.mp4", 100);
    let admin = format!("Bearer {TOKEN}");
    for (uri, auth) in [
        ("/", None),
        ("/?play=c.mp4", None),
        ("/admin/", Some(admin.as_str())),
        ("/admin/analytics", Some(admin.as_str())),
    ] {
        let (status, headers, html) = get(&a, uri, auth).await;
        assert_eq!(status, StatusCode::OK, "{uri}");
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(csp.starts_with("default-src 'none';"), "{uri}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert!(
            !csp.contains("script-src") && !csp.contains("unsafe"),
            "{csp}"
        );
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(headers["x-frame-options"], "DENY");
        assert!(
            !html.contains("<script") && !html.contains(" style="),
            "{uri}"
        );
        let style = html
            .split_once("<style>")
            .and_then(|(_, rest)| rest.split_once("</style>"))
            .map(|(css, _)| css)
            .unwrap();
        let hash = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(style));
        assert!(csp.contains(&format!("style-src 'sha256-{hash}'")), "{csp}");
    }
    let (_, headers, _) = get(&a, "/api/stream?path=c.mp4", None).await;
    assert_eq!(
        headers["content-security-policy"],
        "sandbox; default-src 'none'"
    );
}

/// With `anonymize_ip`, the log keeps only the network part of each client
/// IP (IPv4 /24, IPv6 /48, IPv4-mapped as IPv4): in the rows, the viewer
/// key, the analytics' counts and the exports. The stream limit still
/// tells two clients of one /24 apart.
async fn anonymized_ips_are_all_the_log_keeps(store: Arc<dyn WatchLogStore>) {
    let a = app_with(Fixture::new(), Some(store), |c| {
        c.settings.anonymize_ip = true;
        c.max_streams_per_viewer = Some(1);
        c.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    });
    a.fx.file("p.mp4", 1 << 20);
    let request = |client: &str| {
        let mut req = Request::get("/api/stream?path=p.mp4")
            .header("x-forwarded-for", client)
            .body(Body::empty())
            .unwrap();
        req.extensions_mut()
            .insert(PeerAddr("127.0.0.1:40000".parse().unwrap()));
        a.router.clone().oneshot(req)
    };
    let one = request("203.0.113.1").await.unwrap();
    let two = request("203.0.113.2").await.unwrap();
    let again = request("203.0.113.1").await.unwrap();
    assert_eq!(one.status(), StatusCode::OK);
    assert_eq!(
        two.status(),
        StatusCode::OK,
        "the limit sees the full address"
    );
    assert_eq!(again.status(), StatusCode::TOO_MANY_REQUESTS);
    for res in [one, two, again] {
        body_bytes(res).await;
    }
    for client in [
        "2001:db8:85a3:8d3:1319:8a2e:370:7348",
        "::ffff:198.51.100.77",
    ] {
        body_bytes(request(client).await.unwrap()).await;
    }
    assert!(a.writer.wait_idle(Duration::from_secs(10)));
    let rows = a
        .store
        .query(&LogFilter::default(), None, 10)
        .unwrap()
        .entries;
    let mut stored: Vec<(Option<String>, String)> = rows
        .iter()
        .map(|r| (r.ip.clone(), r.viewer_key.clone()))
        .collect();
    stored.sort();
    let expect = |ip: &str| (Some(ip.to_owned()), format!("ip:{ip}"));
    assert_eq!(
        stored,
        [
            expect("198.51.100.0"),
            expect("2001:db8:85a3::"),
            expect("203.0.113.0"),
            expect("203.0.113.0"),
            expect("203.0.113.0"),
        ]
    );
    let stats = a.store.path_stats(&LogFilter::default(), 10).unwrap();
    assert_eq!((stats[0].views, stats[0].unique_viewers), (5, 3));
    let auth = basic(TOKEN);
    let full = ["203.0.113.1", "203.0.113.2", "370:7348", "198.51.100.77"];
    for page in [
        "/admin/",
        "/admin/analytics",
        "/admin/export.csv",
        "/admin/export.json",
    ] {
        let (status, _, body) = get(&a, page, Some(&auth)).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert!(body.contains("203.0.113.0"), "{page}: {body}");
        for ip in full {
            assert!(!body.contains(ip), "{page} shows {ip}");
        }
    }
}

async fn sqlite_anonymized_ips_are_all_the_log_keeps() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("log.db")).unwrap();
    anonymized_ips_are_all_the_log_keeps(Arc::new(store)).await;
}

#[cfg(feature = "postgres")]
async fn postgres_anonymized_ips_are_all_the_log_keeps() {
    let db = common::pg::TestDb::create();
    let store = sage_stream::log::PgStore::connect(&db.url).unwrap();
    anonymized_ips_are_all_the_log_keeps(Arc::new(store)).await;
}

/// An export's body, with the number of data frames it came in.
async fn export_body(a: &App, uri: &str) -> (String, usize) {
    use http_body_util::BodyExt;
    let mut req = Request::get(uri)
        .header("authorization", basic(TOKEN))
        .body(Body::empty())
        .unwrap();
    req.extensions_mut()
        .insert(PeerAddr("127.0.0.1:40000".parse().unwrap()));
    let res = a.router.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK, "{uri}");
    let mut body = res.into_body();
    let (mut bytes, mut frames) = (Vec::new(), 0);
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            bytes.extend_from_slice(&data);
            frames += 1;
        }
    }
    (String::from_utf8(bytes).unwrap(), frames)
}

/// Exports stream page by page and say exactly what one rendering of the
/// whole filtered set says (the format they always had): every row once,
/// newest first, ties in time broken by id across page boundaries.
async fn exports_stream_the_whole_filtered_set(store: Arc<dyn WatchLogStore>) {
    use sage_stream::log::export::to_csv;
    let a = app_with(Fixture::new(), Some(store), |_| {});
    // 12 345 rows: more than two pages of 5 000, three rows per instant,
    // exactly 5 000 on one path, text that CSV must quote or defuse.
    let rows: Vec<WatchRecord> = (0..12_345u32)
        .map(|i| {
            let path = if i % 5 < 2 {
                "exact.mp4"
            } else {
                "other, \"q\".mp4"
            };
            let mut r = row(
                i,
                path,
                (i % 4 == 0).then_some("=alice"),
                "10.0.0.1",
                206,
                0,
            );
            r.created_at += chrono::Duration::seconds(i64::from(i / 3));
            r.status = if i % 7 == 0 { 404 } else { 206 };
            r
        })
        .collect();
    assert_eq!(rows.iter().filter(|r| r.path == "exact.mp4").count(), 4_938);
    // Top the path up to exactly one page.
    let mut rows = rows;
    for i in 0..62u32 {
        let mut r = row(20_000 + i, "exact.mp4", None, "10.0.0.2", 206, 0);
        r.created_at += chrono::Duration::seconds(i64::from(i / 3));
        rows.push(r);
    }
    for chunk in rows.chunks(5_000) {
        a.store
            .insert_batch(&WatchBatch::new(chunk.to_vec()))
            .unwrap();
    }
    let all = |filter: LogFilter| a.store.query(&filter, None, 100_000).unwrap().entries;
    for (query, filter) in [
        ("", LogFilter::default()),
        (
            "?status=404",
            LogFilter {
                status: Some(404),
                ..Default::default()
            },
        ),
        (
            "?path=exact.mp4",
            LogFilter {
                path: Some("exact.mp4".into()),
                ..Default::default()
            },
        ),
        (
            "?user=nobody",
            LogFilter {
                user_id: Some("nobody".into()),
                ..Default::default()
            },
        ),
    ] {
        let expected = all(filter);
        let (csv, frames) = export_body(&a, &format!("/admin/export.csv{query}")).await;
        assert_eq!(csv, to_csv(&expected), "csv{query}");
        assert!(
            frames > expected.len() / 1_000,
            "streamed in {frames} pieces"
        );
        let (json, _) = export_body(&a, &format!("/admin/export.json{query}")).await;
        assert_eq!(
            json,
            serde_json::to_string_pretty(&expected).unwrap(),
            "json{query}"
        );
        let parsed: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
        assert_eq!(parsed.len(), expected.len(), "json{query}");
        let keys: Vec<(String, i64)> = parsed
            .iter()
            .map(|r| {
                (
                    r["created_at"].as_str().unwrap().to_owned(),
                    r["id"].as_i64().unwrap(),
                )
            })
            .collect();
        assert!(
            keys.windows(2).all(|w| w[0] > w[1]),
            "newest first, no repeat"
        );
        match query {
            "" => assert_eq!(parsed.len(), 12_407),
            "?path=exact.mp4" => assert_eq!(parsed.len(), 5_000, "exactly one page"),
            "?user=nobody" => {
                assert_eq!(json, "[]");
                assert_eq!(csv.lines().count(), 1, "the header alone");
            }
            _ => assert!(parsed.iter().all(|r| r["status"] == 404)),
        }
    }
}

async fn sqlite_exports_stream_the_whole_filtered_set() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("log.db")).unwrap();
    exports_stream_the_whole_filtered_set(Arc::new(store)).await;
}

#[cfg(feature = "postgres")]
async fn postgres_exports_stream_the_whole_filtered_set() {
    let db = common::pg::TestDb::create();
    let store = sage_stream::log::PgStore::connect(&db.url).unwrap();
    exports_stream_the_whole_filtered_set(Arc::new(store)).await;
}

/// Every configuration type, formatted with `{:?}` (and `{}` where it has
/// one), shows no secret: not the signing key, the bearer or admin tokens,
/// nor the password of a database or authentication URL.
fn debug_and_display_never_show_secrets() {
    use sage_stream::log::{open_store, StoreError};
    use sage_stream::server::ServerConfig;
    let secrets = [
        "sk-SECRET-1",
        "authpw-SECRET-2",
        "tok-SECRET-3",
        "adm-SECRET-4",
        "dbpw-SECRET-5",
    ];
    let check = |what: &str, text: String| {
        for secret in secrets {
            assert!(!text.contains(secret), "{what} shows {secret}: {text}");
        }
    };
    let mut settings = sage_stream::settings::Settings::default()
        .signing_key(Some("sk-SECRET-1".to_owned()))
        .auth_url(Some(
            "https://django:authpw-SECRET-2@auth.example/check".to_owned(),
        ));
    settings.media_url = Some("/media/".to_owned());
    let text = format!("{settings:?}");
    check("Settings", text.clone());
    assert!(text.contains("signing_key: Some(\"***\")"), "{text}");
    assert!(
        text.contains("https://django:***@auth.example/check"),
        "{text}"
    );
    assert!(text.contains("/media/"), "the rest stays visible: {text}");

    // The settings' errors and the forward-auth permission built from them.
    let err = settings.permission().unwrap_err();
    check(
        "ConfigError (a URL without its class)",
        format!("{err} {err:?}"),
    );
    let mut with_class = settings.clone();
    with_class.default_permission_classes =
        vec![sage_stream::settings::PermissionClass::AuthRequest];
    match with_class.permission() {
        Ok(auth) => check("RoutePermission (AuthRequest)", format!("{auth:?}")),
        Err(err) => check("ConfigError (AuthRequest)", format!("{err} {err:?}")),
    }
    with_class.auth_url = Some("ftp://django:authpw-SECRET-2@auth.example/".to_owned());
    let err = with_class.permission().unwrap_err();
    check("ConfigError (a bad auth URL)", format!("{err} {err:?}"));

    let mut app = AppConfig::new("/srv/media");
    app.settings = settings;
    app.tokens = vec![("tok-SECRET-3".to_owned(), "alice".to_owned())];
    app.admin_token = Some("adm-SECRET-4".to_owned());
    let text = format!("{app:?}");
    check("AppConfig", text.clone());
    assert!(
        text.contains("alice") && text.contains("/srv/media"),
        "{text}"
    );

    let writer = WriterConfig::default().spool_path("/var/spool/sage");
    check("WriterConfig", format!("{writer:?}"));
    check("ServerConfig", format!("{:?}", ServerConfig::default()));

    let url = "mysql://me:dbpw-SECRET-5@db.example/log";
    let Err(err) = open_store(url) else {
        panic!("mysql is not a backend")
    };
    check("StoreError::UnsupportedUrl", format!("{err} {err:?}"));
    assert!(
        format!("{err:?}").contains("mysql://me:***@db.example/log"),
        "{err:?}"
    );
    let redacted = sage_stream::redact_url(
        "postgres://user:dbpw-SECRET-5@host:5432/db?sslpassword=dbpw-SECRET-5&sslmode=require",
    );
    assert_eq!(
        redacted,
        "postgres://user:***@host:5432/db?sslpassword=***&sslmode=require"
    );
    for err in [
        StoreError::Unavailable {
            source: "down".into(),
        },
        StoreError::BackendDisabled { feature: "sqlite" },
    ] {
        check("StoreError", format!("{err} {err:?}"));
    }
    // A real driver error, from a server that is not there.
    #[cfg(feature = "postgres")]
    {
        let store = open_store("postgres://me:dbpw-SECRET-5@127.0.0.1:1/log");
        match store {
            Ok(store) => {
                let err = store.ping().unwrap_err();
                check("a PostgreSQL error", format!("{err} {err:?}"));
            }
            Err(err) => check("a PostgreSQL error", format!("{err} {err:?}")),
        }
    }
}
