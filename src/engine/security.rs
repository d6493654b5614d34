//! `run --security-opt`, as Docker reads it: `no-new-privileges[=true|false]`,
//! `seccomp=unconfined|PATH` (a profile in the OCI `linux.seccomp` form, the JSON Docker's
//! own profiles use), `apparmor=PROFILE|unconfined`; SELinux `label=` is refused. What the
//! options ask is written into the spec; the runtime applies it or refuses it with the reason.

use std::io::Read;
use std::path::Path;

use oci_spec::runtime::{LinuxSeccomp, Spec};

use super::{EngineError, Result};

/// The largest seccomp profile read.
const MAX_PROFILE: u64 = 1 << 20;

/// The security options of a container.
#[derive(Debug, Clone, Default)]
pub struct SecurityOpts {
    /// `no-new-privileges`: execve never grants more (setuid bits, file capabilities).
    pub no_new_privileges: bool,
    /// A seccomp profile (`seccomp=PATH`), as the spec's `linux.seccomp`.
    pub seccomp: Option<LinuxSeccomp>,
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
                ("seccomp", Some("unconfined")) => out.seccomp = None,
                ("seccomp", Some(path)) if !path.is_empty() => out.seccomp = Some(read_profile(Path::new(path))?),
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

    /// Writes them into `spec`.
    pub fn apply(&self, spec: &mut Spec) {
        if let Some(process) = spec.process_mut() {
            process.set_no_new_privileges(Some(self.no_new_privileges));
            process.set_apparmor_profile(self.apparmor.clone());
        }
        if let Some(linux) = spec.linux_mut() {
            linux.set_seccomp(self.seccomp.clone());
        }
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
        match spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
            Some(s) => out.push(format!("seccomp=profile (default action {:?}, {} rules)", s.default_action(), s.syscalls().as_ref().map_or(0, Vec::len))),
            None => out.push("seccomp=unconfined".to_string()),
        }
        out
    }
}

fn valid_profile_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 255 && !name.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// A seccomp profile file: JSON in the spec's `linux.seccomp` form, at most 1 MiB.
fn read_profile(path: &Path) -> Result<LinuxSeccomp> {
    let file = std::fs::File::open(path).map_err(|e| EngineError::Invalid(format!("--security-opt seccomp={}: {e}", path.display())))?;
    let mut text = String::new();
    file.take(MAX_PROFILE + 1).read_to_string(&mut text).map_err(|e| EngineError::Invalid(format!("--security-opt seccomp={}: {e}", path.display())))?;
    if text.len() as u64 > MAX_PROFILE {
        return Err(EngineError::Invalid(format!("--security-opt seccomp={}: the profile is over 1 MiB", path.display())));
    }
    serde_json::from_str(&text).map_err(|e| EngineError::Invalid(format!("--security-opt seccomp={}: not a seccomp profile ({e}); it takes the OCI linux.seccomp JSON: defaultAction, syscalls", path.display())))
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
        assert!(parse(&["seccomp=unconfined"]).unwrap().seccomp.is_none());
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
        opts.apply(&mut spec);
        assert_eq!(spec.linux().as_ref().unwrap().seccomp().as_ref().unwrap().syscalls().as_ref().unwrap().len(), 1);
        let shown = SecurityOpts::shown(&spec);
        assert!(shown[0] == "no-new-privileges=true" && shown[1].starts_with("seccomp=profile"), "{shown:?}");
        std::fs::write(&path, "{").unwrap();
        assert!(parse(&[&format!("seccomp={}", path.display())]).unwrap_err().to_string().contains("not a seccomp profile"));
    }
}
