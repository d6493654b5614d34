//! Resumable downloads. A blob being fetched is written to `blobs/partial/<hex>`, named by the
//! digest it should have, until it is complete and verified; a pull cut half-way leaves it
//! there, and the next pull of the same blob re-hashes the bytes kept and asks only for the
//! rest. The file is flocked by the process writing it (see `scratch`): a second pull of the
//! same blob at the same moment writes a temp file of its own instead, and `gc` removes the
//! partials no live process owns. Nothing here is a blob of the store until `store` checked
//! its digest.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::blobs::BlobStore;
use super::{sha256_hex, Result, StorageError};

/// The partial downloads of a data root: `blobs/partial/`.
#[derive(Debug, Clone)]
pub struct Partials {
    root: PathBuf,
    dir: PathBuf,
    tmp: PathBuf,
}

/// Where a data root keeps its partial downloads.
pub fn partial_dir(data_root: &Path) -> PathBuf {
    data_root.join("blobs/partial")
}

impl Partials {
    /// The partial downloads under `data_root`.
    pub fn new(data_root: &Path) -> Partials {
        Partials { root: data_root.to_path_buf(), dir: partial_dir(data_root), tmp: data_root.join("blobs/tmp") }
    }

    /// The partial download of `digest` (a `sha256:` digest), owned by this process: the one
    /// kept from an earlier try, with its bytes hashed again, or a new empty one. When another
    /// live process owns it, a temp file of this process's own, which is not kept.
    pub fn open(&self, digest: &str) -> Result<Partial> {
        let hex = sha256_hex(digest).ok_or_else(|| StorageError::Io { what: format!("name a partial download {digest:?}"), err: std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a sha256 digest") })?;
        std::fs::create_dir_all(&self.dir).map_err(StorageError::io(format!("create {}", self.dir.display())))?;
        let path = self.dir.join(hex);
        // Made and owned under the store's lock, as all scratch is (see `scratch`).
        let _adding = super::lock_layers(&self.root, false).map_err(StorageError::io("lock layers.lock"))?;
        match open_owned(&path)? {
            Some(file) => Partial::resume(file, Place::Kept(path)),
            None => self.temp(),
        }
    }

    fn temp(&self) -> Result<Partial> {
        std::fs::create_dir_all(&self.tmp).map_err(StorageError::io(format!("create {}", self.tmp.display())))?;
        let tmp = tempfile::NamedTempFile::new_in(&self.tmp).map_err(StorageError::io("create a temp download"))?;
        super::scratch::own(tmp.as_file().as_fd()).map_err(StorageError::io("lock a temp download"))?;
        let (file, path) = tmp.into_parts();
        Ok(Partial::new(file, Place::Temp(path), Sha256::new(), 0))
    }
}

/// Opens (or makes) the partial at `path` and locks it; None when another process holds it,
/// or when it was renamed or removed between the open and the lock (then it is no longer the
/// partial of that name).
fn open_owned(path: &Path) -> Result<Option<File>> {
    let what = || format!("open {}", path.display());
    let file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).custom_flags(libc::O_NOFOLLOW).open(path).map_err(StorageError::io(what()))?;
    match super::scratch::own(file.as_fd()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => return Ok(None),
        Err(e) => return Err(StorageError::io(format!("lock {}", path.display()))(e)),
    }
    let opened = file.metadata().map_err(StorageError::io(what()))?;
    let same = std::fs::symlink_metadata(path).is_ok_and(|named| named.dev() == opened.dev() && named.ino() == opened.ino());
    Ok(same.then_some(file))
}

enum Place {
    /// `blobs/partial/<hex>`, kept when the download stops.
    Kept(PathBuf),
    /// A temp file, removed when dropped.
    Temp(tempfile::TempPath),
}

/// A download in progress: the bytes so far, hashed as they are written.
pub struct Partial {
    out: std::io::BufWriter<File>,
    place: Place,
    hasher: Sha256,
    len: u64,
}

impl Partial {
    fn new(file: File, place: Place, hasher: Sha256, len: u64) -> Partial {
        Partial { out: std::io::BufWriter::with_capacity(1 << 20, file), place, hasher, len }
    }

    /// Hashes the bytes an earlier try kept; writing then continues after them.
    fn resume(mut file: File, place: Place) -> Result<Partial> {
        let mut hasher = Sha256::new();
        let len = std::io::copy(&mut file, &mut hasher).map_err(StorageError::io("read a partial download"))?;
        file.seek(SeekFrom::End(0)).map_err(StorageError::io("read a partial download"))?;
        Ok(Partial::new(file, place, hasher, len))
    }

    /// How many bytes it holds.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether it is kept for a later try (false for a temp file, while another process owns
    /// the kept one).
    pub fn is_kept(&self) -> bool {
        matches!(self.place, Place::Kept(_))
    }

    /// Drops the bytes held so far, to start from nothing.
    pub fn restart(&mut self) -> Result<()> {
        self.out.flush().map_err(StorageError::io("write a partial download"))?;
        let file = self.out.get_mut();
        file.set_len(0).map_err(StorageError::io("truncate a partial download"))?;
        file.seek(SeekFrom::Start(0)).map_err(StorageError::io("truncate a partial download"))?;
        self.hasher = Sha256::new();
        self.len = 0;
        Ok(())
    }

    /// Appends bytes.
    pub fn append(&mut self, data: &[u8]) -> Result<()> {
        self.out.write_all(data).map_err(StorageError::io("write a partial download"))?;
        self.hasher.update(data);
        self.len += data.len() as u64;
        Ok(())
    }

    /// `sha256:<hex>` of the bytes held.
    pub fn digest(&self) -> String {
        format!("sha256:{:x}", self.hasher.clone().finalize())
    }

    /// Moves the download into `store` as the blob `expected` when its digest is that; on a
    /// mismatch it is removed and nothing is stored. With `lend_to` (a dir on the same
    /// filesystem), the verified bytes are hard-linked there as `<hex>` before they enter the
    /// store: a pull's owned scratch layout, which keeps `gc` from taking the blob for
    /// abandoned until the pull records it (see `storage::lock_layers`).
    pub fn store(mut self, store: &BlobStore, expected: &str, lend_to: Option<&Path>) -> Result<()> {
        let actual = self.digest();
        if actual != expected {
            self.discard();
            return Err(StorageError::DigestMismatch { expected: expected.into(), actual });
        }
        self.out.flush().map_err(StorageError::io("write a partial download"))?;
        let to = store.path(expected);
        std::fs::create_dir_all(to.parent().expect("a blob path has a parent")).map_err(StorageError::io("create blobs/sha256"))?;
        let from: &Path = match &self.place {
            Place::Kept(p) => p,
            Place::Temp(p) => p,
        };
        if let Some(dir) = lend_to {
            let link = dir.join(super::hex(expected));
            match std::fs::hard_link(from, &link) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(StorageError::io(format!("link {}", link.display()))(e)),
            }
        }
        std::fs::rename(from, &to).map_err(StorageError::io(format!("store {}", to.display())))?;
        if let Place::Temp(p) = self.place {
            // Renamed away: nothing is left to remove.
            let _ = p.keep();
        }
        Ok(())
    }

    /// Removes the download (its bytes are wrong, or not wanted again).
    pub fn discard(self) {
        if let Place::Kept(p) = &self.place {
            let _ = std::fs::remove_file(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest_of(bytes: &[u8]) -> String {
        super::super::sha256_digest(bytes)
    }

    #[test]
    fn a_kept_partial_is_hashed_again_and_continued() {
        let root = tempfile::tempdir().unwrap();
        let partials = Partials::new(root.path());
        let blob = b"hello, resumable world";
        let mut first = partials.open(&digest_of(blob)).unwrap();
        assert!(first.is_kept() && first.is_empty());
        first.append(&blob[..7]).unwrap();
        drop(first);
        let mut again = partials.open(&digest_of(blob)).unwrap();
        assert_eq!(again.len(), 7);
        again.append(&blob[7..]).unwrap();
        let store = BlobStore::new(root.path());
        let lent = root.path().join("lent");
        std::fs::create_dir(&lent).unwrap();
        again.store(&store, &digest_of(blob), Some(&lent)).unwrap();
        assert_eq!(std::fs::read(lent.join(sha256_hex(&digest_of(blob)).unwrap())).unwrap(), blob, "lent before it was stored");
        assert_eq!(store.read(&digest_of(blob)).unwrap(), blob);
        assert_eq!(std::fs::read_dir(partial_dir(root.path())).unwrap().count(), 0, "the partial became the blob");
    }

    #[test]
    fn a_wrong_digest_stores_nothing_and_drops_the_partial() {
        let root = tempfile::tempdir().unwrap();
        let partials = Partials::new(root.path());
        let want = digest_of(b"right");
        let mut p = partials.open(&want).unwrap();
        p.append(b"wrong").unwrap();
        let err = p.store(&BlobStore::new(root.path()), &want, None).unwrap_err();
        assert!(matches!(err, StorageError::DigestMismatch { .. }), "{err}");
        assert!(!BlobStore::new(root.path()).exists(&want));
        assert_eq!(std::fs::read_dir(partial_dir(root.path())).unwrap().count(), 0);
    }

    #[test]
    fn restart_forgets_the_bytes() {
        let root = tempfile::tempdir().unwrap();
        let want = digest_of(b"abc");
        let mut p = Partials::new(root.path()).open(&want).unwrap();
        p.append(b"xyz").unwrap();
        p.restart().unwrap();
        p.append(b"abc").unwrap();
        assert_eq!(p.digest(), want);
    }

    #[test]
    fn a_partial_another_process_owns_is_left_alone() {
        let root = tempfile::tempdir().unwrap();
        let partials = Partials::new(root.path());
        let want = digest_of(b"shared");
        let mut held = partials.open(&want).unwrap();
        held.append(b"sha").unwrap();
        held.out.flush().unwrap();
        // flock is per open file: a second open in this process stands for another process.
        let mut other = partials.open(&want).unwrap();
        assert!(!other.is_kept() && other.is_empty());
        other.append(b"shared").unwrap();
        other.store(&BlobStore::new(root.path()), &want, None).unwrap();
        drop(held);
        assert_eq!(std::fs::read(partial_dir(root.path()).join(sha256_hex(&want).unwrap())).unwrap(), b"sha");
        assert_eq!(std::fs::read_dir(root.path().join("blobs/tmp")).unwrap().count(), 0);
    }

    #[test]
    fn only_sha256_digests_name_a_partial() {
        let root = tempfile::tempdir().unwrap();
        assert!(Partials::new(root.path()).open("sha256:../../etc/passwd").is_err());
    }
}
