//! The lab as the console shows it, read only: containers, networks, images with their layers,
//! and the registry's repositories and tags. Each object comes with the commands a person would
//! type to see the same from a shell (`inspect --explain`'s trail).

use std::time::Duration;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::{Paas, PaasError};
use crate::engine::inspect::{explain, Kind};
use crate::engine::Engine;

type Answer = Result<Response, PaasError>;

/// How many repositories the registry view lists.
const MAX_REPOSITORIES: usize = 200;

/// The explain trail of one object, or a line that says why there is none.
fn trail(engine: &Engine, name: &str, kind: Kind) -> Vec<String> {
    match engine.find_object(name, Some(kind)) {
        Ok(object) => explain::lines(&object),
        Err(e) => vec![format!("# {e}")],
    }
}

/// Runs `read` on an engine of its own, off the async threads.
async fn with_engine(paas: &Paas, read: impl FnOnce(&Engine) -> crate::engine::Result<Value> + Send + 'static) -> Answer {
    let root = paas.root.clone();
    let value = tokio::task::spawn_blocking(move || Engine::open(&root).and_then(|e| read(&e))).await.map_err(PaasError::internal)?.map_err(PaasError::internal)?;
    Ok(Json(value).into_response())
}

#[utoipa::path(get, path = "/api/lab/containers", tag = "lab", responses((status = 200, description = "every container as `list -a` shows it, and the commands that show it from a shell")))]
pub async fn containers(State(paas): State<std::sync::Arc<Paas>>) -> Answer {
    with_engine(&paas, |engine| {
        let mut out = Vec::new();
        for c in engine.list(true)? {
            let explain = trail(engine, &c.name, Kind::Container);
            let mut row = serde_json::to_value(&c).unwrap_or_default();
            row["explain"] = json!(explain);
            out.push(row);
        }
        Ok(json!({ "command": "shibafu list -a", "containers": out }))
    })
    .await
}

#[utoipa::path(get, path = "/api/lab/networks", tag = "lab", responses((status = 200, description = "every network: bridge, subnet, gateway, containers on it")))]
pub async fn networks(State(paas): State<std::sync::Arc<Paas>>) -> Answer {
    with_engine(&paas, |engine| {
        let mut out = Vec::new();
        for (n, users) in engine.network_list()? {
            out.push(json!({
                "name": n.name,
                "bridge": n.bridge,
                "subnet": n.subnet.to_string(),
                "gateway": n.gateway.to_string(),
                "internal": n.internal,
                "containers": users,
                "explain": trail(engine, &n.name, Kind::Network),
            }));
        }
        Ok(json!({ "command": "shibafu network ls", "networks": out }))
    })
    .await
}

#[utoipa::path(get, path = "/api/lab/images", tag = "lab", responses((status = 200, description = "every image: its id, size and layers, bottom first")))]
pub async fn images(State(paas): State<std::sync::Arc<Paas>>) -> Answer {
    with_engine(&paas, |engine| {
        let mut out = Vec::new();
        for image in engine.db.images()? {
            let mut layers = Vec::new();
            for diff_id in &image.layers {
                let layer = engine.db.layer(diff_id)?;
                layers.push(json!({ "diff_id": diff_id, "digest": layer.as_ref().map(|l| l.blob_digest.clone()), "size": layer.map_or(0, |l| l.size) }));
            }
            out.push(json!({
                "reference": image.reference(),
                "id": image.config_digest,
                "manifest_digest": image.manifest_digest,
                "size": image.size,
                "created_at": image.created_at,
                "layers": layers,
                "explain": trail(engine, &image.reference(), Kind::Image),
            }));
        }
        Ok(json!({ "command": "shibafu images", "images": out }))
    })
    .await
}

#[utoipa::path(get, path = "/api/lab/registry", tag = "lab", responses((status = 200, description = "the registry's repositories and their tags, or why it did not answer")))]
pub async fn registry(State(paas): State<std::sync::Arc<Paas>>) -> Answer {
    let base = format!("http://{}", paas.registry);
    let command = format!("curl {base}/v2/_catalog");
    let listing = async {
        let catalog = get_json(&format!("{base}/v2/_catalog?n={MAX_REPOSITORIES}")).await?;
        let mut repos = Vec::new();
        for name in catalog["repositories"].as_array().into_iter().flatten().filter_map(Value::as_str).take(MAX_REPOSITORIES) {
            let tags = get_json(&format!("{base}/v2/{name}/tags/list")).await.map(|t| t["tags"].clone()).unwrap_or(Value::Null);
            repos.push(json!({ "name": name, "tags": tags }));
        }
        Ok::<_, String>(repos)
    };
    Ok(Json(match listing.await {
        Ok(repos) => json!({ "command": command, "registry": paas.registry, "repositories": repos }),
        Err(e) => json!({ "command": command, "registry": paas.registry, "repositories": [], "error": e }),
    })
    .into_response())
}

/// A GET of the registry's JSON, within 5 s and 1 MiB.
async fn get_json(url: &str) -> Result<Value, String> {
    use http_body_util::{BodyExt, Empty, Limited};
    use hyper_util::client::legacy::{connect::HttpConnector, Client};
    let client: Client<HttpConnector, Empty<hyper::body::Bytes>> = Client::builder(hyper_util::rt::TokioExecutor::new()).build(HttpConnector::new());
    let uri: hyper::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
    let fetch = async {
        let resp = client.get(uri).await.map_err(|e| format!("{url}: {e} (is the registry running? systemctl start shibafu-registry)"))?;
        if !resp.status().is_success() {
            return Err(format!("{url}: {}", resp.status()));
        }
        let body = Limited::new(resp.into_body(), 1 << 20).collect().await.map_err(|e| format!("{url}: {e}"))?.to_bytes();
        serde_json::from_slice(&body).map_err(|e| format!("{url}: not JSON: {e}"))
    };
    tokio::time::timeout(Duration::from_secs(5), fetch).await.map_err(|_| format!("{url}: no answer within 5 s"))?
}
