//! `dns serve`.

use std::path::Path;

use anyhow::Result;
use clap::Subcommand;

/// `dns ...`.
#[derive(Debug, Subcommand)]
pub enum DnsCommand {
    /// Answer NAME.NET.local (and NAME, NAME.NET, the short ID) for containers on each network's
    /// gateway, port 53; forward other names to the servers in /etc/resolv.conf.
    Serve {
        /// A domain the reverse proxy serves (repeatable): APP.DOMAIN is answered with the
        /// gateway asked, where `proxy serve` listens (the appliance gives platform.local).
        #[arg(long = "proxy-domain", value_name = "DOMAIN")]
        proxy_domains: Vec<String>,
        /// Listen for the host on this address too (the appliance gives 127.0.0.53 and names
        /// it first in /etc/resolv.conf; containers never copy a loopback server).
        #[arg(long, value_name = "IPV4")]
        host_address: Option<std::net::Ipv4Addr>,
    },
    /// How a lookup of NAME from CONTAINER goes: the search/ndots expansion query by query,
    /// which network's table answered or why isolation hid the name, what the upstream servers
    /// said, the TTL, and the `dig` that shows the same.
    Trace {
        /// Container name or ID.
        container: String,
        /// The name, as the container's programs would ask it.
        name: String,
    },
}

/// Runs a `dns` command.
pub fn dns(root: &Path, cmd: DnsCommand) -> Result<i32> {
    match cmd {
        DnsCommand::Serve { proxy_domains, host_address } => {
            for d in &proxy_domains {
                crate::network::check_name("proxy domain", d, 253)?;
            }
            crate::dns::serve(root, Path::new("/etc/resolv.conf"), proxy_domains, host_address)?
        }
        DnsCommand::Trace { container, name } => {
            for line in crate::dns::trace::trace(root, &container, &name)? {
                println!("{line}");
            }
        }
    }
    Ok(0)
}
