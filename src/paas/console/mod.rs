//! The web console at `/`: server-rendered pages of the apps and of the lab. It changes nothing
//! by itself: each form becomes a request to the API (`/api/...`), called in-process, so the
//! checks and the answers are the API's own; each page is rendered from the API's JSON.
//!
//! Who may use it: a caller on loopback, as for the API; anyone else signs in with the API
//! token (`/login`), which gives a session cookie (HttpOnly, SameSite=Strict). Every form
//! carries a CSRF token (the session's, or one per process for loopback), and a request whose
//! Origin or Sec-Fetch-Site says another site sent it is refused.

mod auth;
mod forms;
mod pages;
mod views;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::Value;

pub use auth::Caller;

/// The largest body of a form other than the deploy form.
const FORM_LIMIT: usize = 256 << 10;

/// What the console's handlers share.
pub struct Console {
    /// The API, called in-process.
    api: Router,
    /// Sessions and CSRF tokens.
    auth: auth::Auth,
    /// Where an uploaded archive waits while it is passed on.
    uploads: std::path::PathBuf,
    /// The largest archive.
    max_upload: u64,
}

/// The console's routes; `api` is the API's router.
pub fn router(api: Router, token: String, uploads: std::path::PathBuf, max_upload: u64) -> std::io::Result<Router> {
    let console = Arc::new(Console { api, auth: auth::Auth::new(token)?, uploads, max_upload });
    let signed_in = Router::new()
        .route("/", get(pages::apps))
        // The archive is counted as it streams (--max-upload), as the API counts it.
        .route("/deploy", post(forms::deploy).layer(axum::extract::DefaultBodyLimit::disable()))
        .route("/apps/{name}", get(pages::app))
        .route("/apps/{name}/diff", get(pages::diff))
        .route("/apps/{name}/logs", get(pages::logs))
        .route("/apps/{name}/rollback", post(forms::rollback))
        .route("/apps/{name}/env", post(forms::set_env))
        .route("/apps/{name}/env/{key}/unset", post(forms::unset_env))
        .route("/apps/{name}/secrets", post(forms::set_secret))
        .route("/apps/{name}/secrets/{key}/unset", post(forms::unset_secret))
        .route("/apps/{name}/delete", post(forms::delete))
        .route("/deployments/{id}", get(pages::deployment))
        .route("/lab/containers", get(pages::containers))
        .route("/lab/networks", get(pages::networks))
        .route("/lab/images", get(pages::images))
        .route("/lab/registry", get(pages::registry))
        .route("/logout", post(auth::logout))
        .route_layer(axum::middleware::from_fn_with_state(console.clone(), auth::require));
    Ok(Router::new()
        .merge(signed_in)
        .route("/login", get(auth::login_page).post(auth::login))
        .route("/static/console.css", get(|| async { ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], include_str!("static/console.css")) }))
        .route("/static/console.js", get(|| async { ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], include_str!("static/console.js")) }))
        .fallback(|| async { views::error(StatusCode::NOT_FOUND, "No such page", "Nothing is here: the apps are at /, the lab's views in the menu.") })
        // Every other form is a few short fields.
        .layer(axum::extract::DefaultBodyLimit::max(FORM_LIMIT))
        .layer(axum::middleware::from_fn(auth::same_site_only))
        .with_state(console))
}

/// An answer of the API: its status and its body (JSON, or the text it sent).
pub struct ApiAnswer {
    /// The status.
    pub status: StatusCode,
    /// The body.
    pub body: Value,
}

impl ApiAnswer {
    /// The API's error, as a page.
    pub fn error_page(&self) -> Response {
        let field = self.body.get("field").and_then(Value::as_str).map(|f| format!("{f}: ")).unwrap_or_default();
        let message = self.body.get("error").and_then(Value::as_str).map_or_else(|| self.body.to_string(), str::to_string);
        views::error(self.status, "The API said no", &format!("{field}{message}"))
    }
}

impl Console {
    /// Calls the API with `body`.
    async fn call(&self, method: Method, path: &str, content_type: Option<String>, body: Body) -> Response {
        use tower_service::Service;
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = content_type {
            req = req.header(header::CONTENT_TYPE, t);
        }
        let Ok(req) = req.body(body) else {
            return views::error(StatusCode::BAD_REQUEST, "Bad request", &format!("{path} is not a path the API takes"));
        };
        match self.api.clone().call(req).await {
            Ok(resp) => resp,
            Err(never) => match never {},
        }
    }

    /// Calls the API and reads its answer (at most 16 MiB of it).
    async fn api(&self, method: Method, path: &str, content_type: Option<String>, body: Body) -> ApiAnswer {
        let resp = self.call(method, path, content_type, body).await;
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 16 << 20).await.unwrap_or_default();
        let body = serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        ApiAnswer { status, body }
    }

    /// A GET of the API, as JSON.
    async fn get(&self, path: &str) -> ApiAnswer {
        self.api(Method::GET, path, None, Body::empty()).await
    }
}

/// `text` made safe as one segment of a path.
fn segment(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect::<String>().replace('+', "%20")
}

/// A 303 to `to` (after a form has done its work).
fn see_other(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_string())]).into_response()
}
