//! Network namespaces held open by a bind mount, the way `ip netns add` does it: the
//! namespace outlives every process in it until the file is unmounted. The container's
//! config.json names the file, so any OCI runtime joins it.

use std::fs::File;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};

use super::{NetworkError, Result};
use crate::explain;

/// Where a container's namespace file lives.
pub fn path_for(run_dir: &Path, id: &str) -> PathBuf {
    run_dir.join("netns").join(id)
}

/// Makes a new network namespace, held by `path`.
pub fn create(path: &Path) -> Result<()> {
    explain::step(|| format!("ip netns add {}  # a bind mount of a new network namespace", path.display()));
    let dir = path.parent().expect("a netns path has a parent");
    std::fs::create_dir_all(dir).map_err(NetworkError::io(format!("create {}", dir.display())))?;
    File::create(path).map_err(NetworkError::io(format!("create {}", path.display())))?;
    let target = path.to_path_buf();
    // A thread of our own switches namespaces; the rest of the process stays where it is.
    let made = std::thread::spawn(move || -> Result<()> {
        unshare(CloneFlags::CLONE_NEWNET).map_err(|e| NetworkError::io("unshare the network namespace")(e.into()))?;
        mount(Some("/proc/thread-self/ns/net"), &target, None::<&str>, MsFlags::MS_BIND, None::<&str>)
            .map_err(|e| NetworkError::io(format!("bind the namespace on {}", target.display()))(e.into()))
    })
    .join()
    .expect("the netns thread does not panic");
    if made.is_err() {
        let _ = std::fs::remove_file(path);
    }
    made
}

/// Moves the calling thread into the namespace held by `path` (other threads stay put).
pub fn enter(path: &Path) -> Result<()> {
    let ns = File::open(path).map_err(NetworkError::io(format!("open {}", path.display())))?;
    setns(&ns, CloneFlags::CLONE_NEWNET).map_err(|e| NetworkError::io(format!("enter the network namespace {}", path.display()))(e.into()))
}

/// Unmounts and deletes the namespace file; a missing one is fine.
pub fn remove(path: &Path) -> Result<()> {
    if !path.exists() {
        return Ok(());
    }
    explain::step(|| format!("ip netns delete {}", path.display()));
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) => {}
        Err(e) => return Err(NetworkError::io(format!("unmount {}", path.display()))(e.into())),
    }
    std::fs::remove_file(path).map_err(NetworkError::io(format!("remove {}", path.display())))
}
