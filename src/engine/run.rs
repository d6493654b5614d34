//! `run`: image -> overlay rootfs -> config.json -> OCI runtime, attached or detached. A failed
//! run undoes every step it took: no mount, directory, process or row is left behind.

use std::path::PathBuf;

use super::mounts::{self, MountRequest};
use super::network::{Attached, NetworkRequest};
use super::oci::OciRuntime;
use super::health::HealthFlags;
use super::restart::RestartPolicy;
use super::spec::{container_spec, Limits, ProcessOverrides, SpecInput};
use super::{monitor, names, Engine, EngineError, Result};
use crate::image::distribution::RemoteRef;
use crate::state::images::ImageRow;
use crate::network::ports::{PortMap, PortRequest};
use crate::network::files::ExtraHost;
use crate::network::NetworkMode;
use crate::state::containers::{ContainerRow, DnsSettings, LogOptions};
use crate::storage::overlay::{self, OverlayDirs};
use super::userns::UsernsMode;
use crate::runtime::userns::IdMaps;

/// What `run` was asked.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Image reference (ignored with `layers`).
    pub image: String,
    /// Named layers, bottom first, to run instead of an image (`--layers a,b,c`).
    pub layers: Option<Vec<String>>,
    /// Command (empty: the image's).
    pub command: Vec<String>,
    /// Container name (default: derived from image and ID).
    pub name: Option<String>,
    /// Run in the background with a monitor and a log.
    pub detach: bool,
    /// KEY=VALUE.
    pub env: Vec<String>,
    /// Remove the container once it exits.
    pub remove: bool,
    /// `shibafu`, `runc`, `crun` or a path.
    pub runtime: String,
    /// cgroup limits.
    pub limits: Limits,
    /// How it is connected (`--network`).
    pub network: NetworkMode,
    /// Ports to publish (`-p`).
    pub publish: Vec<PortRequest>,
    /// Host name (`--hostname`; default: the first 12 digits of the ID).
    pub hostname: Option<String>,
    /// More names on its networks (`--network-alias`).
    pub aliases: Vec<String>,
    /// `--restart` (a policy other than `no` needs a detached run).
    pub restart: RestartPolicy,
    /// The `--health-*` flags (a check needs a detached run).
    pub health: HealthFlags,
    /// `--log-opt max-size=..,max-file=..`.
    pub log_opts: LogOptions,
    /// Volumes, binds and tmpfs mounts (`-v`, `--mount`).
    pub mounts: Vec<MountRequest>,
    /// Entrypoint, working dir, user, capabilities, read-only root, labels.
    pub process: ProcessOverrides,
    /// The user namespace (`--userns`, `--uidmap`, `--gidmap`).
    pub userns: UsernsMode,
    /// Give it a terminal even when stdin is none (`-t`).
    pub tty: bool,
    /// Keep its stdin open (`-i`): a detached container gets a pipe that stays open until it
    /// exits (a foreground one always reads ours).
    pub interactive: bool,
    /// `--add-host` entries.
    pub extra_hosts: Vec<ExtraHost>,
    /// `--dns`, `--dns-search`, `--dns-option`.
    pub dns: DnsSettings,
}

/// What a run reports.
pub enum RunOutcome {
    /// Attached: the container's exit code.
    Exited(i32),
    /// Detached: the new container's ID, name and published ports.
    Started { id: String, name: String, ports: Vec<PortMap> },
}

impl Engine {
    /// The stored image `text` names; one from a registry that is not here yet is pulled first.
    pub fn image_or_pull(&self, text: &str) -> Result<ImageRow> {
        let images = self.images();
        Ok(match (images.resolve(text), RemoteRef::parse(text)) {
            (Err(crate::image::ImageError::Unknown(_)), Some(remote)) => images.pull(&remote)?,
            (found, _) => found?,
        })
    }

    /// Runs a container.
    pub fn run(&self, opts: &RunOptions) -> Result<RunOutcome> {
        opts.limits.check()?;
        if opts.remove && opts.restart != RestartPolicy::No {
            return Err(EngineError::Invalid(format!("--rm and --restart {} conflict: a container removed at its exit cannot be restarted", opts.restart)));
        }
        if !opts.detach && (opts.restart != RestartPolicy::No || opts.health.cmd.is_some()) {
            return Err(EngineError::Invalid("--restart and --health-cmd need a monitor: run with -d".into()));
        }
        opts.process.check()?;
        let images = self.images();
        let image = match &opts.layers {
            Some(names) => images.image_of_layers(names)?,
            None => self.image_or_pull(&opts.image)?,
        };
        let config = images.config(&image)?;
        let image_check = if opts.layers.is_some() { None } else { images.healthcheck(&image)? };
        let healthcheck = opts.health.resolve(image_check.as_ref())?;
        let (mounts, process) = with_image_defaults(&config, opts)?;
        let opts = &RunOptions { mounts, process, ..opts.clone() };
        let lowers = images.layer_dirs(&image)?;
        let id = names::new_id();
        let name = opts.name.clone().unwrap_or_else(|| names::default_name(&image.name, &id));
        let hostname = opts.hostname.clone().unwrap_or_else(|| id[..12].to_string());
        names::check_name(&name).map_err(EngineError::Invalid)?;
        crate::network::check_name("host name", &hostname, 63)?;
        for alias in &opts.aliases {
            crate::network::check_name("network alias", alias, 63)?;
        }
        let oci = OciRuntime::choose(&opts.runtime, &self.run_dir)?;
        let terminal = opts.tty || (!opts.detach && super::on_our_terminal());
        let command = super::spec::command_line(&config, opts.process.entrypoint.as_deref(), &opts.command)?;
        let planned = self.plan_mounts(&opts.mounts);
        let dir = self.container_dir(&id);
        let row = ContainerRow {
            id: id.clone(),
            name: name.clone(),
            image: image.reference(),
            command,
            layers: image.layers.clone(),
            runtime: oci.name(),
            created_at: crate::state::now(),
            state: "created".into(),
            // Until the container runs, its owner is this process: a `gc` that finds the row
            // still `created` with its owner gone removes what the run had made.
            monitor_pid: Some(std::process::id() as i32),
            monitor_start: Some(super::own_start_time()),
            exit_code: None,
            finished_at: None,
            network: opts.network.to_string(),
            hostname: hostname.clone(),
            aliases: opts.aliases.clone(),
            restart_policy: opts.restart.to_string(),
            publish: opts.publish.iter().map(|p| p.to_string()).collect(),
            auto_remove: opts.remove,
            healthcheck,
            log_opts: opts.log_opts,
            labels: opts.process.labels.clone(),
            mounts: planned.clone(),
            dns: opts.dns.clone(),
            ..Default::default()
        };
        self.db.insert_container(&row)?;
        crate::fault::point("run:recorded");
        let mut undo = Undo { engine: self, id: id.clone(), oci: &oci, networks: Vec::new(), made_volumes: Vec::new(), armed: true };
        undo.made_volumes = self.take_volumes(&id, &planned)?;
        if let NetworkMode::Bridges(names) = &opts.network {
            for name in names {
                if let Some(net) = self.create_network_if_missing(name)? {
                    eprintln!("network {} created: {}", net.name, net.subnet);
                    undo.networks.push(net.name);
                }
            }
        }
        let dirs = OverlayDirs::in_dir(&dir);
        let maps = self.userns_maps(&id, &opts.userns)?;
        if maps.is_some() {
            super::userns::check_reachable(&dirs.merged)?;
        }
        let idmapped = maps.as_ref().map(super::userns::idmapped).transpose()?;
        let (lowers, init_held) = self.with_init_layer(lowers)?;
        overlay::mount_overlay(&lowers, &dirs, idmapped.as_ref(), opts.remove)?;
        drop(init_held);
        crate::fault::point("run:mounted");
        let root_owner = idmapped.as_ref().map(|i| i.owner);
        self.fill_mounts(&opts.mounts, &planned, &dirs.merged, root_owner)?;
        make_workdir(&dirs.merged, super::spec::working_dir(&config, &opts.process), root_owner)?;
        let attached: Attached = self.attach_network(&NetworkRequest {
            id: &id,
            names: [&name, &hostname],
            mode: &opts.network,
            publish: &opts.publish,
            extra_hosts: &opts.extra_hosts,
            dns: &opts.dns,
        })?;
        let mut spec = container_spec(&SpecInput {
            image: &config,
            command: &opts.command,
            env: &opts.env,
            rootfs: dirs.merged.clone(),
            rootfs_on_disk: &dirs.merged,
            hostname,
            terminal,
            limits: &opts.limits,
            cgroup: Some(PathBuf::from(crate::runtime::cgroups::DEFAULT_PARENT).join(&id)),
            nofile: super::spec::default_nofile(),
            process: &opts.process,
        })?;
        if let Some(maps) = &maps {
            super::userns::set_maps(&mut spec, maps);
            super::spec::annotate(&mut spec, super::userns::ANNOTATION, opts.userns.name());
        }
        super::spec::apply_network(&mut spec, &opts.network, &attached);
        super::spec::annotate(&mut spec, super::inspect::container::IMAGE_ID_ANNOTATION, &image.config_digest);
        super::spec::add_mounts(&mut spec, &opts.mounts, &planned);
        crate::runtime::spec::save(&spec, &dir)?;
        crate::fault::point("run:spec-saved");
        if opts.detach {
            monitor::start(self, &id, &oci, &monitor::MonitorMode { terminal, interactive: opts.interactive })?;
            crate::fault::point("run:monitor-started");
            undo.armed = false;
            return Ok(RunOutcome::Started { id, name, ports: attached.ports });
        }
        // Marked running only once it runs, so `exec` never meets a container still being made.
        let mut marked = Ok(());
        let code = oci.run_attached(&id, &dir, || marked = self.set_waited_by_us(&id))?;
        undo.armed = false;
        marked?;
        self.finish(&id, code, opts.remove)?;
        Ok(RunOutcome::Exited(code))
    }

    /// After a container exited: record the code, tear its network down, drop the mount (the
    /// upper dir stays for `logs`, `commit`, `rm`); with `remove`, delete everything.
    pub fn finish(&self, id: &str, code: i32, remove: bool) -> Result<()> {
        // Torn down before the exit is recorded: `stop` returns once it is, and then the
        // container's ports and address are free again, and a `start` that follows mounts
        // its rootfs afresh (not to have it unmounted by us a moment later). The rootfs goes
        // while the kernel frees the network namespace.
        let detaching = self.begin_detach(id);
        let rootfs = if remove { self.remove_files(id) } else { overlay::unmount(&OverlayDirs::in_dir(&self.container_dir(id)).merged).map_err(EngineError::from) };
        let detached = detaching.complete();
        self.db.set_exited(id, code)?;
        match (remove, detached, rootfs) {
            (true, Ok(()), Ok(())) => self.with_anonymous_volumes(id, || Ok(self.db.delete_container(id)?)),
            // What failed above is tried again here, and reported.
            (true, _, _) => self.remove_container_and_volumes(id, None),
            (false, detached, rootfs) => detached.and(rootfs),
        }
    }

    /// `remove_container`, then the container's anonymous volumes (`rm -v`, `run --rm`).
    pub fn remove_container_and_volumes(&self, id: &str, oci: Option<&OciRuntime>) -> Result<()> {
        self.with_anonymous_volumes(id, || self.remove_container(id, oci))
    }

    /// Runs `remove` (which deletes the container's row), then removes the anonymous volumes
    /// the container had and nothing else uses now.
    fn with_anonymous_volumes(&self, id: &str, remove: impl FnOnce() -> Result<()>) -> Result<()> {
        let anonymous = self.db.anonymous_volumes_of(id)?;
        remove()?;
        self.remove_unused_volumes(&anonymous)
    }

    /// Deletes a container's runtime state, network, mount, directory and row.
    pub fn remove_container(&self, id: &str, oci: Option<&OciRuntime>) -> Result<()> {
        if let Some(oci) = oci {
            oci.delete(id)?;
        }
        crate::fault::point("rm:deleted");
        let detaching = self.begin_detach(id);
        let files = self.remove_files(id);
        detaching.complete()?;
        crate::fault::point("rm:detached");
        files?;
        self.db.delete_container(id)?;
        Ok(())
    }

    /// Unmounts a container's rootfs and removes its directory.
    fn remove_files(&self, id: &str) -> Result<()> {
        let dir = self.container_dir(id);
        overlay::unmount(&OverlayDirs::in_dir(&dir).merged)?;
        crate::fault::point("rm:unmounted");
        if dir.exists() {
            crate::explain::step(|| format!("rm -r {}", dir.display()));
            std::fs::remove_dir_all(&dir).map_err(EngineError::io(format!("remove {}", dir.display())))?;
        }
        crate::fault::point("rm:dir-removed");
        Ok(())
    }
}

/// What the image adds to a run, as Docker: an anonymous volume on each of its `Volumes` that
/// no mount of the run covers, and its labels under the run's own. Checks the mounts.
fn with_image_defaults(image: &crate::image::ImageConfig, opts: &RunOptions) -> Result<(Vec<MountRequest>, ProcessOverrides)> {
    let mut wanted = opts.mounts.clone();
    for path in &image.volumes {
        let m = mounts::parse_volume(path).map_err(|e| EngineError::Invalid(format!("the image's volume: {e}")))?;
        if !wanted.iter().any(|w| w.target == m.target) {
            wanted.push(m);
        }
    }
    mounts::check_unique(&wanted).map_err(EngineError::Invalid)?;
    let mut process = opts.process.clone();
    process.labels = image.labels.clone().into_iter().chain(opts.process.labels.clone()).collect();
    Ok((wanted, process))
}

/// Makes the working directory inside the rootfs when the image lacks it, as Docker does
/// (resolved inside the rootfs: a symlink in the image cannot point it at the host), owned by
/// the container's root when that is a user-namespaced one.
fn make_workdir(rootfs: &std::path::Path, workdir: &str, owner: Option<(u32, u32)>) -> Result<()> {
    use nix::fcntl::OFlag;
    use nix::sys::stat::Mode;
    let fail = |e: nix::errno::Errno| EngineError::io(format!("create the working directory {workdir}"))(e.into());
    let root = nix::fcntl::open(rootfs, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty()).map_err(fail)?;
    crate::safepath::mkdir_all_owned(&root, std::path::Path::new(workdir), owner).map(drop).map_err(fail)
}

/// Undoes a half-made run: the container, the volumes it made, then the networks the run
/// made for it.
struct Undo<'a> {
    engine: &'a Engine,
    id: String,
    oci: &'a OciRuntime,
    networks: Vec<String>,
    made_volumes: Vec<String>,
    armed: bool,
}

impl Drop for Undo<'_> {
    fn drop(&mut self) {
        if self.armed {
            let removed = self.engine.remove_container(&self.id, Some(self.oci)).and_then(|()| self.engine.remove_unused_volumes(&self.made_volumes));
            if let Err(e) = removed {
                eprintln!("shibafu: cleaning up after the failed run: {e}");
            }
            for name in &self.networks {
                // Refused, and rightly, when another container joined it meanwhile.
                if let Err(e) = self.engine.remove_network(name) {
                    eprintln!("shibafu: removing network {name} after the failed run: {e}");
                }
            }
        }
    }
}

impl Engine {
    /// The id maps of a container's user namespace: none, a free `auto` range (recorded with
    /// the container, freed with it), or the maps given.
    fn userns_maps(&self, id: &str, mode: &UsernsMode) -> Result<Option<IdMaps>> {
        use super::userns::{AUTO_BASE, AUTO_RANGES, AUTO_SIZE};
        Ok(match mode {
            UsernsMode::Host => None,
            UsernsMode::Maps(maps) => Some(maps.clone()),
            UsernsMode::Auto => {
                let start = self.db.allocate_userns_range(id, AUTO_BASE, AUTO_SIZE, AUTO_RANGES)?;
                let start = start.ok_or_else(|| EngineError::Invalid(format!("all {AUTO_RANGES} --userns=auto ranges are taken: remove some containers")))?;
                Some(super::userns::auto(start))
            }
        })
    }
}
