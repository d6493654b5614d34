//! `gc`: removes what nothing uses any more, and what a crashed run left behind: runs that
//! never finished (see `Engine::is_abandoned`), layers and blobs no image, container or layer
//! name refers to, half-written temp files, partial downloads and staging dirs that no live
//! process owns (a running import or pull keeps its own), and container directories
//! with no container, and the network (namespace, veth, lease, ports, rules) of containers
//! that are gone; containers whose monitor died are recorded exited, their network and mount
//! undone.

use std::collections::HashSet;
use std::path::Path;

use super::{Engine, EngineError, Result};

/// What `gc` removed.
#[derive(Debug, Default)]
pub struct Collected {
    /// What went, one line each.
    pub removed: Vec<String>,
    /// Bytes freed (apparent sizes).
    pub bytes: u64,
}

impl Engine {
    /// Collects garbage; see the module doc.
    pub fn gc(&self) -> Result<Collected> {
        let mut done = Collected::default();
        let store = self.images();
        let _removing = store.lock_layers(true)?;
        for layer in self.db.layers()? {
            if self.db.layer_users(&layer.diff_id)? == (0, 0, 0) {
                done.bytes += size_of(&store.layer_dir(&layer.diff_id)) + size_of(&store.blob_store().path(&layer.blob_digest));
                store.drop_layer(&layer.diff_id)?;
                done.removed.push(format!("layer {}", layer.diff_id));
            }
        }
        self.collect_layer_dirs(&mut done)?;
        self.collect_blobs(&mut done)?;
        self.collect_dead_monitors(&mut done)?;
        self.collect_containers(&mut done)?;
        self.collect_networks(&mut done)?;
        done.removed.extend(self.collect_volume_leftovers()?);
        // Staging dirs sit beside what they stage; the temp dirs and the partial downloads
        // (which a pull that was cut keeps to resume) hold nothing else.
        let partials = crate::storage::partial::partial_dir(&self.root);
        for (dir, all) in [(store.layers_dir(), false), (self.root.clone(), false), (self.root.join("init"), false), (self.root.join("blobs/tmp"), true), (partials, true)] {
            collect_scratch(&dir, all, &mut done)?;
        }
        Ok(done)
    }

    /// Blobs that no image and no layer refers to.
    fn collect_blobs(&self, done: &mut Collected) -> Result<()> {
        for (path, digest) in self.unwanted_blobs()? {
            done.bytes += size_of(&path);
            remove(&path)?;
            done.removed.push(format!("blob {digest}"));
        }
        Ok(())
    }

    /// Blobs of the shared store that no image, layer, registry repository or registry
    /// manifest refers to, and that no live pull has lent to its scratch layout: (path,
    /// digest). The caller holds the store's lock exclusive (`storage::lock_layers`), so every
    /// other writer of the store has recorded what it stored, or died: no age is needed.
    pub fn unwanted_blobs(&self) -> Result<Vec<(std::path::PathBuf, String)>> {
        // The store is listed before the pulls' layouts: a pull links a blob into its layout
        // before the blob enters the store, so any blob listed here that a live pull holds is
        // in that pull's layout by the time it is read.
        let stored = read_dir(&self.root.join("blobs/sha256"))?;
        let mut wanted = self.lent_to_pulls()?;
        let store = self.images();
        for i in self.db.images()? {
            wanted.insert(crate::storage::hex(&i.manifest_digest).to_string());
            // Config and layer blobs as the manifest names them (a layer's blob may differ
            // from the one recorded for its diff_id).
            let named = store.manifest_blobs(&i).map(|(_, blobs)| blobs).unwrap_or_else(|_| vec![i.config_digest.clone()]);
            wanted.extend(named.iter().map(|d| crate::storage::hex(d).to_string()));
        }
        for l in self.db.layers()? {
            wanted.insert(crate::storage::hex(&l.blob_digest).to_string());
        }
        // What the registry serves shares the store: its repositories' blobs and manifests.
        // (Which of those nothing refers to any more is `registry gc`'s call.)
        wanted.extend(self.db.blob_links()?.into_iter().map(|(_, d)| crate::storage::hex(&d).to_string()));
        wanted.extend(self.db.registry_manifests()?.into_iter().map(|m| crate::storage::hex(&m.digest).to_string()));
        let mut out = Vec::new();
        for entry in stored {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !wanted.contains(&name) {
                out.push((entry.path(), format!("sha256:{name}")));
            }
        }
        // sha512 names (hard links) of blobs the registry took by sha512: wanted while linked.
        for entry in read_dir(&self.root.join("blobs/sha512"))? {
            let digest = format!("sha512:{}", entry.file_name().to_string_lossy());
            if !wanted.contains(&digest) {
                out.push((entry.path(), digest));
            }
        }
        Ok(out)
    }

    /// The blobs (hex) in the scratch layouts (`.layout-*`) that a live process owns: a pull's
    /// fetched blobs before its import records them.
    fn lent_to_pulls(&self) -> Result<HashSet<String>> {
        let mut lent = HashSet::new();
        for entry in read_dir(&self.root)? {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(".layout-") && !crate::storage::scratch::abandoned(&entry.path()) {
                lent.extend(read_dir(&entry.path().join("blobs/sha256"))?.iter().map(|e| e.file_name().to_string_lossy().into_owned()));
            }
        }
        Ok(lent)
    }

    /// Unpacked layers with no row: left by a prepare or import that died after unpacking.
    /// Every unpacker records its layer before it lets go of the store's lock, which `gc`
    /// holds exclusive: an unrecorded layer is abandoned, whatever its age.
    fn collect_layer_dirs(&self, done: &mut Collected) -> Result<()> {
        let recorded: HashSet<String> = self.db.layers()?.into_iter().map(|l| crate::storage::hex(&l.diff_id).to_string()).collect();
        for entry in read_dir(&self.images().layers_dir())? {
            let name = entry.file_name().to_string_lossy().into_owned();
            let is_layer = name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit());
            if is_layer && !recorded.contains(&name) {
                done.bytes += size_of(&entry.path());
                remove(&entry.path())?;
                done.removed.push(format!("unrecorded layer sha256:{name}"));
            }
        }
        Ok(())
    }

    /// Containers recorded running whose monitor is gone (it was killed, or the machine
    /// rebooted): recorded exited, with their network and mount undone (`start` runs them again).
    fn collect_dead_monitors(&self, done: &mut Collected) -> Result<()> {
        for c in self.db.containers()? {
            if self.reconcile(&c)? {
                done.removed.push(format!("the run of container {} (its monitor is gone)", c.name));
            }
        }
        Ok(())
    }

    /// Runs that never finished (killed before their undo: the row still `created`, its
    /// owner gone), and container directories whose container is gone.
    fn collect_containers(&self, done: &mut Collected) -> Result<()> {
        for c in self.db.containers()?.into_iter().filter(|c| self.is_abandoned(c)) {
            let oci = super::oci::OciRuntime::choose(&c.runtime, &self.run_dir)?;
            done.bytes += size_of(&self.container_dir(&c.id));
            self.remove_container(&c.id, Some(&oci))?;
            done.removed.push(format!("half-made container {} ({})", c.name, &c.id[..12]));
        }
        let known: HashSet<String> = self.db.containers()?.into_iter().map(|c| c.id).collect();
        for entry in read_dir(&self.root.join("containers"))? {
            let id = entry.file_name().to_string_lossy().into_owned();
            // A young one may be a run that has just recorded itself (after our query).
            if !known.contains(&id) && is_old(&entry) {
                done.bytes += size_of(&entry.path());
                // What `rm` does for a container: unmount, remove the dir (the row is gone).
                self.remove_container(&id, None)?;
                done.removed.push(format!("container dir {id}"));
            }
        }
        Ok(())
    }

    /// Removes the init layers (storage::initlayer) when no container is recorded, with
    /// their folder, as a first boot has none (`lab reset`); returns what it removed. Not part
    /// of `gc`: the next run would make the same layer again. A run that records a container
    /// after this query waits for the store's lock, held here exclusive, before it looks for
    /// its init layer, and makes it again.
    pub fn remove_init_layers(&self) -> Result<Vec<String>> {
        let _removing = self.images().lock_layers(true)?;
        let mut removed = Vec::new();
        if !self.db.containers()?.is_empty() {
            return Ok(removed);
        }
        let dir = self.root.join("init");
        for entry in read_dir(&dir)? {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with('.') {
                remove(&entry.path())?;
                removed.push(format!("init layer {name}"));
            }
        }
        // Only when empty: a staging dir a live run owns stays, and with it the folder.
        let _ = std::fs::remove_dir(&dir);
        Ok(removed)
    }

    /// Network namespaces, leases and published ports of containers that are gone. A run
    /// records its container before it touches the network, so no age check is needed.
    fn collect_networks(&self, done: &mut Collected) -> Result<()> {
        let mut orphans: HashSet<String> = self.db.leases()?.into_iter().map(|l| l.container_id).collect();
        orphans.extend(self.db.ports()?.into_iter().map(|p| p.container_id));
        orphans.extend(read_dir(&self.run_dir.join("netns"))?.iter().map(|e| e.file_name().to_string_lossy().into_owned()));
        // Read after the candidates: a run that made its network since is in this list.
        let known: HashSet<String> = self.db.containers()?.into_iter().map(|c| c.id).collect();
        for id in orphans.difference(&known) {
            self.detach_network(id)?;
            done.removed.push(format!("network of container {id}"));
        }
        Ok(())
    }
}

/// A container dir with no row older than this belongs to no run still starting.
const SCRATCH_AGE: std::time::Duration = std::time::Duration::from_secs(600);

/// Staging dirs of unpacks, imports and init layers (`.unpack-*`, `.layout-*`) in `dir`; with `all`, every
/// entry (a temp dir). Only abandoned ones: each is owned (flocked) by the process writing
/// it for as long as it lives (see storage::scratch).
fn collect_scratch(dir: &Path, all: bool, done: &mut Collected) -> Result<()> {
    for entry in read_dir(dir)? {
        let name = entry.file_name().to_string_lossy().into_owned();
        if (all || name.starts_with(".unpack-") || name.starts_with(".layout-")) && crate::storage::scratch::abandoned(&entry.path()) {
            done.bytes += size_of(&entry.path());
            remove(&entry.path())?;
            done.removed.push(format!("leftover {}", entry.path().display()));
        }
    }
    Ok(())
}

fn is_old(entry: &std::fs::DirEntry) -> bool {
    entry.metadata().ok().and_then(|m| m.modified().ok()).and_then(|t| t.elapsed().ok()).is_some_and(|age| age > SCRATCH_AGE)
}

fn read_dir(dir: &Path) -> Result<Vec<std::fs::DirEntry>> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries.collect::<std::io::Result<_>>().map_err(EngineError::io(format!("read {}", dir.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(EngineError::io(format!("read {}", dir.display()))(e)),
    }
}

fn remove(path: &Path) -> Result<()> {
    crate::explain::step(|| format!("rm -r {}", path.display()));
    let removed = if path.is_dir() && !path.is_symlink() { std::fs::remove_dir_all(path) } else { std::fs::remove_file(path) };
    removed.map_err(EngineError::io(format!("remove {}", path.display())))
}

/// Apparent bytes under `path`.
fn size_of(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else { return 0 };
    if !meta.is_dir() {
        return meta.len();
    }
    std::fs::read_dir(path).map(|entries| entries.flatten().map(|e| size_of(&e.path())).sum()).unwrap_or(0)
}

/// Removes the cgroups of the containers of the data root `root` whose processes are all gone
/// (a scratch appliance's, once its PID namespace ended): each container's
/// `shibafu/<id>` under the cgroup v2 mount, where there is one.
pub fn remove_cgroups_of(root: &Path) {
    let Some(mount) = crate::runtime::cgroups::v2_mount() else {
        return;
    };
    for id in std::fs::read_dir(root.join("containers")).into_iter().flatten().flatten() {
        let path = mount.join(crate::runtime::cgroups::DEFAULT_PARENT).join(id.file_name());
        if path.is_dir() {
            let _ = crate::runtime::cgroups::Cgroup { path }.remove();
        }
    }
}
