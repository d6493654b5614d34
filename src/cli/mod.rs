//! The command line: clap definitions, one file per command group, turned into calls.

pub mod container;
pub mod distribution;
pub mod dns;
pub mod format;
pub mod image;
pub mod inspect;
pub mod lab;
pub mod layer;
pub mod limits;
pub mod network;
pub mod app;
pub mod paas;
pub mod proxy;
pub mod registry;
pub mod runtime;
pub mod volume;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// shibafu: a container lab, from an OCI runtime up to a small PaaS.
#[derive(Debug, Parser)]
#[command(name = "shibafu", version, about)]
pub struct Cli {
    /// Data root (images, layers, containers, state.db).
    #[arg(long, env = "SHIBAFU_ROOT", default_value = crate::engine::DEFAULT_ROOT)]
    pub root: PathBuf,
    /// Print every kernel-facing step as the command a person would type.
    #[arg(long, global = true)]
    pub explain: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// Every command.
// One value per process, parsed once: the size of its largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a command in a new container from an image.
    Run(container::RunArgs),
    /// List containers.
    #[command(alias = "ps")]
    List(container::ListArgs),
    /// Run a command in a running container.
    Exec(container::ExecArgs),
    /// Stop containers (SIGTERM, then SIGKILL after the timeout).
    Stop {
        /// Seconds to wait before SIGKILL.
        #[arg(short, long, default_value_t = 10)]
        time: u64,
        /// Every running container, all at once.
        #[arg(short, long)]
        all: bool,
        /// With --all: the machine's stop at poweroff, not the user's (restart policies hold at
        /// the next boot, so `unless-stopped` containers come back, as after dockerd stops).
        #[arg(long)]
        shutdown: bool,
        /// Container names or IDs.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        containers: Vec<String>,
    },
    /// Restart containers: stop (SIGTERM, then SIGKILL after the timeout), then start again.
    Restart {
        /// Seconds to wait before SIGKILL.
        #[arg(short, long, default_value_t = 10)]
        time: u64,
        /// Container names or IDs.
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Remove containers.
    Rm {
        /// Kill running containers first.
        #[arg(short, long)]
        force: bool,
        /// Remove their anonymous volumes too (named ones stay).
        #[arg(short, long)]
        volumes: bool,
        /// Container names or IDs.
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Print what a detached container wrote.
    Logs(container::LogsArgs),
    /// Start stopped containers again (detached, with the same config).
    Start(container::StartArgs),
    /// Show containers, images or networks as JSON (Docker's shape), or through --format;
    /// with --explain, the kernel objects behind the fields, as commands to see them.
    Inspect(inspect::InspectArgs),
    /// A container's published ports.
    Port {
        /// Container name or ID.
        container: String,
    },
    /// Manage networks.
    #[command(subcommand)]
    Network(network::NetworkCommand),
    /// Manage volumes.
    #[command(subcommand)]
    Volume(volume::VolumeCommand),
    /// The containers' DNS server (NAME.NETWORK.local).
    #[command(subcommand)]
    Dns(dns::DnsCommand),
    /// The HTTP reverse proxy to containers.
    #[command(subcommand)]
    Proxy(proxy::ProxyCommand),
    /// The PaaS: a deploy API that builds apps from their code and runs them (phase 8).
    #[command(subcommand)]
    Paas(paas::PaasCommand),
    /// Deploy and manage apps on the PaaS, over its API.
    App {
        #[command(flatten)]
        api: app::ApiArgs,
        #[command(subcommand)]
        cmd: app::AppCommand,
    },
    /// Push a named layer to a registry as a one-layer image (HOST/REPO:TAG).
    PushLayer {
        /// The layer's name (prepare-layer).
        layer: String,
        /// Where: HOST[:PORT]/REPO[:TAG].
        target: String,
    },
    /// Make an image in a registry from other images' layers there (mounted, not copied).
    CreateManifest {
        /// Images on the same registry, bottom first: REPO[:TAG],REPO[:TAG].
        #[arg(long, value_delimiter = ',', required = true)]
        layers: Vec<String>,
        /// The new image: HOST[:PORT]/REPO[:TAG].
        target: String,
    },
    /// Push a local image to a registry.
    Push {
        /// Local image.
        image: String,
        /// Where: HOST[:PORT]/REPO[:TAG].
        target: String,
    },
    /// Pull an image from a registry into the local store.
    Pull {
        /// HOST[:PORT]/REPO[:TAG].
        source: String,
    },
    /// The OCI registry (distribution API).
    #[command(subcommand)]
    Registry(registry::RegistryCommand),
    /// Manage images.
    #[command(subcommand)]
    Image(image::ImageCommand),
    /// List images.
    Images,
    /// Write an image's flattened root filesystem as a tar to stdout.
    Export {
        /// Image.
        image: String,
    },
    /// Write an OCI bundle (DIR/rootfs + DIR/config.json) that runc runs unchanged.
    Bundle {
        /// Give the process a terminal (for an interactive shell).
        #[arg(short, long)]
        tty: bool,
        /// Image.
        image: String,
        /// The bundle directory.
        dir: PathBuf,
        /// Command (default: the image's).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Pack a directory (or take a tarball) as a layer named NAME, stored and unpacked once.
    PrepareLayer {
        /// Keep the files' mtimes (default: all 0, so the same tree gives the same digest).
        #[arg(long)]
        keep_mtime: bool,
        /// The layer's name.
        name: String,
        /// A directory, or a tar / tar.gz.
        source: PathBuf,
    },
    /// List layers: names, digests, sizes, users.
    Layers,
    /// Manage layers.
    #[command(subcommand)]
    Layer(layer::LayerCommand),
    /// Turn a container's changes into a new layer on top of its image: a new image.
    Commit {
        /// Container name or ID.
        container: String,
        /// NAME[:TAG] of the new image.
        image: String,
    },
    /// Remove unused layers and blobs, and what crashed runs left behind.
    Gc,
    /// The lab: each phase, where you stand in it, `lab check` of a phase, `lab reset`.
    Lab(lab::LabArgs),
    /// The OCI runtime, with runc's command line.
    Runtime(runtime::RuntimeArgs),
    /// The monitor of a detached container (started by `run -d`, not by hand).
    #[command(hide = true)]
    Monitor {
        /// The runtime the container runs under.
        #[arg(long)]
        runtime: String,
        /// Be the container's health checker (the monitor starts it).
        #[arg(long)]
        health: bool,
        /// Give the container a pty (its output goes to the log).
        #[arg(long)]
        tty: bool,
        /// Keep the container's stdin open until it exits.
        #[arg(long)]
        interactive: bool,
        /// Container ID.
        id: String,
    },
}

/// Runs the parsed command line; returns the process exit code.
pub fn dispatch(cli: Cli) -> Result<i32> {
    crate::explain::enable(cli.explain);
    let root = cli.root.as_path();
    match cli.command {
        Command::Run(a) => container::run(root, a),
        Command::List(a) => container::list(root, a),
        Command::Exec(a) => container::exec(root, a),
        Command::Stop { shutdown: true, all: false, .. } => Err(crate::engine::EngineError::Invalid("--shutdown goes with --all: it is the machine's stop of every container".into()).into()),
        Command::Stop { time, all: false, containers, .. } => container::stop(root, &containers, time),
        Command::Stop { time, all: true, shutdown, .. } => container::stop_all(root, time, shutdown),
        Command::Restart { time, containers } => container::restart(root, &containers, time),
        Command::Rm { force, volumes, containers } => container::rm(root, &containers, force, volumes),
        Command::Logs(a) => container::logs(root, a),
        Command::Start(a) => container::start(root, a),
        Command::Inspect(a) => inspect::inspect(root, a),
        Command::Port { container } => container::port(root, &container),
        Command::Network(cmd) => network::network(root, cmd),
        Command::Volume(cmd) => volume::volume(root, cmd),
        Command::Dns(cmd) => dns::dns(root, cmd),
        Command::Proxy(cmd) => proxy::proxy(root, cmd),
        Command::Paas(cmd) => paas::paas(root, cmd),
        Command::App { api, cmd } => app::app(api, cmd),
        Command::Registry(cmd) => registry::registry(root, cmd),
        Command::PushLayer { layer, target } => distribution::push_layer(root, &layer, &target),
        Command::CreateManifest { layers, target } => distribution::create_manifest(root, &layers, &target),
        Command::Push { image, target } => distribution::push(root, &image, &target),
        Command::Pull { source } => distribution::pull(root, &source),
        Command::Image(cmd) => image::image(root, cmd),
        Command::Images => image::images(root),
        Command::Export { image } => image::export_image(root, &image),
        Command::Bundle { tty, image, dir, command } => image::bundle(root, &image, &dir, &command, tty),
        Command::PrepareLayer { keep_mtime, name, source } => layer::prepare(root, &name, &source, keep_mtime),
        Command::Layers => layer::layers(root),
        Command::Layer(cmd) => layer::layer(root, cmd),
        Command::Commit { container, image } => layer::commit(root, &container, &image),
        Command::Gc => layer::gc(root),
        Command::Lab(args) => lab::lab(root, args),
        Command::Runtime(args) => runtime::run(args),
        Command::Monitor { health: true, id, .. } => Ok(crate::engine::health::serve_checks(root, &id)),
        Command::Monitor { runtime, tty, interactive, id, .. } => {
            Ok(crate::engine::monitor::serve(root, &id, &runtime, crate::engine::monitor::MonitorMode { terminal: tty, interactive }))
        }
    }
}

/// Whether the failure is only that our reader went away (`shibafu export IMG | head`).
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe))
}

/// Docker's exit codes for our own failures: 127 not found, 126 cannot execute, else 125.
pub fn exit_code(err: &anyhow::Error) -> i32 {
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<crate::runtime::RuntimeError>() {
            return e.exit_code();
        }
        if let Some(e) = cause.downcast_ref::<crate::engine::EngineError>() {
            return e.exit_code();
        }
    }
    125
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_has_no_clashing_flags() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_takes_dockers_everyday_flags() {
        let cli = Cli::try_parse_from([
            "shibafu", "run", "-it", "-v", "data:/d", "--mount", "type=tmpfs,dst=/t", "-w", "/w", "-u", "1:2", "-l", "a=b", "--cap-drop", "ALL", "--read-only",
            "--add-host", "h:1.2.3.4", "--dns", "192.0.2.1", "--entrypoint", "", "busybox", "sh", "-c", "true",
        ])
        .unwrap();
        let Command::Run(a) = cli.command else { panic!("not run") };
        assert!(a.interactive && a.tty && a.read_only);
        assert_eq!((a.volume, a.workdir.as_deref(), a.entrypoint.as_deref(), a.command.len()), (vec!["data:/d".to_string()], Some("/w"), Some(""), 3));
        let cli = Cli::try_parse_from(["shibafu", "ps", "-aq", "-f", "status=exited", "-f", "label=x", "--format", "{{.ID}}", "-n", "2"]).unwrap();
        let Command::List(l) = cli.command else { panic!("not list") };
        assert_eq!((l.all, l.quiet, l.filter.len(), l.last), (true, true, 2, Some(2)));
    }
}
