//! The connection limits of the `serve` commands that anyone on the network may connect to.

use std::time::Duration;

use anyhow::Result;

use crate::http_server::Limits;

/// How a `serve` command bounds its connections (what anyone who can connect could otherwise
/// exhaust); see `crate::http_server`.
#[derive(Debug, clap::Args)]
pub struct ConnectionLimits {
    /// The most connections served at once [default: 4096, or fewer if the open-files limit,
    /// raised to its hard limit at start, leaves room for fewer: each connection may hold a file
    /// or an upstream connection besides its socket, and 64 descriptors are kept]. At the limit,
    /// a new connection takes the place of the one that has waited longest for a request; when
    /// all are busy with requests, it is answered 503 and closed. The proxy shares it out
    /// evenly among its workers (one per CPU).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connections: Option<u64>,
    /// Seconds a client has to send a request's line and headers, counted from the connection
    /// or from the request's first byte; a slower one is disconnected (slowloris). Bodies are
    /// not timed: a slow upload that keeps moving goes on.
    #[arg(long, value_name = "SECONDS", default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
    pub header_timeout: u64,
    /// Seconds a kept-alive connection may wait for its next request, or a request's bytes may
    /// stand still both ways (a body that stopped coming, a response nobody reads or nobody
    /// sends), before the connection is closed (longer than the 90 s Go clients keep idle
    /// connections, so they close first).
    #[arg(long, value_name = "SECONDS", default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_timeout: u64,
}

impl ConnectionLimits {
    /// The limits for this process (raises its open-files limit; see `Limits::for_this_process`).
    pub fn limits(&self) -> Result<Limits> {
        let max = self.max_connections.map(|n| usize::try_from(n).unwrap_or(usize::MAX));
        Ok(Limits::for_this_process(max, Duration::from_secs(self.header_timeout), Duration::from_secs(self.idle_timeout))?)
    }
}
