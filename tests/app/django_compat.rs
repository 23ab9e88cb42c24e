//! Moving from django-sage-streaming: the media URL prefix, the range regex
//! matched as Python matches it, forward authentication against a real
//! HTTP endpoint, and links signed by the Python function in
//! `docs/django.md`. The Python tests need `python3` (reported ignored
//! without it unless `SAGE_STREAM_REQUIRE_PYTHON=1`).

use crate::common;

use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use common::harness::{Requirement, Test};
use common::{body_bytes, Fixture};
use http::{Request, StatusCode};
use sage_stream::app::{router, AppConfig};
use sage_stream::extension::PeerAddr;
use sage_stream::log::{LogFilter, SqliteStore, WatchLogStore, WatchLogWriter, WriterConfig};
use sage_stream::range::ParseRangeLayer;
use sage_stream::settings::{django_regex, PermissionClass, Settings};
use tower::ServiceExt;

pub fn tests() -> Vec<Test> {
    vec![
        Test::tokio(
            "the_media_url_prefix_names_the_file_below_the_root",
            the_media_url_prefix_names_the_file_below_the_root,
        ),
        Test::tokio(
            "the_range_regex_captures_what_python_captures",
            the_range_regex_captures_what_python_captures,
        )
        .needs(Requirement::Python),
        Test::tokio(
            "forward_authentication_asks_the_endpoint_and_records_its_user",
            forward_authentication_asks_the_endpoint_and_records_its_user,
        ),
        Test::tokio(
            "forward_authentication_refuses_when_the_endpoint_is_down",
            forward_authentication_refuses_when_the_endpoint_is_down,
        ),
        Test::tokio(
            "with_the_cache_off_every_request_asks",
            with_the_cache_off_every_request_asks,
        ),
        Test::sync(
            "auth_request_needs_its_url_and_the_url_needs_the_class",
            auth_request_needs_its_url_and_the_url_needs_the_class,
        ),
        Test::tokio_multi_thread(
            "the_documented_django_view_judges_the_path_that_is_served",
            2,
            the_documented_django_view_judges_the_path_that_is_served,
        )
        .needs(Requirement::Python),
        Test::tokio(
            "links_signed_by_the_python_function_play",
            links_signed_by_the_python_function_play,
        )
        .needs(Requirement::Python),
    ]
}

/// The app, with `extra` the bytes of `clip.mp4` (also at `private/p.mp4`).
type App = common::app::TestApp<Vec<u8>>;

fn app(configure: impl FnOnce(&mut Settings)) -> App {
    let fx = Fixture::new();
    let data = fx.file("clip.mp4", 100_000);
    std::fs::create_dir_all(fx.root.join("private")).unwrap();
    std::fs::write(fx.root.join("private/p.mp4"), &data).unwrap();
    App::with(fx, None, data, |config| configure(&mut config.settings))
}

async fn get(app: &App, uri: &str, headers: &[(&str, &str)]) -> (StatusCode, Vec<u8>) {
    let mut builder = Request::get(uri);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let mut req = builder.body(Body::empty()).unwrap();
    req.extensions_mut()
        .insert(PeerAddr("127.0.0.1:40000".parse().unwrap()));
    let res = app.router.clone().oneshot(req).await.unwrap();
    let status = res.status();
    (status, body_bytes(res).await.to_vec())
}

fn logged_paths(app: &App) -> Vec<(String, Option<String>)> {
    assert!(app.writer.wait_idle(Duration::from_secs(10)));
    let mut rows = app
        .store
        .query(&LogFilter::default(), None, 1000)
        .unwrap()
        .entries
        .into_iter()
        .map(|e| (e.path, e.user_id))
        .collect::<Vec<_>>();
    rows.sort();
    rows
}

async fn the_media_url_prefix_names_the_file_below_the_root() {
    let app = app(|s| s.media_url = Some("/media/".to_owned()));
    let range = [("range", "bytes=10-19")];
    for uri in [
        "/api/stream?path=/media/clip.mp4",
        "/api/stream?path=%2Fmedia%2Fclip.mp4",
        "/api/stream?path=clip.mp4",
    ] {
        let (status, body) = get(&app, uri, &range).await;
        assert_eq!(status, StatusCode::PARTIAL_CONTENT, "{uri}");
        assert_eq!(body, app.extra[10..20], "{uri}");
    }
    // Confinement is unchanged.
    for uri in [
        "/api/stream?path=/media/../../etc/passwd",
        "/api/stream?path=/media/../clip.mp4",
        "/api/stream?path=/etc/passwd",
        "/api/stream?path=/mediax/clip.mp4",
    ] {
        let (status, body) = get(&app, uri, &[]).await;
        assert!(status.is_client_error(), "{uri}: {status}");
        assert!(body.len() < 200, "{uri}: a reason, not a file");
    }
    // Logged as the file below the root, whichever way it was named.
    let paths: Vec<String> = logged_paths(&app).into_iter().map(|r| r.0).collect();
    assert_eq!(
        paths.iter().filter(|p| *p == "clip.mp4").count(),
        3,
        "{paths:?}"
    );
    app.writer.shutdown();

    // Without the setting an absolute path is refused, as before.
    let plain = self::app(|_| {});
    let (status, _) = get(&plain, "/api/stream?path=/media/clip.mp4", &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    plain.writer.shutdown();
}

/// Headers that exercise case, anchoring, spaces, multiple ranges and
/// garbage, for both the Django default pattern and a strict one.
const HEADERS: &[&str] = &[
    "bytes=0-99",
    "BYTES=0-99",
    "Bytes=5-",
    "bytes = 7 - 9",
    "bytes=10-5",
    "bytes=-5",
    "xbytes=0-1",
    " bytes=0-1",
    "bytes=0-1,5-6",
    "bytes=0-99 trailing",
    "bytes=abc",
    "",
    "items=0-1",
    "bytes=00012-00020",
    "bYtEs=3-4",
    "bytes=0-1\tx",
    "bytes=99999999999999999999-",
    "bytes=1-2bytes=3-4",
];

const PATTERNS: &[&str] = &[
    sage_stream::range::DJANGO_RANGE_PATTERN,
    r"bytes=(\d+)-(\d*)",
    r"bytes=(\d+)-(\d+)?$",
    r"(?:bytes|items)=(\d+)-(\d*)",
];

/// What Python's `re.compile(p, re.I).match(h)` captures, one JSON value per
/// header: `null` for no match, else the two groups (`null` when a group
/// did not take part).
type Groups = Option<(Option<String>, Option<String>)>;

fn python_groups(pattern: &str) -> Vec<Groups> {
    let script = r#"
import json, re, sys
pattern = sys.argv[1]
headers = json.loads(sys.stdin.read())
out = []
for h in headers:
    m = re.compile(pattern, re.I).match(h)
    out.append(None if m is None else [m.group(1), m.group(2)])
print(json.dumps(out))
"#;
    let mut child = Command::new("python3")
        .args(["-c", script, pattern])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let input = serde_json::to_string(HEADERS).unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), input.as_bytes()).unwrap();
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "python3 failed for {pattern}");
    serde_json::from_slice(&out.stdout).unwrap()
}

async fn the_range_regex_captures_what_python_captures() {
    for pattern in PATTERNS {
        let expected = python_groups(pattern);
        let regex = django_regex(pattern).unwrap();
        for (header, python) in HEADERS.iter().zip(&expected) {
            let ours = regex.captures(header).map(|c| {
                (
                    c.get(1).map(|m| m.as_str().to_owned()),
                    c.get(2).map(|m| m.as_str().to_owned()),
                )
            });
            assert_eq!(&ours, python, "pattern {pattern:?}, header {header:?}");
        }
        // Through the layer: a range is asked for exactly when Python's
        // groups make one (digits, last ≥ first), and it is that range.
        let fx = Fixture::new();
        let data = fx.file("a.bin", 200);
        let svc = tower::ServiceBuilder::new()
            .layer(ParseRangeLayer::new().regex(regex.clone()))
            .service(sage_stream::media::ServeMedia::new(&fx.root));
        for (header, python) in HEADERS.iter().zip(&expected) {
            let req = Request::get("/?path=a.bin")
                .header("range", *header)
                .body(())
                .unwrap();
            let res = svc.clone().oneshot(req).await.unwrap();
            let status = res.status();
            let body = body_bytes(res).await;
            let wanted = python.as_ref().and_then(|(first, last)| {
                let first: u64 = first.as_deref()?.parse().ok()?;
                let last = match last.as_deref() {
                    None | Some("") => 199,
                    Some(l) => l.parse::<u64>().ok()?.min(199),
                };
                (first <= last && first < 200).then_some((first as usize, last as usize))
            });
            match wanted {
                Some((first, last)) => {
                    assert_eq!(
                        status,
                        StatusCode::PARTIAL_CONTENT,
                        "{pattern:?} {header:?}"
                    );
                    assert_eq!(body, data[first..=last], "{pattern:?} {header:?}");
                }
                None => assert!(
                    status == StatusCode::OK || status == StatusCode::RANGE_NOT_SATISFIABLE,
                    "{pattern:?} {header:?}: {status}"
                ),
            }
        }
    }
    // The misspelt name the Django app reads is accepted; the right one wins.
    let misspelt = Settings::from_lookup(|name| {
        (name == "STREAM_RANGE_HEADER_REGEX_PATTER").then(|| r"bytes=(\d+)-(\d*)".to_owned())
    })
    .unwrap();
    assert_eq!(
        misspelt.range_header_regex_pattern.as_deref(),
        Some(r"bytes=(\d+)-(\d*)")
    );
    let both = Settings::from_lookup(|name| match name {
        "STREAM_RANGE_HEADER_REGEX_PATTER" => Some("wrong=(\\d+)-(\\d*)".to_owned()),
        "STREAM_RANGE_HEADER_REGEX_PATTERN" => Some("right=(\\d+)-(\\d*)".to_owned()),
        _ => None,
    })
    .unwrap();
    assert_eq!(
        both.range_header_regex_pattern.as_deref(),
        Some("right=(\\d+)-(\\d*)")
    );
}

/// A stand-in for the Django view: answers by the `session` cookie, counts
/// calls and keeps what it was sent.
struct Upstream {
    addr: SocketAddr,
    calls: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<(String, String, String)>>>,
}

async fn upstream() -> Upstream {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (c, s) = (calls.clone(), seen.clone());
    let view = move |req: Request<Body>| {
        let (c, s) = (c.clone(), s.clone());
        async move {
            c.fetch_add(1, Ordering::SeqCst);
            let (cookie, query, path) = {
                let header = |name: &str| {
                    req.headers()
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned()
                };
                let query = req.uri().query().unwrap_or("").to_owned();
                (header("cookie"), query, header("x-stream-path"))
            };
            drop(req);
            s.lock()
                .unwrap()
                .push((cookie.clone(), query.clone(), path));
            let mut res = http::Response::builder();
            let status = match cookie.as_str() {
                "session=alice" => {
                    res = res.header("x-stream-user", "alice");
                    if query.contains("private") {
                        403
                    } else {
                        204
                    }
                }
                "session=slow" => {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                    204
                }
                "session=broken" => 500,
                _ => 401,
            };
            res.status(status).body(Body::empty()).unwrap()
        }
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, axum::Router::new().fallback(view))
            .await
            .unwrap();
    });
    Upstream { addr, calls, seen }
}

/// Serves `router` on a real socket at 127.0.0.1 (with the peer address,
/// as `sage-stream serve` gives it).
async fn serve_on_loopback(router: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    addr
}

fn auth_settings(url: String, cache_seconds: u64) -> impl FnOnce(&mut Settings) {
    move |s| {
        s.default_permission_classes = vec![PermissionClass::AuthRequest];
        s.auth_url = Some(url);
        s.auth_cache_seconds = cache_seconds;
        s.auth_timeout_seconds = 1;
        s.media_url = Some("/media/".to_owned());
    }
}

async fn forward_authentication_asks_the_endpoint_and_records_its_user() {
    let up = upstream().await;
    let app = app(auth_settings(
        format!("http://{}/stream-auth/", up.addr),
        30,
    ));
    let alice = [("cookie", "session=alice"), ("range", "bytes=0-9")];

    let (status, body) = get(&app, "/api/stream?path=/media/clip.mp4", &alice).await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(body, app.extra[..10]);
    assert_eq!(up.calls.load(Ordering::SeqCst), 1);
    {
        let seen = up.seen.lock().unwrap();
        let (cookie, query, path) = &seen[0];
        assert_eq!(cookie, "session=alice", "the cookie is forwarded");
        assert_eq!(query, "path=clip.mp4", "the media path, prefix removed");
        assert_eq!(path, "clip.mp4");
    }
    // A cache hit: no second call.
    let (status, _) = get(&app, "/api/stream?path=clip.mp4", &alice).await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(up.calls.load(Ordering::SeqCst), 1, "cached");

    // Refusals carry the endpoint's status.
    let (status, _) = get(&app, "/api/stream?path=private/p.mp4", &alice).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = get(&app, "/api/stream?path=clip.mp4", &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = get(
        &app,
        "/api/stream?path=clip.mp4",
        &[("cookie", "session=eve")],
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // A broken or slow endpoint refuses with 503, never streams.
    for session in ["session=broken", "session=slow"] {
        let started = std::time::Instant::now();
        let (status, body) = get(&app, "/api/stream?path=clip.mp4", &[("cookie", session)]).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{session}");
        assert!(
            String::from_utf8_lossy(&body).contains("unavailable"),
            "{session}: a reason"
        );
        assert!(
            started.elapsed() < Duration::from_millis(2500),
            "{session}: the timeout"
        );
    }
    // The watch log names the Django user for the streams it allowed.
    let rows = logged_paths(&app);
    let alice_rows = rows
        .iter()
        .filter(|(p, u)| p == "clip.mp4" && u.as_deref() == Some("alice"))
        .count();
    assert_eq!(alice_rows, 2, "{rows:?}");
    app.writer.shutdown();
}

async fn forward_authentication_refuses_when_the_endpoint_is_down() {
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let app = app(auth_settings(format!("http://{addr}/stream-auth/"), 0));
    let (status, body) = get(
        &app,
        "/api/stream?path=clip.mp4",
        &[("cookie", "session=alice")],
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(String::from_utf8_lossy(&body).contains("unavailable"));
    app.writer.shutdown();
}

async fn with_the_cache_off_every_request_asks() {
    let up = upstream().await;
    let app = app(auth_settings(format!("http://{}/stream-auth/", up.addr), 0));
    for _ in 0..3 {
        let (status, _) = get(
            &app,
            "/api/stream?path=clip.mp4",
            &[("cookie", "session=alice")],
        )
        .await;
        assert_eq!(status, StatusCode::OK);
    }
    assert_eq!(up.calls.load(Ordering::SeqCst), 3);
    app.writer.shutdown();
}

fn auth_request_needs_its_url_and_the_url_needs_the_class() {
    let listed = Settings::default().default_permission_classes([PermissionClass::AuthRequest]);
    assert!(
        listed.permission().is_err(),
        "no URL: never silently skipped"
    );
    let url_only = Settings::default().auth_url(Some("http://127.0.0.1:1/".to_owned()));
    assert!(url_only.permission().is_err(), "URL without the class");
    let https = listed
        .clone()
        .auth_url(Some("https://example.com/".to_owned()));
    assert!(https.permission().is_err());
    // Both set: one permission, which asks.
    let both = listed.auth_url(Some("http://127.0.0.1:1/".to_owned()));
    assert!(both.permission().unwrap().is_async());
    assert!(!Settings::default().permission().unwrap().is_async());
}

/// The Python function of `docs/django.md`, exactly as the page shows it.
fn python_signer() -> String {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/django.md")).unwrap();
    let block = doc
        .split("<!-- signer:begin -->")
        .nth(1)
        .and_then(|rest| rest.split("<!-- signer:end -->").next())
        .expect("docs/django.md has the signer block");
    block
        .trim()
        .trim_start_matches("```python")
        .trim_end_matches("```")
        .to_owned()
}

fn python_link(base: &str, path: &str, key: &str, ttl: i64) -> String {
    let script = format!(
        "{}\nimport sys\nprint(signed_stream_url(sys.argv[1], sys.argv[2], sys.argv[3], ttl=int(sys.argv[4]), media_url='/media/'))\n",
        python_signer()
    );
    let out = Command::new("python3")
        .args(["-c", &script, base, path, key, &ttl.to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

async fn links_signed_by_the_python_function_play() {
    let key = "django-shared-secret";
    let app = app(|s| {
        s.default_permission_classes = vec![PermissionClass::SignedUrl];
        s.signing_key = Some(key.to_owned());
        s.media_url = Some("/media/".to_owned());
    });
    // Served on a real socket, fetched with a real client.
    let addr = serve_on_loopback(app.router.clone()).await;
    let base = format!("http://{addr}/api/stream");
    let client = reqwest::Client::new();
    for path in ["/media/clip.mp4", "clip.mp4", "/media/private/p.mp4"] {
        let link = python_link(&base, path, key, 3600);
        let res = client
            .get(&link)
            .header("range", "bytes=100-199")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), reqwest::StatusCode::PARTIAL_CONTENT, "{link}");
        assert_eq!(res.bytes().await.unwrap().as_ref(), &app.extra[100..200]);
        // Tampered: another file under the same signature.
        let tampered = link.replace("p.mp4", "x.mp4").replace("clip.mp4", "p.mp4");
        let status = client.get(&tampered).send().await.unwrap().status();
        assert_eq!(status, reqwest::StatusCode::FORBIDDEN, "{tampered}");
    }
    let expired = python_link(&base, "/media/clip.mp4", key, -10);
    let res = client.get(&expired).send().await.unwrap();
    assert_eq!(res.status(), reqwest::StatusCode::FORBIDDEN);
    assert_eq!(res.text().await.unwrap().trim(), "link expired");
    let wrong_key = python_link(&base, "/media/clip.mp4", "other", 3600);
    let status = client.get(&wrong_key).send().await.unwrap().status();
    assert_eq!(status, reqwest::StatusCode::FORBIDDEN);
    app.writer.shutdown();
    drop(app.fx);
}

/// The view of `docs/django.md`, exactly as the page shows it, served by
/// Python's `http.server` with the few Django pieces it touches stood in:
/// `HttpResponse`, `request.user` (from a `session` cookie: `alice` is a
/// user, `boss` is staff) and `request.GET` (a decoded query, as Django's
/// `QueryDict`). Prints its port.
fn django_view_server() -> (KillOnDrop, u16) {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/django.md")).unwrap();
    let view = doc
        .split("<!-- authview:begin -->")
        .nth(1)
        .and_then(|rest| rest.split("<!-- authview:end -->").next())
        .expect("docs/django.md has the view block")
        .trim()
        .trim_start_matches("```python")
        .trim_end_matches("```")
        .to_owned();
    let script = format!(
        r#"
import sys, types
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit, parse_qsl

class HttpResponse:
    def __init__(self, status=200):
        self.status_code = status
        self.headers = {{}}
    def __setitem__(self, name, value):
        self.headers[name] = value

django = types.ModuleType("django")
django_http = types.ModuleType("django.http")
django_http.HttpResponse = HttpResponse
sys.modules["django"] = django
sys.modules["django.http"] = django_http

{view}

class User:
    def __init__(self, pk, staff):
        self.pk, self.is_staff, self.is_authenticated = pk, staff, pk is not None

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        cookie = self.headers.get("Cookie", "")
        user = {{"session=alice": User(7, False), "session=boss": User(1, True)}}.get(cookie, User(None, False))
        request = types.SimpleNamespace(
            user=user, GET=dict(parse_qsl(urlsplit(self.path).query, keep_blank_values=True)))
        response = stream_auth(request)
        self.send_response(response.status_code)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass

server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"#
    );
    let mut child = Command::new("python3")
        .args(["-c", &script])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let child = KillOnDrop(child);
    let port = line
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("the view server printed {line:?}"));
    (child, port)
}

/// A child process stopped when the test ends, failed or not.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Issue 20's HIGH defect: forward authentication was asked about the path
/// as written (`./private/p.mp4`), which the view allowed, while the
/// normalised path (`private/p.mp4`) was served. Over real sockets, the
/// documented view now refuses every spelling, the log names the one path,
/// and staff still get the exact bytes.
async fn the_documented_django_view_judges_the_path_that_is_served() {
    let (_view, port) = django_view_server();
    let fx = Fixture::new();
    let data = fx.file("clip.mp4", 100_000);
    std::fs::create_dir_all(fx.root.join("private")).unwrap();
    std::fs::write(fx.root.join("private/p.mp4"), &data).unwrap();
    let store: Arc<dyn WatchLogStore> =
        Arc::new(SqliteStore::open(fx.dir.path().join("log.db")).unwrap());
    let (sink, writer) = WatchLogWriter::spawn(store.clone(), WriterConfig::default()).unwrap();
    let mut config = AppConfig::new(&fx.root);
    config.media_route = Some("/media".to_owned());
    auth_settings(format!("http://127.0.0.1:{port}/stream-auth/"), 30)(&mut config.settings);
    let router = router(&config, store.clone(), sink).unwrap();
    let addr = serve_on_loopback(router).await;
    let client = reqwest::Client::new();
    let fetch = |target: String, session: &'static str| {
        let client = client.clone();
        async move {
            let res = client
                .get(format!("http://{addr}{target}"))
                .header("cookie", session)
                .header("range", "bytes=100-199")
                .send()
                .await
                .unwrap();
            let status = res.status();
            (status, res.bytes().await.unwrap().to_vec())
        }
    };
    let spellings = [
        "/api/stream?path=private/p.mp4",
        "/api/stream?path=./private/p.mp4",
        "/api/stream?path=.%2Fprivate/p.mp4",
        "/api/stream?path=.//private/p.mp4",
        "/api/stream?path=private//./p.mp4",
        "/api/stream?path=%2e/private/p.mp4",
        "/api/stream?path=/media/./private/p.mp4",
        "/api/stream?path=/media/%2e/private/p.mp4",
        "/media/private/p.mp4",
        "/media/./private/p.mp4",
        "/media/%2e/private/p.mp4",
        "/media/.%2Fprivate/p.mp4",
        "/media/private//p.mp4",
    ];
    for target in spellings {
        let (status, body) = fetch(target.to_owned(), "session=alice").await;
        assert_eq!(
            status,
            reqwest::StatusCode::FORBIDDEN,
            "{target}: {}",
            String::from_utf8_lossy(&body)
        );
        let (status, body) = fetch(target.to_owned(), "session=boss").await;
        assert_eq!(status, reqwest::StatusCode::PARTIAL_CONTENT, "{target}");
        assert_eq!(body, data[100..200], "{target}");
    }
    // An ordinary file is allowed; a climb is refused before anyone asks.
    for target in ["/api/stream?path=./clip.mp4", "/media/clip.mp4"] {
        let (status, body) = fetch(target.to_owned(), "session=alice").await;
        assert_eq!(status, reqwest::StatusCode::PARTIAL_CONTENT, "{target}");
        assert_eq!(body, data[100..200], "{target}");
    }
    // (A client resolves `/media/%2e%2e/` itself, as URLs define; an
    // escaped slash reaches the server.)
    for target in [
        "/api/stream?path=private/../clip.mp4",
        "/media/..%2Fclip.mp4",
    ] {
        let (status, body) = fetch(target.to_owned(), "session=alice").await;
        assert_eq!(status, reqwest::StatusCode::BAD_REQUEST, "{target}");
        assert_eq!(body, b"'..' is not allowed in media paths", "{target}");
    }
    // The log names the one path, whatever the spelling.
    assert!(writer.wait_idle(Duration::from_secs(10)));
    let rows = store
        .query(&LogFilter::default(), None, 1000)
        .unwrap()
        .entries;
    let private = rows.iter().filter(|r| r.path == "private/p.mp4").count();
    assert_eq!(private, 2 * spellings.len(), "{rows:?}");
    assert!(rows
        .iter()
        .all(|r| !r.path.contains("./") && !r.path.contains("//")));
    writer.shutdown();
}
