//! The files that tell a container who it is and how to resolve names: /etc/hostname,
//! /etc/hosts and /etc/resolv.conf, written beside its bundle and bound into its rootfs.

use std::net::{IpAddr, Ipv4Addr};

use super::{NetworkError, Result};

/// The address `--add-host NAME:host-gateway` stands for: the container's network gateway.
pub const HOST_GATEWAY: &str = "host-gateway";

/// One `--add-host` entry: a name, and an address or `host-gateway`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtraHost {
    /// The host name.
    pub name: String,
    /// The address, or None for the gateway.
    pub address: Option<IpAddr>,
}

impl ExtraHost {
    /// Parses `NAME:IP` or `NAME=IP` (an IPv6 address may be in brackets; `host-gateway` for
    /// the network's gateway), as Docker's `--add-host`.
    pub fn parse(spec: &str) -> Result<ExtraHost> {
        let bad = |why: &str| NetworkError::Invalid(format!("invalid --add-host {spec:?}: {why}"));
        let (name, address) = spec.split_once('=').or_else(|| spec.split_once(':')).ok_or_else(|| bad("use NAME:IP"))?;
        let name_ok = !name.is_empty() && name.len() <= 253 && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !name_ok {
            return Err(bad("the name may hold letters, digits, '-', '_' and '.'"));
        }
        let address = address.trim_start_matches('[').trim_end_matches(']');
        let address = match address {
            HOST_GATEWAY => None,
            a => Some(a.parse().map_err(|_| bad("the address is not an IP address nor host-gateway"))?),
        };
        Ok(ExtraHost { name: name.to_string(), address })
    }
}

/// Checks a `--dns` server: an IP address.
pub fn check_dns_server(server: &str) -> Result<()> {
    server.parse::<IpAddr>().map(|_| ()).map_err(|_| NetworkError::Invalid(format!("invalid --dns {server:?}: give an IP address")))
}

/// /etc/hostname.
pub fn hostname(name: &str) -> String {
    format!("{name}\n")
}

/// /etc/hosts: localhost, and the container's own names on its first address.
pub fn hosts(address: Option<Ipv4Addr>, names: &[&str]) -> String {
    let mut text = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    if let Some(a) = address {
        text.push_str(&format!("{a}\t{}\n", names.join(" ")));
    }
    text
}

/// /etc/hosts lines for `--add-host` entries, `host-gateway` as `gateway`.
pub fn extra_hosts(hosts: &[ExtraHost], gateway: Option<Ipv4Addr>) -> Result<String> {
    let mut text = String::new();
    for h in hosts {
        let address = match (h.address, gateway) {
            (Some(a), _) => a,
            (None, Some(g)) => IpAddr::V4(g),
            (None, None) => return Err(NetworkError::Invalid(format!("--add-host {}:{HOST_GATEWAY} needs a bridge network, whose gateway it names", h.name))),
        };
        text.push_str(&format!("{address}\t{}\n", h.name));
    }
    Ok(text)
}

/// A resolv.conf with the container's own settings put in: `servers` replace its name servers,
/// `search` its search line, `options` its options line (each only when given), as Docker's
/// `--dns`, `--dns-search` and `--dns-option`.
pub fn with_settings(text: &str, servers: &[String], search: &[String], options: &[String]) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let word = line.split_whitespace().next().unwrap_or("");
        let replaced = (word == "nameserver" && !servers.is_empty())
            || ((word == "search" || word == "domain") && !search.is_empty())
            || (word == "options" && !options.is_empty())
            || (line.starts_with("# the host's name servers") && !servers.is_empty());
        if !replaced {
            out.push_str(line);
            out.push('\n');
        }
    }
    let mut head = String::new();
    if !search.is_empty() {
        head.push_str(&format!("search {}\n", search.join(" ")));
    }
    if !options.is_empty() {
        head.push_str(&format!("options {}\n", options.join(" ")));
    }
    for s in servers {
        out.push_str(&format!("nameserver {s}\n"));
    }
    head + &out
}

/// /etc/resolv.conf from the host's: its search and options lines, and its name servers except
/// loopback ones, which a container cannot reach. `nameservers` replaces the host's when given
/// (phase 6: the gateway, where `dns serve` answers); `search` domains (`backend.local`) then
/// come before the host's.
pub fn resolv_conf(host: &str, nameservers: &[Ipv4Addr], search: &[String]) -> String {
    let mut text = String::new();
    let mut servers: Vec<String> = nameservers.iter().map(|a| a.to_string()).collect();
    let mut domains: Vec<String> = search.to_vec();
    let mut host_search = None;
    for line in host.lines().map(str::trim) {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") if nameservers.is_empty() => {
                if let Some(server) = words.next().filter(|s| !is_loopback(s)) {
                    servers.push(server.to_string());
                }
            }
            // The last search or domain line wins, as in the C library.
            Some("search") | Some("domain") => host_search = Some(line.to_string()),
            Some("options") => text.push_str(&format!("{line}\n")),
            _ => {}
        }
    }
    match host_search {
        Some(line) if search.is_empty() => text.insert_str(0, &format!("{line}\n")),
        Some(line) => domains.extend(line.split_whitespace().skip(1).map(str::to_string)),
        None => {}
    }
    if !search.is_empty() {
        text.insert_str(0, &format!("search {}\n", domains.join(" ")));
    }
    if servers.is_empty() {
        text.insert_str(0, "# the host's name servers are all on loopback, which a container cannot reach\n");
    }
    for s in servers {
        text.push_str(&format!("nameserver {s}\n"));
    }
    text
}

fn is_loopback(server: &str) -> bool {
    server.parse::<std::net::IpAddr>().is_ok_and(|a| a.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_keeps_reachable_servers_and_search() {
        let host = "# generated\nnameserver 127.0.0.53\nnameserver 198.51.100.1\nsearch lab\noptions edns0\n";
        assert_eq!(resolv_conf(host, &[], &[]), "search lab\noptions edns0\nnameserver 198.51.100.1\n");
        assert!(resolv_conf("nameserver 127.0.0.1\n", &[], &[]).starts_with("# the host's name servers"));
    }

    #[test]
    fn resolv_conf_on_user_networks_names_the_gateway_and_searches_each_network() {
        let host = "nameserver 198.51.100.1\ndomain lab\noptions edns0\n";
        let search = ["backend.local".to_string(), "frontend.local".to_string()];
        assert_eq!(
            resolv_conf(host, &[Ipv4Addr::new(172, 22, 0, 1)], &search),
            "search backend.local frontend.local lab\noptions edns0\nnameserver 172.22.0.1\n"
        );
        assert_eq!(resolv_conf("", &[Ipv4Addr::new(172, 22, 0, 1)], &search[..1]), "search backend.local\nnameserver 172.22.0.1\n");
    }

    #[test]
    fn add_host_takes_names_addresses_and_the_gateway() {
        let h = ExtraHost::parse("db:10.0.0.5").unwrap();
        assert_eq!((h.name.as_str(), h.address), ("db", Some("10.0.0.5".parse().unwrap())));
        assert_eq!(ExtraHost::parse("v6=[::1]").unwrap().address, Some("::1".parse().unwrap()));
        let gw = ExtraHost::parse("host.docker.internal:host-gateway").unwrap();
        assert_eq!(extra_hosts(&[h, gw.clone()], Some(Ipv4Addr::new(172, 20, 0, 1))).unwrap(), "10.0.0.5\tdb\n172.20.0.1\thost.docker.internal\n");
        assert!(extra_hosts(&[gw], None).unwrap_err().to_string().contains("needs a bridge network"));
        for bad in ["nocolon", "a b:1.2.3.4", ":1.2.3.4", "x:999.1.1.1", "x:"] {
            assert!(ExtraHost::parse(bad).is_err(), "{bad}");
        }
        assert!(check_dns_server("1.1.1.1").is_ok() && check_dns_server("dns.example").is_err());
    }

    #[test]
    fn dns_settings_replace_what_they_name() {
        let text = "search lab\noptions edns0\nnameserver 172.22.0.1\n";
        assert_eq!(with_settings(text, &["192.0.2.53".into()], &[], &[]), "search lab\noptions edns0\nnameserver 192.0.2.53\n");
        assert_eq!(with_settings(text, &[], &["corp".into()], &["ndots:2".into()]), "search corp\noptions ndots:2\nnameserver 172.22.0.1\n");
        assert_eq!(with_settings("# the host's name servers are all on loopback\n", &["192.0.2.1".into()], &[], &[]), "nameserver 192.0.2.1\n");
    }

    #[test]
    fn hosts_names_the_container() {
        let text = hosts(Some(Ipv4Addr::new(172, 20, 0, 2)), &["abc123", "web"]);
        assert!(text.ends_with("172.20.0.2\tabc123 web\n"), "{text}");
        assert!(!hosts(None, &["x"]).contains('x'));
    }
}
