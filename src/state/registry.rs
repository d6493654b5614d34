//! Typed queries for the registry: which blobs each repository holds, its manifests (their
//! bytes are blobs in the shared store) with what referrers need, and its tags.

use rusqlite::{params, OptionalExtension};

use super::{Db, Result};

/// A manifest as the registry records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestRow {
    /// The repository.
    pub repo: String,
    /// The digest of its bytes.
    pub digest: String,
    /// Its media type, as pushed.
    pub media_type: String,
    /// Its size in bytes.
    pub size: u64,
    /// The digest of its `subject`, if any.
    pub subject: Option<String>,
    /// Its `artifactType` (else its config's media type).
    pub artifact_type: Option<String>,
    /// Its annotations, as JSON.
    pub annotations: Option<String>,
    /// Every digest it refers to (config, layers, manifests), as a JSON list.
    pub refs: Vec<String>,
}

const MANIFESTS: &str = "SELECT repo, digest, media_type, size, subject, artifact_type, annotations, refs FROM reg_manifests";

fn manifest_row(r: &rusqlite::Row) -> rusqlite::Result<ManifestRow> {
    let refs: String = r.get(7)?;
    Ok(ManifestRow {
        repo: r.get(0)?,
        digest: r.get(1)?,
        media_type: r.get(2)?,
        size: r.get::<_, i64>(3)? as u64,
        subject: r.get(4)?,
        artifact_type: r.get(5)?,
        annotations: r.get(6)?,
        refs: serde_json::from_str(&refs).unwrap_or_default(),
    })
}

impl Db {
    /// Records that `repo` holds a blob.
    pub fn link_blob(&self, repo: &str, digest: &str, size: u64) -> Result<()> {
        self.conn.execute("INSERT OR IGNORE INTO reg_blobs VALUES (?1, ?2, ?3)", params![repo, digest, size as i64])?;
        Ok(())
    }

    /// The size of a blob `repo` holds, if it does.
    pub fn linked_blob(&self, repo: &str, digest: &str) -> Result<Option<u64>> {
        Ok(self.conn.query_row("SELECT size FROM reg_blobs WHERE repo = ?1 AND digest = ?2", [repo, digest], |r| r.get::<_, i64>(0)).optional()?.map(|s| s as u64))
    }

    /// Takes a blob out of `repo`; false when it held none.
    pub fn unlink_blob(&self, repo: &str, digest: &str) -> Result<bool> {
        Ok(self.conn.execute("DELETE FROM reg_blobs WHERE repo = ?1 AND digest = ?2", [repo, digest])? > 0)
    }

    /// Records a manifest, and points `tag` at it.
    pub fn put_manifest(&self, m: &ManifestRow, tag: Option<&str>) -> Result<()> {
        let tx = self.immediate()?;
        tx.execute(
            "INSERT OR REPLACE INTO reg_manifests VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![m.repo, m.digest, m.media_type, m.size as i64, m.subject, m.artifact_type, m.annotations, serde_json::to_string(&m.refs).expect("strings serialize")],
        )?;
        if let Some(tag) = tag {
            tx.execute("INSERT OR REPLACE INTO reg_tags VALUES (?1, ?2, ?3)", params![m.repo, tag, m.digest])?;
        }
        tx.commit()?;
        Ok(())
    }

    /// A manifest of `repo` by digest.
    pub fn registry_manifest(&self, repo: &str, digest: &str) -> Result<Option<ManifestRow>> {
        Ok(self.conn.query_row(&format!("{MANIFESTS} WHERE repo = ?1 AND digest = ?2"), [repo, digest], manifest_row).optional()?)
    }

    /// What a tag of `repo` points at.
    pub fn tag_digest(&self, repo: &str, tag: &str) -> Result<Option<String>> {
        Ok(self.conn.query_row("SELECT digest FROM reg_tags WHERE repo = ?1 AND tag = ?2", [repo, tag], |r| r.get(0)).optional()?)
    }

    /// Removes a tag; false when there was none.
    pub fn delete_tag(&self, repo: &str, tag: &str) -> Result<bool> {
        Ok(self.conn.execute("DELETE FROM reg_tags WHERE repo = ?1 AND tag = ?2", [repo, tag])? > 0)
    }

    /// Removes a manifest and every tag that points at it; false when there was none.
    pub fn delete_registry_manifest(&self, repo: &str, digest: &str) -> Result<bool> {
        let tx = self.immediate()?;
        let gone = tx.execute("DELETE FROM reg_manifests WHERE repo = ?1 AND digest = ?2", [repo, digest])? > 0;
        tx.execute("DELETE FROM reg_tags WHERE repo = ?1 AND digest = ?2", [repo, digest])?;
        tx.commit()?;
        Ok(gone)
    }

    /// The tags of `repo`, in byte order.
    pub fn tags(&self, repo: &str) -> Result<Vec<String>> {
        self.query("SELECT tag FROM reg_tags WHERE repo = ?1 ORDER BY tag", [repo], |r| r.get(0))
    }

    /// Whether `repo` holds anything at all.
    pub fn repo_exists(&self, repo: &str) -> Result<bool> {
        let n: i64 = self.conn.query_row(
            "SELECT (SELECT count(*) FROM reg_blobs WHERE repo = ?1) + (SELECT count(*) FROM reg_manifests WHERE repo = ?1)",
            [repo],
            |r| r.get(0),
        )?;
        Ok(n > 0)
    }

    /// Every repository, in byte order.
    pub fn repositories(&self) -> Result<Vec<String>> {
        self.query("SELECT repo FROM reg_blobs UNION SELECT repo FROM reg_manifests ORDER BY repo", [], |r| r.get(0))
    }

    /// The manifests of `repo` whose subject is `digest`.
    pub fn referrers(&self, repo: &str, digest: &str) -> Result<Vec<ManifestRow>> {
        self.query(&format!("{MANIFESTS} WHERE repo = ?1 AND subject = ?2 ORDER BY digest"), [repo, digest], manifest_row)
    }

    /// Every manifest of every repository (for gc).
    pub fn registry_manifests(&self) -> Result<Vec<ManifestRow>> {
        self.query(MANIFESTS, [], manifest_row)
    }

    /// Whether any repository holds the blob, or it is a registry manifest's bytes.
    pub fn registry_holds(&self, digest: &str) -> Result<bool> {
        let n: i64 = self.conn.query_row(
            "SELECT (SELECT count(*) FROM reg_blobs WHERE digest = ?1) + (SELECT count(*) FROM reg_manifests WHERE digest = ?1)",
            [digest],
            |r| r.get(0),
        )?;
        Ok(n > 0)
    }

    /// Whether a local image or layer records the blob (as its manifest, config or layer).
    pub fn blob_in_local_store(&self, digest: &str) -> Result<bool> {
        let n: i64 = self.conn.query_row(
            "SELECT (SELECT count(*) FROM layers WHERE blob_digest = ?1) + (SELECT count(*) FROM images WHERE manifest_digest = ?1 OR config_digest = ?1)",
            [digest],
            |r| r.get(0),
        )?;
        Ok(n > 0)
    }

    /// Every (repository, blob) link (for gc).
    pub fn blob_links(&self) -> Result<Vec<(String, String)>> {
        self.query("SELECT repo, digest FROM reg_blobs", [], |r| Ok((r.get(0)?, r.get(1)?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(digest: &str, subject: Option<&str>) -> ManifestRow {
        ManifestRow {
            repo: "a/b".into(),
            digest: digest.into(),
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            size: 10,
            subject: subject.map(str::to_string),
            artifact_type: None,
            annotations: None,
            refs: vec!["sha256:c".into()],
        }
    }

    #[test]
    fn tags_follow_manifests_and_referrers_are_found() {
        let db = Db::in_memory().unwrap();
        db.put_manifest(&manifest("sha256:m1", None), Some("v1")).unwrap();
        db.put_manifest(&manifest("sha256:r1", Some("sha256:m1")), None).unwrap();
        db.put_manifest(&manifest("sha256:m1", None), Some("latest")).unwrap();
        assert_eq!(db.tags("a/b").unwrap(), vec!["latest", "v1"]);
        assert_eq!(db.referrers("a/b", "sha256:m1").unwrap().len(), 1);
        assert!(db.delete_registry_manifest("a/b", "sha256:m1").unwrap());
        assert!(db.tags("a/b").unwrap().is_empty(), "a deleted manifest takes its tags along");
        assert!(!db.delete_registry_manifest("a/b", "sha256:m1").unwrap());
        db.link_blob("x", "sha256:c", 3).unwrap();
        assert_eq!(db.linked_blob("x", "sha256:c").unwrap(), Some(3));
        assert_eq!(db.repositories().unwrap(), vec!["a/b", "x"]);
    }
}
