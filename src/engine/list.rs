//! `list` / `ps`: containers with their live status.

use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::restart::show_duration;
use super::{Engine, Result};
use crate::state::containers::ContainerRow;
use crate::network::ports::PortMap;

/// One line of `list`.
#[derive(Debug, Clone, Serialize)]
pub struct ContainerSummary {
    /// Full ID.
    pub id: String,
    /// Name.
    pub name: String,
    /// Image reference.
    pub image: String,
    /// Command.
    pub command: Vec<String>,
    /// Creation time.
    pub created: String,
    /// `running`, `restarting`, `exited` or `created`.
    pub state: String,
    /// Docker-style status text.
    pub status: String,
    /// Exit code once exited (or between restarts).
    pub exit_code: Option<i32>,
    /// `no`, `on-failure[:N]`, `always` or `unless-stopped`.
    pub restart_policy: String,
    /// Restarts by its monitor since it was last started by hand.
    pub restart_count: u32,
    /// The back-off before the next restart, while restarting.
    pub restart_backoff_ms: u64,
    /// `starting`, `healthy` or `unhealthy`, with a health check.
    pub health: Option<String>,
    /// Its networks (`bridge`, `none`, `host`, or names).
    pub network: String,
    /// Its addresses, one per network.
    pub addresses: Vec<String>,
    /// Its published ports, as `0.0.0.0:30001->80/tcp`.
    #[serde(serialize_with = "as_text")]
    pub ports: Vec<PortMap>,
}

fn as_text<S: serde::Serializer>(ports: &[PortMap], s: S) -> std::result::Result<S::Ok, S::Error> {
    s.collect_seq(ports.iter().map(|p| p.to_string()))
}

impl Engine {
    /// Containers (only running ones unless `all`), oldest first.
    pub fn list(&self, all: bool) -> Result<Vec<ContainerSummary>> {
        let mut out = Vec::new();
        for c in self.db.containers()? {
            let (state, status) = self.status(&c);
            if !all && state != "running" && state != "restarting" {
                continue;
            }
            let addresses = self.db.leases_of(&c.id)?.into_iter().map(|l| l.address).collect();
            let ports = self.db.ports_of(&c.id)?.iter().map(super::network::port_map).collect::<Result<_>>()?;
            out.push(ContainerSummary {
                id: c.id,
                name: c.name,
                image: c.image,
                command: c.command,
                created: c.created_at,
                state: state.into(),
                status,
                exit_code: c.exit_code,
                restart_policy: c.restart_policy,
                restart_count: c.restart_count,
                restart_backoff_ms: c.restart_backoff_ms,
                health: c.health.map(|h| h.status),
                addresses,
                ports,
                network: c.network,
            });
        }
        Ok(out)
    }

    /// A container's state and Docker-style status: `Up 5 seconds (healthy)`, `Restarting (1)
    /// 2 seconds ago`, `Exited (0) 3 minutes ago`; with restarts, how many (and the back-off).
    pub fn status(&self, c: &ContainerRow) -> (&'static str, String) {
        let active = self.is_active(c);
        let exited_ago = || ago(c.finished_at.as_deref().unwrap_or(&c.created_at));
        let (state, mut status) = match c.state.as_str() {
            "running" if active => ("running", format!("Up {}{}", ago(c.started_at.as_deref().unwrap_or(&c.created_at)), health_note(c))),
            "restarting" if active => ("restarting", format!("Restarting ({}) {} ago", c.exit_code.unwrap_or(-1), exited_ago())),
            "running" | "restarting" => ("exited", "Exited (unknown): its monitor is gone".to_string()),
            "exited" => ("exited", format!("Exited ({}) {} ago", c.exit_code.unwrap_or(-1), exited_ago())),
            _ => ("created", "Created".to_string()),
        };
        match (state, c.restart_count) {
            ("restarting", n) => status.push_str(&format!(", restart {n} in {}", show_duration(Duration::from_millis(c.restart_backoff_ms)))),
            (_, 0) => {}
            (_, 1) => status.push_str(", restarted once"),
            (_, n) => status.push_str(&format!(", restarted {n} times")),
        }
        (state, status)
    }

    /// A container's published ports.
    pub fn ports(&self, name_or_id: &str) -> Result<Vec<PortMap>> {
        let c = self.find(name_or_id)?;
        self.db.ports_of(&c.id)?.iter().map(super::network::port_map).collect()
    }
}

/// ` (healthy)`, ` (health: starting)`, ` (unhealthy)`, as Docker's status shows health.
fn health_note(c: &ContainerRow) -> String {
    match c.health.as_ref().map(|h| h.status.as_str()) {
        None => String::new(),
        Some("starting") => " (health: starting)".into(),
        Some(other) => format!(" ({other})"),
    }
}

/// "3 seconds", "5 minutes", ... since an RFC 3339 time.
pub fn ago(time: &str) -> String {
    let Ok(then) = humantime::parse_rfc3339_weak(time) else { return "a while".into() };
    let secs = SystemTime::now().duration_since(then).unwrap_or(Duration::ZERO).as_secs();
    let (n, unit) = match secs {
        0..60 => (secs, "second"),
        60..3600 => (secs / 60, "minute"),
        3600..86400 => (secs / 3600, "hour"),
        _ => (secs / 86400, "day"),
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}
