use std::pin::Pin;
use std::task::{Context, Poll};

use http_body::{Body, Frame, SizeHint};
use pin_project::pin_project;

use super::layer::Slot;

/// Body that holds a viewer's stream slot until it ends or is dropped.
#[pin_project]
#[derive(Debug)]
pub struct SlotBody<B> {
    #[pin]
    inner: B,
    slot: Option<Slot>,
}

impl<B> SlotBody<B> {
    pub(super) fn new(inner: B, slot: Option<Slot>) -> Self {
        Self { inner, slot }
    }
}

impl<B: Body> Body for SlotBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if matches!(polled, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            // Free the slot as soon as the stream is over, not when the
            // server gets round to dropping the body.
            this.slot.take();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
