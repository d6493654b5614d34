//! Import of OCI image layouts (a directory with `oci-layout`, `index.json` and
//! `blobs/sha256/...`, or a tar of one), as skopeo, umoci and the lab's image recipes write them.
//! Every blob is verified against its digest and size while it is copied into the blob store;
//! each layer is unpacked once, and its uncompressed digest must match the config's diff_id.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::store::{ImageStore, Tee};
use super::{unreadable, ImageError, Reference, Result};
use crate::state::images::{ImageRow, LayerRow};
use crate::storage::unpack;

/// A layout's manifest, index and config (and a pulled manifest or config) may have this many
/// bytes at most; anything bigger is not an image.
pub const MAX_JSON: u64 = 4 << 20;
/// The annotation that names a manifest in an index.
const REF_NAME: &str = "org.opencontainers.image.ref.name";
const INDEX_TYPES: [&str; 2] = ["application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json"];
const LAYER_TYPES: [&str; 5] = [
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
];

#[derive(Debug, Deserialize)]
struct Index {
    manifests: Vec<Descriptor>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    #[serde(default)]
    media_type: String,
    digest: String,
    size: u64,
    #[serde(default)]
    annotations: HashMap<String, String>,
    platform: Option<Platform>,
}

#[derive(Debug, Clone, Deserialize)]
struct Platform {
    architecture: String,
    os: String,
}

#[derive(Debug, Deserialize)]
struct Manifest {
    config: Descriptor,
    layers: Vec<Descriptor>,
}

#[derive(Debug, Deserialize)]
struct Config {
    rootfs: RootFs,
}

#[derive(Debug, Deserialize)]
struct RootFs {
    diff_ids: Vec<String>,
}

/// Whether `path` is an OCI image layout: a directory holding `oci-layout`, or a tar with one.
pub fn is_layout(path: &Path) -> bool {
    if path.is_dir() {
        return path.join("oci-layout").is_file();
    }
    tar_has_layout(path).unwrap_or(false)
}

fn tar_has_layout(path: &Path) -> std::io::Result<bool> {
    let mut archive = tar::Archive::new(File::open(path)?);
    for entry in archive.entries_with_seek()? {
        let entry = entry?;
        let name = entry.path()?.into_owned();
        if name.components().filter(|c| !matches!(c, std::path::Component::CurDir)).eq([std::path::Component::Normal("oci-layout".as_ref())]) {
            return Ok(true);
        }
    }
    Ok(false)
}

impl ImageStore<'_> {
    /// Imports the images of an OCI layout (directory or tar). With `reference`, imports the
    /// manifest whose ref.name is its tag (or the only one) under that name; without, every
    /// named manifest, named after its ref.name (a bare tag takes the layout's file name).
    pub fn import_layout(&self, path: &Path, reference: Option<&Reference>) -> Result<Vec<ImageRow>> {
        self.import_layout_reporting(path, reference, &|_, _| {})
    }

    /// `import_layout`, telling `report` about each layer (by its blob digest) as it is
    /// unpacked and once it is in place.
    pub fn import_layout_reporting(&self, path: &Path, reference: Option<&Reference>, report: &dyn Fn(&str, LayerImport)) -> Result<Vec<ImageRow>> {
        let _adding = self.lock_layers(false)?;
        if path.is_dir() {
            return self.import_layout_dir(path, path, reference, report);
        }
        // A tar is unpacked (safely, as any layer is) into a scratch directory first.
        let scratch = tempfile::Builder::new().prefix(".layout-").tempdir_in(self.layers_dir().parent().unwrap_or(Path::new("/tmp"))).map_err(|e| unreadable(path, e))?;
        let _owned = crate::storage::scratch::own_dir(scratch.path()).map_err(|e| unreadable(path, e))?;
        unpack::unpack_into(File::open(path).map_err(|e| unreadable(path, e))?, scratch.path())?;
        self.import_layout_dir(scratch.path(), path, reference, report)
    }

    fn import_layout_dir(&self, dir: &Path, shown: &Path, reference: Option<&Reference>, report: &dyn Fn(&str, LayerImport)) -> Result<Vec<ImageRow>> {
        let layout = Layout { dir: dir.to_path_buf(), shown: shown.display().to_string() };
        layout.check_version()?;
        let index: Index = layout.json(&layout.dir.join("index.json"), "index.json")?;
        let picked = pick(&index.manifests, reference, &default_name(shown))?;
        picked.iter().map(|(r, d)| self.import_manifest(&layout, d, r, report)).collect()
    }

    fn import_manifest(&self, layout: &Layout, descriptor: &Descriptor, reference: &Reference, report: &dyn Fn(&str, LayerImport)) -> Result<ImageRow> {
        let descriptor = layout.resolve_index(descriptor)?;
        let manifest_bytes = layout.blob(&descriptor)?;
        let manifest: Manifest = parse(&manifest_bytes, &layout.shown, "manifest")?;
        let config_bytes = layout.blob(&manifest.config)?;
        let config: Config = parse(&config_bytes, &layout.shown, "image config")?;
        if config.rootfs.diff_ids.len() != manifest.layers.len() {
            return Err(layout.corrupt(format!("the manifest has {} layers but the config {} diff_ids", manifest.layers.len(), config.rootfs.diff_ids.len())));
        }
        let mut layers = Vec::new();
        let mut made = Made::default();
        for (d, diff_id) in manifest.layers.iter().zip(&config.rootfs.diff_ids) {
            report(&d.digest, LayerImport::Extracting);
            match self.import_layer(layout, d, diff_id, &mut made) {
                Ok(layer) => {
                    report(&d.digest, LayerImport::Done);
                    layers.push(layer);
                }
                Err(e) => {
                    made.undo();
                    return Err(e);
                }
            }
        }
        let (config_digest, _) = self.blob_store().put_bytes(&config_bytes)?;
        let (manifest_digest, _) = self.blob_store().put_bytes(&manifest_bytes)?;
        self.record(reference, manifest_digest, config_digest, &layers, crate::state::now())
    }

    /// Copies one layer blob into the store (verified) and unpacks it unless it already is.
    fn import_layer(&self, layout: &Layout, d: &Descriptor, diff_id: &str, made: &mut Made) -> Result<LayerRow> {
        if !LAYER_TYPES.contains(&d.media_type.as_str()) {
            return Err(layout.corrupt(format!("layer {} has media type {:?}; shibafu takes tar, tar+gzip and tar+zstd layers", d.digest, d.media_type)));
        }
        let file = layout.open_blob(d)?;
        let row = |size: u64| LayerRow { diff_id: diff_id.to_string(), blob_digest: d.digest.clone(), media_type: d.media_type.clone(), size: size as i64 };
        // Known only as this very blob: another blob claiming the same diff_id is unpacked (into
        // a copy that is then dropped) to prove it.
        let known = self.db.layer(diff_id)?.is_some_and(|l| l.blob_digest == d.digest) && self.layer_dir(diff_id).is_dir();
        if known {
            if !self.blob_store().exists(&d.digest) {
                self.blob_store().put(&mut file.take(d.size + 1), Some(&d.digest))?;
                made.paths.push(self.blob_store().path(&d.digest));
            }
            return Ok(row(d.size));
        }
        let blob_was_there = self.blob_store().exists(&d.digest);
        // A blob the store has (a pull stores each as soon as it is verified) is checked on
        // the way through, not written a second time.
        let mut blob = if blob_was_there { self.blob_store().verifier() } else { self.blob_store().writer()? };
        let unpacked = unpack::unpack_layer(Tee { from: file.take(d.size + 1), to: &mut blob }, &self.layers_dir())
            .map_err(|e| layout.corrupt(format!("layer {}: {e}", d.digest)))?;
        if unpacked.created {
            made.paths.push(self.layer_dir(&unpacked.diff_id));
        }
        if unpacked.diff_id != diff_id {
            return Err(layout.corrupt(format!("layer {} unpacks to {} but the config says {diff_id}", d.digest, unpacked.diff_id)));
        }
        let (_, size) = blob.commit(Some(&d.digest))?;
        if !blob_was_there {
            made.paths.push(self.blob_store().path(&d.digest));
        }
        if size != d.size {
            return Err(layout.corrupt(format!("layer {} is {size} bytes, the manifest says {}", d.digest, d.size)));
        }
        Ok(row(size))
    }
}

/// Where the import of one layer is, as `import_layout_reporting` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerImport {
    /// Being unpacked (or found unpacked already).
    Extracting,
    /// In place.
    Done,
}

/// What an import made on disk before it was recorded, removed again when a later layer fails.
#[derive(Default)]
struct Made {
    paths: Vec<PathBuf>,
}

impl Made {
    fn undo(&self) {
        for p in &self.paths {
            let _ = if p.is_dir() { std::fs::remove_dir_all(p) } else { std::fs::remove_file(p) };
        }
    }
}

/// Which manifests to import, and under which names.
fn pick(manifests: &[Descriptor], reference: Option<&Reference>, default_name: &str) -> Result<Vec<(Reference, Descriptor)>> {
    let ref_name = |d: &Descriptor| d.annotations.get(REF_NAME).cloned();
    if let Some(r) = reference {
        let full = r.to_string();
        let found = manifests.iter().find(|d| ref_name(d).is_some_and(|n| n == r.tag || n == full));
        return match (found, manifests) {
            (Some(d), _) | (None, [d]) => Ok(vec![(r.clone(), d.clone())]),
            _ => {
                let names: Vec<String> = manifests.iter().filter_map(ref_name).collect();
                Err(ImageError::BadReference(format!("the layout has no manifest named {:?} (its names: {})", r.tag, names.join(", "))))
            }
        };
    }
    let named: Vec<_> = manifests
        .iter()
        .filter_map(|d| {
            let n = ref_name(d)?;
            let text = if n.contains(':') || n.contains('/') { n } else { format!("{default_name}:{n}") };
            Some(super::reference::parse(&text).map(|r| (r, d.clone())).map_err(ImageError::BadReference))
        })
        .collect::<Result<_>>()?;
    if named.is_empty() {
        return Err(ImageError::BadReference("the layout names no image (no org.opencontainers.image.ref.name); give a NAME[:TAG]".into()));
    }
    Ok(named)
}

/// A layout's file name, as an image name: `images/build/oci/nginx` -> `nginx`.
fn default_name(path: &Path) -> String {
    let stem = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let stem = stem.trim_end_matches(".tar").to_ascii_lowercase();
    let clean: String = stem.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '-' }).collect();
    if clean.is_empty() { "image".into() } else { clean }
}

fn parse<T: serde::de::DeserializeOwned>(bytes: &[u8], shown: &str, what: &str) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| ImageError::Corrupt(shown.into(), format!("{what}: {e}")))
}

/// An unpacked layout on disk.
struct Layout {
    dir: PathBuf,
    shown: String,
}

impl Layout {
    fn corrupt(&self, why: String) -> ImageError {
        ImageError::Corrupt(self.shown.clone(), why)
    }

    fn check_version(&self) -> Result<()> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct OciLayout {
            image_layout_version: String,
        }
        let v: OciLayout = self.json(&self.dir.join("oci-layout"), "oci-layout")?;
        if v.image_layout_version != "1.0.0" {
            return Err(self.corrupt(format!("imageLayoutVersion {:?}; shibafu reads 1.0.0", v.image_layout_version)));
        }
        Ok(())
    }

    fn json<T: serde::de::DeserializeOwned>(&self, path: &Path, what: &str) -> Result<T> {
        let mut bytes = Vec::new();
        self.open(path)?.take(MAX_JSON + 1).read_to_end(&mut bytes).map_err(|e| unreadable(path, e))?;
        if bytes.len() as u64 > MAX_JSON {
            return Err(self.corrupt(format!("{what} is larger than {MAX_JSON} bytes")));
        }
        parse(&bytes, &self.shown, what)
    }

    /// Opens a regular file of the layout. Symlinks resolve inside the layout (a tar may carry
    /// `blobs/sha256/X -> /etc/shadow`), and only regular files are read.
    fn open(&self, path: &Path) -> Result<File> {
        let rel = path.strip_prefix(&self.dir).unwrap_or(path);
        let root = File::open(&self.dir).map_err(|e| unreadable(&self.dir, e))?;
        let fd = crate::safepath::open(&root, rel, nix::fcntl::OFlag::O_RDONLY, nix::sys::stat::Mode::empty()).map_err(|e| unreadable(path, e))?;
        let file = File::from(fd);
        if !file.metadata().map_err(|e| unreadable(path, e))?.is_file() {
            return Err(self.corrupt(format!("{} is not a regular file", rel.display())));
        }
        Ok(file)
    }

    /// An index in place of a manifest: the linux/amd64 entry (or the only one).
    fn resolve_index(&self, d: &Descriptor) -> Result<Descriptor> {
        if !INDEX_TYPES.contains(&d.media_type.as_str()) {
            return Ok(d.clone());
        }
        let index: Index = parse(&self.blob(d)?, &self.shown, "nested index")?;
        let amd64 = |m: &&Descriptor| m.platform.as_ref().is_some_and(|p| p.os == "linux" && p.architecture == "amd64");
        match (index.manifests.iter().find(amd64), index.manifests.as_slice()) {
            (Some(m), _) | (None, [m]) => Ok(m.clone()),
            _ => Err(self.corrupt(format!("index {} has no linux/amd64 manifest", d.digest))),
        }
    }

    fn blob_path(&self, d: &Descriptor) -> Result<PathBuf> {
        match crate::storage::sha256_hex(&d.digest) {
            Some(h) => Ok(self.dir.join("blobs/sha256").join(h)),
            None => Err(self.corrupt(format!("digest {:?} is not sha256:<64 lowercase hex>", d.digest))),
        }
    }

    fn open_blob(&self, d: &Descriptor) -> Result<File> {
        self.open(&self.blob_path(d)?)
    }

    /// A small blob (manifest, config, index), verified.
    fn blob(&self, d: &Descriptor) -> Result<Vec<u8>> {
        if d.size > MAX_JSON {
            return Err(self.corrupt(format!("blob {} is {} bytes by its descriptor, larger than the {MAX_JSON} a manifest, index or config may have", d.digest, d.size)));
        }
        let mut bytes = Vec::new();
        self.open_blob(d)?.take(d.size + 1).read_to_end(&mut bytes).map_err(|e| unreadable(Path::new(&d.digest), e))?;
        let actual = crate::storage::sha256_digest(&bytes);
        if actual != d.digest || bytes.len() as u64 != d.size {
            return Err(self.corrupt(format!("blob {} has digest {actual} and {} bytes (the descriptor says {} bytes)", d.digest, bytes.len(), d.size)));
        }
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(tag: Option<&str>) -> Descriptor {
        let mut annotations = HashMap::new();
        if let Some(t) = tag {
            annotations.insert(REF_NAME.to_string(), t.to_string());
        }
        Descriptor { media_type: String::new(), digest: format!("sha256:{}", "a".repeat(64)), size: 1, annotations, platform: None }
    }

    #[test]
    fn picks_by_tag_or_the_only_manifest() {
        let r = super::super::reference::parse("nginx:1").unwrap();
        let two = [desc(Some("0")), desc(Some("1"))];
        assert_eq!(pick(&two, Some(&r), "x").unwrap()[0].1.annotations[REF_NAME], "1");
        assert!(pick(&[desc(None)], Some(&r), "x").is_ok());
        assert!(pick(&[desc(Some("0")), desc(None)], Some(&r), "x").is_err());
    }

    #[test]
    fn names_bare_tags_after_the_layout() {
        let picked = pick(&[desc(Some("15")), desc(Some("lab/pg:x"))], None, &default_name(Path::new("/i/postgres"))).unwrap();
        let names: Vec<_> = picked.iter().map(|(r, _)| format!("{}:{}", r.name, r.tag)).collect();
        assert_eq!(names, ["postgres:15", "lab/pg:x"]);
        assert!(pick(&[desc(None)], None, "x").is_err());
    }
}
