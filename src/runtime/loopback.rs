//! A new network namespace starts with `lo` down; like runc, bring it up.

use super::error::{Result, RuntimeError};
use crate::explain;

/// Sets IFF_UP on `lo` in the current network namespace.
pub fn up() -> Result<()> {
    explain::step(|| "ip link set lo up".into());
    // SAFETY: a plain socket used only for the interface ioctls below, closed at the end.
    unsafe {
        let sock = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if sock < 0 {
            return Err(RuntimeError::Init(format!("socket for lo: {}", std::io::Error::last_os_error())));
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo\0".iter().enumerate() {
            req.ifr_name[i] = *b as libc::c_char;
        }
        let mut rc = libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut req);
        if rc == 0 {
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            rc = libc::ioctl(sock, libc::SIOCSIFFLAGS, &req);
        }
        let err = std::io::Error::last_os_error();
        libc::close(sock);
        if rc != 0 {
            return Err(RuntimeError::Init(format!("bring lo up: {err}")));
        }
    }
    Ok(())
}
