//! The connection's socket as hyper sees it: it notes when request bytes arrive (for the head
//! timer) and when any bytes move (for the stall guard), and refuses a head over the size limit
//! before hyper has it whole. hyper owns it, and goes on with it after an upgrade.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use hyper::StatusCode;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::conns::Conn;
use super::head::HeadScan;

/// A served connection's socket.
pub struct Guarded {
    stream: TcpStream,
    conn: Arc<Conn>,
    head_limit: usize,
    scan: HeadScan,
    refused: Option<StatusCode>,
    /// Whether everything hyper wrote was flushed (nothing of a response is in flight).
    flushed: bool,
}

impl Guarded {
    /// Wraps `stream`, refusing heads over `head_limit` bytes.
    pub fn new(stream: TcpStream, conn: Arc<Conn>, head_limit: usize) -> Guarded {
        Guarded { stream, conn, head_limit, scan: HeadScan::default(), refused: None, flushed: true }
    }


    fn wrote(&self, n: usize) -> Poll<io::Result<usize>> {
        if n > 0 {
            self.conn.bytes_moved();
        }
        Poll::Ready(Ok(n))
    }

}

/// hyper owns the socket (an upgraded connection goes on without this server), so a head
/// refused between responses leaves its answer owed on the connection, with a duplicate of the
/// socket to write it on.
impl Drop for Guarded {
    fn drop(&mut self) {
        let Some(status) = self.refused.filter(|_| self.flushed) else { return };
        let Ok(fd) = std::os::fd::AsFd::as_fd(&self.stream).try_clone_to_owned() else { return };
        self.conn.owe_answer(status, std::net::TcpStream::from(fd));
    }
}

impl AsyncRead for Guarded {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.stream).poll_read(cx, buf))?;
        if buf.filled().len() == before {
            return Poll::Ready(Ok(()));
        }
        self.conn.bytes_moved();
        let Some(wait) = self.conn.bytes_arrived() else {
            return Poll::Ready(Ok(()));
        };
        if self.scan.wait != wait {
            self.scan = HeadScan::new(wait);
        }
        let limit = self.head_limit;
        if let Some(status) = self.scan.feed(&buf.filled()[before..], limit) {
            // hyper never sees these bytes, so it cannot answer first; it ends on this error.
            buf.set_filled(before);
            self.refused = Some(status);
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, format!("request head over {limit} bytes"))));
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        self.flushed = false;
        let written = ready!(Pin::new(&mut self.stream).poll_write(cx, data))?;
        self.wrote(written)
    }

    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        self.flushed = false;
        let written = ready!(Pin::new(&mut self.stream).poll_write_vectored(cx, bufs))?;
        self.wrote(written)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(Pin::new(&mut self.stream).poll_flush(cx))?;
        self.flushed = true;
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
