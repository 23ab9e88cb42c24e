//! [`RowAck`]: how a sink tells a response that its row is safe.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

#[derive(Debug, Default)]
struct Shared {
    // The row was handed to the sink with this ack: the response waits.
    armed: AtomicBool,
    released: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

/// A response waiting for its row: the sink releases it (or drops it) once
/// the row is safe, or once it gives up making it so. Until then the
/// response holds back its last bytes (see [`RecordSink::record_acked`]).
///
/// [`RecordSink::record_acked`]: super::RecordSink::record_acked
#[derive(Debug)]
pub struct RowAck {
    shared: Arc<Shared>,
}

impl RowAck {
    /// The row is safe (or will not be made so): the response goes on.
    pub fn release(self) {
        // `Drop` does the work.
        drop(self);
    }

    /// The row goes to the sink with this ack: from now on the response
    /// waits for it.
    pub(crate) fn arm(&self) {
        self.shared.armed.store(true, Ordering::Release);
    }
}

impl Drop for RowAck {
    fn drop(&mut self) {
        self.shared.released.store(true, Ordering::Release);
        let waker = self
            .shared
            .waker
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// The response's side of a [`RowAck`].
#[derive(Debug)]
pub(crate) struct AckWait {
    shared: Arc<Shared>,
}

impl AckWait {
    /// Ready once the ack is released or dropped.
    pub(crate) fn poll_released(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.is_released() {
            return Poll::Ready(());
        }
        let mut waker = self.shared.waker.lock().unwrap_or_else(|e| e.into_inner());
        // Checked again under the lock: a release in between has taken or
        // will take the waker stored here.
        if self.is_released() {
            return Poll::Ready(());
        }
        match waker.as_mut() {
            Some(w) => w.clone_from(cx.waker()),
            None => *waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Whether the row was handed over with the ack (and the response may
    /// have to wait).
    pub(crate) fn is_armed(&self) -> bool {
        self.shared.armed.load(Ordering::Acquire)
    }

    /// Whether the ack was released (or dropped).
    pub(crate) fn is_released(&self) -> bool {
        self.shared.released.load(Ordering::Acquire)
    }
}

/// A new ack and the response's side of it.
pub(crate) fn ack_pair() -> (RowAck, AckWait) {
    let shared = Arc::new(Shared::default());
    (
        RowAck {
            shared: Arc::clone(&shared),
        },
        AckWait { shared },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_wakes_the_waiting_response_once() {
        let (ack, wait) = ack_pair();
        let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        struct Count(Arc<std::sync::atomic::AtomicUsize>);
        impl std::task::Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let waker = Waker::from(Arc::new(Count(Arc::clone(&count))));
        let mut cx = Context::from_waker(&waker);
        assert!(wait.poll_released(&mut cx).is_pending());
        assert!(wait.poll_released(&mut cx).is_pending());
        ack.release();
        assert_eq!(count.load(Ordering::SeqCst), 1);
        assert!(wait.poll_released(&mut cx).is_ready());
    }
}
