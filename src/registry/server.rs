//! The registry's HTTP side: one handler reads the path (names hold slashes) and dispatches;
//! `crate::http_server` accepts and bounds the connections.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use hyper::body::{Body as _, Incoming};

use super::auth::Htpasswd;
use super::error::{RegistryError, Result};
use super::names::{route, valid_repo, Route};
use super::uploads::Upload;
use crate::http_server::Limits;
use crate::state::Db;
use crate::storage::blobs::BlobStore;

/// The registry's state, shared by every request.
pub struct Registry {
    /// The data root: state.db and blobs/.
    pub root: PathBuf,
    db: Mutex<Db>,
    /// The shared blob store.
    pub blobs: BlobStore,
    /// Upload sessions by ID.
    pub uploads: Mutex<HashMap<String, Arc<Upload>>>,
    /// Basic authentication, when asked for.
    pub auth: Option<Htpasswd>,
}

impl Registry {
    /// Opens the registry over a data root.
    pub fn open(root: &Path, htpasswd: Option<&Path>) -> anyhow::Result<Registry> {
        let auth = htpasswd.map(Htpasswd::load).transpose()?;
        let engine = crate::engine::Engine::open(root)?;
        // Sessions live in this process only: what an earlier one staged is garbage.
        let staged = super::uploads::uploads_dir(root);
        if staged.exists() {
            std::fs::remove_dir_all(&staged).map_err(|e| anyhow::anyhow!("clear {}: {e}", staged.display()))?;
        }
        Ok(Registry { root: root.to_path_buf(), db: Mutex::new(engine.db), blobs: BlobStore::new(root), uploads: Mutex::new(HashMap::new()), auth })
    }

    /// The state database (queries are short; the lock is never held across an await).
    pub fn db(&self) -> MutexGuard<'_, Db> {
        self.db.lock().expect("the database lock is never poisoned")
    }
}

/// Serves the registry on `listen` until killed, within `limits` (connections, head and idle
/// timeouts, head size: see `crate::http_server`).
pub fn serve(root: &Path, listen: SocketAddr, htpasswd: Option<&Path>, limits: Limits) -> anyhow::Result<()> {
    let registry = Arc::new(Registry::open(root, htpasswd)?);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| anyhow::anyhow!("listen on {listen}: {e}"))?;
        eprintln!(
            "shibafu registry: serving http://{listen}/v2/ from {} (at most {} connections, {} s for a request head, {} s idle)",
            registry.root.display(),
            limits.max_connections,
            limits.header_timeout.as_secs_f64(),
            limits.idle_timeout.as_secs_f64()
        );
        let expiring = registry.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(std::time::Duration::from_secs(60));
            loop {
                every.tick().await;
                super::uploads::expire(&expiring);
            }
        });
        match crate::http_server::serve(listener, limits, error_body, move |req, _peer| dispatch(registry.clone(), req)).await {}
    })
}

/// The spec's JSON error for what the server answers before a request reaches `dispatch`: a head
/// over the size limit is UNSUPPORTED (the spec's code for "an invalid set of parameters"; the
/// name may be fine and the rest too long), a full house TOOMANYREQUESTS.
fn error_body(status: StatusCode, message: &str) -> (&'static str, String) {
    let code = if status == StatusCode::SERVICE_UNAVAILABLE { "TOOMANYREQUESTS" } else { "UNSUPPORTED" };
    ("application/json", super::error::json_body(code, message))
}

/// The query parameters any endpoint reads.
#[derive(Debug, Default)]
pub struct Params {
    /// `?digest=` (uploads).
    pub digest: Option<String>,
    /// `?mount=` (cross-repository mount).
    pub mount: Option<String>,
    /// `?from=` (the mount's source).
    pub from: Option<String>,
    /// `?n=` (page size).
    pub n: Option<String>,
    /// `?last=` (page start).
    pub last: Option<String>,
    /// `?artifactType=` (referrers filter).
    pub artifact_type: Option<String>,
}

impl Params {
    /// The parameters of a query string; the first of a repeated one counts (as in Docker's
    /// registry), and what no endpoint reads is ignored, so any query string is accepted.
    pub fn parse(query: Option<&str>) -> Params {
        let mut p = Params::default();
        for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            let slot = match key.as_ref() {
                "digest" => &mut p.digest,
                "mount" => &mut p.mount,
                "from" => &mut p.from,
                "n" => &mut p.n,
                "last" => &mut p.last,
                "artifactType" => &mut p.artifact_type,
                _ => continue,
            };
            slot.get_or_insert_with(|| value.into_owned());
        }
        p
    }
}

async fn dispatch(reg: Arc<Registry>, req: Request<Incoming>) -> Response {
    let (parts, body) = req.into_parts();
    let (method, uri, headers, mut body) = (parts.method, parts.uri, parts.headers, Body::new(body));
    let q = Params::parse(uri.query());
    let mut resp = match handle(&reg, &method, &uri, &q, &headers, &mut body).await {
        Ok(resp) => resp,
        Err(e) => e.into_response(),
    };
    drain(&mut body, &headers, &mut resp).await;
    resp
}

/// The most of an unread request body drained to keep its connection, and for how long.
const DRAIN_LIMIT: usize = 1 << 20;
const DRAIN_TIME: Duration = Duration::from_secs(2);

/// Reads and drops what the handler left of the request body (an upload answered 416 or 404
/// before its bytes were read), so the connection is ready for the next request. A rest larger
/// than `DRAIN_LIMIT` or slower than `DRAIN_TIME`, or one the client holds back until told to go
/// on (`Expect: 100-continue`), ends the connection instead, and the response says so: hyper
/// would close it after a response that looked kept alive, and the client's next request on it
/// would fail.
async fn drain(body: &mut Body, headers: &HeaderMap, resp: &mut Response) {
    if body.is_end_stream() {
        return;
    }
    let waits = headers.get(header::EXPECT).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let read_all = async {
        let mut read = 0;
        loop {
            match body.frame().await {
                None => return true,
                Some(Err(_)) => return false,
                Some(Ok(frame)) => read += frame.data_ref().map_or(0, |d| d.len()),
            }
            if read > DRAIN_LIMIT {
                return false;
            }
        }
    };
    if waits || !tokio::time::timeout(DRAIN_TIME, read_all).await.unwrap_or(false) {
        resp.headers_mut().insert(header::CONNECTION, header::HeaderValue::from_static("close"));
    }
}

/// The longest request target (path and query) served: names, tags, digests and the uploads'
/// query parameters make a few hundred bytes; longer is refused with the spec's JSON before any
/// work (and heads over `crate::http_server::HEAD_LIMIT` never get here: the server answers them alike).
const MAX_TARGET: usize = 8 * 1024;

async fn handle(reg: &Arc<Registry>, method: &Method, uri: &Uri, q: &Params, headers: &HeaderMap, body: &mut Body) -> Result<Response> {
    let target = uri.path_and_query().map_or(0, |p| p.as_str().len());
    if target > MAX_TARGET {
        return Err(RegistryError::new(StatusCode::URI_TOO_LONG, "UNSUPPORTED", format!("the request target is {target} bytes, over the {MAX_TARGET} this registry takes")));
    }
    if let Some(auth) = &reg.auth {
        if !auth.allows(headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok())) {
            return Err(RegistryError::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", "authentication required")
                .with_header(header::WWW_AUTHENTICATE, "Basic realm=\"shibafu registry\"".into()));
        }
    }
    let Some(route) = route(uri.path()) else {
        return Err(RegistryError::new(StatusCode::NOT_FOUND, "NAME_UNKNOWN", format!("no endpoint at {}", uri.path())));
    };
    if let Route::Tags(repo) | Route::Manifest(repo, _) | Route::Blob(repo, _) | Route::Uploads(repo) | Route::Upload(repo, _) | Route::Referrers(repo, _) = &route {
        if !valid_repo(repo) {
            return Err(RegistryError::name_invalid(repo));
        }
    }
    let head = method == Method::HEAD;
    match (route, method.clone()) {
        (Route::Base, Method::GET | Method::HEAD) => Ok((StatusCode::OK, [("content-type", "application/json")], "{}").into_response()),
        (Route::Catalog, Method::GET) => super::discovery::catalog(reg, q),
        (Route::Tags(repo), Method::GET) => super::discovery::tags(reg, &repo, q),
        (Route::Referrers(repo, digest), Method::GET) => super::discovery::referrers(reg, &repo, &digest, q),
        (Route::Blob(repo, digest), Method::GET | Method::HEAD) => super::blobs::get(reg, &repo, &digest, headers, head).await,
        (Route::Blob(repo, digest), Method::DELETE) => super::blobs::delete(reg, &repo, &digest),
        (Route::Uploads(repo), Method::POST) => super::uploads::start(reg, &repo, q, body).await,
        (Route::Upload(repo, id), Method::PATCH) => super::uploads::patch(reg, &repo, &id, headers, body).await,
        (Route::Upload(repo, id), Method::PUT) => super::uploads::finish(reg, &repo, &id, q, headers, body).await,
        (Route::Upload(repo, id), Method::GET) => super::uploads::status(reg, &repo, &id).await,
        (Route::Upload(repo, id), Method::DELETE) => super::uploads::cancel(reg, &repo, &id),
        (Route::Manifest(repo, reference), Method::GET | Method::HEAD) => super::manifests::get(reg, &repo, &reference, head),
        (Route::Manifest(repo, reference), Method::PUT) => super::manifests::put(reg, &repo, &reference, headers, body).await,
        (Route::Manifest(repo, reference), Method::DELETE) => super::manifests::delete(reg, &repo, &reference),
        (_, m) => Err(RegistryError::new(StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED", format!("{m} is not supported on {}", uri.path()))),
    }
}

#[cfg(test)]
mod tests {
    use super::Params;

    #[test]
    fn query_parameters_are_decoded_and_the_first_of_a_repeated_one_counts() {
        let p = Params::parse(Some("digest=sha256%3Aab&digest=sha256:cd&artifactType=application%2Fx&n=2&other=1"));
        assert_eq!(p.digest.as_deref(), Some("sha256:ab"));
        assert_eq!(p.artifact_type.as_deref(), Some("application/x"));
        assert_eq!(p.n.as_deref(), Some("2"));
        assert!(p.mount.is_none() && p.from.is_none() && p.last.is_none());
        assert!(Params::parse(None).digest.is_none());
        assert!(Params::parse(Some("%zz&=&&digest")).digest.is_some(), "odd queries parse, never fail");
    }
}
