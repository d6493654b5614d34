//! The container's first process, from clone(2) to execve: namespaces, rootfs, terminal,
//! identity; then it waits on the exec fifo until `start`.

use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

use nix::fcntl::OFlag;
use nix::sched::{unshare, CloneFlags};
use nix::sys::stat::Mode;
use oci_spec::runtime::Spec;

use super::error::{Result, RuntimeError};
use super::namespaces::{self, Join};
use super::sync::{Msg, Sync};
use super::{hooks, process, rootfs, seccomp};
use crate::explain;

/// Everything the init needs, prepared by the parent before clone.
pub struct InitContext {
    /// The container's config.
    pub spec: Spec,
    /// Absolute bundle path.
    pub bundle: PathBuf,
    /// Absolute rootfs path.
    pub rootfs: PathBuf,
    /// The exec fifo in the state directory, opened O_PATH by the runtime.
    pub fifo: OwnedFd,
    /// Whether the clone made a new user namespace (the runtime writes its maps before `go`).
    pub new_user_ns: bool,
    /// Namespaces to join (opened in the runtime's view).
    pub joins: Vec<Join>,
    /// Whether to unshare a cgroup namespace after the parent placed us in our cgroup.
    pub new_cgroup_ns: bool,
    /// What the container's cgroup mount binds instead of mounting cgroup2 afresh
    /// (`cgroups::container_view`).
    pub cgroup_view: Option<PathBuf>,
    /// Whether the clone made a new network namespace (whose `lo` starts down).
    pub new_net_ns: bool,
    /// Where to send the pty master, when the process wants a terminal.
    pub console: Option<OwnedFd>,
    /// Descriptors to use as stdin, stdout, stderr instead of the inherited ones.
    pub stdio: Option<[RawFd; 3]>,
    /// The compiled `linux.seccomp`.
    pub seccomp: Option<seccomp::Filter>,
}

/// Runs in the cloned child. Never returns: it execs the user's program or exits.
pub fn run(ctx: InitContext, sync: Sync) -> ! {
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| set_up(&ctx, &sync)));
    let err = match result {
        Ok(Ok(program)) => process::exec(&program),
        Ok(Err(e)) => e.message(),
        Err(_) => "init panicked".to_string(),
    };
    if sync.send(&Msg::Error(err.clone())).is_err() {
        eprintln!("shibafu: {err}");
    }
    // SAFETY: exiting a cloned child without running the parent's destructors.
    unsafe { libc::_exit(1) }
}

fn set_up(ctx: &InitContext, sync: &Sync) -> Result<process::Program> {
    if let Some(fds) = ctx.stdio {
        for (i, fd) in fds.iter().enumerate() {
            // SAFETY: dup2 on descriptors the parent handed us.
            if unsafe { libc::dup2(*fd, i as RawFd) } < 0 {
                return Err(RuntimeError::Init(format!("set up stdio: {}", std::io::Error::last_os_error())));
            }
        }
    }
    expect_go(sync)?;
    if ctx.new_user_ns {
        super::userns::become_root()?;
    }
    namespaces::enter(&ctx.joins, CloneFlags::all() - CloneFlags::CLONE_NEWNS - CloneFlags::CLONE_NEWPID)?;
    namespaces::enter(&ctx.joins, CloneFlags::CLONE_NEWNS)?;
    if ctx.new_cgroup_ns {
        explain::step(|| "unshare --cgroup".into());
        unshare(CloneFlags::CLONE_NEWCGROUP).map_err(RuntimeError::sys("unshare cgroup namespace"))?;
    }
    if ctx.new_net_ns {
        super::loopback::up()?;
    }
    let spec = &ctx.spec;
    process::set_hostname(spec.hostname().as_deref(), spec.domainname().as_deref())?;
    let spec_hooks = spec.hooks().clone().unwrap_or_default();
    if spec_hooks.create_runtime().is_some() || spec_hooks.prestart().is_some() {
        sync.send(&Msg::Hooks)?;
        expect_go(sync)?;
    }
    if let Some(list) = spec_hooks.create_container() {
        hooks::run_all("createContainer", list, "{}")?;
    }
    rootfs::prepare(spec, &ctx.bundle, &ctx.rootfs, ctx.cgroup_view.as_deref(), ctx.new_user_ns)?;
    rootfs::pivot(&ctx.rootfs)?;
    let process = spec.process().as_ref().expect("checked by spec::load");
    if process.terminal() == Some(true) {
        let console = ctx.console.as_ref().ok_or_else(|| RuntimeError::Init("terminal requested without a console".into()))?;
        let size = process.console_size().map(|b| (b.height(), b.width()));
        super::tty::setup(console.as_fd(), size)?;
    } else {
        let _ = nix::unistd::setsid();
    }
    rootfs::finish(spec)?;
    if let Some(sysctls) = spec.linux().as_ref().and_then(|l| l.sysctl().as_ref()) {
        process::apply_sysctls(sysctls)?;
    }
    let program = process::finish(process, ctx.seccomp.as_ref())?;
    sync.send(&Msg::Created)?;
    wait_for_start(&ctx.fifo)?;
    if let Some(list) = spec_hooks.start_container() {
        hooks::run_all("startContainer", list, "{}")?;
    }
    Ok(program)
}

fn expect_go(sync: &Sync) -> Result<()> {
    match sync.recv()? {
        Some(Msg::Go) => Ok(()),
        other => Err(RuntimeError::Init(format!("runtime sent {other:?} instead of go"))),
    }
}

/// Blocks until `start` opens the fifo for reading, then tells it we are going.
fn wait_for_start(fifo: &OwnedFd) -> Result<()> {
    let path = format!("/proc/self/fd/{}", fifo.as_raw_fd());
    let fd = nix::fcntl::open(path.as_str(), OFlag::O_WRONLY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(RuntimeError::sys("open exec fifo for writing"))?;
    nix::unistd::write(&fd, b"0").map_err(RuntimeError::sys("write exec fifo"))?;
    Ok(())
}
