//! The files that tell a container who it is and how to resolve names: /etc/hostname,
//! /etc/hosts and /etc/resolv.conf, written beside its bundle and bound into its rootfs.

use std::net::Ipv4Addr;

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
    fn hosts_names_the_container() {
        let text = hosts(Some(Ipv4Addr::new(172, 20, 0, 2)), &["abc123", "web"]);
        assert!(text.ends_with("172.20.0.2\tabc123 web\n"), "{text}");
        assert!(!hosts(None, &["x"]).contains('x'));
    }
}
