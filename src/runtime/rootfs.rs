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
pub fn prepare(spec: &Spec, bundle: &Path, rootfs: &Path, cgroup_view: Option<&Path>) -> Result<()> {
    set_root_propagation(spec)?;
    bind(rootfs, rootfs, MsFlags::MS_REC)?;
    let root = nix::fcntl::open(rootfs, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(RuntimeError::sys(format!("open rootfs {}", rootfs.display())))?;
    let mounts = spec.mounts().clone().unwrap_or_default();
    for m in &mounts {
        mount_one(&root, m, bundle, cgroup_view)?;
    }
    let linux = spec.linux().as_ref();
    let dev_is_fresh = mounts.iter().any(|m| m.destination() == Path::new("/dev") && m.typ().as_deref() != Some("bind"));
    if dev_is_fresh {
        devices::create_defaults(&root)?;
    }
    if let Some(devs) = linux.and_then(|l| l.devices().as_ref()) {
        devices::create_from_spec(&root, devs)?;
    }
    Ok(())
}

/// After `prepare`: switches the root to `rootfs` and detaches the old one.
pub fn pivot(rootfs: &Path) -> Result<()> {
    explain::step(|| format!("cd {} && pivot_root . . && umount -l .", rootfs.display()));
    chdir(rootfs).map_err(RuntimeError::sys(format!("chdir {}", rootfs.display())))?;
    pivot_root(".", ".").map_err(RuntimeError::sys("pivot_root"))?;
    // The old root now sits on top; keep its unmount from reaching the host, then drop it.
    mount(None::<&str>, ".", None::<&str>, MsFlags::MS_SLAVE | MsFlags::MS_REC, None::<&str>)
        .map_err(RuntimeError::sys("make old root rslave"))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(RuntimeError::sys("detach old root"))?;
    chdir("/").map_err(RuntimeError::sys("chdir /"))
}

/// After `pivot`: masks and write-protects paths, and makes the root read-only when asked.
pub fn finish(spec: &Spec) -> Result<()> {
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
        mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY, None::<&str>)
            .map_err(RuntimeError::sys("remount / read-only"))?;
    }
    Ok(())
}

fn set_root_propagation(spec: &Spec) -> Result<()> {
    let wanted = spec.linux().as_ref().and_then(|l| l.rootfs_propagation().clone());
    let flags = match wanted.as_deref() {
        Some("shared") | Some("rshared") => MsFlags::MS_SHARED,
        Some("private") | Some("rprivate") => MsFlags::MS_PRIVATE,
        Some("unbindable") | Some("runbindable") => MsFlags::MS_UNBINDABLE,
        _ => MsFlags::MS_SLAVE,
    } | MsFlags::MS_REC;
    explain::step(|| format!("mount --make-r{} /", propagation_name(flags)));
    mount(None::<&str>, "/", None::<&str>, flags, None::<&str>).map_err(RuntimeError::sys("set / propagation"))
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

fn mount_one(root: &OwnedFd, m: &Mount, bundle: &Path, cgroup_view: Option<&Path>) -> Result<()> {
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
            mount(None::<&str>, &mounted_path, None::<&str>, flags, None::<&str>)
                .map_err(RuntimeError::sys(format!("remount {}", dest.display())))?;
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
    mount(Some(source.as_str()), &target_path, Some(fstype.as_str()), opts.flags, data)
        .map_err(RuntimeError::sys(format!("mount {fstype} on {}", dest.display())))?;
    set_propagation(&target_path, dest, &opts)
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
            let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
            mount(None::<&str>, path, None::<&str>, flags, None::<&str>)
        })
        .map_err(RuntimeError::sys(format!("make {} read-only", path.display())))
}
