//! The runtime spec (config.json) of a container made from an image, as Docker would set it up.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    Capability, LinuxCapabilitiesBuilder, LinuxCpuBuilder, LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxMemoryBuilder, LinuxNamespaceBuilder, LinuxNamespaceType,
    LinuxPidsBuilder, LinuxResourcesBuilder, MountBuilder, PosixRlimitBuilder, PosixRlimitType, Spec, UserBuilder,
};

use super::network::Attached;
use super::{EngineError, Result};
use crate::network::NetworkMode;
use crate::image::ImageConfig;
use crate::runtime::spec::default_spec;

/// Docker's default capabilities. CAP_MKNOD is among them because the device cgroup
/// (DEFAULT_DEVICES) lets a container make any node but open only the harmless ones.
pub const DEFAULT_CAPS: [Capability; 14] = [
    Capability::AuditWrite,
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fowner,
    Capability::Fsetid,
    Capability::Kill,
    Capability::Mknod,
    Capability::NetBindService,
    Capability::NetRaw,
    Capability::Setfcap,
    Capability::Setgid,
    Capability::Setpcap,
    Capability::Setuid,
    Capability::SysChroot,
];

/// Docker's default device cgroup rules, as (allow, type, major, minor, access), in order (the
/// last match wins): deny everything, then allow mknod of any node (opening one is still
/// denied), and every access to null, zero, full, random, urandom, tty, console, ptmx and the
/// pty slaves (-1 = any minor).
pub const DEFAULT_DEVICES: [(bool, LinuxDeviceType, i64, i64, &str); 12] = [
    (false, LinuxDeviceType::A, -1, -1, "rwm"),
    (true, LinuxDeviceType::C, -1, -1, "m"),
    (true, LinuxDeviceType::B, -1, -1, "m"),
    (true, LinuxDeviceType::C, 1, 3, "rwm"),
    (true, LinuxDeviceType::C, 1, 5, "rwm"),
    (true, LinuxDeviceType::C, 1, 7, "rwm"),
    (true, LinuxDeviceType::C, 1, 8, "rwm"),
    (true, LinuxDeviceType::C, 1, 9, "rwm"),
    (true, LinuxDeviceType::C, 5, 0, "rwm"),
    (true, LinuxDeviceType::C, 5, 1, "rwm"),
    (true, LinuxDeviceType::C, 5, 2, "rwm"),
    (true, LinuxDeviceType::C, 136, -1, "rwm"),
];

/// cgroup limits asked for on the command line.
#[derive(Debug, Clone, Default)]
pub struct Limits {
    /// memory.max in bytes.
    pub memory: Option<i64>,
    /// CPUs (1.5 = one and a half).
    pub cpus: Option<f64>,
    /// pids.max.
    pub pids: Option<i64>,
}

/// Docker's smallest memory limit: below it a container cannot even start.
pub const MIN_MEMORY: i64 = 6 << 20;

impl Limits {
    /// Refuses limits no cgroup can honour, with Docker's rules: memory of at least 6 MiB,
    /// CPUs from 0.01 to the machine's count, pids positive or -1 for no limit.
    pub fn check(&self) -> Result<()> {
        if let Some(m) = self.memory.filter(|m| *m < MIN_MEMORY) {
            return Err(EngineError::Invalid(format!("invalid --memory {m} bytes: the smallest limit is 6 MiB (6m)")));
        }
        if let Some(c) = self.cpus {
            let have = std::thread::available_parallelism().map_or(1, |n| n.get());
            if !c.is_finite() || c < 0.01 || c > have as f64 {
                return Err(EngineError::Invalid(format!("invalid --cpus {c}: give a number from 0.01 to {have}.00, as there are {have} CPUs")));
            }
        }
        if let Some(p) = self.pids.filter(|p| *p == 0 || *p < -1) {
            return Err(EngineError::Invalid(format!("invalid --pids-limit {p}: give a positive number, or -1 for no limit")));
        }
        Ok(())
    }
}

/// What makes a container's spec.
pub struct SpecInput<'a> {
    /// The image's settings.
    pub image: &'a ImageConfig,
    /// The command given to `run` (empty: the image's).
    pub command: &'a [String],
    /// `-e KEY=VALUE` from the command line.
    pub env: &'a [String],
    /// The rootfs, as config.json should name it.
    pub rootfs: PathBuf,
    /// The rootfs on disk, to look user names up in.
    pub rootfs_on_disk: &'a Path,
    /// Host name.
    pub hostname: String,
    /// Give the process a terminal.
    pub terminal: bool,
    /// cgroup limits.
    pub limits: &'a Limits,
    /// cgroup path, relative to /sys/fs/cgroup.
    pub cgroup: Option<PathBuf>,
    /// RLIMIT_NOFILE (soft = hard).
    pub nofile: u64,
}

/// The open-files limit containers get: Docker's 1048576, or our own hard limit when that is
/// lower (raising it needs CAP_SYS_RESOURCE).
pub fn default_nofile() -> u64 {
    let hard = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).map(|(_, h)| h).unwrap_or(1024);
    hard.min(1_048_576)
}

/// The process's arguments: the image's entrypoint, then the given command or else the image's.
pub fn command_line(image: &ImageConfig, command: &[String]) -> Result<Vec<String>> {
    let args: Vec<String> = image.entrypoint.iter().chain(if command.is_empty() { &image.cmd } else { command }).cloned().collect();
    if args.is_empty() {
        return Err(EngineError::Invalid("no command given, and the image has none".into()));
    }
    Ok(args)
}

/// Builds the spec.
pub fn container_spec(input: &SpecInput) -> Result<Spec> {
    let mut spec = default_spec();
    let mut process = spec.process().clone().expect("the default spec has a process");
    process.set_args(Some(command_line(input.image, input.command)?));
    process.set_env(Some(merge_env(&input.image.env, input.env, input.terminal, &input.hostname)?));
    process.set_terminal(Some(input.terminal));
    process.set_cwd(PathBuf::from(if input.image.working_dir.is_empty() { "/" } else { &input.image.working_dir }));
    let (uid, gid) = resolve_user(&input.image.user, input.rootfs_on_disk)?;
    process.set_user(UserBuilder::default().uid(uid).gid(gid).build().expect("user builds"));
    let caps: oci_spec::runtime::Capabilities = DEFAULT_CAPS.into_iter().collect();
    process.set_capabilities(Some(
        LinuxCapabilitiesBuilder::default().bounding(caps.clone()).effective(caps.clone()).permitted(caps).build().expect("caps build"),
    ));
    process.set_rlimits(Some(vec![PosixRlimitBuilder::default().typ(PosixRlimitType::RlimitNofile).hard(input.nofile).soft(input.nofile).build().expect("rlimit builds")]));
    process.set_no_new_privileges(Some(false));
    spec.set_process(Some(process));
    let mut root = spec.root().clone().expect("the default spec has a root");
    root.set_path(input.rootfs.clone());
    root.set_readonly(Some(false));
    spec.set_root(Some(root));
    spec.set_hostname(Some(input.hostname.clone()));
    let mut linux = spec.linux().clone().expect("the default spec has linux");
    let mut namespaces = linux.namespaces().clone().unwrap_or_default();
    namespaces.push(LinuxNamespaceBuilder::default().typ(LinuxNamespaceType::Cgroup).build().expect("namespace builds"));
    linux.set_namespaces(Some(namespaces));
    linux.set_resources(Some(resources(input.limits)));
    linux.set_cgroups_path(input.cgroup.clone());
    spec.set_linux(Some(linux));
    Ok(spec)
}

/// Puts the container into its network: joins the prepared namespace (bridge networks), keeps
/// a fresh one (`none`) or shares the host's (`host`); binds hostname, hosts and resolv.conf.
pub fn apply_network(spec: &mut Spec, mode: &NetworkMode, attached: &Attached) {
    let mut linux = spec.linux().clone().expect("the default spec has linux");
    let mut namespaces = linux.namespaces().clone().unwrap_or_default();
    namespaces.retain(|n| n.typ() != LinuxNamespaceType::Network);
    match (mode, &attached.netns) {
        (NetworkMode::Host, _) => {}
        (_, Some(path)) => namespaces.push(LinuxNamespaceBuilder::default().typ(LinuxNamespaceType::Network).path(path.clone()).build().expect("namespace builds")),
        (_, None) => namespaces.push(LinuxNamespaceBuilder::default().typ(LinuxNamespaceType::Network).build().expect("namespace builds")),
    }
    linux.set_namespaces(Some(namespaces));
    spec.set_linux(Some(linux));
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    for (inside, file) in &attached.files {
        mounts.push(
            MountBuilder::default()
                .destination(inside.clone())
                .typ("bind")
                .source(file.clone())
                .options(vec!["rbind".to_string(), "rprivate".to_string()])
                .build()
                .expect("mount builds"),
        );
    }
    spec.set_mounts(Some(mounts));
}

/// Records `key=value` among the spec's annotations (what `inspect` reads back).
pub fn annotate(spec: &mut Spec, key: &str, value: &str) {
    let mut annotations = spec.annotations().clone().unwrap_or_default();
    annotations.insert(key.to_string(), value.to_string());
    spec.set_annotations(Some(annotations));
}

/// Docker's device rules, and the limits asked for.
fn resources(limits: &Limits) -> oci_spec::runtime::LinuxResources {
    let devices = DEFAULT_DEVICES.iter().map(|&(allow, typ, major, minor, access)| {
        let rule = LinuxDeviceCgroupBuilder::default().allow(allow).access(access);
        // Docker writes no type for "all", and no number for "any".
        let rule = if typ == LinuxDeviceType::A { rule } else { rule.typ(typ) };
        let rule = if major < 0 { rule } else { rule.major(major) };
        let rule = if minor < 0 { rule } else { rule.minor(minor) };
        rule.build().expect("device rule builds")
    });
    let mut r = LinuxResourcesBuilder::default().devices(devices.collect::<Vec<_>>());
    if let Some(m) = limits.memory {
        r = r.memory(LinuxMemoryBuilder::default().limit(m).build().expect("memory builds"));
    }
    if let Some(c) = limits.cpus {
        r = r.cpu(LinuxCpuBuilder::default().quota((c * 100_000.0) as i64).period(100_000u64).build().expect("cpu builds"));
    }
    if let Some(p) = limits.pids {
        r = r.pids(LinuxPidsBuilder::default().limit(p).build().expect("pids builds"));
    }
    r.build().expect("resources build")
}

/// The image's environment, then ours (a later KEY replaces an earlier one), PATH guaranteed.
fn merge_env(image: &[String], extra: &[String], terminal: bool, hostname: &str) -> Result<Vec<String>> {
    let mut env: Vec<String> = Vec::new();
    let mut set = |kv: String| {
        let key = kv.split('=').next().unwrap_or("").to_string();
        env.retain(|e| e.split('=').next() != Some(key.as_str()));
        env.push(kv);
    };
    set(format!("PATH={}", crate::runtime::process::DEFAULT_PATH));
    set(format!("HOSTNAME={hostname}"));
    if terminal {
        set("TERM=xterm".into());
    }
    for kv in image {
        set(kv.clone());
    }
    for kv in extra {
        match kv.split_once('=') {
            Some((k, _)) if !k.is_empty() => set(kv.clone()),
            _ => match std::env::var(kv) {
                // Docker's `-e KEY`: pass our own value through.
                Ok(v) if !kv.is_empty() => set(format!("{kv}={v}")),
                _ => return Err(EngineError::Invalid(format!("invalid environment variable {kv:?}: use KEY=VALUE"))),
            },
        }
    }
    Ok(env)
}

/// `uid[:gid]`, or a name looked up in the image's /etc/passwd.
fn resolve_user(user: &str, rootfs: &Path) -> Result<(u32, u32)> {
    if user.is_empty() {
        return Ok((0, 0));
    }
    let (u, g) = user.split_once(':').map(|(u, g)| (u, Some(g))).unwrap_or((user, None));
    let passwd = std::fs::read_to_string(rootfs.join("etc/passwd")).unwrap_or_default();
    let entry = passwd.lines().map(|l| l.split(':').collect::<Vec<_>>()).find(|f| f.len() > 3 && (f[0] == u || f[2] == u));
    let uid = match u.parse::<u32>() {
        Ok(n) => n,
        Err(_) => entry.as_ref().and_then(|f| f[2].parse().ok()).ok_or_else(|| EngineError::Invalid(format!("user {u:?} is not in the image's /etc/passwd")))?,
    };
    let gid = match g {
        Some(g) => g.parse().map_err(|_| EngineError::Invalid(format!("group {g:?} must be numeric")))?,
        None => entry.and_then(|f| f[3].parse().ok()).unwrap_or(0),
    };
    Ok((uid, gid))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input<'a>(image: &'a ImageConfig, command: &'a [String], env: &'a [String], limits: &'a Limits) -> SpecInput<'a> {
        SpecInput {
            image,
            command,
            env,
            rootfs: PathBuf::from("/var/lib/shibafu/containers/abc/rootfs"),
            rootfs_on_disk: Path::new("/nonexistent"),
            hostname: "abc123".into(),
            terminal: false,
            limits,
            cgroup: Some(PathBuf::from("shibafu/abc")),
            nofile: 1_048_576,
        }
    }

    #[test]
    fn container_spec_snapshot() {
        let image = ImageConfig { env: vec!["PATH=/bin".into(), "A=1".into()], cmd: vec!["/bin/sh".into()], ..Default::default() };
        let command = vec!["sleep".to_string(), "100".to_string()];
        let env = vec!["A=2".to_string(), "B=3".to_string()];
        let limits = Limits { memory: Some(64 << 20), cpus: Some(0.5), pids: Some(100) };
        let spec = container_spec(&input(&image, &command, &env, &limits)).unwrap();
        insta::assert_snapshot!(crate::runtime::spec::to_json(&spec));
    }

    #[test]
    fn the_image_command_is_the_default_and_none_at_all_is_an_error() {
        let image = ImageConfig { entrypoint: vec!["/entry".into()], cmd: vec!["x".into()], ..Default::default() };
        let spec = container_spec(&input(&image, &[], &[], &Limits::default())).unwrap();
        assert_eq!(spec.process().as_ref().unwrap().args().clone().unwrap(), vec!["/entry", "x"]);
        let empty = ImageConfig::default();
        assert!(container_spec(&input(&empty, &[], &[], &Limits::default())).is_err());
    }

    #[test]
    fn bad_env_is_refused() {
        let image = ImageConfig { cmd: vec!["sh".into()], ..Default::default() };
        let env = vec!["=x".to_string()];
        assert!(container_spec(&input(&image, &[], &env, &Limits::default())).is_err());
    }
}
