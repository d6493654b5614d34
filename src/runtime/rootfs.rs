//! The container's filesystem view: propagation, the spec's mounts, /dev, pivot_root, masked
//! and read-only paths. Runs inside the container's new mount namespace, before pivot_root
//! (`prepare`) and after it (`finish`).

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::Mode;
use nix::unistd::{chdir, pivot_root};
use oci_spec::runtime::{Mount, Spec};

use super::devices;
use super::error::{Result, RuntimeError};
use super::mount_options::{self, MountOptions};
use crate::{explain, safepath};

/// Mounts everything the spec asks for under `rootfs`, then makes it the root. A `cgroup`
/// mount becomes a read-only bind of `cgroup_view` when given (see `cgroups::container_view`).
/// In a user namespace, devices are bound from the host, and a sysfs the kernel refuses (the
/// network namespace belongs to the host) becomes a bind of the host's /sys.
pub fn prepare(spec: &Spec, bundle: &Path, rootfs: &Path, cgroup_view: Option<&Path>, in_user_ns: bool) -> Result<()> {
    set_root_propagation(spec)?;
    // pivot_root refuses a new root whose parent mount is shared (as `/` is when the spec asks
    // for shared propagation): that one mount goes private; `finish` applies the spec's
    // propagation to the new root once it is the root.
    parent_mount_private(rootfs)?;
    bind(rootfs, rootfs, MsFlags::MS_REC)?;
    let root = nix::fcntl::open(rootfs, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(RuntimeError::sys(format!("open rootfs {}", rootfs.display())))?;
    let mounts = spec.mounts().clone().unwrap_or_default();
    for m in &mounts {
        mount_one(&root, m, bundle, cgroup_view, in_user_ns)?;
    }
    let linux = spec.linux().as_ref();
    let dev_is_fresh = mounts.iter().any(|m| m.destination() == Path::new("/dev") && m.typ().as_deref() != Some("bind"));
    if dev_is_fresh {
        devices::create_defaults(&root, in_user_ns)?;
    }
    if let Some(devs) = linux.and_then(|l| l.devices().as_ref()) {
        devices::create_from_spec(&root, devs, in_user_ns)?;
    }
    Ok(())
}

/// After `prepare`: switches the root to `rootfs` and detaches the old one.
pub fn pivot(rootfs: &Path) -> Result<()> {
    explain::step(|| format!("cd {} && pivot_root . . && umount -l .", rootfs.display()));
    let old_root = nix::fcntl::open("/", OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty()).map_err(RuntimeError::sys("open the old root"))?;
    chdir(rootfs).map_err(RuntimeError::sys(format!("chdir {}", rootfs.display())))?;
    pivot_root(".", ".").map_err(RuntimeError::sys("pivot_root"))?;
    // The old root now sits on top. Stand in it (the kernel leaves no promise of which "."
    // is which), keep its unmount from reaching the host, then drop it: the new root's own
    // mounts keep the propagation they were given.
    nix::unistd::fchdir(&old_root).map_err(RuntimeError::sys("fchdir the old root"))?;
    mount(None::<&str>, ".", None::<&str>, MsFlags::MS_SLAVE | MsFlags::MS_REC, None::<&str>)
        .map_err(RuntimeError::sys("make old root rslave"))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(RuntimeError::sys("detach old root"))?;
    chdir("/").map_err(RuntimeError::sys("chdir /"))
}

/// After `pivot`: the root's propagation as the spec asks, masked and write-protected paths,
/// and the root read-only when asked.
pub fn finish(spec: &Spec) -> Result<()> {
    if let Some(flags) = asked_propagation(spec) {
        explain::step(|| format!("mount --make-r{} /", propagation_name(flags)));
        mount(None::<&str>, "/", None::<&str>, flags | MsFlags::MS_REC, None::<&str>).map_err(RuntimeError::sys("set the new / propagation"))?;
    }
    if let Some(linux) = spec.linux() {
        for path in linux.masked_paths().iter().flatten() {
            mask(Path::new(path))?;
        }
        for path in linux.readonly_paths().iter().flatten() {
            read_only(Path::new(path))?;
        }
    }
    if spec.root().as_ref().is_some_and(|r| r.readonly() == Some(true)) {
        explain::step(|| "mount -o remount,bind,ro /".into());
        remount(Path::new("/"), MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY).map_err(RuntimeError::sys("remount / read-only"))?;
    }
    Ok(())
}

/// The propagation `linux.rootfsPropagation` names, if any.
fn asked_propagation(spec: &Spec) -> Option<MsFlags> {
    match spec.linux().as_ref().and_then(|l| l.rootfs_propagation().clone()).as_deref() {
        Some("shared") | Some("rshared") => Some(MsFlags::MS_SHARED),
        Some("private") | Some("rprivate") => Some(MsFlags::MS_PRIVATE),
        Some("unbindable") | Some("runbindable") => Some(MsFlags::MS_UNBINDABLE),
        Some("slave") | Some("rslave") => Some(MsFlags::MS_SLAVE),
        _ => None,
    }
}

fn set_root_propagation(spec: &Spec) -> Result<()> {
    let flags = asked_propagation(spec).unwrap_or(MsFlags::MS_SLAVE) | MsFlags::MS_REC;
    explain::step(|| format!("mount --make-r{} /", propagation_name(flags)));
    mount(None::<&str>, "/", None::<&str>, flags, None::<&str>).map_err(RuntimeError::sys("set / propagation"))
}

/// Makes the mount that holds `dir` private when it is shared (that mount only).
fn parent_mount_private(dir: &Path) -> Result<()> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").map_err(RuntimeError::io("read /proc/self/mountinfo"))?;
    let dir = std::fs::canonicalize(dir).map_err(RuntimeError::io(format!("resolve {}", dir.display())))?;
    let Some((point, shared)) = holding_mount(&info, &dir) else { return Ok(()) };
    if !shared {
        return Ok(());
    }
    explain::step(|| format!("mount --make-private {}", point.display()));
    mount(None::<&str>, &point, None::<&str>, MsFlags::MS_PRIVATE, None::<&str>).map_err(RuntimeError::sys(format!("make {} private", point.display())))
}

/// The mount point in `mountinfo` that holds `dir` (the longest one above it, the last mounted
/// when several stack), and whether it is shared.
fn holding_mount(mountinfo: &str, dir: &Path) -> Option<(PathBuf, bool)> {
    let mut best: Option<(PathBuf, bool)> = None;
    for line in mountinfo.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let (Some(point), Some(sep)) = (fields.get(4), fields.iter().position(|f| *f == "-")) else { continue };
        let point = PathBuf::from(point.replace("\\040", " "));
        if !dir.starts_with(&point) {
            continue;
        }
        let shared = fields[6..sep].iter().any(|f| f.starts_with("shared:"));
        if best.as_ref().is_none_or(|(b, _)| point.components().count() >= b.components().count()) {
            best = Some((point, shared));
        }
    }
    best
}

fn propagation_name(flags: MsFlags) -> &'static str {
    if flags.contains(MsFlags::MS_SHARED) {
        "shared"
    } else if flags.contains(MsFlags::MS_PRIVATE) {
        "private"
    } else if flags.contains(MsFlags::MS_UNBINDABLE) {
        "unbindable"
    } else {
        "slave"
    }
}

fn bind(source: &Path, target: &Path, extra: MsFlags) -> Result<()> {
    explain::step(|| format!("mount --{}bind {} {}", if extra.contains(MsFlags::MS_REC) { "r" } else { "" }, source.display(), target.display()));
    mount(Some(source), target, None::<&str>, MsFlags::MS_BIND | extra, None::<&str>)
        .map_err(RuntimeError::sys(format!("bind {} on {}", source.display(), target.display())))
}

/// A remount; where the kernel refuses it because it would clear flags locked on the mount (a
/// user namespace may not drop nosuid, nodev, noexec or the atime flags of a mount it was
/// given), once more with those flags kept.
fn remount(path: &Path, flags: MsFlags) -> nix::Result<()> {
    match mount(None::<&str>, path, None::<&str>, flags, None::<&str>) {
        Err(nix::errno::Errno::EPERM) => {
            let current = nix::sys::statvfs::statvfs(path)?.flags();
            use nix::sys::statvfs::FsFlags;
            let locked = [
                (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
                (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
                (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
                (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
                (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
                (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
            ];
            let kept = locked.iter().filter(|(st, _)| current.contains(*st)).fold(flags, |f, (_, ms)| f | *ms);
            mount(None::<&str>, path, None::<&str>, kept, None::<&str>)
        }
        other => other,
    }
}

fn mount_one(root: &OwnedFd, m: &Mount, bundle: &Path, cgroup_view: Option<&Path>, in_user_ns: bool) -> Result<()> {
    let options = m.options().clone().unwrap_or_default();
    let mut opts = mount_options::parse(&options);
    let typ = m.typ().clone().unwrap_or_default();
    let dest = m.destination();
    // A fresh cgroup2 mount costs 8-20 ms (the kernel drains offline cgroups at every cgroup2
    // mount); a bind of the same tree costs microseconds.
    let cgroup_bind = cgroup_view.filter(|_| typ == "cgroup" || typ == "cgroup2");
    if opts.is_bind() || typ == "bind" || cgroup_bind.is_some() {
        if cgroup_bind.is_some() {
            opts.flags |= MsFlags::MS_BIND;
        }
        let source = cgroup_bind.map(Path::to_path_buf).unwrap_or_else(|| source_path(m, bundle));
        let target = if source.is_dir() { safepath::mkdir_all(root, dest) } else { safepath::touch(root, dest) }
            .map_err(RuntimeError::sys(format!("create mount point {}", dest.display())))?;
        let target_path = safepath::proc_fd_path(&target);
        bind(&source, &target_path, opts.flags & MsFlags::MS_REC)?;
        // The descriptor still names the file under the new mount: open the mount itself.
        let mounted = safepath::open(root, dest, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(RuntimeError::sys(format!("open mount point {}", dest.display())))?;
        let mounted_path = safepath::proc_fd_path(&mounted);
        if let Some(flags) = opts.bind_remount_flags() {
            remount(&mounted_path, flags).map_err(RuntimeError::sys(format!("remount {}", dest.display())))?;
        }
        return set_propagation(&mounted_path, dest, &opts);
    }
    let target = safepath::mkdir_all(root, dest).map_err(RuntimeError::sys(format!("create mount point {}", dest.display())))?;
    let target_path = safepath::proc_fd_path(&target);
    let (fstype, source) = if typ == "cgroup" || typ == "cgroup2" {
        ("cgroup2".to_string(), "cgroup2".to_string())
    } else {
        (typ.clone(), m.source().as_ref().map(|s| s.display().to_string()).unwrap_or_else(|| typ.clone()))
    };
    explain::step(|| format!("mount -t {fstype}{} {source} {}", mount_options::describe(&options), dest.display()));
    let data = (!opts.data.is_empty()).then_some(opts.data.as_str());
    match mount(Some(source.as_str()), &target_path, Some(fstype.as_str()), opts.flags, data) {
        Err(nix::errno::Errno::EPERM) if in_user_ns && fstype == "sysfs" => {
            // A sysfs belongs to a network namespace, and ours is the host's: runc binds the
            // host's /sys instead.
            bind(Path::new("/sys"), &target_path, MsFlags::MS_REC)?;
            if opts.flags.contains(MsFlags::MS_RDONLY) {
                let mounted = safepath::open(root, dest, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty()).map_err(RuntimeError::sys(format!("open mount point {}", dest.display())))?;
                remount(&safepath::proc_fd_path(&mounted), MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY).map_err(RuntimeError::sys(format!("remount {} read-only", dest.display())))?;
            }
        }
        other => other.map_err(RuntimeError::sys(format!("mount {fstype} on {}", dest.display())))?,
    }
    if opts.propagation.is_empty() {
        return Ok(());
    }
    // The descriptor names the directory under the new mount: the propagation is the mount's.
    let mounted = safepath::open(root, dest, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty()).map_err(RuntimeError::sys(format!("open mount point {}", dest.display())))?;
    set_propagation(&safepath::proc_fd_path(&mounted), dest, &opts)
}

fn set_propagation(target: &Path, dest: &Path, opts: &MountOptions) -> Result<()> {
    if opts.propagation.is_empty() {
        return Ok(());
    }
    mount(None::<&str>, target, None::<&str>, opts.propagation, None::<&str>)
        .map_err(RuntimeError::sys(format!("set propagation of {}", dest.display())))
}

fn source_path(m: &Mount, bundle: &Path) -> PathBuf {
    let source = m.source().clone().unwrap_or_default();
    if source.is_absolute() { source } else { bundle.join(source) }
}

/// Hides a path: /dev/null over a file, an empty read-only tmpfs over a directory.
fn mask(path: &Path) -> Result<()> {
    let Ok(meta) = std::fs::metadata(path) else { return Ok(()) };
    if meta.is_dir() {
        explain::step(|| format!("mount -t tmpfs -o ro tmpfs {}", path.display()));
        mount(Some("tmpfs"), path, Some("tmpfs"), MsFlags::MS_RDONLY, None::<&str>)
    } else {
        explain::step(|| format!("mount --bind /dev/null {}", path.display()));
        mount(Some("/dev/null"), path, None::<&str>, MsFlags::MS_BIND, None::<&str>)
    }
    .map_err(RuntimeError::sys(format!("mask {}", path.display())))
}

/// Makes a path read-only by binding it onto itself and remounting.
fn read_only(path: &Path) -> Result<()> {
    if !path.exists() {
        return Ok(());
    }
    explain::step(|| format!("mount --bind -o ro {0} {0}", path.display()));
    mount(Some(path), path, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
        .and_then(|_| {
            remount(path, MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC)
        })
        .map_err(RuntimeError::sys(format!("make {} read-only", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mount_holding_a_dir_is_the_longest_point_above_it() {
        let info = "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n\
                    30 22 0:25 / /tmp rw shared:7 - tmpfs tmpfs rw\n\
                    31 22 0:26 / /tmpfoo rw - tmpfs tmpfs rw\n\
                    40 30 0:27 / /tmp/b\\040c rw master:3 - tmpfs tmpfs rw\n";
        assert_eq!(holding_mount(info, Path::new("/tmp/x/rootfs")), Some((PathBuf::from("/tmp"), true)));
        assert_eq!(holding_mount(info, Path::new("/tmpfoo/rootfs")), Some((PathBuf::from("/tmpfoo"), false)));
        assert_eq!(holding_mount(info, Path::new("/tmp/b c/rootfs")), Some((PathBuf::from("/tmp/b c"), false)));
        assert_eq!(holding_mount(info, Path::new("/var/lib")), Some((PathBuf::from("/"), true)));
    }
}
