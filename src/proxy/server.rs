//! The proxy's listeners: one single-threaded runtime per CPU, each serving its connections
//! with `forward` and keeping its own connections to the containers.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hyper::StatusCode;

use super::routes::{watch, RouteTable};
use super::{forward, upstream};
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
        tokio::spawn(upstream::sweep_forever());
        let connection = move |stream, peer, conn| forward::connection(stream, peer, conn, routes.clone(), limits);
        match crate::http_server::serve_connections(listener, limits, plain_error, connection).await {}
    })
}

/// What the proxy answers on its own before a request reaches it (a head too large, a full
/// house): plain text, as its other errors.
fn plain_error(_status: StatusCode, message: &str) -> (&'static str, String) {
    ("text/plain; charset=utf-8", format!("{message}\n"))
}

