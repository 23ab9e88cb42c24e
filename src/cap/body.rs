use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};
use pin_project::pin_project;

/// Body that ends after a number of bytes; used by
/// [`CapVolume`](super::CapVolume) when the inner service did not honour the
/// cap itself. With no limit it passes frames through untouched.
#[pin_project]
#[derive(Debug)]
pub struct CappedBody<B> {
    #[pin]
    inner: B,
    remaining: Option<u64>,
}

impl<B> CappedBody<B> {
    pub(super) fn new(inner: B, limit: Option<u64>) -> Self {
        Self {
            inner,
            remaining: limit,
        }
    }

    /// Unwraps the inner body.
    pub fn into_inner(self) -> B {
        self.inner
    }
}

impl<B> Body for CappedBody<B>
where
    B: Body,
{
    // `Bytes` so that a cut can keep a prefix of any buffer (zero-copy when
    // the inner body already yields `Bytes`).
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        if *this.remaining == Some(0) {
            return Poll::Ready(None);
        }
        let frame = match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            Poll::Ready(Some(Err(err))) => return Poll::Ready(Some(Err(err))),
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => return Poll::Pending,
        };
        let Some(remaining) = this.remaining else {
            return Poll::Ready(Some(Ok(
                frame.map_data(|mut d| d.copy_to_bytes(d.remaining()))
            )));
        };
        match frame.into_data() {
            Ok(mut data) => {
                let len = data.remaining() as u64;
                // `take` is below `len`, which came from a usize.
                let take = len.min(*remaining);
                *remaining -= take;
                Poll::Ready(Some(Ok(Frame::data(data.copy_to_bytes(take as usize)))))
            }
            // Trailers after a cut body would describe bytes not sent.
            Err(_) => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == Some(0) || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let inner = self.inner.size_hint();
        match self.remaining {
            None => inner,
            Some(remaining) => {
                let mut hint = SizeHint::new();
                hint.set_lower(inner.lower().min(remaining));
                hint.set_upper(inner.upper().map_or(remaining, |u| u.min(remaining)));
                hint
            }
        }
    }
}
