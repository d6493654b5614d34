//! SQLite state (WAL, migrations): images, layers (and their names) and containers. Every multi-step change is one
//! transaction, so concurrent CLI calls on one data root are safe.

pub mod containers;
pub mod images;

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

/// Now, as RFC 3339 with seconds.
pub fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}
