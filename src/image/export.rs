//! Writing an image's flattened root filesystem as a tar (phase 0's `docker export` step).

use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};

use super::{ImageError, Result};
use crate::explain;

/// Writes the merged view of `layers` (bottom first) as a tar to `out`. With several layers the
/// view comes from a read-only overlay mounted in a private mount namespace of this process,
/// so nothing is left mounted; `scratch` is the (empty, reusable) mount point.
pub fn write_rootfs(layers: &[PathBuf], scratch: &Path, out: impl Write) -> Result<()> {
    let mut builder = tar::Builder::new(out);
    let source = match layers {
        [] => return Err(ImageError::Corrupt("image".into(), "no layers".into())),
        [one] => one.clone(),
        many => merged_view(many, scratch)?,
    };
    append_tree(&mut builder, &source, Path::new("")).map_err(io)?;
    builder.finish().map_err(io)?;
    Ok(())
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
    let lower: Vec<String> = layers.iter().rev().map(|p| p.display().to_string()).collect();
    let data = format!("lowerdir={}", lower.join(":"));
    explain::step(|| format!("mount -t overlay overlay -o ro,{data} {}", target.display()));
    mount(Some("overlay"), target, Some("overlay"), MsFlags::MS_RDONLY, Some(data.as_str())).map_err(sys("mount overlay"))?;
    Ok(target.to_path_buf())
}

/// Appends `dir` (as `prefix`) and everything below it, sorted by name, without following links.
/// Overlay whiteouts (0/0 character devices) are left out: they only mean "deleted".
fn append_tree<W: Write>(builder: &mut tar::Builder<W>, dir: &Path, prefix: &Path) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<std::io::Result<_>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let name = prefix.join(entry.file_name());
        let meta = std::fs::symlink_metadata(&path)?;
        let ft = meta.file_type();
        if ft.is_char_device() && meta.rdev() == 0 {
            continue;
        }
        let mut header = tar::Header::new_gnu();
        header.set_metadata_in_mode(&meta, tar::HeaderMode::Complete);
        if ft.is_dir() {
            builder.append_data(&mut header, &name, std::io::empty())?;
            append_tree(builder, &path, &name)?;
        } else if ft.is_symlink() {
            header.set_size(0);
            builder.append_link(&mut header, &name, std::fs::read_link(&path)?)?;
        } else if ft.is_file() {
            builder.append_data(&mut header, &name, std::fs::File::open(&path)?)?;
        } else if ft.is_char_device() || ft.is_block_device() || ft.is_fifo() {
            header.set_size(0);
            builder.append_data(&mut header, &name, std::io::empty())?;
        }
    }
    Ok(())
}
