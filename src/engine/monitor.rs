//! The monitor of a detached container (our conmon): a process of its own that owns the
//! container's stdout and stderr, writes them to `log.jsonl`, waits for the container, and
//! records its exit status. Its own messages go to `monitor.log` beside the log.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::process::Stdio;
use std::path::Path;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;

use super::oci::OciRuntime;
use super::{Engine, EngineError, Result};
use crate::runtime::foreground::exit_code;

/// How the monitor runs a container's stdio and end.
#[derive(Debug, Clone, Copy, Default)]
pub struct MonitorMode {
    /// Remove the container once it exits (`--rm`).
    pub remove: bool,
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
    for (on, flag) in [(stdio.remove, "--rm"), (stdio.terminal, "--tty"), (stdio.interactive, "--interactive")] {
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

fn monitor(engine: &Engine, id: &str, oci: &OciRuntime, stdio: MonitorMode, ready: OwnedFd) -> Result<()> {
    // SAFETY: prctl with integer arguments; an external runtime's init is reparented to us.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let dir = engine.container_dir(id);
    let (out_r, out_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| EngineError::io("pipe")(e.into()))?;
    let (err_r, err_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| EngineError::io("pipe")(e.into()))?;
    // Our stdin is /dev/null (see `start`): the container's is too, unless it is to stay open
    // (-i): then a pipe whose other end we hold until it exits.
    let (in_r, in_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| EngineError::io("pipe")(e.into()))?;
    let stdin = if stdio.interactive { in_r.as_raw_fd() } else { 0 };
    let created = oci.create(id, &dir, [stdin, out_w.as_raw_fd(), err_w.as_raw_fd()], stdio.terminal).and_then(|c| oci.start(id).map(|_| c));
    drop(out_w);
    drop(err_w);
    drop(in_r);
    let (pid, console) = match created {
        Ok(pid) => pid,
        Err(e) => {
            let text = match &e {
                EngineError::Runtime(r) => r.message(),
                other => other.to_string(),
            };
            let _ = nix::unistd::write(&ready, text.as_bytes());
            return Err(e);
        }
    };
    engine.set_waited_by_us(id)?;
    let _ = nix::unistd::write(&ready, b"ok");
    drop(ready);
    let log = File::options().create(true).append(true).open(log_path(&dir)).map_err(EngineError::io("open log.jsonl"))?;
    // With a terminal, what the container writes comes out of the pty master.
    copy_to_log(console.unwrap_or(out_r), err_r, log);
    let code = wait_for(Pid::from_raw(pid));
    drop(in_w);
    let _ = oci.delete(id);
    engine.finish(id, code, stdio.remove)
}

/// Reaps children until `pid` exits; returns its exit code.
fn wait_for(pid: Pid) -> i32 {
    loop {
        match waitpid(Pid::from_raw(-1), None) {
            Ok(status) if status.pid() == Some(pid) => {
                if let Some(code) = exit_code(status) {
                    return code;
                }
            }
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return 255,
        }
    }
}

/// Copies both streams into the log, one JSON object per line, until both are closed.
fn copy_to_log(out: OwnedFd, err: OwnedFd, mut log: File) {
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
                        write_line(&mut log, s.1, &std::mem::take(&mut s.2));
                    }
                }
                Ok(n) => {
                    s.2.extend_from_slice(&buf[..n]);
                    while let Some(pos) = s.2.iter().position(|b| *b == b'\n') {
                        let line: Vec<u8> = s.2.drain(..=pos).collect();
                        write_line(&mut log, s.1, &line[..line.len() - 1]);
                    }
                }
                Err(_) => {}
            }
        }
    }
}

/// One log line: `{"time": RFC3339, "stream": "stdout", "text": "..."}`.
pub fn write_line(log: &mut impl Write, stream: &str, text: &[u8]) {
    let entry = serde_json::json!({
        "time": humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string(),
        "stream": stream,
        "text": String::from_utf8_lossy(text),
    });
    let _ = writeln!(log, "{entry}");
}

/// The log file of a container directory.
pub fn log_path(dir: &Path) -> std::path::PathBuf {
    dir.join("log.jsonl")
}
