//! The OCI runtime spec: runc's default `config.json`, loading and checking a bundle's config.

use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;

use super::error::{Result, RuntimeError};

/// The same default `runc spec` writes: `sh` on a terminal, a read-only rootfs, the minimal
/// capability set, and pid/network/ipc/uts/mount namespaces.
const DEFAULT_SPEC: &str = r#"{
  "ociVersion": "1.0.2",
  "process": {
    "terminal": true,
    "user": {"uid": 0, "gid": 0},
    "args": ["sh"],
    "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
    "cwd": "/",
    "capabilities": {
      "bounding": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
      "effective": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
      "permitted": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
      "ambient": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    },
    "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
    "noNewPrivileges": true
  },
  "root": {"path": "rootfs", "readonly": true},
  "hostname": "shibafu",
  "mounts": [
    {"destination": "/proc", "type": "proc", "source": "proc"},
    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
     "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
    {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
     "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
    {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
     "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
    {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
     "options": ["nosuid", "noexec", "nodev"]},
    {"destination": "/sys", "type": "sysfs", "source": "sysfs",
     "options": ["nosuid", "noexec", "nodev", "ro"]},
    {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
     "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}
  ],
  "linux": {
    "resources": {"devices": [{"allow": false, "access": "rwm"}]},
    "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"},
                   {"type": "mount"}],
    "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                    "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                    "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
    "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
  }
}"#;

/// The default spec, as `runc spec` writes it (hostname `shibafu`).
pub fn default_spec() -> Spec {
    serde_json::from_str(DEFAULT_SPEC).expect("the built-in default spec parses")
}

/// Serializes a spec as stable, pretty JSON: object keys sorted and capability sets sorted, so
/// the same spec always gives the same bytes.
pub fn to_json(spec: &Spec) -> String {
    let mut value = serde_json::to_value(spec).expect("a spec always serializes");
    if let Some(caps) = value.pointer_mut("/process/capabilities").and_then(|c| c.as_object_mut()) {
        for set in caps.values_mut() {
            if let Some(list) = set.as_array_mut() {
                list.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
            }
        }
    }
    serde_json::to_string_pretty(&value).expect("a JSON value always serializes") + "\n"
}

/// Writes `config.json` into `bundle`, atomically, readable by its owner only: the process's
/// environment in it may hold secrets (as Docker keeps its config.v2.json).
pub fn save(spec: &Spec, bundle: &Path) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = bundle.join("config.json");
    let tmp = bundle.join(".config.json.tmp");
    let _ = std::fs::remove_file(&tmp);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(to_json(spec).as_bytes()))
        .map_err(RuntimeError::io(format!("write {}", tmp.display())))?;
    std::fs::rename(&tmp, &path).map_err(RuntimeError::io(format!("rename to {}", path.display())))
}

/// Loads `config.json` from a bundle and checks what the runtime relies on.
pub fn load(bundle: &Path) -> Result<Spec> {
    let path = bundle.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|e| RuntimeError::BadSpec {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    let spec: Spec = serde_json::from_str(&text).map_err(|e| RuntimeError::BadSpec {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    check(&spec).and_then(|()| check_host(&spec, apparmor_enabled(), selinux_enabled())).map_err(|reason| RuntimeError::BadSpec { path, reason })?;
    Ok(spec)
}

/// Whether this kernel runs AppArmor.
pub fn apparmor_enabled() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled").is_ok_and(|t| t.trim() == "Y")
}

fn selinux_enabled() -> bool {
    Path::new("/sys/fs/selinux/enforce").exists()
}

/// What the spec asks of the kernel's security modules and shibafu cannot give: refused with
/// the reason, never ignored. AppArmor profiles are applied where AppArmor runs.
pub fn check_host(spec: &Spec, apparmor: bool, selinux: bool) -> std::result::Result<(), String> {
    let process = spec.process().as_ref();
    if let Some(profile) = process.and_then(|p| p.apparmor_profile().as_deref()).filter(|p| !p.is_empty()) {
        if !apparmor {
            return Err(format!("process.apparmorProfile {profile:?}: this kernel does not run AppArmor (/sys/module/apparmor/parameters/enabled is not Y), so the profile cannot be applied: remove it, or run where AppArmor is on"));
        }
    }
    let labels = [("process.selinuxLabel", process.and_then(|p| p.selinux_label().clone())), ("linux.mountLabel", spec.linux().as_ref().and_then(|l| l.mount_label().clone()))];
    if let Some((field, label)) = labels.into_iter().find_map(|(f, l)| l.filter(|l| !l.is_empty()).map(|l| (f, l))) {
        let why = if selinux { "shibafu does not apply SELinux labels" } else { "this kernel does not run SELinux" };
        return Err(format!("{field} {label:?}: {why}, so the label cannot be applied: remove it"));
    }
    Ok(())
}

/// The checks `load` applies: any 1.x version, a process with arguments, a root.
pub fn check(spec: &Spec) -> std::result::Result<(), String> {
    if !spec.version().starts_with("1.") {
        return Err(format!("ociVersion {:?} is not 1.x", spec.version()));
    }
    let process = spec.process().as_ref().ok_or("no process")?;
    if process.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err("process.args is empty".into());
    }
    if !process.cwd().is_absolute() {
        return Err(format!("process.cwd {:?} is not absolute", process.cwd()));
    }
    spec.root().as_ref().ok_or("no root")?;
    Ok(())
}

/// The absolute path of the container's root filesystem.
pub fn rootfs_path(spec: &Spec, bundle: &Path) -> PathBuf {
    let root = spec.root().as_ref().expect("checked by load");
    let path = root.path();
    if path.is_absolute() { path.clone() } else { bundle.join(path) }
}

#[cfg(test)]
mod tests {
    #[test]
    fn security_settings_that_cannot_be_applied_are_refused_not_ignored() {
        let with = |patch: serde_json::Value| -> Spec {
            let mut v = serde_json::to_value(default_spec()).unwrap();
            json_merge(&mut v, patch);
            serde_json::from_value(v).unwrap()
        };
        assert!(check_host(&default_spec(), false, false).is_ok());
        let apparmor = with(serde_json::json!({"process": {"apparmorProfile": "docker-default"}}));
        assert!(check_host(&apparmor, false, false).unwrap_err().contains("does not run AppArmor"));
        assert!(check_host(&apparmor, true, false).is_ok(), "applied where AppArmor runs");
        let label = with(serde_json::json!({"linux": {"mountLabel": "system_u:object_r:container_file_t:s0"}}));
        assert!(check_host(&label, true, false).unwrap_err().contains("does not run SELinux"));
        assert!(check_host(&label, true, true).unwrap_err().contains("does not apply SELinux labels"));
    }

    fn json_merge(a: &mut serde_json::Value, b: serde_json::Value) {
        match (a, b) {
            (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
                for (k, v) in b {
                    json_merge(a.entry(k).or_insert(serde_json::Value::Null), v);
                }
            }
            (a, b) => *a = b,
        }
    }

    use super::*;

    #[test]
    fn default_spec_is_runcs() {
        insta::assert_snapshot!(to_json(&default_spec()));
    }

    #[test]
    fn any_1x_version_is_accepted_and_others_refused() {
        let mut spec = default_spec();
        for v in ["1.0.0", "1.0.2-dev", "1.1.0", "1.2.1"] {
            spec.set_version(v.into());
            assert!(check(&spec).is_ok(), "{v}");
        }
        spec.set_version("2.0.0".into());
        assert!(check(&spec).unwrap_err().contains("not 1.x"));
    }

    #[test]
    fn empty_args_are_refused() {
        let mut spec = default_spec();
        let mut process = spec.process().clone().unwrap();
        process.set_args(Some(vec![]));
        spec.set_process(Some(process));
        assert_eq!(check(&spec).unwrap_err(), "process.args is empty");
    }
}
