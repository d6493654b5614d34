//! `shibafu runtime ...`: runc's command line over our own runtime, so anything that drives
//! runc can drive shibafu.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use oci_spec::runtime::Process;

use crate::runtime::exec::ExecOptions;
use crate::runtime::{spec, CreateOptions, Runtime};

/// runc's global flags and commands.
#[derive(Debug, Args)]
pub struct RuntimeArgs {
    /// Directory for container state (runc's --root).
    #[arg(long, default_value = "/run/shibafu/runtime")]
    pub root: PathBuf,
    /// Accepted for runc compatibility; logs go to stderr.
    #[arg(long, hide = true)]
    pub log: Option<PathBuf>,
    /// Accepted for runc compatibility.
    #[arg(long, hide = true)]
    pub log_format: Option<String>,
    /// Accepted for runc compatibility.
    #[arg(long, hide = true)]
    pub debug: bool,
    /// Accepted for runc compatibility; cgroups are always managed directly.
    #[arg(long, hide = true)]
    pub systemd_cgroup: bool,
    #[command(subcommand)]
    pub command: RuntimeCommand,
}

/// The lifecycle commands of runc.
#[derive(Debug, Subcommand)]
pub enum RuntimeCommand {
    /// Create a container from a bundle; its process waits for `start`.
    Create(CreateArgs),
    /// Start the process of a created container.
    Start { id: String },
    /// Print the OCI state of a container as JSON.
    State { id: String },
    /// Send a signal (default TERM) to a container.
    Kill {
        id: String,
        #[arg(default_value = "TERM")]
        signal: String,
        /// Signal every process of the container.
        #[arg(short, long)]
        all: bool,
    },
    /// Delete a stopped container (--force: kill it first).
    Delete {
        id: String,
        #[arg(short, long)]
        force: bool,
    },
    /// Create and start a container, and wait for it unless --detach.
    Run {
        #[command(flatten)]
        create: CreateArgs,
        /// Return once the container started.
        #[arg(short, long)]
        detach: bool,
    },
    /// Write a default config.json (as `runc spec`).
    Spec {
        /// Where to write it.
        #[arg(short, long, default_value = ".")]
        bundle: PathBuf,
        /// Accepted for runc compatibility; rootless specs are not produced.
        #[arg(long, hide = true)]
        rootless: bool,
    },
    /// List containers.
    #[command(alias = "ps")]
    List {
        /// table or json.
        #[arg(short, long, default_value = "table")]
        format: String,
        /// Only IDs.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Run a new process in a running container.
    Exec(ExecArgs),
}

/// Flags of `create` and `run`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Container ID.
    pub id: String,
    /// The bundle directory (config.json + rootfs).
    #[arg(short, long, default_value = ".")]
    pub bundle: PathBuf,
    /// Unix socket that receives the pty master.
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    /// File to write the init's PID to.
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// Accepted for runc compatibility.
    #[arg(long, hide = true)]
    pub no_pivot: bool,
    /// Accepted for runc compatibility.
    #[arg(long, hide = true)]
    pub no_new_keyring: bool,
    /// Accepted for runc compatibility: inherited descriptors are kept as they are.
    #[arg(long, hide = true)]
    pub preserve_fds: Option<u32>,
}

/// Flags of `exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Container ID.
    pub id: String,
    /// The command, when no --process file is given.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
    /// A JSON file holding the OCI process to run.
    #[arg(short, long)]
    pub process: Option<PathBuf>,
    /// Allocate a terminal.
    #[arg(short, long)]
    pub tty: bool,
    /// Return once the process started.
    #[arg(short, long)]
    pub detach: bool,
    /// File to write the process's PID to.
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// Unix socket that receives the pty master.
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    /// Working directory.
    #[arg(long)]
    pub cwd: Option<PathBuf>,
    /// Extra environment, KEY=VALUE.
    #[arg(short, long)]
    pub env: Vec<String>,
    /// UID[:GID] to run as.
    #[arg(short, long)]
    pub user: Option<String>,
}

/// Runs one runtime command; returns the exit code.
pub fn run(args: RuntimeArgs) -> Result<i32> {
    let rt = Runtime::new(&args.root);
    match args.command {
        RuntimeCommand::Create(c) => {
            rt.create(&c.id, &c.bundle, &create_options(&c))?;
            Ok(0)
        }
        RuntimeCommand::Start { id } => rt.start(&id).map(|_| 0).map_err(Into::into),
        RuntimeCommand::State { id } => {
            println!("{}", rt.state(&id)?.to_json());
            Ok(0)
        }
        RuntimeCommand::Kill { id, signal, all } => {
            rt.kill(&id, parse_signal(&signal)?, all)?;
            Ok(0)
        }
        RuntimeCommand::Delete { id, force } => {
            match rt.delete(&id, force) {
                Err(crate::runtime::RuntimeError::NotFound(_)) if force => {}
                other => other?,
            }
            Ok(0)
        }
        RuntimeCommand::Run { create, detach } => Ok(rt.run(&create.id, &create.bundle, create_options(&create), detach, || {})?),
        RuntimeCommand::Spec { bundle, .. } => {
            let path = bundle.join("config.json");
            if path.exists() {
                bail!("{} already exists; remove it first", path.display());
            }
            spec::save(&spec::default_spec(), &bundle)?;
            Ok(0)
        }
        RuntimeCommand::List { format, quiet } => {
            list(&rt, &format, quiet)?;
            Ok(0)
        }
        RuntimeCommand::Exec(e) => exec(&rt, e),
    }
}

fn create_options(c: &CreateArgs) -> CreateOptions {
    CreateOptions { console_socket: c.console_socket.clone(), pid_file: c.pid_file.clone(), ..Default::default() }
}

fn list(rt: &Runtime, format: &str, quiet: bool) -> Result<()> {
    let states = rt.list()?;
    if quiet {
        states.iter().for_each(|s| println!("{}", s.id));
        return Ok(());
    }
    match format {
        "json" => println!("{}", serde_json::to_string(&states)?),
        "table" => {
            println!("{:<20} {:<8} {:<10} {:<40} {:<32} OWNER", "ID", "PID", "STATUS", "BUNDLE", "CREATED");
            for s in states {
                println!("{:<20} {:<8} {:<10} {:<40} {:<32} root", s.id, s.pid, s.status, s.bundle.display(), s.created);
            }
        }
        other => bail!("unknown format {other:?}: use table or json"),
    }
    Ok(())
}

fn exec(rt: &Runtime, e: ExecArgs) -> Result<i32> {
    let process = match &e.process {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
            serde_json::from_str::<Process>(&text).with_context(|| format!("parse {}", path.display()))?
        }
        None => {
            if e.command.is_empty() {
                bail!("exec needs a command or --process");
            }
            let mut p = rt.process_template(&e.id)?;
            p.set_args(Some(e.command.clone()));
            p.set_terminal(Some(e.tty));
            let mut env = p.env().clone().unwrap_or_default();
            env.extend(e.env.iter().cloned());
            p.set_env(Some(env));
            if let Some(cwd) = &e.cwd {
                p.set_cwd(cwd.clone());
            }
            if let Some(u) = &e.user {
                let (uid, gid) = parse_user(u)?;
                p.user_mut().set_uid(uid);
                p.user_mut().set_gid(gid);
            }
            p
        }
    };
    let opts = ExecOptions { detach: e.detach, pid_file: e.pid_file, console_socket: e.console_socket };
    Ok(rt.exec(&e.id, &process, &opts)?)
}

/// Parses `UID[:GID]`.
pub fn parse_user(text: &str) -> Result<(u32, u32)> {
    let (u, g) = text.split_once(':').unwrap_or((text, "0"));
    Ok((u.parse().with_context(|| format!("bad uid in {text:?}"))?, g.parse().with_context(|| format!("bad gid in {text:?}"))?))
}

/// Parses a signal as `KILL`, `SIGKILL` or `9`.
pub fn parse_signal(text: &str) -> Result<nix::sys::signal::Signal> {
    use std::str::FromStr;
    if let Ok(n) = text.parse::<i32>() {
        return nix::sys::signal::Signal::try_from(n).with_context(|| format!("unknown signal {text}"));
    }
    let upper = text.to_uppercase();
    let name = if upper.starts_with("SIG") { upper } else { format!("SIG{upper}") };
    nix::sys::signal::Signal::from_str(&name).with_context(|| format!("unknown signal {text}"))
}
