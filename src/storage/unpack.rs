//! Safe layer unpacking. Every entry is created in a directory opened beneath the layer's own
//! root without following any symlink (openat2 RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS), so
//! neither `..`, absolute names, nor a symlink made by an earlier entry can lead a write out of
//! the tree. Such entries, links pointing out of the tree, whiteouts of `.` or `..`, and entries
//! that replace a directory are refused. OCI whiteouts become overlay whiteouts. The unpacked
//! size and the compression ratio have limits (see `limits`). The layer is built in a staging
//! directory, owned by this process (see `scratch`), and renamed into place only when the whole
//! archive was read.

use std::cell::Cell;
use std::ffi::OsStr;
use std::rc::Rc;
use std::io::{BufRead, BufReader, Read};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{fchmod, makedev, mkdirat, mknodat, utimensat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchownat, linkat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};
use sha2::{Digest, Sha256};
use tar::EntryType;

use super::limits::{self, Limits};
use super::{scratch, Result, StorageError};
use crate::safepath;

/// A layer as unpacked.
#[derive(Debug, Clone)]
pub struct Unpacked {
    /// sha256 of the uncompressed tar.
    pub diff_id: String,
    /// Bytes of the uncompressed tar.
    pub size: u64,
    /// How the archive was compressed.
    pub compression: Compression,
    /// Whether this unpack put the layer's directory in place (false: it was there already).
    pub created: bool,
}

/// How a layer archive is compressed, told by its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar.
    None,
    /// gzip (1f 8b).
    Gzip,
    /// zstd (28 b5 2f fd).
    Zstd,
}

impl Compression {
    fn of(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// Unpacks a layer (plain, gzip or zstd tar) into `layers/<diff_id hex>`, once: when the directory
/// already exists the copy just made is dropped. Nothing is left behind on failure.
pub fn unpack_layer(reader: impl Read, layers_dir: &Path) -> Result<Unpacked> {
    std::fs::create_dir_all(layers_dir).map_err(StorageError::io(format!("create {}", layers_dir.display())))?;
    let staging = tempfile::Builder::new().prefix(".unpack-").tempdir_in(layers_dir).map_err(StorageError::io("create staging dir"))?;
    let _owned = scratch::own_dir(staging.path()).map_err(StorageError::io("lock staging dir"))?;
    let mut unpacked = unpack_into(reader, staging.path())?;
    let final_dir = layers_dir.join(super::hex(&unpacked.diff_id));
    if !final_dir.exists() {
        let staged = staging.keep();
        match std::fs::rename(&staged, &final_dir) {
            Ok(()) => unpacked.created = true,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&staged);
                if !final_dir.exists() {
                    return Err(StorageError::io(format!("move layer into {}", final_dir.display()))(e));
                }
            }
        }
    }
    Ok(unpacked)
}

/// Unpacks a plain, gzip or zstd tar into the existing directory `dest`, under the limits the
/// environment sets (see `limits`).
pub fn unpack_into(reader: impl Read, dest: &Path) -> Result<Unpacked> {
    unpack_with(reader, dest, &Limits::from_env()?)
}

/// `unpack_into` under explicit limits.
pub fn unpack_with(reader: impl Read, dest: &Path, limits: &Limits) -> Result<Unpacked> {
    let packed = Rc::new(Cell::new(0u64));
    let mut buffered = BufReader::with_capacity(1 << 20, Counting { inner: reader, count: packed.clone() });
    let head = buffered.fill_buf().map_err(StorageError::io("read archive"))?;
    if head.is_empty() {
        return Err(StorageError::BadArchive { what: "layer".into(), reason: "the file is empty, not a tar archive (an empty layer is a tar of 1024 zero bytes)".into() });
    }
    let compression = Compression::of(head);
    let decoded: Box<dyn Read> = match compression {
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(buffered)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(buffered).map_err(StorageError::io("start the zstd decoder"))?),
        Compression::None => Box::new(buffered),
    };
    let packed = (compression != Compression::None).then_some(packed);
    let mut hashing = Hashing { inner: decoded, hasher: Sha256::new(), count: 0, limits: *limits, packed, over: None };
    let root = nix::fcntl::open(dest, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(StorageError::sys(format!("open {}", dest.display())))?;
    let mut dirs = Vec::new();
    let read = read_entries(&mut hashing, root.as_fd(), &mut dirs).and_then(|()| read_trailer(&mut hashing));
    if let Some(over) = hashing.over.take() {
        return Err(over);
    }
    read?;
    // Directory times last: creating their entries changed them.
    for (path, mtime) in dirs.iter().rev() {
        set_dir_times(root.as_fd(), path, *mtime)?;
    }
    Ok(Unpacked { diff_id: format!("sha256:{:x}", hashing.hasher.finalize()), size: hashing.count, compression, created: false })
}

fn read_entries<R: Read>(hashing: &mut Hashing<R>, root: BorrowedFd, dirs: &mut Vec<(PathBuf, u64)>) -> Result<()> {
    let mut archive = tar::Archive::new(hashing);
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        if let Some(dir) = unpack_entry(root, &mut entry)? {
            dirs.push(dir);
        }
    }
    Ok(())
}

/// Reads what follows the end marker: the hash covers the whole stream, tar padding included,
/// but an archive that goes on past its padding (an endless stream) is refused.
fn read_trailer<R: Read>(hashing: &mut Hashing<R>) -> Result<()> {
    let ended_at = hashing.count;
    let read = std::io::copy(&mut hashing.take(limits::MAX_TRAILING + 1), &mut std::io::sink()).map_err(bad)?;
    if read > limits::MAX_TRAILING {
        return Err(StorageError::OverLimit(format!(
            "more than {} follow the archive's end marker (at byte {ended_at}): not a tar archive, or an endless stream",
            limits::human(limits::MAX_TRAILING)
        )));
    }
    Ok(())
}

fn bad(e: std::io::Error) -> StorageError {
    StorageError::BadArchive { what: "layer".into(), reason: e.to_string() }
}

/// Counts the bytes read from the archive as it comes (compressed, when it is).
struct Counting<R> {
    inner: R,
    count: Rc<Cell<u64>>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
}

/// Hashes and counts the unpacked tar stream, and stops it at the limits: the tar reader
/// sees an error, and the limit's own error is kept in `over` to be reported.
struct Hashing<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
    limits: Limits,
    packed: Option<Rc<Cell<u64>>>,
    over: Option<StorageError>,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.over.is_some() {
            return Err(std::io::Error::other("over a limit"));
        }
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        if let Err(e) = self.limits.check(self.count, self.packed.as_ref().map(|p| p.get())) {
            let text = e.to_string();
            self.over = Some(e);
            return Err(std::io::Error::other(text));
        }
        Ok(n)
    }
}

/// Checks an entry name: relative, no `..`. Returns it without `.` components.
pub fn clean_name(name: &Path) -> std::result::Result<PathBuf, String> {
    let mut out = PathBuf::new();
    for c in name.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            Component::ParentDir => return Err("the path climbs out with `..`".into()),
            Component::RootDir | Component::Prefix(_) => return Err("the path is absolute".into()),
        }
    }
    Ok(out)
}

/// Checks a symlink target: absolute targets resolve inside the container's root; relative
/// ones must not climb above the tree from where the link sits.
pub fn check_symlink(entry: &Path, target: &Path) -> std::result::Result<(), String> {
    if target.is_absolute() {
        return Ok(());
    }
    let mut depth = entry.parent().map(|p| p.components().count()).unwrap_or(0) as i64;
    for c in target.components() {
        match c {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            _ => {}
        }
        if depth < 0 {
            return Err(format!("the link points outside the tree ({})", target.display()));
        }
    }
    Ok(())
}

fn unsafe_entry(entry: &Path, reason: String) -> StorageError {
    StorageError::UnsafeEntry { entry: entry.display().to_string(), reason }
}

/// The error for a path of the archive that could not be opened without following a link.
fn through_link(entry: &Path, dir: &Path, e: Errno) -> StorageError {
    match e {
        Errno::ELOOP | Errno::EXDEV => unsafe_entry(entry, format!("{} goes through a symlink; archive paths name real directories", dir.display())),
        Errno::ENOTDIR => unsafe_entry(entry, format!("{} is not a directory", dir.display())),
        Errno::ENOENT => unsafe_entry(entry, format!("{} does not exist", dir.display())),
        e => StorageError::sys(format!("open {}", dir.display()))(e),
    }
}

/// Creates one entry; returns directories (path, mtime) whose times are set at the end.
fn unpack_entry<R: Read>(root: BorrowedFd, entry: &mut tar::Entry<R>) -> Result<Option<(PathBuf, u64)>> {
    let raw = entry.path().map_err(bad)?.into_owned();
    let path = clean_name(&raw).map_err(|r| unsafe_entry(&raw, r))?;
    let Some(name) = path.file_name().map(OsStr::to_owned) else { return Ok(None) };
    let header = entry.header().clone();
    let kind = header.entry_type();
    let parent_path = path.parent().unwrap_or(Path::new("")).to_path_buf();
    let parent = safepath::mkdir_all_no_links(root, &parent_path).map_err(|e| through_link(&path, &parent_path, e))?;
    let (mode, uid, gid, mtime) = (header.mode().map_err(bad)? & 0o7777, header.uid().map_err(bad)?, header.gid().map_err(bad)?, header.mtime().map_err(bad)?);
    let name_bytes = name.as_bytes();
    if name_bytes.starts_with(b".wh.") {
        whiteout(parent.as_fd(), &name, &path)?;
        return Ok(None);
    }
    match kind {
        EntryType::Directory => {
            match mkdirat(&parent, name.as_os_str(), Mode::from_bits_truncate(0o700)) {
                Ok(()) => {}
                Err(Errno::EEXIST) if is_dir(parent.as_fd(), &name) => {}
                Err(Errno::EEXIST) => {
                    remove(parent.as_fd(), &name, &path)?;
                    mkdirat(&parent, name.as_os_str(), Mode::from_bits_truncate(0o700)).map_err(StorageError::sys(format!("mkdir {}", path.display())))?;
                }
                Err(e) => return Err(StorageError::sys(format!("mkdir {}", path.display()))(e)),
            }
            own_and_mode(parent.as_fd(), &name, &path, uid, gid, Some(mode))?;
            apply_xattrs(parent.as_fd(), &name, entry)?;
            return Ok(Some((path, mtime)));
        }
        EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
            remove(parent.as_fd(), &name, &path)?;
            let fd = nix::fcntl::openat(&parent, name.as_os_str(), OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::from_bits_truncate(0o600))
                .map_err(StorageError::sys(format!("create {}", path.display())))?;
            let mut file = std::fs::File::from(fd);
            std::io::copy(entry, &mut file).map_err(bad)?;
            nix::unistd::fchown(&file, Some(Uid::from_raw(uid as u32)), Some(Gid::from_raw(gid as u32))).map_err(StorageError::sys(format!("chown {}", path.display())))?;
            fchmod(&file, Mode::from_bits_truncate(mode)).map_err(StorageError::sys(format!("chmod {}", path.display())))?;
        }
        EntryType::Symlink => {
            let target = entry.link_name().map_err(bad)?.ok_or_else(|| unsafe_entry(&path, "symlink without a target".into()))?.into_owned();
            check_symlink(&path, &target).map_err(|r| unsafe_entry(&path, r))?;
            remove(parent.as_fd(), &name, &path)?;
            symlinkat(target.as_path(), parent.as_fd(), name.as_os_str()).map_err(StorageError::sys(format!("symlink {}", path.display())))?;
            own_and_mode(parent.as_fd(), &name, &path, uid, gid, None)?;
        }
        EntryType::Link => {
            let raw_target = entry.link_name().map_err(bad)?.ok_or_else(|| unsafe_entry(&path, "hard link without a target".into()))?.into_owned();
            let target = clean_name(&raw_target).map_err(|r| unsafe_entry(&path, format!("hard link target {}: {r}", raw_target.display())))?;
            let tname = target.file_name().ok_or_else(|| unsafe_entry(&path, "hard link to the root".into()))?;
            let tparent = safepath::open_dir_no_links(root, target.parent().unwrap_or(Path::new(""))).map_err(|e| through_link(&path, &target, e))?;
            remove(parent.as_fd(), &name, &path)?;
            linkat(&tparent, tname, &parent, name.as_os_str(), AtFlags::empty()).map_err(StorageError::sys(format!("hard link {} to {}", path.display(), target.display())))?;
            return Ok(None);
        }
        EntryType::Char | EntryType::Block | EntryType::Fifo => {
            if !nix::unistd::geteuid().is_root() && kind != EntryType::Fifo {
                return Ok(None);
            }
            let sflag = match kind {
                EntryType::Char => SFlag::S_IFCHR,
                EntryType::Block => SFlag::S_IFBLK,
                _ => SFlag::S_IFIFO,
            };
            // A FIFO has no device numbers; GNU tar leaves those fields blank or odd.
            let dev = if kind == EntryType::Fifo { 0 } else { makedev(number(header.device_major())?, number(header.device_minor())?) };
            remove(parent.as_fd(), &name, &path)?;
            mknodat(&parent, name.as_os_str(), sflag, Mode::from_bits_truncate(mode), dev).map_err(StorageError::sys(format!("mknod {}", path.display())))?;
            own_and_mode(parent.as_fd(), &name, &path, uid, gid, Some(mode))?;
        }
        _ => return Ok(None),
    }
    apply_xattrs(parent.as_fd(), &name, entry)?;
    set_times(parent.as_fd(), &name, mtime)?;
    Ok(None)
}

/// OCI whiteouts: `.wh..wh..opq` marks the directory opaque; `.wh.NAME` becomes a 0/0
/// character device named NAME, overlayfs's own whiteout. Other `.wh..wh.` names are AUFS
/// bookkeeping and are skipped, as Docker does. A whiteout must hide a name of its own
/// directory: `.wh..`, `.wh...` and `.wh.` would remove the directory itself or its parent.
fn whiteout(parent: BorrowedFd, name: &OsStr, path: &Path) -> Result<()> {
    if name.as_bytes() == b".wh..wh..opq" {
        return set_xattr(parent, Path::new("."), "trusted.overlay.opaque", b"y");
    }
    if name.as_bytes().starts_with(b".wh..wh.") {
        return Ok(());
    }
    let hidden = OsStr::from_bytes(&name.as_bytes()[4..]);
    if matches!(hidden.as_bytes(), b"" | b"." | b"..") {
        return Err(unsafe_entry(path, format!("a whiteout of {hidden:?} would remove a directory above the entry, not a name in it")));
    }
    remove_any(parent, hidden)?;
    mknodat(parent, hidden, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0)).map_err(StorageError::sys(format!("whiteout {}", path.display())))
}

fn is_dir(parent: BorrowedFd, name: &OsStr) -> bool {
    nix::sys::stat::fstatat(parent, name, AtFlags::AT_SYMLINK_NOFOLLOW).is_ok_and(|s| s.st_mode & libc::S_IFMT == libc::S_IFDIR)
}

/// Removes the file or link at `name` so a later entry of the same name can replace it. A
/// directory made earlier in the archive is never replaced by something else: real layers
/// never do it, and a directory that turns into a symlink is how an archive reaches out.
fn remove(parent: BorrowedFd, name: &OsStr, path: &Path) -> Result<()> {
    if is_dir(parent, name) {
        return Err(unsafe_entry(path, "it replaces a directory made earlier in the archive".into()));
    }
    remove_any(parent, name)
}

/// Removes whatever is at `name` (a file, link, or a whole directory): what a whiteout hides.
fn remove_any(parent: BorrowedFd, name: &OsStr) -> Result<()> {
    match unlinkat(parent, name, UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(Errno::EISDIR) | Err(Errno::EPERM) if is_dir(parent, name) => {
            let path = safepath::proc_fd_path(&parent).join(name);
            std::fs::remove_dir_all(&path).map_err(StorageError::io(format!("replace {}", path.display())))
        }
        Err(e) => Err(StorageError::sys(format!("replace {}", name.to_string_lossy()))(e)),
    }
}

fn own_and_mode(parent: BorrowedFd, name: &OsStr, path: &Path, uid: u64, gid: u64, mode: Option<u32>) -> Result<()> {
    fchownat(parent, name, Some(Uid::from_raw(uid as u32)), Some(Gid::from_raw(gid as u32)), AtFlags::AT_SYMLINK_NOFOLLOW)
        .map_err(StorageError::sys(format!("chown {}", path.display())))?;
    if let Some(mode) = mode {
        nix::sys::stat::fchmodat(parent, name, Mode::from_bits_truncate(mode), nix::sys::stat::FchmodatFlags::FollowSymlink)
            .map_err(StorageError::sys(format!("chmod {}", path.display())))?;
    }
    Ok(())
}

fn number(field: std::io::Result<Option<u32>>) -> Result<u64> {
    Ok(field.map_err(bad)?.unwrap_or(0) as u64)
}

/// Sets the times of the entry `name` just made in `parent` (a link's own times).
fn set_times(parent: BorrowedFd, name: &OsStr, mtime: u64) -> Result<()> {
    let t = TimeSpec::new(mtime as i64, 0);
    match utimensat(parent, name, &t, &t, UtimensatFlags::NoFollowSymlink) {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(StorageError::sys(format!("set times of {}", name.to_string_lossy()))(e)),
    }
}

/// Sets a directory's times at the end of the unpack, resolving its path inside the tree as
/// every write does: a later entry may have replaced the directory, or one above it, with a
/// symlink, which must never lead the change out of the tree. A directory that is no longer
/// one is skipped.
fn set_dir_times(root: BorrowedFd, path: &Path, mtime: u64) -> Result<()> {
    let t = TimeSpec::new(mtime as i64, 0);
    let dir = match safepath::open(root, path, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::ENOENT | Errno::ENOTDIR | Errno::ELOOP) => return Ok(()),
        Err(e) => return Err(StorageError::sys(format!("open {}", path.display()))(e)),
    };
    nix::sys::stat::futimens(&dir, &t, &t).map_err(StorageError::sys(format!("set times of {}", path.display())))
}

fn apply_xattrs<R: Read>(parent: BorrowedFd, name: &OsStr, entry: &mut tar::Entry<R>) -> Result<()> {
    let Some(exts) = entry.pax_extensions().map_err(bad)? else { return Ok(()) };
    for ext in exts {
        let ext = ext.map_err(bad)?;
        if let Some(key) = ext.key().ok().and_then(|k| k.strip_prefix("SCHILY.xattr.")) {
            set_xattr(parent, Path::new(name), key, ext.value_bytes())?;
        }
    }
    Ok(())
}

fn set_xattr(parent: BorrowedFd, name: &Path, key: &str, value: &[u8]) -> Result<()> {
    let path = std::ffi::CString::new(safepath::proc_fd_path(&parent).join(name).as_os_str().as_bytes()).expect("paths hold no NUL");
    let ckey = std::ffi::CString::new(key).map_err(|_| StorageError::BadArchive { what: "xattr".into(), reason: "NUL in name".into() })?;
    // SAFETY: valid C strings and a live byte slice.
    let rc = unsafe { libc::lsetxattr(path.as_ptr(), ckey.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
    if rc != 0 {
        return Err(StorageError::io(format!("set xattr {key} on {}", name.display()))(std::io::Error::last_os_error()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_dotdot_or_a_root_are_refused() {
        assert_eq!(clean_name(Path::new("./a/./b")).unwrap(), PathBuf::from("a/b"));
        assert!(clean_name(Path::new("a/../../etc")).is_err());
        assert!(clean_name(Path::new("/etc/passwd")).is_err());
    }

    #[test]
    fn relative_links_may_not_climb_out() {
        assert!(check_symlink(Path::new("usr/lib/x"), Path::new("../../bin/sh")).is_ok());
        assert!(check_symlink(Path::new("usr/lib/x"), Path::new("../../../etc/passwd")).is_err());
        assert!(check_symlink(Path::new("bin/sh"), Path::new("/bin/busybox")).is_ok());
        assert!(check_symlink(Path::new("x"), Path::new("a/../../y")).is_err());
    }
}
