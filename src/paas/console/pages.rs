//! The console's read views, each rendered from a GET of the API.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::auth::Who;
use super::views::{self, Frame};
use super::{segment, ApiAnswer, Console};

/// The runtimes the deploy form offers (any `REPO:TAG` may be typed).
const RUNTIMES: &[&str] = &["node:18", "python:3.11", "static"];

/// How many lines of the live log the app page shows.
const LOG_LINES: usize = 100;

/// The API's answer read as `T`, or the page that says why not (a page is what every caller
/// returns at once, so it is not boxed).
#[allow(clippy::result_large_err)]
fn read<T: DeserializeOwned>(answer: ApiAnswer) -> Result<T, Response> {
    if !answer.status.is_success() {
        return Err(answer.error_page());
    }
    serde_json::from_value(answer.body).map_err(|e| views::error(StatusCode::BAD_GATEWAY, "Unexpected answer", &format!("the API's answer did not read: {e}")))
}

/// `/`: the apps and the deploy form.
pub async fn apps(State(console): State<Arc<Console>>, Extension(who): Extension<Who>) -> Response {
    let apps = match read(console.get("/api/apps").await) {
        Ok(a) => a,
        Err(page) => return page,
    };
    views::render(StatusCode::OK, &views::AppsPage { frame: Frame::new("Apps", &who), apps, runtimes: RUNTIMES })
}

/// `/apps/NAME`: status, history, config, logs.
pub async fn app(State(console): State<Arc<Console>>, Extension(who): Extension<Who>, Path(name): Path<String>) -> Response {
    let base = format!("/api/apps/{}", segment(&name));
    let page = async {
        let app: views::AppView = read(console.get(&base).await)?;
        let deployments = read(console.get(&format!("{base}/deployments")).await)?;
        let config = read(console.get(&format!("{base}/config")).await)?;
        let logs = console.get(&format!("{base}/logs?tail={LOG_LINES}")).await;
        let can_follow = logs.status.is_success();
        let logs = match logs.body {
            Value::String(text) if can_follow => text,
            other => other.get("error").and_then(Value::as_str).unwrap_or("no log").to_string(),
        };
        Ok::<_, Response>(views::AppPage { frame: Frame::new(format!("App {name}"), &who), app, deployments, config, logs, can_follow })
    };
    match page.await {
        Ok(page) => views::render(StatusCode::OK, &page),
        Err(resp) => resp,
    }
}

/// `/deployments/dep-N`: one deployment and its build log; reloads while on its way.
pub async fn deployment(State(console): State<Arc<Console>>, Extension(who): Extension<Who>, Path(id): Path<String>) -> Response {
    let d: views::DeploymentView = match read(console.get(&format!("/api/deployments/{}", segment(&id))).await) {
        Ok(d) => d,
        Err(page) => return page,
    };
    let mut frame = Frame::new(format!("{} of {}", d.deployment_id, d.app), &who);
    frame.refresh = d.in_progress();
    views::render(StatusCode::OK, &views::DeploymentPage { frame, d })
}

/// `?from=dep-A&to=dep-B`.
#[derive(serde::Deserialize)]
pub struct Pair {
    from: Option<String>,
    to: Option<String>,
}

/// `/apps/NAME/diff?from=&to=`: what changed between two releases.
pub async fn diff(State(console): State<Arc<Console>>, Extension(who): Extension<Who>, Path(name): Path<String>, Query(q): Query<Pair>) -> Response {
    let (from, to) = (q.from.unwrap_or_default(), q.to.unwrap_or_default());
    let path = format!("/api/apps/{}/diff?from={}&to={}", segment(&name), segment(&from), segment(&to));
    let diff: Value = match read(console.get(&path).await) {
        Ok(d) => d,
        Err(page) => return page,
    };
    let rows = views::diff_rows(&diff);
    views::render(StatusCode::OK, &views::DiffPage { frame: Frame::new(format!("{name}: {from} to {to}"), &who), app: name, from, to, rows })
}

/// `?follow=true`.
#[derive(serde::Deserialize)]
pub struct Follow {
    #[serde(default)]
    follow: bool,
    tail: Option<usize>,
}

/// `/apps/NAME/logs`: the live version's log as plain text, streamed with `follow`, straight
/// from the API (a browser shows it as it comes, with or without script).
pub async fn logs(State(console): State<Arc<Console>>, Path(name): Path<String>, Query(q): Query<Follow>) -> Response {
    let path = format!("/api/apps/{}/logs?follow={}&tail={}", segment(&name), q.follow, q.tail.unwrap_or(LOG_LINES));
    let resp = console.call(Method::GET, &path, None, Body::empty()).await;
    if !resp.status().is_success() {
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap_or_default();
        return ApiAnswer { status, body: serde_json::from_slice(&bytes).unwrap_or_default() }.error_page();
    }
    let mut resp = resp.into_response();
    resp.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    // Text as it comes: no sniffing, no buffering by a proxy on the way.
    resp.headers_mut().insert("x-content-type-options", header::HeaderValue::from_static("nosniff"));
    resp
}

/// `/lab/containers`.
pub async fn containers(State(console): State<Arc<Console>>, Extension(who): Extension<Who>) -> Response {
    lab(&console, "containers", |v: LabList<views::ContainerView>| views::ContainersPage { frame: Frame::new("Containers", &who), command: v.command, containers: v.items }).await
}

/// `/lab/networks`.
pub async fn networks(State(console): State<Arc<Console>>, Extension(who): Extension<Who>) -> Response {
    lab(&console, "networks", |v: LabList<views::NetworkView>| views::NetworksPage { frame: Frame::new("Networks", &who), command: v.command, networks: v.items }).await
}

/// `/lab/images`.
pub async fn images(State(console): State<Arc<Console>>, Extension(who): Extension<Who>) -> Response {
    lab(&console, "images", |v: LabList<views::ImageView>| views::ImagesPage { frame: Frame::new("Images", &who), command: v.command, images: v.items }).await
}

/// `/lab/registry`.
pub async fn registry(State(console): State<Arc<Console>>, Extension(who): Extension<Who>) -> Response {
    let answer = console.get("/api/lab/registry").await;
    let error = answer.body.get("error").and_then(Value::as_str).map(str::to_string);
    let registry = answer.body.get("registry").and_then(Value::as_str).unwrap_or_default().to_string();
    lab_answer(answer, "repositories", |v: LabList<views::RepoView>| views::RegistryPage { frame: Frame::new("Registry", &who), command: v.command, registry, error, repositories: v.items })
}

/// A lab view's JSON: the shell command that lists the same, and the objects.
pub struct LabList<T> {
    command: String,
    items: Vec<T>,
}

async fn lab<T: DeserializeOwned, P: askama::Template>(console: &Console, what: &str, page: impl FnOnce(LabList<T>) -> P) -> Response {
    lab_answer(console.get(&format!("/api/lab/{what}")).await, what, page)
}

fn lab_answer<T: DeserializeOwned, P: askama::Template>(answer: ApiAnswer, key: &str, page: impl FnOnce(LabList<T>) -> P) -> Response {
    let mut body: Value = match read(answer) {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let command = body["command"].as_str().unwrap_or_default().to_string();
    match serde_json::from_value(body[key].take()) {
        Ok(items) => views::render(StatusCode::OK, &page(LabList { command, items })),
        Err(e) => views::error(StatusCode::BAD_GATEWAY, "Unexpected answer", &format!("the API's {key} did not read: {e}")),
    }
}
