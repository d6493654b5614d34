//! The OCI runtime a container runs under: our own (in-process), or an external runc-compatible
//! binary (`--runtime runc|crun|PATH`) driven through its command line.

use std::os::fd::{OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::sys::signal::Signal;

use super::{EngineError, Result};
use crate::runtime::exec::ExecOptions;
use crate::runtime::{CreateOptions, Runtime};

/// Which runtime.
pub enum OciRuntime {
    /// shibafu's own runtime.
    Builtin(Runtime),
    /// An external binary with runc's command line, and its state root.
    External { path: PathBuf, root: PathBuf },
}

/// The name stored for our own runtime.
pub const BUILTIN: &str = "shibafu";

impl OciRuntime {
    /// `shibafu`, `runc`, `crun`, or a path to a runc-compatible binary.
    pub fn choose(name: &str, run_dir: &Path) -> Result<OciRuntime> {
        if name == BUILTIN || name.is_empty() {
            return Ok(OciRuntime::Builtin(Runtime::new(run_dir.join("runtime"))));
        }
        let path = if name.contains('/') { PathBuf::from(name) } else { find_in_path(name).ok_or_else(|| EngineError::Invalid(format!("OCI runtime {name:?} is not installed (apt-get install {name})")))? };
        if !path.is_file() {
            return Err(EngineError::Invalid(format!("OCI runtime {} does not exist", path.display())));
        }
        let base = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        Ok(OciRuntime::External { root: run_dir.join(base), path })
    }

    /// The name to record (and to `choose` again later).
    pub fn name(&self) -> String {
        match self {
            OciRuntime::Builtin(_) => BUILTIN.into(),
            OciRuntime::External { path, .. } => path.display().to_string(),
        }
    }

    /// Runs the container in the foreground with our stdio; returns its exit code. `started`
    /// runs once the container runs (for an external runtime: once it was launched, as its
    /// `run` does not say more).
    pub fn run_attached(&self, id: &str, bundle: &Path, started: impl FnOnce()) -> Result<i32> {
        match self {
            OciRuntime::Builtin(rt) => Ok(rt.run(id, bundle, CreateOptions::default(), false, started)?),
            OciRuntime::External { .. } => {
                // The runtime takes our terminal over for a container with one; crun 1.8 leaves
                // ECHO switched on after its `run`, whatever it was: ours are put back after it.
                let _terminal = crate::runtime::tty::Restore::save(0);
                let mut child = self.command(&["run", "--bundle", &bundle.display().to_string(), id]).spawn().map_err(EngineError::io("run the OCI runtime"))?;
                started();
                let status = child.wait().map_err(EngineError::io("wait for the OCI runtime"))?;
                Ok(status.code().unwrap_or(125))
            }
        }
    }

    /// Creates the container with the given stdio and returns its init PID (the caller must be
    /// its parent or subreaper to wait for it), and with `terminal` the master of its pty.
    pub fn create(&self, id: &str, bundle: &Path, stdio: [RawFd; 3], terminal: bool) -> Result<(i32, Option<OwnedFd>)> {
        match self {
            OciRuntime::Builtin(rt) => {
                let created = rt.create(id, bundle, &CreateOptions { stdio: Some(stdio), keep_console: terminal, ..Default::default() })?;
                Ok((created.pid.as_raw(), created.console))
            }
            OciRuntime::External { .. } => {
                let pid_file = bundle.join("init.pid");
                // Its stderr is the container's: its own errors go to a log of their own
                // (runc's and crun's global --log), read back when the create fails.
                let log = bundle.join("runtime.log");
                let _ = std::fs::remove_file(&log);
                let log_arg = format!("--log={}", log.display());
                // A terminal comes back through runc's --console-socket: the pty master, sent
                // over a unix socket of ours while the container is made.
                // (In a private temp dir: a socket's path must fit in 108 bytes.)
                let socket_dir = terminal.then(|| tempfile::Builder::new().prefix("shibafu-console-").tempdir()).transpose().map_err(EngineError::io("make a console socket dir"))?;
                let socket = socket_dir.as_ref().map(|d| d.path().join("c"));
                let listener = socket.as_deref().map(console_listener).transpose()?;
                let socket_arg = socket.as_ref().map(|s| format!("--console-socket={}", s.display()));
                let mut args = vec![log_arg.as_str(), "--log-format=text", "create", "--bundle"];
                let (bundle_arg, pid_arg) = (bundle.display().to_string(), pid_file.display().to_string());
                args.extend([bundle_arg.as_str(), "--pid-file", pid_arg.as_str()]);
                if let Some(arg) = &socket_arg {
                    args.push(arg);
                }
                args.push(id);
                let mut cmd = self.command(&args);
                cmd.stdin(dup_stdio(stdio[0])?).stdout(dup_stdio(stdio[1])?).stderr(dup_stdio(stdio[2])?);
                let mut child = cmd.spawn().map_err(EngineError::io("run the OCI runtime"))?;
                let console = listener.map(|l| receive_console(&l, &mut child)).transpose();
                drop(socket_dir);
                let status = child.wait().map_err(EngineError::io("wait for the OCI runtime"))?;
                if !status.success() {
                    return Err(EngineError::Invalid(format!("{} create failed: {}", self.name(), last_error(&log))));
                }
                let console = console?;
                let text = std::fs::read_to_string(&pid_file).map_err(EngineError::io("read the init's pid file"))?;
                let pid = text.trim().parse().map_err(|_| EngineError::Invalid(format!("bad pid file {}", pid_file.display())))?;
                Ok((pid, console))
            }
        }
    }

    /// Starts a created container.
    pub fn start(&self, id: &str) -> Result<()> {
        match self {
            OciRuntime::Builtin(rt) => Ok(rt.start(id)?),
            OciRuntime::External { .. } => self.checked(&["start", id]),
        }
    }

    /// Signals the container's init.
    pub fn kill(&self, id: &str, signal: Signal) -> Result<()> {
        match self {
            OciRuntime::Builtin(rt) => Ok(rt.kill(id, signal, false)?),
            OciRuntime::External { .. } => self.checked(&["kill", id, signal.as_str()]),
        }
    }

    /// Removes the runtime's record of the container, killing it if needed; a container the
    /// runtime no longer knows is fine.
    pub fn delete(&self, id: &str) -> Result<()> {
        match self {
            OciRuntime::Builtin(rt) => match rt.delete(id, true) {
                Ok(()) | Err(crate::runtime::RuntimeError::NotFound(_)) => Ok(()),
                Err(e) => Err(e.into()),
            },
            OciRuntime::External { .. } => {
                let _ = self.command(&["delete", "--force", id]).stderr(Stdio::null()).status();
                Ok(())
            }
        }
    }

    /// The PID of the container's init, while it runs (from the runtime's state).
    pub fn pid(&self, id: &str) -> Option<i32> {
        match self {
            OciRuntime::Builtin(rt) => rt.state(id).ok().map(|s| s.pid),
            OciRuntime::External { .. } => {
                let out = self.command(&["state", id]).stderr(Stdio::null()).output().ok()?;
                let state: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
                state["pid"].as_i64().map(|p| p as i32)
            }
        }
        .filter(|pid| *pid > 0)
    }

    /// Runs a command in the running container; returns its exit code.
    pub fn exec(&self, id: &str, args: &[String], env: &[String], tty: bool) -> Result<i32> {
        match self {
            OciRuntime::Builtin(rt) => {
                let mut p = rt.process_template(id)?;
                p.set_args(Some(args.to_vec()));
                p.set_terminal(Some(tty));
                // The pty is made with our terminal's size, so the command never sees 0 x 0.
                if let Some((rows, cols)) = crate::runtime::tty::winsize(0).filter(|_| tty) {
                    p.set_console_size(Some(oci_spec::runtime::BoxBuilder::default().height(rows as u64).width(cols as u64).build().expect("box builds")));
                }
                let mut all = p.env().clone().unwrap_or_default();
                all.extend(env.iter().cloned());
                p.set_env(Some(all));
                Ok(rt.exec(id, &p, &ExecOptions::default())?)
            }
            OciRuntime::External { .. } => {
                let mut words = vec!["exec".to_string()];
                if tty {
                    words.push("--tty".into());
                }
                for e in env {
                    words.push("--env".into());
                    words.push(e.clone());
                }
                words.push(id.into());
                words.extend(args.iter().cloned());
                let refs: Vec<&str> = words.iter().map(String::as_str).collect();
                let status = self.command(&refs).status().map_err(EngineError::io("run the OCI runtime"))?;
                Ok(status.code().unwrap_or(125))
            }
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let OciRuntime::External { path, root } = self else { unreachable!("only external runtimes run commands") };
        let mut cmd = Command::new(path);
        cmd.arg("--root").arg(root).args(args);
        crate::explain::step(|| format!("{} --root {} {}", path.display(), root.display(), args.join(" ")));
        cmd
    }

    fn checked(&self, args: &[&str]) -> Result<()> {
        let out = self.command(args).output().map_err(EngineError::io("run the OCI runtime"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(EngineError::Invalid(format!("{} {} failed: {}", self.name(), args[0], String::from_utf8_lossy(&out.stderr).trim())))
        }
    }
}

/// A socket for an external runtime to send a container's pty master to.
fn console_listener(path: &Path) -> Result<std::os::unix::net::UnixListener> {
    let _ = std::fs::remove_file(path);
    let listener = std::os::unix::net::UnixListener::bind(path).map_err(EngineError::io(format!("bind {}", path.display())))?;
    listener.set_nonblocking(true).map_err(EngineError::io("console socket"))?;
    Ok(listener)
}

/// The pty master the runtime `child` sends while it creates the container; an error when it
/// exits (or 30 s pass) without sending one.
fn receive_console(listener: &std::os::unix::net::UnixListener, child: &mut std::process::Child) -> Result<OwnedFd> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut last_try = false;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false).map_err(EngineError::io("console socket"))?;
                return Ok(crate::runtime::tty::recv_fd(std::os::fd::AsFd::as_fd(&stream))?);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(EngineError::io("accept on the console socket")(e)),
        }
        if last_try {
            return Err(EngineError::Invalid("the OCI runtime sent no terminal on its console socket".into()));
        }
        // Once it has exited, what it sent before is waiting: one more accept takes it.
        last_try = child.try_wait().map_err(EngineError::io("wait for the OCI runtime"))?.is_some() || std::time::Instant::now() > deadline;
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// The last line of an external runtime's log (runc's `level=error msg="..."`, crun's plain
/// text), or what to say when it wrote none.
fn last_error(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let line = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
    let msg = line.split_once("msg=").map_or(line, |(_, m)| m).trim_matches('"');
    if msg.is_empty() { format!("it wrote no error (see {})", log.display()) } else { msg.replace("\\\"", "\"") }
}

/// A `Stdio` holding a duplicate of `fd`, which the caller keeps open during the call.
fn dup_stdio(fd: RawFd) -> Result<Stdio> {
    // SAFETY: the caller's descriptor is open for the duration of the call; we only dup it.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let owned = borrowed.try_clone_to_owned().map_err(EngineError::io("dup a descriptor"))?;
    Ok(Stdio::from(owned))
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| Path::new(d).join(name)).find(|p| p.is_file())
}
