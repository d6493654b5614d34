//! The proxy's HTTP side: hyper for both the listener and the pooled upstream client.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderMap, HeaderName, HeaderValue, CONNECTION, HOST, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, TE, TRAILER, UPGRADE};
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};

use super::routes::{watch, RouteTable};
use crate::http_server::Limits;

/// How `proxy serve` was asked to run.
#[derive(Debug, Clone)]
pub struct ProxyOptions {
    /// The data root whose containers are routed to.
    pub root: PathBuf,
    /// Where to listen.
    pub listen: SocketAddr,
    /// Domains besides `localhost` (`platform.local` routes `APP.platform.local`).
    pub domains: Vec<String>,
    /// How often to look for changed containers.
    pub refresh: Duration,
    /// Connections, head and idle timeouts (the connection limit is the whole proxy's).
    pub limits: Limits,
}

type Body = BoxBody<Bytes, hyper::Error>;

struct Proxy {
    routes: Arc<RouteTable>,
    client: Client<HttpConnector, Incoming>,
}

/// Serves until killed: one single-threaded runtime per CPU, each with its own listener on the
/// port (SO_REUSEPORT, the kernel spreads connections) and its own upstream pool, the way nginx
/// runs a worker per core, so no request waits on another thread's lock.
pub fn serve(opts: ProxyOptions) -> anyhow::Result<()> {
    let routes = Arc::new(RouteTable::new(&opts.domains));
    watch(opts.root.clone(), routes.clone(), opts.refresh);
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    // Bind the first listener here, so a taken port is an error before anything runs.
    let first = listen(opts.listen)?;
    eprintln!(
        "shibafu proxy: listening on http://{} ({workers} workers), routing NAME.{} to containers",
        opts.listen,
        ["localhost".to_string()].iter().chain(&opts.domains).cloned().collect::<Vec<_>>().join(", NAME.")
    );
    let mut listeners = vec![first];
    for _ in 1..workers {
        listeners.push(listen(opts.listen)?);
    }
    // Each worker keeps its own share of the connections, as nginx's worker_connections.
    let limits = Limits { max_connections: (opts.limits.max_connections / workers).max(1), ..opts.limits };
    let threads: Vec<_> = listeners
        .into_iter()
        .map(|listener| {
            let routes = routes.clone();
            std::thread::spawn(move || worker(listener, routes, limits))
        })
        .collect();
    for t in threads {
        t.join().expect("a proxy worker does not panic")?;
    }
    Ok(())
}

/// A listening socket that other workers share.
fn listen(addr: SocketAddr) -> anyhow::Result<std::net::TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.bind(addr).map_err(|e| anyhow::anyhow!("listen on {addr}: {e}"))?;
    // Made in no runtime: hand it over as a std socket, each worker adopts its own.
    // SAFETY: the descriptor comes from `socket`, which gives it up.
    let std_socket = unsafe { <std::net::TcpListener as std::os::fd::FromRawFd>::from_raw_fd(std::os::fd::IntoRawFd::into_raw_fd(socket)) };
    let raw = std::os::fd::AsRawFd::as_raw_fd(&std_socket);
    // SAFETY: listen(2) on a socket we own.
    if unsafe { libc::listen(raw, 1024) } != 0 {
        return Err(anyhow::anyhow!("listen on {addr}: {}", std::io::Error::last_os_error()));
    }
    std_socket.set_nonblocking(true)?;
    Ok(std_socket)
}

fn worker(listener: std::net::TcpListener, routes: Arc<RouteTable>, limits: Limits) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        let client = Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(60)).pool_max_idle_per_host(256).build(connector);
        let proxy = Arc::new(Proxy { routes, client });
        let handler = move |req, peer| {
            let proxy = proxy.clone();
            async move { proxy.handle(req, peer).await }
        };
        match crate::http_server::serve(listener, limits, plain_error, handler).await {}
    })
}

/// What the proxy answers on its own before a request reaches it (a head too large, a full
/// house): plain text, as its other errors.
fn plain_error(_status: StatusCode, message: &str) -> (&'static str, String) {
    ("text/plain; charset=utf-8", format!("{message}\n"))
}

impl Proxy {
    async fn handle(&self, mut req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        let host_header = req.headers().get(HOST);
        let host = host_header.and_then(|h| h.to_str().ok()).or(req.uri().host()).unwrap_or("");
        let Some(backend) = self.routes.lookup(host) else {
            return plain(StatusCode::NOT_FOUND, format!("no running container answers for host {host:?}; containers are reached as NAME.localhost\n"));
        };
        let forwarded_host = host_header.cloned().or_else(|| HeaderValue::from_str(host).ok());
        let mut target = hyper::http::uri::Parts::default();
        target.scheme = Some(hyper::http::uri::Scheme::HTTP);
        target.authority = Some(backend.authority.clone());
        target.path_and_query = Some(req.uri().path_and_query().cloned().unwrap_or_else(|| hyper::http::uri::PathAndQuery::from_static("/")));
        let Ok(uri) = Uri::from_parts(target) else {
            return plain(StatusCode::BAD_REQUEST, "bad request path\n".into());
        };
        *req.uri_mut() = uri;
        // An upgrade (a WebSocket) is the one hop-by-hop request passed on: both sides are
        // relayed to each other once the container answers 101.
        let upgrade = upgrade_asked(req.headers());
        let client_side = upgrade.is_some().then(|| hyper::upgrade::on(&mut req));
        strip_hop_by_hop(req.headers_mut());
        if let Some(protocol) = &upgrade {
            ask_upgrade(req.headers_mut(), protocol.clone());
        }
        req.headers_mut().append(X_FORWARDED_FOR, peer_header(peer.ip()));
        if let Some(h) = forwarded_host {
            req.headers_mut().insert(X_FORWARDED_HOST, h);
        }
        match self.client.request(req).await {
            Ok(mut resp) => {
                let switched = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
                let protocol = resp.headers().get(UPGRADE).cloned();
                strip_hop_by_hop(resp.headers_mut());
                if let (true, Some(client_side), Some(protocol)) = (switched, client_side, protocol) {
                    tokio::spawn(relay(client_side, hyper::upgrade::on(&mut resp)));
                    ask_upgrade(resp.headers_mut(), protocol);
                }
                resp.map(|b| b.boxed())
            }
            Err(e) => plain(StatusCode::BAD_GATEWAY, format!("502 Bad Gateway: container {} ({}) is not answering: {}\n", backend.name, backend.addr, cause(&e))),
        }
    }
}

/// The innermost cause, which says what actually went wrong (connection refused, ...).
fn cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut inner = e;
    while let Some(next) = inner.source() {
        inner = next;
    }
    inner.to_string()
}

/// The protocol of the `Upgrade` header, when `Connection` names it (RFC 9110 7.8).
fn upgrade_asked(headers: &HeaderMap) -> Option<HeaderValue> {
    let named = headers.get_all(CONNECTION).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    named.then(|| headers.get(UPGRADE).cloned()).flatten()
}

fn ask_upgrade(headers: &mut HeaderMap, protocol: HeaderValue) {
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(UPGRADE, protocol);
}

/// Copies both ways between the client's upgraded connection and the container's, until either
/// side closes.
async fn relay(client: hyper::upgrade::OnUpgrade, container: hyper::upgrade::OnUpgrade) {
    let (Ok(client), Ok(container)) = tokio::join!(client, container) else { return };
    let _ = tokio::io::copy_bidirectional(&mut TokioIo::new(client), &mut TokioIo::new(container)).await;
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Headers that concern one connection, not the message: never passed on. (Names made once:
/// a name given as text is parsed on each removal.)
const HOP_BY_HOP: [HeaderName; 8] = [
    CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    PROXY_AUTHENTICATE,
    PROXY_AUTHORIZATION,
    TE,
    TRAILER,
    UPGRADE,
];

fn strip_hop_by_hop(headers: &mut hyper::HeaderMap) {
    for h in HOP_BY_HOP {
        headers.remove(h);
    }
}

/// The client's address as an X-Forwarded-For value; the last one is kept per worker thread,
/// as a kept-alive connection asks for the same one request after request.
fn peer_header(ip: std::net::IpAddr) -> HeaderValue {
    thread_local! {
        static LAST: std::cell::RefCell<Option<(std::net::IpAddr, HeaderValue)>> = const { std::cell::RefCell::new(None) };
    }
    LAST.with_borrow_mut(|last| match last {
        Some((seen, value)) if *seen == ip => value.clone(),
        _ => {
            let value = HeaderValue::from_str(&ip.to_string()).expect("an address is a header value");
            *last = Some((ip, value.clone()));
            value
        }
    })
}

fn plain(status: StatusCode, text: String) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(text)).map_err(|never| match never {}).boxed());
    *resp.status_mut() = status;
    resp.headers_mut().insert("content-type", HeaderValue::from_static("text/plain; charset=utf-8"));
    resp
}
