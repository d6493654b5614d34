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

/// Docker's defaults for a container's own network namespace: any port may be bound and any
/// group may send ICMP echo through datagram sockets, so a server on port 80 and `ping` work
/// without a capability over the namespace (which a user-namespaced container never holds).
const SYSCTLS: [(&str, &str); 2] = [("net.ipv4.ip_unprivileged_port_start", "0"), ("net.ipv4.ping_group_range", "0 2147483647")];

/// Makes a new network namespace, held by `path`, with Docker's defaults (`SYSCTLS`).
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
            .map_err(|e| NetworkError::io(format!("bind the namespace on {}", target.display()))(e.into()))?;
        set_defaults(&target)
    })
    .join()
    .expect("the netns thread does not panic");
    if made.is_err() {
        let _ = std::fs::remove_file(path);
    }
    made
}

/// Writes `SYSCTLS` from a thread inside the namespace (/proc/sys/net is the caller's).
fn set_defaults(path: &Path) -> Result<()> {
    for (key, value) in SYSCTLS {
        explain::step(|| format!("ip netns exec {} sysctl -w {key}=\"{value}\"", path.display()));
        let file = format!("/proc/sys/{}", key.replace('.', "/"));
        std::fs::write(&file, value).map_err(NetworkError::io(format!("write {file}")))?;
    }
    Ok(())
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
