//! Switching to the process's user: groups, gid, uid, with capabilities kept across.

use nix::unistd::{setgroups, setresgid, setresuid, Gid, Uid};
use oci_spec::runtime::User;

use super::error::{Result, RuntimeError};
use crate::explain;

/// Sets supplementary groups, gid and uid. Capabilities survive (PR_SET_KEEPCAPS) so the
/// spec's sets can be applied afterwards.
pub fn switch(user: &User) -> Result<()> {
    let groups: Vec<Gid> = user.additional_gids().iter().flatten().map(|g| Gid::from_raw(*g)).collect();
    explain::step(|| format!("setpriv --reuid={} --regid={} --groups={:?}", user.uid(), user.gid(), user.additional_gids().clone().unwrap_or_default()));
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) };
    setgroups(&groups).map_err(RuntimeError::sys("setgroups"))?;
    let gid = Gid::from_raw(user.gid());
    setresgid(gid, gid, gid).map_err(RuntimeError::sys(format!("setgid {}", user.gid())))?;
    let uid = Uid::from_raw(user.uid());
    setresuid(uid, uid, uid).map_err(RuntimeError::sys(format!("setuid {}", user.uid())))?;
    // SAFETY: as above.
    unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0) };
    if let Some(mask) = user.umask() {
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(mask));
    }
    Ok(())
}

/// Sets no_new_privs, so exec can never gain privileges (setuid bits, file capabilities).
pub fn no_new_privileges() -> Result<()> {
    explain::step(|| "setpriv --no-new-privs".into());
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(RuntimeError::Init(format!("no_new_privs: {}", std::io::Error::last_os_error())));
    }
    Ok(())
}
