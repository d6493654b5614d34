//! Overlay mounts: read-only layers below, a per-container upper and work dir, merged on top.

use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use super::idmap::Idmapped;
use super::{Result, StorageError};
use crate::explain;

/// The directories of one container's writable layer.
#[derive(Debug, Clone)]
pub struct OverlayDirs {
    /// Where the container's writes land.
    pub upper: PathBuf,
    /// overlayfs's scratch dir (same filesystem as upper).
    pub work: PathBuf,
    /// The merged view: the container's rootfs.
    pub merged: PathBuf,
}

impl OverlayDirs {
    /// The standard layout inside a container directory.
    pub fn in_dir(dir: &Path) -> OverlayDirs {
        OverlayDirs { upper: dir.join("upper"), work: dir.join("work"), merged: dir.join("rootfs") }
    }
}

/// The `-o` data of an overlay mount: `lowers` bottom first, as images list layers, and the
/// upper and work dirs of a writable one.
pub fn options(lowers: &[PathBuf], rw: Option<Writable>) -> String {
    let lower: Vec<String> = lowers.iter().rev().map(|p| p.display().to_string()).collect();
    let mut data = format!("lowerdir={}", lower.join(":"));
    if let Some(rw) = rw {
        data += &format!(",upperdir={},workdir={}", rw.upper.display(), rw.work.display());
        if rw.volatile {
            data += ",volatile";
        }
    }
    data
}

/// The mount data must fit in one page (with room to spare).
const MAX_DATA: usize = 3900;

/// Creates upper/work/merged and mounts the container's overlay on its rootfs (`mount_layers`,
/// the short links in `l/` beside the upper dir).
///
/// With `idmap`, the layers are bound through idmapped mounts first (`idmap::bind_layers`),
/// and the upper dir belongs to the container's root.
///
/// `volatile`, for a container removed when it exits (as Podman does for `run --rm`): the
/// overlay never syncs its upper dir, so the unmount does not wait for writes to reach the
/// disk (about 1 ms for a container that wrote nothing, tens for one that wrote files). The
/// kernel refuses to mount such an upper dir again after a crash, and it is never mounted
/// again: the container goes at its exit, or at `gc` after a crash.
pub fn mount_overlay(lowers: &[PathBuf], dirs: &OverlayDirs, idmap: Option<&Idmapped>, volatile: bool) -> Result<()> {
    for d in [&dirs.upper, &dirs.work, &dirs.merged] {
        std::fs::create_dir_all(d).map_err(StorageError::io(format!("create {}", d.display())))?;
    }
    let base = dirs.upper.parent().unwrap_or(Path::new("/"));
    let bound;
    let lowers = match idmap {
        None => lowers,
        Some(idmap) => {
            let (uid, gid) = idmap.owner;
            explain::step(|| format!("chown {uid}:{gid} {}   # the container's root, as the host sees it", dirs.upper.display()));
            nix::unistd::chown(&dirs.upper, Some(nix::unistd::Uid::from_raw(uid)), Some(nix::unistd::Gid::from_raw(gid))).map_err(StorageError::sys(format!("chown {}", dirs.upper.display())))?;
            bound = super::idmap::bind_layers(lowers, base, &idmap.userns).inspect_err(|_| {
                let _ = super::idmap::unbind_layers(base);
            })?;
            &bound[..]
        }
    };
    let rw = Writable { upper: &dirs.upper, work: &dirs.work, volatile };
    mount_layers(lowers, Some(rw), &dirs.merged, &base.join("l"))
}

/// The writable part of an overlay: its upper and work dirs, and whether it skips syncs.
#[derive(Debug, Clone, Copy)]
pub struct Writable<'a> {
    pub upper: &'a Path,
    pub work: &'a Path,
    pub volatile: bool,
}

/// Mounts the overlay of `lowers` (bottom first) on `target`: writable into `rw`'s upper and
/// work dirs, or read-only without. With so many layers that their paths overflow the mount
/// data (some 45 layers of the data root's full paths), the lower dirs are named by short
/// links in `links` (`0`, `1`, ...) and mounted from there by those names, as Docker's
/// overlay2 does. The kernel resolves the names when it mounts, so the links may go after.
pub fn mount_layers(lowers: &[PathBuf], rw: Option<Writable>, target: &Path, links: &Path) -> Result<()> {
    let (flags, ro) = if rw.is_some() { (MsFlags::empty(), "") } else { (MsFlags::MS_RDONLY, "ro,") };
    let data = options(lowers, rw);
    if data.len() <= MAX_DATA {
        explain::step(|| format!("mount -t overlay overlay -o {ro}{data} {}", target.display()));
        return mount(Some("overlay"), target, Some("overlay"), flags, Some(data.as_str()))
            .map_err(StorageError::sys(format!("mount overlay on {}", target.display())));
    }
    // Every other name is made absolute: the mount happens from `links`.
    let absolute = |p: &Path| std::path::absolute(p).map_err(StorageError::io(format!("resolve {}", p.display())));
    let target = absolute(target)?;
    let (upper, work) = match rw {
        Some(rw) => (absolute(rw.upper)?, absolute(rw.work)?),
        None => (PathBuf::new(), PathBuf::new()),
    };
    let rw = rw.map(|rw| Writable { upper: &upper, work: &work, volatile: rw.volatile });
    std::fs::create_dir_all(links).map_err(StorageError::io(format!("create {}", links.display())))?;
    let mut short = Vec::new();
    for (i, lower) in lowers.iter().enumerate() {
        let link = links.join(i.to_string());
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(absolute(lower)?, &link).map_err(StorageError::io(format!("link {}", link.display())))?;
        short.push(PathBuf::from(i.to_string()));
    }
    let data = options(&short, rw);
    if data.len() > MAX_DATA {
        return Err(StorageError::TooManyLayers(lowers.len()));
    }
    explain::step(|| format!("cd {} && mount -t overlay overlay -o {ro}{data} {}", links.display(), target.display()));
    let back = std::env::current_dir().map_err(StorageError::io("find the working directory"))?;
    std::env::set_current_dir(links).map_err(StorageError::io(format!("cd {}", links.display())))?;
    let mounted = mount(Some("overlay"), &target, Some("overlay"), flags, Some(data.as_str()));
    std::env::set_current_dir(&back).map_err(StorageError::io(format!("cd {}", back.display())))?;
    mounted.map_err(StorageError::sys(format!("mount overlay on {}", target.display())))
}

/// Unmounts the merged view, if mounted, then the idmapped layers under it, if any.
pub fn unmount(merged: &Path) -> Result<()> {
    if is_mounted(merged) {
        explain::step(|| format!("umount {}", merged.display()));
        match umount2(merged, MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
            Err(e) => return Err(StorageError::sys(format!("unmount {}", merged.display()))(e)),
        }
    }
    super::idmap::unbind_layers(merged.parent().unwrap_or(Path::new("/")))
}

/// Whether `path` is a mount point in our mount namespace.
pub fn is_mounted(path: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else { return false };
    let want = path.display().to_string();
    text.lines().any(|l| l.split(' ').nth(4).is_some_and(|mp| unescape(mp) == want))
}

fn unescape(s: &str) -> String {
    s.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_layer_is_the_top_lower() {
        let dirs = OverlayDirs::in_dir(Path::new("/c"));
        let lowers = [PathBuf::from("/l/a"), PathBuf::from("/l/b")];
        let rw = Writable { upper: &dirs.upper, work: &dirs.work, volatile: false };
        assert_eq!(options(&lowers, Some(rw)), "lowerdir=/l/b:/l/a,upperdir=/c/upper,workdir=/c/work");
        assert_eq!(options(&lowers, Some(Writable { volatile: true, ..rw })), "lowerdir=/l/b:/l/a,upperdir=/c/upper,workdir=/c/work,volatile");
        assert_eq!(options(&lowers, None), "lowerdir=/l/b:/l/a");
    }
}
