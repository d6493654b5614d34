//! The console's forms: each checks the caller's CSRF token, then makes the API request the CLI
//! would make, and shows where it led (a 303 to the new deployment) or the API's error.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::extract::{Form, Path, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use axum::Extension;
use serde_json::Value;

use super::auth::{csrf_ok, csrf_refused, Who};
use super::views;
use super::{see_other, segment, ApiAnswer, Console};

/// After a change: the new deployment's page, or the app's.
fn after(answer: ApiAnswer, app: &str) -> Response {
    if !answer.status.is_success() {
        return answer.error_page();
    }
    match answer.body.get("deployment_id").and_then(Value::as_str) {
        Some(id) => see_other(&format!("/deployments/{}", segment(id))),
        None => see_other(&format!("/apps/{}", segment(app))),
    }
}

/// A form with only its CSRF token, or with `to`.
#[derive(serde::Deserialize)]
pub struct Plain {
    csrf: String,
    to: Option<String>,
}

/// Rolls back (to `to`, else the release before).
pub async fn rollback(State(console): State<Arc<Console>>, Extension(who): Extension<Who>, Path(name): Path<String>, Form(form): Form<Plain>) -> Response {
    if !csrf_ok(&who, &form.csrf) {
        return csrf_refused();
    }
    let query = form.to.filter(|t| !t.is_empty()).map(|t: String| format!("?to={}", segment(&t))).unwrap_or_default();
    after(console.api(Method::POST, &format!("/api/apps/{}/rollback{query}", segment(&name)), None, Body::empty()).await, &name)
}

/// Removes the app.
pub async fn delete(State(console): State<Arc<Console>>, Extension(who): Extension<Who>, Path(name): Path<String>, Form(form): Form<Plain>) -> Response {
    if !csrf_ok(&who, &form.csrf) {
        return csrf_refused();
    }
    let answer = console.api(Method::DELETE, &format!("/api/apps/{}", segment(&name)), None, Body::empty()).await;
    if !answer.status.is_success() {
        return answer.error_page();
    }
    see_other("/")
}

/// A key and its value.
#[derive(serde::Deserialize)]
pub struct KeyValue {
    csrf: String,
    key: String,
    value: String,
}

async fn set(console: &Console, who: &Who, name: &str, kind: &str, form: KeyValue) -> Response {
    if !csrf_ok(who, &form.csrf) {
        return csrf_refused();
    }
    let path = format!("/api/apps/{}/{kind}/{}", segment(name), segment(form.key.trim()));
    after(console.api(Method::PUT, &path, Some("text/plain; charset=utf-8".into()), Body::from(form.value)).await, name)
}

async fn unset(console: &Console, who: &Who, name: &str, kind: &str, key: &str, form: Plain) -> Response {
    if !csrf_ok(who, &form.csrf) {
        return csrf_refused();
    }
    after(console.api(Method::DELETE, &format!("/api/apps/{}/{kind}/{}", segment(name), segment(key)), None, Body::empty()).await, name)
}

/// Sets an env variable (a new release).
pub async fn set_env(State(console): State<Arc<Console>>, Extension(who): Extension<Who>, Path(name): Path<String>, Form(form): Form<KeyValue>) -> Response {
    set(&console, &who, &name, "env", form).await
}

/// Unsets an env variable.
pub async fn unset_env(State(console): State<Arc<Console>>, Extension(who): Extension<Who>, Path((name, key)): Path<(String, String)>, Form(form): Form<Plain>) -> Response {
    unset(&console, &who, &name, "env", &key, form).await
}

/// Sets a secret (its value goes to the API and is never shown again).
pub async fn set_secret(State(console): State<Arc<Console>>, Extension(who): Extension<Who>, Path(name): Path<String>, Form(form): Form<KeyValue>) -> Response {
    set(&console, &who, &name, "secrets", form).await
}

/// Unsets a secret.
pub async fn unset_secret(State(console): State<Arc<Console>>, Extension(who): Extension<Who>, Path((name, key)): Path<(String, String)>, Form(form): Form<Plain>) -> Response {
    unset(&console, &who, &name, "secrets", &key, form).await
}

/// The deploy form as the browser sends it: the API's text fields, `env` and `secrets` as
/// `KEY=VALUE` lines, and the archive.
#[derive(Default)]
struct DeployFields {
    text: Vec<(String, String)>,
    code: Option<(String, tempfile::TempPath)>,
}

/// The fields the API takes as they are.
const PASSED_ON: &[&str] = &["app_name", "runtime", "port", "health_path", "command"];

/// `KEY=VALUE` lines as `prefix[KEY]` fields.
fn lines_as_fields(field: &str, prefix: &str, text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let (k, v) = line.split_once('=').ok_or_else(|| format!("{field}, line {}: write KEY=VALUE, one to a line", n + 1))?;
        out.push((format!("{prefix}[{}]", k.trim()), v.to_string()));
    }
    Ok(out)
}

/// Reads the browser's form: the CSRF token must come first, before the archive is taken.
async fn read_deploy(console: &Console, who: &Who, mut form: Multipart) -> Result<DeployFields, Response> {
    let bad = |m: String| views::error(StatusCode::BAD_REQUEST, "Bad form", &m);
    let mut fields = DeployFields::default();
    let mut csrf_seen = false;
    while let Some(field) = form.next_field().await.map_err(|e| bad(format!("the form did not arrive whole: {e}")))? {
        let name = field.name().unwrap_or_default().to_string();
        if name == "csrf" {
            let value = crate::paas::form::small(field, &name).await.map_err(|e| bad(e.message))?;
            if !csrf_ok(who, &value) {
                return Err(csrf_refused());
            }
            csrf_seen = true;
            continue;
        }
        if !csrf_seen {
            return Err(csrf_refused());
        }
        if name == "code" {
            let file = field.file_name().unwrap_or_default().to_string();
            let saved = crate::paas::form::save(field, &console.uploads, console.max_upload).await.map_err(|e| views::error(e.status, "Upload refused", &format!("code: {}", e.message)))?;
            if !file.is_empty() {
                fields.code = Some((file, saved));
            }
            continue;
        }
        let value = crate::paas::form::small(field, &name).await.map_err(|e| bad(format!("{name}: {}", e.message)))?;
        match name.as_str() {
            "env" => fields.text.extend(lines_as_fields("env", "env", &value).map_err(bad)?),
            "secrets" => fields.text.extend(lines_as_fields("secrets", "secret", &value).map_err(bad)?),
            n if PASSED_ON.contains(&n) && !value.trim().is_empty() => fields.text.push((name, value.trim().to_string())),
            _ => {}
        }
    }
    if !csrf_seen {
        return Err(csrf_refused());
    }
    Ok(fields)
}

/// The API's multipart body for `fields`, the archive streamed from its file.
async fn api_form(boundary: &str, fields: DeployFields) -> std::io::Result<Body> {
    let mut head = Vec::new();
    for (name, value) in &fields.text {
        head.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{}\"\r\n\r\n{value}\r\n", name.replace(['"', '\r', '\n'], "")).as_bytes());
    }
    let Some((file, path)) = fields.code else {
        head.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        return Ok(Body::from(head));
    };
    head.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"code\"; filename=\"{}\"\r\nContent-Type: application/octet-stream\r\n\r\n", file.replace(['"', '\r', '\n'], "")).as_bytes());
    let tail = format!("\r\n--{boundary}--\r\n").into_bytes();
    let reader = tokio::fs::File::open(&path).await?;
    use futures::StreamExt;
    let chunks = tokio_util::io::ReaderStream::new(reader);
    // The temp file goes when the stream has been read (or dropped).
    let stream = futures::stream::once(async move { Ok(axum::body::Bytes::from(head)) })
        .chain(chunks)
        .chain(futures::stream::once(async move {
            drop(path);
            Ok(axum::body::Bytes::from(tail))
        }));
    Ok(Body::from_stream(stream))
}

/// Deploys from the form: the same request `shibafu app deploy` sends.
pub async fn deploy(State(console): State<Arc<Console>>, Extension(who): Extension<Who>, form: Result<Multipart, MultipartRejection>) -> Response {
    let form = match form {
        Ok(f) => f,
        Err(e) => return views::error(StatusCode::BAD_REQUEST, "Bad form", &format!("{e}: the deploy form is multipart/form-data")),
    };
    let fields = match read_deploy(&console, &who, form).await {
        Ok(f) => f,
        Err(page) => return page,
    };
    let app = fields.text.iter().find(|(k, _)| k == "app_name").map(|(_, v)| v.clone()).unwrap_or_default();
    let boundary = format!("console-{}", crate::paas::secrets::random_hex().unwrap_or_default());
    let body = match api_form(&boundary, fields).await {
        Ok(b) => b,
        Err(e) => return views::error(StatusCode::INTERNAL_SERVER_ERROR, "Upload lost", &e.to_string()),
    };
    after(console.api(Method::POST, "/api/deploy", Some(format!("multipart/form-data; boundary={boundary}")), body).await, &app)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_lines_become_the_apis_fields() {
        assert_eq!(lines_as_fields("env", "env", "A=1\n\n B = x=y\n").unwrap(), vec![("env[A]".into(), "1".into()), ("env[B]".into(), " x=y".into())]);
        assert!(lines_as_fields("secrets", "secret", "A=1\nnope").unwrap_err().contains("line 2"));
    }
}
