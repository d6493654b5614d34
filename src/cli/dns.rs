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
}

/// Runs a `dns` command.
pub fn dns(root: &Path, cmd: DnsCommand) -> Result<i32> {
    let DnsCommand::Serve = cmd;
    crate::dns::serve(root, Path::new("/etc/resolv.conf"))?;
    Ok(0)
}
