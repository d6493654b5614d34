//! The authority's view of the state database: networks and leases, read again whenever another
//! process has committed (`PRAGMA data_version`), so a name answers as soon as `run` recorded
//! its lease and stops when `rm` dropped it. The version is asked at most once a millisecond
//! (a query answered in between is at most that old): under a flood of queries, the locks
//! SQLite takes to ask would otherwise cost more than the answers.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::answer::{Directory, Entry, NetEntry};
use super::{DnsError, Result};
use crate::state::Db;

/// How old an answer's view of the state may be.
const FRESH: Duration = Duration::from_millis(1);

/// An open state database and the directory last read from it.
pub struct Source {
    db: Db,
    version: Option<i64>,
    checked: Option<Instant>,
    directory: Arc<Directory>,
}

impl Source {
    /// Opens the state database under `root`.
    pub fn open(root: &Path) -> Result<Source> {
        Ok(Source { db: Db::open(root)?, version: None, checked: None, directory: Arc::default() })
    }

    /// The directory as the database held it at most `FRESH` ago: read again only when it changed.
    pub fn current(&mut self) -> Result<Arc<Directory>> {
        if self.checked.is_some_and(|at| at.elapsed() < FRESH) {
            return Ok(self.directory.clone());
        }
        let now = self.db.data_version()?;
        if self.version != Some(now) {
            self.directory = Arc::new(read(&self.db)?);
            self.version = Some(now);
        }
        self.checked = Some(Instant::now());
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
    Ok(Directory::new(networks, entries))
}
