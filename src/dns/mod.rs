//! `dns serve` (phase 6): the containers' name server. One process serves every network, on
//! each network's gateway, port 53, UDP and TCP (hickory-server). It answers `NAME.NET.local`,
//! Docker's `NAME` and `NAME.NET`, and a container's short ID from the state database, scoped
//! by the asking address: a container learns names on its own networks only. Everything else
//! goes to the host's name servers (/etc/resolv.conf).
//!
//! answer.rs decides (no I/O); directory.rs reads the state; handler.rs answers one query;
//! forward.rs asks upstream; upstream.rs reads resolv.conf; server.rs keeps the listeners;
//! udp.rs answers datagrams inline (TCP goes through hickory-server);
//! trace.rs explains one lookup from a container (`dns trace`).

mod answer;
mod directory;
mod forward;
mod handler;
mod server;
pub mod trace;
mod udp;
mod upstream;

use std::net::SocketAddrV4;

pub use server::serve;

/// The port containers ask on.
pub const PORT: u16 = 53;

/// Errors of the DNS server.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// The state database failed.
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    /// `dns trace` of a name or ID prefix that names no one container.
    #[error("no such container: {0} (see `shibafu list -a`; an ID prefix must name one container)")]
    NoSuchContainer(String),
    /// The state holds a value the server cannot use.
    #[error("the state database holds a bad value: {0}")]
    BadState(String),
    /// A listener could not be made.
    #[error("cannot listen on {addr} ({err}); is another DNS server (dnsmasq, a second `dns serve`) bound to it?")]
    Listen { addr: SocketAddrV4, err: std::io::Error },
    /// Other I/O.
    #[error("{what}: {err}")]
    Io { what: String, err: std::io::Error },
}

impl DnsError {
    /// Wraps an I/O error.
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> DnsError {
        let what = what.into();
        move |err| DnsError::Io { what, err }
    }
}

/// Result of DNS operations.
pub type Result<T> = std::result::Result<T, DnsError>;
