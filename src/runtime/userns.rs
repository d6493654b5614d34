//! User namespaces: the spec's `linux.uidMappings`/`gidMappings`, written by the runtime (the
//! parent, root on the host) into the new namespace's /proc/PID/uid_map and gid_map while the
//! init waits; then the init becomes root of the namespace, which the host sees as the first
//! mapped id: an unprivileged user.

use std::os::fd::{AsRawFd, OwnedFd};

use nix::unistd::{setresgid, setresuid, Gid, Uid};
use oci_spec::runtime::{LinuxIdMapping, Spec};

use super::error::{Result, RuntimeError};
use crate::explain;

/// The kernel reads at most 340 lines from a map (Linux 4.15).
const MAX_LINES: usize = 340;

/// A user namespace's id maps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdMaps {
    /// uid_map lines: (inside, outside, count).
    pub uids: Vec<(u32, u32, u32)>,
    /// gid_map lines.
    pub gids: Vec<(u32, u32, u32)>,
}

/// The maps the spec gives, checked: both present when a new user namespace is asked for, none
/// without one, no line of size 0, no overflow, no overlapping ranges.
pub fn maps(spec: &Spec, new_user_ns: bool) -> Result<Option<IdMaps>> {
    let linux = spec.linux().as_ref();
    let lines = |m: Option<&Vec<LinuxIdMapping>>| m.map(|v| v.iter().map(|l| (l.container_id(), l.host_id(), l.size())).collect::<Vec<_>>()).unwrap_or_default();
    let uids = lines(linux.and_then(|l| l.uid_mappings().as_ref()));
    let gids = lines(linux.and_then(|l| l.gid_mappings().as_ref()));
    if !new_user_ns {
        if !uids.is_empty() || !gids.is_empty() {
            return Err(bad("linux.uidMappings/gidMappings are given, but linux.namespaces has no user namespace to map them in: add {\"type\": \"user\"}"));
        }
        return Ok(None);
    }
    if uids.is_empty() || gids.is_empty() {
        return Err(bad("a new user namespace needs linux.uidMappings and linux.gidMappings (for example containerID 0, hostID 100000, size 65536)"));
    }
    for (what, list) in [("linux.uidMappings", &uids), ("linux.gidMappings", &gids)] {
        check(what, list)?;
    }
    Ok(Some(IdMaps { uids, gids }))
}

/// Checks one map (named `what` in errors): no empty, overflowing or overlapping lines, at
/// most the kernel's 340.
pub fn check(what: &str, list: &[(u32, u32, u32)]) -> Result<()> {
    if list.len() > MAX_LINES {
        return Err(bad(&format!("{what} has {} lines; the kernel takes at most {MAX_LINES}", list.len())));
    }
    for (i, &(inside, outside, count)) in list.iter().enumerate() {
        let end = |start: u32| u64::from(start) + u64::from(count);
        if count == 0 || end(inside) > 1 << 32 || end(outside) > 1 << 32 {
            return Err(bad(&format!("{what} line {i} ({inside} {outside} {count}) is empty or runs past 2^32")));
        }
        for &(other_in, other_out, other_count) in &list[..i] {
            let overlaps = |a: u32, b: u32| u64::from(a) < u64::from(b) + u64::from(other_count) && u64::from(b) < end(a);
            if overlaps(inside, other_in) || overlaps(outside, other_out) {
                return Err(bad(&format!("{what} line {i} overlaps an earlier line")));
            }
        }
    }
    Ok(())
}

/// Writes the maps of the user namespace of `pid` (the runtime's side).
pub fn write(pid: i32, maps: &IdMaps) -> Result<()> {
    for (file, list) in [("uid_map", &maps.uids), ("gid_map", &maps.gids)] {
        let text: String = list.iter().map(|(i, o, n)| format!("{i} {o} {n}\n")).collect();
        let path = format!("/proc/{pid}/{file}");
        explain::step(|| format!("printf '{}' > {path}", text.replace('\n', "\\n")));
        std::fs::write(&path, &text).map_err(RuntimeError::io(format!("write {path}")))?;
    }
    Ok(())
}

/// A user namespace with `maps`, held open by descriptor (for idmapped mounts): a child is
/// cloned into a new one, its maps written, its namespace opened, and the child let go.
pub fn hold(maps: &IdMaps) -> Result<OwnedFd> {
    let (read_end, write_end) = nix::unistd::pipe().map_err(RuntimeError::sys("pipe"))?;
    // SAFETY: the child closes a descriptor, blocks on a read and exits, all async-signal-safe.
    let pid = unsafe { libc::syscall(libc::SYS_clone, (libc::CLONE_NEWUSER | libc::SIGCHLD) as libc::c_ulong, 0usize, 0usize, 0usize, 0usize) };
    if pid == 0 {
        let mut byte = [0u8; 1];
        // SAFETY: our copy of the write end goes (so the read ends when the parent's does),
        // then a read into our own buffer, then leaving without destructors.
        unsafe {
            libc::close(write_end.as_raw_fd());
            libc::read(read_end.as_raw_fd(), byte.as_mut_ptr().cast(), 1);
            libc::_exit(0)
        }
    }
    if pid < 0 {
        return Err(RuntimeError::sys("clone a user namespace")(nix::errno::Errno::last()));
    }
    drop(read_end);
    let held = write(pid as i32, maps).and_then(|()| {
        let path = format!("/proc/{pid}/ns/user");
        std::fs::File::open(&path).map(OwnedFd::from).map_err(RuntimeError::io(format!("open {path}")))
    });
    drop(write_end);
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid as i32), None);
    held
}

/// The init's side, once the maps are written: become uid and gid 0 of the namespace (until
/// then the process has ids the namespace does not map, and could create no file).
pub fn become_root() -> Result<()> {
    explain::step(|| "# setresgid(0, 0, 0); setresuid(0, 0, 0): root of the user namespace".into());
    setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0)).map_err(RuntimeError::sys("become gid 0 of the user namespace (is 0 in gidMappings?)"))?;
    setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0)).map_err(RuntimeError::sys("become uid 0 of the user namespace (is 0 in uidMappings?)"))
}

/// The host id that `id` inside maps to, if any.
pub fn to_host(list: &[(u32, u32, u32)], id: u32) -> Option<u32> {
    list.iter().find(|(inside, _, count)| id >= *inside && u64::from(id) < u64::from(*inside) + u64::from(*count)).map(|(inside, outside, _)| outside + (id - inside))
}

fn bad(reason: &str) -> RuntimeError {
    RuntimeError::Init(reason.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> Spec {
        let mut v = serde_json::to_value(super::super::spec::default_spec()).unwrap();
        v["linux"].as_object_mut().unwrap().extend(json.as_object().unwrap().clone());
        serde_json::from_value(v).unwrap()
    }

    fn map(c: u32, h: u32, n: u32) -> serde_json::Value {
        serde_json::json!({"containerID": c, "hostID": h, "size": n})
    }

    #[test]
    fn maps_are_read_and_checked() {
        let ok = spec(serde_json::json!({"uidMappings": [map(0, 100000, 65536)], "gidMappings": [map(0, 100000, 65536)]}));
        let read = maps(&ok, true).unwrap().unwrap();
        assert_eq!(read.uids, vec![(0, 100000, 65536)]);
        assert_eq!(to_host(&read.uids, 1000), Some(101000));
        assert_eq!(to_host(&read.uids, 65536), None);
        assert!(maps(&ok, false).unwrap_err().to_string().contains("no user namespace"));
        assert!(maps(&spec(serde_json::json!({})), true).unwrap_err().to_string().contains("needs linux.uidMappings"));
        assert!(maps(&spec(serde_json::json!({})), false).unwrap().is_none());
        let overlap = spec(serde_json::json!({"uidMappings": [map(0, 100000, 10), map(5, 200000, 10)], "gidMappings": [map(0, 100000, 1)]}));
        assert!(maps(&overlap, true).unwrap_err().to_string().contains("overlaps"));
        let empty = spec(serde_json::json!({"uidMappings": [map(0, 100000, 0)], "gidMappings": [map(0, 100000, 1)]}));
        assert!(maps(&empty, true).unwrap_err().to_string().contains("empty"));
        let past = spec(serde_json::json!({"uidMappings": [map(0, u32::MAX, 2)], "gidMappings": [map(0, 100000, 1)]}));
        assert!(maps(&past, true).unwrap_err().to_string().contains("2^32"));
    }
}
