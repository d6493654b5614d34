//! The REST API's routes and handlers. A deploy is checked and its code unpacked inside the
//! request (bad input stores nothing and says which field is at fault); it is answered 202 as
//! soon as the deployment is queued. Reads answer from the state database.

use std::sync::Arc;

use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use serde_json::{json, Value};

use super::form::{self, DeployForm};
use super::{code, deployment_id, jobs, Paas, PaasError};
use crate::state::paas::{ConfigChange, DeploymentRow, NewDeployment};
use std::collections::BTreeMap;

/// The API, and its OpenAPI description (from the handlers' `#[utoipa::path]`), served at
/// `GET /api/openapi.json`.
pub fn router(paas: Arc<Paas>) -> Router {
    let (router, mut spec) = OpenApiRouter::new()
        .routes(routes!(deploy))
        .routes(routes!(deployment))
        .routes(routes!(apps))
        .routes(routes!(app, delete_app))
        .routes(routes!(app_deployments))
        .routes(routes!(app_config))
        .routes(routes!(set_env, unset_env))
        .routes(routes!(set_secret, unset_secret))
        .routes(routes!(rollback))
        .routes(routes!(diff))
        .routes(routes!(logs))
        .routes(routes!(super::lab::containers))
        .routes(routes!(super::lab::networks))
        .routes(routes!(super::lab::images))
        .routes(routes!(super::lab::registry))
        .split_for_parts();
    spec.info.title = "shibafu PaaS API".into();
    spec.info.description = Some("Deploy apps from their code; each runs on the network platform and answers as APP.platform.local.".into());
    let spec = serde_json::to_value(&spec).unwrap_or_default();
    router
        .route("/api/openapi.json", get(move || async move { Json(spec) }))
        .fallback(|| async { PaasError::status(StatusCode::NOT_FOUND, "no such endpoint: see GET /api/openapi.json") })
        // The form's size is counted as it streams (`--max-upload`), not held to axum's default.
        .layer(DefaultBodyLimit::disable())
        .with_state(paas)
}

type Answer = Result<Response, PaasError>;

#[utoipa::path(post, path = "/api/deploy", tag = "deployments",
    request_body(content_type = "multipart/form-data", description = "app_name, runtime (node:18, python:3.11, static or REPO:TAG), code (tar, tar.gz or zip), env[KEY], secret[KEY], port, health_path, command"),
    responses((status = 202, description = "queued: deployment_id, status building, url"), (status = 400, description = "a field is bad: error and field"), (status = 413, description = "the archive is over --max-upload"), (status = 503, description = "the queue is full")))]
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
    let env: BTreeMap<String, Option<String>> = form.env.iter().map(|(k, v)| (k.clone(), Some(v.clone()))).collect();
    let mut secrets = BTreeMap::new();
    for (k, v) in &form.secrets {
        secrets.insert(k.clone(), Some(paas.sealer.seal(&form.app, k, v).map_err(PaasError::internal)?));
    }
    let id = {
        let db = paas.db.lock().map_err(PaasError::internal)?;
        db.insert_deployment(&NewDeployment {
            app: &form.app,
            runtime: &form.runtime_text,
            port: form.port,
            health_path: &form.health_path,
            command: command.as_deref(),
            image: None,
            config: ConfigChange::Merge { env: &env, secrets: &secrets },
            source: "build",
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

#[utoipa::path(get, path = "/api/deployments/{id}", tag = "deployments", params(("id" = String, Path, description = "dep-N")),
    responses((status = 200, description = "status, reason, image, command, env and secret names, source, build log"), (status = 404, description = "no such deployment")))]
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
        "secrets": d.secrets.keys().collect::<Vec<_>>(),
        "config_version": d.config_version,
        "source": d.source,
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

#[utoipa::path(get, path = "/api/apps", tag = "apps", responses((status = 200, description = "every app with its live deployment, status and health")))]
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
    let (health, health_restarts, last_check_failure) = db.app_health(name).map_err(PaasError::internal)?;
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
        "health": health,
        "health_restarts": health_restarts,
        "last_check_failure": last_check_failure,
        "last_failure": last_failure,
    }))
}

#[utoipa::path(get, path = "/api/apps/{name}", tag = "apps", params(("name" = String, Path)),
    responses((status = 200, description = "status, health, restarts, last failures"), (status = 404, description = "no such app")))]
async fn app(State(paas): State<Arc<Paas>>, Path(name): Path<String>) -> Answer {
    let db = paas.db.lock().map_err(PaasError::internal)?;
    let a = db.app(&name).map_err(PaasError::internal)?.ok_or_else(|| no_app(&name))?;
    Ok(Json(app_summary(&paas, &db, &a.name, a.live_deployment)?).into_response())
}

#[utoipa::path(get, path = "/api/apps/{name}/deployments", tag = "apps", params(("name" = String, Path)), responses((status = 200, description = "the history, newest first")))]
async fn app_deployments(State(paas): State<Arc<Paas>>, Path(name): Path<String>) -> Answer {
    let db = paas.db.lock().map_err(PaasError::internal)?;
    db.app(&name).map_err(PaasError::internal)?.ok_or_else(|| no_app(&name))?;
    let rows = db.deployments_of(&name).map_err(PaasError::internal)?;
    Ok(Json(rows.iter().map(|d| describe(&paas, d)).collect::<Vec<_>>()).into_response())
}

fn no_app(name: &str) -> PaasError {
    PaasError::status(StatusCode::NOT_FOUND, format!("no app {name:?} (GET /api/apps lists them)"))
}

/// A new deployment of `base`'s image (no build) with a config change: what env and secret
/// changes, and rollbacks, make. 202 with its id.
fn release(paas: &Paas, base: &DeploymentRow, config: ConfigChange, source: &str, mut extra: Value) -> Answer {
    let (image, digest) = match (&base.image, &base.image_digest) {
        (Some(i), Some(d)) => (i.as_str(), d.as_str()),
        _ => return Err(PaasError::status(StatusCode::CONFLICT, format!("{} has no image to run", deployment_id(base.id)))),
    };
    let id = {
        let db = paas.db.lock().map_err(PaasError::internal)?;
        db.insert_deployment(&NewDeployment {
            app: &base.app,
            runtime: &base.runtime,
            port: base.port,
            health_path: &base.health_path,
            command: base.command.as_deref(),
            image: Some((image, digest)),
            config,
            source,
        })
        .map_err(PaasError::internal)?
    };
    if paas.jobs.try_send(id).is_err() {
        let reason = format!("the deploy queue is full ({} waiting); try again when one has finished", super::QUEUE);
        let _ = paas.db.lock().map(|db| db.set_deployment_status(id, "failed", Some(&reason)));
        return Err(PaasError::status(StatusCode::SERVICE_UNAVAILABLE, reason));
    }
    extra["deployment_id"] = json!(deployment_id(id));
    extra["status"] = json!("starting");
    extra["source"] = json!(source);
    extra["url"] = json!(paas.url(&base.app));
    Ok((StatusCode::ACCEPTED, Json(extra)).into_response())
}

/// The deployment that serves `app` (what a config change restarts).
fn live(db: &crate::state::Db, app: &str) -> Result<DeploymentRow, PaasError> {
    let a = db.app(app).map_err(PaasError::internal)?.ok_or_else(|| no_app(app))?;
    let id = a.live_deployment.ok_or_else(|| PaasError::status(StatusCode::CONFLICT, format!("{app} has no live deployment to restart with the change; deploy it first")))?;
    db.deployment(id).map_err(PaasError::internal)?.ok_or_else(|| PaasError::internal(format!("deployment {id} is gone")))
}

#[utoipa::path(get, path = "/api/apps/{name}/config", tag = "config", params(("name" = String, Path)), responses((status = 200, description = "env values, secret names and times, config version")))]
async fn app_config(State(paas): State<Arc<Paas>>, Path(name): Path<String>) -> Answer {
    let db = paas.db.lock().map_err(PaasError::internal)?;
    db.app(&name).map_err(PaasError::internal)?.ok_or_else(|| no_app(&name))?;
    let config = db.app_config(&name).map_err(PaasError::internal)?;
    let secrets: Vec<Value> = db.app_secrets(&name).map_err(PaasError::internal)?.into_iter().map(|(n, at)| json!({ "name": n, "updated_at": at })).collect();
    Ok(Json(json!({ "env": config.env, "secrets": secrets, "config_version": config.version })).into_response())
}

/// A PUT's body: the value, as UTF-8 text of at most 64 KiB.
async fn value_of(body: axum::body::Body, what: &str) -> Result<String, PaasError> {
    let bytes = axum::body::to_bytes(body, form::MAX_VALUE).await.map_err(|_| PaasError::field(what, format!("the value is over {} KiB, or the body stopped half-way", form::MAX_VALUE >> 10)))?;
    String::from_utf8(bytes.to_vec()).map_err(|_| PaasError::field(what, "not UTF-8 text"))
}

/// Sets or unsets one env variable or secret of `app`, as a new release.
async fn change(paas: Arc<Paas>, app: String, key: String, secret: bool, value: Option<String>) -> Answer {
    let what = if secret { format!("secret[{key}]") } else { format!("env[{key}]") };
    form::check_key(&what, &key)?;
    let p = paas.clone();
    tokio::task::spawn_blocking(move || {
        let paas = p;
        let base = {
            let db = paas.db.lock().map_err(PaasError::internal)?;
            let base = live(&db, &app)?;
            let config = db.app_config(&app).map_err(PaasError::internal)?;
            let (mine, other) = if secret { (&config.secrets, &config.env) } else { (&config.env, &config.secrets) };
            if value.is_none() && !mine.contains_key(&key) {
                return Err(PaasError::status(StatusCode::NOT_FOUND, format!("{app} has no {} {key}", if secret { "secret" } else { "env variable" })));
            }
            if other.contains_key(&key) {
                return Err(PaasError::field(&what, format!("{key} is set as {} already: unset it there first", if secret { "an env variable" } else { "a secret" })));
            }
            base
        };
        let sealed = match (&value, secret) {
            (Some(v), true) => Some(paas.sealer.seal(&app, &key, v).map_err(PaasError::internal)?),
            (v, _) => v.clone(),
        };
        let change = BTreeMap::from([(key.clone(), sealed)]);
        let none = BTreeMap::new();
        let config = if secret { ConfigChange::Merge { env: &none, secrets: &change } } else { ConfigChange::Merge { env: &change, secrets: &none } };
        let verb = if value.is_some() { "set" } else { "unset" };
        let source = format!("{} {verb} {key}", if secret { "secret" } else { "env" });
        release(&paas, &base, config, &source, json!({}))
    })
    .await
    .map_err(PaasError::internal)?
}

#[utoipa::path(put, path = "/api/apps/{name}/env/{key}", tag = "config", params(("name" = String, Path), ("key" = String, Path)),
    request_body(content_type = "text/plain", description = "the value"), responses((status = 202, description = "a new release with it")))]
async fn set_env(State(paas): State<Arc<Paas>>, Path((name, key)): Path<(String, String)>, body: axum::body::Body) -> Answer {
    let value = value_of(body, &format!("env[{key}]")).await?;
    change(paas, name, key, false, Some(value)).await
}

#[utoipa::path(delete, path = "/api/apps/{name}/env/{key}", tag = "config", params(("name" = String, Path), ("key" = String, Path)),
    responses((status = 202, description = "a new release without it"), (status = 404, description = "not set")))]
async fn unset_env(State(paas): State<Arc<Paas>>, Path((name, key)): Path<(String, String)>) -> Answer {
    change(paas, name, key, false, None).await
}

#[utoipa::path(put, path = "/api/apps/{name}/secrets/{key}", tag = "config", params(("name" = String, Path), ("key" = String, Path)),
    request_body(content_type = "text/plain", description = "the value (sealed at rest, never returned)"), responses((status = 202, description = "a new release with it")))]
async fn set_secret(State(paas): State<Arc<Paas>>, Path((name, key)): Path<(String, String)>, body: axum::body::Body) -> Answer {
    let value = value_of(body, &format!("secret[{key}]")).await?;
    change(paas, name, key, true, Some(value)).await
}

#[utoipa::path(delete, path = "/api/apps/{name}/secrets/{key}", tag = "config", params(("name" = String, Path), ("key" = String, Path)),
    responses((status = 202, description = "a new release without it"), (status = 404, description = "not set")))]
async fn unset_secret(State(paas): State<Arc<Paas>>, Path((name, key)): Path<(String, String)>) -> Answer {
    change(paas, name, key, true, None).await
}

/// `?to=dep-N`, `?from=...`.
#[derive(Debug, serde::Deserialize)]
struct Pair {
    from: Option<String>,
    to: Option<String>,
}

/// A deployment of `app` by its id.
fn deployment_of(db: &crate::state::Db, app: &str, id: &str) -> Result<DeploymentRow, PaasError> {
    let n = parse_id(id)?;
    db.deployment(n).map_err(PaasError::internal)?.filter(|d| d.app == app).ok_or_else(|| PaasError::status(StatusCode::NOT_FOUND, format!("{app} has no deployment {id}")))
}

#[utoipa::path(post, path = "/api/apps/{name}/rollback", tag = "deployments", params(("name" = String, Path), ("to" = Option<String>, Query, description = "dep-N; default: the release live before")),
    responses((status = 202, description = "a new release of that image and config, and what it restores"), (status = 409, description = "nothing to go back to")))]
async fn rollback(State(paas): State<Arc<Paas>>, Path(name): Path<String>, axum::extract::Query(q): axum::extract::Query<Pair>) -> Answer {
    let p = paas.clone();
    tokio::task::spawn_blocking(move || {
        let paas = p;
        let target = {
            let db = paas.db.lock().map_err(PaasError::internal)?;
            let current = live(&db, &name)?;
            match q.to.as_deref() {
                Some(to) => deployment_of(&db, &name, to)?,
                // The release that served before this one.
                None => db
                    .deployments_of(&name)
                    .map_err(PaasError::internal)?
                    .into_iter()
                    .find(|d| d.id < current.id && d.status == "superseded")
                    .ok_or_else(|| PaasError::status(StatusCode::CONFLICT, format!("{name} has no release before {} to go back to", deployment_id(current.id))))?,
            }
        };
        if target.image.is_none() {
            return Err(PaasError::status(StatusCode::CONFLICT, format!("{} was never built (status {}): nothing to go back to", deployment_id(target.id), target.status)));
        }
        let restores = json!({
            "deployment_id": deployment_id(target.id),
            "image": target.image,
            "image_digest": target.image_digest,
            "command": target.command,
            "env": target.env.keys().collect::<Vec<_>>(),
            "secrets": target.secrets.keys().collect::<Vec<_>>(),
            "config_version": target.config_version,
        });
        let source = format!("rollback to {}", deployment_id(target.id));
        release(&paas, &target, ConfigChange::Restore { env: &target.env, secrets: &target.secrets }, &source, json!({ "restores": restores }))
    })
    .await
    .map_err(PaasError::internal)?
}

#[utoipa::path(get, path = "/api/apps/{name}/diff", tag = "deployments", params(("name" = String, Path), ("from" = String, Query), ("to" = String, Query)),
    responses((status = 200, description = "image, command, port, env changes; secrets by name")))]
async fn diff(State(paas): State<Arc<Paas>>, Path(name): Path<String>, axum::extract::Query(q): axum::extract::Query<Pair>) -> Answer {
    let (Some(from), Some(to)) = (q.from.as_deref(), q.to.as_deref()) else {
        return Err(PaasError::field("from", "give both: ?from=dep-A&to=dep-B"));
    };
    let db = paas.db.lock().map_err(PaasError::internal)?;
    let (a, b) = (deployment_of(&db, &name, from)?, deployment_of(&db, &name, to)?);
    let mut out = json!({ "from": from, "to": to });
    for (field, x, y) in [
        ("image", json!(a.image), json!(b.image)),
        ("image_digest", json!(a.image_digest), json!(b.image_digest)),
        ("command", json!(a.command), json!(b.command)),
        ("port", json!(a.port), json!(b.port)),
        ("health_path", json!(a.health_path), json!(b.health_path)),
    ] {
        if x != y {
            out[field] = json!({ "from": x, "to": y });
        }
    }
    let keys = |m: &BTreeMap<String, String>, n: &BTreeMap<String, String>| -> (Vec<String>, Vec<String>) {
        (n.keys().filter(|k| !m.contains_key(*k)).cloned().collect(), m.keys().filter(|k| !n.contains_key(*k)).cloned().collect())
    };
    let (added, removed) = keys(&a.env, &b.env);
    let changed: BTreeMap<&String, Value> = a.env.iter().filter_map(|(k, v)| b.env.get(k).filter(|w| *w != v).map(|w| (k, json!({ "from": v, "to": w })))).collect();
    out["env"] = json!({ "added": added.iter().map(|k| (k.clone(), b.env[k].clone())).collect::<BTreeMap<_, _>>(), "removed": removed, "changed": changed });
    // Secrets by name only: a changed one is found by opening both, and never shown.
    let (added, removed) = keys(&a.secrets, &b.secrets);
    let changed: Vec<&String> = a
        .secrets
        .iter()
        .filter(|(k, v)| b.secrets.get(*k).is_some_and(|w| w != *v && paas.sealer.unseal(&a.app, k, v).ok() != paas.sealer.unseal(&b.app, k, w).ok()))
        .map(|(k, _)| k)
        .collect();
    out["secrets"] = json!({ "added": added, "removed": removed, "changed": changed });
    Ok(Json(out).into_response())
}

#[utoipa::path(delete, path = "/api/apps/{name}", tag = "apps", params(("name" = String, Path)), responses((status = 200, description = "what was removed"), (status = 409, description = "a deployment is in progress")))]
async fn delete_app(State(paas): State<Arc<Paas>>, Path(name): Path<String>) -> Answer {
    let p = paas.clone();
    tokio::task::spawn_blocking(move || {
        let paas = p;
        let containers: Vec<String> = {
            let db = paas.db.lock().map_err(PaasError::internal)?;
            db.app(&name).map_err(PaasError::internal)?.ok_or_else(|| no_app(&name))?;
            let rows = db.deployments_of(&name).map_err(PaasError::internal)?;
            if rows.iter().any(|d| matches!(d.status.as_str(), "building" | "starting")) {
                return Err(PaasError::status(StatusCode::CONFLICT, format!("{name} has a deployment in progress; delete it when that has finished")));
            }
            db.delete_app(&name).map_err(PaasError::internal)?;
            rows.into_iter().filter_map(|d| d.container_id).collect()
        };
        let removed = jobs::remove_app(&paas.root, &paas.registry, &name, &containers).map_err(PaasError::internal)?;
        Ok(Json(json!({ "deleted": name, "removed": removed })).into_response())
    })
    .await
    .map_err(PaasError::internal)?
}

/// `?follow=true&tail=N&timestamps=true`.
#[derive(Debug, serde::Deserialize)]
struct LogQuery {
    #[serde(default)]
    follow: bool,
    tail: Option<usize>,
    #[serde(default)]
    timestamps: bool,
}

/// Lines handed from the blocking log reader to the response body; a client gone ends it.
struct LineSink(tokio::sync::mpsc::Sender<axum::body::Bytes>);

impl std::io::Write for LineSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.blocking_send(axum::body::Bytes::copy_from_slice(buf)).map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The live version's log (stdout and stderr, the engine's restart marks), as `shibafu logs`
/// prints it; `follow` streams until that container stops for good or is replaced.
#[utoipa::path(get, path = "/api/apps/{name}/logs", tag = "apps", params(("name" = String, Path), ("follow" = Option<bool>, Query), ("tail" = Option<usize>, Query), ("timestamps" = Option<bool>, Query)),
    responses((status = 200, description = "the live version's log, streamed with follow", content_type = "text/plain")))]
async fn logs(State(paas): State<Arc<Paas>>, Path(name): Path<String>, axum::extract::Query(q): axum::extract::Query<LogQuery>) -> Answer {
    let cid = {
        let db = paas.db.lock().map_err(PaasError::internal)?;
        live(&db, &name)?.container_id.ok_or_else(|| PaasError::status(StatusCode::CONFLICT, format!("{name}'s live deployment has no container")))?
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<axum::body::Bytes>(64);
    let root = paas.root.clone();
    let opts = crate::engine::logs::LogsOptions { follow: q.follow, filter: crate::engine::logfile::LogFilter { tail: q.tail, ..Default::default() }, timestamps: q.timestamps };
    std::thread::spawn(move || {
        let (mut out, mut err) = (LineSink(tx.clone()), LineSink(tx));
        if let Err(e) = crate::engine::Engine::open(&root).and_then(|engine| engine.logs(&cid, &opts, &mut out, &mut err)) {
            let _ = std::io::Write::write_all(&mut err, format!("[shibafu] the log ended: {e}\n").as_bytes());
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (Ok::<_, std::convert::Infallible>(b), rx)) });
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], axum::body::Body::from_stream(stream)).into_response())
}
