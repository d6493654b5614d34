//! The init layer: a lower layer laid on top of an image's, holding the empty files the engine
//! binds its /etc/hostname, /etc/hosts and /etc/resolv.conf over (Docker's "-init" layer).
//!
//! Without it, an image that lacks them (busybox, most minimal images) has the runtime make
//! them in the merged rootfs at every start: overlay copies /etc up into the container's upper
//! dir and creates three files there, five or so new inodes per container, which is a good
//! part of what `run --rm` costs on a disk. With it, the bind targets are already there and
//! nothing is copied up.
//!
//! One layer serves every image whose top /etc has the same mode and owner (the merged /etc
//! takes its attributes from the topmost layer that has it, now this one), so a data root holds
//! one or two: `init/<mode>-<uid>-<gid>/etc/{hostname,hosts,resolv.conf}`. It is made once,
//! staged in an owned `init/.unpack-*` dir (storage::scratch; `gc` removes an abandoned one)
//! and renamed into place, so a reader never sees a half-made one.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{Result, StorageError};

/// The files the engine binds into every container's /etc.
pub const BIND_TARGETS: [&str; 3] = ["hostname", "hosts", "resolv.conf"];

/// The /etc a merged view of `lowers` (bottom first) shows: its mode and owner, or None when
/// the top /etc is not a directory (a link, say), which an init layer would hide.
fn top_etc(lowers: &[PathBuf]) -> Result<Option<(u32, u32, u32)>> {
    for layer in lowers.iter().rev() {
        let etc = layer.join("etc");
        let meta = match std::fs::symlink_metadata(&etc) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(StorageError::io(format!("inspect {}", etc.display()))(e)),
        };
        if is_whiteout(&meta) {
            break;
        }
        if !meta.is_dir() {
            return Ok(None);
        }
        return Ok(Some((meta.mode() & 0o7777, meta.uid(), meta.gid())));
    }
    // No /etc at all: the runtime would make one, as root, 0755.
    Ok(Some((0o755, 0, 0)))
}

/// An overlay whiteout: a character device 0:0.
fn is_whiteout(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::FileTypeExt;
    meta.file_type().is_char_device() && meta.rdev() == 0
}

/// The init layer for an image of `lowers`, made under `data_root`/init if it is not there
/// yet; None when the image's /etc is not a directory (then the runtime makes its bind
/// targets, as before). The caller holds the store's lock shared (`lock_layers`), as the
/// engine does until its overlay is mounted: the staging dir is scratch, owned under it, so
/// `gc` (holding it exclusive) never finds one made but not yet owned.
pub fn for_layers(data_root: &Path, lowers: &[PathBuf]) -> Result<Option<PathBuf>> {
    let Some((mode, uid, gid)) = top_etc(lowers)? else { return Ok(None) };
    let dir = data_root.join("init");
    let layer = path_of(data_root, mode, uid, gid);
    if layer.join("etc").is_dir() {
        return Ok(Some(layer));
    }
    std::fs::create_dir_all(&dir).map_err(StorageError::io(format!("create {}", dir.display())))?;
    // Unique within this process too: `paas serve` starts containers from several threads.
    static STAGED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = STAGED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let staging = dir.join(format!(".unpack-{}-{n}", std::process::id()));
    let made = make(&staging, mode, uid, gid).and_then(|_owned| {
        match std::fs::rename(&staging, &layer) {
            Ok(()) => Ok(()),
            // Another run made it first: theirs serves as well.
            Err(e) if layer.join("etc").is_dir() && matches!(e.raw_os_error(), Some(libc::EEXIST | libc::ENOTEMPTY)) => Ok(()),
            Err(e) => Err(StorageError::io(format!("rename {} to {}", staging.display(), layer.display()))(e)),
        }
    });
    if staging.exists() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    made.map(|()| Some(layer))
}

/// The init layer a container of `lowers` is mounted with, if there is one, without making it
/// (what `inspect` shows among the lower dirs).
pub fn existing(data_root: &Path, lowers: &[PathBuf]) -> Option<PathBuf> {
    let (mode, uid, gid) = top_etc(lowers).ok()??;
    let layer = path_of(data_root, mode, uid, gid);
    layer.join("etc").is_dir().then_some(layer)
}

/// Where the init layer for an /etc of this mode and owner lives.
fn path_of(data_root: &Path, mode: u32, uid: u32, gid: u32) -> PathBuf {
    data_root.join("init").join(format!("{mode:o}-{uid}-{gid}"))
}

/// Fills `staging` (owned while the returned handle is open): etc/ with the given mode and
/// owner, and the empty bind targets in it.
fn make(staging: &Path, mode: u32, uid: u32, gid: u32) -> Result<std::fs::File> {
    if staging.exists() {
        std::fs::remove_dir_all(staging).map_err(StorageError::io(format!("remove {}", staging.display())))?;
    }
    std::fs::create_dir(staging).map_err(StorageError::io(format!("create {}", staging.display())))?;
    let owned = super::scratch::own_dir(staging).map_err(StorageError::io(format!("own {}", staging.display())))?;
    let etc = staging.join("etc");
    std::fs::create_dir(&etc).map_err(StorageError::io(format!("create {}", etc.display())))?;
    for name in BIND_TARGETS {
        let file = etc.join(name);
        std::fs::File::create(&file).map_err(StorageError::io(format!("create {}", file.display())))?;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).map_err(StorageError::io(format!("chmod {}", file.display())))?;
    }
    std::os::unix::fs::lchown(&etc, Some(uid), Some(gid)).map_err(StorageError::io(format!("chown {}", etc.display())))?;
    std::fs::set_permissions(&etc, std::fs::Permissions::from_mode(mode)).map_err(StorageError::io(format!("chmod {}", etc.display())))?;
    std::fs::set_permissions(staging, std::fs::Permissions::from_mode(0o755)).map_err(StorageError::io(format!("chmod {}", staging.display())))?;
    Ok(owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(root: &Path, name: &str) -> PathBuf {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn the_layer_copies_the_top_etc_mode_and_is_made_once() {
        let tmp = tempfile::tempdir().unwrap();
        let bottom = layer(tmp.path(), "bottom");
        std::fs::create_dir(bottom.join("etc")).unwrap();
        std::fs::set_permissions(bottom.join("etc"), std::fs::Permissions::from_mode(0o750)).unwrap();
        let made = for_layers(tmp.path(), std::slice::from_ref(&bottom)).unwrap().expect("an init layer");
        let etc = std::fs::metadata(made.join("etc")).unwrap();
        assert_eq!(etc.mode() & 0o7777, 0o750);
        for name in BIND_TARGETS {
            let file = std::fs::metadata(made.join("etc").join(name)).unwrap();
            assert!(file.is_file() && file.len() == 0, "{name}");
        }
        assert_eq!(for_layers(tmp.path(), std::slice::from_ref(&bottom)).unwrap(), Some(made.clone()), "the same layer again");
        assert_eq!(existing(tmp.path(), &[bottom]), Some(made.clone()), "found without making");
        let names: Vec<_> = std::fs::read_dir(tmp.path().join("init")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 1, "nothing staged is left: {names:?}");
    }

    #[test]
    fn an_etc_that_is_a_link_gets_no_layer_and_a_missing_one_gets_root_0755() {
        let tmp = tempfile::tempdir().unwrap();
        let linked = layer(tmp.path(), "linked");
        std::os::unix::fs::symlink("private/etc", linked.join("etc")).unwrap();
        assert_eq!(for_layers(tmp.path(), std::slice::from_ref(&linked)).unwrap(), None);
        let bare = layer(tmp.path(), "bare");
        assert_eq!(existing(tmp.path(), std::slice::from_ref(&bare)), None, "not made yet");
        let made = for_layers(tmp.path(), &[bare]).unwrap().expect("an init layer");
        assert!(made.ends_with("755-0-0"), "{}", made.display());
    }

    #[test]
    fn the_topmost_etc_decides() {
        let tmp = tempfile::tempdir().unwrap();
        let bottom = layer(tmp.path(), "bottom");
        std::os::unix::fs::symlink("elsewhere", bottom.join("etc")).unwrap();
        let top = layer(tmp.path(), "top");
        std::fs::create_dir(top.join("etc")).unwrap();
        std::fs::set_permissions(top.join("etc"), std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(for_layers(tmp.path(), &[bottom.clone(), top.clone()]).unwrap().is_some(), "the top layer's directory hides the link");
        assert_eq!(for_layers(tmp.path(), &[top, bottom]).unwrap(), None, "the link on top");
    }
}
