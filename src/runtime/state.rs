//! The runtime's record of one container, `<root>/<id>/state.json`, and its live status.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};

use super::error::{Result, RuntimeError};

/// A container's status, as the OCI spec names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Being created.
    Creating,
    /// Created, waiting for `start`.
    Created,
    /// The user's process runs.
    Running,
    /// The process has exited.
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.pad(match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Stopped => "stopped",
        })
    }
}

/// What the runtime keeps about a container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// Container ID.
    pub id: String,
    /// PID of the container's init, in our PID namespace.
    pub pid: i32,
    /// Start time of that PID (from /proc/PID/stat), so a reused PID is not mistaken for it.
    pub pid_start: u64,
    /// Absolute bundle path.
    pub bundle: PathBuf,
    /// Absolute rootfs path.
    pub rootfs: PathBuf,
    /// RFC 3339 creation time.
    pub created: String,
    /// The container's cgroup directory, when it has one.
    pub cgroup: Option<PathBuf>,
    /// The config the container was created from (hooks and process defaults come from here),
    /// without its seccomp profile.
    pub config: Spec,
    /// Whether the container runs under a seccomp filter, kept compiled beside this record
    /// (`seccomp::FILTER_FILE`) for `exec`.
    #[serde(default)]
    pub seccomp: bool,
}

/// The OCI state document, as `state` prints it (runc's extra fields included).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OciState {
    /// Spec version.
    #[serde(rename = "ociVersion")]
    pub oci_version: String,
    /// Container ID.
    pub id: String,
    /// Live status.
    pub status: Status,
    /// Init PID (0 once stopped).
    pub pid: i32,
    /// Bundle path.
    pub bundle: PathBuf,
    /// Rootfs path.
    pub rootfs: PathBuf,
    /// Creation time.
    pub created: String,
    /// Owner of the container ("" for root).
    pub owner: String,
    /// Annotations from the config.
    pub annotations: HashMap<String, String>,
}

impl Record {
    /// The directory that holds this record.
    pub fn dir(root: &Path, id: &str) -> PathBuf {
        root.join(id)
    }

    /// Reads the record of `id`.
    pub fn load(root: &Path, id: &str) -> Result<Record> {
        let path = Self::dir(root, id).join("state.json");
        let text = std::fs::read_to_string(&path).map_err(|_| RuntimeError::NotFound(id.into()))?;
        serde_json::from_str(&text).map_err(|e| RuntimeError::Init(format!("corrupt {}: {e}", path.display())))
    }

    /// Writes the record atomically.
    pub fn save(&self, root: &Path) -> Result<()> {
        let dir = Self::dir(root, &self.id);
        let tmp = dir.join("state.json.tmp");
        let text = serde_json::to_string(self).expect("records serialize");
        std::fs::write(&tmp, text).map_err(RuntimeError::io(format!("write {}", tmp.display())))?;
        std::fs::rename(&tmp, dir.join("state.json")).map_err(RuntimeError::io("save state"))
    }

    /// The live status: stopped when the init is gone (or a zombie), created while the exec
    /// fifo still exists, else running.
    pub fn status(&self, root: &Path) -> Status {
        if !process_alive(self.pid, self.pid_start) {
            Status::Stopped
        } else if Self::dir(root, &self.id).join("exec.fifo").exists() {
            Status::Created
        } else {
            Status::Running
        }
    }

    /// The OCI state document for this record.
    pub fn oci_state(&self, status: Status) -> OciState {
        OciState {
            oci_version: self.config.version().clone(),
            id: self.id.clone(),
            status,
            pid: if status == Status::Stopped { 0 } else { self.pid },
            bundle: self.bundle.clone(),
            rootfs: self.rootfs.clone(),
            created: self.created.clone(),
            owner: String::new(),
            annotations: self.config.annotations().clone().unwrap_or_default(),
        }
    }
}

impl OciState {
    /// As JSON, the form hooks and `state` use.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("state serializes")
    }
}

/// The start time of a process and whether it is a zombie, from /proc/PID/stat.
pub fn proc_stat(pid: i32) -> Option<(u64, char)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: split after the last ')'.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let state = fields.first()?.chars().next()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((start, state))
}

/// Whether `pid` is still the process that started at `start` and has not exited.
pub fn process_alive(pid: i32, start: u64) -> bool {
    pid > 0 && matches!(proc_stat(pid), Some((s, state)) if s == start && state != 'Z' && state != 'X')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_own_process_is_alive_and_a_wrong_start_time_is_not() {
        let me = std::process::id() as i32;
        let (start, _) = proc_stat(me).unwrap();
        assert!(process_alive(me, start));
        assert!(!process_alive(me, start + 1));
        assert!(!process_alive(0, 0));
    }
}
