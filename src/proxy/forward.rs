//! One client connection through the proxy: request heads read under the server's head limits,
//! routed by host, passed to the container over a kept-alive connection, and the answer passed
//! back, bodies streaming both ways at once; a WebSocket upgrade becomes a plain relay.
//!
//! One task does all of it, client and container side, so a request costs no hand-over
//! between tasks, and every buffer is the connection's own, reused request after request.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpStream;

use super::body::{relay, Buf, Side, HEAD_READ, KEPT_SIZE};
use super::message::{self, Asked, Framing, Refusal};
use super::routes::{Backend, RouteTable};
use super::upstream::{self, Upstream};
use hyper::StatusCode;

use crate::http_server::{answer_and_close, head_too_large, whole_answer, Conn, Limits, HEAD_LIMIT};

/// A client connection and what it keeps between requests.
struct Client {
    stream: TcpStream,
    conn: Arc<Conn>,
    /// The client's address, as X-Forwarded-For gives it.
    peer: String,
    /// Bytes from the client not used yet.
    buf: Buf,
    /// Bytes from the container not used yet.
    up_buf: Buf,
    /// The request head as the container gets it.
    request: Vec<u8>,
    /// The response head as the client gets it.
    response: Vec<u8>,
    /// TCP_NODELAY is on: set once an answer takes more than one write, or the connection is
    /// kept alive (a connection closed after one answer in one write never needs it).
    nodelay: bool,
}

impl Client {
    fn set_nodelay(&mut self) {
        if !self.nodelay {
            self.nodelay = self.stream.set_nodelay(true).is_ok();
        }
    }
}

/// Room made at first for a request or response head as passed on (with the first body bytes).
const HEAD_SIZE: usize = 2048;

/// What becomes of the client's connection after a request.
enum Next {
    /// It waits for another request.
    KeepAlive,
    /// It closes now.
    Close,
    /// It closes after this answer (read on for a while, so the client gets it).
    CloseAnswering(Vec<u8>),
    /// It was switched to another protocol: relayed to this container connection.
    Upgraded(TcpStream),
}

/// Serves one client connection until it closes.
pub async fn connection(stream: TcpStream, peer: SocketAddr, conn: Arc<Conn>, routes: Arc<RouteTable>, limits: Limits) {
    let [request, response] = spare::take_heads();
    let [buf, up_buf] = spare::take_bufs();
    let mut client = Client { stream, conn, peer: peer.ip().to_string(), buf, up_buf, request, response, nodelay: false };
    let last = serve_client(&mut client, &routes, limits).await;
    let Client { stream, conn, buf, up_buf, request, response, .. } = client;
    spare::give_back([request, response], [buf, up_buf]);
    match last {
        Next::CloseAnswering(answer) => {
            // Counted as waiting while it lingers: the stall guard leaves it to the linger.
            conn.begin_wait();
            answer_and_close(stream, &answer).await;
        }
        Next::Upgraded(container) => {
            // The relay leaves this server's limits, as the HTTP connection it was is done.
            tokio::spawn(relay_upgraded(stream, container));
        }
        Next::Close | Next::KeepAlive => {}
    }
}

/// Answers requests until one ends the connection; returns how it ends.
async fn serve_client(client: &mut Client, routes: &RouteTable, limits: Limits) -> Next {
    loop {
        let next = match read_head(client, limits).await {
            Ok(len) => serve_request(client, len, routes).await,
            Err(HeadFailure::Closed) => Next::Close,
            Err(HeadFailure::TooLarge(status)) => Next::CloseAnswering(plain(status, &format!("{}\n", head_too_large(status)), false, false)),
        };
        if !matches!(next, Next::KeepAlive) {
            return next;
        }
        // Kept alive, the next answer may follow one still unacknowledged: Nagle's algorithm
        // would hold it (nginx's tcp_nodelay does the same at this point).
        client.set_nodelay();
    }
}

/// The buffers of connections that ended, kept by each worker for its next connections (with
/// a connection per request, their allocations showed in the proxy's CPU).
mod spare {
    use std::cell::RefCell;

    use super::{Buf, HEAD_SIZE, KEPT_SIZE};

    /// The most sets kept per worker.
    const MAX: usize = 64;

    thread_local! {
        static HEADS: RefCell<Vec<[Vec<u8>; 2]>> = const { RefCell::new(Vec::new()) };
        static BUFS: RefCell<Vec<[Buf; 2]>> = const { RefCell::new(Vec::new()) };
    }

    /// Two head buffers, empty.
    pub fn take_heads() -> [Vec<u8>; 2] {
        HEADS.with_borrow_mut(Vec::pop).unwrap_or_else(|| [Vec::with_capacity(HEAD_SIZE), Vec::with_capacity(HEAD_SIZE)])
    }

    /// Two read buffers, empty.
    pub fn take_bufs() -> [Buf; 2] {
        BUFS.with_borrow_mut(Vec::pop).unwrap_or_default()
    }

    /// Keeps a connection's buffers for another, emptied, unless they grew large.
    pub fn give_back(mut heads: [Vec<u8>; 2], mut bufs: [Buf; 2]) {
        if heads.iter().all(|h| h.capacity() <= KEPT_SIZE) {
            heads.iter_mut().for_each(Vec::clear);
            HEADS.with_borrow_mut(|kept| (kept.len() < MAX).then(|| kept.push(heads)));
        }
        if bufs.iter().all(|b| b.capacity() <= KEPT_SIZE) {
            bufs.iter_mut().for_each(Buf::clear);
            BUFS.with_borrow_mut(|kept| (kept.len() < MAX).then(|| kept.push(bufs)));
        }
    }
}

/// Why no request head came.
enum HeadFailure {
    /// The client closed, or timed out.
    Closed,
    /// It is over the size limit: 414 in the request line, else 431.
    TooLarge(StatusCode),
}

/// Ends a head wait however the read ends.
struct Waiting<'a>(&'a Conn, u64);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.end_wait(self.1);
    }
}

/// Reads until a whole request head is in the client's buffer; returns its length.
async fn read_head(client: &mut Client, limits: Limits) -> Result<usize, HeadFailure> {
    let conn = &*client.conn;
    let wait = Waiting(conn, conn.begin_wait());
    let mut side = Side { io: &mut client.stream, conn: Some(conn) };
    let mut looked = 0;
    loop {
        if looked == 0 {
            // Empty lines before a request line are skipped (RFC 9112 2.2).
            let blank = client.buf.filled().iter().take_while(|&&b| b == b'\r' || b == b'\n').count();
            client.buf.consume(blank);
        }
        let have = client.buf.filled();
        if !have.is_empty() {
            conn.bytes_arrived();
            match message::head_end(have, looked) {
                Some(end) if end <= HEAD_LIMIT => return Ok(end),
                None if have.len() <= HEAD_LIMIT => looked = have.len(),
                _ => return Err(HeadFailure::TooLarge(if have[..HEAD_LIMIT].contains(&b'\n') { StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE } else { StatusCode::URI_TOO_LONG })),
            }
        }
        let Some(deadline) = conn.head_deadline(wait.1, limits.header_timeout, limits.idle_timeout) else {
            return Err(HeadFailure::Closed);
        };
        match tokio::time::timeout_at(deadline.into(), client.buf.fill(&mut side, HEAD_READ)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return Err(HeadFailure::Closed),
        }
    }
}

/// Answers the request whose head is the first `len` bytes of the client's buffer.
async fn serve_request(client: &mut Client, len: usize, routes: &RouteTable) -> Next {
    let parsed = message::request(client.buf.filled(), len, &client.peer, &mut client.request);
    let req = match parsed {
        Ok(req) => req,
        Err(Refusal { status, message }) => return Next::CloseAnswering(plain(status, &format!("{message}\n"), false, false)),
    };
    let host = std::str::from_utf8(&client.buf.filled()[req.host.clone()]).unwrap_or("");
    let backend = routes.lookup(host);
    let asked = Asked { http10: req.http10, head_method: req.head_method, keep_alive: req.keep_alive, upgrade: req.upgrade.is_some() };
    let Some(backend) = backend else {
        let text = format!("no running container answers for host {host:?}; containers are reached as NAME.localhost\n");
        client.buf.consume(req.len);
        return own_answer(client, StatusCode::NOT_FOUND, &text, asked, req.framing).await;
    };
    client.buf.consume(req.len);
    // Sent again on another connection if a kept one fails before answering: only a request
    // whose body is not consumed and that may be done twice (RFC 9110 9.2.2).
    let resend = req.framing == Framing::None && req.idempotent;
    match exchange(client, &backend, req.framing, asked, resend).await {
        Ok(next) => next,
        Err(Failure::Unanswered(e)) => {
            let text = format!("502 Bad Gateway: container {} ({}) is not answering: {e}\n", backend.name, backend.addr);
            own_answer(client, StatusCode::BAD_GATEWAY, &text, asked, req.framing).await
        }
        Err(Failure::Answered) => Next::Close,
    }
}

/// The proxy's own answer to a request: the connection stays when the request had no body
/// (none is left unread) and the client keeps it.
async fn own_answer(client: &mut Client, status: StatusCode, text: &str, asked: Asked, framing: Framing) -> Next {
    let keep = framing == Framing::None && asked.keep_alive;
    let answer = plain(status, text, keep, asked.head_method);
    if !keep {
        return Next::CloseAnswering(answer);
    }
    let mut side = Side { io: &mut client.stream, conn: Some(&*client.conn) };
    match side.write_all(&answer).await {
        Ok(()) => Next::KeepAlive,
        Err(_) => Next::Close,
    }
}

/// A plain-text answer (its length but not its body, to a HEAD request).
fn plain(status: StatusCode, text: &str, keep_alive: bool, head_method: bool) -> Vec<u8> {
    let mut answer = whole_answer(status, "text/plain; charset=utf-8", text, keep_alive, "");
    if head_method {
        answer.truncate(answer.len() - text.len());
    }
    answer
}

/// How an exchange with the container failed.
enum Failure {
    /// Before any of the answer reached the client: it can still be told.
    Unanswered(io::Error),
    /// After: the client's connection is all that can be closed.
    Answered,
}

/// Sends the request to the container and its answer to the client. A connection kept from an
/// earlier request that turns out closed is replaced while nothing of the request is lost: a
/// request the container cannot have had (its head was not written) goes on another, and so
/// does one that may be `resend` when the connection closes before answering; any other only
/// goes on a kept connection that shows no sign of having closed.
async fn exchange(client: &mut Client, backend: &Backend, framing: Framing, asked: Asked, resend: bool) -> Result<Next, Failure> {
    loop {
        let up = match upstream::take(backend.addr) {
            Some(up) if resend || looks_open(&up.stream) => up,
            _ => upstream::connect(backend.addr).await.map_err(Failure::Unanswered)?,
        };
        match exchange_on(client, up, backend, framing, asked, resend).await {
            Err(Attempt::Stale) => continue,
            Err(Attempt::Failed(f)) => return Err(f),
            Ok(next) => return Ok(next),
        }
    }
}

/// Whether a kept connection's socket has nothing to read: a container that closed it left an
/// end of file there.
fn looks_open(stream: &TcpStream) -> bool {
    matches!(stream.try_read(&mut [0u8; 1]), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}

/// How one try on a container connection failed.
enum Attempt {
    /// A kept connection was closed before the request went: try another.
    Stale,
    /// For good.
    Failed(Failure),
}

async fn exchange_on(client: &mut Client, up: Upstream, backend: &Backend, framing: Framing, asked: Asked, resend: bool) -> Result<Next, Attempt> {
    let Upstream { mut stream, reused } = up;
    let Client { stream: client_stream, conn, buf, up_buf, request, response, .. } = client;
    up_buf.consume(up_buf.filled().len());
    let (client_read, client_write) = client_stream.split();
    let (up_read, up_write) = stream.split();
    let mut to_client = Side { io: client_write, conn: Some(&**conn) };
    let mut from_up = Side { io: up_read, conn: None };
    let mut to_up = Side { io: up_write, conn: None };
    let outcome = if framing == Framing::None {
        // Sent as it is, and kept, so it can go again on another connection.
        if let Err(e) = to_up.write_all(request).await {
            return Err(if reused { Attempt::Stale } else { Attempt::Failed(Failure::Unanswered(e)) });
        }
        let received = receive(up_buf, &mut from_up, &mut to_client, response, asked).await;
        match received {
            Err(Failure::Unanswered(_)) if reused && resend && up_buf.filled().is_empty() => return Err(Attempt::Stale),
            other => other.map(|r| (r, true)),
        }
    } else {
        let mut from_client = Side { io: client_read, conn: Some(&**conn) };
        let send = relay(framing, false, buf, &mut from_client, &mut to_up, request);
        let answer = receive(up_buf, &mut from_up, &mut to_client, response, asked);
        // Boxed, as the rarer path: the connection's state is the size of its largest wait.
        Box::pin(send_and_receive(send, answer)).await
    }
    .map_err(Attempt::Failed)?;
    let (received, request_sent) = outcome;
    match received {
        Received::Switched => {
            // What either side sent past the switch goes first.
            let ok = to_client.write_all(up_buf.filled()).await.is_ok() && to_up.write_all(buf.filled()).await.is_ok();
            up_buf.consume(up_buf.filled().len());
            buf.consume(buf.filled().len());
            Ok(if ok { Next::Upgraded(stream) } else { Next::Close })
        }
        Received::Done { reusable, close } => {
            for head in [&mut *request, &mut *response] {
                if head.capacity() > KEPT_SIZE {
                    *head = Vec::new();
                }
            }
            if reusable && request_sent && up_buf.filled().is_empty() {
                upstream::give_back(backend.addr, stream);
            }
            Ok(if close || !request_sent { Next::Close } else { Next::KeepAlive })
        }
    }
}

/// Sends a request's body while its answer comes back (a container may answer before the body
/// ends, or ask for it with 100 Continue); returns the answer and whether the body went whole.
async fn send_and_receive(send: impl std::future::Future<Output = io::Result<()>>, answer: impl std::future::Future<Output = Result<Received, Failure>>) -> Result<(Received, bool), Failure> {
    tokio::pin!(send, answer);
    let mut sent = false;
    loop {
        tokio::select! {
            biased;
            received = &mut answer => return received.map(|r| (r, sent)),
            result = &mut send, if !sent => match result {
                Ok(()) => sent = true,
                // The client went, or the container stopped reading: nothing more can go.
                Err(e) => return Err(Failure::Unanswered(e)),
            },
        }
    }
}

/// What the container answered.
enum Received {
    /// A response, passed on whole.
    Done {
        /// The container's connection can take another request.
        reusable: bool,
        /// The client's connection ends after it.
        close: bool,
    },
    /// A switch of protocols the client asked for, passed on.
    Switched,
}

/// Reads the container's response and passes it on, 1xx interim answers first.
async fn receive<R, W>(up_buf: &mut Buf, from_up: &mut Side<'_, R>, to_client: &mut Side<'_, W>, out: &mut Vec<u8>, asked: Asked) -> Result<Received, Failure>
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin + AsRef<TcpStream>,
{
    loop {
        let len = response_head(up_buf, from_up).await.map_err(Failure::Unanswered)?;
        let Some(resp) = message::response(up_buf.filled(), len, asked, out) else {
            return Err(Failure::Unanswered(invalid("answered with something that is not an HTTP/1 response")));
        };
        up_buf.consume(len);
        if resp.status == 101 && !asked.upgrade {
            return Err(Failure::Unanswered(invalid("switched protocols unasked")));
        }
        if resp.status == 101 {
            to_client.write_all(out).await.map_err(|_| Failure::Answered)?;
            return Ok(Received::Switched);
        }
        if (100..200).contains(&resp.status) {
            // An interim answer (100 Continue): an HTTP/1.0 client knows none.
            if !asked.http10 {
                to_client.write_all(out).await.map_err(|_| Failure::Answered)?;
            }
            continue;
        }
        if !whole_in_first_write(resp.framing, up_buf.filled().len()) {
            let _ = to_client.io.as_ref().set_nodelay(true);
        }
        relay(resp.framing, resp.dechunk, up_buf, from_up, to_client, out).await.map_err(|_| Failure::Answered)?;
        return Ok(Received::Done { reusable: resp.reusable, close: resp.close });
    }
}

/// Whether a body framed so, with `buffered` bytes of it read, goes with its head in one write.
fn whole_in_first_write(framing: Framing, buffered: usize) -> bool {
    match framing {
        Framing::None => true,
        Framing::Length(n) => n <= buffered as u64,
        Framing::Chunked | Framing::UntilClose => false,
    }
}

/// Reads until a whole response head is in `up_buf`; returns its length.
async fn response_head<R: tokio::io::AsyncRead + Unpin>(up_buf: &mut Buf, from_up: &mut Side<'_, R>) -> io::Result<usize> {
    let mut looked = 0;
    loop {
        let have = up_buf.filled();
        match message::head_end(have, looked) {
            Some(end) if end <= HEAD_LIMIT => return Ok(end),
            None if have.len() <= HEAD_LIMIT => looked = have.len(),
            _ => return Err(invalid("answered with a head over 64 KiB")),
        }
        if up_buf.fill(from_up, HEAD_READ).await? == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed the connection before answering"));
        }
    }
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// Copies both ways between the client and the container after a switch of protocols, until
/// either side closes.
async fn relay_upgraded(mut client: TcpStream, mut container: TcpStream) {
    let _ = client.set_nodelay(true);
    let _ = tokio::io::copy_bidirectional(&mut client, &mut container).await;
}
