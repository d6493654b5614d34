//! Terminals: a pty made inside the container, its master passed out over a console socket
//! (SCM_RIGHTS, as runc does), and the slave made the process's controlling terminal.

use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::fcntl::OFlag;
use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt, Winsize};
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use nix::sys::stat::Mode;
use nix::unistd::{dup2_stdin, dup2_stdout, dup2_stderr, setsid};

use super::error::{Result, RuntimeError};
use crate::explain;

nix::ioctl_write_ptr_bad!(set_winsize, libc::TIOCSWINSZ, Winsize);
nix::ioctl_read_bad!(get_winsize, libc::TIOCGWINSZ, Winsize);

/// Inside the container: opens a pty, sends its master over `console`, and makes the slave the
/// controlling terminal and stdio of this process.
pub fn setup(console: BorrowedFd, size: Option<(u64, u64)>) -> Result<()> {
    explain::step(|| "open /dev/ptmx; setsid; ioctl(TIOCSCTTY)".into());
    let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC).map_err(RuntimeError::sys("open /dev/ptmx"))?;
    grantpt(&master).map_err(RuntimeError::sys("grantpt"))?;
    unlockpt(&master).map_err(RuntimeError::sys("unlockpt"))?;
    let name = ptsname_r(&master).map_err(RuntimeError::sys("ptsname"))?;
    let slave = nix::fcntl::open(name.as_str(), OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(RuntimeError::sys(format!("open {name}")))?;
    if let Some((rows, cols)) = size {
        let ws = Winsize { ws_row: rows as u16, ws_col: cols as u16, ws_xpixel: 0, ws_ypixel: 0 };
        // SAFETY: TIOCSWINSZ reads a Winsize.
        unsafe { set_winsize(slave.as_raw_fd(), &ws) }.map_err(RuntimeError::sys("set console size"))?;
    }
    bind_console(&name);
    send_fd(console, master.as_fd(), &name)?;
    drop(master);
    setsid().map_err(RuntimeError::sys("setsid"))?;
    // SAFETY: TIOCSCTTY takes an integer argument.
    if unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) } != 0 {
        return Err(RuntimeError::Init(format!("make {name} the controlling terminal: {}", std::io::Error::last_os_error())));
    }
    dup2_stdin(&slave).and_then(|_| dup2_stdout(&slave)).and_then(|_| dup2_stderr(&slave))
        .map_err(RuntimeError::sys("dup the terminal onto stdio"))?;
    Ok(())
}

/// Binds the pty slave over /dev/console, when the container has one to bind over.
fn bind_console(slave: &str) {
    if std::path::Path::new("/dev/console").exists() || std::fs::File::create("/dev/console").is_ok() {
        let _ = nix::mount::mount(Some(slave), "/dev/console", None::<&str>, nix::mount::MsFlags::MS_BIND, None::<&str>);
    }
}

/// Sends one descriptor over a unix socket, with `name` as the message text.
pub fn send_fd(socket: BorrowedFd, fd: BorrowedFd, name: &str) -> Result<()> {
    let fds = [fd.as_raw_fd()];
    let iov = [IoSlice::new(name.as_bytes())];
    sendmsg::<()>(socket.as_raw_fd(), &iov, &[ControlMessage::ScmRights(&fds)], MsgFlags::empty(), None)
        .map_err(RuntimeError::sys("send the terminal over the console socket"))?;
    Ok(())
}

/// Receives one descriptor sent by `send_fd`.
pub fn recv_fd(socket: BorrowedFd) -> Result<OwnedFd> {
    let mut buf = [0u8; 4096];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(socket.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)
        .map_err(RuntimeError::sys("receive the terminal"))?;
    for cmsg in msg.cmsgs().map_err(RuntimeError::sys("read control message"))? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            if let Some(fd) = fds.first() {
                // SAFETY: the kernel just gave us this descriptor.
                return Ok(unsafe { OwnedFd::from_raw_fd(*fd) });
            }
        }
    }
    Err(RuntimeError::Init("the container sent no terminal".into()))
}

/// The window size (rows, columns) of a terminal, if `fd` is one.
pub fn winsize(fd: RawFd) -> Option<(u16, u16)> {
    let mut ws = Winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCGWINSZ writes a Winsize.
    unsafe { get_winsize(fd, &mut ws) }.ok().filter(|_| ws.ws_row > 0 && ws.ws_col > 0).map(|_| (ws.ws_row, ws.ws_col))
}

/// Copies the window size of `from` (our terminal) to `to` (the container's pty master).
pub fn copy_winsize(from: RawFd, to: RawFd) {
    let mut ws = Winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCGWINSZ writes a Winsize, TIOCSWINSZ reads one.
    unsafe {
        if get_winsize(from, &mut ws).is_ok() {
            let _ = set_winsize(to, &ws);
        }
    }
}

/// A terminal's settings, put back as they were when the guard is dropped.
pub struct Restore {
    fd: RawFd,
    saved: nix::sys::termios::Termios,
}

impl Restore {
    /// The settings of `fd`, if it is a terminal.
    pub fn save(fd: RawFd) -> Option<Restore> {
        // SAFETY: fd stays open for the guard's life (it is our stdin).
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        let saved = nix::sys::termios::tcgetattr(borrowed).ok()?;
        Some(Restore { fd, saved })
    }
}

impl Drop for Restore {
    fn drop(&mut self) {
        // SAFETY: as in `save`.
        let borrowed = unsafe { BorrowedFd::borrow_raw(self.fd) };
        let _ = nix::sys::termios::tcsetattr(borrowed, nix::sys::termios::SetArg::TCSANOW, &self.saved);
    }
}

/// Puts a terminal in raw mode; the returned guard restores it.
pub struct RawMode {
    _restore: Restore,
}

impl RawMode {
    /// Raw mode on `fd` if it is a terminal.
    pub fn enter(fd: RawFd) -> Option<RawMode> {
        let restore = Restore::save(fd)?;
        let mut raw = restore.saved.clone();
        nix::sys::termios::cfmakeraw(&mut raw);
        // SAFETY: as in `Restore::save`.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        nix::sys::termios::tcsetattr(borrowed, nix::sys::termios::SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode { _restore: restore })
    }
}
