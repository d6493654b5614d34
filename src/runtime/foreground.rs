//! Waiting for a foreground container: signals forwarded to it, its exit status collected, and
//! for a terminal, our stdin and stdout joined to its pty. SIGCHLD is blocked *before* the
//! container is cloned, so even a child that exits at once is never missed.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, sigprocmask, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::error::{Result, RuntimeError};
use super::tty;

/// The signals a foreground container receives from us.
const FORWARDED: [Signal; 8] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
    Signal::SIGCONT,
];

/// Blocked signals, delivered through a signalfd.
pub struct Signals {
    fd: SignalFd,
    old: SigSet,
}

/// Blocks SIGCHLD and the forwarded signals; call before creating the container.
pub fn block_signals() -> Result<Signals> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGCHLD);
    for s in FORWARDED {
        set.add(s);
    }
    let mut old = SigSet::empty();
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), Some(&mut old)).map_err(RuntimeError::sys("block signals"))?;
    let fd = SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK).map_err(RuntimeError::sys("signalfd"))?;
    Ok(Signals { fd, old })
}

/// Restores the signal mask from before `block_signals`.
pub fn restore(signals: Option<Signals>) {
    if let Some(s) = signals {
        let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&s.old), None);
    }
}

/// The exit code of a wait status: the code, or 128 + the signal.
pub fn exit_code(status: WaitStatus) -> Option<i32> {
    match status {
        WaitStatus::Exited(_, code) => Some(code),
        WaitStatus::Signaled(_, sig, _) => Some(128 + sig as i32),
        _ => None,
    }
}

/// Waits for `pid` to exit, forwarding signals and relaying the terminal. Returns its exit code.
pub fn wait(pid: Pid, console: Option<OwnedFd>, signals: &Signals) -> i32 {
    let stdin = std::io::stdin();
    let _raw = console.as_ref().and_then(|m| {
        tty::copy_winsize(stdin.as_raw_fd(), m.as_raw_fd());
        tty::RawMode::enter(stdin.as_raw_fd())
    });
    let mut code = None;
    let mut stdin_open = console.is_some();
    let mut master_open = console.is_some();
    loop {
        if code.is_none() {
            code = reap(pid);
        }
        if code.is_some() && !master_open {
            return code.unwrap_or(0);
        }
        let mut fds = vec![PollFd::new(signals.fd.as_fd(), PollFlags::POLLIN)];
        if let Some(m) = &console {
            if master_open {
                fds.push(PollFd::new(m.as_fd(), PollFlags::POLLIN));
            }
            if stdin_open && code.is_none() {
                fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
            }
        }
        // Once the process is gone, drain the pty without waiting on anything else.
        let timeout = if code.is_some() { PollTimeout::from(50u16) } else { PollTimeout::NONE };
        match poll(&mut fds, timeout) {
            Ok(0) if code.is_some() => return code.unwrap_or(0),
            Err(nix::errno::Errno::EINTR) | Ok(_) => {}
            Err(_) => return code.unwrap_or(125),
        }
        let ready: Vec<bool> = fds.iter().map(|f| f.revents().is_some_and(|r| !r.is_empty())).collect();
        drop(fds);
        if ready[0] {
            forward_signals(signals, pid, console.as_ref());
        }
        if let Some(m) = &console {
            let mut i = 1;
            if master_open {
                if ready.get(i) == Some(&true) {
                    master_open = copy(m.as_fd(), std::io::stdout().as_fd());
                }
                i += 1;
            }
            if stdin_open && code.is_none() && ready.get(i) == Some(&true) {
                stdin_open = copy(stdin.as_fd(), m.as_fd());
            }
        }
    }
}

fn reap(pid: Pid) -> Option<i32> {
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return None,
            Ok(status) if status.pid() == Some(pid) => {
                if let Some(code) = exit_code(status) {
                    return Some(code);
                }
            }
            Ok(_) => {}
        }
    }
}

fn forward_signals(signals: &Signals, pid: Pid, console: Option<&OwnedFd>) {
    while let Ok(Some(info)) = signals.fd.read_signal() {
        let Ok(sig) = Signal::try_from(info.ssi_signo as i32) else { continue };
        match sig {
            Signal::SIGCHLD => {}
            Signal::SIGWINCH => {
                if let Some(m) = console {
                    tty::copy_winsize(std::io::stdin().as_raw_fd(), m.as_raw_fd());
                }
            }
            other => {
                let _ = kill(pid, other);
            }
        }
    }
}

/// Copies what is available from one descriptor to another; false once `from` is done.
fn copy(from: BorrowedFd, to: BorrowedFd) -> bool {
    let mut buf = [0u8; 8192];
    match nix::unistd::read(from, &mut buf) {
        Ok(0) => false,
        Ok(n) => {
            let mut rest = &buf[..n];
            while !rest.is_empty() {
                match nix::unistd::write(to, rest) {
                    Ok(w) => rest = &rest[w..],
                    Err(nix::errno::Errno::EINTR) | Err(nix::errno::Errno::EAGAIN) => {}
                    Err(_) => return false,
                }
            }
            true
        }
        Err(nix::errno::Errno::EINTR) | Err(nix::errno::Errno::EAGAIN) => true,
        // EIO on the master means every slave closed.
        Err(_) => false,
    }
}
