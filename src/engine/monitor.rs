//! The monitor of a detached container (our conmon): a process of its own that owns the
//! container's stdout and stderr, writes them to `log.jsonl` (rotated, see `logfile`), waits
//! for the container, and records its exit status. Under a restart policy it runs the
//! container again, in the same bundle, rootfs and network, after a back-off, and marks each
//! exit and back-off in the log; with a health check it keeps a checker process beside it.
//! Its own messages go to `monitor.log` beside the log.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

use super::logfile::{log_path, LogWriter, EVENT_STREAM, MAX_LINE};
use super::oci::OciRuntime;
use super::restart::{next_backoff, show_duration, RestartPolicy};
use super::{Engine, EngineError, Result};

/// How the monitor runs a container's stdio.
#[derive(Debug, Clone, Copy, Default)]
pub struct MonitorMode {
    /// Give it a pty, whose output goes to the log (`-t`; built-in runtime only).
    pub terminal: bool,
    /// Keep its stdin open until it exits (`-i`), instead of /dev/null.
    pub interactive: bool,
}

/// Starts the monitor and waits until it reports the container started (or failed). The
/// monitor is this binary re-executed (`shibafu monitor`), not a fork: SQLite connections
/// must not cross a fork, and a fresh process holds none.
pub fn start(engine: &Engine, id: &str, oci: &OciRuntime, stdio: &MonitorMode) -> Result<()> {
    use std::os::unix::process::CommandExt;
    let (ready_r, ready_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| EngineError::io("pipe")(e.into()))?;
    let exe = std::env::current_exe().map_err(EngineError::io("find our own binary"))?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("--root").arg(&engine.root).args(["monitor", "--runtime", &oci.name()]);
    for (on, flag) in [(stdio.terminal, "--tty"), (stdio.interactive, "--interactive")] {
        if on {
            cmd.arg(flag);
        }
    }
    let own_log = File::options().create(true).append(true).open(engine.container_dir(id).join("monitor.log")).map_err(EngineError::io("open monitor.log"))?;
    let own_log_too = own_log.try_clone().map_err(EngineError::io("open monitor.log"))?;
    cmd.arg(id).stdin(Stdio::null()).stdout(own_log).stderr(own_log_too);
    let ready_fd = ready_w.as_raw_fd();
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            libc::setsid();
            if libc::dup2(ready_fd, READY_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(EngineError::io("start the monitor"))?;
    drop(ready_w);
    let mut text = String::new();
    let _ = std::io::Read::read_to_string(&mut File::from(ready_r), &mut text);
    if text == "ok" {
        return Ok(());
    }
    let _ = child.wait();
    let reason = if text.is_empty() { "the monitor exited".to_string() } else { text };
    Err(EngineError::Runtime(crate::runtime::RuntimeError::Init(reason)))
}

/// The descriptor on which the monitor reports "ok" or the error text.
pub const READY_FD: RawFd = 3;

/// The monitor process itself (`shibafu monitor ID`): runs the container and records its exit.
pub fn serve(root: &Path, id: &str, runtime: &str, stdio: MonitorMode) -> i32 {
    // SAFETY: fd 3 was set up by `start`; we own it from here on.
    let ready = unsafe { OwnedFd::from_raw_fd(READY_FD) };
    // The container must not inherit it, or `run -d` would wait for the container's exit.
    let _ = nix::fcntl::fcntl(&ready, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC));
    let run = Engine::open(root).and_then(|engine| {
        let oci = OciRuntime::choose(runtime, &engine.run_dir)?;
        monitor(&engine, id, &oci, stdio, ready)
    });
    match run {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("shibafu monitor: {e}");
            1
        }
    }
}

/// How one run of the container ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    /// Docker's exit code: the code, or 128 + the signal.
    pub code: i32,
    /// The signal that killed it, if one did.
    pub signal: Option<Signal>,
    /// The kernel's OOM killer killed a process of its cgroup.
    pub oom: bool,
}

impl Exit {
    /// "exited with code 1", "killed by signal 9 (SIGKILL)", "killed: out of memory (OOM)".
    pub fn describe(&self) -> String {
        match (self.oom, self.signal) {
            (true, _) => format!("killed: out of memory (OOM), exit code {}", self.code),
            (false, Some(sig)) => format!("killed by signal {} ({}), exit code {}", sig as i32, sig.as_str(), self.code),
            (false, None) => format!("exited with code {}", self.code),
        }
    }
}

fn monitor(engine: &Engine, id: &str, oci: &OciRuntime, stdio: MonitorMode, ready: OwnedFd) -> Result<()> {
    // SAFETY: prctl with integer arguments; an external runtime's init is reparented to us.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    if let Err(e) = crate::runtime::cgroups::leave_for_root() {
        eprintln!("shibafu monitor: could not leave the caller's cgroup (the container ends with it): {e}");
    }
    let row = engine.find(id)?;
    let policy = RestartPolicy::parse(&row.restart_policy)?;
    let mut log = LogWriter::open(&log_path(&engine.container_dir(id)), row.log_opts).map_err(EngineError::io("open log.jsonl"))?;
    let mut ready = Some(ready);
    let mut restarts = row.restart_count;
    let mut backoff = None;
    loop {
        let began = Instant::now();
        let first = ready.is_some();
        let exit = match run_once(engine, id, oci, stdio, &mut log, ready.take()) {
            Ok(exit) => exit,
            // The first start reports its failure to the caller, which undoes the run.
            Err(e) if first => return Err(e),
            Err(e) => {
                log.write(EVENT_STREAM, format!("could not start it again: {e}").as_bytes());
                Exit { code: 125, signal: None, oom: false }
            }
        };
        let stopped = engine.db.stopped_by_user(id)?.unwrap_or(true);
        if !policy.should_restart(exit.code, restarts, stopped) {
            log.write(EVENT_STREAM, exit.describe().as_bytes());
            return engine.finish(id, exit.code, row.auto_remove);
        }
        restarts += 1;
        let delay = next_backoff(backoff, began.elapsed());
        backoff = Some(delay);
        engine.db.set_restarting(id, exit.code, restarts, delay.as_millis() as u64)?;
        log.write(EVENT_STREAM, format!("{}; restarting in {} (restart {restarts})", exit.describe(), show_duration(delay)).as_bytes());
        if !sleep_unless_stopped(engine, id, delay) {
            log.write(EVENT_STREAM, b"stopped during the back-off; not restarting");
            return engine.finish(id, exit.code, row.auto_remove);
        }
    }
}

/// Creates and starts the container once, copies its output to the log, waits for it and
/// removes the runtime's record of it. `ready` (first start only) hears "ok" or the error.
fn run_once(engine: &Engine, id: &str, oci: &OciRuntime, stdio: MonitorMode, log: &mut LogWriter, ready: Option<OwnedFd>) -> Result<Exit> {
    let dir = engine.container_dir(id);
    let (out_r, out_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| EngineError::io("pipe")(e.into()))?;
    let (err_r, err_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| EngineError::io("pipe")(e.into()))?;
    // Our stdin is /dev/null (see `start`): the container's is too, unless it is to stay open
    // (-i): then a pipe whose other end we hold until it exits.
    let (in_r, in_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| EngineError::io("pipe")(e.into()))?;
    // A user-namespaced root could write to the pipes it inherits but not open them again
    // (/dev/stdout, as nginx's logs are): they are its own, as containerd's are.
    if let Some((uid, gid)) = super::userns::root_owner(&dir)? {
        for end in [&out_w, &err_w, &in_r] {
            nix::unistd::fchown(end, Some(uid.into()), Some(gid.into())).map_err(|e| EngineError::io("give the stdio pipes to the container's root")(e.into()))?;
        }
    }
    let stdin = if stdio.interactive { in_r.as_raw_fd() } else { 0 };
    let created = oci.create(id, &dir, [stdin, out_w.as_raw_fd(), err_w.as_raw_fd()], stdio.terminal).and_then(|c| oci.start(id).map(|_| c));
    drop(out_w);
    drop(err_w);
    drop(in_r);
    let (pid, console) = match created {
        Ok(pid) => pid,
        Err(e) => {
            let _ = oci.delete(id);
            if let Some(ready) = ready {
                let text = match &e {
                    EngineError::Runtime(r) => r.message(),
                    other => other.to_string(),
                };
                let _ = nix::unistd::write(&ready, text.as_bytes());
            }
            return Err(e);
        }
    };
    engine.set_waited_by_us(id)?;
    if let Some(ready) = ready {
        let _ = nix::unistd::write(&ready, b"ok");
    }
    crate::fault::point("monitor:running");
    // A `stop` that came while it was being made found nothing to signal yet.
    if engine.db.stopped_by_user(id)? != Some(false) {
        let _ = oci.kill(id, Signal::SIGTERM);
    }
    let checker = super::health::spawn_checker(engine, id);
    let status = std::thread::scope(|s| {
        // With a terminal, what the container writes comes out of the pty master.
        s.spawn(|| copy_to_log(console.unwrap_or(out_r), err_r, log));
        wait_for(Pid::from_raw(pid))
    });
    drop(in_w);
    if let Some(checker) = checker {
        let _ = nix::sys::signal::kill(Pid::from_raw(checker.id() as i32), Signal::SIGKILL);
        let _ = waitpid(Pid::from_raw(checker.id() as i32), None);
    }
    let oom = oom_killed(id);
    let _ = oci.delete(id);
    Ok(match status {
        WaitStatus::Signaled(_, sig, _) => Exit { code: 128 + sig as i32, signal: Some(sig), oom },
        WaitStatus::Exited(_, code) => Exit { code, signal: None, oom },
        _ => Exit { code: 255, signal: None, oom },
    })
}

/// Sleeps for the back-off; false as soon as the user stops the container (or removes it).
fn sleep_unless_stopped(engine: &Engine, id: &str, delay: Duration) -> bool {
    let until = Instant::now() + delay;
    loop {
        if engine.db.stopped_by_user(id).ok().flatten() != Some(false) {
            return false;
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        std::thread::sleep(left.min(Duration::from_millis(20)));
    }
}

/// Whether the OOM killer killed a process of the container's cgroup: cgroup v2's
/// memory.events, or v1's memory.oom_control (an external runtime on a hybrid host); read
/// before the runtime removes the cgroup.
fn oom_killed(id: &str) -> bool {
    let parent = crate::runtime::cgroups::DEFAULT_PARENT;
    let v2 = crate::runtime::cgroups::v2_mount().map(|m| m.join(parent).join(id).join("memory.events"));
    let v1 = Path::new("/sys/fs/cgroup/memory").join(parent).join(id).join("memory.oom_control");
    v2.into_iter().chain([v1]).any(|file| {
        std::fs::read_to_string(file).is_ok_and(|text| text.lines().any(|l| l.strip_prefix("oom_kill ").is_some_and(|n| n.trim() != "0")))
    })
}

/// Reaps children until `pid` exits (the checker and orphans an external runtime leaves to
/// us are reaped on the way); returns its status.
fn wait_for(pid: Pid) -> WaitStatus {
    loop {
        match waitpid(Pid::from_raw(-1), None) {
            Ok(status @ (WaitStatus::Exited(p, _) | WaitStatus::Signaled(p, _, _))) if p == pid => return status,
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return WaitStatus::Exited(pid, 255),
        }
    }
}

/// Copies both streams into the log, one entry per line, until both are closed.
fn copy_to_log(out: OwnedFd, err: OwnedFd, log: &mut LogWriter) {
    let mut streams = [(out, "stdout", Vec::new(), true), (err, "stderr", Vec::new(), true)];
    while streams.iter().any(|s| s.3) {
        let mut fds: Vec<PollFd> = streams.iter().filter(|s| s.3).map(|s| PollFd::new(s.0.as_fd(), PollFlags::POLLIN)).collect();
        if poll(&mut fds, PollTimeout::NONE).is_err() {
            continue;
        }
        let ready: Vec<bool> = fds.iter().map(|f| f.revents().is_some_and(|r| !r.is_empty())).collect();
        drop(fds);
        for (s, _) in streams.iter_mut().filter(|s| s.3).zip(ready).filter(|(_, r)| *r) {
            let mut buf = [0u8; 16384];
            match nix::unistd::read(&s.0, &mut buf) {
                // EIO: a pty master whose slave every process closed.
                Ok(0) | Err(nix::errno::Errno::EBADF) | Err(nix::errno::Errno::EIO) => {
                    s.3 = false;
                    if !s.2.is_empty() {
                        log.write(s.1, &std::mem::take(&mut s.2));
                    }
                }
                Ok(n) => {
                    s.2.extend_from_slice(&buf[..n]);
                    while let Some(pos) = s.2.iter().position(|b| *b == b'\n') {
                        let line: Vec<u8> = s.2.drain(..=pos).collect();
                        log.write(s.1, &line[..line.len() - 1]);
                    }
                    // A line with no end in sight is written in pieces.
                    while s.2.len() >= MAX_LINE {
                        let piece: Vec<u8> = s.2.drain(..MAX_LINE).collect();
                        log.write(s.1, &piece);
                    }
                }
                Err(_) => {}
            }
        }
    }
}
