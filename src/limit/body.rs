use std::pin::Pin;
use std::task::{Context, Poll};

use http_body::{Body, Frame, SizeHint};
use pin_project::pin_project;

use super::Held;
use crate::body::{BodyEnd, Guarded, OnBodyEnd};

/// Body that holds a viewer's stream slot until it ends or is dropped, by
/// the crate's one end-of-response rule: the slot is free as soon as the
/// stream is over, not when the server gets round to dropping the body.
#[pin_project]
#[derive(Debug)]
pub struct SlotBody<B> {
    #[pin]
    inner: Guarded<B, Held>,
}

impl<B: Body> SlotBody<B> {
    pub(super) fn new(inner: B, slot: Option<Held>) -> Self {
        Self {
            inner: Guarded::new(inner, slot),
        }
    }
}

impl OnBodyEnd for Held {
    fn on_end(self, _: BodyEnd) {
        // Dropping the slot or lease frees it: the count on this node at
        // once, the fleet's lease through the Redis store's task.
        match self {
            Held::Node(slot) => drop(slot),
            #[cfg(feature = "redis")]
            Held::Fleet(lease) => drop(lease),
        }
    }
}

impl<B: Body> Body for SlotBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
