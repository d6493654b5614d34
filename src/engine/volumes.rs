//! Named volumes, as Docker's local driver keeps them: `volumes/<name>/_data` under the data
//! root, kept across `rm` (an anonymous one goes with `rm -v` and `run --rm`), seeded from the
//! image on first use (copy-up), and never removed while a container mounts them.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use super::mounts::{check_volume_name, MountKind, MountRequest};
use super::{names, Engine, EngineError, Result};
use crate::state::containers::MountRecord;
use crate::state::volumes::VolumeRow;

/// Where a volume's files are removed from, after its row is gone (`gc` finishes a crashed rm).
const REMOVING: &str = ".removing-";

impl Engine {
    /// The directory of a volume (its files are in `_data` below it).
    pub fn volume_dir(&self, name: &str) -> PathBuf {
        self.root.join("volumes").join(name)
    }

    /// `volume create [NAME]`: makes a volume (a 64-hex name when none is given); an existing
    /// one is left as it is. Returns its name.
    pub fn create_volume(&self, name: Option<&str>, labels: &BTreeMap<String, String>) -> Result<String> {
        let name = name.map(str::to_string).unwrap_or_else(names::new_id);
        check_volume_name(&name).map_err(EngineError::Invalid)?;
        if self.db.insert_volume(&name, false, labels)? {
            if let Err(e) = self.make_volume_dir(&name) {
                let _ = self.db.delete_volume::<EngineError>(&name, || Ok(()));
                return Err(e);
            }
        }
        Ok(name)
    }

    /// Every volume.
    pub fn volumes(&self) -> Result<Vec<VolumeRow>> {
        Ok(self.db.volumes()?)
    }

    /// `volume inspect`: Docker's JSON for one volume.
    pub fn inspect_volume(&self, name: &str) -> Result<serde_json::Value> {
        let v = self.db.volume(name)?.ok_or_else(|| EngineError::State(crate::state::StateError::NoSuchVolume(name.into())))?;
        Ok(serde_json::json!({
            "CreatedAt": v.created_at,
            "Driver": "local",
            "Labels": v.labels,
            "Mountpoint": self.volume_dir(&v.name).join("_data"),
            "Name": v.name,
            "Options": null,
            "Scope": "local",
        }))
    }

    /// `volume rm`: removes a volume no container mounts (not even a stopped one).
    pub fn remove_volume(&self, name: &str) -> Result<()> {
        let dir = self.volume_dir(name);
        // A name of its own: an earlier removal of the same name may still be there for gc.
        let aside = self.root.join("volumes").join(format!("{REMOVING}{name}-{}", &names::new_id()[..12]));
        // Moved aside inside the transaction: once the row is gone, no run can meet the files.
        self.db.delete_volume::<EngineError>(name, || match std::fs::rename(&dir, &aside) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(EngineError::io(format!("move {} aside", dir.display()))(e)),
        })?;
        remove_tree(&aside)
    }

    /// `volume prune`: removes the volumes no container mounts (anonymous ones only unless
    /// `all`, as Docker 23+). Returns their names and the bytes freed.
    pub fn prune_volumes(&self, all: bool) -> Result<(Vec<String>, u64)> {
        let mut removed = Vec::new();
        let mut bytes = 0;
        for v in self.db.volumes()? {
            if (all || v.anonymous) && self.db.volume_users(&v.name)?.is_empty() {
                let size = tree_size(&self.volume_dir(&v.name));
                match self.remove_volume(&v.name) {
                    Ok(()) => {
                        bytes += size;
                        removed.push(v.name);
                    }
                    // A run took it into use since we looked: it stays.
                    Err(EngineError::State(crate::state::StateError::VolumeInUse(..))) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok((removed, bytes))
    }

    /// Removes volumes once used by a container that is gone (its anonymous ones on `rm -v`,
    /// or those a failed run made); one still used elsewhere stays.
    pub fn remove_unused_volumes(&self, names: &[String]) -> Result<()> {
        for name in names {
            match self.remove_volume(name) {
                Ok(()) | Err(EngineError::State(crate::state::StateError::VolumeInUse(..))) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// `gc`'s part: files of volumes whose removal was cut short.
    pub fn collect_volume_leftovers(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(self.root.join("volumes")).into_iter().flatten().flatten() {
            if entry.file_name().to_string_lossy().starts_with(REMOVING) {
                remove_tree(&entry.path())?;
                out.push(format!("leftover {}", entry.path().display()));
            }
        }
        Ok(out)
    }

    /// For `run`, before anything is made: the mounts as they will be recorded, anonymous
    /// volumes given their new names, sources resolved to paths on the host.
    pub fn plan_mounts(&self, wanted: &[MountRequest]) -> Vec<MountRecord> {
        wanted
            .iter()
            .map(|m| {
                let (name, source, anonymous) = match m.kind {
                    MountKind::Volume => {
                        let name = if m.source.is_empty() { names::new_id() } else { m.source.clone() };
                        let source = self.volume_dir(&name).join("_data").display().to_string();
                        (name, source, m.source.is_empty())
                    }
                    MountKind::Bind => (String::new(), m.source.clone(), false),
                    MountKind::Tmpfs => (String::new(), String::new(), false),
                };
                MountRecord { kind: m.kind.as_str().into(), name, source, destination: m.target.display().to_string(), rw: !m.read_only, anonymous }
            })
            .collect()
    }

    /// For `run`, once the container is recorded: takes its volumes into use, making the
    /// missing ones. Returns the names of those it made (for the undo of a failed run).
    pub fn take_volumes(&self, id: &str, planned: &[MountRecord]) -> Result<Vec<String>> {
        let uses: Vec<(String, bool)> = planned.iter().filter(|m| m.kind == "volume").map(|m| (m.name.clone(), m.anonymous)).collect();
        Ok(self.db.use_volumes(id, &uses)?)
    }

    /// For `run`, once the rootfs is mounted: makes each volume's directory and seeds an empty
    /// one from the image at `rootfs` (unless `nocopy`), or gives it to `root_owner` (a
    /// user-namespaced container's root) when nothing was copied; makes a `-v` bind's missing
    /// host path.
    pub fn fill_mounts(&self, wanted: &[MountRequest], planned: &[MountRecord], rootfs: &Path, root_owner: Option<(u32, u32)>) -> Result<()> {
        for (m, record) in wanted.iter().zip(planned) {
            match m.kind {
                MountKind::Volume => {
                    let data = self.make_volume_dir(&record.name)?;
                    // Two runs that start on one new volume: one copies, the other then sees
                    // it full.
                    let _copying = lock_dir(&self.volume_dir(&record.name))?;
                    if !m.no_copy && is_empty_dir(&data) {
                        copy_up(rootfs, &m.target, &data)?;
                    }
                    if let Some(owner) = root_owner {
                        give_empty_volume(&data, owner)?;
                    }
                }
                MountKind::Bind if m.create_source && !Path::new(&m.source).exists() => {
                    crate::explain::step(|| format!("mkdir -p {}", m.source));
                    std::fs::create_dir_all(&m.source).map_err(EngineError::io(format!("create the bind source {}", m.source)))?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Makes `volumes/<name>/_data` (0755 as Docker's) and returns it.
    fn make_volume_dir(&self, name: &str) -> Result<PathBuf> {
        let data = self.volume_dir(name).join("_data");
        if !data.is_dir() {
            crate::explain::step(|| format!("mkdir -p {}", data.display()));
            std::fs::create_dir_all(&data).map_err(EngineError::io(format!("create {}", data.display())))?;
        }
        Ok(data)
    }
}

/// Holds an exclusive flock on a directory until dropped.
fn lock_dir(dir: &Path) -> Result<nix::fcntl::Flock<std::fs::File>> {
    let file = std::fs::File::open(dir).map_err(EngineError::io(format!("open {}", dir.display())))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive).map_err(|(_, e)| EngineError::io(format!("lock {}", dir.display()))(e.into()))
}

/// A volume still empty and still the host root's (nothing was copied in) becomes the
/// user-namespaced container root's, which could not write to it otherwise.
fn give_empty_volume(data: &Path, (uid, gid): (u32, u32)) -> Result<()> {
    let owned_by_host_root = std::fs::metadata(data).is_ok_and(|m| m.uid() == 0 && m.gid() == 0);
    if owned_by_host_root && is_empty_dir(data) {
        crate::explain::step(|| format!("chown {uid}:{gid} {}", data.display()));
        std::os::unix::fs::chown(data, Some(uid), Some(gid)).map_err(EngineError::io(format!("chown {}", data.display())))?;
    }
    Ok(())
}

fn is_empty_dir(dir: &Path) -> bool {
    std::fs::read_dir(dir).map(|mut d| d.next().is_none()).unwrap_or(false)
}

/// Docker's copy-up: what the image has at `target` (resolved inside `rootfs`, so a symlink
/// in the image cannot point the copy at the host) is copied into a new volume, with owners,
/// modes and symlinks kept. A target that is missing or no directory copies nothing.
fn copy_up(rootfs: &Path, target: &Path, data: &Path) -> Result<()> {
    let root = nix::fcntl::open(rootfs, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| EngineError::io(format!("open {}", rootfs.display()))(e.into()))?;
    let Ok(dir) = crate::safepath::open(&root, target, OFlag::O_PATH | OFlag::O_DIRECTORY, Mode::empty()) else { return Ok(()) };
    let from = crate::safepath::proc_fd_path(&dir);
    crate::explain::step(|| format!("cp -a {}/{}/. {}", rootfs.display(), target.display(), data.display()));
    copy_tree(&from, data)?;
    // The volume's root takes the image directory's owner and mode, as Docker's.
    copy_owner_and_mode(&from, data)
}

/// Copies the contents of `from` into the existing directory `to`, never following a symlink.
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    for entry in std::fs::read_dir(from).map_err(EngineError::io(format!("read {}", from.display())))? {
        let entry = entry.map_err(EngineError::io(format!("read {}", from.display())))?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let meta = std::fs::symlink_metadata(&src).map_err(EngineError::io(format!("stat {}", src.display())))?;
        let io = |what: &str| EngineError::io(format!("{what} {}", dst.display()));
        if meta.file_type().is_symlink() {
            let link = std::fs::read_link(&src).map_err(io("read link for"))?;
            std::os::unix::fs::symlink(&link, &dst).map_err(io("make link"))?;
            let _ = nix::unistd::fchownat(nix::fcntl::AT_FDCWD, &dst, Some(meta.uid().into()), Some(meta.gid().into()), nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW);
            continue;
        }
        if meta.is_dir() {
            std::fs::create_dir(&dst).map_err(io("create"))?;
            copy_tree(&src, &dst)?;
        } else if meta.is_file() {
            std::fs::copy(&src, &dst).map_err(io("copy to"))?;
        } else {
            // Devices, fifos and sockets are not copied (Docker skips them too).
            continue;
        }
        copy_owner_and_mode(&src, &dst)?;
    }
    Ok(())
}

fn copy_owner_and_mode(from: &Path, to: &Path) -> Result<()> {
    let meta = std::fs::symlink_metadata(from).map_err(EngineError::io(format!("stat {}", from.display())))?;
    std::os::unix::fs::chown(to, Some(meta.uid()), Some(meta.gid())).map_err(EngineError::io(format!("chown {}", to.display())))?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(meta.mode() & 0o7777)).map_err(EngineError::io(format!("chmod {}", to.display())))
}

fn remove_tree(path: &Path) -> Result<()> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => {
            crate::explain::step(|| format!("rm -r {}", path.display()));
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(EngineError::io(format!("remove {}", path.display()))(e)),
    }
}

/// Apparent bytes under `path`, links not followed.
fn tree_size(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else { return 0 };
    if !meta.is_dir() {
        return meta.len();
    }
    std::fs::read_dir(path).map(|d| d.flatten().map(|e| tree_size(&e.path())).sum()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_up_keeps_links_and_modes_and_stays_in_the_rootfs() {
        let tmp = tempfile::tempdir().unwrap();
        let rootfs = tmp.path().join("rootfs");
        std::fs::create_dir_all(rootfs.join("app/sub")).unwrap();
        std::fs::write(rootfs.join("app/sub/f"), b"hi").unwrap();
        std::fs::set_permissions(rootfs.join("app/sub/f"), std::fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::symlink("/etc/shadow", rootfs.join("app/link")).unwrap();
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("secret"), b"s").unwrap();
        std::os::unix::fs::symlink(&outside, rootfs.join("evil")).unwrap();
        let data = tmp.path().join("data");
        std::fs::create_dir(&data).unwrap();
        copy_up(&rootfs, Path::new("/app"), &data).unwrap();
        assert_eq!(std::fs::read(data.join("sub/f")).unwrap(), b"hi");
        assert_eq!(std::fs::metadata(data.join("sub/f")).unwrap().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read_link(data.join("link")).unwrap(), Path::new("/etc/shadow"));
        let other = tmp.path().join("other");
        std::fs::create_dir(&other).unwrap();
        copy_up(&rootfs, Path::new("/evil"), &other).unwrap();
        assert!(!other.join("secret").exists(), "the image's symlink resolved on the host");
        copy_up(&rootfs, Path::new("/missing"), &other).unwrap();
    }
}
