//! What the reverse proxy routes to: every running container with an address, by name, and
//! the recorded host routes (an app's name to the container that serves it).

use std::net::SocketAddrV4;

use super::{Engine, Result};
use crate::state::containers::ContainerRow;

/// One route: a container's name and where it listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The container's name (`web` answers for `web.localhost`).
    pub name: String,
    /// Its first address, and its first published TCP port inside (else 80).
    pub backend: SocketAddrV4,
}

impl Engine {
    /// The routes of the running containers.
    pub fn routes(&self) -> Result<Vec<Route>> {
        let mut out = Vec::new();
        let containers = self.db.containers()?;
        for c in &containers {
            if !self.is_running(c) {
                continue;
            }
            let Some(lease) = self.db.leases_of(&c.id)?.into_iter().next() else { continue };
            let Ok(ip) = lease.address.parse() else { continue };
            let port = self.db.ports_of(&c.id)?.into_iter().find(|p| p.protocol == "tcp").map_or(80, |p| p.container_port);
            out.push(Route { name: c.name.clone(), backend: SocketAddrV4::new(ip, port) });
        }
        self.host_routes(&containers, &mut out)?;
        Ok(out)
    }

    /// Adds the recorded host routes (the PaaS's: an app's name to the container of its live
    /// deployment) whose container runs; one beats a container of the same name.
    fn host_routes(&self, containers: &[ContainerRow], out: &mut Vec<Route>) -> Result<()> {
        for route in self.db.routes()? {
            let Some(c) = containers.iter().find(|c| c.id == route.container_id) else { continue };
            if !self.is_running(c) {
                continue;
            }
            let Some(lease) = self.db.leases_of(&c.id)?.into_iter().next() else { continue };
            let Ok(ip) = lease.address.parse() else { continue };
            out.retain(|r| r.name != route.name);
            out.push(Route { name: route.name, backend: SocketAddrV4::new(ip, route.port) });
        }
        Ok(())
    }

    /// A number that changes whenever another process commits to the state database.
    pub fn state_version(&self) -> Result<i64> {
        Ok(self.db.data_version()?)
    }
}
