//! The route table: host name -> backend, rebuilt when the state database changes.

use std::collections::HashMap;
use std::net::SocketAddrV4;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::engine::routes::Route;
use crate::engine::Engine;

/// Host names to backends, shared by every connection.
#[derive(Debug, Default)]
pub struct RouteTable {
    by_host: RwLock<HashMap<String, Arc<Backend>>>,
    domains: Vec<String>,
}

/// Where a host's requests go: made once per change of the routes, not per request.
#[derive(Debug)]
pub struct Backend {
    /// The container's name.
    pub name: String,
    /// Its address and port.
    pub addr: SocketAddrV4,
    /// The same, as a request URI's authority.
    pub authority: hyper::http::uri::Authority,
}

impl RouteTable {
    /// An empty table answering for `NAME.localhost` and `NAME.D` for each of `domains`.
    pub fn new(domains: &[String]) -> RouteTable {
        let mut all = vec!["localhost".to_string()];
        all.extend(domains.iter().map(|d| d.trim_matches('.').to_lowercase()));
        RouteTable { by_host: RwLock::new(HashMap::new()), domains: all }
    }

    /// Replaces the routes.
    pub fn set(&self, routes: &[Route]) {
        let mut map = HashMap::new();
        for r in routes {
            let Ok(authority) = r.backend.to_string().parse() else { continue };
            let backend = Arc::new(Backend { name: r.name.clone(), addr: r.backend, authority });
            for d in &self.domains {
                map.insert(format!("{}.{d}", r.name.to_lowercase()), backend.clone());
            }
        }
        *self.by_host.write().expect("the route lock is never poisoned") = map;
    }

    /// The container name and backend for a Host header (a port after the name is ignored).
    pub fn lookup(&self, host: &str) -> Option<Arc<Backend>> {
        let name = host.rsplit_once(':').filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit())).map_or(host, |(h, _)| h).trim_end_matches('.');
        let routes = self.by_host.read().expect("the route lock is never poisoned");
        // Host names come lower-case almost always: no copy for them.
        if name.bytes().any(|b| b.is_ascii_uppercase()) {
            routes.get(&name.to_lowercase()).cloned()
        } else {
            routes.get(name).cloned()
        }
    }
}

/// Keeps `table` in step with the data root: reloads whenever another process commits.
pub fn watch(root: PathBuf, table: Arc<RouteTable>, every: Duration) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut seen = None;
        loop {
            if let Err(e) = reload(&root, &table, &mut seen) {
                eprintln!("shibafu proxy: reading routes: {e}");
                seen = None;
            }
            std::thread::sleep(every);
        }
    })
}

fn reload(root: &std::path::Path, table: &RouteTable, seen: &mut Option<(Engine, i64)>) -> crate::engine::Result<()> {
    if seen.is_none() {
        *seen = Some((Engine::open(root)?, i64::MIN));
    }
    let (engine, version) = seen.as_mut().expect("set above");
    let now = engine.state_version()?;
    if now != *version {
        table.set(&engine.routes()?);
        *version = now;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_matched_by_name_domain_and_without_port() {
        let t = RouteTable::new(&["platform.local".to_string()]);
        let web = SocketAddrV4::new(std::net::Ipv4Addr::new(172, 20, 0, 2), 80);
        t.set(&[Route { name: "web".into(), backend: web }]);
        assert_eq!(t.lookup("web.localhost").unwrap().addr, web);
        assert_eq!(t.lookup("WEB.localhost:8080").unwrap().addr, web);
        assert_eq!(t.lookup("web.platform.local.").unwrap().name, "web");
        assert_eq!(t.lookup("web.localhost").unwrap().authority.as_str(), "172.20.0.2:80");
        assert!(t.lookup("api.localhost").is_none());
        assert!(t.lookup("web.example.com").is_none());
        t.set(&[]);
        assert!(t.lookup("web.localhost").is_none(), "routes follow containers");
    }
}
