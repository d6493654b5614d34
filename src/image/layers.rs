//! Layers by hand (phase 3): `prepare-layer NAME DIR|TAR` packs or takes a layer, stores its
//! blob and unpacks it once; names point at layers; a layer goes when nothing uses it any more.
//! `run --layers a,b,c` gets a real image made of named layers.

use std::fs::File;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::store::{ImageStore, Tee, LAYER_GZIP, LAYER_TAR, LAYER_ZSTD};
use crate::storage::unpack::Compression;
use super::{unreadable, ImageConfig, ImageError, Reference, Result};
use crate::state::images::{ImageRow, LayerRow};
use crate::storage::pack::{self, PackOptions};
use crate::storage::unpack;

/// One row of `layers`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LayerInfo {
    /// Names given by prepare-layer (empty for layers that came with images).
    pub names: Vec<String>,
    /// sha256 of the uncompressed tar.
    pub diff_id: String,
    /// Bytes of the stored blob.
    pub size: i64,
    /// Images that use it.
    pub images: i64,
    /// Containers that use it.
    pub containers: i64,
}

impl ImageStore<'_> {
    /// Packs a directory (deterministically) or takes a tarball (plain or gzip) as a layer,
    /// names it `name`, and unpacks it under layers/ unless it is there already.
    pub fn prepare_layer(&self, name: &str, source: &Path, options: PackOptions) -> Result<LayerRow> {
        // A taken name is refused before any work (the insert below checks again, for a race).
        if let Some(held) = self.db.named_layer(name)? {
            return Err(crate::state::StateError::LayerNameInUse(name.into(), held).into());
        }
        let _adding = self.lock_layers(false)?;
        let layer = if source.is_dir() { self.pack_layer(source, options)? } else { self.take_layer(source)? };
        crate::fault::point("prepare-layer:unpacked");
        let tx = self.db.conn.unchecked_transaction().map_err(crate::state::StateError::from)?;
        self.db.add_layer(&layer)?;
        self.db.name_layer(name, &layer.diff_id)?;
        tx.commit().map_err(crate::state::StateError::from)?;
        Ok(layer)
    }

    /// Packs `dir` into a gzip blob, then unpacks the blob once (what is unpacked is exactly
    /// what is stored).
    pub fn pack_layer(&self, dir: &Path, options: PackOptions) -> Result<LayerRow> {
        let mut blob = self.blob_store().writer()?;
        let packed = pack::pack_dir(dir, options, &mut blob)?;
        let (blob_digest, size) = blob.commit(None)?;
        crate::fault::point("prepare-layer:blob-stored");
        if !self.layer_dir(&packed.diff_id).is_dir() {
            let file = File::open(self.blob_store().path(&blob_digest)).map_err(|e| unreadable(dir, e))?;
            unpack::unpack_layer(file, &self.layers_dir())?;
        }
        Ok(LayerRow { diff_id: packed.diff_id, blob_digest, media_type: LAYER_GZIP.into(), size: size as i64 })
    }

    /// Stores a tarball as it is and unpacks it: one read, the archive unpacked and stored as
    /// a blob at once; the blob is kept only once the whole archive unpacked, so a bad one
    /// stores nothing.
    pub(super) fn take_layer(&self, tarball: &Path) -> Result<LayerRow> {
        let file = File::open(tarball).map_err(|e| unreadable(tarball, e))?;
        let mut blob = self.blob_store().writer()?;
        let unpacked = unpack::unpack_layer(Tee { from: file, to: &mut blob }, &self.layers_dir())?;
        let (blob_digest, size) = blob.commit(None)?;
        let media_type = match unpacked.compression {
            Compression::Gzip => LAYER_GZIP,
            Compression::Zstd => LAYER_ZSTD,
            Compression::None => LAYER_TAR,
        };
        Ok(LayerRow { diff_id: unpacked.diff_id, blob_digest, media_type: media_type.into(), size: size as i64 })
    }

    /// Every layer with its names and users.
    pub fn layer_infos(&self) -> Result<Vec<LayerInfo>> {
        let names = self.db.layer_names()?;
        self.db
            .layers()?
            .into_iter()
            .map(|l| {
                let (images, containers, _) = self.db.layer_users(&l.diff_id)?;
                let names = names.iter().filter(|(_, d)| *d == l.diff_id).map(|(n, _)| n.clone()).collect();
                Ok(LayerInfo { names, diff_id: l.diff_id, size: l.size, images, containers })
            })
            .collect()
    }

    /// Removes a layer name; refused while an image or container uses the layer. The layer's
    /// files go once nothing else names or uses it.
    pub fn remove_layer_name(&self, name: &str) -> Result<()> {
        let _removing = self.lock_layers(true)?;
        let Some(diff_id) = self.db.named_layer(name)? else {
            return Err(ImageError::UnknownLayer(name.into()));
        };
        let (images, containers, _) = self.db.layer_users(&diff_id)?;
        if images + containers > 0 {
            let users: Vec<String> = self.db.images()?.into_iter().filter(|i| i.layers.contains(&diff_id)).map(|i| i.reference()).collect();
            return Err(ImageError::LayerInUse { name: name.into(), images: users.join(", "), containers });
        }
        self.db.unname_layer(name)?;
        self.drop_layer_if_unused(&diff_id)
    }

    /// Deletes a layer's directory, blob and row when no image, container or name uses it.
    pub fn drop_layer_if_unused(&self, diff_id: &str) -> Result<()> {
        if self.db.layer_users(diff_id)? != (0, 0, 0) {
            return Ok(());
        }
        self.drop_layer(diff_id)
    }

    /// Deletes a blob the local store no longer needs, unless the registry serves it (the
    /// store is shared).
    pub fn remove_blob(&self, digest: &str) -> Result<()> {
        if !self.db.registry_holds(digest)? {
            let _ = std::fs::remove_file(self.blob_store().path(digest));
        }
        Ok(())
    }

    /// Deletes a layer's directory, blob and row (the caller knows nothing uses it).
    pub fn drop_layer(&self, diff_id: &str) -> Result<()> {
        let blob = self.db.layer(diff_id)?.map(|l| l.blob_digest);
        // Out of sight in one rename first: an interrupted removal leaves a staging dir (gc
        // takes it), never a half-deleted layer that looks whole.
        let dir = self.layer_dir(diff_id);
        let doomed = self.layers_dir().join(format!(".unpack-rm-{}", crate::storage::hex(diff_id)));
        if dir.exists() {
            crate::explain::step(|| format!("rm -r {}", dir.display()));
            std::fs::rename(&dir, &doomed).map_err(|e| unreadable(&dir, e))?;
        }
        self.db.delete_layer(diff_id)?;
        if let Some(b) = blob {
            self.remove_blob(&b)?;
        }
        if doomed.exists() {
            std::fs::remove_dir_all(&doomed).map_err(|e| unreadable(&doomed, e))?;
        }
        Ok(())
    }

    /// The image made of named layers, bottom first (`run --layers a,b,c`): made once, named
    /// `layers:<digest of the list>`, so the same list always runs the same image.
    pub fn image_of_layers(&self, names: &[String]) -> Result<ImageRow> {
        if names.is_empty() {
            return Err(ImageError::BadReference("--layers needs at least one layer name".into()));
        }
        let _adding = self.lock_layers(false)?;
        let mut layers = Vec::new();
        for n in names {
            let diff_id = self.db.named_layer(n)?.ok_or_else(|| ImageError::UnknownLayer(n.clone()))?;
            layers.push(self.db.layer(&diff_id)?.ok_or_else(|| ImageError::UnknownLayer(n.clone()))?);
        }
        let mut hasher = Sha256::new();
        for l in &layers {
            hasher.update(l.diff_id.as_bytes());
            hasher.update(b"\n");
        }
        let reference = Reference { name: "layers".into(), tag: format!("{:x}", hasher.finalize())[..12].to_string() };
        if let Some(row) = self.db.image(&reference.name, &reference.tag)? {
            return Ok(row);
        }
        self.store_image(&reference, &layers, &ImageConfig::default(), &format!("shibafu run --layers {}", names.join(",")))
    }
}
