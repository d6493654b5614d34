//! Connections to the containers, kept alive between requests: each worker thread keeps its own
//! idle ones (its runtime owns their sockets), so taking one back is a lookup, never a lock.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

/// How long a connection to a container may sit idle before it is closed (containers close
/// theirs after 5 s and more: python's never, node's 5 s, nginx's 75 s).
pub const IDLE: Duration = Duration::from_secs(4);
/// The most idle connections kept per container and worker.
const MAX_IDLE: usize = 256;
/// How long a connection to a container may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection to a container, and whether it was used before (a kept one the container may
/// have closed meanwhile).
pub struct Upstream {
    /// The socket.
    pub stream: TcpStream,
    /// Taken from the idle ones.
    pub reused: bool,
}

thread_local! {
    static IDLE_CONNS: RefCell<HashMap<SocketAddrV4, Vec<(TcpStream, Instant)>>> = RefCell::new(HashMap::new());
}

/// An idle connection to `addr`, the one used last, if one is kept and has not timed out.
pub fn take(addr: SocketAddrV4) -> Option<Upstream> {
    IDLE_CONNS.with_borrow_mut(|idle| {
        let kept = idle.get_mut(&addr)?;
        let now = Instant::now();
        while let Some((stream, since)) = kept.pop() {
            if now.duration_since(since) < IDLE {
                return Some(Upstream { stream, reused: true });
            }
        }
        None
    })
}

/// Keeps `stream` to `addr` for a later request.
pub fn give_back(addr: SocketAddrV4, stream: TcpStream) {
    IDLE_CONNS.with_borrow_mut(|idle| {
        let kept = idle.entry(addr).or_default();
        if kept.len() < MAX_IDLE {
            kept.push((stream, Instant::now()));
        }
    });
}

/// A new connection to `addr`.
pub async fn connect(addr: SocketAddrV4) -> io::Result<Upstream> {
    let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
        Ok(stream) => stream?,
        Err(_) => return Err(io::Error::new(io::ErrorKind::TimedOut, format!("no connection in {} s", CONNECT_TIMEOUT.as_secs()))),
    };
    stream.set_nodelay(true)?;
    Ok(Upstream { stream, reused: false })
}

/// Closes the idle connections that timed out, now and then, for as long as the worker runs
/// (a container that went away leaves its connections here until then).
pub async fn sweep_forever() {
    loop {
        tokio::time::sleep(IDLE).await;
        let now = Instant::now();
        IDLE_CONNS.with_borrow_mut(|idle| {
            for kept in idle.values_mut() {
                kept.retain(|(_, since)| now.duration_since(*since) < IDLE);
            }
            idle.retain(|_, kept| !kept.is_empty());
        });
    }
}
