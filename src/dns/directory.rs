//! The authority's view of the state database: networks and leases, read again whenever another
//! process has committed (`PRAGMA data_version`), so a name answers as soon as `run` recorded
//! its lease and stops when `rm` dropped it.

use std::path::Path;
use std::sync::Arc;

use super::answer::{Directory, Entry, NetEntry};
use super::{DnsError, Result};
use crate::state::Db;

/// An open state database and the directory last read from it.
pub struct Source {
    db: Db,
    version: Option<i64>,
    directory: Arc<Directory>,
}

impl Source {
    /// Opens the state database under `root`.
    pub fn open(root: &Path) -> Result<Source> {
        Ok(Source { db: Db::open(root)?, version: None, directory: Arc::default() })
    }

    /// The directory as the database holds it now: read again only when it changed.
    pub fn current(&mut self) -> Result<Arc<Directory>> {
        let now = self.db.data_version()?;
        if self.version != Some(now) {
            self.directory = Arc::new(read(&self.db)?);
            self.version = Some(now);
        }
        Ok(self.directory.clone())
    }
}

/// One consistent snapshot: both tables in one read transaction.
fn read(db: &Db) -> Result<Directory> {
    let tx = db.conn.unchecked_transaction().map_err(crate::state::StateError::from)?;
    let bad = |what: String| DnsError::BadState(what);
    let networks = db
        .networks()?
        .into_iter()
        .map(|n| {
            Ok(NetEntry {
                subnet: n.subnet.parse().map_err(|_| bad(format!("network {}: subnet {:?}", n.name, n.subnet)))?,
                gateway: n.gateway.parse().map_err(|_| bad(format!("network {}: gateway {:?}", n.name, n.gateway)))?,
                name: n.name,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let entries = db
        .named_leases()?
        .into_iter()
        .map(|l| {
            Ok(Entry {
                address: l.address.parse().map_err(|_| bad(format!("lease of {} on {}: address {:?}", l.name, l.network, l.address)))?,
                network: l.network,
                id: l.container_id,
                name: l.name,
                more: std::iter::once(l.hostname).filter(|h| !h.is_empty()).chain(l.aliases).collect(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    drop(tx);
    Ok(Directory { networks, entries })
}
