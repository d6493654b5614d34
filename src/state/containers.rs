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
    /// `--add-host` entries as given (NAME:IP), for `start` to write /etc/hosts again.
    #[serde(default)]
    pub hosts: Vec<String>,
}

impl DnsSettings {
    /// Whether nothing was asked.
    pub fn is_empty(&self) -> bool {
        self.servers.is_empty() && self.search.is_empty() && self.options.is_empty()
    }
}

/// A container as the engine records it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
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
    /// When it last started (each restart starts it again).
    pub started_at: Option<String>,
    /// `no`, `on-failure[:N]`, `always` or `unless-stopped`.
    pub restart_policy: String,
    /// How many times its monitor restarted it since it was last started by hand.
    pub restart_count: u32,
    /// The back-off before the next restart, while it is restarting.
    pub restart_backoff_ms: u64,
    /// `stop` (or `rm -f`) ended it: its monitor must not restart it.
    pub stopped_by_user: bool,
    /// Its `-p` requests as given, for `start` to publish them again.
    pub publish: Vec<String>,
    /// Removed once it exits (`--rm`).
    pub auto_remove: bool,
    /// Its health check, if it has one.
    pub healthcheck: Option<Healthcheck>,
    /// Its health, while it has a check.
    pub health: Option<HealthRecord>,
    /// How its log is rotated.
    pub log_opts: LogOptions,
    /// Its labels (`--label`).
    pub labels: BTreeMap<String, String>,
    /// Its volumes, binds and tmpfs mounts (`-v`, `--mount`).
    pub mounts: Vec<MountRecord>,
    /// Its resolver settings (`--dns`...).
    pub dns: DnsSettings,
}

/// A health check, in Docker's shape (durations in nanoseconds; in an image's config, 0 means
/// the default).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Healthcheck {
    /// `["CMD", prog, args...]` or `["CMD-SHELL", command]`.
    pub test: Vec<String>,
    /// Between two checks.
    pub interval: u64,
    /// How long one check may take.
    pub timeout: u64,
    /// Failures in this time after a start do not count.
    pub start_period: u64,
    /// Failures in a row that make it unhealthy.
    pub retries: u32,
}

/// A container's health, in Docker's shape (`State.Health`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthRecord {
    /// `starting`, `healthy` or `unhealthy`.
    pub status: String,
    /// Failed checks in a row.
    pub failing_streak: u32,
    /// The last checks, oldest first.
    pub log: Vec<HealthProbe>,
}

/// One health check's result.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthProbe {
    /// When it began (RFC 3339).
    pub start: String,
    /// When it ended.
    pub end: String,
    /// Its exit code (-1: it timed out or could not run).
    pub exit_code: i32,
    /// What it printed (truncated).
    pub output: String,
}

/// Log rotation (`--log-opt max-size=..,max-file=..`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct LogOptions {
    /// Bytes after which the log is rotated.
    pub max_size: u64,
    /// Files kept, the current one included.
    pub max_file: u32,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions { max_size: 10 << 20, max_file: 3 }
    }
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("state values serialize")
}

fn from_json<T: serde::de::DeserializeOwned + Default>(text: Option<String>) -> T {
    text.and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default()
}

const SELECT: &str = "SELECT id, name, image, command, layers, runtime, created_at, state, monitor_pid, monitor_start, exit_code, finished_at, network, hostname, aliases, \
    started_at, restart_policy, restart_count, restart_backoff_ms, stopped_by_user, publish, auto_remove, healthcheck, health, log_opts, labels, mounts, dns FROM containers";

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
        started_at: r.get(15)?,
        restart_policy: r.get(16)?,
        restart_count: r.get(17)?,
        restart_backoff_ms: r.get::<_, i64>(18)? as u64,
        stopped_by_user: r.get(19)?,
        publish: from_json(r.get(20)?),
        auto_remove: r.get(21)?,
        healthcheck: r.get::<_, Option<String>>(22)?.and_then(|t| serde_json::from_str(&t).ok()),
        health: r.get::<_, Option<String>>(23)?.and_then(|t| serde_json::from_str(&t).ok()),
        log_opts: from_json(r.get(24)?),
        labels: serde_json::from_str(&r.get::<_, String>(25)?).unwrap_or_default(),
        mounts: serde_json::from_str(&r.get::<_, String>(26)?).unwrap_or_default(),
        dns: serde_json::from_str(&r.get::<_, String>(27)?).unwrap_or_default(),
    })
}

/// What a container name or ID prefix names.
#[derive(Debug)]
pub enum Lookup {
    /// One container.
    Found(Box<ContainerRow>),
    /// An ID prefix several containers share.
    Ambiguous,
    /// No container.
    Missing,
}

impl Db {
    /// The container a name, or else a hex ID prefix, names.
    pub fn lookup_container(&self, name_or_id: &str) -> Result<Lookup> {
        if let Some(c) = self.container_by_name(name_or_id)? {
            return Ok(Lookup::Found(Box::new(c)));
        }
        if name_or_id.is_empty() || !name_or_id.chars().all(|c| c.is_ascii_hexdigit()) {
            return Ok(Lookup::Missing);
        }
        let mut found = self.containers_by_id(name_or_id)?;
        Ok(match found.len() {
            1 => Lookup::Found(Box::new(found.remove(0))),
            0 => Lookup::Missing,
            _ => Lookup::Ambiguous,
        })
    }

    /// Records a new container in state `created` (with its owner, when it has one: the run
    /// making it); a taken name is refused.
    pub fn insert_container(&self, c: &ContainerRow) -> Result<()> {
        let result = self.conn.execute(
            "INSERT INTO containers (id, name, image, command, layers, runtime, created_at, state, network, hostname, aliases, restart_policy, publish, auto_remove, healthcheck, log_opts, \
             monitor_pid, monitor_start, labels, mounts, dns) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'created', ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20)",
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
                if c.restart_policy.is_empty() { "no" } else { &c.restart_policy },
                json(&c.publish),
                c.auto_remove,
                c.healthcheck.as_ref().map(json),
                json(&c.log_opts),
                c.monitor_pid,
                c.monitor_start.map(|s| s as i64),
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

    /// Marks a container running, waited for by `monitor_pid`; a container with a health check
    /// is `starting` again (its last results stay).
    pub fn set_running(&self, id: &str, monitor_pid: i32, monitor_start: u64) -> Result<()> {
        let tx = self.immediate()?;
        tx.execute(
            "UPDATE containers SET state = 'running', monitor_pid = ?2, monitor_start = ?3, exit_code = NULL, finished_at = NULL, started_at = ?4, restart_backoff_ms = 0 WHERE id = ?1",
            params![id, monitor_pid, monitor_start as i64, now()],
        )?;
        let health: Option<Option<String>> = tx.query_row("SELECT health FROM containers WHERE id = ?1 AND healthcheck IS NOT NULL", [id], |r| r.get(0)).optional()?;
        if let Some(text) = health {
            let mut record: HealthRecord = text.and_then(|t| serde_json::from_str(&t).ok()).unwrap_or(HealthRecord { status: String::new(), failing_streak: 0, log: Vec::new() });
            record.status = "starting".into();
            record.failing_streak = 0;
            tx.execute("UPDATE containers SET health = ?2 WHERE id = ?1", params![id, json(&record)])?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Records a container's exit for good.
    pub fn set_exited(&self, id: &str, exit_code: i32) -> Result<()> {
        self.conn.execute(
            "UPDATE containers SET state = 'exited', exit_code = ?2, finished_at = ?3, monitor_pid = NULL, monitor_start = NULL, restart_backoff_ms = 0 WHERE id = ?1",
            params![id, exit_code, now()],
        )?;
        Ok(())
    }

    /// Records an exit after which its monitor restarts it: restart number `count` comes after
    /// `backoff_ms`.
    pub fn set_restarting(&self, id: &str, exit_code: i32, count: u32, backoff_ms: u64) -> Result<()> {
        self.conn.execute(
            "UPDATE containers SET state = 'restarting', exit_code = ?2, finished_at = ?3, restart_count = ?4, restart_backoff_ms = ?5 WHERE id = ?1",
            params![id, exit_code, now(), count, backoff_ms as i64],
        )?;
        Ok(())
    }

    /// Records that the user stopped the container (before it is signalled), or, with
    /// `false`, that it is started by hand again (its restart count starts over, as Docker's).
    pub fn set_stopped_by_user(&self, id: &str, stopped: bool) -> Result<()> {
        let sql = if stopped {
            "UPDATE containers SET stopped_by_user = 1 WHERE id = ?1"
        } else {
            "UPDATE containers SET stopped_by_user = 0, restart_count = 0 WHERE id = ?1"
        };
        self.conn.execute(sql, [id])?;
        Ok(())
    }

    /// Whether the user stopped the container; `None` once it is gone.
    pub fn stopped_by_user(&self, id: &str) -> Result<Option<bool>> {
        Ok(self.conn.query_row("SELECT stopped_by_user FROM containers WHERE id = ?1", [id], |r| r.get(0)).optional()?)
    }

    /// Records a container's health.
    pub fn set_health(&self, id: &str, health: &HealthRecord) -> Result<()> {
        self.conn.execute("UPDATE containers SET health = ?2 WHERE id = ?1", params![id, json(health)])?;
        Ok(())
    }

    /// Forgets a container.
    pub fn delete_container(&self, id: &str) -> Result<()> {
        self.conn.execute("DELETE FROM containers WHERE id = ?1", [id])?;
        Ok(())
    }

    /// Gives container `id` the lowest free range of `size` host ids among `count` ranges from
    /// `base`, in one statement (so two runs never get the same one); `None` when all are taken.
    pub fn allocate_userns_range(&self, id: &str, base: u32, size: u32, count: u32) -> Result<Option<u32>> {
        self.conn.execute(
            "INSERT INTO userns_ranges (start, container_id)
             SELECT s, ?1 FROM (SELECT ?2 AS s UNION SELECT start + ?3 FROM userns_ranges)
             WHERE s NOT IN (SELECT start FROM userns_ranges) AND s < ?2 + ?3 * ?4
             ORDER BY s LIMIT 1",
            params![id, base, size, count],
        )?;
        Ok(self.conn.query_row("SELECT start FROM userns_ranges WHERE container_id = ?1", [id], |r| r.get(0)).optional()?)
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
    fn restarts_user_stops_and_health_are_recorded() {
        let db = Db::in_memory().unwrap();
        let check = Healthcheck { test: vec!["CMD".into(), "true".into()], interval: 1, timeout: 1, start_period: 0, retries: 3 };
        let c = ContainerRow { restart_policy: "on-failure:2".into(), publish: vec!["0.0.0.0::80/tcp".into()], healthcheck: Some(check.clone()), log_opts: LogOptions { max_size: 1024, max_file: 2 }, ..container("d", "svc") };
        db.insert_container(&c).unwrap();
        db.set_running(&c.id, 42, 7).unwrap();
        let r = db.container_by_name("svc").unwrap().unwrap();
        assert_eq!((r.restart_policy.as_str(), r.healthcheck.as_ref(), r.log_opts.max_size, r.publish.len()), ("on-failure:2", Some(&check), 1024, 1));
        assert_eq!(r.health.as_ref().map(|h| h.status.as_str()), Some("starting"));
        assert!(r.started_at.is_some());
        let probe = HealthProbe { start: "s".into(), end: "e".into(), exit_code: 1, output: "no".into() };
        db.set_health(&c.id, &HealthRecord { status: "unhealthy".into(), failing_streak: 3, log: vec![probe] }).unwrap();
        db.set_restarting(&c.id, 1, 1, 100).unwrap();
        let r = db.container_by_name("svc").unwrap().unwrap();
        assert_eq!((r.state.as_str(), r.exit_code, r.restart_count, r.restart_backoff_ms, r.monitor_pid), ("restarting", Some(1), 1, 100, Some(42)));
        // Running again: starting over, the last results kept.
        db.set_running(&c.id, 42, 7).unwrap();
        let h = db.container_by_name("svc").unwrap().unwrap().health.unwrap();
        assert_eq!((h.status.as_str(), h.failing_streak, h.log.len()), ("starting", 0, 1));
        assert_eq!(db.stopped_by_user(&c.id).unwrap(), Some(false));
        db.set_stopped_by_user(&c.id, true).unwrap();
        assert_eq!(db.stopped_by_user(&c.id).unwrap(), Some(true));
        db.set_stopped_by_user(&c.id, false).unwrap();
        let r = db.container_by_name("svc").unwrap().unwrap();
        assert_eq!((r.stopped_by_user, r.restart_count), (false, 0));
        db.delete_container(&c.id).unwrap();
        assert_eq!(db.stopped_by_user(&c.id).unwrap(), None);
    }

    #[test]
    fn userns_ranges_are_the_lowest_free_ones_and_freed_with_their_container() {
        let db = Db::in_memory().unwrap();
        for (id, name) in [("a", "x"), ("b", "y"), ("c", "z"), ("d", "w")] {
            db.insert_container(&container(id, name)).unwrap();
        }
        let id = |c: &str| c.repeat(64);
        assert_eq!(db.allocate_userns_range(&id("a"), 100, 10, 3).unwrap(), Some(100));
        assert_eq!(db.allocate_userns_range(&id("b"), 100, 10, 3).unwrap(), Some(110));
        assert_eq!(db.allocate_userns_range(&id("c"), 100, 10, 3).unwrap(), Some(120));
        assert_eq!(db.allocate_userns_range(&id("d"), 100, 10, 3).unwrap(), None, "all three are taken");
        db.delete_container(&id("a")).unwrap();
        assert_eq!(db.allocate_userns_range(&id("d"), 100, 10, 3).unwrap(), Some(100), "a's range is free again");
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
