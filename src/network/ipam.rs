//! Address management: which address of a subnet a new container gets. The leases themselves
//! live in the state database; this is the arithmetic, so it is tested without root.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::{NetworkError, Result};

/// Parses a subnet for a new network: `A.B.C.D/N` with no host bits set, /8 to /30.
pub fn parse_subnet(text: &str) -> Result<Ipv4Net> {
    let bad = |why: &str| NetworkError::Invalid(format!("invalid subnet {text:?}: {why}"));
    let net: Ipv4Net = text.parse().map_err(|_| bad("write it as A.B.C.D/N, e.g. 172.21.0.0/24"))?;
    if !(8..=30).contains(&net.prefix_len()) {
        return Err(bad("the prefix length must be between 8 and 30"));
    }
    if net.addr() != net.network() {
        return Err(bad(&format!("host bits are set; did you mean {}?", net.trunc())));
    }
    if net.addr().is_loopback() || net.addr().is_multicast() || net.addr().is_unspecified() || net.addr().octets()[0] >= 240 {
        return Err(bad("loopback, multicast and reserved ranges cannot be container networks"));
    }
    Ok(net)
}

/// The gateway of a subnet: its first host address.
pub fn gateway_of(subnet: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(subnet.network()) + 1)
}

/// The lowest host address of `subnet` that is neither the gateway nor in `used`.
pub fn next_free(subnet: Ipv4Net, gateway: Ipv4Addr, used: &[Ipv4Addr]) -> Option<Ipv4Addr> {
    subnet.hosts().find(|a| *a != gateway && !used.contains(a))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn the_first_container_gets_dot_two_and_freed_addresses_come_back() {
        let n = net("172.20.0.0/24");
        let gw = gateway_of(n);
        assert_eq!(gw, Ipv4Addr::new(172, 20, 0, 1));
        assert_eq!(next_free(n, gw, &[]), Some(Ipv4Addr::new(172, 20, 0, 2)));
        let used = [Ipv4Addr::new(172, 20, 0, 2), Ipv4Addr::new(172, 20, 0, 4)];
        assert_eq!(next_free(n, gw, &used), Some(Ipv4Addr::new(172, 20, 0, 3)));
    }

    #[test]
    fn a_full_subnet_has_no_address() {
        let n = net("10.9.0.0/30");
        let gw = gateway_of(n);
        assert_eq!(next_free(n, gw, &[]), Some(Ipv4Addr::new(10, 9, 0, 2)));
        assert_eq!(next_free(n, gw, &[Ipv4Addr::new(10, 9, 0, 2)]), None);
    }

    #[test]
    fn subnets_are_checked() {
        assert_eq!(parse_subnet("172.21.0.0/24").unwrap(), net("172.21.0.0/24"));
        for bad in ["172.21.0.1/24", "172.21.0.0", "172.21.0.0/31", "127.0.0.0/8", "300.1.0.0/16", "224.0.0.0/8", "x"] {
            assert!(parse_subnet(bad).is_err(), "{bad}");
        }
    }
}
