//! The connection side of experimental zero-copy sending (see
//! `media/region.rs`): a TCP stream whose writes of placeholder memory
//! become `sendfile(2)` of the file region it stands for. Every other write
//! goes to the socket as it is.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

use crate::media::region::{region_at, Region};

/// A server connection's stream; with `zero_copy` off it only forwards.
pub(crate) struct Stream {
    tcp: TcpStream,
    zero_copy: bool,
}

impl Stream {
    pub(crate) fn new(tcp: TcpStream, zero_copy: bool) -> Self {
        Self { tcp, zero_copy }
    }

    /// Sends (part of) `region` straight from the page cache.
    ///
    /// `sendfile` runs on the worker: it waits for no disk only while the
    /// region is in the page cache, which is why this is experimental (see
    /// bench/README.md, "Zero copy").
    fn poll_sendfile(&self, cx: &mut Context<'_>, region: &Region) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.tcp.poll_write_ready(cx))?;
            let mut offset = region.offset;
            let sent = self.tcp.try_io(Interest::WRITABLE, || {
                rustix::fs::sendfile(&self.tcp, &*region.file, Some(&mut offset), region.len)
                    .map_err(io::Error::from)
            });
            match sent {
                // The file ends before the region: never send other bytes
                // in its place; the connection ends instead.
                Ok(0) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "media file shrank while it was being sent",
                    )))
                }
                Ok(n) => return Poll::Ready(Ok(n)),
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => continue,
                Err(err) => return Poll::Ready(Err(err)),
            }
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.zero_copy {
            if let Some(region) = region_at(buf) {
                return this.poll_sendfile(cx, &region);
            }
        }
        Pin::new(&mut this.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if !this.zero_copy {
            return Pin::new(&mut this.tcp).poll_write_vectored(cx, bufs);
        }
        // Ordinary slices up to the first placeholder go out together; a
        // placeholder first goes out alone, by `sendfile`. The caller
        // writes the rest on its next call, as after any short write.
        match bufs
            .iter()
            .enumerate()
            .find_map(|(i, b)| Some((i, region_at(b)?)))
        {
            Some((0, region)) => this.poll_sendfile(cx, &region),
            Some((first, _)) => Pin::new(&mut this.tcp).poll_write_vectored(cx, &bufs[..first]),
            None => Pin::new(&mut this.tcp).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}
