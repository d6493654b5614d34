//! Idmapped layers, for containers in a user namespace: each lower layer is bound, through an
//! idmapped mount (Linux 5.12; overlayfs stacks on them from 5.19), so that the files the host
//! owns as 0 are seen owned by the container's root, and so on through the maps. The layers on
//! disk stay as they are, shared with every other container.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::{Result, StorageError};
use crate::explain;

/// The directory, beside a container's upper dir, that holds its idmapped layers.
pub const DIR: &str = "idmapped";

const OPEN_TREE_CLONE: libc::c_uint = 1;
const AT_RECURSIVE: libc::c_uint = 0x8000;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;

/// struct mount_attr (linux/mount.h).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// What the kernel shows for an id a user namespace does not map (kernel.overflowuid).
pub const OVERFLOW_ID: u32 = 65534;

/// The way back from host ids to a user-namespaced container's own, for packing its upper dir
/// (`commit`): each owner is written as the container sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdShift {
    /// uid_map lines: (inside, outside, count).
    pub uids: Vec<(u32, u32, u32)>,
    /// gid_map lines.
    pub gids: Vec<(u32, u32, u32)>,
}

impl IdShift {
    /// The container's uid for host uid `host` (the overflow id when the maps lack it).
    pub fn uid(&self, host: u32) -> u32 {
        inside(&self.uids, host)
    }

    /// The container's gid for host gid `host`.
    pub fn gid(&self, host: u32) -> u32 {
        inside(&self.gids, host)
    }
}

fn inside(lines: &[(u32, u32, u32)], host: u32) -> u32 {
    lines
        .iter()
        .find(|(_, outside, count)| host >= *outside && u64::from(host) < u64::from(*outside) + u64::from(*count))
        .map_or(OVERFLOW_ID, |(inside, outside, _)| inside + (host - outside))
}

/// What an overlay needs to show its layers to a container in a user namespace: that
/// namespace (held open; see `runtime::userns::hold`) and its root as the host numbers it,
/// who owns the upper dir.
pub struct Idmapped {
    /// The user namespace whose maps the layers are seen through.
    pub userns: OwnedFd,
    /// (uid, gid) of its root on the host.
    pub owner: (u32, u32),
}

/// Binds each of `lowers` under `base/idmapped/N` through an idmapped mount of `userns`, and
/// returns the bound paths, in the same order.
pub fn bind_layers(lowers: &[PathBuf], base: &Path, userns: &OwnedFd) -> Result<Vec<PathBuf>> {
    let dir = base.join(DIR);
    std::fs::create_dir_all(&dir).map_err(StorageError::io(format!("create {}", dir.display())))?;
    let mut out = Vec::new();
    for (i, lower) in lowers.iter().enumerate() {
        let target = dir.join(i.to_string());
        std::fs::create_dir_all(&target).map_err(StorageError::io(format!("create {}", target.display())))?;
        explain::step(|| format!("mount --bind -o X-mount.idmap=/proc/<userns>/ns/user {} {}", lower.display(), target.display()));
        bind_idmapped(lower, &target, userns)?;
        out.push(target);
    }
    Ok(out)
}

/// open_tree(OPEN_TREE_CLONE) + mount_setattr(MOUNT_ATTR_IDMAP) + move_mount.
fn bind_idmapped(source: &Path, target: &Path, userns: &OwnedFd) -> Result<()> {
    let c = |p: &Path| CString::new(p.as_os_str().as_bytes()).map_err(|_| StorageError::sys(format!("path {}", p.display()))(nix::errno::Errno::EINVAL));
    let (source_c, target_c, empty) = (c(source)?, c(target)?, CString::default());
    let what = |step: &str| format!("{step} for the idmapped {}", source.display());
    // SAFETY: plain system calls on NUL-terminated paths and our own struct.
    unsafe {
        let tree = libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, source_c.as_ptr(), OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint | AT_RECURSIVE);
        if tree < 0 {
            return Err(StorageError::sys(what("open_tree"))(nix::errno::Errno::last()));
        }
        let tree = OwnedFd::from_raw_fd(tree as i32);
        let attr = MountAttr { attr_set: MOUNT_ATTR_IDMAP, attr_clr: 0, propagation: 0, userns_fd: userns.as_raw_fd() as u64 };
        let set = libc::syscall(libc::SYS_mount_setattr, tree.as_raw_fd(), empty.as_ptr(), libc::AT_EMPTY_PATH as libc::c_uint, &attr as *const MountAttr, std::mem::size_of::<MountAttr>());
        if set < 0 {
            return Err(StorageError::sys(what("mount_setattr (idmapped mounts need Linux 5.12 and a file system that takes them)"))(nix::errno::Errno::last()));
        }
        let moved = libc::syscall(libc::SYS_move_mount, tree.as_raw_fd(), empty.as_ptr(), libc::AT_FDCWD, target_c.as_ptr(), MOVE_MOUNT_F_EMPTY_PATH);
        if moved < 0 {
            return Err(StorageError::sys(what("move_mount"))(nix::errno::Errno::last()));
        }
    }
    Ok(())
}

/// Detaches the idmapped layers under `base`, if any, and removes their mount points.
pub fn unbind_layers(base: &Path) -> Result<()> {
    let dir = base.join(DIR);
    let Ok(entries) = std::fs::read_dir(&dir) else { return Ok(()) };
    for entry in entries.flatten() {
        let path = entry.path();
        if super::overlay::is_mounted(&path) {
            explain::step(|| format!("umount {}", path.display()));
            nix::mount::umount2(&path, nix::mount::MntFlags::MNT_DETACH).map_err(StorageError::sys(format!("unmount {}", path.display())))?;
        }
        let _ = std::fs::remove_dir(&path);
    }
    let _ = std::fs::remove_dir(&dir);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_ids_shift_back_into_the_container_and_the_unmapped_overflow() {
        let shift = IdShift { uids: vec![(0, 100_000, 65_536)], gids: vec![(0, 200_000, 10), (10, 300_000, 5)] };
        assert_eq!((shift.uid(100_000), shift.uid(101_000), shift.uid(165_535)), (0, 1000, 65_535));
        assert_eq!((shift.uid(0), shift.uid(165_536)), (OVERFLOW_ID, OVERFLOW_ID));
        assert_eq!((shift.gid(200_009), shift.gid(300_004), shift.gid(300_005)), (9, 14, OVERFLOW_ID));
    }
}
