//! HTTP/1 serving for the services that anyone on the network may connect to (the registry, the
//! proxy): an accept loop with the limits such a listener needs, which hyper and `axum::serve`
//! leave to their callers. `serve` runs hyper on each connection (the registry); the proxy reads
//! its own HTTP/1 through `serve_connections`, and keeps the head limits below itself with
//! `Conn`'s waits.
//!
//! - A connection limit under the open-files limit (`fds`). At the limit a new connection takes
//!   the place of the one that has waited longest for a request head; when every connection is
//!   busy with a request, the new one is answered 503 and closed at once (`conns`).
//! - A header timeout (from the accept, or from a kept-alive request's first byte, to the end of
//!   its head) and an idle timeout (a kept-alive connection waiting for its next request), both
//!   through hyper's own head timer (`head`). Bodies are not timed: a slow upload that keeps
//!   moving is never cut; a request whose bytes stop moving both ways for the idle timeout (a
//!   body that stopped coming, a response nobody reads) is closed, as nginx's
//!   client_body_timeout and send_timeout do.
//! - A head size limit, answered in the service's own error format, where hyper would answer 414
//!   or 431 with an empty body (`io`).

mod conns;
mod fds;
mod head;
mod io;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub use conns::Conn;
use conns::{Admission, Conns};
use head::HeadTimer;
use io::Guarded;

/// The longest request head (request line and headers) served: far over what any client of ours
/// sends (a bearer token is a few KiB), under hyper's own limits (a 64 KiB URI, a 400 KiB head),
/// so ours answers first.
pub const HEAD_LIMIT: usize = 64 * 1024;

/// How a server bounds its connections.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The most connections served at once.
    pub max_connections: usize,
    /// How long a request head may take to arrive.
    pub header_timeout: Duration,
    /// How long a kept-alive connection may wait for its next request, and a request's bytes
    /// may stand still.
    pub idle_timeout: Duration,
}

/// Why limits cannot be kept.
#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    /// More connections asked for than the open-files limit allows.
    #[error("--max-connections {asked} does not fit the open-files limit (RLIMIT_NOFILE {nofile}, room for {budget} connections with a file each and {reserved} descriptors kept): ask for fewer, or raise the limit (ulimit -n, LimitNOFILE= in the unit)", reserved = fds::RESERVED)]
    TooMany {
        /// The connections asked for.
        asked: usize,
        /// The connections that fit.
        budget: usize,
        /// The soft RLIMIT_NOFILE.
        nofile: u64,
    },
    /// The open-files limit leaves no room at all.
    #[error("the open-files limit (RLIMIT_NOFILE {0}) leaves no room for connections: raise it (ulimit -n, LimitNOFILE= in the unit)")]
    NoRoom(u64),
    /// getrlimit failed.
    #[error("read RLIMIT_NOFILE: {0}")]
    Rlimit(#[from] nix::Error),
}

impl Limits {
    /// Limits for this process: raises its soft open-files limit to the hard one, and takes
    /// `max_connections`, or by default `DEFAULT_MAX` or what the descriptors leave room for.
    pub fn for_this_process(max_connections: Option<usize>, header_timeout: Duration, idle_timeout: Duration) -> Result<Limits, LimitError> {
        let nofile = fds::raise_nofile()?;
        let budget = fds::budget(nofile);
        if budget == 0 {
            return Err(LimitError::NoRoom(nofile));
        }
        let max_connections = match max_connections {
            Some(asked) if asked > budget => return Err(LimitError::TooMany { asked, budget, nofile }),
            Some(asked) => asked,
            None => fds::DEFAULT_MAX.min(budget),
        };
        Ok(Limits { max_connections, header_timeout, idle_timeout })
    }
}

/// The body of an answer the server gives on its own (a head too large, a connection refused),
/// in the service's error format: its content type and text, for a status and a message.
pub type ErrorBody = fn(StatusCode, &str) -> (&'static str, String);

/// Serves HTTP/1 on `listener` with `handler` (the request and the client's address) until the
/// process ends.
pub async fn serve<F, Fut, B>(listener: TcpListener, limits: Limits, error_body: ErrorBody, handler: F) -> Infallible
where
    F: Fn(Request<Incoming>, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    serve_connections(listener, limits, error_body, move |stream, peer, conn| hyper_connection(stream, peer, conn, limits, error_body, handler.clone())).await
}

/// Accepts connections on `listener` until the process ends, and hands each one it admits to
/// `connection` (the socket, the client's address, and its place in the table, whose waits for
/// request heads the handler marks). The connection ends when the handler returns, or when its
/// place is given to a newer one, or when it is busy and no byte moved for the idle timeout.
pub async fn serve_connections<F, Fut>(listener: TcpListener, limits: Limits, error_body: ErrorBody, connection: F) -> Infallible
where
    F: Fn(TcpStream, SocketAddr, Arc<Conn>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let conns = Arc::new(Conns::new(limits.max_connections));
    let mut last_id = 0u64;
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            // The client left before it was taken, or a firewall refused it: that one only.
            Err(e) if matches!(e.raw_os_error(), Some(libc::ECONNABORTED | libc::ECONNRESET | libc::EPROTO | libc::EPERM)) => continue,
            Err(e) => {
                // Out of descriptors (files held besides connections) or memory, most likely:
                // free the place that waited longest and pause, rather than spin on a listener
                // that stays ready.
                if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)) {
                    conns.evict_one();
                }
                eprintln!("shibafu: accept on {}: {e}; pausing 100 ms", listener.local_addr().map_or("?".into(), |a| a.to_string()));
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        last_id += 1;
        match conns.admit(last_id) {
            Admission::Admitted(conn) => {
                let served = connection.clone()(stream, peer, conn.clone());
                // Boxed: the task then holds a pointer, and tokio's moves of its stage (at the
                // spawn, at the end) copy 8 bytes instead of a connection's whole state.
                tokio::spawn(Box::pin(guard_connection(served, conn, conns.clone(), limits)));
            }
            Admission::Refused => {
                let message = format!("all {} connections this server takes are busy with requests; try again shortly", conns.max());
                // Best effort and never waited for: the answer fits an empty socket buffer.
                let _ = stream.try_write(&answer(StatusCode::SERVICE_UNAVAILABLE, &message, error_body, "retry-after: 1\r\n"));
            }
        }
    }
}

/// Frees the connection's place in the table however its task ends.
struct Leave(Arc<Conns>, Arc<Conn>);

impl Drop for Leave {
    fn drop(&mut self) {
        self.0.leave(&self.1);
    }
}

/// Runs a connection's handler until it ends, is evicted, or stalls.
async fn guard_connection(served: impl Future<Output = ()>, conn: Arc<Conn>, conns: Arc<Conns>, limits: Limits) {
    let _leave = Leave(conns, conn.clone());
    tokio::select! {
        () = served => {}
        () = conn.evicted() => {}
        () = conn.stalled(limits.idle_timeout) => {}
    }
}

async fn hyper_connection<F, Fut, B>(stream: TcpStream, peer: SocketAddr, conn: Arc<Conn>, limits: Limits, error_body: ErrorBody, handler: F)
where
    F: Fn(Request<Incoming>, SocketAddr) -> Fut + Send + 'static,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let _ = stream.set_nodelay(true);
    let io = Guarded::new(stream, conn.clone(), HEAD_LIMIT);
    let mut http = hyper::server::conn::http1::Builder::new();
    // The duration given here only switches hyper's head timer on; HeadTimer sets the deadlines.
    http.timer(HeadTimer::new(conn.clone(), limits.header_timeout, limits.idle_timeout)).header_read_timeout(limits.header_timeout);
    let service = hyper::service::service_fn(move |req| {
        let response = handler(req, peer);
        async move { Ok::<_, Infallible>(response.await) }
    });
    // An upgraded connection (a WebSocket) leaves this server, and its limits, once the 101 is
    // sent: the service that upgraded it relays it from there.
    let _ = http.serve_connection(TokioIo::new(io), service).with_upgrades().await;
    if let Some((status, stream)) = conn.take_owed_answer() {
        // Counted as waiting while it lingers: the stall guard leaves it to LINGER.
        conn.begin_wait();
        let Ok(stream) = stream.set_nonblocking(true).and_then(|()| TcpStream::from_std(stream)) else { return };
        answer_and_close(stream, &answer(status, &head_too_large(status), error_body, "")).await;
    }
}

/// What a refused head is told: 414 for a request line over the limit, else 431.
pub fn head_too_large(status: StatusCode) -> String {
    if status == StatusCode::URI_TOO_LONG {
        format!("the request line is over {HEAD_LIMIT} bytes")
    } else {
        format!("the request head is over {HEAD_LIMIT} bytes")
    }
}

/// How long a refused client has to take its answer, and how much of what it still sends is
/// read meanwhile.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 1 << 20;

/// Writes `answer`, then reads and drops what the client still sends for a while before
/// closing: a close with unread bytes resets the connection, and the client could lose the
/// answer (what Go's net/http and nginx's lingering_close do too).
pub async fn answer_and_close(mut stream: TcpStream, answer: &[u8]) {
    if !matches!(tokio::time::timeout(LINGER, stream.write_all(answer)).await, Ok(Ok(()))) {
        return;
    }
    let _ = stream.shutdown().await;
    let _ = tokio::time::timeout(LINGER, async {
        let mut sink = vec![0; 16 * 1024];
        let mut read = 0;
        while read < LINGER_BYTES {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => read += n,
            }
        }
    })
    .await;
}

/// A whole HTTP/1.1 answer that closes the connection.
fn answer(status: StatusCode, message: &str, error_body: ErrorBody, extra_headers: &str) -> Vec<u8> {
    let (content_type, body) = error_body(status, message);
    whole_answer(status, content_type, &body, false, extra_headers)
}

/// A whole HTTP/1.1 answer with `body`, which closes the connection unless `keep_alive`.
pub fn whole_answer(status: StatusCode, content_type: &str, body: &str, keep_alive: bool, extra_headers: &str) -> Vec<u8> {
    let close = if keep_alive { "" } else { "connection: close\r\n" };
    format!(
        "HTTP/1.1 {} {}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n{close}{extra_headers}\r\n{body}",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    )
    .into_bytes()
}
