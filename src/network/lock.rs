//! One lock for the host's network set-up: bridges and firewall chains are made and changed
//! by one `shibafu` process at a time, so ten `run`s racing for the first bridge agree.

use std::fs::File;
use std::path::Path;

use nix::fcntl::{Flock, FlockArg};

use super::{NetworkError, Result};

/// Holds the lock until dropped.
pub struct NetworkLock {
    _lock: Flock<File>,
}

/// Takes the lock file `network.lock` under `run_dir`, waiting for it.
pub fn take(run_dir: &Path) -> Result<NetworkLock> {
    let path = run_dir.join("network.lock");
    let file = File::options().create(true).truncate(false).write(true).open(&path).map_err(NetworkError::io(format!("open {}", path.display())))?;
    let lock = Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, e)| NetworkError::io(format!("lock {}", path.display()))(e.into()))?;
    Ok(NetworkLock { _lock: lock })
}
