//! The distribution spec's grammar: repository names, tags, digests, and which endpoint a
//! path names (a repository name may hold slashes, so paths are read from their end).

use super::error::RegistryError;

/// What a `/v2/...` path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/v2/`: the API version check.
    Base,
    /// `/v2/_catalog`.
    Catalog,
    /// `/v2/<name>/tags/list`.
    Tags(String),
    /// `/v2/<name>/manifests/<reference>`.
    Manifest(String, String),
    /// `/v2/<name>/blobs/<digest>`.
    Blob(String, String),
    /// `/v2/<name>/blobs/uploads/`: start an upload.
    Uploads(String),
    /// `/v2/<name>/blobs/uploads/<id>`: an upload session.
    Upload(String, String),
    /// `/v2/<name>/referrers/<digest>`.
    Referrers(String, String),
}

/// Reads a request path; None when it names no endpoint.
pub fn route(path: &str) -> Option<Route> {
    let rest = path.strip_prefix("/v2")?;
    match rest {
        "" | "/" => return Some(Route::Base),
        "/_catalog" => return Some(Route::Catalog),
        _ => {}
    }
    let rest = rest.strip_prefix('/')?;
    if let Some(repo) = rest.strip_suffix("/tags/list") {
        return Some(Route::Tags(repo.into()));
    }
    if let Some(repo) = rest.strip_suffix("/blobs/uploads/").or_else(|| rest.strip_suffix("/blobs/uploads")) {
        return Some(Route::Uploads(repo.into()));
    }
    let tail = |marker: &str| -> Option<(String, String)> {
        let at = rest.rfind(marker)?;
        let last = &rest[at + marker.len()..];
        (!last.is_empty() && !last.contains('/')).then(|| (rest[..at].to_string(), last.to_string()))
    };
    if let Some((repo, id)) = tail("/blobs/uploads/") {
        return Some(Route::Upload(repo, id));
    }
    if let Some((repo, d)) = tail("/blobs/") {
        return Some(Route::Blob(repo, d));
    }
    if let Some((repo, r)) = tail("/manifests/") {
        return Some(Route::Manifest(repo, r));
    }
    tail("/referrers/").map(|(repo, d)| Route::Referrers(repo, d))
}

/// A repository name: path components of `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`, at most 255 bytes.
pub fn valid_repo(name: &str) -> bool {
    name.len() <= 255 && !name.is_empty() && name.split('/').all(crate::image::reference::component_ok)
}

/// A tag: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}` (the local images' grammar too).
pub fn valid_tag(tag: &str) -> bool {
    crate::image::reference::check_tag(tag).is_ok()
}

/// A digest this registry takes: `sha256:` and 64, or `sha512:` and 128, lowercase hex digits.
pub fn valid_digest(d: &str) -> bool {
    crate::storage::sha256_hex(d).is_some() || d.strip_prefix("sha512:").is_some_and(|h| crate::storage::is_lower_hex(h, 128))
}

/// `valid_digest`, as the spec's DIGEST_INVALID when it fails.
pub fn check_digest(d: &str) -> Result<(), RegistryError> {
    if valid_digest(d) {
        Ok(())
    } else {
        Err(RegistryError::digest_invalid(format!("{d:?} is not a digest (sha256:<64 hex digits> or sha512:<128>)")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_read_from_their_end() {
        assert_eq!(route("/v2/"), Some(Route::Base));
        assert_eq!(route("/v2/_catalog"), Some(Route::Catalog));
        assert_eq!(route("/v2/a/b/tags/list"), Some(Route::Tags("a/b".into())));
        assert_eq!(route("/v2/apps/python-app/manifests/v1"), Some(Route::Manifest("apps/python-app".into(), "v1".into())));
        assert_eq!(route("/v2/x/blobs/sha256:ab"), Some(Route::Blob("x".into(), "sha256:ab".into())));
        assert_eq!(route("/v2/x/y/blobs/uploads/"), Some(Route::Uploads("x/y".into())));
        assert_eq!(route("/v2/x/blobs/uploads/abc"), Some(Route::Upload("x".into(), "abc".into())));
        assert_eq!(route("/v2/x/referrers/sha256:ab"), Some(Route::Referrers("x".into(), "sha256:ab".into())));
        // A repository may itself be called "manifests" or "blobs".
        assert_eq!(route("/v2/blobs/manifests/latest"), Some(Route::Manifest("blobs".into(), "latest".into())));
        assert_eq!(route("/v3/x"), None);
        assert_eq!(route("/v2/x/other"), None);
    }

    #[test]
    fn the_grammar_is_the_specs() {
        for ok in ["a", "base/alpine", "a.b_c__d--e-f/g0", "runtime/python"] {
            assert!(valid_repo(ok), "{ok}");
        }
        for bad in ["", "A", "a/../b", "a//b", "-a", "a-", "a___b", "a..b", "a/", "x y", &"a".repeat(256)] {
            assert!(!valid_repo(bad), "{bad}");
        }
        assert!(valid_tag("v1.0_rc-1") && valid_tag("_x") && valid_tag("TEST0"));
        assert!(!valid_tag(".INVALID_MANIFEST_NAME") && !valid_tag("-x") && !valid_tag(&"a".repeat(129)) && !valid_tag(""));
        assert!(valid_digest(&format!("sha256:{}", "a".repeat(64))) && valid_digest(&format!("sha512:{}", "b".repeat(128))));
        assert!(!valid_digest(&format!("sha512:{}", "b".repeat(64))));
        assert!(!valid_digest("sha256:totallywrong") && !valid_digest(&format!("sha256:{}", "A".repeat(64))) && !valid_digest("md5:x"));
    }
}
