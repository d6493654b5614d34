//! The distribution API calls the client makes: blobs (exists, upload, mount, fetch) and
//! manifests (push, fetch).

use std::path::Path;
use std::sync::{Arc, Mutex};

use hyper::{Method, StatusCode};
use serde_json::Value;

use super::super::progress::Progress;
use super::super::Result;
use super::client::{failed, short, Answer, Payload, Registry};

fn expect(a: Answer, want: &[StatusCode], what: &str) -> Result<Answer> {
    if want.contains(&a.status) {
        return Ok(a);
    }
    Err(failed(format!("{what}: {} {}", a.status, String::from_utf8_lossy(&a.body).trim())))
}

impl Registry {
    /// Whether `repo` has the blob.
    pub fn has_blob(&self, repo: &str, digest: &str) -> Result<bool> {
        Ok(self.call(Method::HEAD, &format!("/v2/{repo}/blobs/{digest}"), None, &Payload::Empty)?.status == StatusCode::OK)
    }

    /// Uploads a blob from a file unless `repo` has it; true when bytes were sent.
    pub fn push_blob(&self, repo: &str, digest: &str, file: &Path) -> Result<bool> {
        if self.has_blob(repo, digest)? {
            return Ok(false);
        }
        let start = expect(self.call(Method::POST, &format!("/v2/{repo}/blobs/uploads/"), None, &Payload::Empty)?, &[StatusCode::ACCEPTED], "start an upload")?;
        let location = start.location.ok_or_else(|| failed("the upload has no Location"))?;
        let sep = if location.contains('?') { '&' } else { '?' };
        let size = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
        let progress = Arc::new(Mutex::new(Progress::new(format!("pushing {}", short(digest)), size)));
        let done = self.call(Method::PUT, &format!("{location}{sep}digest={digest}"), Some("application/octet-stream"), &Payload::File(file, progress.clone()))?;
        expect(done, &[StatusCode::CREATED], &format!("upload {digest}"))?;
        progress.lock().expect("never poisoned").finish("pushed");
        Ok(true)
    }

    /// Links a blob of `from` into `repo` without sending it; false when the registry would not.
    pub fn mount_blob(&self, repo: &str, digest: &str, from: &str) -> Result<bool> {
        let a = self.call(Method::POST, &format!("/v2/{repo}/blobs/uploads/?mount={digest}&from={from}"), None, &Payload::Empty)?;
        if a.status == StatusCode::ACCEPTED {
            // Not mounted: the registry opened an upload instead; close it.
            if let Some(loc) = a.location {
                let _ = self.call(Method::DELETE, &loc, None, &Payload::Empty);
            }
        }
        Ok(a.status == StatusCode::CREATED)
    }

    /// Pushes a manifest under `tag`; returns its digest.
    pub fn put_manifest(&self, repo: &str, tag: &str, media_type: &str, bytes: &[u8]) -> Result<String> {
        let digest = crate::storage::sha256_digest(bytes);
        let a = self.call(Method::PUT, &format!("/v2/{repo}/manifests/{tag}"), Some(media_type), &Payload::Bytes(bytes))?;
        expect(a, &[StatusCode::CREATED], &format!("push the manifest of {repo}:{tag}"))?;
        Ok(digest)
    }

    /// A manifest by tag or digest: (bytes, parsed).
    pub fn manifest(&self, repo: &str, reference: &str) -> Result<(Vec<u8>, Value)> {
        let a = expect(self.call(Method::GET, &format!("/v2/{repo}/manifests/{reference}"), None, &Payload::Empty)?, &[StatusCode::OK], &format!("get {repo}:{reference}"))?;
        let parsed = serde_json::from_slice(&a.body).map_err(|e| failed(format!("{repo}:{reference} is not JSON: {e}")))?;
        Ok((a.body.to_vec(), parsed))
    }

    /// A whole (small) blob, in memory.
    pub fn blob(&self, repo: &str, digest: &str) -> Result<Vec<u8>> {
        let a = expect(self.call(Method::GET, &format!("/v2/{repo}/blobs/{digest}"), None, &Payload::Empty)?, &[StatusCode::OK], &format!("get blob {digest}"))?;
        Ok(a.body.to_vec())
    }
}
