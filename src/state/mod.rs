//! SQLite state (WAL, migrations): images, layers (and their names) and containers. Every multi-step change is one
//! transaction, so concurrent CLI calls on one data root are safe.

pub mod containers;
pub mod images;
pub mod network;
pub mod registry;
pub mod paas;
pub mod volumes;

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;

/// Errors of the state database.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The database could not be opened or queried.
    #[error("state database: {0}")]
    Sql(#[from] rusqlite::Error),
    /// A name is already taken.
    #[error("the name {0:?} is already in use by container {1}; remove it (`shibafu rm {0}`) or choose another")]
    NameInUse(String, String),
    /// A layer name is already taken by another layer.
    #[error("the layer name {0:?} already names layer {1}; remove it first (`shibafu layer rm {0}`) or choose another")]
    LayerNameInUse(String, String),
    /// A network has no free address left.
    #[error("network {0:?} has no free address left; remove a container on it or use a larger subnet")]
    NetworkFull(String),
    /// A host port is published already.
    #[error("host port {0} is already published by container {1}; choose another (`shibafu port {1}` shows its ports)")]
    PortTaken(String, String),
    /// Every port of the dynamic range is taken.
    #[error("no free host port left in {0}-{1}; remove containers that publish ports")]
    NoFreePort(u16, u16),
    /// A network name or subnet is taken.
    #[error("{0}")]
    NetworkExists(String),
    /// A volume is mounted by containers.
    #[error("volume {0} is in use by container {1}; remove the container first (`shibafu rm {1}`)")]
    VolumeInUse(String, String),
    /// No volume by that name.
    #[error("no such volume: {0} (see `shibafu volume ls`)")]
    NoSuchVolume(String),
}

/// Result of state operations.
pub type Result<T> = std::result::Result<T, StateError>;

/// The schema, one migration per entry; `PRAGMA user_version` counts how many ran.
const MIGRATIONS: &[&str] = &[
    "CREATE TABLE layers (
        diff_id     TEXT PRIMARY KEY,
        blob_digest TEXT NOT NULL,
        media_type  TEXT NOT NULL,
        size        INTEGER NOT NULL,
        created_at  TEXT NOT NULL
    );
    CREATE TABLE images (
        name            TEXT NOT NULL,
        tag             TEXT NOT NULL,
        manifest_digest TEXT NOT NULL,
        config_digest   TEXT NOT NULL,
        layers          TEXT NOT NULL,
        size            INTEGER NOT NULL,
        created_at      TEXT NOT NULL,
        PRIMARY KEY (name, tag)
    );
    CREATE TABLE containers (
        id            TEXT PRIMARY KEY,
        name          TEXT NOT NULL UNIQUE,
        image         TEXT NOT NULL,
        command       TEXT NOT NULL,
        layers        TEXT NOT NULL,
        runtime       TEXT NOT NULL,
        created_at    TEXT NOT NULL,
        state         TEXT NOT NULL,
        monitor_pid   INTEGER,
        monitor_start INTEGER,
        exit_code     INTEGER,
        finished_at   TEXT
    );",
    // Phase 3: layers prepared by hand get names.
    "CREATE TABLE layer_names (
        name       TEXT PRIMARY KEY,
        diff_id    TEXT NOT NULL,
        created_at TEXT NOT NULL
    );",
    // Phase 2 and 4: networks, address leases, published ports.
    "CREATE TABLE networks (
        name       TEXT PRIMARY KEY,
        bridge     TEXT NOT NULL UNIQUE,
        subnet     TEXT NOT NULL UNIQUE,
        gateway    TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    INSERT INTO networks VALUES ('bridge', 'ctr0', '172.20.0.0/24', '172.20.0.1', '');
    CREATE TABLE leases (
        network      TEXT NOT NULL REFERENCES networks(name),
        address      TEXT NOT NULL,
        container_id TEXT NOT NULL,
        interface    TEXT NOT NULL,
        host_veth    TEXT NOT NULL UNIQUE,
        PRIMARY KEY (network, address),
        UNIQUE (network, container_id)
    );
    CREATE TABLE ports (
        container_id   TEXT NOT NULL,
        host_ip        TEXT NOT NULL,
        host_port      INTEGER NOT NULL,
        container_ip   TEXT NOT NULL,
        container_port INTEGER NOT NULL,
        protocol       TEXT NOT NULL,
        PRIMARY KEY (protocol, host_port, host_ip)
    );
    CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    ALTER TABLE containers ADD COLUMN network TEXT NOT NULL DEFAULT 'none';",
    // Phase 5: the registry's repositories over the shared blob store.
    "CREATE TABLE reg_blobs (
        repo   TEXT NOT NULL,
        digest TEXT NOT NULL,
        size   INTEGER NOT NULL,
        PRIMARY KEY (repo, digest)
    );
    CREATE TABLE reg_manifests (
        repo          TEXT NOT NULL,
        digest        TEXT NOT NULL,
        media_type    TEXT NOT NULL,
        size          INTEGER NOT NULL,
        subject       TEXT,
        artifact_type TEXT,
        annotations   TEXT,
        refs          TEXT NOT NULL,
        PRIMARY KEY (repo, digest)
    );
    CREATE INDEX reg_manifests_subject ON reg_manifests (repo, subject);
    CREATE TABLE reg_tags (
        repo   TEXT NOT NULL,
        tag    TEXT NOT NULL,
        digest TEXT NOT NULL,
        PRIMARY KEY (repo, tag)
    );",
    // Phase 6: internal networks (no way out, no NAT).
    "ALTER TABLE networks ADD COLUMN internal INTEGER NOT NULL DEFAULT 0;",
    // Phase 6: the names a container answers to besides its own (`--hostname`, `--network-alias`).
    "ALTER TABLE containers ADD COLUMN hostname TEXT NOT NULL DEFAULT '';
    ALTER TABLE containers ADD COLUMN aliases TEXT NOT NULL DEFAULT '[]';",
    // Phase 7: restart policies (the count, the current back-off, whether the user stopped
    // it), what `start` needs to run it again (its -p requests, --rm), health checks (the
    // config and the last results) and the log's rotation.
    "ALTER TABLE containers ADD COLUMN started_at TEXT;
    ALTER TABLE containers ADD COLUMN restart_policy TEXT NOT NULL DEFAULT 'no';
    ALTER TABLE containers ADD COLUMN restart_count INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE containers ADD COLUMN restart_backoff_ms INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE containers ADD COLUMN stopped_by_user INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE containers ADD COLUMN publish TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE containers ADD COLUMN auto_remove INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE containers ADD COLUMN healthcheck TEXT;
    ALTER TABLE containers ADD COLUMN health TEXT;
    ALTER TABLE containers ADD COLUMN log_opts TEXT NOT NULL DEFAULT '{}';",
    // Phase 7: named volumes and who mounts them; a container's labels, mounts and resolver
    // settings (`--label`, `-v`/`--mount`, `--dns`).
    "CREATE TABLE volumes (
        name       TEXT PRIMARY KEY,
        anonymous  INTEGER NOT NULL DEFAULT 0,
        labels     TEXT NOT NULL DEFAULT '{}',
        created_at TEXT NOT NULL
    );
    CREATE TABLE volume_users (
        volume       TEXT NOT NULL REFERENCES volumes(name),
        container_id TEXT NOT NULL REFERENCES containers(id) ON DELETE CASCADE,
        PRIMARY KEY (volume, container_id)
    );
    ALTER TABLE containers ADD COLUMN labels TEXT NOT NULL DEFAULT '{}';
    ALTER TABLE containers ADD COLUMN mounts TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE containers ADD COLUMN dns TEXT NOT NULL DEFAULT '{}';",
    // Phase 8: the PaaS's apps (their env, and their secrets sealed) and their deployments
    // (each a release: an image, a command, and a snapshot of the config), and routes that send a host label to a container rather than to the container
    // of that name (the proxy reads them; a route goes with its container).
    "CREATE TABLE apps (
        name            TEXT PRIMARY KEY,
        created_at      TEXT NOT NULL,
        live_deployment INTEGER,
        env             TEXT NOT NULL DEFAULT '{}',
        config_version  INTEGER NOT NULL DEFAULT 0,
        health          TEXT,
        health_restarts INTEGER NOT NULL DEFAULT 0,
        last_failure    TEXT
    );
    CREATE TABLE app_secrets (
        app        TEXT NOT NULL REFERENCES apps(name) ON DELETE CASCADE,
        name       TEXT NOT NULL,
        sealed     TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (app, name)
    );
    CREATE TABLE deployments (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        app          TEXT NOT NULL REFERENCES apps(name) ON DELETE CASCADE,
        runtime      TEXT NOT NULL,
        status       TEXT NOT NULL,
        reason       TEXT,
        image        TEXT,
        image_digest TEXT,
        command      TEXT,
        env          TEXT NOT NULL DEFAULT '{}',
        secrets      TEXT NOT NULL DEFAULT '{}',
        config_version INTEGER NOT NULL DEFAULT 0,
        source       TEXT NOT NULL DEFAULT 'build',
        port         INTEGER NOT NULL,
        health_path  TEXT NOT NULL DEFAULT '/',
        container_id TEXT,
        created_at   TEXT NOT NULL,
        finished_at  TEXT
    );
    CREATE TABLE routes (
        name         TEXT PRIMARY KEY,
        container_id TEXT NOT NULL REFERENCES containers(id) ON DELETE CASCADE,
        port         INTEGER NOT NULL
    );",
    // The host id ranges of `--userns=auto` containers: one each, never shared.
    "CREATE TABLE userns_ranges (
        start        INTEGER PRIMARY KEY,
        container_id TEXT NOT NULL UNIQUE REFERENCES containers(id) ON DELETE CASCADE
    );",
];

/// An open state database.
pub struct Db {
    /// The connection; modules add typed queries on top.
    pub conn: Connection,
}

impl Db {
    /// Opens (creating and migrating) `state.db` under `root`.
    pub fn open(root: &Path) -> Result<Db> {
        let conn = Connection::open(root.join("state.db"))?;
        conn.busy_timeout(Duration::from_secs(30))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        keep_wal(&conn)?;
        let mut db = Db { conn };
        db.migrate()?;
        Ok(db)
    }

    /// Opens an in-memory database (tests).
    pub fn in_memory() -> Result<Db> {
        let mut db = Db { conn: Connection::open_in_memory()? };
        db.migrate()?;
        Ok(db)
    }

    /// A write transaction that holds the lock from its start (two `run`s never both read
    /// the free addresses or ports before either writes).
    pub(crate) fn immediate(&self) -> Result<rusqlite::Transaction<'_>> {
        Ok(rusqlite::Transaction::new_unchecked(&self.conn, rusqlite::TransactionBehavior::Immediate)?)
    }

    /// A number that changes whenever another connection commits (`PRAGMA data_version`).
    pub fn data_version(&self) -> Result<i64> {
        Ok(self.conn.prepare_cached("PRAGMA data_version")?.query_row([], |r| r.get(0))?)
    }

    /// Every row of a query, mapped by `f`.
    pub(crate) fn query<T>(&self, sql: &str, args: impl rusqlite::Params, f: impl FnMut(&rusqlite::Row) -> rusqlite::Result<T>) -> Result<Vec<T>> {
        let mut stmt = self.conn.prepare(sql)?;
        let rows = stmt.query_map(args, f)?.collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn migrate(&mut self) -> Result<()> {
        // The common case reads only: every command opens the database.
        let current: usize = self.conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if current == MIGRATIONS.len() {
            return Ok(());
        }
        let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let version: usize = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        for sql in MIGRATIONS.iter().skip(version) {
            tx.execute_batch(sql)?;
        }
        tx.pragma_update(None, "user_version", MIGRATIONS.len())?;
        tx.commit()?;
        Ok(())
    }
}

/// Every CLI call opens the state and closes it. By default the last connection to close
/// checkpoints the WAL into the database and deletes it, and the next writer makes it anew:
/// four fsyncs and two unlinks per command (10-25 ms of a `run --rm` on a busy disk). The WAL
/// stays instead, and is checkpointed by the commit that grows it past `WAL_PAGES`.
///
/// The first connection of a process that finds no other one open (a command, with no daemon
/// holding the state) reads the whole WAL to rebuild its index: 2.3 ms of `ps` at SQLite's
/// default of 1,000 pages (4 MB, some 60 `run --rm`s), 0 ms just after a checkpoint.
/// `WAL_PAGES` keeps that read under 1 MB, for a checkpoint every 15 or so runs (0.4 ms here).
fn keep_wal(conn: &Connection) -> Result<()> {
    const WAL_PAGES: i32 = 256;
    conn.pragma_update(None, "wal_autocheckpoint", WAL_PAGES)?;
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)?;
    let mut persist: std::ffi::c_int = 1;
    // SAFETY: the handle is this open connection's; the argument is the int the opcode reads.
    let rc = unsafe {
        rusqlite::ffi::sqlite3_file_control(conn.handle(), c"main".as_ptr(), rusqlite::ffi::SQLITE_FCNTL_PERSIST_WAL, (&raw mut persist).cast())
    };
    if rc != rusqlite::ffi::SQLITE_OK {
        return Err(rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rc), Some("keep the WAL file (SQLITE_FCNTL_PERSIST_WAL)".into())).into());
    }
    Ok(())
}

/// Now, as RFC 3339 with seconds.
pub fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}
