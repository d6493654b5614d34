//! Image management: `image inspect`, `image rm`, and `image export` as an OCI image layout
//! (a directory, or a tar of one) that skopeo, umoci and our own import read.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use serde_json::json;

use super::store::ImageStore;
use super::{unreadable, ImageError, Result};
use crate::state::images::ImageRow;

impl ImageStore<'_> {
    /// What `image inspect` prints: the tag, IDs, layers with their blobs, and the config.
    pub fn inspect(&self, image: &ImageRow) -> Result<serde_json::Value> {
        let config = self.config(image)?;
        let mut layers = Vec::new();
        for d in &image.layers {
            let l = self.db.layer(d)?.ok_or_else(|| ImageError::Corrupt(image.name.clone(), format!("layer {d} is not recorded")))?;
            layers.push(json!({ "diff_id": l.diff_id, "blob": l.blob_digest, "media_type": l.media_type, "size": l.size, "dir": self.layer_dir(d) }));
        }
        Ok(json!({
            "name": image.reference(),
            "id": image.config_digest,
            "manifest": image.manifest_digest,
            "created": image.created_at,
            "size": image.size,
            "layers": layers,
            "config": { "env": config.env, "entrypoint": config.entrypoint, "cmd": config.cmd, "working_dir": config.working_dir, "user": config.user, "labels": config.labels, "volumes": config.volumes },
        }))
    }

    /// Removes a tag; refused while a container was made from it. Layers and blobs that no
    /// other image, container or layer name uses go with it.
    pub fn remove(&self, image: &ImageRow, containers_using: usize) -> Result<()> {
        if containers_using > 0 {
            return Err(ImageError::ImageInUse(image.reference(), containers_using));
        }
        let _removing = self.lock_layers(true)?;
        self.db.delete_image(&image.name, &image.tag)?;
        for d in &image.layers {
            self.drop_layer_if_unused(d)?;
        }
        let others = self.db.images()?;
        for digest in [&image.config_digest, &image.manifest_digest] {
            if !others.iter().any(|i| &i.config_digest == digest || &i.manifest_digest == digest) {
                self.remove_blob(digest)?;
            }
        }
        // Layer blobs only this manifest named (not the recorded ones): gc takes them, as it
        // knows every manifest still stored.
        Ok(())
    }

    /// Writes `image` as an OCI image layout: into `dest` as a directory, or as a tar when
    /// `dest` ends in `.tar` (`-` writes the tar to `out`). The manifest's ref.name is the tag.
    pub fn export_layout(&self, image: &ImageRow, dest: &Path, out: impl Write) -> Result<()> {
        let manifest_size = std::fs::metadata(self.blob_store().path(&image.manifest_digest)).map_err(|e| unreadable(dest, e))?.len();
        let (media_type, named) = self.manifest_blobs(image)?;
        let index = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [{
                "mediaType": media_type,
                "digest": image.manifest_digest,
                "size": manifest_size,
                "annotations": {
                    "org.opencontainers.image.ref.name": image.tag,
                    "io.containerd.image.name": image.reference(),
                },
            }],
        });
        // The blobs the manifest names, not those recorded per diff_id: they may differ.
        let blobs: Vec<String> = std::iter::once(image.manifest_digest.clone()).chain(named).collect();
        let files: Vec<(String, Vec<u8>)> =
            vec![("oci-layout".into(), br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()), ("index.json".into(), serde_json::to_vec(&index).expect("JSON serializes"))];
        let is_tar = dest.as_os_str() == "-" || dest.extension().is_some_and(|e| e == "tar");
        if is_tar {
            self.layout_tar(&files, &blobs, dest, out)
        } else {
            self.layout_dir(&files, &blobs, dest)
        }
    }

    fn layout_dir(&self, files: &[(String, Vec<u8>)], blobs: &[String], dest: &Path) -> Result<()> {
        if dest.join("index.json").exists() {
            return Err(ImageError::BadReference(format!("{} already holds an OCI layout; choose a new directory", dest.display())));
        }
        let blob_dir = dest.join("blobs/sha256");
        std::fs::create_dir_all(&blob_dir).map_err(|e| unreadable(&blob_dir, e))?;
        for digest in blobs {
            let to = blob_dir.join(crate::storage::hex(digest));
            // A hard link when on the same filesystem, else a copy; whatever sat at `to` is
            // unlinked first, never written through (it may be a link to the store's own blob).
            let _ = std::fs::remove_file(&to);
            if std::fs::hard_link(self.blob_store().path(digest), &to).is_err() {
                std::fs::copy(self.blob_store().path(digest), &to).map_err(|e| unreadable(&to, e))?;
            }
        }
        for (name, bytes) in files {
            std::fs::write(dest.join(name), bytes).map_err(|e| unreadable(&dest.join(name), e))?;
        }
        Ok(())
    }

    fn layout_tar(&self, files: &[(String, Vec<u8>)], blobs: &[String], dest: &Path, out: impl Write) -> Result<()> {
        let to_stdout = dest.as_os_str() == "-";
        let sink: Box<dyn Write> = if to_stdout { Box::new(out) } else { Box::new(File::create(dest).map_err(|e| unreadable(dest, e))?) };
        let mut tar = tar::Builder::new(sink);
        let write = |e: std::io::Error| ImageError::Write(e);
        for (name, bytes) in files {
            tar.append_data(&mut header(bytes.len() as u64), name, &bytes[..]).map_err(write)?;
        }
        for digest in blobs {
            let path = self.blob_store().path(digest);
            let file = File::open(&path).map_err(|e| unreadable(&path, e))?;
            let len = file.metadata().map_err(write)?.len();
            tar.append_data(&mut header(len), format!("blobs/sha256/{}", crate::storage::hex(digest)), file).map_err(write)?;
        }
        tar.into_inner().map_err(write)?.flush().map_err(write)
    }
}

fn header(size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o644);
    h.set_size(size);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h
}
