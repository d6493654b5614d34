//! Phase 5: an OCI distribution registry (axum) over the same sha256 blob store as the local
//! images, so a layer is stored once however many repositories and images hold it. Uploads
//! stream into the store, hashed as they arrive; blobs stream out, with Range.

pub mod auth;
pub mod blobs;
pub mod discovery;
pub mod error;
pub mod gc;
pub mod manifests;
pub mod names;
pub mod server;
pub mod uploads;

pub use server::{serve, Registry};

/// The digest of what a response carries or a request stored.
pub const CONTENT_DIGEST: axum::http::HeaderName = axum::http::HeaderName::from_static("docker-content-digest");
