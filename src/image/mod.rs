//! Images (phases 3 and 5): OCI manifest + config + layers in the blob store, named by
//! `name:tag`; import of rootfs tarballs and export of flattened rootfs.

pub mod distribution;
pub mod export;
pub mod progress;
pub mod layers;
pub mod layout;
pub mod manage;
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
    /// A setting from the environment that cannot be used.
    #[error("{0}")]
    Setting(String),
    /// A registry could not be reached, or answered what we cannot use.
    #[error("registry: {0}")]
    Registry(String),
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
    /// No layer by that name.
    #[error("unknown layer {0:?} (see `shibafu layers`, or make one with `shibafu prepare-layer NAME DIR`)")]
    UnknownLayer(String),
    /// A layer still in use.
    #[error("layer {name} is in use by images [{images}] and {containers} container(s); remove those first (shibafu image rm, shibafu rm)")]
    LayerInUse { name: String, images: String, containers: i64 },
    /// An image containers were made from.
    #[error("image {0} is used by {1} container(s); remove them first (shibafu rm)")]
    ImageInUse(String, usize),
    /// From storage.
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
    /// From the state database.
    #[error(transparent)]
    State(#[from] crate::state::StateError),
}

/// Result of image operations.
pub type Result<T> = std::result::Result<T, ImageError>;

/// A file that could not be read, as an error.
pub(crate) fn unreadable(path: &std::path::Path, e: impl ToString) -> ImageError {
    ImageError::Unreadable { path: path.display().to_string(), reason: e.to_string() }
}
