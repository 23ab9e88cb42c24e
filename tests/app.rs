//! The server's pages through `oneshot` on the router: player, admin
//! (auth, search, filters, pagination, exports, analytics) and the
//! per-viewer stream limit.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::Router;
use base64::Engine as _;
use chrono::{TimeZone, Utc};
use common::{body_bytes, Fixture};
use http::{Request, StatusCode};
use sage_stream::app::{router, AppConfig};
use sage_stream::extension::PeerAddr;
use sage_stream::log::{
    LogFilter, SqliteStore, WatchBatch, WatchLogStore, WatchLogWriter, WatchRecord, WriterConfig,
    WriterHandle,
};
use tower::ServiceExt;

const TOKEN: &str = "adm1n-token";

struct App {
    router: Router,
    store: Arc<dyn WatchLogStore>,
    writer: WriterHandle,
    fx: Fixture,
}

fn app(configure: impl FnOnce(&mut AppConfig)) -> App {
    let fx = Fixture::new();
    let store: Arc<dyn WatchLogStore> =
        Arc::new(SqliteStore::open(fx.dir.path().join("log.db")).unwrap());
    let (sink, writer) = WatchLogWriter::spawn(
        store.clone(),
        WriterConfig {
            flush_interval: Duration::from_millis(10),
            ..WriterConfig::default()
        },
    )
    .unwrap();
    let mut config = AppConfig::new(&fx.root);
    config.admin_token = Some(TOKEN.to_owned());
    configure(&mut config);
    App {
        router: router(&config, store.clone(), sink).unwrap(),
        store,
        writer,
        fx,
    }
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
    }
}

/// Rows in `<tbody>` of the table with this id.
fn table_rows(html: &str, id: &str) -> usize {
    let start = html.find(&format!("<table id=\"{id}\"")).expect("table");
    let body = &html[start..];
    let body = &body[body.find("<tbody>").unwrap()..body.find("</tbody>").unwrap()];
    body.matches("<tr>").count() - usize::from(body.contains("class=\"muted\""))
}

#[tokio::test]
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

#[tokio::test]
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
    ] {
        let (status, _, body) = get(&a, bad, Some(&auth)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(!body.is_empty());
    }
}

#[tokio::test]
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

#[tokio::test]
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

#[tokio::test]
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
    assert!(playing.contains("src=\"/api/stream?path=clips%2Fc07%2Emp4\""));
    // Files outside the listing are not offered.
    let (_, _, nothing) = get(&a, "/?play=..%2Fsecret.txt", None).await;
    assert!(!nothing.contains("<video"));
}

#[tokio::test]
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

#[tokio::test]
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
