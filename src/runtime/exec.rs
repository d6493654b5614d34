//! `exec`: a new process inside a running container, joining every namespace and the cgroup
//! of its init.

use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use oci_spec::runtime::Process;

use super::cgroups::Cgroup;
use super::container::Runtime;
use super::error::{Result, RuntimeError};
use super::state::{Record, Status};
use super::sync::{self, Msg};
use super::{foreground, namespaces, process, seccomp, tty};

/// How to exec.
#[derive(Debug, Default)]
pub struct ExecOptions {
    /// Return right after the process started.
    pub detach: bool,
    /// Where to write the new process's PID.
    pub pid_file: Option<PathBuf>,
    /// A unix socket to send the pty master to.
    pub console_socket: Option<PathBuf>,
}

impl Runtime {
    /// The container's own process settings, for building an exec process from.
    pub fn process_template(&self, id: &str) -> Result<Process> {
        let record = Record::load(&self.root, id)?;
        Ok(record.config.process().clone().unwrap_or_default())
    }

    /// Runs `process` in container `id`. Returns its exit code, or 0 once started with `detach`.
    pub fn exec(&self, id: &str, process: &Process, opts: &ExecOptions) -> Result<i32> {
        let record = Record::load(&self.root, id)?;
        let status = record.status(&self.root);
        if status != Status::Running && status != Status::Created {
            return Err(RuntimeError::WrongState { id: id.into(), status: status.to_string(), what: "cannot exec in a container that is not running".into() });
        }
        let terminal = process.terminal() == Some(true);
        if terminal && opts.detach && opts.console_socket.is_none() {
            return Err(RuntimeError::Init("a detached terminal needs --console-socket".into()));
        }
        let joins = namespaces::open_joins(&namespaces::of_process(record.pid))?;
        // The container's filter holds for every process in it, as runc's exec.
        let filter = if record.seccomp {
            let path = Record::dir(&self.root, id).join(seccomp::FILTER_FILE);
            Some(seccomp::Filter::read(&path).ok_or_else(|| RuntimeError::Init(format!("container {id}: its seccomp filter {} is missing or damaged; no exec without it", path.display())))?)
        } else {
            // A record from before filters were kept beside it still holds the profile.
            record.config.linux().as_ref().and_then(|l| l.seccomp().as_ref()).map(|s| seccomp::compile_cached(s, &self.root)).transpose()?
        };
        // PID namespaces apply to children: join before the clone, the rest in the child.
        let (console_child, console_us) = match (&opts.console_socket, terminal) {
            (_, false) => (None, None),
            (Some(path), true) => {
                let s = UnixStream::connect(path).map_err(RuntimeError::io(format!("connect {}", path.display())))?;
                (Some(s), None)
            }
            (None, true) => {
                let (a, b) = UnixStream::pair().map_err(RuntimeError::io("console socketpair"))?;
                (Some(a), Some(b))
            }
        };
        let signals = if opts.detach { None } else { Some(foreground::block_signals()?) };
        namespaces::enter(&joins, CloneFlags::CLONE_NEWPID)?;
        let (parent, child) = sync::pair()?;
        let cgroup_dir = record.cgroup.as_ref().map(|path| Cgroup { path: path.clone() }.open()).transpose()?;
        // SAFETY: single-threaded; the child execs or exits.
        let cloned = unsafe { process::clone_process(CloneFlags::empty(), cgroup_dir.as_ref().map(|d| d.as_fd()))? };
        let pid = match cloned.child {
            None => {
                drop(parent);
                let cgroup = record.cgroup.as_deref().filter(|_| !cloned.in_cgroup);
                let err = match child_steps(cgroup, &joins, process, console_child.as_ref(), filter.as_ref()) {
                    Ok(program) => process::exec(&program),
                    Err(e) => e,
                };
                let _ = child.send(&Msg::Error(err.message()));
                // SAFETY: leaving a cloned child.
                unsafe { libc::_exit(if err.exit_code() == 125 { 1 } else { err.exit_code() }) }
            }
            Some(pid) => pid,
        };
        drop(child);
        drop(console_child);
        // The sync socket closes on exec: no message means the program is running.
        if let Some(Msg::Error(e)) = parent.recv()? {
            let _ = nix::sys::wait::waitpid(pid, None);
            foreground::restore(signals);
            return Err(RuntimeError::Init(e));
        }
        let console = match console_us {
            Some(sock) => Some(tty::recv_fd(sock.as_fd())?),
            None => None,
        };
        if let Some(path) = &opts.pid_file {
            std::fs::write(path, pid.to_string()).map_err(RuntimeError::io(format!("write {}", path.display())))?;
        }
        let Some(signals) = signals else { return Ok(0) };
        let code = foreground::wait(pid, console, &signals);
        foreground::restore(Some(signals));
        Ok(code)
    }
}

/// The exec'd process's steps: into `cgroup` (when it was not born there), the namespaces, the
/// terminal, the identity; the program to exec.
fn child_steps(cgroup: Option<&Path>, joins: &[namespaces::Join], process: &Process, console: Option<&UnixStream>, filter: Option<&seccomp::Filter>) -> Result<process::Program> {
    if let Some(cg) = cgroup {
        std::fs::write(cg.join("cgroup.procs"), "0").map_err(RuntimeError::io("join the container's cgroup"))?;
    }
    // The host may own some of them (the engine's network namespace): those are joined while
    // we still hold our capabilities, before the user namespace.
    namespaces::enter(joins, CloneFlags::all() - CloneFlags::CLONE_NEWNS - CloneFlags::CLONE_NEWPID - CloneFlags::CLONE_NEWUSER)?;
    if joins.iter().any(|j| j.flag() == CloneFlags::CLONE_NEWUSER) {
        namespaces::enter(joins, CloneFlags::CLONE_NEWUSER)?;
        super::userns::become_root()?;
    }
    namespaces::enter(joins, CloneFlags::CLONE_NEWNS)?;
    match console {
        Some(sock) => tty::setup(sock.as_fd(), process.console_size().map(|b| (b.height(), b.width())))?,
        None => {
            let _ = nix::unistd::setsid();
        }
    }
    process::finish(process, filter)
}
