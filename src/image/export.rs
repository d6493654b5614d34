//! Writing an image's flattened root filesystem as a tar (phase 0's `docker export` step).

use std::io::Write;
use std::path::{Path, PathBuf};

use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};

use super::{ImageError, Result};
use crate::storage::overlay;
use crate::storage::pack::{self, PackOptions, Whiteouts};

/// Writes the merged view of `layers` (bottom first) as a tar to `out`. With several layers the
/// view comes from a read-only overlay mounted in a private mount namespace of this process,
/// so nothing is left mounted; `scratch` is the (empty, reusable) mount point.
pub fn write_rootfs(layers: &[PathBuf], scratch: &Path, out: impl Write) -> Result<()> {
    let source = match layers {
        [] => return Err(ImageError::Corrupt("image".into(), "no layers".into())),
        [one] => one.clone(),
        many => merged_view(many, scratch)?,
    };
    // A single layer dir may hold overlay whiteouts; they only mean "deleted".
    Ok(pack::write_tar(&source, PackOptions { keep_mtime: true, whiteouts: Whiteouts::Drop, ids: None }, out)?)
}

fn io(e: std::io::Error) -> ImageError {
    ImageError::Write(e)
}

fn merged_view(layers: &[PathBuf], target: &Path) -> Result<PathBuf> {
    let sys = |what: &str| {
        let what = what.to_string();
        move |e: nix::Error| ImageError::Unreadable { path: what, reason: e.to_string() }
    };
    unshare(CloneFlags::CLONE_NEWNS).map_err(sys("unshare mount namespace"))?;
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>).map_err(sys("make / private"))?;
    std::fs::create_dir_all(target).map_err(io)?;
    // Short links, if the layers need them, of this export's own: exports run side by side,
    // each in its own mount namespace over the one mount point.
    let links = target.with_file_name(format!("export-links-{}", std::process::id()));
    let mounted = overlay::mount_layers(layers, None, target, &links);
    let _ = std::fs::remove_dir_all(&links);
    mounted?;
    Ok(target.to_path_buf())
}
