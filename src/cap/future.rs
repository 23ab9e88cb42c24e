use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http::{header, HeaderValue, Response, StatusCode};
use pin_project::pin_project;

use super::{CappedBody, VolumeCap};

/// Response future of [`CapVolume`](super::CapVolume).
#[pin_project]
#[derive(Debug)]
pub struct ResponseFuture<F> {
    #[pin]
    inner: F,
    cap: Option<VolumeCap>,
}

impl<F> ResponseFuture<F> {
    pub(super) fn new(inner: F, cap: Option<VolumeCap>) -> Self {
        Self { inner, cap }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<CappedBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = ready!(this.inner.poll(cx))?;
        let limit = this
            .cap
            .and_then(|cap| cut_single_range(&response, cap.bytes()));
        let (mut parts, body) = response.into_parts();
        if let Some((start, end, total)) = limit {
            let kept = end - start + 1;
            if let Ok(value) = HeaderValue::from_str(&format!("bytes {start}-{end}/{total}")) {
                parts.headers.insert(header::CONTENT_RANGE, value);
                parts
                    .headers
                    .insert(header::CONTENT_LENGTH, HeaderValue::from(kept));
                return Poll::Ready(Ok(Response::from_parts(
                    parts,
                    CappedBody::new(body, Some(kept)),
                )));
            }
        }
        Poll::Ready(Ok(Response::from_parts(parts, CappedBody::new(body, None))))
    }
}

/// For a single-range `206` longer than `cap`: the new first, last and total.
fn cut_single_range<B>(response: &Response<B>, cap: u64) -> Option<(u64, u64, String)> {
    if response.status() != StatusCode::PARTIAL_CONTENT {
        return None;
    }
    let value = response
        .headers()
        .get(header::CONTENT_RANGE)?
        .to_str()
        .ok()?;
    let (range, total) = value.strip_prefix("bytes ")?.split_once('/')?;
    let (first, last) = range.split_once('-')?;
    let (first, last): (u64, u64) = (first.trim().parse().ok()?, last.trim().parse().ok()?);
    if last < first || last - first < cap {
        return None;
    }
    Some((first, first + cap - 1, total.trim().to_owned()))
}
