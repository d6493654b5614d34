//! A new network namespace starts with `lo` down; like runc, bring it up.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use super::error::{Result, RuntimeError};
use crate::explain;

/// Sets IFF_UP on `lo` in the current network namespace.
pub fn up() -> Result<()> {
    explain::step(|| "ip link set lo up".into());
    // SAFETY: a plain socket, owned (and closed) by the OwnedFd at once.
    let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if sock < 0 {
        return Err(RuntimeError::Init(format!("socket for lo: {}", std::io::Error::last_os_error())));
    }
    // SAFETY: `sock` is a descriptor we just opened and own.
    let sock = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(sock) };
    set_up(sock.as_fd(), b"lo").map_err(|e| RuntimeError::Init(format!("bring lo up: {e}")))
}

/// Sets IFF_UP on the interface `name` through `sock`, a datagram socket in its namespace
/// (`ip link set NAME up` as ifconfig does it: SIOCGIFFLAGS, then SIOCSIFFLAGS). Allocates
/// nothing: the runtime's init calls it between clone and exec. `network::ifconfig` uses it too.
pub fn set_up(sock: BorrowedFd, name: &[u8]) -> std::io::Result<()> {
    if name.len() >= libc::IFNAMSIZ || name.contains(&0) {
        return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: ifreq is plain data, for which all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, b) in req.ifr_name.iter_mut().zip(name) {
        *slot = *b as libc::c_char;
    }
    // SAFETY: both requests read or write one struct ifreq, and `req` is one; SIOCGIFFLAGS
    // fills the flags member of its union, which is then read.
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}
