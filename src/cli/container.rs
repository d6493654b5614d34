//! Container commands: run, list (ps), exec, stop, rm, logs.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::engine::health::HealthFlags;
use crate::engine::list::{ContainerSummary, Filters};
use crate::engine::mounts;
use crate::engine::logfile::{parse_log_opts, parse_tail, parse_time, LogFilter};
use crate::engine::logs::LogsOptions;
use crate::engine::restart::RestartPolicy;
use crate::engine::run::{RunOptions, RunOutcome};
use crate::engine::spec::{Limits, ProcessOverrides};
use crate::engine::start::StartFilter;
use crate::engine::Engine;
use crate::network::files::{self, ExtraHost};
use crate::network::ports::{self, PortMap, Protocol};
use crate::network::NetworkMode;
use crate::state::containers::DnsSettings;

/// `run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Container name.
    #[arg(long)]
    pub name: Option<String>,
    /// Run in the background; print the ID.
    #[arg(short, long)]
    pub detach: bool,
    /// Environment, KEY=VALUE (repeatable).
    #[arg(short, long = "env")]
    pub env: Vec<String>,
    /// Remove the container when it exits.
    #[arg(long)]
    pub rm: bool,
    /// OCI runtime: shibafu (built in), runc, crun, or a path.
    #[arg(long, default_value = crate::engine::oci::BUILTIN)]
    pub runtime: String,
    /// Memory limit (bytes, or with k/m/g).
    #[arg(long)]
    pub memory: Option<String>,
    /// CPU limit, in CPUs (0.5 = half of one).
    #[arg(long)]
    pub cpus: Option<f64>,
    /// Most processes the container may have.
    #[arg(long)]
    pub pids_limit: Option<i64>,
    /// Network: bridge (the default, on ctr0), none, host, or a network's name (repeatable:
    /// one interface on each).
    #[arg(long = "network", alias = "net")]
    pub network: Vec<String>,
    /// The container's host name (default: the first 12 digits of its ID); on user networks
    /// its DNS name too.
    #[arg(long)]
    pub hostname: Option<String>,
    /// Another name the container answers to on its networks' DNS (repeatable).
    #[arg(long = "network-alias")]
    pub network_alias: Vec<String>,
    /// Publish a port: [[HOST_IP:]HOST_PORT:]CONTAINER_PORT[/tcp|/udp] (repeatable); without a
    /// host port, one from 30000-32767. A container that publishes runs in the background.
    #[arg(short, long = "publish")]
    pub publish: Vec<String>,
    /// Restart policy: no, on-failure[:N], always or unless-stopped (runs in the background;
    /// back-off 100ms doubling to 1m).
    #[arg(long, default_value = "no")]
    pub restart: String,
    /// Health check: a shell command run in the container (exit 0: healthy).
    #[arg(long)]
    pub health_cmd: Option<String>,
    /// Time between two checks (default 30s).
    #[arg(long)]
    pub health_interval: Option<String>,
    /// Time one check may take (default 30s).
    #[arg(long)]
    pub health_timeout: Option<String>,
    /// Failures in a row that make it unhealthy (default 3).
    #[arg(long)]
    pub health_retries: Option<u32>,
    /// Time after the start in which failures do not count (default 0s).
    #[arg(long)]
    pub health_start_period: Option<String>,
    /// No health check, not even the image's.
    #[arg(long)]
    pub no_healthcheck: bool,
    /// Log rotation: max-size=SIZE (default 10m), max-file=COUNT (default 3) (repeatable).
    #[arg(long = "log-opt")]
    pub log_opt: Vec<String>,
    /// Run on these named layers (prepare-layer), bottom first, instead of an image; the
    /// first word after the flags is then the command.
    #[arg(long, value_delimiter = ',')]
    pub layers: Option<Vec<String>>,
    /// Mount: /HOST:CTR[:ro] (a bind; a missing host dir is made), NAME:CTR[:ro] (a named
    /// volume, made on first use), or CTR (an anonymous volume) (repeatable).
    #[arg(short = 'v', long = "volume")]
    pub volume: Vec<String>,
    /// Mount: type=bind|volume|tmpfs,source=..,target=..[,readonly][,tmpfs-size=..][,tmpfs-mode=..]
    /// (repeatable).
    #[arg(long = "mount")]
    pub mount: Vec<String>,
    /// Mount a fresh tmpfs: PATH[:size=64m,mode=1777,ro] (repeatable).
    #[arg(long = "tmpfs")]
    pub tmpfs: Vec<String>,
    /// Working directory inside the container (made when missing).
    #[arg(short = 'w', long = "workdir")]
    pub workdir: Option<String>,
    /// Run as USER[:GROUP], names (from the image's /etc/passwd, /etc/group) or numbers.
    #[arg(short = 'u', long = "user")]
    pub user: Option<String>,
    /// Replace the image's entrypoint (and its default command); "" clears it.
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Keep stdin open (a foreground container always reads ours; a detached one gets a pipe
    /// that stays open).
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Give the container a terminal even when stdin is none.
    #[arg(short = 't', long)]
    pub tty: bool,
    /// A label, KEY=VALUE or KEY (repeatable).
    #[arg(short = 'l', long = "label")]
    pub label: Vec<String>,
    /// Read labels from a file of KEY=VALUE lines (repeatable).
    #[arg(long = "label-file")]
    pub label_file: Vec<std::path::PathBuf>,
    /// Add a capability to Docker's default set (NET_ADMIN or CAP_NET_ADMIN; ALL).
    #[arg(long = "cap-add")]
    pub cap_add: Vec<String>,
    /// Drop a capability from it (ALL for every one).
    #[arg(long = "cap-drop")]
    pub cap_drop: Vec<String>,
    /// Mount the root filesystem read-only.
    #[arg(long = "read-only")]
    pub read_only: bool,
    /// no-new-privileges[=true|false], seccomp=unconfined|PROFILE.json (Docker's format; the
    /// default profile otherwise), apparmor=PROFILE|unconfined (repeatable).
    #[arg(long = "security-opt")]
    pub security_opt: Vec<String>,
    /// Give the container every capability and every host device, writable /sys, no masked
    /// paths and no seccomp filter, as Docker's --privileged.
    #[arg(long)]
    pub privileged: bool,
    /// The user namespace: host (the default) or auto (a free range of 65536 host ids, so the
    /// container's root is an unprivileged user on the host).
    #[arg(long)]
    pub userns: Option<String>,
    /// A uid map line CONTAINER_ID:HOST_ID:SIZE for a user namespace of its own (repeatable).
    #[arg(long)]
    pub uidmap: Vec<String>,
    /// A gid map line, as --uidmap (repeatable; the uid map by default).
    #[arg(long)]
    pub gidmap: Vec<String>,
    /// Add NAME:IP to /etc/hosts (IP may be host-gateway: the network's gateway) (repeatable).
    #[arg(long = "add-host")]
    pub add_host: Vec<String>,
    /// A name server for /etc/resolv.conf instead of the default ones (repeatable).
    #[arg(long)]
    pub dns: Vec<String>,
    /// A search domain for /etc/resolv.conf instead of the default ones (repeatable).
    #[arg(long = "dns-search")]
    pub dns_search: Vec<String>,
    /// A resolv.conf option (ndots:2) instead of the default ones (repeatable).
    #[arg(long = "dns-option")]
    pub dns_option: Vec<String>,
    /// The image, as a flag: every word after the flags is then the command.
    #[arg(long = "image", value_name = "REF", conflicts_with = "layers")]
    pub image_ref: Option<String>,
    /// Image (with --image or --layers: the command).
    #[arg(required_unless_present_any = ["image_ref", "layers"])]
    pub image: Option<String>,
    /// Command and arguments (default: the image's).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// `list` / `ps`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Show every container, not only running ones.
    #[arg(short, long)]
    pub all: bool,
    /// table, json (one object a line), a template of Docker's ps placeholders
    /// ({{.ID}}\t{{.Names}}\t{{.Status}}, {{.Label "k"}}), or `table TEMPLATE` with a header.
    #[arg(long, default_value = "table")]
    pub format: String,
    /// Only IDs.
    #[arg(short, long)]
    pub quiet: bool,
    /// KEY=VALUE: id, name (^ $ anchors), label (KEY or KEY=VALUE), status, ancestor, network,
    /// exited, volume, health (starting, healthy, unhealthy, none), publish (host port) and
    /// expose (container port) as PORT[-LAST][/PROTO], before, since (repeatable: the same key
    /// matches either value, different keys all).
    #[arg(short, long = "filter")]
    pub filter: Vec<String>,
    /// Only the N newest containers (of every state).
    #[arg(short = 'n', long = "last")]
    pub last: Option<usize>,
    /// Only the newest container (of every state).
    #[arg(short = 'l', long = "latest")]
    pub latest: bool,
}

/// `exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Environment, KEY=VALUE.
    #[arg(short, long = "env")]
    pub env: Vec<String>,
    /// Accepted for Docker compatibility: stdin is always attached.
    #[arg(short, long, hide = true)]
    pub interactive: bool,
    /// Accepted for Docker compatibility: a terminal is used when stdin is one.
    #[arg(short, long, hide = true)]
    pub tty: bool,
    /// Container name or ID.
    pub container: String,
    /// Command and arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    pub command: Vec<String>,
}

/// `logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Keep printing, across restarts, until the container stops for good or is removed.
    #[arg(short, long)]
    pub follow: bool,
    /// Only the last N lines (or all).
    #[arg(short = 'n', long, default_value = "all")]
    pub tail: String,
    /// Only lines since: RFC 3339, Unix seconds, or a duration back (10m).
    #[arg(long)]
    pub since: Option<String>,
    /// Only lines before: RFC 3339, Unix seconds, or a duration back (10m).
    #[arg(long)]
    pub until: Option<String>,
    /// Each line after its time.
    #[arg(short, long)]
    pub timestamps: bool,
    /// Container name or ID.
    pub container: String,
}

/// `start`.
#[derive(Debug, Args)]
pub struct StartArgs {
    /// Every stopped container (but an unless-stopped one the user stopped).
    #[arg(long)]
    pub all: bool,
    /// With --all: only these, as restart-policy=NAME (repeatable: any of them).
    #[arg(long, requires = "all")]
    pub filter: Vec<String>,
    /// Container names or IDs.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub containers: Vec<String>,
}

/// Runs `run`.
pub fn run(root: &Path, a: RunArgs) -> Result<i32> {
    // Checked before anything is made.
    let restart = RestartPolicy::parse(&a.restart)?;
    let log_opts = parse_log_opts(&a.log_opt).map_err(anyhow::Error::msg)?;
    let health = HealthFlags {
        cmd: a.health_cmd,
        interval: a.health_interval,
        timeout: a.health_timeout,
        start_period: a.health_start_period,
        retries: a.health_retries,
        none: a.no_healthcheck,
    };
    health.check()?;
    let engine = Engine::open(root)?;
    let limits = Limits { memory: a.memory.as_deref().map(parse_size).transpose()?, cpus: a.cpus, pids: a.pids_limit };
    let (image, command) = image_and_command(a.image_ref, a.layers.is_some(), a.image, a.command);
    let publish = a.publish.iter().map(|p| ports::parse(p)).collect::<std::result::Result<Vec<_>, _>>()?;
    let mut mount_requests = a.volume.iter().map(|v| mounts::parse_volume(v)).collect::<std::result::Result<Vec<_>, _>>()?;
    for m in &a.mount {
        mount_requests.push(mounts::parse_mount(m)?);
    }
    for t in &a.tmpfs {
        mount_requests.push(mounts::parse_tmpfs(t)?);
    }
    let process = ProcessOverrides {
        entrypoint: a.entrypoint.map(|e| if e.is_empty() { Vec::new() } else { vec![e] }),
        workdir: a.workdir,
        user: a.user,
        cap_add: a.cap_add,
        cap_drop: a.cap_drop,
        read_only: a.read_only,
        labels: labels(&a.label, &a.label_file)?,
        security: crate::engine::security::SecurityOpts::parse(&a.security_opt)?,
        privileged: a.privileged,
    };
    let extra_hosts = a.add_host.iter().map(|h| ExtraHost::parse(h)).collect::<std::result::Result<Vec<_>, _>>()?;
    for server in &a.dns {
        files::check_dns_server(server)?;
    }
    let dns = DnsSettings { servers: a.dns, search: a.dns_search, options: a.dns_option, hosts: a.add_host };
    let opts = RunOptions {
        image,
        layers: a.layers,
        command,
        name: a.name,
        // A published service is reached from outside, a restarted or checked one needs its
        // monitor; the output goes to `logs`.
        detach: a.detach || !publish.is_empty() || restart != RestartPolicy::No || health.cmd.is_some(),
        env: a.env,
        remove: a.rm,
        runtime: a.runtime,
        limits,
        network: NetworkMode::parse(&a.network)?,
        publish,
        hostname: a.hostname,
        aliases: a.network_alias,
        restart,
        health,
        log_opts,
        mounts: mount_requests,
        process,
        userns: crate::engine::userns::UsernsMode::parse(a.userns.as_deref(), &a.uidmap, &a.gidmap)?,
        tty: a.tty,
        interactive: a.interactive,
        extra_hosts,
        dns,
    };
    match engine.run(&opts)? {
        RunOutcome::Exited(code) => Ok(code),
        RunOutcome::Started { id, ports, .. } if ports.is_empty() => {
            println!("{id}");
            Ok(0)
        }
        RunOutcome::Started { name, ports, .. } => {
            let at: Vec<String> = ports.iter().map(reach).collect();
            println!("Container {name} started, accessible at {}", at.join(", "));
            Ok(0)
        }
    }
}

/// The image and the command: with --image or --layers, what clap took for the image is the
/// command's first word.
fn image_and_command(image_ref: Option<String>, layers: bool, positional: Option<String>, rest: Vec<String>) -> (String, Vec<String>) {
    match (image_ref, layers) {
        (Some(image), _) => (image, positional.into_iter().chain(rest).collect()),
        (None, true) => (String::new(), positional.into_iter().chain(rest).collect()),
        (None, false) => (positional.unwrap_or_default(), rest),
    }
}

/// Where a published port is reached from the host: `localhost:30001`, `127.0.0.1:8080/udp`.
fn reach(p: &PortMap) -> String {
    let host = if p.host_ip.is_unspecified() { "localhost".to_string() } else { p.host_ip.to_string() };
    let proto = if p.protocol == Protocol::Tcp { "" } else { "/udp" };
    format!("{host}:{}{proto}", p.host_port)
}

/// Runs `port`: a container's published ports, as Docker prints them.
pub fn port(root: &Path, name: &str) -> Result<i32> {
    let engine = Engine::open(root)?;
    for p in engine.ports(name)? {
        println!("{}/{} -> {}:{}", p.container_port, p.protocol.as_str(), p.host_ip, p.host_port);
    }
    Ok(0)
}

/// `--label K=V` and `--label-file FILE` (lines of K=V; blank lines and # comments skipped),
/// the flags after the files, as Docker.
fn labels(flags: &[String], files: &[std::path::PathBuf]) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let mut put = |text: &str, from: &str| -> Result<()> {
        let (k, v) = text.split_once('=').unwrap_or((text, ""));
        if k.trim().is_empty() || k.contains(char::is_whitespace) {
            bail!("invalid label {text:?}{from}: use KEY=VALUE with a KEY of no spaces");
        }
        out.insert(k.to_string(), v.to_string());
        Ok(())
    };
    for file in files {
        let text = std::fs::read_to_string(file).with_context(|| format!("read the label file {}", file.display()))?;
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
            put(line, &format!(" in {}", file.display()))?;
        }
    }
    for label in flags {
        put(label, "")?;
    }
    Ok(out)
}

/// Runs `list`.
pub fn list(root: &Path, a: ListArgs) -> Result<i32> {
    let engine = Engine::open(root)?;
    let filters = Filters::parse(&a.filter)?;
    let newest = if a.latest { Some(1) } else { a.last };
    let mut rows = engine.list_filtered(a.all || newest.is_some(), &filters)?;
    if let Some(n) = newest {
        rows = rows.split_off(rows.len().saturating_sub(n));
    }
    if a.quiet {
        rows.iter().for_each(|c| println!("{}", &c.id[..12]));
        return Ok(0);
    }
    match a.format.as_str() {
        "table" => print_table(&rows),
        format => print!("{}", super::format::format_rows(format, &rows)?),
    }
    Ok(0)
}

fn print_table(rows: &[ContainerSummary]) {
    println!("{:<12}  {:<20}  {:<20}  {:<24}  {:<28}  PORTS", "CONTAINER ID", "NAME", "IMAGE", "COMMAND", "STATUS");
    for c in rows {
        let mut command = c.command.join(" ");
        if command.chars().count() > 22 {
            command = command.chars().take(21).chain(['…']).collect();
        }
        let ports: Vec<String> = c.ports.iter().map(|p| p.to_string()).collect();
        println!("{:<12}  {:<20}  {:<20}  {:<24}  {:<28}  {}", &c.id[..12], c.name, c.image, format!("\"{command}\""), c.status, ports.join(", "));
    }
}

/// Runs `exec`.
pub fn exec(root: &Path, a: ExecArgs) -> Result<i32> {
    Ok(Engine::open(root)?.exec(&a.container, &a.command, &a.env)?)
}

/// Runs `stop`.
pub fn stop(root: &Path, names: &[String], timeout: u64) -> Result<i32> {
    let engine = Engine::open(root)?;
    each(names, |n| engine.stop(n, Duration::from_secs(timeout)))
}

/// Runs `stop --all`: prints each container stopped; goes on past a failure and reports every one.
pub fn stop_all(root: &Path, timeout: u64, shutdown: bool) -> Result<i32> {
    let engine = Engine::open(root)?;
    Ok(report_each("stop", engine.stop_all(Duration::from_secs(timeout), shutdown)?))
}

/// Prints the name of each container `what` went well for, and the error of each other one;
/// the exit code of the last error, or 0.
fn report_each(what: &str, results: Vec<(String, crate::engine::Result<()>)>) -> i32 {
    let mut code = 0;
    for (name, done) in results {
        match done {
            Ok(()) => println!("{name}"),
            Err(e) => {
                eprintln!("shibafu: {what} {name}: {e}");
                code = e.exit_code();
            }
        }
    }
    code
}

/// Does `act` to each named container in turn, printing each name once done; stops at the
/// first failure.
fn each(names: &[String], mut act: impl FnMut(&str) -> crate::engine::Result<()>) -> Result<i32> {
    for n in names {
        act(n)?;
        println!("{n}");
    }
    Ok(0)
}

/// Runs `restart`: each container stopped, then started again (a stopped one just starts).
pub fn restart(root: &Path, names: &[String], timeout: u64) -> Result<i32> {
    let engine = Engine::open(root)?;
    each(names, |n| engine.restart(n, Duration::from_secs(timeout)))
}

/// Runs `rm`; with `volumes`, the containers' anonymous volumes go too.
pub fn rm(root: &Path, names: &[String], force: bool, volumes: bool) -> Result<i32> {
    let engine = Engine::open(root)?;
    each(names, |n| engine.rm(n, force, volumes))
}

/// Runs `logs`.
pub fn logs(root: &Path, a: LogsArgs) -> Result<i32> {
    let now = std::time::SystemTime::now();
    let time = |t: &Option<String>| t.as_deref().map(|t| parse_time(t, now)).transpose().map_err(anyhow::Error::msg);
    let filter = LogFilter { since: time(&a.since)?, until: time(&a.until)?, tail: parse_tail(&a.tail).map_err(anyhow::Error::msg)? };
    let engine = Engine::open(root)?;
    let opts = LogsOptions { follow: a.follow, filter, timestamps: a.timestamps };
    engine.logs(&a.container, &opts, &mut std::io::stdout(), &mut std::io::stderr())?;
    Ok(0)
}

/// Runs `start`: prints each container started; with --all, goes on past a failure and
/// reports every one.
pub fn start(root: &Path, a: StartArgs) -> Result<i32> {
    let filter = StartFilter::parse(&a.filter)?;
    let engine = Engine::open(root)?;
    if !a.all {
        for n in &a.containers {
            engine.start(n)?;
            println!("{n}");
        }
        return Ok(0);
    }
    Ok(report_each("start", engine.start_all(&filter)?))
}

/// `512m`, `1g`, `65536` -> bytes.
pub fn parse_size(text: &str) -> Result<i64> {
    crate::storage::limits::parse_size(text).map(|n| n as i64).map_err(anyhow::Error::msg)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn run_args(words: &[&str]) -> (String, Vec<String>) {
        let cli = Cli::try_parse_from(["shibafu", "run"].iter().chain(words)).unwrap_or_else(|e| panic!("{words:?}: {e}"));
        let Command::Run(a) = cli.command else { panic!("not run") };
        image_and_command(a.image_ref, a.layers.is_some(), a.image, a.command)
    }

    #[test]
    fn the_image_comes_by_flag_or_first_and_the_rest_is_the_command() {
        let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(run_args(&["--image", "web:1", "sh", "-c", "echo hi"]), ("web:1".into(), words(&["sh", "-c", "echo hi"])));
        assert_eq!(run_args(&["--image", "web:1", "--name", "w"]), ("web:1".into(), vec![]));
        assert_eq!(run_args(&["busybox", "echo", "-n", "x"]), ("busybox".into(), words(&["echo", "-n", "x"])));
        assert_eq!(run_args(&["--layers", "a,b", "python", "app.py"]), (String::new(), words(&["python", "app.py"])));
        assert!(Cli::try_parse_from(["shibafu", "run", "--image", "x", "--layers", "a", "sh"]).is_err(), "one image at a time");
        assert!(Cli::try_parse_from(["shibafu", "run", "--name", "w"]).is_err(), "an image is needed");
    }
}
