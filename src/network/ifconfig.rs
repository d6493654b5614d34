//! The container's side of a veth pair configured the way `ifconfig` and `route` do it: ioctls
//! on an unbound UDP socket made inside the container's namespace.
//!
//! Why not netlink, as everything else here: a netlink socket gives its reference to its
//! namespace back only after an RCU grace period once it is closed, so a namespace that was
//! configured through netlink cannot be freed for some 15-20 ms afterwards, and `rm` waits
//! for that when a container lived shorter (measured with `ip` alone: the veth of a namespace
//! configured by `ip -n` and dropped at once went after a median of 15 ms, dropped 30 ms later
//! after 0.5 ms; configured from outside, 0.4 ms either way). An unbound UDP socket hands it
//! back when it is closed. Rules and per-interface tables (a second network) have no ioctl and
//! stay on netlink.

use std::ffi::CString;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};

use super::{NetworkError, Result};

/// The kernel's `struct rtentry` (linux/route.h), which glibc's headers have but libc's crate
/// does not for glibc targets.
#[repr(C)]
struct RtEntry {
    rt_pad1: libc::c_ulong,
    rt_dst: libc::sockaddr,
    rt_gateway: libc::sockaddr,
    rt_genmask: libc::sockaddr,
    rt_flags: libc::c_ushort,
    rt_pad2: libc::c_short,
    rt_pad3: libc::c_ulong,
    rt_pad4: *mut libc::c_void,
    rt_metric: libc::c_short,
    rt_dev: *mut libc::c_char,
    rt_mtu: libc::c_ulong,
    rt_window: libc::c_ulong,
    rt_irtt: libc::c_ushort,
}

/// A socket in the calling thread's namespace to send the ioctls through.
pub struct Ifconfig(OwnedFd);

impl Ifconfig {
    /// Opens it in the calling thread's network namespace.
    pub fn open() -> Result<Ifconfig> {
        let fd = socket(AddressFamily::Inet, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None).map_err(|e| NetworkError::io("open a socket for interface ioctls")(e.into()))?;
        Ok(Ifconfig(fd))
    }

    /// `ip link set NAME up`.
    pub fn up(&self, name: &str) -> Result<()> {
        request(name)?;
        crate::runtime::loopback::set_up(self.0.as_fd(), name.as_bytes()).map_err(NetworkError::io(format!("bring {name} up")))
    }

    /// `ip addr add ADDRESS/PREFIX dev NAME` (the kernel adds the subnet's route when the
    /// interface comes up).
    pub fn address(&self, name: &str, address: Ipv4Addr, prefix: u8) -> Result<()> {
        let mut req = request(name)?;
        req.ifr_ifru.ifru_addr = inet(address);
        self.ioctl(libc::SIOCSIFADDR, &mut req, &format!("give {name} the address {address}"))?;
        let mask = Ipv4Addr::from(u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0));
        req.ifr_ifru.ifru_netmask = inet(mask);
        self.ioctl(libc::SIOCSIFNETMASK, &mut req, &format!("give {name} the netmask {mask}"))
    }

    /// `ip route add default via GATEWAY`.
    pub fn default_route(&self, gateway: Ipv4Addr) -> Result<()> {
        let any = inet(Ipv4Addr::UNSPECIFIED);
        let mut route = RtEntry {
            rt_pad1: 0,
            rt_dst: any,
            rt_gateway: inet(gateway),
            rt_genmask: any,
            rt_flags: libc::RTF_UP | libc::RTF_GATEWAY,
            rt_pad2: 0,
            rt_pad3: 0,
            rt_pad4: std::ptr::null_mut(),
            rt_metric: 0,
            rt_dev: std::ptr::null_mut(),
            rt_mtu: 0,
            rt_window: 0,
            rt_irtt: 0,
        };
        // SAFETY: SIOCADDRT reads one struct rtentry, which `route` is laid out as.
        let rc = unsafe { libc::ioctl(self.0.as_raw_fd(), libc::SIOCADDRT, &raw mut route) };
        checked(rc, &format!("add the default route via {gateway}"))
    }

    fn ioctl(&self, request: libc::c_ulong, req: &mut libc::ifreq, what: &str) -> Result<()> {
        // SAFETY: these requests read or write one struct ifreq, and `req` is one.
        let rc = unsafe { libc::ioctl(self.0.as_raw_fd(), request, req as *mut libc::ifreq) };
        checked(rc, what)
    }
}

fn checked(rc: libc::c_int, what: &str) -> Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(NetworkError::io(what.to_string())(std::io::Error::last_os_error()))
    }
}

/// An ifreq naming the interface.
fn request(name: &str) -> Result<libc::ifreq> {
    let bytes = CString::new(name).map_err(|_| NetworkError::Invalid(format!("bad interface name {name:?}")))?;
    let bytes = bytes.as_bytes_with_nul();
    if bytes.len() > libc::IFNAMSIZ {
        return Err(NetworkError::Invalid(format!("interface name {name:?} is longer than {} bytes", libc::IFNAMSIZ - 1)));
    }
    // SAFETY: ifreq is plain data, for which all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, b) in req.ifr_name.iter_mut().zip(bytes) {
        *slot = *b as libc::c_char;
    }
    Ok(req)
}

/// An IPv4 address as the `struct sockaddr` the ioctls take.
fn inet(address: Ipv4Addr) -> libc::sockaddr {
    let sin = libc::sockaddr_in { sin_family: libc::AF_INET as libc::sa_family_t, sin_port: 0, sin_addr: libc::in_addr { s_addr: u32::from(address).to_be() }, sin_zero: [0; 8] };
    // SAFETY: sockaddr_in and sockaddr have the same size; the kernel reads it as sockaddr_in.
    unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernels_rtentry_and_an_ifreq_name() {
        assert_eq!(std::mem::size_of::<RtEntry>(), 120, "struct rtentry on 64-bit Linux");
        let req = request("eth0").unwrap();
        assert_eq!(&req.ifr_name[..5], &[b'e' as libc::c_char, b't' as _, b'h' as _, b'0' as _, 0]);
        assert!(request("a-name-of-16-chr").is_err());
        let sa = inet(Ipv4Addr::new(172, 20, 0, 1));
        assert_eq!(sa.sa_family, libc::AF_INET as libc::sa_family_t);
        assert_eq!(&sa.sa_data[2..6], &[172u8 as libc::c_char, 20, 0, 1]);
    }
}
