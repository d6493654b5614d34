//! Typed queries on named volumes and the containers that mount them. A volume is taken into
//! use and given up in one IMMEDIATE transaction each, so `volume rm` never removes a volume a
//! `run` has just started to use.

use std::collections::BTreeMap;

use rusqlite::{params, OptionalExtension};

use super::{now, Db, Result, StateError};

/// A volume as recorded.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VolumeRow {
    /// Its name (64 hex digits for an anonymous one).
    pub name: String,
    /// Made for one container by `-v /path` (removed with it by `rm -v`).
    pub anonymous: bool,
    /// Its labels (`volume create --label`).
    pub labels: BTreeMap<String, String>,
    /// When it was made (RFC 3339).
    pub created_at: String,
}

fn row(r: &rusqlite::Row) -> rusqlite::Result<VolumeRow> {
    Ok(VolumeRow {
        name: r.get(0)?,
        anonymous: r.get(1)?,
        labels: serde_json::from_str(&r.get::<_, String>(2)?).unwrap_or_default(),
        created_at: r.get(3)?,
    })
}

const SELECT: &str = "SELECT name, anonymous, labels, created_at FROM volumes";

impl Db {
    /// Records a volume unless one by that name exists; true when this call made it.
    pub fn insert_volume(&self, name: &str, anonymous: bool, labels: &BTreeMap<String, String>) -> Result<bool> {
        let labels = serde_json::to_string(labels).expect("strings serialize");
        let made = self.conn.execute(
            "INSERT OR IGNORE INTO volumes (name, anonymous, labels, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![name, anonymous, labels, now()],
        )?;
        Ok(made == 1)
    }

    /// A volume by name.
    pub fn volume(&self, name: &str) -> Result<Option<VolumeRow>> {
        Ok(self.conn.query_row(&format!("{SELECT} WHERE name = ?1"), [name], row).optional()?)
    }

    /// Every volume, by name.
    pub fn volumes(&self) -> Result<Vec<VolumeRow>> {
        self.query(&format!("{SELECT} ORDER BY name"), [], row)
    }

    /// Records that a container mounts these volumes, making the missing ones (named, or
    /// anonymous when `anonymous` says so), in one transaction. Returns the names it made.
    pub fn use_volumes(&self, container_id: &str, volumes: &[(String, bool)]) -> Result<Vec<String>> {
        let tx = self.immediate()?;
        let mut made = Vec::new();
        for (name, anonymous) in volumes {
            let added = tx.execute(
                "INSERT OR IGNORE INTO volumes (name, anonymous, labels, created_at) VALUES (?1, ?2, '{}', ?3)",
                params![name, anonymous, now()],
            )?;
            if added == 1 {
                made.push(name.clone());
            }
            tx.execute("INSERT OR IGNORE INTO volume_users (volume, container_id) VALUES (?1, ?2)", params![name, container_id])?;
        }
        tx.commit()?;
        Ok(made)
    }

    /// The containers (IDs) that mount a volume.
    pub fn volume_users(&self, name: &str) -> Result<Vec<String>> {
        self.query("SELECT container_id FROM volume_users WHERE volume = ?1 ORDER BY container_id", [name], |r| r.get(0))
    }

    /// The anonymous volumes a container mounts.
    pub fn anonymous_volumes_of(&self, container_id: &str) -> Result<Vec<String>> {
        self.query(
            "SELECT v.name FROM volumes v JOIN volume_users u ON u.volume = v.name WHERE u.container_id = ?1 AND v.anonymous = 1 ORDER BY v.name",
            [container_id],
            |r| r.get(0),
        )
    }

    /// Forgets a volume no container uses, running `before_commit` (which moves its files
    /// aside) inside the same transaction; refused while a container mounts it.
    pub fn delete_volume<E: From<StateError>>(&self, name: &str, before_commit: impl FnOnce() -> std::result::Result<(), E>) -> std::result::Result<(), E> {
        let tx = self.immediate()?;
        let user: Option<String> = tx
            .query_row("SELECT container_id FROM volume_users WHERE volume = ?1 LIMIT 1", [name], |r| r.get(0))
            .optional()
            .map_err(StateError::from)?;
        if let Some(id) = user {
            return Err(StateError::VolumeInUse(name.into(), id[..12.min(id.len())].to_string()).into());
        }
        if tx.execute("DELETE FROM volumes WHERE name = ?1", [name]).map_err(StateError::from)? == 0 {
            return Err(StateError::NoSuchVolume(name.into()).into());
        }
        before_commit()?;
        tx.commit().map_err(StateError::from)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::containers::ContainerRow;

    fn container(db: &Db, id: &str) {
        let row = ContainerRow { id: id.repeat(64), name: format!("c{id}"), state: "created".into(), created_at: now(), ..Default::default() };
        db.insert_container(&row).unwrap();
    }

    #[test]
    fn a_volume_in_use_cannot_be_removed_until_its_container_is_gone() {
        let db = Db::in_memory().unwrap();
        container(&db, "a");
        assert_eq!(db.use_volumes(&"a".repeat(64), &[("data".into(), false), ("f".repeat(64), true)]).unwrap().len(), 2);
        assert_eq!(db.anonymous_volumes_of(&"a".repeat(64)).unwrap(), vec!["f".repeat(64)]);
        let err = db.delete_volume::<StateError>("data", || Ok(())).unwrap_err();
        assert!(err.to_string().contains("in use by container aaaaaaaaaaaa"), "{err}");
        db.delete_container(&"a".repeat(64)).unwrap();
        assert!(db.volume_users("data").unwrap().is_empty(), "users go with their container");
        db.delete_volume::<StateError>("data", || Ok(())).unwrap();
        assert!(db.volume("data").unwrap().is_none());
        assert!(matches!(db.delete_volume::<StateError>("data", || Ok(())), Err(StateError::NoSuchVolume(_))));
    }

    #[test]
    fn a_failed_move_keeps_the_row() {
        let db = Db::in_memory().unwrap();
        assert!(db.insert_volume("keep", false, &BTreeMap::new()).unwrap());
        assert!(!db.insert_volume("keep", false, &BTreeMap::new()).unwrap(), "made once");
        let failed = db.delete_volume("keep", || Err(StateError::NoSuchVolume("disk".into())));
        assert!(failed.is_err());
        assert!(db.volume("keep").unwrap().is_some());
    }
}
