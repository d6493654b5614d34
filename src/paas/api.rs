//! The REST API's routes and handlers. A deploy is checked and its code unpacked inside the
//! request (bad input stores nothing and says which field is at fault); it is answered 202 as
//! soon as the deployment is queued. Reads answer from the state database.

use std::sync::Arc;

use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use super::form::{self, DeployForm};
use super::{code, deployment_id, jobs, Paas, PaasError};
use crate::state::paas::{DeploymentRow, NewDeployment};

/// The API.
pub fn router(paas: Arc<Paas>) -> Router {
    Router::new()
        .route("/api/deploy", post(deploy))
        .route("/api/deployments/{id}", get(deployment))
        .route("/api/apps", get(apps))
        .route("/api/apps/{name}", get(app))
        .route("/api/apps/{name}/deployments", get(app_deployments))
        .fallback(|| async { PaasError::status(StatusCode::NOT_FOUND, "no such endpoint: see GET /api/apps, POST /api/deploy") })
        // The form's size is counted as it streams (`--max-upload`), not held to axum's default.
        .layer(DefaultBodyLimit::disable())
        .with_state(paas)
}

type Answer = Result<Response, PaasError>;

async fn deploy(State(paas): State<Arc<Paas>>, form: Result<Multipart, MultipartRejection>) -> Answer {
    let form = form.map_err(|e| PaasError::field("form", format!("{e}: send multipart/form-data (curl -F app_name=... -F runtime=... -F code=@app.tar.gz)")))?;
    let uploads = Paas::dir(&paas.root).join("uploads");
    let form = form::read(form, &uploads, paas.max_upload).await?;
    let p = paas.clone();
    tokio::task::spawn_blocking(move || accept(&p, form)).await.map_err(PaasError::internal)?
}

/// Unpacks the code into a build dir, records the deployment and queues it.
fn accept(paas: &Paas, form: DeployForm) -> Answer {
    let builds = Paas::dir(&paas.root).join("builds");
    let temp = tempfile::Builder::new().prefix(".new-").tempdir_in(&builds).map_err(PaasError::internal)?;
    // The tree's top becomes the image's `/`: it must stay as open as a root directory is.
    std::fs::set_permissions(temp.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).map_err(PaasError::internal)?;
    let app_dir = temp.path().join("app");
    std::fs::create_dir(&app_dir).map_err(PaasError::internal)?;
    code::unpack(&form.code, &app_dir).map_err(|e| PaasError::field("code", e))?;
    drop(form.code);
    let command = form.command.as_ref().map(|c| vec!["/bin/sh".to_string(), "-c".into(), c.clone()]);
    let id = {
        let db = paas.db.lock().map_err(PaasError::internal)?;
        db.insert_deployment(&NewDeployment {
            app: &form.app,
            runtime: &form.runtime_text,
            env: &form.env,
            port: form.port,
            health_path: &form.health_path,
            command: command.as_deref(),
        })
        .map_err(PaasError::internal)?
    };
    let dir = jobs::build_dir(&paas.root, id);
    if let Err(e) = std::fs::rename(temp.keep(), &dir) {
        let _ = paas.db.lock().map(|db| db.set_deployment_status(id, "failed", Some(&format!("keep the code: {e}"))));
        return Err(PaasError::internal(format!("keep the code: {e}")));
    }
    if paas.jobs.try_send(id).is_err() {
        let reason = format!("the deploy queue is full ({} waiting); try again when one has finished", super::QUEUE);
        let _ = paas.db.lock().map(|db| db.set_deployment_status(id, "failed", Some(&reason)));
        let _ = std::fs::remove_dir_all(&dir);
        let mut resp = PaasError::status(StatusCode::SERVICE_UNAVAILABLE, reason).into_response();
        resp.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
        return Ok(resp);
    }
    let body = json!({ "deployment_id": deployment_id(id), "status": "building", "url": paas.url(&form.app) });
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

/// Reads `dep-N`.
fn parse_id(text: &str) -> Result<i64, PaasError> {
    text.strip_prefix("dep-")
        .and_then(|n| n.parse::<i64>().ok())
        .ok_or_else(|| PaasError::status(StatusCode::NOT_FOUND, format!("no deployment {text:?}: ids look like dep-12")))
}

async fn deployment(State(paas): State<Arc<Paas>>, Path(id): Path<String>) -> Answer {
    let n = parse_id(&id)?;
    let row = {
        let db = paas.db.lock().map_err(PaasError::internal)?;
        db.deployment(n).map_err(PaasError::internal)?
    };
    let row = row.ok_or_else(|| PaasError::status(StatusCode::NOT_FOUND, format!("no deployment {id}")))?;
    let mut body = describe(&paas, &row);
    body["log"] = json!(build_log(&paas, n));
    Ok(Json(body).into_response())
}

/// A deployment as the API shows it: env names only, never values.
fn describe(paas: &Paas, d: &DeploymentRow) -> Value {
    json!({
        "deployment_id": deployment_id(d.id),
        "app": d.app,
        "runtime": d.runtime,
        "status": d.status,
        "reason": d.reason,
        "image": d.image,
        "image_digest": d.image_digest,
        "command": d.command,
        "env": d.env.keys().collect::<Vec<_>>(),
        "port": d.port,
        "health_path": d.health_path,
        "container": d.container_id.as_ref().map(|_| jobs::container_name(&d.app, d.id)),
        "url": paas.url(&d.app),
        "created_at": d.created_at,
        "finished_at": d.finished_at,
    })
}

/// The last lines of a deployment's build log (at most 256 KiB of it).
fn build_log(paas: &Paas, id: i64) -> Vec<String> {
    use std::io::{Read, Seek, SeekFrom};
    const MAX: u64 = 256 << 10;
    let Ok(mut file) = std::fs::File::open(jobs::log_path(&paas.root, id)) else { return vec![] };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(MAX)));
    let mut text = String::new();
    let _ = file.take(MAX).read_to_string(&mut text);
    text.lines().map(str::to_string).collect()
}

async fn apps(State(paas): State<Arc<Paas>>) -> Answer {
    let db = paas.db.lock().map_err(PaasError::internal)?;
    let mut out = Vec::new();
    for a in db.apps().map_err(PaasError::internal)? {
        out.push(app_summary(&paas, &db, &a.name, a.live_deployment)?);
    }
    Ok(Json(out).into_response())
}

/// An app: the deployment that serves it (else the latest), and its container's state.
fn app_summary(paas: &Paas, db: &crate::state::Db, name: &str, live: Option<i64>) -> Result<Value, PaasError> {
    let deployments = db.deployments_of(name).map_err(PaasError::internal)?;
    let shown = deployments.iter().find(|d| Some(d.id) == live).or(deployments.first());
    let last_failure = deployments.iter().find(|d| d.status == "failed").map(|d| json!({ "deployment_id": deployment_id(d.id), "reason": d.reason, "at": d.finished_at }));
    let container = shown.and_then(|d| d.container_id.as_deref()).and_then(|id| db.containers_by_id(id).ok()).and_then(|mut rows| rows.pop());
    Ok(json!({
        "name": name,
        "url": paas.url(name),
        "status": shown.map(|d| d.status.as_str()),
        "live_deployment": live.map(deployment_id),
        "latest_deployment": deployments.first().map(|d| deployment_id(d.id)),
        "image_digest": shown.and_then(|d| d.image_digest.as_deref()),
        "container": container.as_ref().map(|c| c.name.as_str()),
        "state": container.as_ref().map(|c| c.state.as_str()),
        "restarts": container.as_ref().map_or(0, |c| c.restart_count),
        "health": container.as_ref().and_then(|c| c.health.as_ref()).map(|h| h.status.as_str()),
        "last_failure": last_failure,
    }))
}

async fn app(State(paas): State<Arc<Paas>>, Path(name): Path<String>) -> Answer {
    let db = paas.db.lock().map_err(PaasError::internal)?;
    let a = db.app(&name).map_err(PaasError::internal)?.ok_or_else(|| no_app(&name))?;
    Ok(Json(app_summary(&paas, &db, &a.name, a.live_deployment)?).into_response())
}

async fn app_deployments(State(paas): State<Arc<Paas>>, Path(name): Path<String>) -> Answer {
    let db = paas.db.lock().map_err(PaasError::internal)?;
    db.app(&name).map_err(PaasError::internal)?.ok_or_else(|| no_app(&name))?;
    let rows = db.deployments_of(&name).map_err(PaasError::internal)?;
    Ok(Json(rows.iter().map(|d| describe(&paas, d)).collect::<Vec<_>>()).into_response())
}

fn no_app(name: &str) -> PaasError {
    PaasError::status(StatusCode::NOT_FOUND, format!("no app {name:?} (GET /api/apps lists them)"))
}
