//! `pull HOST/REPO:TAG` (and `run` of an image that is not here yet): the manifest (an
//! index's linux/amd64 one), then the config and the layers the store lacks, fetched a few at a
//! time and resumable (`fetch`), then the same verified import as `image import`, from a
//! scratch OCI layout whose blobs are hard links to the store. Layers the store has are not
//! fetched: the board says `Already exists` for them.

use std::collections::HashSet;
use std::path::Path;

use serde_json::{json, Value};

use super::super::layout::{LayerImport, MAX_JSON};
use super::super::progress::layers::{Board, Step};
use super::super::store::ImageStore;
use super::super::Result;
use super::client::{failed, Registry};
use super::fetch::{self, Fetcher, Wanted};
use super::{checked_hex, pick_platform, RemoteRef};
use crate::state::images::ImageRow;
use crate::storage::limits::{Limits, SIZE_VAR};
use crate::storage::partial::Partials;

impl ImageStore<'_> {
    /// Pulls `source` into the local store; see the module doc.
    pub fn pull(&self, source: &RemoteRef) -> Result<ImageRow> {
        // Settings first: a wrong one stops the pull before it asks anything.
        let (limit, max_layer) = (fetch::concurrency()?, Limits::from_env()?.max_size);
        let reg = Registry::new(&source.host)?;
        let (bytes, manifest) = image_manifest(&reg, source)?;
        let wanted = wanted_blobs(&manifest, max_layer)?;
        let board = Board::stderr();
        board.note(&format!("{}: Pulling from {}", source.tag, source.repo));
        let root = self.layers_dir().parent().map(Path::to_path_buf).unwrap_or_else(std::env::temp_dir);
        // Owned while the pull runs, so `gc` leaves it and the blobs lent to it alone; made
        // and owned under the store's lock, as all scratch is (see storage::scratch).
        let adding = self.lock_layers(false)?;
        let scratch = tempfile::Builder::new().prefix(".layout-").tempdir_in(&root).map_err(|e| failed(format!("scratch dir: {e}")))?;
        let _owned = crate::storage::scratch::own_dir(scratch.path()).map_err(|e| failed(format!("scratch dir: {e}")))?;
        drop(adding);
        let blobs = scratch.path().join("blobs/sha256");
        std::fs::create_dir_all(&blobs).map_err(|e| failed(format!("scratch dir: {e}")))?;
        let fetched = self.gather(&reg, source, wanted, &blobs, &board, limit)?;
        crate::fault::point("pull:fetched");
        let manifest_digest = crate::storage::sha256_digest(&bytes);
        write_layout(scratch.path(), &manifest, &bytes, &manifest_digest, &source.tag)?;
        let row = self.import_pulled(scratch.path(), source, &fetched, &board)?;
        board.note(&format!("Digest: {}", row.manifest_digest));
        let status = if fetched.is_empty() { "Image is up to date for" } else { "Downloaded newer image for" };
        board.note(&format!("Status: {status} {source}"));
        Ok(row)
    }

    /// Puts every wanted blob into the layout's `blobs` dir: the stored ones lent at once
    /// (`Already exists`), the others fetched into the store first, `limit` at a time.
    /// Returns those it fetched.
    fn gather(&self, reg: &Registry, source: &RemoteRef, wanted: Vec<Wanted>, blobs: &Path, board: &Board, limit: usize) -> Result<Vec<Wanted>> {
        let mut missing = Vec::new();
        for w in wanted {
            if self.lend(&w.digest, blobs)? {
                show(board, &w, Step::Cached);
            } else {
                missing.push(w);
            }
        }
        for (i, w) in missing.iter().enumerate() {
            show(board, w, if i < limit { Step::Pulling } else { Step::Waiting });
        }
        let root = self.layers_dir().parent().map(Path::to_path_buf).unwrap_or_else(std::env::temp_dir);
        let partials = Partials::new(&root);
        Fetcher { registry: reg, repo: &source.repo, store: self.blob_store(), partials: &partials, lend_to: blobs, board }.fetch_all(&missing, limit)?;
        for w in &missing {
            self.lend(&w.digest, blobs)?;
        }
        Ok(missing)
    }

    /// Imports the pulled layout as `HOST/REPO:TAG`; the fetched layers' lines go through
    /// `Extracting` to `Pull complete`.
    fn import_pulled(&self, dir: &Path, source: &RemoteRef, fetched: &[Wanted], board: &Board) -> Result<ImageRow> {
        let local = super::super::reference::Reference { name: format!("{}/{}", source.host, source.repo), tag: source.tag.clone() };
        let fetched: HashSet<&str> = fetched.iter().filter(|w| w.shown).map(|w| w.digest.as_str()).collect();
        let report = |digest: &str, step: LayerImport| {
            if fetched.contains(digest) {
                board.step(digest, if step == LayerImport::Extracting { Step::Extracting } else { Step::Complete });
            }
            if step == LayerImport::Done {
                crate::fault::point("pull:layer-unpacked");
            }
        };
        let mut rows = self.import_layout_reporting(dir, Some(&local), &report)?;
        rows.pop().ok_or_else(|| failed(format!("{source}: nothing imported")))
    }

    /// Lends the stored blob `digest` to the layout's `blobs` dir by a hard link (the scratch
    /// dir is in the data root), which also keeps it there should `gc` take it out of the
    /// store meanwhile. False when the store does not have it.
    fn lend(&self, digest: &str, blobs: &Path) -> Result<bool> {
        let (from, to) = (self.blob_store().path(digest), blobs.join(checked_hex(digest)?));
        match std::fs::hard_link(&from, &to) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            // The same blob twice in a manifest (Docker's empty layer is a common one).
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(true),
            Err(_) => std::fs::copy(&from, &to).map(|_| true).map_err(|e| failed(format!("copy {digest}: {e}"))),
        }
    }
}

/// The image manifest of `source`: (bytes, parsed). An index (or a Docker manifest list) is
/// followed to its linux/amd64 image, whose bytes must have the digest the index gives.
fn image_manifest(reg: &Registry, source: &RemoteRef) -> Result<(Vec<u8>, Value)> {
    let (bytes, m) = reg.manifest(&source.repo, &source.tag)?;
    if m.get("manifests").is_none() {
        return Ok((bytes, m));
    }
    let digest = pick_platform(&m).ok_or_else(|| failed(format!("{source} has no linux/amd64 image")))?;
    checked_hex(&digest)?;
    let (bytes, m) = reg.manifest(&source.repo, &digest)?;
    let actual = crate::storage::sha256_digest(&bytes);
    if actual != digest {
        return Err(failed(format!("the manifest {digest} of {source} arrived with digest {actual}")));
    }
    Ok((bytes, m))
}

/// The layers (each once, in order) and then the config of a manifest, with their digests
/// checked to be sha256 ones and their sizes within the limits: a layer within the layer size
/// limit, the config within `MAX_JSON`.
fn wanted_blobs(manifest: &Value, max_layer: u64) -> Result<Vec<Wanted>> {
    let layers = manifest.get("layers").and_then(Value::as_array).ok_or_else(|| failed("the manifest lists no layers"))?;
    let config = manifest.get("config").ok_or_else(|| failed("the manifest names no config"))?;
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for d in layers {
        let w = wanted(d, true)?;
        if w.size > max_layer {
            return Err(failed(format!("layer {} is {} bytes by the manifest, more than the {max_layer} a layer may have ({SIZE_VAR} raises it)", w.digest, w.size)));
        }
        if seen.insert(w.digest.clone()) {
            out.push(w);
        }
    }
    let config = wanted(config, false)?;
    if config.size > MAX_JSON {
        return Err(failed(format!("the config {} is {} bytes by the manifest, more than the {MAX_JSON} a config may have", config.digest, config.size)));
    }
    if seen.insert(config.digest.clone()) {
        out.push(config);
    }
    Ok(out)
}

fn wanted(descriptor: &Value, shown: bool) -> Result<Wanted> {
    let digest = descriptor.get("digest").and_then(Value::as_str).ok_or_else(|| failed("a descriptor without a digest"))?;
    // The registry names files: only 64 hex digits may become a path.
    checked_hex(digest)?;
    let size = descriptor.get("size").and_then(Value::as_u64).ok_or_else(|| failed(format!("the descriptor of {digest} has no size")))?;
    Ok(Wanted { digest: digest.to_string(), size, shown })
}

fn show(board: &Board, w: &Wanted, step: Step) {
    if w.shown {
        board.step(&w.digest, step);
    }
}

/// Writes the manifest, `index.json` (naming it `tag`) and `oci-layout` into the scratch layout.
fn write_layout(dir: &Path, manifest: &Value, bytes: &[u8], digest: &str, tag: &str) -> Result<()> {
    let write = |path: &Path, data: &[u8]| std::fs::write(path, data).map_err(|e| failed(format!("write {}: {e}", path.display())));
    write(&dir.join("blobs/sha256").join(checked_hex(digest)?), bytes)?;
    let media_type = manifest.get("mediaType").and_then(Value::as_str).unwrap_or(super::super::store::MANIFEST_TYPE);
    let index = json!({"schemaVersion": 2, "manifests": [{"mediaType": media_type, "digest": digest, "size": bytes.len(),
        "annotations": {"org.opencontainers.image.ref.name": tag}}]});
    write(&dir.join("index.json"), index.to_string().as_bytes())?;
    write(&dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    #[test]
    fn wanted_blobs_are_the_layers_once_then_the_config() {
        let m = json!({"config": {"digest": digest('c'), "size": 10},
            "layers": [{"digest": digest('a'), "size": 1}, {"digest": digest('b'), "size": 2}, {"digest": digest('a'), "size": 1}]});
        let w = wanted_blobs(&m, 100).unwrap();
        let names: Vec<(&str, bool)> = w.iter().map(|w| (&w.digest[7..8], w.shown)).collect();
        assert_eq!(names, [("a", true), ("b", true), ("c", false)]);
    }

    #[test]
    fn sizes_and_digests_from_the_registry_are_checked() {
        let with = |layer: Value| json!({"config": {"digest": digest('c'), "size": 10}, "layers": [layer]});
        let err = |m: Value, max: u64| wanted_blobs(&m, max).unwrap_err().to_string();
        assert!(err(with(json!({"digest": digest('a'), "size": 101})), 100).contains(SIZE_VAR));
        assert!(err(with(json!({"digest": digest('a')})), 100).contains("no size"));
        assert!(err(with(json!({"digest": "sha256:../../x", "size": 1})), 100).contains("not a sha256 digest"));
        assert!(err(with(json!({"digest": digest('a'), "size": -1})), 100).contains("no size"));
        let big_config = json!({"config": {"digest": digest('c'), "size": MAX_JSON + 1}, "layers": []});
        assert!(err(big_config, 100).contains("config"));
        assert!(err(json!({"config": {"digest": digest('c'), "size": 1}}), 100).contains("no layers"));
    }
}
