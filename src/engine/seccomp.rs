//! Seccomp profiles for engine-made containers, in the format Docker and Podman read
//! (`--security-opt seccomp=PROFILE.json`): the spec's `linux.seccomp` plus, per rule,
//! `includes`/`excludes` on the container's capabilities, the architecture and the kernel
//! version, and an `archMap`. A profile is resolved for one container into the plain
//! `linux.seccomp` its config.json carries, so runc or crun apply exactly what shibafu's
//! runtime applies.
//!
//! The default profile is containers-common's `seccomp.json` (Debian's
//! golang-github-containers-common 0.50.1, Apache-2.0, shipped unchanged in
//! `profiles/containers-common-seccomp.json`), tightened in code where Docker's default profile
//! is stricter: key management is refused, mounting, namespaces and the other
//! CAP_SYS_ADMIN-only calls need CAP_SYS_ADMIN (so `--cap-add SYS_ADMIN` opens them, as in
//! Docker), `clone` may not make namespaces, and AF_ALG and AF_VSOCK sockets are refused.
//! What it does not list fails with ENOSYS, containers-common's default, so that a program
//! newer than the profile falls back to older calls.

use std::io::Read;
use std::path::Path;

use oci_spec::runtime::{Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompArgBuilder, LinuxSeccompFilterFlag, LinuxSeccompOperator, LinuxSyscall};
use serde::Deserialize;

use super::{EngineError, Result};

/// The shipped reference profile.
const CONTAINERS_COMMON: &str = include_str!("profiles/containers-common-seccomp.json");
/// The largest profile file read.
const MAX_PROFILE: u64 = 1 << 20;

/// Calls Docker refuses to every container: the kernel keyring is not namespaced.
const NEVER: [&str; 3] = ["add_key", "keyctl", "request_key"];
/// Calls Docker allows only with a capability (containers-common allows them to all).
const GATED: [(&str, &[&str]); 5] = [
    ("CAP_SYS_ADMIN", &["fsconfig", "fsmount", "fsopen", "fspick", "mount", "mount_setattr", "move_mount", "open_tree", "pivot_root", "setns", "umount", "umount2", "unshare"]),
    ("CAP_SYSLOG", &["syslog"]),
    ("CAP_SYS_BOOT", &["reboot"]),
    ("CAP_SYS_NICE", &["get_mempolicy", "mbind", "set_mempolicy"]),
    ("CAP_SYS_PTRACE", &["pidfd_getfd"]),
];
/// The clone flags that make namespaces, which `clone` may not pass without CAP_SYS_ADMIN.
const NAMESPACE_FLAGS: u64 = (libc::CLONE_NEWNS | libc::CLONE_NEWCGROUP | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC | libc::CLONE_NEWUSER | libc::CLONE_NEWPID | libc::CLONE_NEWNET) as u64;
/// Socket families Docker refuses: AF_ALG (38) and AF_VSOCK (40).
const SOCKET_FAMILIES_ALLOWED: [(LinuxSeccompOperator, u64); 3] = [
    (LinuxSeccompOperator::ScmpCmpLt, 38),
    (LinuxSeccompOperator::ScmpCmpEq, 39),
    (LinuxSeccompOperator::ScmpCmpGt, 40),
];

/// Which profile a container runs under.
#[derive(Debug, Clone, Default)]
pub enum Choice {
    /// The default profile.
    #[default]
    Default,
    /// No filter (`seccomp=unconfined`, or `--privileged`).
    Unconfined,
    /// A profile file (`seccomp=PATH`), read when the option was.
    File(String, Profile),
}

impl Choice {
    /// What `inspect` and the container's annotation call it.
    pub fn name(&self) -> &str {
        match self {
            Choice::Default => "default",
            Choice::Unconfined => "unconfined",
            Choice::File(path, _) => path,
        }
    }

    /// The `linux.seccomp` for a container with capabilities `caps` on this machine.
    pub fn resolve(&self, caps: &[String]) -> Option<LinuxSeccomp> {
        match self {
            Choice::Default => Some(Profile::default_profile().resolve(caps, &Host::this())),
            Choice::Unconfined => None,
            Choice::File(_, profile) => Some(profile.resolve(caps, &Host::this())),
        }
    }
}

/// A profile in Docker's format.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    default_action: LinuxSeccompAction,
    default_errno_ret: Option<u32>,
    #[serde(default)]
    architectures: Vec<Arch>,
    #[serde(default)]
    arch_map: Vec<ArchMap>,
    #[serde(default)]
    flags: Vec<LinuxSeccompFilterFlag>,
    #[serde(default)]
    syscalls: Vec<Rule>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArchMap {
    architecture: Arch,
    #[serde(default)]
    sub_architectures: Vec<Arch>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rule {
    /// The older single-name form.
    name: Option<String>,
    #[serde(default)]
    names: Vec<String>,
    action: LinuxSeccompAction,
    errno_ret: Option<u32>,
    #[serde(default, deserialize_with = "null_as_empty")]
    args: Vec<LinuxSeccompArg>,
    #[serde(default)]
    includes: Condition,
    #[serde(default)]
    excludes: Condition,
}

/// Docker's rule filter: capabilities, architectures (Go's names: amd64, arm64, x32, ...) and
/// a kernel version ("4.8").
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Condition {
    #[serde(default)]
    caps: Vec<String>,
    #[serde(default)]
    arches: Vec<String>,
    min_kernel: Option<String>,
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Vec<LinuxSeccompArg>, D::Error> {
    Ok(Option::<Vec<LinuxSeccompArg>>::deserialize(d)?.unwrap_or_default())
}

/// What a profile is resolved against.
#[derive(Debug, Clone)]
pub struct Host {
    /// Go's name for the architecture, as profiles' `arches` use it.
    pub go_arch: &'static str,
    /// libseccomp's.
    pub arch: Option<Arch>,
    /// The kernel's (major, minor).
    pub kernel: (u32, u32),
}

impl Host {
    /// This machine.
    pub fn this() -> Host {
        let (go_arch, arch) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", Some(Arch::ScmpArchX86_64)),
            "aarch64" => ("arm64", Some(Arch::ScmpArchAarch64)),
            "riscv64" => ("riscv64", Some(Arch::ScmpArchRiscv64)),
            "s390x" => ("s390x", Some(Arch::ScmpArchS390x)),
            "powerpc64" => ("ppc64le", Some(Arch::ScmpArchPpc64le)),
            "x86" => ("386", Some(Arch::ScmpArchX86)),
            "arm" => ("arm", Some(Arch::ScmpArchArm)),
            other => (other, None),
        };
        let release = nix::sys::utsname::uname().map(|u| u.release().to_string_lossy().into_owned()).unwrap_or_default();
        Host { go_arch, arch, kernel: kernel_version(&release).unwrap_or((0, 0)) }
    }
}

/// "6.1.0-27-amd64" -> (6, 1).
fn kernel_version(text: &str) -> Option<(u32, u32)> {
    let mut parts = text.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

impl Profile {
    /// Reads a profile file (at most 1 MiB).
    pub fn read(path: &Path) -> Result<Profile> {
        let what = |e: &dyn std::fmt::Display| EngineError::Invalid(format!("--security-opt seccomp={}: {e}", path.display()));
        let file = std::fs::File::open(path).map_err(|e| what(&e))?;
        let mut text = String::new();
        file.take(MAX_PROFILE + 1).read_to_string(&mut text).map_err(|e| what(&e))?;
        if text.len() as u64 > MAX_PROFILE {
            return Err(what(&"the profile is over 1 MiB"));
        }
        Profile::parse(&text).map_err(|e| what(&e))
    }

    /// Parses a profile, checking what Docker checks.
    pub fn parse(text: &str) -> std::result::Result<Profile, String> {
        let profile: Profile = serde_json::from_str(text).map_err(|e| format!("not a seccomp profile ({e}); it takes Docker's JSON: defaultAction, syscalls"))?;
        if !profile.architectures.is_empty() && !profile.arch_map.is_empty() {
            return Err("the profile has both architectures and archMap: use one".into());
        }
        if let Some(rule) = profile.syscalls.iter().find(|r| r.name.is_some() && !r.names.is_empty()) {
            return Err(format!("a rule has both name {:?} and names: use one", rule.name.as_deref().unwrap_or_default()));
        }
        Ok(profile)
    }

    /// The default profile: containers-common's, tightened to Docker's.
    pub fn default_profile() -> Profile {
        let mut profile = Profile::parse(CONTAINERS_COMMON).expect("the shipped profile parses");
        profile.tighten_like_docker();
        profile
    }

    /// Applies Docker's stricter rules (see the module's doc) to an allow-list profile.
    fn tighten_like_docker(&mut self) {
        let gated: Vec<&str> = GATED.iter().flat_map(|(_, names)| names.iter().copied()).collect();
        let mut socket_rules = Vec::new();
        for rule in &mut self.syscalls {
            let unconditional = rule.action == LinuxSeccompAction::ScmpActAllow && rule.args.is_empty();
            if unconditional && rule.names.iter().any(|n| n == "socket") {
                socket_rules.extend(SOCKET_FAMILIES_ALLOWED.iter().map(|&(op, value)| Rule { names: vec!["socket".into()], args: vec![arg(0, value, op)], ..rule.clone() }));
                rule.names.retain(|n| n != "socket");
            }
            // What the rules below decide, they decide alone.
            rule.names.retain(|n| !NEVER.contains(&n.as_str()) && !gated.contains(&n.as_str()) && !["clone", "clone3"].contains(&n.as_str()));
        }
        self.syscalls.retain(|r| !r.names.is_empty() || r.name.is_some());
        self.syscalls.extend(socket_rules);
        self.syscalls.push(Rule { names: NEVER.iter().map(|n| n.to_string()).collect(), action: LinuxSeccompAction::ScmpActErrno, errno_ret: Some(libc::EPERM as u32), ..Rule::default() });
        for (cap, names) in GATED {
            self.syscalls.push(gate(cap, names.iter().map(|n| n.to_string()).collect(), true, None));
            self.syscalls.push(gate(cap, names.iter().map(|n| n.to_string()).collect(), false, Some(libc::EPERM as u32)));
        }
        // clone's flags are its first argument, but on s390 its second.
        let clone = |index, includes: Vec<String>, excludes: Vec<String>| Rule {
            names: vec!["clone".into()],
            action: LinuxSeccompAction::ScmpActAllow,
            args: vec![arg(index, NAMESPACE_FLAGS, LinuxSeccompOperator::ScmpCmpMaskedEq)],
            includes: Condition { arches: includes, ..Condition::default() },
            excludes: Condition { caps: vec!["CAP_SYS_ADMIN".into()], arches: excludes, ..Condition::default() },
            ..Rule::default()
        };
        let s390 = vec!["s390".to_string(), "s390x".to_string()];
        self.syscalls.push(clone(0, vec![], s390.clone()));
        self.syscalls.push(clone(1, s390, vec![]));
        self.syscalls.push(gate("CAP_SYS_ADMIN", vec!["clone".into(), "clone3".into()], true, None));
        // Without it, clone3 (whose flags sit in memory, out of a filter's reach) says ENOSYS,
        // and the C library falls back to clone.
        self.syscalls.push(gate("CAP_SYS_ADMIN", vec!["clone3".into()], false, Some(libc::ENOSYS as u32)));
    }

    /// The plain `linux.seccomp` for capabilities `caps` on `host`.
    pub fn resolve(&self, caps: &[String], host: &Host) -> LinuxSeccomp {
        let architectures: Vec<Arch> = if self.arch_map.is_empty() {
            self.architectures.clone()
        } else {
            self.arch_map.iter().filter(|m| Some(m.architecture) == host.arch).flat_map(|m| std::iter::once(m.architecture).chain(m.sub_architectures.iter().copied())).collect()
        };
        let syscalls: Vec<LinuxSyscall> = self
            .syscalls
            .iter()
            .filter(|r| r.applies(caps, host))
            .map(|r| {
                let mut call = LinuxSyscall::default();
                call.set_names(r.name.iter().chain(&r.names).cloned().collect());
                call.set_action(r.action);
                call.set_errno_ret(r.errno_ret);
                call.set_args(Some(r.args.clone()).filter(|a| !a.is_empty()));
                call
            })
            .filter(|c| !c.names().is_empty())
            .collect();
        let mut out = LinuxSeccomp::default();
        out.set_default_action(self.default_action);
        out.set_default_errno_ret(self.default_errno_ret);
        out.set_architectures(Some(architectures).filter(|a| !a.is_empty()));
        out.set_flags(Some(self.flags.clone()).filter(|f| !f.is_empty()));
        out.set_syscalls(Some(syscalls));
        out
    }
}

impl Rule {
    /// Docker's reading: every included capability held, the architecture listed, the kernel
    /// at least minKernel; no excluded capability held, and so on.
    fn applies(&self, caps: &[String], host: &Host) -> bool {
        let has = |c: &String| caps.contains(c);
        let inc = &self.includes;
        let exc = &self.excludes;
        let at_least = |v: &Option<String>| v.as_deref().and_then(kernel_version).map(|min| host.kernel >= min);
        inc.caps.iter().all(has)
            && (inc.arches.is_empty() || inc.arches.iter().any(|a| a == host.go_arch))
            && at_least(&inc.min_kernel) != Some(false)
            && !exc.caps.iter().any(has)
            && !exc.arches.iter().any(|a| a == host.go_arch)
            && at_least(&exc.min_kernel) != Some(true)
    }
}

/// A rule for `names` that holds with capability `cap` (`with`), or without it.
fn gate(cap: &str, names: Vec<String>, with: bool, errno: Option<u32>) -> Rule {
    let cond = Condition { caps: vec![cap.to_string()], ..Condition::default() };
    let action = if errno.is_some() { LinuxSeccompAction::ScmpActErrno } else { LinuxSeccompAction::ScmpActAllow };
    let (includes, excludes) = if with { (cond, Condition::default()) } else { (Condition::default(), cond) };
    Rule { names, action, errno_ret: errno, includes, excludes, ..Rule::default() }
}

/// A condition: `op` on argument `index` against `value`; a masked compare tests
/// `(argument & value) == 0`.
fn arg(index: usize, value: u64, op: LinuxSeccompOperator) -> LinuxSeccompArg {
    let mut builder = LinuxSeccompArgBuilder::default().index(index).value(value).op(op);
    if op == LinuxSeccompOperator::ScmpCmpMaskedEq {
        builder = builder.value_two(0u64);
    }
    builder.build().expect("a condition builds")
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCKER_CAPS: [&str; 14] = [
        "CAP_AUDIT_WRITE", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_MKNOD",
        "CAP_NET_BIND_SERVICE", "CAP_NET_RAW", "CAP_SETFCAP", "CAP_SETGID", "CAP_SETPCAP", "CAP_SETUID", "CAP_SYS_CHROOT",
    ];

    fn amd64() -> Host {
        Host { go_arch: "amd64", arch: Some(Arch::ScmpArchX86_64), kernel: (6, 1) }
    }

    /// The rules naming `name`, as (action, errno, number of conditions).
    fn rules_for(seccomp: &LinuxSeccomp, name: &str) -> Vec<(LinuxSeccompAction, Option<u32>, usize)> {
        seccomp.syscalls().iter().flatten().filter(|c| c.names().iter().any(|n| n == name)).map(|c| (c.action(), c.errno_ret(), c.args().as_ref().map_or(0, Vec::len))).collect()
    }

    fn caps(extra: &[&str]) -> Vec<String> {
        DOCKER_CAPS.iter().chain(extra).map(|c| c.to_string()).collect()
    }

    #[test]
    fn the_default_profile_is_containers_commons_with_dockers_gates() {
        let p = Profile::default_profile().resolve(&caps(&[]), &amd64());
        assert_eq!(p.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(p.default_errno_ret(), Some(38), "ENOSYS for what the profile does not know");
        assert_eq!(p.architectures().as_deref(), Some(&[Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32][..]));
        let allow = LinuxSeccompAction::ScmpActAllow;
        let eperm = (LinuxSeccompAction::ScmpActErrno, Some(1), 0);
        assert_eq!(rules_for(&p, "read"), vec![(allow, None, 0)]);
        for refused in ["keyctl", "add_key", "mount", "umount2", "unshare", "setns", "pivot_root", "syslog", "reboot", "kexec_load", "chroot"] {
            if refused == "chroot" {
                assert_eq!(rules_for(&p, refused), vec![(allow, None, 0)], "CAP_SYS_CHROOT is Docker's default");
                continue;
            }
            assert_eq!(rules_for(&p, refused), vec![eperm], "{refused}");
        }
        assert_eq!(rules_for(&p, "clone"), vec![(allow, None, 1)], "clone without namespace flags only");
        assert_eq!(rules_for(&p, "clone3"), vec![(LinuxSeccompAction::ScmpActErrno, Some(38), 0)]);
        assert_eq!(rules_for(&p, "socket").len(), 3, "AF_ALG and AF_VSOCK are left out");
        assert_eq!(rules_for(&p, "ptrace"), vec![(allow, None, 0)], "ptrace inside the container works");
    }

    #[test]
    fn capabilities_open_what_they_gate() {
        let p = Profile::default_profile().resolve(&caps(&["CAP_SYS_ADMIN", "CAP_SYSLOG"]), &amd64());
        let allow = (LinuxSeccompAction::ScmpActAllow, None, 0);
        for opened in ["mount", "unshare", "setns", "syslog", "clone3"] {
            assert_eq!(rules_for(&p, opened), vec![allow], "{opened}");
        }
        assert!(rules_for(&p, "clone").contains(&allow));
        assert_eq!(rules_for(&p, "keyctl"), vec![(LinuxSeccompAction::ScmpActErrno, Some(1), 0)], "never");
        let none = Profile::default_profile().resolve(&[], &amd64());
        assert!(rules_for(&none, "chroot").iter().all(|r| r.0 == LinuxSeccompAction::ScmpActErrno));
    }

    #[test]
    fn dockers_rule_filters_are_read() {
        let p = Profile::parse(
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
                {"name": "rmdir", "action": "SCMP_ACT_ERRNO", "includes": {"arches": ["arm64"]}},
                {"names": ["chmod"], "action": "SCMP_ACT_ERRNO", "includes": {"minKernel": "7.0"}},
                {"names": ["chown"], "action": "SCMP_ACT_ERRNO", "includes": {"minKernel": "4.8"}, "args": null}]}"#,
        )
        .unwrap()
        .resolve(&caps(&[]), &amd64());
        let names: Vec<String> = p.syscalls().iter().flatten().flat_map(|c| c.names().clone()).collect();
        assert_eq!(names, ["mkdir", "chown"]);
        for bad in [r#"{"defaultAction": "SCMP_ACT_NOPE"}"#, r#"{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"], "archMap": [{"architecture": "SCMP_ARCH_X86_64"}]}"#, "{"] {
            assert!(Profile::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(kernel_version("6.1.0-27-amd64"), Some((6, 1)));
    }

    #[test]
    fn the_resolved_default_compiles() {
        let p = Profile::default_profile().resolve(&caps(&[]), &Host::this());
        crate::runtime::seccomp::compile(&p).unwrap();
    }
}
