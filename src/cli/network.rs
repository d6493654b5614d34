//! `network`: create, ls, rm, prune.

use std::path::Path;

use anyhow::Result;
use clap::Subcommand;

use crate::engine::Engine;

/// `network ...`.
#[derive(Debug, Subcommand)]
pub enum NetworkCommand {
    /// Make a bridge network: NAME and a subnet such as 172.21.0.0/24.
    Create {
        /// The network's name.
        name: String,
        /// Its subnet (CIDR); the first address is the gateway.
        subnet: String,
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
        NetworkCommand::Create { name, subnet } => {
            let net = engine.create_network(&name, &subnet)?;
            println!("{}", net.name);
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
