//! Manifests by tag or digest: OCI image manifests and indexes, Docker schema 2 manifests and
//! lists. Stored byte for byte (their bytes are blobs in the shared store); what they refer to
//! must be in the repository already, except a `subject`, which may come later.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use serde_json::Value;

use super::error::{RegistryError, Result};
use super::names::{check_digest, valid_digest, valid_tag};
use super::server::Registry;
use super::CONTENT_DIGEST;
use crate::state::registry::ManifestRow;

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker image manifest, schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// The largest manifest taken (the spec asks for at least 4 MiB).
pub const MAX_MANIFEST: usize = 4 << 20;

/// GET or HEAD a manifest.
pub fn get(reg: &Arc<Registry>, repo: &str, reference: &str, head: bool) -> Result<Response> {
    let digest = resolve(reg, repo, reference)?;
    let row = reg.db().registry_manifest(repo, &digest)?.ok_or_else(|| RegistryError::manifest_unknown(reference))?;
    let body = if head { Body::empty() } else { Body::from(reg.blobs.read(&digest).map_err(|_| RegistryError::manifest_unknown(reference))?) };
    let resp = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, &row.media_type)
        .header(header::CONTENT_LENGTH, row.size)
        .header(CONTENT_DIGEST, &digest)
        .body(body)
        .map_err(RegistryError::internal)?;
    Ok(resp)
}

/// A tag's digest, or the digest given.
fn resolve(reg: &Registry, repo: &str, reference: &str) -> Result<String> {
    if reference.contains(':') {
        return check_digest(reference).map(|()| reference.into());
    }
    // An invalid tag names nothing: 404, as the spec's conformance tests want.
    reg.db().tag_digest(repo, reference)?.ok_or_else(|| RegistryError::manifest_unknown(reference))
}

/// PUT a manifest under a tag or its digest.
pub async fn put(reg: &Arc<Registry>, repo: &str, reference: &str, headers: &HeaderMap, body: &mut Body) -> Result<Response> {
    let bytes = read_limited(body, MAX_MANIFEST).await?;
    let digest = crate::storage::sha256_digest(&bytes);
    let tag = if reference.contains(':') {
        if reference != digest {
            return Err(RegistryError::digest_invalid(format!("the manifest's digest is {digest}, not {reference}")));
        }
        None
    } else if valid_tag(reference) {
        Some(reference)
    } else {
        return Err(RegistryError::manifest_invalid(format!("invalid tag {reference:?}: up to 128 of letters, digits, '_', '.', '-', not starting with '.' or '-'")));
    };
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(|t| t.split(';').next().unwrap_or("").trim().to_string());
    let row = describe(repo, &digest, bytes.len() as u64, &bytes, content_type.as_deref())?;
    check_refs(reg, &row)?;
    let _adding = super::uploads::adding(reg)?;
    tokio::task::block_in_place(|| reg.blobs.put_bytes(&bytes)).map_err(RegistryError::internal)?;
    reg.db().put_manifest(&row, tag)?;
    let mut resp = (StatusCode::CREATED, [(header::LOCATION, format!("/v2/{repo}/manifests/{digest}")), (CONTENT_DIGEST, digest.clone())], "").into_response();
    if let Some(subject) = &row.subject {
        resp.headers_mut().insert("oci-subject", subject.parse().map_err(RegistryError::internal)?);
    }
    Ok(resp)
}

/// DELETE a tag (the manifest stays) or a manifest (its tags go too).
pub fn delete(reg: &Arc<Registry>, repo: &str, reference: &str) -> Result<Response> {
    let gone = if reference.contains(':') {
        check_digest(reference)?;
        reg.db().delete_registry_manifest(repo, reference)?
    } else {
        reg.db().delete_tag(repo, reference)?
    };
    if gone {
        Ok(StatusCode::ACCEPTED.into_response())
    } else {
        Err(RegistryError::manifest_unknown(reference))
    }
}

/// Reads a body of at most `limit` bytes; more is 413.
pub async fn read_limited(body: &mut Body, limit: usize) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| RegistryError::manifest_invalid(format!("reading the manifest: {e}")))?;
        let Ok(chunk) = frame.into_data() else { continue };
        if out.len() + chunk.len() > limit {
            return Err(RegistryError::new(StatusCode::PAYLOAD_TOO_LARGE, "SIZE_INVALID", format!("manifests are limited to {limit} bytes")));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// What the registry records of a manifest: its type, what it refers to, its subject.
pub fn describe(repo: &str, digest: &str, size: u64, bytes: &[u8], content_type: Option<&str>) -> Result<ManifestRow> {
    let json: Value = serde_json::from_slice(bytes).map_err(|e| RegistryError::manifest_invalid(format!("not JSON: {e}")))?;
    if !json.is_object() {
        return Err(RegistryError::manifest_invalid("a manifest is a JSON object"));
    }
    let declared = json.get("mediaType").and_then(Value::as_str);
    let media_type = match (content_type.filter(|t| !t.is_empty() && *t != "application/json"), declared) {
        (Some(c), Some(d)) if c != d => return Err(RegistryError::manifest_invalid(format!("Content-Type {c} but mediaType {d}"))),
        (Some(c), _) => c.to_string(),
        (None, Some(d)) => d.to_string(),
        (None, None) if json.get("manifests").is_some() => OCI_INDEX.into(),
        (None, None) => OCI_MANIFEST.into(),
    };
    let is_index = match media_type.as_str() {
        OCI_INDEX | DOCKER_LIST => true,
        OCI_MANIFEST | DOCKER_MANIFEST => false,
        other => return Err(RegistryError::manifest_invalid(format!("unsupported manifest media type {other}"))),
    };
    let digest_of = |d: &Value| -> Result<String> {
        let text = d.get("digest").and_then(Value::as_str).ok_or_else(|| RegistryError::manifest_invalid("a descriptor without a digest"))?;
        if valid_digest(text) { Ok(text.to_string()) } else { Err(RegistryError::manifest_invalid(format!("descriptor digest {text:?} is not a digest (sha256:<64 hex digits> or sha512:<128>)"))) }
    };
    let list = |key: &str| -> Result<Vec<String>> {
        match json.get(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items.iter().map(digest_of).collect(),
            Some(_) => Err(RegistryError::manifest_invalid(format!("{key} must be a list"))),
        }
    };
    let refs = if is_index {
        list("manifests")?
    } else {
        let config = json.get("config").ok_or_else(|| RegistryError::manifest_invalid("an image manifest needs a config"))?;
        std::iter::once(digest_of(config)).chain(list("layers")?.into_iter().map(Ok)).collect::<Result<Vec<_>>>()?
    };
    let subject = json.get("subject").map(digest_of).transpose()?;
    let artifact_type = json
        .get("artifactType")
        .and_then(Value::as_str)
        .or_else(|| if is_index { None } else { json.pointer("/config/mediaType").and_then(Value::as_str) })
        .map(str::to_string);
    let annotations = json.get("annotations").filter(|a| a.is_object()).map(Value::to_string);
    Ok(ManifestRow { repo: repo.into(), digest: digest.into(), media_type, size, subject, artifact_type, annotations, refs })
}

/// Everything a manifest refers to must be in the repository: blobs for an image manifest,
/// manifests for an index.
fn check_refs(reg: &Registry, row: &ManifestRow) -> Result<()> {
    let is_index = row.media_type == OCI_INDEX || row.media_type == DOCKER_LIST;
    let db = reg.db();
    for d in &row.refs {
        let present = if is_index { db.registry_manifest(&row.repo, d)?.is_some() } else { db.linked_blob(&row.repo, d)?.is_some() && reg.blobs.exists(d) };
        if !present {
            return Err(RegistryError::new(StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN", format!("the manifest refers to {d}, which {} has not got; push it first", row.repo)));
        }
    }
    Ok(())
}
