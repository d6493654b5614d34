//! The local image store: OCI manifests and configs as blobs, tags in the state database,
//! layers unpacked once under `layers/<diff_id hex>`.

use std::path::{Path, PathBuf};

use oci_spec::image::ImageConfiguration;
use serde_json::json;

use super::{ImageError, Reference, Result};
use crate::state::images::{ImageRow, LayerRow};
use crate::state::{now, Db};
use crate::storage::blobs::BlobStore;
use crate::storage::hex;

/// Media types we write.
pub const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image config.
pub const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";
/// Uncompressed layer.
pub const LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// gzip layer.
pub const LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// A zstd-compressed layer.
pub const LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

/// A reader that copies what it reads into a writer.
pub(super) struct Tee<R, W> {
    pub(super) from: R,
    pub(super) to: W,
}

impl<R: std::io::Read, W: std::io::Write> std::io::Read for Tee<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.from.read(buf)?;
        self.to.write_all(&buf[..n])?;
        Ok(n)
    }
}

/// What a container takes from its image.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageConfig {
    /// Environment, KEY=VALUE.
    pub env: Vec<String>,
    /// Entrypoint.
    pub entrypoint: Vec<String>,
    /// Default command.
    pub cmd: Vec<String>,
    /// Working directory ("" for /).
    pub working_dir: String,
    /// User ("" for root).
    pub user: String,
    /// Labels (a container made from it starts with them).
    pub labels: std::collections::BTreeMap<String, String>,
    /// Paths that get an anonymous volume in each container (`VOLUME` in a Dockerfile).
    pub volumes: Vec<String>,
}

/// The `config` object of an image config: Env (a PATH at least), Cmd, Entrypoint,
/// WorkingDir, User, Labels and Volumes, each only when set.
pub fn runtime_config(config: &ImageConfig) -> serde_json::Value {
    let env = if config.env.is_empty() { vec![format!("PATH={}", crate::runtime::process::DEFAULT_PATH)] } else { config.env.clone() };
    let mut cfg = json!({ "Env": env });
    if !config.cmd.is_empty() {
        cfg["Cmd"] = json!(config.cmd);
    }
    if !config.entrypoint.is_empty() {
        cfg["Entrypoint"] = json!(config.entrypoint);
    }
    if !config.working_dir.is_empty() {
        cfg["WorkingDir"] = json!(config.working_dir);
    }
    if !config.user.is_empty() {
        cfg["User"] = json!(config.user);
    }
    if !config.labels.is_empty() {
        cfg["Labels"] = json!(config.labels);
    }
    if !config.volumes.is_empty() {
        let volumes: serde_json::Map<String, serde_json::Value> = config.volumes.iter().map(|v| (v.clone(), json!({}))).collect();
        cfg["Volumes"] = serde_json::Value::Object(volumes);
    }
    cfg
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// The image store of one data root.
pub struct ImageStore<'a> {
    root: PathBuf,
    blobs: BlobStore,
    pub(super) db: &'a Db,
}

impl<'a> ImageStore<'a> {
    /// The store of `root`, recording into `db`.
    pub fn new(root: &Path, db: &'a Db) -> ImageStore<'a> {
        ImageStore { root: root.to_path_buf(), blobs: BlobStore::new(root), db }
    }

    /// Serialises adding layers and blobs against removing them (see
    /// `storage::lock_layers`): imports, prepares and commits hold it shared from their first
    /// look at a layer until their image is recorded; removals and gc hold it exclusive.
    pub fn lock_layers(&self, exclusive: bool) -> Result<nix::fcntl::Flock<std::fs::File>> {
        crate::storage::lock_layers(&self.root, exclusive).map_err(|e| super::unreadable(&self.root.join("layers.lock"), e))
    }

    /// The blob store under this data root.
    pub fn blob_store(&self) -> &BlobStore {
        &self.blobs
    }

    /// Where layers are unpacked.
    pub fn layers_dir(&self) -> PathBuf {
        self.root.join("layers")
    }

    /// The directory of one unpacked layer.
    pub fn layer_dir(&self, diff_id: &str) -> PathBuf {
        self.layers_dir().join(hex(diff_id))
    }

    /// Stores a rootfs tarball (plain or gzip) as a one-layer image named `reference`.
    pub fn import_rootfs(&self, tarball: &Path, reference: &Reference) -> Result<ImageRow> {
        if tarball.is_dir() {
            return Err(ImageError::Unreadable {
                path: tarball.display().to_string(),
                reason: "a directory, but no OCI image layout (it has no oci-layout file); give a tar, or make a layer of the directory with `shibafu prepare-layer NAME DIR` and run it with --layers".into(),
            });
        }
        let _adding = self.lock_layers(false)?;
        let layer = self.take_layer(tarball)?;
        let source = tarball.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        self.store_image(reference, &[layer], &ImageConfig { cmd: vec!["/bin/sh".into()], ..Default::default() }, &format!("shibafu image import {source}"))
    }

    /// Writes config and manifest for `layers` (bottom first) and tags them `reference`.
    pub fn store_image(&self, reference: &Reference, layers: &[LayerRow], config: &ImageConfig, created_by: &str) -> Result<ImageRow> {
        let created = now();
        let cfg = runtime_config(config);
        let config_json = json!({
            "created": created,
            "architecture": "amd64",
            "os": "linux",
            "config": cfg,
            "rootfs": { "type": "layers", "diff_ids": layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>() },
            "history": [{ "created": created, "created_by": created_by }],
        });
        let config_bytes = serde_json::to_vec(&config_json).expect("JSON serializes");
        let (config_digest, config_size) = self.blobs.put_bytes(&config_bytes)?;
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": { "mediaType": CONFIG_TYPE, "digest": config_digest, "size": config_size },
            "layers": layers.iter().map(|l| json!({ "mediaType": l.media_type, "digest": l.blob_digest, "size": l.size })).collect::<Vec<_>>(),
        });
        let (manifest_digest, _) = self.blobs.put_bytes(&serde_json::to_vec(&manifest).expect("JSON serializes"))?;
        self.record(reference, manifest_digest, config_digest, layers, created)
    }

    /// Tags an image whose blobs are stored: records it and its layers in one transaction.
    pub(super) fn record(&self, reference: &Reference, manifest_digest: String, config_digest: String, layers: &[LayerRow], created_at: String) -> Result<ImageRow> {
        let row = ImageRow {
            name: reference.name.clone(),
            tag: reference.tag.clone(),
            manifest_digest,
            config_digest,
            layers: layers.iter().map(|l| l.diff_id.clone()).collect(),
            size: layers.iter().map(|l| l.size).sum(),
            created_at,
        };
        let tx = self.db.conn.unchecked_transaction().map_err(crate::state::StateError::from)?;
        for l in layers {
            self.db.add_layer(l)?;
        }
        self.db.put_image(&row)?;
        tx.commit().map_err(crate::state::StateError::from)?;
        Ok(row)
    }

    /// Finds an image by `name[:tag]` or by (a prefix of) its ID.
    pub fn resolve(&self, text: &str) -> Result<ImageRow> {
        if let Ok(r) = super::reference::parse(text) {
            if let Some(row) = self.db.image(&r.name, &r.tag)? {
                return Ok(row);
            }
        }
        let id = text.trim_start_matches("sha256:");
        if id.len() >= 4 && id.chars().all(|c| c.is_ascii_hexdigit()) {
            let mut found = self.db.images_by_id(id)?;
            found.dedup_by(|a, b| a.config_digest == b.config_digest);
            match found.len() {
                1 => return Ok(found.remove(0)),
                0 => {}
                _ => return Err(ImageError::Ambiguous(text.into())),
            }
        }
        Err(ImageError::Unknown(text.into()))
    }

    /// What an image's stored manifest names: its media type and every blob (config, then
    /// layers, as the manifest lists them; a layer's blob may differ from the one recorded for
    /// its diff_id when two images carry the same layer compressed differently).
    pub fn manifest_blobs(&self, image: &ImageRow) -> Result<(String, Vec<String>)> {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Manifest {
            media_type: Option<String>,
            config: Blob,
            layers: Vec<Blob>,
        }
        #[derive(serde::Deserialize)]
        struct Blob {
            digest: String,
        }
        let bytes = self.blobs.read(&image.manifest_digest)?;
        let m: Manifest = serde_json::from_slice(&bytes).map_err(|e| ImageError::Corrupt(image.manifest_digest.clone(), e.to_string()))?;
        let blobs = std::iter::once(m.config.digest).chain(m.layers.into_iter().map(|l| l.digest)).collect();
        Ok((m.media_type.unwrap_or_else(|| MANIFEST_TYPE.to_string()), blobs))
    }

    /// The run-time settings from an image's config.
    pub fn config(&self, image: &ImageRow) -> Result<ImageConfig> {
        let bytes = self.blobs.read(&image.config_digest)?;
        let parsed: ImageConfiguration = serde_json::from_slice(&bytes).map_err(|e| ImageError::Corrupt(image.config_digest.clone(), e.to_string()))?;
        let c = parsed.config().clone().unwrap_or_default();
        Ok(ImageConfig {
            env: c.env().clone().unwrap_or_default(),
            entrypoint: c.entrypoint().clone().unwrap_or_default(),
            cmd: c.cmd().clone().unwrap_or_default(),
            working_dir: c.working_dir().clone().unwrap_or_default(),
            user: c.user().clone().unwrap_or_default(),
            labels: c.labels().clone().unwrap_or_default().into_iter().collect(),
            volumes: sorted(c.volumes().clone().unwrap_or_default()),
        })
    }

    /// The health check a Docker image's config carries (`config.Healthcheck`; the OCI image
    /// config has no such field), as given there.
    pub fn healthcheck(&self, image: &ImageRow) -> Result<Option<crate::state::containers::Healthcheck>> {
        let bytes = self.blobs.read(&image.config_digest)?;
        let parsed: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| ImageError::Corrupt(image.config_digest.clone(), e.to_string()))?;
        match parsed.pointer("/config/Healthcheck") {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(v) => serde_json::from_value(v.clone()).map(Some).map_err(|e| ImageError::Corrupt(image.config_digest.clone(), format!("config.Healthcheck: {e}"))),
        }
    }

    /// The unpacked directories of an image's layers, bottom first.
    pub fn layer_dirs(&self, image: &ImageRow) -> Result<Vec<PathBuf>> {
        image
            .layers
            .iter()
            .map(|d| {
                let dir = self.layer_dir(d);
                if dir.is_dir() { Ok(dir) } else { Err(ImageError::Corrupt(image.name.clone(), format!("layer {d} is missing from {}", dir.display()))) }
            })
            .collect()
    }
}
