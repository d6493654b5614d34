//! Blob uploads: monolithic (`POST ?digest=`), POST then PUT, chunked PATCHes with
//! `Content-Range`, status, cancel, and cross-repository mounts. The bytes stream into a temp
//! file of the blob store, hashed as they come; the closing digest is checked against that
//! hash, and only a match is renamed into place, so a crash or a wrong digest stores nothing.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;

use super::error::{RegistryError, Result};
use super::names::{check_digest, valid_digest, valid_repo};
use super::server::{Params, Registry};
use super::CONTENT_DIGEST;
use crate::storage::blobs::BlobWriter;

/// An upload session.
pub struct Upload {
    /// The repository it uploads to.
    pub repo: String,
    /// The bytes so far (taken when the upload closes); one request at a time writes.
    writer: tokio::sync::Mutex<Option<BlobWriter>>,
    /// When a request last used it.
    touched: std::sync::Mutex<Instant>,
}

/// Open sessions at most (each holds a temp file and a 1 MiB write buffer); more is 429 until
/// some close or expire.
pub const MAX_SESSIONS: usize = 128;
/// A session nobody used for this long is dropped with its bytes.
pub const IDLE_LIMIT: Duration = Duration::from_secs(30 * 60);

impl Upload {
    fn touch(&self) {
        *self.touched.lock().expect("never poisoned") = Instant::now();
    }
}

/// Drops sessions idle longer than `IDLE_LIMIT` (their temp files go with them).
pub fn expire(reg: &Registry) {
    reg.uploads.lock().expect("never poisoned").retain(|_, u| u.touched.lock().expect("never poisoned").elapsed() < IDLE_LIMIT);
}

/// A new staging writer: under `<root>/registry/uploads`, which `shibafu gc` leaves alone (an
/// upload may sit idle for a while) and `registry serve` empties when it starts.
fn staging(reg: &Registry) -> Result<BlobWriter> {
    reg.blobs.writer_in(&uploads_dir(&reg.root)).map_err(RegistryError::internal)
}

/// Where uploads are staged.
pub fn uploads_dir(root: &std::path::Path) -> std::path::PathBuf {
    root.join("registry/uploads")
}

const UPLOAD_UUID: HeaderName = HeaderName::from_static("docker-upload-uuid");

/// `POST /v2/<name>/blobs/uploads/`: a mount, a whole blob, or a new session.
pub async fn start(reg: &Arc<Registry>, repo: &str, q: &Params, body: &mut Body) -> Result<Response> {
    if let (Some(digest), Some(from)) = (&q.mount, &q.from) {
        if valid_digest(digest) && valid_repo(from) {
            let size = reg.db().linked_blob(from, digest)?;
            if let Some(size) = size.filter(|_| reg.blobs.exists(digest)) {
                reg.db().link_blob(repo, digest, size)?;
                return Ok(stored(repo, digest));
            }
        }
    }
    if let Some(digest) = &q.digest {
        let mut writer = staging(reg)?;
        append(&mut writer, body).await?;
        return close(reg, repo, writer, digest);
    }
    if reg.uploads.lock().expect("never poisoned").len() >= MAX_SESSIONS {
        expire(reg);
        if reg.uploads.lock().expect("never poisoned").len() >= MAX_SESSIONS {
            return Err(RegistryError::new(StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS", format!("{MAX_SESSIONS} uploads are open; finish or cancel some"))
                .with_header(header::RETRY_AFTER, "60".into()));
        }
    }
    let id = crate::engine::names::new_id();
    let mut writer = staging(reg)?;
    append(&mut writer, body).await?;
    let size = writer.size();
    let upload = Upload { repo: repo.into(), writer: tokio::sync::Mutex::new(Some(writer)), touched: std::sync::Mutex::new(Instant::now()) };
    reg.uploads.lock().expect("never poisoned").insert(id.clone(), Arc::new(upload));
    Ok(progress(StatusCode::ACCEPTED, repo, &id, size))
}

/// `PATCH`: appends a chunk; with `Content-Range`, only at the current end.
pub async fn patch(reg: &Arc<Registry>, repo: &str, id: &str, headers: &HeaderMap, body: &mut Body) -> Result<Response> {
    let session = session(reg, repo, id)?;
    let mut held = session.writer.lock().await;
    let writer = held.as_mut().ok_or_else(|| RegistryError::upload_unknown(id))?;
    check_range(headers, writer.size(), repo, id)?;
    append(writer, body).await?;
    Ok(progress(StatusCode::ACCEPTED, repo, id, writer.size()))
}

/// `PUT ?digest=`: the last chunk (if any), then the digest check; the blob is stored.
pub async fn finish(reg: &Arc<Registry>, repo: &str, id: &str, q: &Params, headers: &HeaderMap, body: &mut Body) -> Result<Response> {
    let session = session(reg, repo, id)?;
    let mut writer = session.writer.lock().await.take().ok_or_else(|| RegistryError::upload_unknown(id))?;
    let result = async {
        check_range(headers, writer.size(), repo, id)?;
        append(&mut writer, body).await?;
        let digest = q.digest.as_deref().ok_or_else(|| RegistryError::digest_invalid("the closing PUT needs ?digest="))?;
        close(reg, repo, writer, digest)
    }
    .await;
    reg.uploads.lock().expect("never poisoned").remove(id);
    result
}

/// `GET`: how far the upload is.
pub async fn status(reg: &Arc<Registry>, repo: &str, id: &str) -> Result<Response> {
    let session = session(reg, repo, id)?;
    let size = session.writer.lock().await.as_ref().ok_or_else(|| RegistryError::upload_unknown(id))?.size();
    Ok(progress(StatusCode::NO_CONTENT, repo, id, size))
}

/// `DELETE`: drops the session and its bytes.
pub fn cancel(reg: &Arc<Registry>, repo: &str, id: &str) -> Result<Response> {
    session(reg, repo, id)?;
    reg.uploads.lock().expect("never poisoned").remove(id);
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn session(reg: &Registry, repo: &str, id: &str) -> Result<Arc<Upload>> {
    let sessions = reg.uploads.lock().expect("never poisoned");
    match sessions.get(id) {
        Some(s) if s.repo == repo => {
            s.touch();
            Ok(s.clone())
        }
        _ => Err(RegistryError::upload_unknown(id)),
    }
}

/// Streams a request body into the upload.
async fn append(writer: &mut BlobWriter, body: &mut Body) -> Result<()> {
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| RegistryError::new(StatusCode::BAD_REQUEST, "BLOB_UPLOAD_INVALID", format!("reading the upload: {e}")))?;
        if let Ok(chunk) = frame.into_data() {
            // Into a 1 MiB buffer, hashed on the way: page-cache writes, no need to leave the task.
            writer.write_all(&chunk)?;
        }
    }
    Ok(())
}

/// Checks the digest and stores the blob in the repository.
fn close(reg: &Registry, repo: &str, writer: BlobWriter, digest: &str) -> Result<Response> {
    check_digest(digest)?;
    // From the blob's arrival in the store until its link is recorded (see storage::lock_layers).
    let _adding = adding(reg)?;
    if digest.starts_with("sha512:") {
        return close_sha512(reg, repo, writer, digest);
    }
    let (digest, size) = tokio::task::block_in_place(|| writer.commit(Some(digest))).map_err(|e| match e {
        crate::storage::StorageError::DigestMismatch { expected, actual } => {
            RegistryError::digest_invalid(format!("the upload's digest is {actual}, not {expected}; nothing was stored"))
        }
        other => RegistryError::internal(other),
    })?;
    reg.db().link_blob(repo, &digest, size)?;
    Ok(stored(repo, &digest))
}

/// A blob named by sha512: stored under its sha256 as every blob is, then checked against the
/// sha512 and given that name too; a mismatch stores nothing.
fn close_sha512(reg: &Registry, repo: &str, writer: BlobWriter, digest: &str) -> Result<Response> {
    let (sha256, size) = tokio::task::block_in_place(|| writer.commit(None)).map_err(RegistryError::internal)?;
    let linked = tokio::task::block_in_place(|| reg.blobs.link_sha512(&sha256, digest)).map_err(RegistryError::internal)?;
    if !linked {
        // Stored only for the check: it goes again unless something else holds those bytes.
        if !reg.db().registry_holds(&sha256)? && !reg.db().blob_in_local_store(&sha256)? {
            let _ = std::fs::remove_file(reg.blobs.path(&sha256));
        }
        return Err(RegistryError::digest_invalid(format!("the upload's content does not have the digest {digest}; nothing was stored")));
    }
    reg.db().link_blob(repo, digest, size)?;
    Ok(stored(repo, digest))
}

/// Holds the store's lock shared, as every writer of an unrecorded blob does: a `gc` running
/// meanwhile (which holds it exclusive) must not take the blob for abandoned.
pub fn adding(reg: &Registry) -> Result<nix::fcntl::Flock<std::fs::File>> {
    tokio::task::block_in_place(|| crate::storage::lock_layers(&reg.root, false)).map_err(RegistryError::internal)
}

/// A chunk must start where the upload ends (`Content-Range: A-B`, with or without `bytes `).
fn check_range(headers: &HeaderMap, size: u64, repo: &str, id: &str) -> Result<()> {
    let Some(text) = headers.get(header::CONTENT_RANGE).and_then(|v| v.to_str().ok()) else { return Ok(()) };
    let spec = text.trim().trim_start_matches("bytes ").split('/').next().unwrap_or("");
    let ok = match spec.split_once('-').map(|(a, b)| (a.trim().parse::<u64>(), b.trim().parse::<u64>())) {
        Some((Ok(a), Ok(b))) => a == size && b >= a,
        _ => false,
    };
    if ok {
        return Ok(());
    }
    Err(RegistryError::new(StatusCode::RANGE_NOT_SATISFIABLE, "BLOB_UPLOAD_INVALID", format!("chunk {text:?} does not start at the upload's end ({size} bytes so far)"))
        .with_header(header::LOCATION, upload_url(repo, id))
        .with_header(header::RANGE, range_of(size))
        .with_header(UPLOAD_UUID, id.to_string()))
}

fn upload_url(repo: &str, id: &str) -> String {
    format!("/v2/{repo}/blobs/uploads/{id}")
}

/// The spec's `Range` for an upload of `size` bytes: `0-<last byte>` (no `bytes=`).
fn range_of(size: u64) -> String {
    format!("0-{}", size.saturating_sub(1))
}

fn progress(status: StatusCode, repo: &str, id: &str, size: u64) -> Response {
    (status, [(header::LOCATION, upload_url(repo, id)), (header::RANGE, range_of(size)), (UPLOAD_UUID, id.to_string())], "").into_response()
}

fn stored(repo: &str, digest: &str) -> Response {
    (StatusCode::CREATED, [(header::LOCATION, format!("/v2/{repo}/blobs/{digest}")), (CONTENT_DIGEST, digest.to_string())], "").into_response()
}
