//! The lifecycle of runc's command line: create, start, state, kill, delete, list, run.

use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::sched::CloneFlags;
use nix::sys::signal::{kill, Signal};
use nix::sys::stat::Mode;
use nix::sys::wait::waitpid;
use nix::unistd::Pid;

use super::cgroups::Cgroup;
use super::error::{Result, RuntimeError};
use super::init::{self, InitContext};
use super::state::{OciState, Record, Status};
use super::sync::{self, Msg};
use super::{foreground, hooks, namespaces, process, seccomp, spec, userns};
use crate::explain;

/// The runtime, working on one state root (runc's `--root`).
#[derive(Debug, Clone)]
pub struct Runtime {
    /// Directory holding one subdirectory per container.
    pub root: PathBuf,
}

/// How to create a container.
#[derive(Debug, Default)]
pub struct CreateOptions {
    /// A unix socket to send the pty master to (runc's `--console-socket`).
    pub console_socket: Option<PathBuf>,
    /// Where to write the init's PID.
    pub pid_file: Option<PathBuf>,
    /// Descriptors for the container's stdin, stdout and stderr (default: ours).
    pub stdio: Option<[RawFd; 3]>,
    /// Keep the pty master ourselves instead of sending it anywhere (foreground `run`).
    pub keep_console: bool,
}

/// A created container.
pub struct Created {
    /// The init's PID.
    pub pid: Pid,
    /// The pty master, when `keep_console` was asked and the process has a terminal.
    pub console: Option<OwnedFd>,
}

/// Checks a container ID the way runc does.
pub fn check_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 1024
        && id != "."
        && id != ".."
        && id.chars().all(|c| c.is_ascii_alphanumeric() || "_+-.".contains(c));
    if ok { Ok(()) } else { Err(RuntimeError::InvalidId(id.into())) }
}

impl Runtime {
    /// A runtime over `root`.
    pub fn new(root: impl Into<PathBuf>) -> Runtime {
        Runtime { root: root.into() }
    }

    /// Sets a container up and leaves its init waiting for `start`.
    pub fn create(&self, id: &str, bundle: &Path, opts: &CreateOptions) -> Result<Created> {
        check_id(id)?;
        let bundle = std::path::absolute(bundle).map_err(RuntimeError::io("resolve bundle path"))?;
        let mut spec = spec::load(&bundle)?;
        // The profile is compiled here, once; the init and the record keep the rest of the spec
        // (a profile of Docker's size is two thirds of a config.json, read at every step).
        let profile = spec.linux_mut().as_mut().and_then(|l| l.seccomp_mut().take());
        let rootfs = spec::rootfs_path(&spec, &bundle);
        let plan = namespaces::plan(&spec)?;
        let process = spec.process().as_ref().expect("checked by spec::load");
        let terminal = process.terminal() == Some(true);
        std::fs::create_dir_all(&self.root).map_err(RuntimeError::io(format!("create {}", self.root.display())))?;
        let dir = Record::dir(&self.root, id);
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Err(RuntimeError::Exists(id.into())),
            Err(e) => return Err(RuntimeError::io(format!("create {}", dir.display()))(e)),
        }
        let mut undo = Undo { dir: dir.clone(), child: None, cgroup: None, armed: true };
        let fifo = dir.join("exec.fifo");
        nix::unistd::mkfifo(&fifo, Mode::from_bits_truncate(0o622)).map_err(RuntimeError::sys("mkfifo exec.fifo"))?;
        // Writable by others, whatever the umask: an init in a user namespace is one.
        std::fs::set_permissions(&fifo, std::os::unix::fs::PermissionsExt::from_mode(0o622)).map_err(RuntimeError::io("chmod exec.fifo"))?;

        let (console_for_child, console_for_us) = console_ends(terminal, opts)?;
        let new_user_ns = plan.clone_flags.contains(CloneFlags::CLONE_NEWUSER);
        let id_maps = userns::maps(&spec, new_user_ns)?;
        // The init opens nothing by path in the state directory: in a user namespace it could
        // not reach it.
        let fifo_fd = nix::fcntl::open(&fifo, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty()).map_err(RuntimeError::sys("open exec fifo"))?;
        let joins = namespaces::open_joins(&plan.joins)?;
        // PID namespaces apply to children: join before the clone, the rest in the child; but
        // for a child in a new user namespace, the runtime joins the host's others for it.
        let early = if new_user_ns { namespaces::JOINED_BEFORE_A_NEW_USER_NS } else { CloneFlags::empty() };
        namespaces::enter(&joins, CloneFlags::CLONE_NEWPID)?;
        let (early_joins, joins): (Vec<_>, Vec<_>) = joins.into_iter().partition(|j| early.contains(j.flag()));
        let (parent, child) = sync::pair()?;
        let mut ctx = InitContext {
            spec: spec.clone(),
            bundle: bundle.clone(),
            rootfs: rootfs.clone(),
            fifo: fifo_fd,
            new_user_ns,
            joins,
            new_cgroup_ns: plan.new_cgroup,
            cgroup_view: None,
            new_net_ns: plan.clone_flags.contains(CloneFlags::CLONE_NEWNET),
            console: console_for_child,
            stdio: opts.stdio,
            seccomp: profile.as_ref().map(|s| seccomp::compile_cached(s, &self.root)).transpose()?,
        };
        if let Some(filter) = &ctx.seccomp {
            filter.write(&dir.join(seccomp::FILTER_FILE)).map_err(RuntimeError::io("keep the container's seccomp filter"))?;
        }
        // The cgroup first, so that the child is born in it.
        let cgroup_path = cgroup_path(&spec, id);
        let linux = spec.linux().as_ref();
        let resources = linux.and_then(|l| l.resources().as_ref());
        let created = linux.and_then(|l| l.devices().as_deref()).unwrap_or_default();
        let cgroup = Cgroup::create(&cgroup_path, resources, created)?;
        undo.cgroup = cgroup.clone();
        let joins_cgroup_ns = plan.joins.iter().any(|(flag, _)| *flag == CloneFlags::CLONE_NEWCGROUP);
        ctx.cgroup_view = if joins_cgroup_ns { None } else { super::cgroups::container_view(cgroup.as_ref(), plan.new_cgroup) };
        let cgroup_dir = cgroup.as_ref().map(|cg| cg.open()).transpose()?;
        let ours = namespaces::enter_for_clone(&early_joins, early)?;
        // SAFETY: the CLI is single-threaded; the child only runs `init::run`, which execs or exits.
        let cloned = unsafe { process::clone_process(plan.clone_flags, cgroup_dir.as_ref().map(|d| d.as_fd())) };
        if !matches!(cloned, Ok(process::CloneOutcome { child: None, .. })) {
            ours.restore()?;
        }
        let cloned = cloned?;
        let Some(pid) = cloned.child else {
            drop(parent);
            init::run(ctx, child)
        };
        drop(child);
        drop(ctx);
        undo.child = Some(pid);
        if let (Some(cg), false) = (&cgroup, cloned.in_cgroup) {
            cg.add(pid.as_raw())?;
        }
        if let Some(maps) = &id_maps {
            userns::write(pid.as_raw(), maps)?;
        }
        parent.send(&Msg::Go)?;

        let (pid_start, _) = super::state::proc_stat(pid.as_raw()).unwrap_or((0, 'R'));
        let record = Record {
            id: id.into(),
            pid: pid.as_raw(),
            pid_start,
            bundle: bundle.clone(),
            rootfs,
            created: humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string(),
            cgroup: cgroup.map(|c| c.path),
            config: spec.clone(),
            seccomp: profile.is_some(),
        };
        loop {
            match parent.recv()? {
                Some(Msg::Hooks) => {
                    // The spec gives these hooks the state as `created`.
                    let state = record.oci_state(Status::Created).to_json();
                    let h = spec.hooks().clone().unwrap_or_default();
                    hooks::run_all("createRuntime", h.create_runtime().as_deref().unwrap_or_default(), &state)?;
                    hooks::run_all("prestart", h.prestart().as_deref().unwrap_or_default(), &state)?;
                    parent.send(&Msg::Go)?;
                }
                Some(Msg::Created) => break,
                Some(Msg::Error(e)) => return Err(RuntimeError::Init(e)),
                Some(Msg::Go) | None => return Err(RuntimeError::Init("the container's init exited during set-up".into())),
            }
        }
        let console = match console_for_us {
            Some(sock) => Some(super::tty::recv_fd(sock.as_fd())?),
            None => None,
        };
        record.save(&self.root)?;
        if let Some(path) = &opts.pid_file {
            write_pid_file(path, pid)?;
        }
        undo.armed = false;
        Ok(Created { pid, console })
    }

    /// Lets a created container's init exec the user's program, then runs poststart hooks.
    pub fn start(&self, id: &str) -> Result<()> {
        let record = Record::load(&self.root, id)?;
        let status = record.status(&self.root);
        if status != Status::Created {
            return Err(RuntimeError::WrongState { id: id.into(), status: status.to_string(), what: "only a created container can be started".into() });
        }
        let fifo = Record::dir(&self.root, id).join("exec.fifo");
        explain::step(|| format!("cat {}   # releases the init to exec", fifo.display()));
        read_fifo(&fifo, &record)?;
        let _ = std::fs::remove_file(&fifo);
        if let Some(list) = record.config.hooks().as_ref().and_then(|h| h.poststart().clone()) {
            let state = record.oci_state(Status::Running).to_json();
            hooks::run_all_warning("poststart", &list, &state);
        }
        Ok(())
    }

    /// The OCI state of a container.
    pub fn state(&self, id: &str) -> Result<OciState> {
        let record = Record::load(&self.root, id)?;
        let status = record.status(&self.root);
        Ok(record.oci_state(status))
    }

    /// Every container in the state root.
    pub fn list(&self) -> Result<Vec<OciState>> {
        let mut out = Vec::new();
        let Ok(entries) = std::fs::read_dir(&self.root) else { return Ok(out) };
        for entry in entries.flatten() {
            if let Ok(state) = self.state(&entry.file_name().to_string_lossy()) {
                out.push(state);
            }
        }
        out.sort_by(|a, b| a.created.cmp(&b.created));
        Ok(out)
    }

    /// Sends a signal to the init, or with `all` to every process of the container.
    pub fn kill(&self, id: &str, signal: Signal, all: bool) -> Result<()> {
        let record = Record::load(&self.root, id)?;
        let status = record.status(&self.root);
        if status == Status::Stopped {
            return Err(RuntimeError::WrongState { id: id.into(), status: status.to_string(), what: "cannot signal a stopped container".into() });
        }
        explain::step(|| format!("kill -{} {}", signal.as_str().trim_start_matches("SIG"), record.pid));
        let cgroup_pids = record.cgroup.as_ref().map(|p| Cgroup { path: p.clone() }.pids()).unwrap_or_default();
        if all && !cgroup_pids.is_empty() {
            for pid in cgroup_pids {
                let _ = kill(Pid::from_raw(pid), signal);
            }
            return Ok(());
        }
        kill(Pid::from_raw(record.pid), signal).map_err(RuntimeError::sys(format!("kill {}", record.pid)))
    }

    /// Removes a stopped container (with `force`, kills it first), then runs poststop hooks,
    /// whose failures are reported but never stop the deletion.
    pub fn delete(&self, id: &str, force: bool) -> Result<()> {
        let record = Record::load(&self.root, id)?;
        let status = record.status(&self.root);
        if status != Status::Stopped {
            if !force {
                return Err(RuntimeError::WrongState { id: id.into(), status: status.to_string(), what: "stop it first, or use delete --force".into() });
            }
            let _ = kill(Pid::from_raw(record.pid), Signal::SIGKILL);
            wait_gone(record.pid, record.pid_start);
        }
        if let Some(path) = &record.cgroup {
            Cgroup { path: path.clone() }.remove()?;
        }
        if let Some(list) = record.config.hooks().as_ref().and_then(|h| h.poststop().clone()) {
            let state = record.oci_state(Status::Stopped).to_json();
            hooks::run_all_warning("poststop", &list, &state);
        }
        let dir = Record::dir(&self.root, id);
        explain::step(|| format!("rm -r {}", dir.display()));
        std::fs::remove_dir_all(&dir).map_err(RuntimeError::io(format!("remove {}", dir.display())))
    }

    /// create + start + wait + delete, with signals forwarded and, for a terminal, our stdio
    /// joined to the container's pty. `started` runs once the user's process runs. With
    /// `detach`, returns after start. Returns the exit code.
    pub fn run(&self, id: &str, bundle: &Path, opts: CreateOptions, detach: bool, started: impl FnOnce()) -> Result<i32> {
        let signals = if detach { None } else { Some(foreground::block_signals()?) };
        let opts = CreateOptions { keep_console: !detach && opts.console_socket.is_none(), ..opts };
        let created = match self.create(id, bundle, &opts) {
            Ok(c) => c,
            Err(e) => {
                foreground::restore(signals);
                return Err(e);
            }
        };
        // The pty takes our terminal's size before the process runs: its first `stty size`
        // must not see 0 x 0.
        if let Some(master) = &created.console {
            super::tty::copy_winsize(std::io::stdin().as_raw_fd(), master.as_raw_fd());
        }
        if let Err(e) = self.start(id) {
            let _ = self.delete(id, true);
            foreground::restore(signals);
            return Err(e);
        }
        started();
        let Some(signals) = signals else { return Ok(0) };
        let code = foreground::wait(created.pid, created.console, &signals);
        foreground::restore(Some(signals));
        self.delete(id, true)?;
        Ok(code)
    }
}

/// The cgroup path: the spec's `cgroupsPath`, or `shibafu/<id>` (cgroups::DEFAULT_PARENT).
fn cgroup_path(spec: &oci_spec::runtime::Spec, id: &str) -> PathBuf {
    spec.linux()
        .as_ref()
        .and_then(|l| l.cgroups_path().clone())
        .map(|p| PathBuf::from(p.display().to_string().replace(':', "/")))
        .unwrap_or_else(|| PathBuf::from(super::cgroups::DEFAULT_PARENT).join(id))
}

/// The two ends for the terminal: what the child sends on, and what we receive from.
fn console_ends(terminal: bool, opts: &CreateOptions) -> Result<(Option<OwnedFd>, Option<OwnedFd>)> {
    if !terminal {
        return Ok((None, None));
    }
    if let Some(path) = &opts.console_socket {
        let stream = UnixStream::connect(path).map_err(RuntimeError::io(format!("connect console socket {}", path.display())))?;
        return Ok((Some(stream.into()), None));
    }
    if opts.keep_console {
        let (a, b) = UnixStream::pair().map_err(RuntimeError::io("console socketpair"))?;
        return Ok((Some(a.into()), Some(b.into())));
    }
    Err(RuntimeError::Init("process.terminal is true: pass --console-socket, or run in the foreground".into()))
}

fn write_pid_file(path: &Path, pid: Pid) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, pid.to_string()).map_err(RuntimeError::io(format!("write {}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(RuntimeError::io(format!("write {}", path.display())))
}

/// Opens the fifo without blocking and waits for the init's byte, giving up if it died.
fn read_fifo(fifo: &Path, record: &Record) -> Result<()> {
    use nix::fcntl::OFlag;
    let fd = nix::fcntl::open(fifo, OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(RuntimeError::sys("open exec fifo"))?;
    loop {
        let mut byte = [0u8; 1];
        match nix::unistd::read(&fd, &mut byte) {
            Ok(1) => return Ok(()),
            Ok(_) | Err(nix::errno::Errno::EAGAIN) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(RuntimeError::sys("read exec fifo")(e)),
        }
        if !super::state::process_alive(record.pid, record.pid_start) {
            // It may have written its byte and exited since the read above (a /bin/true does
            // both at once): the byte stays in the fifo, so read once more.
            if matches!(nix::unistd::read(&fd, &mut byte), Ok(1)) {
                return Ok(());
            }
            return Err(RuntimeError::Init("the container's init is gone".into()));
        }
        let mut pfd = [nix::poll::PollFd::new(fd.as_fd(), nix::poll::PollFlags::POLLIN)];
        let _ = nix::poll::poll(&mut pfd, nix::poll::PollTimeout::from(100u16));
    }
}

/// Waits (up to 10 s) for a process that is not our child to disappear.
fn wait_gone(pid: i32, start: u64) {
    for _ in 0..10_000 {
        // Reap it if it happens to be ours.
        let _ = waitpid(Pid::from_raw(pid), Some(nix::sys::wait::WaitPidFlag::WNOHANG));
        if !super::state::process_alive(pid, start) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// Undoes a half-made container when `create` fails.
struct Undo {
    dir: PathBuf,
    child: Option<Pid>,
    cgroup: Option<Cgroup>,
    armed: bool,
}

impl Drop for Undo {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Some(pid) = self.child {
            let _ = kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
        }
        if let Some(cg) = &self.cgroup {
            let _ = cg.remove();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
