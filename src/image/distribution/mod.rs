//! The client side of the distribution API: push a named layer as a one-layer image, build an
//! image in the registry from other images' layers (cross-repository mounts, no bytes moved),
//! push a local image, and pull one into the local store (`pull`: layers fetched a few at a
//! time, resumed when cut, the ones stored already skipped). A blob the registry has is never
//! sent.
//! `SHIBAFU_REGISTRY_AUTH=HOST=USER:PASSWORD` sends basic authentication to that host.

mod api;
mod challenge;
mod client;
pub mod fetch;
mod pull;
mod resume;

use serde_json::{json, Value};

use super::store::{ImageConfig, ImageStore};
use client::{failed, Registry};
use super::{ImageError, Result};
use crate::state::images::{ImageRow, LayerRow};

/// `HOST[:PORT]/REPO:TAG`, split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteRef {
    /// `localhost:5000`.
    pub host: String,
    /// `apps/python-app`.
    pub repo: String,
    /// `v1`.
    pub tag: String,
}

impl RemoteRef {
    /// Reads `HOST/REPO[:TAG]`; None when the first component is not a registry host.
    pub fn parse(text: &str) -> Option<RemoteRef> {
        let (host, rest) = text.split_once('/')?;
        if !(host.contains(':') || host.contains('.') || host == "localhost") {
            return None;
        }
        let r = super::reference::parse(rest).ok()?;
        // Docker Hub: docker.io/busybox is registry-1.docker.io/library/busybox.
        if host == "docker.io" || host == "index.docker.io" {
            let repo = if r.name.contains('/') { r.name } else { format!("library/{}", r.name) };
            return Some(RemoteRef { host: "registry-1.docker.io".into(), repo, tag: r.tag });
        }
        Some(RemoteRef { host: host.into(), repo: r.name, tag: r.tag })
    }

    /// `REPO:TAG` on the same registry.
    pub fn sibling(&self, text: &str) -> Result<RemoteRef> {
        let r = super::reference::parse(text).map_err(ImageError::BadReference)?;
        Ok(RemoteRef { host: self.host.clone(), repo: r.name, tag: r.tag })
    }
}

impl std::fmt::Display for RemoteRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}:{}", self.host, self.repo, self.tag)
    }
}

/// A one-layer image's config: the layer's diff_id, a PATH, and `sh` to run.
fn layer_config(diff_ids: &[String], config: &ImageConfig) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "config": super::store::runtime_config(config),
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .expect("JSON serializes")
}

fn manifest(config_digest: &str, config_size: usize, layers: &[Value]) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": super::store::MANIFEST_TYPE,
        "config": {"mediaType": super::store::CONFIG_TYPE, "digest": config_digest, "size": config_size},
        "layers": layers,
    }))
    .expect("JSON serializes")
}

impl ImageStore<'_> {
    /// `push-layer NAME HOST/REPO:TAG`: the named layer as a one-layer image.
    pub fn push_layer(&self, name: &str, target: &RemoteRef) -> Result<String> {
        let diff_id = self.db.named_layer(name)?.ok_or_else(|| ImageError::UnknownLayer(name.into()))?;
        let layer = self.db.layer(&diff_id)?.ok_or_else(|| ImageError::UnknownLayer(name.into()))?;
        let reg = Registry::new(&target.host)?;
        reg.push_blob(&target.repo, &layer.blob_digest, &self.blob_store().path(&layer.blob_digest))?;
        let config = layer_config(std::slice::from_ref(&layer.diff_id), &ImageConfig { cmd: vec!["/bin/sh".into()], ..Default::default() });
        self.push_config_and_manifest(&reg, target, config, &[descriptor(&layer)])
    }

    /// `create-manifest --layers A,B HOST/REPO:TAG`: an image of the layers of images A, B
    /// (bottom first) on the same registry, mounted into the target repository.
    pub fn create_manifest(&self, sources: &[String], target: &RemoteRef) -> Result<String> {
        let reg = Registry::new(&target.host)?;
        let (mut layers, mut diff_ids) = (Vec::new(), Vec::new());
        let mut last_config = ImageConfig::default();
        for s in sources {
            let src = target.sibling(s)?;
            let (_, m) = reg.manifest(&src.repo, &src.tag)?;
            let config_digest = m.pointer("/config/digest").and_then(Value::as_str).ok_or_else(|| failed(format!("{src} has no config")))?;
            let config: Value = serde_json::from_slice(&reg.blob(&src.repo, config_digest)?).map_err(|e| failed(format!("{src}'s config: {e}")))?;
            let ids = config.pointer("/rootfs/diff_ids").and_then(Value::as_array).cloned().unwrap_or_default();
            let descs = m.get("layers").and_then(Value::as_array).cloned().unwrap_or_default();
            if ids.len() != descs.len() {
                return Err(failed(format!("{src}: {} layers but {} diff_ids", descs.len(), ids.len())));
            }
            for (d, id) in descs.into_iter().zip(ids) {
                let digest = d.get("digest").and_then(Value::as_str).unwrap_or_default().to_string();
                checked_hex(&digest)?;
                if !reg.mount_blob(&target.repo, &digest, &src.repo)? && !reg.has_blob(&target.repo, &digest)? {
                    return Err(failed(format!("the registry would not mount {digest} from {} into {}", src.repo, target.repo)));
                }
                layers.push(d);
                diff_ids.push(id.as_str().unwrap_or_default().to_string());
            }
            last_config = config_settings(&config);
        }
        let config = layer_config(&diff_ids, &last_config);
        self.push_config_and_manifest(&reg, target, config, &layers)
    }

    /// `push IMAGE HOST/REPO:TAG`: a local image, blobs the registry lacks, then its manifest.
    pub fn push(&self, image: &ImageRow, target: &RemoteRef) -> Result<String> {
        let reg = Registry::new(&target.host)?;
        let (media_type, blobs) = self.manifest_blobs(image)?;
        for d in blobs {
            reg.push_blob(&target.repo, &d, &self.blob_store().path(&d))?;
        }
        reg.put_manifest(&target.repo, &target.tag, &media_type, &self.blob_store().read(&image.manifest_digest)?)
    }

    fn push_config_and_manifest(&self, reg: &Registry, target: &RemoteRef, config: Vec<u8>, layers: &[Value]) -> Result<String> {
        // The config is stored here only to be pushed: unrecorded, so gc may take it after.
        let _adding = self.lock_layers(false)?;
        let (config_digest, _) = self.blob_store().put_bytes(&config)?;
        reg.push_blob(&target.repo, &config_digest, &self.blob_store().path(&config_digest))?;
        reg.put_manifest(&target.repo, &target.tag, super::store::MANIFEST_TYPE, &manifest(&config_digest, config.len(), layers))
    }
}

fn descriptor(layer: &LayerRow) -> Value {
    json!({"mediaType": layer.media_type, "digest": layer.blob_digest, "size": layer.size})
}

/// The hex part of a remote `sha256:<64 hex>` digest; anything else (`sha256:../../etc/x`)
/// is refused before it can name a file.
fn checked_hex(digest: &str) -> Result<&str> {
    crate::storage::sha256_hex(digest).ok_or_else(|| failed(format!("the registry named a blob {digest:?}, which is not a sha256 digest")))
}

/// The digest of an index's linux/amd64 manifest (or of its only one).
fn pick_platform(index: &Value) -> Option<String> {
    let entries = index.get("manifests")?.as_array()?;
    let is_amd64 = |e: &&Value| e.pointer("/platform/os").and_then(Value::as_str) == Some("linux") && e.pointer("/platform/architecture").and_then(Value::as_str) == Some("amd64");
    let entry = entries.iter().find(is_amd64).or(if entries.len() == 1 { entries.first() } else { None })?;
    entry.get("digest")?.as_str().map(str::to_string)
}

/// The run-time settings of a parsed image config.
fn config_settings(config: &Value) -> ImageConfig {
    let strings = |key: &str| -> Vec<String> {
        config.pointer(&format!("/config/{key}")).and_then(Value::as_array).map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect()).unwrap_or_default()
    };
    ImageConfig {
        env: strings("Env"),
        entrypoint: strings("Entrypoint"),
        cmd: strings("Cmd"),
        working_dir: config.pointer("/config/WorkingDir").and_then(Value::as_str).unwrap_or_default().to_string(),
        user: config.pointer("/config/User").and_then(Value::as_str).unwrap_or_default().to_string(),
        labels: config
            .pointer("/config/Labels")
            .and_then(Value::as_object)
            .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect())
            .unwrap_or_default(),
        // An object whose keys are the paths (Docker's form).
        volumes: config.pointer("/config/Volumes").and_then(Value::as_object).map(|m| {
            let mut paths: Vec<String> = m.keys().cloned().collect();
            paths.sort();
            paths
        }).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_volumes_survive_a_round_trip_through_the_image_config() {
        let config = ImageConfig {
            cmd: vec!["sh".into()],
            labels: [("tier".to_string(), "db".to_string())].into(),
            volumes: vec!["/data".into(), "/var/log".into()],
            ..Default::default()
        };
        let json = serde_json::json!({ "config": super::super::store::runtime_config(&config) });
        assert_eq!(json["config"]["Volumes"], serde_json::json!({ "/data": {}, "/var/log": {} }));
        let back = config_settings(&json);
        assert_eq!((back.labels, back.volumes), (config.labels, config.volumes));
    }

    #[test]
    fn remote_references_name_a_host() {
        let r = RemoteRef::parse("localhost:5000/apps/python-app:v1").unwrap();
        assert_eq!((r.host.as_str(), r.repo.as_str(), r.tag.as_str()), ("localhost:5000", "apps/python-app", "v1"));
        assert_eq!(RemoteRef::parse("registry.local/base/alpine").unwrap().tag, "latest");
        assert!(RemoteRef::parse("busybox:latest").is_none());
        let hub = RemoteRef::parse("docker.io/busybox:1.36").unwrap();
        assert_eq!(hub.to_string(), "registry-1.docker.io/library/busybox:1.36");
        assert!(RemoteRef::parse("library/busybox").is_none());
        assert_eq!(r.sibling("base/alpine:latest").unwrap().to_string(), "localhost:5000/base/alpine:latest");
    }

    #[test]
    fn remote_digests_cannot_name_paths() {
        assert!(checked_hex(&format!("sha256:{}", "a".repeat(64))).is_ok());
        for bad in ["sha256:/etc/cron.d/x", "sha256:../../../../etc/x", "sha512:ab", &format!("sha256:{}", "A".repeat(64))] {
            assert!(checked_hex(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_index_gives_its_linux_amd64_image() {
        let index = json!({"manifests": [
            {"digest": "sha256:arm", "platform": {"os": "linux", "architecture": "arm64"}},
            {"digest": "sha256:amd", "platform": {"os": "linux", "architecture": "amd64"}}]});
        assert_eq!(pick_platform(&index).as_deref(), Some("sha256:amd"));
        assert_eq!(pick_platform(&json!({"manifests": [{"digest": "sha256:only"}]})).as_deref(), Some("sha256:only"));
        assert_eq!(pick_platform(&json!({"manifests": [{"digest": "sha256:arm", "platform": {"os": "linux", "architecture": "arm64"}}, {"digest": "sha256:s390x"}]})), None);
    }
}
