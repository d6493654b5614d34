//! Typed queries on images and layers.

use rusqlite::{params, OptionalExtension};

use super::{now, Db, Result};

/// An image: a name:tag pointing at a manifest.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ImageRow {
    /// Repository name (`busybox`, `localhost:5000/apps/web`).
    pub name: String,
    /// Tag.
    pub tag: String,
    /// Digest of the manifest blob.
    pub manifest_digest: String,
    /// Digest of the config blob (the image ID).
    pub config_digest: String,
    /// Layer diff IDs, bottom first.
    pub layers: Vec<String>,
    /// Bytes of the layers as stored.
    pub size: i64,
    /// When it was stored.
    pub created_at: String,
}

/// A layer: unpacked once, shared by every image and container that uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerRow {
    /// Digest of the uncompressed tar (names the directory under layers/).
    pub diff_id: String,
    /// Digest of the blob as stored.
    pub blob_digest: String,
    /// Media type of the blob.
    pub media_type: String,
    /// Size of the blob.
    pub size: i64,
}

impl ImageRow {
    /// `name:tag`.
    pub fn reference(&self) -> String {
        format!("{}:{}", self.name, self.tag)
    }
}

impl Db {
    /// Records a layer (once; a second insert of the same diff ID changes nothing).
    pub fn add_layer(&self, layer: &LayerRow) -> Result<()> {
        self.conn.execute(
            "INSERT OR IGNORE INTO layers (diff_id, blob_digest, media_type, size, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![layer.diff_id, layer.blob_digest, layer.media_type, layer.size, now()],
        )?;
        Ok(())
    }

    /// A layer by diff ID.
    pub fn layer(&self, diff_id: &str) -> Result<Option<LayerRow>> {
        Ok(self
            .conn
            .query_row(&format!("{SELECT_LAYER} WHERE diff_id = ?1"), [diff_id], layer_row)
            .optional()?)
    }

    /// Every layer, oldest first.
    pub fn layers(&self) -> Result<Vec<LayerRow>> {
        let mut stmt = self.conn.prepare(&format!("{SELECT_LAYER} ORDER BY created_at, rowid"))?;
        let rows = stmt.query_map([], layer_row)?.collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// Forgets a layer (its files are the caller's to remove).
    pub fn delete_layer(&self, diff_id: &str) -> Result<()> {
        self.conn.execute("DELETE FROM layers WHERE diff_id = ?1", [diff_id])?;
        Ok(())
    }

    /// Names a layer; a name already naming another layer is refused.
    pub fn name_layer(&self, name: &str, diff_id: &str) -> Result<()> {
        if let Some(held) = self.named_layer(name)? {
            if held != diff_id {
                return Err(super::StateError::LayerNameInUse(name.into(), held));
            }
            return Ok(());
        }
        self.conn.execute("INSERT INTO layer_names (name, diff_id, created_at) VALUES (?1, ?2, ?3)", params![name, diff_id, now()])?;
        Ok(())
    }

    /// The layer a name names.
    pub fn named_layer(&self, name: &str) -> Result<Option<String>> {
        Ok(self.conn.query_row("SELECT diff_id FROM layer_names WHERE name = ?1", [name], |r| r.get(0)).optional()?)
    }

    /// Every layer name and the layer it names, by name.
    pub fn layer_names(&self) -> Result<Vec<(String, String)>> {
        let mut stmt = self.conn.prepare("SELECT name, diff_id FROM layer_names ORDER BY name")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// Drops a layer name.
    pub fn unname_layer(&self, name: &str) -> Result<()> {
        self.conn.execute("DELETE FROM layer_names WHERE name = ?1", [name])?;
        Ok(())
    }

    /// Who uses a layer: (images, containers, names).
    pub fn layer_users(&self, diff_id: &str) -> Result<(i64, i64, i64)> {
        let count = |sql: &str| -> Result<i64> { Ok(self.conn.query_row(sql, [diff_id], |r| r.get(0))?) };
        Ok((
            count("SELECT COUNT(*) FROM images WHERE EXISTS (SELECT 1 FROM json_each(images.layers) WHERE value = ?1)")?,
            count("SELECT COUNT(*) FROM containers WHERE EXISTS (SELECT 1 FROM json_each(containers.layers) WHERE value = ?1)")?,
            count("SELECT COUNT(*) FROM layer_names WHERE diff_id = ?1")?,
        ))
    }

    /// Removes a tag.
    pub fn delete_image(&self, name: &str, tag: &str) -> Result<()> {
        self.conn.execute("DELETE FROM images WHERE name = ?1 AND tag = ?2", [name, tag])?;
        Ok(())
    }

    /// Stores or moves a tag.
    pub fn put_image(&self, image: &ImageRow) -> Result<()> {
        self.conn.execute(
            "INSERT OR REPLACE INTO images (name, tag, manifest_digest, config_digest, layers, size, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                image.name,
                image.tag,
                image.manifest_digest,
                image.config_digest,
                serde_json::to_string(&image.layers).expect("strings serialize"),
                image.size,
                image.created_at
            ],
        )?;
        Ok(())
    }

    /// An image by name and tag.
    pub fn image(&self, name: &str, tag: &str) -> Result<Option<ImageRow>> {
        Ok(self
            .conn
            .query_row(&format!("{SELECT_IMAGE} WHERE name = ?1 AND tag = ?2"), [name, tag], image_row)
            .optional()?)
    }

    /// Images whose config digest (image ID) starts with `prefix` (hex, after `sha256:`).
    pub fn images_by_id(&self, prefix: &str) -> Result<Vec<ImageRow>> {
        let pattern = format!("sha256:{}%", prefix.trim_start_matches("sha256:"));
        let mut stmt = self.conn.prepare(&format!("{SELECT_IMAGE} WHERE config_digest LIKE ?1"))?;
        let rows = stmt.query_map([pattern], image_row)?.collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// Every image, by name and tag.
    pub fn images(&self) -> Result<Vec<ImageRow>> {
        let mut stmt = self.conn.prepare(&format!("{SELECT_IMAGE} ORDER BY name, tag"))?;
        let rows = stmt.query_map([], image_row)?.collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }
}

const SELECT_LAYER: &str = "SELECT diff_id, blob_digest, media_type, size FROM layers";

fn layer_row(r: &rusqlite::Row) -> rusqlite::Result<LayerRow> {
    Ok(LayerRow { diff_id: r.get(0)?, blob_digest: r.get(1)?, media_type: r.get(2)?, size: r.get(3)? })
}

const SELECT_IMAGE: &str = "SELECT name, tag, manifest_digest, config_digest, layers, size, created_at FROM images";

fn image_row(r: &rusqlite::Row) -> rusqlite::Result<ImageRow> {
    let layers: String = r.get(4)?;
    Ok(ImageRow {
        name: r.get(0)?,
        tag: r.get(1)?,
        manifest_digest: r.get(2)?,
        config_digest: r.get(3)?,
        layers: serde_json::from_str(&layers).unwrap_or_default(),
        size: r.get(5)?,
        created_at: r.get(6)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(tag: &str, config: &str) -> ImageRow {
        ImageRow {
            name: "busybox".into(),
            tag: tag.into(),
            manifest_digest: "sha256:m".into(),
            config_digest: config.into(),
            layers: vec!["sha256:l1".into()],
            size: 10,
            created_at: now(),
        }
    }

    #[test]
    fn a_tag_moves_and_ids_resolve_by_prefix() {
        let db = Db::in_memory().unwrap();
        db.put_image(&image("latest", "sha256:aaaa1111")).unwrap();
        db.put_image(&image("latest", "sha256:bbbb2222")).unwrap();
        assert_eq!(db.images().unwrap().len(), 1);
        assert_eq!(db.image("busybox", "latest").unwrap().unwrap().config_digest, "sha256:bbbb2222");
        assert_eq!(db.images_by_id("bbbb").unwrap().len(), 1);
        assert!(db.images_by_id("aaaa").unwrap().is_empty());
        assert_eq!(db.image("busybox", "latest").unwrap().unwrap().layers, vec!["sha256:l1".to_string()]);
    }

    #[test]
    fn a_layer_is_recorded_once() {
        let db = Db::in_memory().unwrap();
        let layer = LayerRow { diff_id: "sha256:d".into(), blob_digest: "sha256:b".into(), media_type: "t".into(), size: 3 };
        db.add_layer(&layer).unwrap();
        db.add_layer(&layer).unwrap();
        assert_eq!(db.layer("sha256:d").unwrap(), Some(layer));
    }
}
