//! The socket the runtime and the container's init talk over while the container is set up.

use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::socket::{recv, send, socketpair, AddressFamily, MsgFlags, SockFlag, SockType};

use super::error::{Result, RuntimeError};

/// One message on the sync socket.
#[derive(Debug, PartialEq, Eq)]
pub enum Msg {
    /// Parent to child: go on (the cgroup is ready, or the hooks ran).
    Go,
    /// Child to parent: run the createRuntime and prestart hooks now.
    Hooks,
    /// Child to parent: set up, waiting for `start`.
    Created,
    /// Child to parent: set-up failed.
    Error(String),
}

/// One end of the sync socket.
pub struct Sync(OwnedFd);

/// A connected pair: (parent end, child end). Both close on exec.
pub fn pair() -> Result<(Sync, Sync)> {
    let (a, b) = socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC)
        .map_err(RuntimeError::sys("socketpair"))?;
    Ok((Sync(a), Sync(b)))
}

impl Sync {
    /// Sends a message.
    pub fn send(&self, msg: &Msg) -> Result<()> {
        let text = match msg {
            Msg::Go => "go".to_string(),
            Msg::Hooks => "hooks".to_string(),
            Msg::Created => "created".to_string(),
            Msg::Error(e) => format!("error:{e}"),
        };
        send(self.0.as_raw_fd(), text.as_bytes(), MsgFlags::MSG_NOSIGNAL).map_err(RuntimeError::sys("sync send"))?;
        Ok(())
    }

    /// Receives a message; `None` when the other end closed.
    pub fn recv(&self) -> Result<Option<Msg>> {
        let mut buf = vec![0u8; 65536];
        let n = loop {
            match recv(self.0.as_raw_fd(), &mut buf, MsgFlags::empty()) {
                Err(nix::errno::Errno::EINTR) => continue,
                other => break other.map_err(RuntimeError::sys("sync receive"))?,
            }
        };
        if n == 0 {
            return Ok(None);
        }
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        Ok(Some(match text.as_str() {
            "go" => Msg::Go,
            "hooks" => Msg::Hooks,
            "created" => Msg::Created,
            _ => Msg::Error(text.strip_prefix("error:").unwrap_or(&text).to_string()),
        }))
    }
}
