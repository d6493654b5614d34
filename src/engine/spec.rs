//! The runtime spec (config.json) of a container made from an image, as Docker would set it up.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    Capability, LinuxCapabilitiesBuilder, LinuxCpuBuilder, LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxMemoryBuilder, LinuxNamespaceBuilder, LinuxNamespaceType,
    LinuxPidsBuilder, LinuxResourcesBuilder, MountBuilder, PosixRlimitBuilder, PosixRlimitType, Spec, UserBuilder,
};

use super::mounts::{MountKind, MountRequest};
use super::network::Attached;
use super::{EngineError, Result};
use crate::state::containers::MountRecord;
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
    /// The process, as `run` changes it from the image's.
    pub process: &'a ProcessOverrides,
}

/// What `run` changes of the image's process and root: `--entrypoint`, `-w`, `-u`,
/// `--cap-add`/`--cap-drop`, `--read-only`, `--label`.
#[derive(Debug, Clone, Default)]
pub struct ProcessOverrides {
    /// Replaces the image's Entrypoint (and drops its Cmd); `Some(vec![])` clears it.
    pub entrypoint: Option<Vec<String>>,
    /// Working directory (absolute).
    pub workdir: Option<String>,
    /// `USER[:GROUP]`, names or numbers.
    pub user: Option<String>,
    /// Capabilities added to Docker's default set (`ALL` for every one).
    pub cap_add: Vec<String>,
    /// Capabilities dropped from it (`ALL` for every one).
    pub cap_drop: Vec<String>,
    /// A read-only root filesystem.
    pub read_only: bool,
    /// Labels, written as the spec's annotations.
    pub labels: BTreeMap<String, String>,
    /// `--security-opt`.
    pub security: super::security::SecurityOpts,
    /// `--privileged`.
    pub privileged: bool,
}

impl ProcessOverrides {
    /// Refuses what no container could take: a relative working directory, unknown
    /// capabilities.
    pub fn check(&self) -> Result<()> {
        if let Some(w) = self.workdir.as_deref().filter(|w| !w.starts_with('/')) {
            return Err(EngineError::Invalid(format!("the working directory {w:?} is invalid: it needs to be an absolute path")));
        }
        if self.user.as_deref() == Some("") {
            return Err(EngineError::Invalid("--user needs a name or number: USER[:GROUP]".into()));
        }
        capabilities(&self.cap_add, &self.cap_drop).map(|_| ())
    }
}

/// The open-files limit containers get: Docker's 1048576, or our own hard limit when that is
/// lower (raising it needs CAP_SYS_RESOURCE).
pub fn default_nofile() -> u64 {
    let hard = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).map(|(_, h)| h).unwrap_or(1024);
    hard.min(1_048_576)
}

/// The process's arguments, as Docker makes them: the entrypoint (the image's, or `--entrypoint`
/// which also drops the image's Cmd), then the given command or else the image's Cmd.
pub fn command_line(image: &ImageConfig, entrypoint: Option<&[String]>, command: &[String]) -> Result<Vec<String>> {
    let (entrypoint, cmd) = match entrypoint {
        Some(e) => (e, &[][..]),
        None => (&image.entrypoint[..], &image.cmd[..]),
    };
    let args: Vec<String> = entrypoint.iter().chain(if command.is_empty() { cmd } else { command }).cloned().collect();
    if args.is_empty() {
        return Err(EngineError::Invalid("no command given, and the image has none".into()));
    }
    Ok(args)
}

/// The annotation that marks a `--privileged` container.
pub const PRIVILEGED_ANNOTATION: &str = "io.shibafu.privileged";

/// Builds the spec.
pub fn container_spec(input: &SpecInput) -> Result<Spec> {
    let mut spec = default_spec();
    let mut process = spec.process().clone().expect("the default spec has a process");
    let over = input.process;
    process.set_args(Some(command_line(input.image, over.entrypoint.as_deref(), input.command)?));
    let user = resolve_user(over.user.as_deref().unwrap_or(&input.image.user), input.rootfs_on_disk)?;
    let mut env = merge_env(&input.image.env, input.env, input.terminal, &input.hostname)?;
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", user.home));
    }
    process.set_env(Some(env));
    process.set_terminal(Some(input.terminal));
    process.set_cwd(PathBuf::from(working_dir(input.image, over)));
    let mut user_spec = UserBuilder::default().uid(user.uid).gid(user.gid);
    if !user.additional_gids.is_empty() {
        user_spec = user_spec.additional_gids(user.additional_gids.clone());
    }
    process.set_user(user_spec.build().expect("user builds"));
    let caps: oci_spec::runtime::Capabilities = capabilities(&over.cap_add, &over.cap_drop)?.into_iter().collect();
    // The builder's default ambient and inheritable sets (NET_BIND_SERVICE) stay only where
    // the container keeps that capability: a dropped one is gone from every set.
    let built = LinuxCapabilitiesBuilder::default().bounding(caps.clone()).effective(caps.clone()).permitted(caps.clone()).build().expect("caps build");
    let keep = |set: &Option<oci_spec::runtime::Capabilities>| set.as_ref().map(|s| s.intersection(&caps).copied().collect::<oci_spec::runtime::Capabilities>());
    let (ambient, inheritable) = (keep(built.ambient()), keep(built.inheritable()));
    process.set_capabilities(Some(LinuxCapabilitiesBuilder::default().bounding(caps.clone()).effective(caps.clone()).permitted(caps).ambient(ambient.unwrap_or_default()).inheritable(inheritable.unwrap_or_default()).build().expect("caps build")));
    process.set_rlimits(Some(vec![PosixRlimitBuilder::default().typ(PosixRlimitType::RlimitNofile).hard(input.nofile).soft(input.nofile).build().expect("rlimit builds")]));
    spec.set_process(Some(process));
    let mut root = spec.root().clone().expect("the default spec has a root");
    root.set_path(input.rootfs.clone());
    root.set_readonly(Some(over.read_only));
    spec.set_root(Some(root));
    spec.set_hostname(Some(input.hostname.clone()));
    if !over.labels.is_empty() {
        spec.set_annotations(Some(over.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect()));
    }
    let mut linux = spec.linux().clone().expect("the default spec has linux");
    let mut namespaces = linux.namespaces().clone().unwrap_or_default();
    namespaces.push(LinuxNamespaceBuilder::default().typ(LinuxNamespaceType::Cgroup).build().expect("namespace builds"));
    linux.set_namespaces(Some(namespaces));
    linux.set_resources(Some(resources(input.limits)));
    linux.set_cgroups_path(input.cgroup.clone());
    spec.set_linux(Some(linux));
    if over.privileged {
        let all = capabilities(&["ALL".to_string()], &[])?.into_iter().collect();
        super::security::make_privileged(&mut spec, all);
        annotate(&mut spec, PRIVILEGED_ANNOTATION, "true");
    }
    over.security.apply(&mut spec, over.privileged);
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

/// The working directory: `-w`, else the image's, else `/`.
pub fn working_dir<'a>(image: &'a ImageConfig, over: &'a ProcessOverrides) -> &'a str {
    match over.workdir.as_deref() {
        Some(w) => w,
        None if image.working_dir.is_empty() => "/",
        None => &image.working_dir,
    }
}

/// Docker's capability set changed by `--cap-add`/`--cap-drop` (names with or without
/// `CAP_`, any case; `ALL`): `--cap-add ALL` starts from every capability the kernel has that
/// shibafu itself may pass on (its bounding set: a container cannot get more), `--cap-drop ALL`
/// from none; then the drops go, then the adds come.
pub fn capabilities(add: &[String], drop: &[String]) -> Result<Vec<Capability>> {
    let is_all = |c: &String| c.eq_ignore_ascii_case("all");
    let mut set: Vec<Capability> = if add.iter().any(is_all) {
        let ours = caps::read(None, caps::CapSet::Bounding).unwrap_or_else(|_| caps::runtime::thread_all_supported());
        let mut all: Vec<Capability> = ours.iter().filter_map(|c| parse_capability(&c.to_string()).ok()).collect();
        all.sort_by_key(|c| c.to_string());
        all
    } else if drop.iter().any(is_all) {
        Vec::new()
    } else {
        DEFAULT_CAPS.to_vec()
    };
    for name in drop.iter().filter(|c| !is_all(c)) {
        let cap = parse_capability(name)?;
        set.retain(|c| *c != cap);
    }
    for name in add.iter().filter(|c| !is_all(c)) {
        let cap = parse_capability(name)?;
        if !set.contains(&cap) {
            set.push(cap);
        }
    }
    Ok(set)
}

/// `NET_RAW`, `cap_net_raw`, `CAP_NET_RAW` -> the capability.
fn parse_capability(name: &str) -> Result<Capability> {
    serde_json::from_value(serde_json::Value::String(name.to_string()))
        .map_err(|_| EngineError::Invalid(format!("unknown capability {name:?}: use a name from capabilities(7), such as NET_RAW or CAP_SYS_ADMIN, or ALL")))
}

/// Who the process runs as.
#[derive(Debug, PartialEq, Eq)]
struct ResolvedUser {
    uid: u32,
    gid: u32,
    additional_gids: Vec<u32>,
    home: String,
}

/// `USER[:GROUP]`, each a name or a number, as Docker resolves it: names through the image's
/// /etc/passwd and /etc/group (read inside the rootfs: a symlink there cannot reach the
/// host's), the user's primary group unless one is given, the groups that list it as extras.
fn resolve_user(user: &str, rootfs: &Path) -> Result<ResolvedUser> {
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let u = if u.is_empty() { "0" } else { u };
    let passwd = read_in_root(rootfs, "/etc/passwd");
    let entry = passwd.lines().map(|l| l.split(':').collect::<Vec<_>>()).find(|f| f.len() > 5 && (f[0] == u || f[2] == u));
    let (uid, name, primary, home) = match (u.parse::<u32>(), &entry) {
        (Ok(n), Some(f)) => (n, f[0].to_string(), f[3].parse().unwrap_or(0), f[5].to_string()),
        (Ok(n), None) => (n, String::new(), 0, "/".to_string()),
        (Err(_), Some(f)) => (f[2].parse().map_err(|_| bad_entry("passwd", u))?, u.to_string(), f[3].parse().unwrap_or(0), f[5].to_string()),
        (Err(_), None) => return Err(EngineError::Invalid(format!("unable to find user {u}: no matching entries in the image's /etc/passwd"))),
    };
    let groups = read_in_root(rootfs, "/etc/group");
    let groups: Vec<Vec<&str>> = groups.lines().map(|l| l.split(':').collect::<Vec<_>>()).filter(|f| f.len() > 3).collect();
    let gid = match g {
        None => primary,
        Some(g) => match (g.parse::<u32>(), groups.iter().find(|f| f[0] == g)) {
            (Ok(n), _) => n,
            (Err(_), Some(f)) => f[2].parse().map_err(|_| bad_entry("group", g))?,
            (Err(_), None) => return Err(EngineError::Invalid(format!("unable to find group {g}: no matching entries in the image's /etc/group"))),
        },
    };
    let mut additional_gids: Vec<u32> = groups
        .iter()
        .filter(|f| !name.is_empty() && f[3].split(',').any(|m| m == name))
        .filter_map(|f| f[2].parse().ok())
        .filter(|x| *x != gid)
        .collect();
    additional_gids.dedup();
    Ok(ResolvedUser { uid, gid, additional_gids, home: if home.is_empty() { "/".into() } else { home } })
}

fn bad_entry(file: &str, name: &str) -> EngineError {
    EngineError::Invalid(format!("the image's /etc/{file} has a bad entry for {name}"))
}

/// A small file of the image, resolved inside the rootfs; empty when missing or unreadable.
fn read_in_root(rootfs: &Path, path: &str) -> String {
    use nix::fcntl::OFlag;
    use nix::sys::stat::Mode;
    let Ok(root) = nix::fcntl::open(rootfs, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty()) else { return String::new() };
    let Ok(fd) = crate::safepath::open(&root, Path::new(path), OFlag::O_RDONLY | OFlag::O_NONBLOCK, Mode::empty()) else { return String::new() };
    let mut text = String::new();
    let _ = std::fs::File::from(fd).take(4 << 20).read_to_string(&mut text);
    text
}

/// Adds the container's own mounts (`-v`, `--mount`) to the spec, parents before children;
/// one on a path the engine binds (/etc/hosts, /etc/resolv.conf, /etc/hostname) takes its place.
pub fn add_mounts(spec: &mut Spec, wanted: &[MountRequest], planned: &[MountRecord]) {
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    mounts.retain(|m| !wanted.iter().any(|w| w.target == m.destination().as_path()));
    let mut ours: Vec<(&MountRequest, &MountRecord)> = wanted.iter().zip(planned).collect();
    ours.sort_by_key(|(w, _)| w.target.components().count());
    for (w, record) in ours {
        let mut options: Vec<String> = match w.kind {
            MountKind::Tmpfs => {
                let mut o: Vec<String> = ["nosuid", "nodev", "noexec"].map(String::from).to_vec();
                o.push(format!("mode={:o}", w.tmpfs_mode.unwrap_or(0o1777)));
                o.extend(w.tmpfs_size.map(|s| format!("size={s}")));
                o
            }
            _ => vec!["rbind".into(), w.propagation.clone().unwrap_or_else(|| "rprivate".into())],
        };
        if w.read_only {
            options.push("ro".into());
        }
        let (typ, source) = if w.kind == MountKind::Tmpfs { ("tmpfs", PathBuf::from("tmpfs")) } else { ("bind", PathBuf::from(&record.source)) };
        mounts.push(MountBuilder::default().destination(w.target.clone()).typ(typ).source(source).options(options).build().expect("mount builds"));
    }
    spec.set_mounts(Some(mounts));
}

#[cfg(test)]
mod tests {
    use super::*;

    static NO_OVERRIDES: std::sync::LazyLock<ProcessOverrides> = std::sync::LazyLock::new(ProcessOverrides::default);

    fn input<'a>(image: &'a ImageConfig, command: &'a [String], env: &'a [String], limits: &'a Limits) -> SpecInput<'a> {
        SpecInput {
            process: &NO_OVERRIDES,
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

    /// The spec with its seccomp rules counted rather than listed (engine::seccomp tests them).
    fn seccomp_summarized(mut spec: Spec) -> Spec {
        if let Some(seccomp) = spec.linux_mut().as_mut().and_then(|l| l.seccomp_mut().as_mut()) {
            let rules = seccomp.syscalls().as_ref().map_or(0, Vec::len);
            seccomp.set_syscalls(Some(vec![oci_spec::runtime::LinuxSyscallBuilder::default().names(vec![format!("{rules} rules")]).build().unwrap()]));
        }
        spec
    }

    #[test]
    fn container_spec_snapshot() {
        let image = ImageConfig { env: vec!["PATH=/bin".into(), "A=1".into()], cmd: vec!["/bin/sh".into()], ..Default::default() };
        let command = vec!["sleep".to_string(), "100".to_string()];
        let env = vec!["A=2".to_string(), "B=3".to_string()];
        let limits = Limits { memory: Some(64 << 20), cpus: Some(0.5), pids: Some(100) };
        let spec = container_spec(&input(&image, &command, &env, &limits)).unwrap();
        insta::assert_snapshot!(crate::runtime::spec::to_json(&seccomp_summarized(spec)));
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

    /// A rootfs with the image's /etc/passwd and /etc/group.
    fn rootfs_with_users() -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("etc")).unwrap();
        std::fs::write(tmp.path().join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n").unwrap();
        std::fs::write(tmp.path().join("etc/group"), "root:x:0:\napp:x:1000:\nstaff:x:50:app,other\nwheel:x:10:app\n").unwrap();
        tmp
    }

    #[test]
    fn run_overrides_snapshot() {
        let rootfs = rootfs_with_users();
        let image = ImageConfig { entrypoint: vec!["/entry".into()], cmd: vec!["default".into()], working_dir: "/img".into(), ..Default::default() };
        let over = ProcessOverrides {
            entrypoint: Some(vec!["/bin/sh".into()]),
            workdir: Some("/work".into()),
            user: Some("app:staff".into()),
            cap_add: vec!["sys_admin".into()],
            cap_drop: vec!["CAP_NET_RAW".into(), "mknod".into()],
            read_only: true,
            labels: [("tier".to_string(), "front".to_string())].into(),
            security: crate::engine::security::SecurityOpts { no_new_privileges: true, ..Default::default() },
            privileged: false,
        };
        let command = vec!["-c".to_string(), "id".to_string()];
        let limits = Limits::default();
        let mut spec = container_spec(&SpecInput { rootfs_on_disk: rootfs.path(), process: &over, ..input(&image, &command, &[], &limits) }).unwrap();
        let wanted = vec![
            crate::engine::mounts::parse_volume("/srv/data:/data:ro").unwrap(),
            crate::engine::mounts::parse_mount("type=tmpfs,target=/data/tmp,tmpfs-size=1m").unwrap(),
            crate::engine::mounts::parse_volume("cache:/var/cache").unwrap(),
        ];
        let planned: Vec<MountRecord> = wanted
            .iter()
            .map(|w| MountRecord { source: if w.source == "cache" { "/var/lib/shibafu/volumes/cache/_data".into() } else { w.source.clone() }, ..Default::default() })
            .collect();
        add_mounts(&mut spec, &wanted, &planned);
        insta::assert_snapshot!(crate::runtime::spec::to_json(&seccomp_summarized(spec)));
    }

    #[test]
    fn entrypoint_follows_docker() {
        let image = ImageConfig { entrypoint: vec!["/entry".into()], cmd: vec!["x".into()], ..Default::default() };
        let given = vec!["y".to_string()];
        assert_eq!(command_line(&image, None, &[]).unwrap(), vec!["/entry", "x"]);
        assert_eq!(command_line(&image, None, &given).unwrap(), vec!["/entry", "y"]);
        assert_eq!(command_line(&image, Some(&["/other".into()]), &[]).unwrap(), vec!["/other"], "--entrypoint drops the image's Cmd");
        assert_eq!(command_line(&image, Some(&["/other".into()]), &given).unwrap(), vec!["/other", "y"]);
        assert_eq!(command_line(&image, Some(&[]), &given).unwrap(), vec!["y"], "--entrypoint '' clears it");
        assert!(command_line(&image, Some(&[]), &[]).is_err());
    }

    #[test]
    fn users_resolve_through_the_images_files() {
        let rootfs = rootfs_with_users();
        let r = resolve_user("app", rootfs.path()).unwrap();
        assert_eq!((r.uid, r.gid, r.additional_gids.clone(), r.home.as_str()), (1000, 1000, vec![50, 10], "/home/app"));
        assert_eq!(resolve_user("1000:wheel", rootfs.path()).unwrap().gid, 10);
        let n = resolve_user("4242", rootfs.path()).unwrap();
        assert_eq!((n.uid, n.gid, n.home.as_str()), (4242, 0, "/"));
        assert_eq!(resolve_user("4242:77", rootfs.path()).unwrap().gid, 77);
        assert!(resolve_user("ghost", rootfs.path()).unwrap_err().to_string().contains("unable to find user ghost"));
        assert!(resolve_user("app:ghosts", rootfs.path()).unwrap_err().to_string().contains("unable to find group ghosts"));
    }

    #[test]
    fn user_files_are_read_inside_the_rootfs() {
        let rootfs = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("passwd"), "spy:x:7:7::/:/bin/sh\n").unwrap();
        std::os::unix::fs::symlink(outside.path(), rootfs.path().join("etc")).unwrap();
        assert!(resolve_user("spy", rootfs.path()).is_err(), "the host's file was read through the image's symlink");
    }

    #[test]
    fn capabilities_follow_dockers_rules() {
        let names = |add: &[&str], drop: &[&str]| -> Vec<String> {
            let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
            capabilities(&s(add), &s(drop)).unwrap().iter().map(|c| c.to_string()).collect()
        };
        assert_eq!(names(&[], &[]).len(), DEFAULT_CAPS.len());
        assert!(!names(&[], &["net_raw"]).contains(&"NET_RAW".to_string()));
        assert_eq!(names(&["CAP_NET_ADMIN"], &["ALL"]), vec!["NET_ADMIN"]);
        assert!(names(&["all"], &["SYS_ADMIN"]).len() > DEFAULT_CAPS.len());
        assert!(!names(&["all"], &["SYS_ADMIN"]).contains(&"SYS_ADMIN".to_string()));
        let err = capabilities(&["CAP_FLY".into()], &[]).unwrap_err().to_string();
        assert!(err.contains("unknown capability \"CAP_FLY\""), "{err}");
    }

    #[test]
    fn a_relative_workdir_is_refused() {
        let over = ProcessOverrides { workdir: Some("app".into()), ..Default::default() };
        assert!(over.check().unwrap_err().to_string().contains("needs to be an absolute path"));
    }

    #[test]
    fn a_user_mount_replaces_the_engines_file() {
        let image = ImageConfig { cmd: vec!["sh".into()], ..Default::default() };
        let mut spec = container_spec(&input(&image, &[], &[], &Limits::default())).unwrap();
        let attached = Attached { files: vec![(PathBuf::from("/etc/hosts"), PathBuf::from("/b/hosts"))], ..Default::default() };
        apply_network(&mut spec, &NetworkMode::None, &attached);
        let wanted = vec![crate::engine::mounts::parse_volume("/mine:/etc/hosts").unwrap()];
        add_mounts(&mut spec, &wanted, &[MountRecord { source: "/mine".into(), ..Default::default() }]);
        let hosts: Vec<_> = spec.mounts().as_ref().unwrap().iter().filter(|m| m.destination() == Path::new("/etc/hosts")).collect();
        assert_eq!(hosts.len(), 1);
        assert_eq!(hosts[0].source().as_deref(), Some(Path::new("/mine")));
    }
}
