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

/// The `-o` data of an overlay mount; `lowers` are bottom first, as images list layers.
pub fn options(lowers: &[PathBuf], dirs: &OverlayDirs) -> String {
    let lower: Vec<String> = lowers.iter().rev().map(|p| p.display().to_string()).collect();
    format!("lowerdir={},upperdir={},workdir={}", lower.join(":"), dirs.upper.display(), dirs.work.display())
}

/// The mount data must fit in one page (with room to spare).
const MAX_DATA: usize = 3900;

/// Creates upper/work/merged and mounts the overlay. With so many layers that their paths
/// overflow the mount data, the lower dirs are named by short links beside the upper dir
/// (`l/0`, `l/1`, ...) and mounted from there, as Docker's overlay2 does.
///
/// With `idmap`, the layers are bound through idmapped mounts first (`idmap::bind_layers`),
/// and the upper dir belongs to the container's root.
pub fn mount_overlay(lowers: &[PathBuf], dirs: &OverlayDirs, idmap: Option<&Idmapped>) -> Result<()> {
    for d in [&dirs.upper, &dirs.work, &dirs.merged] {
        std::fs::create_dir_all(d).map_err(StorageError::io(format!("create {}", d.display())))?;
    }
    let bound;
    let lowers = match idmap {
        None => lowers,
        Some(idmap) => {
            let base = dirs.upper.parent().unwrap_or(Path::new("/"));
            let (uid, gid) = idmap.owner;
            explain::step(|| format!("chown {uid}:{gid} {}   # the container's root, as the host sees it", dirs.upper.display()));
            nix::unistd::chown(&dirs.upper, Some(nix::unistd::Uid::from_raw(uid)), Some(nix::unistd::Gid::from_raw(gid))).map_err(StorageError::sys(format!("chown {}", dirs.upper.display())))?;
            bound = super::idmap::bind_layers(lowers, base, &idmap.userns).inspect_err(|_| {
                let _ = super::idmap::unbind_layers(base);
            })?;
            &bound[..]
        }
    };
    let data = options(lowers, dirs);
    if data.len() <= MAX_DATA {
        explain::step(|| format!("mount -t overlay overlay -o {data} {}", dirs.merged.display()));
        return mount(Some("overlay"), &dirs.merged, Some("overlay"), MsFlags::empty(), Some(data.as_str()))
            .map_err(StorageError::sys(format!("mount overlay on {}", dirs.merged.display())));
    }
    mount_by_short_links(lowers, dirs)
}

fn mount_by_short_links(lowers: &[PathBuf], dirs: &OverlayDirs) -> Result<()> {
    let base = dirs.upper.parent().unwrap_or(Path::new("/")).to_path_buf();
    let links = base.join("l");
    std::fs::create_dir_all(&links).map_err(StorageError::io(format!("create {}", links.display())))?;
    let mut short = Vec::new();
    for (i, lower) in lowers.iter().enumerate() {
        let link = links.join(i.to_string());
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(lower, &link).map_err(StorageError::io(format!("link {}", link.display())))?;
        short.push(PathBuf::from(format!("l/{i}")));
    }
    let rel = OverlayDirs { upper: "upper".into(), work: "work".into(), merged: "rootfs".into() };
    let data = options(&short, &rel);
    if data.len() > MAX_DATA {
        return Err(StorageError::TooManyLayers(lowers.len()));
    }
    explain::step(|| format!("cd {} && mount -t overlay overlay -o {data} rootfs", base.display()));
    // Relative names resolve against the working directory, so the mount happens from `base`.
    let back = std::env::current_dir().map_err(StorageError::io("find the working directory"))?;
    std::env::set_current_dir(&base).map_err(StorageError::io(format!("cd {}", base.display())))?;
    let mounted = mount(Some("overlay"), "rootfs", Some("overlay"), MsFlags::empty(), Some(data.as_str()));
    std::env::set_current_dir(&back).map_err(StorageError::io(format!("cd {}", back.display())))?;
    mounted.map_err(StorageError::sys(format!("mount overlay on {}", dirs.merged.display())))
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
        assert_eq!(options(&lowers, &dirs), "lowerdir=/l/b:/l/a,upperdir=/c/upper,workdir=/c/work");
    }
}
