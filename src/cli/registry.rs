//! `registry serve`.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use clap::Subcommand;

use crate::http_server::Limits;

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
        limits: ConnectionLimits,
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

/// How `serve` bounds its connections (what anyone who can connect could otherwise exhaust).
#[derive(Debug, clap::Args)]
pub struct ConnectionLimits {
    /// The most connections served at once [default: 4096, or fewer if the open-files limit,
    /// raised to its hard limit at start, leaves room for fewer: each connection may hold a file
    /// besides its socket, and 64 descriptors are kept]. At the limit, a new connection takes
    /// the place of the one that has waited longest for a request; when all are busy with
    /// requests, it is answered 503 and closed.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connections: Option<u64>,
    /// Seconds a client has to send a request's line and headers, counted from the connection
    /// or from the request's first byte; a slower one is disconnected (slowloris). Bodies are
    /// not timed: a slow upload that keeps moving goes on.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
    pub header_timeout: u64,
    /// Seconds a kept-alive connection may wait for its next request, or a request's bytes may
    /// stand still both ways (a body that stopped coming, a response nobody reads), before the
    /// connection is closed (longer than the 90 s Go clients keep idle connections, so they
    /// close first).
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_timeout: u64,
}

impl ConnectionLimits {
    /// The limits for this process (raises its open-files limit; see `Limits::for_this_process`).
    pub fn limits(&self) -> Result<Limits> {
        let max = self.max_connections.map(|n| usize::try_from(n).unwrap_or(usize::MAX));
        Ok(Limits::for_this_process(max, Duration::from_secs(self.header_timeout), Duration::from_secs(self.idle_timeout))?)
    }
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
