//! Typed queries on the PaaS's apps, deployments and host routes. A deployment goes
//! `building` → `starting` → `live` (→ `superseded` when a newer one goes live), or `failed`
//! with a reason at any step; going live switches the app's route in the same transaction.

use std::collections::BTreeMap;

use rusqlite::{params, OptionalExtension};

use super::{now, Db, Result};

/// A deployment as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentRow {
    /// Its number (shown as `dep-N`).
    pub id: i64,
    /// The app it deploys.
    pub app: String,
    /// The runtime asked for (`node:18`, `python:3.11`, `static` or an image reference).
    pub runtime: String,
    /// `building`, `starting`, `live`, `superseded` or `failed`.
    pub status: String,
    /// Why it failed.
    pub reason: Option<String>,
    /// The image built for it.
    pub image: Option<String>,
    /// That image's manifest digest.
    pub image_digest: Option<String>,
    /// The command the image runs.
    pub command: Option<Vec<String>>,
    /// Its environment (KEY → VALUE).
    pub env: BTreeMap<String, String>,
    /// Its secrets, sealed (KEY → sealed value).
    pub secrets: BTreeMap<String, String>,
    /// The app's config version it runs with (one more at each env or secret change).
    pub config_version: i64,
    /// What made it: `build`, `rollback to dep-N`, `env set KEY`, ...
    pub source: String,
    /// The port the app listens on inside (its `PORT`).
    pub port: u16,
    /// The path the health check asks for.
    pub health_path: String,
    /// The container that runs it.
    pub container_id: Option<String>,
    /// When it was asked for (RFC 3339).
    pub created_at: String,
    /// When it went live or failed.
    pub finished_at: Option<String>,
}

/// What a new deployment starts from.
#[derive(Debug, Clone)]
pub struct NewDeployment<'a> {
    /// The app (made on its first deployment).
    pub app: &'a str,
    /// The runtime asked for.
    pub runtime: &'a str,
    /// The port the app listens on.
    pub port: u16,
    /// The health check's path.
    pub health_path: &'a str,
    /// The command asked for (none: the build picks one).
    pub command: Option<&'a [String]>,
    /// An image built before, and its digest: a release with no build.
    pub image: Option<(&'a str, &'a str)>,
    /// How it changes the app's config.
    pub config: ConfigChange<'a>,
    /// What makes it (`build`, `rollback to dep-N`, `env set KEY`).
    pub source: &'a str,
}

/// A change to an app's env and secrets that a deployment makes (and then runs with).
#[derive(Debug, Clone)]
pub enum ConfigChange<'a> {
    /// Set (`Some`) or unset (`None`) these variables and secrets (sealed values).
    Merge { env: &'a BTreeMap<String, Option<String>>, secrets: &'a BTreeMap<String, Option<String>> },
    /// Put the config back as a release had it.
    Restore { env: &'a BTreeMap<String, String>, secrets: &'a BTreeMap<String, String> },
}

/// An app's config as it stands: its env, its sealed secrets, and their version.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppConfig {
    /// KEY → VALUE.
    pub env: BTreeMap<String, String>,
    /// KEY → sealed value.
    pub secrets: BTreeMap<String, String>,
    /// One more at each change.
    pub version: i64,
}

impl ConfigChange<'_> {
    /// `config` with the change made.
    fn apply(&self, config: &AppConfig) -> AppConfig {
        let merge = |now: &BTreeMap<String, String>, change: &BTreeMap<String, Option<String>>| {
            let mut out = now.clone();
            for (k, v) in change {
                match v {
                    Some(v) => out.insert(k.clone(), v.clone()),
                    None => out.remove(k),
                };
            }
            out
        };
        let (env, secrets) = match self {
            ConfigChange::Merge { env, secrets } => (merge(&config.env, env), merge(&config.secrets, secrets)),
            ConfigChange::Restore { env, secrets } => ((*env).clone(), (*secrets).clone()),
        };
        // A secret sealed again holds a new nonce, not a new value: only names and values
        // that differ count as a change (a sealed value that differs is a set, which counts).
        let changed = env != config.env || secrets != config.secrets;
        AppConfig { env, secrets, version: config.version + i64::from(changed) }
    }
}

/// An app as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppRow {
    /// Its name (a DNS label).
    pub name: String,
    /// When its first deployment was asked for.
    pub created_at: String,
    /// The deployment that serves it.
    pub live_deployment: Option<i64>,
}

/// A host route: `NAME.<domain>` goes to this container's port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRow {
    /// The host label.
    pub name: String,
    /// The container behind it.
    pub container_id: String,
    /// The port it listens on.
    pub port: u16,
}

const SELECT: &str = "SELECT id, app, runtime, status, reason, image, image_digest, command, env, port, health_path, \
                      container_id, created_at, finished_at, secrets, config_version, source FROM deployments";

fn row(r: &rusqlite::Row) -> rusqlite::Result<DeploymentRow> {
    Ok(DeploymentRow {
        id: r.get(0)?,
        app: r.get(1)?,
        runtime: r.get(2)?,
        status: r.get(3)?,
        reason: r.get(4)?,
        image: r.get(5)?,
        image_digest: r.get(6)?,
        command: r.get::<_, Option<String>>(7)?.and_then(|c| serde_json::from_str(&c).ok()),
        env: serde_json::from_str(&r.get::<_, String>(8)?).unwrap_or_default(),
        port: r.get(9)?,
        health_path: r.get(10)?,
        container_id: r.get(11)?,
        created_at: r.get(12)?,
        finished_at: r.get(13)?,
        secrets: serde_json::from_str(&r.get::<_, String>(14)?).unwrap_or_default(),
        config_version: r.get(15)?,
        source: r.get(16)?,
    })
}

/// An app's config, read on `conn` (a connection or a transaction).
fn config_in(conn: &rusqlite::Connection, app: &str) -> Result<AppConfig> {
    let Some((env, version)) = conn.query_row("SELECT env, config_version FROM apps WHERE name = ?1", [app], |r| Ok((r.get::<_, String>(0)?, r.get(1)?))).optional()? else {
        return Ok(AppConfig::default());
    };
    let mut stmt = conn.prepare("SELECT name, sealed FROM app_secrets WHERE app = ?1")?;
    let secrets = stmt.query_map([app], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<rusqlite::Result<BTreeMap<String, String>>>()?;
    Ok(AppConfig { env: serde_json::from_str(&env).unwrap_or_default(), secrets, version })
}

fn app_row(r: &rusqlite::Row) -> rusqlite::Result<AppRow> {
    Ok(AppRow { name: r.get(0)?, created_at: r.get(1)?, live_deployment: r.get(2)? })
}

impl Db {
    /// Records a deployment (and its app, the first time), making its config change to the
    /// app in the same transaction; it is `building`, or `starting` for a release of an image
    /// built before. Returns its number.
    pub fn insert_deployment(&self, new: &NewDeployment) -> Result<i64> {
        let tx = self.immediate()?;
        let at = now();
        tx.execute("INSERT OR IGNORE INTO apps (name, created_at) VALUES (?1, ?2)", params![new.app, at])?;
        let before = config_in(&tx, new.app)?;
        let config = new.config.apply(&before);
        if config.version != before.version {
            let env = serde_json::to_string(&config.env).expect("strings serialize");
            tx.execute("UPDATE apps SET env = ?2, config_version = ?3 WHERE name = ?1", params![new.app, env, config.version])?;
            tx.execute("DELETE FROM app_secrets WHERE app = ?1", [new.app])?;
            for (name, sealed) in &config.secrets {
                let kept = before.secrets.get(name) == Some(sealed);
                let when: Option<String> = if kept { tx.query_row("SELECT updated_at FROM app_secrets WHERE app = ?1 AND name = ?2", params![new.app, name], |r| r.get(0)).optional()? } else { None };
                tx.execute("INSERT INTO app_secrets (app, name, sealed, updated_at) VALUES (?1, ?2, ?3, ?4)", params![new.app, name, sealed, when.unwrap_or_else(|| at.clone())])?;
            }
        }
        let command = new.command.map(|c| serde_json::to_string(c).expect("strings serialize"));
        let (image, digest) = new.image.unzip();
        let status = if image.is_some() { "starting" } else { "building" };
        tx.execute(
            "INSERT INTO deployments (app, runtime, status, env, secrets, config_version, source, port, health_path, command, image, image_digest, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            params![
                new.app,
                new.runtime,
                status,
                serde_json::to_string(&config.env).expect("strings serialize"),
                serde_json::to_string(&config.secrets).expect("strings serialize"),
                config.version,
                new.source,
                new.port,
                new.health_path,
                command,
                image,
                digest,
                at
            ],
        )?;
        let id = tx.last_insert_rowid();
        tx.commit()?;
        Ok(id)
    }

    /// An app's config as it stands.
    pub fn app_config(&self, app: &str) -> Result<AppConfig> {
        config_in(&self.conn, app)
    }

    /// An app's secrets: names and when each was last set (never values).
    pub fn app_secrets(&self, app: &str) -> Result<Vec<(String, String)>> {
        self.query("SELECT name, updated_at FROM app_secrets WHERE app = ?1 ORDER BY name", [app], |r| Ok((r.get(0)?, r.get(1)?)))
    }

    /// Records what the last check of an app's live version found (`healthy`, or why not),
    /// a restart it led to, and the last failure (`at: what`).
    pub fn set_app_health(&self, app: &str, health: &str, restarted: bool, failure: Option<&str>) -> Result<()> {
        self.conn.execute(
            "UPDATE apps SET health = ?2, health_restarts = health_restarts + ?3, last_failure = COALESCE(?4, last_failure) WHERE name = ?1",
            params![app, health, i64::from(restarted), failure],
        )?;
        Ok(())
    }

    /// An app's health as the checks found it: the last result, the restarts they made, the
    /// last failure.
    pub fn app_health(&self, app: &str) -> Result<(Option<String>, i64, Option<String>)> {
        Ok(self.conn.query_row("SELECT health, health_restarts, last_failure FROM apps WHERE name = ?1", [app], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).optional()?.unwrap_or_default())
    }

    /// Forgets an app: its route, secrets, deployments and itself, in one transaction.
    pub fn delete_app(&self, app: &str) -> Result<()> {
        let tx = self.immediate()?;
        tx.execute("DELETE FROM routes WHERE name = ?1", [app])?;
        tx.execute("DELETE FROM apps WHERE name = ?1", [app])?;
        tx.commit()?;
        Ok(())
    }

    /// A deployment by number.
    pub fn deployment(&self, id: i64) -> Result<Option<DeploymentRow>> {
        Ok(self.conn.query_row(&format!("{SELECT} WHERE id = ?1"), [id], row).optional()?)
    }

    /// An app's deployments, newest first.
    pub fn deployments_of(&self, app: &str) -> Result<Vec<DeploymentRow>> {
        self.query(&format!("{SELECT} WHERE app = ?1 ORDER BY id DESC"), [app], row)
    }

    /// Sets a deployment's status; `failed` takes a reason, and an end state its time.
    pub fn set_deployment_status(&self, id: i64, status: &str, reason: Option<&str>) -> Result<()> {
        let finished = matches!(status, "failed" | "live").then(now);
        self.conn.execute(
            "UPDATE deployments SET status = ?2, reason = ?3, finished_at = COALESCE(?4, finished_at) WHERE id = ?1",
            params![id, status, reason, finished],
        )?;
        Ok(())
    }

    /// Records the image built for a deployment and the command it runs.
    pub fn set_deployment_image(&self, id: i64, image: &str, digest: &str, command: &[String]) -> Result<()> {
        let command = serde_json::to_string(command).expect("strings serialize");
        self.conn.execute("UPDATE deployments SET image = ?2, image_digest = ?3, command = ?4 WHERE id = ?1", params![id, image, digest, command])?;
        Ok(())
    }

    /// Records the container that runs a deployment, which is now `starting`.
    pub fn set_deployment_container(&self, id: i64, container_id: &str) -> Result<()> {
        self.conn.execute("UPDATE deployments SET container_id = ?2, status = 'starting' WHERE id = ?1", params![id, container_id])?;
        Ok(())
    }

    /// Every app, by name.
    pub fn apps(&self) -> Result<Vec<AppRow>> {
        self.query("SELECT name, created_at, live_deployment FROM apps ORDER BY name", [], app_row)
    }

    /// An app by name.
    pub fn app(&self, name: &str) -> Result<Option<AppRow>> {
        Ok(self.conn.query_row("SELECT name, created_at, live_deployment FROM apps WHERE name = ?1", [name], app_row).optional()?)
    }

    /// The deployments still building or starting (a service that starts again finds those
    /// the one before it left).
    pub fn unfinished_deployments(&self) -> Result<Vec<DeploymentRow>> {
        self.query(&format!("{SELECT} WHERE status IN ('building', 'starting') ORDER BY id"), [], row)
    }

    /// Every host route, by name.
    pub fn routes(&self) -> Result<Vec<RouteRow>> {
        self.query("SELECT name, container_id, port FROM routes ORDER BY name", [], |r| Ok(RouteRow { name: r.get(0)?, container_id: r.get(1)?, port: r.get(2)? }))
    }

    /// Sends `app`'s route to `container_id:port` (the proxies follow within their refresh).
    pub fn switch_route(&self, app: &str, container_id: &str, port: u16) -> Result<()> {
        self.conn.execute(
            "INSERT INTO routes (name, container_id, port) VALUES (?1, ?2, ?3) \
             ON CONFLICT(name) DO UPDATE SET container_id = excluded.container_id, port = excluded.port",
            params![app, container_id, port],
        )?;
        Ok(())
    }

    /// The container `app`'s route goes to.
    pub fn route_of(&self, app: &str) -> Result<Option<String>> {
        Ok(self.conn.query_row("SELECT container_id FROM routes WHERE name = ?1", [app], |r| r.get(0)).optional()?)
    }

    /// Makes deployment `id` of `app` the live one, in one transaction: the one live before is
    /// `superseded`. Returns that one.
    pub fn go_live(&self, app: &str, id: i64) -> Result<Option<DeploymentRow>> {
        let tx = self.immediate()?;
        let before = tx.query_row(&format!("{SELECT} WHERE app = ?1 AND status = 'live'"), [app], row).optional()?;
        tx.execute("UPDATE deployments SET status = 'superseded' WHERE app = ?1 AND status = 'live'", [app])?;
        tx.execute("UPDATE deployments SET status = 'live', reason = NULL, finished_at = ?2 WHERE id = ?1", params![id, now()])?;
        tx.execute("UPDATE apps SET live_deployment = ?2 WHERE name = ?1", params![app, id])?;
        tx.commit()?;
        Ok(before)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(db: &Db, id: &str) {
        db.conn
            .execute(
                "INSERT INTO containers (id, name, image, command, layers, runtime, created_at, state) VALUES (?1, ?1, 'i', '[]', '[]', 'shibafu', 'now', 'running')",
                [id],
            )
            .unwrap();
    }

    fn deploy(db: &Db, app: &str) -> i64 {
        let env = BTreeMap::from([("K".to_string(), Some("V".to_string()))]);
        change(db, app, ConfigChange::Merge { env: &env, secrets: &BTreeMap::new() })
    }

    fn change(db: &Db, app: &str, config: ConfigChange) -> i64 {
        db.insert_deployment(&NewDeployment { app, runtime: "node:18", port: 8080, health_path: "/", command: None, image: None, config, source: "build" }).unwrap()
    }

    #[test]
    fn going_live_switches_the_route_and_supersedes_the_one_before() {
        let db = Db::in_memory().unwrap();
        container(&db, "c1");
        container(&db, "c2");
        let first = deploy(&db, "web");
        assert_eq!(db.deployment(first).unwrap().unwrap().status, "building");
        db.switch_route("web", "c1", 8080).unwrap();
        assert_eq!(db.go_live("web", first).unwrap(), None);
        let second = deploy(&db, "web");
        db.set_deployment_container(second, "c2").unwrap();
        db.switch_route("web", "c2", 8080).unwrap();
        assert_eq!(db.route_of("web").unwrap().as_deref(), Some("c2"));
        let before = db.go_live("web", second).unwrap().unwrap();
        assert_eq!(before.id, first);
        assert_eq!(db.deployment(first).unwrap().unwrap().status, "superseded");
        let live = db.deployment(second).unwrap().unwrap();
        assert_eq!((live.status.as_str(), live.env.get("K").map(String::as_str)), ("live", Some("V")));
        assert_eq!(db.routes().unwrap(), vec![RouteRow { name: "web".into(), container_id: "c2".into(), port: 8080 }]);
        assert_eq!(db.app("web").unwrap().unwrap().live_deployment, Some(second));
        // The route goes with its container.
        db.conn.execute("DELETE FROM containers WHERE id = 'c2'", []).unwrap();
        assert!(db.routes().unwrap().is_empty());
    }

    #[test]
    fn unfinished_deployments_are_those_building_or_starting() {
        let db = Db::in_memory().unwrap();
        let live = deploy(&db, "web");
        db.go_live("web", live).unwrap();
        let building = deploy(&db, "web");
        assert_eq!(db.unfinished_deployments().unwrap().iter().map(|d| d.id).collect::<Vec<_>>(), vec![building]);
        db.set_deployment_status(building, "failed", Some("restarted")).unwrap();
        let row = db.deployment(building).unwrap().unwrap();
        assert_eq!((row.status.as_str(), row.reason.as_deref()), ("failed", Some("restarted")));
        assert!(row.finished_at.is_some());
        assert!(db.unfinished_deployments().unwrap().is_empty());
    }

    #[test]
    fn config_changes_make_versions_and_each_deployment_keeps_its_snapshot() {
        let db = Db::in_memory().unwrap();
        let first = deploy(&db, "web");
        let secrets = BTreeMap::from([("TOKEN".to_string(), Some("sealed-1".to_string()))]);
        let second = change(&db, "web", ConfigChange::Merge { env: &BTreeMap::new(), secrets: &secrets });
        let unset = BTreeMap::from([("K".to_string(), None)]);
        let third = change(&db, "web", ConfigChange::Merge { env: &unset, secrets: &BTreeMap::new() });
        let same = change(&db, "web", ConfigChange::Merge { env: &unset, secrets: &BTreeMap::new() });
        let rows: Vec<DeploymentRow> = [first, second, third, same].iter().map(|id| db.deployment(*id).unwrap().unwrap()).collect();
        assert_eq!(rows.iter().map(|d| d.config_version).collect::<Vec<_>>(), [1, 2, 3, 3]);
        assert_eq!(rows[1].env.get("K").map(String::as_str), Some("V"));
        assert_eq!(rows[1].secrets.get("TOKEN").map(String::as_str), Some("sealed-1"));
        assert!(rows[2].env.is_empty() && rows[2].secrets.contains_key("TOKEN"));
        assert_eq!(db.app_secrets("web").unwrap().iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["TOKEN"]);
        // A rollback puts the first release's config back.
        let back = change(&db, "web", ConfigChange::Restore { env: &rows[0].env, secrets: &rows[0].secrets });
        assert_eq!(db.deployment(back).unwrap().unwrap().config_version, 4);
        let now = db.app_config("web").unwrap();
        assert_eq!((now.env.get("K").map(String::as_str), now.secrets.len()), (Some("V"), 0));
        db.delete_app("web").unwrap();
        assert!(db.app("web").unwrap().is_none() && db.deployment(first).unwrap().is_none());
    }
}
