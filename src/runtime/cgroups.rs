//! cgroup v2: one directory per container under /sys/fs/cgroup, with memory, cpu and pids
//! limits. Hosts without a v2 hierarchy (hybrid or v1) run containers without a cgroup, and
//! refuse limits with a clear error.

use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxResources;

use super::error::{Result, RuntimeError};
use crate::explain;

/// Where the unified hierarchy is mounted.
pub const MOUNT: &str = "/sys/fs/cgroup";

/// The directory that holds our containers' cgroups by default (`shibafu/<id>`).
pub const DEFAULT_PARENT: &str = "shibafu";

/// Whether /sys/fs/cgroup is a cgroup v2 hierarchy.
pub fn v2_available() -> bool {
    nix::sys::statfs::statfs(MOUNT).is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
}

/// The limit files to write, as (file, value), for the spec's resources.
pub fn limits(resources: Option<&LinuxResources>) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let Some(r) = resources else { return out };
    if let Some(m) = r.memory() {
        if let Some(limit) = m.limit() {
            out.push(("memory.max", max_value(limit)));
        }
        if let Some(res) = m.reservation() {
            out.push(("memory.low", max_value(res)));
        }
        if let (Some(swap), Some(limit)) = (m.swap(), m.limit()) {
            // v1 semantics: swap is memory+swap; v2 wants the swap part alone.
            let swap_only = if swap < 0 { -1 } else { (swap - limit).max(0) };
            out.push(("memory.swap.max", max_value(swap_only)));
        }
    }
    if let Some(c) = r.cpu() {
        if let Some(quota) = c.quota() {
            let period = c.period().unwrap_or(100_000);
            out.push(("cpu.max", format!("{} {period}", max_value(quota))));
        }
        if let Some(shares) = c.shares() {
            if shares > 0 {
                out.push(("cpu.weight", (1 + ((shares.max(2) - 2) * 9999) / 262_142).to_string()));
            }
        }
    }
    if let Some(p) = r.pids() {
        out.push(("pids.max", max_value(p.limit())));
    }
    out
}

fn max_value(v: i64) -> String {
    if v < 0 { "max".into() } else { v.to_string() }
}

/// A container's cgroup directory.
#[derive(Debug, Clone)]
pub struct Cgroup {
    /// Absolute path of the directory.
    pub path: PathBuf,
}

impl Cgroup {
    /// Creates the cgroup at `relative` (under /sys/fs/cgroup) and writes the limits. Without a
    /// v2 hierarchy: no cgroup, or an error if limits were asked for.
    pub fn create(relative: &Path, resources: Option<&LinuxResources>) -> Result<Option<Cgroup>> {
        let limits = limits(resources);
        if !v2_available() {
            if limits.is_empty() {
                return Ok(None);
            }
            let asked: Vec<&str> = limits.iter().map(|(f, _)| *f).collect();
            return Err(RuntimeError::NoCgroupV2(asked.join(", ")));
        }
        let rel = crate::safepath::relative(relative);
        let path = Path::new(MOUNT).join(&rel);
        enable_controllers(&rel)?;
        explain::step(|| format!("mkdir -p {}", path.display()));
        std::fs::create_dir_all(&path).map_err(RuntimeError::io(format!("create cgroup {}", path.display())))?;
        let cgroup = Cgroup { path };
        for (file, value) in limits {
            cgroup.write(file, &value)?;
        }
        Ok(Some(cgroup))
    }

    /// Moves a process into the cgroup.
    pub fn add(&self, pid: i32) -> Result<()> {
        self.write("cgroup.procs", &pid.to_string())
    }

    /// The processes in the cgroup.
    pub fn pids(&self) -> Vec<i32> {
        std::fs::read_to_string(self.path.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// Removes the directory, waiting briefly for exiting processes to leave it; our default
    /// parent goes with its last container, so the host is left as it was found.
    pub fn remove(&self) -> Result<()> {
        explain::step(|| format!("rmdir {}", self.path.display()));
        // Up to about a second for the last processes to leave.
        for _ in 0..5000 {
            match std::fs::remove_dir(&self.path) {
                Ok(()) => {
                    self.remove_empty_default_parent();
                    return Ok(());
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                    if self.write("cgroup.kill", "1").is_err() {
                        for pid in self.pids() {
                            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
                        }
                    }
                    std::thread::sleep(std::time::Duration::from_micros(200));
                }
                Err(e) => return Err(RuntimeError::io(format!("remove cgroup {}", self.path.display()))(e)),
            }
        }
        Err(RuntimeError::Init(format!("cgroup {} stayed busy", self.path.display())))
    }

    fn remove_empty_default_parent(&self) {
        if let Some(parent) = self.path.parent().filter(|p| *p == Path::new(MOUNT).join(DEFAULT_PARENT)) {
            // Fails, as it should, while other containers still live there.
            let _ = std::fs::remove_dir(parent);
        }
    }

    fn write(&self, file: &str, value: &str) -> Result<()> {
        let path = self.path.join(file);
        explain::step(|| format!("echo {value} > {}", path.display()));
        std::fs::write(&path, value).map_err(RuntimeError::io(format!("write {value:?} to {}", path.display())))
    }
}

/// Turns on memory, cpu and pids for the children of every ancestor of `relative`.
fn enable_controllers(relative: &Path) -> Result<()> {
    let mut dir = PathBuf::from(MOUNT);
    enable_in(&dir);
    for part in relative.parent().map(|p| p.components().collect::<Vec<_>>()).unwrap_or_default() {
        dir.push(part);
        std::fs::create_dir_all(&dir).map_err(RuntimeError::io(format!("create cgroup {}", dir.display())))?;
        enable_in(&dir);
    }
    Ok(())
}

/// Best effort: a controller the parent does not offer is simply not enabled.
fn enable_in(dir: &Path) {
    let available = std::fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
    let enabled = std::fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap_or_default();
    for c in ["memory", "cpu", "pids"] {
        if available.split_whitespace().any(|a| a == c) && !enabled.split_whitespace().any(|e| e == c) {
            explain::step(|| format!("echo +{c} > {}/cgroup.subtree_control", dir.display()));
            let _ = std::fs::write(dir.join("cgroup.subtree_control"), format!("+{c}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_translate_to_v2_files() {
        let r: LinuxResources = serde_json::from_str(
            r#"{"memory":{"limit":67108864},"cpu":{"quota":50000,"period":100000,"shares":1024},"pids":{"limit":64}}"#,
        )
        .unwrap();
        assert_eq!(
            limits(Some(&r)),
            vec![
                ("memory.max", "67108864".to_string()),
                ("cpu.max", "50000 100000".to_string()),
                ("cpu.weight", "39".to_string()),
                ("pids.max", "64".to_string()),
            ]
        );
    }

    #[test]
    fn devices_alone_ask_for_no_limits() {
        let r: LinuxResources = serde_json::from_str(r#"{"devices":[{"allow":false,"access":"rwm"}]}"#).unwrap();
        assert!(limits(Some(&r)).is_empty());
    }
}
