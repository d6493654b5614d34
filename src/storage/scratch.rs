//! Scratch files and staging dirs inside the data root (`blobs/tmp/*`, `blobs/partial/*`,
//! `layers/.unpack-*`, `.layout-*`) are owned by the process writing them through an exclusive flock on the file
//! or dir itself, held as long as it is open. The kernel drops the lock when that process
//! dies, however it dies, so `gc` can tell what is abandoned without guessing from ages.

use std::fs::File;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Duration;

/// A file or dir younger than this may have been made a moment ago by a writer that has not
/// taken its lock yet; it is never taken for abandoned.
const GRACE: Duration = Duration::from_secs(2);

/// Marks an open scratch file (or dir) as owned by this process for as long as `fd` (or any
/// duplicate of it) stays open.
pub fn own(fd: BorrowedFd) -> std::io::Result<()> {
    // SAFETY: flock on a descriptor we borrow; no memory is passed.
    if unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Opens a staging dir and owns it; keep the returned handle for as long as the dir is in use.
pub fn own_dir(dir: &Path) -> std::io::Result<File> {
    let handle = File::open(dir)?;
    own(std::os::fd::AsFd::as_fd(&handle))?;
    Ok(handle)
}

/// Whether no live process owns the scratch file or dir at `path` (and it is past the grace
/// period of a writer that has just made it).
pub fn abandoned(path: &Path) -> bool {
    let young = std::fs::symlink_metadata(path).ok().and_then(|m| m.modified().ok()).and_then(|t| t.elapsed().ok()).is_none_or(|age| age < GRACE);
    if young {
        return false;
    }
    // Never follow a link nor wait on a FIFO: a link is no one's scratch, so abandoned.
    let probe = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(path);
    let probe = match probe {
        Ok(f) => f,
        Err(e) => return e.raw_os_error() == Some(libc::ELOOP),
    };
    // SAFETY: flock on a descriptor we own; it is released when `probe` closes.
    unsafe { libc::flock(probe.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    fn age(path: &Path) {
        let old = std::time::SystemTime::now() - Duration::from_secs(60);
        File::options().write(path.is_file()).open(path).or_else(|_| File::open(path)).unwrap().set_modified(old).unwrap();
    }

    #[test]
    fn an_owned_file_is_kept_and_a_closed_one_is_abandoned() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        let file = File::create(&path).unwrap();
        own(file.as_fd()).unwrap();
        assert!(!abandoned(&path), "young");
        age(&path);
        assert!(!abandoned(&path), "owned");
        drop(file);
        assert!(abandoned(&path));
    }

    #[test]
    fn an_owned_dir_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let staging = dir.path().join(".unpack-x");
        std::fs::create_dir(&staging).unwrap();
        age(&staging);
        let handle = own_dir(&staging).unwrap();
        assert!(!abandoned(&staging));
        drop(handle);
        assert!(abandoned(&staging));
    }
}
