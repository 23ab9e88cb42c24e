//! The deployment guide, run: `sage-stream serve --trusted-proxy 127.0.0.1`
//! behind a real nginx whose `location` is the block `docs/deploy.md`
//! shows, fetched with a real HTTP client. Ranges and `If-Range` pass
//! through, the watch log records the client nginx forwards for (and not
//! one a client claims), and a large file streams through unbuffered.
//!
//! Without nginx these report as ignored, unless
//! `SAGE_STREAM_REQUIRE_NGINX=1` (set by `.ci/run`) makes them fail.

use crate::common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::harness::{self, Requirement, Test};
use common::served::Served;
use common::Fixture;
use sage_stream::log::{LogFilter, SqliteStore, WatchLogEntry, WatchLogStore};

pub fn tests() -> Vec<Test> {
    vec![
        Test::tokio(
            "nginx_from_the_guide_passes_ranges_and_the_client_address",
            nginx_from_the_guide_passes_ranges_and_the_client_address,
        )
        .needs(Requirement::Nginx),
        Test::tokio(
            "nginx_from_the_guide_streams_a_large_file_unbuffered",
            nginx_from_the_guide_streams_a_large_file_unbuffered,
        )
        .needs(Requirement::Nginx),
    ]
}

/// The address the guide's `location` proxies to; the test puts the
/// server's real one in its place.
const GUIDE_UPSTREAM: &str = "127.0.0.1:8000";

/// The nginx `location` block of `docs/deploy.md`, exactly as the page
/// shows it.
fn guide_location() -> String {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/deploy.md")).unwrap();
    let block = doc
        .split("<!-- nginx-location:begin -->")
        .nth(1)
        .and_then(|rest| rest.split("<!-- nginx-location:end -->").next())
        .expect("docs/deploy.md has the nginx-location block");
    let block = block
        .trim()
        .strip_prefix("```nginx")
        .and_then(|b| b.strip_suffix("```"))
        .expect("the block is one nginx code fence");
    assert_eq!(block.matches(GUIDE_UPSTREAM).count(), 1, "{block}");
    block.to_owned()
}

/// A real nginx in the foreground, its files in a temp dir, one process
/// (`master_process off`) so that killing the child stops all of it.
struct Nginx {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
}

impl Nginx {
    fn start(upstream: SocketAddr) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let location = guide_location().replace(GUIDE_UPSTREAM, &upstream.to_string());
        let d = dir.path().display();
        let conf = format!(
            "error_log {d}/error.log warn;\n\
             pid {d}/nginx.pid;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n\
             access_log {d}/access.log;\n\
             client_body_temp_path {d}/client_body;\n\
             proxy_temp_path {d}/proxy;\n\
             fastcgi_temp_path {d}/fastcgi;\n\
             uwsgi_temp_path {d}/uwsgi;\n\
             scgi_temp_path {d}/scgi;\n\
             server {{\n\
             listen 127.0.0.1:{port};\n\
             {location}\n\
             }}\n\
             }}\n"
        );
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let mut child = Command::new(harness::nginx())
            .arg("-p")
            .arg(dir.path())
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .arg("-c")
            .arg(&conf_path)
            .args(["-g", "daemon off; master_process off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = child.try_wait().unwrap() {
                let mut stderr = String::new();
                if let Some(mut err) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut err, &mut stderr);
                }
                panic!(
                    "nginx exited with {status}: {stderr}{}",
                    std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default()
                );
            }
            assert!(Instant::now() < deadline, "nginx did not listen in 10 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, dir, port }
    }

    fn url(&self, query: &str) -> String {
        format!("http://127.0.0.1:{}/api/stream?{query}", self.port)
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The server (trusting only 127.0.0.1) and nginx in front of it.
struct Stack {
    fx: Fixture,
    db: std::path::PathBuf,
    served: Served,
    nginx: Nginx,
}

impl Stack {
    fn start(fx: Fixture) -> Self {
        let db = fx.dir.path().join("log.db");
        let url = format!("sqlite://{}", db.display());
        let served = Served::start(
            &[
                "--root",
                fx.root.to_str().unwrap(),
                "--database",
                &url,
                "--trusted-proxy",
                "127.0.0.1",
            ],
            &[],
        );
        let upstream: SocketAddr = served
            .base
            .strip_prefix("http://")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("an address in {}", served.base));
        let nginx = Nginx::start(upstream);
        Self {
            fx,
            db,
            served,
            nginx,
        }
    }

    /// Stops nginx and the server (gracefully: every row written), then
    /// reads the watch log.
    fn stop(self) -> Vec<WatchLogEntry> {
        let Self {
            fx,
            db,
            served,
            nginx,
        } = self;
        drop(nginx);
        let (ok, rest) = served.stop();
        assert!(ok, "serve did not stop cleanly: {rest}");
        let rows = SqliteStore::open(&db)
            .unwrap()
            .query(&LogFilter::default(), None, 1000)
            .unwrap()
            .entries;
        drop(fx);
        rows
    }
}

/// A client from `from` (a loopback address: 127.0.0.2 is not trusted).
fn client(from: Ipv4Addr) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .local_address(IpAddr::V4(from))
        .build()
        .unwrap()
}

fn header<'a>(res: &'a reqwest::Response, name: &str) -> &'a str {
    res.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no {name} in {:?}", res.headers()))
}

fn row<'a>(rows: &'a [WatchLogEntry], agent: &str) -> &'a WatchLogEntry {
    let found: Vec<_> = rows
        .iter()
        .filter(|r| r.user_agent.as_deref() == Some(agent))
        .collect();
    assert_eq!(found.len(), 1, "one row for {agent}: {rows:#?}");
    found[0]
}

async fn nginx_from_the_guide_passes_ranges_and_the_client_address() {
    let fx = Fixture::new();
    let data = fx.file("clip.mp4", 300_000);
    assert_eq!(std::fs::read(fx.path("clip.mp4")).unwrap(), data);
    let stack = Stack::start(fx);
    let url = stack.nginx.url("path=clip.mp4");
    let local = client(Ipv4Addr::LOCALHOST);

    // A range through nginx: 206, the exact bytes of the file, its
    // Content-Range; the client's X-Forwarded-For reaches the log (nginx
    // appended 127.0.0.1, which is trusted); a Forwarded header the client
    // made up does not (the guide clears it).
    let res = local
        .get(&url)
        .header("range", "bytes=1000-1999")
        .header("x-forwarded-for", "203.0.113.7")
        .header("forwarded", "for=198.51.100.9")
        .header("user-agent", "via-nginx")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), reqwest::StatusCode::PARTIAL_CONTENT);
    assert_eq!(header(&res, "content-range"), "bytes 1000-1999/300000");
    assert_eq!(header(&res, "content-length"), "1000");
    let etag = header(&res, "etag").to_owned();
    assert_eq!(res.bytes().await.unwrap().as_ref(), &data[1000..2000]);

    // If-Range passes through: the current tag keeps the range, another
    // one gets the whole file.
    let res = local
        .get(&url)
        .header("range", "bytes=-500")
        .header("if-range", &etag)
        .header("user-agent", "if-range-current")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), reqwest::StatusCode::PARTIAL_CONTENT);
    assert_eq!(header(&res, "content-range"), "bytes 299500-299999/300000");
    assert_eq!(res.bytes().await.unwrap().as_ref(), &data[299_500..]);
    let res = local
        .get(&url)
        .header("range", "bytes=-500")
        .header("if-range", "\"stale\"")
        .header("user-agent", "if-range-stale")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), reqwest::StatusCode::OK);
    assert_eq!(res.bytes().await.unwrap().as_ref(), &data[..]);

    // A client nginx sees at an untrusted address cannot claim another:
    // the log holds the address nginx appended.
    let other = client(Ipv4Addr::new(127, 0, 0, 2));
    let res = other
        .get(&url)
        .header("range", "bytes=0-99")
        .header("x-forwarded-for", "203.0.113.7")
        .header("user-agent", "via-nginx-from-127.0.0.2")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), reqwest::StatusCode::PARTIAL_CONTENT);
    assert_eq!(res.bytes().await.unwrap().as_ref(), &data[..100]);

    // Around nginx, from an untrusted peer: its X-Forwarded-For is not
    // believed.
    let direct = format!("{}/api/stream?path=clip.mp4", stack.served.base);
    let res = other
        .get(&direct)
        .header("range", "bytes=0-99")
        .header("x-forwarded-for", "203.0.113.7")
        .header("user-agent", "direct-from-127.0.0.2")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), reqwest::StatusCode::PARTIAL_CONTENT);
    assert_eq!(res.bytes().await.unwrap().as_ref(), &data[..100]);

    let errors = stack.nginx.error_log();
    let rows = stack.stop();
    assert_eq!(rows.len(), 5, "{rows:#?}\nnginx: {errors}");
    let ranged = row(&rows, "via-nginx");
    assert_eq!(ranged.ip.as_deref(), Some("203.0.113.7"));
    assert_eq!(ranged.status, 206);
    assert_eq!(ranged.range_header.as_deref(), Some("bytes=1000-1999"));
    assert_eq!((ranged.bytes_sent, ranged.completed), (1000, true));
    assert_eq!(ranged.path, "clip.mp4");
    let current = row(&rows, "if-range-current");
    assert_eq!((current.status, current.bytes_sent), (206, 500));
    let stale = row(&rows, "if-range-stale");
    assert_eq!((stale.status, stale.bytes_sent), (200, 300_000));
    assert_eq!(
        row(&rows, "via-nginx-from-127.0.0.2").ip.as_deref(),
        Some("127.0.0.2")
    );
    assert_eq!(
        row(&rows, "direct-from-127.0.0.2").ip.as_deref(),
        Some("127.0.0.2")
    );
}

/// 48 MiB: far more than nginx's proxy buffers and the sockets between
/// hold, so a buffering proxy would have had to read it all ahead.
const LARGE: usize = 48 << 20;

async fn nginx_from_the_guide_streams_a_large_file_unbuffered() {
    let fx = Fixture::new();
    let data = fx.file("large.mp4", LARGE);
    let stack = Stack::start(fx);
    let url = stack.nginx.url("path=large.mp4");
    let local = client(Ipv4Addr::LOCALHOST);

    // The whole file, intact.
    let res = local
        .get(&url)
        .header("user-agent", "whole")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), reqwest::StatusCode::OK);
    assert_eq!(header(&res, "content-length"), LARGE.to_string());
    let body = res.bytes().await.unwrap();
    assert!(body.as_ref() == &data[..], "the body differs from the file");

    // A player that reads 1 MiB and pauses: with proxy_buffering off nginx
    // reads from the server only as fast as the client takes the bytes, so
    // when the client leaves the server has sent far less than the file.
    let mut res = local
        .get(&url)
        .header("user-agent", "paused")
        .send()
        .await
        .unwrap();
    let mut read = 0;
    while read < 1 << 20 {
        read += res.chunk().await.unwrap().expect("more body").len();
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    drop(res);
    // Give the server time to see the hang-up through nginx.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let proxy_temp = stack.nginx.dir.path().join("proxy");
    let spooled = dir_bytes(&proxy_temp);
    let rows = stack.stop();
    let whole = row(&rows, "whole");
    assert_eq!((whole.status, whole.completed), (200, true));
    assert_eq!(whole.bytes_sent, LARGE as i64);
    let paused = row(&rows, "paused");
    assert!(!paused.completed, "{paused:?}");
    assert!(
        paused.bytes_sent < (LARGE / 2) as i64,
        "nginx read {} of {LARGE} bytes ahead of a paused client",
        paused.bytes_sent
    );
    assert_eq!(spooled, 0, "nginx wrote the response to temp files");
}

/// Bytes in the files under `dir` (0 when it does not exist).
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(|e| e.ok())
        .map(|e| {
            let path = e.path();
            if path.is_dir() {
                dir_bytes(&path)
            } else {
                e.metadata().map_or(0, |m| m.len())
            }
        })
        .sum()
}
