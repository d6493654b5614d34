//! Content discovery: tags (`n`, `last`, a `Link` to the next page), the catalog, and the
//! referrers API (with the `artifactType` filter).

use std::sync::Arc;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::error::{RegistryError, Result};
use super::manifests::OCI_INDEX;
use super::names::check_digest;
use super::server::{Params, Registry};

/// `GET /v2/<name>/tags/list`.
pub fn tags(reg: &Arc<Registry>, repo: &str, q: &Params) -> Result<Response> {
    let all = reg.db().tags(repo)?;
    if all.is_empty() && !reg.db().repo_exists(repo)? {
        return Err(RegistryError::new(StatusCode::NOT_FOUND, "NAME_UNKNOWN", format!("repository {repo} is not known to this registry")));
    }
    let (page, next) = paginate(all, q, &format!("/v2/{repo}/tags/list"))?;
    Ok(listed(json!({"name": repo, "tags": page}), next))
}

/// `GET /v2/_catalog`.
pub fn catalog(reg: &Arc<Registry>, q: &Params) -> Result<Response> {
    let (page, next) = paginate(reg.db().repositories()?, q, "/v2/_catalog")?;
    Ok(listed(json!({"repositories": page}), next))
}

/// One page of a sorted list: after `last`, at most `n`; the `Link` of the next page if cut.
fn paginate(all: Vec<String>, q: &Params, path: &str) -> Result<(Vec<String>, Option<String>)> {
    let n = match q.n.as_deref() {
        None => None,
        Some(text) => Some(text.parse::<usize>().map_err(|_| RegistryError::new(StatusCode::BAD_REQUEST, "PAGINATION_NUMBER_INVALID", format!("n={text:?} is not a number")))?),
    };
    let after: Vec<String> = match &q.last {
        Some(last) => all.into_iter().filter(|t| t > last).collect(),
        None => all,
    };
    match n {
        Some(n) if n < after.len() => {
            let page: Vec<String> = after.into_iter().take(n).collect();
            let next = page.last().map(|last| format!("<{path}?n={n}&last={last}>; rel=\"next\""));
            Ok((page, next))
        }
        _ => Ok((after, None)),
    }
}

fn listed(body: Value, next: Option<String>) -> Response {
    let mut resp = (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response();
    if let Some(link) = next.and_then(|l| l.parse().ok()) {
        resp.headers_mut().insert(header::LINK, link);
    }
    resp
}

/// `GET /v2/<name>/referrers/<digest>[?artifactType=...]`: an image index of the manifests
/// whose subject is `digest` (empty when there are none, never 404).
pub fn referrers(reg: &Arc<Registry>, repo: &str, digest: &str, q: &Params) -> Result<Response> {
    check_digest(digest)?;
    let rows = reg.db().referrers(repo, digest)?;
    let filter = q.artifact_type.as_deref().filter(|t| !t.is_empty());
    let manifests: Vec<Value> = rows
        .iter()
        .filter(|r| filter.is_none_or(|f| r.artifact_type.as_deref() == Some(f)))
        .map(|r| {
            let mut d = json!({"mediaType": r.media_type, "digest": r.digest, "size": r.size});
            if let Some(t) = &r.artifact_type {
                d["artifactType"] = json!(t);
            }
            if let Some(a) = r.annotations.as_deref().and_then(|a| serde_json::from_str::<Value>(a).ok()) {
                d["annotations"] = a;
            }
            d
        })
        .collect();
    let body = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests});
    let mut resp = (StatusCode::OK, [(header::CONTENT_TYPE, OCI_INDEX)], body.to_string()).into_response();
    if filter.is_some() {
        resp.headers_mut().insert("oci-filters-applied", "artifactType".parse().expect("a header value"));
    }
    Ok(resp)
}
