//! The content-addressable blob store: `blobs/sha256/<hex>`, written to a temp name, hashed
//! while streaming, and renamed into place only once the digest is known (and verified).

use std::fs::File;
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

    /// Where a blob lives (whether or not it exists).
    pub fn path(&self, digest: &str) -> PathBuf {
        self.root.join("sha256").join(hex(digest))
    }

    /// Whether a blob is stored.
    pub fn exists(&self, digest: &str) -> bool {
        self.path(digest).is_file()
    }

    /// Streams `reader` into the store; returns (digest, size). With `expected`, a mismatch
    /// stores nothing.
    pub fn put(&self, reader: &mut dyn Read, expected: Option<&str>) -> Result<(String, u64)> {
        let tmp_dir = self.root.join("tmp");
        std::fs::create_dir_all(&tmp_dir).map_err(StorageError::io(format!("create {}", tmp_dir.display())))?;
        std::fs::create_dir_all(self.root.join("sha256")).map_err(StorageError::io("create blobs/sha256"))?;
        let tmp = tempfile::NamedTempFile::new_in(&tmp_dir).map_err(StorageError::io("create temp blob"))?;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut out = std::io::BufWriter::with_capacity(1 << 20, tmp.as_file());
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = reader.read(&mut buf).map_err(StorageError::io("read blob"))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n]).map_err(StorageError::io("write blob"))?;
            size += n as u64;
        }
        out.flush().map_err(StorageError::io("write blob"))?;
        drop(out);
        let digest = format!("sha256:{:x}", hasher.finalize());
        if let Some(want) = expected {
            if want != digest {
                return Err(StorageError::DigestMismatch { expected: want.into(), actual: digest });
            }
        }
        let path = self.path(&digest);
        if !path.exists() {
            tmp.persist(&path).map_err(|e| StorageError::io(format!("store {}", path.display()))(e.error))?;
        }
        Ok((digest, size))
    }

    /// Stores bytes; returns (digest, size).
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<(String, u64)> {
        self.put(&mut &bytes[..], None)
    }

    /// Opens a blob for reading.
    pub fn open(&self, digest: &str) -> Result<File> {
        let path = self.path(digest);
        File::open(&path).map_err(StorageError::io(format!("open blob {digest}")))
    }

    /// Reads a whole (small) blob.
    pub fn read(&self, digest: &str) -> Result<Vec<u8>> {
        std::fs::read(self.path(digest)).map_err(StorageError::io(format!("read blob {digest}")))
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
}
