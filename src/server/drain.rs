//! Backpressure for HTTP/1 response bodies: the next body frame is taken
//! only once the socket has accepted everything the connection was given.
//!
//! hyper takes frames from a body while its own write queue is below
//! `max_buf_size` (~400 KiB by default), without waiting for the socket; a
//! client that never reads therefore pinned several file chunks in user
//! space (~0.5 MiB a connection). With the gate, a stalled HTTP/1
//! connection holds at most the one frame the socket did not take (plus a
//! chunk read ahead from disk); what lies beyond stays in the file.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Whether the connection's socket has taken all it was given.
#[derive(Debug)]
pub(super) struct Drain {
    drained: AtomicBool,
    waiting: Mutex<Option<Waker>>,
}

impl Drain {
    pub(super) fn new() -> Arc<Self> {
        Arc::new(Self {
            drained: AtomicBool::new(true),
            waiting: Mutex::new(None),
        })
    }

    /// A body frame went to the connection: not drained until it is written.
    pub(super) fn queued(&self) {
        self.drained.store(false, Ordering::Release);
    }

    /// Ready once everything queued so far has been written to the socket.
    pub(super) fn poll_drained(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.drained.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        {
            let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
            match waiting.as_ref() {
                Some(waker) if waker.will_wake(cx.waker()) => {}
                _ => *waiting = Some(cx.waker().clone()),
            }
        }
        // A write may have completed between the check and the registration.
        if self.drained.load(Ordering::Acquire) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// A write returned: `all` if it took every byte it was offered (the
    /// connection's queue is then empty).
    fn wrote(&self, all: bool) {
        if !all {
            self.drained.store(false, Ordering::Release);
            return;
        }
        if !self.drained.swap(true, Ordering::AcqRel) {
            let waker = self
                .waiting
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            if let Some(waker) = waker {
                waker.wake();
            }
        }
    }
}

/// A connection's stream that tells its [`Drain`] what each write took.
pub(super) struct Counted<S> {
    inner: S,
    // `None`: nothing to tell (strict backpressure off), writes pass as they are.
    drain: Option<Arc<Drain>>,
}

impl<S> Counted<S> {
    pub(super) fn new(inner: S, drain: Option<Arc<Drain>>) -> Self {
        Self { inner, drain }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = ready!(Pin::new(&mut this.inner).poll_write(cx, buf));
        if let (Ok(n), Some(drain)) = (&written, &this.drain) {
            drain.wrote(*n >= buf.len());
        }
        Poll::Ready(written)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = ready!(Pin::new(&mut this.inner).poll_write_vectored(cx, bufs));
        if let (Ok(n), Some(drain)) = (&written, &this.drain) {
            // hyper offers its whole queue (at most 16 buffers) at once.
            let offered: usize = bufs.iter().map(|b| b.len()).sum();
            drain.wrote(*n >= offered);
        }
        Poll::Ready(written)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Wake;

    struct Count(std::sync::atomic::AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn a_queued_frame_waits_for_a_write_that_takes_everything() {
        let drain = Drain::new();
        let count = Arc::new(Count(Default::default()));
        let waker = Waker::from(Arc::clone(&count));
        let mut cx = Context::from_waker(&waker);
        assert!(drain.poll_drained(&mut cx).is_ready());
        drain.queued();
        assert!(drain.poll_drained(&mut cx).is_pending());
        // A short write: still waiting, nobody woken.
        drain.wrote(false);
        assert!(drain.poll_drained(&mut cx).is_pending());
        assert_eq!(count.0.load(Ordering::Relaxed), 0);
        drain.wrote(true);
        assert_eq!(count.0.load(Ordering::Relaxed), 1);
        assert!(drain.poll_drained(&mut cx).is_ready());
    }
}
