//! The integrated runtime (phase 7, started in phase 1): run, list, exec, stop, rm, logs. It
//! ties images, storage, the state database and an OCI runtime together; every step that
//! changes the disk or the kernel has an undo that runs when a later step fails.

pub mod commit;
pub mod exec;
pub mod export;
pub mod gc;
pub mod health;
pub mod inspect;
pub mod list;
pub mod logfile;
pub mod logs;
pub mod monitor;
pub mod mounts;
pub mod names;
pub mod network;
pub mod networks;
pub mod oci;
pub mod restart;
pub mod routes;
pub mod run;
pub mod seccomp;
pub mod security;
pub mod userns;
pub mod spec;
pub mod start;
pub mod stop;
pub mod volumes;

use std::path::{Path, PathBuf};

use crate::image::ImageStore;
use crate::state::containers::ContainerRow;
use crate::state::Db;

/// Errors of the engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// No container by that name or ID.
    #[error("no such container: {0} (see `shibafu list -a`)")]
    NoSuchContainer(String),
    /// `inspect` found nothing by that name (Docker's message; its exit code is 1).
    #[error("No such {kind}: {name}")]
    NoSuchObject { kind: &'static str, name: String },
    /// An ID prefix fits several containers.
    #[error("container ID {0:?} is ambiguous; give more digits or the name")]
    Ambiguous(String),
    /// The operation needs a running container.
    #[error("container {0} is not running")]
    NotRunning(String),
    /// The operation needs a stopped container.
    #[error("container {0} is running: stop it first, or use rm -f")]
    StillRunning(String),
    /// Bad user input.
    #[error("{0}")]
    Invalid(String),
    /// From the runtime.
    #[error(transparent)]
    Runtime(#[from] crate::runtime::RuntimeError),
    /// From the image store.
    #[error(transparent)]
    Image(#[from] crate::image::ImageError),
    /// From storage.
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
    /// From networking.
    #[error(transparent)]
    Network(crate::network::NetworkError),
    /// From the state database.
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    /// Other I/O.
    #[error("{what}: {err}")]
    Io { what: String, err: std::io::Error },
}

impl EngineError {
    /// Wraps an I/O error.
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> EngineError {
        let what = what.into();
        move |err| EngineError::Io { what, err }
    }

    /// Docker's exit code for this failure.
    pub fn exit_code(&self) -> i32 {
        match self {
            EngineError::Runtime(e) => e.exit_code(),
            EngineError::NoSuchObject { .. } => 1,
            _ => 125,
        }
    }
}

/// Result of engine operations.
pub type Result<T> = std::result::Result<T, EngineError>;

/// One data root, opened.
pub struct Engine {
    /// The data root (`/var/lib/shibafu`).
    pub root: PathBuf,
    /// Runtime state of running containers (`/run/shibafu`).
    pub run_dir: PathBuf,
    /// The state database.
    pub db: Db,
}

/// The default data root.
pub const DEFAULT_ROOT: &str = "/var/lib/shibafu";

/// A container label naming env variables (comma-separated) whose values are secrets: the
/// process gets them, `inspect` never shows them.
pub const SECRET_ENV_LABEL: &str = "shibafu.secret-env";

/// `env` (KEY=VALUE) with the values of the variables that `labels` name as secret hidden.
pub fn hide_secret_env(env: Vec<String>, labels: &std::collections::BTreeMap<String, String>) -> Vec<String> {
    let Some(secret) = labels.get(SECRET_ENV_LABEL) else { return env };
    let names: Vec<&str> = secret.split(',').collect();
    env.into_iter()
        .map(|e| match e.split_once('=') {
            Some((k, _)) if names.contains(&k) => format!("{k}=<secret>"),
            _ => e,
        })
        .collect()
}

impl Engine {
    /// Opens `root`, creating its layout. Runtime state goes to /run/shibafu for the default
    /// root and to `<root>/run` for any other (or to `SHIBAFU_RUN`).
    pub fn open(root: &Path) -> Result<Engine> {
        if root.exists() && !root.is_dir() {
            return Err(EngineError::Invalid(format!("the data root {} is not a directory: give --root (or SHIBAFU_ROOT) a directory", root.display())));
        }
        for dir in ["", "containers", "layers", "blobs/sha256", "tmp", "volumes"] {
            let d = root.join(dir);
            std::fs::create_dir_all(&d).map_err(EngineError::io(format!("create {}", d.display())))?;
        }
        let run_dir = match std::env::var_os("SHIBAFU_RUN") {
            Some(dir) => PathBuf::from(dir),
            None if root == Path::new(DEFAULT_ROOT) => PathBuf::from("/run/shibafu"),
            None => root.join("run"),
        };
        std::fs::create_dir_all(&run_dir).map_err(EngineError::io(format!("create {}", run_dir.display())))?;
        let db = Db::open(root)?;
        Ok(Engine { root: root.to_path_buf(), run_dir, db })
    }

    /// The image store.
    pub fn images(&self) -> ImageStore<'_> {
        ImageStore::new(&self.root, &self.db)
    }

    /// A container's lower layers, bottom first, with the init layer on top when the image
    /// takes one (storage::initlayer: the empty files its hostname, hosts and resolv.conf are
    /// bound over, so overlay copies nothing up for them). Keep the returned guard (the
    /// store's lock, shared) until the overlay is mounted: `gc` removes init layers holding it
    /// exclusive, and only when no container is recorded, which the caller's is by now.
    fn with_init_layer(&self, mut lowers: Vec<PathBuf>) -> Result<(Vec<PathBuf>, nix::fcntl::Flock<std::fs::File>)> {
        let held = self.images().lock_layers(false)?;
        if let Some(init) = crate::storage::initlayer::for_layers(&self.root, &lowers)? {
            lowers.push(init);
        }
        Ok((lowers, held))
    }

    /// A container's directory (bundle, upper, work, rootfs, log).
    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.root.join("containers").join(id)
    }

    /// Finds a container by name, or by a unique prefix of its ID.
    pub fn find(&self, name_or_id: &str) -> Result<ContainerRow> {
        match self.db.lookup_container(name_or_id)? {
            crate::state::containers::Lookup::Found(c) => Ok(*c),
            crate::state::containers::Lookup::Ambiguous => Err(EngineError::Ambiguous(name_or_id.into())),
            crate::state::containers::Lookup::Missing => Err(EngineError::NoSuchContainer(name_or_id.into())),
        }
    }

    /// Whether the process that waits for the container (its monitor, or an attached `run`)
    /// is still there.
    pub fn monitor_alive(&self, c: &ContainerRow) -> bool {
        matches!((c.monitor_pid, c.monitor_start), (Some(p), Some(s)) if crate::runtime::state::process_alive(p, s))
    }

    /// Whether the container runs (not between restarts).
    pub fn is_running(&self, c: &ContainerRow) -> bool {
        c.state == "running" && self.monitor_alive(c)
    }

    /// Whether the container runs or its monitor is about to restart it: `stop` has something
    /// to end, and `logs -f` more to wait for.
    pub fn is_active(&self, c: &ContainerRow) -> bool {
        (c.state == "running" || c.state == "restarting") && self.monitor_alive(c)
    }

    /// `is_active` for the container's current row (false once it is gone).
    pub fn is_active_now(&self, id: &str) -> bool {
        self.db.containers_by_id(id).ok().and_then(|mut rows| rows.pop()).is_some_and(|c| self.is_active(&c))
    }

    /// Records the container as running, waited for by this process.
    pub fn set_waited_by_us(&self, id: &str) -> Result<()> {
        Ok(self.db.set_running(id, std::process::id() as i32, own_start_time())?)
    }

    /// Whether `c` is a run that never finished: still `created`, its owner (the `run` that
    /// made it) gone.
    pub fn is_abandoned(&self, c: &ContainerRow) -> bool {
        c.state == "created" && !self.monitor_alive(c)
    }
}

/// This process's start time, as /proc tells it (with its PID, it names the process).
pub fn own_start_time() -> u64 {
    crate::runtime::state::proc_stat(std::process::id() as i32).map_or(0, |(start, _)| start)
}

/// A terminal only when stdin and stdout are one and we are in its foreground: a `run ... &`
/// in a shell must not take over the terminal, and output piped or redirected stays plain
/// (no carriage returns), as without Docker's `-t`.
pub fn on_our_terminal() -> bool {
    use std::io::IsTerminal;
    let stdin = std::io::stdin();
    stdin.is_terminal() && std::io::stdout().is_terminal() && nix::unistd::tcgetpgrp(&stdin).is_ok_and(|fg| fg == nix::unistd::getpgrp())
}
