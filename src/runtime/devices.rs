//! The device nodes and links every container gets in its /dev, plus the spec's own devices.

use std::os::fd::AsFd;
use std::path::Path;

use nix::sys::stat::{makedev, mknodat, Mode, SFlag};
use nix::fcntl::AtFlags;
use nix::unistd::{fchownat, symlinkat, Gid, Uid};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType};

use super::error::{Result, RuntimeError};
use crate::{explain, safepath};

/// The devices the OCI spec requires in every container: (path, major, minor).
const DEFAULT_DEVICES: [(&str, u64, u64); 6] = [
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
];

/// The links every container gets in /dev.
const DEFAULT_LINKS: [(&str, &str); 5] = [
    ("/proc/self/fd", "/dev/fd"),
    ("/proc/self/fd/0", "/dev/stdin"),
    ("/proc/self/fd/1", "/dev/stdout"),
    ("/proc/self/fd/2", "/dev/stderr"),
    ("pts/ptmx", "/dev/ptmx"),
];

/// Creates the default character devices and links in a fresh /dev under `root`. In a user
/// namespace, where mknod is refused, the host's nodes are bound in instead (as runc does).
pub fn create_defaults<Fd: AsFd>(root: Fd, in_user_ns: bool) -> Result<()> {
    let root = root.as_fd();
    for (path, major, minor) in DEFAULT_DEVICES {
        if in_user_ns {
            bind_host_node(root, Path::new(path))?;
        } else {
            mknod(root, Path::new(path), SFlag::S_IFCHR, major, minor, 0o666, 0, 0)?;
        }
    }
    for (target, link) in DEFAULT_LINKS {
        let dir = safepath::mkdir_all(root, Path::new("/dev")).map_err(RuntimeError::sys("mkdir /dev"))?;
        let name = Path::new(link).file_name().expect("links have names");
        explain::step(|| format!("ln -s {target} {link}"));
        match symlinkat(target, dir.as_fd(), name) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => return Err(RuntimeError::sys(format!("symlink {link}"))(e)),
        }
    }
    Ok(())
}

/// Creates the devices listed in the spec's `linux.devices` (bound from the host's same path
/// in a user namespace).
pub fn create_from_spec<Fd: AsFd>(root: Fd, devices: &[LinuxDevice], in_user_ns: bool) -> Result<()> {
    let root = root.as_fd();
    for d in devices {
        if in_user_ns {
            bind_host_node(root, d.path())?;
            continue;
        }
        let kind = match d.typ() {
            LinuxDeviceType::C | LinuxDeviceType::U => SFlag::S_IFCHR,
            LinuxDeviceType::B => SFlag::S_IFBLK,
            LinuxDeviceType::P => SFlag::S_IFIFO,
            LinuxDeviceType::A => continue,
        };
        let mode = d.file_mode().unwrap_or(0o666);
        let (uid, gid) = (d.uid().unwrap_or(0), d.gid().unwrap_or(0));
        mknod(root, d.path(), kind, d.major() as u64, d.minor() as u64, mode, uid, gid)?;
    }
    Ok(())
}

/// Binds the host's node at `path` onto the same path under `root`.
fn bind_host_node(root: std::os::fd::BorrowedFd, path: &Path) -> Result<()> {
    let target = safepath::touch(root, path).map_err(RuntimeError::sys(format!("create {}", path.display())))?;
    explain::step(|| format!("mount --bind {0} <rootfs>{0}   # mknod is refused in a user namespace", path.display()));
    nix::mount::mount(Some(path), &safepath::proc_fd_path(&target), None::<&str>, nix::mount::MsFlags::MS_BIND, None::<&str>)
        .map_err(RuntimeError::sys(format!("bind the host's {}", path.display())))
}

#[allow(clippy::too_many_arguments)]
fn mknod(
    root: std::os::fd::BorrowedFd,
    path: &Path,
    kind: SFlag,
    major: u64,
    minor: u64,
    mode: u32,
    uid: u32,
    gid: u32,
) -> Result<()> {
    let parent = path.parent().unwrap_or(Path::new("/"));
    let name = path.file_name().ok_or_else(|| RuntimeError::Init(format!("bad device path {path:?}")))?;
    let dir = safepath::mkdir_all(root, parent).map_err(RuntimeError::sys(format!("mkdir {}", parent.display())))?;
    let letter = if kind == SFlag::S_IFBLK { "b" } else if kind == SFlag::S_IFIFO { "p" } else { "c" };
    explain::step(|| format!("mknod -m {mode:o} {} {letter} {major} {minor}", path.display()));
    let perm = Mode::from_bits_truncate(mode);
    match mknodat(dir.as_fd(), name, kind, perm, makedev(major, minor)) {
        Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
        Err(e) => return Err(RuntimeError::sys(format!("mknod {}", path.display()))(e)),
    }
    // mknod is subject to the umask; set the mode and owner exactly.
    let proc_path = safepath::proc_fd_path(&dir).join(name);
    std::fs::set_permissions(&proc_path, std::os::unix::fs::PermissionsExt::from_mode(mode & 0o7777))
        .map_err(RuntimeError::io(format!("chmod {}", path.display())))?;
    fchownat(dir.as_fd(), name, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)), AtFlags::AT_SYMLINK_NOFOLLOW)
        .map_err(RuntimeError::sys(format!("chown {}", path.display())))
}
