//! `network`: create, ls, inspect, connect, disconnect, rm, up, prune.

use std::path::Path;

use anyhow::Result;
use clap::Subcommand;

use crate::engine::Engine;

/// `network ...`.
#[derive(Debug, Subcommand)]
pub enum NetworkCommand {
    /// Make a bridge network: NAME and a subnet such as 172.21.0.0/24.
    Create {
        /// No way out: no NAT, nothing forwarded elsewhere, no default route through it (a
        /// database network).
        #[arg(long)]
        internal: bool,
        /// The network's name.
        name: String,
        /// Its subnet (CIDR); the first address is the gateway.
        subnet: String,
    },
    /// Attach a running container to one more network (a new interface, eth1, eth2, ...).
    Connect {
        /// Network name.
        network: String,
        /// Container name or ID.
        container: String,
    },
    /// Detach a container from a network (its interface and address there go).
    Disconnect {
        /// Network name.
        network: String,
        /// Container name or ID.
        container: String,
    },
    /// Show networks as JSON (Podman's form): subnet, gateway, bridge, containers and addresses.
    Inspect {
        /// Network names.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// List networks.
    #[command(alias = "list")]
    Ls,
    /// Remove networks no container uses (the default `bridge` network cannot be removed).
    Rm {
        /// Network names.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Make a network's bridge and firewall rules now rather than on first use (the appliance
    /// does this for `bridge` at boot, so `ip link show ctr0` finds it).
    Up {
        /// Network name.
        #[arg(default_value = crate::network::DEFAULT_NETWORK)]
        name: String,
    },
    /// Remove the bridges, rules and user networks no container uses.
    Prune,
}

/// Runs a `network` command.
pub fn network(root: &Path, cmd: NetworkCommand) -> Result<i32> {
    let engine = Engine::open(root)?;
    match cmd {
        NetworkCommand::Create { internal, name, subnet } => {
            let net = engine.create_network(&name, &subnet, internal)?;
            println!("{}", net.name);
        }
        NetworkCommand::Connect { network, container } => {
            let (interface, address) = engine.connect_network(&network, &container)?;
            println!("{container} {interface} {address}");
        }
        NetworkCommand::Disconnect { network, container } => {
            engine.disconnect_network(&network, &container)?;
            println!("{container}");
        }
        NetworkCommand::Inspect { names } => {
            let shown = names.iter().map(|n| engine.inspect_network(n)).collect::<crate::engine::Result<Vec<_>>>()?;
            println!("{}", serde_json::to_string_pretty(&shown)?);
        }
        NetworkCommand::Ls => {
            println!("{:<16}  {:<16}  {:<18}  {:<15}  CONTAINERS", "NAME", "BRIDGE", "SUBNET", "GATEWAY");
            for (net, users) in engine.network_list()? {
                println!("{:<16}  {:<16}  {:<18}  {:<15}  {users}", net.name, net.bridge, net.subnet.to_string(), net.gateway.to_string());
            }
        }
        NetworkCommand::Rm { names } => {
            for n in names {
                engine.remove_network(&n)?;
                println!("{n}");
            }
        }
        NetworkCommand::Up { name } => {
            let net = engine.network_named(&name)?;
            engine.ensure_network(&net)?;
            println!("{} {} {}/{}", net.name, net.bridge, net.gateway, net.subnet.prefix_len());
        }
        NetworkCommand::Prune => {
            for n in engine.prune_networks()? {
                println!("{n}");
            }
        }
    }
    Ok(0)
}
