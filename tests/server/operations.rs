//! What operators rely on: `/healthz`, `/readyz`, Prometheus `/metrics`
//! with exact counters after known traffic, and the access log (text and
//! JSON), through `oneshot` on the app and through the real binary.

use crate::common;

use std::time::Duration;

use axum::body::Body;
use common::served::Served;
use common::Fixture;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use sage_stream::app::{metrics_router, AppConfig};
use sage_stream::log::{LogFilter, SqliteStore, WatchLogStore};
use sage_stream::observe::Metrics;
use sage_stream::settings::PermissionClass;
use tower::ServiceExt;

/// The value of one series (`name{labels}` exactly as rendered).
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no series {series} in\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

/// The app, with `extra` the metrics it counts into.
type App = common::app::TestApp<Metrics>;

fn app(configure: impl FnOnce(&mut AppConfig)) -> (App, Vec<u8>) {
    let fx = Fixture::new();
    let data = fx.file("clip.mp4", 50_000);
    let metrics = Metrics::new();
    let app = App::with(fx, None, metrics.clone(), |config| {
        config.metrics = Some(metrics);
        config.tokens = vec![("tok".into(), "alice".into())];
        configure(config)
    });
    (app, data)
}

async fn send(app: &App, uri: &str, headers: &[(&str, &str)]) -> http::Response<Body> {
    let mut req = Request::get(uri);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    app.router
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap()
}

async fn body(res: http::Response<Body>) -> Vec<u8> {
    res.into_body().collect().await.unwrap().to_bytes().to_vec()
}

#[tokio::test]
async fn metrics_count_exactly_what_was_served() {
    let (app, data) = app(|c| c.max_streams_per_viewer = Some(1));
    let bearer = [("authorization", "Bearer tok")];
    // Three ranged reads of 100, 1 000 and 10 000 bytes.
    let mut sent = 0;
    for (i, len) in [100usize, 1_000, 10_000].into_iter().enumerate() {
        let start = i * 7;
        let range = format!("bytes={start}-{}", start + len - 1);
        let res = send(
            &app,
            "/api/stream?path=clip.mp4",
            &[bearer[0], ("range", &range)],
        )
        .await;
        assert_eq!(res.status(), StatusCode::PARTIAL_CONTENT);
        let got = body(res).await;
        assert_eq!(got, data[start..start + len]);
        sent += got.len();
    }
    // A missing file and an unsatisfiable range: two 4xx with short bodies.
    let missing = send(&app, "/api/stream?path=nope.mp4", &bearer).await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    sent += body(missing).await.len();
    let unsatisfiable = send(
        &app,
        "/api/stream?path=clip.mp4",
        &[bearer[0], ("range", "bytes=99999999-")],
    )
    .await;
    assert_eq!(unsatisfiable.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    sent += body(unsatisfiable).await.len();

    // One stream held open: active, and the viewer's second is refused.
    let held = send(&app, "/api/stream?path=clip.mp4", &bearer).await;
    assert_eq!(held.status(), StatusCode::OK);
    let text = app.extra.render();
    assert_eq!(value(&text, "sage_stream_active_streams"), 1.0);
    let refused = send(&app, "/api/stream?path=clip.mp4", &bearer).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    sent += body(refused).await.len();
    sent += body(held).await.len();

    // Health probes and pages: probes are not counted, pages are.
    let health = send(&app, "/healthz", &[]).await;
    assert_eq!(health.status(), StatusCode::OK);
    assert_eq!(body(health).await, b"ok\n");
    let ready = send(&app, "/readyz", &[]).await;
    assert_eq!(ready.status(), StatusCode::OK);
    let player = send(&app, "/", &[]).await;
    assert_eq!(player.status(), StatusCode::OK);
    let page_bytes = body(player).await.len();

    assert!(app.writer.wait_idle(Duration::from_secs(10)));
    let text = app.extra.render();
    let stream = |class: &str| {
        value(
            &text,
            &format!("sage_stream_requests_total{{route=\"stream\",class=\"{class}\"}}"),
        )
    };
    assert_eq!(stream("2xx"), 4.0, "{text}");
    assert_eq!(stream("4xx"), 3.0);
    assert_eq!(stream("5xx"), 0.0);
    assert_eq!(
        value(
            &text,
            "sage_stream_requests_total{route=\"page\",class=\"2xx\"}"
        ),
        1.0
    );
    assert_eq!(
        value(&text, "sage_stream_response_bytes_total{route=\"stream\"}"),
        sent as f64
    );
    assert_eq!(
        value(&text, "sage_stream_response_bytes_total{route=\"page\"}"),
        page_bytes as f64
    );
    assert_eq!(value(&text, "sage_stream_active_streams"), 0.0);
    assert_eq!(
        value(&text, "sage_stream_refusals_total{reason=\"stream_limit\"}"),
        1.0
    );
    assert_eq!(
        value(&text, "sage_stream_refusals_total{reason=\"permission\"}"),
        0.0
    );
    assert_eq!(
        value(
            &text,
            "sage_stream_request_duration_seconds_count{route=\"stream\"}"
        ),
        7.0
    );
    // Every stream response was logged (refusals too) and stored.
    let rows = app.store.count(&LogFilter::default()).unwrap();
    assert_eq!(rows, 7);
    assert_eq!(
        value(&text, "sage_stream_watch_log_rows_recorded_total"),
        7.0
    );
    assert_eq!(
        value(&text, "sage_stream_watch_log_rows_written_total"),
        7.0
    );
    assert_eq!(value(&text, "sage_stream_watch_log_queue_rows"), 0.0);
    assert_eq!(value(&text, "sage_stream_watch_log_store_failing"), 0.0);
    assert!(text.ends_with("# EOF\n"));

    // The endpoint that serves them.
    let res = metrics_router(app.extra.clone())
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text"));
    let scraped = String::from_utf8(body(res).await).unwrap();
    assert_eq!(
        value(
            &scraped,
            "sage_stream_requests_total{route=\"stream\",class=\"2xx\"}"
        ),
        4.0
    );
}

#[tokio::test]
async fn permission_refusals_are_counted() {
    let (app, _) = app(|c| {
        c.settings.default_permission_classes = vec![PermissionClass::IsAuthenticated];
    });
    for _ in 0..2 {
        let res = send(&app, "/api/stream?path=clip.mp4", &[]).await;
        assert!(
            matches!(
                res.status(),
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
            ),
            "{}",
            res.status()
        );
        body(res).await;
    }
    let ok = send(
        &app,
        "/api/stream?path=clip.mp4",
        &[("authorization", "Bearer tok"), ("range", "bytes=0-9")],
    )
    .await;
    assert_eq!(ok.status(), StatusCode::PARTIAL_CONTENT);
    body(ok).await;
    let text = app.extra.render();
    assert_eq!(
        value(&text, "sage_stream_refusals_total{reason=\"permission\"}"),
        2.0
    );
    assert_eq!(
        value(
            &text,
            "sage_stream_requests_total{route=\"stream\",class=\"2xx\"}"
        ),
        1.0
    );
}

/// `serve` with `args`, its log in `dir/stderr.log`.
fn start(args: &[&str], dir: &std::path::Path) -> (Served, std::path::PathBuf) {
    let stderr = dir.join("stderr.log");
    (Served::start_logging(args, &[], &stderr), stderr)
}

/// The access-log events among JSON log lines.
fn access_lines(logs: &str) -> Vec<serde_json::Value> {
    logs.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|v| v["target"] == "sage_stream::access")
        .collect()
}

/// Stops `served` (which must exit cleanly); what it logged.
fn stop(served: Served, stderr: &std::path::Path) -> String {
    let (ok, rest) = served.stop();
    assert!(ok, "{rest}");
    std::fs::read_to_string(stderr).unwrap()
}

#[test]
fn the_binary_serves_probes_metrics_and_json_access_logs() {
    let fx = Fixture::new();
    let data = fx.file("clip.mp4", 30_000);
    let db = format!("sqlite://{}", fx.dir.path().join("log.db").display());
    let (served, stderr) = start(
        &[
            "--root",
            fx.root.to_str().unwrap(),
            "--database",
            &db,
            "--metrics-bind",
            "127.0.0.1:0",
            "--log-format",
            "json",
            "--token",
            "tok=bob",
        ],
        fx.dir.path(),
    );
    let metrics_url = served
        .banner_url("metrics")
        .expect("metrics URL in the banner");
    let base = served.base.clone();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let scraped = rt.block_on(async {
        let client = reqwest::Client::new();
        for i in 0..5usize {
            let res = client
                .get(format!("{base}/api/stream?path=clip.mp4"))
                .header("range", format!("bytes={}-{}", i * 1000, i * 1000 + 499))
                .header("authorization", "Bearer tok")
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 206);
            assert_eq!(
                res.bytes().await.unwrap().as_ref(),
                &data[i * 1000..i * 1000 + 500]
            );
        }
        let res = client
            .get(format!("{base}/api/stream?path=missing.mp4"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 404);
        let missing_len = res.bytes().await.unwrap().len();
        let health = client.get(format!("{base}/healthz")).send().await.unwrap();
        assert_eq!(health.status(), 200);
        let ready = client.get(format!("{base}/readyz")).send().await.unwrap();
        assert_eq!(ready.status(), 200);
        assert_eq!(ready.text().await.unwrap(), "ready\n");
        // Metrics are not on the public listener.
        let public = client.get(format!("{base}/metrics")).send().await.unwrap();
        assert_eq!(public.status(), 404);
        // The last body ends just before its response is counted: poll.
        let mut text = String::new();
        for _ in 0..100 {
            text = client
                .get(&metrics_url)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            if text.contains("sage_stream_watch_log_rows_written_total 6") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (text, missing_len)
    });
    let (text, missing_len) = scraped;
    assert_eq!(
        value(
            &text,
            "sage_stream_requests_total{route=\"stream\",class=\"2xx\"}"
        ),
        5.0,
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            "sage_stream_requests_total{route=\"stream\",class=\"4xx\"}"
        ),
        1.0
    );
    assert_eq!(
        value(&text, "sage_stream_response_bytes_total{route=\"stream\"}"),
        (2500 + missing_len) as f64
    );
    assert_eq!(value(&text, "sage_stream_active_streams"), 0.0);
    assert_eq!(
        value(&text, "sage_stream_watch_log_rows_written_total"),
        6.0
    );

    let logs = stop(served, &stderr);
    let access = access_lines(&logs);
    // Six stream responses, then the /metrics 404 on the public listener.
    assert_eq!(access.len(), 7, "{logs}");
    assert_eq!(access[6]["path"], "/metrics");
    assert_eq!(access[6]["status"], 404);
    let first = &access[0];
    assert_eq!(first["level"], "INFO");
    assert_eq!(first["method"], "GET");
    assert_eq!(first["path"], "/api/stream");
    assert_eq!(first["media"], "clip.mp4");
    assert_eq!(first["status"], 206);
    assert_eq!(first["bytes"], 500);
    assert_eq!(first["viewer"], "u:bob");
    assert_eq!(first["completed"], true);
    assert!(first["duration_ms"].is_u64());
    assert_eq!(access[5]["status"], 404);
    assert_eq!(access[5]["viewer"], "ip:127.0.0.1");
    // Every line on stderr is JSON.
    assert!(
        logs.lines()
            .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()),
        "{logs}"
    );
}

#[test]
fn the_access_log_can_be_turned_off() {
    let fx = Fixture::new();
    fx.file("clip.mp4", 1_000);
    let db = format!("sqlite://{}", fx.dir.path().join("log.db").display());
    let (served, stderr) = start(
        &[
            "--root",
            fx.root.to_str().unwrap(),
            "--database",
            &db,
            "--no-access-log",
        ],
        fx.dir.path(),
    );
    let base = served.base.clone();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let res = reqwest::get(format!("{base}/api/stream?path=clip.mp4"))
            .await
            .unwrap();
        assert_eq!(res.bytes().await.unwrap().len(), 1_000);
    });
    let logs = stop(served, &stderr);
    assert!(!logs.contains("sage_stream::access"), "{logs}");
    // And on by default, as text.
    let (served, stderr) = start(
        &["--root", fx.root.to_str().unwrap(), "--database", &db],
        fx.dir.path(),
    );
    let base = served.base.clone();
    rt.block_on(async {
        let res = reqwest::get(format!("{base}/api/stream?path=clip.mp4"))
            .await
            .unwrap();
        assert_eq!(res.bytes().await.unwrap().len(), 1_000);
    });
    let logs = stop(served, &stderr);
    let line = logs
        .lines()
        .find(|l| l.contains("sage_stream::access"))
        .unwrap_or_else(|| panic!("no access line in {logs}"));
    for field in [
        "method=GET",
        "status=200",
        "bytes=1000",
        "media=\"clip.mp4\"",
    ] {
        assert!(line.contains(field), "{field} missing in {line}");
    }
    // Not a terminal: no colour codes.
    assert!(!logs.contains('\u{1b}'), "{logs}");
}

/// `/readyz` is public: with the database down it says 503 and a generic
/// reason, never the driver's error (host, port, database, user); the
/// details go to the server's log, with the password hidden there too.
#[test]
fn readyz_is_503_without_naming_the_database() {
    let fx = Fixture::new();
    fx.file("clip.mp4", 1_000);
    // Nothing listens on port 1: every connection is refused at once.
    let (served, stderr) = start(
        &[
            "--root",
            fx.root.to_str().unwrap(),
            "--database",
            "postgres://sagesecretuser:hunter2@127.0.0.1:1/sageprivatedb",
            "--spool",
            fx.dir.path().join("spool").to_str().unwrap(),
        ],
        fx.dir.path(),
    );
    let base = served.base.clone();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let res = reqwest::get(format!("{base}/readyz")).await.unwrap();
        assert_eq!(res.status(), 503);
        let reason = res.text().await.unwrap();
        assert_eq!(reason, "not ready: watch-log store unavailable\n");
        for secret in [
            "127.0.0.1",
            "port",
            "sagesecretuser",
            "hunter2",
            "sageprivatedb",
        ] {
            assert!(!reason.contains(secret), "{secret} in {reason}");
        }
        // Liveness stays up, and streaming goes on.
        let res = reqwest::get(format!("{base}/healthz")).await.unwrap();
        assert_eq!(res.status(), 200);
        let res = reqwest::get(format!("{base}/api/stream?path=clip.mp4"))
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.bytes().await.unwrap().len(), 1_000);
    });
    let logs = stop(served, &stderr);
    // The operator's log has the reason.
    assert!(
        logs.lines()
            .any(|l| l.contains("readiness") && l.contains("127.0.0.1")),
        "{logs}"
    );
    assert!(!logs.contains("hunter2"), "{logs}");
}

#[test]
fn anonymize_ip_also_covers_the_access_log() {
    let fx = Fixture::new();
    fx.file("clip.mp4", 1_000);
    let db = format!("sqlite://{}", fx.dir.path().join("log.db").display());
    let (served, stderr) = start(
        &[
            "--root",
            fx.root.to_str().unwrap(),
            "--database",
            &db,
            "--anonymize-ip",
            "--log-format",
            "json",
            "--metrics-bind",
            "127.0.0.1:0",
        ],
        fx.dir.path(),
    );
    let base = served.base.clone();
    let metrics_url = served.banner_url("metrics").unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let text = rt.block_on(async {
        let res = reqwest::get(format!("{base}/api/stream?path=clip.mp4"))
            .await
            .unwrap();
        assert_eq!(res.bytes().await.unwrap().len(), 1_000);
        reqwest::get(&metrics_url)
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    // The bounds' and retention's counters are exported, at zero here.
    assert_eq!(
        value(&text, "sage_stream_watch_log_rows_dropped_total"),
        0.0
    );
    assert_eq!(value(&text, "sage_stream_watch_log_rows_pruned_total"), 0.0);
    let logs = stop(served, &stderr);
    let access = access_lines(&logs);
    assert_eq!(access.len(), 1, "{logs}");
    assert_eq!(access[0]["viewer"], "ip:127.0.0.0");
    assert!(!logs.contains("127.0.0.1\""), "{logs}");
    let store = SqliteStore::open(fx.dir.path().join("log.db")).unwrap();
    let rows = store
        .query(&LogFilter::default(), None, 10)
        .unwrap()
        .entries;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].ip.as_deref(), Some("127.0.0.0"));
}
