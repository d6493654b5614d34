//! Packing a directory into a layer: a deterministic tar (entries sorted by name, fixed mtimes
//! unless kept, numeric owners and modes kept, hard links and xattrs kept), gzip-compressed
//! without a name or time, so the same tree always gives the same digests. An overlay upper dir
//! is packed with its whiteouts turned into OCI ones: a 0/0 character device becomes `.wh.NAME`,
//! an opaque directory gets a `.wh..wh..opq` entry.

use std::collections::HashMap;
use std::ffi::{CString, OsStr, OsString};
use std::fs::{File, Metadata};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use sha2::{Digest, Sha256};
use tar::{EntryType, Header};

use super::{Result, StorageError};

/// How to pack.
#[derive(Debug, Clone, Default)]
pub struct PackOptions {
    /// Keep the files' own mtimes (default: every entry gets mtime 0).
    pub keep_mtime: bool,
    /// What to do with overlay whiteouts (0/0 character devices, opaque directories).
    pub whiteouts: Whiteouts,
    /// Owners as a user-namespaced container sees them, for its upper dir (default: as on disk).
    pub ids: Option<super::idmap::IdShift>,
}

/// Overlay whiteouts in the tree being packed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Whiteouts {
    /// A plain tree: a 0/0 character device is packed as the device it is.
    #[default]
    AsIs,
    /// An overlay upper dir (a layer): they become OCI whiteouts.
    ToOci,
    /// A flattened view (export): they mean "deleted", so they are left out.
    Drop,
}

/// A packed layer's digests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packed {
    /// sha256 of the uncompressed tar.
    pub diff_id: String,
    /// Bytes of the uncompressed tar.
    pub size: u64,
}

/// Packs `dir` as a gzip layer into `out`; returns the uncompressed digest and size.
pub fn pack_dir(dir: &Path, options: PackOptions, out: impl Write) -> Result<Packed> {
    let gz = flate2::GzBuilder::new().mtime(0).write(out, flate2::Compression::new(6));
    let mut hashing = HashingWriter { inner: gz, hasher: Sha256::new(), count: 0 };
    write_tar(dir, options, &mut hashing)?;
    let Packed { diff_id, size } = hashing.digest();
    hashing.inner.finish().map_err(StorageError::io("finish the gzip stream"))?.flush().map_err(StorageError::io("write the layer"))?;
    Ok(Packed { diff_id, size })
}

/// Writes `dir` as a plain tar to `out` (the same entries `pack_dir` compresses).
pub fn write_tar(dir: &Path, options: PackOptions, out: impl Write) -> Result<()> {
    let mut packer = Packer { builder: tar::Builder::new(out), options, links: HashMap::new(), root: dir.to_path_buf() };
    let top = nix::fcntl::open(dir, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty()).map_err(StorageError::sys(format!("open {}", dir.display())))?;
    packer.walk(top, Path::new(""))?;
    packer.builder.finish().map_err(StorageError::io("finish the tar"))
}

struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W> HashingWriter<W> {
    fn digest(&self) -> Packed {
        Packed { diff_id: format!("sha256:{:x}", self.hasher.clone().finalize()), size: self.count }
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Reads exactly `left` bytes, or fails.
struct ExactReader<R> {
    inner: R,
    left: u64,
}

impl<R: io::Read> io::Read for ExactReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && self.left > 0 && !buf.is_empty() {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, format!("{} bytes short", self.left)));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

struct Packer<W: Write> {
    builder: tar::Builder<W>,
    options: PackOptions,
    /// (dev, inode) of files with several links -> the first name packed.
    links: HashMap<(u64, u64), PathBuf>,
    /// The tree packed, for messages.
    root: PathBuf,
}

impl<W: Write> Packer<W> {
    /// Packs the entries of the open directory `dir` (whose name in the tar is `rel`), sorted
    /// by name, depth first. Each entry is reached through its directory's descriptor and never
    /// followed: the tree may be a running container's, whose files can turn into links to
    /// host paths at any moment.
    fn walk(&mut self, dir: OwnedFd, rel: &Path) -> Result<()> {
        let shown = self.root.join(rel);
        let at = crate::safepath::proc_fd_path(&dir);
        let mut names: Vec<OsString> = std::fs::read_dir(&at)
            .map_err(StorageError::io(format!("read {}", shown.display())))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()
            .map_err(StorageError::io(format!("read {}", shown.display())))?;
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for name in names {
            let path = at.join(&name);
            let name_in_tar = rel.join(&name);
            let meta = std::fs::symlink_metadata(&path).map_err(StorageError::io(format!("stat {}", shown.join(&name).display())))?;
            self.entry(&path, &name_in_tar, &meta)?;
            if meta.is_dir() {
                if self.options.whiteouts == Whiteouts::ToOci && xattr(&path, "trusted.overlay.opaque").as_deref() == Some(b"y") {
                    self.whiteout(&name_in_tar.join(".wh..wh..opq"))?;
                }
                let sub = nix::fcntl::openat(&dir, name.as_os_str(), OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty())
                    .map_err(StorageError::sys(format!("open {} (did it change while packing? stop the container first)", shown.join(&name).display())))?;
                self.walk(sub, &name_in_tar)?;
            }
        }
        Ok(())
    }

    fn entry(&mut self, path: &Path, name: &Path, meta: &Metadata) -> Result<()> {
        let ft = meta.file_type();
        let is_whiteout = ft.is_char_device() && meta.rdev() == 0;
        if is_whiteout && self.options.whiteouts == Whiteouts::Drop {
            return Ok(());
        }
        if is_whiteout && self.options.whiteouts == Whiteouts::ToOci {
            let parent = name.parent().unwrap_or(Path::new(""));
            let mut hidden = OsString::from(".wh.");
            hidden.push(name.file_name().unwrap_or_default());
            return self.whiteout(&parent.join(hidden));
        }
        let mut header = self.header(meta);
        let shown = self.root.join(name);
        let io_err = |what: &str| StorageError::io(format!("{what} {}", shown.display()));
        self.xattrs(path, name)?;
        if meta.nlink() > 1 && !ft.is_dir() {
            if let Some(first) = self.links.get(&(meta.dev(), meta.ino())).cloned() {
                header.set_entry_type(EntryType::Link);
                header.set_size(0);
                return self.builder.append_link(&mut header, name, &first).map_err(io_err("pack"));
            }
            self.links.insert((meta.dev(), meta.ino()), name.to_path_buf());
        }
        if ft.is_dir() {
            header.set_entry_type(EntryType::Directory);
            header.set_size(0);
            self.builder.append_data(&mut header, name, io::empty()).map_err(io_err("pack"))
        } else if ft.is_file() {
            header.set_entry_type(EntryType::Regular);
            // Never through a link: a running container may swap the file for one to a host file.
            let file = std::os::unix::fs::OpenOptionsExt::custom_flags(File::options().read(true), libc::O_NOFOLLOW | libc::O_NONBLOCK).open(path).map_err(io_err("open"))?;
            // Exactly the size in the header: a file that shrinks while packed is an error,
            // not a malformed tar (a running container may be writing it).
            let mut exact = ExactReader { inner: io::Read::take(file, meta.len()), left: meta.len() };
            self.builder.append_data(&mut header, name, &mut exact).map_err(|e| StorageError::io(format!("pack {} (did it change while packing? stop the container first)", shown.display()))(e))
        } else if ft.is_symlink() {
            header.set_entry_type(EntryType::Symlink);
            header.set_size(0);
            let target = std::fs::read_link(path).map_err(io_err("readlink"))?;
            self.builder.append_link(&mut header, name, &target).map_err(io_err("pack"))
        } else if ft.is_char_device() || ft.is_block_device() || ft.is_fifo() {
            let kind = if ft.is_char_device() { EntryType::Char } else if ft.is_block_device() { EntryType::Block } else { EntryType::Fifo };
            header.set_entry_type(kind);
            header.set_size(0);
            let (major, minor) = (libc::major(meta.rdev()), libc::minor(meta.rdev()));
            header.set_device_major(major).map_err(io_err("pack"))?;
            header.set_device_minor(minor).map_err(io_err("pack"))?;
            self.builder.append_data(&mut header, name, io::empty()).map_err(io_err("pack"))
        } else {
            // Sockets cannot be archived; tar skips them too.
            Ok(())
        }
    }

    fn header(&self, meta: &Metadata) -> Header {
        let mut header = Header::new_gnu();
        header.set_mode(meta.mode() & 0o7777);
        let (uid, gid) = match &self.options.ids {
            Some(shift) => (shift.uid(meta.uid()), shift.gid(meta.gid())),
            None => (meta.uid(), meta.gid()),
        };
        header.set_uid(u64::from(uid));
        header.set_gid(u64::from(gid));
        header.set_mtime(if self.options.keep_mtime { meta.mtime().max(0) as u64 } else { 0 });
        header.set_size(meta.len());
        header
    }

    fn whiteout(&mut self, name: &Path) -> Result<()> {
        let mut header = Header::new_gnu();
        header.set_entry_type(EntryType::Regular);
        header.set_mode(0o644);
        header.set_size(0);
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        self.builder.append_data(&mut header, name, io::empty()).map_err(StorageError::io(format!("pack whiteout {}", name.display())))
    }

    /// Extended attributes as PAX records before the entry (overlay's own are not content).
    fn xattrs(&mut self, path: &Path, name: &Path) -> Result<()> {
        let mut records: Vec<(String, Vec<u8>)> = xattr_names(path)
            .into_iter()
            .filter(|n| !n.starts_with("trusted.overlay."))
            .filter_map(|n| xattr(path, &n).map(|v| (format!("SCHILY.xattr.{n}"), v)))
            .collect();
        if records.is_empty() {
            return Ok(());
        }
        records.sort();
        self.builder
            .append_pax_extensions(records.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
            .map_err(StorageError::io(format!("pack xattrs of {}", self.root.join(name).display())))
    }
}

fn cpath(path: &Path) -> Option<CString> {
    CString::new(path.as_os_str().as_bytes()).ok()
}

fn xattr_names(path: &Path) -> Vec<String> {
    let Some(p) = cpath(path) else { return Vec::new() };
    let mut buf = vec![0u8; 4096];
    let n = unsafe { libc::llistxattr(p.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n <= 0 {
        return Vec::new();
    }
    buf[..n as usize].split(|b| *b == 0).filter(|s| !s.is_empty()).map(|s| OsStr::from_bytes(s).to_string_lossy().into_owned()).collect()
}

fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let (p, n) = (cpath(path)?, CString::new(name).ok()?);
    let mut buf = vec![0u8; 65536];
    let len = unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (len >= 0).then(|| {
        buf.truncate(len as usize);
        buf
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("b/c")).unwrap();
        std::fs::write(t.path().join("b/c/f"), "hello").unwrap();
        std::fs::write(t.path().join("a"), "first").unwrap();
        std::os::unix::fs::symlink("b/c/f", t.path().join("link")).unwrap();
        std::fs::hard_link(t.path().join("a"), t.path().join("z-hard")).unwrap();
        t
    }

    fn names(gz: &[u8]) -> Vec<(String, EntryType)> {
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(gz));
        archive.entries().unwrap().map(|e| e.unwrap()).map(|e| (e.path().unwrap().display().to_string(), e.header().entry_type())).collect()
    }

    #[test]
    fn the_same_tree_packs_to_the_same_bytes_in_name_order() {
        let t = tree();
        let (mut one, mut two) = (Vec::new(), Vec::new());
        let a = pack_dir(t.path(), PackOptions::default(), &mut one).unwrap();
        // Touching the files changes nothing while mtimes are not kept.
        std::fs::write(t.path().join("a"), "first").unwrap();
        let b = pack_dir(t.path(), PackOptions::default(), &mut two).unwrap();
        assert_eq!(a, b);
        assert_eq!(one, two);
        let got = names(&one);
        let order: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(order, ["a", "b", "b/c", "b/c/f", "link", "z-hard"]);
        assert_eq!(got[5].1, EntryType::Link);
        assert_eq!(got[4].1, EntryType::Symlink);
    }

    #[test]
    fn the_diff_id_is_the_digest_of_the_plain_tar() {
        let t = tree();
        let mut gz = Vec::new();
        let packed = pack_dir(t.path(), PackOptions::default(), &mut gz).unwrap();
        let mut plain = Vec::new();
        io::copy(&mut flate2::read::GzDecoder::new(&gz[..]), &mut plain).unwrap();
        assert_eq!(packed.diff_id, super::super::sha256_digest(&plain));
        assert_eq!(packed.size, plain.len() as u64);
    }
}
