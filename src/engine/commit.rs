//! `commit NAME IMAGE`: a container's writable layer (its overlay upper dir, whiteouts turned
//! into OCI whiteouts) becomes a new layer on top of its image's layers, as a new image. The
//! files of a user-namespaced container are packed with the owners it saw.

use super::{Engine, EngineError, Result};
use crate::image::{reference, ImageConfig};
use crate::state::images::ImageRow;
use crate::storage::idmap::IdShift;
use crate::storage::overlay::OverlayDirs;
use crate::storage::pack::{PackOptions, Whiteouts};

impl Engine {
    /// Commits container `name_or_id` as image `target` (NAME[:TAG]).
    pub fn commit(&self, name_or_id: &str, target: &str) -> Result<ImageRow> {
        let reference = reference::parse(target).map_err(EngineError::Invalid)?;
        let container = self.find(name_or_id)?;
        let store = self.images();
        let _adding = store.lock_layers(false)?;
        let mut layers = Vec::new();
        for d in &container.layers {
            layers.push(self.db.layer(d)?.ok_or_else(|| EngineError::Invalid(format!("layer {d} of {} is no longer stored", container.name)))?);
        }
        let dir = self.container_dir(&container.id);
        let upper = OverlayDirs::in_dir(&dir).upper;
        // A user-namespaced container's files are the host's 100000...: the layer gets the
        // owners the container saw (0...), as if made without one.
        let ids = super::userns::of_spec(&crate::runtime::spec::load(&dir)?).map(|m| IdShift { uids: m.uids, gids: m.gids });
        crate::explain::step(|| format!("tar -C {} -c . | gzip  # overlay whiteouts become .wh. files", upper.display()));
        layers.push(store.pack_layer(&upper, PackOptions { keep_mtime: true, whiteouts: Whiteouts::ToOci, ids })?);
        // The image keeps its settings; one made of bare layers has none.
        let config = store.resolve(&container.image).and_then(|i| store.config(&i)).unwrap_or_else(|_| ImageConfig::default());
        Ok(store.store_image(&reference, &layers, &config, &format!("shibafu commit {}", container.name))?)
    }
}
