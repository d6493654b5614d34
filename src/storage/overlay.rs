//! Overlay mounts: read-only layers below, a per-container upper and work dir, merged on top.

use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

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

/// Creates upper/work/merged and mounts the overlay.
pub fn mount_overlay(lowers: &[PathBuf], dirs: &OverlayDirs) -> Result<()> {
    for d in [&dirs.upper, &dirs.work, &dirs.merged] {
        std::fs::create_dir_all(d).map_err(StorageError::io(format!("create {}", d.display())))?;
    }
    let data = options(lowers, dirs);
    explain::step(|| format!("mount -t overlay overlay -o {data} {}", dirs.merged.display()));
    mount(Some("overlay"), &dirs.merged, Some("overlay"), MsFlags::empty(), Some(data.as_str()))
        .map_err(StorageError::sys(format!("mount overlay on {}", dirs.merged.display())))
}

/// Unmounts the merged view, if mounted.
pub fn unmount(merged: &Path) -> Result<()> {
    if !is_mounted(merged) {
        return Ok(());
    }
    explain::step(|| format!("umount {}", merged.display()));
    match umount2(merged, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => Ok(()),
        Err(e) => Err(StorageError::sys(format!("unmount {}", merged.display()))(e)),
    }
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
