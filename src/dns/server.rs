//! The listeners: one per network, on its gateway's port 53: UDP through our loop (udp.rs),
//! TCP through a hickory-server `Server`. A loop follows the networks table: `network create` gets a listener, `network rm` takes
//! it away, without a restart.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hickory_server::Server;
use nix::sys::socket::{self, sockopt, AddressFamily, Backlog, SockFlag, SockType, SockaddrIn};

use super::directory::Source;
use super::handler::{Handler, Shared};
use super::upstream::Upstreams;
use super::{DnsError, Result, PORT};

/// How often the networks table is looked at for created and removed networks.
const REFRESH: Duration = Duration::from_millis(100);

/// How long a TCP client may stay silent before its connection is closed.
const TCP_IDLE: Duration = Duration::from_secs(5);

/// Answers queued per TCP connection.
const TCP_QUEUE: usize = 32;

/// One network's listener: our UDP loop and hickory-server for TCP.
struct Listener {
    gateway: Ipv4Addr,
    udp: tokio::task::JoinHandle<()>,
    tcp: Server<Handler>,
}

/// Serves until killed: answers from the state under `root`, forwards to the servers that
/// `resolv_conf` names; `APP.DOMAIN` for each of `proxy_domains` is answered with the address
/// asked, where the reverse proxy listens too; `host_address` is one more listener, for the
/// host's own resolv.conf (a loopback address, which containers never copy). One thread: an
/// answer costs less than handing a datagram from one thread to another (scripts/bench-dns: a
/// third less CPU per query than on two workers).
pub fn serve(root: &Path, resolv_conf: &Path, proxy_domains: Vec<String>, host_address: Option<Ipv4Addr>) -> Result<()> {
    let shared = Arc::new(Shared::new(Source::open(root)?, Upstreams::new(resolv_conf), proxy_domains, host_address));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(DnsError::io("start the runtime"))?;
    runtime.block_on(follow(shared))
}

/// Keeps one listener per network, forever.
async fn follow(shared: Arc<Shared>) -> Result<()> {
    // Never returns Ok: the loop ends with the process.
    let mut live: HashMap<String, Listener> = HashMap::new();
    // The last complaint per network, so a port held by someone else is said once, not 10 times a second.
    let mut complaints: HashMap<String, String> = HashMap::new();
    // The host's listener stays for the life of the server.
    let _host = match shared.host_address() {
        Some(address) => {
            let listener = start("", address, &shared)?;
            println!("shibafu dns: the host: listening on {address}:{PORT} (udp, tcp)");
            Some(listener)
        }
        None => None,
    };
    loop {
        let directory = match shared.directory() {
            Ok(d) => d,
            Err(e) => {
                eprintln!("shibafu dns: reading the networks: {e}");
                tokio::time::sleep(REFRESH).await;
                continue;
            }
        };
        let wanted: HashMap<&str, Ipv4Addr> = directory.networks.iter().map(|n| (n.name.as_str(), n.gateway)).collect();
        let gone: Vec<String> = live.iter().filter(|(name, l)| wanted.get(name.as_str()) != Some(&l.gateway)).map(|(name, _)| name.clone()).collect();
        for name in gone {
            let mut listener = live.remove(&name).expect("listed above");
            listener.udp.abort();
            if let Err(e) = listener.tcp.shutdown_gracefully().await {
                eprintln!("shibafu dns: stopping the listener of network {name}: {e}");
            }
            println!("shibafu dns: network {name}: stopped listening on {}:{PORT}", listener.gateway);
        }
        complaints.retain(|name, _| wanted.contains_key(name.as_str()));
        for net in &directory.networks {
            if live.contains_key(&net.name) {
                continue;
            }
            match start(&net.name, net.gateway, &shared) {
                Ok(listener) => {
                    println!("shibafu dns: network {}: listening on {}:{PORT} (udp, tcp)", net.name, net.gateway);
                    complaints.remove(&net.name);
                    live.insert(net.name.clone(), listener);
                }
                Err(e) => {
                    let text = e.to_string();
                    if complaints.get(&net.name) != Some(&text) {
                        eprintln!("shibafu dns: network {}: {text}; trying again while it exists", net.name);
                        complaints.insert(net.name.clone(), text);
                    }
                }
            }
        }
        tokio::time::sleep(REFRESH).await;
    }
}

/// A listener for `network` on `gateway`:53.
fn start(network: &str, gateway: Ipv4Addr, shared: &Arc<Shared>) -> Result<Listener> {
    let addr = SocketAddrV4::new(gateway, PORT);
    let udp = std::net::UdpSocket::from(bound(SockType::Datagram, addr)?);
    let tcp_fd = bound(SockType::Stream, addr)?;
    socket::listen(&tcp_fd, Backlog::new(128).expect("128 is a valid backlog")).map_err(|e| DnsError::Listen { addr, err: e.into() })?;
    let tcp = std::net::TcpListener::from(tcp_fd);
    let handler = Handler { network: network.to_string(), address: gateway, shared: shared.clone() };
    let udp = tokio::net::UdpSocket::from_std(udp).map_err(DnsError::io("adopt the UDP socket"))?;
    let mut tcp_server = Server::new(handler.clone());
    tcp_server.register_listener(tokio::net::TcpListener::from_std(tcp).map_err(DnsError::io("adopt the TCP socket"))?, TCP_IDLE, TCP_QUEUE);
    Ok(Listener { gateway, udp: tokio::spawn(super::udp::serve(udp, Arc::new(handler))), tcp: tcp_server })
}

/// A non-blocking socket bound to `addr` with IP_FREEBIND: the gateway's address exists only
/// while its bridge does (made by the first `run` on the network, removed by `network prune`),
/// and a freely bound socket receives on it whenever it is there, with no rebinding.
fn bound(kind: SockType, addr: SocketAddrV4) -> Result<OwnedFd> {
    let err = |e: nix::Error| DnsError::Listen { addr, err: e.into() };
    let fd = socket::socket(AddressFamily::Inet, kind, SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK, None).map_err(err)?;
    socket::setsockopt(&fd, sockopt::IpFreebind, &true).map_err(err)?;
    if kind == SockType::Stream {
        // A restarted server may take the port while old connections linger in TIME_WAIT. UDP
        // gets no SO_REUSEADDR: a second server on the same address must fail, not share it.
        socket::setsockopt(&fd, sockopt::ReuseAddr, &true).map_err(err)?;
    }
    socket::bind(fd.as_raw_fd(), &SockaddrIn::from(addr)).map_err(err)?;
    Ok(fd)
}
