//! `run --security-opt`, as Docker reads it: `no-new-privileges[=true|false]`,
//! `seccomp=unconfined|PATH` (a profile in Docker's format, see `seccomp`; without the option,
//! the default profile), `apparmor=PROFILE|unconfined`; SELinux `label=` is refused. What the
//! options ask is written into the spec; the runtime applies it or refuses it with the reason.

use std::path::Path;

use oci_spec::runtime::Spec;

use super::seccomp::{Choice, Profile};
use super::{EngineError, Result};

/// The annotation that records which seccomp profile a container got.
pub const SECCOMP_ANNOTATION: &str = "io.shibafu.seccomp";

/// The security options of a container.
#[derive(Debug, Clone, Default)]
pub struct SecurityOpts {
    /// `no-new-privileges`: execve never grants more (setuid bits, file capabilities).
    pub no_new_privileges: bool,
    /// The seccomp profile.
    pub seccomp: Choice,
    /// An AppArmor profile (`apparmor=PROFILE`).
    pub apparmor: Option<String>,
}

impl SecurityOpts {
    /// Reads `--security-opt` values.
    pub fn parse(opts: &[String]) -> Result<SecurityOpts> {
        let mut out = SecurityOpts::default();
        for opt in opts {
            // Docker takes `key=value` and the older `key:value`.
            let (key, value) = opt.split_once(['=', ':']).map_or((opt.as_str(), None), |(k, v)| (k, Some(v)));
            match (key, value) {
                ("no-new-privileges", None | Some("true")) => out.no_new_privileges = true,
                ("no-new-privileges", Some("false")) => out.no_new_privileges = false,
                ("seccomp", Some("unconfined")) => out.seccomp = Choice::Unconfined,
                ("seccomp", Some(path)) if !path.is_empty() => out.seccomp = Choice::File(path.to_string(), Profile::read(Path::new(path))?),
                ("apparmor", Some("unconfined")) => out.apparmor = None,
                ("apparmor", Some(profile)) if valid_profile_name(profile) => out.apparmor = Some(profile.to_string()),
                ("label", _) => return Err(EngineError::Invalid(format!("--security-opt {opt}: SELinux labels are not applied by shibafu (and need a kernel that runs SELinux)"))),
                _ => {
                    return Err(EngineError::Invalid(format!(
                        "--security-opt {opt:?} is invalid: shibafu takes no-new-privileges[=true|false], seccomp=unconfined|PROFILE.json, apparmor=PROFILE|unconfined"
                    )))
                }
            }
        }
        Ok(out)
    }

    /// Writes them into `spec`, whose capabilities are final: the seccomp profile is resolved
    /// for them. A privileged container runs with no filter.
    pub fn apply(&self, spec: &mut Spec, privileged: bool) {
        let choice = if privileged { &Choice::Unconfined } else { &self.seccomp };
        let caps: Vec<String> = spec
            .process()
            .as_ref()
            .and_then(|p| p.capabilities().as_ref())
            .and_then(|c| c.bounding().as_ref())
            .map(|set| set.iter().filter_map(|c| serde_json::to_value(c).ok()?.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        if let Some(process) = spec.process_mut() {
            process.set_no_new_privileges(Some(self.no_new_privileges));
            process.set_apparmor_profile(self.apparmor.clone());
        }
        if let Some(linux) = spec.linux_mut() {
            linux.set_seccomp(choice.resolve(&caps));
        }
        super::spec::annotate(spec, SECCOMP_ANNOTATION, choice.name());
    }

    /// As `inspect` shows them (HostConfig.SecurityOpt), read back from a spec.
    pub fn shown(spec: &Spec) -> Vec<String> {
        let mut out = Vec::new();
        if spec.process().as_ref().and_then(|p| p.no_new_privileges()) == Some(true) {
            out.push("no-new-privileges=true".to_string());
        }
        if let Some(profile) = spec.process().as_ref().and_then(|p| p.apparmor_profile().clone()) {
            out.push(format!("apparmor={profile}"));
        }
        let recorded = spec.annotations().as_ref().and_then(|a| a.get(SECCOMP_ANNOTATION).cloned());
        let filtered = spec.linux().as_ref().is_some_and(|l| l.seccomp().is_some());
        out.push(format!("seccomp={}", recorded.unwrap_or_else(|| if filtered { "profile" } else { "unconfined" }.into())));
        out
    }
}

/// `--privileged`, as Docker's: every capability, no masked or read-only paths, /sys and the
/// cgroup tree writable, every device of the host in /dev and allowed by the device cgroup.
/// (`apply` then leaves out the seccomp filter.)
pub fn make_privileged(spec: &mut Spec, all_caps: oci_spec::runtime::Capabilities) {
    if let Some(process) = spec.process_mut() {
        let caps = oci_spec::runtime::LinuxCapabilitiesBuilder::default()
            .bounding(all_caps.clone())
            .effective(all_caps.clone())
            .permitted(all_caps.clone())
            .inheritable(all_caps)
            .ambient(oci_spec::runtime::Capabilities::new())
            .build()
            .expect("caps build");
        process.set_capabilities(Some(caps));
    }
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    for m in mounts.iter_mut().filter(|m| matches!(m.typ().as_deref(), Some("sysfs" | "cgroup" | "cgroup2"))) {
        let options = m.options().clone().unwrap_or_default().into_iter().filter(|o| o != "ro").chain(["rw".to_string()]).collect();
        m.set_options(Some(options));
    }
    spec.set_mounts(Some(mounts));
    if let Some(linux) = spec.linux_mut() {
        linux.set_masked_paths(Some(vec![]));
        linux.set_readonly_paths(Some(vec![]));
        linux.set_devices(Some(host_devices(Path::new("/dev"))));
        let mut resources = linux.resources().clone().unwrap_or_default();
        let all = oci_spec::runtime::LinuxDeviceCgroupBuilder::default().allow(true).access("rwm").build().expect("rule builds");
        resources.set_devices(Some(vec![all]));
        linux.set_resources(Some(resources));
    }
}

/// The host's character and block devices under `dir`, as Docker and runc list them for a
/// privileged container: not the terminals of /dev/pts, nor /dev/console, nor what /dev/shm,
/// /dev/mqueue or /dev/fd hold; not links.
fn host_devices(dir: &Path) -> Vec<oci_spec::runtime::LinuxDevice> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return out };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else { continue };
        let name = entry.file_name();
        if meta.is_dir() {
            if !["pts", "shm", "mqueue", "fd", ".lxc", ".lxd-mounts", ".udev"].contains(&name.to_string_lossy().as_ref()) {
                out.extend(host_devices(&path));
            }
            continue;
        }
        let typ = match meta.file_type() {
            t if t.is_char_device() => oci_spec::runtime::LinuxDeviceType::C,
            t if t.is_block_device() => oci_spec::runtime::LinuxDeviceType::B,
            _ => continue,
        };
        if path == Path::new("/dev/console") {
            continue;
        }
        let rdev = meta.rdev();
        let device = oci_spec::runtime::LinuxDeviceBuilder::default()
            .path(path)
            .typ(typ)
            .major(libc::major(rdev) as i64)
            .minor(libc::minor(rdev) as i64)
            .file_mode(meta.mode() & 0o7777)
            .uid(meta.uid())
            .gid(meta.gid())
            .build()
            .expect("device builds");
        out.push(device);
    }
    out.sort_by(|a, b| a.path().cmp(b.path()));
    out
}

fn valid_profile_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 255 && !name.chars().any(|c| c.is_whitespace() || c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(opts: &[&str]) -> Result<SecurityOpts> {
        SecurityOpts::parse(&opts.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn docker_s_forms_are_read_and_others_refused() {
        assert!(parse(&["no-new-privileges"]).unwrap().no_new_privileges);
        assert!(parse(&["no-new-privileges:true"]).unwrap().no_new_privileges);
        assert!(!parse(&["no-new-privileges", "no-new-privileges=false"]).unwrap().no_new_privileges);
        assert!(matches!(parse(&["seccomp=unconfined"]).unwrap().seccomp, Choice::Unconfined));
        assert!(matches!(parse(&[]).unwrap().seccomp, Choice::Default));
        assert_eq!(parse(&["apparmor=docker-default"]).unwrap().apparmor.as_deref(), Some("docker-default"));
        assert!(parse(&["apparmor=unconfined"]).unwrap().apparmor.is_none());
        for bad in ["label=type:svirt_t", "bogus", "seccomp=", "apparmor=a b", "no-new-privileges=maybe"] {
            assert!(parse(&[bad]).is_err(), "{bad}");
        }
        assert!(parse(&["seccomp=/nonexistent/profile.json"]).unwrap_err().to_string().contains("/nonexistent/profile.json"));
    }

    #[test]
    fn a_profile_file_is_read_as_the_spec_s_seccomp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.json");
        std::fs::write(&path, r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO","errnoRet":1}]}"#).unwrap();
        let opts = parse(&[&format!("seccomp={}", path.display()), "no-new-privileges"]).unwrap();
        let mut spec = Spec::default();
        opts.apply(&mut spec, false);
        assert_eq!(spec.linux().as_ref().unwrap().seccomp().as_ref().unwrap().syscalls().as_ref().unwrap().len(), 1);
        let shown = SecurityOpts::shown(&spec);
        assert_eq!(shown, ["no-new-privileges=true".to_string(), format!("seccomp={}", path.display())]);
        opts.apply(&mut spec, true);
        assert!(spec.linux().as_ref().unwrap().seccomp().is_none(), "privileged: no filter");
        assert_eq!(SecurityOpts::shown(&spec)[1], "seccomp=unconfined");
        std::fs::write(&path, "{").unwrap();
        assert!(parse(&[&format!("seccomp={}", path.display())]).unwrap_err().to_string().contains("not a seccomp profile"));
        std::fs::write(&path, "x".repeat(2 << 20)).unwrap();
        assert!(parse(&[&format!("seccomp={}", path.display())]).unwrap_err().to_string().contains("over 1 MiB"));
    }
}
