//! Timing and sizing request heads.
//!
//! hyper's `header_read_timeout` arms its timer whenever it waits for a head: on a fresh
//! connection, and again as soon as a kept-alive connection goes idle (hyper 1.x), so on its own
//! one duration would bound both the head and the idle wait. hyper asks its `Timer` for that
//! sleep, so ours gives a sleep that knows the connection: its deadline is the idle timeout
//! after the wait began while no byte of the next request has come, and the header timeout
//! after the first byte (or after the accept, for a fresh connection's first request). hyper
//! drops the sleep once the head is parsed, so bodies are never timed by it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::StatusCode;

use super::conns::Conn;

/// The hyper `Timer` of one connection.
pub struct HeadTimer {
    conn: Arc<Conn>,
    header: Duration,
    idle: Duration,
}

impl HeadTimer {
    /// A timer for `conn`'s head waits.
    pub fn new(conn: Arc<Conn>, header: Duration, idle: Duration) -> HeadTimer {
        HeadTimer { conn, header, idle }
    }
}

impl hyper::rt::Timer for HeadTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        hyper_util::rt::TokioTimer::new().sleep(duration)
    }

    /// hyper's head wait begins (it asks for now + header_read_timeout; the deadline is ours).
    fn sleep_until(&self, _deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        let number = self.conn.begin_wait();
        Box::pin(HeadSleep {
            conn: self.conn.clone(),
            number,
            header: self.header,
            idle: self.idle,
            timer: Box::pin(tokio::time::sleep(self.header)),
        })
    }
}

/// The sleep that ends one head wait: hyper closes the connection when it fires.
struct HeadSleep {
    conn: Arc<Conn>,
    number: u64,
    header: Duration,
    idle: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl HeadSleep {
    fn deadline(&self) -> Option<Instant> {
        self.conn.head_deadline(self.number, self.header, self.idle)
    }
}

impl Future for HeadSleep {
    type Output = ();

    /// hyper polls this each time it finds the head incomplete, so a first byte that arrived
    /// moves the deadline before the timer is polled again.
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let Some(deadline) = self.deadline() else {
            return Poll::Pending;
        };
        let deadline = tokio::time::Instant::from_std(deadline);
        if self.timer.deadline() != deadline {
            self.timer.as_mut().reset(deadline);
        }
        self.timer.as_mut().poll(cx)
    }
}

impl hyper::rt::Sleep for HeadSleep {}

impl Drop for HeadSleep {
    fn drop(&mut self) {
        self.conn.end_wait(self.number);
    }
}

/// Counts the bytes of a request head as they arrive, up to its blank line, to refuse one over
/// a limit before hyper does: hyper's own answers (414 past the `http` crate's 64 KiB URI
/// limit, 431 past its buffer) carry no body, and clients of a service want its error format.
#[derive(Debug, Default)]
pub struct HeadScan {
    /// The head wait the bytes belong to.
    pub wait: u64,
    len: usize,
    started: bool,
    at_line_start: bool,
    first_line_done: bool,
    done: bool,
}

impl HeadScan {
    /// A scan of the head awaited by wait `wait`.
    pub fn new(wait: u64) -> HeadScan {
        HeadScan { wait, ..HeadScan::default() }
    }

    /// Takes the next bytes; answers the status to refuse the request with once the head passed
    /// `limit` bytes: 414 while still in the request line, else 431. Bytes after the head's
    /// blank line (its body, the next request) are not counted.
    pub fn feed(&mut self, bytes: &[u8], limit: usize) -> Option<StatusCode> {
        for &b in bytes {
            if self.done {
                return None;
            }
            // Empty lines before a request line are skipped by parsers (RFC 9112, 2.2).
            if !self.started && (b == b'\r' || b == b'\n') {
                continue;
            }
            self.started = true;
            self.len += 1;
            match b {
                b'\n' if self.at_line_start => self.done = true,
                b'\n' => {
                    self.first_line_done = true;
                    self.at_line_start = true;
                }
                b'\r' => {}
                _ => self.at_line_start = false,
            }
            if self.len > limit && !self.done {
                return Some(if self.first_line_done { StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE } else { StatusCode::URI_TOO_LONG });
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::HeadScan;
    use hyper::StatusCode;

    #[test]
    fn a_long_request_line_is_414_and_long_headers_are_431() {
        let mut s = HeadScan::new(1);
        assert_eq!(s.feed(b"GET /v2/", 16), None);
        assert_eq!(s.feed(b"aaaaaaaaaa", 16), Some(StatusCode::URI_TOO_LONG));
        let mut s = HeadScan::new(1);
        assert_eq!(s.feed(b"GET / HTTP/1.1\r\nHost: x\r\nX-Long: ", 40), None);
        assert_eq!(s.feed(b"bbbbbbbbbb", 40), Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE));
    }

    #[test]
    fn counting_stops_at_the_blank_line_even_split_across_reads() {
        let mut s = HeadScan::new(1);
        assert_eq!(s.feed(b"\r\n\r\nPUT /v2/x HTTP/1.1\r\nContent-Length: 100\r", 44), None, "leading empty lines are not the end");
        assert_eq!(s.feed(b"\n", 44), None);
        assert_eq!(s.feed(b"\r\n", 44), None, "the head is 44 bytes");
        assert_eq!(s.feed(&[b'x'; 100], 44), None, "the body is not the head");
        let mut bare = HeadScan::new(1);
        assert_eq!(bare.feed(b"GET / HTTP/1.1\nHost: x\n\n", 24), None, "bare LF ends lines too");
        assert_eq!(bare.feed(b"GET / HTTP/1.1\n", 24), None);
    }
}
