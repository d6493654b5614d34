//! The iptables backend. Every change is one `iptables-restore --noflush` batch (one process,
//! applied atomically), never a process per rule. Declaring a chain of ours in a batch empties
//! it, so `sync` rewrites our chains whole from the recorded state.

use std::io::Write;
use std::process::{Command, Stdio};

use super::{isolation_rules, jumps, network_rules, port_rule, FirewallDriver, Rule, DNAT_CHAIN, FORWARD_CHAIN, INPUT_CHAIN, POSTROUTING_CHAIN};
use crate::explain;
use crate::network::ports::PortMap;
use crate::network::{Network, NetworkError, Result};

/// iptables through iptables-save and iptables-restore (either backend, legacy or nft).
pub struct Iptables;

impl FirewallDriver for Iptables {
    fn sync(&self, networks: &[Network], ports: &[PortMap]) -> Result<()> {
        let saved = run("iptables-save", &[], None)?;
        restore(&render_sync(&saved, networks, ports))
    }

    fn add_ports(&self, ports: &[PortMap]) -> Result<()> {
        restore(&render_rules('A', &ports.iter().map(port_rule).collect::<Vec<_>>()))
    }

    fn remove_ports(&self, ports: &[PortMap]) -> Result<()> {
        restore(&render_rules('D', &ports.iter().map(port_rule).collect::<Vec<_>>()))
    }
}

const TABLES: [(&str, &[&str]); 2] = [("nat", &[DNAT_CHAIN, POSTROUTING_CHAIN]), ("filter", &[FORWARD_CHAIN, INPUT_CHAIN])];

/// The batch that makes our chains exactly these networks' and ports' rules.
pub fn render_sync(saved: &str, networks: &[Network], ports: &[PortMap]) -> String {
    let rules: Vec<Rule> = isolation_rules(networks).into_iter().chain(networks.iter().flat_map(network_rules)).chain(ports.iter().map(port_rule)).collect();
    let mut out = String::new();
    for (table, chains) in TABLES {
        let mut lines = Vec::new();
        let jumps: Vec<_> = jumps().into_iter().filter(|j| j.0 == table).collect();
        if networks.is_empty() {
            for (_, builtin, _) in &jumps {
                for spec in saved_jumps(saved, table, builtin) {
                    lines.push(format!("-D {builtin} {spec}"));
                }
            }
            for chain in chains.iter().filter(|c| has_chain(saved, table, c)) {
                lines.push(format!("-F {chain}"));
                lines.push(format!("-X {chain}"));
            }
        } else {
            lines.extend(chains.iter().map(|c| format!(":{c} - [0:0]")));
            lines.extend(rules.iter().filter(|r| r.table == table).map(|r| format!("-A {} {}", r.chain, r.spec)));
            for (_, builtin, spec) in &jumps {
                if saved_jumps(saved, table, builtin).is_empty() {
                    // FORWARD may end in the host's own DROP: our accepts go first; and our
                    // INPUT drop must come before any accept of the host's.
                    let verb = if matches!(*builtin, "FORWARD" | "INPUT") { format!("-I {builtin} 1") } else { format!("-A {builtin}") };
                    lines.push(format!("{verb} {spec}"));
                }
            }
        }
        if !lines.is_empty() {
            out.push_str(&format!("*{table}\n{}\nCOMMIT\n", lines.join("\n")));
        }
    }
    out
}

/// A batch that appends (`A`) or deletes (`D`) these rules.
pub fn render_rules(op: char, rules: &[Rule]) -> String {
    let mut out = String::new();
    for (table, _) in TABLES {
        let lines: Vec<String> = rules.iter().filter(|r| r.table == table).map(|r| format!("-{op} {} {}", r.chain, r.spec)).collect();
        if !lines.is_empty() {
            out.push_str(&format!("*{table}\n{}\nCOMMIT\n", lines.join("\n")));
        }
    }
    out
}

/// The lines of one table in iptables-save output.
fn table_lines<'a>(saved: &'a str, table: &str) -> impl Iterator<Item = &'a str> {
    let header = format!("*{table}");
    saved.lines().skip_while(move |l| *l != header).skip(1).take_while(|l| *l != "COMMIT")
}

fn has_chain(saved: &str, table: &str, chain: &str) -> bool {
    let declared = format!(":{chain} ");
    table_lines(saved, table).any(|l| l.starts_with(&declared))
}

/// The specs of the rules in `builtin` that jump to one of our chains, as saved.
fn saved_jumps(saved: &str, table: &str, builtin: &str) -> Vec<String> {
    let prefix = format!("-A {builtin} ");
    table_lines(saved, table)
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter(|spec| spec.split_whitespace().collect::<Vec<_>>().windows(2).any(|w| w[0] == "-j" && w[1].starts_with("SHIBAFU-")))
        .map(str::to_string)
        .collect()
}

fn restore(batch: &str) -> Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    if explain::enabled() {
        let mut table = "";
        for line in batch.lines() {
            match line.strip_prefix('*') {
                Some(t) => table = t,
                None if line != "COMMIT" => explain::step(|| format!("iptables -t {table} {}", line.replacen(':', "-N ", 1).trim_end_matches(" - [0:0]"))),
                None => {}
            }
        }
    }
    run("iptables-restore", &["-w", "--noflush"], Some(batch)).map(drop)
}

fn run(program: &str, args: &[&str], input: Option<&str>) -> Result<String> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| NetworkError::Firewall(format!("cannot run {program} ({e}); install iptables")))?;
    if let Some(text) = input {
        let mut stdin = child.stdin.take().expect("stdin is piped");
        stdin.write_all(text.as_bytes()).map_err(NetworkError::io(format!("write to {program}")))?;
    }
    let out = child.wait_with_output().map_err(NetworkError::io(format!("wait for {program}")))?;
    if !out.status.success() {
        let batch = input.map(|t| format!("\nthe batch was:\n{t}")).unwrap_or_default();
        return Err(NetworkError::Firewall(format!("{program} failed: {}{batch}", String::from_utf8_lossy(&out.stderr).trim())));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::network::ports::Protocol;

    fn bridge() -> Network {
        Network::parse("bridge", "ctr0", "172.20.0.0/24", "172.20.0.1").unwrap()
    }

    fn web() -> PortMap {
        PortMap { host_ip: Ipv4Addr::UNSPECIFIED, host_port: 30001, container_ip: Ipv4Addr::new(172, 20, 0, 2), container_port: 80, protocol: Protocol::Tcp }
    }

    const EMPTY: &str = "*nat\n:PREROUTING ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\nCOMMIT\n*filter\n:FORWARD DROP [0:0]\n-A FORWARD -j HOST-RULES\nCOMMIT\n";

    #[test]
    fn first_sync_makes_chains_rules_and_jumps() {
        insta::assert_snapshot!(render_sync(EMPTY, &[bridge()], &[web()]));
    }

    #[test]
    fn a_later_sync_adds_no_second_jump() {
        let saved = "*nat\n:SHIBAFU-DNAT - [0:0]\n-A PREROUTING -m addrtype --dst-type LOCAL -j SHIBAFU-DNAT\n-A OUTPUT -m addrtype --dst-type LOCAL -j SHIBAFU-DNAT\n-A POSTROUTING -j SHIBAFU-POSTROUTING\nCOMMIT\n*filter\n-A FORWARD -j SHIBAFU-FORWARD\nCOMMIT\n";
        let batch = render_sync(saved, &[bridge()], &[]);
        assert!(!batch.contains("PREROUTING -m") && !batch.contains("FORWARD -j SHIBAFU"), "{batch}");
        assert!(batch.contains(":SHIBAFU-POSTROUTING - [0:0]"));
    }

    #[test]
    fn sync_with_no_networks_removes_only_ours() {
        let saved = "*nat\n:SHIBAFU-DNAT - [0:0]\n:SHIBAFU-POSTROUTING - [0:0]\n-A PREROUTING -m addrtype --dst-type LOCAL -j SHIBAFU-DNAT\n-A POSTROUTING -j SHIBAFU-POSTROUTING\n-A POSTROUTING -j HOST\nCOMMIT\n*filter\n-A FORWARD -j HOST-RULES\nCOMMIT\n";
        insta::assert_snapshot!(render_sync(saved, &[], &[]));
        assert_eq!(render_sync(EMPTY, &[], &[]), "");
    }

    #[test]
    fn networks_are_isolated_from_each_other_before_any_accept() {
        let backend = Network::parse("backend", "br-backend", "172.22.0.0/24", "172.22.0.1").unwrap();
        let batch = render_sync(EMPTY, &[bridge(), backend], &[]);
        let forward: Vec<&str> = batch.lines().filter(|l| l.starts_with("-A SHIBAFU-FORWARD")).collect();
        assert_eq!(forward[0], "-A SHIBAFU-FORWARD -i ctr0 -o br-backend -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP");
        assert_eq!(forward[1], "-A SHIBAFU-FORWARD -i br-backend -o ctr0 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP");
        assert!(forward[2].ends_with("-j ACCEPT"), "{batch}");
        assert!(render_sync(EMPTY, &[bridge()], &[]).lines().all(|l| !l.contains("DROP") || l.contains("SHIBAFU-INPUT")));
    }

    #[test]
    fn an_internal_network_has_no_way_out() {
        let mut db = Network::parse("db", "br-db", "172.23.0.0/24", "172.23.0.1").unwrap();
        db.internal = true;
        let batch = render_sync(EMPTY, &[db], &[]);
        assert!(!batch.contains("! -o br-db -j MASQUERADE"), "no NAT out: {batch}");
        let forward: Vec<&str> = batch.lines().filter(|l| l.starts_with("-A SHIBAFU-FORWARD")).collect();
        assert_eq!(
            forward,
            [
                "-A SHIBAFU-FORWARD -i br-db -o br-db -j ACCEPT",
                "-A SHIBAFU-FORWARD -i br-db -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
                "-A SHIBAFU-FORWARD -i br-db -j DROP",
                "-A SHIBAFU-FORWARD -o br-db -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
                "-A SHIBAFU-FORWARD -o br-db -m conntrack --ctstate DNAT -j ACCEPT",
                "-A SHIBAFU-FORWARD -o br-db -j DROP",
            ]
        );
    }

    #[test]
    fn ports_are_added_and_deleted_by_the_same_spec() {
        let mut local = web();
        local.host_ip = Ipv4Addr::LOCALHOST;
        let add = render_rules('A', &[port_rule(&local)]);
        assert_eq!(add, "*nat\n-A SHIBAFU-DNAT -d 127.0.0.1/32 -p tcp -m tcp --dport 30001 -j DNAT --to-destination 172.20.0.2:80\nCOMMIT\n");
        assert_eq!(render_rules('D', &[port_rule(&local)]), add.replace("-A ", "-D "));
    }
}
