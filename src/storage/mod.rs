//! Storage (phase 3): the sha256 blob store, layer packing and safe unpacking, overlay mounts.

pub mod blobs;
pub mod idmap;
pub mod initlayer;
pub mod overlay;
pub mod partial;
pub mod limits;
pub mod pack;
pub mod scratch;
pub mod unpack;

/// Errors of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A tar entry would land outside its tree, or is otherwise unsafe.
    #[error("unsafe tar entry {entry:?}: {reason}")]
    UnsafeEntry { entry: String, reason: String },
    /// The archive is unreadable: corrupt, truncated, or not a tar at all.
    #[error("unreadable archive {what}: {reason}")]
    BadArchive { what: String, reason: String },
    /// The archive goes past a limit (its unpacked size, its compression ratio, or what
    /// follows its end).
    #[error("{0}")]
    OverLimit(String),
    /// Content did not match its digest.
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch { expected: String, actual: String },
    /// More lower layers than one overlay mount takes.
    #[error("{0} layers are more than one overlay mount can stack; flatten some (commit) first")]
    TooManyLayers(usize),
    /// A system call failed.
    #[error("{what}: {err}")]
    Sys { what: String, err: nix::Error },
    /// An I/O operation failed.
    #[error("{what}: {err}")]
    Io { what: String, err: std::io::Error },
}

impl StorageError {
    /// Wraps an I/O error with what was being done.
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> StorageError {
        let what = what.into();
        move |err| StorageError::Io { what, err }
    }

    /// Wraps an errno with what was being done.
    pub fn sys(what: impl Into<String>) -> impl FnOnce(nix::Error) -> StorageError {
        let what = what.into();
        move |err| StorageError::Sys { what, err }
    }
}

/// Result of storage operations.
pub type Result<T> = std::result::Result<T, StorageError>;

/// `sha256:<hex>` of some bytes.
pub fn sha256_digest(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{:x}", sha2::Sha256::digest(bytes))
}

/// The 64 lowercase hex digits of a well-formed `sha256:` digest; None for anything else
/// (so a digest from outside can name a file only when it is one).
pub fn sha256_hex(digest: &str) -> Option<&str> {
    digest.strip_prefix("sha256:").filter(|h| is_lower_hex(h, 64))
}

/// Whether `text` is `len` lowercase hex digits.
pub fn is_lower_hex(text: &str, len: usize) -> bool {
    text.len() == len && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Locks `<data root>/layers.lock`, the lock between the writers of the shared store and its
/// collectors. Whoever puts a blob or a layer into the store without recording it in the same
/// step (an import, a prepare, a commit, a registry upload) holds it shared from before the
/// blob or layer lands until it is recorded; whoever removes what nothing records (`gc`,
/// `registry gc`, image and layer removal) holds it exclusive, so anything unrecorded it finds
/// is abandoned, whatever its age. A pull's fetched blobs are covered instead by the pull's
/// owned scratch layout, which links each before it enters the store (see `gc`).
pub fn lock_layers(data_root: &std::path::Path, exclusive: bool) -> std::io::Result<nix::fcntl::Flock<std::fs::File>> {
    let path = data_root.join("layers.lock");
    let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path)?;
    let how = if exclusive { nix::fcntl::FlockArg::LockExclusive } else { nix::fcntl::FlockArg::LockShared };
    nix::fcntl::Flock::lock(file, how).map_err(|(_, e)| std::io::Error::from(e))
}

/// The hex part of a `sha256:<hex>` digest.
pub fn hex(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}
