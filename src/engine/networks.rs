//! `network create | ls | rm | prune`: the networks themselves, as opposed to one container's
//! place on them (network.rs).

use sha2::{Digest, Sha256};

use ipnet::Ipv4Net;

use super::network::parse_network;
use super::{Engine, EngineError, Result};
use crate::network::{check_name, ipam, lock, netlink, Network, DEFAULT_NETWORK};
use crate::state::network::NetworkRow;
use crate::state::StateError;

/// Where `run --network NAME` takes the subnet of a network it makes: the /24s of
/// 10.89.0.0/16, lowest first (Podman's pool), skipping any that overlaps another network or a
/// route of the host's.
pub const POOL: &str = "10.89.0.0/16";

/// The prefix length of the networks made from the pool.
pub const POOL_PREFIX: u8 = 24;

/// The first subnet of the pool that overlaps none of `taken`.
pub fn free_subnet(taken: &[Ipv4Net]) -> Option<Ipv4Net> {
    let pool: Ipv4Net = POOL.parse().expect("the pool parses");
    let mut candidates = pool.subnets(POOL_PREFIX).expect("the prefix fits the pool");
    candidates.find(|c| !taken.iter().any(|t| t.contains(&c.network()) || c.contains(&t.network())))
}

/// The bridge of a network made by `network create`: `br-NAME`, or a digest of a long name.
fn bridge_name(name: &str) -> String {
    if name.len() <= 12 {
        format!("br-{name}")
    } else {
        format!("br-{}", &format!("{:x}", Sha256::digest(name.as_bytes()))[..12])
    }
}

/// A network's ID, as `network inspect` shows it: the SHA-256 of its name.
pub fn network_id(name: &str) -> String {
    format!("{:x}", Sha256::digest(name.as_bytes()))
}

impl Engine {
    /// Records a new bridge network; its bridge is made when a container first joins it. An
    /// `internal` one has no way out. A subnet that overlaps another network's, or a route of
    /// the host's, is refused.
    pub fn create_network(&self, name: &str, subnet: &str, internal: bool) -> Result<Network> {
        check_name("network name", name, 32)?;
        if ["none", "host"].contains(&name) {
            return Err(EngineError::Invalid(format!("{name:?} is a network mode, not a name a network can take")));
        }
        let subnet = ipam::parse_subnet(subnet)?;
        let ours: Vec<String> = self.db.networks()?.into_iter().map(|n| n.bridge).collect();
        if let Some((dest, dev)) = netlink::routes()?.into_iter().find(|(dest, dev)| !ours.contains(dev) && (dest.contains(&subnet.network()) || subnet.contains(&dest.network()))) {
            return Err(EngineError::Invalid(format!("subnet {subnet} covers the host's route to {dest} (dev {dev}); choose one apart from it")));
        }
        let row = NetworkRow {
            name: name.into(),
            bridge: bridge_name(name),
            subnet: subnet.to_string(),
            gateway: ipam::gateway_of(subnet).to_string(),
            internal,
            created_at: String::new(),
        };
        self.db.insert_network(&row)?;
        crate::fault::point("network-create:recorded");
        parse_network(&row)
    }

    /// Makes network `name` from the pool unless it exists; returns it when this call made it
    /// (a network another run made meanwhile is used, not made again).
    pub fn create_network_if_missing(&self, name: &str) -> Result<Option<Network>> {
        if self.db.network(name)?.is_some() {
            return Ok(None);
        }
        self.create_network_from_pool(name)
    }

    /// Makes network `name` on the pool's first free subnet; none when a racing call made it
    /// first.
    fn create_network_from_pool(&self, name: &str) -> Result<Option<Network>> {
        // Two runs may pick the same subnet at once: the one that loses tries again.
        for _ in 0..8 {
            let ours: Vec<String> = self.db.networks()?.into_iter().map(|n| n.bridge).collect();
            let mut taken: Vec<Ipv4Net> = self.db.networks()?.iter().filter_map(|n| n.subnet.parse().ok()).collect();
            taken.extend(netlink::routes()?.into_iter().filter(|(_, dev)| !ours.contains(dev)).map(|(dest, _)| dest));
            let subnet = free_subnet(&taken).ok_or_else(|| EngineError::Invalid(format!("no free /{POOL_PREFIX} left in {POOL} for network {name}; make it with a subnet of your own: shibafu network create {name} CIDR")))?;
            match self.create_network(name, &subnet.to_string(), false) {
                Ok(net) => return Ok(Some(net)),
                Err(EngineError::State(StateError::NetworkExists(_))) if self.db.network(name)?.is_some() => return Ok(None),
                Err(EngineError::State(StateError::NetworkExists(_))) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(EngineError::Invalid(format!("could not make network {name}: other runs kept taking the free subnets; try again")))
    }

    /// A network as `network inspect` shows it (Podman's JSON): subnet, gateway, bridge, and
    /// the containers on it with their addresses.
    pub fn inspect_network(&self, name: &str) -> Result<serde_json::Value> {
        let row = self.db.network(name)?.ok_or_else(|| EngineError::Invalid(format!("no such network: {name} (see `shibafu network ls`)")))?;
        let net = parse_network(&row)?;
        let mut containers = serde_json::Map::new();
        for lease in self.db.leases_on(name)? {
            let cname = self.db.containers_by_id(&lease.container_id)?.into_iter().next().map(|c| c.name).unwrap_or_default();
            let ipnet = format!("{}/{}", lease.address, net.subnet.prefix_len());
            containers.insert(
                lease.container_id.clone(),
                serde_json::json!({"name": cname, "interfaces": {lease.interface: {"subnets": [{"ipnet": ipnet, "gateway": net.gateway.to_string()}]}}}),
            );
        }
        Ok(serde_json::json!({
            "name": net.name,
            "id": network_id(&net.name),
            "driver": "bridge",
            "network_interface": net.bridge,
            "created": row.created_at,
            "subnets": [{"subnet": net.subnet.to_string(), "gateway": net.gateway.to_string()}],
            "ipv6_enabled": false,
            "internal": net.internal,
            "dns_enabled": true,
            "ipam_options": {"driver": "host-local"},
            "containers": containers,
        }))
    }

    /// Every network with how many containers are on it.
    pub fn network_list(&self) -> Result<Vec<(Network, usize)>> {
        let mut out = Vec::new();
        for row in self.db.networks()? {
            let users = self.db.leases_on(&row.name)?.len();
            out.push((parse_network(&row)?, users));
        }
        Ok(out)
    }

    /// Removes a network no container is on: its bridge, its rules, its record.
    pub fn remove_network(&self, name: &str) -> Result<()> {
        let net = self.network_named(name)?;
        if name == DEFAULT_NETWORK {
            return Err(EngineError::Invalid("the default network `bridge` cannot be removed; `network prune` removes its bridge while unused".into()));
        }
        // Checked under the lock: a run connects under it too.
        let _lock = lock::take(&self.run_dir)?;
        let users = self.db.leases_on(name)?;
        if let Some(first) = users.first() {
            return Err(EngineError::Invalid(format!("network {name} is in use by {} container(s), e.g. {}", users.len(), &first.container_id[..12.min(first.container_id.len())])));
        }
        self.drop_bridge(&net)?;
        self.sync_firewall()?;
        crate::fault::point("network-rm:firewall-synced");
        self.db.delete_network(name)?;
        Ok(())
    }

    /// Removes the bridges (and rules) of unused networks and the unused networks users made;
    /// returns what it removed.
    pub fn prune_networks(&self) -> Result<Vec<String>> {
        let _lock = lock::take(&self.run_dir)?;
        let mut removed = Vec::new();
        for row in self.db.networks()? {
            if !self.db.leases_on(&row.name)?.is_empty() {
                continue;
            }
            let net = parse_network(&row)?;
            let had_bridge = self.drop_bridge(&net)?;
            if row.name != DEFAULT_NETWORK {
                self.db.delete_network(&row.name)?;
                removed.push(row.name);
            } else if had_bridge {
                removed.push(format!("{} (bridge {} removed)", row.name, row.bridge));
            }
        }
        // Once for all the bridges that went.
        self.sync_firewall()?;
        Ok(removed)
    }

    /// Deletes a network's bridge; true when there was one. The caller rewrites the firewall
    /// afterwards, whether or not there was: a `network rm` killed between the two left rules
    /// for a bridge that no longer exists. Call with the network lock held.
    fn drop_bridge(&self, net: &Network) -> Result<bool> {
        let had = netlink::link_exists(&net.bridge)?;
        if had {
            netlink::delete_link(&net.bridge)?;
            crate::fault::point("network-rm:bridge-deleted");
        }
        Ok(had)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pool_hands_out_24s_upward_around_what_is_taken() {
        let net = |s: &str| s.parse::<Ipv4Net>().unwrap();
        assert_eq!(free_subnet(&[]), Some(net("10.89.0.0/24")));
        assert_eq!(free_subnet(&[net("10.89.0.0/24"), net("172.20.0.0/24")]), Some(net("10.89.1.0/24")));
        assert_eq!(free_subnet(&[net("10.89.0.128/25"), net("10.89.1.0/24")]), Some(net("10.89.2.0/24")), "a partial overlap counts");
        assert_eq!(free_subnet(&[net("10.89.0.0/23")]), Some(net("10.89.2.0/24")), "a wider route covers two");
        assert_eq!(free_subnet(&[net("10.0.0.0/8")]), None, "a route over the whole pool leaves nothing");
    }

    #[test]
    fn bridges_are_named_within_the_kernel_limit() {
        assert_eq!(bridge_name("backend"), "br-backend");
        let long = bridge_name("a-rather-long-network-name");
        assert_eq!(long.len(), 15);
        assert_ne!(long, bridge_name("a-rather-long-network-name2"));
    }
}
