//! Errors of the OCI runtime.

use std::path::PathBuf;

/// What went wrong while creating, starting or managing a container.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// A container with this ID already exists in the state root.
    #[error("container {0:?} already exists (delete it first: `shibafu runtime delete {0}`)")]
    Exists(String),
    /// No container with this ID.
    #[error("container {0:?} does not exist")]
    NotFound(String),
    /// The ID does not follow the runtime's rules.
    #[error("invalid container id {0:?}: use 1-1024 of [A-Za-z0-9_+.-], not \".\" or \"..\"")]
    InvalidId(String),
    /// The bundle's config.json is unusable.
    #[error("bad config.json in {path}: {reason}")]
    BadSpec { path: PathBuf, reason: String },
    /// The container is not in a state that allows the operation.
    #[error("container {id} is {status}: {what}")]
    WrongState { id: String, status: String, what: String },
    /// The process to run does not exist in the container.
    #[error("exec: {0:?}: executable file not found in $PATH")]
    NotFoundInPath(String),
    /// The process exists but cannot be executed.
    #[error("exec: {0:?}: permission denied")]
    CannotExecute(String),
    /// cgroup limits or device rules were asked for, and the host's cgroup v2 cannot give them.
    #[error("cgroup {asked} cannot be applied: {why}; boot with systemd.unified_cgroup_hierarchy=1, or drop them from the container's settings")]
    NoCgroupV2 {
        /// The limit files (memory.max, ...) or "devices".
        asked: String,
        /// What the host lacks.
        why: String,
    },
    /// The container's init process failed while setting up; the text comes from inside.
    #[error("container init failed: {0}")]
    Init(String),
    /// A hook failed.
    #[error("{kind} hook {path} failed: {reason}")]
    Hook { kind: String, path: String, reason: String },
    /// A system call failed.
    #[error("{what}: {err}")]
    Sys { what: String, err: nix::Error },
    /// An I/O operation failed.
    #[error("{what}: {err}")]
    Io { what: String, err: std::io::Error },
}

impl RuntimeError {
    /// Wraps an errno with a description of what was being done.
    pub fn sys(what: impl Into<String>) -> impl FnOnce(nix::Error) -> RuntimeError {
        let what = what.into();
        move |err| RuntimeError::Sys { what, err }
    }

    /// Wraps an I/O error with a description of what was being done.
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> RuntimeError {
        let what = what.into();
        move |err| RuntimeError::Io { what, err }
    }

    /// The message to pass on to whoever wraps it in `Init` again (without a second prefix).
    pub fn message(&self) -> String {
        match self {
            RuntimeError::Init(text) => text.clone(),
            other => other.to_string(),
        }
    }

    /// The exit code Docker would use for this failure: 127 not found, 126 cannot execute, else 125.
    pub fn exit_code(&self) -> i32 {
        match self {
            RuntimeError::NotFoundInPath(_) => 127,
            RuntimeError::CannotExecute(_) => 126,
            RuntimeError::Init(text) if text.contains("executable file not found") => 127,
            RuntimeError::Init(text) if text.contains("permission denied") => 126,
            _ => 125,
        }
    }
}

/// Result of runtime operations.
pub type Result<T> = std::result::Result<T, RuntimeError>;
