//! Container networking (phases 2, 4 and 6): network namespaces, bridges and veth pairs through
//! netlink, address management, the files a container needs to resolve names, published ports,
//! and the firewall rules that NAT and forward. It knows nothing of images or the database: the
//! engine passes it plain values.

pub mod files;
pub mod firewall;
mod ifconfig;
pub mod ipam;
pub mod lock;
pub mod netlink;
pub mod netns;
pub mod ports;

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::explain;

/// Errors of the network module.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// Bad user input.
    #[error("{0}")]
    Invalid(String),
    /// A netlink request failed.
    #[error("{what}: {reason}")]
    Netlink { what: String, reason: String },
    /// The firewall refused a change.
    #[error("firewall: {0}")]
    Firewall(String),
    /// Other I/O.
    #[error("{what}: {err}")]
    Io { what: String, err: std::io::Error },
}

impl NetworkError {
    /// Wraps an I/O error.
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> NetworkError {
        let what = what.into();
        move |err| NetworkError::Io { what, err }
    }
}

/// Result of network operations.
pub type Result<T> = std::result::Result<T, NetworkError>;

/// The network `run` uses when none is named.
pub const DEFAULT_NETWORK: &str = "bridge";

/// The DNS zone a network's container names live under (phase 6): `NAME.NET.local`, answered
/// by `dns serve` on the network's gateway.
pub const DNS_ZONE: &str = "local";

/// One bridge network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    /// Its name (`bridge` for the default).
    pub name: String,
    /// The Linux bridge (`ctr0` for the default).
    pub bridge: String,
    /// The subnet, e.g. 172.20.0.0/24.
    pub subnet: Ipv4Net,
    /// The bridge's own address, the containers' default route.
    pub gateway: Ipv4Addr,
    /// No way out: no NAT and nothing forwarded to elsewhere; no default route through it.
    pub internal: bool,
}

impl Network {
    /// A network from its recorded text fields.
    pub fn parse(name: &str, bridge: &str, subnet: &str, gateway: &str) -> Result<Network> {
        let subnet: Ipv4Net = subnet.parse().map_err(|_| NetworkError::Invalid(format!("network {name}: bad subnet {subnet:?}")))?;
        let gateway = gateway.parse().map_err(|_| NetworkError::Invalid(format!("network {name}: bad gateway {gateway:?}")))?;
        Ok(Network { name: name.into(), bridge: bridge.into(), subnet, gateway, internal: false })
    }
}

/// How a container is connected (`--network`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkMode {
    /// On these bridge networks, in this order (eth0, eth1, ...).
    Bridges(Vec<String>),
    /// A network namespace of its own with only `lo`.
    None,
    /// The host's network namespace.
    Host,
}

impl NetworkMode {
    /// Parses the `--network` values (none given: the default bridge).
    pub fn parse(values: &[String]) -> Result<NetworkMode> {
        let mut names: Vec<String> = Vec::new();
        for v in values.iter().flat_map(|v| v.split(',')) {
            if v.is_empty() {
                return Err(NetworkError::Invalid("empty network name in --network".into()));
            }
            if names.iter().any(|n| n == v) {
                return Err(NetworkError::Invalid(format!("network {v:?} is named twice")));
            }
            names.push(v.to_string());
        }
        match names.as_slice() {
            [] => Ok(NetworkMode::Bridges(vec![DEFAULT_NETWORK.into()])),
            [one] if one == "none" => Ok(NetworkMode::None),
            [one] if one == "host" => Ok(NetworkMode::Host),
            many if many.iter().any(|n| n == "none" || n == "host") => {
                Err(NetworkError::Invalid("--network none and --network host cannot be combined with other networks".into()))
            }
            _ => Ok(NetworkMode::Bridges(names)),
        }
    }
}

impl std::fmt::Display for NetworkMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NetworkMode::Bridges(names) => f.write_str(&names.join(",")),
            NetworkMode::None => f.write_str("none"),
            NetworkMode::Host => f.write_str("host"),
        }
    }
}

/// Writes a sysctl under /proc/sys (`net/ipv4/ip_forward`), as `sysctl -w` would.
pub fn sysctl(key: &str, value: &str) -> Result<()> {
    explain::step(|| format!("sysctl -w {}={value}", key.replace('/', ".")));
    let path = std::path::Path::new("/proc/sys").join(key);
    std::fs::write(&path, value).map_err(NetworkError::io(format!("write {}", path.display())))
}

/// Checks a name as Docker does for containers and networks: letters, digits, `-`, `_`, `.`,
/// starting with a letter or digit, at most `max` bytes (a DNS label in phase 6, a path
/// component never).
pub fn check_name(what: &str, name: &str, max: usize) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= max
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    if ok {
        return Ok(());
    }
    let shown: String = if name.chars().count() > 40 { name.chars().take(40).chain("...".chars()).collect() } else { name.into() };
    Err(NetworkError::Invalid(format!("invalid {what} {shown:?}: use up to {max} letters, digits, '-', '_' or '.', starting with a letter or digit")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(v: &[&str]) -> Result<NetworkMode> {
        NetworkMode::parse(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn network_modes_parse() {
        assert_eq!(mode(&[]).unwrap(), NetworkMode::Bridges(vec!["bridge".into()]));
        assert_eq!(mode(&["host"]).unwrap(), NetworkMode::Host);
        assert_eq!(mode(&["none"]).unwrap(), NetworkMode::None);
        assert_eq!(mode(&["a", "b,c"]).unwrap(), NetworkMode::Bridges(vec!["a".into(), "b".into(), "c".into()]));
        assert!(mode(&["host", "a"]).is_err());
        assert!(mode(&["a", "a"]).is_err());
        assert!(mode(&["a,"]).is_err());
        assert_eq!(mode(&["a", "b"]).unwrap().to_string(), "a,b");
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("network", "backend", 32).is_ok());
        assert!(check_name("network", "-x", 32).is_err());
        assert!(check_name("network", "a b", 32).is_err());
        assert!(check_name("network", &"a".repeat(33), 32).is_err());
    }
}
