//! `oneshot` helpers: build a request, call a service, collect the answer.

use http::{HeaderMap, Method, Request, StatusCode};
use tower::{Service, ServiceExt};

use super::body_bytes;

pub fn request(method: Method, uri: &str, headers: &[(&str, &str)]) -> Request<()> {
    let mut builder = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(()).unwrap()
}

pub async fn call<S, B>(
    svc: &S,
    method: Method,
    uri: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, HeaderMap, Vec<u8>)
where
    S: Service<Request<()>, Response = http::Response<B>> + Clone,
    S::Error: std::fmt::Debug,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let res = svc
        .clone()
        .oneshot(request(method, uri, headers))
        .await
        .unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let body = body_bytes(res).await.to_vec();
    (status, headers, body)
}

pub async fn get<S, B>(
    svc: &S,
    uri: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, HeaderMap, Vec<u8>)
where
    S: Service<Request<()>, Response = http::Response<B>> + Clone,
    S::Error: std::fmt::Debug,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    call(svc, Method::GET, uri, headers).await
}
