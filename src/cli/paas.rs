//! `paas serve`.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use anyhow::Result;
use clap::Subcommand;

use crate::paas::{serve, PaasOptions};

/// `paas ...`.
#[derive(Debug, Subcommand)]
pub enum PaasCommand {
    /// Serve the deploy API (POST /api/deploy, GET /api/apps, ...): apps are built from their
    /// code, run on the network `platform`, and routed as APP.DOMAIN by `proxy serve --domain`.
    Serve {
        /// Port to listen on.
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// Address to listen on.
        #[arg(long, default_value = "0.0.0.0")]
        address: IpAddr,
        /// The domain apps answer under (APP.DOMAIN); give the proxy the same `--domain`.
        #[arg(long, default_value = "platform.local")]
        domain: String,
        /// The largest code archive a deploy takes (bytes, or with k, m, g).
        #[arg(long, default_value = "256m", value_parser = crate::storage::limits::parse_size)]
        max_upload: u64,
        /// The registry built images are pushed to, as REGISTRY/apps/APP:dep-N.
        #[arg(long, default_value = "localhost:5000")]
        registry: String,
        /// Time between health checks of each app's live version (e.g. 10s).
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        check_interval: std::time::Duration,
        /// Failed checks in a row before the live version is restarted.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
        check_retries: u32,
        #[command(flatten)]
        limits: super::limits::ConnectionLimits,
    },
}

/// Runs a `paas` command.
pub fn paas(root: &Path, cmd: PaasCommand) -> Result<i32> {
    let PaasCommand::Serve { port, address, domain, max_upload, registry, check_interval, check_retries, limits } = cmd;
    crate::network::check_name("domain", &domain, 253)?;
    if crate::image::distribution::RemoteRef::parse(&format!("{registry}/apps/a:dep-1")).is_none() {
        anyhow::bail!("--registry {registry:?} is not a registry host: give HOST[:PORT], as localhost:5000");
    }
    // Open once here so a bad root is an error now, not in the worker.
    crate::engine::Engine::open(root)?;
    serve(PaasOptions { root: root.to_path_buf(), listen: SocketAddr::new(address, port), domain, max_upload, limits: limits.limits()?, keep: crate::paas::keeper::KeepOptions { interval: check_interval, retries: check_retries }, registry })?;
    Ok(0)
}
