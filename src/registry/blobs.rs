//! Blobs: GET and HEAD (with a single byte Range), DELETE (the repository lets go; the bytes
//! stay in the shared store until `registry gc`).

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::error::{RegistryError, Result};
use super::names::check_digest;
use super::server::Registry;

/// A blob of `repo`, whole or a range of it.
pub async fn get(reg: &Arc<Registry>, repo: &str, digest: &str, headers: &HeaderMap, head: bool) -> Result<Response> {
    let size = linked_size(reg, repo, digest)?;
    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        Some(text) => Some(parse_range(text, size).ok_or_else(|| {
            RegistryError::new(StatusCode::RANGE_NOT_SATISFIABLE, "BLOB_UNKNOWN", format!("range {text:?} is not within the blob's {size} bytes"))
                .with_header(header::CONTENT_RANGE, format!("bytes */{size}"))
        })?),
        None => None,
    };
    let (start, len) = range.map_or((0, size), |(a, b)| (a, b - a + 1));
    let mut resp = Response::builder()
        .status(if range.is_some() { StatusCode::PARTIAL_CONTENT } else { StatusCode::OK })
        .header(header::CONTENT_LENGTH, len)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::ACCEPT_RANGES, "bytes")
        .header(super::CONTENT_DIGEST, digest);
    if let Some((a, b)) = range {
        resp = resp.header(header::CONTENT_RANGE, format!("bytes {a}-{b}/{size}"));
    }
    if head {
        return resp.body(Body::empty()).map_err(RegistryError::internal);
    }
    let mut file = tokio::fs::File::open(reg.blobs.path(digest)).await.map_err(|_| RegistryError::blob_unknown(digest))?;
    file.seek(std::io::SeekFrom::Start(start)).await?;
    let stream = tokio_util::io::ReaderStream::with_capacity(file.take(len), 256 << 10);
    resp.body(Body::from_stream(stream)).map_err(RegistryError::internal)
}

/// Takes a blob out of `repo`.
pub fn delete(reg: &Arc<Registry>, repo: &str, digest: &str) -> Result<Response> {
    check_digest(digest)?;
    if !reg.db().unlink_blob(repo, digest)? {
        return Err(RegistryError::blob_unknown(digest));
    }
    Ok(StatusCode::ACCEPTED.into_response())
}

/// The size of a blob `repo` holds and the store has; 404 otherwise.
pub fn linked_size(reg: &Registry, repo: &str, digest: &str) -> Result<u64> {
    check_digest(digest)?;
    match reg.db().linked_blob(repo, digest)? {
        Some(size) if reg.blobs.exists(digest) => Ok(size),
        _ => Err(RegistryError::blob_unknown(digest)),
    }
}

/// `bytes=A-B`, `bytes=A-` or `bytes=-N` within `size` bytes, as an inclusive (first, last).
pub fn parse_range(text: &str, size: u64) -> Option<(u64, u64)> {
    let spec = text.trim().strip_prefix("bytes=")?;
    if spec.contains(',') || size == 0 {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (first, last) = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: u64 = n.parse().ok()?;
            (size.saturating_sub(n), size - 1)
        }
        (a, "") => (a.parse().ok()?, size - 1),
        (a, b) => (a.parse().ok()?, b.parse::<u64>().ok()?.min(size - 1)),
    };
    (first <= last && first < size).then_some((first, last))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_within_the_blob() {
        assert_eq!(parse_range("bytes=0-9", 100), Some((0, 9)));
        assert_eq!(parse_range("bytes=90-", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=-10", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=50-500", 100), Some((50, 99)));
        for bad in ["bytes=100-", "bytes=5-2", "bytes=0-1,3-4", "items=0-1", "bytes=x-1"] {
            assert_eq!(parse_range(bad, 100), None, "{bad}");
        }
    }
}
