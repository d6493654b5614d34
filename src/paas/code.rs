//! An app's code archive (tar, tar.gz or zip from elsewhere, so hostile) unpacked into a build
//! directory: the layer unpacker's rules (no `..`, nothing written through a link, size and
//! ratio limits), and then stricter ones for code: no link pointing out of the tree, absolute
//! ones included, and nothing but files, directories and links. A zip is first rewritten as a
//! tar beside it (each entry's declared size counted against the same limit), so one unpacker
//! and one set of rules serve both.

use std::path::Path;

use crate::storage::limits::{Limits, DEFAULT_MAX_RATIO};
use crate::storage::StorageError;

/// The largest unpacked tree a deployment takes.
pub const MAX_UNPACKED: u64 = 1 << 30;

/// Unpacks `archive` into the existing empty directory `dest`; on an error, the caller
/// removes `dest`. The error is a sentence about the archive.
pub fn unpack(archive: &Path, dest: &Path) -> Result<(), String> {
    let mut file = std::fs::File::open(archive).map_err(|e| format!("read the upload: {e}"))?;
    let mut head = [0u8; 4];
    let n = std::io::Read::read(&mut file, &mut head).map_err(|e| format!("read the upload: {e}"))?;
    let zip_tar;
    let archive = if n == 4 && head == *b"PK\x03\x04" {
        zip_tar = tempfile::NamedTempFile::new_in(archive.parent().unwrap_or(Path::new("/tmp"))).map_err(|e| format!("a temp file for the zip's tar: {e}"))?;
        zip_to_tar(archive, zip_tar.path())?;
        zip_tar.path()
    } else {
        archive
    };
    let file = std::fs::File::open(archive).map_err(|e| format!("read the upload: {e}"))?;
    crate::storage::unpack::unpack_with(file, dest, &Limits { max_size: MAX_UNPACKED, max_ratio: DEFAULT_MAX_RATIO }).map_err(|e| match e {
        StorageError::BadArchive { reason, .. } => format!("not a tar or tar.gz archive: {reason}"),
        StorageError::UnsafeEntry { entry, reason } => format!("unsafe entry {entry:?}: {reason}"),
        StorageError::OverLimit(why) => why,
        other => other.to_string(),
    })?;
    check_tree(dest, Path::new(""))
}

/// Rewrites a zip as a plain tar: directories, files (executable when the zip says so) and
/// symlinks, owned by root, mtime 0. A name the tar format refuses (`..`, absolute) refuses the
/// archive; the tar unpacker checks the rest.
fn zip_to_tar(zip_path: &Path, tar_path: &Path) -> Result<(), String> {
    let file = std::fs::File::open(zip_path).map_err(|e| format!("read the upload: {e}"))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| format!("not a zip archive: {e}"))?;
    let out = std::fs::File::create(tar_path).map_err(|e| format!("write the zip's tar: {e}"))?;
    let mut tar = tar::Builder::new(std::io::BufWriter::new(out));
    let mut total = 0u64;
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(|e| format!("not a zip archive: entry {i}: {e}"))?;
        let name = entry.name().map_err(|e| format!("not a zip archive: entry {i}'s name: {e}"))?.into_owned();
        let unsafe_name = |e: std::io::Error| format!("unsafe entry {name:?}: {e}");
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        let mode = entry.unix_mode().unwrap_or(0);
        if entry.is_dir() {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            h.set_size(0);
            tar.append_data(&mut h, &name, std::io::empty()).map_err(unsafe_name)?;
        } else if mode & 0o170000 == 0o120000 {
            let mut target = String::new();
            std::io::Read::read_to_string(&mut std::io::Read::take(&mut entry, 4096), &mut target).map_err(|e| format!("entry {name:?}: {e}"))?;
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_mode(0o777);
            h.set_size(0);
            tar.append_link(&mut h, &name, &target).map_err(unsafe_name)?;
        } else {
            let size = entry.size();
            total = total.saturating_add(size);
            if total > MAX_UNPACKED {
                return Err(format!("the archive unpacks to more than {} (its entries say so)", crate::storage::limits::human(MAX_UNPACKED)));
            }
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(if mode & 0o111 != 0 { 0o755 } else { 0o644 });
            h.set_size(size);
            // Exactly the declared size: an entry that inflates to more is cut there, one that
            // gives less fails the copy.
            tar.append_data(&mut h, &name, std::io::Read::take(&mut entry, size)).map_err(unsafe_name)?;
        }
    }
    tar.into_inner().and_then(|mut w| std::io::Write::flush(&mut w)).map_err(|e| format!("write the zip's tar: {e}"))
}

/// Refuses what a code tree must not hold: links that leave it (absolute ones too: in the
/// app's container they would name the runtime's files, never the app's) and special files.
fn check_tree(root: &Path, rel: &Path) -> Result<(), String> {
    let dir = root.join(rel);
    let entries = std::fs::read_dir(&dir).map_err(|e| format!("read {}: {e}", dir.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("read {}: {e}", dir.display()))?;
        let path = rel.join(entry.file_name());
        let kind = entry.file_type().map_err(|e| format!("stat {}: {e}", path.display()))?;
        if kind.is_dir() {
            check_tree(root, &path)?;
        } else if kind.is_symlink() {
            let target = std::fs::read_link(root.join(&path)).map_err(|e| format!("read link {}: {e}", path.display()))?;
            if target.is_absolute() {
                return Err(format!("unsafe entry {:?}: the link points outside the tree ({})", path.display().to_string(), target.display()));
            }
            crate::storage::unpack::check_symlink(&path, &target).map_err(|why| format!("unsafe entry {:?}: {why}", path.display().to_string()))?;
        } else if !kind.is_file() {
            return Err(format!("unsafe entry {:?}: a device, fifo or socket; code archives hold files, directories and links", path.display().to_string()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> tempfile::NamedTempFile {
        let mut b = tar::Builder::new(Vec::new());
        build(&mut b);
        let bytes = b.into_inner().unwrap();
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), bytes).unwrap();
        f
    }

    fn zero_ids(h: &mut tar::Header) {
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
    }

    fn link(b: &mut tar::Builder<Vec<u8>>, name: &str, target: &str) {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        zero_ids(&mut h);
        b.append_link(&mut h, name, target).unwrap();
    }

    fn file(b: &mut tar::Builder<Vec<u8>>, name: &str, body: &[u8]) {
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        zero_ids(&mut h);
        b.append_data(&mut h, name, body).unwrap();
    }

    #[test]
    fn a_plain_tree_with_an_inner_link_unpacks() {
        let archive = tar_of(|b| {
            file(b, "a/index.html", b"hi");
            link(b, "a/home.html", "index.html");
        });
        let dest = tempfile::tempdir().unwrap();
        unpack(archive.path(), dest.path()).unwrap();
        assert_eq!(std::fs::read(dest.path().join("a/home.html")).unwrap(), b"hi");
    }

    #[test]
    fn links_out_of_the_tree_absolute_ones_too_are_refused() {
        for target in ["/etc/passwd", "../../x"] {
            let archive = tar_of(|b| link(b, "a/l", target));
            let dest = tempfile::tempdir().unwrap();
            let err = unpack(archive.path(), dest.path()).unwrap_err();
            assert!(err.contains("outside the tree"), "{target}: {err}");
        }
    }

    fn zip_of(entries: &[(&str, &[u8])], link: Option<(&str, &str)>) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        let mut z = zip::ZipWriter::new(std::fs::File::create(f.path()).unwrap());
        let opts = zip::write::SimpleFileOptions::default().unix_permissions(0o755);
        for (name, body) in entries {
            if name.ends_with('/') {
                z.add_directory(*name, opts).unwrap();
            } else {
                z.start_file(*name, opts).unwrap();
                std::io::Write::write_all(&mut z, body).unwrap();
            }
        }
        if let Some((name, target)) = link {
            z.add_symlink(name, target, opts).unwrap();
        }
        z.finish().unwrap();
        f
    }

    #[test]
    fn a_zip_unpacks_as_its_tar_would_under_the_same_rules() {
        let archive = zip_of(&[("site/", b""), ("site/index.html", b"hi"), ("run.sh", b"#!/bin/sh")], Some(("site/home.html", "index.html")));
        let dest = tempfile::tempdir().unwrap();
        unpack(archive.path(), dest.path()).unwrap();
        assert_eq!(std::fs::read(dest.path().join("site/home.html")).unwrap(), b"hi");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(dest.path().join("run.sh")).unwrap().permissions().mode() & 0o777, 0o755);
        for (entries, link) in [(vec![("../escape", b"x".as_slice())], None), (vec![], Some(("l", "/etc/passwd"))), (vec![], Some(("l", "../../x")))] {
            let archive = zip_of(&entries, link);
            let err = unpack(archive.path(), tempfile::tempdir().unwrap().path()).unwrap_err();
            assert!(err.contains("unsafe entry") || err.contains("outside the tree"), "{err}");
        }
    }

    #[test]
    fn broken_zips_and_text_are_not_archives() {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), b"PK\x03\x04rest").unwrap();
        assert!(unpack(f.path(), tempfile::tempdir().unwrap().path()).unwrap_err().contains("not a zip archive"));
        std::fs::write(f.path(), "just some text, long enough to be read as a tar header block?".repeat(20)).unwrap();
        assert!(unpack(f.path(), tempfile::tempdir().unwrap().path()).unwrap_err().contains("not a tar"));
    }
}
