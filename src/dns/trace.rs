//! `dns trace CONTAINER NAME`: how a lookup from a container goes, query by query. It reads the
//! container's resolv.conf (server, search list, ndots), expands NAME the way the C library
//! does, and for each query says who answers: a network's table (TTL 0), isolation (the name
//! is on a network the container is not on), NXDOMAIN under `.local`, or the upstream servers,
//! which it really asks. Each step shows the `dig` a person can type to see the same.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::str::FromStr;

use hickory_server::proto::op::{Query, ResponseCode};
use hickory_server::proto::rr::{Name, RecordType};

use super::answer::{Answer, Directory};
use super::directory::Source;
use super::{forward, upstream, DnsError, Result};
use crate::state::containers::Lookup;
use crate::state::Db;

/// A container's resolver settings, from its /etc/resolv.conf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolver {
    /// The first `nameserver`.
    pub server: Option<Ipv4Addr>,
    /// The `search` list.
    pub search: Vec<String>,
    /// `options ndots:N` (default 1).
    pub ndots: usize,
}

/// Reads resolv.conf text.
pub fn resolver(text: &str) -> Resolver {
    let mut r = Resolver { server: None, search: Vec::new(), ndots: 1 };
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") if r.server.is_none() => r.server = words.next().and_then(|w| w.parse().ok()),
            Some("search") | Some("domain") => r.search = words.map(str::to_string).collect(),
            Some("options") => {
                if let Some(n) = words.filter_map(|o| o.strip_prefix("ndots:")).filter_map(|n| n.parse().ok()).next_back() {
                    r.ndots = n;
                }
            }
            _ => {}
        }
    }
    r
}

/// The queries a resolver makes for `name`, in order: an absolute name alone; a name with at
/// least `ndots` dots as it is first, then with each search domain; a shorter one the other way.
pub fn expand(name: &str, r: &Resolver) -> Vec<String> {
    if let Some(absolute) = name.strip_suffix('.') {
        return vec![absolute.to_string()];
    }
    let searched = r.search.iter().map(|d| format!("{name}.{d}"));
    if name.matches('.').count() >= r.ndots {
        std::iter::once(name.to_string()).chain(searched).collect()
    } else {
        searched.chain(std::iter::once(name.to_string())).collect()
    }
}

/// The trace of `name` looked up from `container`, one line a step.
pub fn trace(root: &Path, container: &str, name: &str) -> Result<Vec<String>> {
    let db = Db::open(root)?;
    let Lookup::Found(c) = db.lookup_container(container)? else {
        return Err(DnsError::NoSuchContainer(container.into()));
    };
    let leases = db.leases_of(&c.id)?;
    let text = std::fs::read_to_string(root.join("containers").join(&c.id).join("resolv.conf")).unwrap_or_default();
    let r = resolver(&text);
    let mut out = vec![format!(
        "{}: nameserver {}, search [{}], ndots {}",
        c.name,
        r.server.map_or("none".into(), |s| s.to_string()),
        r.search.join(" "),
        r.ndots
    )];
    let directory = Source::open(root)?.current()?;
    let ours = r.server.and_then(|s| directory.networks.iter().find(|n| n.gateway == s).map(|n| n.name.clone()));
    let (Some(server), Some(listener)) = (r.server, ours) else {
        out.push(format!("{} does not ask dns serve: its names go to {} as the host's do (the default bridge alone, none or host)", c.name, r.server.map_or("no server".into(), |s| s.to_string())));
        return Ok(out);
    };
    let Some(asker) = leases.iter().find(|l| l.network == listener).or(leases.first()).and_then(|l| l.address.parse().ok()) else {
        out.push(format!("{} has no address of ours: it is not running on a network", c.name));
        return Ok(out);
    };
    for query in expand(name, &r) {
        let (line, done) = step(&directory, &listener, asker, &query);
        out.push(format!("{line}\n    dig @{server} {query}"));
        if done {
            return Ok(out);
        }
    }
    out.push(format!("no query answered: {name} does not resolve from {}", c.name));
    Ok(out)
}

/// One query: what answers it, and whether the resolver stops there.
fn step(directory: &Directory, listener: &str, asker: Ipv4Addr, query: &str) -> (String, bool) {
    match directory.answer(listener, asker, false, query, RecordType::A, &[]) {
        Answer::Addresses(a) => {
            let shown: Vec<String> = a.iter().map(Ipv4Addr::to_string).collect();
            (format!("{query}: A {} (from the state: a container on a network it shares), TTL 0", shown.join(" ")), true)
        }
        Answer::NxDomain => {
            let gateway = directory.networks.iter().find(|n| n.name == listener).map(|n| n.gateway).unwrap_or(asker);
            let hidden = matches!(directory.answer(listener, gateway, true, query, RecordType::A, &[]), Answer::Addresses(_));
            let why = if hidden { "the name is on a network this container is not on: isolation hides it" } else { "no such name under .local; never forwarded" };
            (format!("{query}: NXDOMAIN ({why})"), false)
        }
        Answer::NoData => (format!("{query}: NOERROR with no A record (a network's zone, not a container)"), false),
        Answer::Names(_) => (format!("{query}: a reverse name"), true),
        Answer::Refused => (format!("{query}: REFUSED (the address is no container's)"), true),
        Answer::Proxy => (format!("{query}: A of the gateway (the reverse proxy serves this domain)"), true),
        Answer::Forward => forwarded(directory, query),
    }
}

/// A name that is not ours: ask the host's upstream servers, as dns serve does.
fn forwarded(directory: &Directory, query: &str) -> (String, bool) {
    let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let servers: Vec<SocketAddr> = upstream::parse(&text).into_iter().filter(|s| !directory.networks.iter().any(|n| s.ip() == std::net::IpAddr::V4(n.gateway))).take(3).collect();
    let shown: Vec<String> = servers.iter().map(SocketAddr::to_string).collect();
    let Ok(qname) = Name::from_str(&format!("{query}.")) else {
        return (format!("{query}: not a valid name"), true);
    };
    let q = Query::query(qname, RecordType::A);
    let reply = tokio::runtime::Builder::new_current_thread().enable_all().build().ok().and_then(|rt| rt.block_on(forward::forward(&q, true, &servers, forward::BUDGET)));
    match reply {
        None => (format!("{query}: forwarded to [{}]: no answer within {} s: SERVFAIL", shown.join(" "), forward::BUDGET.as_secs()), true),
        Some(m) => {
            let answers: Vec<String> = m.answers.iter().map(|a| format!("{} (TTL {})", a.data, a.ttl)).collect();
            let code = m.metadata.response_code;
            let done = code != ResponseCode::NXDomain;
            (format!("{query}: forwarded to [{}]: {} {}", shown.join(" "), code_name(code), answers.join(", ")), done)
        }
    }
}

/// A response code as dig prints it.
fn code_name(code: ResponseCode) -> String {
    match code {
        ResponseCode::NoError => "NOERROR".into(),
        ResponseCode::NXDomain => "NXDOMAIN".into(),
        ResponseCode::ServFail => "SERVFAIL".into(),
        ResponseCode::Refused => "REFUSED".into(),
        other => format!("{other:?}").to_uppercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_expand_as_the_c_library_does() {
        let r = resolver("search backend.local frontend.local\nnameserver 172.22.0.1\noptions edns0 ndots:1\n");
        assert_eq!(r.server, Some(Ipv4Addr::new(172, 22, 0, 1)));
        assert_eq!(expand("postgres", &r), ["postgres.backend.local", "postgres.frontend.local", "postgres"]);
        assert_eq!(expand("postgres.backend.local", &r), ["postgres.backend.local", "postgres.backend.local.backend.local", "postgres.backend.local.frontend.local"]);
        assert_eq!(expand("google.com.", &r), ["google.com"]);
        let five = resolver("search a\noptions ndots:5\n");
        assert_eq!(expand("x.y", &five), ["x.y.a", "x.y"]);
    }
}
