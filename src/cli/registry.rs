//! `registry serve`.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Subcommand;

/// `registry ...`.
#[derive(Debug, Subcommand)]
pub enum RegistryCommand {
    /// Serve the OCI distribution API (`/v2/`) over the data root's blob store.
    Serve {
        /// Port to listen on.
        #[arg(long, default_value_t = 5000)]
        port: u16,
        /// Address to listen on.
        #[arg(long, default_value = "0.0.0.0")]
        address: IpAddr,
        /// A data root of its own for the registry (default: the shibafu root, so local
        /// images and the registry share their blobs).
        #[arg(long)]
        storage: Option<PathBuf>,
    },
}

/// Runs a `registry` command.
pub fn registry(root: &Path, cmd: RegistryCommand) -> Result<i32> {
    let RegistryCommand::Serve { port, address, storage } = cmd;
    crate::registry::serve(storage.as_deref().unwrap_or(root), SocketAddr::new(address, port))?;
    Ok(0)
}
