//! An image as `docker image inspect` shows one: ID, tags, digests, config, layers.

use serde_json::{json, Value};

use crate::engine::{Engine, Result};
use crate::state::images::ImageRow;

/// What `inspect` says about an image, read from the state and the blob store.
#[derive(Debug, Clone)]
pub struct ImageFacts {
    /// The image's row.
    pub row: ImageRow,
    /// Every `name:tag` with the same ID.
    pub tags: Vec<String>,
    /// Every `name@manifest-digest` with the same ID.
    pub digests: Vec<String>,
    /// The image config blob, parsed.
    pub config: Value,
    /// Its layers, bottom first.
    pub layers: Vec<ImageLayer>,
}

/// One layer of an image.
#[derive(Debug, Clone)]
pub struct ImageLayer {
    /// Digest of the uncompressed tar.
    pub diff_id: String,
    /// Digest of the stored blob.
    pub digest: String,
    /// The unpacked directory.
    pub dir: String,
    /// The blob's file.
    pub blob: String,
}

impl Engine {
    /// Gathers what `inspect` shows of an image.
    pub fn image_facts(&self, row: &ImageRow) -> Result<ImageFacts> {
        let images = self.images();
        let same: Vec<ImageRow> = self.db.images()?.into_iter().filter(|i| i.config_digest == row.config_digest).collect();
        let mut digests: Vec<String> = same.iter().map(|i| format!("{}@{}", i.name, i.manifest_digest)).collect();
        digests.dedup();
        let bytes = images.blob_store().read(&row.config_digest)?;
        let config = serde_json::from_slice(&bytes).map_err(|e| crate::image::ImageError::Corrupt(row.reference(), e.to_string()))?;
        let mut layers = Vec::new();
        for diff_id in &row.layers {
            let digest = self.db.layer(diff_id)?.map(|l| l.blob_digest).unwrap_or_default();
            let blob = images.blob_store().path(&digest).display().to_string();
            layers.push(ImageLayer { diff_id: diff_id.clone(), digest, dir: images.layer_dir(diff_id).display().to_string(), blob });
        }
        Ok(ImageFacts { row: row.clone(), tags: same.iter().map(ImageRow::reference).collect(), digests, config, layers })
    }
}

/// The document, as Docker names its fields.
pub fn document(f: &ImageFacts) -> Value {
    let lowers: Vec<&str> = f.layers.iter().rev().map(|l| l.dir.as_str()).collect();
    json!({
        "Id": f.row.config_digest,
        "RepoTags": f.tags,
        "RepoDigests": f.digests,
        "Parent": "",
        "Comment": "",
        "Created": f.config.get("created").cloned().unwrap_or_else(|| json!(f.row.created_at)),
        "Author": f.config.get("author").cloned().unwrap_or_else(|| json!("")),
        "Config": f.config.get("config").cloned().unwrap_or(Value::Null),
        "Architecture": f.config.get("architecture").cloned().unwrap_or_else(|| json!("")),
        "Os": f.config.get("os").cloned().unwrap_or_else(|| json!("")),
        "Size": f.row.size,
        "GraphDriver": {
            "Name": "overlay",
            "Data": {"LowerDir": lowers.join(":")},
            "Layers": f.layers.iter().map(|l| json!({"DiffID": l.diff_id, "Digest": l.digest, "Dir": l.dir})).collect::<Vec<_>>(),
        },
        "RootFS": {"Type": "layers", "Layers": f.row.layers},
        "Metadata": {"LastTagTime": f.row.created_at},
    })
}
