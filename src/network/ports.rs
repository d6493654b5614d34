//! Published ports: parsing `-p`, choosing a free host port, and telling whether a host port is
//! taken by a process on the host.

use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, UdpSocket};

use super::{NetworkError, Result};

/// Host ports handed out when `-p` names none.
pub const DYNAMIC_FIRST: u16 = 30000;
/// The last of them.
pub const DYNAMIC_LAST: u16 = 32767;

/// tcp or udp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Protocol {
    /// `tcp` or `udp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }

    /// From `tcp` or `udp`.
    pub fn parse(text: &str) -> Result<Protocol> {
        match text {
            "tcp" => Ok(Protocol::Tcp),
            "udp" => Ok(Protocol::Udp),
            other => Err(NetworkError::Invalid(format!("unknown protocol {other:?}: use tcp or udp"))),
        }
    }
}

/// One `-p` as asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRequest {
    /// The host address to listen on (0.0.0.0: all of them).
    pub host_ip: Ipv4Addr,
    /// The host port, or none for one from the dynamic range.
    pub host_port: Option<u16>,
    /// The port inside the container.
    pub container_port: u16,
    /// tcp or udp.
    pub protocol: Protocol,
}

/// As `parse` takes it back: `HOST_IP:[HOST_PORT]:CONTAINER_PORT/PROTOCOL`.
impl std::fmt::Display for PortRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let host = self.host_port.map(|p| p.to_string()).unwrap_or_default();
        write!(f, "{}:{host}:{}/{}", self.host_ip, self.container_port, self.protocol.as_str())
    }
}

/// One published port, as set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMap {
    /// The host address (0.0.0.0: all).
    pub host_ip: Ipv4Addr,
    /// The host port.
    pub host_port: u16,
    /// The container's address.
    pub container_ip: Ipv4Addr,
    /// The port inside the container.
    pub container_port: u16,
    /// tcp or udp.
    pub protocol: Protocol,
}

impl std::fmt::Display for PortMap {
    /// Docker's form: `0.0.0.0:30001->80/tcp`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}->{}/{}", self.host_ip, self.host_port, self.container_port, self.protocol.as_str())
    }
}

/// Parses `[[HOST_IP:]HOST_PORT:]CONTAINER_PORT[/tcp|/udp]` (`HOST_IP::PORT` for a dynamic port).
pub fn parse(spec: &str) -> Result<PortRequest> {
    let bad = |why: &str| NetworkError::Invalid(format!("invalid --publish {spec:?}: {why}"));
    let (ports, protocol) = match spec.rsplit_once('/') {
        Some((p, proto)) => (p, Protocol::parse(proto).map_err(|_| bad("the protocol must be tcp or udp"))?),
        None => (spec, Protocol::Tcp),
    };
    let fields: Vec<&str> = ports.split(':').collect();
    let (ip, host, container) = match fields.as_slice() {
        [c] => ("", "", *c),
        [h, c] => ("", *h, *c),
        [ip, h, c] => (*ip, *h, *c),
        _ => return Err(bad("use [HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTOCOL]")),
    };
    let port = |text: &str, what: &str| -> Result<u16> {
        text.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| bad(&format!("{what} {text:?} is not a port (1-65535)")))
    };
    let host_ip = match ip {
        "" => Ipv4Addr::UNSPECIFIED,
        text => text.parse().map_err(|_| bad(&format!("{text:?} is not an IPv4 address")))?,
    };
    Ok(PortRequest {
        host_ip,
        host_port: if host.is_empty() { None } else { Some(port(host, "host port")?) },
        container_port: port(container, "container port")?,
        protocol,
    })
}

/// The next dynamic port after `last`, wrapping around the range, for which `taken` is false.
/// Handing ports out in turn keeps a just-freed port from being reused at once.
pub fn next_dynamic(last: u16, mut taken: impl FnMut(u16) -> bool) -> Option<u16> {
    let span = u32::from(DYNAMIC_LAST - DYNAMIC_FIRST) + 1;
    let start = u32::from(last.clamp(DYNAMIC_FIRST, DYNAMIC_LAST) - DYNAMIC_FIRST) + 1;
    (0..span).map(|i| DYNAMIC_FIRST + ((start + i) % span) as u16).find(|p| !taken(*p))
}

/// Whether a host process holds the port (we try to bind it, and let go at once).
pub fn in_use_on_host(ip: Ipv4Addr, port: u16, protocol: Protocol) -> bool {
    let addr = SocketAddrV4::new(ip, port);
    match protocol {
        Protocol::Tcp => TcpListener::bind(addr).is_err(),
        Protocol::Udp => UdpSocket::bind(addr).is_err(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_prints_as_parse_takes_it_back() {
        for spec in ["80", "8080:3000", "127.0.0.1:53:53/udp", "127.0.0.1::80"] {
            let p = parse(spec).unwrap();
            assert_eq!(parse(&p.to_string()).unwrap(), p, "{spec} -> {p}");
        }
    }

    #[test]
    fn publish_specs_parse() {
        let p = parse("80").unwrap();
        assert_eq!((p.host_ip, p.host_port, p.container_port, p.protocol), (Ipv4Addr::UNSPECIFIED, None, 80, Protocol::Tcp));
        let p = parse("8080:3000").unwrap();
        assert_eq!((p.host_port, p.container_port), (Some(8080), 3000));
        let p = parse("127.0.0.1:8080:80/udp").unwrap();
        assert_eq!((p.host_ip, p.host_port, p.protocol), (Ipv4Addr::LOCALHOST, Some(8080), Protocol::Udp));
        assert_eq!(parse("127.0.0.1::80").unwrap().host_port, None);
        for bad in ["", "0", "70000", "80/sctp", "a:80", "1:2:3:4", "x.y:1:2", "8080:", "-1"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dynamic_ports_go_round() {
        assert_eq!(next_dynamic(30000, |_| false), Some(30001));
        assert_eq!(next_dynamic(30001, |p| p == 30002), Some(30003));
        assert_eq!(next_dynamic(32767, |_| false), Some(30000));
        assert_eq!(next_dynamic(30000, |_| true), None);
    }

    #[test]
    fn maps_print_like_docker() {
        let m = PortMap { host_ip: Ipv4Addr::UNSPECIFIED, host_port: 30001, container_ip: Ipv4Addr::new(172, 20, 0, 2), container_port: 80, protocol: Protocol::Tcp };
        assert_eq!(m.to_string(), "0.0.0.0:30001->80/tcp");
    }
}
