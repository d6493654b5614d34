//! Typed queries on networks, address leases and published ports. Handing out an address or a
//! port is one IMMEDIATE transaction, so two `run`s never get the same one.

use rusqlite::{params, OptionalExtension};

use super::{now, Db, Result, StateError};

/// A network as recorded.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NetworkRow {
    /// Its name.
    pub name: String,
    /// The Linux bridge.
    pub bridge: String,
    /// The subnet (CIDR).
    pub subnet: String,
    /// The bridge's address.
    pub gateway: String,
    /// No way out: no NAT, nothing forwarded elsewhere (`network create --internal`).
    pub internal: bool,
    /// When it was made (RFC 3339; empty for the default network).
    pub created_at: String,
}

/// One container's address on one network.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LeaseRow {
    /// The network.
    pub network: String,
    /// The address.
    pub address: String,
    /// The container.
    pub container_id: String,
    /// The interface inside (`eth0`).
    pub interface: String,
    /// The host end of its veth pair.
    pub host_veth: String,
}

/// A lease with its container's name: what `dns serve` answers from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedLease {
    /// The network.
    pub network: String,
    /// The address.
    pub address: String,
    /// The container's ID (64 hex digits).
    pub container_id: String,
    /// The container's name.
    pub name: String,
    /// Its host name.
    pub hostname: String,
    /// Its network aliases.
    pub aliases: Vec<String>,
}

/// One published port.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PortRow {
    /// The container.
    pub container_id: String,
    /// The host address (`0.0.0.0`: all).
    pub host_ip: String,
    /// The host port (0 when asking for a dynamic one).
    pub host_port: u16,
    /// The container's address.
    pub container_ip: String,
    /// The port inside.
    pub container_port: u16,
    /// `tcp` or `udp`.
    pub protocol: String,
}

fn network_row(r: &rusqlite::Row) -> rusqlite::Result<NetworkRow> {
    Ok(NetworkRow { name: r.get(0)?, bridge: r.get(1)?, subnet: r.get(2)?, gateway: r.get(3)?, internal: r.get(4)?, created_at: r.get(5)? })
}

fn lease_row(r: &rusqlite::Row) -> rusqlite::Result<LeaseRow> {
    Ok(LeaseRow { network: r.get(0)?, address: r.get(1)?, container_id: r.get(2)?, interface: r.get(3)?, host_veth: r.get(4)? })
}

fn port_row(r: &rusqlite::Row) -> rusqlite::Result<PortRow> {
    Ok(PortRow { container_id: r.get(0)?, host_ip: r.get(1)?, host_port: r.get(2)?, container_ip: r.get(3)?, container_port: r.get(4)?, protocol: r.get(5)? })
}

const NETWORKS: &str = "SELECT name, bridge, subnet, gateway, internal, created_at FROM networks";
const LEASES: &str = "SELECT network, address, container_id, interface, host_veth FROM leases";
const PORTS: &str = "SELECT container_id, host_ip, host_port, container_ip, container_port, protocol FROM ports";

/// The key under `settings` of the last dynamic port handed out.
const LAST_PORT: &str = "last_dynamic_port";

/// Whether two subnets (CIDR text) share an address.
fn subnets_overlap(a: &str, b: &str) -> bool {
    match (a.parse::<ipnet::Ipv4Net>(), b.parse::<ipnet::Ipv4Net>()) {
        (Ok(a), Ok(b)) => a.contains(&b.network()) || b.contains(&a.network()),
        _ => a == b,
    }
}

fn overlap(a: &str, b: &str) -> bool {
    a == b || a == "0.0.0.0" || b == "0.0.0.0"
}

impl Db {
    /// Every network, by name.
    pub fn networks(&self) -> Result<Vec<NetworkRow>> {
        self.query(&format!("{NETWORKS} ORDER BY name"), [], network_row)
    }

    /// One network.
    pub fn network(&self, name: &str) -> Result<Option<NetworkRow>> {
        Ok(self.conn.query_row(&format!("{NETWORKS} WHERE name = ?1"), [name], network_row).optional()?)
    }

    /// Records a new network; a taken name, bridge or subnet is refused.
    pub fn insert_network(&self, n: &NetworkRow) -> Result<()> {
        let tx = self.immediate()?;
        let clash = tx
            .query_row(&format!("{NETWORKS} WHERE name = ?1 OR bridge = ?2 OR subnet = ?3"), params![n.name, n.bridge, n.subnet], network_row)
            .optional()?;
        if let Some(c) = clash {
            let what = if c.name == n.name { format!("a network named {:?} exists already", n.name) } else { format!("network {:?} has that subnet or bridge already", c.name) };
            return Err(StateError::NetworkExists(what));
        }
        let all = tx.prepare(NETWORKS)?.query_map([], network_row)?.collect::<rusqlite::Result<Vec<_>>>()?;
        if let Some(c) = all.iter().find(|c| subnets_overlap(&c.subnet, &n.subnet)) {
            return Err(StateError::NetworkExists(format!("subnet {} overlaps network {:?}'s {}; choose one apart from it", n.subnet, c.name, c.subnet)));
        }
        tx.execute(
            "INSERT INTO networks (name, bridge, subnet, gateway, created_at, internal) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![n.name, n.bridge, n.subnet, n.gateway, now(), n.internal],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Forgets a network.
    pub fn delete_network(&self, name: &str) -> Result<()> {
        self.conn.execute("DELETE FROM networks WHERE name = ?1", [name])?;
        Ok(())
    }

    /// Gives a container an address on a network: `pick` chooses one given those in use.
    pub fn lease(&self, lease: &LeaseRow, pick: impl FnOnce(&[String]) -> Option<String>) -> Result<String> {
        let tx = self.immediate()?;
        let used: Vec<String> = self.query("SELECT address FROM leases WHERE network = ?1", [&lease.network], |r| r.get(0))?;
        let address = pick(&used).ok_or_else(|| StateError::NetworkFull(lease.network.clone()))?;
        tx.execute(
            "INSERT INTO leases VALUES (?1, ?2, ?3, ?4, ?5)",
            params![lease.network, address, lease.container_id, lease.interface, lease.host_veth],
        )?;
        tx.commit()?;
        Ok(address)
    }

    /// A container's leases, eth0 first.
    pub fn leases_of(&self, container_id: &str) -> Result<Vec<LeaseRow>> {
        self.query(&format!("{LEASES} WHERE container_id = ?1 ORDER BY interface"), [container_id], lease_row)
    }

    /// Every lease.
    pub fn leases(&self) -> Result<Vec<LeaseRow>> {
        self.query(&format!("{LEASES} ORDER BY network, address"), [], lease_row)
    }

    /// Every lease on one network.
    pub fn leases_on(&self, network: &str) -> Result<Vec<LeaseRow>> {
        self.query(&format!("{LEASES} WHERE network = ?1 ORDER BY address"), [network], lease_row)
    }

    /// Drops a container's lease on one network.
    pub fn release_lease(&self, container_id: &str, network: &str) -> Result<()> {
        self.conn.execute("DELETE FROM leases WHERE container_id = ?1 AND network = ?2", [container_id, network])?;
        Ok(())
    }

    /// Every lease with its container's name; a container's leases in interface order (eth0
    /// first), so its first network comes first.
    pub fn named_leases(&self) -> Result<Vec<NamedLease>> {
        self.query(
            "SELECT l.network, l.address, l.container_id, c.name, c.hostname, c.aliases FROM leases l JOIN containers c ON c.id = l.container_id ORDER BY c.name, length(l.interface), l.interface",
            [],
            |r| {
                let aliases: String = r.get(5)?;
                Ok(NamedLease { network: r.get(0)?, address: r.get(1)?, container_id: r.get(2)?, name: r.get(3)?, hostname: r.get(4)?, aliases: serde_json::from_str(&aliases).unwrap_or_default() })
            },
        )
    }

    /// Drops a container's leases.
    pub fn release_leases(&self, container_id: &str) -> Result<()> {
        self.conn.execute("DELETE FROM leases WHERE container_id = ?1", [container_id])?;
        Ok(())
    }

    /// Records a container's published ports. A host port of 0 asks for a dynamic one:
    /// `pick(last, taken)` chooses it, given the last handed out. A port another container
    /// publishes on an overlapping address is refused.
    pub fn publish(&self, wanted: &[PortRow], mut pick: impl FnMut(u16, &mut dyn FnMut(u16) -> bool) -> Option<u16>, range: (u16, u16)) -> Result<Vec<PortRow>> {
        let tx = self.immediate()?;
        let mut taken: Vec<PortRow> = self.query(PORTS, [], port_row)?;
        let mut last: u16 = tx.query_row("SELECT value FROM settings WHERE key = ?1", [LAST_PORT], |r| r.get::<_, String>(0)).optional()?.and_then(|v| v.parse().ok()).unwrap_or(range.0);
        let mut made = Vec::new();
        for want in wanted {
            let mut row = want.clone();
            let clashes = |port: u16, taken: &[PortRow]| taken.iter().find(|t| t.protocol == want.protocol && t.host_port == port && overlap(&t.host_ip, &want.host_ip)).cloned();
            if row.host_port == 0 {
                row.host_port = pick(last, &mut |p| clashes(p, &taken).is_some()).ok_or(StateError::NoFreePort(range.0, range.1))?;
                last = row.host_port;
            } else if let Some(holder) = clashes(row.host_port, &taken) {
                let name: String = tx.query_row("SELECT name FROM containers WHERE id = ?1", [&holder.container_id], |r| r.get(0)).optional()?.unwrap_or_else(|| holder.container_id[..12.min(holder.container_id.len())].to_string());
                return Err(StateError::PortTaken(format!("{}/{}", row.host_port, row.protocol), name));
            }
            tx.execute(
                "INSERT INTO ports VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![row.container_id, row.host_ip, row.host_port, row.container_ip, row.container_port, row.protocol],
            )?;
            taken.push(row.clone());
            made.push(row);
        }
        tx.execute("INSERT OR REPLACE INTO settings VALUES (?1, ?2)", params![LAST_PORT, last.to_string()])?;
        tx.commit()?;
        Ok(made)
    }

    /// A container's published ports.
    pub fn ports_of(&self, container_id: &str) -> Result<Vec<PortRow>> {
        self.query(&format!("{PORTS} WHERE container_id = ?1 ORDER BY rowid"), [container_id], port_row)
    }

    /// Every published port.
    pub fn ports(&self) -> Result<Vec<PortRow>> {
        self.query(&format!("{PORTS} ORDER BY rowid"), [], port_row)
    }

    /// Drops a container's published ports.
    pub fn unpublish(&self, container_id: &str) -> Result<()> {
        self.conn.execute("DELETE FROM ports WHERE container_id = ?1", [container_id])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(id: &str) -> LeaseRow {
        LeaseRow { network: "bridge".into(), address: String::new(), container_id: id.into(), interface: "eth0".into(), host_veth: format!("veth{id}") }
    }

    fn port(id: &str, ip: &str, host: u16) -> PortRow {
        PortRow { container_id: id.into(), host_ip: ip.into(), host_port: host, container_ip: "172.20.0.2".into(), container_port: 80, protocol: "tcp".into() }
    }

    fn first_free(last: u16, taken: &mut dyn FnMut(u16) -> bool) -> Option<u16> {
        (last + 1..=32767).find(|p| !taken(*p))
    }

    #[test]
    fn the_default_network_exists_and_leases_are_unique() {
        let db = Db::in_memory().unwrap();
        assert_eq!(db.network("bridge").unwrap().unwrap().bridge, "ctr0");
        let pick = |used: &[String]| (2..255).map(|i| format!("172.20.0.{i}")).find(|a| !used.contains(a));
        assert_eq!(db.lease(&lease("a"), pick).unwrap(), "172.20.0.2");
        assert_eq!(db.lease(&lease("b"), pick).unwrap(), "172.20.0.3");
        assert!(db.lease(&lease("a"), pick).is_err(), "one lease per container and network");
        db.release_leases("a").unwrap();
        assert_eq!(db.lease(&lease("c"), pick).unwrap(), "172.20.0.2");
        assert!(matches!(db.lease(&lease("d"), |_| None), Err(StateError::NetworkFull(_))));
    }

    #[test]
    fn ports_are_handed_out_in_turn_and_clashes_refused() {
        let db = Db::in_memory().unwrap();
        let made = db.publish(&[port("a", "0.0.0.0", 0), port("a", "0.0.0.0", 8080)], first_free, (30000, 32767)).unwrap();
        assert_eq!(made.iter().map(|p| p.host_port).collect::<Vec<_>>(), vec![30001, 8080]);
        let err = db.publish(&[port("b", "127.0.0.1", 8080)], first_free, (30000, 32767)).unwrap_err();
        assert!(matches!(err, StateError::PortTaken(..)), "{err}");
        assert!(db.ports_of("b").unwrap().is_empty(), "a refused publish records nothing");
        db.unpublish("a").unwrap();
        assert_eq!(db.publish(&[port("b", "0.0.0.0", 0)], first_free, (30000, 32767)).unwrap()[0].host_port, 30002);
    }

    #[test]
    fn named_leases_carry_the_container_name_first_network_first() {
        let db = Db::in_memory().unwrap();
        let net = NetworkRow { name: "backend".into(), bridge: "br-backend".into(), subnet: "172.22.0.0/24".into(), gateway: "172.22.0.1".into(), internal: false, created_at: String::new() };
        db.insert_network(&net).unwrap();
        let id = "a".repeat(64);
        let row = crate::state::containers::ContainerRow {
            id: id.clone(),
            name: "api".into(),
            image: "busybox".into(),
            command: vec![],
            layers: vec![],
            runtime: "shibafu".into(),
            created_at: now(),
            state: "running".into(),
            monitor_pid: None,
            monitor_start: None,
            exit_code: None,
            finished_at: None,
            network: "backend,bridge".into(),
            hostname: String::new(),
            aliases: Vec::new(),
            ..Default::default()
        };
        db.insert_container(&row).unwrap();
        for (k, network) in ["backend", "bridge"].iter().enumerate().rev() {
            let lease = LeaseRow { network: network.to_string(), interface: format!("eth{k}"), host_veth: format!("veth{k}"), ..lease(&id) };
            db.lease(&lease, |_| Some(format!("172.2{}.0.2", 2 - 2 * k))).unwrap();
        }
        let leases = db.named_leases().unwrap();
        let got: Vec<(&str, &str, &str)> = leases.iter().map(|l| (l.name.as_str(), l.network.as_str(), l.address.as_str())).collect();
        assert_eq!(got, [("api", "backend", "172.22.0.2"), ("api", "bridge", "172.20.0.2")]);
        db.lease(&lease("orphan"), |_| Some("172.20.0.9".into())).unwrap();
        assert_eq!(db.named_leases().unwrap().len(), 2, "a lease without a container has no name to answer");
    }

    #[test]
    fn networks_refuse_clashes() {
        let db = Db::in_memory().unwrap();
        let n = NetworkRow { name: "backend".into(), bridge: "br-backend".into(), subnet: "172.22.0.0/24".into(), gateway: "172.22.0.1".into(), internal: false, created_at: String::new() };
        db.insert_network(&n).unwrap();
        assert!(db.insert_network(&n).is_err());
        let same_subnet = NetworkRow { name: "other".into(), bridge: "br-other".into(), ..n.clone() };
        assert!(db.insert_network(&same_subnet).is_err());
        let wider = NetworkRow { name: "wide".into(), bridge: "br-wide".into(), subnet: "172.22.0.0/16".into(), ..n.clone() };
        let err = db.insert_network(&wider).unwrap_err().to_string();
        assert!(err.contains("overlaps network \"backend\"'s 172.22.0.0/24"), "{err}");
        let inside = NetworkRow { name: "in".into(), bridge: "br-in".into(), subnet: "172.20.0.128/25".into(), ..n.clone() };
        assert!(db.insert_network(&inside).unwrap_err().to_string().contains("\"bridge\""));
        let apart = NetworkRow { name: "apart".into(), bridge: "br-apart".into(), subnet: "172.23.0.0/24".into(), internal: true, ..n.clone() };
        db.insert_network(&apart).unwrap();
        assert!(db.network("apart").unwrap().unwrap().internal);
        db.delete_network("apart").unwrap();
        db.delete_network("backend").unwrap();
        assert_eq!(db.networks().unwrap().len(), 1);
    }
}
