//! `dns serve`.

use std::path::Path;

use anyhow::Result;
use clap::Subcommand;

/// `dns ...`.
#[derive(Debug, Subcommand)]
pub enum DnsCommand {
    /// Answer NAME.NET.local (and NAME, NAME.NET, the short ID) for containers on each network's
    /// gateway, port 53; forward other names to the servers in /etc/resolv.conf.
    Serve,
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
        DnsCommand::Serve => crate::dns::serve(root, Path::new("/etc/resolv.conf"))?,
        DnsCommand::Trace { container, name } => {
            for line in crate::dns::trace::trace(root, &container, &name)? {
                println!("{line}");
            }
        }
    }
    Ok(0)
}
