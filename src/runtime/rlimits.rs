//! Resource limits (setrlimit) from `process.rlimits`.

use oci_spec::runtime::{PosixRlimit, PosixRlimitType};

use super::error::{Result, RuntimeError};
use crate::explain;

/// Applies every rlimit of the spec to the calling process.
pub fn apply(limits: &[PosixRlimit]) -> Result<()> {
    for limit in limits {
        let (resource, name) = resource(limit.typ());
        explain::step(|| format!("prlimit --{name}={}:{}", limit.soft(), limit.hard()));
        let value = libc::rlimit { rlim_cur: limit.soft(), rlim_max: limit.hard() };
        // SAFETY: setrlimit reads a valid rlimit struct.
        if unsafe { libc::setrlimit(resource, &value) } != 0 {
            return Err(RuntimeError::Init(format!("setrlimit {name}: {}", std::io::Error::last_os_error())));
        }
    }
    Ok(())
}

fn resource(typ: PosixRlimitType) -> (libc::__rlimit_resource_t, &'static str) {
    use PosixRlimitType::*;
    match typ {
        RlimitCpu => (libc::RLIMIT_CPU, "cpu"),
        RlimitFsize => (libc::RLIMIT_FSIZE, "fsize"),
        RlimitData => (libc::RLIMIT_DATA, "data"),
        RlimitStack => (libc::RLIMIT_STACK, "stack"),
        RlimitCore => (libc::RLIMIT_CORE, "core"),
        RlimitRss => (libc::RLIMIT_RSS, "rss"),
        RlimitNproc => (libc::RLIMIT_NPROC, "nproc"),
        RlimitNofile => (libc::RLIMIT_NOFILE, "nofile"),
        RlimitMemlock => (libc::RLIMIT_MEMLOCK, "memlock"),
        RlimitAs => (libc::RLIMIT_AS, "as"),
        RlimitLocks => (libc::RLIMIT_LOCKS, "locks"),
        RlimitSigpending => (libc::RLIMIT_SIGPENDING, "sigpending"),
        RlimitMsgqueue => (libc::RLIMIT_MSGQUEUE, "msgqueue"),
        RlimitNice => (libc::RLIMIT_NICE, "nice"),
        RlimitRtprio => (libc::RLIMIT_RTPRIO, "rtprio"),
        RlimitRttime => (libc::RLIMIT_RTTIME, "rttime"),
    }
}
