//! An app's code archive (tar or tar.gz from elsewhere, so hostile) unpacked into a build
//! directory: the layer unpacker's rules (no `..`, nothing written through a link, size and
//! ratio limits), and then stricter ones for code: no link pointing out of the tree, absolute
//! ones included, and nothing but files, directories and links.

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
    if n == 4 && head == *b"PK\x03\x04" {
        return Err("a zip archive: send the code as tar or tar.gz (tar -czf app.tar.gz -C DIR .)".into());
    }
    let file = std::fs::File::open(archive).map_err(|e| format!("read the upload: {e}"))?;
    crate::storage::unpack::unpack_with(file, dest, &Limits { max_size: MAX_UNPACKED, max_ratio: DEFAULT_MAX_RATIO }).map_err(|e| match e {
        StorageError::BadArchive { reason, .. } => format!("not a tar or tar.gz archive: {reason}"),
        StorageError::UnsafeEntry { entry, reason } => format!("unsafe entry {entry:?}: {reason}"),
        StorageError::OverLimit(why) => why,
        other => other.to_string(),
    })?;
    check_tree(dest, Path::new(""))
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

    #[test]
    fn zip_and_text_are_not_archives() {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), b"PK\x03\x04rest").unwrap();
        assert!(unpack(f.path(), tempfile::tempdir().unwrap().path()).unwrap_err().contains("zip"));
        std::fs::write(f.path(), "just some text, long enough to be read as a tar header block?".repeat(20)).unwrap();
        assert!(unpack(f.path(), tempfile::tempdir().unwrap().path()).unwrap_err().contains("not a tar"));
    }
}
