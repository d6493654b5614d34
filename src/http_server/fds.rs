//! The descriptor budget: how many connections the open-files limit leaves room for.

use nix::sys::resource::{getrlimit, setrlimit, Resource, RLIM_INFINITY};

/// Descriptors kept for what is not a connection: the runtime, the listener, the database,
/// standard streams, logs.
pub const RESERVED: u64 = 64;

/// The most connections by default, whatever the descriptors allow: each costs hyper's buffers
/// and a task (16 to 24 KiB when idle), so 4096 stay under 100 MiB.
pub const DEFAULT_MAX: usize = 4096;

/// Raises the soft RLIMIT_NOFILE to the hard limit, as Go's runtime does for every server at
/// start (the soft 1024 is for select(2), which nothing here uses), and returns the soft limit
/// in force.
pub fn raise_nofile() -> nix::Result<u64> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if hard != RLIM_INFINITY && soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        return Ok(hard);
    }
    Ok(soft)
}

/// The connections `nofile` descriptors hold: each may keep a file open (a blob it serves or an
/// upload it writes) besides its socket, and `RESERVED` stay for the rest.
pub fn budget(nofile: u64) -> usize {
    usize::try_from(nofile.saturating_sub(RESERVED) / 2).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_connection_has_room_for_a_file_besides_its_socket() {
        assert_eq!(super::budget(1024), 480);
        assert_eq!(super::budget(256), 96);
        assert_eq!(super::budget(50), 0);
    }
}
