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
        /// Require basic authentication with the users of this htpasswd file (bcrypt).
        #[arg(long)]
        htpasswd: Option<PathBuf>,
        #[command(flatten)]
        limits: super::limits::ConnectionLimits,
    },
    /// Remove what no manifest refers to: repositories' blob links, then the blobs nothing
    /// (registry or local images) wants.
    Gc {
        /// Only say what would go.
        #[arg(long)]
        dry_run: bool,
        /// The registry's data root, if not the shibafu root.
        #[arg(long)]
        storage: Option<PathBuf>,
    },
}

/// Runs a `registry` command.
pub fn registry(root: &Path, cmd: RegistryCommand) -> Result<i32> {
    match cmd {
        RegistryCommand::Serve { port, address, storage, htpasswd, limits } => {
            crate::registry::serve(storage.as_deref().unwrap_or(root), SocketAddr::new(address, port), htpasswd.as_deref(), limits.limits()?)?;
        }
        RegistryCommand::Gc { dry_run, storage } => {
            for line in crate::registry::gc::collect(storage.as_deref().unwrap_or(root), dry_run)? {
                println!("{}{line}", if dry_run { "would remove " } else { "removed " });
            }
        }
    }
    Ok(0)
}
