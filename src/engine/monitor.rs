//! The monitor of a detached container (our conmon): a forked process that owns the
//! container's stdout and stderr, writes them to `log.jsonl`, waits for the container, and
//! records its exit status.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::wait::waitpid;
use nix::unistd::{fork, setsid, ForkResult, Pid};

use super::oci::OciRuntime;
use super::{Engine, EngineError, Result};
use crate::runtime::foreground::exit_code;

/// Starts the monitor and waits until it reports the container started (or failed).
pub fn start(engine: &Engine, id: &str, oci: &OciRuntime, remove: bool) -> Result<()> {
    let (ready_r, ready_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| EngineError::io("pipe")(e.into()))?;
    // SAFETY: the CLI is single-threaded; the child never returns into our callers.
    match unsafe { fork() }.map_err(|e| EngineError::io("fork the monitor")(e.into()))? {
        ForkResult::Child => {
            drop(ready_r);
            let code = match monitor(engine, id, oci, remove, ready_w) {
                Ok(()) => 0,
                Err(_) => 1,
            };
            // SAFETY: leaving the forked monitor without running the parent's destructors.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            drop(ready_w);
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut File::from(ready_r), &mut text);
            if text == "ok" {
                return Ok(());
            }
            let _ = waitpid(child, None);
            let reason = if text.is_empty() { "the monitor exited".to_string() } else { text };
            Err(EngineError::Runtime(crate::runtime::RuntimeError::Init(reason)))
        }
    }
}

fn monitor(engine: &Engine, id: &str, oci: &OciRuntime, remove: bool, ready: OwnedFd) -> Result<()> {
    let _ = setsid();
    let devnull = File::options().read(true).write(true).open("/dev/null").map_err(EngineError::io("open /dev/null"))?;
    for fd in 0..3 {
        // SAFETY: dup2 onto our own stdio.
        unsafe { libc::dup2(devnull.as_raw_fd(), fd) };
    }
    // SAFETY: prctl with integer arguments; an external runtime's init is reparented to us.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let db = crate::state::Db::open(&engine.root)?;
    let dir = engine.container_dir(id);
    let (out_r, out_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| EngineError::io("pipe")(e.into()))?;
    let (err_r, err_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| EngineError::io("pipe")(e.into()))?;
    let created = oci.create(id, &dir, [devnull.as_raw_fd(), out_w.as_raw_fd(), err_w.as_raw_fd()]).and_then(|pid| oci.start(id).map(|_| pid));
    drop(out_w);
    drop(err_w);
    let pid = match created {
        Ok(pid) => pid,
        Err(e) => {
            let text = match &e {
                EngineError::Runtime(crate::runtime::RuntimeError::Init(t)) => t.clone(),
                other => other.to_string(),
            };
            let _ = nix::unistd::write(&ready, text.as_bytes());
            return Err(e);
        }
    };
    let me = std::process::id() as i32;
    let (start, _) = crate::runtime::state::proc_stat(me).unwrap_or((0, 'R'));
    db.set_running(id, me, start)?;
    let _ = nix::unistd::write(&ready, b"ok");
    drop(ready);
    let log = File::options().create(true).append(true).open(dir.join("log.jsonl")).map_err(EngineError::io("open log.jsonl"))?;
    copy_to_log(out_r, err_r, log);
    let code = wait_for(Pid::from_raw(pid));
    let _ = oci.delete(id);
    let engine = Engine { root: engine.root.clone(), run_dir: engine.run_dir.clone(), db };
    engine.finish(id, code, remove)
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
                Ok(0) | Err(nix::errno::Errno::EBADF) => {
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
