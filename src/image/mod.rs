//! Images (phases 3 and 5): OCI manifest + config + layers in the blob store, named by
//! `name:tag`; import of rootfs tarballs and export of flattened rootfs.

pub mod export;
pub mod layout;
pub mod reference;
pub mod store;

pub use reference::Reference;
pub use store::{ImageConfig, ImageStore};

/// Errors of the image store.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// No such image.
    #[error("unknown image {0:?} (see `shibafu images`, or import one with `shibafu image import TAR NAME`)")]
    Unknown(String),
    /// A malformed reference.
    #[error("{0}")]
    BadReference(String),
    /// An image ID prefix that fits several images.
    #[error("image ID {0:?} is ambiguous; give more digits")]
    Ambiguous(String),
    /// A file could not be read.
    #[error("cannot read {path}: {reason}")]
    Unreadable { path: String, reason: String },
    /// Writing an image out failed.
    #[error("write the image's root filesystem: {0}")]
    Write(#[source] std::io::Error),
    /// Stored metadata is inconsistent.
    #[error("corrupt image {0}: {1}")]
    Corrupt(String, String),
    /// From storage.
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
    /// From the state database.
    #[error(transparent)]
    State(#[from] crate::state::StateError),
}

/// Result of image operations.
pub type Result<T> = std::result::Result<T, ImageError>;
