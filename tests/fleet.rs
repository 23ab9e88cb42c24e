//! The stream limit across a fleet of nodes, counted in a real Redis: the
//! shared one at 127.0.0.1:6379, and for the outage tests a `redis-server`
//! of the test's own that it stops and restarts. Each test uses a key prefix
//! of its own, so tests run in parallel without seeing each other's leases.

mod common;

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::harness::{self, Requirement, Test};
use http::{header, Request, Response, StatusCode};
use http_body_util::BodyExt;
use sage_stream::client_ip::ResolveClientIpLayer;
use sage_stream::extension::{PeerAddr, Viewer};
use sage_stream::limit::{RedisSlots, RedisSlotsConfig, ViewerStreamLimitLayer, WhenRedisFails};
use tower::{service_fn, Layer, ServiceExt};

const SHARED: &str = "redis://127.0.0.1:6379/0";

fn main() -> std::process::ExitCode {
    harness::run(vec![
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
    ])
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
    let key = format!("{prefix}limit:u:carol");
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
        let _ = key;
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
