//! A real server on 127.0.0.1 and a real HTTP client (reqwest).

use crate::common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{check_multipart_against, closed_within, Fixture};
use reqwest::{header, StatusCode};
use sage_stream::auth::BearerAuthLayer;
use sage_stream::permission::IsAuthenticated;
use sage_stream::server::{serve, ServerConfig};
use sage_stream::StreamEndpoint;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use tower::ServiceBuilder;

struct Running {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    fn url(&self, query: &str) -> String {
        format!("http://{}/api/stream?{query}", self.addr)
    }

    async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("server stopped in time")
            .unwrap()
            .unwrap();
    }
}

async fn start(fx: &Fixture) -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let svc = ServiceBuilder::new()
        .layer(BearerAuthLayer::new([("t0ken", "alice")]))
        .service(
            StreamEndpoint::new(&fx.root)
                .max_load_volume(1 << 20)
                .into_service(),
        );
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, svc, ServerConfig::default(), async {
        let _ = stopped.await;
    }));
    Running {
        addr,
        stop: Some(stop),
        task,
    }
}

#[tokio::test]
async fn full_ranged_multipart_and_conditional_over_http() {
    let fx = Fixture::new();
    let data = fx.file("clip.mp4", 3 << 20);
    let server = start(&fx).await;
    let client = reqwest::Client::new();

    let res = client
        .get(server.url("path=clip.mp4"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.headers()[header::CONTENT_LENGTH],
        (3u64 << 20).to_string().as_str()
    );
    let etag = res.headers()[header::ETAG].to_str().unwrap().to_owned();
    assert_eq!(res.bytes().await.unwrap(), data);

    let res = client
        .get(server.url("path=clip.mp4"))
        .header("range", "bytes=0-1")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(res.headers()[header::CONTENT_RANGE], "bytes 0-1/3145728");
    assert_eq!(res.bytes().await.unwrap(), &data[..2]);

    // Capped at 1 MiB by the server's configuration.
    let res = client
        .get(server.url("path=clip.mp4"))
        .header("range", "bytes=100-")
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.headers()[header::CONTENT_RANGE],
        "bytes 100-1048675/3145728"
    );
    assert_eq!(res.bytes().await.unwrap(), &data[100..100 + (1 << 20)]);

    let res = client
        .get(server.url("path=clip.mp4"))
        .header("range", "bytes=0-9,-10")
        .send()
        .await
        .unwrap();
    let content_type = res.headers()[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_owned();
    let body = res.bytes().await.unwrap();
    assert_eq!(check_multipart_against(&content_type, &body, &data), 2);

    let res = client
        .get(server.url("path=clip.mp4"))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_MODIFIED);
    assert!(res.bytes().await.unwrap().is_empty());

    let res = client
        .head(server.url("path=clip.mp4"))
        .header("range", "bytes=5-")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(res.headers()[header::CONTENT_LENGTH], "1048576");

    let res = client
        .post(server.url("path=clip.mp4"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(res.headers()[header::ALLOW], "GET, HEAD");

    let res = client
        .get(server.url("path=../secret.txt"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    server.shutdown().await;
}

#[tokio::test]
async fn bearer_tokens_and_is_authenticated_over_http() {
    let fx = Fixture::new();
    let data = fx.file("v.webm", 1000);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let svc = ServiceBuilder::new()
        .layer(BearerAuthLayer::new([("t0ken", "alice")]))
        .service(
            StreamEndpoint::new(&fx.root)
                .permission(IsAuthenticated)
                .into_service(),
        );
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, svc, ServerConfig::default(), async {
        let _ = stopped.await;
    }));
    let server = Running {
        addr,
        stop: Some(stop),
        task,
    };
    let client = reqwest::Client::new();
    let res = client.get(server.url("path=v.webm")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(res.headers().contains_key(header::WWW_AUTHENTICATE));
    let res = client
        .get(server.url("path=v.webm"))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let res = client
        .get(server.url("path=v.webm"))
        .bearer_auth("t0ken")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.bytes().await.unwrap(), data);
    server.shutdown().await;
}

#[tokio::test]
async fn client_gone_mid_body_leaves_the_server_serving() {
    let fx = Fixture::new();
    let data = fx.file("big.mp4", 8 << 20);
    let server = start(&fx).await;
    for _ in 0..5 {
        let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        stream
            .write_all(b"GET /api/stream?path=big.mp4 HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0);
        drop(stream);
    }
    let res = reqwest::get(server.url("path=big.mp4")).await.unwrap();
    assert_eq!(res.bytes().await.unwrap(), data);
    server.shutdown().await;
}

#[tokio::test]
async fn graceful_shutdown_finishes_open_responses() {
    let fx = Fixture::new();
    let data = fx.file("big.mp4", 16 << 20);
    let server = start(&fx).await;
    let res = reqwest::get(server.url("path=big.mp4")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let addr = server.addr;
    let stopping = tokio::spawn(server.shutdown());
    // The open response still completes in full.
    assert_eq!(res.bytes().await.unwrap(), data);
    stopping.await.unwrap();
    // And new connections are refused.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn slow_and_idle_clients_are_cut_off() {
    let fx = Fixture::new();
    fx.file("a.mp4", 100);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = ServerConfig::default().header_read_timeout(Duration::from_millis(400));
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(
        listener,
        StreamEndpoint::new(&fx.root).into_service(),
        config,
        async {
            let _ = stopped.await;
        },
    ));
    let server = Running {
        addr,
        stop: Some(stop),
        task,
    };

    // Slowloris: headers that never finish.
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /?path=a.mp4 HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    assert!(
        closed_within(&mut slow, Duration::from_secs(3)).await,
        "slow header client was not cut off"
    );

    // Idle keep-alive: one request, then silence.
    let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET /?path=a.mp4 HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = idle.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    assert!(
        closed_within(&mut idle, Duration::from_secs(3)).await,
        "idle keep-alive connection was not closed"
    );
    server.shutdown().await;
}
