//! HTTP/1 heads as the proxy passes them on: a request head read from a client is checked and
//! written out again for the container, a response head read from the container for the client.
//! Both are parsed with httparse in place and rewritten straight into an output buffer, with no
//! header map in between. Bodies are never rewritten here: their framing (`Framing`) is what
//! the body relay needs.

use std::io::Write;
use std::mem::MaybeUninit;
use std::ops::Range;

use hyper::StatusCode;

/// The most header lines in a head: more is refused (hyper's limit too).
const MAX_HEADERS: usize = 100;

/// How a message's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Everything until the sender closes (responses only).
    UntilClose,
}

/// Why a request head is refused: the status and what the client is told.
#[derive(Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The status to answer with.
    pub status: StatusCode,
    /// The plain text of the answer.
    pub message: &'static str,
}

fn refuse(status: StatusCode, message: &'static str) -> Refusal {
    Refusal { status, message }
}

/// A request head, parsed and rewritten for the container.
#[derive(Debug)]
pub struct Request {
    /// The head's length in the client's buffer (its blank line included).
    pub len: usize,
    /// HTTP/1.0 (not 1.1).
    pub http10: bool,
    /// A HEAD request: its answer has no body.
    pub head_method: bool,
    /// Its method is idempotent (RFC 9110 9.2.2): sent twice, it does what it does once.
    pub idempotent: bool,
    /// The client keeps the connection for another request.
    pub keep_alive: bool,
    /// The body's framing.
    pub framing: Framing,
    /// The host asked for (the Host header, or the target's authority), in the client's buffer.
    pub host: Range<usize>,
    /// The protocol of an upgrade asked for (`Connection: upgrade` with `Upgrade`), in the
    /// client's buffer.
    pub upgrade: Option<Range<usize>>,
}

/// Headers that concern one connection, not the message: never passed on. `Transfer-Encoding`
/// is not among them: bodies pass through as they came, so their framing does too.
const HOP_BY_HOP: [&str; 8] = ["connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization", "te", "trailer", "upgrade"];

/// What a head's `Connection` headers say.
#[derive(Debug, Default)]
struct ConnectionTokens<'a> {
    close: bool,
    keep_alive: bool,
    upgrade: bool,
    /// Other names: headers of this connection only, removed too (RFC 9110 7.6.1).
    others: Vec<&'a str>,
}

impl<'a> ConnectionTokens<'a> {
    fn of(headers: &[httparse::Header<'a>]) -> ConnectionTokens<'a> {
        let mut t = ConnectionTokens::default();
        for h in headers.iter().filter(|h| h.name.eq_ignore_ascii_case("connection")) {
            let Ok(value) = std::str::from_utf8(h.value) else { continue };
            for token in value.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                if token.eq_ignore_ascii_case("close") {
                    t.close = true;
                } else if token.eq_ignore_ascii_case("keep-alive") {
                    t.keep_alive = true;
                } else if token.eq_ignore_ascii_case("upgrade") {
                    t.upgrade = true;
                } else {
                    t.others.push(token);
                }
            }
        }
        t
    }

    /// Whether header `name` stays out of the message passed on.
    fn drops(&self, name: &str) -> bool {
        HOP_BY_HOP.iter().any(|h| h.eq_ignore_ascii_case(name)) || self.others.iter().any(|o| o.eq_ignore_ascii_case(name))
    }
}

/// Where the head ends in `buf` (after its blank line), looking only from `from` on (the bytes
/// before were looked at already; the last three are looked at again, the end may straddle).
/// Leading empty lines must be gone already.
pub fn head_end(buf: &[u8], from: usize) -> Option<usize> {
    let start = from.saturating_sub(3);
    let mut i = start;
    while let Some(nl) = buf[i..].iter().position(|&b| b == b'\n') {
        let at = i + nl;
        let rest = &buf[at + 1..];
        if rest.first() == Some(&b'\n') {
            return Some(at + 2);
        }
        if rest.starts_with(b"\r\n") {
            return Some(at + 3);
        }
        if rest.len() < 2 && (rest.is_empty() || rest[0] == b'\r') {
            return None;
        }
        i = at + 1;
    }
    None
}

/// The offset of `part` (a slice of `buf`) in `buf`.
fn range_in(buf: &[u8], part: &[u8]) -> Range<usize> {
    let start = part.as_ptr() as usize - buf.as_ptr() as usize;
    start..start + part.len()
}

/// Parses the request head `buf[..len]` (`len` from `head_end`), and writes it to `out` as the
/// container gets it: the request line in origin form over HTTP/1.1, without the hop-by-hop
/// headers, with `X-Forwarded-For: peer` added and `X-Forwarded-Host` set to the host asked for.
pub fn request(buf: &[u8], len: usize, peer: &str, out: &mut Vec<u8>) -> Result<Request, Refusal> {
    // Left uninitialised: httparse fills what it uses (no 3 KiB cleared per head).
    let mut headers = [const { MaybeUninit::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    match req.parse_with_uninit_headers(&buf[..len], &mut headers) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(refuse(StatusCode::BAD_REQUEST, "the request head is cut short")),
        Err(httparse::Error::TooManyHeaders) => return Err(refuse(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "the request has over 100 header lines")),
        Err(_) => return Err(refuse(StatusCode::BAD_REQUEST, "the request head is not HTTP/1")),
    }
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Err(refuse(StatusCode::BAD_REQUEST, "the request head is not HTTP/1"));
    };
    if method == "CONNECT" {
        return Err(refuse(StatusCode::METHOD_NOT_ALLOWED, "CONNECT is not served: this is a reverse proxy"));
    }
    let (path, target_host) = origin_form(target)?;
    let tokens = ConnectionTokens::of(req.headers);
    let framing = request_framing(req.headers, version)?;
    let mut host = None;
    for h in req.headers.iter().filter(|h| h.name.eq_ignore_ascii_case("host")) {
        if host.replace(h.value).is_some() {
            return Err(refuse(StatusCode::BAD_REQUEST, "the request has two Host headers"));
        }
    }
    let host = host.or(target_host.map(str::as_bytes)).unwrap_or_default();
    let upgrade = req.headers.iter().find(|h| tokens.upgrade && h.name.eq_ignore_ascii_case("upgrade")).map(|h| h.value);
    out.clear();
    let _ = write!(out, "{method} {path} HTTP/1.1\r\n");
    for h in req.headers.iter().filter(|h| !tokens.drops(h.name) && !h.name.eq_ignore_ascii_case("x-forwarded-host")) {
        header(out, h.name, h.value);
    }
    if let Some(protocol) = upgrade {
        out.extend_from_slice(b"connection: upgrade\r\n");
        header(out, "upgrade", protocol);
    }
    header(out, "x-forwarded-for", peer.as_bytes());
    if !host.is_empty() {
        header(out, "x-forwarded-host", host);
    }
    out.extend_from_slice(b"\r\n");
    let http10 = version == 0;
    Ok(Request {
        len,
        http10,
        head_method: method == "HEAD",
        idempotent: matches!(method, "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"),
        keep_alive: if http10 { tokens.keep_alive && !tokens.close } else { !tokens.close },
        framing,
        host: range_in(buf, host),
        upgrade: upgrade.map(|u| range_in(buf, u)),
    })
}

fn header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// The request target in origin form, and the authority of an absolute-form target.
fn origin_form(target: &str) -> Result<(&str, Option<&str>), Refusal> {
    if target.starts_with('/') || target == "*" {
        return Ok((target, None));
    }
    let Some(rest) = target.strip_prefix("http://").or_else(|| target.strip_prefix("https://")) else {
        return Err(refuse(StatusCode::BAD_REQUEST, "the request target is neither a path nor an http URL"));
    };
    let (authority, path) = rest.find(['/', '?']).map_or((rest, "/"), |i| (&rest[..i], &rest[i..]));
    if path.starts_with('?') {
        // "http://host?q" asks for "/?q": rare enough to refuse rather than copy.
        return Err(refuse(StatusCode::BAD_REQUEST, "the request URL has a query but no path"));
    }
    Ok((path, Some(authority)))
}

/// How a request's body is delimited (RFC 9112 6.3): a request without either header has none.
fn request_framing(headers: &[httparse::Header], version: u8) -> Result<Framing, Refusal> {
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut coded = false;
    for h in headers {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            coded = true;
            chunked = last_coding_is_chunked(h.value);
        } else if h.name.eq_ignore_ascii_case("content-length") {
            let n = content_length(h.value).ok_or(refuse(StatusCode::BAD_REQUEST, "the Content-Length is not a number"))?;
            if length.is_some_and(|l| l != n) {
                return Err(refuse(StatusCode::BAD_REQUEST, "the request has two different Content-Lengths"));
            }
            length = Some(n);
        }
    }
    match (coded, length) {
        // Both would let the proxy and the container disagree on where the body ends.
        (true, Some(_)) => Err(refuse(StatusCode::BAD_REQUEST, "the request has both Transfer-Encoding and Content-Length")),
        (true, None) if version == 0 => Err(refuse(StatusCode::BAD_REQUEST, "an HTTP/1.0 request has a Transfer-Encoding")),
        (true, None) if !chunked => Err(refuse(StatusCode::BAD_REQUEST, "the request's Transfer-Encoding does not end in chunked")),
        (true, None) => Ok(Framing::Chunked),
        (false, Some(0) | None) => Ok(Framing::None),
        (false, Some(n)) => Ok(Framing::Length(n)),
    }
}

fn last_coding_is_chunked(value: &[u8]) -> bool {
    let value = std::str::from_utf8(value).unwrap_or("");
    value.rsplit(',').next().is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"))
}

fn content_length(value: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(value).ok()?.trim();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// A response head, parsed and rewritten for the client.
#[derive(Debug)]
pub struct Response {
    /// Its status code.
    pub status: u16,
    /// The body's framing as the container sends it.
    pub framing: Framing,
    /// The container keeps its connection for another request.
    pub reusable: bool,
    /// The client's connection ends after this response.
    pub close: bool,
    /// The body's chunks are decoded for the client (an HTTP/1.0 client has no chunked coding).
    pub dechunk: bool,
}

/// What the response answers: the request as the client asked it.
#[derive(Debug, Clone, Copy)]
pub struct Asked {
    /// HTTP/1.0 client.
    pub http10: bool,
    /// A HEAD request.
    pub head_method: bool,
    /// The client asked to keep its connection.
    pub keep_alive: bool,
    /// The client asked for an upgrade.
    pub upgrade: bool,
}

/// Parses the response head `buf[..len]` and writes it to `out` for the client: over HTTP/1.1,
/// without the hop-by-hop headers, with `Connection: close` when the client's connection ends
/// after it (and `upgrade` for a switch the client asked for). None when the head is not HTTP/1.
pub fn response(buf: &[u8], len: usize, asked: Asked, out: &mut Vec<u8>) -> Option<Response> {
    let mut headers = [const { MaybeUninit::uninit() }; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(&mut resp, &buf[..len], &mut headers);
    if !matches!(parsed, Ok(httparse::Status::Complete(_))) {
        return None;
    }
    let (status, version) = (resp.code?, resp.version?);
    let tokens = ConnectionTokens::of(resp.headers);
    let framing = response_framing(resp.headers, status, asked.head_method)?;
    let switched = status == 101 && asked.upgrade;
    let dechunk = asked.http10 && framing == Framing::Chunked;
    let close = !switched && (!asked.keep_alive || framing == Framing::UntilClose || dechunk);
    out.clear();
    let _ = write!(out, "HTTP/1.1 {status} {}\r\n", resp.reason.unwrap_or(""));
    // A Transfer-Encoding beside a Content-Length wins, and the length goes (RFC 9112 6.3).
    let coded = resp.headers.iter().any(|h| h.name.eq_ignore_ascii_case("transfer-encoding"));
    let dropped = |name: &str| tokens.drops(name) || (dechunk && name.eq_ignore_ascii_case("transfer-encoding")) || (coded && name.eq_ignore_ascii_case("content-length"));
    for h in resp.headers.iter().filter(|h| !dropped(h.name)) {
        header(out, h.name, h.value);
    }
    if switched {
        out.extend_from_slice(b"connection: upgrade\r\n");
        if let Some(h) = resp.headers.iter().find(|h| h.name.eq_ignore_ascii_case("upgrade")) {
            header(out, "upgrade", h.value);
        }
    } else if close {
        out.extend_from_slice(b"connection: close\r\n");
    } else if asked.http10 {
        out.extend_from_slice(b"connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
    let reusable = framing != Framing::UntilClose && !tokens.close && (version == 1 || tokens.keep_alive) && !switched;
    Some(Response { status, framing, reusable, close, dechunk })
}

/// How a response's body is delimited (RFC 9112 6.3). None for framing that cannot be trusted
/// (two lengths).
fn response_framing(headers: &[httparse::Header], status: u16, head_method: bool) -> Option<Framing> {
    if head_method || (100..200).contains(&status) || status == 204 || status == 304 {
        return Some(Framing::None);
    }
    let mut length = None;
    for h in headers {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Some(if last_coding_is_chunked(h.value) { Framing::Chunked } else { Framing::UntilClose });
        }
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = content_length(h.value)?;
            if length.is_some_and(|l| l != n) {
                return None;
            }
            length = Some(n);
        }
    }
    Some(match length {
        Some(0) => Framing::None,
        Some(n) => Framing::Length(n),
        None => Framing::UntilClose,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite(head: &str) -> (Result<Request, Refusal>, String) {
        let mut out = Vec::new();
        let len = head_end(head.as_bytes(), 0).expect("a whole head");
        let r = request(head.as_bytes(), len, "10.0.0.9", &mut out);
        (r, String::from_utf8(out).unwrap())
    }

    #[test]
    fn a_head_ends_at_its_blank_line_wherever_the_reads_split_it() {
        let head = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nbody";
        assert_eq!(head_end(head, 0), Some(27));
        for split in 0..head.len() {
            let seen = head_end(&head[..split], 0);
            assert!(seen.is_none() || split >= 27, "{split}");
            assert_eq!(head_end(head, split.min(27)), Some(27), "resumed at {split}");
        }
        assert_eq!(head_end(b"GET / HTTP/1.1\nHost: a\n\nx", 0), Some(24), "bare LF");
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: a\r\n", 0), None);
    }

    #[test]
    fn a_request_goes_on_without_hop_by_hop_headers_and_with_forwarded_ones() {
        let (r, out) = rewrite("GET /a?b HTTP/1.1\r\nHost: web.localhost\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: 5\r\nX-Forwarded-Host: evil\r\nX-Forwarded-For: 1.2.3.4\r\nAccept: */*\r\n\r\n");
        let r = r.unwrap();
        assert_eq!(out, "GET /a?b HTTP/1.1\r\nHost: web.localhost\r\nX-Forwarded-For: 1.2.3.4\r\nAccept: */*\r\nx-forwarded-for: 10.0.0.9\r\nx-forwarded-host: web.localhost\r\n\r\n");
        assert!(r.keep_alive && !r.http10 && r.framing == Framing::None && r.upgrade.is_none() && r.idempotent);
        assert!(!rewrite("POST / HTTP/1.1\r\nHost: a\r\n\r\n").0.unwrap().idempotent);
        let head = "GET http://api.localhost:8080/x HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 3\r\n\r\n";
        let (r, out) = rewrite(head);
        let r = r.unwrap();
        assert!(out.starts_with("GET /x HTTP/1.1\r\nContent-Length: 3\r\n"), "{out}");
        assert_eq!(&head[r.host.clone()], "api.localhost:8080");
        assert!(r.http10 && r.keep_alive && r.framing == Framing::Length(3));
    }

    #[test]
    fn an_upgrade_is_asked_of_the_container_in_plain_terms() {
        let head = "GET /chat HTTP/1.1\r\nHost: ws.localhost\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\r\n";
        let (r, out) = rewrite(head);
        assert_eq!(&head[r.unwrap().upgrade.unwrap()], "websocket");
        assert!(out.contains("connection: upgrade\r\nupgrade: websocket\r\n"), "{out}");
        let (r, _) = rewrite("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n");
        assert!(r.unwrap().upgrade.is_none(), "an Upgrade the Connection header does not name is no upgrade");
    }

    #[test]
    fn ambiguous_or_foreign_requests_are_refused() {
        for (head, status) in [
            ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400),
            ("POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
            ("CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n", 405),
            ("GET a/b HTTP/1.1\r\n\r\n", 400),
            ("GET / HTTP/2.0\r\n\r\n", 400),
        ] {
            assert_eq!(rewrite(head).0.unwrap_err().status.as_u16(), status, "{head:?}");
        }
        let (r, _) = rewrite("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
        assert_eq!(r.unwrap().framing, Framing::Chunked);
    }

    fn answer(head: &str, asked: Asked) -> (Response, String) {
        let mut out = Vec::new();
        let r = response(head.as_bytes(), head.len(), asked, &mut out).expect("a response");
        (r, String::from_utf8(out).unwrap())
    }

    const KEEP: Asked = Asked { http10: false, head_method: false, keep_alive: true, upgrade: false };

    #[test]
    fn a_response_keeps_or_closes_both_connections_as_its_framing_allows() {
        let (r, out) = answer("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\r\n", KEEP);
        assert_eq!(out, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n");
        assert!(r.reusable && !r.close && r.framing == Framing::Length(5));
        let (r, out) = answer("HTTP/1.0 200 OK\r\n\r\n", KEEP);
        assert!(!r.reusable && r.close && r.framing == Framing::UntilClose);
        assert!(out.ends_with("connection: close\r\n\r\n"), "{out}");
        let (r, _) = answer("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\n", KEEP);
        assert!(!r.reusable && !r.close, "the container's close is not the client's");
        let (r, _) = answer("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", Asked { head_method: true, ..KEEP });
        assert_eq!(r.framing, Framing::None, "a HEAD answer has no body");
        let (r, out) = answer("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", KEEP);
        assert_eq!((r.framing, out.as_str()), (Framing::Chunked, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"), "the coding wins and the length goes");
        let (r, _) = answer("HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n", KEEP);
        assert_eq!(r.framing, Framing::None);
        let two = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n";
        assert!(response(two, two.len(), KEEP, &mut Vec::new()).is_none(), "two lengths");
    }

    #[test]
    fn an_http10_client_gets_chunks_decoded_and_its_keep_alive_named() {
        let asked = Asked { http10: true, ..KEEP };
        let (r, out) = answer("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", asked);
        assert!(r.dechunk && r.close && r.reusable);
        assert_eq!(out, "HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n");
        let (_, out) = answer("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n", asked);
        assert!(out.ends_with("connection: keep-alive\r\n\r\n"), "{out}");
    }

    #[test]
    fn a_switch_the_client_asked_for_names_its_protocol() {
        let (r, out) = answer("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: x\r\n\r\n", Asked { upgrade: true, ..KEEP });
        assert_eq!(out, "HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: x\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n");
        assert!(!r.reusable && !r.close && r.status == 101);
    }
}
