//! Typed queries on containers.

use std::collections::BTreeMap;

use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};

use super::{now, Db, Result, StateError};

/// One mount of a container, as `docker inspect` shows it under `Mounts`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MountRecord {
    /// `bind`, `volume` or `tmpfs`.
    #[serde(rename = "Type")]
    pub kind: String,
    /// The volume's name (volumes only).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// The path on the host (the volume's `_data` for a volume; empty for tmpfs).
    pub source: String,
    /// The path inside the container.
    pub destination: String,
    /// Whether the container may write to it.
    #[serde(rename = "RW")]
    pub rw: bool,
    /// An anonymous volume (`-v /data`), removed with `rm -v` or `run --rm`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub anonymous: bool,
}

/// A container's own resolver settings (`--dns`, `--dns-search`, `--dns-option`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DnsSettings {
    /// Name servers that replace the default ones.
    #[serde(default)]
    pub servers: Vec<String>,
    /// Search domains that replace the default ones.
    #[serde(default)]
    pub search: Vec<String>,
    /// resolv.conf options.
    #[serde(default)]
    pub options: Vec<String>,
}

impl DnsSettings {
    /// Whether nothing was asked.
    pub fn is_empty(&self) -> bool {
        self.servers.is_empty() && self.search.is_empty() && self.options.is_empty()
    }
}

/// A container as the engine records it.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct ContainerRow {
    /// 64 hex digits.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// The image reference it was made from.
    pub image: String,
    /// The command, as run.
    pub command: Vec<String>,
    /// Layer diff IDs under its writable layer, bottom first.
    pub layers: Vec<String>,
    /// `shibafu` or the path of an external OCI runtime.
    pub runtime: String,
    /// When it was created.
    pub created_at: String,
    /// `created`, `running` or `exited`.
    pub state: String,
    /// The process that waits for the container (the attached CLI or the monitor).
    pub monitor_pid: Option<i32>,
    /// Start time of that process, to tell a reused PID apart.
    pub monitor_start: Option<u64>,
    /// Exit code once exited.
    pub exit_code: Option<i32>,
    /// When it exited.
    pub finished_at: Option<String>,
    /// Its networks: `bridge`, `none`, `host`, or network names joined by commas.
    pub network: String,
    /// Its host name (by default the first 12 digits of its ID).
    pub hostname: String,
    /// More names it answers to on its networks (`--network-alias`).
    pub aliases: Vec<String>,
    /// Its labels (`--label`).
    pub labels: BTreeMap<String, String>,
    /// Its volumes, binds and tmpfs mounts (`-v`, `--mount`).
    pub mounts: Vec<MountRecord>,
    /// Its resolver settings (`--dns`...).
    pub dns: DnsSettings,
}

const SELECT: &str = "SELECT id, name, image, command, layers, runtime, created_at, state, monitor_pid, monitor_start, exit_code, finished_at, network, hostname, aliases, labels, mounts, dns FROM containers";

fn row(r: &rusqlite::Row) -> rusqlite::Result<ContainerRow> {
    let command: String = r.get(3)?;
    let layers: String = r.get(4)?;
    Ok(ContainerRow {
        id: r.get(0)?,
        name: r.get(1)?,
        image: r.get(2)?,
        command: serde_json::from_str(&command).unwrap_or_default(),
        layers: serde_json::from_str(&layers).unwrap_or_default(),
        runtime: r.get(5)?,
        created_at: r.get(6)?,
        state: r.get(7)?,
        monitor_pid: r.get(8)?,
        monitor_start: r.get::<_, Option<i64>>(9)?.map(|v| v as u64),
        exit_code: r.get(10)?,
        finished_at: r.get(11)?,
        network: r.get(12)?,
        hostname: r.get(13)?,
        aliases: serde_json::from_str(&r.get::<_, String>(14)?).unwrap_or_default(),
        labels: serde_json::from_str(&r.get::<_, String>(15)?).unwrap_or_default(),
        mounts: serde_json::from_str(&r.get::<_, String>(16)?).unwrap_or_default(),
        dns: serde_json::from_str(&r.get::<_, String>(17)?).unwrap_or_default(),
    })
}

/// What a container name or ID prefix names.
#[derive(Debug)]
pub enum Lookup {
    /// One container.
    Found(ContainerRow),
    /// An ID prefix several containers share.
    Ambiguous,
    /// No container.
    Missing,
}

impl Db {
    /// The container a name, or else a hex ID prefix, names.
    pub fn lookup_container(&self, name_or_id: &str) -> Result<Lookup> {
        if let Some(c) = self.container_by_name(name_or_id)? {
            return Ok(Lookup::Found(c));
        }
        if name_or_id.is_empty() || !name_or_id.chars().all(|c| c.is_ascii_hexdigit()) {
            return Ok(Lookup::Missing);
        }
        let mut found = self.containers_by_id(name_or_id)?;
        Ok(match found.len() {
            1 => Lookup::Found(found.remove(0)),
            0 => Lookup::Missing,
            _ => Lookup::Ambiguous,
        })
    }

    /// Records a new container in state `created`; a taken name is refused.
    pub fn insert_container(&self, c: &ContainerRow) -> Result<()> {
        let result = self.conn.execute(
            "INSERT INTO containers (id, name, image, command, layers, runtime, created_at, state, network, hostname, aliases, labels, mounts, dns)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'created', ?8, ?9, ?10, ?11, ?12, ?13)",
            params![
                c.id,
                c.name,
                c.image,
                serde_json::to_string(&c.command).expect("strings serialize"),
                serde_json::to_string(&c.layers).expect("strings serialize"),
                c.runtime,
                c.created_at,
                c.network,
                c.hostname,
                serde_json::to_string(&c.aliases).expect("strings serialize"),
                serde_json::to_string(&c.labels).expect("strings serialize"),
                serde_json::to_string(&c.mounts).expect("mounts serialize"),
                serde_json::to_string(&c.dns).expect("strings serialize")
            ],
        );
        match result {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::ConstraintViolation => {
                let holder = self.container_by_name(&c.name)?.map(|h| h.id[..12].to_string()).unwrap_or_default();
                Err(StateError::NameInUse(c.name.clone(), holder))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Marks a container running, waited for by `monitor_pid`.
    pub fn set_running(&self, id: &str, monitor_pid: i32, monitor_start: u64) -> Result<()> {
        self.conn.execute(
            "UPDATE containers SET state = 'running', monitor_pid = ?2, monitor_start = ?3, exit_code = NULL, finished_at = NULL WHERE id = ?1",
            params![id, monitor_pid, monitor_start as i64],
        )?;
        Ok(())
    }

    /// Records a container's exit.
    pub fn set_exited(&self, id: &str, exit_code: i32) -> Result<()> {
        self.conn.execute(
            "UPDATE containers SET state = 'exited', exit_code = ?2, finished_at = ?3, monitor_pid = NULL, monitor_start = NULL WHERE id = ?1",
            params![id, exit_code, now()],
        )?;
        Ok(())
    }

    /// Forgets a container.
    pub fn delete_container(&self, id: &str) -> Result<()> {
        self.conn.execute("DELETE FROM containers WHERE id = ?1", [id])?;
        Ok(())
    }

    /// A container by exact name.
    pub fn container_by_name(&self, name: &str) -> Result<Option<ContainerRow>> {
        Ok(self.conn.query_row(&format!("{SELECT} WHERE name = ?1"), [name], row).optional()?)
    }

    /// Containers whose ID starts with `prefix`.
    pub fn containers_by_id(&self, prefix: &str) -> Result<Vec<ContainerRow>> {
        let mut stmt = self.conn.prepare(&format!("{SELECT} WHERE id LIKE ?1"))?;
        let rows = stmt.query_map([format!("{prefix}%")], row)?.collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// Every container, oldest first.
    pub fn containers(&self) -> Result<Vec<ContainerRow>> {
        let mut stmt = self.conn.prepare(&format!("{SELECT} ORDER BY created_at, rowid"))?;
        let rows = stmt.query_map([], row)?.collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(id: &str, name: &str) -> ContainerRow {
        ContainerRow {
            id: id.repeat(64 / id.len()),
            name: name.into(),
            image: "busybox:latest".into(),
            command: vec!["sleep".into(), "100".into()],
            layers: vec!["sha256:l1".into()],
            runtime: "shibafu".into(),
            created_at: now(),
            state: "created".into(),
            monitor_pid: None,
            monitor_start: None,
            exit_code: None,
            finished_at: None,
            network: "bridge".into(),
            hostname: String::new(),
            aliases: Vec::new(),
            ..Default::default()
        }
    }

    #[test]
    fn a_taken_name_is_refused_with_its_holder() {
        let db = Db::in_memory().unwrap();
        db.insert_container(&container("a", "web")).unwrap();
        let err = db.insert_container(&container("b", "web")).unwrap_err();
        assert!(err.to_string().contains("\"web\" is already in use by container aaaaaaaaaaaa"), "{err}");
        assert_eq!(db.containers().unwrap().len(), 1);
    }

    #[test]
    fn lifecycle_updates_are_recorded() {
        let db = Db::in_memory().unwrap();
        let c = container("c", "job");
        db.insert_container(&c).unwrap();
        db.set_running(&c.id, 42, 7).unwrap();
        let r = db.container_by_name("job").unwrap().unwrap();
        assert_eq!((r.state.as_str(), r.monitor_pid, r.monitor_start), ("running", Some(42), Some(7)));
        db.set_exited(&c.id, 137).unwrap();
        let r = db.containers_by_id("ccc").unwrap().remove(0);
        assert_eq!((r.state.as_str(), r.exit_code, r.monitor_pid), ("exited", Some(137), None));
        assert_eq!(db.layer_users("sha256:l1").unwrap(), (0, 1, 0));
        assert_eq!(db.layer_users("sha256:l2").unwrap(), (0, 0, 0));
        db.delete_container(&c.id).unwrap();
        assert!(db.containers().unwrap().is_empty());
    }
}
