//! `RequirePermission` with a stub inner service: each combinator
//! synchronous, asynchronous and mixed, and the refusal it gives.

use std::convert::Infallible;
use std::future::{ready, Future, Ready};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{header, Request, Response, StatusCode};
use http_body_util::BodyExt;
use tower::{Service, ServiceExt};

use super::*;
use crate::extension::Viewer;

/// The inner service: counts its calls, answers `200 inner`, and is not
/// `Clone` (a synchronous check must not need it).
struct Inner(Arc<AtomicUsize>);

impl Service<Request<()>> for Inner {
    type Response = Response<String>;
    type Error = Infallible;
    type Future = Ready<Result<Response<String>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<()>) -> Self::Future {
        self.0.fetch_add(1, Ordering::SeqCst);
        ready(Ok(Response::new("inner".to_owned())))
    }
}

/// The same, cloneable, for asynchronous checks.
#[derive(Clone)]
struct CloneInner(Arc<AtomicUsize>);

impl Service<Request<()>> for CloneInner {
    type Response = Response<String>;
    type Error = Infallible;
    type Future = Ready<Result<Response<String>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<()>) -> Self::Future {
        self.0.fetch_add(1, Ordering::SeqCst);
        ready(Ok(Response::new("inner".to_owned())))
    }
}

type Boxed = Pin<Box<dyn Future<Output = Checked<()>> + Send>>;

/// An asynchronous check that waits once, counts its runs, then decides
/// `decision`.
fn later(
    decision: Decision,
    runs: &Arc<AtomicUsize>,
) -> PermissionFn<impl Fn(Request<()>) -> Boxed + Send + Sync + 'static> {
    let runs = Arc::clone(runs);
    permission_fn(move |request: Request<()>| -> Boxed {
        let decision = decision.clone();
        let runs = Arc::clone(&runs);
        Box::pin(async move {
            tokio::task::yield_now().await;
            runs.fetch_add(1, Ordering::SeqCst);
            Checked::new(request, decision)
        })
    })
}

fn now(decision: Decision) -> impl Fn(&RequestHead<'_>) -> Decision + Send + Sync + 'static {
    move |_: &RequestHead<'_>| decision.clone()
}

fn no_401() -> Decision {
    Err(Denial::unauthenticated("sign in"))
}

fn no_403() -> Decision {
    Err(Denial::forbidden("not yours"))
}

fn no_503() -> Decision {
    Err(Denial::unavailable("policy down"))
}

/// Status, `WWW-Authenticate`, `Retry-After` and body of one answer.
async fn answer<S>(svc: S, request: Request<()>) -> (StatusCode, String)
where
    S: Service<Request<()>, Response = Response<crate::body::ResponseBody<String>>>,
    S::Error: std::fmt::Debug,
{
    let response = svc.oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    match status {
        StatusCode::UNAUTHORIZED => assert_eq!(
            headers[header::WWW_AUTHENTICATE],
            "Bearer realm=\"sage-stream\""
        ),
        StatusCode::SERVICE_UNAVAILABLE => assert_eq!(headers[header::RETRY_AFTER], "5"),
        _ => assert!(!headers.contains_key(header::WWW_AUTHENTICATE)),
    }
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

fn get() -> Request<()> {
    Request::get("/?path=a.mp4").body(()).unwrap()
}

async fn sync_status<P: Permission>(permission: P) -> (StatusCode, String) {
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = RequirePermission::new(Inner(Arc::clone(&calls)), permission);
    let answer = answer(svc, get()).await;
    // The inner service runs exactly when the answer is its own.
    let expected = usize::from(answer.0 == StatusCode::OK);
    assert_eq!(calls.load(Ordering::SeqCst), expected, "{answer:?}");
    answer
}

async fn async_status<P: AsyncPermission<()>>(permission: P) -> (StatusCode, String) {
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = RequirePermission::new_async(CloneInner(Arc::clone(&calls)), permission);
    let answer = answer(svc, get()).await;
    let expected = usize::from(answer.0 == StatusCode::OK);
    assert_eq!(calls.load(Ordering::SeqCst), expected, "{answer:?}");
    answer
}

fn ok() -> (StatusCode, String) {
    (StatusCode::OK, "inner".to_owned())
}

fn refused(status: StatusCode, reason: &str) -> (StatusCode, String) {
    (status, reason.to_owned())
}

#[tokio::test]
async fn each_refusal_has_its_status() {
    let r = Arc::new(AtomicUsize::new(0));
    for (decision, expected) in [
        (Ok(()), ok()),
        (no_401(), refused(StatusCode::UNAUTHORIZED, "sign in")),
        (no_403(), refused(StatusCode::FORBIDDEN, "not yours")),
        (
            no_503(),
            refused(StatusCode::SERVICE_UNAVAILABLE, "policy down"),
        ),
    ] {
        assert_eq!(sync_status(now(decision.clone())).await, expected);
        assert_eq!(async_status(later(decision, &r)).await, expected);
    }
}

#[tokio::test]
async fn or_prefers_a_401_to_a_403_in_either_order() {
    let r = Arc::new(AtomicUsize::new(0));
    let unauth = refused(StatusCode::UNAUTHORIZED, "sign in");
    let forbidden = refused(StatusCode::FORBIDDEN, "not yours");
    let unavailable = refused(StatusCode::SERVICE_UNAVAILABLE, "policy down");
    for (first, second, expected) in [
        (no_401(), no_403(), &unauth),
        (no_403(), no_401(), &unauth),
        (no_403(), no_403(), &forbidden),
        // Otherwise the first refusal stands.
        (no_503(), no_403(), &unavailable),
        (no_403(), no_503(), &forbidden),
        (no_503(), no_401(), &unavailable),
        (no_401(), Ok(()), &ok()),
        (Ok(()), no_403(), &ok()),
    ] {
        let case = format!("{first:?} or {second:?}");
        // Synchronous, asynchronous and mixed both ways: one rule.
        let (f, s) = (first.clone(), second.clone());
        assert_eq!(
            &sync_status(now(f.clone()).or(now(s.clone()))).await,
            expected,
            "sync {case}"
        );
        assert_eq!(
            &async_status(later(f.clone(), &r).or(later(s.clone(), &r))).await,
            expected,
            "async {case}"
        );
        assert_eq!(
            &async_status(now(f.clone()).or(later(s.clone(), &r))).await,
            expected,
            "sync|async {case}"
        );
        assert_eq!(
            &async_status(later(f, &r).or(now(s))).await,
            expected,
            "async|sync {case}"
        );
    }
}

#[tokio::test]
async fn and_gives_the_first_refusal_and_stops_there() {
    let runs = Arc::new(AtomicUsize::new(0));
    let forbidden = refused(StatusCode::FORBIDDEN, "not yours");
    assert_eq!(
        sync_status(now(no_403()).and(now(no_401()))).await,
        forbidden
    );
    assert_eq!(
        async_status(later(no_403(), &runs).and(later(no_401(), &runs))).await,
        forbidden
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the second never ran");
    assert_eq!(
        async_status(now(Ok(())).and(later(no_503(), &runs))).await,
        refused(StatusCode::SERVICE_UNAVAILABLE, "policy down")
    );
    assert_eq!(
        async_status(later(Ok(()), &runs).and(now(Ok(())))).await,
        ok()
    );
    assert_eq!(sync_status(AllowAny.and(now(Ok(())))).await, ok());
}

#[tokio::test]
async fn not_inverts_sync_and_async_checks() {
    let r = Arc::new(AtomicUsize::new(0));
    let forbidden = refused(StatusCode::FORBIDDEN, "forbidden");
    assert_eq!(sync_status(AllowAny.not()).await, forbidden);
    assert_eq!(sync_status(now(no_401()).not()).await, ok());
    assert_eq!(async_status(later(Ok(()), &r).not()).await, forbidden);
    assert_eq!(async_status(later(no_503(), &r).not()).await, ok());
    // Nested in a mixed combination.
    assert_eq!(
        async_status(IsAuthenticated.or(later(Ok(()), &r).not())).await,
        refused(StatusCode::UNAUTHORIZED, "authentication required")
    );
}

#[tokio::test]
async fn a_refusing_async_check_hands_the_request_to_the_second() {
    // The second branch sees the very request: its header and the viewer
    // an outer layer set.
    let second = permission_fn(|request: Request<()>| async move {
        tokio::task::yield_now().await;
        let seen = request
            .headers()
            .get("x-ticket")
            .map(|v| v.as_bytes().to_vec());
        let viewer = request.extensions().get::<Viewer>().cloned();
        let decision = match (seen.as_deref(), viewer) {
            (Some(b"42"), Some(v)) if v.user_id.as_deref() == Some("7") => Ok(()),
            _ => Err(Denial::forbidden("lost the request")),
        };
        Checked::new(request, decision)
    });
    let runs = Arc::new(AtomicUsize::new(0));
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = RequirePermission::new_async(
        CloneInner(Arc::clone(&calls)),
        later(no_401(), &runs).or(second),
    );
    let mut request = get();
    request
        .headers_mut()
        .insert("x-ticket", "42".parse().unwrap());
    request.extensions_mut().insert(Viewer::user("7"));
    assert_eq!(answer(svc, request).await, ok());
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn and_passes_on_what_the_first_check_learned() {
    // An asynchronous check that names the viewer (as AuthRequest does);
    // IsAuthenticated after it sees that viewer.
    let names = permission_fn(|mut request: Request<()>| async move {
        tokio::task::yield_now().await;
        request.extensions_mut().insert(Viewer::user("7"));
        Checked::new(request, Ok(()))
    });
    assert_eq!(async_status(names.and(IsAuthenticated)).await, ok());
    assert_eq!(
        async_status(
            IsAuthenticated.and(permission_fn(|r: Request<()>| async move {
                Checked::new(r, Ok(()))
            }))
        )
        .await,
        refused(StatusCode::UNAUTHORIZED, "authentication required")
    );
}

#[tokio::test]
async fn mixed_combinations_with_the_built_in_checks() {
    let runs = Arc::new(AtomicUsize::new(0));
    // IsAuthenticated.or(async): an anonymous viewer the async check allows.
    assert_eq!(
        async_status(IsAuthenticated.or(later(Ok(()), &runs))).await,
        ok()
    );
    // SignedUrl.and(async): no signature, so the async check never runs.
    let before = runs.load(Ordering::SeqCst);
    assert_eq!(
        async_status(SignedUrl::new("k").and(later(Ok(()), &runs))).await,
        refused(StatusCode::FORBIDDEN, "missing signature")
    );
    assert_eq!(runs.load(Ordering::SeqCst), before);
    // A signed link, then the async check.
    let signed = SignedUrl::new("k");
    let uri = format!(
        "/?path=a.mp4&{}",
        signed.signature_query("a.mp4", std::time::Duration::from_secs(60))
    );
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = RequirePermission::new_async(
        CloneInner(Arc::clone(&calls)),
        signed.and(later(Ok(()), &runs)),
    );
    assert_eq!(answer(svc, Request::get(uri).body(()).unwrap()).await, ok());
    // And the 401-over-403 rule across kinds: anonymous, tampered link.
    assert_eq!(
        async_status(SignedUrl::new("k").or(IsAuthenticated.and(later(Ok(()), &runs)))).await,
        refused(StatusCode::UNAUTHORIZED, "authentication required")
    );
}

#[tokio::test]
async fn a_path_the_edge_refused_is_answered_before_any_check() {
    let runs = Arc::new(AtomicUsize::new(0));
    let mut request = get();
    request
        .extensions_mut()
        .insert(crate::extension::MediaPathError::ParentComponent);
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = RequirePermission::new_async(CloneInner(Arc::clone(&calls)), later(Ok(()), &runs));
    let (status, _) = answer(svc, request).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(runs.load(Ordering::SeqCst), 0);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn route_permission_runs_the_settings_classes() {
    let mut settings = crate::settings::Settings::default();
    settings.default_permission_classes = vec![crate::settings::PermissionClass::IsAuthenticated];
    let route = settings.permission().unwrap();
    assert!(!route.is_async());
    assert_eq!(
        async_status(route.clone()).await,
        refused(StatusCode::UNAUTHORIZED, "authentication required")
    );
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = RequirePermission::new_async(CloneInner(Arc::clone(&calls)), route);
    let mut request = get();
    request.extensions_mut().insert(Viewer::user("7"));
    assert_eq!(answer(svc, request).await, ok());
}
