//! Scratch files and staging dirs inside the data root (`blobs/tmp/*`, `blobs/partial/*`,
//! `layers/.unpack-*`, `.layout-*`) are owned by the process writing them through an exclusive
//! flock on the file or dir itself, held as long as it is open. The kernel drops the lock when
//! that process dies, however it dies, so `gc` can tell what is abandoned without guessing
//! from ages. Each is made and owned while its maker holds the store's lock shared
//! (`storage::lock_layers`), and `gc` judges them holding it exclusive: it never sees one made
//! but not yet owned.

use std::fs::File;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

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

/// Whether no live process owns the scratch file or dir at `path`. Ask it holding the store's
/// lock exclusive (see the module doc): otherwise a writer may have made the file and not yet
/// taken its lock.
pub fn abandoned(path: &Path) -> bool {
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

    #[test]
    fn an_owned_file_is_kept_and_a_closed_one_is_abandoned() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        let file = File::create(&path).unwrap();
        own(file.as_fd()).unwrap();
        assert!(!abandoned(&path), "owned");
        drop(file);
        assert!(abandoned(&path));
    }

    #[test]
    fn an_owned_dir_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let staging = dir.path().join(".unpack-x");
        std::fs::create_dir(&staging).unwrap();
        let handle = own_dir(&staging).unwrap();
        assert!(!abandoned(&staging));
        drop(handle);
        assert!(abandoned(&staging));
    }
}
