//! Path resolution confined to a root directory: symlinks met on the way resolve inside the
//! root (openat2 with RESOLVE_IN_ROOT), so neither a container's mounts nor an unpacked layer
//! can ever write outside their tree.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{mkdirat, Mode};

/// openat2, again while it says EAGAIN: with `..` in the path, RESOLVE_IN_ROOT and
/// RESOLVE_BENEATH fail that way when a rename or mount anywhere on the machine raced the
/// lookup, and openat2(2) asks the caller to retry.
fn openat2_retrying<Fd: AsFd>(root: Fd, rel: &Path, how: impl Fn() -> OpenHow) -> nix::Result<OwnedFd> {
    let root = root.as_fd();
    let mut tries = 0;
    loop {
        match openat2(root, rel, how()) {
            Err(Errno::EAGAIN) if tries < 100 => tries += 1,
            done => return done,
        }
    }
}

fn how(flags: OFlag, mode: Mode) -> OpenHow {
    OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .mode(mode)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS)
}

/// Opens `path` inside the tree at `root`, as if `root` were `/`.
pub fn open<Fd: AsFd>(root: Fd, path: &Path, flags: OFlag, mode: Mode) -> nix::Result<OwnedFd> {
    let rel = relative(path);
    let rel = if rel.as_os_str().is_empty() { Path::new(".") } else { rel.as_path() };
    openat2_retrying(root, rel, || how(flags, mode))
}

/// Opens the directory `path` inside `root`, creating every missing component (mode 0755).
/// A symlink on the way, even a dangling one, is followed inside the root.
/// Returns an O_PATH descriptor, suitable as a mount target through `/proc/self/fd/N`.
pub fn mkdir_all<Fd: AsFd>(root: Fd, path: &Path) -> nix::Result<OwnedFd> {
    mkdir_all_owned(root, path, None)
}

/// `mkdir_all`, where each directory it creates is given to `owner` (uid, gid) when one is
/// named: a user-namespaced container's root, so the directories are its own inside.
pub fn mkdir_all_owned<Fd: AsFd>(root: Fd, path: &Path, owner: Option<(u32, u32)>) -> nix::Result<OwnedFd> {
    let root = root.as_fd();
    match open(root, path, OFlag::O_PATH | OFlag::O_DIRECTORY, Mode::empty()) {
        Err(Errno::ENOENT) => mkdir_all_depth(root, path, owner, 0),
        found => found,
    }
}

fn mkdir_all_depth(root: std::os::fd::BorrowedFd, path: &Path, owner: Option<(u32, u32)>, depth: u32) -> nix::Result<OwnedFd> {
    if depth > 40 {
        return Err(Errno::ELOOP);
    }
    let mut dir = open(root, Path::new("/"), OFlag::O_PATH | OFlag::O_DIRECTORY, Mode::empty())?;
    let mut so_far = PathBuf::from("/");
    let parts: Vec<_> = relative(path).components().map(|c| c.as_os_str().to_owned()).collect();
    for (i, part) in parts.iter().enumerate() {
        let made = match mkdirat(&dir, part.as_os_str(), Mode::from_bits_truncate(0o755)) {
            Ok(()) => true,
            Err(Errno::EEXIST) => false,
            Err(e) => return Err(e),
        };
        if let Some((uid, gid)) = owner.filter(|_| made) {
            nix::unistd::fchownat(&dir, part.as_os_str(), Some(uid.into()), Some(gid.into()), nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)?;
        }
        let next = so_far.join(part);
        // Re-resolve from the root so a symlink component stays confined.
        match open(root, &next, OFlag::O_PATH | OFlag::O_DIRECTORY, Mode::empty()) {
            Ok(fd) => dir = fd,
            Err(Errno::ENOENT) => {
                // A dangling symlink: create what it points to, inside the root.
                let target = nix::fcntl::readlinkat(&dir, part.as_os_str())?;
                let base = if Path::new(&target).is_absolute() { PathBuf::from("/") } else { so_far.clone() };
                let mut redirected = base.join(target);
                redirected.extend(&parts[i + 1..]);
                return mkdir_all_depth(root, &redirected, owner, depth + 1);
            }
            Err(e) => return Err(e),
        }
        so_far = next;
    }
    Ok(dir)
}

/// Opens the directory `path` under `root`, creating every missing component (mode 0755),
/// where no component may be a symlink: a symlink on the way is ELOOP, a non-directory
/// ENOTDIR. For archives, whose entries name real paths and never go through a link.
pub fn mkdir_all_no_links<Fd: AsFd>(root: Fd, path: &Path) -> nix::Result<OwnedFd> {
    let beneath = |dir: std::os::fd::BorrowedFd, rel: &Path| open_dir_no_links(dir, rel);
    let rel = relative(path);
    if rel.as_os_str().is_empty() {
        return beneath(root.as_fd(), Path::new("."));
    }
    match beneath(root.as_fd(), &rel) {
        Err(Errno::ENOENT) => {}
        found => return found,
    }
    let mut dir = beneath(root.as_fd(), Path::new("."))?;
    for part in rel.components() {
        match mkdirat(&dir, part.as_os_str(), Mode::from_bits_truncate(0o755)) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(e),
        }
        dir = beneath(dir.as_fd(), Path::new(part.as_os_str()))?;
    }
    Ok(dir)
}

/// Opens the existing directory `path` beneath `root` (an O_PATH descriptor), where no
/// component may be a symlink (ELOOP) nor climb above `root` (EXDEV).
pub fn open_dir_no_links<Fd: AsFd>(root: Fd, path: &Path) -> nix::Result<OwnedFd> {
    let rel = relative(path);
    let rel = if rel.as_os_str().is_empty() { Path::new(".") } else { rel.as_path() };
    let how = || {
        OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_NO_MAGICLINKS)
    };
    openat2_retrying(root, rel, how)
}

/// Opens the file `path` inside `root`, creating it (and its parents) when missing.
pub fn touch<Fd: AsFd>(root: Fd, path: &Path) -> nix::Result<OwnedFd> {
    let root = root.as_fd();
    if let Some(parent) = path.parent() {
        mkdir_all(root, parent)?;
    }
    let flags = OFlag::O_CREAT | OFlag::O_RDONLY | OFlag::O_NOCTTY;
    let fd = open(root, path, flags, Mode::from_bits_truncate(0o644))?;
    Ok(fd)
}

/// The magic path that names an open descriptor, for mount(2) and friends.
pub fn proc_fd_path(fd: &impl AsRawFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// `path` with its root and `.` components dropped; `..` is kept for openat2 to confine.
pub fn relative(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| !matches!(c, Component::RootDir | Component::CurDir | Component::Prefix(_)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        symlink(&outside, root.join("escape")).unwrap();
        symlink("../../..", root.join("up")).unwrap();
        let rootfd = nix::fcntl::open(&root, OFlag::O_PATH, Mode::empty()).unwrap();
        mkdir_all(&rootfd, Path::new("/escape/made")).unwrap();
        mkdir_all(&rootfd, Path::new("up/x")).unwrap();
        assert!(!outside.join("made").exists());
        assert!(root.join(outside.strip_prefix("/").unwrap()).join("made").is_dir());
        assert!(root.join("x").is_dir());
    }

    #[test]
    fn mkdir_all_no_links_refuses_any_symlink_on_the_way() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir_all(root.join("real")).unwrap();
        symlink(tmp.path(), root.join("abs")).unwrap();
        symlink("real", root.join("rel")).unwrap();
        std::fs::write(root.join("file"), b"").unwrap();
        let rootfd = nix::fcntl::open(&root, OFlag::O_PATH, Mode::empty()).unwrap();
        mkdir_all_no_links(&rootfd, Path::new("real/a/b")).unwrap();
        assert!(root.join("real/a/b").is_dir());
        assert_eq!(mkdir_all_no_links(&rootfd, Path::new("abs/x")).unwrap_err(), Errno::ELOOP);
        assert_eq!(mkdir_all_no_links(&rootfd, Path::new("rel/y")).unwrap_err(), Errno::ELOOP);
        assert_eq!(mkdir_all_no_links(&rootfd, Path::new("file/z")).unwrap_err(), Errno::ENOTDIR);
        assert!(!tmp.path().join("x").exists() && !root.join("real/y").exists());
    }

    #[test]
    fn relative_drops_the_root() {
        assert_eq!(relative(Path::new("/dev/./pts")), PathBuf::from("dev/pts"));
    }
}
