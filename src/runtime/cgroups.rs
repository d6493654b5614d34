//! cgroup v2: one directory per container, with memory, cpu and pids limits and the device
//! program (device_filter.rs). The hierarchy is /sys/fs/cgroup on a unified host, or
//! /sys/fs/cgroup/unified on a hybrid one (v1 controllers, plus a v2 tree without controllers:
//! devices are enforced there, limits are refused). Without any v2 hierarchy, containers that
//! ask nothing of cgroups run without one; limits or device rules are refused with the reason.

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxDevice, LinuxResources};

use super::error::{Result, RuntimeError};
use super::{bpf, device_filter};
use crate::explain;

/// Where a unified host mounts the cgroup v2 hierarchy.
pub const MOUNT: &str = "/sys/fs/cgroup";

/// Where a hybrid host (systemd's "hybrid" layout) mounts its cgroup v2 hierarchy.
pub const HYBRID_MOUNT: &str = "/sys/fs/cgroup/unified";

/// The directory that holds our containers' cgroups by default (`shibafu/<id>`).
pub const DEFAULT_PARENT: &str = "shibafu";

/// The cgroup v2 hierarchy to use: /sys/fs/cgroup when it is one, else the hybrid layout's.
pub fn v2_mount() -> Option<&'static Path> {
    [MOUNT, HYBRID_MOUNT].into_iter().map(Path::new).find(|m| is_cgroup2(m))
}

/// What a container's `/sys/fs/cgroup` can be a bind of, instead of a fresh cgroup2 mount
/// that shows the same tree: without a cgroup namespace, the whole hierarchy (a cgroup2 mount
/// of this mount namespace whose root is the hierarchy's root); with a new one, the
/// container's own cgroup in it (what a fresh mount inside the namespace shows). None when
/// there is no such mount, or the cgroup is not under it.
pub fn container_view(cgroup: Option<&Cgroup>, new_namespace: bool) -> Option<PathBuf> {
    let whole = whole_v2_mount()?;
    if !new_namespace {
        return Some(whole);
    }
    cgroup.map(|c| c.path.clone()).filter(|p| p.starts_with(&whole))
}

/// The cgroup2 mount the runtime makes cgroups in (`v2_mount`), when it shows the whole
/// hierarchy: its root in /proc/self/mountinfo is `/`.
fn whole_v2_mount() -> Option<PathBuf> {
    let point = v2_mount()?;
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    // ID PARENT MAJ:MIN ROOT POINT OPTIONS [TAGS...] - TYPE SOURCE SUPER-OPTIONS
    let whole = info.lines().any(|line| {
        let fields: Vec<&str> = line.split(' ').take(5).collect();
        fields.get(3) == Some(&"/") && fields.get(4).map(Path::new) == Some(point)
    });
    whole.then(|| point.to_path_buf())
}

/// Moves this process to the root of the cgroup v2 hierarchy, out of the cgroup of whoever
/// started it (a login session's, a service's), whose end would kill it too. A container's
/// monitor does this, so the container outlives the shell or unit that ran it, as Docker's
/// do. Nothing to do without a mount that shows the whole hierarchy.
pub fn leave_for_root() -> std::io::Result<()> {
    let Some(root) = whole_v2_mount() else { return Ok(()) };
    std::fs::write(root.join("cgroup.procs"), std::process::id().to_string())
}

fn is_cgroup2(path: &Path) -> bool {
    nix::sys::statfs::statfs(path).is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
}

/// The limit files to write, as (file, value), for the spec's resources.
pub fn limits(resources: Option<&LinuxResources>) -> Vec<(String, String)> {
    let mut out: Vec<(&str, String)> = Vec::new();
    let Some(r) = resources else { return Vec::new() };
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
    if let Some(c) = r.cpu() {
        if let Some(cpus) = c.cpus() {
            out.push(("cpuset.cpus", cpus.clone()));
        }
        if let Some(mems) = c.mems() {
            out.push(("cpuset.mems", mems.clone()));
        }
    }
    if let Some(p) = r.pids() {
        out.push(("pids.max", max_value(p.limit())));
    }
    let mut out: Vec<(String, String)> = out.into_iter().map(|(f, v)| (f.to_string(), v)).collect();
    // `unified`: cgroup v2 files by name, written as given (after the rest, as runc does).
    let mut unified: Vec<(String, String)> = r.unified().clone().unwrap_or_default().into_iter().collect();
    unified.sort();
    out.extend(unified);
    out
}

/// The settings of `resources` that cgroup v2 has no file for (cgroup v1's alone), or whose
/// `unified` name is not a file name: asked for, they are refused rather than dropped.
pub fn inexpressible(resources: Option<&LinuxResources>) -> Vec<String> {
    let Some(r) = resources else { return Vec::new() };
    let mut out = Vec::new();
    let mut ask = |set: bool, name: &str| {
        if set {
            out.push(name.to_string());
        }
    };
    ask(r.block_io().is_some(), "blockIO");
    ask(r.hugepage_limits().as_ref().is_some_and(|h| !h.is_empty()), "hugepageLimits");
    ask(r.network().is_some(), "network (classID, priorities)");
    ask(r.rdma().as_ref().is_some_and(|h| !h.is_empty()), "rdma");
    if let Some(m) = r.memory() {
        ask(m.kernel().is_some(), "memory.kernel");
        ask(m.kernel_tcp().is_some(), "memory.kernelTCP");
        ask(m.swappiness().is_some(), "memory.swappiness");
        ask(m.disable_oom_killer() == Some(true), "memory.disableOOMKiller");
    }
    if let Some(c) = r.cpu() {
        ask(c.realtime_runtime().is_some() || c.realtime_period().is_some(), "cpu.realtimeRuntime/realtimePeriod");
    }
    for file in r.unified().iter().flatten().map(|(f, _)| f) {
        let plain = !file.contains('/') && file.contains('.') && !file.starts_with('.');
        ask(!plain, &format!("unified {file:?} (not a cgroup file name)"));
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
    /// Creates the cgroup at `relative` (under the v2 hierarchy), writes the limits and attaches
    /// the device program for the spec's rules and the devices the runtime creates (`created`:
    /// the spec's `linux.devices`). Without a v2 hierarchy: no cgroup, or an error if limits or
    /// device rules were asked for.
    pub fn create(relative: &Path, resources: Option<&LinuxResources>, created: &[LinuxDevice]) -> Result<Option<Cgroup>> {
        let refused = inexpressible(resources);
        if !refused.is_empty() {
            return Err(RuntimeError::NoCgroupV2 { asked: refused.join(", "), why: "cgroup v2 has no file for them (they are cgroup v1 settings): drop them from linux.resources".into() });
        }
        let limits = limits(resources);
        let rules = device_filter::rules(resources, created)?;
        let Some(mount) = v2_mount() else {
            let mut asked: Vec<&str> = limits.iter().map(|(f, _)| f.as_str()).collect();
            if device_filter::asked(resources) {
                asked.push("devices");
            }
            if asked.is_empty() {
                return Ok(None);
            }
            return Err(RuntimeError::NoCgroupV2 {
                asked: asked.join(", "),
                why: format!(
                    "this host mounts no cgroup v2 hierarchy (neither {MOUNT} nor {HYBRID_MOUNT} is cgroup2): limits are cgroup v2 files, and device rules a BPF program attached to a cgroup v2 directory"
                ),
            });
        };
        let rel = crate::safepath::relative(relative);
        let path = mount.join(&rel);
        // The parents this call makes go again if the cgroup cannot be set up.
        let new_parents: Vec<PathBuf> = path.ancestors().skip(1).take_while(|p| p.starts_with(mount) && *p != mount && !p.exists()).map(Path::to_path_buf).collect();
        let made = enable_controllers(mount, &rel).and_then(|()| {
            explain::step(|| format!("mkdir -p {}", path.display()));
            std::fs::create_dir_all(&path).map_err(RuntimeError::io(format!("create cgroup {}", path.display())))
        });
        let cgroup = Cgroup { path };
        if let Err(e) = made.and_then(|()| cgroup.configure(mount, &limits, &rules)) {
            let _ = cgroup.remove();
            for parent in &new_parents {
                let _ = std::fs::remove_dir(parent);
            }
            return Err(e);
        }
        Ok(Some(cgroup))
    }

    fn configure(&self, mount: &Path, limits: &[(String, String)], rules: &[device_filter::Rule]) -> Result<()> {
        let controllers = std::fs::read_to_string(self.path.join("cgroup.controllers")).unwrap_or_default();
        let missing: Vec<&str> = limits
            .iter()
            .map(|(file, _)| file.as_str())
            // cgroup.* files are the core's, in every cgroup.
            .filter(|file| !file.starts_with("cgroup.") && !controllers.split_whitespace().any(|c| file.split('.').next() == Some(c)))
            .collect();
        if !missing.is_empty() {
            let layout = if mount == Path::new(HYBRID_MOUNT) { " (a hybrid layout: the controllers are on cgroup v1)" } else { "" };
            return Err(RuntimeError::NoCgroupV2 {
                asked: missing.join(", "),
                why: format!("the cgroup v2 hierarchy at {}{layout} does not offer their controllers to {}", mount.display(), self.path.display()),
            });
        }
        for (file, value) in limits {
            self.write(file, value)?;
        }
        let insns = device_filter::program(rules);
        explain::step(|| {
            format!("bpftool cgroup attach {} device name shibafu_device multi   # {} BPF instructions: {}", self.path.display(), insns.len(), device_filter::describe(rules))
        });
        let prog = bpf::load_device_program(&insns)?;
        bpf::attach_device_program(&prog, &self.path)
    }

    /// The directory, opened for clone3's CLONE_INTO_CGROUP.
    pub fn open(&self) -> Result<std::os::fd::OwnedFd> {
        let dir = std::fs::File::options().read(true).custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC).open(&self.path);
        Ok(dir.map_err(RuntimeError::io(format!("open cgroup {}", self.path.display())))?.into())
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
        let ours = |p: &Path| [MOUNT, HYBRID_MOUNT].iter().any(|m| p == Path::new(m).join(DEFAULT_PARENT));
        if let Some(parent) = self.path.parent().filter(|p| ours(p)) {
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
fn enable_controllers(mount: &Path, relative: &Path) -> Result<()> {
    let mut dir = mount.to_path_buf();
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
    for c in ["memory", "cpu", "cpuset", "pids"] {
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
                ("memory.max".to_string(), "67108864".to_string()),
                ("cpu.max".to_string(), "50000 100000".to_string()),
                ("cpu.weight".to_string(), "39".to_string()),
                ("pids.max".to_string(), "64".to_string()),
            ]
        );
    }

    #[test]
    fn devices_alone_ask_for_no_limits() {
        let r: LinuxResources = serde_json::from_str(r#"{"devices":[{"allow":false,"access":"rwm"}]}"#).unwrap();
        assert!(limits(Some(&r)).is_empty());
    }
}
