//! Phase 8: the PaaS. `paas serve` takes deployments over a REST API: the code of an app
//! (a tar or tar.gz) and a runtime become an image (the runtime's layers and one layer of the
//! code, packed as `prepare-layer` packs), which the engine runs on the network `platform`; once
//! it answers an HTTP check, the route `APP.<domain>` switches to it in one transaction and the
//! version before stops. The proxy (`proxy serve --domain platform.local`) serves the routes.
//!
//! The service is the one floor above `engine`, and uses it as a library: the API answers from
//! the state database; one worker thread, with its own `Engine`, builds and starts deployments
//! one at a time from a bounded queue. Files live under `<root>/paas/`: `uploads/` (a code
//! archive while it arrives), `builds/dep-N/` (its tree until its layer is made), `logs/dep-N.log`
//! (the build log, served with the deployment).

pub mod api;
pub mod client;
pub mod code;
pub mod console;
pub mod deps;
pub mod detect;
pub mod form;
pub mod jobs;
pub mod keeper;
pub mod lab;
pub mod probe;
pub mod secrets;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::http_server::Limits;
use crate::state::Db;

/// How `paas serve` runs.
#[derive(Debug, Clone)]
pub struct PaasOptions {
    /// The data root.
    pub root: PathBuf,
    /// Where the API listens.
    pub listen: SocketAddr,
    /// Apps answer as `APP.<domain>`.
    pub domain: String,
    /// The largest code upload, in bytes.
    pub max_upload: u64,
    /// Connection limits.
    pub limits: Limits,
    /// The health checks of live versions.
    pub keep: keeper::KeepOptions,
    /// The registry built images are pushed to (`localhost:5000`): they are named
    /// `REGISTRY/apps/APP:dep-N`.
    pub registry: String,
}

/// How many deployments may wait for the worker.
pub const QUEUE: usize = 8;

/// The port an app listens on unless the deploy names one (its `PORT`).
pub const DEFAULT_PORT: u16 = 8080;

/// The network apps run on.
pub const NETWORK: &str = "platform";

/// The running service, shared by the API's handlers.
pub struct Paas {
    /// The data root.
    pub root: PathBuf,
    /// The state database (short queries only: the worker has its own connection).
    pub db: Mutex<Db>,
    /// The worker's queue.
    pub jobs: mpsc::SyncSender<i64>,
    /// Apps answer as `APP.<domain>`.
    pub domain: String,
    /// The largest code upload, in bytes.
    pub max_upload: u64,
    /// Seals secrets.
    pub sealer: secrets::Sealer,
    /// Where built images go.
    pub registry: String,
}

impl Paas {
    /// Where the service keeps its files.
    pub fn dir(root: &Path) -> PathBuf {
        root.join("paas")
    }

    /// The key file secrets are sealed with.
    pub fn key_file(root: &Path) -> PathBuf {
        Paas::dir(root).join("secret.key")
    }

    /// The API token file.
    pub fn token_file(root: &Path) -> PathBuf {
        Paas::dir(root).join("api.token")
    }

    /// The repository of an app's images (`localhost:5000/apps/APP`).
    pub fn repository(registry: &str, app: &str) -> String {
        format!("{registry}/apps/{app}")
    }

    /// An app's URL.
    pub fn url(&self, app: &str) -> String {
        format!("http://{app}.{}", self.domain)
    }
}

/// A deployment's id as shown (`dep-N`).
pub fn deployment_id(n: i64) -> String {
    format!("dep-{n}")
}

/// An API error: its status, the form field it is about, and a sentence.
#[derive(Debug)]
pub struct PaasError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The field of the request at fault, if one is.
    pub field: Option<String>,
    /// What went wrong and what to do.
    pub message: String,
}

impl PaasError {
    /// A 400 about `field`.
    pub fn field(field: &str, message: impl Into<String>) -> PaasError {
        PaasError { status: StatusCode::BAD_REQUEST, field: Some(field.into()), message: message.into() }
    }

    /// An error with a status and no field.
    pub fn status(status: StatusCode, message: impl Into<String>) -> PaasError {
        PaasError { status, field: None, message: message.into() }
    }

    /// A 500 for what failed on our side.
    pub fn internal(e: impl std::fmt::Display) -> PaasError {
        PaasError::status(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    }
}

impl IntoResponse for PaasError {
    fn into_response(self) -> Response {
        let mut body = serde_json::json!({ "error": self.message });
        if let Some(field) = self.field {
            body["field"] = field.into();
        }
        (self.status, axum::Json(body)).into_response()
    }
}

/// The body of an answer the HTTP server gives on its own (a head too large, too many
/// connections), in the API's JSON.
fn error_body(_status: StatusCode, message: &str) -> (&'static str, String) {
    ("application/json", serde_json::json!({ "error": message }).to_string())
}

/// The answer to a request from elsewhere than loopback without the right token.
fn unauthorized() -> Response {
    let mut resp = PaasError::status(StatusCode::UNAUTHORIZED, "requests from other hosts need Authorization: Bearer TOKEN (the token is in paas/api.token under the data root)").into_response();
    resp.headers_mut().insert(axum::http::header::WWW_AUTHENTICATE, axum::http::HeaderValue::from_static("Bearer"));
    resp
}

/// Serves the API until the process ends.
pub fn serve(opts: PaasOptions) -> anyhow::Result<()> {
    let dir = Paas::dir(&opts.root);
    for sub in ["uploads", "builds", "logs"] {
        std::fs::create_dir_all(dir.join(sub)).map_err(|e| anyhow::anyhow!("create {}: {e}", dir.join(sub).display()))?;
    }
    let db = Db::open(&opts.root)?;
    let (jobs, queue) = mpsc::sync_channel(QUEUE);
    // The key is made at the first start, before the worker needs it; what a service before
    // this one left unfinished is settled before any new job.
    let sealer = secrets::Sealer::open(&Paas::key_file(&opts.root)).map_err(|e| anyhow::anyhow!("the secrets key {}: {e}", Paas::key_file(&opts.root).display()))?;
    jobs::recover(&opts.root)?;
    let worker_opts = opts.clone();
    std::thread::Builder::new().name("paas-worker".into()).spawn(move || jobs::worker(&worker_opts, queue))?;
    let (keeper_root, keeper_domain, keep) = (opts.root.clone(), opts.domain.clone(), opts.keep);
    std::thread::Builder::new().name("paas-keeper".into()).spawn(move || keeper::keep(&keeper_root, &keeper_domain, keep))?;
    let paas = Arc::new(Paas { root: opts.root.clone(), db: Mutex::new(db), jobs, domain: opts.domain.clone(), max_upload: opts.max_upload, sealer, registry: opts.registry.clone() });
    let token = secrets::token(&Paas::token_file(&opts.root)).map_err(|e| anyhow::anyhow!("the API token {}: {e}", Paas::token_file(&opts.root).display()))?;
    let api = api::router(paas);
    let console = console::router(api.clone(), token.clone(), dir.join("uploads"), opts.max_upload)?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(opts.listen).await.map_err(|e| anyhow::anyhow!("listen on {}: {e}", opts.listen))?;
        eprintln!("shibafu paas: serving the API at http://{0}/api/ and the console at http://{0}/ (apps at http://APP.{1}, uploads up to {2} bytes)", opts.listen, opts.domain, opts.max_upload);
        let token = Arc::new(token);
        match crate::http_server::serve(listener, opts.limits, error_body, move |mut req, peer| {
            let local = peer.ip().is_loopback();
            // The API: loopback, or the token on each request. The console: loopback, or a
            // session it gave for the token.
            let to_api = req.uri().path() == "/api" || req.uri().path().starts_with("/api/");
            let allowed = !to_api || local || secrets::bearer_matches(req.headers(), &token);
            let mut router = if to_api { api.clone() } else { console.clone() };
            req.extensions_mut().insert(console::Caller { local });
            async move {
                use tower_service::Service;
                if !allowed {
                    return unauthorized();
                }
                match router.call(req).await {
                    Ok(resp) => resp,
                    Err(never) => match never {},
                }
            }
        })
        .await
        {}
    })
}
