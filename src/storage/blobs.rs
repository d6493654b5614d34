//! The content-addressable blob store: `blobs/sha256/<hex>`, written to a temp name, hashed
//! while streaming, and renamed into place only once the digest is known (and verified).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{hex, Result, StorageError};

/// A blob store rooted at `<data root>/blobs`.
#[derive(Debug, Clone)]
pub struct BlobStore {
    root: PathBuf,
}

impl BlobStore {
    /// The store under `data_root`.
    pub fn new(data_root: &Path) -> BlobStore {
        BlobStore { root: data_root.join("blobs") }
    }

    /// Where a blob lives (whether or not it exists): `sha256/<hex>`, or `sha512/<hex>` for
    /// the sha512 name of a blob (a hard link to its sha256 file).
    pub fn path(&self, digest: &str) -> PathBuf {
        match digest.strip_prefix("sha512:") {
            Some(h) => self.root.join("sha512").join(h),
            None => self.root.join("sha256").join(hex(digest)),
        }
    }

    /// Gives a stored blob its sha512 name too, after checking the content has that digest.
    /// Returns false (and links nothing) on a mismatch.
    pub fn link_sha512(&self, sha256: &str, sha512: &str) -> Result<bool> {
        use sha2::Sha512;
        let from = self.path(sha256);
        let mut file = std::fs::File::open(&from).map_err(StorageError::io(format!("open blob {sha256}")))?;
        let mut hasher = Sha512::new();
        std::io::copy(&mut file, &mut hasher).map_err(StorageError::io(format!("read blob {sha256}")))?;
        if format!("sha512:{:x}", hasher.finalize()) != sha512 {
            return Ok(false);
        }
        let to = self.path(sha512);
        std::fs::create_dir_all(self.root.join("sha512")).map_err(StorageError::io("create blobs/sha512"))?;
        match std::fs::hard_link(&from, &to) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(true),
            Err(e) => Err(StorageError::io(format!("link {}", to.display()))(e)),
        }
    }

    /// Whether a blob is stored.
    pub fn exists(&self, digest: &str) -> bool {
        self.path(digest).is_file()
    }

    /// Streams `reader` into the store; returns (digest, size). With `expected`, a mismatch
    /// stores nothing.
    pub fn put(&self, reader: &mut dyn Read, expected: Option<&str>) -> Result<(String, u64)> {
        let mut writer = self.writer()?;
        std::io::copy(reader, &mut writer).map_err(StorageError::io("store blob"))?;
        writer.commit(expected)
    }

    /// A writer that becomes a blob on `commit`; dropped uncommitted, it leaves nothing.
    pub fn writer(&self) -> Result<BlobWriter> {
        self.writer_in(&self.root.join("tmp"))
    }

    /// `writer`, staging in `tmp_dir` (on the store's filesystem) instead of `blobs/tmp`.
    pub fn writer_in(&self, tmp_dir: &Path) -> Result<BlobWriter> {
        std::fs::create_dir_all(self.root.join("sha256")).map_err(StorageError::io("create blobs/sha256"))?;
        std::fs::create_dir_all(tmp_dir).map_err(StorageError::io(format!("create {}", tmp_dir.display())))?;
        let tmp = tempfile::NamedTempFile::new_in(tmp_dir).map_err(StorageError::io("create temp blob"))?;
        // Owned while open: a writer that dies leaves a file `gc` knows to remove.
        super::scratch::own(std::os::fd::AsFd::as_fd(tmp.as_file())).map_err(StorageError::io("lock temp blob"))?;
        Ok(BlobWriter { out: Some(std::io::BufWriter::with_capacity(1 << 20, tmp)), hasher: Sha256::new(), size: 0, store: self.clone() })
    }

    /// A writer that only hashes: for a blob the store has already, whose bytes read from
    /// elsewhere are checked on the way through but not written again. `commit` checks the
    /// digest and stores nothing.
    pub fn verifier(&self) -> BlobWriter {
        BlobWriter { out: None, hasher: Sha256::new(), size: 0, store: self.clone() }
    }

    /// Stores bytes; returns (digest, size).
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<(String, u64)> {
        self.put(&mut &bytes[..], None)
    }

    /// Reads a whole (small) blob.
    pub fn read(&self, digest: &str) -> Result<Vec<u8>> {
        std::fs::read(self.path(digest)).map_err(StorageError::io(format!("read blob {digest}")))
    }
}

/// A blob being written: hashed as it streams into a temp file (or only hashed, from
/// `verifier`).
pub struct BlobWriter {
    out: Option<std::io::BufWriter<tempfile::NamedTempFile>>,
    hasher: Sha256,
    size: u64,
    store: BlobStore,
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = match &mut self.out {
            Some(out) => out.write(buf)?,
            None => buf.len(),
        };
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.as_mut().map_or(Ok(()), Write::flush)
    }
}

impl BlobWriter {
    /// How many bytes it holds so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Renames the blob into place under its digest (a verifier has nothing to rename); with
    /// `expected`, a mismatch stores nothing. Returns (digest, size).
    pub fn commit(self, expected: Option<&str>) -> Result<(String, u64)> {
        let digest = format!("sha256:{:x}", self.hasher.finalize());
        if let Some(want) = expected {
            if want != digest {
                return Err(StorageError::DigestMismatch { expected: want.into(), actual: digest });
            }
        }
        let Some(out) = self.out else { return Ok((digest, self.size)) };
        let tmp = out.into_inner().map_err(|e| StorageError::io("write blob")(e.into_error()))?;
        let path = self.store.path(&digest);
        if !path.exists() {
            tmp.persist(&path).map_err(|e| StorageError::io(format!("store {}", path.display()))(e.error))?;
        }
        Ok((digest, self.size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_content_is_stored_once_and_a_wrong_digest_stores_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let store = BlobStore::new(tmp.path());
        let (d1, n) = store.put_bytes(b"hello").unwrap();
        let (d2, _) = store.put_bytes(b"hello").unwrap();
        assert_eq!(d1, d2);
        assert_eq!(n, 5);
        assert_eq!(d1, "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
        assert_eq!(store.read(&d1).unwrap(), b"hello");
        let err = store.put(&mut &b"other"[..], Some(&d1)).unwrap_err();
        assert!(matches!(err, StorageError::DigestMismatch { .. }));
        assert_eq!(std::fs::read_dir(tmp.path().join("blobs/sha256")).unwrap().count(), 1);
        assert_eq!(std::fs::read_dir(tmp.path().join("blobs/tmp")).unwrap().count(), 0);
    }

    #[test]
    fn a_verifier_checks_and_writes_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let store = BlobStore::new(tmp.path());
        let (d, _) = store.put_bytes(b"hello").unwrap();
        let mut v = store.verifier();
        v.write_all(b"hello").unwrap();
        assert_eq!(v.commit(Some(&d)).unwrap(), (d.clone(), 5));
        let mut v = store.verifier();
        v.write_all(b"other").unwrap();
        assert!(matches!(v.commit(Some(&d)), Err(StorageError::DigestMismatch { .. })));
        assert_eq!(std::fs::read_dir(tmp.path().join("blobs/tmp")).unwrap().count(), 0);
        assert_eq!(store.read(&d).unwrap(), b"hello");
    }
}
