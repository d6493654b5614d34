//! What `inspect` knows of a container, gathered from the state rows, the bundle's
//! config.json and the machine (the live PID and MAC addresses); `container_doc` turns it into
//! Docker's document with a pure function, so the shape is tested without root.

use std::path::PathBuf;

use oci_spec::runtime::Spec;
use serde::Serialize;
use serde_json::Value;

use crate::engine::oci::OciRuntime;
use crate::engine::{Engine, Result};
use crate::network::{netlink, netns, Network, NetworkMode};
use crate::state::containers::ContainerRow;
use crate::state::network::{LeaseRow, PortRow};

/// The annotation in config.json that records the ID (config digest) of the image a
/// container was made from; not one of its labels.
pub const IMAGE_ID_ANNOTATION: &str = "io.shibafu.image.id";

/// Everything `inspect` says about a container, read from the state and the machine.
#[derive(Debug, Clone)]
pub struct ContainerFacts {
    /// Its row.
    pub row: ContainerRow,
    /// Its directory (bundle, overlay dirs, log, /etc files).
    pub dir: PathBuf,
    /// Its config.json, when it was written.
    pub spec: Option<Spec>,
    /// Docker's status word (`created`, `running`, `exited`).
    pub status: &'static str,
    /// Why it is not what its row says (a monitor that vanished), or "".
    pub error: String,
    /// Its init's PID, while it runs.
    pub pid: Option<i32>,
    /// When its init started (from /proc), while it runs.
    pub started_at: Option<String>,
    /// The image's ID ("" when no longer known).
    pub image_id: String,
    /// The image config's `config` object (ExposedPorts, Entrypoint, ...), or null.
    pub image_config: Value,
    /// Each network it is on, in order, with its lease and the MAC of its interface there.
    pub networks: Vec<NetworkFacts>,
    /// Its published ports.
    pub ports: Vec<PortRow>,
    /// Its layers, bottom first.
    pub layers: Vec<LayerFacts>,
    /// The init layer its overlay has on top of them (storage::initlayer), when there is one.
    pub init_layer: Option<PathBuf>,
    /// Its network namespace file, while it exists.
    pub sandbox: Option<PathBuf>,
    /// The data root (volumes live under it).
    pub root: PathBuf,
}

/// A container's place on one network.
#[derive(Debug, Clone)]
pub struct NetworkFacts {
    /// The network.
    pub network: Network,
    /// Its lease there, while it has one.
    pub lease: Option<LeaseRow>,
    /// The MAC address of its interface there.
    pub mac: Option<String>,
}

/// One layer under a container.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct LayerFacts {
    /// Digest of the uncompressed tar.
    #[serde(rename = "DiffID")]
    pub diff_id: String,
    /// Digest of the stored blob.
    pub digest: String,
    /// The unpacked directory (an overlay lower dir).
    pub dir: PathBuf,
}

impl Engine {
    /// Gathers what `inspect` shows of a container.
    pub fn container_facts(&self, row: &ContainerRow) -> Result<ContainerFacts> {
        let dir = self.container_dir(&row.id);
        let spec = crate::runtime::spec::load(&dir).ok();
        let running = self.is_running(row);
        let (status, error) = match row.state.as_str() {
            "running" if running => ("running", String::new()),
            "running" => ("exited", "its monitor is gone; `shibafu gc` cleans up after it".to_string()),
            "exited" => ("exited", String::new()),
            _ => ("created", String::new()),
        };
        let pid = if running { OciRuntime::choose(&row.runtime, &self.run_dir).ok().and_then(|oci| oci.pid(&row.id)) } else { None };
        let (image_id, image_config) = self.image_of(row, spec.as_ref());
        let sandbox = Some(netns::path_for(&self.run_dir, &row.id)).filter(|p| p.exists());
        let leases = self.db.leases_of(&row.id)?;
        let mut networks = Vec::new();
        if let Ok(NetworkMode::Bridges(names)) = NetworkMode::parse(std::slice::from_ref(&row.network)) {
            for name in names {
                let Ok(network) = self.network_named(&name) else { continue };
                let lease = leases.iter().find(|l| l.network == name).cloned();
                let mac = match (&sandbox, &lease) {
                    (Some(ns), Some(l)) => netlink::mac_in(ns, &l.interface).ok().flatten(),
                    _ => None,
                };
                networks.push(NetworkFacts { network, lease, mac });
            }
        }
        let mut layers = Vec::new();
        for diff_id in &row.layers {
            let digest = self.db.layer(diff_id)?.map(|l| l.blob_digest).unwrap_or_default();
            layers.push(LayerFacts { diff_id: diff_id.clone(), digest, dir: self.images().layer_dir(diff_id) });
        }
        let init_layer = crate::storage::initlayer::existing(&self.root, &layers.iter().map(|l| l.dir.clone()).collect::<Vec<_>>());
        Ok(ContainerFacts {
            row: row.clone(),
            dir,
            spec,
            status,
            error,
            started_at: pid.and_then(process_start),
            pid,
            image_id,
            image_config,
            networks,
            ports: self.db.ports_of(&row.id)?,
            layers,
            init_layer,
            sandbox,
            root: self.root.clone(),
        })
    }

    /// The image a container was made from: its ID (recorded in config.json; for older
    /// containers, the image its reference names while that still has the same layers) and
    /// the `config` object of its image config.
    fn image_of(&self, row: &ContainerRow, spec: Option<&Spec>) -> (String, Value) {
        let images = self.images();
        let recorded = spec.and_then(|s| s.annotations().as_ref()).and_then(|a| a.get(IMAGE_ID_ANNOTATION)).cloned();
        let id = recorded.or_else(|| images.resolve(&row.image).ok().filter(|i| i.layers == row.layers).map(|i| i.config_digest));
        let Some(id) = id else { return (String::new(), Value::Null) };
        let config = images.blob_store().read(&id).ok().and_then(|b| serde_json::from_slice::<Value>(&b).ok()).map(|c| c["config"].clone()).unwrap_or(Value::Null);
        (id, config)
    }
}

/// When a process started, as RFC 3339: its start in clock ticks after boot (/proc/PID/stat)
/// plus the boot time (btime in /proc/stat).
fn process_start(pid: i32) -> Option<String> {
    let (ticks, _) = crate::runtime::state::proc_stat(pid)?;
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let btime: u64 = stat.lines().find_map(|l| l.strip_prefix("btime "))?.trim().parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(btime * 1000 + ticks * 1000 / hz);
    Some(humantime::format_rfc3339_millis(at).to_string())
}
