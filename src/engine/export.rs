//! `export` and `bundle`: an image's flattened root filesystem, as a tar or as an OCI bundle
//! that runc runs unchanged.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::spec::{container_spec, default_nofile, Limits, ProcessOverrides, SpecInput};
use super::{Engine, EngineError, Result};
use crate::image::export::write_rootfs;

impl Engine {
    /// Writes the flattened rootfs of `image` as a tar to `out`.
    pub fn export(&self, image: &str, out: impl Write) -> Result<()> {
        let store = self.images();
        let layers = store.layer_dirs(&store.resolve(image)?)?;
        Ok(write_rootfs(&layers, &self.export_mount_point(), out)?)
    }

    /// Writes `dir/rootfs` and `dir/config.json` for `image`; on failure removes what it made.
    pub fn bundle(&self, image: &str, dir: &Path, command: &[String], terminal: bool) -> Result<()> {
        let rootfs = dir.join("rootfs");
        if rootfs.exists() || dir.join("config.json").exists() {
            return Err(EngineError::Invalid(format!("{} already holds a bundle; choose an empty directory", dir.display())));
        }
        std::fs::create_dir_all(&rootfs).map_err(EngineError::io(format!("create {}", rootfs.display())))?;
        let tar_path = dir.join(".rootfs.tar");
        let result = self.write_bundle(image, dir, &rootfs, &tar_path, command, terminal);
        let _ = std::fs::remove_file(&tar_path);
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&rootfs);
        }
        result
    }

    fn write_bundle(&self, image: &str, dir: &Path, rootfs: &Path, tar_path: &Path, command: &[String], terminal: bool) -> Result<()> {
        let store = self.images();
        let row = store.resolve(image)?;
        let config = store.config(&row)?;
        // Through a tar file: flattening may mount an overlay in a private mount namespace,
        // which needs this process single-threaded, so no reader thread beside it.
        let tar = std::fs::File::create(tar_path).map_err(EngineError::io(format!("create {}", tar_path.display())))?;
        write_rootfs(&store.layer_dirs(&row)?, &self.export_mount_point(), tar)?;
        let tar = std::fs::File::open(tar_path).map_err(EngineError::io(format!("open {}", tar_path.display())))?;
        crate::storage::unpack::unpack_into(tar, rootfs)?;
        let spec = container_spec(&SpecInput {
            image: &config,
            command,
            env: &[],
            rootfs: PathBuf::from("rootfs"),
            rootfs_on_disk: rootfs,
            hostname: row.name.rsplit('/').next().unwrap_or("shibafu").to_string(),
            terminal,
            limits: &Limits::default(),
            cgroup: None,
            nofile: default_nofile(),
            process: &ProcessOverrides::default(),
        })?;
        Ok(crate::runtime::spec::save(&spec, dir)?)
    }

    /// An empty directory, reused, where a multi-layer export mounts its merged view.
    fn export_mount_point(&self) -> PathBuf {
        self.root.join("tmp/export-mnt")
    }
}
