//! Which answer a query gets: the container authority for `.local`, container names and
//! reverse names, scoped by who asks. Plain values in, an `Answer` out: no sockets, no database.
//!
//! The asker is named by the query's source address, as aardvark-dns does: a container sees the
//! containers on the networks it is attached to, and nothing else; the host (asking from a
//! gateway address) sees every network.

use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;

use hickory_server::proto::rr::RecordType;
use ipnet::Ipv4Net;

use crate::network::DNS_ZONE as ZONE;

/// One network, as the authority needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetEntry {
    /// Its name (the `NET` of `NAME.NET.local`).
    pub name: String,
    /// Its subnet: reverse names in it are ours.
    pub subnet: Ipv4Net,
    /// The bridge's address, where `dns serve` listens; queries from it come from the host.
    pub gateway: Ipv4Addr,
}

/// One container's address on one network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The network.
    pub network: String,
    /// The address there.
    pub address: Ipv4Addr,
    /// The container's ID (64 hex digits).
    pub id: String,
    /// The container's name.
    pub name: String,
    /// Its other names: its `--hostname` and `--network-alias`es.
    pub more: Vec<String>,
}

/// Everything the authority answers from: one snapshot of the state database, with its names
/// indexed once, so a query costs one lookup however many names the containers have.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Directory {
    /// Every network.
    pub networks: Vec<NetEntry>,
    /// Every lease of a container.
    pub entries: Vec<Entry>,
    /// Each name a lease answers to (lowercase, no final dot) -> those leases, in `entries` order.
    by_name: HashMap<String, Vec<usize>>,
}

/// What to do with a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// A records, TTL 0, for the name asked.
    Addresses(Vec<Ipv4Addr>),
    /// PTR records: `NAME.NET.local.` for a reverse name.
    Names(Vec<String>),
    /// The name is ours but has no record of the asked type (AAAA of a container): NOERROR,
    /// no answer.
    NoData,
    /// No such name: under `.local`, or the reverse of an unused address of our subnets.
    /// Never forwarded.
    NxDomain,
    /// Not ours: ask the upstream servers.
    Forward,
    /// An app under a proxy domain (`APP.platform.local`): the reverse proxy serves it, so the
    /// answer is an address of ours where it listens (the asker's gateway).
    Proxy,
    /// The asker is neither a container on the network it asked on nor the host: REFUSED,
    /// so the server never becomes an open resolver.
    Refused,
}

impl Directory {
    /// The directory of these networks and leases.
    pub fn new(networks: Vec<NetEntry>, entries: Vec<Entry>) -> Directory {
        let mut by_name: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, e) in entries.iter().enumerate() {
            for name in names_of(e) {
                let holders = by_name.entry(name).or_default();
                if holders.last() != Some(&i) {
                    holders.push(i);
                }
            }
        }
        Directory { networks, entries, by_name }
    }

    /// Whether `address` is a container's (on any network).
    pub fn is_container(&self, address: Ipv4Addr) -> bool {
        self.entries.iter().any(|e| e.address == address)
    }

    /// The networks `asker` may see, asking on `listener`'s network: the host (`is_host`, or
    /// asking from a gateway) sees all; a container sees its own; anyone else is `None`.
    fn visible(&self, listener: &str, asker: Ipv4Addr, is_host: bool) -> Option<BTreeSet<&str>> {
        if is_host || self.networks.iter().any(|n| n.gateway == asker) {
            return Some(self.networks.iter().map(|n| n.name.as_str()).collect());
        }
        let container = self.asking_container(listener, asker)?;
        Some(self.entries.iter().filter(|e| e.id == container).map(|e| e.network.as_str()).collect())
    }

    /// The container that owns `asker`: its lease on the listener's network, else the one
    /// container holding that address anywhere (a container may ask another network's gateway).
    fn asking_container(&self, listener: &str, asker: Ipv4Addr) -> Option<&str> {
        let holders: Vec<&Entry> = self.entries.iter().filter(|e| e.address == asker).collect();
        if let Some(own) = holders.iter().find(|e| e.network == listener) {
            return Some(&own.id);
        }
        match holders.as_slice() {
            [first, rest @ ..] if rest.iter().all(|e| e.id == first.id) => Some(&first.id),
            _ => None,
        }
    }

    /// The answer to `qname` (any case, with or without the final dot) of type `qtype`, asked
    /// by `asker` on `listener`'s network; `is_host`: the asker is one of the host's addresses.
    /// A name of one label under one of `proxy_domains` is the proxy's, before any container's.
    pub fn answer(&self, listener: &str, asker: Ipv4Addr, is_host: bool, qname: &str, qtype: RecordType, proxy_domains: &[String]) -> Answer {
        let Some(visible) = self.visible(listener, asker, is_host) else {
            return Answer::Refused;
        };
        let name = qname.trim_end_matches('.').to_ascii_lowercase();
        if let Some(answer) = proxied(&name, qtype, proxy_domains) {
            return answer;
        }
        if let Some(reversed) = name.strip_suffix(".in-addr.arpa") {
            return self.reverse(&visible, reversed, qtype);
        }
        let mut found = Vec::new();
        for e in self.by_name.get(&name).into_iter().flatten().map(|&i| &self.entries[i]) {
            if visible.contains(e.network.as_str()) && !found.contains(&e.address) {
                found.push(e.address);
            }
        }
        if !found.is_empty() {
            return if matches!(qtype, RecordType::A | RecordType::ANY) { Answer::Addresses(found) } else { Answer::NoData };
        }
        let Some(under_zone) = name.strip_suffix(ZONE).filter(|rest| rest.is_empty() || rest.ends_with('.')) else {
            return Answer::Forward;
        };
        // `local` and `NET.local` exist (they hold names) but own no records themselves.
        let net = under_zone.trim_end_matches('.');
        if net.is_empty() || visible.contains(net) {
            Answer::NoData
        } else {
            Answer::NxDomain
        }
    }

    /// A query under in-addr.arpa: `D.C.B.A` reversed.
    fn reverse(&self, visible: &BTreeSet<&str>, reversed: &str, qtype: RecordType) -> Answer {
        let octets: Vec<u8> = reversed.split('.').rev().map_while(|o| o.parse().ok()).collect();
        // Four octets exactly; a shorter name (`22.172.in-addr.arpa`) is a zone, not a host.
        let Ok(address) = <[u8; 4]>::try_from(octets.as_slice()).map(Ipv4Addr::from) else {
            return Answer::Forward;
        };
        let names: Vec<String> = self
            .entries
            .iter()
            .filter(|e| e.address == address && visible.contains(e.network.as_str()))
            .map(|e| format!("{}.{}.{ZONE}.", e.name.to_ascii_lowercase(), e.network))
            .collect();
        match (names.is_empty(), qtype) {
            (false, RecordType::PTR | RecordType::ANY) => Answer::Names(names),
            (false, _) => Answer::NoData,
            (true, _) if self.networks.iter().any(|n| n.subnet.contains(&address)) => Answer::NxDomain,
            (true, _) => Answer::Forward,
        }
    }
}

/// The answer for a name under a proxy domain: `APP.DOMAIN` is the proxy's (an A record; no
/// other type), `DOMAIN` itself holds names but no records, and a deeper name does not exist.
fn proxied(name: &str, qtype: RecordType, proxy_domains: &[String]) -> Option<Answer> {
    for domain in proxy_domains {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        if name == domain {
            return Some(Answer::NoData);
        }
        let Some(label) = name.strip_suffix(&domain).and_then(|rest| rest.strip_suffix('.')) else { continue };
        return Some(match (label.contains('.'), qtype) {
            (true, _) => Answer::NxDomain,
            (false, RecordType::A | RecordType::ANY) => Answer::Proxy,
            (false, _) => Answer::NoData,
        });
    }
    None
}

/// The names a lease answers to: `NAME.NET.local`, `NAME.NET` and `NAME` for its name, host
/// name and aliases, and its 12-digit ID.
fn names_of(e: &Entry) -> Vec<String> {
    let net = e.network.to_ascii_lowercase();
    let mut names = vec![e.id.chars().take(12).collect()];
    for n in std::iter::once(&e.name).chain(&e.more).map(|n| n.to_ascii_lowercase()) {
        names.extend([format!("{n}.{net}.{ZONE}"), format!("{n}.{net}"), n]);
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    const POSTGRES: &str = "0123456789ab0000000000000000000000000000000000000000000000000000";
    const API: &str = "abcdef0123450000000000000000000000000000000000000000000000000000";
    const WEB: &str = "fedcba9876540000000000000000000000000000000000000000000000000000";

    fn ip(text: &str) -> Ipv4Addr {
        text.parse().unwrap()
    }

    /// backend 172.22.0.0/24: postgres .2, api .3; frontend 172.21.0.0/24: api .2, web .3.
    fn lab() -> Directory {
        let net = |name: &str, subnet: &str, gateway: &str| NetEntry { name: name.into(), subnet: subnet.parse().unwrap(), gateway: ip(gateway) };
        let entry = |network: &str, address: &str, id: &str, name: &str| {
            let more = if name == "postgres" { vec!["pg-host".to_string(), "db".to_string()] } else { Vec::new() };
            Entry { network: network.into(), address: ip(address), id: id.into(), name: name.into(), more }
        };
        Directory::new(
            vec![net("backend", "172.22.0.0/24", "172.22.0.1"), net("frontend", "172.21.0.0/24", "172.21.0.1")],
            vec![
                entry("backend", "172.22.0.2", POSTGRES, "postgres"),
                entry("backend", "172.22.0.3", API, "api"),
                entry("frontend", "172.21.0.2", API, "api"),
                entry("frontend", "172.21.0.3", WEB, "web"),
            ],
        )
    }

    fn a(dir: &Directory, listener: &str, asker: &str, qname: &str) -> Answer {
        dir.answer(listener, ip(asker), false, qname, RecordType::A, &[])
    }

    #[test]
    fn every_form_of_a_name_resolves_on_a_shared_network() {
        let dir = lab();
        let postgres = Answer::Addresses(vec![ip("172.22.0.2")]);
        for q in ["postgres.backend.local", "postgres.backend.local.", "POSTGRES.Backend.LOCAL", "postgres", "postgres.backend", "0123456789ab"] {
            assert_eq!(a(&dir, "backend", "172.22.0.3", q), postgres, "{q}");
        }
        assert_eq!(a(&dir, "backend", "172.22.0.3", "0123456789a"), Answer::Forward, "only the 12-digit short ID");
    }

    #[test]
    fn a_hostname_and_aliases_answer_like_the_name_but_only_where_the_name_does() {
        let dir = lab();
        let postgres = Answer::Addresses(vec![ip("172.22.0.2")]);
        for q in ["db", "db.backend", "db.backend.local", "pg-host", "PG-HOST.backend.local"] {
            assert_eq!(a(&dir, "backend", "172.22.0.3", q), postgres, "{q}");
        }
        assert_eq!(a(&dir, "frontend", "172.21.0.3", "db.backend.local"), Answer::NxDomain, "web is not on backend");
        assert_eq!(dir.answer("backend", ip("172.22.0.3"), false, "2.0.22.172.in-addr.arpa", RecordType::PTR, &[]), Answer::Names(vec!["postgres.backend.local.".into()]), "PTR names the container, not an alias");
    }

    #[test]
    fn a_container_sees_only_its_own_networks() {
        let dir = lab();
        assert_eq!(a(&dir, "frontend", "172.21.0.3", "postgres.backend.local"), Answer::NxDomain, "web is on frontend only");
        assert_eq!(a(&dir, "frontend", "172.21.0.3", "postgres"), Answer::Forward, "a bare unknown name goes upstream, like Docker");
        assert_eq!(a(&dir, "frontend", "172.21.0.3", "backend.local"), Answer::NxDomain, "not even the network's name");
        assert_eq!(a(&dir, "frontend", "172.21.0.3", "api.frontend.local"), Answer::Addresses(vec![ip("172.21.0.2")]));
        // api is on both: it sees both, whichever gateway it asks.
        assert_eq!(a(&dir, "frontend", "172.21.0.2", "postgres.backend.local"), Answer::Addresses(vec![ip("172.22.0.2")]));
        assert_eq!(a(&dir, "backend", "172.22.0.3", "web.frontend.local"), Answer::Addresses(vec![ip("172.21.0.3")]));
        // A bare name answers with the address on every shared network.
        assert_eq!(a(&dir, "backend", "172.22.0.3", "api"), Answer::Addresses(vec![ip("172.22.0.3"), ip("172.21.0.2")]));
        assert_eq!(a(&dir, "frontend", "172.21.0.3", "api"), Answer::Addresses(vec![ip("172.21.0.2")]));
        // web asking backend's gateway is still web.
        assert_eq!(a(&dir, "backend", "172.21.0.3", "postgres.backend.local"), Answer::NxDomain);
    }

    #[test]
    fn the_host_sees_every_network_and_strangers_are_refused() {
        let dir = lab();
        assert_eq!(a(&dir, "frontend", "172.21.0.1", "postgres.backend.local"), Answer::Addresses(vec![ip("172.22.0.2")]));
        assert_eq!(a(&dir, "backend", "172.22.0.1", "web.frontend.local"), Answer::Addresses(vec![ip("172.21.0.3")]));
        let masqueraded = ip("198.51.100.254");
        assert_eq!(dir.answer("frontend", masqueraded, true, "postgres.backend.local", RecordType::A, &[]), Answer::Addresses(vec![ip("172.22.0.2")]));
        assert_eq!(a(&dir, "frontend", "198.51.100.254", "postgres.backend.local"), Answer::Refused, "the same address, not the host's");
        assert_eq!(a(&dir, "backend", "172.22.0.99", "postgres.backend.local"), Answer::Refused);
        assert_eq!(a(&dir, "backend", "10.0.0.1", "google.com"), Answer::Refused);
    }

    #[test]
    fn aaaa_and_other_types_of_a_container_name_are_empty_not_nxdomain() {
        let dir = lab();
        for t in [RecordType::AAAA, RecordType::MX, RecordType::TXT] {
            assert_eq!(dir.answer("backend", ip("172.22.0.3"), false, "postgres.backend.local", t, &[]), Answer::NoData, "{t}");
        }
        assert_eq!(dir.answer("backend", ip("172.22.0.3"), false, "postgres", RecordType::ANY, &[]), Answer::Addresses(vec![ip("172.22.0.2")]));
        assert_eq!(dir.answer("backend", ip("172.22.0.3"), false, "backend.local", RecordType::SOA, &[]), Answer::NoData);
        assert_eq!(dir.answer("backend", ip("172.22.0.3"), false, "local", RecordType::A, &[]), Answer::NoData);
    }

    #[test]
    fn unknown_names_under_local_are_nxdomain_and_others_forwarded() {
        let dir = lab();
        for q in ["nosuch.backend.local", "postgres.nosuch.local", "a.b.c.local", "nosuch.local", "postgres.backend.local.backend.local"] {
            assert_eq!(a(&dir, "backend", "172.22.0.3", q), Answer::NxDomain, "{q}");
        }
        for q in ["google.com", "localhost.example", "notlocal", "postgres.backend.localdomain", "x.nolocal"] {
            assert_eq!(a(&dir, "backend", "172.22.0.3", q), Answer::Forward, "{q}");
        }
    }

    #[test]
    fn reverse_names_answer_for_visible_containers_only() {
        let dir = lab();
        let ptr = |asker: &str, q: &str| dir.answer("backend", ip(asker), false, q, RecordType::PTR, &[]);
        assert_eq!(ptr("172.22.0.3", "2.0.22.172.in-addr.arpa."), Answer::Names(vec!["postgres.backend.local.".into()]));
        assert_eq!(ptr("172.22.0.3", "2.0.21.172.in-addr.arpa"), Answer::Names(vec!["api.frontend.local.".into()]));
        assert_eq!(ptr("172.21.0.3", "2.0.22.172.in-addr.arpa"), Answer::NxDomain, "web cannot see backend");
        assert_eq!(ptr("172.22.0.3", "99.0.22.172.in-addr.arpa"), Answer::NxDomain, "our subnet: never forwarded");
        assert_eq!(ptr("172.22.0.3", "1.100.51.198.in-addr.arpa"), Answer::Forward);
        assert_eq!(ptr("172.22.0.3", "22.172.in-addr.arpa"), Answer::Forward);
        assert_eq!(ptr("172.22.0.3", "x.0.22.172.in-addr.arpa"), Answer::Forward);
        assert_eq!(dir.answer("backend", ip("172.22.0.3"), false, "2.0.22.172.in-addr.arpa", RecordType::A, &[]), Answer::NoData);
    }

    #[test]
    fn a_name_leaves_with_its_lease() {
        let lab = lab();
        let dir = Directory::new(lab.networks, lab.entries.into_iter().filter(|e| e.id != POSTGRES).collect());
        assert_eq!(a(&dir, "backend", "172.22.0.3", "postgres.backend.local"), Answer::NxDomain);
        assert_eq!(a(&dir, "backend", "172.22.0.2", "api"), Answer::Refused, "its old address is nobody now");
    }

    #[test]
    fn apps_under_a_proxy_domain_are_the_proxys_before_any_container() {
        let dir = lab();
        let domains = ["platform.local".to_string()];
        let ask = |asker: &str, q: &str, t: RecordType| dir.answer("backend", ip(asker), false, q, t, &domains);
        assert_eq!(ask("172.22.0.3", "myapp.platform.local", RecordType::A), Answer::Proxy);
        assert_eq!(ask("172.22.0.1", "MyApp.Platform.Local.", RecordType::A), Answer::Proxy, "the host too, any case");
        assert_eq!(ask("172.22.0.3", "myapp.platform.local", RecordType::AAAA), Answer::NoData);
        assert_eq!(ask("172.22.0.3", "platform.local", RecordType::A), Answer::NoData);
        assert_eq!(ask("172.22.0.3", "a.b.platform.local", RecordType::A), Answer::NxDomain);
        assert_eq!(ask("10.9.9.9", "myapp.platform.local", RecordType::A), Answer::Refused, "strangers still get nothing");
        assert_eq!(ask("172.22.0.3", "postgres.backend.local", RecordType::A), Answer::Addresses(vec![ip("172.22.0.2")]));
        assert_eq!(dir.answer("backend", ip("172.22.0.3"), false, "myapp.platform.local", RecordType::A, &[]), Answer::NxDomain, "without the domain it is a network zone");
    }
}
