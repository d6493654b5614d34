//! `proxy serve`.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use clap::Subcommand;

use crate::proxy::{serve, ProxyOptions};

/// `proxy ...`.
#[derive(Debug, Subcommand)]
pub enum ProxyCommand {
    /// Serve HTTP, routing Host NAME.localhost (and NAME.DOMAIN) to container NAME.
    Serve {
        /// Port to listen on.
        #[arg(long, default_value_t = 80)]
        port: u16,
        /// Address to listen on.
        #[arg(long, default_value = "0.0.0.0")]
        address: IpAddr,
        /// A domain to route besides localhost (repeatable): APP.DOMAIN goes to container APP.
        #[arg(long = "domain")]
        domains: Vec<String>,
        #[command(flatten)]
        limits: super::limits::ConnectionLimits,
    },
}

/// Runs a `proxy` command.
pub fn proxy(root: &Path, cmd: ProxyCommand) -> Result<i32> {
    let ProxyCommand::Serve { port, address, domains, limits } = cmd;
    // Open once here so a bad root is an error now, not in the watcher.
    crate::engine::Engine::open(root)?;
    serve(ProxyOptions { root: root.to_path_buf(), listen: SocketAddr::new(address, port), domains, refresh: Duration::from_millis(100), limits: limits.limits()? })?;
    Ok(0)
}
