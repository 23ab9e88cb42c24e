//! The stream limit across a fleet of nodes, counted in a real Redis: the
//! shared one at 127.0.0.1:6379, and for the outage tests a `redis-server`
//! of the test's own that it stops and restarts. Each test uses a key prefix
//! of its own, so tests run in parallel without seeing each other's leases.

use crate::common;

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::harness::{Requirement, Test};
use common::served::Served;
use http::{header, Request, Response, StatusCode};
use http_body_util::BodyExt;
use sage_stream::client_ip::ResolveClientIpLayer;
use sage_stream::extension::{PeerAddr, Viewer};
use sage_stream::limit::{RedisSlots, RedisSlotsConfig, ViewerStreamLimitLayer, WhenRedisFails};
use tower::{service_fn, Layer, ServiceExt};

const SHARED: &str = "redis://127.0.0.1:6379/0";

pub fn tests() -> Vec<Test> {
    vec![
        Test::tokio_multi_thread(
            "two_nodes_admit_exactly_the_limit_of_200_concurrent_attempts",
            2,
            two_nodes_admit_exactly_the_limit_of_200_concurrent_attempts,
        )
        .needs(Requirement::Redis),
        Test::tokio(
            "one_viewer_behind_a_trusted_proxy_is_one_viewer_on_every_node",
            one_viewer_behind_a_trusted_proxy_is_one_viewer_on_every_node,
        )
        .needs(Requirement::Redis),
        Test::tokio_multi_thread(
            "a_thousand_aborted_requests_leave_no_lease",
            2,
            a_thousand_aborted_requests_leave_no_lease,
        )
        .needs(Requirement::Redis),
        Test::sync(
            "a_dead_node_s_leases_expire_within_the_lease_time",
            a_dead_node_s_leases_expire_within_the_lease_time,
        )
        .needs(Requirement::Redis),
        Test::tokio(
            "redis_unreachable_counts_per_node_or_refuses_without_hanging",
            redis_unreachable_counts_per_node_or_refuses_without_hanging,
        ),
        Test::tokio_multi_thread(
            "redis_restarted_mid_stream_streams_continue_and_the_count_comes_back",
            2,
            redis_restarted_mid_stream_streams_continue_and_the_count_comes_back,
        )
        .needs(Requirement::RedisServer),
        Test::tokio_multi_thread(
            "two_server_processes_hold_the_limit_fleet_wide",
            2,
            two_server_processes_hold_the_limit_fleet_wide,
        )
        .needs(Requirement::Redis),
        Test::tokio(
            "a_node_killed_with_sigkill_frees_its_slots_within_the_lease",
            a_node_killed_with_sigkill_frees_its_slots_within_the_lease,
        )
        .needs(Requirement::Redis),
        Test::tokio(
            "readyz_and_metrics_say_when_the_limit_store_is_away",
            readyz_and_metrics_say_when_the_limit_store_is_away,
        ),
    ]
}

/// A key prefix no other test (or earlier run) uses.
fn prefix(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("sage-stream-test:{test}:{nanos}:")
}

/// A body that yields one chunk, then ends when the test sends `true` on
/// the watch channel (or drops its sender): a stream in progress that the
/// test ends at will.
struct HeldBody {
    first: bool,
    ended: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
}

impl http_body::Body for HeldBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        use std::task::Poll;
        if std::mem::take(&mut self.first) {
            return Poll::Ready(Some(Ok(http_body::Frame::data(Bytes::from_static(
                b"chunk",
            )))));
        }
        self.ended.as_mut().poll(cx).map(|()| None)
    }
}

fn streaming_service(
    release: tokio::sync::watch::Receiver<bool>,
) -> impl tower::Service<
    Request<()>,
    Response = Response<HeldBody>,
    Error = Infallible,
    Future = impl Send,
> + Clone
       + Send
       + 'static {
    service_fn(move |_req: Request<()>| {
        let mut release = release.clone();
        async move {
            let ended = Box::pin(async move {
                let _ = release.wait_for(|v| *v).await;
            });
            Ok::<_, Infallible>(Response::new(HeldBody { first: true, ended }))
        }
    })
}

fn as_user(id: &str) -> Request<()> {
    let mut req = Request::get("/").body(()).unwrap();
    req.extensions_mut().insert(Viewer::user(id));
    req
}

/// The number of live leases under `key` (expired ones not counted).
async fn leases(url: &str, key: &str) -> usize {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(&mut conn).await.unwrap();
    let now = secs * 1000 + micros / 1000;
    let n: usize = redis::cmd("ZCOUNT")
        .arg(key)
        .arg(format!("({now}"))
        .arg("+inf")
        .query_async(&mut conn)
        .await
        .unwrap();
    n
}

/// Polls `leases` until it equals `want` or `within` passes.
async fn leases_become(url: &str, key: &str, want: usize, within: Duration) -> usize {
    let deadline = Instant::now() + within;
    loop {
        let n = leases(url, key).await;
        if n == want || Instant::now() > deadline {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn node(
    url: &str,
    prefix: &str,
    max: usize,
    config: RedisSlotsConfig,
) -> ViewerStreamLimitLayer<RedisSlots> {
    ViewerStreamLimitLayer::redis(RedisSlots::new(url, max, config.prefix(prefix)).unwrap())
}

async fn two_nodes_admit_exactly_the_limit_of_200_concurrent_attempts() {
    let prefix = prefix("two-nodes");
    let (release, rx) = tokio::sync::watch::channel(false);
    let a =
        node(SHARED, &prefix, 2, RedisSlotsConfig::default()).layer(streaming_service(rx.clone()));
    let b = node(SHARED, &prefix, 2, RedisSlotsConfig::default()).layer(streaming_service(rx));
    let mut attempts = tokio::task::JoinSet::new();
    for i in 0..200 {
        let svc = if i % 2 == 0 { a.clone() } else { b.clone() };
        attempts.spawn(async move { svc.oneshot(as_user("alice")).await.unwrap() });
    }
    let mut admitted = Vec::new();
    let mut refused = 0;
    while let Some(res) = attempts.join_next().await {
        let res = res.unwrap();
        match res.status() {
            StatusCode::OK => admitted.push(res),
            StatusCode::TOO_MANY_REQUESTS => {
                assert!(res.headers().contains_key(header::RETRY_AFTER));
                refused += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!((admitted.len(), refused), (2, 198));
    let key = format!("{prefix}limit:u:alice");
    assert_eq!(leases(SHARED, &key).await, 2);
    // The streams end (read to the end): both leases go, on either node.
    release.send(true).unwrap();
    for res in admitted {
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "chunk");
    }
    assert_eq!(
        leases_become(SHARED, &key, 0, Duration::from_secs(2)).await,
        0
    );
    let again = a.oneshot(as_user("alice")).await.unwrap();
    assert_eq!(again.status(), StatusCode::OK);
}

async fn one_viewer_behind_a_trusted_proxy_is_one_viewer_on_every_node() {
    let prefix = prefix("proxy");
    let (_release, rx) = tokio::sync::watch::channel(false);
    let proxy: sage_stream::extension::IpNet = "127.0.0.0/8".parse().unwrap();
    let nodes = [
        node(SHARED, &prefix, 2, RedisSlotsConfig::default()),
        node(SHARED, &prefix, 2, RedisSlotsConfig::default()),
    ]
    .map(|limit| {
        ResolveClientIpLayer::new([proxy]).layer(limit.layer(streaming_service(rx.clone())))
    });
    let from = |client: &str| {
        let mut req = Request::get("/")
            .header("x-forwarded-for", client)
            .body(())
            .unwrap();
        req.extensions_mut()
            .insert(PeerAddr(SocketAddr::from(([127, 0, 0, 1], 50000))));
        req
    };
    let mut held = Vec::new();
    for (i, expected) in [
        StatusCode::OK,
        StatusCode::OK,
        StatusCode::TOO_MANY_REQUESTS,
    ]
    .into_iter()
    .enumerate()
    {
        let res = nodes[i % 2]
            .clone()
            .oneshot(from("198.51.100.7"))
            .await
            .unwrap();
        assert_eq!(res.status(), expected, "attempt {i}");
        held.push(res);
    }
    // Another client behind the same proxy is another viewer.
    let other = nodes[0]
        .clone()
        .oneshot(from("198.51.100.8"))
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::OK);
    assert_eq!(
        leases(SHARED, &format!("{prefix}limit:ip:198.51.100.7")).await,
        2
    );
}

async fn a_thousand_aborted_requests_leave_no_lease() {
    let prefix = prefix("aborted");
    let (_release, rx) = tokio::sync::watch::channel(false);
    let a =
        node(SHARED, &prefix, 3, RedisSlotsConfig::default()).layer(streaming_service(rx.clone()));
    let b = node(SHARED, &prefix, 3, RedisSlotsConfig::default()).layer(streaming_service(rx));
    let key = format!("{prefix}limit:u:bob");
    for i in 0..1000u32 {
        let svc = if i % 2 == 0 { a.clone() } else { b.clone() };
        match i % 3 {
            // The client goes away mid-body.
            0 => {
                let res = svc.oneshot(as_user("bob")).await.unwrap();
                assert_eq!(res.status(), StatusCode::OK, "request {i}");
                let mut body = res.into_body();
                let _ = body.frame().await;
                drop(body);
            }
            // The future is dropped before it answers (maybe mid-Redis call).
            1 => {
                let fut = svc.oneshot(as_user("bob"));
                let _ = tokio::time::timeout(Duration::from_micros(50), fut).await;
            }
            // The response is dropped unread.
            _ => {
                let res = svc.oneshot(as_user("bob")).await.unwrap();
                assert_eq!(res.status(), StatusCode::OK, "request {i}");
            }
        }
    }
    assert_eq!(
        leases_become(SHARED, &key, 0, Duration::from_secs(3)).await,
        0
    );
}

fn a_dead_node_s_leases_expire_within_the_lease_time() {
    let prefix = prefix("dead-node");
    let lease = Duration::from_secs(2);
    // The doomed node runs on a runtime of its own, which is then torn down
    // with its leases never released: as a node killed with -9 leaves them.
    let doomed = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    doomed.block_on(async {
        let (_release, rx) = tokio::sync::watch::channel(false);
        let svc = node(SHARED, &prefix, 2, RedisSlotsConfig::default().lease(lease))
            .layer(streaming_service(rx));
        for _ in 0..2 {
            let res = svc.clone().oneshot(as_user("carol")).await.unwrap();
            assert_eq!(res.status(), StatusCode::OK);
            std::mem::forget(res);
        }
    });
    doomed.shutdown_background();
    let survivor = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    survivor.block_on(async {
        let (_release, rx) = tokio::sync::watch::channel(false);
        let svc = node(SHARED, &prefix, 2, RedisSlotsConfig::default().lease(lease))
            .layer(streaming_service(rx));
        let died = Instant::now();
        let refused = svc.clone().oneshot(as_user("carol")).await.unwrap();
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        loop {
            let res = svc.clone().oneshot(as_user("carol")).await.unwrap();
            if res.status() == StatusCode::OK {
                break;
            }
            assert!(
                died.elapsed() < lease + Duration::from_millis(500),
                "the dead node's slots were still held after {:?}",
                died.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(died.elapsed() <= lease + Duration::from_millis(500));
    });
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

async fn redis_unreachable_counts_per_node_or_refuses_without_hanging() {
    let url = format!("redis://127.0.0.1:{}/0", closed_port());
    let (_release, rx) = tokio::sync::watch::channel(false);
    let timeout = Duration::from_millis(200);
    let per_node = node(&url, "p:", 2, RedisSlotsConfig::default().timeout(timeout))
        .layer(streaming_service(rx.clone()));
    let mut held = Vec::new();
    for expected in [
        StatusCode::OK,
        StatusCode::OK,
        StatusCode::TOO_MANY_REQUESTS,
    ] {
        let started = Instant::now();
        let res = per_node.clone().oneshot(as_user("dave")).await.unwrap();
        assert_eq!(res.status(), expected);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "took {:?}",
            started.elapsed()
        );
        held.push(res);
    }
    let refusing = node(
        &url,
        "r:",
        2,
        RedisSlotsConfig::default()
            .timeout(timeout)
            .when_redis_fails(WhenRedisFails::Refuse),
    );
    assert!(
        refusing.slots().reachable(),
        "optimistic until the first call"
    );
    let svc = refusing.clone().layer(streaming_service(rx));
    let started = Instant::now();
    let res = svc.oneshot(as_user("dave")).await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.headers()[header::RETRY_AFTER], "1");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(!refusing.slots().reachable());
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert!(!body.is_empty());
}

/// A `redis-server` of the test's own on `port`, keeping nothing on disk.
struct OwnRedis {
    child: Child,
}

impl OwnRedis {
    fn start(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(["--bind", "127.0.0.1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn redis_restarted_mid_stream_streams_continue_and_the_count_comes_back() {
    let port = closed_port();
    let url = format!("redis://127.0.0.1:{port}/0");
    let lease = Duration::from_secs(3);
    let redis = OwnRedis::start(port);
    let (release, rx) = tokio::sync::watch::channel(false);
    let config = RedisSlotsConfig::default()
        .lease(lease)
        .timeout(Duration::from_millis(200));
    let limit = node(&url, "x:", 2, config.clone());
    let svc = limit.clone().layer(streaming_service(rx.clone()));
    let key = "x:limit:u:erin";
    let mut streams = Vec::new();
    for _ in 0..2 {
        let res = svc.clone().oneshot(as_user("erin")).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let mut body = res.into_body();
        assert_eq!(
            body.frame().await.unwrap().unwrap().into_data().unwrap(),
            "chunk"
        );
        streams.push(body);
    }
    assert_eq!(leases(&url, key).await, 2);

    // Redis goes away: the streams go on; this node counts per node, and it
    // already holds erin's two.
    drop(redis);
    let refused = svc.clone().oneshot(as_user("erin")).await.unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let frank = svc.clone().oneshot(as_user("frank")).await.unwrap();
    assert_eq!(
        frank.status(),
        StatusCode::OK,
        "another viewer is admitted per node"
    );
    assert!(!limit.slots().reachable());
    assert_eq!(limit.slots().fallbacks(), 1);

    // Redis is back, empty: within one renewal period (a third of the lease)
    // plus a call, the fleet count holds every stream of this node again,
    // the one admitted while Redis was away included.
    let _redis = OwnRedis::start(port);
    let back = Instant::now();
    let n = leases_become(&url, key, 2, lease).await;
    assert_eq!(n, 2, "erin's leases after {:?}", back.elapsed());
    assert_eq!(leases_become(&url, "x:limit:u:frank", 1, lease).await, 1);
    assert!(
        back.elapsed() <= lease / 3 + Duration::from_secs(1),
        "{:?}",
        back.elapsed()
    );
    // A second node sees erin at the limit.
    let other = node(&url, "x:", 2, config).layer(streaming_service(rx));
    let res = other.oneshot(as_user("erin")).await.unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);

    // The streams were never cut.
    release.send(true).unwrap();
    for mut body in streams {
        assert!(body.frame().await.is_none());
    }
    drop(frank);
    assert_eq!(leases_become(&url, key, 0, Duration::from_secs(2)).await, 0);
}

/// A media root with one large sparse file: a stream of it stays open while
/// the client reads nothing (the socket buffers hold a few MiB of 512).
fn big_media() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let media = dir.path().join("media");
    std::fs::create_dir(&media).unwrap();
    let file = std::fs::File::create(media.join("long.mp4")).unwrap();
    file.set_len(512 << 20).unwrap();
    let root = media.to_str().unwrap().to_owned();
    (dir, root)
}

/// A `sage-stream serve` node counting its limit in `store` under `prefix`.
fn serve_node(dir: &tempfile::TempDir, root: &str, name: &str, extra: &[&str]) -> Served {
    let db = format!(
        "sqlite://{}",
        dir.path().join(format!("{name}.db")).display()
    );
    let mut args = vec![
        "--root",
        root,
        "--database",
        &db,
        "--max-streams-per-viewer",
        "2",
        "--token",
        "alice-token=alice",
        "--no-access-log",
    ];
    args.extend_from_slice(extra);
    Served::start(&args, &[])
}

/// Opens a stream as alice and keeps it (headers read, body not).
async fn open_stream(client: &reqwest::Client, base: &str) -> reqwest::Response {
    client
        .get(format!("{base}/api/stream?path=long.mp4"))
        .bearer_auth("alice-token")
        .send()
        .await
        .unwrap()
}

async fn two_server_processes_hold_the_limit_fleet_wide() {
    let (dir, root) = big_media();
    let prefix = prefix("processes");
    let store = [
        "--limit-store",
        SHARED,
        "--limit-key-prefix",
        prefix.as_str(),
    ];
    let nodes = [
        serve_node(&dir, &root, "a", &store),
        serve_node(&dir, &root, "b", &store),
    ];
    let client = reqwest::Client::new();
    let mut attempts = tokio::task::JoinSet::new();
    for i in 0..200 {
        let (client, base) = (client.clone(), nodes[i % 2].base.clone());
        attempts.spawn(async move { open_stream(&client, &base).await });
    }
    let mut streams = Vec::new();
    let mut refused = 0;
    while let Some(res) = attempts.join_next().await {
        let res = res.unwrap();
        match res.status().as_u16() {
            200 => streams.push(res),
            429 => refused += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!((streams.len(), refused), (2, 198));
    let key = format!("{prefix}limit:u:alice");
    assert_eq!(leases(SHARED, &key).await, 2);
    // The streams really stream: bytes arrive.
    let mut first = streams.pop().unwrap();
    let chunk = first.chunk().await.unwrap().unwrap();
    assert!(!chunk.is_empty() && chunk.iter().all(|b| *b == 0));
    // One ends (the client goes away): a slot comes free on either node.
    drop(first);
    assert_eq!(
        leases_become(SHARED, &key, 1, Duration::from_secs(3)).await,
        1
    );
    let again = open_stream(&client, &nodes[1].base).await;
    assert_eq!(again.status().as_u16(), 200);
    drop((streams, again));
    for node in nodes {
        let (ok, _) = node.stop();
        assert!(ok);
    }
    assert_eq!(
        leases_become(SHARED, &key, 0, Duration::from_secs(3)).await,
        0
    );
}

async fn a_node_killed_with_sigkill_frees_its_slots_within_the_lease() {
    let (dir, root) = big_media();
    let prefix = prefix("sigkill");
    let store = [
        "--limit-store",
        SHARED,
        "--limit-key-prefix",
        prefix.as_str(),
        "--limit-lease",
        "3s",
    ];
    let mut doomed = serve_node(&dir, &root, "doomed", &store);
    let survivor = serve_node(&dir, &root, "survivor", &store);
    let client = reqwest::Client::new();
    let held = [
        open_stream(&client, &doomed.base).await,
        open_stream(&client, &doomed.base).await,
    ];
    assert!(held.iter().all(|r| r.status() == 200));
    assert_eq!(open_stream(&client, &survivor.base).await.status(), 429);
    doomed.child.kill().unwrap(); // SIGKILL: nothing is released
    doomed.child.wait().unwrap();
    let died = Instant::now();
    drop(held);
    assert_eq!(open_stream(&client, &survivor.base).await.status(), 429);
    let freed = loop {
        let res = open_stream(&client, &survivor.base).await;
        if res.status() == 200 {
            break died.elapsed();
        }
        assert!(died.elapsed() < Duration::from_secs(5), "still held");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Renewed at most a third of a lease before the kill: free within 3 s.
    assert!(
        freed <= Duration::from_millis(3200),
        "freed after {freed:?}"
    );
    let (ok, _) = survivor.stop();
    assert!(ok);
}

async fn readyz_and_metrics_say_when_the_limit_store_is_away() {
    let (dir, root) = big_media();
    let away = format!("redis://127.0.0.1:{}/0", closed_port());
    let client = reqwest::Client::new();
    for (policy, stream_status, ready_status) in
        [("refuse", 503, 503), ("count-per-node", 200, 200)]
    {
        let node = serve_node(
            &dir,
            &root,
            policy,
            &[
                "--limit-store",
                &away,
                "--limit-store-down",
                policy,
                "--limit-timeout",
                "200ms",
                "--metrics-bind",
                "127.0.0.1:0",
            ],
        );
        let started = Instant::now();
        let res = open_stream(&client, &node.base).await;
        assert_eq!(res.status().as_u16(), stream_status, "{policy}");
        assert!(started.elapsed() < Duration::from_secs(2));
        drop(res);
        let ready = client
            .get(format!("{}/readyz", node.base))
            .send()
            .await
            .unwrap();
        assert_eq!(ready.status().as_u16(), ready_status, "{policy}");
        let text = ready.text().await.unwrap();
        assert!(text.contains("stream-limit store"), "{text}");
        let metrics = node.banner_url("metrics").unwrap();
        let text = client
            .get(&metrics)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            text.contains("sage_stream_limit_store_reachable 0"),
            "{text}"
        );
        let (ok, _) = node.stop();
        assert!(ok);
    }
}
