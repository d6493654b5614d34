//! `network create | ls | rm | prune`: the networks themselves, as opposed to one container's
//! place on them (network.rs).

use sha2::{Digest, Sha256};

use super::network::parse_network;
use super::{Engine, EngineError, Result};
use crate::network::{check_name, ipam, lock, netlink, Network, DEFAULT_NETWORK};
use crate::state::network::NetworkRow;

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
        parse_network(&row)
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
        Ok(removed)
    }

    /// Deletes a network's bridge and rewrites the firewall without it; true when there was
    /// one. Call with the network lock held.
    /// The rules are rewritten even when the bridge is gone already: a `network rm` killed
    /// between the two left rules for a bridge that no longer exists.
    fn drop_bridge(&self, net: &Network) -> Result<bool> {
        let had = netlink::link_exists(&net.bridge)?;
        if had {
            netlink::delete_link(&net.bridge)?;
            crate::fault::point("network-rm:bridge-deleted");
        }
        self.sync_firewall()?;
        Ok(had)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bridges_are_named_within_the_kernel_limit() {
        assert_eq!(bridge_name("backend"), "br-backend");
        let long = bridge_name("a-rather-long-network-name");
        assert_eq!(long.len(), 15);
        assert_ne!(long, bridge_name("a-rather-long-network-name2"));
    }
}
