//! The firewall: NAT for the bridges, forwarding, and DNAT for published ports, in chains of
//! our own (`SHIBAFU-*`) so the host's rules are never touched and teardown is exact. Drivers
//! sit behind one trait, one file per backend (as netavark does).

pub mod iptables;

use super::ports::PortMap;
use super::{Network, Result};

/// Our chain for DNAT of published ports (nat table, from PREROUTING and OUTPUT).
pub const DNAT_CHAIN: &str = "SHIBAFU-DNAT";
/// Our chain for masquerading (nat table, from POSTROUTING).
pub const POSTROUTING_CHAIN: &str = "SHIBAFU-POSTROUTING";
/// Our chain for forwarding (filter table, from FORWARD).
pub const FORWARD_CHAIN: &str = "SHIBAFU-FORWARD";
/// Our chain for what containers send to the host itself (filter table, from INPUT).
pub const INPUT_CHAIN: &str = "SHIBAFU-INPUT";

/// One rule: table, chain, and the match and target as iptables takes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// `nat` or `filter`.
    pub table: &'static str,
    /// The chain.
    pub chain: &'static str,
    /// Everything after the chain name.
    pub spec: String,
}

impl Rule {
    fn new(table: &'static str, chain: &'static str, spec: String) -> Rule {
        Rule { table, chain, spec }
    }
}

/// What a firewall backend does.
pub trait FirewallDriver {
    /// Makes our chains hold exactly the rules of `networks` and `ports`, adding the chains
    /// and the jumps to them first; with no networks, removes chains and jumps altogether.
    fn sync(&self, networks: &[Network], ports: &[PortMap]) -> Result<()>;
    /// Adds the rules of these published ports.
    fn add_ports(&self, ports: &[PortMap]) -> Result<()>;
    /// Removes the rules of these published ports.
    fn remove_ports(&self, ports: &[PortMap]) -> Result<()>;
}

/// A network's rules: masquerade what leaves for elsewhere, masquerade the host's own and the
/// hairpin connections to published ports (so replies come back through us), and forward.
/// route_localnet (for `curl localhost:PORT`) would also let a container reach the host's
/// 127.0.0.1 services by sending to the bridge: only replies and DNAT may come in that way
/// (as kube-proxy does after CVE-2020-8558).
/// An internal network (`--internal`) has no way out: no masquerade for what leaves, and only
/// replies leave its bridge (to the published ports' clients); nothing else comes in but
/// replies and connections to published ports.
pub fn network_rules(net: &Network) -> Vec<Rule> {
    let (b, s) = (&net.bridge, net.subnet);
    let mut rules = Vec::new();
    if !net.internal {
        rules.push(Rule::new("nat", POSTROUTING_CHAIN, format!("-s {s} ! -o {b} -j MASQUERADE")));
    }
    rules.push(Rule::new("nat", POSTROUTING_CHAIN, format!("-o {b} -m addrtype --src-type LOCAL -j MASQUERADE")));
    rules.push(Rule::new("nat", POSTROUTING_CHAIN, format!("-s {s} -o {b} -m conntrack --ctstate DNAT -j MASQUERADE")));
    if net.internal {
        rules.push(Rule::new("filter", FORWARD_CHAIN, format!("-i {b} -o {b} -j ACCEPT")));
        rules.push(Rule::new("filter", FORWARD_CHAIN, format!("-i {b} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")));
        rules.push(Rule::new("filter", FORWARD_CHAIN, format!("-i {b} -j DROP")));
    } else {
        rules.push(Rule::new("filter", FORWARD_CHAIN, format!("-i {b} -j ACCEPT")));
    }
    rules.push(Rule::new("filter", FORWARD_CHAIN, format!("-o {b} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")));
    rules.push(Rule::new("filter", FORWARD_CHAIN, format!("-o {b} -m conntrack --ctstate DNAT -j ACCEPT")));
    if net.internal {
        rules.push(Rule::new("filter", FORWARD_CHAIN, format!("-o {b} -j DROP")));
    }
    rules.push(Rule::new("filter", INPUT_CHAIN, format!("-i {b} -d 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP")));
    rules
}

/// Isolation between networks: nothing is forwarded from one of our bridges to another, but
/// for replies and for connections to a published port (DNAT), which the host offers to all.
/// A container on both networks talks to each directly, on its own interface there. These
/// rules come before every network's accepts.
pub fn isolation_rules(networks: &[Network]) -> Vec<Rule> {
    let mut rules = Vec::new();
    for from in networks {
        for to in networks.iter().filter(|n| n.bridge != from.bridge) {
            rules.push(Rule::new(
                "filter",
                FORWARD_CHAIN,
                format!("-i {} -o {} -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP", from.bridge, to.bridge),
            ));
        }
    }
    rules
}

/// A published port's rule: DNAT from the host port to the container.
pub fn port_rule(p: &PortMap) -> Rule {
    let dest = if p.host_ip.is_unspecified() { String::new() } else { format!("-d {}/32 ", p.host_ip) };
    let proto = p.protocol.as_str();
    Rule::new(
        "nat",
        DNAT_CHAIN,
        format!("{dest}-p {proto} -m {proto} --dport {} -j DNAT --to-destination {}:{}", p.host_port, p.container_ip, p.container_port),
    )
}

/// The jumps from the built-in chains to ours: (table, built-in chain, spec).
pub fn jumps() -> [(&'static str, &'static str, String); 5] {
    [
        ("nat", "PREROUTING", format!("-m addrtype --dst-type LOCAL -j {DNAT_CHAIN}")),
        ("nat", "OUTPUT", format!("-m addrtype --dst-type LOCAL -j {DNAT_CHAIN}")),
        ("nat", "POSTROUTING", format!("-j {POSTROUTING_CHAIN}")),
        ("filter", "FORWARD", format!("-j {FORWARD_CHAIN}")),
        ("filter", "INPUT", format!("-j {INPUT_CHAIN}")),
    ]
}
