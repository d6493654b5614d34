//! The last steps of every container process, init or exec'd: limits, identity, capabilities,
//! finding the program in the container's PATH, and execve. Also the raw clone(2).

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use std::os::fd::{AsRawFd, BorrowedFd};

use nix::errno::Errno;
use nix::sched::CloneFlags;
use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow, Signal};
use nix::unistd::Pid;
use oci_spec::runtime::Process;

use super::capabilities::CapabilityPlan;
use super::error::{Result, RuntimeError};
use super::{rlimits, user};
use crate::explain;

/// The default PATH when the process environment has none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A program ready for execve.
pub struct Program {
    path: CString,
    argv: Vec<CString>,
    envp: Vec<CString>,
    display: String,
}

/// clone(2) without a new stack, like fork, but creating namespaces. Returns the child's PID
/// in the parent and `None` in the child. With `cgroup` (an open cgroup v2 directory), the
/// child is born in it (clone3's CLONE_INTO_CGROUP): moving a process in afterwards through
/// cgroup.procs makes the kernel wait for every CPU (an RCU grace period), several ms per
/// container. A kernel without clone3, or a cgroup it refuses, falls back to clone(2), and the
/// caller moves the child (see `CloneOutcome::in_cgroup`).
///
/// # Safety
/// The caller must be single-threaded; the child must only exec or _exit.
pub unsafe fn clone_process(flags: CloneFlags, cgroup: Option<BorrowedFd<'_>>) -> Result<CloneOutcome> {
    explain::step(|| super::namespaces::describe(flags));
    if let Some(fd) = cgroup {
        let mut args: libc::clone_args = std::mem::zeroed();
        args.flags = flags.bits() as u64 | CLONE_INTO_CGROUP;
        args.exit_signal = libc::SIGCHLD as u64;
        args.cgroup = fd.as_raw_fd() as u64;
        let ret = libc::syscall(libc::SYS_clone3, &mut args as *mut libc::clone_args, std::mem::size_of::<libc::clone_args>());
        match ret {
            0 => return Ok(CloneOutcome { child: None, in_cgroup: true }),
            pid if pid > 0 => {
                explain::step(|| format!("# the child ({pid}) is born in its cgroup: clone3 with CLONE_INTO_CGROUP, as echo {pid} > cgroup.procs"));
                return Ok(CloneOutcome { child: Some(Pid::from_raw(pid as i32)), in_cgroup: true });
            }
            -1 if matches!(nix::errno::Errno::last(), Errno::ENOSYS | Errno::E2BIG | Errno::EINVAL | Errno::EOPNOTSUPP | Errno::EBUSY) => {}
            _ => return Err(RuntimeError::sys("clone3")(Errno::last())),
        }
    }
    let raw = flags.bits() as libc::c_ulong | libc::SIGCHLD as libc::c_ulong;
    let ret = libc::syscall(libc::SYS_clone, raw, 0usize, 0usize, 0usize, 0usize);
    match ret {
        -1 => Err(RuntimeError::sys("clone")(Errno::last())),
        0 => Ok(CloneOutcome { child: None, in_cgroup: false }),
        pid => Ok(CloneOutcome { child: Some(Pid::from_raw(pid as i32)), in_cgroup: false }),
    }
}

/// clone3's flag: the child starts in the cgroup given by `clone_args.cgroup` (Linux 5.7).
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// What `clone_process` did.
pub struct CloneOutcome {
    /// The child's PID in the parent; `None` in the child.
    pub child: Option<Pid>,
    /// Whether the child was born in the cgroup it was given.
    pub in_cgroup: bool,
}

/// The AppArmor profile, the identity, the working directory and the seccomp filter, in runc's
/// order (for the init and for each exec'd process): the filter as late as it can, which is last with no_new_privs and before the capabilities go without
/// (loading a filter then needs CAP_SYS_ADMIN). Returns the program to exec.
pub fn finish(process: &Process, filter: Option<&super::seccomp::Filter>) -> Result<Program> {
    if let Some(profile) = process.apparmor_profile().as_deref().filter(|p| !p.is_empty()) {
        apply_apparmor(profile)?;
    }
    let nnp = process.no_new_privileges() == Some(true);
    if let Some(filter) = filter.filter(|_| !nnp) {
        filter.load()?;
    }
    apply_identity(process)?;
    enter_cwd(process)?;
    let program = find_program(process)?;
    if let Some(filter) = filter.filter(|_| nnp) {
        filter.load()?;
    }
    Ok(program)
}

/// Asks AppArmor to confine the program we exec next with `profile` (checked to be on by
/// `spec::load`).
fn apply_apparmor(profile: &str) -> Result<()> {
    explain::step(|| format!("echo 'exec {profile}' > /proc/self/attr/apparmor/exec"));
    let text = format!("exec {profile}");
    std::fs::write("/proc/self/attr/apparmor/exec", &text)
        .or_else(|_| std::fs::write("/proc/self/attr/exec", &text))
        .map_err(|e| RuntimeError::Init(format!("apply the AppArmor profile {profile:?}: {e} (is it loaded? aa-status lists them)")))
}

/// Applies rlimits, the user, capabilities and no_new_privs of `process` to ourselves.
pub fn apply_identity(process: &Process) -> Result<()> {
    if let Some(adj) = process.oom_score_adj() {
        explain::step(|| format!("echo {adj} > /proc/self/oom_score_adj"));
        std::fs::write("/proc/self/oom_score_adj", adj.to_string()).map_err(RuntimeError::io("set oom_score_adj"))?;
    }
    rlimits::apply(process.rlimits().as_deref().unwrap_or_default())?;
    let caps = process.capabilities().as_ref().map(CapabilityPlan::from_spec).transpose()?;
    if let Some(caps) = &caps {
        caps.drop_bounding()?;
    }
    user::switch(process.user())?;
    if let Some(caps) = &caps {
        caps.apply()?;
    }
    if process.no_new_privileges() == Some(true) {
        user::no_new_privileges()?;
    }
    Ok(())
}

/// Changes to the process's working directory.
pub fn enter_cwd(process: &Process) -> Result<()> {
    nix::unistd::chdir(process.cwd()).map_err(RuntimeError::sys(format!("chdir {}", process.cwd().display())))
}

/// Finds `args[0]` in the container (through the process's PATH) and builds argv and envp.
pub fn find_program(process: &Process) -> Result<Program> {
    let args = process.args().clone().unwrap_or_default();
    let env = process.env().clone().unwrap_or_default();
    let name = args.first().ok_or_else(|| RuntimeError::Init("process.args is empty".into()))?;
    let path_var = env.iter().find_map(|kv| kv.strip_prefix("PATH=")).unwrap_or(DEFAULT_PATH);
    let path = lookup(name, path_var)?;
    let cstr = |s: &str| CString::new(s).map_err(|_| RuntimeError::Init(format!("{s:?} holds a NUL byte")));
    Ok(Program {
        path: CString::new(path.as_os_str().as_bytes()).map_err(|_| RuntimeError::NotFoundInPath(name.clone()))?,
        argv: args.iter().map(|a| cstr(a)).collect::<Result<_>>()?,
        envp: env.iter().map(|e| cstr(e)).collect::<Result<_>>()?,
        display: args.join(" "),
    })
}

fn lookup(name: &str, path_var: &str) -> Result<PathBuf> {
    let candidates: Vec<PathBuf> = if name.contains('/') {
        vec![PathBuf::from(name)]
    } else {
        path_var.split(':').filter(|d| !d.is_empty()).map(|d| Path::new(d).join(name)).collect()
    };
    let mut denied = false;
    for c in candidates {
        match std::fs::metadata(&c) {
            Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => return Ok(c),
            Ok(_) => denied = true,
            Err(_) => {}
        }
    }
    if denied { Err(RuntimeError::CannotExecute(name.into())) } else { Err(RuntimeError::NotFoundInPath(name.into())) }
}

/// Resets signal handling to what a fresh process expects and executes the program. Only
/// returns by exiting: 127 when the program vanished, 126 when it cannot run.
pub fn exec(program: &Program) -> ! {
    explain::step(|| format!("exec {}", program.display));
    reset_signals();
    let err = nix::unistd::execve(&program.path, &program.argv, &program.envp).unwrap_err();
    let code = if err == nix::errno::Errno::ENOENT { 127 } else { 126 };
    eprintln!("shibafu: exec {}: {err}", program.display);
    // SAFETY: _exit is always safe; no destructors must run in a cloned child.
    unsafe { libc::_exit(code) }
}

/// Unblocks every signal and restores default dispositions (Rust ignores SIGPIPE, and an
/// ignored signal would stay ignored across exec).
pub fn reset_signals() {
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
    for sig in Signal::iterator() {
        if sig != Signal::SIGKILL && sig != Signal::SIGSTOP {
            // SAFETY: restoring SIG_DFL installs no handler code.
            unsafe {
                let _ = nix::sys::signal::signal(sig, nix::sys::signal::SigHandler::SigDfl);
            }
        }
    }
}

/// Sets the host name (and domain name) of a new UTS namespace.
pub fn set_hostname(hostname: Option<&str>, domainname: Option<&str>) -> Result<()> {
    if let Some(h) = hostname {
        explain::step(|| format!("hostname {h}"));
        nix::unistd::sethostname(h).map_err(RuntimeError::sys(format!("sethostname {h}")))?;
    }
    if let Some(d) = domainname {
        explain::step(|| format!("domainname {d}"));
        // SAFETY: the pointer and length describe a live byte slice.
        if unsafe { libc::setdomainname(d.as_ptr().cast(), d.len()) } != 0 {
            return Err(RuntimeError::Init(format!("setdomainname {d}: {}", std::io::Error::last_os_error())));
        }
    }
    Ok(())
}

/// Writes the spec's sysctls under /proc/sys.
pub fn apply_sysctls(sysctls: &std::collections::HashMap<String, String>) -> Result<()> {
    let mut keys: Vec<_> = sysctls.keys().collect();
    keys.sort();
    for key in keys {
        let value = &sysctls[key];
        explain::step(|| format!("sysctl -w {key}={value}"));
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        std::fs::write(&path, value).map_err(RuntimeError::io(format!("sysctl {key}")))?;
    }
    Ok(())
}
