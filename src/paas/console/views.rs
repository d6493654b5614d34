//! The console's pages: askama templates (under `templates/`, checked at compile time) and what
//! they show, read from the API's JSON.

use std::collections::BTreeMap;

use askama::Template;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;

use super::auth::Who;

/// What every page has around its content.
pub struct Frame {
    /// The page's title.
    pub title: String,
    /// The CSRF token the page's forms carry.
    pub csrf: String,
    /// A signed-in session (the menu offers to sign out).
    pub signed_in: bool,
    /// Reload every 2 s (a deployment on its way): works without script.
    pub refresh: bool,
}

impl Frame {
    /// A page for `who`.
    pub fn new(title: impl Into<String>, who: &Who) -> Frame {
        Frame { title: title.into(), csrf: who.csrf.clone(), signed_in: who.signed_in, refresh: false }
    }

    /// A page with no caller (sign in, errors).
    fn bare(title: impl Into<String>) -> Frame {
        Frame { title: title.into(), csrf: String::new(), signed_in: false, refresh: false }
    }
}

/// Renders `page` with `status`.
pub fn render(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CACHE_CONTROL, "no-store")], html).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("the page did not render: {e}")).into_response(),
    }
}

#[derive(Template)]
#[template(path = "error.html", config = "src/paas/console/askama.toml")]
struct ErrorPage<'a> {
    frame: Frame,
    message: &'a str,
}

/// An error page.
pub fn error(status: StatusCode, title: &str, message: &str) -> Response {
    render(status, &ErrorPage { frame: Frame::bare(format!("{title} ({})", status.as_u16())), message })
}

#[derive(Template)]
#[template(path = "login.html", config = "src/paas/console/askama.toml")]
struct LoginPage<'a> {
    frame: Frame,
    next: &'a str,
    error: Option<&'a str>,
}

/// The sign-in page.
pub fn login(status: StatusCode, next: &str, error: Option<&str>) -> Response {
    render(status, &LoginPage { frame: Frame::bare("Sign in"), next, error })
}

/// An app as `GET /api/apps` shows it.
#[derive(Debug, Default, Deserialize)]
pub struct AppView {
    pub name: String,
    pub url: String,
    pub status: Option<String>,
    pub live_deployment: Option<String>,
    pub image_digest: Option<String>,
    pub container: Option<String>,
    pub state: Option<String>,
    #[serde(default)]
    pub restarts: i64,
    pub health: Option<String>,
    #[serde(default)]
    pub health_restarts: i64,
    pub last_check_failure: Option<String>,
    pub last_failure: Option<Failure>,
}

impl AppView {
    /// Its image's digest, short.
    pub fn short_digest(&self) -> String {
        short(self.image_digest.as_deref())
    }
}

/// An app's last failed deployment.
#[derive(Debug, Deserialize)]
pub struct Failure {
    pub deployment_id: String,
    pub reason: Option<String>,
    pub at: Option<String>,
}

/// A deployment as `GET /api/deployments/ID` shows it.
#[derive(Debug, Deserialize)]
pub struct DeploymentView {
    pub deployment_id: String,
    pub app: String,
    pub runtime: String,
    pub status: String,
    pub reason: Option<String>,
    pub image: Option<String>,
    pub image_digest: Option<String>,
    pub command: Option<Vec<String>>,
    pub env: Vec<String>,
    pub secrets: Vec<String>,
    pub config_version: i64,
    pub source: String,
    pub port: u16,
    pub health_path: String,
    pub container: Option<String>,
    pub url: String,
    pub created_at: String,
    pub finished_at: Option<String>,
    #[serde(default)]
    pub log: Vec<String>,
}

impl DeploymentView {
    /// Still on its way (the page reloads itself).
    pub fn in_progress(&self) -> bool {
        matches!(self.status.as_str(), "queued" | "building" | "starting")
    }

    /// Its image's digest, short.
    pub fn short_digest(&self) -> String {
        short(self.image_digest.as_deref())
    }

    /// Its command, as a shell line.
    pub fn command_line(&self) -> String {
        self.command.as_ref().map(|c| c.join(" ")).unwrap_or_else(|| "(as detected)".into())
    }
}

/// `sha256:0123456789ab` of a digest.
pub fn short(digest: Option<&str>) -> String {
    digest.map(|d| d.chars().take(19).collect()).unwrap_or_default()
}

/// A secret's name and when it was set; never its value.
#[derive(Debug, Deserialize)]
pub struct SecretName {
    pub name: String,
    pub updated_at: String,
}

/// `GET /api/apps/NAME/config`.
#[derive(Debug, Default, Deserialize)]
pub struct ConfigView {
    pub env: BTreeMap<String, String>,
    pub secrets: Vec<SecretName>,
    pub config_version: i64,
}

#[derive(Template)]
#[template(path = "apps.html", config = "src/paas/console/askama.toml")]
pub struct AppsPage {
    pub frame: Frame,
    pub apps: Vec<AppView>,
    pub runtimes: &'static [&'static str],
}

#[derive(Template)]
#[template(path = "app.html", config = "src/paas/console/askama.toml")]
pub struct AppPage {
    pub frame: Frame,
    pub app: AppView,
    pub deployments: Vec<DeploymentView>,
    pub config: ConfigView,
    /// The live version's last lines, or why there are none.
    pub logs: String,
    pub can_follow: bool,
}

impl AppPage {
    /// Whether `d` is the deployment serving the app.
    pub fn is_live(&self, d: &DeploymentView) -> bool {
        self.app.live_deployment.as_deref() == Some(d.deployment_id.as_str())
    }
}

#[derive(Template)]
#[template(path = "deployment.html", config = "src/paas/console/askama.toml")]
pub struct DeploymentPage {
    pub frame: Frame,
    pub d: DeploymentView,
}

/// One line of a diff: what, before, after.
#[derive(Debug, PartialEq, Eq)]
pub struct DiffRow {
    pub what: String,
    pub from: String,
    pub to: String,
}

#[derive(Template)]
#[template(path = "diff.html", config = "src/paas/console/askama.toml")]
pub struct DiffPage {
    pub frame: Frame,
    pub app: String,
    pub from: String,
    pub to: String,
    pub rows: Vec<DiffRow>,
}

/// The rows of `GET /api/apps/NAME/diff`: fields that changed, env values, secrets by name.
pub fn diff_rows(diff: &Value) -> Vec<DiffRow> {
    let text = |v: &Value| match v {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string)).collect::<Vec<_>>().join(" "),
        other => other.to_string(),
    };
    let row = |what: String, from: String, to: String| DiffRow { what, from, to };
    let mut rows = Vec::new();
    for field in ["image", "image_digest", "command", "port", "health_path"] {
        if let Some(change) = diff.get(field) {
            rows.push(row(field.replace('_', " "), text(&change["from"]), text(&change["to"])));
        }
    }
    for (k, v) in diff["env"]["added"].as_object().into_iter().flatten() {
        rows.push(row(format!("env {k}"), "(unset)".into(), text(v)));
    }
    for k in diff["env"]["removed"].as_array().into_iter().flatten() {
        rows.push(row(format!("env {}", text(k)), "(set)".into(), "(unset)".into()));
    }
    for (k, v) in diff["env"]["changed"].as_object().into_iter().flatten() {
        rows.push(row(format!("env {k}"), text(&v["from"]), text(&v["to"])));
    }
    for (key, from, to) in [("added", "(unset)", "(set, hidden)"), ("removed", "(set, hidden)", "(unset)"), ("changed", "(hidden)", "(another value, hidden)")] {
        for k in diff["secrets"][key].as_array().into_iter().flatten() {
            rows.push(row(format!("secret {}", text(k)), from.into(), to.into()));
        }
    }
    rows
}

/// A container, as `GET /api/lab/containers` lists it.
#[derive(Debug, Deserialize)]
pub struct ContainerView {
    pub name: String,
    pub id: String,
    pub image: String,
    pub state: String,
    pub status: String,
    pub network: String,
    #[serde(default)]
    pub addresses: Vec<String>,
    #[serde(default)]
    pub ports: Vec<Value>,
    pub health: Option<String>,
    #[serde(default)]
    pub restart_count: u32,
    #[serde(default)]
    pub explain: Vec<String>,
}

impl ContainerView {
    /// `0.0.0.0:8080->80/tcp, ...`.
    pub fn ports_text(&self) -> String {
        self.ports
            .iter()
            .map(|p| format!("{}:{}->{}/{}", p["host_ip"].as_str().unwrap_or("0.0.0.0"), p["host_port"], p["container_port"], p["protocol"].as_str().unwrap_or("tcp")))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The first 12 digits of its id.
    pub fn short_id(&self) -> &str {
        &self.id[..self.id.len().min(12)]
    }
}

#[derive(Template)]
#[template(path = "containers.html", config = "src/paas/console/askama.toml")]
pub struct ContainersPage {
    pub frame: Frame,
    pub command: String,
    pub containers: Vec<ContainerView>,
}

/// A network, as `GET /api/lab/networks` lists it.
#[derive(Debug, Deserialize)]
pub struct NetworkView {
    pub name: String,
    pub bridge: String,
    pub subnet: String,
    pub gateway: String,
    pub internal: bool,
    pub containers: usize,
    #[serde(default)]
    pub explain: Vec<String>,
}

#[derive(Template)]
#[template(path = "networks.html", config = "src/paas/console/askama.toml")]
pub struct NetworksPage {
    pub frame: Frame,
    pub command: String,
    pub networks: Vec<NetworkView>,
}

/// A layer of an image.
#[derive(Debug, Deserialize)]
pub struct LayerView {
    pub diff_id: String,
    pub digest: Option<String>,
    pub size: i64,
}

/// An image, as `GET /api/lab/images` lists it.
#[derive(Debug, Deserialize)]
pub struct ImageView {
    pub reference: String,
    pub id: String,
    pub size: i64,
    pub created_at: String,
    pub layers: Vec<LayerView>,
    #[serde(default)]
    pub explain: Vec<String>,
}

impl LayerView {
    /// Its size, readable.
    pub fn size_text(&self) -> String {
        size(self.size)
    }
}

impl ImageView {
    /// Its size, readable.
    pub fn size_text(&self) -> String {
        size(self.size)
    }
}

/// Bytes in binary units (`12.3 MiB`), as the service's own messages print them.
pub fn size(bytes: i64) -> String {
    crate::storage::limits::human(bytes.max(0) as u64)
}

#[derive(Template)]
#[template(path = "images.html", config = "src/paas/console/askama.toml")]
pub struct ImagesPage {
    pub frame: Frame,
    pub command: String,
    pub images: Vec<ImageView>,
}

/// A repository of the registry.
#[derive(Debug, Deserialize)]
pub struct RepoView {
    pub name: String,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
}

#[derive(Template)]
#[template(path = "registry.html", config = "src/paas/console/askama.toml")]
pub struct RegistryPage {
    pub frame: Frame,
    pub command: String,
    pub registry: String,
    pub error: Option<String>,
    pub repositories: Vec<RepoView>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_diff_shows_env_values_and_only_the_names_of_secrets() {
        let rows = diff_rows(&json!({
            "from": "dep-1", "to": "dep-2",
            "image": {"from": "a", "to": "b"},
            "env": {"added": {"NEW": "1"}, "removed": ["OLD"], "changed": {"MODE": {"from": "dev", "to": "prod"}}},
            "secrets": {"added": ["API_KEY"], "removed": [], "changed": ["DB_PASSWORD"]},
        }));
        let shown: Vec<(&str, &str, &str)> = rows.iter().map(|r| (r.what.as_str(), r.from.as_str(), r.to.as_str())).collect();
        assert_eq!(shown, vec![
            ("image", "a", "b"),
            ("env NEW", "(unset)", "1"),
            ("env OLD", "(set)", "(unset)"),
            ("env MODE", "dev", "prod"),
            ("secret API_KEY", "(unset)", "(set, hidden)"),
            ("secret DB_PASSWORD", "(hidden)", "(another value, hidden)"),
        ]);
    }

    #[test]
    fn text_from_elsewhere_is_escaped() {
        let page = ErrorPage { frame: Frame::bare("x"), message: "<script>alert(1)</script>" }.render().unwrap();
        assert!(!page.contains("<script>alert") && page.contains("&#60;script&#62;"));
    }
}
